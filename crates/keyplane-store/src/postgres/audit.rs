//! The append-only audit log, on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::store::*;
use super::{Db, DbRow, SqlStore, CONTAINS};
use crate::*;

fn audit_from_row(r: &DbRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get("seq"),
        at: parse_ts(r.get("at"))?,
        account_id: r.get("account_id"),
        principal: r.get("principal"),
        access_key_id: r.get("access_key_id"),
        source_ip: r.get("source_ip"),
        dialect: r.get("dialect"),
        action: r.get("action"),
        resources: serde_json::from_str(r.get("resources")).unwrap_or_default(),
        result: r.get("result"),
        status: r.get::<i64, _>("status") as u16,
        request_id: r.get("request_id"),
        client_token: r.get("client_token"),
        instance_results: serde_json::from_str(r.get("instance_results")).unwrap_or_default(),
        injected: serde_json::from_str(r.get("injected")).unwrap_or_default(),
    })
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, a: &AuditRecord) -> Result<()> {
        insert_audit(&self.writer, a).await
    }

    async fn list_audit(&self, f: &AuditFilter, page: Page) -> Result<Listing<AuditRecord>> {
        let filter = |qb: &mut QueryBuilder<'_, Db>| {
            qb.push(" WHERE TRUE");
            if let Some(a) = &f.account_id {
                qb.push(" AND account_id = ").push_bind(a.clone());
            }
            if let Some(a) = &f.action {
                qb.push(" AND action = ").push_bind(a.clone());
            }
            if let Some(p) = &f.principal {
                qb.push(" AND principal = ").push_bind(p.clone());
            }
            if let Some(r) = &f.result {
                // The call's result, or one of its instances' results: the JSON member as written
                // (serde_json quotes the code the same way), found by the backend's substring test.
                let member = format!("\"Result\":{}", serde_json::Value::String(r.clone()));
                qb.push(" AND (result = ")
                    .push_bind(r.clone())
                    .push(format!(" OR {CONTAINS}(instance_results, "))
                    .push_bind(member)
                    .push(") > 0)");
            }
            if let Some(t) = f.since {
                qb.push(" AND at >= ").push_bind(ts(t));
            }
        };
        self.list_page("audit", "*", filter, audit_from_row, page)
            .await
    }

    async fn purge_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        // The transaction-local cutoff is what lets the trigger allow these deletes.
        sqlx::query("SELECT set_config('keyplane.audit_purge_before', $1, true)")
            .bind(ts(before))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // The oldest `limit` by sequence, not a scan for old timestamps: the log is in time
        // order, give or take the clocks of the servers that wrote it.
        let n = sqlx::query(
            "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit ORDER BY seq LIMIT $1) AND at < $2",
        )
        .bind(i64::from(limit))
        .bind(ts(before))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n)
    }
}

/// Appends an audit record through `executor`: the writer pool, or a transaction it belongs to.
pub(super) async fn insert_audit<'e, E>(executor: E, a: &AuditRecord) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query(
        "INSERT INTO audit (at, account_id, principal, access_key_id, source_ip, dialect, action, resources, \
         result, status, request_id, client_token, instance_results, injected) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(ts(a.at))
    .bind(&a.account_id)
    .bind(&a.principal)
    .bind(&a.access_key_id)
    .bind(&a.source_ip)
    .bind(&a.dialect)
    .bind(&a.action)
    .bind(serde_json::to_string(&a.resources).unwrap_or_else(|_| "[]".into()))
    .bind(&a.result)
    .bind(a.status as i64)
    .bind(&a.request_id)
    .bind(&a.client_token)
    .bind(serde_json::to_string(&a.instance_results).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&a.injected).unwrap_or_else(|_| "[]".into()))
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}

/// Commits `tx` with `audit` appended: the change and its record, or neither.
pub(super) async fn commit(
    mut tx: sqlx::Transaction<'static, Db>,
    audit: Option<&AuditRecord>,
) -> Result<()> {
    if let Some(a) = audit {
        insert_audit(&mut *tx, a).await?;
    }
    tx.commit().await.map_err(db)
}
