//! Key pairs, the same for both dialects: create (generate), import, find, delete. Each dialect
//! reads the parameters in its own spelling and renders the key pair in its own shape.

use keyplane_core::model::{KeyPair, Tag, KEY_PAIR_QUOTA};
use keyplane_core::names::KeyPairName;
use keyplane_core::pubkey::{generate_rsa_2048, PublicKey};
use keyplane_core::{ids, CoreError};
use zeroize::Zeroizing;

use crate::pipeline::Ctx;

/// What a new key pair has besides its name and key, as the caller describes it, read by each
/// dialect from its own parameters. The operations take the parameters' readings as results and
/// decide which error wins: the caller's policies on the name come first, so that a refused
/// caller learns nothing from the other parameters.
pub struct Extras {
    /// The resource group (Alibaba) or project (Volcengine); empty for the default.
    pub resource_group_id: String,
    pub description: String,
    pub tags: Vec<Tag>,
}

fn key_pair(
    ctx: &Ctx<'_>,
    region: &str,
    name: &KeyPairName,
    key: &PublicKey,
    x: Extras,
) -> KeyPair {
    KeyPair {
        id: ids::new_key_pair_id(),
        account_id: ctx.account().to_string(),
        region_id: region.to_string(),
        name: name.as_str().to_string(),
        public_key: key.to_openssh(),
        fingerprint_sha256: key.sha256_fingerprint(),
        fingerprint_md5: key.md5_fingerprint(),
        resource_group_id: x.resource_group_id,
        description: x.description,
        created_at: keyplane_core::model::now(),
        updated_at: None,
        tags: x.tags,
    }
}

/// CreateKeyPair: a new RSA 2048 key pair. The private key is returned once and never stored.
/// In order: the caller's policies on the name, `check` (what the dialect refuses before a key
/// is spent), a free name, the key, then `extras`.
pub async fn create(
    ctx: &Ctx<'_>,
    name: KeyPairName,
    check: Result<(), CoreError>,
    extras: Result<Extras, CoreError>,
) -> Result<(KeyPair, Zeroizing<String>), CoreError> {
    let region = ctx.region()?.id;
    let arn = ctx.caller.keypair_arn(region, name.as_str());
    ctx.caller.check("ecs:CreateKeyPair", &arn)?;
    check?;
    // Refuse early what would fail anyway, before spending CPU on a key.
    if find(ctx, name.as_str()).await?.is_some() {
        return Err(CoreError::KeyPairAlreadyExists(name.to_string()));
    }
    let generated = ctx.state.cpu.run(generate_rsa_2048).await??;
    let kp = key_pair(ctx, region, &name, &generated.public, extras?);
    insert(ctx, &kp).await?;
    Ok((kp, generated.private_pem))
}

/// ImportKeyPair: a key pair of the caller's public key (OpenSSH or RFC 4716). In order: the
/// caller's policies on the name, the key, then `extras`.
pub async fn import(
    ctx: &Ctx<'_>,
    name: KeyPairName,
    public_key: Result<&str, CoreError>,
    extras: Result<Extras, CoreError>,
) -> Result<KeyPair, CoreError> {
    let region = ctx.region()?.id;
    let arn = ctx.caller.keypair_arn(region, name.as_str());
    ctx.caller.check("ecs:ImportKeyPair", &arn)?;
    let key = PublicKey::parse(public_key?)?;
    let kp = key_pair(ctx, region, &name, &key, extras?);
    insert(ctx, &kp).await?;
    Ok(kp)
}

/// Stores `kp` with the call's audit record, in one transaction.
async fn insert(ctx: &Ctx<'_>, kp: &KeyPair) -> Result<(), CoreError> {
    ctx.state
        .store
        .create_key_pair(kp, KEY_PAIR_QUOTA, Some(ctx.audit_in_write()))
        .await
}

/// The key pair `name` in the call's region, if there is one.
pub async fn find(ctx: &Ctx<'_>, name: &str) -> Result<Option<KeyPair>, CoreError> {
    let region = ctx.region()?.id;
    ctx.state
        .store
        .key_pair_by_name(ctx.account(), region, name)
        .await
}

/// The key pair `name`, if the caller may do `action` on it: `Forbidden` is decided before
/// `KeyPairNotFound`, so a caller learns nothing of key pairs it may not touch.
pub async fn resolve(ctx: &Ctx<'_>, action: &str, name: &str) -> Result<KeyPair, CoreError> {
    let region = ctx.region()?.id;
    ctx.caller
        .check(action, &ctx.caller.keypair_arn(region, name))?;
    find(ctx, name)
        .await?
        .ok_or_else(|| CoreError::KeyPairNotFound(name.to_string()))
}

/// Deletes the key pairs `names` in one transaction with the call's audit record, once the caller
/// may delete every one of them.
pub async fn delete(ctx: &Ctx<'_>, names: &[String]) -> Result<(), CoreError> {
    let region = ctx.region()?.id;
    for name in names {
        let arn = ctx.caller.keypair_arn(region, name);
        ctx.caller.check("ecs:DeleteKeyPairs", &arn)?;
    }
    ctx.state
        .store
        .delete_key_pairs(ctx.account(), region, names, Some(ctx.audit_in_write()))
        .await
}

/// The key pair `name` a RunInstances binds at creation: it must exist, and not be revoked
/// (SPEC section 15: a revoked key pair is bound nowhere until it is unrevoked).
pub async fn for_launch(ctx: &Ctx<'_>, region: &str, name: &str) -> Result<KeyPair, CoreError> {
    let kp = ctx
        .state
        .store
        .key_pair_by_name(ctx.account(), region, name)
        .await?
        .ok_or_else(|| CoreError::KeyPairNotFound(name.into()))?;
    if ctx
        .state
        .store
        .key_pair_revoked(ctx.account(), &kp.id)
        .await?
    {
        return Err(CoreError::KeyPairRevoked(kp.name));
    }
    Ok(kp)
}
