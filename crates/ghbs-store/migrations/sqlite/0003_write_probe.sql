-- One row per server node, rewritten by the readiness probe: a real write that fails while the
-- database cannot write (a full disk), so `/readyz` can say so. Never edit once landed.
CREATE TABLE write_probe (
    node      TEXT    PRIMARY KEY,
    probed_at INTEGER NOT NULL
);
