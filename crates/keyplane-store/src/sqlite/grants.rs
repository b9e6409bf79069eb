//! Grants and revoked key pairs on SQLite (the same statements as `postgres/grants.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::grant::{Grant, InstanceNow};
use keyplane_core::model::KeyPair;
use keyplane_core::CoreError;
use rusqlite::{params, Connection, Row};

use super::sql::{execute, get, rows, scalar, Sql};
use super::SqliteStore;
use crate::{
    parse_ts, ts, AuditRecord, GrantFilter, Grants, Result, EXPIRED, GRANT_SELECT,
    MAX_GRANTS_LISTED,
};

fn opt_ts(v: Option<String>) -> Result<Option<DateTime<Utc>>> {
    v.map(|t| parse_ts(&t)).transpose()
}

fn grant_from_row(r: &Row<'_>) -> Result<(Grant, InstanceNow)> {
    let grant = Grant {
        id: get(r, "id")?,
        account_id: get(r, "account_id")?,
        region_id: get(r, "region_id")?,
        instance_id: get(r, "instance_id")?,
        key_pair_id: get(r, "key_pair_id")?,
        key_pair_name: get(r, "key_pair_name")?,
        public_key: get(r, "public_key")?,
        os_user: get(r, "os_user")?,
        expires_at: opt_ts(get(r, "expires_at")?)?,
        immediate: get::<i64>(r, "immediate")? != 0,
        apply_seq: get(r, "apply_seq")?,
        created_at: parse_ts(&get::<String>(r, "created_at")?)?,
        revoked_at: opt_ts(get(r, "revoked_at")?)?,
        result: get(r, "result")?,
        error: get(r, "error")?,
    };
    let now = InstanceNow {
        apply_seq: get(r, "instance_seq")?,
        simulated: get::<String>(r, "instance_provider")? != "host",
        started_at: opt_ts(get(r, "instance_started_at")?)?,
    };
    Ok((grant, now))
}

fn revoked(c: &Connection, account: &str, key_pair_id: &str) -> Result<bool> {
    Ok(scalar::<i64>(
        c,
        "SELECT 1 FROM revoked_key_pairs WHERE account_id = $1 AND key_pair_id = $2",
        params![account, key_pair_id],
    )?
    .is_some())
}

#[async_trait]
impl Grants for SqliteStore {
    async fn create_grants(&self, grants: &[Grant], audit: Option<&AuditRecord>) -> Result<()> {
        let grants = grants.to_vec();
        self.write_audited(audit, move |c| {
            for g in &grants {
                if revoked(c, &g.account_id, &g.key_pair_id)? {
                    return Err(CoreError::KeyPairRevoked(g.key_pair_name.clone()));
                }
                execute(
                    c,
                    "INSERT INTO grants (id, account_id, region_id, instance_id, key_pair_id, os_user, \
                     expires_at, immediate, apply_seq, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    params![
                        g.id,
                        g.account_id,
                        g.region_id,
                        g.instance_id,
                        g.key_pair_id,
                        g.os_user,
                        g.expires_at.map(ts),
                        g.immediate as i64,
                        g.apply_seq,
                        ts(g.created_at)
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn list_grants(&self, f: &GrantFilter) -> Result<Vec<(Grant, InstanceNow)>> {
        let mut q = Sql::new(GRANT_SELECT);
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
        self.engine
            .read(|c| rows(c, &q.text, &q.args(), grant_from_row))
    }

    async fn revoke_grant(
        &self,
        account: &str,
        id: &str,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<String> {
        let (account, id) = (account.to_string(), id.to_string());
        self.write_audited(audit, move |c| {
            let instance: Option<String> = scalar(
                c,
                "SELECT instance_id FROM grants WHERE account_id = $1 AND id = $2",
                params![account, id],
            )?;
            let instance = instance.ok_or_else(|| CoreError::GrantNotFound(id.clone()))?;
            execute(
                c,
                "UPDATE grants SET revoked_at = COALESCE(revoked_at, $1) WHERE account_id = $2 AND id = $3",
                params![ts(at), account, id],
            )?;
            Ok(instance)
        })
        .await
    }

    async fn revoke_key_pair(
        &self,
        key_pair: &KeyPair,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<Vec<String>> {
        let kp = key_pair.clone();
        self.write_audited(audit, move |c| {
            execute(
                c,
                "INSERT INTO revoked_key_pairs (account_id, key_pair_id, public_key, revoked_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, key_pair_id) DO NOTHING",
                params![kp.account_id, kp.id, kp.public_key, ts(at)],
            )?;
            let instances = rows(
                c,
                "SELECT DISTINCT instance_id FROM grants \
                 WHERE account_id = $1 AND key_pair_id = $2 AND revoked_at IS NULL",
                params![kp.account_id, kp.id],
                |r| get::<String>(r, "instance_id"),
            )?;
            execute(
                c,
                "UPDATE grants SET revoked_at = $1 \
                 WHERE account_id = $2 AND key_pair_id = $3 AND revoked_at IS NULL",
                params![ts(at), kp.account_id, kp.id],
            )?;
            Ok(instances)
        })
        .await
    }

    async fn unrevoke_key_pair(
        &self,
        account: &str,
        key_pair_id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool> {
        let (account, kp) = (account.to_string(), key_pair_id.to_string());
        self.write_audited(audit, move |c| {
            let n = execute(
                c,
                "DELETE FROM revoked_key_pairs WHERE account_id = $1 AND key_pair_id = $2",
                params![account, kp],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn key_pair_revoked(&self, account: &str, key_pair_id: &str) -> Result<bool> {
        self.engine.read(|c| revoked(c, account, key_pair_id))
    }

    async fn revoked_keys(&self, account: &str) -> Result<Vec<String>> {
        self.engine.read(|c| {
            rows(
                c,
                "SELECT public_key FROM revoked_key_pairs WHERE account_id = $1 ORDER BY key_pair_id",
                params![account],
                |r| get::<String>(r, "public_key"),
            )
        })
    }

    async fn expire_grants(&self, now: DateTime<Utc>) -> Result<Vec<Grant>> {
        self.engine
            .write(move |c| {
                let due = rows(
                    c,
                    &format!("{GRANT_SELECT} {EXPIRED}"),
                    params![ts(now)],
                    grant_from_row,
                )?;
                for (g, _) in &due {
                    execute(
                        c,
                        "UPDATE grants SET result = 'expired' WHERE id = $1",
                        params![g.id],
                    )?;
                }
                Ok(due.into_iter().map(|(g, _)| g).collect())
            })
            .await
    }

    async fn record_grant_results(
        &self,
        instance_id: &str,
        results: &[(String, Option<String>)],
    ) -> Result<()> {
        let (instance, results) = (instance_id.to_string(), results.to_vec());
        self.engine
            .write(move |c| {
                for (id, error) in &results {
                    let result = if error.is_some() { "failed" } else { "applied" };
                    execute(
                        c,
                        "UPDATE grants SET result = $1, error = $2 WHERE id = $3 AND instance_id = $4 AND result <> 'expired'",
                        params![result, error, id, instance],
                    )?;
                }
                Ok(())
            })
            .await
    }
}
