//! The append-only audit log, on SQLite (the same queries as `postgres/audit.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

use super::common::list_page;
use super::sql::{execute, get, Sql};
use super::SqliteStore;
use crate::{parse_ts, ts, AuditFilter, AuditLog, AuditRecord, Listing, Page, Result};

/// SQLite's substring test (`instr(haystack, needle) > 0`), as `CONTAINS` in the SQL backends.
const CONTAINS: &str = "instr";

fn audit_from_row(r: &Row<'_>) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: get(r, "seq")?,
        at: parse_ts(&get::<String>(r, "at")?)?,
        account_id: get(r, "account_id")?,
        principal: get(r, "principal")?,
        access_key_id: get(r, "access_key_id")?,
        source_ip: get(r, "source_ip")?,
        dialect: get(r, "dialect")?,
        action: get(r, "action")?,
        resources: serde_json::from_str(&get::<String>(r, "resources")?).unwrap_or_default(),
        result: get(r, "result")?,
        status: get::<i64>(r, "status")? as u16,
        request_id: get(r, "request_id")?,
        client_token: get(r, "client_token")?,
        instance_results: serde_json::from_str(&get::<String>(r, "instance_results")?)
            .unwrap_or_default(),
        injected: serde_json::from_str(&get::<String>(r, "injected")?).unwrap_or_default(),
    })
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, a: &AuditRecord) -> Result<()> {
        let a = a.clone();
        self.engine.write(move |c| insert_audit(c, &a)).await
    }

    async fn list_audit(&self, f: &AuditFilter, page: Page) -> Result<Listing<AuditRecord>> {
        let filter = |q: &mut Sql| {
            q.push(" WHERE TRUE");
            if let Some(a) = &f.account_id {
                q.push(" AND account_id = ").push_bind(a.clone());
            }
            if let Some(a) = &f.action {
                q.push(" AND action = ").push_bind(a.clone());
            }
            if let Some(p) = &f.principal {
                q.push(" AND principal = ").push_bind(p.clone());
            }
            if let Some(r) = &f.result {
                // The call's result, or one of its instances' results: the JSON member as written
                // (serde_json quotes the code the same way), found by the backend's substring test.
                let member = format!("\"Result\":{}", serde_json::Value::String(r.clone()));
                q.push(" AND (result = ")
                    .push_bind(r.clone())
                    .push(format!(" OR {CONTAINS}(instance_results, "))
                    .push_bind(member)
                    .push(") > 0)");
            }
            if let Some(t) = f.since {
                q.push(" AND at >= ").push_bind(ts(t));
            }
        };
        self.engine
            .read(|c| list_page(c, "audit", "*", filter, audit_from_row, page))
    }

    async fn purge_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let before = ts(before);
        self.engine
            .write(move |c| {
                // The cutoff, named in audit_purge, is what lets the trigger allow these deletes.
                execute(c, "INSERT INTO audit_purge (before) VALUES ($1)", params![before])?;
                // The oldest `limit` by sequence, not a scan for old timestamps: the log is in
                // time order, give or take the clocks of the servers that wrote it.
                let n = execute(
                    c,
                    "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit ORDER BY seq LIMIT $1) AND at < $2",
                    params![limit, before],
                )?;
                execute(c, "DELETE FROM audit_purge", params![])?;
                Ok(n as u64)
            })
            .await
    }
}

/// Appends an audit record on `c`: inside a write, alone or with the call it records.
pub(crate) fn insert_audit(c: &Connection, a: &AuditRecord) -> Result<()> {
    execute(
        c,
        "INSERT INTO audit (at, account_id, principal, access_key_id, source_ip, dialect, action, resources, \
         result, status, request_id, client_token, instance_results, injected) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        params![
            ts(a.at),
            a.account_id,
            a.principal,
            a.access_key_id,
            a.source_ip,
            a.dialect,
            a.action,
            serde_json::to_string(&a.resources).unwrap_or_else(|_| "[]".into()),
            a.result,
            a.status as i64,
            a.request_id,
            a.client_token,
            serde_json::to_string(&a.instance_results).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&a.injected).unwrap_or_else(|_| "[]".into()),
        ],
    )?;
    Ok(())
}

impl SqliteStore {
    /// `f` in a write, with `audit` appended in the same savepoint when `f` succeeds: the change
    /// and its record, or neither.
    pub(crate) async fn write_audited<T: Send + 'static>(
        &self,
        audit: Option<&AuditRecord>,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let audit = audit.cloned();
        self.engine
            .write(move |c| {
                let done = f(c)?;
                if let Some(a) = &audit {
                    insert_audit(c, a)?;
                }
                Ok(done)
            })
            .await
    }
}
