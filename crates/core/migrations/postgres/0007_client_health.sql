-- Endpoint health: who paused a client and when, and per-client delivery statistics shared by
-- every node and updated with atomic increments. Times are milliseconds since the Unix epoch.
ALTER TABLE clients ADD COLUMN paused_by TEXT;
ALTER TABLE clients ADD COLUMN paused_at BIGINT;
UPDATE clients SET paused_by = 'operator', paused_at = updated_at WHERE paused;

-- One row per client: the last success and failure, and the current failure streak (failures
-- since the last success or the last resume, and when the streak began).
CREATE TABLE client_health (
    client_id               TEXT PRIMARY KEY,
    last_success_at         BIGINT,
    last_failure_at         BIGINT,
    failures_since_success  BIGINT NOT NULL DEFAULT 0,
    failing_since           BIGINT
);

-- Attempts per client, hour (its start) and latency bucket (see the health module), kept for
-- the health window and pruned with the retention sweep.
CREATE TABLE client_health_buckets (
    client_id       TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    latency_bucket  BIGINT NOT NULL,
    successes       BIGINT NOT NULL,
    failures        BIGINT NOT NULL,
    PRIMARY KEY (client_id, hour, latency_bucket)
);
CREATE INDEX client_health_buckets_hour ON client_health_buckets (hour);
