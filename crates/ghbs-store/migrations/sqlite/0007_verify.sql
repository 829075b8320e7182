-- Verification (issue 11): runs gain the trigger `verify`, and each job its next scheduled
-- verification. SQLite cannot change a CHECK constraint in place, so `runs` is rebuilt as in
-- 0002; nothing references `runs` by foreign key.

CREATE TABLE runs_new (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id                   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    trigger_kind             TEXT    NOT NULL
        CHECK (trigger_kind IN ('schedule', 'manual', 'verify')),
    status                   TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed')),
    queued_at                INTEGER NOT NULL,
    started_at               INTEGER,
    finished_at              INTEGER,
    error                    TEXT,
    progress                 TEXT,
    bytes_fetched            INTEGER NOT NULL DEFAULT 0,
    api_requests             INTEGER NOT NULL DEFAULT 0,
    api_requests_conditional INTEGER NOT NULL DEFAULT 0,
    snapshot_id              INTEGER,
    attempt                  INTEGER NOT NULL DEFAULT 1,
    retry_at                 INTEGER
);
-- Every column of `runs` as 0001, 0002 and 0005 left it (0005 added attempt and retry_at).
INSERT INTO runs_new SELECT id, job_id, trigger_kind, status, queued_at, started_at, finished_at,
    error, progress, bytes_fetched, api_requests, api_requests_conditional, snapshot_id,
    attempt, retry_at FROM runs;
-- Keep AUTOINCREMENT's high-water mark: a run id is never reused.
DELETE FROM sqlite_sequence WHERE name = 'runs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_new', seq FROM sqlite_sequence WHERE name = 'runs';
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_job ON runs (job_id, id);
CREATE UNIQUE INDEX runs_one_active ON runs (job_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_manual ON runs (job_id, queued_at) WHERE trigger_kind = 'manual';

-- When each job is verified next (microseconds, UTC). A job gets its row at the scheduler's
-- first look, spread over the interval; a deleted job takes its row along.
CREATE TABLE verify_schedule (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    next_verify_at INTEGER NOT NULL
);
CREATE INDEX verify_schedule_due ON verify_schedule (next_verify_at);
