//! The Store implementation shared by the SQL backends. This file is compiled once per backend
//! (`#[path]` modules of `sqlite.rs` and `postgres.rs`): `super` gives the concrete database type
//! `Db`, its row type `DbRow`, the store `SqlStore` with its `writer` and `reader` pools and
//! `begin()`, and the few pieces of SQL that differ (`push_name_pattern`). The SQL here is the
//! common subset: `$N` parameters, `ON CONFLICT`, `TRUE`/`FALSE`, timestamps as fixed-width text.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::binding::{check_bindable, check_resettable, transition, Power};
use keyplane_core::model::{FingerprintQuery, Instance, InstanceStatus, KeyPair, Tag, MAX_TAGS};
use keyplane_core::{CoreError, InstanceFailure};
use sqlx::{QueryBuilder, Row, Transaction};

use super::rows::{self, instance_from_row, key_pair_from_row};
use super::{
    push_name_pattern, ram, Db, DbRow, SqlStore, BACKEND, FOR_SHARE, FOR_UPDATE,
    FOR_UPDATE_SKIP_LOCKED,
};
use crate::{
    ts, AccessKeyInfo, AccessKeyRecord, AgentDesired, AgentReport, AuditFilter, AuditRecord,
    BindAudit, BindOp, InstanceChange, InstanceFilter, InstanceOutcome, KeyPairFilter, Listing,
    Page, PolicyRecord, RegistrationToken, RegistrationTokenInfo, Result, Serial, Store,
    StoredResponse, TokenClaim, User,
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
    }
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(backend = BACKEND, error = %e, "database unreachable");
            CoreError::ServiceUnavailable
        }
        e => CoreError::Internal(format!("{BACKEND}: {e}")),
    }
}

/// SQLite's READONLY (8), IOERR (10), CANTOPEN (14) and FULL (13), extended codes included;
/// PostgreSQL's disk_full (53100), insufficient_resources (53000) and read_only_sql_transaction
/// (25006).
fn cannot_write(code: Option<&str>) -> bool {
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
        push_filter: impl Fn(&mut QueryBuilder<'_, Db>),
        from_row: fn(&DbRow) -> Result<T>,
        page: Page,
    ) -> Result<Listing<T>> {
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT * FROM {table}"));
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
    async fn load_tags(
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

    async fn load_key_pair_tags(&self, items: &mut [KeyPair]) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|k| k.id.as_str()).collect();
        let mut tags = self.load_tags("key_pair_tags", "key_pair_id", &ids).await?;
        for kp in items.iter_mut() {
            kp.tags = tags.remove(&kp.id).unwrap_or_default();
        }
        Ok(())
    }

    async fn load_instance_tags(&self, items: &mut [Instance]) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let mut tags = self.load_tags("instance_tags", "instance_id", &ids).await?;
        for i in items.iter_mut() {
            i.tags = tags.remove(&i.id).unwrap_or_default();
        }
        Ok(())
    }
}

fn push_in(qb: &mut QueryBuilder<'_, Db>, column: &str, values: &[String]) {
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

fn push_key_pair_filter(qb: &mut QueryBuilder<'_, Db>, f: &KeyPairFilter) {
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

fn push_instance_filter(qb: &mut QueryBuilder<'_, Db>, f: &InstanceFilter) {
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
fn push_page(qb: &mut QueryBuilder<'_, Db>, page: Page) -> u64 {
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
async fn write_desired_bindings(
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
async fn instance_in_tx(
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
async fn lock_key_pairs(
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
    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
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
    async fn announce(&self, instance_ids: &[String]) -> Result<()> {
        self.announce_impl(instance_ids).await
    }
    async fn announcements(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>> {
        self.announcements_impl().await
    }
    async fn create_account(&self, name: &str, root_key: &AccessKeyRecord) -> Result<()> {
        self.create_account_impl(name, root_key).await
    }
    async fn list_accounts(&self) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        self.list_accounts_impl().await
    }
    async fn create_user(&self, user: &User) -> Result<()> {
        self.create_user_impl(user).await
    }
    async fn user(&self, account: &str, name: &str) -> Result<Option<User>> {
        self.user_impl(account, name).await
    }
    async fn list_users(&self, account: &str) -> Result<Vec<User>> {
        self.list_users_impl(account).await
    }
    async fn delete_user(&self, account: &str, name: &str) -> Result<()> {
        self.delete_user_impl(account, name).await
    }
    async fn set_login_profile(&self, account: &str, user: &str, hash: &str) -> Result<()> {
        self.set_login_profile_impl(account, user, hash).await
    }
    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<String>> {
        self.login_profile_impl(account, user).await
    }
    async fn delete_login_profile(&self, account: &str, user: &str) -> Result<bool> {
        self.delete_login_profile_impl(account, user).await
    }
    async fn create_access_key(&self, key: &AccessKeyRecord, max: usize) -> Result<()> {
        self.create_access_key_impl(key, max).await
    }
    async fn list_access_keys(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<Vec<AccessKeyInfo>> {
        self.list_access_keys_impl(account, user).await
    }
    async fn set_access_key_status(&self, account: &str, id: &str, active: bool) -> Result<()> {
        self.set_access_key_status_impl(account, id, active).await
    }
    async fn delete_access_key(&self, account: &str, id: &str) -> Result<()> {
        self.delete_access_key_impl(account, id).await
    }
    async fn create_policy(&self, policy: &PolicyRecord) -> Result<()> {
        self.create_policy_impl(policy).await
    }
    async fn policy(&self, account: &str, name: &str) -> Result<Option<PolicyRecord>> {
        self.policy_impl(account, name).await
    }
    async fn list_policies(&self, account: &str) -> Result<Vec<PolicyRecord>> {
        self.list_policies_impl(account).await
    }
    async fn delete_policy(&self, account: &str, name: &str) -> Result<()> {
        self.delete_policy_impl(account, name).await
    }
    async fn attach_policy(&self, account: &str, user: &str, policy: &str) -> Result<()> {
        self.attach_policy_impl(account, user, policy).await
    }
    async fn detach_policy(&self, account: &str, user: &str, policy: &str) -> Result<()> {
        self.detach_policy_impl(account, user, policy).await
    }
    async fn user_policies(
        &self,
        account: &str,
        user: &str,
    ) -> Result<Vec<(PolicyRecord, DateTime<Utc>)>> {
        self.user_policies_impl(account, user).await
    }
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.append_audit_impl(record).await
    }
    async fn create_registration_token(&self, token: &RegistrationToken) -> Result<()> {
        self.create_registration_token_impl(token).await
    }
    async fn list_registration_tokens(&self, account: &str) -> Result<Vec<RegistrationTokenInfo>> {
        self.list_registration_tokens_impl(account).await
    }
    async fn revoke_registration_token(&self, account: &str, token_id: &str) -> Result<bool> {
        self.revoke_registration_token_impl(account, token_id).await
    }
    async fn redeem_registration_token(
        &self,
        token_hash: &str,
        instance: &Instance,
        credential_hash: &str,
    ) -> Result<Option<Instance>> {
        self.redeem_registration_token_impl(token_hash, instance, credential_hash)
            .await
    }
    async fn agent_credential(&self, instance_id: &str) -> Result<Option<(String, String)>> {
        self.agent_credential_impl(instance_id).await
    }
    async fn agent_desired(&self, instance_id: &str) -> Result<Option<AgentDesired>> {
        self.agent_desired_impl(instance_id).await
    }
    async fn record_agent_report(
        &self,
        instance_id: &str,
        report: &AgentReport,
    ) -> Result<Instance> {
        self.record_agent_report_impl(instance_id, report).await
    }
    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> Result<Listing<AuditRecord>> {
        self.list_audit_impl(filter, page).await
    }

    async fn bootstrap(&self, root_key: &AccessKeyRecord) -> Result<String> {
        let mut tx = self.begin(Serial::Everything).await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let now = ts(Utc::now());
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, 'default', $2)")
            .bind(&root_key.account_id)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
             VALUES ($1, $2, NULL, $3, 'Active', $4)",
        )
        .bind(&root_key.id)
        .bind(&root_key.account_id)
        .bind(&root_key.secret)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(root_key.account_id.clone())
    }

    async fn default_account(&self) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        let cache = self.key_cache();
        if let Some(key) = cache.and_then(|c| c.get(id)) {
            return Ok(Some(key));
        }
        let generation = cache.map(|c| c.generation());
        let row = sqlx::query(
            "SELECT id, account_id, user_name, secret, status FROM access_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let key = row.map(|r| AccessKeyRecord {
            id: r.get(0),
            account_id: r.get(1),
            user_name: r.get(2),
            secret: r.get(3),
            active: r.get::<String, _>(4) == "Active",
        });
        if let (Some(cache), Some(generation), Some(key)) = (cache, generation, &key) {
            cache.put(generation, key.clone());
        }
        Ok(key)
    }

    async fn insert_access_key(&self, key: &AccessKeyRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(id) DO UPDATE SET secret = excluded.secret, \
             status = excluded.status",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.user_name)
        .bind(&key.secret)
        .bind(if key.active { "Active" } else { "Inactive" })
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await;
        self.forget_access_keys();
        r.map_err(db)?;
        Ok(())
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

    async fn create_key_pair(&self, kp: &KeyPair, quota: usize) -> Result<()> {
        // The quota counts the account's key pairs: two creations must not both see room.
        let mut tx = self.begin(Serial::Account(&kp.account_id)).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM key_pairs WHERE account_id = $1 AND region_id = $2",
        )
        .bind(&kp.account_id)
        .bind(&kp.region_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if count as usize >= quota {
            return Err(CoreError::KeyPairQuotaExceeded(quota));
        }
        let inserted = sqlx::query(
            "INSERT INTO key_pairs (id, account_id, region_id, name, public_key, fingerprint_sha256, \
             fingerprint_md5, resource_group_id, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&kp.id)
        .bind(&kp.account_id)
        .bind(&kp.region_id)
        .bind(&kp.name)
        .bind(&kp.public_key)
        .bind(&kp.fingerprint_sha256)
        .bind(&kp.fingerprint_md5)
        .bind(&kp.resource_group_id)
        .bind(&kp.description)
        .bind(ts(kp.created_at))
        .execute(&mut *tx)
        .await;
        unique(inserted, CoreError::KeyPairAlreadyExists(kp.name.clone()))?;
        for t in &kp.tags {
            sqlx::query("INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3)")
                .bind(&kp.id)
                .bind(&t.key)
                .bind(&t.value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn key_pair_by_name(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<KeyPair>> {
        let row = sqlx::query(
            "SELECT * FROM key_pairs WHERE account_id = $1 AND region_id = $2 AND name = $3",
        )
        .bind(account)
        .bind(region)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let mut items: Vec<KeyPair> = row.iter().map(key_pair_from_row).collect::<Result<_>>()?;
        self.load_key_pair_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn key_pair_by_id(&self, account: &str, id: &str) -> Result<Option<KeyPair>> {
        let row = sqlx::query("SELECT * FROM key_pairs WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let mut items: Vec<KeyPair> = row.iter().map(key_pair_from_row).collect::<Result<_>>()?;
        self.load_key_pair_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn list_key_pairs(&self, filter: &KeyPairFilter, page: Page) -> Result<Listing<KeyPair>> {
        let mut listing = self
            .list_page(
                "key_pairs",
                |qb| push_key_pair_filter(qb, filter),
                key_pair_from_row,
                page,
            )
            .await?;
        self.load_key_pair_tags(&mut listing.items).await?;
        Ok(listing)
    }

    async fn delete_key_pairs(&self, account: &str, region: &str, names: &[String]) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        // Locked before the "still bound?" check: a bind holds its key pair FOR SHARE, so the
        // check sees every bind that committed and none can start until this one ends.
        let mut qb = QueryBuilder::<Db>::new("SELECT id, name FROM key_pairs WHERE account_id = ");
        qb.push_bind(account.to_string())
            .push(" AND region_id = ")
            .push_bind(region.to_string());
        push_in(&mut qb, "name", names);
        qb.push(" ORDER BY id").push(FOR_UPDATE);
        let locked: HashMap<String, String> = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get("name"), r.get("id")))
            .collect();
        for name in names {
            // Deleting a key pair that is not there is not an error, as with the vendor.
            let Some(id) = locked.get(name) else { continue };
            let bound: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM instances WHERE account_id = $1 AND (key_pair_id = $2 OR effective_key_pair_id = $3)",
            )
            .bind(account)
            .bind(id)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if bound > 0 {
                return Err(CoreError::KeyPairInUse(name.clone()));
            }
            sqlx::query("DELETE FROM key_pairs WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn key_pair_usage(&self, account: &str, key_pair_id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE account_id = $1 AND key_pair_id = $2",
        )
        .bind(account)
        .bind(key_pair_id)
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        Ok(n as u64)
    }

    async fn tag_key_pairs(&self, account: &str, ids: &[String], tags: &[Tag]) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        lock_key_pairs(&mut tx, account, ids).await?;
        for id in ids {
            for t in tags {
                sqlx::query(
                    "INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT(key_pair_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(id)
                .bind(&t.key)
                .bind(&t.value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM key_pair_tags WHERE key_pair_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if n as usize > MAX_TAGS {
                return Err(CoreError::TooManyTags);
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn untag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        keys: Option<&[String]>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        lock_key_pairs(&mut tx, account, ids).await?;
        for id in ids {
            match keys {
                None => {
                    sqlx::query("DELETE FROM key_pair_tags WHERE key_pair_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                Some(keys) => {
                    for k in keys {
                        sqlx::query(
                            "DELETE FROM key_pair_tags WHERE key_pair_id = $1 AND key = $2",
                        )
                        .bind(id)
                        .bind(k)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    }
                }
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn set_key_pair_description(
        &self,
        account: &str,
        id: &str,
        description: &str,
    ) -> Result<()> {
        let r = sqlx::query(
            "UPDATE key_pairs SET description = $1, updated_at = $2 WHERE account_id = $3 AND id = $4",
        )
        .bind(description)
        .bind(ts(Utc::now()))
        .bind(account)
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::KeyPairNotFound(id.to_string()));
        }
        Ok(())
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
                     DO UPDATE SET state = 'processing', created_at = excluded.created_at",
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

    async fn insert_instances(
        &self,
        instances: &[Instance],
        done_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for i in instances {
            rows::insert_instance(&mut tx, i, done_at).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn instance(&self, account: &str, id: &str) -> Result<Option<Instance>> {
        let row = sqlx::query("SELECT * FROM instances WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let mut items: Vec<Instance> = row.iter().map(instance_from_row).collect::<Result<_>>()?;
        self.load_instance_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: Page,
    ) -> Result<Listing<Instance>> {
        let mut listing = self
            .list_page(
                "instances",
                |qb| push_instance_filter(qb, filter),
                instance_from_row,
                page,
            )
            .await?;
        self.load_instance_tags(&mut listing.items).await?;
        Ok(listing)
    }

    async fn bind(
        &self,
        account: &str,
        region: &str,
        key_pair: &KeyPair,
        instance_ids: &[String],
        op: BindOp,
        audit: Option<BindAudit<'_>>,
    ) -> Result<Vec<InstanceOutcome>> {
        let mut tx = self.begin(Serial::Rows).await?;
        // The key pair first (shared: binds of one key pair run together, its deletion waits),
        // then the instances in ID order: every writer locks in this one order.
        let key_pair_query = format!("SELECT id FROM key_pairs WHERE id = $1{FOR_SHARE}");
        let still_there: Option<String> = sqlx::query_scalar(&key_pair_query)
            .bind(&key_pair.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if still_there.is_none() {
            return Err(CoreError::KeyPairNotFound(key_pair.name.clone()));
        }
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM instances WHERE account_id = ");
        qb.push_bind(account.to_string());
        push_in(&mut qb, "id", instance_ids);
        qb.push(" ORDER BY id").push(FOR_UPDATE);
        let rows = qb.build().fetch_all(&mut *tx).await.map_err(db)?;
        let mut found: HashMap<String, Instance> = HashMap::new();
        for r in &rows {
            let i = instance_from_row(r)?;
            found.insert(i.id.clone(), i);
        }
        let mut outcomes = Vec::with_capacity(instance_ids.len());
        let mut changed: Vec<Instance> = Vec::new();
        for id in instance_ids {
            let Some(mut inst) = found.remove(id).filter(|i| i.region_id == region) else {
                outcomes.push((id.clone(), Err(InstanceFailure::NotFound)));
                continue;
            };
            if let Err(f) = check_bindable(&inst) {
                outcomes.push((id.clone(), Err(f)));
                continue;
            }
            match op {
                BindOp::Attach => {
                    inst.binding.bind(&key_pair.id);
                    inst.key_pair_name = Some(key_pair.name.clone());
                    changed.push(inst);
                }
                // Detaching a key pair the instance does not have changes nothing.
                BindOp::Detach
                    if inst.binding.desired_key_pair_id.as_deref() == Some(&key_pair.id) =>
                {
                    inst.binding.unbind();
                    inst.key_pair_name = None;
                    changed.push(inst);
                }
                BindOp::Detach => {}
            }
            outcomes.push((id.clone(), Ok(())));
        }
        write_desired_bindings(&mut tx, &changed).await?;
        if let Some(a) = audit {
            ram::insert_audit(&mut *tx, &a.complete(&outcomes)).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }

    async fn power(
        &self,
        account: &str,
        id: &str,
        op: Power,
        done_at: Option<DateTime<Utc>>,
    ) -> Result<Instance> {
        let mut tx = self.begin(Serial::Rows).await?;
        let mut inst = instance_in_tx(&mut tx, account, id).await?;
        let (during, after) = transition(inst.status, op)?;
        let boots = op != Power::Stop;
        if inst.provider == keyplane_core::model::Provider::Host {
            // A real host: the status is bookkeeping, and a start or reboot asks the agent to
            // apply; the binding changes only when the agent reports.
            inst.status = after;
            sqlx::query(
                "UPDATE instances SET status = $1, apply_seq = apply_seq + $2 WHERE id = $3",
            )
            .bind(after.as_str())
            .bind(boots as i64)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(inst);
        }
        match done_at {
            None => {
                inst.status = after;
                if boots {
                    inst.binding.boot();
                    inst.started_at = Some(Utc::now());
                }
                write_binding(&mut tx, &inst).await?;
            }
            Some(at) => {
                inst.status = during;
                sqlx::query(
                    "UPDATE instances SET status = $1, transition_target = $2, transition_at = $3, \
                     transition_boots = $4 WHERE id = $5",
                )
                .bind(during.as_str())
                .bind(after.as_str())
                .bind(ts(at))
                .bind(boots)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(inst)
    }

    async fn modify_instance(
        &self,
        account: &str,
        id: &str,
        change: &InstanceChange,
    ) -> Result<Instance> {
        let mut tx = self.begin(Serial::Rows).await?;
        let mut inst = instance_in_tx(&mut tx, account, id).await?;
        if let Some(hash) = &change.password_hash {
            check_resettable(&inst)?;
            inst.password_hash = Some(hash.clone());
            inst.has_password = true;
            inst.binding.reset_password();
        }
        if let Some(v) = &change.name {
            inst.name = v.clone();
        }
        if let Some(v) = &change.description {
            inst.description = v.clone();
        }
        if let Some(v) = &change.host_name {
            inst.host_name = v.clone();
        }
        sqlx::query(
            "UPDATE instances SET name = $1, description = $2, host_name = $3 WHERE id = $4",
        )
        .bind(&inst.name)
        .bind(&inst.description)
        .bind(&inst.host_name)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if change.password_hash.is_some() {
            write_binding(&mut tx, &inst).await?;
        }
        tx.commit().await.map_err(db)?;
        self.load_instance_tags(std::slice::from_mut(&mut inst))
            .await?;
        Ok(inst)
    }

    async fn complete_transitions(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin(Serial::Rows).await?;
        // Every server sweeps: rows another sweep or a call holds are left for the next sweep.
        let due = format!(
            "SELECT * FROM instances WHERE transition_at IS NOT NULL AND transition_at <= $1 \
             ORDER BY id{FOR_UPDATE_SKIP_LOCKED}"
        );
        let rows = sqlx::query(&due)
            .bind(ts(now))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        for r in &rows {
            let mut inst = instance_from_row(r)?;
            let target: String = r.get("transition_target");
            inst.status = InstanceStatus::parse(&target)
                .ok_or_else(|| CoreError::Internal(format!("bad transition target {target}")))?;
            if r.get::<bool, _>("transition_boots") {
                inst.binding.boot();
                inst.started_at = Some(now);
            }
            write_binding(&mut tx, &inst).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(rows.len() as u64)
    }

    async fn delete_instance(&self, account: &str, id: &str, force: bool) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let inst = instance_in_tx(&mut tx, account, id).await?;
        let deletable = match inst.status {
            InstanceStatus::Stopped => true,
            InstanceStatus::Running => force,
            _ => false,
        };
        if !deletable {
            return Err(CoreError::IncorrectInstanceStatus);
        }
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

/// A keyset page fetched one row more than asked: drop it and say where the next page starts.
fn trim_keyset<T>(items: &mut Vec<T>, seqs: &mut Vec<i64>, page: Page, limit: u64) -> Option<i64> {
    match page {
        Page::After { .. } if items.len() as u64 > limit => {
            items.truncate(limit as usize);
            seqs.truncate(limit as usize);
            seqs.last().copied()
        }
        _ => None,
    }
}
