-- Tenants own documents and jobs; API keys name a tenant; idempotency records replay POSTs.
-- Everything stored before this migration, and everything a server without keys stores, belongs to the
-- default tenant (the nil UUID).

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    rate_limit TEXT, -- this tenant's request rate, as `N/s,burst=M`; NULL: the server's default
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('ten_00000000000000000000000000000000', 'default', 0);

-- A key is shown once; only its SHA-256 is kept. `prefix` (the first characters) recognises it in lists.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Documents are unique per tenant, not globally: the same bytes uploaded by two tenants are two rows over
-- one blob, and neither learns of the other.
ALTER TABLE documents ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'ten_00000000000000000000000000000000';
ALTER TABLE documents DROP CONSTRAINT documents_sha256_key;
ALTER TABLE documents ADD CONSTRAINT documents_tenant_sha256_key UNIQUE (tenant_id, sha256);
-- A tenant's documents, newest first (`GET /v1/documents`).
CREATE INDEX documents_by_tenant ON documents (tenant_id, id);

ALTER TABLE jobs ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'ten_00000000000000000000000000000000';
DROP INDEX jobs_idempotency;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Lists read a tenant's jobs only: unfiltered through `jobs_by_tenant`, filtered through `jobs_by_workflow`.
DROP INDEX jobs_by_workflow;
CREATE INDEX jobs_by_workflow ON jobs (tenant_id, workflow, status, id);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, id);

-- `Idempotency-Key` on POST: the first answer to a key, replayed for 24 hours. `status_code` is NULL while
-- the first request is in flight.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL, -- SHA-256 of the method, path and body
    status_code  BIGINT,
    content_type TEXT,
    body         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
