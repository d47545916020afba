-- Webhooks: a job may name a URL that its events are sent to, signed per Standard Webhooks.

-- Each tenant's signing secret (`whsec_` and the base64 of the key), made when first asked for.
CREATE TABLE webhook_secrets (
    tenant_id  TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A job's webhook, written with the job. `events` is a JSON array of event types; `last_seq` the last event
-- number of the job already handed to the outbox; `active` is 0 once the job's final event was.
CREATE TABLE job_webhooks (
    job_id    TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    url       TEXT NOT NULL,
    events    TEXT NOT NULL,
    last_seq  BIGINT NOT NULL DEFAULT 0,
    active    BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX job_webhooks_active ON job_webhooks (job_id) WHERE active = 1;

-- The outbox: one message per job event a webhook asked for, delivered (at least once) with retries until
-- `window_start` plus the configured age, then dead (`status` 'dead') until resent. Kept after its job
-- is deleted.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    window_start    BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (job_id, seq)
);
-- Due messages, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- A tenant's messages, newest first, by status or all.
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant_id, status, id);
CREATE INDEX webhook_deliveries_all_of_tenant ON webhook_deliveries (tenant_id, id);
-- Finished messages by age, for their purge.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at) WHERE status <> 'pending';
