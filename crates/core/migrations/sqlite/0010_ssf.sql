-- The SSF transmitter: receivers (each with its own `aud` and bearer token, stored hashed),
-- their streams (one per receiver) and the SET outbox, written in the same transaction as a
-- session end and delivered by push or poll. Times are INTEGER milliseconds.
CREATE TABLE ssf_receivers (
    id                        TEXT PRIMARY KEY NOT NULL,
    name                      TEXT NOT NULL,
    aud                       TEXT NOT NULL UNIQUE,
    client_id                 TEXT,
    -- 'participating' or 'all'.
    scope                     TEXT NOT NULL,
    include_session_metadata  INTEGER NOT NULL DEFAULT 0,
    -- SHA-256 of the bearer token, lowercase hex.
    token_hash                TEXT NOT NULL UNIQUE,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ssf_streams (
    stream_id             TEXT PRIMARY KEY NOT NULL,
    -- One stream per receiver.
    receiver_id           TEXT NOT NULL UNIQUE REFERENCES ssf_receivers (id),
    -- 'enabled', 'paused' or 'disabled'.
    status                TEXT NOT NULL,
    status_reason         TEXT,
    -- The receiver's `events_requested` (a JSON array), NULL when it sent none.
    events_requested      TEXT,
    -- 'push' or 'poll'.
    delivery_method       TEXT NOT NULL,
    endpoint_url          TEXT,
    -- A secret: sent as `Authorization` on every push.
    authorization_header  TEXT,
    description           TEXT,
    -- Subjects removed from the stream (a JSON array).
    excluded_subjects     TEXT NOT NULL DEFAULT '[]',
    last_verification_at  INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) WITHOUT ROWID;

-- No foreign key to the stream: a deleted stream's rows stay, cancelled, until pruned.
CREATE TABLE ssf_sets (
    id                 TEXT PRIMARY KEY NOT NULL,
    stream_id          TEXT NOT NULL,
    receiver_id        TEXT NOT NULL,
    -- 'session_revoked', 'verification' or 'stream_updated'.
    kind               TEXT NOT NULL,
    -- Fixed for the row's whole life: a poll acknowledges by it.
    jti                TEXT NOT NULL UNIQUE,
    txn                TEXT,
    -- What to sign (JSON), by kind.
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

-- Push claims: due rows.
CREATE INDEX ssf_sets_due ON ssf_sets (next_attempt_at)
    WHERE state IN ('pending', 'in_flight');
-- Polls, releases and cancellations: a stream's waiting rows in id order.
CREATE INDEX ssf_sets_stream ON ssf_sets (stream_id, id)
    WHERE state IN ('pending', 'in_flight');
-- Pruning and listing by state.
CREATE INDEX ssf_sets_state ON ssf_sets (state, updated_at);
