-- Retries of a failed run before the job's next slot (issue 11). The job holds the pending
-- retry (when, which attempt, and for an account job which repositories to fetch again); each
-- run records which attempt it was and, when it failed for a passing reason, when the next one
-- starts. Never edit once landed.
ALTER TABLE jobs ADD COLUMN retry_at INTEGER;
ALTER TABLE jobs ADD COLUMN retry_attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_scope TEXT;
-- Holds only the jobs with a retry pending: claiming them costs a range scan over those few.
CREATE INDEX jobs_retry_at ON jobs (retry_at) WHERE retry_at IS NOT NULL;
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN retry_at INTEGER;
