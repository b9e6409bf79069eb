//! The audit log: every mutating call and every denied call (RAM or throttling), with who, from
//! where, what, on which resources, the result, the RequestId and the ClientToken.

use keyplane_core::ram;
use keyplane_store::AuditRecord;

use crate::auth::Caller;
use crate::params::Params;
use crate::AppState;

/// Result codes that mean "denied" and are recorded for any action.
const DENIALS: &[&str] = &[
    "Forbidden.RAM",
    "AccessDenied",
    "Throttling",
    "FlowLimitExceeded",
];

pub struct Call<'a> {
    pub dialect: &'a str,
    pub action: &'a str,
    pub mutating: bool,
    pub caller: &'a Caller,
    pub region: Option<&'a str>,
    pub request_id: &'a str,
    pub params: &'a Params<'a>,
    /// Set when the call's own transaction wrote its record (AttachKeyPair, DetachKeyPair).
    pub recorded: &'a std::sync::atomic::AtomicBool,
}

/// The most resources one audit record names.
const MAX_RESOURCES: usize = 200;

/// The ARNs a call names: key pairs and instances, by every parameter spelling of both dialects.
pub fn resources(call: &Call<'_>) -> Vec<String> {
    let region = call.region.unwrap_or("*");
    let account = &call.caller.account_id;
    let mut out = Vec::new();
    for (k, v) in call.params.pairs() {
        // A bounded record: a refused call may name a megabyte of IDs, and none past the first
        // MAX_RESOURCES are kept, so none past them are read.
        let room = MAX_RESOURCES.saturating_sub(out.len());
        if room == 0 {
            break;
        }
        let base = k.split('.').next().unwrap_or(k);
        let kind = match base {
            "KeyPairName" | "KeyPairNames" | "KeyPairId" | "KeyPairIds" | "ResourceId" => "keypair",
            "InstanceId" | "InstanceIds" => "instance",
            "UserName" => {
                out.push(ram::ram_arn(account, "user", v));
                continue;
            }
            "PolicyName" => {
                out.push(ram::ram_arn(account, "policy", v));
                continue;
            }
            _ => continue,
        };
        if let Some(list) = keyplane_core::json_list::first(v, room) {
            out.extend(list.iter().map(|n| ram::ecs_arn(region, account, kind, n)));
        } else if !v.is_empty() {
            out.push(ram::ecs_arn(region, account, kind, v));
        }
    }
    out
}

/// The record of a call with its result.
pub fn build(call: &Call<'_>, result: &str, status: u16) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: call.caller.account_id.clone(),
        principal: call.caller.principal_name(),
        access_key_id: call.caller.access_key_id.clone(),
        source_ip: call
            .caller
            .source_ip
            .map(|i| i.to_string())
            .unwrap_or_default(),
        dialect: call.dialect.to_string(),
        action: call.action.to_string(),
        resources: resources(call),
        result: result.to_string(),
        status,
        request_id: call.request_id.to_string(),
        client_token: call
            .params
            .get("ClientToken")
            .unwrap_or_default()
            .to_string(),
        instance_results: Vec::new(),
    }
}

/// The record of a call that succeeds, for a store write that appends it in the write's own
/// transaction: an acknowledged change never lacks its record, and the call waits for one commit,
/// not two. Marks the call recorded; should the write fail, the call's error is recorded as usual.
pub fn in_write(call: &Call<'_>) -> AuditRecord {
    call.recorded
        .store(true, std::sync::atomic::Ordering::Relaxed);
    build(call, "OK", 200)
}

/// Records the call if it changes something or was denied, unless its own transaction already
/// did. A failure to write is logged: the response has already been decided.
pub async fn record(state: &AppState, call: &Call<'_>, result: &str, status: u16) {
    state.writes.observe(call.mutating, result);
    if !call.mutating && !DENIALS.contains(&result) {
        return;
    }
    if result == "OK" && call.recorded.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Err(e) = state.store.append_audit(&build(call, result, status)).await {
        tracing::error!(error = %e, request_id = call.request_id, "writing the audit record failed");
    }
}
