//! Fair turns between tenants: how a claim shares a workflow's free slots among the tenants with ready jobs.
//!
//! A claim first finds, for each workflow it asks for, the tenants with waiting jobs ([`contenders_sql`]): a
//! loose scan of `jobs_ready (workflow, tenant_id, ...)` that jumps from one tenant to the next, one probe per
//! tenant however long its backlog, then for each its best ready job, its weight and limit, and how many of
//! its jobs of the workflow run now (a range of `jobs_by_workflow`, as long as what it runs). [`share`] gives
//! each free slot in turn to the tenant that runs the fewest jobs for its weight, and the claim takes each
//! tenant's share from the top of its own range of `jobs_ready`, in the order a tenant's jobs always had
//! (priority, then age). So a claim costs a few index probes per tenant with waiting jobs and a row per job
//! taken, never the length of the queue, and when one tenant has 5,000 jobs waiting, another's start at the
//! next claim after workers free up, not after the 5,000.
//!
//! Shares follow the jobs running, not the jobs claimed: a tenant whose jobs take fifteen minutes holds as
//! many workers as one whose jobs take a second, where taking jobs in strict alternation would let the long
//! jobs pile up until they held every worker. The counts are read from the jobs at each claim, so no state
//! has to be kept in step with the queue's writes (enqueue and completion write nothing more), and nothing
//! needs repair after a crash. A tenant alone uses every worker: a share is only taken from a tenant when
//! another is waiting.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use nova_core::{TenantId, Workflow};
use sqlx::Row;

use crate::jobs::{json_array, json_rows, ready_sql, Col};
use crate::{parse_stored, Dialect, Store, StoreError};

/// The largest weight a tenant may have; the smallest is 1.
pub const MAX_TENANT_WEIGHT: u32 = 1000;

/// What [`share`] weighs of one tenant with ready jobs of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// Its share against the others' (1 to [`MAX_TENANT_WEIGHT`]): with weights 2 and 1, the first runs two
    /// jobs for every one of the second while both have jobs waiting.
    pub(crate) weight: u32,
    /// Its jobs of the workflow running now, on every worker.
    pub(crate) running: u32,
    /// The most of its jobs of the workflow that may run at once; `None`: no limit.
    pub(crate) max_running: Option<u32>,
    /// When its best ready job became due (`run_at`, in ms): of tenants with equal shares, the one waiting
    /// longest goes first, so that claims of one slot at a time still alternate.
    pub(crate) waiting_since: i64,
}

/// Shares `free` slots among `turns`: each slot in turn goes to the tenant that runs the fewest jobs for its
/// weight, counting the slots given so far (`(running + given) / weight`, smallest first), past those at
/// their limit; ties go to the tenant waiting longest, then to the first listed. Says how many slots each
/// gets, in order; fewer than `free` in all only when every tenant reached its limit. The caller does not
/// know how many ready jobs each tenant has: one that has fewer than its share is left out of a second
/// round (see `Store::claim_turns`).
pub(crate) fn share(turns: &[Turn], free: u32) -> Vec<u32> {
    let mut given = vec![0_u32; turns.len()];
    let mut next: BinaryHeap<Reverse<(Load, i64, usize)>> = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.max_running.is_none_or(|max| t.running < max))
        .map(|(i, t)| Reverse((Load::of(t, 0), t.waiting_since, i)))
        .collect();
    for _ in 0..free {
        let Some(Reverse((_, since, i))) = next.pop() else { break };
        given[i] += 1;
        let turn = &turns[i];
        if turn.max_running.is_none_or(|max| turn.running + given[i] < max) {
            next.push(Reverse((Load::of(turn, given[i]), since, i)));
        }
    }
    given
}

/// The turns of one round of a claim: for each workflow of `wants` (with `taken` of its jobs claimed in
/// earlier rounds), its free slots shared among its contenders not `left_out`, as `(contender, jobs)`.
pub(crate) fn plan_round(
    contenders: &[Contender],
    left_out: &[bool],
    wants: &[(Workflow, u32)],
    taken: &HashMap<Workflow, u32>,
) -> Vec<(usize, u32)> {
    let mut turns = Vec::new();
    for &(workflow, n) in wants {
        let free = n.saturating_sub(taken.get(&workflow).copied().unwrap_or(0));
        if free == 0 {
            continue;
        }
        let playing: Vec<usize> =
            (0..contenders.len()).filter(|&i| contenders[i].workflow == workflow && !left_out[i]).collect();
        let shares = share(&playing.iter().map(|&i| contenders[i].turn).collect::<Vec<_>>(), free);
        turns.extend(playing.into_iter().zip(shares).filter(|&(_, n)| n > 0));
    }
    turns
}

/// Jobs run for a weight: compared as the fractions they are (`jobs / weight`), without rounding.
#[derive(Debug, Clone, Copy)]
struct Load {
    jobs: u64,
    weight: u64,
}

impl Load {
    fn of(turn: &Turn, given: u32) -> Self {
        Load { jobs: u64::from(turn.running) + u64::from(given), weight: u64::from(turn.weight.max(1)) }
    }
}

impl Ord for Load {
    fn cmp(&self, other: &Self) -> Ordering {
        // a/b against c/d as a*d against c*b: both below 2^42 with 2^32 jobs and weights up to 1,000.
        (self.jobs * other.weight).cmp(&(other.jobs * self.weight))
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Load {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Load {}

/// A tenant with ready jobs of a workflow, as a claim found it.
#[derive(Debug, Clone)]
pub(crate) struct Contender {
    pub(crate) workflow: Workflow,
    /// The tenant's id as stored.
    pub(crate) tenant: String,
    pub(crate) turn: Turn,
}

/// The tenants with ready jobs of each workflow of the JSON array `$1` (`[{"workflow"}]`) at time `$2`, with
/// when their best ready job became due, their weight and limit, and their running jobs of the workflow.
///
/// `waiting` is the loose index scan: for each workflow, the first tenant in `jobs_ready`, then the first one
/// after it, and so on, each one probe of the index. A tenant whose waiting jobs are all scheduled later has
/// no best ready job and drops out. Everything else is read by key in scalar subqueries, which both
/// databases answer with index lookups whatever they guess of the scan's size (PostgreSQL guesses a
/// recursive scan large, and would hash a join's other side whole: every job, every tenant).
pub(crate) fn contenders_sql(dialect: Dialect) -> String {
    let waiting = "j.workflow = t.workflow AND j.status IN ('queued', 'retrying')";
    format!(
        "WITH RECURSIVE wants AS ({wants}),
         waiting (workflow, tenant_id) AS (
             SELECT t.workflow, (SELECT j.tenant_id FROM jobs j WHERE {waiting} ORDER BY j.tenant_id LIMIT 1)
             FROM wants t
             UNION ALL
             SELECT t.workflow, (SELECT j.tenant_id FROM jobs j WHERE {waiting} AND j.tenant_id > t.tenant_id
                                 ORDER BY j.tenant_id LIMIT 1)
             FROM waiting t WHERE t.tenant_id IS NOT NULL),
         heads AS (SELECT t.workflow, t.tenant_id, ({head}) AS run_at FROM waiting t WHERE t.tenant_id IS NOT NULL)
         SELECT h.workflow, h.tenant_id, h.run_at,
                COALESCE((SELECT n.weight FROM tenants n WHERE n.id = h.tenant_id), 1) AS weight,
                (SELECT n.max_running FROM tenants n WHERE n.id = h.tenant_id) AS max_running,
                (SELECT COUNT(*) FROM jobs r
                 WHERE r.tenant_id = h.tenant_id AND r.workflow = h.workflow AND r.status = 'running') AS running
         FROM heads h WHERE h.run_at IS NOT NULL",
        wants = json_rows(dialect, 1, &[("workflow", Col::Text)]),
        head = ready_sql("run_at", "t.workflow", "t.tenant_id", "1"),
    )
}

/// How many of a tenant's ready jobs a claim takes: `n`, or fewer when the tenant has a limit (`cap`, NULL
/// for none) and already runs jobs of the workflow. Counted again inside the claim, which on SQLite holds
/// the write lock and on PostgreSQL runs after the workflow's claim lock (see `Store::claim_turns`), so that
/// two claims at once cannot both fill the last place.
pub(crate) fn turn_size_sql(dialect: Dialect, n: &str, cap: &str, workflow: &str, tenant: &str) -> String {
    let (least, greatest) = match dialect {
        Dialect::Sqlite => ("MIN", "MAX"),
        Dialect::Postgres => ("LEAST", "GREATEST"),
    };
    format!(
        "(CASE WHEN {cap} IS NULL THEN {n} ELSE {least}({n}, {greatest}({cap} - (SELECT COUNT(*) FROM jobs r
             WHERE r.tenant_id = {tenant} AND r.workflow = {workflow} AND r.status = 'running'), 0)) END)"
    )
}

/// A tenant's place in the queue's turns, as `nova tenants list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTurns {
    pub tenant: TenantId,
    pub name: String,
    pub weight: u32,
    /// Its own limit on running jobs per workflow; `None`: the workers' default.
    pub max_running: Option<u32>,
    /// Its own request rate (`N/s,burst=M`); `None`: the server's default.
    pub rate_limit: Option<String>,
}

/// A change to a tenant's turns: each `None` leaves that setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnsChange {
    /// A weight from 1 to [`MAX_TENANT_WEIGHT`].
    pub weight: Option<u32>,
    /// `Some(None)` gives the tenant the workers' default limit again.
    pub max_running: Option<Option<u32>>,
}

impl Store {
    /// The same store, with `max_running` as the limit on running jobs per workflow of every tenant that has
    /// none of its own (`None`: no limit). What a worker pool's claims apply; the binary sets it from
    /// `--tenant-max-running`.
    pub fn with_tenant_max_running(mut self, max_running: Option<u32>) -> Self {
        self.tenant_max_running = max_running;
        self
    }

    /// The tenants with ready jobs of the workflows of `wants` at time `now_ms`: see [`contenders_sql`].
    pub(crate) async fn contenders(
        &self,
        wants: &[(Workflow, u32)],
        now_ms: i64,
    ) -> Result<Vec<Contender>, StoreError> {
        let workflows = json_array(wants.iter().map(|(w, _)| serde_json::json!({"workflow": w.as_str()})));
        let rows =
            sqlx::query(&contenders_sql(self.dialect)).bind(workflows).bind(now_ms).fetch_all(&self.pool).await?;
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        rows.iter()
            .map(|row| {
                let own_limit: Option<i64> = row.try_get("max_running")?;
                Ok(Contender {
                    workflow: parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?,
                    tenant: row.try_get("tenant_id")?,
                    turn: Turn {
                        weight: count(row.try_get("weight")?).clamp(1, MAX_TENANT_WEIGHT),
                        running: count(row.try_get("running")?),
                        max_running: own_limit.map(count).or(self.tenant_max_running),
                        waiting_since: row.try_get("run_at")?,
                    },
                })
            })
            .collect()
    }

    /// Every tenant with its weight, limit and request rate, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantTurns>, StoreError> {
        let rows = sqlx::query("SELECT id, name, weight, max_running, rate_limit FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        rows.iter()
            .map(|row| {
                Ok(TenantTurns {
                    tenant: parse_stored("tenant id", &row.try_get::<String, _>("id")?)?,
                    name: row.try_get("name")?,
                    weight: count(row.try_get("weight")?),
                    max_running: row.try_get::<Option<i64>, _>("max_running")?.map(count),
                    rate_limit: row.try_get("rate_limit")?,
                })
            })
            .collect()
    }

    /// Changes tenant `name`'s weight or limit (see [`TurnsChange`]); false when there is no such tenant. A
    /// weight outside 1 to [`MAX_TENANT_WEIGHT`] is refused by the database. Counts from the next claim.
    pub async fn set_tenant_turns(&self, name: &str, change: TurnsChange) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE tenants SET weight = COALESCE($1, weight),
                 max_running = CASE WHEN $2 = 1 THEN $3 ELSE max_running END
             WHERE name = $4",
        )
        .bind(change.weight.map(i64::from))
        .bind(i64::from(change.max_running.is_some()))
        .bind(change.max_running.flatten().map(i64::from))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(weight: u32, running: u32, max_running: Option<u32>, waiting_since: i64) -> Turn {
        Turn { weight, running, max_running, waiting_since }
    }

    fn check(turns: &[Turn], free: u32, expected: &[u32]) {
        assert_eq!(share(turns, free), expected, "{free} slots among {turns:?}");
    }

    #[test]
    fn a_tenant_alone_takes_every_slot_and_equal_tenants_split_them() {
        check(&[turn(1, 0, None, 0)], 64, &[64]);
        check(&[turn(1, 0, None, 0), turn(1, 0, None, 5)], 64, &[32, 32]);
        check(&[turn(1, 0, None, 0), turn(1, 0, None, 5), turn(1, 0, None, 9)], 7, &[3, 2, 2]);
        check(&[], 8, &[]);
        check(&[turn(1, 0, None, 0)], 0, &[0]);
    }

    #[test]
    fn the_tenant_running_fewer_jobs_gets_the_freed_slots_first() {
        // A runs 20, B none: B's backlog is served before A gets another.
        check(&[turn(1, 20, None, 0), turn(1, 0, None, 100)], 2, &[0, 2]);
        check(&[turn(1, 20, None, 0), turn(1, 0, None, 100)], 30, &[5, 25]);
        check(&[turn(1, 3, None, 0), turn(1, 1, None, 100)], 4, &[1, 3]);
    }

    #[test]
    fn weights_share_slots_in_proportion() {
        check(&[turn(2, 0, None, 0), turn(1, 0, None, 0)], 30, &[20, 10]);
        check(&[turn(3, 0, None, 0), turn(1, 0, None, 0)], 8, &[6, 2]);
        // Running jobs count against the weight: A runs 4 for weight 2 (2 per unit), B 1 for weight 1.
        check(&[turn(2, 4, None, 0), turn(1, 1, None, 0)], 3, &[1, 2]);
        // 1,000 to 1: the small tenant still gets its first slot once the large one runs 1,000.
        check(&[turn(1000, 999, None, 0), turn(1, 0, None, 0)], 2, &[1, 1]);
    }

    #[test]
    fn ties_go_to_the_tenant_waiting_longest_so_single_slots_alternate() {
        check(&[turn(1, 0, None, 50), turn(1, 0, None, 10)], 1, &[0, 1]);
        check(&[turn(1, 0, None, 10), turn(1, 0, None, 50)], 1, &[1, 0]);
        // Equal waits: the first listed.
        check(&[turn(1, 0, None, 10), turn(1, 0, None, 10)], 1, &[1, 0]);
        // One slot at a time, with each claim's job then running: A, B, A, B.
        let mut turns = [turn(1, 0, None, 10), turn(1, 0, None, 20)];
        let mut order = Vec::new();
        for _ in 0..4 {
            let given = share(&turns, 1);
            let i = given.iter().position(|&g| g == 1).unwrap();
            turns[i].running += 1;
            order.push(i);
        }
        assert_eq!(order, [0, 1, 0, 1]);
    }

    #[test]
    fn a_tenant_at_its_limit_gets_nothing_and_the_others_get_its_slots() {
        check(&[turn(1, 2, Some(2), 0), turn(1, 5, None, 0)], 3, &[0, 3]);
        check(&[turn(1, 0, Some(2), 0), turn(1, 0, None, 0)], 10, &[2, 8]);
        check(&[turn(1, 0, Some(0), 0), turn(1, 0, None, 0)], 1, &[0, 1]);
        // Every tenant at its limit: slots stay free.
        check(&[turn(1, 1, Some(3), 0), turn(1, 0, Some(1), 0)], 10, &[2, 1]);
        // Already over the limit (lowered while jobs ran): nothing until it is below again.
        check(&[turn(1, 5, Some(3), 0)], 4, &[0]);
    }
}
