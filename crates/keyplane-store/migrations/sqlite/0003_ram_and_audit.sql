-- RAM: users, console passwords, custom policies and their attachments, per account.
CREATE TABLE users (
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT NOT NULL,
    id            TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    comments      TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE login_profiles (
    account_id     TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (account_id, user_name),
    FOREIGN KEY (account_id, user_name) REFERENCES users(account_id, name) ON DELETE CASCADE
);

CREATE TABLE policies (
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    document     TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE user_policies (
    account_id   TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    policy_name  TEXT NOT NULL,
    attached_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, user_name, policy_name),
    FOREIGN KEY (account_id, user_name) REFERENCES users(account_id, name),
    FOREIGN KEY (account_id, policy_name) REFERENCES policies(account_id, name)
);
CREATE INDEX user_policies_policy ON user_policies(account_id, policy_name);

CREATE INDEX access_keys_user ON access_keys(account_id, user_name);

-- Append-only: every mutating call and every denied call.
CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    principal     TEXT NOT NULL,
    access_key_id TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    dialect       TEXT NOT NULL,
    action        TEXT NOT NULL,
    resources     TEXT NOT NULL,
    result        TEXT NOT NULL,
    status        INTEGER NOT NULL,
    request_id    TEXT NOT NULL,
    client_token  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_account ON audit(account_id, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
