-- Fair turns between tenants. Within a workflow, a claim shares the free slots among the tenants with ready
-- jobs by how many jobs each already runs for its weight, so one tenant's backlog never holds up another's
-- (see `turns.rs`). `weight` is a tenant's share against the others' (2 runs twice as many jobs as 1 when
-- both wait); `max_running` caps the jobs of each workflow it runs at once, across every worker (NULL: the
-- workers' default, `--tenant-max-running`; 0 holds its jobs back).
ALTER TABLE tenants ADD COLUMN weight BIGINT NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000);
ALTER TABLE tenants ADD COLUMN max_running BIGINT CHECK (max_running >= 0);

-- A claim finds the tenants with waiting jobs of a workflow by skipping from one tenant to the next through
-- this index (one probe per tenant, however many jobs each has queued), then reads each tenant's best jobs
-- from its own range, in the order they always had: priority, then age.
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (workflow, tenant_id, priority DESC, run_at, id) WHERE status IN ('queued', 'retrying');
