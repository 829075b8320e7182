-- Initial schema (SQLite). Never edit once landed: add a new numbered file instead.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC), so that ordering and
-- comparisons in SQL are plain integer ones. JSON documents are TEXT. AUTOINCREMENT keeps ids
-- from ever being reused (mirrors on disk are named after job_repos ids; snapshots outlive jobs).

CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    github_id    INTEGER NOT NULL UNIQUE,
    login        TEXT    NOT NULL,
    token_sealed BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash     TEXT    NOT NULL UNIQUE,
    label        TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target           TEXT    NOT NULL,
    target_kind      TEXT    NOT NULL CHECK (target_kind IN ('repository', 'account')),
    schedule         TEXT    NOT NULL,
    timezone         TEXT    NOT NULL,
    retention        TEXT    NOT NULL,
    options          TEXT    NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    needs_login      INTEGER NOT NULL DEFAULT 0,
    next_run_at      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    lease_token      INTEGER NOT NULL DEFAULT 0
);
-- GitHub names are case-insensitive: `Octo/Hello` and `octo/hello` are one repository.
CREATE UNIQUE INDEX jobs_user_target ON jobs (user_id, lower(target));
CREATE INDEX jobs_next_run_at ON jobs (next_run_at);

CREATE TABLE runs (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id                   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    trigger_kind             TEXT    NOT NULL CHECK (trigger_kind IN ('schedule', 'manual')),
    status                   TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    queued_at                INTEGER NOT NULL,
    started_at               INTEGER,
    finished_at              INTEGER,
    error                    TEXT,
    progress                 TEXT,
    bytes_fetched            INTEGER NOT NULL DEFAULT 0,
    api_requests             INTEGER NOT NULL DEFAULT 0,
    api_requests_conditional INTEGER NOT NULL DEFAULT 0,
    snapshot_id              INTEGER
);
CREATE INDEX runs_job ON runs (job_id, id);
-- One run of a job at a time: at most one queued-or-running run per job.
CREATE UNIQUE INDEX runs_one_active ON runs (job_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_manual ON runs (job_id, queued_at) WHERE trigger_kind = 'manual';

-- No foreign key to jobs: snapshots outlive a deleted job unless purged. user_id scopes reads.
CREATE TABLE snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id     INTEGER NOT NULL,
    run_id     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    refs       INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    repos      TEXT    NOT NULL,
    manifest   TEXT    NOT NULL
);
CREATE INDEX snapshots_job ON snapshots (job_id, id);
CREATE INDEX snapshots_user_job ON snapshots (user_id, job_id, id);

CREATE TABLE job_repos (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id    INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    full_name TEXT    NOT NULL,
    github_id INTEGER,
    state     TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (job_id, full_name)
);
CREATE INDEX job_repos_github_id ON job_repos (job_id, github_id);

CREATE TABLE http_cache (
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url           TEXT    NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    body          BLOB,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, url)
);
