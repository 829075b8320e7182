-- Scoped, expiring API keys and the per-user audit trail (SQLite). Never edit once landed.
-- read_only keys may only read (list, show, download); expires_at NULL never expires.
ALTER TABLE api_keys ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

-- One row per security-relevant action of a user. No foreign key to jobs or keys: the trail
-- outlives what it mentions. Never holds a token or a key, only ids.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    action      TEXT    NOT NULL,
    key_id      INTEGER,
    client_addr TEXT,
    job_id      INTEGER,
    detail      TEXT    NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
