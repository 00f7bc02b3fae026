//! `POST /console/api/devices` `{"user", "server"}`: enrols a device for a user (the admin
//! action `enrol_device_as`: role and jurisdiction checked) and answers its token once, with
//! the same enrolment as a QR code (SVG) for the phone app to scan. The code holds
//! `{"server": "<the address the phone syncs with>", "token": "<device token>"}`; `server` is
//! what the page sends (its own address, which the server cannot know behind a proxy), and
//! must be an `http://` or `https://` address. The answer is `no-store`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use qrcode::QrCode;
use qrcode::render::svg;
use serde_json::json;

use super::super::admin::admin_body;
use super::super::auth::Admin;
use super::super::people::required;
use super::super::{AppError, AppState};

/// The longest server address taken.
const MAX_SERVER_CHARS: usize = 200;

/// What the phone app scans, as SVG.
pub fn enrolment_qr(server: &str, token: &str) -> Result<String, AppError> {
    let payload = json!({"server": server, "token": token}).to_string();
    let code =
        QrCode::new(payload.as_bytes()).map_err(|e| AppError::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

fn check_server(server: &str) -> Result<(), AppError> {
    let ok = (server.starts_with("http://") || server.starts_with("https://"))
        && server.chars().count() <= MAX_SERVER_CHARS
        && server.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest {
            code: "bad_server",
            message: "`server` is the http(s) address the phone syncs with".into(),
        })
    }
}

pub(super) async fn enrol(
    Admin(admin): Admin,
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, AppError> {
    let map = admin_body(body).await?;
    let user = required(&map, "user")?;
    let server = required(&map, "server")?;
    check_server(&server)?;
    let now = (state.clock)();
    let store = state.store.clone();
    let who = user.clone();
    let token = tokio::task::spawn_blocking(move || store.enrol_device_as(&admin, &who, now))
        .await?
        .map_err(AppError::invalid_as("bad_user"))?;
    let device = token.split_once('.').map(|(d, _)| d.to_owned());
    let qr = enrolment_qr(&server, &token)?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"user": user, "device": device, "token": token, "qr_svg": qr})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_and_servers_are_checked() {
        let svg = enrolment_qr("https://gridcase.example", "abc.def").unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        assert!(check_server("http://127.0.0.1:8080").is_ok());
        for bad in ["ftp://x", "javascript:alert(1)", "https://a b", ""] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
        assert!(check_server(&format!("https://{}", "a".repeat(300))).is_err());
    }
}
