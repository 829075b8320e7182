-- Initial schema (PostgreSQL). Never edit once landed: add a new numbered file instead.
-- Timestamps are TIMESTAMPTZ. JSON documents are TEXT (kept byte for byte; the store never
-- queries inside them). Identity columns never reuse ids (mirrors on disk are named after
-- job_repos ids; snapshots outlive jobs).

CREATE TABLE users (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    github_id    BIGINT  NOT NULL UNIQUE,
    login        TEXT    NOT NULL,
    token_sealed BYTEA   NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash     TEXT    NOT NULL UNIQUE,
    label        TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);

CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target           TEXT    NOT NULL,
    target_kind      TEXT    NOT NULL CHECK (target_kind IN ('repository', 'account')),
    schedule         TEXT    NOT NULL,
    timezone         TEXT    NOT NULL,
    retention        TEXT    NOT NULL,
    options          TEXT    NOT NULL,
    paused           BOOLEAN NOT NULL DEFAULT FALSE,
    needs_login      BOOLEAN NOT NULL DEFAULT FALSE,
    next_run_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    lease_token      BIGINT  NOT NULL DEFAULT 0
);
-- GitHub names are case-insensitive: `Octo/Hello` and `octo/hello` are one repository.
CREATE UNIQUE INDEX jobs_user_target ON jobs (user_id, lower(target));
CREATE INDEX jobs_next_run_at ON jobs (next_run_at, id);

CREATE TABLE runs (
    id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                   BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    trigger_kind             TEXT    NOT NULL CHECK (trigger_kind IN ('schedule', 'manual')),
    status                   TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    queued_at                TIMESTAMPTZ NOT NULL,
    started_at               TIMESTAMPTZ,
    finished_at              TIMESTAMPTZ,
    error                    TEXT,
    progress                 TEXT,
    bytes_fetched            BIGINT  NOT NULL DEFAULT 0,
    api_requests             BIGINT  NOT NULL DEFAULT 0,
    api_requests_conditional BIGINT  NOT NULL DEFAULT 0,
    snapshot_id              BIGINT
);
CREATE INDEX runs_job ON runs (job_id, id);
-- One run of a job at a time: at most one queued-or-running run per job.
CREATE UNIQUE INDEX runs_one_active ON runs (job_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_manual ON runs (job_id, queued_at) WHERE trigger_kind = 'manual';

-- No foreign key to jobs: snapshots outlive a deleted job unless purged. user_id scopes reads.
CREATE TABLE snapshots (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id     BIGINT  NOT NULL,
    run_id     BIGINT  NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    refs       BIGINT  NOT NULL,
    size_bytes BIGINT  NOT NULL,
    repos      TEXT    NOT NULL,
    manifest   TEXT    NOT NULL
);
CREATE INDEX snapshots_job ON snapshots (job_id, id);
CREATE INDEX snapshots_user_job ON snapshots (user_id, job_id, id);

CREATE TABLE job_repos (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    full_name TEXT    NOT NULL,
    github_id BIGINT,
    state     TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (job_id, full_name)
);
CREATE INDEX job_repos_github_id ON job_repos (job_id, github_id);

CREATE TABLE http_cache (
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url           TEXT    NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    body          BYTEA,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, url)
);
