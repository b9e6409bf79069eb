//! TagResources, UntagResources and JoinResourceGroup for key pairs (`ResourceType=keypair`), as the
//! Terraform provider's `alicloud_ecs_key_pair` updates them.

use keyplane_core::CoreError;

use super::{Body200, Ctx};

/// Resources per TagResources/UntagResources call.
pub const MAX_RESOURCES: usize = 50;

/// `ResourceType` must name key pairs, the only resource here that takes tags and groups.
fn check_resource_type(ctx: &Ctx<'_>) -> Result<(), CoreError> {
    let kind = ctx.p.required("ResourceType")?;
    if !kind.eq_ignore_ascii_case("keypair") {
        return Err(CoreError::invalid(
            "ResourceType",
            "Only keypair is supported.",
        ));
    }
    Ok(())
}

/// The caller's key pair `r` (its ID or its name) in the region, once `action` is allowed on it.
async fn key_pair_id(ctx: &Ctx<'_>, r: &str, action: &str) -> Result<String, CoreError> {
    let region = ctx.region()?;
    let store = &ctx.state.store;
    let by_id = store
        .key_pair_by_id(ctx.account(), r)
        .await?
        .filter(|k| k.region_id == region.id);
    let kp = match by_id {
        Some(kp) => kp,
        None => store
            .key_pair_by_name(ctx.account(), region.id, r)
            .await?
            .ok_or_else(|| CoreError::KeyPairNotFound(r.to_string()))?,
    };
    ctx.caller
        .check(action, &ctx.caller.keypair_arn(region.id, &kp.name))?;
    Ok(kp.id)
}

/// Resolves `ResourceId.N` (key pair IDs or names) to key pair IDs of the caller in the region.
async fn key_pair_ids(ctx: &Ctx<'_>, action: &str) -> Result<Vec<String>, CoreError> {
    ctx.region()?;
    check_resource_type(ctx)?;
    let refs = ctx.p.repeat("ResourceId", MAX_RESOURCES)?;
    if refs.is_empty() {
        return Err(CoreError::missing("ResourceId.1"));
    }
    let mut ids = Vec::with_capacity(refs.len());
    for r in refs {
        ids.push(key_pair_id(ctx, r, action).await?);
    }
    Ok(ids)
}

/// JoinResourceGroup: `ResourceType=keypair`, `ResourceId` (the key pair's ID or name),
/// `ResourceGroupId`. Resource groups are not modelled beyond their ID: any well-formed ID is
/// accepted, as at creation.
pub async fn join_resource_group(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    ctx.region()?;
    let group = ctx.p.required("ResourceGroupId")?;
    check_resource_group_id(group)?;
    check_resource_type(ctx)?;
    let id = key_pair_id(ctx, ctx.p.required("ResourceId")?, "ecs:JoinResourceGroup").await?;
    ctx.state
        .store
        .set_key_pair_attribute(
            ctx.account(),
            &id,
            keyplane_store::KeyPairAttribute::ResourceGroup,
            group,
            Some(ctx.audit_in_write()),
        )
        .await?;
    Ok(Body200::new())
}

/// A resource group ID: 1 to 64 letters, digits, `-` and `_` (the vendor's are `rg-…`).
pub fn check_resource_group_id(group: &str) -> Result<(), CoreError> {
    let ok = !group.is_empty()
        && group.len() <= 64
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "ResourceGroupId",
            "1 to 64 letters, digits, - and _, e.g. rg-acfmxazb4ph6aiy.",
        ))
    }
}

pub async fn tag(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let tags = ctx.p.tags()?;
    let ids = key_pair_ids(ctx, "ecs:TagResources").await?;
    if tags.is_empty() {
        return Err(CoreError::missing("Tag.1.Key"));
    }
    ctx.state
        .store
        .tag_key_pairs(ctx.account(), &ids, &tags, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

pub async fn untag(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let ids = key_pair_ids(ctx, "ecs:UntagResources").await?;
    let all = ctx.p.bool("All")?.unwrap_or(false);
    let keys: Vec<String> = ctx
        .p
        .repeat("TagKey", 20)?
        .into_iter()
        .map(str::to_string)
        .collect();
    if !all && keys.is_empty() {
        return Err(CoreError::missing("TagKey.1"));
    }
    let keys = (!all).then_some(keys);
    ctx.state
        .store
        .untag_key_pairs(
            ctx.account(),
            &ids,
            keys.as_deref(),
            Some(ctx.audit_in_write()),
        )
        .await?;
    Ok(Body200::new())
}
