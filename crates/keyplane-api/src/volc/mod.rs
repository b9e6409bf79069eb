//! The Volcengine ECS dialect (API version 2020-04-01): `GET /?Action=…&Version=2020-04-01` (also a
//! form POST), lists as `Name.N`, the region taken from the signature's credential scope, and the
//! `ResponseMetadata` envelope with real JSON types.

mod catalog;
pub mod error;
mod instances;
mod keypairs;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::catalog as builtin;
use keyplane_core::model::{Region, Tag};
use keyplane_core::CoreError;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::actions::{self, ecs_action as action, Action, Answer, READS, WRITES};
use crate::auth::{self, Caller};
use crate::params::Params;
use crate::reply::Reply;
use crate::wire::{WireError, WireRequest};
use crate::AppState;
use crate::{audit, idempotency};
use error::VolcError;
use keyplane_core::binding::Power;
use keyplane_store::BindOp;

pub const VERSION: &str = "2020-04-01";

/// The `Result` object of one action.
pub type Output = Map<String, Value>;

pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub region: &'static Region,
    pub p: Params<'a>,
    pub request_id: &'a str,
    pub action: &'a str,
    /// Set by a handler whose own transaction wrote the audit record.
    pub recorded: std::sync::atomic::AtomicBool,
}

impl Ctx<'_> {
    pub fn account(&self) -> &str {
        &self.caller.account_id
    }

    /// This call's audit record, for a write that commits it with its change ([`audit::in_write`]).
    pub fn audit_in_write(&self) -> keyplane_store::AuditRecord {
        audit::in_write(&audit::Call {
            dialect: "volc",
            action: self.action,
            mutating: true,
            caller: self.caller,
            region: Some(self.region.id),
            request_id: self.request_id,
            params: &self.p,
            recorded: &self.recorded,
        })
    }

    /// A strict `Name.N` list with this dialect's errors for InstanceIds and KeyPairNames.
    pub fn list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, CoreError> {
        self.list_result(name, max, self.p.strict_list(name, max))
    }

    /// [`Ctx::list`] whose cap counts distinct values, for the calls that de-duplicate.
    pub fn distinct_list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, CoreError> {
        self.list_result(name, max, self.p.strict_list_distinct(name, max))
    }

    fn list_result(
        &self,
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
            extra: self.region.id,
        }
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

/// `YYYYMMDDHHMMSS` and 20 upper-case alphanumerics, the vendor's RequestId shape.
fn request_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..20)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("{}{tail}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
}

struct Meta<'a> {
    request_id: &'a str,
    action: &'a str,
    region: &'a str,
    /// For the log: the caller's, or the one a refused request claimed.
    access_key_id: String,
}

fn metadata(m: &Meta<'_>) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("RequestId".into(), json!(m.request_id));
    meta.insert("Action".into(), json!(m.action));
    meta.insert("Version".into(), json!(VERSION));
    meta.insert("Service".into(), json!("ecs"));
    meta.insert("Region".into(), json!(m.region));
    meta
}

fn respond(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn success(m: &Meta<'_>, result: Reply) -> Response {
    // The envelope around the result's text, without rebuilding the result as a tree.
    let body = format!(
        "{{\"ResponseMetadata\":{},\"Result\":{}}}",
        Value::Object(metadata(m)),
        result.into_json()
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn failure(m: &Meta<'_>, e: &VolcError) -> Response {
    tracing::info!(
        request_id = m.request_id,
        action = m.action,
        access_key_id = %m.access_key_id,
        code = %e.code,
        status = e.status.as_u16(),
        "failed"
    );
    let mut meta = metadata(m);
    meta.insert(
        "Error".into(),
        json!({"CodeN": e.code_n, "Code": e.code, "Message": e.message}),
    );
    respond(e.status, json!({ "ResponseMetadata": meta }))
}

/// The answer to a call whose handler panicked: InternalError in this dialect's envelope.
pub fn panic_response() -> Response {
    let request_id = request_id();
    tracing::error!(%request_id, "a request handler panicked");
    let meta = Meta {
        request_id: &request_id,
        action: "",
        region: "",
        access_key_id: String::new(),
    };
    failure(
        &meta,
        &CoreError::Internal("a handler panicked".into()).into(),
    )
}

pub async fn handle(state: &AppState, wire: Result<WireRequest, WireError>) -> Response {
    let request_id = request_id();
    let mut meta = Meta {
        request_id: &request_id,
        action: "",
        region: "",
        access_key_id: String::new(),
    };
    let wire = match wire {
        Ok(w) => w,
        Err(e) => return failure(&meta, &e.into()),
    };
    let action = wire.param("Action").unwrap_or("").to_string();
    meta.action = &action;
    let (caller, region) = match auth::volcengine(state, &wire).await {
        Ok(c) => c,
        Err(e) => {
            if let Ok(claim) = keyplane_sig::volc::claim(&wire.sig_view()) {
                meta.access_key_id = claim.access_key_id;
            }
            return failure(&meta, &e.into());
        }
    };
    meta.region = &region;
    meta.access_key_id.clone_from(&caller.access_key_id);
    let version = wire.param("Version").unwrap_or("");
    if action.is_empty() {
        return failure(&meta, &VolcError::missing("Action"));
    }
    if version != VERSION {
        return failure(&meta, &VolcError::unknown_action(&action, version));
    }
    let Some(row) = actions::find(ACTIONS, &action) else {
        return failure(&meta, &VolcError::unknown_action(&action, version));
    };
    let Some(region_def) = builtin::region(&region) else {
        return failure(&meta, &CoreError::RegionNotFound(region.clone()).into());
    };
    let ctx = Ctx {
        state,
        caller: &caller,
        region: region_def,
        p: Params::new(&wire.query, &wire.form),
        request_id: &request_id,
        action: &action,
        recorded: Default::default(),
    };
    let call = audit::Call {
        recorded: &ctx.recorded,
        dialect: "volc",
        action: &action,
        mutating: row.writes,
        caller: &caller,
        region: Some(region_def.id),
        request_id: &request_id,
        params: &ctx.p,
    };
    let (response, result) = answer(&ctx, row, &meta).await;
    audit::record(state, &call, &result, response.status().as_u16()).await;
    response
}

/// The response to an authenticated call of `row`, and its result code for the audit log.
async fn answer(
    ctx: &Ctx<'_>,
    row: &'static Action<Handler>,
    meta: &Meta<'_>,
) -> (Response, String) {
    let state = ctx.state;
    let action = row.name;
    let fail = |e: VolcError| {
        let code = e.code.clone();
        (failure(meta, &e), code)
    };
    if let Err(e) = ctx.p.nul_free() {
        return fail(e.into());
    }
    if let Err(e) = state
        .throttle
        .check(&ctx.caller.access_key_id, action)
        .await
    {
        return fail(e.into());
    }
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
        match (row.handler)(ctx).await {
            Ok(result) => {
                tracing::info!(request_id = %meta.request_id, action, access_key_id = %ctx.caller.access_key_id, "ok");
                (success(meta, result), "OK".to_string())
            }
            Err(e) => fail(e.into()),
        }
    };
    let token = match ctx.p.opt("ClientToken") {
        Some(t) if row.writes => t,
        _ => return run().await,
    };
    if let Err(e) = idempotency::check_token(token) {
        return fail(e.into());
    }
    let scope = idempotency::scope("volc", action, ctx.caller);
    let hash = idempotency::request_hash(
        &ctx.state.config.server_key,
        &format!("volc:{}", ctx.region.id),
        ctx.p.pairs(),
    );
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

/// A Volcengine handler: the call's context in, its reply out.
pub type Handler = for<'a> fn(&'a Ctx<'a>) -> Answer<'a, Reply, CoreError>;

/// Every action of the dialect (docs/RAM.md has the same table).
pub static ACTIONS: &[Action<Handler>] = &[
    action!("CreateKeyPair", WRITES, keypairs::create),
    action!("ImportKeyPair", WRITES, keypairs::import),
    action!("DescribeKeyPairs", READS, keypairs::describe),
    action!("DeleteKeyPairs", WRITES, keypairs::delete_many),
    action!(
        "DeleteKeyPair",
        "ecs:DeleteKeyPairs",
        WRITES,
        keypairs::delete_one
    ),
    action!("ModifyKeyPairAttribute", WRITES, keypairs::modify),
    action!("AttachKeyPair", WRITES, |c| keypairs::bind(
        c,
        BindOp::Attach
    )),
    action!("DetachKeyPair", WRITES, |c| keypairs::bind(
        c,
        BindOp::Detach
    )),
    action!("RunInstances", WRITES, instances::run),
    action!("DescribeInstances", READS, instances::describe),
    action!("StartInstance", WRITES, |c| instances::power(
        c,
        Power::Start
    )),
    action!("StopInstance", WRITES, |c| instances::power(c, Power::Stop)),
    action!("RebootInstance", WRITES, |c| instances::power(
        c,
        Power::Reboot
    )),
    action!("StartInstances", "ecs:StartInstance", WRITES, |c| {
        instances::power_many(c, Power::Start)
    }),
    action!("StopInstances", "ecs:StopInstance", WRITES, |c| {
        instances::power_many(c, Power::Stop)
    }),
    action!("RebootInstances", "ecs:RebootInstance", WRITES, |c| {
        instances::power_many(c, Power::Reboot)
    }),
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

/// Builds an object from `(key, value)` pairs, keeping their order.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Output {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// ISO 8601 with an offset, as Volcengine shows times.
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// One tag in a listing: `{"Key","Value"}`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagItem<'a> {
    key: &'a str,
    value: &'a str,
}

/// A resource's tags in a listing: `[{"Key","Value"}]`.
pub fn tag_list(tags: &[Tag]) -> Vec<TagItem<'_>> {
    tags.iter()
        .map(|t| TagItem {
            key: &t.key,
            value: &t.value,
        })
        .collect()
}
