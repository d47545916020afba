//! The scheduler on both backends: each due time enqueues exactly one job however many processes fire at
//! once, times missed while nothing ran follow the schedule's policy, and paused schedules enqueue nothing.
//! Times are given to `fire_due` as `now`, so nothing here waits for a clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_app::schedules::{fire_due, job_key};
use nova_core::{CronSchedule, MissedPolicy, Schedule, TenantId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{NewJob, NewSchedule, Store};
use serde_json::json;

nova_store::conformance!(
    each_time_enqueues_one_job_however_many_processes_fire,
    missed_times_follow_the_schedule_s_policy,
    a_paused_schedule_enqueues_nothing_and_resumes_from_now,
    a_tenant_holds_at_most_its_limit_of_schedules,
    a_time_that_finds_its_tenant_at_its_limit_of_unfinished_jobs_is_skipped,
);

async fn create(store: &Store, cron: &str, missed: MissedPolicy) -> Schedule {
    let new = NewSchedule {
        name: Some("test".into()),
        cron: cron.into(),
        timezone: "UTC".into(),
        workflow: Workflow::Noop,
        input: json!({"sleep_ms": 1}),
        priority: 5,
        max_attempts: 2,
        timeout: Duration::from_secs(60),
        missed,
        paused: false,
    };
    let parsed = CronSchedule::parse(cron, "UTC").unwrap();
    store.tenant(TenantId::DEFAULT).create_schedule(new, &parsed).await.unwrap()
}

async fn jobs_of(t: &TestStore, schedule: &Schedule) -> i64 {
    let key = format!("schedule:{}:%", schedule.id);
    t.count(&format!("SELECT COUNT(*) FROM jobs WHERE idempotency_key LIKE '{key}'")).await
}

async fn each_time_enqueues_one_job_however_many_processes_fire(b: Backend) {
    let Some(t) = TestStore::new(b).await else { return };
    let schedule = create(&t.store, "0 * * * *", MissedPolicy::Latest).await;
    // A second process on the same database.
    let other = Store::connect(&t.url, &t.dir.path().join("blobs")).await.unwrap();
    let at = schedule.next_run_at;
    let (a, b2) = tokio::join!(fire_due(&t.store, at, None), fire_due(&other, at, None));
    let made = a.unwrap() + b2.unwrap();
    assert!(made >= 1, "the due time enqueued nothing");
    assert_eq!(jobs_of(&t, &schedule).await, 1, "one job for the time, whoever fired it");
    let job_id = keyed_job(&t.store, &job_key(schedule.id, at)).await.expect("the time's job");
    let job = t.store.get_job(job_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((job.workflow, job.priority, job.max_attempts, job.timeout_seconds), (Workflow::Noop, 5, 2, 60));
    assert_eq!(job.input, json!({"sleep_ms": 1}));

    let moved = t.store.tenant(TenantId::DEFAULT).get_schedule(schedule.id).await.unwrap().unwrap();
    assert_eq!(moved.next_run_at, at + chrono::Duration::hours(1));
    assert_eq!((moved.last_run_at, moved.last_job_id.map(|j| j.to_string())), (Some(at), Some(job_id)));
    // Fired again at the same moment: nothing more is due.
    assert_eq!(fire_due(&t.store, at, None).await.unwrap(), 0);
    assert_eq!(jobs_of(&t, &schedule).await, 1);
}

/// The id of the job with idempotency key `key`, found as a client finds it: submitting the same job under
/// the same key answers with the first one.
async fn keyed_job(store: &Store, key: &str) -> Option<String> {
    let again = NewJob { idempotency_key: Some(key.into()), ..NewJob::new(Workflow::Noop, json!({"sleep_ms": 1})) };
    let enqueued = store.enqueue(again).await.unwrap();
    (!enqueued.created).then(|| enqueued.job.id.to_string())
}

async fn missed_times_follow_the_schedule_s_policy(b: Backend) {
    let Some(t) = TestStore::new(b).await else { return };
    let all = create(&t.store, "0 * * * *", MissedPolicy::All).await;
    let latest = create(&t.store, "0 * * * *", MissedPolicy::Latest).await;
    let skip = create(&t.store, "0 * * * *", MissedPolicy::Skip).await;
    // Down for five hours and a half after the first time: five of its times missed, the last half an hour
    // ago.
    let now: DateTime<Utc> = all.next_run_at + chrono::Duration::minutes(4 * 60 + 30);
    fire_due(&t.store, now, None).await.unwrap();
    assert_eq!(jobs_of(&t, &all).await, 5, "all: a job per missed time");
    assert_eq!(jobs_of(&t, &latest).await, 1, "latest: one job");
    assert_eq!(jobs_of(&t, &skip).await, 0, "skip: the times were more than a minute late");
    for schedule in [&all, &latest, &skip] {
        let moved = t.store.tenant(TenantId::DEFAULT).get_schedule(schedule.id).await.unwrap().unwrap();
        assert!(moved.next_run_at > now, "{} was not moved past now", schedule.missed.as_str());
    }
    let latest_key = job_key(latest.id, all.next_run_at + chrono::Duration::hours(4));
    assert!(keyed_job(&t.store, &latest_key).await.is_some(), "latest ran the last missed time");
}

async fn a_paused_schedule_enqueues_nothing_and_resumes_from_now(b: Backend) {
    let Some(t) = TestStore::new(b).await else { return };
    let schedule = create(&t.store, "*/5 * * * *", MissedPolicy::All).await;
    let tenant = t.store.tenant(TenantId::DEFAULT);
    let paused = tenant.set_schedule_paused(schedule.id, true, None).await.unwrap().unwrap();
    assert!(paused.paused);
    let later = schedule.next_run_at + chrono::Duration::hours(1);
    // A scheduler that read the schedule before the pause cannot move it on after.
    assert!(!t.store.advance_schedule(schedule.id, schedule.next_run_at, later, None).await.unwrap());
    assert_eq!(fire_due(&t.store, later, None).await.unwrap(), 0);
    assert_eq!(jobs_of(&t, &schedule).await, 0);
    let next = CronSchedule::parse("*/5 * * * *", "UTC").unwrap().next_after(later).unwrap();
    let resumed = tenant.set_schedule_paused(schedule.id, false, Some(next)).await.unwrap().unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_run_at, next, "resumed from its next time, the paused hour not caught up");
    assert_eq!(fire_due(&t.store, later, None).await.unwrap(), 0);
    assert_eq!(fire_due(&t.store, next, None).await.unwrap(), 1);
}

async fn a_time_that_finds_its_tenant_at_its_limit_of_unfinished_jobs_is_skipped(b: Backend) {
    let Some(t) = TestStore::new(b).await else { return };
    let schedule = create(&t.store, "0 * * * *", MissedPolicy::All).await;
    for _ in 0..2 {
        t.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap();
    }
    // Three times due, with room for one more unfinished job: the first is made, the other two skipped.
    let now = schedule.next_run_at + chrono::Duration::hours(2);
    assert_eq!(fire_due(&t.store, now, Some(3)).await.unwrap(), 1);
    assert_eq!(jobs_of(&t, &schedule).await, 1);
    assert!(keyed_job(&t.store, &job_key(schedule.id, schedule.next_run_at)).await.is_some());
    let moved = t.store.tenant(TenantId::DEFAULT).get_schedule(schedule.id).await.unwrap().unwrap();
    assert!(moved.next_run_at > now, "the skipped times are not tried again");
    // Room for one more: the next time is made, and the one after it skipped.
    let next = moved.next_run_at;
    assert_eq!(fire_due(&t.store, next, Some(4)).await.unwrap(), 1);
    assert_eq!(fire_due(&t.store, next + chrono::Duration::hours(1), Some(4)).await.unwrap(), 0);
    assert_eq!(jobs_of(&t, &schedule).await, 2);
}

async fn a_tenant_holds_at_most_its_limit_of_schedules(b: Backend) {
    let Some(t) = TestStore::new(b).await else { return };
    for _ in 0..nova_store::MAX_SCHEDULES_PER_TENANT {
        create(&t.store, "@daily", MissedPolicy::Latest).await;
    }
    let cron = CronSchedule::parse("@daily", "UTC").unwrap();
    let new = NewSchedule {
        name: None,
        cron: "@daily".into(),
        timezone: "UTC".into(),
        workflow: Workflow::Noop,
        input: json!({}),
        priority: 0,
        max_attempts: 1,
        timeout: Duration::from_secs(1),
        missed: MissedPolicy::Latest,
        paused: false,
    };
    let refused = t.store.tenant(TenantId::DEFAULT).create_schedule(new.clone(), &cron).await;
    assert!(matches!(refused, Err(nova_store::StoreError::LimitReached(_))), "{refused:?}");
    assert_eq!(
        t.store.tenant(TenantId::DEFAULT).list_schedules().await.unwrap().len() as i64,
        nova_store::MAX_SCHEDULES_PER_TENANT
    );
    // Another tenant has its own.
    let other = TenantId::new();
    assert!(t.store.tenant(other).create_schedule(new, &cron).await.is_ok());
}
