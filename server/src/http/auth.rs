//! Authentication as extractors: a handler that takes a [`Device`] runs only for an enrolled,
//! unrevoked device's bearer token; one that takes an [`Admin`] only for an enabled admin
//! account's token or session (`crate::admins`). A handler cannot forget the check: without
//! the argument it has nobody to act for.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use gridcase_core::revocation::{self, RevocationKey};

use super::{AppError, AppState};
use crate::admins::AdminCtx;
use crate::store::{Auth, DeviceCtx};

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
fn revocation_proof(token: &str, headers: &HeaderMap) -> Option<String> {
    let nonce = headers.get(revocation::NONCE_HEADER)?.to_str().ok()?;
    let key = RevocationKey::of_token(token).ok()?;
    revocation::is_valid_nonce(nonce).then(|| key.proof(nonce))
}

impl FromRequestParts<AppState> for Device {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        let store = state.store.clone();
        let checked = token.clone();
        match tokio::task::spawn_blocking(move || store.authenticate(&checked)).await?? {
            Auth::Device(device) => Ok(Device(device)),
            Auth::Unknown => Err(AppError::Unauthorized),
            Auth::Revoked => Err(AppError::Revoked {
                proof: revocation_proof(&token, &parts.headers),
            }),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
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
