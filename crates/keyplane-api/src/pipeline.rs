//! The one request pipeline: every call of every dialect (Alibaba ECS, Volcengine ECS, the RAM
//! API, the console's actions) runs through [`serve`] or [`run`], step by step in the same order:
//!
//! 1. read the action, version and identity ([`Dialect::read`]: signature, replay window);
//! 2. refuse NUL bytes in parameters;
//! 3. throttle per AccessKey and action (unknown actions share one bucket);
//! 4. refuse an action the dialect does not have;
//! 5. the RAM gate: a write needs some Allow for its RAM action (every call, on the RAM API);
//!    then, in emulator mode only, the faults injected into the call (latency, an error);
//! 6. claim the ClientToken of a write, or answer a replay with the stored response;
//! 7. run the handler of the action's row;
//! 8. render the answer in the dialect's envelope, keep it for the ClientToken;
//! 9. audit: every write and every denial, unless the write's own transaction recorded it.
//!
//! A dialect says only what differs ([`Dialect`]); what an action does lives in its handler and
//! in [`crate::ops`].

use std::sync::OnceLock;

use axum::response::Response;
use futures_util::future::BoxFuture;
use keyplane_core::catalog as builtin;
use keyplane_core::model::{Region, Tag};
use keyplane_core::CoreError;
use keyplane_store::AuditRecord;

use crate::actions::{self, Action, Answer};
use crate::auth::Caller;
use crate::params::Params;
use crate::reply::Reply;
use crate::wire::{WireError, WireRequest};
use crate::{audit, idempotency, AppState};

/// A handler: the call's context in, its reply out. Every dialect's table holds these.
pub type Handler = for<'a> fn(&'a Ctx<'a>) -> Answer<'a, Reply, CoreError>;

/// What the envelope and the log line of an answer need; filled in as the request is read, so a
/// request refused early is answered with what was known by then.
pub struct Meta {
    /// When the call was read, for its latency.
    pub started: std::time::Instant,
    pub request_id: String,
    pub action: String,
    /// The region the call acts in, where the dialect's envelope names it (Volcengine).
    pub region: String,
    /// The verified caller's AccessKey ID, or the one a refused request claimed (for the log: it
    /// tells an operator whose client is misconfigured; no secret is ever known here).
    pub access_key_id: String,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            started: std::time::Instant::now(),
            request_id: String::new(),
            action: String::new(),
            region: String::new(),
            access_key_id: String::new(),
        }
    }
}

/// A call once its dialect has read it: who, and in which region if the dialect fixes it.
pub struct Head {
    pub caller: Caller,
    /// The credential scope's region (Volcengine); `None` where a `RegionId` parameter names it.
    pub region: Option<&'static Region>,
}

/// What differs between dialects; the steps and their order do not (see the module's doc).
pub trait Dialect: Sync {
    /// The error this dialect answers with.
    type Error: From<CoreError> + From<WireError> + Send;

    /// The dialect's name in the audit log, the log and ClientToken scopes.
    fn name(&self) -> &'static str;

    /// The dialect's action table.
    fn actions(&self) -> &'static [Action<Handler>];

    /// A RequestId in the vendor's shape.
    fn request_id(&self) -> String {
        keyplane_core::ids::new_request_id()
    }

    /// Step 1: the action, version and identity of `wire`, recording what it learns in `meta`.
    fn read<'a>(
        &'a self,
        state: &'a AppState,
        wire: &'a WireRequest,
        meta: &'a mut Meta,
    ) -> BoxFuture<'a, Result<Head, Self::Error>>;

    /// How an action the table does not have is refused.
    fn unknown_action(&self, action: &str) -> Self::Error;

    /// Whether reads pass the RAM gate too (the RAM API: there is no partial listing there).
    fn gates_reads(&self) -> bool {
        false
    }

    /// Whether a call of an action the dialect does not have is audited (the RAM API's are: a
    /// caller probing for actions is worth seeing there).
    fn audits_unknown_actions(&self) -> bool {
        false
    }

    /// Whether a write honours a ClientToken: the name its tokens are scoped by and the context
    /// its request hash is bound to, or `None`.
    fn idempotency(&self, ctx: &Ctx<'_>) -> Option<(&'static str, String)>;

    /// The error's code, for the audit log and `/healthz`.
    fn code(&self, e: &Self::Error) -> String;

    fn success(&self, meta: &Meta, reply: Reply) -> Response;

    /// The error in the dialect's envelope; logs it.
    fn failure(&self, meta: &Meta, e: &Self::Error) -> Response;
}

/// What one handler gets: the shared state, the verified caller, the parameters.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub p: Params<'a>,
    pub request_id: &'a str,
    pub dialect: &'static str,
    pub action: &'a str,
    scope_region: Option<&'static Region>,
    /// The call's audit record once a write has taken it to commit with its change.
    record: OnceLock<AuditRecord>,
    /// What the emulator's faults decided for this call (none outside emulator mode).
    faults: OnceLock<crate::emulator::CallFaults>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        state: &'a AppState,
        caller: &'a Caller,
        p: Params<'a>,
        meta: &'a Meta,
        dialect: &'static str,
        scope_region: Option<&'static Region>,
    ) -> Self {
        Ctx {
            state,
            caller,
            p,
            request_id: &meta.request_id,
            dialect,
            action: &meta.action,
            scope_region,
            record: OnceLock::new(),
            faults: OnceLock::new(),
        }
    }

    /// The emulator faults that fired in this call, for its audit record.
    pub fn injected(&self) -> Vec<String> {
        self.faults
            .get()
            .map(|f| f.fired.clone())
            .unwrap_or_default()
    }

    /// The injected failure of instance `id` in this batch, if a fault fails it.
    pub fn injected_failure(&self, id: &str) -> Option<keyplane_core::InstanceFailure> {
        self.faults.get()?.instances.get(id).copied()
    }

    /// When a transition this call starts completes: after the configured delay on the
    /// simulated clock, at once with none, or never while an emulator fault holds it (the
    /// fault's ID is returned to note what it holds).
    pub fn transition_done_at(&self) -> (Option<chrono::DateTime<chrono::Utc>>, Option<&str>) {
        if let Some(fault) = self.faults.get().and_then(|f| f.hold.as_deref()) {
            return (Some(keyplane_store::held_until()), Some(fault));
        }
        let delay = self.state.config.transition_delay;
        let at = (!delay.is_zero()).then(|| {
            self.state.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default()
        });
        (at, None)
    }

    /// Notes that the fault `fault` holds the transitions of `ids`.
    pub fn hold(&self, fault: Option<&str>, ids: &[String]) {
        if let (Some(fault), Some(emulator)) = (fault, &self.state.emulator) {
            emulator.held(fault, ids);
        }
    }

    pub fn account(&self) -> &str {
        &self.caller.account_id
    }

    /// The region the call acts in: the credential scope's (Volcengine), or the required
    /// `RegionId`, which must be a known region.
    pub fn region(&self) -> Result<&'static Region, CoreError> {
        if let Some(region) = self.scope_region {
            return Ok(region);
        }
        let id = self.p.required("RegionId")?;
        builtin::region(id).ok_or_else(|| CoreError::RegionNotFound(id.to_string()))
    }

    /// This call's audit record, for a write that commits it in its own transaction: an
    /// acknowledged change never lacks its record, and the call waits for one commit, not two.
    /// Taking it tells the pipeline the record is written should the call succeed; should the
    /// write fail, the pipeline records the call's error instead.
    pub fn audit_in_write(&self) -> &AuditRecord {
        self.record.get_or_init(|| audit::build(self, "OK", 200))
    }

    /// The page position of this call's `NextToken` (opaque: see [`crate::page_token`]).
    pub fn page_position(&self, listing: &str) -> Result<i64, CoreError> {
        let scope = self.token_scope(listing);
        crate::page_token::open(
            &self.state.config.server_key,
            &scope,
            self.p.get("NextToken"),
        )
    }

    /// The `NextToken` for the page at `next`, or `""` after the last page.
    pub fn next_token(&self, listing: &str, next: Option<i64>) -> String {
        crate::page_token::seal(
            &self.state.config.server_key,
            &self.token_scope(listing),
            next,
        )
    }

    fn token_scope<'s>(&'s self, listing: &'s str) -> crate::page_token::Scope<'s> {
        crate::page_token::Scope {
            listing,
            caller: self.caller,
            extra: self.scope_region.map_or("", |r| r.id),
        }
    }

    /// A strict `Name.N` list, with the list's own errors for InstanceIds and KeyPairNames.
    pub fn list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, CoreError> {
        list_result(name, max, self.p.strict_list(name, max))
    }

    /// [`Ctx::list`] whose cap counts distinct values, for the calls that de-duplicate.
    pub fn distinct_list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, CoreError> {
        list_result(name, max, self.p.strict_list_distinct(name, max))
    }

    /// `TagFilters.N.Key` with exactly one `TagFilters.N.Values.1`.
    pub fn tag_filters(&self) -> Result<Vec<Tag>, CoreError> {
        let mut tags = Vec::new();
        for n in 1..=crate::params::MAX_TAG_PARAMS {
            let Some(key) = self.p.opt(&format!("TagFilters.{n}.Key")) else {
                continue;
            };
            let values = self.p.repeat(&format!("TagFilters.{n}.Values"), 20)?;
            match values[..] {
                [one] => tags.push(Tag {
                    key: key.to_string(),
                    value: one.to_string(),
                }),
                _ => {
                    return Err(CoreError::invalid(
                        "TagFilters",
                        "Give exactly one value per tag key.",
                    ))
                }
            }
        }
        Ok(tags)
    }
}

fn list_result(
    name: &str,
    max: usize,
    parsed: Result<Option<Vec<&str>>, bool>,
) -> Result<Option<Vec<String>>, CoreError> {
    match parsed {
        Ok(list) => Ok(list.map(|l| l.into_iter().map(str::to_string).collect())),
        Err(too_many) => Err(match (name, too_many) {
            ("InstanceIds", true) => CoreError::TooManyInstanceIds(max),
            ("InstanceIds", false) => CoreError::InvalidInstanceIds,
            ("KeyPairNames", true) => CoreError::TooManyKeyPairNames(max),
            ("KeyPairNames", false) => CoreError::InvalidKeyPairNames,
            (_, true) => CoreError::invalid(name, format!("At most {max} entries.")),
            (_, false) => {
                CoreError::invalid(name, "Use Name.1, Name.2, … without gaps or empty values.")
            }
        }),
    }
}

/// A signed call from the wire, through every step.
pub async fn serve<D: Dialect>(
    d: &D,
    state: &AppState,
    wire: Result<WireRequest, WireError>,
) -> Response {
    let mut meta = Meta {
        request_id: d.request_id(),
        ..Meta::default()
    };
    let refused = |meta: &Meta, e: D::Error| {
        count(d, state, meta, &d.code(&e));
        d.failure(meta, &e)
    };
    let wire = match wire {
        Ok(w) => w,
        Err(e) => return refused(&meta, e.into()),
    };
    let head = match d.read(state, &wire, &mut meta).await {
        Ok(head) => head,
        Err(e) => return refused(&meta, e),
    };
    let p = Params::new(&wire.query, &wire.form);
    let ctx = Ctx::new(state, &head.caller, p, &meta, d.name(), head.region);
    run(d, &ctx, &meta).await
}

/// An authenticated call (from [`serve`], or a console session's) through steps 2 to 9.
pub async fn run<D: Dialect>(d: &D, ctx: &Ctx<'_>, meta: &Meta) -> Response {
    let row = actions::find(d.actions(), ctx.action);
    let writes = row.map_or(d.audits_unknown_actions(), |a| a.writes);
    let (response, result) = answer(d, ctx, row, meta).await;
    let status = response.status().as_u16();
    count(d, ctx.state, meta, &result);
    ctx.state.writes.observe(writes, &result);
    // A write that succeeded committed the record it took; anything else is recorded here.
    let committed = result == "OK" && ctx.record.get().is_some();
    if !committed {
        // A call a fault touched is recorded whatever it was, marked as injected.
        let injected = !ctx.injected().is_empty();
        audit::record(ctx, writes || injected, &result, status).await;
    }
    response
}

/// Counts the call in the metrics, under its action's name if the dialect has it.
fn count<D: Dialect>(d: &D, state: &AppState, meta: &Meta, result: &str) {
    let action = actions::find(d.actions(), &meta.action).map_or("unknown", |a| a.name);
    let took = meta.started.elapsed();
    state.metrics.call(d.name(), action, result, took);
}

/// Steps 2 to 8: the response, and its result code for the audit log.
async fn answer<D: Dialect>(
    d: &D,
    ctx: &Ctx<'_>,
    row: Option<&'static Action<Handler>>,
    meta: &Meta,
) -> (Response, String) {
    let fail = |e: D::Error| (d.failure(meta, &e), d.code(&e));
    if let Err(e) = ctx.p.nul_free() {
        return fail(e.into());
    }
    // Unknown actions share one bucket, so made-up names cannot grow the throttle's state.
    let bucket = row.map_or("*", |a| a.name);
    let throttle = &ctx.state.throttle;
    if let Err(e) = throttle.check(&ctx.caller.access_key_id, bucket).await {
        return fail(e.into());
    }
    let Some(row) = row else {
        return fail(d.unknown_action(ctx.action));
    };
    if (row.writes || d.gates_reads()) && !ctx.caller.may_attempt(row.ram) {
        let denied = CoreError::Forbidden {
            action: row.ram.to_string(),
            resource: "*".into(),
        };
        return fail(denied.into());
    }
    if let Some(emulator) = &ctx.state.emulator {
        let faults = ctx.faults.get_or_init(|| emulator.for_call(ctx));
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        if let Some(e) = &faults.error {
            return fail(e.clone().into());
        }
    }
    let run = || async {
        match (row.handler)(ctx).await {
            Ok(reply) => {
                tracing::info!(request_id = ctx.request_id, action = ctx.action, access_key_id = %ctx.caller.access_key_id, "ok");
                (d.success(meta, reply), "OK".to_string())
            }
            Err(e) => fail(e.into()),
        }
    };
    let (Some(token), Some((scope_name, context))) = (
        ctx.p.opt("ClientToken").filter(|_| row.writes),
        d.idempotency(ctx),
    ) else {
        return run().await;
    };
    if let Err(e) = idempotency::check_token(token) {
        return fail(e.into());
    }
    let state = ctx.state;
    let scope = idempotency::scope(scope_name, row.name, ctx.caller);
    let hash = idempotency::request_hash(&state.config.server_key, &context, ctx.p.pairs());
    match idempotency::claim(state, ctx.account(), &scope, token, &hash).await {
        idempotency::Claimed::Run => {
            let (response, result) = run().await;
            let response = idempotency::finish(state, ctx.account(), &scope, token, response).await;
            (response, result)
        }
        idempotency::Claimed::Stored(response) => (response, "OK (ClientToken replay)".to_string()),
        idempotency::Claimed::Refused(e) => fail(e.into()),
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
