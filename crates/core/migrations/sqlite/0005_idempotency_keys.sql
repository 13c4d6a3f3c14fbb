-- Idempotency keys of bulk re-drives. A repeat of a request with the same key answers the
-- first one's count instead of re-driving again; the same key with another request (another
-- hash of its filters) is refused. `redriven` grows with each committed batch and `done` is
-- set with the last. Retention deletes a key after `expires_at`.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY NOT NULL,
    request_hash  TEXT NOT NULL,
    redriven      INTEGER NOT NULL,
    done          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
