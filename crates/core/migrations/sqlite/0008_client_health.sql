-- Endpoint health: who paused a client and when, and per-client delivery statistics shared by
-- every process on the database file. Times are INTEGER milliseconds since the Unix epoch.
ALTER TABLE clients ADD COLUMN paused_by TEXT;
ALTER TABLE clients ADD COLUMN paused_at INTEGER;
UPDATE clients SET paused_by = 'operator', paused_at = updated_at WHERE paused = 1;

-- One row per client: the last success and failure, and the current failure streak (failures
-- since the last success or the last resume, and when the streak began).
CREATE TABLE client_health (
    client_id               TEXT PRIMARY KEY NOT NULL,
    last_success_at         INTEGER,
    last_failure_at         INTEGER,
    failures_since_success  INTEGER NOT NULL DEFAULT 0,
    failing_since           INTEGER
) WITHOUT ROWID;

-- Attempts per client, hour (its start) and latency bucket (see the health module), kept for
-- the health window and pruned with the retention sweep.
CREATE TABLE client_health_buckets (
    client_id       TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    latency_bucket  INTEGER NOT NULL,
    successes       INTEGER NOT NULL,
    failures        INTEGER NOT NULL,
    PRIMARY KEY (client_id, hour, latency_bucket)
) WITHOUT ROWID;
CREATE INDEX client_health_buckets_hour ON client_health_buckets (hour);

-- Claims take due rows in (due time, id) order, so rows made due at one instant (a client
-- resumed) are released in the order they were written.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
    WHERE state IN ('pending', 'in_flight');
