//! `/v1/programs`: the programs a model wrote, listed, shown, retired and deleted.

use nova_core::TenantId;
use nova_store::{program_scope, NewProgram};

use crate::helpers::TestApp;

#[tokio::test]
async fn programs_are_listed_shown_and_deleted() {
    let app = TestApp::spawn().await;
    let stored = app
        .store
        .insert_program(NewProgram {
            scope: program_scope(TenantId::DEFAULT),
            kind: "invoice.extract".into(),
            layout_key: "DE136695976".into(),
            labels: "invoice total".into(),
            code: "def extract(text):\n    return {}\n".into(),
            model: Some("scripted".into()),
        })
        .await
        .unwrap();
    let id = stored.id.to_string();

    let (status, page) = app.get("/v1/programs").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["id"], id.as_str());
    assert_eq!(page["data"][0]["status"], "active");
    assert!(page["data"][0].get("code").is_none(), "lists leave the code out");
    assert!(page["next_cursor"].is_null());

    let (status, one) = app.get(&format!("/v1/programs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["code"], "def extract(text):\n    return {}\n");
    assert_eq!(one["layout_key"], "DE136695976");

    // Retired: still listed, no longer among the programs extraction runs.
    let (status, retired) = app.post_json(&format!("/v1/programs/{id}/retire"), &serde_json::json!({})).await;
    assert_eq!((status, retired["status"].as_str()), (200, Some("retired")), "{retired}");
    let scope = program_scope(TenantId::DEFAULT);
    let active = app.store.active_programs(&scope, "invoice.extract", "DE136695976").await.unwrap();
    assert!(active.is_empty(), "a retired program is still run");
    assert_eq!(app.get("/v1/programs").await.1["data"][0]["status"], "retired");

    let deleted = app.client.delete(app.url(&format!("/v1/programs/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, body) = app.get(&format!("/v1/programs/{id}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("program_not_found")));
    let (status, _) = app.get("/v1/programs/prg_nonsense").await;
    assert_eq!(status, 404);

    // Another tenant's program is neither listed, shown nor deleted.
    let theirs = app
        .store
        .insert_program(NewProgram {
            scope: program_scope(TenantId::new()),
            kind: "invoice.extract".into(),
            layout_key: "DE136695976".into(),
            labels: "invoice total".into(),
            code: "def extract(text):\n    return {}\n".into(),
            model: None,
        })
        .await
        .unwrap();
    let (_, page) = app.get("/v1/programs").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0), "{page}");
    let (status, _) = app.get(&format!("/v1/programs/{}", theirs.id)).await;
    assert_eq!(status, 404);
    let deleted = app.client.delete(app.url(&format!("/v1/programs/{}", theirs.id))).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 404);
    assert!(app.store.get_program(theirs.id).await.unwrap().is_some(), "another tenant's program was deleted");
    let (status, _) = app.post_json(&format!("/v1/programs/{}/retire", theirs.id), &serde_json::json!({})).await;
    assert_eq!(status, 404);
    assert!(!app.store.get_program(theirs.id).await.unwrap().unwrap().retired, "another tenant's program was retired");
}
