-- Batches: many jobs of one workflow submitted in one request (`POST /v1/batches`), followed and read as
-- one. A batch's counts are not kept in its row: they are counted from its jobs (jobs_by_batch_status), so
-- the queue's writes never touch a shared row. `finished_at` is set once, by whichever process first sees
-- every job of the batch final; that same write makes its `batch.completed` webhook message, so there is
-- one per batch however many processes look. The row is deleted once its jobs are (retention).
CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    total       BIGINT NOT NULL,
    webhook_url TEXT,
    request_id  TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT
);
-- A tenant's batches, newest first.
CREATE INDEX batches_by_tenant ON batches (tenant_id, id);
-- Batches not yet seen finished: what the settling reads.
CREATE INDEX batches_open ON batches (id) WHERE finished_at IS NULL;

-- A job's batch and its place in it (the index of its input in the request).
ALTER TABLE jobs ADD COLUMN batch_id TEXT;
ALTER TABLE jobs ADD COLUMN batch_index BIGINT;
-- A batch's jobs in the order they were given (results, cancellation), and its counts per status with
-- the time its last job finished (read from the index alone). Partial:
-- jobs outside batches pay nothing for them.
CREATE INDEX jobs_by_batch ON jobs (batch_id, batch_index) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_by_batch_status ON jobs (batch_id, status, finished_at) WHERE batch_id IS NOT NULL;

-- A batch's `batch.completed` message sits in the outbox beside the jobs' own, with the batch's id in
-- `job_id` and `seq` 0 (a job's events start at 1): the unique (job_id, seq) makes it once.
