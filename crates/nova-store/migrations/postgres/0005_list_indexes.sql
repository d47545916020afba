-- Lists (`GET /v1/jobs`) walk jobs newest first by id (a UUIDv7, so id order is creation order), a page at a
-- time from a cursor. A filtered list reads this index one range per (workflow, status) pair it asks for,
-- merged: a workflow and a status is one range, a workflow alone six (one per status), a status alone one
-- per workflow. An unfiltered list reads the primary key.
-- No index leads with the status: the queue's own statements (`status = 'running' AND ...`) must keep
-- reading their partial indexes, and every index on `jobs` costs each write of the queue.
CREATE INDEX jobs_by_workflow ON jobs (workflow, status, id);
