//! Review over HTTP: the review queue, corrections stored as versions of a result, and exports that return
//! the latest version. Results are written through the store (as a worker would) so that which one asks for
//! review is known.

use std::time::Duration;

use nova_core::WorkerId;
use nova_store::testing::Backend;
use serde_json::{json, Value};

use crate::helpers::{self, dev_file, error_code, Options, TestApp};

nova_store::conformance!(a_correction_is_the_latest_version_and_leaves_the_review_queue);

/// Uploads `file` as `name`, submits its extraction and completes it with `result`; the job's id.
async fn extracted(app: &TestApp, file: &str, name: &str, result: &Value) -> String {
    let (status, doc) = app.upload_multipart(dev_file(file), name).await;
    assert_eq!(status, 201, "{doc}");
    let (status, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
    assert_eq!(status, 202, "{job}");
    let claimed = app.store.claim(WorkerId::new(), Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(claimed.job.id.to_string(), job["id"].as_str().unwrap());
    app.store.complete(claimed.job.id, claimed.token, result).await.unwrap();
    claimed.job.id.to_string()
}

async fn text(app: &TestApp, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, response.text().await.unwrap(), headers)
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap()).collect()
}

async fn a_correction_is_the_latest_version_and_leaves_the_review_queue(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend, Options { workers: 0, ..Options::default() }).await else { return };
    let unsure = json!({
        "invoice_number": "R-1", "currency": "EUR", "seller": {"name": "Acme"},
        "totals": {"grand_total": "119.00"},
        "lines": [{"name": "Bolts", "line_total": "100.00"}],
        "confidence": {"seller.name": 0.5, "invoice_number": 0.9},
        "review": {"needed": true, "reasons": [{"field": "seller.name", "why": "low_confidence", "detail": "0.50"}]}
    });
    let sure =
        json!({"invoice_number": "S-2", "currency": "EUR", "seller": {"name": "Beta AG"}, "review": {"needed": false}});
    let needs = extracted(&app, "facturx/mustang__103767-Invoice-2026-03-24-1.noxml.pdf", "unsure.pdf", &unsure).await;
    let fine = extracted(&app, "facturx/mustang__103767-Invoice-2026-03-24-1.pdf", "sure.pdf", &sure).await;

    // The queue holds the result that asks for review, and only it.
    let (status, queue) = app.get("/v1/jobs?review=needed").await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(ids(&queue), [needs.as_str()]);
    assert_eq!(queue["data"][0]["review"], "needed");
    assert_eq!(app.get(&format!("/v1/jobs/{fine}")).await.1.get("review"), None);
    let (status, body) = app.get("/v1/jobs?review=later").await;
    assert_eq!((status, error_code(&body)), (422, "invalid_review"));

    let (status, body, headers) = text(&app, &format!("/v1/jobs/{needs}/result")).await;
    assert_eq!((status, &headers["nova-result-version"]), (200, &"1".parse::<reqwest::header::HeaderValue>().unwrap()));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), unsure);

    // A reviewer fixes the seller's name and a line's amount, on version 1.
    let mut corrected = unsure.clone();
    corrected["seller"]["name"] = json!("Acme GmbH");
    corrected["lines"][0]["line_total"] = json!("110.00");
    let versions = format!("/v1/jobs/{needs}/result/versions");
    let (status, stored) =
        app.post_json(&versions, &json!({"invoice": corrected, "base_version": 1, "note": "checked"})).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!((stored["version"].as_u64(), stored["author"].as_str()), (Some(2), Some("loopback")));
    let changed: Vec<&str> =
        stored["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(changed, ["lines[0].line_total", "seller.name"]);
    assert_eq!(stored["changes"][1]["before"], "Acme");

    // A second reviewer who also started from version 1 is told, and nothing is overwritten.
    let (status, body) = app.post_json(&versions, &json!({"invoice": unsure, "base_version": 1})).await;
    assert_eq!((status, error_code(&body)), (409, "version_conflict"));

    // The result is the correction from now on; version 1 stays readable.
    let (_, body, headers) = text(&app, &format!("/v1/jobs/{needs}/result")).await;
    assert_eq!(headers["nova-result-version"], "2");
    let latest: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(latest["seller"]["name"], "Acme GmbH");
    assert_eq!(latest["lines"][0]["line_total"], "110.00");
    assert_eq!(latest["review"]["needed"], false);
    assert_eq!(
        (latest["confidence"]["seller.name"].as_f64(), latest["confidence"]["invoice_number"].as_f64()),
        (Some(1.0), Some(0.9))
    );
    assert_eq!(app.get(&format!("/v1/jobs/{needs}/result?version=1")).await.1, unsure);
    let (status, body) = app.get(&format!("/v1/jobs/{needs}/result?version=3")).await;
    assert_eq!((status, error_code(&body)), (404, "version_not_found"));
    let (status, body) = app.get(&format!("/v1/jobs/{needs}/result?version=0")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    let (_, listed) = app.get(&versions).await;
    let authors: Vec<(u64, &str)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["author"].as_str().unwrap()))
        .collect();
    assert_eq!(authors, [(1, "extraction"), (2, "loopback")]);
    assert_eq!(listed["data"][1]["note"], "checked");

    // It has left the queue for the reviewed list.
    assert_eq!(ids(&app.get("/v1/jobs?review=needed").await.1), Vec::<&str>::new());
    assert_eq!(ids(&app.get("/v1/jobs?review=reviewed").await.1), [needs.as_str()]);

    // Exports hold the correction: one row per invoice, or per line.
    let (status, csv, headers) = text(&app, "/v1/exports/invoices").await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("file,invoice_number,"), "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("unsure.pdf,R-1,") && r.contains(",Acme GmbH,")), "{csv}");
    assert!(rows.iter().any(|r| r.starts_with("sure.pdf,S-2,") && r.contains(",Beta AG,")), "{csv}");
    let (_, lines, _) = text(&app, "/v1/exports/invoices?rows=line").await;
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("unsure.pdf,R-1,") && lines[1].ends_with(",110.00"), "{lines:?}");
    let (_, reviewed, _) = text(&app, "/v1/exports/invoices?review=reviewed").await;
    assert_eq!(reviewed.lines().count(), 2, "{reviewed}");
    let (status, chosen) = app.get(&format!("/v1/exports/invoices?format=json&jobs={fine}")).await;
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen.as_array().unwrap().len(), 1);
    assert_eq!((chosen[0]["file"].as_str(), chosen[0]["version"].as_u64()), (Some("sure.pdf"), Some(1)));
    assert_eq!(chosen[0]["invoice"]["seller"]["name"], "Beta AG");
    for (query, code) in
        [("format=xlsx", "invalid_format"), ("rows=page", "invalid_rows"), ("jobs=job_nope", "job_not_found")]
    {
        let (status, body) = app.get(&format!("/v1/exports/invoices?{query}")).await;
        assert_eq!(error_code(&body), code, "{query}: {status} {body}");
    }

    // Bad corrections are refused with the reason, and change nothing.
    let bad = json!({"invoice": {"issue_date": "tomorrow"}});
    let (status, body) = app.post_json(&versions, &bad).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_invoice"));
    let (status, body) = app.post_json(&versions, &json!({"invoice": corrected, "extra": 1})).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, body) = app.post_json(&versions, &json!({"invoice": corrected, "note": "x".repeat(2001)})).await;
    assert_eq!((status, error_code(&body)), (422, "invalid_request"));
    let (status, noop) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    assert_eq!(status, 202);
    let noop = noop["id"].as_str().unwrap();
    let (status, body) = app.post_json(&format!("/v1/jobs/{noop}/result/versions"), &json!({"invoice": sure})).await;
    assert_eq!((status, error_code(&body)), (409, "job_not_finished"));
    let claimed = app.store.claim(WorkerId::new(), Duration::from_secs(60)).await.unwrap().unwrap();
    app.store.complete(claimed.job.id, claimed.token, &json!({"slept_ms": 0})).await.unwrap();
    let (status, body) = app.post_json(&format!("/v1/jobs/{noop}/result/versions"), &json!({"invoice": sure})).await;
    assert_eq!((status, error_code(&body)), (409, "not_an_invoice"));
    let (_, listed) = app.get(&versions).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "nothing stored by the refused requests");

    // Without a base version, a correction goes on the latest: confirming the result as it is.
    let (status, stored) = app.post_json(&versions, &json!({"invoice": latest})).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!((stored["version"].as_u64(), stored["changes"].as_array().map(Vec::len)), (Some(3), Some(0)));
    // Exports take the highest of several versions.
    let mut again = latest.clone();
    again["seller"]["name"] = json!("Acme Holding GmbH");
    assert_eq!(app.post_json(&versions, &json!({"invoice": again, "base_version": 3})).await.0, 201);
    let (_, exported) = app.get(&format!("/v1/exports/invoices?format=json&jobs={needs},{fine}")).await;
    let versions_and_sellers: Vec<(u64, &str)> = exported
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["version"].as_u64().unwrap(), e["invoice"]["seller"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(versions_and_sellers, [(4, "Acme Holding GmbH"), (1, "Beta AG")]);
    app.stop().await;
}

#[tokio::test]
async fn a_pdf_s_pages_are_shown_as_images_and_other_documents_have_none() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (_, doc) =
        app.upload_raw(dev_file("facturx/mustang__103767-Invoice-2026-03-24-1.noxml.pdf"), "application/pdf").await;
    let id = doc["id"].as_str().unwrap();
    let response = app.client.get(app.url(&format!("/v1/documents/{id}/pages/1"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: an A4 page at 120 dpi is about 992 × 1403 pixels.
    let (width, height) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert!((900..1100).contains(&width) && (1300..1500).contains(&height), "{width} × {height}");

    // Its words, with boxes that lie on the page: the invoice number stands in the top half.
    let (status, words) = app.get(&format!("/v1/documents/{id}/pages/1/words")).await;
    assert_eq!(status, 200, "{words}");
    assert!(words["width"].as_f64().unwrap() > 500.0, "{}", words["width"]);
    let number = words["words"].as_array().unwrap().iter().find(|w| w["text"] == "103767").expect("the number");
    let (y0, y1) = (number["y0"].as_f64().unwrap(), number["y1"].as_f64().unwrap());
    assert!(0.0 <= y0 && y0 < y1 && y1 < 0.5, "{number}");

    let pages = doc["page_count"].as_u64().unwrap();
    for page in [0, pages + 1] {
        for path in [format!("/v1/documents/{id}/pages/{page}"), format!("/v1/documents/{id}/pages/{page}/words")] {
            let (status, body) = app.get(&path).await;
            assert_eq!((status, error_code(&body)), (404, "page_not_found"), "{path}");
        }
    }
    let (_, text) = app.upload_raw(b"Invoice 1\nTotal 5.00 EUR".to_vec(), "text/plain").await;
    let (status, body) = app.get(&format!("/v1/documents/{}/pages/1", text["id"].as_str().unwrap())).await;
    assert_eq!((status, error_code(&body)), (422, "not_a_pdf"));
    app.stop().await;
}

/// The console's live list: the page first, then each change, and a job that leaves the filter says so.
#[tokio::test]
async fn the_job_list_follows_its_jobs_live() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (_, old) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    let mut all = helpers::EventStream::new(app.get_events("/v1/jobs?workflow=noop", None).await);
    let mut queued = helpers::EventStream::new(app.get_events("/v1/jobs?status=queued", None).await);
    let next = |item: Option<helpers::SseItem>| match item {
        Some(helpers::SseItem::Message { event, data, .. }) => (event.unwrap_or_default(), data),
        other => panic!("expected a message, got {other:?}"),
    };
    // The page as it stands.
    let (kind, job) = next(all.next().await);
    assert_eq!((kind.as_str(), &job["id"], &job["status"]), ("job", &old["id"], &json!("queued")));
    assert_eq!(next(queued.next().await).1["id"], old["id"]);

    // A new job, then its run: each change arrives as the job's whole state.
    let (_, new) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    let (kind, job) = next(all.next().await);
    assert_eq!((kind.as_str(), &job["id"], &job["status"]), ("job", &new["id"], &json!("queued")));
    assert_eq!(next(queued.next().await).1["id"], new["id"]);
    let claimed = app.store.claim(WorkerId::new(), Duration::from_secs(60)).await.unwrap().unwrap();
    app.store.complete(claimed.job.id, claimed.token, &json!({"slept_ms": 0})).await.unwrap();
    let done = claimed.job.id.to_string();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let (kind, job) = next(all.next().await);
        assert_eq!((kind.as_str(), job["id"].as_str()), ("job", Some(done.as_str())), "{job}");
        statuses.push(job["status"].as_str().unwrap().to_string());
    }
    // The queued-only list sees it leave.
    loop {
        let (kind, data) = next(queued.next().await);
        if kind == "left" {
            assert_eq!(data["id"], done.as_str());
            break;
        }
        assert_eq!(kind, "job", "{data}");
    }
    let refused = app.get_events("/v1/jobs?cursor=0190c3e0a0b07c2e8f3a6b5d4c3b2a19", None).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(error_code(&refused.json().await.unwrap()), "invalid_cursor");
    app.stop().await;
}
