//! Signature nonces and ClientTokens, on SQLite (the queries of `../postgres/replay.rs`, except the
//! nonce log: one row per flushed batch, see migration 0009). Throttle buckets are the server's own
//! memory: one process owns the file.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::CoreError;
use rusqlite::params;

use super::sql::{execute, get_at, row, rows, scalar};
use super::SqliteStore;
use crate::{parse_ts, ts, Replay, Result, StoredResponse, TokenClaim};

#[async_trait]
impl Replay for SqliteStore {
    async fn claim_nonce(
        &self,
        access_key_id: &str,
        nonce: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let (access_key_id, nonce) = (access_key_id.to_string(), nonce.to_string());
        self.engine
            .write(move |c| {
                // A use older than the window is forgotten even before the purge removes it.
                let changed = execute(
                    c,
                    "INSERT INTO nonces (access_key_id, nonce, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (access_key_id, nonce) DO UPDATE SET seen_at = excluded.seen_at \
                     WHERE nonces.seen_at < $4",
                    params![
                        access_key_id,
                        nonce,
                        ts(at),
                        ts(at - chrono::Duration::minutes(crate::NONCE_WINDOW_MINUTES)),
                    ],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn recent_nonces(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        self.engine.read(|c| {
            // Rows from before the nonce log (and claims), then the log's batches.
            let mut out = rows(
                c,
                "SELECT access_key_id, nonce, seen_at FROM nonces WHERE seen_at >= $1",
                params![ts(since)],
                |r| {
                    Ok((
                        get_at(r, 0)?,
                        get_at(r, 1)?,
                        parse_ts(&get_at::<String>(r, 2)?)?,
                    ))
                },
            )?;
            let since_text = ts(since);
            for batch in rows(
                c,
                "SELECT batch FROM nonce_log WHERE newest >= $1",
                params![since_text],
                |r| get_at::<String>(r, 0),
            )? {
                let entries: Vec<(String, String, String)> = serde_json::from_str(&batch)
                    .map_err(|e| CoreError::Internal(format!("stored nonce batch: {e}")))?;
                for (ak, nonce, at) in entries {
                    if at >= since_text {
                        out.push((ak, nonce, parse_ts(&at)?));
                    }
                }
            }
            Ok(out)
        })
    }

    /// One row per batch (see migration 0009): an append, not one random index insert per nonce.
    async fn record_nonces(&self, batch: &[(String, String, DateTime<Utc>)]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<(&str, &str, String)> = batch
            .iter()
            .filter(|(ak, nonce, _)| seen.insert((ak.as_str(), nonce.as_str())))
            .map(|(ak, nonce, at)| (ak.as_str(), nonce.as_str(), ts(*at)))
            .collect();
        let Some(newest) = entries.iter().map(|(_, _, at)| at.clone()).max() else {
            return Ok(());
        };
        let count = entries.len() as i64;
        let json = serde_json::to_string(&entries)
            .map_err(|e| CoreError::Internal(format!("nonce batch: {e}")))?;
        self.engine
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO nonce_log (newest, entries, batch) VALUES ($1, $2, $3)",
                    params![newest, count, json],
                )?;
                Ok(())
            })
            .await
    }

    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64> {
        self.engine
            .write(move |c| {
                let before = ts(before);
                let rows_gone =
                    execute(c, "DELETE FROM nonces WHERE seen_at < $1", params![before])?;
                let logged: i64 = scalar(
                    c,
                    "SELECT COALESCE(SUM(entries), 0) FROM nonce_log WHERE newest < $1",
                    params![before],
                )?
                .unwrap_or(0);
                execute(
                    c,
                    "DELETE FROM nonce_log WHERE newest < $1",
                    params![before],
                )?;
                Ok(rows_gone as u64 + logged as u64)
            })
            .await
    }

    async fn claim_token(
        &self,
        account: &str,
        action: &str,
        token: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<TokenClaim> {
        let (account, action, token, hash) = (
            account.to_string(),
            action.to_string(),
            token.to_string(),
            hash.to_string(),
        );
        self.engine
            .write(move |c| {
                type Stored = (String, String, Option<i64>, Option<String>, Option<Vec<u8>>, String);
                let stored: Option<Stored> = row(
                    c,
                    "SELECT request_hash, state, status, content_type, body, created_at FROM client_tokens \
                     WHERE account_id = $1 AND action = $2 AND token = $3",
                    params![account, action, token],
                    |r| {
                        Ok((
                            get_at(r, 0)?,
                            get_at(r, 1)?,
                            get_at(r, 2)?,
                            get_at(r, 3)?,
                            get_at(r, 4)?,
                            get_at(r, 5)?,
                        ))
                    },
                )?;
                let expired = ts(now - chrono::Duration::hours(crate::CLIENT_TOKEN_HOURS));
                let stored = stored.filter(|s| s.5 > expired);
                let claim = match stored {
                    Some((h, ..)) if h != hash => TokenClaim::Mismatch,
                    Some((_, state, status, content_type, body, _)) if state == "done" => {
                        TokenClaim::Done(StoredResponse {
                            status: status.unwrap_or(0) as u16,
                            content_type: content_type.unwrap_or_default(),
                            body: body.unwrap_or_default(),
                        })
                    }
                    Some((.., created)) if created >= ts(stale_before) => TokenClaim::Processing,
                    existing => {
                        if existing.is_some() {
                            tracing::warn!(
                                account,
                                action,
                                "taking over an abandoned ClientToken claim"
                            );
                        }
                        execute(
                            c,
                            "INSERT INTO client_tokens (account_id, action, token, request_hash, state, created_at) \
                             VALUES ($1, $2, $3, $4, 'processing', $5) ON CONFLICT(account_id, action, token) \
                             DO UPDATE SET request_hash = excluded.request_hash, state = 'processing', \
                             created_at = excluded.created_at, status = NULL, content_type = NULL, body = NULL",
                            params![account, action, token, hash, ts(now)],
                        )?;
                        TokenClaim::Claimed
                    }
                };
                Ok(claim)
            })
            .await
    }

    async fn finish_token(
        &self,
        account: &str,
        action: &str,
        token: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        let (account, action, token, response) = (
            account.to_string(),
            action.to_string(),
            token.to_string(),
            response.clone(),
        );
        self.engine
            .write(move |c| {
                execute(
                    c,
                    "UPDATE client_tokens SET state = 'done', status = $1, content_type = $2, body = $3 \
                     WHERE account_id = $4 AND action = $5 AND token = $6",
                    params![
                        response.status as i64,
                        response.content_type,
                        response.body,
                        account,
                        action,
                        token
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn release_token(&self, account: &str, action: &str, token: &str) -> Result<()> {
        let (account, action, token) = (account.to_string(), action.to_string(), token.to_string());
        self.engine
            .write(move |c| {
                execute(
                    c,
                    "DELETE FROM client_tokens WHERE account_id = $1 AND action = $2 AND token = $3 AND state = 'processing'",
                    params![account, action, token],
                )?;
                Ok(())
            })
            .await
    }

    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64> {
        self.engine
            .write(move |c| {
                let n = execute(
                    c,
                    "DELETE FROM client_tokens WHERE created_at < $1",
                    params![ts(before)],
                )?;
                Ok(n as u64)
            })
            .await
    }

    /// One process owns the file: the server throttles in its own memory.
    async fn throttle(&self, _: &str, _: &str, _: u32, _: u32) -> Result<bool> {
        Ok(true)
    }
}
