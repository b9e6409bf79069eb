//! What every topic of the PostgreSQL backend shares: error mapping, filters and paging, tag
//! loading, binding writes, and the store's own life (`impl Store`); each topic's queries are in
//! their own file (`key_pairs.rs`, `instances.rs`, `accounts.rs`, `audit.rs`, `replay.rs`,
//! `agents.rs`). `super` gives the store `SqlStore` (the `PgStore`) with its pools and `begin()`,
//! the row locks (`FOR_UPDATE`…) and the pieces of SQL that are PostgreSQL's own
//! (`push_name_pattern`). The statement texts are those the SQLite backend runs: `$N` parameters,
//! `ON CONFLICT`, `TRUE`/`FALSE`, timestamps as fixed-width text.

use std::collections::HashMap;

use async_trait::async_trait;
use keyplane_core::model::{FingerprintQuery, Instance, KeyPair, Tag};
use keyplane_core::CoreError;
use sqlx::{QueryBuilder, Row, Transaction};

use super::rows::instance_from_row;
use super::{push_name_pattern, Db, DbRow, SqlStore, BACKEND, FOR_UPDATE};
use crate::{
    ts, InstanceFilter, KeyPairFilter, Listing, Page, Result, Store, StoreGauges, COUNTED_TABLES,
};

/// A database error as the API sees it: the database being out of reach, or unable to write (a
/// read-only file or file system, a full disk), is `ServiceUnavailable` (the caller may retry;
/// nothing was written, and `/healthz` says not ready until writes work again); anything else is
/// an internal error.
pub(super) fn db(e: sqlx::Error) -> CoreError {
    if let sqlx::Error::Database(d) = &e {
        if cannot_write(d.code().as_deref()) {
            tracing::error!(backend = BACKEND, error = %e, "the database cannot be written (read-only or full?)");
            return CoreError::ServiceUnavailable;
        }
        if going_away(d.code().as_deref()) {
            tracing::warn!(backend = BACKEND, error = %e, "database unreachable");
            return CoreError::ServiceUnavailable;
        }
    }
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(backend = BACKEND, error = %e, "database unreachable");
            CoreError::ServiceUnavailable
        }
        e => CoreError::Internal(format!("{BACKEND}: {e}")),
    }
}

/// PostgreSQL's connection exceptions (class 08) and its shutdown and start-up refusals
/// (admin_shutdown 57P01, crash_shutdown 57P02, cannot_connect_now 57P03): the server stopped or
/// restarted under a call, which then changed nothing and may be retried.
fn going_away(code: Option<&str>) -> bool {
    BACKEND == "postgres"
        && code.is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
}

/// SQLite's READONLY (8), IOERR (10), CANTOPEN (14) and FULL (13), extended codes included;
/// PostgreSQL's disk_full (53100), insufficient_resources (53000) and read_only_sql_transaction
/// (25006).
pub(super) fn cannot_write(code: Option<&str>) -> bool {
    match code {
        Some("53100" | "53000" | "25006") => BACKEND == "postgres",
        Some(c) => {
            BACKEND == "sqlite"
                && c.parse::<i64>()
                    .is_ok_and(|n| matches!(n & 0xff, 8 | 10 | 13 | 14))
        }
        None => false,
    }
}

/// The outcome of an INSERT whose unique constraint means "already exists": that becomes
/// `exists`, any other failure goes through [`db`].
pub(super) fn unique<T>(r: std::result::Result<T, sqlx::Error>, exists: CoreError) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(exists),
        Err(e) => Err(db(e)),
    }
}

impl SqlStore {
    /// After any write to `access_keys`, committed or not: a cached key must never outlive a change.
    pub(super) fn forget_access_keys(&self) {
        if let Some(cache) = self.key_cache() {
            cache.forget_all();
        }
    }

    /// One page of `table` under the filter `push_filter` writes, and the total (a `COUNT(*)` only
    /// when the page cannot tell it).
    pub(super) async fn list_page<T>(
        &self,
        table: &str,
        columns: &str,
        push_filter: impl Fn(&mut QueryBuilder<'_, Db>),
        from_row: fn(&DbRow) -> Result<T>,
        page: Page,
    ) -> Result<Listing<T>> {
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {columns} FROM {table}"));
        push_filter(&mut qb);
        let limit = push_page(&mut qb, page);
        let rows = qb.build().fetch_all(&self.reader).await.map_err(db)?;
        // A page that is not full and has nothing skipped before it (or, for offsets, whatever was
        // skipped) already tells the total: most accounts fit in one page, and a statement saved
        // is a round trip saved (docs/BENCHMARKS.md).
        let known = match page {
            Page::Offset { offset, limit } if (rows.len() as u64) < limit => {
                (!rows.is_empty() || offset == 0).then(|| offset + rows.len() as u64)
            }
            Page::After { seq, limit } if seq <= 0 && (rows.len() as u64) <= limit => {
                Some(rows.len() as u64)
            }
            _ => None,
        };
        let total = match known {
            Some(n) => n,
            None => {
                let mut count = QueryBuilder::<Db>::new(format!("SELECT COUNT(*) FROM {table}"));
                push_filter(&mut count);
                let n: i64 = count
                    .build_query_scalar()
                    .fetch_one(&self.reader)
                    .await
                    .map_err(db)?;
                n as u64
            }
        };
        let mut seqs: Vec<i64> = rows.iter().map(|r| r.get("seq")).collect();
        let mut items: Vec<T> = rows.iter().map(from_row).collect::<Result<_>>()?;
        let next_seq = trim_keyset(&mut items, &mut seqs, page, limit);
        Ok(Listing {
            items,
            total,
            next_seq,
        })
    }

    /// Tags of the given resources from `table` (`key_pair_tags` or `instance_tags`), by ID.
    pub(super) async fn load_tags(
        &self,
        table: &str,
        id_column: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Vec<Tag>>> {
        let mut by_id: HashMap<String, Vec<Tag>> = HashMap::new();
        if ids.is_empty() {
            return Ok(by_id);
        }
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {id_column}, key, value FROM {table} WHERE {id_column} IN ("
        ));
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        qb.push(") ORDER BY key");
        for r in qb.build().fetch_all(&self.reader).await.map_err(db)? {
            by_id.entry(r.get(0)).or_default().push(Tag {
                key: r.get(1),
                value: r.get(2),
            });
        }
        Ok(by_id)
    }

    pub(super) async fn load_key_pair_tags(&self, items: &mut [KeyPair]) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|k| k.id.as_str()).collect();
        let mut tags = self.load_tags("key_pair_tags", "key_pair_id", &ids).await?;
        for kp in items.iter_mut() {
            kp.tags = tags.remove(&kp.id).unwrap_or_default();
        }
        Ok(())
    }

    pub(super) async fn load_instance_tags(&self, items: &mut [Instance]) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let mut tags = self.load_tags("instance_tags", "instance_id", &ids).await?;
        for i in items.iter_mut() {
            i.tags = tags.remove(&i.id).unwrap_or_default();
        }
        Ok(())
    }
}

pub(super) fn push_in(qb: &mut QueryBuilder<'_, Db>, column: &str, values: &[String]) {
    if values.is_empty() {
        qb.push(" AND FALSE");
        return;
    }
    qb.push(format!(" AND {column} IN ("));
    let mut sep = qb.separated(", ");
    for v in values {
        sep.push_bind(v.clone());
    }
    qb.push(")");
}

pub(super) fn push_key_pair_filter(qb: &mut QueryBuilder<'_, Db>, f: &KeyPairFilter) {
    qb.push(" WHERE account_id = ")
        .push_bind(f.account_id.clone())
        .push(" AND region_id = ")
        .push_bind(f.region_id.clone());
    if let Some(name) = &f.name {
        push_name_pattern(qb, name);
    }
    if !f.names.is_empty() {
        push_in(qb, "name", &f.names);
    }
    if !f.ids.is_empty() {
        push_in(qb, "id", &f.ids);
    }
    match &f.fingerprint {
        Some(FingerprintQuery::Sha256(s)) => {
            qb.push(" AND fingerprint_sha256 = ").push_bind(s.clone());
        }
        Some(FingerprintQuery::Md5(s)) => {
            qb.push(" AND fingerprint_md5 = ").push_bind(s.clone());
        }
        Some(FingerprintQuery::Unmatchable) => {
            qb.push(" AND FALSE");
        }
        None => {}
    }
    if let Some(rg) = &f.resource_group_id {
        qb.push(" AND resource_group_id = ").push_bind(rg.clone());
    }
    for t in &f.tags {
        qb.push(" AND id IN (SELECT key_pair_id FROM key_pair_tags WHERE key = ")
            .push_bind(t.key.clone())
            .push(" AND value = ")
            .push_bind(t.value.clone())
            .push(")");
    }
}

pub(super) fn push_instance_filter(qb: &mut QueryBuilder<'_, Db>, f: &InstanceFilter) {
    qb.push(" WHERE account_id = ")
        .push_bind(f.account_id.clone())
        .push(" AND region_id = ")
        .push_bind(f.region_id.clone());
    if let Some(ids) = &f.ids {
        push_in(qb, "id", ids);
    }
    if let Some(name) = &f.name {
        push_name_pattern(qb, name);
    }
    if let Some(kp) = &f.key_pair_name {
        qb.push(" AND key_pair_name = ").push_bind(kp.clone());
    }
    if let Some(s) = f.status {
        qb.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(io) = f.io_optimized {
        qb.push(" AND io_optimized = ").push_bind(io);
    }
    if let Some(z) = &f.zone_id {
        qb.push(" AND zone_id = ").push_bind(z.clone());
    }
    if let Some(img) = &f.image_id {
        qb.push(" AND image_id = ").push_bind(img.clone());
    }
    if let Some(t) = f.created_from {
        qb.push(" AND created_at >= ").push_bind(ts(t));
    }
    if let Some(t) = f.created_to {
        qb.push(" AND created_at <= ").push_bind(ts(t));
    }
    for t in &f.tags {
        qb.push(" AND id IN (SELECT instance_id FROM instance_tags WHERE key = ")
            .push_bind(t.key.clone())
            .push(" AND value = ")
            .push_bind(t.value.clone())
            .push(")");
    }
}

/// Appends ordering and the page; returns the limit asked for.
pub(super) fn push_page(qb: &mut QueryBuilder<'_, Db>, page: Page) -> u64 {
    match page {
        Page::Offset { offset, limit } => {
            qb.push(" ORDER BY seq LIMIT ")
                .push_bind(limit as i64)
                .push(" OFFSET ")
                .push_bind(offset as i64);
            limit
        }
        Page::After { seq, limit } => {
            qb.push(" AND seq > ")
                .push_bind(seq)
                .push(" ORDER BY seq LIMIT ")
                .push_bind(limit as i64 + 1);
            limit
        }
    }
}

/// Writes the desired side of many bindings with one UPDATE per group of instances that end with
/// the same values (a batch is usually one or two groups): the per-statement cost, not the disk,
/// is what limits a 50-instance AttachKeyPair on SQLite (docs/BENCHMARKS.md).
pub(super) async fn write_desired_bindings(
    tx: &mut Transaction<'static, Db>,
    items: &[Instance],
) -> Result<()> {
    type Key<'a> = (
        &'a Option<String>,
        &'a Option<String>,
        bool,
        &'static str,
        &'a Option<String>,
    );
    let mut groups: Vec<(Key<'_>, Vec<&str>)> = Vec::new();
    for i in items {
        let key: Key<'_> = (
            &i.binding.desired_key_pair_id,
            &i.key_pair_name,
            i.binding.desired_password_login,
            i.binding.state.as_str(),
            &i.binding.error,
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(&i.id),
            None => groups.push((key, vec![&i.id])),
        }
    }
    for ((kp, name, password, state, error), ids) in groups {
        let mut qb = QueryBuilder::<Db>::new("UPDATE instances SET key_pair_id = ");
        qb.push_bind(kp.clone())
            .push(", key_pair_name = ")
            .push_bind(name.clone())
            .push(", desired_password_login = ")
            .push_bind(password)
            .push(", binding_state = ")
            .push_bind(state)
            .push(", binding_error = ")
            .push_bind(error.clone())
            .push(" WHERE TRUE");
        let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
        push_in(&mut qb, "id", &ids);
        qb.build().execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// The account's instance `id`, read inside a write transaction.
pub(super) async fn instance_in_tx(
    tx: &mut Transaction<'static, Db>,
    account: &str,
    id: &str,
) -> Result<Instance> {
    let query = format!("SELECT * FROM instances WHERE account_id = $1 AND id = $2{FOR_UPDATE}");
    let row = sqlx::query(&query)
        .bind(account)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| CoreError::InstanceNotFound(id.to_string()))?;
    instance_from_row(&row)
}

/// Locks the account's key pairs `ids` for a change of their tags, in ID order; all must exist.
pub(super) async fn lock_key_pairs(
    tx: &mut Transaction<'static, Db>,
    account: &str,
    ids: &[String],
) -> Result<()> {
    let mut qb = QueryBuilder::<Db>::new("SELECT id FROM key_pairs WHERE account_id = ");
    qb.push_bind(account.to_string());
    push_in(&mut qb, "id", ids);
    qb.push(" ORDER BY id").push(FOR_UPDATE);
    let found: Vec<String> = qb
        .build_query_scalar()
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    match ids.iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(CoreError::KeyPairNotFound(missing.clone())),
        None => Ok(()),
    }
}

pub(super) async fn write_binding(tx: &mut Transaction<'static, Db>, i: &Instance) -> Result<()> {
    sqlx::query(
        "UPDATE instances SET key_pair_id = $1, key_pair_name = $2, desired_password_login = $3, \
         effective_key_pair_id = $4, effective_password_login = $5, binding_state = $6, \
         binding_error = $7, status = $8, started_at = $9, transition_target = NULL, \
         transition_at = NULL, transition_boots = FALSE, password_hash = $10, has_password = $11, \
         desired_password_version = $12, effective_password_version = $13 WHERE id = $14",
    )
    .bind(&i.binding.desired_key_pair_id)
    .bind(&i.key_pair_name)
    .bind(i.binding.desired_password_login)
    .bind(&i.binding.effective_key_pair_id)
    .bind(i.binding.effective_password_login)
    .bind(i.binding.state.as_str())
    .bind(&i.binding.error)
    .bind(i.status.as_str())
    .bind(i.started_at.map(ts))
    .bind(&i.password_hash)
    .bind(i.has_password)
    .bind(i.binding.desired_password_version)
    .bind(i.binding.effective_password_version)
    .bind(&i.id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    fn shared(&self) -> bool {
        self.shared_impl()
    }

    fn free_bytes(&self) -> Option<u64> {
        self.free_bytes_impl()
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        let binding_states: Vec<(String, i64)> = sqlx::query_as(crate::BINDING_STATE_COUNTS)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        let mut rows = Vec::new();
        for table in COUNTED_TABLES {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.reader)
                .await
                .map_err(db)?;
            rows.push((*table, n as u64));
        }
        Ok(StoreGauges {
            binding_states: binding_states
                .into_iter()
                .map(|(s, n)| (s, n as u64))
                .collect(),
            rows,
        })
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// A keyset page fetched one row more than asked: drop it and say where the next page starts.
pub(super) fn trim_keyset<T>(
    items: &mut Vec<T>,
    seqs: &mut Vec<i64>,
    page: Page,
    limit: u64,
) -> Option<i64> {
    match page {
        Page::After { .. } if items.len() as u64 > limit => {
            items.truncate(limit as usize);
            seqs.truncate(limit as usize);
            seqs.last().copied()
        }
        _ => None,
    }
}
