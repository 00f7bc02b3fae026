//! Authentication as extractors: a handler that takes a [`Device`] runs only for an enrolled,
//! unrevoked device's bearer token; one that takes an [`Admin`] only for an enabled admin
//! account's token or session (`crate::admins`). A handler cannot forget the check: without
//! the argument it has nobody to act for.
//!
//! The console (`super::console`) signs in to a session held in a cookie. An [`Admin`] is also
//! found from that cookie when there is no bearer token; then every request that may change
//! something (not GET or HEAD) must carry the session's CSRF token ([`csrf_token`]) in the
//! [`CSRF_HEADER`] header, which another site's page cannot read or compute. Bearer-token
//! clients are unchanged: a browser never attaches a bearer token on its own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use gridcase_core::revocation::{self, RevocationKey};

use super::{AppError, AppState};
use crate::admins::AdminCtx;
use crate::store::{Auth, DeviceCtx, Store, sha256_hex};

/// The console's session cookie: a session token of `crate::admins` (`session.…`).
pub const SESSION_COOKIE: &str = "gridcase_session";
/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: a hash of the session's secret token under a label of its
/// own. Only whoever holds the session token (the signed-in page, which is given it at sign-in
/// and by `GET /console/session`) knows it; it changes with every session.
pub fn csrf_token(session_token: &str) -> String {
    sha256_hex(format!("gridcase console csrf\n{session_token}").as_bytes())
}

/// The token an [`Admin`] was found by: the bearer token, else the session cookie's.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    bearer(headers).or_else(|| session_cookie(headers))
}

/// The session token in the request's cookie, if it has one that looks like a session.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|token| token.starts_with("session.") && token.len() <= 128)
}

/// Equality that takes as long wherever the first difference lies.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a cookie-authenticated change without the session's CSRF token.
fn check_csrf(parts: &Parts, session: &str) -> Result<(), AppError> {
    if matches!(parts.method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let given = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match given {
        Some(given) if same_secret(given, &csrf_token(session)) => Ok(()),
        _ => Err(AppError::Refused {
            status: StatusCode::FORBIDDEN,
            code: "csrf",
            message: format!("a change made with the session cookie needs its `{CSRF_HEADER}`"),
        }),
    }
}

/// The device behind the request's bearer token. Refuses with 401 `unauthorized`, or 401
/// `revoked` (with `wipe`, and the revocation proof for the request's nonce header) for a
/// revoked device or user.
#[derive(Debug, Clone)]
pub struct Device(pub DeviceCtx);

/// The admin behind the request's bearer token (an admin token or an unexpired session of an
/// enabled admin): who acts, in which role, over which areas. Refuses with 401 `unauthorized`.
#[derive(Debug, Clone)]
pub struct Admin(pub AdminCtx);

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The proof for a revoked device's answer: keyed by its secret's hash (the token has just
/// been checked against it), over the request's nonce header. No valid nonce, no proof.
fn revocation_proof(token: &str, nonce: Option<&str>) -> Option<String> {
    let nonce = nonce?;
    let key = RevocationKey::of_token(token).ok()?;
    revocation::is_valid_nonce(nonce).then(|| key.proof(nonce))
}

/// A request's device bearer token, not checked yet: [`DeviceToken::check`] makes it a
/// [`Device`] (the one device check, read from the database at each request: a revocation
/// holds at once, in every server process). The sync handler checks it on the blocking thread
/// that then decodes and answers the request, saving a hop between threads; every other
/// handler takes a [`Device`]. Refuses a request without a bearer token with 401.
#[derive(Debug)]
pub struct DeviceToken {
    token: String,
    /// The request's revocation nonce header, for the proof of a revoked answer.
    nonce: Option<String>,
}

impl DeviceToken {
    /// The enrolled, unrevoked device this token belongs to, or 401 `unauthorized`, or 401
    /// `revoked` (with the proof for the nonce). Blocking: it reads the database.
    pub fn check(self, store: &Store) -> Result<Device, AppError> {
        match store.authenticate(&self.token)? {
            Auth::Device(device) => Ok(Device(device)),
            Auth::Unknown => Err(AppError::Unauthorized),
            Auth::Revoked => Err(AppError::Revoked {
                proof: revocation_proof(&self.token, self.nonce.as_deref()),
            }),
        }
    }
}

impl FromRequestParts<AppState> for DeviceToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        let nonce = parts
            .headers
            .get(revocation::NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(DeviceToken { token, nonce })
    }
}

impl FromRequestParts<AppState> for Device {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = DeviceToken::from_request_parts(parts, state).await?;
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || token.check(&store)).await?
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = match bearer(&parts.headers) {
            Some(token) => token,
            None => {
                let session = session_cookie(&parts.headers).ok_or(AppError::Unauthorized)?;
                check_csrf(parts, &session)?;
                session
            }
        };
        let store = state.store.clone();
        let now = (state.clock)();
        tokio::task::spawn_blocking(move || store.authenticate_admin(&token, now))
            .await??
            .map(Admin)
            .ok_or(AppError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies() {
        let mut headers = HeaderMap::new();
        assert_eq!(session_cookie(&headers), None);
        headers.insert(
            header::COOKIE,
            "a=b; gridcase_session=session.xyz; c=d".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("session.xyz"));
        headers.insert(
            header::COOKIE,
            "gridcase_session=admin.xyz".parse().unwrap(),
        );
        assert_eq!(
            session_cookie(&headers),
            None,
            "only sessions ride in cookies"
        );
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
        assert_ne!(csrf_token("session.a"), csrf_token("session.b"));
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            headers.insert(header::AUTHORIZATION, bad.parse().unwrap());
            assert_eq!(bearer(&headers), None, "{bad}");
        }
    }
}
