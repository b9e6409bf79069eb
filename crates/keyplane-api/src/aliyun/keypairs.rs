//! CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPairs, AttachKeyPair, DetachKeyPair.

use keyplane_core::binding::parse_id_list;
use keyplane_core::model::{FingerprintQuery, KeyPair, KEY_PAIR_QUOTA};
use keyplane_core::names::{KeyPairName, NameRule};
use keyplane_core::pubkey::{generate_rsa_2048, PublicKey};
use keyplane_core::{ids, CoreError};
use keyplane_store::{BindOp, KeyPairFilter, Page};
use serde_json::{json, Value};

use super::error::instance_failure;
use super::{minute, obj, tag_set, Body200, Ctx, TagItem};
use crate::authz;
use crate::reply::{Reply, Wrap};

/// Instance IDs per AttachKeyPair/DetachKeyPair call on this dialect.
pub const MAX_BIND_IDS: usize = 50;
/// Names per DeleteKeyPairs call.
pub const MAX_DELETE_NAMES: usize = 100;
/// DescribeKeyPairs page size limit.
pub const MAX_PAGE_SIZE: i64 = 50;

fn new_key_pair(
    ctx: &Ctx<'_>,
    region: &str,
    name: KeyPairName,
    key: &PublicKey,
) -> Result<KeyPair, CoreError> {
    Ok(KeyPair {
        id: ids::new_key_pair_id(),
        account_id: ctx.account().to_string(),
        region_id: region.to_string(),
        name: name.as_str().to_string(),
        public_key: key.to_openssh(),
        fingerprint_sha256: key.sha256_fingerprint(),
        fingerprint_md5: key.md5_fingerprint(),
        resource_group_id: ctx.p.opt("ResourceGroupId").unwrap_or_default().to_string(),
        description: String::new(),
        created_at: keyplane_core::model::now(),
        updated_at: None,
        tags: ctx.p.tags()?,
    })
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let name = KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::AlibabaCreate)?;
    ctx.caller.check(
        "ecs:CreateKeyPair",
        &ctx.caller.keypair_arn(region.id, name.as_str()),
    )?;
    // Refuse early what would fail anyway, before spending CPU on a key.
    if ctx
        .state
        .store
        .key_pair_by_name(ctx.account(), region.id, name.as_str())
        .await?
        .is_some()
    {
        return Err(CoreError::KeyPairAlreadyExists(name.to_string()));
    }
    let generated = ctx.state.cpu.run(generate_rsa_2048).await??;
    let kp = new_key_pair(ctx, region.id, name, &generated.public)?;
    ctx.state
        .store
        .create_key_pair(&kp, KEY_PAIR_QUOTA, Some(&ctx.audit_in_write()))
        .await?;
    Ok(obj([
        ("KeyPairId", json!(kp.id)),
        ("KeyPairName", json!(kp.name)),
        ("KeyPairFingerPrint", json!(kp.fingerprint_md5)),
        ("PrivateKeyBody", json!(generated.private_pem.as_str())),
    ]))
}

pub async fn import(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let name = KeyPairName::parse(ctx.p.required("KeyPairName")?, NameRule::AlibabaImport)?;
    ctx.caller.check(
        "ecs:ImportKeyPair",
        &ctx.caller.keypair_arn(region.id, name.as_str()),
    )?;
    let key = PublicKey::parse(ctx.p.required("PublicKeyBody")?)?;
    let kp = new_key_pair(ctx, region.id, name, &key)?;
    ctx.state
        .store
        .create_key_pair(&kp, KEY_PAIR_QUOTA, Some(&ctx.audit_in_write()))
        .await?;
    Ok(obj([
        ("KeyPairId", json!(kp.id)),
        ("KeyPairName", json!(kp.name)),
        ("KeyPairFingerPrint", json!(kp.fingerprint_md5)),
    ]))
}

pub async fn describe(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    let region = ctx.region()?;
    let page_number = ctx.p.int("PageNumber", 1, 1, i32::MAX as i64)?;
    let page_size = ctx.p.int("PageSize", 10, 1, MAX_PAGE_SIZE)?;
    let include_public_key = ctx.p.bool("IncludePublicKey")?.unwrap_or(false);
    let filter = KeyPairFilter {
        account_id: ctx.account().to_string(),
        region_id: region.id.to_string(),
        name: ctx.p.pattern("KeyPairName")?.map(str::to_string),
        fingerprint: ctx.p.opt("KeyPairFingerPrint").map(FingerprintQuery::parse),
        resource_group_id: ctx.p.opt("ResourceGroupId").map(str::to_string),
        tags: ctx.p.tags()?,
        ..Default::default()
    };
    let offset = ((page_number - 1) * page_size) as u64;
    let (kps, total) = if ctx.caller.is_root() {
        let page = Page::Offset {
            offset,
            limit: page_size as u64,
        };
        let listing = ctx.state.store.list_key_pairs(&filter, page).await?;
        (listing.items, listing.total)
    } else {
        // A RAM user sees only the key pairs its policies allow; none at all is an empty list.
        let page = Page::Offset {
            offset: 0,
            limit: authz::FILTER_SCAN_LIMIT,
        };
        let mut all = ctx.state.store.list_key_pairs(&filter, page).await?.items;
        all.retain(|k| {
            ctx.caller.allowed(
                "ecs:DescribeKeyPairs",
                &ctx.caller.keypair_arn(region.id, &k.name),
            )
        });
        let (items, total, _) = authz::page_in_memory(all, offset as usize, page_size as usize);
        (items, total)
    };
    let items = kps.iter().map(|kp| KeyPairItem {
        key_pair_name: &kp.name,
        key_pair_id: &kp.id,
        key_pair_finger_print: &kp.fingerprint_md5,
        creation_time: minute(kp.created_at),
        resource_group_id: &kp.resource_group_id,
        tags: tag_set(&kp.tags),
        public_key: include_public_key.then_some(kp.public_key.as_str()),
    });
    Ok(Reply::rows(&KeyPairsPage {
        page_number,
        page_size,
        total_count: total,
        key_pairs: Wrap("KeyPair", items.collect()),
    }))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPairsPage<'a> {
    page_number: i64,
    page_size: i64,
    total_count: u64,
    key_pairs: Wrap<Vec<KeyPairItem<'a>>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPairItem<'a> {
    key_pair_name: &'a str,
    key_pair_id: &'a str,
    key_pair_finger_print: &'a str,
    creation_time: String,
    resource_group_id: &'a str,
    tags: Wrap<Vec<TagItem<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<&'a str>,
}

/// `KeyPairNames`: a JSON array of 1 to 100 names, the cap enforced while parsing.
fn parse_names(raw: &str) -> Result<Vec<String>, CoreError> {
    use keyplane_core::json_list::{parse, ListError, ListRule};
    let rule = ListRule {
        max: MAX_DELETE_NAMES,
        trim: false,
    };
    parse(raw, rule).map_err(|e| match e {
        ListError::Malformed => CoreError::InvalidKeyPairNames,
        ListError::TooMany => CoreError::TooManyKeyPairNames(MAX_DELETE_NAMES),
    })
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let names = parse_names(ctx.p.required("KeyPairNames")?)?;
    for name in &names {
        ctx.caller.check(
            "ecs:DeleteKeyPairs",
            &ctx.caller.keypair_arn(region.id, name),
        )?;
    }
    ctx.state
        .store
        .delete_key_pairs(
            ctx.account(),
            region.id,
            &names,
            Some(&ctx.audit_in_write()),
        )
        .await?;
    Ok(Body200::new())
}

pub async fn attach(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    bind(ctx, BindOp::Attach).await
}

pub async fn detach(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    bind(ctx, BindOp::Detach).await
}

/// Request-level checks fail the call; per-instance problems are reported in `Results`.
async fn bind(ctx: &Ctx<'_>, op: BindOp) -> Result<Body200, CoreError> {
    ctx.p.required("RegionId")?;
    let name = ctx.p.required("KeyPairName")?;
    let raw_ids = ctx.p.required("InstanceIds")?;
    let region = ctx.region()?;
    let instance_ids = parse_id_list(raw_ids, MAX_BIND_IDS)?;
    let action = match op {
        BindOp::Attach => "ecs:AttachKeyPair",
        BindOp::Detach => "ecs:DetachKeyPair",
    };
    ctx.caller
        .check(action, &ctx.caller.keypair_arn(region.id, name))?;
    let key_pair = ctx
        .state
        .store
        .key_pair_by_name(ctx.account(), region.id, name)
        .await?
        .ok_or_else(|| CoreError::KeyPairNotFound(name.to_string()))?;
    // The record goes into the bind's own transaction (SPEC section 3).
    let record = ctx.audit_in_write();
    let outcomes = authz::bind_allowed(
        ctx.state,
        ctx.caller,
        authz::Batch {
            action,
            region: region.id,
            key_pair: &key_pair,
            ids: &instance_ids,
            op,
            audit: Some(keyplane_store::BindAudit {
                record: &record,
                failure_code: |f| instance_failure(f).0,
            }),
        },
    )
    .await?;
    let fail_count = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    let results: Vec<Value> = outcomes
        .iter()
        .map(|(id, r)| match r {
            Ok(()) => {
                json!({"InstanceId": id, "Success": "true", "Code": "200", "Message": "successful"})
            }
            Err(f) => {
                let (code, message) = instance_failure(*f);
                json!({"InstanceId": id, "Success": "false", "Code": code, "Message": message})
            }
        })
        .collect();
    Ok(obj([
        ("KeyPairName", json!(key_pair.name)),
        ("TotalCount", json!(outcomes.len().to_string())),
        ("FailCount", json!(fail_count.to_string())),
        ("Results", json!({ "Result": results })),
    ]))
}
