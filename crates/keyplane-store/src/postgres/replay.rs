//! Signature nonces, ClientTokens and shared throttle buckets, on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::store::*;
use super::SqlStore;
use crate::*;

#[async_trait]
impl Replay for SqlStore {
    async fn claim_nonce(
        &self,
        access_key_id: &str,
        nonce: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // A use older than the window is forgotten even before the purge removes it.
        let mut tx = self.begin_unlocked_fast().await?;
        let r = sqlx::query(
            "INSERT INTO nonces (access_key_id, nonce, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (access_key_id, nonce) DO UPDATE SET seen_at = excluded.seen_at \
             WHERE nonces.seen_at < $4",
        )
        .bind(access_key_id)
        .bind(nonce)
        .bind(ts(at))
        .bind(ts(
            at - chrono::Duration::minutes(crate::NONCE_WINDOW_MINUTES)
        ))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn recent_nonces(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        let rows =
            sqlx::query("SELECT access_key_id, nonce, seen_at FROM nonces WHERE seen_at >= $1")
                .bind(ts(since))
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|r| Ok((r.get(0), r.get(1), crate::parse_ts(r.get(2))?)))
            .collect()
    }

    async fn record_nonces(&self, batch: &[(String, String, DateTime<Utc>)]) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for (ak, nonce, at) in batch {
            sqlx::query(
                "INSERT INTO nonces (access_key_id, nonce, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(ak)
            .bind(nonce)
            .bind(ts(*at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM nonces WHERE seen_at < $1")
            .bind(ts(before))
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(r.rows_affected())
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
        // Two calls with one token must not both find it unclaimed.
        let key = format!("{account}\n{action}\n{token}");
        let mut tx = self.begin(Serial::Key(&key)).await?;
        let row = sqlx::query(
            "SELECT request_hash, state, status, content_type, body, created_at FROM client_tokens \
             WHERE account_id = $1 AND action = $2 AND token = $3",
        )
        .bind(account)
        .bind(action)
        .bind(token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let expired = ts(now - chrono::Duration::hours(crate::CLIENT_TOKEN_HOURS));
        let row = row.filter(|r| r.get::<String, _>(5) > expired);
        let claim = match row {
            Some(r) if r.get::<String, _>(0) != hash => TokenClaim::Mismatch,
            Some(r) if r.get::<String, _>(1) == "done" => TokenClaim::Done(StoredResponse {
                status: r.get::<i64, _>(2) as u16,
                content_type: r.get(3),
                body: r.get(4),
            }),
            Some(r) if r.get::<String, _>(5) >= ts(stale_before) => TokenClaim::Processing,
            existing => {
                if existing.is_some() {
                    tracing::warn!(
                        account,
                        action,
                        "taking over an abandoned ClientToken claim"
                    );
                }
                sqlx::query(
                    "INSERT INTO client_tokens (account_id, action, token, request_hash, state, created_at) \
                     VALUES ($1, $2, $3, $4, 'processing', $5) ON CONFLICT(account_id, action, token) \
                     DO UPDATE SET request_hash = excluded.request_hash, state = 'processing', \
                     created_at = excluded.created_at, status = NULL, content_type = NULL, body = NULL",
                )
                .bind(account)
                .bind(action)
                .bind(token)
                .bind(hash)
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                TokenClaim::Claimed
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(claim)
    }

    async fn finish_token(
        &self,
        account: &str,
        action: &str,
        token: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE client_tokens SET state = 'done', status = $1, content_type = $2, body = $3 \
             WHERE account_id = $4 AND action = $5 AND token = $6",
        )
        .bind(response.status as i64)
        .bind(&response.content_type)
        .bind(&response.body)
        .bind(account)
        .bind(action)
        .bind(token)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn release_token(&self, account: &str, action: &str, token: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM client_tokens WHERE account_id = $1 AND action = $2 AND token = $3 AND state = 'processing'",
        )
        .bind(account)
        .bind(action)
        .bind(token)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM client_tokens WHERE created_at < $1")
            .bind(ts(before))
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(r.rows_affected())
    }

    async fn throttle(
        &self,
        access_key_id: &str,
        action: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<bool> {
        self.throttle_impl(access_key_id, action, per_second, burst)
            .await
    }
}
