//! The records the store keeps and the filters and pages it lists them by: plain data, shared by
//! every backend and by the server.

use chrono::{DateTime, Utc};
use keyplane_core::model::{FingerprintQuery, InstanceStatus, Tag};
use keyplane_core::InstanceFailure;

use crate::Result;

/// An AccessKey as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    pub id: String,
    pub account_id: String,
    pub user_name: Option<String>,
    pub secret: String,
    pub active: bool,
}

/// Filters of DescribeKeyPairs; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct KeyPairFilter {
    pub account_id: String,
    pub region_id: String,
    /// Exact name, or a pattern with `*`.
    pub name: Option<String>,
    /// Several exact names (Volcengine `KeyPairNames.N`).
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub fingerprint: Option<FingerprintQuery>,
    pub resource_group_id: Option<String>,
    pub tags: Vec<Tag>,
}

/// Filters of DescribeInstances; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub account_id: String,
    pub region_id: String,
    /// `Some(empty)` matches nothing, as the vendor does for `InstanceIds=[]`.
    pub ids: Option<Vec<String>>,
    pub name: Option<String>,
    pub key_pair_name: Option<String>,
    pub status: Option<InstanceStatus>,
    pub io_optimized: Option<bool>,
    pub zone_id: Option<String>,
    pub image_id: Option<String>,
    pub tags: Vec<Tag>,
    /// Created at or after / at or before (inclusive).
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

/// Which slice of a listing to return: an offset page or a keyset position.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    Offset {
        offset: u64,
        limit: u64,
    },
    /// Rows after the given sequence number (0 = from the start).
    After {
        seq: i64,
        limit: u64,
    },
}

/// One page of a listing; `next_seq` is set when more rows follow a keyset page.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub next_seq: Option<i64>,
}

/// A RAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub account_id: String,
    pub name: String,
    pub id: String,
    pub display_name: String,
    pub comments: String,
    pub created_at: DateTime<Utc>,
}

/// An AccessKey as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub id: String,
    pub user_name: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A custom policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub account_id: String,
    pub name: String,
    pub document: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    /// Users it is attached to.
    pub attachment_count: u64,
}

/// One audit record: who did what, to what, with what result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub account_id: String,
    /// `root` or `user/<name>`.
    pub principal: String,
    pub access_key_id: String,
    pub source_ip: String,
    pub dialect: String,
    pub action: String,
    pub resources: Vec<String>,
    /// `OK`, or the vendor error code.
    pub result: String,
    pub status: u16,
    pub request_id: String,
    pub client_token: String,
    /// Each instance's own result in a batch call (AttachKeyPair, DetachKeyPair), in the caller's
    /// order: a call can answer 200 while some of its instances were refused.
    pub instance_results: Vec<InstanceResult>,
    /// The emulator faults that fired in this call (SPEC section 14): it was answered, in part or
    /// in whole, by an injected fault.
    pub injected: Vec<String>,
}

/// One instance's result inside a batch call's audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceResult {
    #[serde(rename = "InstanceId")]
    pub instance_id: String,
    /// `OK`, or the vendor code the caller saw for this instance.
    #[serde(rename = "Result")]
    pub result: String,
}

/// The audit record a batch writes in its own transaction. The store fills in the result of each
/// instance it decides (those still empty in `record.instance_results`) with `failure_code`, the
/// calling dialect's per-instance code.
#[derive(Clone, Copy)]
pub struct BindAudit<'a> {
    pub record: &'a AuditRecord,
    pub failure_code: fn(InstanceFailure) -> &'static str,
}

impl BindAudit<'_> {
    /// The record with every instance's result: the store's outcomes fill the undecided ones.
    pub fn complete(&self, outcomes: &[InstanceOutcome]) -> AuditRecord {
        let mut record = self.record.clone();
        let decided: std::collections::HashMap<&str, &str> = outcomes
            .iter()
            .map(|(id, r)| {
                let code = match r {
                    Ok(()) => "OK",
                    Err(f) => (self.failure_code)(*f),
                };
                (id.as_str(), code)
            })
            .collect();
        for r in record
            .instance_results
            .iter_mut()
            .filter(|r| r.result.is_empty())
        {
            if let Some(code) = decided.get(r.instance_id.as_str()) {
                r.result = (*code).to_string();
            }
        }
        record
    }
}

/// Filters of the audit listing; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub account_id: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    /// Matches the call's result or any of its instances' results.
    pub result: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// A one-time registration token, as stored (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    /// The public handle (`rt-` + 20 lowercase alphanumerics) that lists and revokes the token;
    /// knowing it does not let anyone register.
    pub token_id: String,
    pub token_hash: String,
    pub account_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    /// From then on the token redeems like an unknown one.
    pub expires_at: DateTime<Utc>,
}

/// A registration token as listed: what an operator needs to recognise and revoke it, never the
/// secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenInfo {
    pub token_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// An agent registered with it.
    pub used: bool,
}

/// What a host's agent needs to make the binding true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDesired {
    pub instance_id: String,
    pub login_user: String,
    /// The bound key (OpenSSH line) and its SHA-256 fingerprint, if any.
    pub public_key: Option<String>,
    pub fingerprint: Option<String>,
    pub password_login: bool,
    /// Raised by every start or reboot: apply when it is newer than what was applied.
    pub apply_seq: i64,
    /// The latest reset's crypt hash and version, for a Linux host that has had one (a Windows
    /// reset is never sent to the Linux agent).
    pub password_hash: Option<String>,
    pub password_version: i64,
}

/// What an agent reports after an apply or a periodic check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// The apply sequence this report answers (an apply), or None (a periodic check).
    pub applied_seq: Option<i64>,
    /// SHA-256 fingerprints found in the managed section.
    pub fingerprints: Vec<String>,
    /// The effective `PasswordAuthentication` after the apply, as `sshd -T` reads it.
    pub password_login: bool,
    /// The password reset whose hash the agent found in the shadow file after the apply.
    pub password_version: Option<i64>,
    pub error: Option<String>,
}

/// What ModifyInstanceAttribute changes; None leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub host_name: Option<String>,
    /// A reset: the new password's crypt hash, in effect from the next start or reboot.
    pub password_hash: Option<String>,
}

/// What a ClientToken claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenClaim {
    /// First use (or the earlier attempt was abandoned): the caller runs the request.
    Claimed,
    /// Done before: the stored response.
    Done(StoredResponse),
    /// The first request with this token is still running.
    Processing,
    /// The token was used with other parameters.
    Mismatch,
}

/// A response kept for ClientToken retries, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Bind or unbind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOp {
    Attach,
    Detach,
}

/// The outcome for one instance of an attach/detach batch.
pub type InstanceOutcome = (String, Result<(), InstanceFailure>);

/// What the store holds now, read for the metrics at each scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Instances by binding state (`none`, `pending_restart`, …); states no instance is in are
    /// absent.
    pub binding_states: Vec<(String, u64)>,
    /// Rows of the tables that grow with use.
    pub rows: Vec<(&'static str, u64)>,
}

/// The tables [`StoreGauges::rows`] counts.
pub const COUNTED_TABLES: &[&str] = &["instances", "key_pairs", "nonces", "client_tokens", "audit"];

/// The SQLite writer's group commits since the store opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub commits: u64,
    /// Write calls those commits carried.
    pub calls: u64,
    pub failed_commits: u64,
    /// `(smallest size of the bucket, commits)`: commits of 1, 2–3, 4–7, … calls.
    pub sizes: Vec<(usize, u64)>,
}
