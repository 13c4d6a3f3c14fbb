-- logoutd schema for SQLite. Every timestamp is INTEGER milliseconds since the Unix epoch (UTC),
-- so values compare numerically and round-trip at the precision the stores promise.

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    -- The full registration as JSON; paused and the timestamps below are authoritative.
    settings    TEXT NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    -- 1 when the registration has a back-channel logout URL (claimable).
    has_url     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    authenticated_at    INTEGER,
    idle_expires_at     INTEGER,
    expires_at          INTEGER,
    last_interacted_at  INTEGER,
    device              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    ended_at            INTEGER,
    end_initiator       TEXT
);

CREATE INDEX sessions_user ON sessions (user_id, id);

-- The RPs that took part in a session, in joining order. No foreign key to clients: deleting a
-- client leaves sessions' client lists alone.
CREATE TABLE session_clients (
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    client_id   TEXT NOT NULL,
    position    INTEGER NOT NULL,
    PRIMARY KEY (session_id, client_id)
) WITHOUT ROWID;

CREATE TABLE deliveries (
    id                 TEXT PRIMARY KEY NOT NULL,
    event_id           TEXT NOT NULL,
    session_id         TEXT NOT NULL REFERENCES sessions (id),
    user_id            TEXT NOT NULL,
    client_id          TEXT NOT NULL,
    initiator          TEXT NOT NULL,
    -- Session metadata snapshot taken at termination (JSON object of strings).
    metadata           TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- Pending: when due. In flight: equal to lease_until. Otherwise NULL.
    next_attempt_at    INTEGER,
    lease_id           TEXT,
    lease_until        INTEGER,
    budget_started_at  INTEGER NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    created_at         INTEGER NOT NULL,
    delivered_at       INTEGER,
    updated_at         INTEGER NOT NULL
);

-- Claiming and next_due_at: only live rows are indexed, in due order.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE state IN ('pending', 'in_flight');
-- Status API filters, each paged by id.
CREATE INDEX deliveries_state ON deliveries (state, id);
CREATE INDEX deliveries_client ON deliveries (client_id, id);
CREATE INDEX deliveries_session ON deliveries (session_id, id);
CREATE INDEX deliveries_user ON deliveries (user_id, id);

-- Attempt history; `id` grows with every insert, so ordering by it is oldest first.
CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id),
    at           INTEGER NOT NULL,
    status       INTEGER,
    error        TEXT,
    latency_ms   INTEGER NOT NULL,
    jti          TEXT NOT NULL
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
