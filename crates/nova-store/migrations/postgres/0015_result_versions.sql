-- Review of results. A succeeded job whose result asks for a person's look (`review.needed`) is `needed`;
-- once someone stores a version of its result it is `reviewed`. The review queue reads jobs_by_review.
ALTER TABLE jobs ADD COLUMN review TEXT CHECK (review IN ('needed', 'reviewed'));
CREATE INDEX jobs_by_review ON jobs (tenant_id, review, id);

-- The versions a person stored of a job's result: 2, 3, ... (version 1 is the job's own `result`, which
-- stays as the job produced it). They belong to the job and go with it when retention prunes it.
CREATE TABLE result_versions (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    result     TEXT NOT NULL,
    author     TEXT NOT NULL,
    note       TEXT,
    changes    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, version)
);
