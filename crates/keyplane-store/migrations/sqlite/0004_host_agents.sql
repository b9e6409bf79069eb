-- Real hosts: one-time registration tokens, the agent's credential, and the apply handshake.
CREATE TABLE registration_tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    region_id   TEXT NOT NULL,
    zone_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    instance_id TEXT
);

-- SHA-256 of the agent's credential; the credential itself is only on the host.
ALTER TABLE instances ADD COLUMN agent_credential_hash TEXT;
-- Raised by every start or reboot of a host instance; the agent applies when it sees a new value.
ALTER TABLE instances ADD COLUMN apply_seq INTEGER NOT NULL DEFAULT 0;
-- What the host last reported: fingerprints of the managed keys, and when.
ALTER TABLE instances ADD COLUMN reported_fingerprints TEXT;
ALTER TABLE instances ADD COLUMN reported_at TEXT;
