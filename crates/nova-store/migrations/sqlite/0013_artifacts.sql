-- The files a job's program wrote (a task.run's CSV), downloadable through the API. They belong to the job
-- and go with it when retention prunes it. Their bytes live here, not in the blob store: they are capped per
-- job, belong to one job only, and are replaced in one transaction by the attempt that made them.
CREATE TABLE job_artifacts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
