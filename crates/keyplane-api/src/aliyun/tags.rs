//! TagResources and UntagResources for key pairs (`ResourceType=keypair`).

use keyplane_core::CoreError;

use super::{Body200, Ctx};

/// Resources per TagResources/UntagResources call.
pub const MAX_RESOURCES: usize = 50;

/// Resolves `ResourceId.N` (key pair IDs or names) to key pair IDs of the caller in the region.
async fn key_pair_ids(ctx: &Ctx<'_>, action: &str) -> Result<Vec<String>, CoreError> {
    let region = ctx.region()?;
    let kind = ctx.p.required("ResourceType")?;
    if !kind.eq_ignore_ascii_case("keypair") {
        return Err(CoreError::invalid(
            "ResourceType",
            "Only keypair is supported.",
        ));
    }
    let refs = ctx.p.repeat("ResourceId", MAX_RESOURCES)?;
    if refs.is_empty() {
        return Err(CoreError::missing("ResourceId.1"));
    }
    let mut ids = Vec::with_capacity(refs.len());
    for r in refs {
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
        ids.push(kp.id);
    }
    Ok(ids)
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
