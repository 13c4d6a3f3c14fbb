-- Idempotency keys of bulk re-drives, shared by every node. A repeat of a request with the
-- same key answers the first one's count instead of re-driving again; the same key with
-- another request (another hash of its filters) is refused. `redriven` grows with each
-- committed batch and `done` is set with the last. Retention deletes a key after `expires_at`.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    redriven      BIGINT NOT NULL,
    done          BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
