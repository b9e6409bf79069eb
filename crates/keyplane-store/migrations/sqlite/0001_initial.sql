-- Every resource row carries its account and region from the first migration (SPEC section 13).
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    user_name   TEXT,
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX access_keys_account ON access_keys(account_id);

CREATE TABLE key_pairs (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    region_id          TEXT NOT NULL,
    name               TEXT NOT NULL,
    public_key         TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    fingerprint_md5    TEXT NOT NULL,
    resource_group_id  TEXT NOT NULL DEFAULT '',
    description        TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    UNIQUE (account_id, region_id, name)
);
CREATE INDEX key_pairs_md5 ON key_pairs(account_id, region_id, fingerprint_md5);
CREATE INDEX key_pairs_sha256 ON key_pairs(account_id, region_id, fingerprint_sha256);

CREATE TABLE key_pair_tags (
    key_pair_id TEXT NOT NULL REFERENCES key_pairs(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (key_pair_id, key)
);
CREATE INDEX key_pair_tags_kv ON key_pair_tags(key, value);

CREATE TABLE instances (
    seq                      INTEGER PRIMARY KEY AUTOINCREMENT,
    id                       TEXT NOT NULL UNIQUE,
    account_id               TEXT NOT NULL REFERENCES accounts(id),
    region_id                TEXT NOT NULL,
    zone_id                  TEXT NOT NULL,
    name                     TEXT NOT NULL,
    host_name                TEXT NOT NULL,
    description              TEXT NOT NULL DEFAULT '',
    image_id                 TEXT NOT NULL,
    instance_type            TEXT NOT NULL,
    os_type                  TEXT NOT NULL,
    os_name                  TEXT NOT NULL,
    status                   TEXT NOT NULL,
    io_optimized             INTEGER NOT NULL,
    agent_installed          INTEGER NOT NULL,
    login_user               TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    has_password             INTEGER NOT NULL,
    created_at               TEXT NOT NULL,
    started_at               TEXT,
    key_pair_id              TEXT,
    key_pair_name            TEXT,
    desired_password_login   INTEGER NOT NULL,
    effective_key_pair_id    TEXT,
    effective_password_login INTEGER NOT NULL,
    binding_state            TEXT NOT NULL,
    binding_error            TEXT,
    -- a power operation in flight: the status it ends in, when, and whether it boots the instance
    transition_target        TEXT,
    transition_at            TEXT,
    transition_boots         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX instances_account_region ON instances(account_id, region_id, seq);
CREATE INDEX instances_key_pair ON instances(account_id, key_pair_id);
CREATE INDEX instances_key_pair_name ON instances(account_id, region_id, key_pair_name);
CREATE INDEX instances_transition ON instances(transition_at) WHERE transition_at IS NOT NULL;

CREATE TABLE instance_tags (
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (instance_id, key)
);
CREATE INDEX instance_tags_kv ON instance_tags(key, value);

-- Signature nonces, written through in batches so a restart inside the window still refuses a replay.
CREATE TABLE nonces (
    access_key_id TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    seen_at       TEXT NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
);
CREATE INDEX nonces_seen ON nonces(seen_at);
