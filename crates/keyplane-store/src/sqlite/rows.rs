//! Mapping between SQLite rows and the core types (the same columns as PostgreSQL's `postgres/rows.rs`).

use chrono::{DateTime, Utc};
use keyplane_core::binding::{Binding, BindingState};
use keyplane_core::model::{Instance, InstanceStatus, KeyPair, OsType, Provider};
use keyplane_core::CoreError;
use rusqlite::{params, Connection, Row};

use super::sql::{execute, get};
use crate::{parse_ts, ts, Result};

fn corrupt(what: &str, value: &str) -> CoreError {
    CoreError::Internal(format!("stored {what} {value:?} is not valid"))
}

fn opt_ts(r: &Row<'_>, name: &str) -> Result<Option<DateTime<Utc>>> {
    get::<Option<String>>(r, name)?
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

pub(crate) fn instance_from_row(r: &Row<'_>) -> Result<Instance> {
    let os: String = get(r, "os_type")?;
    let status: String = get(r, "status")?;
    let provider: String = get(r, "provider")?;
    let state: String = get(r, "binding_state")?;
    Ok(Instance {
        id: get(r, "id")?,
        account_id: get(r, "account_id")?,
        region_id: get(r, "region_id")?,
        zone_id: get(r, "zone_id")?,
        name: get(r, "name")?,
        host_name: get(r, "host_name")?,
        description: get(r, "description")?,
        image_id: get(r, "image_id")?,
        instance_type: get(r, "instance_type")?,
        os_type: OsType::parse(&os).ok_or_else(|| corrupt("os_type", &os))?,
        os_name: get(r, "os_name")?,
        status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        io_optimized: get(r, "io_optimized")?,
        agent_installed: get(r, "agent_installed")?,
        login_user: get(r, "login_user")?,
        provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
        has_password: get(r, "has_password")?,
        password_hash: get(r, "password_hash")?,
        created_at: parse_ts(&get::<String>(r, "created_at")?)?,
        started_at: opt_ts(r, "started_at")?,
        key_pair_name: get(r, "key_pair_name")?,
        binding: Binding {
            desired_key_pair_id: get(r, "key_pair_id")?,
            desired_password_login: get(r, "desired_password_login")?,
            effective_key_pair_id: get(r, "effective_key_pair_id")?,
            effective_password_login: get(r, "effective_password_login")?,
            desired_password_version: get(r, "desired_password_version")?,
            effective_password_version: get(r, "effective_password_version")?,
            state: BindingState::parse(&state).ok_or_else(|| corrupt("binding_state", &state))?,
            error: get(r, "binding_error")?,
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
