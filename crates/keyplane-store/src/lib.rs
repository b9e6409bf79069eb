//! Storage behind one trait, [`Store`], made of one trait per topic ([`KeyPairs`], [`Instances`],
//! [`Accounts`], [`AuditLog`], [`Replay`], [`Agents`]). The server picks a backend once at start-up from the `--db` URL;
//! every backend passes the same [`conformance`] suite.
//!
//! Methods that change several rows (attach/detach, delete of key pairs, power transitions) apply
//! the core rules inside one transaction, so a batch is never half-applied and a crash loses nothing
//! that was acknowledged.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod key_cache;
pub mod postgres;
pub mod prelude;
mod records;
pub mod sqlite;

/// What a write transaction serializes on besides the rows its statements lock (`FOR UPDATE`,
/// `FOR SHARE`, always in ID order so that two writes cannot wait on each other in a cycle). On
/// PostgreSQL this is a transaction-scoped advisory lock, so writes to disjoint rows run in
/// parallel on every server; SQLite's single writer serializes all writes anyway and ignores it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Serial<'a> {
    /// Only the rows it locks.
    Rows,
    /// Every write of this account that also takes it: invariants over many of an account's rows
    /// (the key pair quota, RAM's limits and "still attached" checks).
    Account(&'a str),
    /// Every write that takes this same key (a ClientToken's claim).
    Key(&'a str),
    /// Every write that takes it: the bootstrap and account creation.
    Everything,
}

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::binding::Power;
use keyplane_core::grant::{Grant, InstanceNow};
use keyplane_core::model::{Instance, KeyPair, Tag};
use keyplane_core::CoreError;

/// A signature nonce may not be used twice within this many minutes.
pub const NONCE_WINDOW_MINUTES: i64 = 15;

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

pub use records::*;

/// Instances by binding state, the same statement on both backends.
pub(crate) const BINDING_STATE_COUNTS: &str =
    "SELECT binding_state, COUNT(*) FROM instances GROUP BY binding_state ORDER BY binding_state";

/// Key pairs and their tags.
///
/// Every write that changes something takes `audit`, the call's record: appended in the write's
/// own transaction when the write succeeds, so an acknowledged change is never without its
/// record and a failed one leaves none (None: a write no call records, e.g. the CLI's own).
#[async_trait]
pub trait KeyPairs: Send + Sync {
    /// Inserts a key pair: `KeyPairAlreadyExists`, or `KeyPairQuotaExceeded` past `quota` per region.
    /// `audit`, the call's record, is appended in the same transaction when the insert succeeds.
    async fn create_key_pair(
        &self,
        kp: &KeyPair,
        quota: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn key_pair_by_name(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<KeyPair>>;
    async fn key_pair_by_id(&self, account: &str, id: &str) -> Result<Option<KeyPair>>;
    async fn list_key_pairs(&self, filter: &KeyPairFilter, page: Page) -> Result<Listing<KeyPair>>;
    /// Deletes all the named key pairs or none: `KeyPairNotFound`/`KeyPairInUse` name the culprit.
    /// `audit`, the call's record, is appended in the same transaction when the delete succeeds.
    async fn delete_key_pairs(
        &self,
        account: &str,
        region: &str,
        names: &[String],
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    /// Number of instances a key pair is bound to.
    async fn key_pair_usage(&self, account: &str, key_pair_id: &str) -> Result<u64>;
    /// Adds or overwrites tags on key pairs (by ID), all or nothing, at most `MAX_TAGS` each.
    async fn tag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        tags: &[Tag],
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    /// Removes tag keys (all tags when `keys` is None).
    async fn untag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        keys: Option<&[String]>,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;

    /// Sets a key pair's description or resource group (and its update time).
    async fn set_key_pair_attribute(
        &self,
        account: &str,
        id: &str,
        attribute: KeyPairAttribute,
        value: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
}

/// The attributes of a key pair that change after creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPairAttribute {
    /// Volcengine's ModifyKeyPairAttribute.
    Description,
    /// Alibaba's JoinResourceGroup.
    ResourceGroup,
}

impl KeyPairAttribute {
    /// The UPDATE statement that sets it: `$1` value, `$2` update time, `$3` account, `$4` ID.
    pub fn update(self) -> &'static str {
        match self {
            Self::Description => {
                "UPDATE key_pairs SET description = $1, updated_at = $2 WHERE account_id = $3 AND id = $4"
            }
            Self::ResourceGroup => {
                "UPDATE key_pairs SET resource_group_id = $1, updated_at = $2 WHERE account_id = $3 AND id = $4"
            }
        }
    }
}

/// Instances, their power state and their key pair bindings.
#[async_trait]
pub trait Instances: Send + Sync {
    /// Inserts new instances as given, or, with `done_at`, as `Pending` until they boot then.
    /// `audit`, the call's record, is appended in the same transaction when the insert succeeds.
    async fn insert_instances(
        &self,
        instances: &[Instance],
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn instance(&self, account: &str, id: &str) -> Result<Option<Instance>>;
    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: Page,
    ) -> Result<Listing<Instance>>;
    /// Applies attach or detach of `key_pair` to each instance in one transaction, with the call's
    /// audit record when given; instances that fail a rule are reported and left unchanged.
    async fn bind(
        &self,
        account: &str,
        region: &str,
        key_pair: &KeyPair,
        instance_ids: &[String],
        op: BindOp,
        audit: Option<BindAudit<'_>>,
    ) -> Result<Vec<InstanceOutcome>>;
    /// Starts a power operation. With `done_at` None it completes at once (a start or reboot then
    /// boots the instance); else the instance stays in its transitional status until
    /// [`Store::complete_transitions`] runs at or after `done_at`.
    async fn power(
        &self,
        account: &str,
        id: &str,
        op: Power,
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance>;
    /// Changes an instance's attributes in one transaction. A password reset needs the instance
    /// Running or Stopped (else `IncorrectInstanceStatus`, nothing changed) and is pending until
    /// the next start or reboot, like a binding.
    async fn modify_instance(
        &self,
        account: &str,
        id: &str,
        change: &InstanceChange,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance>;
    /// Finishes every transition due by `now`; returns how many finished.
    async fn complete_transitions(&self, now: DateTime<Utc>) -> Result<u64>;
    /// Moves the completion of the transitions of `ids` (instances in a transitional status) to
    /// `at`; the count moved. An emulator's held transition is released this way.
    async fn reschedule_transitions(
        &self,
        account: &str,
        ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<u64>;
    /// Deletes an instance that is Stopped (or in any stable status with `force`).
    async fn delete_instance(
        &self,
        account: &str,
        id: &str,
        force: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
}

/// Accounts, their root and RAM users' AccessKeys, RAM users, console passwords and policies.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates the default account and its root AccessKey if the store has no account yet.
    /// Returns the default account's ID either way.
    async fn bootstrap(&self, root_key: &AccessKeyRecord) -> Result<String>;
    async fn default_account(&self) -> Result<Option<String>>;
    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>>;
    async fn insert_access_key(&self, key: &AccessKeyRecord) -> Result<()>;

    /// Creates another account with its root AccessKey (`root_key.account_id` is the new ID).
    async fn create_account(&self, name: &str, root_key: &AccessKeyRecord) -> Result<()>;
    /// `(id, name, created_at)` of every account, oldest first.
    async fn list_accounts(&self) -> Result<Vec<(String, String, DateTime<Utc>)>>;
    /// Deletes an account and everything it holds (key pairs, instances, RAM users, policies,
    /// AccessKeys, tokens) in one transaction, all but its audit records: the log is append-only.
    async fn delete_account(&self, account: &str) -> Result<()>;

    async fn create_user(&self, user: &User, audit: Option<&AuditRecord>) -> Result<()>;
    async fn user(&self, account: &str, name: &str) -> Result<Option<User>>;
    async fn list_users(&self, account: &str) -> Result<Vec<User>>;
    /// Refused while the user has AccessKeys or attached policies.
    async fn delete_user(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn set_login_profile(
        &self,
        account: &str,
        user: &str,
        password_hash: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<String>>;
    /// Removes the user's console password; false when it had none.
    async fn delete_login_profile(
        &self,
        account: &str,
        user: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool>;

    /// Adds an AccessKey for the root (`user_name` None) or a user, at most `max` each.
    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn list_access_keys(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<Vec<AccessKeyInfo>>;
    async fn set_access_key_status(
        &self,
        account: &str,
        id: &str,
        active: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn delete_access_key(
        &self,
        account: &str,
        id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;

    async fn create_policy(&self, policy: &PolicyRecord, audit: Option<&AuditRecord>)
        -> Result<()>;
    async fn policy(&self, account: &str, name: &str) -> Result<Option<PolicyRecord>>;
    async fn list_policies(&self, account: &str) -> Result<Vec<PolicyRecord>>;
    /// Refused while attached.
    async fn delete_policy(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn attach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    async fn detach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()>;
    /// The user's policies with the time each was attached.
    async fn user_policies(
        &self,
        account: &str,
        user: &str,
    ) -> Result<Vec<(PolicyRecord, DateTime<Utc>)>>;
}

/// Which grants a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub account_id: String,
    pub region_id: Option<String>,
    pub instance_id: Option<String>,
    pub key_pair_id: Option<String>,
}

/// The most grants one listing returns.
pub const MAX_GRANTS_LISTED: u32 = 1000;

/// The columns a grant is read with: the grant, its key pair's name and key, its instance's now.
pub const GRANT_SELECT: &str = "SELECT g.id, g.account_id, g.region_id, g.instance_id, g.key_pair_id, \
     k.name AS key_pair_name, k.public_key, g.os_user, g.expires_at, g.immediate, g.apply_seq, \
     g.created_at, g.revoked_at, g.result, g.error, i.apply_seq AS instance_seq, \
     i.provider AS instance_provider, i.started_at AS instance_started_at \
     FROM grants g JOIN key_pairs k ON k.id = g.key_pair_id JOIN instances i ON i.id = g.instance_id";

/// The condition of grants past their deadline (`$1`) not yet marked expired.
pub const EXPIRED: &str = "WHERE g.expires_at IS NOT NULL AND g.expires_at <= $1 \
     AND g.revoked_at IS NULL AND g.result <> 'expired' ORDER BY g.id LIMIT 1000";

/// Grants and revoked key pairs (SPEC section 15).
#[async_trait]
pub trait Grants: Send + Sync {
    /// Inserts `grants` in one transaction with the call's record; refused with `KeyPairRevoked`
    /// if their key pair is revoked.
    async fn create_grants(&self, grants: &[Grant], audit: Option<&AuditRecord>) -> Result<()>;
    /// The grants `filter` names, newest first, at most [`MAX_GRANTS_LISTED`], each with its
    /// instance's now.
    async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<(Grant, InstanceNow)>>;
    /// Ends grant `id` at `at`; the instance it was on.
    async fn revoke_grant(
        &self,
        account: &str,
        id: &str,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<String>;
    /// Records `key_pair` revoked in its account and ends its grants there; the instances they
    /// were on. (The vendor bindings are ended by the caller, with the dialects' bind.)
    async fn revoke_key_pair(
        &self,
        key_pair: &KeyPair,
        at: DateTime<Utc>,
        audit: Option<&AuditRecord>,
    ) -> Result<Vec<String>>;
    /// Lifts a revocation; false if the key pair was not revoked.
    async fn unrevoke_key_pair(
        &self,
        account: &str,
        key_pair_id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool>;
    async fn key_pair_revoked(&self, account: &str, key_pair_id: &str) -> Result<bool>;
    /// The public keys revoked in the account of instance `instance_id`.
    async fn revoked_keys(&self, account: &str) -> Result<Vec<String>>;
    /// Marks the grants whose deadline has passed by `now` as expired, once; those it marked (for
    /// the audit log).
    async fn expire_grants(&self, now: DateTime<Utc>) -> Result<Vec<Grant>>;
    /// The agent's report of each grant it applied (`None`) or could not (why).
    async fn record_grant_results(
        &self,
        instance_id: &str,
        results: &[(String, Option<String>)],
    ) -> Result<()>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> Result<Listing<AuditRecord>>;
    /// Deletes records older than `before`, oldest first, at most `limit` in one transaction; the
    /// count deleted. The retention setting's only way in: every other delete or update of a
    /// record is refused by the database itself.
    async fn purge_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
}

/// How long a ClientToken is remembered: Alibaba's and Volcengine's documents promise idempotence
/// for at least this long.
pub const CLIENT_TOKEN_HOURS: i64 = 24;

/// What keeps a request from running twice or too often: signature nonces, ClientTokens and
/// shared throttle buckets.
#[async_trait]
pub trait Replay: Send + Sync {
    /// Marks a signature nonce used at `at`; false if it already was within the window before `at`.
    /// The caller passes the later of now and the signed timestamp, so a nonce is remembered for
    /// as long as its request's timestamp is acceptable (SPEC section 6).
    async fn claim_nonce(
        &self,
        access_key_id: &str,
        nonce: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    /// Nonces recorded at or after `since`, with the instant each was recorded at, to refill the
    /// in-memory replay set at start-up.
    async fn recent_nonces(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>>;
    async fn record_nonces(&self, batch: &[(String, String, DateTime<Utc>)]) -> Result<()>;
    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Claims `(account, action, token)` for a request whose normalized form hashes to `hash`.
    /// A claim still `processing` after `stale_before` is taken to be abandoned and is taken over;
    /// one made [`CLIENT_TOKEN_HOURS`] or more before `now` has expired and is claimed afresh,
    /// whatever its parameters were.
    async fn claim_token(
        &self,
        account: &str,
        action: &str,
        token: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<TokenClaim>;
    /// Records the response of a claimed request.
    async fn finish_token(
        &self,
        account: &str,
        action: &str,
        token: &str,
        response: &StoredResponse,
    ) -> Result<()>;
    /// Gives a claim up (the request failed and changed nothing), so a retry runs again.
    async fn release_token(&self, account: &str, action: &str, token: &str) -> Result<()>;
    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64>;
    /// A shared throttle bucket per AccessKey and action; always true where the store is not
    /// shared (the server throttles in memory).
    async fn throttle(
        &self,
        access_key_id: &str,
        action: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<bool>;
}

/// Real hosts: registration tokens, agent credentials, desired state and reports, and the
/// wake-ups that reach an agent whichever server it long-polls.
#[async_trait]
pub trait Agents: Send + Sync {
    async fn create_registration_token(&self, token: &RegistrationToken) -> Result<()>;
    /// The account's tokens that were not revoked (used and expired ones included), oldest first.
    async fn list_registration_tokens(&self, account: &str) -> Result<Vec<RegistrationTokenInfo>>;
    /// Revokes one of the account's tokens; false when the account has no such token (or it was
    /// revoked already). Another account's token is "no such token".
    async fn revoke_registration_token(&self, account: &str, token_id: &str) -> Result<bool>;
    /// Uses a token once: inserts the host instance (with the agent's credential hash) in the
    /// token's account, region and zone. An unknown, used, expired or revoked token is `None`,
    /// all alike, so an answer tells nothing about which tokens exist.
    async fn redeem_registration_token(
        &self,
        token_hash: &str,
        instance: &Instance,
        credential_hash: &str,
    ) -> Result<Option<Instance>>;
    /// The agent credential hash of a host instance.
    async fn agent_credential(&self, instance_id: &str) -> Result<Option<(String, String)>>;
    async fn agent_desired(&self, instance_id: &str) -> Result<Option<AgentDesired>>;
    /// Applies a report to the binding: an apply confirms what is in effect (or fails); a check
    /// that differs from what was confirmed is drift.
    async fn record_agent_report(
        &self,
        instance_id: &str,
        report: &AgentReport,
    ) -> Result<Instance>;
    /// Tells every server on this store that these instances' desired state changed.
    async fn announce(&self, instance_ids: &[String]) -> Result<()>;
    /// Instance IDs announced by any server (`"*"`: some may have been missed, wake all); `None`
    /// where the store is not shared.
    async fn announcements(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>;
}

/// A whole store: every topic, and the store's own life. The server picks a backend once at
/// start-up and uses it as `Arc<dyn Store>`; `use keyplane_store::prelude::*` brings every topic's
/// methods into scope.
#[async_trait]
pub trait Store:
    KeyPairs + Instances + Accounts + AuditLog + Replay + Agents + Grants + Send + Sync + 'static
{
    /// Whether several servers may share this store (PostgreSQL): then nonces and throttles are
    /// checked in the store on every call, and agent wake-ups go through it.
    fn shared(&self) -> bool;
    /// Free space where the store writes, when it is this process's to watch (SQLite's file
    /// system); `None` for a database server.
    fn free_bytes(&self) -> Option<u64>;
    /// Binding states and table sizes, for the metrics.
    async fn gauges(&self) -> Result<StoreGauges>;
    /// The writer's group commits (SQLite); `None` where the database server commits.
    fn write_stats(&self) -> Option<WriteStats> {
        None
    }
    /// Saves the whole store to a new file at `path`, consistently, while calls go on (an
    /// emulator's snapshot, SPEC section 14).
    /// Where an emulator keeps its snapshots, when this store can take them (SQLite: beside its
    /// file).
    fn snapshot_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    async fn save_snapshot(&self, _path: &std::path::Path) -> Result<()> {
        Err(snapshots_unsupported())
    }
    /// Replaces the store's state with the snapshot at `path`, atomically: every call sees the
    /// state before or the state saved. The audit log, signature nonces and the schema's
    /// bookkeeping are not replaced: the log is append-only, and nonces guard against replay now.
    async fn load_snapshot(&self, _path: &std::path::Path) -> Result<()> {
        Err(snapshots_unsupported())
    }
    /// Closes the store, waiting until every connection has finished: SQLite checkpoints its WAL
    /// and removes the side files, so the data directory is complete and still once this returns.
    async fn close(&self);
}

fn snapshots_unsupported() -> CoreError {
    CoreError::invalid(
        "Snapshot",
        "Snapshots need the embedded SQLite store; with PostgreSQL use pg_dump and pg_restore \
         (docs/EMULATOR.md).",
    )
}

/// What deleting an account deletes, children before parents; `$1` is the account's ID.
pub const DELETE_ACCOUNT: &[&str] = &[
    "DELETE FROM grants WHERE account_id = $1",
    "DELETE FROM revoked_key_pairs WHERE account_id = $1",
    "DELETE FROM user_policies WHERE account_id = $1",
    "DELETE FROM login_profiles WHERE account_id = $1",
    "DELETE FROM access_keys WHERE account_id = $1",
    "DELETE FROM users WHERE account_id = $1",
    "DELETE FROM policies WHERE account_id = $1",
    "DELETE FROM registration_tokens WHERE account_id = $1",
    "DELETE FROM client_tokens WHERE account_id = $1",
    "DELETE FROM instance_tags WHERE instance_id IN (SELECT id FROM instances WHERE account_id = $1)",
    "DELETE FROM instances WHERE account_id = $1",
    "DELETE FROM key_pair_tags WHERE key_pair_id IN (SELECT id FROM key_pairs WHERE account_id = $1)",
    "DELETE FROM key_pairs WHERE account_id = $1",
    "DELETE FROM accounts WHERE id = $1",
];

/// When a transition an emulator holds "completes": never in practice, and still a four-digit
/// year, so its stored text sorts after every real time.
pub fn held_until() -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Fixed-width UTC timestamps, so text order is time order in every backend.
pub fn ts(t: DateTime<Utc>) -> String {
    // The same text as `%Y-%m-%dT%H:%M:%S%.6fZ`, without parsing a format string on every write.
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The tags a listing's page query aggregates beside each row: a JSON array of `[key, value]`
/// pairs in key order (one statement for a page and its tags, on both backends).
pub fn parse_tags(json: &str) -> Result<Vec<Tag>> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json)
        .map_err(|e| CoreError::Internal(format!("bad aggregated tags {json:?}: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(key, value)| Tag { key, value })
        .collect())
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| CoreError::Internal(format!("bad stored timestamp {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn stored_timestamps_keep_their_fixed_width_text_and_read_back() {
        // Stored text is compared as text (ORDER BY, `since` filters): its shape must not drift.
        let whole = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(ts(whole), "2026-01-02T03:04:05.000000Z");
        let fine = whole + chrono::Duration::nanoseconds(6_789);
        assert_eq!(ts(fine), "2026-01-02T03:04:05.000006Z");
        assert_eq!(
            parse_ts(&ts(fine)).unwrap(),
            whole + chrono::Duration::microseconds(6)
        );
    }
}
