//! What the SQLite topics share: listing pages under a filter, loading tags, and reading and
//! writing instances' bindings inside a write. Every function takes the connection it runs on: a
//! reader's inside [`super::engine::Engine::read`], the writer's inside a write.

use std::collections::HashMap;

use keyplane_core::model::{FingerprintQuery, Instance, KeyPair, Tag};
use keyplane_core::CoreError;
use rusqlite::{params, Connection, Row};

use super::rows::{instance_from_row, INSTANCE_COLUMNS};
use super::sql::{built_rows, execute, get, get_at, row, Sql};
use crate::{ts, InstanceFilter, KeyPairFilter, Listing, Page, Result};

/// One page of `table` under the filter `push_filter` writes, and the total (a `COUNT(*)` only
/// when the page cannot tell it).
pub(crate) fn list_page<T>(
    c: &Connection,
    table: &str,
    columns: &str,
    push_filter: impl Fn(&mut Sql),
    from_row: fn(&Row<'_>) -> Result<T>,
    page: Page,
) -> Result<Listing<T>> {
    let mut q = Sql::new(format!("SELECT {columns}, seq FROM {table}"));
    push_filter(&mut q);
    let limit = push_page(&mut q, page);
    let mut seqs = Vec::new();
    let mut items = built_rows(c, &q, |r| {
        seqs.push(get::<i64>(r, "seq")?);
        from_row(r)
    })?;
    // A page that is not full and has nothing skipped before it (or, for offsets, whatever was
    // skipped) already tells the total: most accounts fit in one page, and a statement saved is
    // work saved (docs/BENCHMARKS.md).
    let n = items.len() as u64;
    let known = match page {
        Page::Offset { offset, limit } if n < limit => (n > 0 || offset == 0).then(|| offset + n),
        Page::After { seq, limit } if seq <= 0 && n <= limit => Some(n),
        _ => None,
    };
    let total = match known {
        Some(n) => n,
        None => {
            let mut count = Sql::new(format!("SELECT COUNT(*) FROM {table}"));
            push_filter(&mut count);
            let n: Vec<i64> = built_rows(c, &count, |r| get_at(r, 0))?;
            n.first().copied().unwrap_or(0) as u64
        }
    };
    let next_seq = trim_keyset(&mut items, &mut seqs, page, limit);
    Ok(Listing {
        items,
        total,
        next_seq,
    })
}

/// Tags of the given resources from `table` (`key_pair_tags` or `instance_tags`), by ID.
fn load_tags(
    c: &Connection,
    table: &str,
    id_column: &str,
    ids: &[&str],
) -> Result<HashMap<String, Vec<Tag>>> {
    let mut by_id: HashMap<String, Vec<Tag>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_id);
    }
    let mut q = Sql::new(format!(
        "SELECT {id_column}, key, value FROM {table} WHERE TRUE"
    ));
    let owned: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    q.push_in(id_column, &owned).push(" ORDER BY key");
    for (id, tag) in built_rows(c, &q, |r| {
        Ok((
            get_at::<String>(r, 0)?,
            Tag {
                key: get_at(r, 1)?,
                value: get_at(r, 2)?,
            },
        ))
    })? {
        by_id.entry(id).or_default().push(tag);
    }
    Ok(by_id)
}

pub(crate) fn load_key_pair_tags(c: &Connection, items: &mut [KeyPair]) -> Result<()> {
    let ids: Vec<&str> = items.iter().map(|k| k.id.as_str()).collect();
    let mut tags = load_tags(c, "key_pair_tags", "key_pair_id", &ids)?;
    for kp in items.iter_mut() {
        kp.tags = tags.remove(&kp.id).unwrap_or_default();
    }
    Ok(())
}

pub(crate) fn load_instance_tags(c: &Connection, items: &mut [Instance]) -> Result<()> {
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut tags = load_tags(c, "instance_tags", "instance_id", &ids)?;
    for i in items.iter_mut() {
        i.tags = tags.remove(&i.id).unwrap_or_default();
    }
    Ok(())
}

/// A key pair or instance name: exact, or with `*` as GLOB's wildcard and GLOB's other specials
/// made literal.
pub(crate) fn push_name_pattern(q: &mut Sql, name: &str) {
    if !name.contains('*') {
        q.push(" AND name = ").push_bind(name.to_string());
        return;
    }
    let glob: String = name
        .chars()
        .map(|c| match c {
            '?' => "[?]".to_string(),
            '[' => "[[]".to_string(),
            c => c.to_string(),
        })
        .collect();
    q.push(" AND name GLOB ").push_bind(glob);
}

pub(crate) fn push_key_pair_filter(q: &mut Sql, f: &KeyPairFilter) {
    q.push(" WHERE account_id = ")
        .push_bind(f.account_id.clone())
        .push(" AND region_id = ")
        .push_bind(f.region_id.clone());
    if let Some(name) = &f.name {
        push_name_pattern(q, name);
    }
    if !f.names.is_empty() {
        q.push_in("name", &f.names);
    }
    if !f.ids.is_empty() {
        q.push_in("id", &f.ids);
    }
    match &f.fingerprint {
        Some(FingerprintQuery::Sha256(s)) => {
            q.push(" AND fingerprint_sha256 = ").push_bind(s.clone());
        }
        Some(FingerprintQuery::Md5(s)) => {
            q.push(" AND fingerprint_md5 = ").push_bind(s.clone());
        }
        Some(FingerprintQuery::Unmatchable) => {
            q.push(" AND FALSE");
        }
        None => {}
    }
    if let Some(rg) = &f.resource_group_id {
        q.push(" AND resource_group_id = ").push_bind(rg.clone());
    }
    for t in &f.tags {
        q.push(" AND id IN (SELECT key_pair_id FROM key_pair_tags WHERE key = ")
            .push_bind(t.key.clone())
            .push(" AND value = ")
            .push_bind(t.value.clone())
            .push(")");
    }
}

pub(crate) fn push_instance_filter(q: &mut Sql, f: &InstanceFilter) {
    q.push(" WHERE account_id = ")
        .push_bind(f.account_id.clone())
        .push(" AND region_id = ")
        .push_bind(f.region_id.clone());
    if let Some(ids) = &f.ids {
        q.push_in("id", ids);
    }
    if let Some(name) = &f.name {
        push_name_pattern(q, name);
    }
    if let Some(kp) = &f.key_pair_name {
        q.push(" AND key_pair_name = ").push_bind(kp.clone());
    }
    if let Some(s) = f.status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(io) = f.io_optimized {
        q.push(" AND io_optimized = ").push_bind(io);
    }
    if let Some(z) = &f.zone_id {
        q.push(" AND zone_id = ").push_bind(z.clone());
    }
    if let Some(img) = &f.image_id {
        q.push(" AND image_id = ").push_bind(img.clone());
    }
    if let Some(t) = f.created_from {
        q.push(" AND created_at >= ").push_bind(ts(t));
    }
    if let Some(t) = f.created_to {
        q.push(" AND created_at <= ").push_bind(ts(t));
    }
    for t in &f.tags {
        q.push(" AND id IN (SELECT instance_id FROM instance_tags WHERE key = ")
            .push_bind(t.key.clone())
            .push(" AND value = ")
            .push_bind(t.value.clone())
            .push(")");
    }
}

/// Appends ordering and the page; returns the limit asked for.
fn push_page(q: &mut Sql, page: Page) -> u64 {
    match page {
        Page::Offset { offset, limit } => {
            q.push(" ORDER BY seq LIMIT ")
                .push_bind(limit as i64)
                .push(" OFFSET ")
                .push_bind(offset as i64);
            limit
        }
        Page::After { seq, limit } => {
            q.push(" AND seq > ")
                .push_bind(seq)
                .push(" ORDER BY seq LIMIT ")
                .push_bind(limit as i64 + 1);
            limit
        }
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

/// Writes the desired side of many bindings with one UPDATE per group of instances that end with
/// the same values (a batch is usually one or two groups).
pub(crate) fn write_desired_bindings(c: &Connection, items: &[Instance]) -> Result<()> {
    type Key<'a> = (
        &'a Option<String>,
        &'a Option<String>,
        bool,
        &'static str,
        &'a Option<String>,
    );
    let mut groups: Vec<(Key<'_>, Vec<String>)> = Vec::new();
    for i in items {
        let key: Key<'_> = (
            &i.binding.desired_key_pair_id,
            &i.key_pair_name,
            i.binding.desired_password_login,
            i.binding.state.as_str(),
            &i.binding.error,
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(i.id.clone()),
            None => groups.push((key, vec![i.id.clone()])),
        }
    }
    for ((kp, name, password, state, error), ids) in groups {
        let mut q = Sql::new("UPDATE instances SET key_pair_id = ");
        q.push_bind(kp.clone())
            .push(", key_pair_name = ")
            .push_bind(name.clone())
            .push(", desired_password_login = ")
            .push_bind(password)
            .push(", binding_state = ")
            .push_bind(state)
            .push(", binding_error = ")
            .push_bind(error.clone())
            .push(" WHERE TRUE")
            .push_in("id", &ids);
        execute(c, &q.text, &q.args())?;
    }
    Ok(())
}

/// The account's instance `id`, read inside a write.
pub(crate) fn instance_in_tx(c: &Connection, account: &str, id: &str) -> Result<Instance> {
    row(
        c,
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE account_id = $1 AND id = $2"),
        params![account, id],
        instance_from_row,
    )?
    .ok_or_else(|| CoreError::InstanceNotFound(id.to_string()))
}

/// Checks that the account's key pairs `ids` all exist (inside a write: nothing else writes).
pub(crate) fn check_key_pairs(c: &Connection, account: &str, ids: &[String]) -> Result<()> {
    let mut q = Sql::new("SELECT id FROM key_pairs WHERE account_id = ");
    q.push_bind(account.to_string()).push_in("id", ids);
    let found: Vec<String> = built_rows(c, &q, |r| get_at(r, 0))?;
    match ids.iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(CoreError::KeyPairNotFound(missing.clone())),
        None => Ok(()),
    }
}

pub(crate) fn write_binding(c: &Connection, i: &Instance) -> Result<()> {
    execute(
        c,
        "UPDATE instances SET key_pair_id = $1, key_pair_name = $2, desired_password_login = $3, \
         effective_key_pair_id = $4, effective_password_login = $5, binding_state = $6, \
         binding_error = $7, status = $8, started_at = $9, transition_target = NULL, \
         transition_at = NULL, transition_boots = FALSE, password_hash = $10, has_password = $11, \
         desired_password_version = $12, effective_password_version = $13 WHERE id = $14",
        params![
            i.binding.desired_key_pair_id,
            i.key_pair_name,
            i.binding.desired_password_login,
            i.binding.effective_key_pair_id,
            i.binding.effective_password_login,
            i.binding.state.as_str(),
            i.binding.error,
            i.status.as_str(),
            i.started_at.map(ts),
            i.password_hash,
            i.has_password,
            i.binding.desired_password_version,
            i.binding.effective_password_version,
            i.id,
        ],
    )?;
    Ok(())
}
