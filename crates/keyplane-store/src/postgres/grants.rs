//! Grants and revoked key pairs on PostgreSQL (the same statements as `sqlite/grants.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::grant::{Grant, InstanceNow};
use keyplane_core::model::KeyPair;
use keyplane_core::CoreError;
use sqlx::{QueryBuilder, Row};

use super::audit::commit;
use super::store::*;
use super::{Db, DbRow, SqlStore};
use crate::*;

fn opt_ts(v: Option<String>) -> Result<Option<DateTime<Utc>>> {
    v.map(|t| parse_ts(&t)).transpose()
}

fn grant_from_row(r: &DbRow) -> Result<(Grant, InstanceNow)> {
    let grant = Grant {
        id: r.get("id"),
        account_id: r.get("account_id"),
        region_id: r.get("region_id"),
        instance_id: r.get("instance_id"),
        key_pair_id: r.get("key_pair_id"),
        key_pair_name: r.get("key_pair_name"),
        public_key: r.get("public_key"),
        os_user: r.get("os_user"),
        expires_at: opt_ts(r.get("expires_at"))?,
        immediate: r.get::<i64, _>("immediate") != 0,
        apply_seq: r.get("apply_seq"),
        created_at: parse_ts(r.get("created_at"))?,
        revoked_at: opt_ts(r.get("revoked_at"))?,
        result: r.get("result"),
        error: r.get("error"),
    };
    let now = InstanceNow {
        apply_seq: r.get("instance_seq"),
        simulated: r.get::<String, _>("instance_provider") != "host",
        started_at: opt_ts(r.get("instance_started_at"))?,
    };
    Ok((grant, now))
}

async fn revoked<'e, E>(executor: E, account: &str, key_pair_id: &str) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    Ok(
        sqlx::query("SELECT 1 FROM revoked_key_pairs WHERE account_id = $1 AND key_pair_id = $2")
            .bind(account)
            .bind(key_pair_id)
            .fetch_optional(executor)
            .await
            .map_err(db)?
            .is_some(),
    )
}

#[async_trait]
impl Grants for SqlStore {
    async fn create_grants(&self, grants: &[Grant], audit: Option<&AuditRecord>) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for g in grants {
            if revoked(&mut *tx, &g.account_id, &g.key_pair_id).await? {
                return Err(CoreError::KeyPairRevoked(g.key_pair_name.clone()));
            }
            sqlx::query(
                "INSERT INTO grants (id, account_id, region_id, instance_id, key_pair_id, os_user, \
                 expires_at, immediate, apply_seq, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&g.id)
            .bind(&g.account_id)
            .bind(&g.region_id)
            .bind(&g.instance_id)
            .bind(&g.key_pair_id)
            .bind(&g.os_user)
            .bind(g.expires_at.map(ts))
            .bind(g.immediate as i64)
            .bind(g.apply_seq)
            .bind(ts(g.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        commit(tx, audit).await
    }

    async fn list_grants(&self, f: &GrantFilter) -> Result<Vec<(Grant, InstanceNow)>> {
        let mut q: QueryBuilder<'_, Db> = QueryBuilder::new(GRANT_SELECT);
        q.push(" WHERE g.account_id = ")
            .push_bind(f.account_id.clone());
        if let Some(r) = &f.region_id {
            q.push(" AND g.region_id = ").push_bind(r.clone());
        }
        if let Some(i) = &f.instance_id {
            q.push(" AND g.instance_id = ").push_bind(i.clone());
        }
        if let Some(k) = &f.key_pair_id {
            q.push(" AND g.key_pair_id = ").push_bind(k.clone());
        }
        q.push(format!(
            " ORDER BY g.created_at DESC, g.id LIMIT {MAX_GRANTS_LISTED}"
        ));
        let rows = q.build().fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn revoke_grant(
        &self,
        account: &str,
        id: &str,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<String> {
        let mut tx = self.begin(Serial::Rows).await?;
        let instance: Option<String> = sqlx::query_scalar(
            "UPDATE grants SET revoked_at = COALESCE(revoked_at, $1) WHERE account_id = $2 AND id = $3 \
             RETURNING instance_id",
        )
        .bind(ts(at))
        .bind(account)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let instance = instance.ok_or_else(|| CoreError::GrantNotFound(id.to_string()))?;
        commit(tx, audit).await?;
        Ok(instance)
    }

    async fn revoke_key_pair(
        &self,
        kp: &KeyPair,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin(Serial::Rows).await?;
        sqlx::query(
            "INSERT INTO revoked_key_pairs (account_id, key_pair_id, public_key, revoked_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, key_pair_id) DO NOTHING",
        )
        .bind(&kp.account_id)
        .bind(&kp.id)
        .bind(&kp.public_key)
        .bind(ts(at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut instances: Vec<String> = sqlx::query_scalar(
            "UPDATE grants SET revoked_at = $1 \
             WHERE account_id = $2 AND key_pair_id = $3 AND revoked_at IS NULL RETURNING instance_id",
        )
        .bind(ts(at))
        .bind(&kp.account_id)
        .bind(&kp.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        instances.sort();
        instances.dedup();
        commit(tx, audit).await?;
        Ok(instances)
    }

    async fn unrevoke_key_pair(
        &self,
        account: &str,
        key_pair_id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool> {
        let mut tx = self.begin(Serial::Rows).await?;
        let n =
            sqlx::query("DELETE FROM revoked_key_pairs WHERE account_id = $1 AND key_pair_id = $2")
                .bind(account)
                .bind(key_pair_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        commit(tx, audit).await?;
        Ok(n > 0)
    }

    async fn key_pair_revoked(&self, account: &str, key_pair_id: &str) -> Result<bool> {
        revoked(&self.reader, account, key_pair_id).await
    }

    async fn revoked_keys(&self, account: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT public_key FROM revoked_key_pairs WHERE account_id = $1 ORDER BY key_pair_id",
        )
        .bind(account)
        .fetch_all(&self.reader)
        .await
        .map_err(db)
    }

    async fn expire_grants(&self, now: DateTime<Utc>) -> Result<Vec<Grant>> {
        let mut tx = self.begin(Serial::Rows).await?;
        let rows = sqlx::query(&format!(
            "{GRANT_SELECT} {EXPIRED} FOR UPDATE OF g SKIP LOCKED"
        ))
        .bind(ts(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let due: Vec<Grant> = rows
            .iter()
            .map(|r| grant_from_row(r).map(|(g, _)| g))
            .collect::<Result<_>>()?;
        for g in &due {
            sqlx::query("UPDATE grants SET result = 'expired' WHERE id = $1")
                .bind(&g.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(due)
    }

    async fn record_grant_results(
        &self,
        instance_id: &str,
        results: &[(String, Option<String>)],
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for (id, error) in results {
            let result = if error.is_some() { "failed" } else { "applied" };
            sqlx::query(
                "UPDATE grants SET result = $1, error = $2 WHERE id = $3 AND instance_id = $4 AND result <> 'expired'",
            )
            .bind(result)
            .bind(error)
            .bind(id)
            .bind(instance_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}
