-- A document that took extraction down (a crash, its memory or time limit) on a job's last attempt: the code
-- and when, so that new jobs for it fail at once instead of crashing a reader again.
ALTER TABLE documents ADD COLUMN extraction_failure_code TEXT;
ALTER TABLE documents ADD COLUMN extraction_failure_at BIGINT;
