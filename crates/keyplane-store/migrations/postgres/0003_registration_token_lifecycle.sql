-- Registration tokens that expire and can be listed and revoked (docs/AGENT.md, "Registration
-- tokens"). token_id is the public handle (the secret stays stored only as its SHA-256);
-- expires_at and revoked_at are `ts` text like every other time, so they compare as text.
ALTER TABLE registration_tokens ADD COLUMN token_id TEXT;
ALTER TABLE registration_tokens ADD COLUMN expires_at TEXT COLLATE "C";
ALTER TABLE registration_tokens ADD COLUMN revoked_at TEXT COLLATE "C";

-- Tokens made before this release had no expiry: an unused one gets the default lifetime (24 h)
-- from the upgrade, so a token lying around in a shell history stops working a day later; a used
-- one expired when it was used.
UPDATE registration_tokens SET
    token_id = 'rt-' || substr(md5(random()::text || token_hash), 1, 20),
    expires_at = CASE
        WHEN used_at IS NULL THEN to_char((now() AT TIME ZONE 'UTC') + interval '24 hours',
                                          'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ELSE used_at
    END;

CREATE UNIQUE INDEX registration_tokens_token_id ON registration_tokens (token_id);
CREATE INDEX registration_tokens_account ON registration_tokens (account_id, created_at);
