-- ModifyKeyPairAttribute changes a key pair; Volcengine reports when.
ALTER TABLE key_pairs ADD COLUMN updated_at TEXT;

-- ClientToken idempotency: one row per (account, dialect-qualified action, token), kept 24 hours.
CREATE TABLE client_tokens (
    account_id    TEXT NOT NULL,
    action        TEXT NOT NULL,
    token         TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,          -- 'processing' or 'done'
    status        INTEGER,
    content_type  TEXT,
    body          BLOB,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (account_id, action, token)
);
CREATE INDEX client_tokens_created ON client_tokens(created_at);
