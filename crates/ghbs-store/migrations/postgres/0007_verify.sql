-- Verification (issue 11): runs gain the trigger `verify`, and each job its next scheduled
-- verification.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_trigger_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_trigger_kind_check
    CHECK (trigger_kind IN ('schedule', 'manual', 'verify'));

-- When each job is verified next. A job gets its row at the scheduler's first look, spread
-- over the interval; a deleted job takes its row along.
CREATE TABLE verify_schedule (
    job_id         BIGINT      PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    next_verify_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX verify_schedule_due ON verify_schedule (next_verify_at);
