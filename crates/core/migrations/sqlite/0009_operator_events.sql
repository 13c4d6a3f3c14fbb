-- Operational events for the operator (client.paused, client.resumed, delivery.failed),
-- written in the same transaction as their cause and delivered to the operator webhook with
-- the same leases and retry budget as logout tokens. Times are INTEGER milliseconds.
CREATE TABLE operator_events (
    id                 TEXT PRIMARY KEY NOT NULL,
    type               TEXT NOT NULL,
    -- The event's `data` object (JSON).
    payload            TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- Pending: when due. In flight: equal to lease_until. Otherwise NULL.
    next_attempt_at    INTEGER,
    lease_id           TEXT,
    lease_until        INTEGER,
    budget_started_at  INTEGER NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    delivered_at       INTEGER,
    updated_at         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX operator_events_due ON operator_events (next_attempt_at)
    WHERE state IN ('pending', 'in_flight');
CREATE INDEX operator_events_state ON operator_events (state, updated_at);
