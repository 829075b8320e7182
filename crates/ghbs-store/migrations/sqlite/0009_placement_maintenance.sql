-- Placement (issue 9): the node that last ran each job, whose cache holds its mirrors. The
-- claim gives that node the job at once and other nodes only a little later.
ALTER TABLE jobs ADD COLUMN warm_node TEXT;

-- Cluster-wide periodic tasks (the shared-storage garbage collection): when each last started,
-- so that one node of many runs it per period. Never edit once landed.
CREATE TABLE maintenance (
    task        TEXT    PRIMARY KEY,
    last_run_at INTEGER NOT NULL,
    node        TEXT    NOT NULL
);
