//! The phone's HTTP transport: `POST <server>/v1/sync` with the device token, the wire bytes as
//! the body both ways; and attachment bytes ([`BlobTransport`]): `GET /v1/blobs/{sha}/upload`,
//! `PUT /v1/blobs/{sha}/chunks/{offset}`, `POST /v1/blobs/{sha}/commit`, and `GET
//! /v1/blobs/{sha}` with a `Range`. Blocking (ureq), with timeouts, so it runs on the sync
//! thread. Public so the CLI and end-to-end tests in other crates can drive a real server with it.
//!
//! Each request carries the [`NONCE_HEADER`] (derived from its body) that a server's revocation
//! proof must cover; the phone's core checks the proof before it wipes.
//!
//! Error mapping: a 401 is `Unauthorized` (with `wipe` and `proof` from the JSON body: a
//! revoked device), a 429 is `RetryAfter` (its `Retry-After` seconds), no connection /
//! timeouts / dropped transfers are `Network`, any other non-200 answer is
//! `Server { status, code, message }` from the server's `{"error": code, "message": …}` body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridcase_core::phone::blobs::upload::UploadStatus;
use gridcase_core::phone::{BlobTransport, RangeBytes, Transport, TransportError};
use gridcase_core::revocation::{NONCE_HEADER, request_nonce};
use ureq::http::{HeaderMap, Response};

/// Seconds to wait after a 429 that names no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: u64 = 60;

/// Largest response body accepted (a restore page of snapshots).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Timeouts for slow village links: connecting must be quick, a whole exchange may take long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Without a byte read or written for this long, the transfer is considered dropped.
    pub idle: Duration,
    /// The whole exchange, request and response.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(300),
        }
    }
}

/// A [`Transport`] over HTTP(S).
pub struct HttpTransport {
    agent: ureq::Agent,
    /// The server's base URL, without a trailing slash.
    base: String,
    url: String,
    token: String,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The message a cancelled exchange fails with (as a `Network` error).
pub const CANCELLED: &str = "sync cancelled";

impl HttpTransport {
    /// `server_url` is the server's base URL (`https://host:port`, with or without a trailing
    /// slash); `token` the device token.
    pub fn new(server_url: &str, token: &str) -> Self {
        Self::with_timeouts(server_url, token, Timeouts::default())
    }

    pub fn with_timeouts(server_url: &str, token: &str, timeouts: Timeouts) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_per_read(Some(timeouts.idle))
            .timeout_per_write(Some(timeouts.idle))
            .timeout_global(Some(timeouts.total))
            .build()
            .into();
        let base = server_url.trim_end_matches('/').to_string();
        HttpTransport {
            agent,
            url: format!("{base}/v1/sync"),
            base,
            token: token.to_string(),
            cancel: None,
        }
    }

    /// Checks `flag` before sending and after receiving: once set, the exchange fails with
    /// `Network(CANCELLED)` and a received answer is dropped unapplied (the server has stored
    /// the pushes; the next sync sends them again and the server acknowledges them again).
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    fn cancelled(&self) -> Result<(), TransportError> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::SeqCst) => {
                Err(TransportError::Network(CANCELLED.into()))
            }
            _ => Ok(()),
        }
    }

    fn post(&self, body: &[u8]) -> Result<Vec<u8>, TransportError> {
        let sent = self
            .agent
            .post(&self.url)
            .header("Authorization", &self.bearer())
            .header(NONCE_HEADER, &request_nonce(body))
            .content_type("application/octet-stream")
            .send(body);
        Ok(answer(sent)?.0)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn blob_url(&self, sha256: &str, rest: &str) -> String {
        format!("{}/v1/blobs/{sha256}{rest}", self.base)
    }
}

/// The body and headers of a 2xx answer; any other answer as the error it stands for (see the
/// module comment).
fn answer(
    sent: Result<Response<ureq::Body>, ureq::Error>,
) -> Result<(Vec<u8>, HeaderMap), TransportError> {
    let mut response = sent.map_err(network)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(network)?;
    if (200..300).contains(&status) {
        return Ok((bytes, response.headers().clone()));
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let code = field("error").unwrap_or_else(|| "http".into());
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text.chars().take(200).collect()
        }
    });
    if status == 401 {
        let wipe = json.get("wipe").and_then(|v| v.as_bool()).unwrap_or(false);
        let message = if message.is_empty() { code } else { message };
        let proof = field("proof");
        return Err(TransportError::Unauthorized {
            wipe,
            message,
            proof,
        });
    }
    if status == 429 {
        let seconds = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        return Err(TransportError::RetryAfter { seconds, message });
    }
    Err(TransportError::Server {
        status,
        code,
        message,
    })
}

/// A JSON answer as `T`.
fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(bytes).map_err(|e| TransportError::Server {
        status: 200,
        code: "bad_answer".into(),
        message: e.to_string(),
    })
}

/// The whole size a `Content-Range: bytes a-b/size` names.
fn range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("content-range")?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

fn network(e: ureq::Error) -> TransportError {
    let what = match &e {
        ureq::Error::ConnectionFailed => "cannot connect to the server".to_string(),
        ureq::Error::HostNotFound => "the server's host name is unknown".to_string(),
        ureq::Error::Timeout(t) => format!("the server did not answer in time ({t})"),
        ureq::Error::Io(io) => format!("the connection failed: {io}"),
        ureq::Error::BodyExceedsLimit(limit) => {
            format!("the server's answer is larger than {limit} bytes")
        }
        other => other.to_string(),
    };
    TransportError::Network(what)
}

impl Transport for HttpTransport {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.cancelled()?;
        let answer = self.post(&request)?;
        self.cancelled()?;
        Ok(answer)
    }
}

impl BlobTransport for HttpTransport {
    fn upload_status(&mut self, sha256: &str) -> Result<UploadStatus, TransportError> {
        self.cancelled()?;
        let url = self.blob_url(sha256, "/upload");
        let sent = self
            .agent
            .get(&url)
            .header("Authorization", &self.bearer())
            .call();
        json(&answer(sent)?.0)
    }

    fn put_chunk(
        &mut self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, TransportError> {
        self.cancelled()?;
        let url = self.blob_url(sha256, &format!("/chunks/{offset}"));
        let sent = self
            .agent
            .put(&url)
            .header("Authorization", &self.bearer())
            .content_type("application/octet-stream")
            .send(bytes);
        json(&answer(sent)?.0)
    }

    fn commit(&mut self, sha256: &str) -> Result<(), TransportError> {
        self.cancelled()?;
        let url = self.blob_url(sha256, "/commit");
        let sent = self
            .agent
            .post(&url)
            .header("Authorization", &self.bearer())
            .send_empty();
        answer(sent).map(|_| ())
    }

    fn download(
        &mut self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> Result<RangeBytes, TransportError> {
        self.cancelled()?;
        let last = start.saturating_add(len.max(1)) - 1;
        let sent = self
            .agent
            .get(&self.blob_url(sha256, ""))
            .header("Authorization", &self.bearer())
            .header("Range", &format!("bytes={start}-{last}"))
            .call();
        let (mut bytes, headers) = answer(sent)?;
        let mime = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let size = match range_total(&headers) {
            Some(size) => size,
            // A whole answer (a server that ignores ranges): keep the asked-for part.
            None => {
                let size = bytes.len() as u64;
                let from = (start.min(size)) as usize;
                let to = (last.saturating_add(1).min(size)) as usize;
                bytes = bytes[from..to].to_vec();
                size
            }
        };
        Ok(RangeBytes { bytes, size, mime })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves one canned HTTP answer on a local port; returns the base URL.
    fn serve_once(status_line: &'static str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        });
        format!("http://{addr}/")
    }

    #[test]
    fn revoked_device_is_told_to_wipe() {
        let url = serve_once(
            "401 Unauthorized",
            r#"{"error":"revoked","message":"device revoked","wipe":true}"#,
        );
        let err = HttpTransport::new(&url, "t").exchange(vec![1]).unwrap_err();
        assert_eq!(
            err,
            TransportError::Unauthorized {
                wipe: true,
                message: "device revoked".into(),
                proof: None,
            }
        );
    }

    /// Serves one canned answer with extra headers; hands back the request it read.
    fn serve_once_with(
        status_line: &'static str,
        headers: &'static str,
        body: &'static str,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let reply = format!(
                "HTTP/1.1 {status_line}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        });
        (format!("http://{addr}/"), rx)
    }

    #[test]
    fn the_nonce_goes_out_and_the_proof_comes_back() {
        let (url, request) = serve_once_with(
            "401 Unauthorized",
            "",
            r#"{"error":"revoked","message":"device revoked","wipe":true,"proof":"abcd"}"#,
        );
        let err = HttpTransport::new(&url, "t")
            .exchange(vec![1, 2])
            .unwrap_err();
        let TransportError::Unauthorized { proof, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(proof.as_deref(), Some("abcd"));
        let sent = request.recv().unwrap().to_ascii_lowercase();
        assert!(
            sent.contains(&format!("{NONCE_HEADER}: {}", request_nonce(&[1, 2]))),
            "{sent}"
        );
    }

    #[test]
    fn a_429_says_how_long_to_wait() {
        let (url, _) = serve_once_with(
            "429 Too Many Requests",
            "Retry-After: 42\r\n",
            r#"{"error":"quota_exceeded","message":"slow down"}"#,
        );
        let err = HttpTransport::new(&url, "t").exchange(vec![1]).unwrap_err();
        assert_eq!(
            err,
            TransportError::RetryAfter {
                seconds: 42,
                message: "slow down".into()
            }
        );
        let (url, _) = serve_once_with("429 Too Many Requests", "Retry-After: soon\r\n", "{}");
        let err = HttpTransport::new(&url, "t").exchange(vec![1]).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::RetryAfter {
                    seconds: DEFAULT_RETRY_AFTER,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_token_is_unauthorized_without_wipe() {
        let url = serve_once("401 Unauthorized", r#"{"error":"unauthorized"}"#);
        let err = HttpTransport::new(&url, "t").exchange(vec![1]).unwrap_err();
        assert!(matches!(
            err,
            TransportError::Unauthorized { wipe: false, .. }
        ));
    }

    #[test]
    fn other_errors_carry_status_and_code() {
        let url = serve_once(
            "413 Payload Too Large",
            r#"{"error":"too_large","message":"too big"}"#,
        );
        let err = HttpTransport::new(&url, "t").exchange(vec![1]).unwrap_err();
        assert_eq!(
            err,
            TransportError::Server {
                status: 413,
                code: "too_large".into(),
                message: "too big".into()
            }
        );
    }

    #[test]
    fn refused_connection_is_a_network_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = HttpTransport::new(&format!("http://127.0.0.1:{port}"), "t")
            .exchange(vec![1])
            .unwrap_err();
        assert!(matches!(err, TransportError::Network(_)), "{err:?}");
    }

    #[test]
    fn cancelled_exchange_sends_nothing() {
        let flag = Arc::new(AtomicBool::new(true));
        let err = HttpTransport::new("http://127.0.0.1:9", "t")
            .with_cancel(flag)
            .exchange(vec![1])
            .unwrap_err();
        assert_eq!(err, TransportError::Network(CANCELLED.into()));
    }
}
