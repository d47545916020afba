//! Fair turns between tenants: within a workflow, a claim shares the free slots among the tenants with ready
//! jobs by the jobs each runs for its weight, each tenant's own jobs still in priority order, with a limit
//! on running jobs per tenant. Every test drives `claim_batch` directly and reads which jobs each claim
//! returned, on SQLite and on PostgreSQL.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use nova_core::{JobId, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{ClaimedJob, Completion, NewJob, Store, TurnsChange};
use serde_json::json;

nova_store::conformance!(
    a_tenant_submitting_after_a_backlog_of_5000_starts_within_one_claim_of_workers_freeing_up,
    weights_share_the_claims_in_proportion_over_a_long_run,
    a_tenant_at_its_limit_gets_nothing_more_until_one_of_its_jobs_ends,
    the_default_limit_holds_for_tenants_without_their_own,
    priorities_still_order_each_tenants_own_jobs,
    a_single_tenant_claims_in_priority_then_age_order,
    a_tenant_whose_jobs_are_not_due_takes_no_turn,
    one_claim_gives_each_of_150_tenants_its_oldest_job,
    concurrent_claimers_share_no_job_and_keep_the_limit,
);

const LEASE: Duration = Duration::from_secs(30);

fn job(tenant: TenantId, priority: i64) -> NewJob {
    NewJob { tenant, priority, max_attempts: 1, ..NewJob::new(Workflow::Noop, json!({})) }
}

/// Queues `n` jobs of `tenant`, sixteen at a time (their order among themselves does not matter here).
async fn enqueue_many(store: &Store, tenant: TenantId, n: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let batch = chunk.iter().map(|_| store.enqueue(job(tenant, 0)));
        for done in futures::future::join_all(batch).await {
            ids.push(done.unwrap().job.id);
        }
    }
    ids
}

async fn claim(store: &Store, n: u32) -> Vec<ClaimedJob> {
    store.claim_batch(WorkerId::new(), LEASE, &[(Workflow::Noop, n)]).await.unwrap()
}

async fn complete(store: &Store, jobs: &[ClaimedJob]) {
    let batch: Vec<Completion> =
        jobs.iter().map(|c| Completion { job: c.job.id, token: c.token, result: json!(null) }).collect();
    assert!(store.complete_batch(&batch).await.unwrap().iter().all(|&done| done));
}

fn of(jobs: &[ClaimedJob], tenant: TenantId) -> Vec<JobId> {
    jobs.iter().filter(|c| c.tenant == tenant).map(|c| c.job.id).collect()
}

fn set(ids: &[JobId]) -> HashSet<JobId> {
    ids.iter().copied().collect()
}

/// The case: tenant A queues 5,000 jobs and its jobs fill every worker; then B queues 10. In the order
/// of the queue alone (priority, then age) B's jobs would start after A's 5,000.
async fn a_tenant_submitting_after_a_backlog_of_5000_starts_within_one_claim_of_workers_freeing_up(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    enqueue_many(&f.store, a, 5000).await;
    let busy = claim(&f.store, 20).await;
    assert_eq!(of(&busy, a).len(), 20, "A alone: its jobs take every worker");
    let mut b_ids = Vec::new();
    for _ in 0..10 {
        b_ids.push(f.store.enqueue(job(bee, 0)).await.unwrap().job.id);
    }

    // Two workers free up while A's jobs hold the other 18: both go to B, its oldest first.
    complete(&f.store, &busy[..2]).await;
    let first = claim(&f.store, 2).await;
    assert_eq!(set(&of(&first, bee)), set(&b_ids[..2]), "B runs none, so it takes both freed slots");

    // The other 18 free up: B's remaining 8 start in this one claim, A gets the rest.
    complete(&f.store, &busy[2..]).await;
    let second = claim(&f.store, 18).await;
    assert_eq!(set(&of(&second, bee)), set(&b_ids[2..]), "every job of B started in the next claim");
    assert_eq!(of(&second, a).len(), 10, "A takes the slots B leaves");
    assert!(claim(&f.store, 4).await.iter().all(|c| c.tenant == a), "B has nothing left to wait for");
}

/// Weights 2 and 1, both with a long backlog, nine workers: each round the three oldest running jobs end and
/// their slots are claimed again. Over 300 claims, A's share is 2/3 within 2 points.
async fn weights_share_the_claims_in_proportion_over_a_long_run(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    assert!(f.store.set_tenant_turns("a", TurnsChange { weight: Some(2), ..Default::default() }).await.unwrap());
    enqueue_many(&f.store, a, 320).await;
    enqueue_many(&f.store, bee, 320).await;

    let mut running: VecDeque<ClaimedJob> = claim(&f.store, 9).await.into();
    let mut claims: HashMap<TenantId, usize> = HashMap::new();
    let mut count = |jobs: &[ClaimedJob]| jobs.iter().for_each(|c| *claims.entry(c.tenant).or_default() += 1);
    count(running.make_contiguous());
    for _ in 0..97 {
        let oldest: Vec<ClaimedJob> = running.drain(..3).collect();
        complete(&f.store, &oldest).await;
        let next = claim(&f.store, 3).await;
        assert_eq!(next.len(), 3, "both tenants still have jobs waiting");
        count(&next);
        running.extend(next);
    }
    let total: usize = claims.values().sum();
    assert_eq!(total, 300);
    let share_of_a = claims[&a] as f64 / total as f64;
    assert!((share_of_a - 2.0 / 3.0).abs() < 0.02, "A (weight 2) took {share_of_a:.3} of the claims: {claims:?}");
}

async fn a_tenant_at_its_limit_gets_nothing_more_until_one_of_its_jobs_ends(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    let limit_two = TurnsChange { max_running: Some(Some(2)), ..Default::default() };
    assert!(f.store.set_tenant_turns("a", limit_two).await.unwrap());
    enqueue_many(&f.store, a, 5).await;
    enqueue_many(&f.store, bee, 5).await;

    let first = claim(&f.store, 10).await;
    assert_eq!((of(&first, a).len(), of(&first, bee).len()), (2, 5), "A stops at its limit, B gets its jobs");
    let w = WorkerId::new();
    let held = f.store.claim_turns(w, LEASE, &[(Workflow::Noop, 5)]).await.unwrap();
    assert!(held.jobs.is_empty(), "A is at its limit and B has nothing left");
    assert_eq!(held.held_back, [Workflow::Noop], "the claim says A's jobs wait for its limit");

    // Others still get theirs while A waits.
    enqueue_many(&f.store, bee, 3).await;
    let more = claim(&f.store, 5).await;
    assert_eq!((of(&more, a).len(), of(&more, bee).len()), (0, 3));

    // One of A's jobs ends: A gets one more, and only one.
    let a_running: Vec<ClaimedJob> = first.iter().filter(|c| c.tenant == a).cloned().collect();
    complete(&f.store, &a_running[..1]).await;
    let after = claim(&f.store, 5).await;
    assert_eq!((of(&after, a).len(), after.len()), (1, 1));

    // Lifting the limit lets A's last two run.
    assert!(f
        .store
        .set_tenant_turns("a", TurnsChange { max_running: Some(None), ..Default::default() })
        .await
        .unwrap());
    assert_eq!(of(&claim(&f.store, 5).await, a).len(), 2);
}

async fn the_default_limit_holds_for_tenants_without_their_own(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    let own = TurnsChange { max_running: Some(Some(3)), ..Default::default() };
    assert!(f.store.set_tenant_turns("b", own).await.unwrap());
    assert!(!f.store.set_tenant_turns("nobody", own).await.unwrap(), "no such tenant");
    enqueue_many(&f.store, a, 5).await;
    enqueue_many(&f.store, bee, 5).await;

    let limited = f.store.clone().with_tenant_max_running(Some(1));
    let first = claim(&limited, 10).await;
    assert_eq!((of(&first, a).len(), of(&first, bee).len()), (1, 3), "A the default 1, B its own 3");
    // Back to the default, B is over it: nothing for either.
    assert!(f
        .store
        .set_tenant_turns("b", TurnsChange { max_running: Some(None), ..Default::default() })
        .await
        .unwrap());
    assert!(claim(&limited, 10).await.is_empty());
    // A store without the default has no limit for A.
    assert_eq!(of(&claim(&f.store, 10).await, a).len(), 4);
}

async fn priorities_still_order_each_tenants_own_jobs(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    let mut a_ids = Vec::new();
    for priority in [0, 5, 0, 9] {
        a_ids.push(f.store.enqueue(job(a, priority)).await.unwrap().job.id);
    }
    let b_ids =
        [f.store.enqueue(job(bee, 1)).await.unwrap().job.id, f.store.enqueue(job(bee, 1)).await.unwrap().job.id];

    // Four slots, two each: A's two urgent jobs, not its two oldest.
    let first = claim(&f.store, 4).await;
    assert_eq!(set(&of(&first, a)), set(&[a_ids[3], a_ids[1]]));
    assert_eq!(set(&of(&first, bee)), set(&b_ids));
    // Then A's normal jobs, oldest first.
    assert_eq!(of(&claim(&f.store, 1).await, a), [a_ids[0]]);
    assert_eq!(of(&claim(&f.store, 1).await, a), [a_ids[2]]);
}

/// One tenant: the order the queue always had, highest priority first, then oldest.
async fn a_single_tenant_claims_in_priority_then_age_order(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let priorities = [3, 1, 3, 0, 2, 1, 3, 0, 2, 2, 1, 0];
    let mut queued = Vec::new();
    for (age, priority) in priorities.into_iter().enumerate() {
        queued.push((-priority, age, f.store.enqueue(job(TenantId::DEFAULT, priority)).await.unwrap().job.id));
    }
    queued.sort();
    let expected: Vec<JobId> = queued.into_iter().map(|(_, _, id)| id).collect();
    let mut claimed = Vec::new();
    for _ in 0..priorities.len() {
        claimed.extend(claim(&f.store, 1).await.into_iter().map(|c| c.job.id));
    }
    assert_eq!(claimed, expected);
    assert!(claim(&f.store, 1).await.is_empty());
}

async fn a_tenant_whose_jobs_are_not_due_takes_no_turn(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, bee) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for _ in 0..3 {
        f.store.enqueue(NewJob { run_at: Some(later), ..job(a, 9) }).await.unwrap();
    }
    let ready = enqueue_many(&f.store, bee, 4).await;
    let claimed = claim(&f.store, 4).await;
    assert_eq!(set(&of(&claimed, bee)), set(&ready), "A's share goes to B: A has nothing due");
}

/// More tenants than one SQLite statement takes turns for: every tenant gets one slot, its oldest job.
async fn one_claim_gives_each_of_150_tenants_its_oldest_job(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let mut oldest = HashSet::new();
    for i in 0..150 {
        let tenant = f.store.ensure_tenant(&format!("t{i}")).await.unwrap();
        let first = enqueue_many(&f.store, tenant, 1).await;
        enqueue_many(&f.store, tenant, 1).await;
        oldest.extend(first);
    }
    let claimed = claim(&f.store, 150).await;
    let tenants: HashSet<TenantId> = claimed.iter().map(|c| c.tenant).collect();
    assert_eq!((claimed.len(), tenants.len()), (150, 150), "one job of each tenant");
    assert_eq!(claimed.iter().map(|c| c.job.id).collect::<HashSet<_>>(), oldest);
}

/// Eight claimers at once over three tenants, one with a limit of 3: no job is claimed twice, and the limit
/// holds although every claimer sees A's jobs waiting.
async fn concurrent_claimers_share_no_job_and_keep_the_limit(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenants = [
        f.store.ensure_tenant("a").await.unwrap(),
        f.store.ensure_tenant("b").await.unwrap(),
        f.store.ensure_tenant("c").await.unwrap(),
    ];
    let limit = TurnsChange { max_running: Some(Some(3)), ..Default::default() };
    assert!(f.store.set_tenant_turns("a", limit).await.unwrap());
    assert!(f.store.set_tenant_turns("c", TurnsChange { weight: Some(2), ..Default::default() }).await.unwrap());
    for &tenant in &tenants {
        enqueue_many(&f.store, tenant, 40).await;
    }
    let claimers = (0..8).map(|_| {
        let store = f.store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&store, 3).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| (c.tenant, c.job.id)));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in futures::future::join_all(claimers).await {
        all.extend(claimer.unwrap());
    }
    // A claimer that met only locked rows stopped early: whatever is left is claimed now, one claimer alone.
    loop {
        let got = claim(&f.store, 10).await;
        if got.is_empty() {
            break;
        }
        all.extend(got.into_iter().map(|c| (c.tenant, c.job.id)));
    }
    let ids: HashSet<JobId> = all.iter().map(|&(_, id)| id).collect();
    assert_eq!(ids.len(), all.len(), "a job was claimed twice");
    let count = |tenant| all.iter().filter(|&&(t, _)| t == tenant).count();
    assert_eq!((count(tenants[0]), count(tenants[1]), count(tenants[2])), (3, 40, 40));
}
