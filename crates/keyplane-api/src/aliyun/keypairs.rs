//! CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPairs, AttachKeyPair, DetachKeyPair.

use keyplane_core::binding::parse_id_list;
use keyplane_core::model::FingerprintQuery;
use keyplane_core::names::{KeyPairName, NameRule};
use keyplane_core::CoreError;
use keyplane_store::{BindOp, KeyPairFilter, Page};
use serde_json::{json, Value};

use super::{minute, obj, tag_set, Body200, Ctx, TagItem};
use crate::acs::error::instance_failure;
use crate::ops::keypairs::{self, Extras};
use crate::ops::{bindings, visible};
use crate::reply::{Reply, Wrap};

/// Instance IDs per AttachKeyPair/DetachKeyPair call on this dialect.
pub const MAX_BIND_IDS: usize = 50;
/// Names per DeleteKeyPairs call.
pub const MAX_DELETE_NAMES: usize = 100;
/// DescribeKeyPairs page size limit.
pub const MAX_PAGE_SIZE: i64 = 50;

/// What a new key pair has besides its name and key, in this dialect's parameters.
fn extras(ctx: &Ctx<'_>) -> Result<Extras, CoreError> {
    let group = ctx.p.opt("ResourceGroupId").unwrap_or_default();
    if !group.is_empty() {
        super::tags::check_resource_group_id(group)?;
    }
    Ok(Extras {
        resource_group_id: group.to_string(),
        description: String::new(),
        tags: ctx.p.tags()?,
    })
}

/// The `KeyPairName` of a new key pair, once `RegionId` names a known region.
fn new_name(ctx: &Ctx<'_>, rule: NameRule) -> Result<KeyPairName, CoreError> {
    ctx.region()?;
    KeyPairName::parse(ctx.p.required("KeyPairName")?, rule)
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = new_name(ctx, NameRule::AlibabaCreate)?;
    let (kp, private_pem) = keypairs::create(ctx, name, Ok(()), extras(ctx)).await?;
    Ok(obj([
        ("KeyPairId", json!(kp.id)),
        ("KeyPairName", json!(kp.name)),
        ("KeyPairFingerPrint", json!(kp.fingerprint_md5)),
        ("PrivateKeyBody", json!(private_pem.as_str())),
    ]))
}

pub async fn import(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = new_name(ctx, NameRule::AlibabaImport)?;
    let key = ctx.p.required("PublicKeyBody");
    let kp = keypairs::import(ctx, name, key, extras(ctx)).await?;
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
    let page = Page::Offset {
        offset: ((page_number - 1) * page_size) as u64,
        limit: page_size as u64,
    };
    let listing = visible::key_pairs(ctx, "ecs:DescribeKeyPairs", &filter, page).await?;
    let items = listing.items.iter().map(|kp| KeyPairItem {
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
        total_count: listing.total,
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
    ctx.region()?;
    let names = parse_names(ctx.p.required("KeyPairNames")?)?;
    keypairs::delete(ctx, &names).await?;
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
    ctx.region()?;
    let instance_ids = parse_id_list(raw_ids, MAX_BIND_IDS)?;
    let key_pair = keypairs::resolve(ctx, bindings::ram_action(op), name).await?;
    let failure_code = |f| instance_failure(f).0;
    let outcomes = bindings::bind(ctx, &key_pair, &instance_ids, op, failure_code).await?;
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
