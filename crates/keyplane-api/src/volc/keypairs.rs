//! Key pairs in the Volcengine dialect: Create, Import, Describe, Delete (batch and single),
//! ModifyKeyPairAttribute, Attach and Detach.

use keyplane_core::model::{FingerprintQuery, KeyPair};
use keyplane_core::names::{parse_description, KeyPairName, NameRule};
use keyplane_core::CoreError;
use keyplane_store::{BindOp, KeyPairFilter, Page};
use serde_json::{json, Value};

use super::error::instance_failure;
use super::{iso, obj, tag_list, Ctx, Output, TagItem};
use crate::ops::keypairs::{self, Extras};
use crate::ops::{bindings, visible};
use crate::reply::Reply;

pub const MAX_BIND_IDS: usize = 100;
pub const MAX_NAMES: usize = 100;
pub const MAX_RESULTS: i64 = 500;

fn bare_md5(kp: &KeyPair) -> String {
    kp.fingerprint_md5.replace(':', "")
}

/// What a new key pair has besides its name and key, in this dialect's parameters.
fn extras(ctx: &Ctx<'_>) -> Result<Extras, CoreError> {
    Ok(Extras {
        resource_group_id: ctx.p.opt("ProjectName").unwrap_or_default().to_string(),
        description: description(ctx)?,
        tags: ctx.p.tags_named("Tags")?,
    })
}

fn description(ctx: &Ctx<'_>) -> Result<String, CoreError> {
    parse_description(ctx.p.get("Description").unwrap_or_default())
}

fn new_name(ctx: &Ctx<'_>) -> Result<KeyPairName, CoreError> {
    KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::Volcengine)
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    // A bad Description is refused before a key is spent on it.
    let check = description(ctx).map(drop);
    let (kp, private_pem) = keypairs::create(ctx, new_name(ctx)?, check, extras(ctx)).await?;
    Ok(obj([
        ("KeyPairName", json!(kp.name)),
        ("KeyPairId", json!(kp.id)),
        ("FingerPrint", json!(bare_md5(&kp))),
        ("PrivateKey", json!(private_pem.as_str())),
    ]))
}

pub async fn import(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let key = ctx.p.required("PublicKey");
    let kp = keypairs::import(ctx, new_name(ctx)?, key, extras(ctx)).await?;
    Ok(obj([
        ("KeyPairName", json!(kp.name)),
        ("KeyPairId", json!(kp.id)),
        ("FingerPrint", json!(bare_md5(&kp))),
    ]))
}

/// One key pair of DescribeKeyPairs, serialized straight from its row.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPairItem<'a> {
    key_pair_id: &'a str,
    key_pair_name: &'a str,
    description: &'a str,
    finger_print: String,
    project_name: &'a str,
    tags: Vec<TagItem<'a>>,
    created_at: String,
    updated_at: String,
}

fn key_pair_item(kp: &KeyPair) -> KeyPairItem<'_> {
    let project = if kp.resource_group_id.is_empty() {
        "default"
    } else {
        &kp.resource_group_id
    };
    KeyPairItem {
        key_pair_id: &kp.id,
        key_pair_name: &kp.name,
        description: &kp.description,
        finger_print: bare_md5(kp),
        project_name: project,
        tags: tag_list(&kp.tags),
        created_at: iso(kp.created_at),
        updated_at: iso(kp.updated_at.unwrap_or(kp.created_at)),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPairsPage<'a> {
    key_pairs: Vec<KeyPairItem<'a>>,
    next_token: String,
    total_count: u64,
}

pub async fn describe(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    let max = ctx.p.int("MaxResults", 10, 1, MAX_RESULTS)?;
    let seq = ctx.page_position("volc.DescribeKeyPairs")?;
    let project = ctx.p.opt("ProjectName").filter(|p| *p != "default");
    let filter = KeyPairFilter {
        account_id: ctx.account().to_string(),
        region_id: ctx.region()?.id.to_string(),
        // Volcengine matches KeyPairName fuzzily: anywhere in the name.
        name: ctx.p.pattern("KeyPairName")?.map(|n| format!("*{n}*")),
        names: ctx.list("KeyPairNames", MAX_NAMES)?.unwrap_or_default(),
        ids: ctx.list("KeyPairIds", MAX_NAMES)?.unwrap_or_default(),
        fingerprint: ctx.p.opt("FingerPrint").map(FingerprintQuery::parse),
        resource_group_id: project.map(str::to_string),
        tags: ctx.tag_filters()?,
    };
    let page = Page::After {
        seq,
        limit: max as u64,
    };
    let listing = visible::key_pairs(ctx, "ecs:DescribeKeyPairs", &filter, page).await?;
    Ok(Reply::rows(&KeyPairsPage {
        key_pairs: listing.items.iter().map(key_pair_item).collect(),
        next_token: ctx.next_token("volc.DescribeKeyPairs", listing.next_seq),
        total_count: listing.total,
    }))
}

/// The key pair named by `KeyPairId` (which wins) or `KeyPairName`, if the caller may do `action`
/// on it (a key pair that does not exist is `NotFound` first, as on the vendor).
async fn resolve(ctx: &Ctx<'_>, action: &str) -> Result<KeyPair, CoreError> {
    let region = ctx.region()?.id;
    let kp = match ctx.p.opt("KeyPairId") {
        Some(id) => ctx
            .state
            .store
            .key_pair_by_id(ctx.account(), id)
            .await?
            .filter(|k| k.region_id == region)
            .ok_or_else(|| CoreError::KeyPairNotFound(id.to_string()))?,
        None => {
            let name = ctx
                .p
                .opt("KeyPairName")
                .ok_or_else(|| CoreError::missing("KeyPairNameAndKeyPairId"))?;
            keypairs::find(ctx, name)
                .await?
                .ok_or_else(|| CoreError::KeyPairNotFound(name.to_string()))?
        }
    };
    ctx.caller
        .check(action, &ctx.caller.keypair_arn(region, &kp.name))?;
    Ok(kp)
}

/// Per name: `Error` null, or why that one was not deleted. HTTP 200 when the request is valid.
pub async fn delete_many(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let names = ctx
        .list("KeyPairNames", MAX_NAMES)?
        .ok_or_else(|| CoreError::missing("KeyPairNames"))?;
    let region = ctx.region()?.id;
    let mut details = Vec::with_capacity(names.len());
    for name in &names {
        let store = &ctx.state.store;
        let arn = ctx.caller.keypair_arn(region, name);
        let result = match keypairs::find(ctx, name).await? {
            _ if !ctx.caller.allowed("ecs:DeleteKeyPairs", &arn) => Err(CoreError::Forbidden {
                action: "ecs:DeleteKeyPairs".into(),
                resource: arn,
            }),
            None => Err(CoreError::KeyPairNotFound(name.clone())),
            Some(_) => match store
                .delete_key_pairs(ctx.account(), region, std::slice::from_ref(name), None)
                .await
            {
                Err(CoreError::Internal(e)) => return Err(CoreError::Internal(e)),
                other => other,
            },
        };
        let error = match result {
            Ok(()) => Value::Null,
            Err(e) => {
                let v = super::error::VolcError::from(e);
                json!({"Code": v.code, "Message": v.message})
            }
        };
        details.push(json!({"KeyPairName": name, "Error": error}));
    }
    Ok(obj([("OperationDetails", Value::Array(details))]))
}

pub async fn delete_one(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let kp = resolve(ctx, "ecs:DeleteKeyPairs").await?;
    ctx.state
        .store
        .delete_key_pairs(
            ctx.account(),
            ctx.region()?.id,
            std::slice::from_ref(&kp.name),
            Some(ctx.audit_in_write()),
        )
        .await?;
    Ok(obj([("KeyPairName", json!(kp.name))]))
}

pub async fn modify(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    if ctx.p.opt("KeyPairId").is_none() && ctx.p.opt("KeyPairName").is_none() {
        return Err(CoreError::missing("KeyPairNameAndKeyPairId"));
    }
    // An empty Description clears it; an absent one is an error.
    let description = parse_description(
        ctx.p
            .get("Description")
            .ok_or_else(|| CoreError::missing("Description"))?,
    )?;
    let kp = resolve(ctx, "ecs:ModifyKeyPairAttribute").await?;
    ctx.state
        .store
        .set_key_pair_attribute(
            ctx.account(),
            &kp.id,
            keyplane_store::KeyPairAttribute::Description,
            &description,
            Some(ctx.audit_in_write()),
        )
        .await?;
    Ok(obj([("KeyPairName", json!(kp.name))]))
}

/// AttachKeyPair / DetachKeyPair: request errors first, in the seed's order, then per instance.
pub async fn bind(ctx: &Ctx<'_>, op: BindOp) -> Result<Output, CoreError> {
    if ctx.p.opt("KeyPairId").is_none() && ctx.p.opt("KeyPairName").is_none() {
        return Err(CoreError::missing("KeyPairNameAndKeyPairId"));
    }
    let mut ids = ctx
        .distinct_list("InstanceIds", MAX_BIND_IDS)?
        .ok_or_else(|| CoreError::missing("InstanceIds"))?;
    // The list's cap already counted distinct values; this keeps the first of each.
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let kp = resolve(ctx, bindings::ram_action(op)).await?;
    let failure_code = |f| instance_failure(f).0;
    let outcomes = bindings::bind(ctx, &kp, &ids, op, failure_code).await?;
    let details: Vec<Value> = outcomes
        .iter()
        .map(|(id, r)| match r {
            Ok(()) => json!({"InstanceId": id, "Error": null}),
            Err(f) => {
                let (code, message) = instance_failure(*f);
                json!({"InstanceId": id, "Error": {"Code": code, "Message": message}})
            }
        })
        .collect();
    Ok(obj([("OperationDetails", Value::Array(details))]))
}
