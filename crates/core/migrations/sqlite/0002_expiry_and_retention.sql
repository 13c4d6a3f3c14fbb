-- Expiry sweeps and retention.

-- The earliest expiry of an active session, and the sessions past it, without a scan.
CREATE INDEX sessions_expires ON sessions (expires_at)
    WHERE ended_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX sessions_idle_expires ON sessions (idle_expires_at)
    WHERE ended_at IS NULL AND idle_expires_at IS NOT NULL;

-- Retention: ended sessions by end time, and terminal rows by their last change.
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX deliveries_state_age ON deliveries (state, updated_at);
