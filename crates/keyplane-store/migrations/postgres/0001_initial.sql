-- The PostgreSQL schema: the same tables as the SQLite migrations 0001-0004, in one step.
-- Timestamps are fixed-width UTC text as in SQLite (the queries are shared); the "C" collation
-- keeps text order equal to time order and names in byte order, whatever the database's locale.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    user_name   TEXT COLLATE "C",
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX access_keys_account ON access_keys(account_id);
CREATE INDEX access_keys_user ON access_keys(account_id, user_name);

CREATE TABLE key_pairs (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    region_id          TEXT NOT NULL,
    name               TEXT COLLATE "C" NOT NULL,
    public_key         TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    fingerprint_md5    TEXT NOT NULL,
    resource_group_id  TEXT NOT NULL DEFAULT '',
    description        TEXT NOT NULL DEFAULT '',
    created_at         TEXT COLLATE "C" NOT NULL,
    updated_at         TEXT COLLATE "C",
    UNIQUE (account_id, region_id, name)
);
CREATE INDEX key_pairs_account_region ON key_pairs(account_id, region_id, seq);
CREATE INDEX key_pairs_md5 ON key_pairs(account_id, region_id, fingerprint_md5);
CREATE INDEX key_pairs_sha256 ON key_pairs(account_id, region_id, fingerprint_sha256);

CREATE TABLE key_pair_tags (
    key_pair_id TEXT NOT NULL REFERENCES key_pairs(id) ON DELETE CASCADE,
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (key_pair_id, key)
);
CREATE INDEX key_pair_tags_kv ON key_pair_tags(key, value);

CREATE TABLE instances (
    seq                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                       TEXT NOT NULL UNIQUE,
    account_id               TEXT NOT NULL REFERENCES accounts(id),
    region_id                TEXT NOT NULL,
    zone_id                  TEXT NOT NULL,
    name                     TEXT COLLATE "C" NOT NULL,
    host_name                TEXT NOT NULL,
    description              TEXT NOT NULL DEFAULT '',
    image_id                 TEXT NOT NULL,
    instance_type            TEXT NOT NULL,
    os_type                  TEXT NOT NULL,
    os_name                  TEXT NOT NULL,
    status                   TEXT NOT NULL,
    io_optimized             BOOLEAN NOT NULL,
    agent_installed          BOOLEAN NOT NULL,
    login_user               TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    has_password             BOOLEAN NOT NULL,
    created_at               TEXT COLLATE "C" NOT NULL,
    started_at               TEXT COLLATE "C",
    key_pair_id              TEXT,
    key_pair_name            TEXT,
    desired_password_login   BOOLEAN NOT NULL,
    effective_key_pair_id    TEXT,
    effective_password_login BOOLEAN NOT NULL,
    binding_state            TEXT NOT NULL,
    binding_error            TEXT,
    -- a power operation in flight: the status it ends in, when, and whether it boots the instance
    transition_target        TEXT,
    transition_at            TEXT COLLATE "C",
    transition_boots         BOOLEAN NOT NULL DEFAULT FALSE,
    -- real hosts: SHA-256 of the agent's credential, the apply sequence raised by every start or
    -- reboot, and what the host last reported
    agent_credential_hash    TEXT,
    apply_seq                BIGINT NOT NULL DEFAULT 0,
    reported_fingerprints    TEXT,
    reported_at              TEXT COLLATE "C"
);
CREATE INDEX instances_account_region ON instances(account_id, region_id, seq);
CREATE INDEX instances_key_pair ON instances(account_id, key_pair_id);
CREATE INDEX instances_effective_key_pair ON instances(account_id, effective_key_pair_id);
CREATE INDEX instances_key_pair_name ON instances(account_id, region_id, key_pair_name);
CREATE INDEX instances_transition ON instances(transition_at) WHERE transition_at IS NOT NULL;

CREATE TABLE instance_tags (
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (instance_id, key)
);
CREATE INDEX instance_tags_kv ON instance_tags(key, value);

-- Signature nonces: with several servers every nonce is claimed here before the call runs.
CREATE TABLE nonces (
    access_key_id TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    seen_at       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
);
CREATE INDEX nonces_seen ON nonces(seen_at);

-- ClientToken idempotency: one row per (account, dialect-qualified action, token), kept 24 hours.
CREATE TABLE client_tokens (
    account_id    TEXT NOT NULL,
    action        TEXT NOT NULL,
    token         TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    state         TEXT NOT NULL,
    status        BIGINT,
    content_type  TEXT,
    body          BYTEA,
    created_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, action, token)
);
CREATE INDEX client_tokens_created ON client_tokens(created_at);

CREATE TABLE users (
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT COLLATE "C" NOT NULL,
    id            TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    comments      TEXT NOT NULL DEFAULT '',
    created_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE login_profiles (
    account_id     TEXT NOT NULL,
    user_name      TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, user_name),
    FOREIGN KEY (account_id, user_name) REFERENCES users(account_id, name) ON DELETE CASCADE
);

CREATE TABLE policies (
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT COLLATE "C" NOT NULL,
    document     TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE user_policies (
    account_id   TEXT NOT NULL,
    user_name    TEXT COLLATE "C" NOT NULL,
    policy_name  TEXT COLLATE "C" NOT NULL,
    attached_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, user_name, policy_name),
    FOREIGN KEY (account_id, user_name) REFERENCES users(account_id, name),
    FOREIGN KEY (account_id, policy_name) REFERENCES policies(account_id, name)
);
CREATE INDEX user_policies_policy ON user_policies(account_id, policy_name);

-- Append-only: every mutating call and every denied call.
CREATE TABLE audit (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            TEXT COLLATE "C" NOT NULL,
    account_id    TEXT NOT NULL,
    principal     TEXT NOT NULL,
    access_key_id TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    dialect       TEXT NOT NULL,
    action        TEXT NOT NULL,
    resources     TEXT NOT NULL,
    result        TEXT NOT NULL,
    status        BIGINT NOT NULL,
    request_id    TEXT NOT NULL,
    client_token  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_account ON audit(account_id, seq);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE registration_tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    region_id   TEXT NOT NULL,
    zone_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    used_at     TEXT COLLATE "C",
    instance_id TEXT
);

-- Throttling shared by every server: the GCRA "theoretical arrival time" per AccessKey and action,
-- in microseconds of the database's clock. UNLOGGED: losing it in a database crash only resets
-- the buckets, and it costs no WAL.
CREATE UNLOGGED TABLE throttle (
    access_key_id TEXT NOT NULL,
    action        TEXT NOT NULL,
    tat_us        BIGINT NOT NULL,
    PRIMARY KEY (access_key_id, action)
);
