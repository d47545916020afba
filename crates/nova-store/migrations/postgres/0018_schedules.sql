-- Schedules: a cron expression in a time zone that enqueues a job of its workflow and input at each of its
-- times. `next_run_at` is the next time not yet enqueued; the scheduler reads schedules_due, enqueues each
-- due time's job under a key of the schedule and the time (so two processes enqueue it once), then moves
-- `next_run_at` on with a compare-and-set.
CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    name            TEXT,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    input           TEXT NOT NULL, -- JSON
    priority        BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL,
    timeout_ms      BIGINT NOT NULL,
    missed          TEXT NOT NULL CHECK (missed IN ('latest', 'all', 'skip')),
    paused          BIGINT NOT NULL DEFAULT 0,
    next_run_at     BIGINT NOT NULL,
    last_run_at     BIGINT,
    last_job_id     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = 0;
CREATE INDEX schedules_by_tenant ON schedules (tenant_id, id);
