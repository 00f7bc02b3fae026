//! The console's session: `POST /console/session` `{"name", "password"}` signs in with the
//! admin's password (the sign-in of `super::super::sign_in`, its lockout included) and sets
//! the session token in an HttpOnly, SameSite=Strict cookie (`Secure` when the server is
//! configured for TLS); the answer carries the session's CSRF token, never the session token.
//! `GET /console/session` tells the page who is signed in and the CSRF token again (after a
//! reload); `POST /console/session/end` (with the CSRF token) ends the session.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::super::auth::{Admin, SESSION_COOKIE, csrf_token, session_cookie};
use super::super::sign_in::{SignedIn, check_and_open, credentials};
use super::super::{AppError, AppState};
use crate::admins::{AdminCtx, SESSION_MS};

/// The `Set-Cookie` value holding `token` (or clearing the cookie when `None`).
fn cookie(token: Option<&str>, secure: bool) -> String {
    let (value, max_age) = match token {
        Some(token) => (token, SESSION_MS / 1000),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}

fn who(admin: &AdminCtx, csrf: String) -> serde_json::Value {
    json!({
        "name": admin.name, "role": admin.role, "jurisdiction": admin.jurisdiction.as_given(),
        "csrf": csrf,
    })
}

/// `POST /console/session`. Only a JSON body is taken: a page of another site can post a
/// form to sign a browser in to the other site's account (login CSRF), but cannot send
/// `application/json` without the server's consent (a CORS preflight it never gives).
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(AppError::Refused {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "a sign-in is a JSON body".into(),
        });
    }
    let (name, password) = credentials(body).await?;
    let SignedIn {
        admin,
        token,
        expires_at,
    } = check_and_open(&state, name, password).await?;
    let mut answer = who(&admin, csrf_token(&token));
    answer["expires_at"] = json!(expires_at);
    Ok((
        [
            (
                header::SET_COOKIE,
                cookie(Some(&token), state.secure_cookie),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(answer),
    )
        .into_response())
}

/// `GET /console/session`: the signed-in admin and the CSRF token (401 without a session).
pub(super) async fn current(Admin(admin): Admin, headers: HeaderMap) -> Result<Response, AppError> {
    // A bearer token has no CSRF token: the console is for cookie sessions.
    let token = session_cookie(&headers).ok_or(AppError::Unauthorized)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(who(&admin, csrf_token(&token))),
    )
        .into_response())
}

/// `POST /console/session/end`: ends the session (the CSRF check ran in [`Admin`]) and clears
/// the cookie.
pub(super) async fn sign_out(
    Admin(_): Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let token = session_cookie(&headers).ok_or(AppError::Unauthorized)?;
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.end_session(&token)).await??;
    Ok((
        [(header::SET_COOKIE, cookie(None, state.secure_cookie))],
        Json(json!({"signed_out": true})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let plain = cookie(Some("session.abc"), false);
        assert_eq!(
            plain,
            "gridcase_session=session.abc; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict"
        );
        assert!(cookie(Some("session.abc"), true).ends_with("; Secure"));
        assert!(cookie(None, false).contains("gridcase_session=; Path=/; Max-Age=0"));
    }
}
