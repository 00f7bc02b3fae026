//! Every route of the API goes through [`Routes::add`], which builds the router and records the
//! route's method and path in the same step. So the list [`super::route_list`] returns is
//! exactly what the router answers, and `server/tests/openapi.rs` checks the OpenAPI document
//! (`server/openapi.json`, served at `GET /admin/openapi.json`) against it in both directions.
//!
//! Why a hand-written document with this one table (and not `utoipa` + `utoipa-axum`, which
//! derive the document from annotated handlers): the handlers take `Result<Query<_>,
//! QueryRejection>`, raw bodies read by `admin_body` and return untyped JSON, so every handler
//! would need a hand-written `#[utoipa::path]` annotation anyway, and three more crates (with
//! their proc macros) would build on a small shared machine. The document stays plain JSON a
//! reviewer reads, and the test still fails naming the method and path that the document and
//! the router disagree on. Adding a route: one `.add(Method::X, "/path", handler)` line, and
//! its entry under `"paths"` in `server/openapi.json`.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use super::AppState;

/// A router under construction and the (method, path) of each route it was given.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Routes `method path` to `handler` and records it.
    pub fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.router = self.router.route(path, on(filter, handler));
        self.list.push((method, path));
        self
    }

    /// Adds the routes `more` adds (a module's own routes).
    pub fn with(self, more: fn(Routes) -> Routes) -> Routes {
        more(self)
    }

    /// The recorded routes, in the order they were added.
    pub fn list(&self) -> &[(Method, &'static str)] {
        &self.list
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// The OpenAPI 3.1 document of the API, as served.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");
