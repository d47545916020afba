//! The scheduler: every second, in every process with a store, the due schedules enqueue their jobs.
//!
//! Each due time's job carries the idempotency key `schedule:{id}:{time}`, unique per tenant, so the job is
//! made once however many processes fire the schedule at once, and again after a crash between the job and
//! the schedule's move (the same key finds the same job). The schedule is then moved on to its first time
//! after now with a compare-and-set on the time it was read at: the first process to get there moves it.
//! What a schedule does with the times missed while no process ran is its [`nova_core::MissedPolicy`]; a
//! time that finds its tenant at its limit of unfinished jobs is skipped ([`fire_due`]).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use nova_core::{error_chain, CronSchedule, JobId};
use nova_store::{DueSchedule, NewJob, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often due schedules are looked for.
pub const EVERY: Duration = Duration::from_secs(1);
/// Due schedules taken at once.
const BATCH: u32 = 100;

/// Fires due schedules every [`EVERY`] until `shutdown`. `max_unfinished` is the most unfinished jobs a
/// tenant may have, as the API enforces it: see [`fire_due`].
pub async fn run(store: Store, max_unfinished: Option<u32>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = fire_due(&store, Utc::now(), max_unfinished).await {
            warn!(error = %error_chain(&e), "firing due schedules failed; trying again");
        }
    }
}

/// Enqueues the jobs of every schedule due at `now` and moves each on; how many jobs were made. A time whose
/// tenant has `max_unfinished` unfinished jobs already is skipped, as a submission would be refused then
/// (`429 too_many_jobs`): a schedule cannot grow a backlog past the tenant's limit.
pub async fn fire_due(store: &Store, now: DateTime<Utc>, max_unfinished: Option<u32>) -> Result<usize, StoreError> {
    let mut made = 0;
    for due in store.due_schedules(now, BATCH).await? {
        // One schedule that cannot be fired (its store write failed) must not hold up the others.
        let id = due.schedule.id;
        match fire(store, due, now, max_unfinished).await {
            Ok(n) => made += n,
            Err(e) => warn!(schedule = %id, error = %error_chain(&e), "firing a schedule failed; trying again"),
        }
    }
    Ok(made)
}

/// The key of the job a schedule enqueues for its time `at`.
pub fn job_key(schedule: nova_core::ScheduleId, at: DateTime<Utc>) -> String {
    format!("schedule:{schedule}:{}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

async fn fire(
    store: &Store,
    due: DueSchedule,
    now: DateTime<Utc>,
    max_unfinished: Option<u32>,
) -> Result<usize, StoreError> {
    let DueSchedule { tenant, schedule } = due;
    let cron = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
        Ok(cron) => cron,
        Err(e) => {
            // Stored after the same check, so only a newer time-zone database could refuse it: pause it
            // rather than try it every second.
            warn!(schedule = %schedule.id, error = %e, "a stored schedule no longer parses; pausing it");
            store.tenant(tenant).set_schedule_paused(schedule.id, true, None).await?;
            return Ok(0);
        }
    };
    let mut last: Option<(DateTime<Utc>, JobId)> = None;
    let times = schedule.missed.times_to_enqueue(&cron, schedule.next_run_at, now);
    let mut made = 0;
    // Counted once, then kept up with the jobs made here (as the API's check, a quota, not a lock).
    let mut unfinished = match max_unfinished {
        Some(cap) if !times.is_empty() => store.tenant(tenant).count_unfinished_jobs(cap).await?,
        _ => 0,
    };
    for at in &times {
        if let Some(cap) = max_unfinished {
            if unfinished >= cap {
                warn!(schedule = %schedule.id, time = %at, limit = cap,
                    "the schedule's tenant is at its limit of unfinished jobs; skipping this time");
                continue;
            }
        }
        let new = NewJob {
            tenant,
            priority: schedule.priority,
            max_attempts: schedule.max_attempts,
            timeout: Duration::from_secs(schedule.timeout_seconds),
            idempotency_key: Some(job_key(schedule.id, *at)),
            ..NewJob::new(schedule.workflow, schedule.input.clone())
        };
        let enqueued = match store.enqueue(new).await {
            Ok(enqueued) => enqueued,
            // The key names a job of another input: the tenant made one by hand. That time is taken.
            Err(StoreError::IdempotencyConflict(job)) => {
                warn!(schedule = %schedule.id, %job, "a job of another input holds this time's key; skipping it");
                continue;
            }
            Err(e) => return Err(e),
        };
        last = Some((*at, enqueued.job.id));
        made += usize::from(enqueued.created);
        unfinished += u32::from(enqueued.created);
    }
    let Some(next) = cron.next_after(now) else {
        store.tenant(tenant).set_schedule_paused(schedule.id, true, None).await?;
        return Ok(made);
    };
    let moved = store.advance_schedule(schedule.id, schedule.next_run_at, next, last).await?;
    if moved && times.len() != 1 {
        info!(schedule = %schedule.id, times = times.len(), jobs = made, "a schedule's missed times were caught up or skipped");
    }
    Ok(made)
}
