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

use crate::auth::{self, Caller};
use crate::params::Params;
use crate::reply::{Reply, Wrap};
use crate::wire::{WireError, WireRequest};
use crate::AppState;
use crate::{audit, authz, idempotency};
use error::AliError;
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
    let call = audit::Call {
        recorded: &ctx.recorded,
        dialect: "aliyun",
        action,
        mutating: MUTATING.contains(&action),
        caller: &caller,
        region: ctx.p.opt("RegionId"),
        request_id: &request_id,
        params: &ctx.p,
    };
    let (response, result) = answer(&ctx, action, &request_id, host, format).await;
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
    let call = audit::Call {
        recorded: &ctx.recorded,
        dialect: "console",
        action,
        mutating: MUTATING.contains(&action),
        caller,
        region: ctx.p.opt("RegionId"),
        request_id: &request_id,
        params: &ctx.p,
    };
    let (response, result) = answer(&ctx, action, &request_id, "console", Format::Json).await;
    audit::record(state, &call, &result, response.status().as_u16()).await;
    response
}

/// The response to an authenticated call, and its result code for the audit log.
async fn answer(
    ctx: &Ctx<'_>,
    action: &str,
    request_id: &str,
    host: &str,
    format: Format,
) -> (Response, String) {
    let state = ctx.state;
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
    let bucket = if ACTIONS.contains(&action) {
        action
    } else {
        "*"
    };
    if let Err(e) = state
        .throttle
        .check(&ctx.caller.access_key_id, bucket)
        .await
    {
        return fail(e.into());
    }
    if ACTIONS.contains(&action)
        && !authz::is_describe(action)
        && !ctx.caller.may_attempt(&authz::ram_action(action))
    {
        return fail(
            CoreError::Forbidden {
                action: authz::ram_action(action),
                resource: "*".into(),
            }
            .into(),
        );
    }
    let run = || async {
        match dispatch(action, ctx).await {
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
        Some(t) if MUTATING.contains(&action) => t,
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

/// Every action of the dialect; anything else is `InvalidAction.NotFound`.
pub const ACTIONS: &[&str] = &[
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPairs",
    "AttachKeyPair",
    "DetachKeyPair",
    "TagResources",
    "UntagResources",
    "RunInstances",
    "DescribeInstances",
    "DescribeInstanceStatus",
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "DeleteInstance",
    "ModifyInstanceAttribute",
    "DescribeRegions",
    "DescribeZones",
    "DescribeImages",
];

async fn dispatch(action: &str, ctx: &Ctx<'_>) -> Result<Reply, AliError> {
    use keyplane_core::binding::Power;
    let result = match action {
        "CreateKeyPair" => keypairs::create(ctx).await.map(Reply::from),
        "ImportKeyPair" => keypairs::import(ctx).await.map(Reply::from),
        "DescribeKeyPairs" => keypairs::describe(ctx).await,
        "DeleteKeyPairs" => keypairs::delete(ctx).await.map(Reply::from),
        "AttachKeyPair" => keypairs::attach(ctx).await.map(Reply::from),
        "DetachKeyPair" => keypairs::detach(ctx).await.map(Reply::from),
        "TagResources" => tags::tag(ctx).await.map(Reply::from),
        "UntagResources" => tags::untag(ctx).await.map(Reply::from),
        "RunInstances" => instances::run(ctx).await.map(Reply::from),
        "DescribeInstances" => instances::describe(ctx).await,
        "DescribeInstanceStatus" => instances::describe_status(ctx).await,
        "StartInstance" => instances::power(ctx, Power::Start).await.map(Reply::from),
        "StopInstance" => instances::power(ctx, Power::Stop).await.map(Reply::from),
        "RebootInstance" => instances::power(ctx, Power::Reboot).await.map(Reply::from),
        "DeleteInstance" => instances::delete(ctx).await.map(Reply::from),
        "ModifyInstanceAttribute" => instances::modify_attribute(ctx).await.map(Reply::from),
        "DescribeRegions" => catalog::regions(ctx).await.map(Reply::from),
        "DescribeZones" => catalog::zones(ctx).await.map(Reply::from),
        "DescribeImages" => catalog::images(ctx).await.map(Reply::from),
        other => return Err(AliError::invalid_action(other, ACTIONS)),
    };
    result.map_err(AliError::from)
}

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
