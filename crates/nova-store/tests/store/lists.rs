//! The lists' conformance suite: jobs and documents newest first, a page at a time from a cursor, filtered
//! by status and workflow through indexes; and the event-log read that live streams poll. Every test runs on
//! SQLite and on PostgreSQL (see `nova_store::testing`).

use std::time::Duration;

use bytes::Bytes;
use nova_core::{DocumentKind, JobId, JobStatus, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{JobFilter, NewDocument, NewJob, Store};
use serde_json::json;

nova_store::conformance!(
    jobs_are_listed_newest_first_a_page_at_a_time,
    job_lists_filter_by_status_and_workflow,
    documents_are_listed_newest_first_a_page_at_a_time,
    list_queries_stay_on_their_indexes_with_a_long_history,
    the_log_read_says_when_a_job_has_finished,
);

const LEASE: Duration = Duration::from_secs(30);

async fn enqueue(store: &Store, workflow: Workflow) -> JobId {
    store.enqueue(NewJob::new(workflow, json!({}))).await.unwrap().job.id
}

/// Every page of the list of jobs matching `filter`, `limit` at a time: the ids in order, and the number
/// of pages.
async fn walk_jobs(store: &Store, filter: JobFilter, limit: u32) -> (Vec<JobId>, usize) {
    let (mut ids, mut pages, mut before) = (Vec::new(), 0, None);
    loop {
        let page = store.tenant(TenantId::DEFAULT).list_jobs(filter, before, limit).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= limit as usize);
        for job in &page.items {
            if let Some(status) = filter.status {
                assert_eq!(job.status, status, "{job:?}");
            }
            if let Some(workflow) = filter.workflow {
                assert_eq!(job.workflow, workflow, "{job:?}");
            }
        }
        ids.extend(page.items.iter().map(|j| j.id));
        if !page.more {
            return (ids, pages);
        }
        before = Some(page.items.last().expect("a page with more after it is not empty").id);
    }
}

async fn jobs_are_listed_newest_first_a_page_at_a_time(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let empty = f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), None, 10).await.unwrap();
    assert!(empty.items.is_empty() && !empty.more);

    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(enqueue(&f.store, Workflow::Noop).await);
    }
    created.reverse();
    for (limit, pages) in [(3, 3), (7, 1), (1, 7), (50, 1)] {
        assert_eq!(walk_jobs(&f.store, JobFilter::default(), limit).await, (created.clone(), pages), "limit {limit}");
    }

    // A job added between two pages shows on none of the older pages; none repeats or goes missing.
    let first = f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), None, 3).await.unwrap();
    let newer = enqueue(&f.store, Workflow::Noop).await;
    let rest =
        f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), Some(first.items[2].id), 10).await.unwrap();
    let seen: Vec<JobId> = first.items.iter().chain(&rest.items).map(|j| j.id).collect();
    assert_eq!(seen, created);
    assert!(!seen.contains(&newer));

    // Jobs come with their attempts, as `get_job` shows them; the limit is kept within bounds.
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let page = f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), None, 100).await.unwrap();
    let listed = page.items.iter().find(|j| j.id == claimed.job.id).unwrap();
    assert_eq!(Some(listed), f.store.get_job(claimed.job.id).await.unwrap().as_ref());
    assert_eq!(listed.attempts.len(), 1);
    assert_eq!(
        f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), None, 0).await.unwrap().items.len(),
        1
    );
    let capped = f.store.tenant(TenantId::DEFAULT).list_jobs(JobFilter::default(), None, u32::MAX).await.unwrap();
    assert_eq!((capped.items.len(), capped.more), (8, false));
}

async fn job_lists_filter_by_status_and_workflow(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    // noop: one succeeded, one canceled, one queued; code.run: one canceled, one queued.
    let noop_done = enqueue(&f.store, Workflow::Noop).await;
    let claimed = f.store.claim_batch(WorkerId::new(), LEASE, &[(Workflow::Noop, 1)]).await.unwrap();
    assert_eq!(claimed[0].job.id, noop_done);
    f.store.complete(noop_done, claimed[0].token, &json!({})).await.unwrap();
    let noop_canceled = enqueue(&f.store, Workflow::Noop).await;
    let code_canceled = enqueue(&f.store, Workflow::CodeRun).await;
    for id in [noop_canceled, code_canceled] {
        f.store.cancel(id).await.unwrap().unwrap();
    }
    let noop_queued = enqueue(&f.store, Workflow::Noop).await;
    let code_queued = enqueue(&f.store, Workflow::CodeRun).await;

    let filter = |status: Option<JobStatus>, workflow: Option<Workflow>| JobFilter { status, workflow, review: None };
    let cases = [
        (filter(Some(JobStatus::Canceled), None), vec![code_canceled, noop_canceled]),
        (filter(Some(JobStatus::Queued), None), vec![code_queued, noop_queued]),
        (filter(Some(JobStatus::Succeeded), None), vec![noop_done]),
        (filter(Some(JobStatus::Failed), None), vec![]),
        (filter(None, Some(Workflow::CodeRun)), vec![code_queued, code_canceled]),
        (filter(None, Some(Workflow::Noop)), vec![noop_queued, noop_canceled, noop_done]),
        (filter(None, Some(Workflow::InvoiceExtract)), vec![]),
        (filter(Some(JobStatus::Canceled), Some(Workflow::Noop)), vec![noop_canceled]),
        (filter(Some(JobStatus::Queued), Some(Workflow::CodeRun)), vec![code_queued]),
        (filter(Some(JobStatus::Running), Some(Workflow::Noop)), vec![]),
    ];
    for (filter, expected) in cases {
        for limit in [1, 2, 10] {
            let (ids, _) = walk_jobs(&f.store, filter, limit).await;
            assert_eq!(ids, expected, "{filter:?}, {limit} a page");
        }
    }
}

async fn documents_are_listed_newest_first_a_page_at_a_time(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let mut created = Vec::new();
    for i in 0..5 {
        let doc = NewDocument {
            bytes: Bytes::from(format!("document {i}")),
            filename: Some(format!("{i}.txt")),
            kind: DocumentKind::Text,
            page_count: None,
        };
        created.push(f.store.put_document(doc).await.unwrap().0);
    }
    created.reverse();
    for limit in [1, 2, 5, 200] {
        let (mut listed, mut before) = (Vec::new(), None);
        loop {
            let page = f.store.tenant(TenantId::DEFAULT).list_documents(before, limit).await.unwrap();
            assert!(page.items.len() <= limit as usize);
            listed.extend(page.items.iter().cloned());
            if !page.more {
                break;
            }
            before = page.items.last().map(|d| d.id);
        }
        assert_eq!(listed, created, "{limit} a page");
    }
}

async fn list_queries_stay_on_their_indexes_with_a_long_history(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    f.store.insert_history(20_000, true).await.unwrap();
    f.store.insert_document_history(20_000).await.unwrap();
    enqueue(&f.store, Workflow::CodeRun).await;
    let plans = f.store.explain_list_queries().await.unwrap();
    let parts: Vec<&str> = plans.split("--\n").collect();
    // The history has one tenant: walking the primary key backwards (and checking the tenant of each row)
    // reads no more than the tenant's index would, and PostgreSQL may pick either.
    let (pkey, documents_pkey) = match b {
        Backend::Sqlite => ("sqlite_autoindex_jobs_1", "sqlite_autoindex_documents_1"),
        Backend::Postgres => ("jobs_pkey", "documents_pkey"),
    };
    for (plan, indexes) in [
        (parts[0], ["jobs_by_tenant", pkey]),
        (parts[1], ["jobs_by_workflow"; 2]),
        (parts[2], ["jobs_by_workflow"; 2]),
        (parts[3], ["jobs_by_workflow"; 2]),
        (parts[4], ["jobs_by_review"; 2]),
        (parts[5], ["documents_by_tenant", documents_pkey]),
    ] {
        assert!(indexes.iter().any(|index| plan.contains(index)), "expected one of {indexes:?} in the plan:\n{plan}");
        let full_scan = plan.lines().any(|l| {
            let l = l.trim();
            l == "SCAN jobs" || l == "SCAN documents" || l.contains("Seq Scan on")
        });
        assert!(!full_scan, "a full scan:\n{plan}");
        // Rows come in index order; only the merge of several ranges may sort, and only what they read.
        let sorts = plan.contains("TEMP B-TREE") || plan.contains("Sort");
        let merges = plan.contains("UNION ALL") || plan.contains("Append");
        assert!(!sorts || merges, "a sort of every matching row:\n{plan}");
    }
}

async fn the_log_read_says_when_a_job_has_finished(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    // Read as the jobs' tenant sees them (`enqueue` submits as the default tenant).
    let tenant = f.store.tenant(TenantId::DEFAULT);
    assert_eq!(tenant.read_job_log(JobId::new(), 0, 10).await.unwrap(), None);
    let id = enqueue(&f.store, Workflow::Noop).await;

    let log = tenant.read_job_log(id, 0, 10).await.unwrap().unwrap();
    assert_eq!(log.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["queued"]);
    assert!(!log.finished);
    let log = tenant.read_job_log(id, 1, 10).await.unwrap().unwrap();
    assert!(log.events.is_empty() && !log.finished, "{log:?}");

    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    f.store.report_progress(id, claimed.token, &json!({"step": "one"})).await.unwrap();
    f.store.complete(id, claimed.token, &json!({})).await.unwrap();
    let log = tenant.read_job_log(id, 1, 10).await.unwrap().unwrap();
    let seqs: Vec<_> = log.events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(seqs, [(2, "started"), (3, "progress"), (4, "succeeded")]);
    assert!(log.finished);
    assert_eq!(log.events, f.store.job_events(id, 1, 10).await.unwrap(), "the same events as the plain read");
    let log = tenant.read_job_log(id, 2, 1).await.unwrap().unwrap();
    assert_eq!((log.events.len(), log.events[0].seq, log.finished), (1, 3, true));
    // Past its end, a finished job's log is empty and says so.
    let log = tenant.read_job_log(id, 4, 10).await.unwrap().unwrap();
    assert!(log.events.is_empty() && log.finished);
    let log = tenant.read_job_log(id, 99, 10).await.unwrap().unwrap();
    assert!(log.events.is_empty() && log.finished);
}
