//! The Volcengine ECS dialect (API version 2020-04-01): `GET /?Action=…&Version=2020-04-01` (also a
//! form POST), lists as `Name.N`, the region taken from the signature's credential scope, and the
//! `ResponseMetadata` envelope with real JSON types.

mod catalog;
pub mod error;
mod instances;
mod keypairs;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use keyplane_core::binding::Power;
use keyplane_core::catalog as builtin;
use keyplane_core::model::Tag;
use keyplane_core::CoreError;
use keyplane_store::BindOp;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::actions::{self, ecs_action as action, Action, READS, WRITES};
use crate::auth;
use crate::pipeline::{Dialect, Handler, Head, Meta};
use crate::reply::Reply;
use crate::wire::WireRequest;
use crate::AppState;
use error::VolcError;

pub use crate::pipeline::Ctx;

pub const VERSION: &str = "2020-04-01";

pub use crate::reply::obj;
/// The `Result` object of one action.
pub use crate::reply::Fields as Output;

/// The Volcengine dialect of the pipeline.
pub struct Volc;

impl Dialect for Volc {
    type Error = VolcError;

    fn name(&self) -> &'static str {
        "volc"
    }

    fn actions(&self) -> &'static [Action<Handler>] {
        ACTIONS
    }

    fn request_id(&self) -> String {
        request_id()
    }

    fn read<'a>(
        &'a self,
        state: &'a AppState,
        wire: &'a WireRequest,
        meta: &'a mut Meta,
    ) -> BoxFuture<'a, Result<Head, VolcError>> {
        Box::pin(async move {
            meta.action = wire.param("Action").unwrap_or("").to_string();
            if let Ok(claim) = keyplane_sig::volc::claim(&wire.sig_view()) {
                meta.access_key_id = claim.access_key_id;
            }
            let (caller, region) = auth::volcengine(state, wire).await?;
            meta.region.clone_from(&region);
            let version = wire.param("Version").unwrap_or("");
            if meta.action.is_empty() {
                return Err(VolcError::missing("Action"));
            }
            // The vendor refuses an action it does not have before it looks at the region.
            if version != VERSION || actions::find(ACTIONS, &meta.action).is_none() {
                return Err(VolcError::unknown_action(&meta.action, version));
            }
            let region = builtin::region(&region).ok_or(CoreError::RegionNotFound(region))?;
            Ok(Head {
                caller,
                region: Some(region),
            })
        })
    }

    fn unknown_action(&self, action: &str) -> VolcError {
        VolcError::unknown_action(action, VERSION)
    }

    fn idempotency(&self, ctx: &Ctx<'_>) -> Option<(&'static str, String)> {
        let region = ctx.region().map_or("", |r| r.id);
        Some(("volc", format!("volc:{region}")))
    }

    fn code(&self, e: &VolcError) -> String {
        e.code.clone()
    }

    fn success(&self, meta: &Meta, result: Reply) -> Response {
        // The envelope around the result's text, without rebuilding the result as a tree.
        let body = format!(
            "{{\"ResponseMetadata\":{},\"Result\":{}}}",
            Value::Object(metadata(meta)),
            result.into_json()
        );
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response()
    }

    fn failure(&self, meta: &Meta, e: &VolcError) -> Response {
        tracing::info!(
            request_id = %meta.request_id,
            action = %meta.action,
            access_key_id = %meta.access_key_id,
            code = %e.code,
            status = e.status.as_u16(),
            "failed"
        );
        let mut body = metadata(meta);
        body.insert(
            "Error".into(),
            json!({"CodeN": e.code_n, "Code": e.code, "Message": e.message}),
        );
        (
            e.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            json!({ "ResponseMetadata": body }).to_string(),
        )
            .into_response()
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

fn metadata(m: &Meta) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("RequestId".into(), json!(m.request_id));
    meta.insert("Action".into(), json!(m.action));
    meta.insert("Version".into(), json!(VERSION));
    meta.insert("Service".into(), json!("ecs"));
    meta.insert("Region".into(), json!(m.region));
    meta
}

/// The answer to a call whose handler panicked: InternalError in this dialect's envelope.
pub fn panic_response() -> Response {
    let meta = Meta {
        request_id: request_id(),
        ..Meta::default()
    };
    tracing::error!(request_id = %meta.request_id, "a request handler panicked");
    Volc.failure(
        &meta,
        &CoreError::Internal("a handler panicked".into()).into(),
    )
}

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
