-- logoutd schema for PostgreSQL.
--
-- Every timestamp is BIGINT milliseconds since the Unix epoch (UTC), as in the SQLite schema:
-- values compare numerically and round-trip exactly at the precision the stores promise.
-- Identifier columns use the "C" collation, so ordering and paging cursors follow byte order,
-- the same order the other backends use, whatever the database's default collation is.

CREATE TABLE clients (
    client_id   TEXT COLLATE "C" PRIMARY KEY,
    -- The full registration; paused and the timestamps below are authoritative.
    settings    JSONB NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT false,
    -- true when the registration has a back-channel logout URL (claimable).
    has_url     BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    user_id             TEXT COLLATE "C" NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    authenticated_at    BIGINT,
    idle_expires_at     BIGINT,
    expires_at          BIGINT,
    last_interacted_at  BIGINT,
    device              JSONB NOT NULL,
    metadata            JSONB NOT NULL,
    ended_at            BIGINT,
    end_initiator       TEXT
);

-- A user's active sessions in id order (listing, paging and user-wide ends).
CREATE INDEX sessions_user_active ON sessions (user_id, id) WHERE ended_at IS NULL;

-- The RPs that took part in a session, in joining order. No foreign key to clients: deleting a
-- client leaves sessions' client lists alone.
CREATE TABLE session_clients (
    session_id  TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    client_id   TEXT COLLATE "C" NOT NULL,
    position    INTEGER NOT NULL,
    PRIMARY KEY (session_id, client_id)
);

CREATE TABLE deliveries (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    event_id           TEXT NOT NULL,
    session_id         TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    user_id            TEXT COLLATE "C" NOT NULL,
    client_id          TEXT COLLATE "C" NOT NULL,
    initiator          TEXT NOT NULL,
    -- Session metadata snapshot taken at termination (object of strings).
    metadata           JSONB NOT NULL,
    state              TEXT NOT NULL
        CHECK (state IN ('pending', 'in_flight', 'delivered', 'failed', 'cancelled')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- Pending: when due. In flight: equal to lease_until. Otherwise NULL.
    next_attempt_at    BIGINT,
    lease_id           TEXT,
    lease_until        BIGINT,
    budget_started_at  BIGINT NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    delivered_at       BIGINT,
    updated_at         BIGINT NOT NULL
);

-- Claiming and next_due_at: only live rows are indexed, in due order (id breaks ties).
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
    WHERE state IN ('pending', 'in_flight');
-- Status API filters, each paged by id; the client index also serves cancellation.
CREATE INDEX deliveries_state ON deliveries (state, id);
CREATE INDEX deliveries_client ON deliveries (client_id, id);
CREATE INDEX deliveries_session ON deliveries (session_id, id);
CREATE INDEX deliveries_user ON deliveries (user_id, id);

-- Attempt history; `id` grows with every insert, so ordering by it is oldest first.
CREATE TABLE delivery_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  TEXT COLLATE "C" NOT NULL REFERENCES deliveries (id),
    at           BIGINT NOT NULL,
    status       INTEGER,
    error        TEXT,
    latency_ms   BIGINT NOT NULL,
    jti          TEXT NOT NULL
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
