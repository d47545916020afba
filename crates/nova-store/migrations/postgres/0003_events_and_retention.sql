-- The durable per-job event log: every state change and every progress report, numbered per job.
CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT, -- JSON
    PRIMARY KEY (job_id, seq)
);
-- The last sequence number handed out; bumping it in the job's row serializes appends per job.
ALTER TABLE jobs ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

-- Retention reads finished jobs by age through this index only.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'canceled');
