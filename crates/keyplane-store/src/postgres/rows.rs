//! Mapping between database rows and the core types, on PostgreSQL.

use chrono::{DateTime, Utc};
use keyplane_core::binding::{Binding, BindingState};
use keyplane_core::model::{Instance, InstanceStatus, KeyPair, OsType, Provider};
use keyplane_core::CoreError;
use sqlx::{Row, Transaction};

use super::store::db;
use super::{Db, DbRow};
use crate::{parse_ts, ts, Result};

fn corrupt(what: &str, value: &str) -> CoreError {
    CoreError::Internal(format!("stored {what} {value:?} is not valid"))
}

pub fn key_pair_from_row(r: &DbRow) -> Result<KeyPair> {
    Ok(KeyPair {
        id: r.get("id"),
        account_id: r.get("account_id"),
        region_id: r.get("region_id"),
        name: r.get("name"),
        public_key: r.get("public_key"),
        fingerprint_sha256: r.get("fingerprint_sha256"),
        fingerprint_md5: r.get("fingerprint_md5"),
        resource_group_id: r.get("resource_group_id"),
        description: r.get("description"),
        created_at: parse_ts(r.get("created_at"))?,
        updated_at: r
            .get::<Option<String>, _>("updated_at")
            .as_deref()
            .map(parse_ts)
            .transpose()?,
        tags: Vec::new(),
    })
}

/// The page query's columns of key pairs with their tags (see [`crate::parse_tags`]).
pub const KEY_PAIRS_WITH_TAGS: &str = "*, (SELECT COALESCE(json_agg(json_build_array(key, value) \
     ORDER BY key), '[]')::text FROM key_pair_tags WHERE key_pair_id = key_pairs.id) AS tags";

/// The page query's columns of instances with their tags.
pub const INSTANCES_WITH_TAGS: &str = "*, (SELECT COALESCE(json_agg(json_build_array(key, value) \
     ORDER BY key), '[]')::text FROM instance_tags WHERE instance_id = instances.id) AS tags";

/// A key pair from a row of [`KEY_PAIRS_WITH_TAGS`].
pub fn key_pair_with_tags_from_row(r: &DbRow) -> Result<KeyPair> {
    Ok(KeyPair {
        tags: crate::parse_tags(r.get("tags"))?,
        ..key_pair_from_row(r)?
    })
}

/// An instance from a row of [`INSTANCES_WITH_TAGS`].
pub fn instance_with_tags_from_row(r: &DbRow) -> Result<Instance> {
    Ok(Instance {
        tags: crate::parse_tags(r.get("tags"))?,
        ..instance_from_row(r)?
    })
}

pub fn instance_from_row(r: &DbRow) -> Result<Instance> {
    let os: String = r.get("os_type");
    let status: String = r.get("status");
    let provider: String = r.get("provider");
    let state: String = r.get("binding_state");
    let started: Option<String> = r.get("started_at");
    Ok(Instance {
        id: r.get("id"),
        account_id: r.get("account_id"),
        region_id: r.get("region_id"),
        zone_id: r.get("zone_id"),
        name: r.get("name"),
        host_name: r.get("host_name"),
        description: r.get("description"),
        image_id: r.get("image_id"),
        instance_type: r.get("instance_type"),
        os_type: OsType::parse(&os).ok_or_else(|| corrupt("os_type", &os))?,
        os_name: r.get("os_name"),
        status: InstanceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        io_optimized: r.get("io_optimized"),
        agent_installed: r.get("agent_installed"),
        login_user: r.get("login_user"),
        provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
        has_password: r.get("has_password"),
        password_hash: r.get("password_hash"),
        created_at: parse_ts(r.get("created_at"))?,
        started_at: started.as_deref().map(parse_ts).transpose()?,
        key_pair_name: r.get("key_pair_name"),
        binding: Binding {
            desired_key_pair_id: r.get("key_pair_id"),
            desired_password_login: r.get("desired_password_login"),
            effective_key_pair_id: r.get("effective_key_pair_id"),
            effective_password_login: r.get("effective_password_login"),
            desired_password_version: r.get("desired_password_version"),
            effective_password_version: r.get("effective_password_version"),
            state: BindingState::parse(&state).ok_or_else(|| corrupt("binding_state", &state))?,
            error: r.get("binding_error"),
        },
        tags: Vec::new(),
    })
}

pub async fn insert_instance(
    tx: &mut Transaction<'static, Db>,
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
    sqlx::query(
        "INSERT INTO instances (id, account_id, region_id, zone_id, name, host_name, description, \
         image_id, instance_type, os_type, os_name, status, io_optimized, agent_installed, \
         login_user, provider, has_password, created_at, started_at, key_pair_id, key_pair_name, \
         desired_password_login, effective_key_pair_id, effective_password_login, binding_state, \
         binding_error, transition_target, transition_at, transition_boots, password_hash, \
         desired_password_version, effective_password_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)",
    )
    .bind(&i.id)
    .bind(&i.account_id)
    .bind(&i.region_id)
    .bind(&i.zone_id)
    .bind(&i.name)
    .bind(&i.host_name)
    .bind(&i.description)
    .bind(&i.image_id)
    .bind(&i.instance_type)
    .bind(i.os_type.as_str())
    .bind(&i.os_name)
    .bind(status.as_str())
    .bind(i.io_optimized)
    .bind(i.agent_installed)
    .bind(&i.login_user)
    .bind(i.provider.as_str())
    .bind(i.has_password)
    .bind(ts(i.created_at))
    .bind(i.started_at.map(ts))
    .bind(&i.binding.desired_key_pair_id)
    .bind(&i.key_pair_name)
    .bind(i.binding.desired_password_login)
    .bind(&i.binding.effective_key_pair_id)
    .bind(i.binding.effective_password_login)
    .bind(i.binding.state.as_str())
    .bind(&i.binding.error)
    .bind(target)
    .bind(at)
    .bind(boots)
    .bind(&i.password_hash)
    .bind(i.binding.desired_password_version)
    .bind(i.binding.effective_password_version)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    for t in &i.tags {
        sqlx::query("INSERT INTO instance_tags (instance_id, key, value) VALUES ($1, $2, $3)")
            .bind(&i.id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}
