//! The program cache's conformance suite: stored programs found by layout, counted, retired, listed a page
//! at a time and deleted, within their scope. Every test runs on SQLite and on PostgreSQL.

use nova_store::testing::{Backend, TestStore};
use nova_store::{NewProgram, Store};

nova_store::conformance!(
    programs_are_found_by_layout_and_retired_after_failures,
    programs_are_listed_and_deleted_per_scope
);

fn program(scope: &str, key: &str) -> NewProgram {
    NewProgram {
        scope: scope.into(),
        kind: "invoice.extract".into(),
        layout_key: key.into(),
        labels: "invoice total vat".into(),
        code: "def extract(text):\n    return {}\n".into(),
        model: Some("m".into()),
    }
}

async fn store(backend: Backend) -> Option<(TestStore, Store)> {
    let test = TestStore::new(backend).await?;
    let store = test.store.clone();
    Some((test, store))
}

async fn programs_are_found_by_layout_and_retired_after_failures(backend: Backend) {
    let Some((_test, store)) = store(backend).await else { return };
    let p = store.insert_program(program("", "DE1")).await.unwrap();
    assert_eq!((p.successes, p.failures, p.retired), (1, 0, false));
    store.insert_program(program("", "DE2")).await.unwrap();
    store.insert_program(program("ten_x", "DE1")).await.unwrap();
    let found = store.active_programs("", "invoice.extract", "DE1").await.unwrap();
    assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), vec![p.id]);
    assert_eq!(found[0].code, "def extract(text):\n    return {}\n");

    assert!(!store.record_program_run(p.id, false, 2).await.unwrap());
    // A success in between resets the count of failures in a row.
    assert!(!store.record_program_run(p.id, true, 2).await.unwrap());
    assert!(!store.record_program_run(p.id, false, 2).await.unwrap());
    assert!(store.record_program_run(p.id, false, 2).await.unwrap(), "retired at the second failure in a row");
    let p = store.get_program(p.id).await.unwrap().unwrap();
    assert_eq!((p.successes, p.failures, p.retired), (2, 2, true));
    assert!(p.last_used_at.is_some());
    assert!(store.active_programs("", "invoice.extract", "DE1").await.unwrap().is_empty());
}

async fn programs_are_listed_and_deleted_per_scope(backend: Backend) {
    let Some((_test, store)) = store(backend).await else { return };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.insert_program(program("", &format!("K{i}"))).await.unwrap().id);
    }
    store.insert_program(program("ten_other", "K0")).await.unwrap();
    let first = store.list_programs("", 3, None).await.unwrap();
    assert!(first.more);
    let second = store.list_programs("", 3, first.items.last().map(|p| p.id)).await.unwrap();
    assert!(!second.more);
    let listed: Vec<_> = first.items.iter().chain(&second.items).map(|p| p.id).collect();
    ids.reverse();
    assert_eq!(listed, ids, "newest first, every program of the scope once");

    assert!(!store.delete_program("ten_other", ids[0]).await.unwrap(), "another scope cannot delete it");
    assert!(store.delete_program("", ids[0]).await.unwrap());
    assert!(store.get_program(ids[0]).await.unwrap().is_none());
    assert!(!store.delete_program("", ids[0]).await.unwrap());
}
