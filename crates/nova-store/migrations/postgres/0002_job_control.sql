-- Job control: the `retrying` state, priorities, a deadline per job, idempotency keys, cancellation.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'canceled'));
ALTER TABLE jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0; -- higher runs first
ALTER TABLE jobs ADD COLUMN timeout_ms BIGINT NOT NULL DEFAULT 900000; -- the hard deadline of one attempt
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested_at BIGINT;

ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'released', 'canceled'));

DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id) WHERE status IN ('queued', 'retrying');
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
