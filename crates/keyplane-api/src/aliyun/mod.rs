//! The Alibaba Cloud ECS dialect (API version 2014-05-26): `GET`/`POST /`, parameters from the query
//! and a form body, `Action`/`Version` as parameters (V1) or `x-acs-*` headers (V3).

mod catalog;
pub mod error;
mod instances;
mod keypairs;
pub mod render;
mod tags;

use axum::response::Response;
use keyplane_core::catalog as builtin;
use keyplane_core::model::Region;
use keyplane_core::CoreError;
use serde_json::{Map, Value};

use crate::actions::{self, ecs_action as action, Action, Answer, READS, WRITES};
use crate::auth::{self, Caller};
use crate::params::Params;
use crate::reply::{Reply, Wrap};
use crate::wire::{WireError, WireRequest};
use crate::AppState;
use crate::{audit, idempotency};
use error::AliError;
use keyplane_core::binding::Power;
use render::Format;

pub const VERSION: &str = "2014-05-26";

/// The response body of one action, without `RequestId`.
pub type Body200 = Map<String, Value>;

/// What one action handler gets: the shared state, the verified caller, the parameters.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub p: Params<'a>,
    pub request_id: &'a str,
    pub dialect: &'static str,
    pub action: &'a str,
    /// Set by a handler whose own transaction wrote the audit record.
    pub recorded: std::sync::atomic::AtomicBool,
}

impl Ctx<'_> {
    /// The required `RegionId`, which must be a known region.
    pub fn region(&self) -> Result<&'static Region, CoreError> {
        let id = self.p.required("RegionId")?;
        builtin::region(id).ok_or_else(|| CoreError::RegionNotFound(id.to_string()))
    }

    pub fn account(&self) -> &str {
        &self.caller.account_id
    }

    /// This call's audit record, for a write that commits it with its change ([`audit::in_write`]).
    pub fn audit_in_write(&self) -> keyplane_store::AuditRecord {
        audit::in_write(&audit::Call {
            dialect: self.dialect,
            action: self.action,
            mutating: true,
            caller: self.caller,
            region: self.p.opt("RegionId"),
            request_id: self.request_id,
            params: &self.p,
            recorded: &self.recorded,
        })
    }
}

pub async fn handle(
    state: &AppState,
    wire: Result<WireRequest, WireError>,
    host: &str,
) -> Response {
    let request_id = keyplane_core::ids::new_request_id();
    let wire = match wire {
        Ok(w) => w,
        Err(e) => return render::error(&e.into(), &request_id, host, Format::Json),
    };
    let format = Format::from_param(wire.param("Format"));
    // What runs is only what the signature covers: see `WireRequest::alibaba_selector`.
    let selected = wire.alibaba_selector();
    let fail = |e: AliError| {
        // The AccessKey ID the request claims (not verified: this is why it failed, perhaps) and
        // the action tell an operator whose client is misconfigured; the secret is never known here.
        let claimed = keyplane_sig::alibaba::claim(&wire.sig_view())
            .map(|c| c.access_key_id)
            .unwrap_or_default();
        tracing::info!(
            %request_id,
            action = selected.action.unwrap_or(""),
            access_key_id = %claimed,
            code = e.code,
            status = e.status.as_u16(),
            "rejected"
        );
        render::error(&e, &request_id, host, format)
    };
    if selected.version != Some(VERSION) {
        return fail(AliError::invalid_version());
    }
    let caller = match auth::alibaba(state, &wire).await {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    let Some(action) = selected.action.filter(|a| !a.is_empty()) else {
        return fail(CoreError::missing("Action").into());
    };
    let ctx = Ctx {
        state,
        caller: &caller,
        p: Params::new(&wire.query, &wire.form),
        request_id: &request_id,
        dialect: "aliyun",
        action,
        recorded: Default::default(),
    };
    let row = actions::find(ACTIONS, action);
    let call = audit::Call {
        recorded: &ctx.recorded,
        dialect: "aliyun",
        action,
        mutating: row.is_some_and(|a| a.writes),
        caller: &caller,
        region: ctx.p.opt("RegionId"),
        request_id: &request_id,
        params: &ctx.p,
    };
    let (response, result) = answer(&ctx, row, &request_id, host, format).await;
    audit::record(state, &call, &result, response.status().as_u16()).await;
    response
}

/// An action on behalf of a console session: the same checks, dispatch and audit as a signed call.
pub async fn console_call(
    state: &AppState,
    caller: &Caller,
    action: &str,
    query: &[(String, String)],
) -> Response {
    let request_id = keyplane_core::ids::new_request_id();
    let ctx = Ctx {
        state,
        caller,
        p: Params::new(query, &[]),
        request_id: &request_id,
        dialect: "console",
        action,
        recorded: Default::default(),
    };
    let row = actions::find(ACTIONS, action);
    let call = audit::Call {
        recorded: &ctx.recorded,
        dialect: "console",
        action,
        mutating: row.is_some_and(|a| a.writes),
        caller,
        region: ctx.p.opt("RegionId"),
        request_id: &request_id,
        params: &ctx.p,
    };
    let (response, result) = answer(&ctx, row, &request_id, "console", Format::Json).await;
    audit::record(state, &call, &result, response.status().as_u16()).await;
    response
}

/// The response to an authenticated call of `row` (None: an action this dialect does not have),
/// and its result code for the audit log.
async fn answer(
    ctx: &Ctx<'_>,
    row: Option<&'static Action<Handler>>,
    request_id: &str,
    host: &str,
    format: Format,
) -> (Response, String) {
    let state = ctx.state;
    let action = ctx.action;
    let fail = |e: AliError| {
        tracing::info!(%request_id, action, access_key_id = %ctx.caller.access_key_id, code = e.code, "failed");
        let mut r = render::error(&e, request_id, host, format);
        if e.code == "Throttling" {
            // The Tea SDK turns this header into a ThrottlingException with a retry delay (ms).
            r.headers_mut().insert(
                "x-acs-retry-after",
                axum::http::HeaderValue::from_static("1000"),
            );
        }
        (r, e.code.to_string())
    };
    if let Err(e) = ctx.p.nul_free() {
        return fail(e.into());
    }
    // Unknown actions share one bucket, so made-up names cannot grow the throttle's state.
    let bucket = row.map_or("*", |a| a.name);
    if let Err(e) = state
        .throttle
        .check(&ctx.caller.access_key_id, bucket)
        .await
    {
        return fail(e.into());
    }
    let Some(row) = row else {
        return fail(AliError::invalid_action(action, &actions::names(ACTIONS)));
    };
    if row.writes && !ctx.caller.may_attempt(row.ram) {
        return fail(
            CoreError::Forbidden {
                action: row.ram.to_string(),
                resource: "*".into(),
            }
            .into(),
        );
    }
    let run = || async {
        match (row.handler)(ctx).await.map_err(AliError::from) {
            Ok(body) => {
                tracing::info!(%request_id, action, access_key_id = %ctx.caller.access_key_id, "ok");
                (
                    render::success(action, request_id, body, format),
                    "OK".to_string(),
                )
            }
            Err(e) => fail(e),
        }
    };
    // keyplane also honours ClientToken on Alibaba calls (SPEC section 3).
    let token = match ctx.p.opt("ClientToken") {
        Some(t) if row.writes => t,
        _ => return run().await,
    };
    if let Err(e) = idempotency::check_token(token) {
        return fail(e.into());
    }
    let scope = idempotency::scope("aliyun", action, ctx.caller);
    let hash = idempotency::request_hash(&state.config.server_key, "aliyun", ctx.p.pairs());
    match idempotency::claim(state, ctx.account(), &scope, token, &hash).await {
        idempotency::Claimed::Run => {
            let (response, result) = run().await;
            (
                idempotency::finish(state, ctx.account(), &scope, token, response).await,
                result,
            )
        }
        idempotency::Claimed::Stored(response) => (response, "OK (ClientToken replay)".to_string()),
        idempotency::Claimed::Refused(e) => fail(e.into()),
    }
}

/// The actions that change something, and so honour a ClientToken.
pub const MUTATING: &[&str] = &[
    "CreateKeyPair",
    "ImportKeyPair",
    "DeleteKeyPairs",
    "AttachKeyPair",
    "DetachKeyPair",
    "TagResources",
    "UntagResources",
    "RunInstances",
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "DeleteInstance",
    "ModifyInstanceAttribute",
];

/// The response to a handler that panicked: a vendor InternalError, the details in the log.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let request_id = keyplane_core::ids::new_request_id();
    tracing::error!(%request_id, "a request handler panicked");
    render::error(&error::internal(), &request_id, "keyplane", Format::Json)
}

/// An Alibaba handler: the call's context in, its reply out.
pub type Handler = for<'a> fn(&'a Ctx<'a>) -> Answer<'a, Reply, CoreError>;

/// Every action of the dialect (docs/RAM.md has the same table); anything else is
/// `InvalidAction.NotFound`.
pub static ACTIONS: &[Action<Handler>] = &[
    action!("CreateKeyPair", WRITES, keypairs::create),
    action!("ImportKeyPair", WRITES, keypairs::import),
    action!("DescribeKeyPairs", READS, keypairs::describe),
    action!("DeleteKeyPairs", WRITES, keypairs::delete),
    action!("AttachKeyPair", WRITES, keypairs::attach),
    action!("DetachKeyPair", WRITES, keypairs::detach),
    action!("TagResources", WRITES, tags::tag),
    action!("UntagResources", WRITES, tags::untag),
    action!("RunInstances", WRITES, instances::run),
    action!("DescribeInstances", READS, instances::describe),
    action!("DescribeInstanceStatus", READS, instances::describe_status),
    action!("StartInstance", WRITES, |c| instances::power(
        c,
        Power::Start
    )),
    action!("StopInstance", WRITES, |c| instances::power(c, Power::Stop)),
    action!("RebootInstance", WRITES, |c| instances::power(
        c,
        Power::Reboot
    )),
    action!("DeleteInstance", WRITES, instances::delete),
    action!(
        "ModifyInstanceAttribute",
        WRITES,
        instances::modify_attribute
    ),
    action!("DescribeRegions", READS, catalog::regions),
    action!("DescribeZones", READS, catalog::zones),
    action!("DescribeImages", READS, catalog::images),
];

/// Builds a JSON object from `(key, value)` pairs, keeping their order.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Body200 {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Describe times are minute precision on this dialect: `2024-01-01T00:00Z`.
pub fn minute(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// One tag in a listing: `{"TagKey","TagValue"}`.
#[derive(serde::Serialize)]
pub struct TagItem<'a> {
    #[serde(rename = "TagKey")]
    key: &'a str,
    #[serde(rename = "TagValue")]
    value: &'a str,
}

/// A resource's tags in a listing: `{"Tag":[{"TagKey","TagValue"}]}`.
pub fn tag_set(tags: &[keyplane_core::model::Tag]) -> Wrap<Vec<TagItem<'_>>> {
    let items = tags.iter().map(|t| TagItem {
        key: &t.key,
        value: &t.value,
    });
    Wrap("Tag", items.collect())
}
