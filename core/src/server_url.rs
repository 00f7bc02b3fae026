//! Which server URLs a phone may sync with (issue 8.5): `https://`, or plain `http://` only to
//! this machine (127.0.0.0/8, `::1`, `localhost`: tests, an emulator's tunnel). Over plain HTTP
//! on a real network anyone on the path reads the device token and every case, and can forge
//! answers; the bindings refuse such a URL when the phone is opened.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerUrlError {
    #[error(
        "server URL `{0}` uses plain http:// to another machine; use https:// (plain http:// is \
         only for 127.0.0.1, ::1 and localhost)"
    )]
    PlainHttp(String),
    #[error("server URL `{0}` must start with https:// (or http:// to this machine)")]
    BadScheme(String),
    #[error("server URL `{0}` names no host")]
    NoHost(String),
}

/// Checks a server base URL (`https://host[:port][/path]`).
pub fn check_server_url(url: &str) -> Result<(), ServerUrlError> {
    let shown = || url.chars().take(200).collect::<String>();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ServerUrlError::BadScheme(shown()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host_of(authority).ok_or_else(|| ServerUrlError::NoHost(shown()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        "http" => Err(ServerUrlError::PlainHttp(shown())),
        _ => Err(ServerUrlError::BadScheme(shown())),
    }
}

/// The host of `user@host:port` (brackets kept off IPv6 literals), lowercased.
fn host_of(authority: &str) -> Option<String> {
    let hostport = authority.rsplit('@').next()?;
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => hostport.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_plain_http_only_to_this_machine() {
        for ok in [
            "https://cases.example.gov.cn",
            "HTTPS://cases.example.gov.cn:8443/base/",
            "https://10.0.0.5",
            "http://127.0.0.1:8080",
            "http://127.9.9.9/",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "http://user@127.0.0.1:1",
        ] {
            assert_eq!(check_server_url(ok), Ok(()), "{ok}");
        }
        for plain in [
            "http://cases.example.gov.cn",
            "http://10.0.0.2:8080",
            "http://192.168.1.1",
            "http://[::2]:80",
            "http://localhost.evil.com",
            "http://127.0.0.1.evil.com",
            "http://127.0.0.1@evil.com",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                matches!(check_server_url(plain), Err(ServerUrlError::PlainHttp(_))),
                "{plain}"
            );
        }
        for bad in [
            "",
            "cases.example.gov.cn",
            "ftp://x",
            "file:///etc",
            "https://",
            "http://:80",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_error_says_what_to_do_and_cuts_long_urls() {
        let long = format!("http://{}.cn", "a".repeat(5000));
        let message = check_server_url(&long).unwrap_err().to_string();
        assert!(message.contains("use https://"), "{message}");
        assert!(message.len() < 500);
    }
}
