//! The OpenAPI document (`/openapi.json`) and its page (`/docs`): the document is OpenAPI 3.1, names every
//! route the router serves, and its references resolve. (That live answers match it is the schemathesis
//! suite's job: `crates/nova-cli/tests/cli/schemathesis.rs`.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestApp;

/// Every route the router serves, as `METHOD /path` with `{id}` for path parameters. A route added to the
/// router belongs here and in the document; the test below checks both against the live server.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
    "GET /docs",
    "GET /metrics",
    "POST /v1/documents",
    "GET /v1/documents",
    "GET /v1/documents/{id}",
    "GET /v1/documents/{id}/content",
    "GET /v1/documents/{id}/pages/{page}",
    "GET /v1/documents/{id}/pages/{page}/words",
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{id}",
    "GET /v1/jobs/{id}/result",
    "GET /v1/jobs/{id}/result/versions",
    "POST /v1/jobs/{id}/result/versions",
    "POST /v1/jobs/{id}/cancel",
    "GET /v1/jobs/{id}/events",
    "GET /v1/jobs/{id}/artifacts",
    "GET /v1/jobs/{id}/artifacts/{name}",
    "POST /v1/executions",
    "POST /v1/sandboxes",
    "GET /v1/sandboxes",
    "GET /v1/sandboxes/{id}",
    "DELETE /v1/sandboxes/{id}",
    "POST /v1/sandboxes/{id}/timeout",
    "POST /v1/sandboxes/{id}/code",
    "POST /v1/sandboxes/{id}/contexts",
    "GET /v1/sandboxes/{id}/contexts",
    "DELETE /v1/sandboxes/{id}/contexts/{context}",
    "POST /v1/sandboxes/{id}/commands",
    "GET /v1/sandboxes/{id}/commands",
    "DELETE /v1/sandboxes/{id}/commands/{pid}",
    "POST /v1/sandboxes/{id}/commands/{pid}/stdin",
    "GET /v1/sandboxes/{id}/files",
    "PUT /v1/sandboxes/{id}/files",
    "DELETE /v1/sandboxes/{id}/files",
    "GET /v1/sandboxes/{id}/files/entries",
    "GET /v1/programs",
    "GET /v1/programs/{id}",
    "DELETE /v1/programs/{id}",
    "POST /v1/programs/{id}/retire",
    "GET /v1/webhooks/secret",
    "GET /v1/webhooks/deliveries",
    "GET /v1/webhooks/deliveries/{id}",
    "POST /v1/webhooks/deliveries/{id}/resend",
    "GET /v1/usage",
    "GET /v1/exports/invoices",
    "GET /v1/queue",
    "POST /v1/responses",
    "GET /v1/responses/{id}",
    "POST /v1/responses/{id}/cancel",
    "POST /v1/schedules",
    "GET /v1/schedules",
    "GET /v1/schedules/{id}",
    "DELETE /v1/schedules/{id}",
    "POST /v1/schedules/{id}/pause",
    "POST /v1/schedules/{id}/resume",
    "POST /v1/batches",
    "GET /v1/batches",
    "GET /v1/batches/{id}",
    "POST /v1/batches/{id}/cancel",
    "GET /v1/batches/{id}/events",
    "GET /v1/batches/{id}/results",
];

async fn document(app: &TestApp) -> Value {
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("the document is JSON")
}

/// `METHOD /path` for every operation of the document.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                found.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "NOVA");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc.get("servers").is_none(), "paths are absolute, as served");

    let listed: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    let documented = operations(&doc);
    let missing: Vec<_> = listed.difference(&documented).collect();
    assert!(missing.is_empty(), "routes the router serves but the document omits: {missing:?}");
    let unknown: Vec<_> = documented.difference(&listed).collect();
    assert!(unknown.is_empty(), "operations the document names but the list here does not: {unknown:?}");

    // Each listed route is one the router really serves (not its `route_not_found` or `405` fallback).
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "x").replace("{name}", "a.csv").replace("{pid}", "1").replace("{context}", "c");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.client.request(method, app.url(&path)).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(status != 405 && !body.contains("route_not_found"), "{route}: {status} {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_every_reference_resolves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer");
            if path.starts_with("/v1/") {
                for status in ["401", "403", "429", "500"] {
                    assert!(responses.contains_key(status), "{method} {path}: no {status}");
                }
                assert_eq!(op["security"][0]["bearer"], Value::Array(vec![]), "{method} {path}: bearer");
            }
            if path.contains("{id}") {
                assert!(responses.contains_key("404"), "{method} {path}: no 404 for an unknown id");
            }
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");

    // Every `$ref` names a component that exists.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{}", refs.len());
    for reference in refs {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("external ref {reference}"));
        assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
    }
    app.stop().await;
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_docs_page_is_html_that_loads_only_the_document() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("fetch(\"/openapi.json\")"));
    // Self-contained: no script, style or font from elsewhere.
    for outside in ["http://", "https://", "//cdn", "src=\""] {
        assert!(!page.contains(outside), "the page refers to {outside}");
    }
    app.stop().await;
}

/// Found past schemathesis (which sends only UTF-8): an id that is not even UTF-8 once decoded answers the
/// API's JSON `404`, as the document says, not axum's plain-text `400`.
#[tokio::test]
async fn ids_that_are_not_utf8_answer_the_documented_404() {
    let app = TestApp::spawn().await;
    for (path, code) in [
        ("/v1/documents/%FF", "document_not_found"),
        ("/v1/documents/%FF/content", "document_not_found"),
        ("/v1/jobs/%C0", "job_not_found"),
        ("/v1/jobs/%FF/result", "job_not_found"),
        ("/v1/jobs/%FF/events", "job_not_found"),
        ("/v1/programs/%FF", "program_not_found"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some(code)), "{path}: {body}");
    }
    let response = app.client.post(app.url("/v1/jobs/%FF/cancel")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    app.stop().await;
}

/// Found past schemathesis: a `run_at` outside the years 0000 to 9999 (which chrono reads, as `+10000-...`)
/// made a job whose times no RFC 3339 reader takes; it is refused.
#[tokio::test]
async fn run_at_stays_within_rfc_3339_years() {
    let app = TestApp::spawn().await;
    let submit = |run_at: &str, wait: Option<u64>| {
        let mut body = serde_json::json!({"workflow": "noop", "run_at": run_at});
        if let Some(wait) = wait {
            body["queue_timeout_seconds"] = wait.into();
        }
        body
    };
    for (run_at, wait) in
        [("+10000-01-01T00:00:00Z", None), ("-0001-12-31T00:00:00Z", None), ("9999-12-31T00:00:00Z", Some(86_400))]
    {
        let (status, body) = app.post_json("/v1/jobs", &submit(run_at, wait)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_request")), "{run_at}: {body}");
    }
    let (status, job) = app.post_json("/v1/jobs", &submit("9999-12-30T00:00:00Z", Some(3600))).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["start_by"], "9999-12-30T01:00:00Z");
    app.stop().await;
}
