//! `POST /admin/sign-in` `{"name", "password"}`: an admin's password (Argon2id, see
//! `crate::admins`) for a session token that expires after `admins::SESSION_MS`; and
//! `GET /admin/me`: who the token belongs to.
//!
//! Brute force: failed sign-ins are counted per admin name in this process; after
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW_MS`] the name is refused (429, `Retry-After`)
//! until the window ends, whether the password is right or not. A correct password resets the
//! count. (Several server processes count separately: the limit is per process.)

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use gridcase_core::model::Millis;
use serde_json::json;

use super::admin::{admin_body, string_field};
use super::auth::Admin;
use super::{AppError, AppState};
use crate::admins::AdminCtx;

/// Failed sign-ins of one name allowed per window.
pub const MAX_FAILURES: u32 = 5;
/// The window failed sign-ins are counted in.
pub const FAILURE_WINDOW_MS: Millis = 15 * 60_000;
/// Names tracked at most (beyond, the oldest windows are forgotten first).
const MAX_TRACKED: usize = 10_000;

/// Failed sign-ins per admin name: (window start, failures).
#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, (Millis, u32)>>,
}

impl SignInLimiter {
    /// Seconds until `name` may try again, if it is locked out at `now`.
    pub fn locked(&self, name: &str, now: Millis) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = *map.get(name)?;
        let end = start + FAILURE_WINDOW_MS;
        (count >= MAX_FAILURES && now < end).then(|| ((end - now) as u64).div_ceil(1000))
    }

    pub fn failed(&self, name: &str, now: Millis) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (start, _)| now < *start + FAILURE_WINDOW_MS);
        }
        let entry = map.entry(name.to_owned()).or_insert((now, 0));
        if now >= entry.0 + FAILURE_WINDOW_MS {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
    }
}

/// A successful sign-in: who, and the session token with its expiry.
pub(super) struct SignedIn {
    pub admin: AdminCtx,
    pub token: String,
    pub expires_at: Millis,
}

/// Checks a name and password (with the per-name lockout) and opens a session. The one
/// sign-in of the JSON API and of the console's cookie.
pub(super) async fn check_and_open(
    state: &AppState,
    name: String,
    password: String,
) -> Result<SignedIn, AppError> {
    let now = (state.clock)();
    if let Some(retry) = state.sign_ins.locked(&name, now) {
        return Err(AppError::Refused {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_sign_ins",
            message: format!("too many failed sign-ins for this name; retry after {retry} s"),
        });
    }
    let store = state.store.clone();
    let who = name.clone();
    let signed = tokio::task::spawn_blocking(move || {
        let Some(admin) = store.check_admin_password(&who, &password)? else {
            return Ok(None);
        };
        let (token, expires_at) = store.open_session(&admin, &mut rand::rng(), now)?;
        Ok::<_, crate::store::StoreError>(Some(SignedIn {
            admin,
            token,
            expires_at,
        }))
    })
    .await??;
    let Some(signed) = signed else {
        state.sign_ins.failed(&name, now);
        return Err(AppError::Unauthorized);
    };
    state.sign_ins.succeeded(&name);
    Ok(signed)
}

/// The `name` and `password` of a sign-in body.
pub(super) async fn credentials(body: Body) -> Result<(String, String), AppError> {
    let map = admin_body(body).await?;
    let name = string_field(&map, "name")?.unwrap_or_default();
    let password = string_field(&map, "password")?.unwrap_or_default();
    Ok((name, password))
}

/// `POST /admin/sign-in`.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<serde_json::Value>, AppError> {
    let (name, password) = credentials(body).await?;
    let SignedIn {
        admin,
        token,
        expires_at,
    } = check_and_open(&state, name, password).await?;
    Ok(Json(json!({
        "token": token, "expires_at": expires_at, "name": admin.name,
        "role": admin.role, "jurisdiction": admin.jurisdiction.as_given(),
    })))
}

/// `GET /admin/me`: the authenticated admin.
pub(super) async fn me(Admin(admin): Admin) -> Json<serde_json::Value> {
    Json(json!({
        "name": admin.name, "role": admin.role, "jurisdiction": admin.jurisdiction.as_given(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_a_name_for_the_window() {
        let limiter = SignInLimiter::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(limiter.locked("zhang", i as Millis), None);
            limiter.failed("zhang", i as Millis);
        }
        assert_eq!(limiter.locked("zhang", 10), Some(900));
        assert_eq!(limiter.locked("li", 10), None, "per name");
        assert_eq!(
            limiter.locked("zhang", FAILURE_WINDOW_MS),
            None,
            "the window ends"
        );
        limiter.failed("zhang", FAILURE_WINDOW_MS);
        assert_eq!(
            limiter.locked("zhang", FAILURE_WINDOW_MS + 1),
            None,
            "a new window"
        );
        limiter.succeeded("zhang");
        assert!(limiter.failures.lock().unwrap().is_empty());
    }
}
