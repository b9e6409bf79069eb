//! The audit log: every mutating call and every denied call (RAM or throttling), with who, from
//! where, what, on which resources, the result, the RequestId and the ClientToken. The record of
//! a call is built once, by [`crate::pipeline`] or by the write that commits it with its change.

use keyplane_core::ram;
use keyplane_store::AuditRecord;

use crate::params::Params;
use crate::pipeline::Ctx;

/// Result codes that mean "denied" and are recorded for any action.
const DENIALS: &[&str] = &[
    "Forbidden.RAM",
    "AccessDenied",
    "Throttling",
    "FlowLimitExceeded",
];

/// The most resources one audit record names.
pub const MAX_RESOURCES: usize = 200;

/// The ARNs a call names: key pairs and instances, by every parameter spelling of both dialects.
pub fn resources(params: &Params<'_>, region: Option<&str>, account: &str) -> Vec<String> {
    let region = region.unwrap_or("*");
    let mut out = Vec::new();
    for (k, v) in params.pairs() {
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
pub fn build(ctx: &Ctx<'_>, result: &str, status: u16) -> AuditRecord {
    let caller = ctx.caller;
    // The RAM API acts in no region; an ECS call in its credential scope's or its RegionId's.
    let region = match ctx.region() {
        Ok(r) => Some(r.id),
        Err(_) => ctx.p.opt("RegionId"),
    };
    AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: caller.account_id.clone(),
        principal: caller.principal_name(),
        access_key_id: caller.access_key_id.clone(),
        source_ip: caller.source_ip.map(|i| i.to_string()).unwrap_or_default(),
        dialect: ctx.dialect.to_string(),
        action: ctx.action.to_string(),
        resources: resources(&ctx.p, region, &caller.account_id),
        result: result.to_string(),
        status,
        request_id: ctx.request_id.to_string(),
        client_token: ctx.p.get("ClientToken").unwrap_or_default().to_string(),
        instance_results: Vec::new(),
        injected: ctx.injected(),
    }
}

/// Records the call if it changes something or was denied. A failure to write is logged: the
/// response has already been decided.
pub async fn record(ctx: &Ctx<'_>, writes: bool, result: &str, status: u16) {
    if !writes && !DENIALS.contains(&result) {
        return;
    }
    let record = build(ctx, result, status);
    if let Err(e) = ctx.state.store.append_audit(&record).await {
        tracing::error!(error = %e, request_id = ctx.request_id, "writing the audit record failed");
    }
}
