-- Documents: metadata of uploaded bytes; the bytes live in the blob store under their SHA-256.
CREATE TABLE documents (
    id           TEXT PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,
    filename     TEXT,
    kind         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    page_count   INTEGER,
    created_at   INTEGER NOT NULL -- milliseconds since the Unix epoch, as every timestamp here
);

-- Jobs. `status` is the persisted state machine; `lease_token` fences every write of the running attempt.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    input            TEXT NOT NULL, -- JSON
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    max_attempts     INTEGER NOT NULL,
    attempts_used    INTEGER NOT NULL DEFAULT 0, -- attempts that count against max_attempts
    run_at           INTEGER NOT NULL,           -- not claimed before this time
    lease_token      TEXT,
    lease_expires_at INTEGER,
    result           TEXT,                       -- JSON, once succeeded
    error_code       TEXT,
    error_message    TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);

-- Claiming reads only these two partial indexes, however long the history grows.
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';

-- One row per attempt: who ran it, when, and how it ended.
CREATE TABLE job_attempts (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    token         TEXT NOT NULL UNIQUE,
    worker_id     TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    outcome       TEXT CHECK (outcome IN ('succeeded', 'failed', 'released')),
    error_code    TEXT,
    error_message TEXT,
    PRIMARY KEY (job_id, number)
);
