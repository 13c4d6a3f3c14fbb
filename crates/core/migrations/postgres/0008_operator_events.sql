-- Operational events for the operator (client.paused, client.resumed, delivery.failed),
-- written in the same transaction as their cause and delivered to the operator webhook with
-- the same leases and retry budget as logout tokens. Times are BIGINT milliseconds.
CREATE TABLE operator_events (
    id                 TEXT PRIMARY KEY,
    type               TEXT NOT NULL,
    -- The event's `data` object.
    payload            JSONB NOT NULL,
    created_at         BIGINT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- Pending: when due. In flight: equal to lease_until. Otherwise NULL.
    next_attempt_at    BIGINT,
    lease_id           TEXT,
    lease_until        BIGINT,
    budget_started_at  BIGINT NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    delivered_at       BIGINT,
    updated_at         BIGINT NOT NULL
);

CREATE INDEX operator_events_due ON operator_events (next_attempt_at)
    WHERE state IN ('pending', 'in_flight');
CREATE INDEX operator_events_state ON operator_events (state, updated_at);
