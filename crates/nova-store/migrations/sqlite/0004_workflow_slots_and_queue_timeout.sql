-- Claims are per workflow (each workflow has its own slots in a worker), so the ready index leads with it.
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (workflow, priority DESC, run_at, id) WHERE status IN ('queued', 'retrying');

-- The queue-wait timeout: a job not started by this time fails with `queue_timeout` without running.
-- Cleared by the first start.
ALTER TABLE jobs ADD COLUMN start_by BIGINT;
CREATE INDEX jobs_start_by ON jobs (start_by) WHERE status = 'queued' AND start_by IS NOT NULL;
