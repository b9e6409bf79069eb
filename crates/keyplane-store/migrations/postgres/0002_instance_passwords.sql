-- Instance password resets (ModifyInstanceAttribute Password): the SHA-512 crypt hash of the
-- latest password keyplane set (never the plaintext), and the reset version desired and in effect.
ALTER TABLE instances ADD COLUMN password_hash TEXT;
ALTER TABLE instances ADD COLUMN desired_password_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN effective_password_version BIGINT NOT NULL DEFAULT 0;
