//! Grants (SPEC section 15), the native API: access for named OS users beside the vendor binding,
//! that may expire, may apply without a restart, and revocation of a key pair everywhere.
//!
//! - `POST /api/v1/grants?Region=&KeyPairName=&InstanceId.N=&OsUser=&Ttl=&Now=` (RAM
//!   `keyplane:GrantAccess` on the key pair, then each instance, condition key `keyplane:OsUser`)
//!   → `{"Grants": [{"GrantId", "InstanceId", "OsUser", "ExpiresAt"|null, "State"}], "Failed":
//!   [{"InstanceId", "Code", "Message"}]}`.
//! - `GET /api/v1/grants?Region=&InstanceId=&KeyPairName=` (`keyplane:DescribeGrants`, per
//!   instance) → `{"Grants": [...]}` with `KeyPairName`, `State`, `Error`, `CreatedAt`.
//! - `POST /api/v1/grants/{GrantId}/revoke` (`keyplane:RevokeAccess` on the key pair).
//! - `POST /api/v1/revoked-keys?Region=&KeyPairName=` ends every binding and grant of the key pair
//!   in the account and puts its key in every host's sshd `RevokedKeys`;
//!   `DELETE /api/v1/revoked-keys?Region=&KeyPairName=` lifts that (`keyplane:RevokeAccess`).
//!
//! Every change is in the audit log; so is every expiry, recorded by the server's housekeeping.

use chrono::{DateTime, SecondsFormat, Utc};
use keyplane_core::grant::{self, Grant, GrantState, InstanceNow};
use keyplane_core::model::{KeyPair, OsType, Provider};
use keyplane_core::{ids, CoreError};
use keyplane_store::{AuditRecord, BindOp, GrantFilter, InstanceFilter, Page};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::params::Params;
use crate::AppState;

type Answer = Result<Map<String, Value>, CoreError>;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A native call's audit record (the vendor dialects build theirs in the pipeline).
fn record(caller: &Caller, action: &str, resources: Vec<String>, request_id: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: caller.account_id.clone(),
        principal: caller.principal_name(),
        access_key_id: caller.access_key_id.clone(),
        source_ip: caller.source_ip.map(|i| i.to_string()).unwrap_or_default(),
        dialect: "native".into(),
        action: action.into(),
        resources,
        result: "OK".into(),
        status: 200,
        request_id: request_id.into(),
        client_token: String::new(),
        instance_results: Vec::new(),
        injected: Vec::new(),
    }
}

fn region(p: &Params<'_>) -> Result<&'static keyplane_core::model::Region, CoreError> {
    let id = p.required("Region")?;
    keyplane_core::catalog::region(id).ok_or_else(|| CoreError::RegionNotFound(id.into()))
}

async fn key_pair(
    state: &AppState,
    caller: &Caller,
    region: &str,
    name: &str,
) -> Result<KeyPair, CoreError> {
    state
        .store
        .key_pair_by_name(&caller.account_id, region, name)
        .await?
        .ok_or_else(|| CoreError::KeyPairNotFound(name.to_string()))
}

fn describe(g: &Grant, inst: &InstanceNow, now: DateTime<Utc>) -> Value {
    let state = g.state(inst, now);
    json!({
        "GrantId": g.id,
        "InstanceId": g.instance_id,
        "RegionId": g.region_id,
        "KeyPairName": g.key_pair_name,
        "OsUser": g.os_user,
        "ExpiresAt": g.expires_at.map(time),
        "State": state.as_str(),
        "Error": (state == GrantState::Failed).then(|| g.error.clone()).flatten(),
        "CreatedAt": time(g.created_at),
    })
}

/// `keyplane access grant`.
pub async fn create(state: &AppState, caller: &Caller, p: &Params<'_>, request_id: &str) -> Answer {
    let region = region(p)?;
    let name = p.required("KeyPairName")?;
    let os_user = p.required("OsUser")?;
    grant::check_os_user(os_user)?;
    let ttl = p.opt("Ttl").map(grant::parse_ttl).transpose()?;
    let immediate = p.bool("Now")?.unwrap_or(false);
    let ids = p.repeat("InstanceId", grant::MAX_INSTANCES)?;
    if ids.is_empty() {
        return Err(CoreError::missing("InstanceId.1"));
    }
    let kp = key_pair(state, caller, region.id, name).await?;
    caller.check_for_user(
        "keyplane:GrantAccess",
        &caller.keypair_arn(region.id, &kp.name),
        os_user,
    )?;
    if state
        .store
        .key_pair_revoked(&caller.account_id, &kp.id)
        .await?
    {
        return Err(CoreError::KeyPairRevoked(kp.name));
    }
    let now = state.clock.now();
    let mut grants = Vec::new();
    let mut failed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        let fail =
            |code: &str, message: &str| json!({"InstanceId": id, "Code": code, "Message": message});
        let inst = state
            .store
            .instance(&caller.account_id, id)
            .await?
            .filter(|i| i.region_id == region.id);
        let Some(inst) = inst else {
            failed.push(fail(
                "InvalidInstanceId.NotFound",
                "The specified instance does not exist.",
            ));
            continue;
        };
        if caller
            .check_for_user(
                "keyplane:GrantAccess",
                &caller.instance_arn(region.id, id),
                os_user,
            )
            .is_err()
        {
            failed.push(fail(
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource.",
            ));
            continue;
        }
        if inst.os_type == OsType::Windows {
            failed.push(fail(
                "DependencyViolation.WindowsInstance",
                "Windows instances cannot use an SSH key pair.",
            ));
            continue;
        }
        let apply_seq = match inst.provider {
            Provider::Host => state
                .store
                .agent_desired(id)
                .await?
                .map_or(0, |d| d.apply_seq),
            _ => 0,
        };
        grants.push(Grant {
            id: format!("gr-{}", &ids::new_key_pair_id()[3..]),
            account_id: caller.account_id.clone(),
            region_id: region.id.to_string(),
            instance_id: id.to_string(),
            key_pair_id: kp.id.clone(),
            key_pair_name: kp.name.clone(),
            public_key: kp.public_key.clone(),
            os_user: os_user.to_string(),
            expires_at: ttl.map(|s| now + chrono::Duration::seconds(s)),
            immediate,
            apply_seq,
            created_at: now,
            revoked_at: None,
            result: String::new(),
            error: None,
        });
    }
    let mut audit = record(caller, "GrantAccess", Vec::new(), request_id);
    audit.resources = std::iter::once(caller.keypair_arn(region.id, &kp.name))
        .chain(
            grants
                .iter()
                .map(|g| caller.instance_arn(region.id, &g.instance_id)),
        )
        .collect();
    if !grants.is_empty() {
        state.store.create_grants(&grants, Some(&audit)).await?;
        let on: Vec<String> = grants.iter().map(|g| g.instance_id.clone()).collect();
        crate::agent_api::changed(state, &on).await;
    }
    let filter = GrantFilter {
        account_id: caller.account_id.clone(),
        key_pair_id: Some(kp.id.clone()),
        ..Default::default()
    };
    let made: std::collections::HashSet<&str> = grants.iter().map(|g| g.id.as_str()).collect();
    let listed: Vec<Value> = state
        .store
        .list_grants(&filter)
        .await?
        .iter()
        .filter(|(g, _)| made.contains(g.id.as_str()))
        .map(|(g, inst)| {
            let mut v = describe(g, inst, now);
            if let Value::Object(m) = &mut v {
                m.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "GrantId" | "InstanceId" | "OsUser" | "ExpiresAt" | "State"
                    )
                });
            }
            v
        })
        .collect();
    Ok(crate::reply::obj([
        ("Grants", Value::Array(listed)),
        ("Failed", Value::Array(failed)),
    ]))
}

/// `keyplane access list`: the grants of the instances the caller may describe.
pub async fn list(state: &AppState, caller: &Caller, p: &Params<'_>) -> Answer {
    let region = match p.opt("Region") {
        Some(_) => Some(region(p)?),
        None => None,
    };
    let key_pair_id = match (p.opt("KeyPairName"), region) {
        (Some(name), Some(r)) => Some(key_pair(state, caller, r.id, name).await?.id),
        (Some(_), None) => return Err(CoreError::missing("Region")),
        _ => None,
    };
    let filter = GrantFilter {
        account_id: caller.account_id.clone(),
        region_id: region.map(|r| r.id.to_string()),
        instance_id: p.opt("InstanceId").map(str::to_string),
        key_pair_id,
    };
    let now = state.clock.now();
    let grants: Vec<Value> = state
        .store
        .list_grants(&filter)
        .await?
        .iter()
        .filter(|(g, _)| {
            caller.allowed(
                "keyplane:DescribeGrants",
                &caller.instance_arn(&g.region_id, &g.instance_id),
            )
        })
        .map(|(g, inst)| describe(g, inst, now))
        .collect();
    Ok(crate::reply::obj([("Grants", Value::Array(grants))]))
}

/// `keyplane access revoke --grant-id G`.
pub async fn revoke(state: &AppState, caller: &Caller, grant_id: &str, request_id: &str) -> Answer {
    let filter = GrantFilter {
        account_id: caller.account_id.clone(),
        ..Default::default()
    };
    let found = state
        .store
        .list_grants(&filter)
        .await?
        .into_iter()
        .find(|(g, _)| g.id == grant_id)
        .ok_or_else(|| CoreError::GrantNotFound(grant_id.to_string()))?;
    let g = found.0;
    caller.check(
        "keyplane:RevokeAccess",
        &caller.keypair_arn(&g.region_id, &g.key_pair_name),
    )?;
    let audit = record(
        caller,
        "RevokeAccess",
        vec![caller.instance_arn(&g.region_id, &g.instance_id)],
        request_id,
    );
    let instance = state
        .store
        .revoke_grant(
            &caller.account_id,
            grant_id,
            state.clock.now(),
            Some(&audit),
        )
        .await?;
    crate::agent_api::changed(state, &[instance]).await;
    Ok(crate::reply::obj([
        ("GrantId", json!(grant_id)),
        ("State", json!("revoked")),
    ]))
}

/// `keyplane access revoke-key`: every grant and binding of the key pair in the account ends, and
/// every host refuses the key from now on.
pub async fn revoke_key(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
    request_id: &str,
) -> Answer {
    let region = region(p)?;
    let kp = key_pair(state, caller, region.id, p.required("KeyPairName")?).await?;
    caller.check(
        "keyplane:RevokeAccess",
        &caller.keypair_arn(region.id, &kp.name),
    )?;
    let audit = record(
        caller,
        "RevokeKey",
        vec![caller.keypair_arn(region.id, &kp.name)],
        request_id,
    );
    // The revocation first: from now on the key pair can be neither bound nor granted.
    let mut touched = state
        .store
        .revoke_key_pair(&kp, state.clock.now(), Some(&audit))
        .await?;
    // Then the vendor bindings, in the dialects' own batches.
    let filter = InstanceFilter {
        account_id: caller.account_id.clone(),
        region_id: region.id.to_string(),
        key_pair_name: Some(kp.name.clone()),
        ..Default::default()
    };
    let mut bound = Vec::new();
    let mut page = Page::After { seq: 0, limit: 500 };
    loop {
        let listing = state.store.list_instances(&filter, page).await?;
        bound.extend(listing.items.into_iter().map(|i| i.id));
        match listing.next_seq {
            Some(seq) => page = Page::After { seq, limit: 500 },
            None => break,
        }
    }
    for chunk in bound.chunks(50) {
        state
            .store
            .bind(
                &caller.account_id,
                region.id,
                &kp,
                chunk,
                BindOp::Detach,
                None,
            )
            .await?;
    }
    touched.extend(bound.iter().cloned());
    crate::agent_api::changed(state, &touched).await;
    // Every host of the account refuses the key: wake them all.
    state.agents.notify_all();
    Ok(crate::reply::obj([
        ("KeyPairName", json!(kp.name)),
        ("Revoked", json!(true)),
        ("UnboundInstances", json!(bound)),
    ]))
}

/// `keyplane access unrevoke-key`.
pub async fn unrevoke_key(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
    request_id: &str,
) -> Answer {
    let region = region(p)?;
    let kp = key_pair(state, caller, region.id, p.required("KeyPairName")?).await?;
    caller.check(
        "keyplane:RevokeAccess",
        &caller.keypair_arn(region.id, &kp.name),
    )?;
    let audit = record(
        caller,
        "UnrevokeKey",
        vec![caller.keypair_arn(region.id, &kp.name)],
        request_id,
    );
    let was = state
        .store
        .unrevoke_key_pair(&caller.account_id, &kp.id, Some(&audit))
        .await?;
    state.agents.notify_all();
    Ok(crate::reply::obj([
        ("KeyPairName", json!(kp.name)),
        ("Revoked", json!(false)),
        ("WasRevoked", json!(was)),
    ]))
}

/// Marks grants past their deadline (on the simulated clock) expired, records each in the audit
/// log, and wakes their hosts (whose agents drop the line anyway, by their own clock).
pub async fn expire(state: &AppState) {
    let expired = match state.store.expire_grants(state.clock.now()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "expiring grants failed; will retry");
            return;
        }
    };
    for g in &expired {
        let record = AuditRecord {
            seq: 0,
            at: keyplane_core::model::now(),
            account_id: g.account_id.clone(),
            principal: "system".into(),
            access_key_id: String::new(),
            source_ip: String::new(),
            dialect: "native".into(),
            action: "GrantExpired".into(),
            resources: vec![keyplane_core::ram::ecs_arn(
                &g.region_id,
                &g.account_id,
                "instance",
                &g.instance_id,
            )],
            result: "OK".into(),
            status: 200,
            request_id: g.id.clone(),
            client_token: String::new(),
            instance_results: Vec::new(),
            injected: Vec::new(),
        };
        if let Err(e) = state.store.append_audit(&record).await {
            tracing::warn!(error = %e, "recording a grant's expiry failed");
        }
    }
    if !expired.is_empty() {
        let ids: Vec<String> = expired.iter().map(|g| g.instance_id.clone()).collect();
        crate::agent_api::changed(state, &ids).await;
    }
}
