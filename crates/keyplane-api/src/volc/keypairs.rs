//! Key pairs in the Volcengine dialect: Create, Import, Describe, Delete (batch and single),
//! ModifyKeyPairAttribute, Attach and Detach.

use keyplane_core::model::{FingerprintQuery, KeyPair, KEY_PAIR_QUOTA};
use keyplane_core::names::{parse_description, KeyPairName, NameRule};
use keyplane_core::pubkey::{generate_rsa_2048, PublicKey};
use keyplane_core::{ids, CoreError};
use keyplane_store::{BindOp, KeyPairFilter, Page};
use serde_json::{json, Value};

use super::error::instance_failure;
use super::{iso, obj, tag_list, Ctx, Output, TagItem};
use crate::authz;
use crate::reply::Reply;

pub const MAX_BIND_IDS: usize = 100;
pub const MAX_NAMES: usize = 100;
pub const MAX_RESULTS: i64 = 500;

fn bare_md5(kp: &KeyPair) -> String {
    kp.fingerprint_md5.replace(':', "")
}

fn new_key_pair(ctx: &Ctx<'_>, key: &PublicKey) -> Result<KeyPair, CoreError> {
    let name = KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::Volcengine)?;
    Ok(KeyPair {
        id: ids::new_key_pair_id(),
        account_id: ctx.account().to_string(),
        region_id: ctx.region.id.to_string(),
        name: name.as_str().to_string(),
        public_key: key.to_openssh(),
        fingerprint_sha256: key.sha256_fingerprint(),
        fingerprint_md5: key.md5_fingerprint(),
        resource_group_id: ctx.p.opt("ProjectName").unwrap_or_default().to_string(),
        description: parse_description(ctx.p.get("Description").unwrap_or_default())?,
        created_at: keyplane_core::model::now(),
        updated_at: None,
        tags: ctx.p.tags_named("Tags")?,
    })
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let name = KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::Volcengine)?;
    ctx.caller.check(
        "ecs:CreateKeyPair",
        &ctx.caller.keypair_arn(ctx.region.id, name.as_str()),
    )?;
    parse_description(ctx.p.get("Description").unwrap_or_default())?;
    if ctx
        .state
        .store
        .key_pair_by_name(ctx.account(), ctx.region.id, name.as_str())
        .await?
        .is_some()
    {
        return Err(CoreError::KeyPairAlreadyExists(name.to_string()));
    }
    let generated = ctx.state.cpu.run(generate_rsa_2048).await??;
    let kp = new_key_pair(ctx, &generated.public)?;
    ctx.state
        .store
        .create_key_pair(&kp, KEY_PAIR_QUOTA, Some(&ctx.audit_in_write()))
        .await?;
    Ok(obj([
        ("KeyPairName", json!(kp.name)),
        ("KeyPairId", json!(kp.id)),
        ("FingerPrint", json!(bare_md5(&kp))),
        ("PrivateKey", json!(generated.private_pem.as_str())),
    ]))
}

pub async fn import(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let name = KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::Volcengine)?;
    ctx.caller.check(
        "ecs:ImportKeyPair",
        &ctx.caller.keypair_arn(ctx.region.id, name.as_str()),
    )?;
    let key = PublicKey::parse(ctx.p.required("PublicKey")?)?;
    let kp = new_key_pair(ctx, &key)?;
    ctx.state
        .store
        .create_key_pair(&kp, KEY_PAIR_QUOTA, Some(&ctx.audit_in_write()))
        .await?;
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
        region_id: ctx.region.id.to_string(),
        // Volcengine matches KeyPairName fuzzily: anywhere in the name.
        name: ctx.p.pattern("KeyPairName")?.map(|n| format!("*{n}*")),
        names: ctx.list("KeyPairNames", MAX_NAMES)?.unwrap_or_default(),
        ids: ctx.list("KeyPairIds", MAX_NAMES)?.unwrap_or_default(),
        fingerprint: ctx.p.opt("FingerPrint").map(FingerprintQuery::parse),
        resource_group_id: project.map(str::to_string),
        tags: ctx.tag_filters()?,
    };
    let (kps, total, next) = if ctx.caller.is_root() {
        let page = Page::After {
            seq,
            limit: max as u64,
        };
        let listing = ctx.state.store.list_key_pairs(&filter, page).await?;
        (listing.items, listing.total, listing.next_seq)
    } else {
        // A RAM user sees only the key pairs its policies allow (the token counts filtered rows).
        let scan = Page::Offset {
            offset: 0,
            limit: authz::FILTER_SCAN_LIMIT,
        };
        let mut all = ctx.state.store.list_key_pairs(&filter, scan).await?.items;
        all.retain(|k| {
            ctx.caller.allowed(
                "ecs:DescribeKeyPairs",
                &ctx.caller.keypair_arn(ctx.region.id, &k.name),
            )
        });
        let (items, total, next) = authz::page_in_memory(all, seq as usize, max as usize);
        (items, total, next.map(|n| n as i64))
    };
    Ok(Reply::rows(&KeyPairsPage {
        key_pairs: kps.iter().map(key_pair_item).collect(),
        next_token: ctx.next_token("volc.DescribeKeyPairs", next),
        total_count: total,
    }))
}

/// The key pair named by `KeyPairId` (which wins) or `KeyPairName`, if the caller may do `action`
/// on it.
async fn resolve(ctx: &Ctx<'_>, action: &str) -> Result<KeyPair, CoreError> {
    let kp = find(ctx).await?;
    ctx.caller
        .check(action, &ctx.caller.keypair_arn(ctx.region.id, &kp.name))?;
    Ok(kp)
}

async fn find(ctx: &Ctx<'_>) -> Result<KeyPair, CoreError> {
    let store = &ctx.state.store;
    if let Some(id) = ctx.p.opt("KeyPairId") {
        return store
            .key_pair_by_id(ctx.account(), id)
            .await?
            .filter(|k| k.region_id == ctx.region.id)
            .ok_or_else(|| CoreError::KeyPairNotFound(id.to_string()));
    }
    let name = ctx
        .p
        .opt("KeyPairName")
        .ok_or_else(|| CoreError::missing("KeyPairNameAndKeyPairId"))?;
    store
        .key_pair_by_name(ctx.account(), ctx.region.id, name)
        .await?
        .ok_or_else(|| CoreError::KeyPairNotFound(name.to_string()))
}

/// Per name: `Error` null, or why that one was not deleted. HTTP 200 when the request is valid.
pub async fn delete_many(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let names = ctx
        .list("KeyPairNames", MAX_NAMES)?
        .ok_or_else(|| CoreError::missing("KeyPairNames"))?;
    let mut details = Vec::with_capacity(names.len());
    for name in &names {
        let store = &ctx.state.store;
        let arn = ctx.caller.keypair_arn(ctx.region.id, name);
        let result = match store
            .key_pair_by_name(ctx.account(), ctx.region.id, name)
            .await?
        {
            _ if !ctx.caller.allowed("ecs:DeleteKeyPairs", &arn) => Err(CoreError::Forbidden {
                action: "ecs:DeleteKeyPairs".into(),
                resource: arn,
            }),
            None => Err(CoreError::KeyPairNotFound(name.clone())),
            Some(_) => match store
                .delete_key_pairs(
                    ctx.account(),
                    ctx.region.id,
                    std::slice::from_ref(name),
                    None,
                )
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
            ctx.region.id,
            std::slice::from_ref(&kp.name),
            Some(&ctx.audit_in_write()),
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
        .set_key_pair_description(ctx.account(), &kp.id, &description)
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
    let action = match op {
        BindOp::Attach => "ecs:AttachKeyPair",
        BindOp::Detach => "ecs:DetachKeyPair",
    };
    let kp = resolve(ctx, action).await?;
    let record = ctx.audit_in_write();
    let outcomes = authz::bind_allowed(
        ctx.state,
        ctx.caller,
        authz::Batch {
            action,
            region: ctx.region.id,
            key_pair: &kp,
            ids: &ids,
            op,
            audit: Some(keyplane_store::BindAudit {
                record: &record,
                failure_code: |f| instance_failure(f).0,
            }),
        },
    )
    .await?;
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
