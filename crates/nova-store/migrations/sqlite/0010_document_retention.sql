-- Retention of documents: old document rows are deleted, and a blob no row names any more with them.
-- A blob being deleted is marked here first, so that an upload of the same bytes at that moment can see the
-- deletion and store its bytes again; marks are kept an hour after the deletion.
CREATE TABLE blob_deletions (
    sha256      TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
);
-- Whether any tenant's document still names a blob.
CREATE INDEX documents_by_sha256 ON documents (sha256);
-- Documents by age, for retention.
CREATE INDEX documents_by_age ON documents (created_at);
