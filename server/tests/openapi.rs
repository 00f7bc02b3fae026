//! The OpenAPI document (issue 11.6) against the routes that exist, both ways: every route the
//! router is built from (`http::route_list`) is documented, and every documented operation
//! reaches a route of `app(state)` (no 404 or 405). A failure names the method and path.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use gridcase_server::http::route_list;
use gridcase_server::testing::{Backend, TestDb};
use gridcase_server::{AppState, app};
use serde_json::Value;
use tower::ServiceExt;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(method in upper case, path)` of every operation under the document's `paths`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

fn routed() -> BTreeSet<(String, String)> {
    route_list()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect()
}

async fn served_document(app: &axum::Router) -> Value {
    let req = Request::get("/admin/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the document is served without a token"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).expect("the served document is JSON")
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes_both_ways() {
    let db = TestDb::new(Backend::Sqlite);
    let app = app(AppState::new(Arc::new(db.open())));
    let doc = served_document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1, got {}",
        doc["openapi"]
    );
    let (documented, routed) = (documented(&doc), routed());
    let undocumented: Vec<String> = routed
        .difference(&documented)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routed but missing from server/openapi.json (add them under \"paths\"): {undocumented:?}"
    );
    let unrouted: Vec<String> = documented
        .difference(&routed)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        unrouted.is_empty(),
        "in server/openapi.json but not routed (add the route with `Routes::add`, or \
         remove the entry): {unrouted:?}"
    );
    // Each documented operation reaches a handler of the real router (without a token, the
    // admin routes answer 401; the router's own answers for no route are 404 and 405).
    for (method, path) in &documented {
        let uri = example_uri(&doc, method, path);
        let req = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but {uri} answers {status}"
        );
    }
}

/// `path` with each `{param}` replaced by the `example` the document gives for it, or by
/// `x-param` (a route that must answer for any value, e.g. an unknown case id gets 401 or 404
/// from its handler, which the router's own 404 is told apart from only by an example).
fn example_uri(doc: &Value, method: &str, path: &str) -> String {
    let operation = &doc["paths"][path][method.to_lowercase()];
    let mut uri = path.to_owned();
    for param in operation["parameters"].as_array().into_iter().flatten() {
        if let (Some(name), Some(example)) = (param["name"].as_str(), param["example"].as_str()) {
            uri = uri.replace(&format!("{{{name}}}"), example);
        }
    }
    uri.replace('{', "x-").replace('}', "")
}

/// The test above would notice a route missing from either side.
#[test]
fn a_missing_route_is_named() {
    let mut doc: Value = serde_json::from_str(gridcase_server::http::routes::OPENAPI_JSON).unwrap();
    doc["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/admin/report");
    let missing: Vec<_> = routed().difference(&documented(&doc)).cloned().collect();
    assert_eq!(missing, [("GET".to_owned(), "/admin/report".to_owned())]);
}
