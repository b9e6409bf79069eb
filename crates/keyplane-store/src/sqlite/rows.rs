//! Mapping between SQLite rows and the core types (the same columns as PostgreSQL's `postgres/rows.rs`).

use chrono::{DateTime, Utc};
use keyplane_core::binding::{Binding, BindingState};
use keyplane_core::model::{Instance, InstanceStatus, KeyPair, OsType, Provider};
use keyplane_core::CoreError;
use rusqlite::{params, Connection, Row};

use super::sql::{execute, get, get_at};
use crate::{parse_ts, ts, PolicyRecord, Result, User};

fn corrupt(what: &str, value: &str) -> CoreError {
    CoreError::Internal(format!("stored {what} {value:?} is not valid"))
}

fn opt_ts(r: &Row<'_>, name: &str) -> Result<Option<DateTime<Utc>>> {
    get::<Option<String>>(r, name)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

fn opt_ts_at(r: &Row<'_>, index: usize) -> Result<Option<DateTime<Utc>>> {
    get_at::<Option<String>>(r, index)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

pub(crate) fn key_pair_from_row(r: &Row<'_>) -> Result<KeyPair> {
    Ok(KeyPair {
        id: get(r, "id")?,
        account_id: get(r, "account_id")?,
        region_id: get(r, "region_id")?,
        name: get(r, "name")?,
        public_key: get(r, "public_key")?,
        fingerprint_sha256: get(r, "fingerprint_sha256")?,
        fingerprint_md5: get(r, "fingerprint_md5")?,
        resource_group_id: get(r, "resource_group_id")?,
        description: get(r, "description")?,
        created_at: parse_ts(&get::<String>(r, "created_at")?)?,
        updated_at: opt_ts(r, "updated_at")?,
        tags: Vec::new(),
    })
}

pub(crate) fn user_from_row(r: &Row<'_>) -> Result<User> {
    Ok(User {
        account_id: get(r, "account_id")?,
        name: get(r, "name")?,
        id: get(r, "id")?,
        display_name: get(r, "display_name")?,
        comments: get(r, "comments")?,
        created_at: parse_ts(&get::<String>(r, "created_at")?)?,
    })
}

pub(crate) fn policy_from_row(r: &Row<'_>) -> Result<PolicyRecord> {
    Ok(PolicyRecord {
        account_id: get(r, "account_id")?,
        name: get(r, "name")?,
        document: get(r, "document")?,
        description: get(r, "description")?,
        created_at: parse_ts(&get::<String>(r, "created_at")?)?,
        attachment_count: get::<i64>(r, "attachments")? as u64,
    })
}

/// The page query's column of a key pair's tags (see [`crate::parse_tags`]).
pub(crate) const KEY_PAIR_TAGS: &str =
    "(SELECT json_group_array(json_array(key, value) ORDER BY key) \
     FROM key_pair_tags WHERE key_pair_id = key_pairs.id) AS tags";

/// The page query's column of an instance's tags, read after [`INSTANCE_COLUMNS`].
pub(crate) const INSTANCE_TAGS: &str =
    "(SELECT json_group_array(json_array(key, value) ORDER BY key) \
     FROM instance_tags WHERE instance_id = instances.id) AS tags";

/// A key pair from a row that also selected [`KEY_PAIR_TAGS`].
pub(crate) fn key_pair_with_tags_from_row(r: &Row<'_>) -> Result<KeyPair> {
    Ok(KeyPair {
        tags: crate::parse_tags(&get::<String>(r, "tags")?)?,
        ..key_pair_from_row(r)?
    })
}

/// An instance from a row that selected [`INSTANCE_COLUMNS`] then [`INSTANCE_TAGS`].
pub(crate) fn instance_with_tags_from_row(r: &Row<'_>) -> Result<Instance> {
    Ok(Instance {
        tags: crate::parse_tags(&get_at::<String>(r, INSTANCE_COLUMN_COUNT)?)?,
        ..instance_from_row(r)?
    })
}

/// How many columns [`INSTANCE_COLUMNS`] names.
const INSTANCE_COLUMN_COUNT: usize = 29;

/// The instance columns, in the order [`instance_from_row`] reads them by position: a lookup by
/// name compares every column name, for each of the ~30 columns of each row, which was a
/// measurable part of a 50-instance bind and of a 100-instance page.
pub(crate) const INSTANCE_COLUMNS: &str = "id, account_id, region_id, zone_id, name, host_name, description, image_id, instance_type, os_type, os_name, status, io_optimized, agent_installed, login_user, provider, has_password, password_hash, created_at, started_at, key_pair_name, key_pair_id, desired_password_login, effective_key_pair_id, effective_password_login, desired_password_version, effective_password_version, binding_state, binding_error";

/// An instance from a row that selected [`INSTANCE_COLUMNS`] first.
pub(crate) fn instance_from_row(r: &Row<'_>) -> Result<Instance> {
    let os: String = get_at(r, 9)?;
    let status: String = get_at(r, 11)?;
    let provider: String = get_at(r, 15)?;
    let state: String = get_at(r, 27)?;
    Ok(Instance {
        id: get_at(r, 0)?,
        account_id: get_at(r, 1)?,
        region_id: get_at(r, 2)?,
        zone_id: get_at(r, 3)?,
        name: get_at(r, 4)?,
        host_name: get_at(r, 5)?,
        description: get_at(r, 6)?,
        image_id: get_at(r, 7)?,
        instance_type: get_at(r, 8)?,
        os_type: OsType::parse(&os).ok_or_else(|| corrupt("os_type", &os))?,
        os_name: get_at(r, 10)?,
        status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        io_optimized: get_at(r, 12)?,
        agent_installed: get_at(r, 13)?,
        login_user: get_at(r, 14)?,
        provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
        has_password: get_at(r, 16)?,
        password_hash: get_at(r, 17)?,
        created_at: parse_ts(&get_at::<String>(r, 18)?)?,
        started_at: opt_ts_at(r, 19)?,
        key_pair_name: get_at(r, 20)?,
        binding: Binding {
            desired_key_pair_id: get_at(r, 21)?,
            desired_password_login: get_at(r, 22)?,
            effective_key_pair_id: get_at(r, 23)?,
            effective_password_login: get_at(r, 24)?,
            desired_password_version: get_at(r, 25)?,
            effective_password_version: get_at(r, 26)?,
            state: BindingState::parse(&state).ok_or_else(|| corrupt("binding_state", &state))?,
            error: get_at(r, 28)?,
        },
        tags: Vec::new(),
    })
}

/// Inserts an instance with its tags; with `done_at` it is `Pending` until it boots then.
pub(crate) fn insert_instance(
    c: &Connection,
    i: &Instance,
    done_at: Option<DateTime<Utc>>,
) -> Result<()> {
    let (status, target, at, boots) = match done_at {
        None => (i.status, None, None, false),
        Some(t) => (
            InstanceStatus::Pending,
            Some(i.status.as_str()),
            Some(ts(t)),
            i.status == InstanceStatus::Running,
        ),
    };
    execute(
        c,
        "INSERT INTO instances (id, account_id, region_id, zone_id, name, host_name, description, \
         image_id, instance_type, os_type, os_name, status, io_optimized, agent_installed, \
         login_user, provider, has_password, created_at, started_at, key_pair_id, key_pair_name, \
         desired_password_login, effective_key_pair_id, effective_password_login, binding_state, \
         binding_error, transition_target, transition_at, transition_boots, password_hash, \
         desired_password_version, effective_password_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)",
        params![
            i.id,
            i.account_id,
            i.region_id,
            i.zone_id,
            i.name,
            i.host_name,
            i.description,
            i.image_id,
            i.instance_type,
            i.os_type.as_str(),
            i.os_name,
            status.as_str(),
            i.io_optimized,
            i.agent_installed,
            i.login_user,
            i.provider.as_str(),
            i.has_password,
            ts(i.created_at),
            i.started_at.map(ts),
            i.binding.desired_key_pair_id,
            i.key_pair_name,
            i.binding.desired_password_login,
            i.binding.effective_key_pair_id,
            i.binding.effective_password_login,
            i.binding.state.as_str(),
            i.binding.error,
            target,
            at,
            boots,
            i.password_hash,
            i.binding.desired_password_version,
            i.binding.effective_password_version,
        ],
    )?;
    for t in &i.tags {
        execute(
            c,
            "INSERT INTO instance_tags (instance_id, key, value) VALUES ($1, $2, $3)",
            params![i.id, t.key, t.value],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tags_column_is_read_right_after_the_instance_columns() {
        assert_eq!(
            super::INSTANCE_COLUMNS.split(',').count(),
            super::INSTANCE_COLUMN_COUNT
        );
    }
}
