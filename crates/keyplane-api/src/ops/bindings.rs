//! AttachKeyPair and DetachKeyPair, the same for both dialects: per-instance authorization, one
//! transaction for the batch and its audit record, then the agents of the changed instances are
//! woken.

use std::collections::HashMap;

use keyplane_core::model::KeyPair;
use keyplane_core::InstanceFailure;
use keyplane_store::{BindAudit, BindOp, InstanceOutcome, InstanceResult};

use crate::pipeline::Ctx;
use keyplane_core::CoreError;

/// The RAM action of a bind.
pub fn ram_action(op: BindOp) -> &'static str {
    match op {
        BindOp::Attach => "ecs:AttachKeyPair",
        BindOp::Detach => "ecs:DetachKeyPair",
    }
}

/// Binds or unbinds `key_pair` on `ids`. Instances the caller may not touch fail as `Forbidden`
/// in the results and are left out of the batch, as are those an emulator fault fails; the rest go through in one transaction. The
/// audit record, committed with the batch, names every instance's result in the calling dialect's
/// codes (`failure_code`), refused ones included, so a search for a refusal finds a call that
/// answered 200; a batch refused for every instance is recorded too.
pub async fn bind(
    ctx: &Ctx<'_>,
    key_pair: &KeyPair,
    ids: &[String],
    op: BindOp,
    failure_code: fn(InstanceFailure) -> &'static str,
) -> Result<Vec<InstanceOutcome>, CoreError> {
    let (caller, region) = (ctx.caller, ctx.region()?.id);
    let action = ram_action(op);
    // A revoked key pair (SPEC section 15) is bound nowhere until it is unrevoked.
    if op == BindOp::Attach
        && ctx
            .state
            .store
            .key_pair_revoked(ctx.account(), &key_pair.id)
            .await?
    {
        return Err(CoreError::KeyPairRevoked(key_pair.name.clone()));
    }
    // Instances refused before the store sees the batch: those the caller may not touch, and
    // those an emulator fault fails.
    let refused: HashMap<&String, InstanceFailure> = ids
        .iter()
        .filter_map(|id| {
            if !caller.allowed(action, &caller.instance_arn(region, id)) {
                Some((id, InstanceFailure::Forbidden))
            } else {
                ctx.injected_failure(id).map(|f| (id, f))
            }
        })
        .collect();
    let allowed: Vec<String> = ids
        .iter()
        .filter(|id| !refused.contains_key(id))
        .cloned()
        .collect();
    let mut record = ctx.audit_in_write().clone();
    record.instance_results = ids
        .iter()
        .map(|id| InstanceResult {
            instance_id: id.clone(),
            result: refused
                .get(id)
                .map(|f| failure_code(*f).to_string())
                .unwrap_or_default(),
        })
        .collect();
    let store = &ctx.state.store;
    let mut done = if allowed.is_empty() {
        // Nothing for the store to change, but the refusals are still a call to record.
        store.append_audit(&record).await?;
        Vec::new()
    } else {
        let audit = BindAudit {
            record: &record,
            failure_code,
        };
        let account = ctx.account();
        store
            .bind(account, region, key_pair, &allowed, op, Some(audit))
            .await?
    };
    crate::agent_api::changed(ctx.state, &allowed).await;
    if refused.is_empty() {
        return Ok(done);
    }
    // Back into the caller's order.
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(f) = refused.get(id) {
            out.push((id.clone(), Err(*f)));
        } else if let Some(i) = done.iter().position(|(d, _)| d == id) {
            out.push(done.swap_remove(i));
        }
    }
    Ok(out)
}
