-- Notifications (issue 11): per-user targets, a durable delivery queue, and which stale
-- backup each job was last notified about. Never edit once landed: add a new numbered file.

-- A webhook or an e-mail address. The destination (a webhook URL often carries a credential)
-- and the webhook's signing secret are sealed with the server's token key; `display` is what
-- listings show (a masked URL, or the e-mail address). `events` is `all` or a comma-separated
-- list. The `last_*` columns hold the newest delivery attempt (`last_error` NULL: it succeeded).
CREATE TABLE notify_targets (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL CHECK (kind IN ('webhook', 'email')),
    format             TEXT    NOT NULL CHECK (format IN ('json', 'slack', 'discord', 'email')),
    destination_sealed BYTEA   NOT NULL,
    display            TEXT    NOT NULL,
    secret_sealed      BYTEA,
    events             TEXT    NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    last_attempt_at    TIMESTAMPTZ,
    last_error         TEXT,
    last_event         TEXT
);
CREATE INDEX notify_targets_user ON notify_targets (user_id, id);

-- One event for one target. `pending` rows are claimed under a lease (`lease_until`) and
-- `attempts` is the fencing token: a finish only writes while it still matches.
CREATE TABLE notify_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_id       BIGINT  NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_until     TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notify_deliveries_target ON notify_deliveries (target_id, id);

-- The last success time (or creation time) a job's "stale" notification was sent for: one
-- notification per stale episode, even with several nodes checking.
CREATE TABLE notify_stale (
    job_id   BIGINT  PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    basis_at TIMESTAMPTZ NOT NULL
);
