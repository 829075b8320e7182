-- Runs gain the status `partial`: a snapshot was recorded but some repositories in it hold
-- their last good copy carried forward (or some metadata is missing).
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed'));
