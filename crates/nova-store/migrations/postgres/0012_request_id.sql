-- The id of the HTTP request that submitted the job (`X-Request-Id`, given by the client or made by the
-- server), so one id leads from the request's logs to the job's attempts. NULL for jobs enqueued otherwise.
ALTER TABLE jobs ADD COLUMN request_id TEXT;
