//! The admin console (issue 12): a web app for the people at the desk, served under
//! `/console` from files embedded in the binary (no Node, no build step): plain HTML, ES
//! modules and CSS in `server/console/`.
//!
//! - [`session`]: signing in to a session cookie, its CSRF token, signing out;
//! - [`devices`]: enrolling a device with its token shown once as a QR code;
//! - [`live`]: server-sent events that tell an open page that cases changed;
//! - [`api`]: the console's own reads (overview, paged deadline lists). Everything else the
//!   console does goes through the admin API (`/admin/…`) with the session cookie, under the
//!   same role and jurisdiction rules as a bearer token, plus the CSRF check on changes
//!   (`super::auth`).
//!
//! [`security_headers`] gives every answer of the server a strict Content-Security-Policy (no
//! inline script or style, nothing from elsewhere, no framing) and `nosniff`.

mod api;
mod devices;
mod live;
mod session;

pub use live::LIVE_POLL;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppError;
use super::routes::Routes;

/// The Content-Security-Policy of every answer: the console's own files only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The console's files: (name, content type, bytes), embedded at build time.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../console/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/charts.js"),
    ),
    (
        "labels.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/labels.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/views.js"),
    ),
    (
        "case.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/case.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/dom.js"),
    ),
    (
        "draws.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/draws.js"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/vendor/echarts.min.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../../console/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("../../../console/index.html");

pub(super) fn routes(routes: Routes) -> Routes {
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    routes
        .add(GET, "/console", || async {
            Redirect::permanent("/console/")
        })
        .add(GET, "/console/", index)
        .add(GET, "/console/assets/{name}", asset)
        .add(GET, "/console/session", session::current)
        .add(POST, "/console/session", session::sign_in)
        .add(POST, "/console/session/end", session::sign_out)
        .add(GET, "/console/api/overview", api::overview)
        .add(GET, "/console/api/cases", api::cases)
        .add(GET, "/console/api/events", live::events)
        .add(POST, "/console/api/devices", devices::enrol)
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn asset(name: Result<Path<String>, PathRejection>) -> Result<Response, AppError> {
    let Path(name) = name?;
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| AppError::NotFound("console file".into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response())
}

/// Adds the security headers to an answer that does not set its own.
pub(super) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        let mut wanted: Vec<&str> = INDEX
            .split("/console/assets/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default())
            .collect();
        for (_, _, body) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            wanted.extend(
                body.split("from './")
                    .skip(1)
                    .map(|rest| rest.split('\'').next().unwrap_or_default()),
            );
        }
        assert!(wanted.contains(&"app.js"), "{wanted:?}");
        for name in wanted {
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "{name} is not embedded"
            );
        }
    }

    #[test]
    fn no_inline_script_or_style() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("<style"));
    }
}
