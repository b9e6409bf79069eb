//! Authorization: what the verified caller may do. The root AccessKey acts for the whole account; a
//! RAM user's AccessKey acts with the user's policies (SPEC section 6).
//!
//! Every action is mapped to its RAM action (`ecs:<Action>`, the same for both dialects). A gate in
//! front of every action refuses a caller with no Allow for it at all; handlers then check each
//! resource (`instance/{id}`, `keypair/{name}`), and Describe calls keep only what may be seen.

use keyplane_core::ram::{self, Context, Policy};
use keyplane_core::CoreError;

use keyplane_core::model::KeyPair;
use keyplane_core::InstanceFailure;
use std::collections::HashSet;

use keyplane_store::{BindAudit, BindOp, InstanceOutcome, InstanceResult};

use crate::auth::Caller;
use crate::AppState;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Root,
    User(String),
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.principal == Principal::Root
    }

    /// `root` or `user/<name>`, for the audit log.
    pub fn principal_name(&self) -> String {
        match &self.principal {
            Principal::Root => "root".into(),
            Principal::User(u) => format!("user/{u}"),
        }
    }

    fn context(&self) -> Context {
        Context {
            source_ip: self.source_ip,
            now: chrono::Utc::now(),
        }
    }

    fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether the caller may do `action` (`ecs:AttachKeyPair`) on `resource` (an ARN).
    pub fn allowed(&self, action: &str, resource: &str) -> bool {
        self.is_root()
            || ram::evaluate(self.policies(), action, resource, &self.context()).allowed()
    }

    pub fn check(&self, action: &str, resource: &str) -> Result<(), CoreError> {
        if self.allowed(action, resource) {
            Ok(())
        } else {
            Err(CoreError::Forbidden {
                action: action.into(),
                resource: resource.into(),
            })
        }
    }

    /// The gate in front of an action.
    pub fn may_attempt(&self, action: &str) -> bool {
        self.is_root() || ram::may_attempt(self.policies(), action, &self.context())
    }

    pub fn keypair_arn(&self, region: &str, name: &str) -> String {
        ram::ecs_arn(region, &self.account_id, "keypair", name)
    }

    pub fn instance_arn(&self, region: &str, id: &str) -> String {
        ram::ecs_arn(region, &self.account_id, "instance", id)
    }
}

/// The slice `offset..offset+limit` of a list filtered in memory, its total, and the next offset.
pub fn page_in_memory<T>(
    mut items: Vec<T>,
    offset: usize,
    limit: usize,
) -> (Vec<T>, u64, Option<usize>) {
    let total = items.len();
    let end = (offset + limit).min(total);
    let page: Vec<T> = if offset < total {
        items.drain(offset..end).collect()
    } else {
        Vec::new()
    };
    (page, total as u64, (end < total).then_some(end))
}

/// How many rows a filtered (RAM user) listing reads at most before paging in memory.
pub const FILTER_SCAN_LIMIT: u64 = 100_000;

/// One attach or detach batch.
pub struct Batch<'a> {
    pub action: &'a str,
    pub region: &'a str,
    pub key_pair: &'a KeyPair,
    pub ids: &'a [String],
    pub op: BindOp,
    /// The call's audit record, written in the batch's own transaction with each instance's
    /// result in the calling dialect's codes.
    pub audit: Option<BindAudit<'a>>,
}

/// Attach/detach with per-instance authorization: instances the caller may not touch fail as
/// `Forbidden` in the results and are left out of the batch; the rest go through in one transaction.
/// The audit record names every instance's result, refused ones included, so a search for a
/// refusal finds a call that answered 200; a batch refused for every instance is recorded too.
pub async fn bind_allowed(
    state: &AppState,
    caller: &Caller,
    batch: Batch<'_>,
) -> Result<Vec<InstanceOutcome>, CoreError> {
    let Batch {
        action,
        region,
        key_pair,
        ids,
        op,
        audit,
    } = batch;
    let denied: HashSet<&String> = ids
        .iter()
        .filter(|id| !caller.allowed(action, &caller.instance_arn(region, id)))
        .collect();
    let allowed: Vec<String> = ids
        .iter()
        .filter(|id| !denied.contains(id))
        .cloned()
        .collect();
    let record = audit.map(|a| {
        let mut record = a.record.clone();
        record.instance_results = ids
            .iter()
            .map(|id| InstanceResult {
                instance_id: id.clone(),
                result: if denied.contains(id) {
                    (a.failure_code)(InstanceFailure::Forbidden).to_string()
                } else {
                    String::new()
                },
            })
            .collect();
        (record, a.failure_code)
    });
    let audit = record.as_ref().map(|(record, failure_code)| BindAudit {
        record,
        failure_code: *failure_code,
    });
    let mut done = if allowed.is_empty() {
        // Nothing for the store to change, but the refusals are still a call to record.
        if let Some((record, _)) = &record {
            state.store.append_audit(record).await?;
        }
        Vec::new()
    } else {
        state
            .store
            .bind(&caller.account_id, region, key_pair, &allowed, op, audit)
            .await?
    };
    crate::agent_api::changed(state, &allowed).await;
    if denied.is_empty() {
        return Ok(done);
    }
    // Back into the caller's order.
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if denied.contains(id) {
            out.push((id.clone(), Err(InstanceFailure::Forbidden)));
        } else if let Some(i) = done.iter().position(|(d, _)| d == id) {
            out.push(done.swap_remove(i));
        }
    }
    Ok(out)
}
