-- Job control: the `retrying` state, priorities, a deadline per job, idempotency keys, cancellation.
-- SQLite cannot change a CHECK constraint in place, so both tables are rebuilt and copied.

CREATE TABLE jobs_new (
    id                  TEXT PRIMARY KEY,
    workflow            TEXT NOT NULL,
    input               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'canceled')),
    priority            INTEGER NOT NULL DEFAULT 0, -- higher runs first
    max_attempts        INTEGER NOT NULL,
    attempts_used       INTEGER NOT NULL DEFAULT 0,
    timeout_ms          INTEGER NOT NULL DEFAULT 900000, -- the hard deadline of one attempt
    idempotency_key     TEXT,
    run_at              INTEGER NOT NULL,
    lease_token         TEXT,
    lease_expires_at    INTEGER,
    cancel_requested_at INTEGER,
    result              TEXT,
    error_code          TEXT,
    error_message       TEXT,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    updated_at          INTEGER NOT NULL
);
INSERT INTO jobs_new (id, workflow, input, status, max_attempts, attempts_used, run_at, lease_token,
                      lease_expires_at, result, error_code, error_message, created_at, started_at, finished_at,
                      updated_at)
    SELECT id, workflow, input, status, max_attempts, attempts_used, run_at, lease_token, lease_expires_at, result,
           error_code, error_message, created_at, started_at, finished_at, updated_at
    FROM jobs;

CREATE TABLE job_attempts_new (
    job_id        TEXT NOT NULL REFERENCES jobs_new (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    token         TEXT NOT NULL UNIQUE,
    worker_id     TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    outcome       TEXT CHECK (outcome IN ('succeeded', 'failed', 'released', 'canceled')),
    error_code    TEXT,
    error_message TEXT,
    PRIMARY KEY (job_id, number)
);
INSERT INTO job_attempts_new SELECT * FROM job_attempts;

DROP TABLE job_attempts;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE job_attempts_new RENAME TO job_attempts;

CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id) WHERE status IN ('queued', 'retrying');
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
