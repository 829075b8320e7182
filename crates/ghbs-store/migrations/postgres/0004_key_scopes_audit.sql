-- Scoped, expiring API keys and the per-user audit trail (PostgreSQL). Never edit once landed.
-- read_only keys may only read (list, show, download); expires_at NULL never expires.
ALTER TABLE api_keys ADD COLUMN read_only BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;

-- One row per security-relevant action of a user. No foreign key to jobs or keys: the trail
-- outlives what it mentions. Never holds a token or a key, only ids.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL,
    action      TEXT        NOT NULL,
    key_id      BIGINT,
    client_addr TEXT,
    job_id      BIGINT,
    detail      TEXT        NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
