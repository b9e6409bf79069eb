//! Instances, the same for both dialects: simulated ones as RunInstances creates them, what
//! ModifyInstanceAttribute changes, power operations, and instance passwords (checked, hashed in
//! the CPU queue).

use keyplane_core::binding::{check_resettable, Binding, Power};
use keyplane_core::instance_password::{self, Rule};
use keyplane_core::model::{Image, Instance, InstanceStatus, KeyPair, OsType, Provider, Tag};
use keyplane_core::names;
use keyplane_core::{ids, CoreError};
use keyplane_store::{AuditRecord, InstanceChange};

use crate::params::Params;
use crate::pipeline::Ctx;

/// The crypt hash of a `Password` parameter that passes the vendor rule; the plaintext goes no
/// further than this call. The hash (5,000 rounds of SHA-512) runs in the CPU queue.
pub async fn password_hash(
    cpu: &crate::cpu::CpuQueue,
    raw: Option<&str>,
    os: OsType,
    rule: Rule,
) -> Result<Option<String>, CoreError> {
    let Some(p) = raw else {
        return Ok(None);
    };
    instance_password::check(p, os, rule)?;
    let p = zeroize::Zeroizing::new(p.to_string());
    cpu.run(move || instance_password::hash(&p))
        .await?
        .map(Some)
}

/// Where the dialects' ModifyInstanceAttribute differ: the password rule and the host name's
/// parameter and length.
pub struct ModifyRule {
    pub password: Rule,
    pub host_name_param: &'static str,
    pub host_name_max: usize,
}

/// The change a ModifyInstanceAttribute asks for, every value checked; `description` is parsed by
/// the dialect, whose rules differ most there.
pub async fn change(
    cpu: &crate::cpu::CpuQueue,
    p: &Params<'_>,
    inst: &Instance,
    rule: &ModifyRule,
    description: Option<String>,
) -> Result<InstanceChange, CoreError> {
    Ok(InstanceChange {
        name: p
            .opt("InstanceName")
            .map(names::parse_instance_name)
            .transpose()?,
        description,
        host_name: p
            .opt(rule.host_name_param)
            .map(|h| names::parse_host_name(h, inst.os_type, rule.host_name_max))
            .transpose()?,
        password_hash: password_hash(cpu, p.opt("Password"), inst.os_type, rule.password).await?,
    })
}

/// Applies a checked ModifyInstanceAttribute (or stops at `DryRunOperation`) and wakes the
/// instance's agent: the desired state it reads now carries the new password hash (applied at the
/// next start or reboot).
pub async fn modify(
    ctx: &Ctx<'_>,
    inst: &Instance,
    change: &InstanceChange,
    dry_run: bool,
) -> Result<Instance, CoreError> {
    if change.password_hash.is_some() {
        check_resettable(inst)?;
    }
    if dry_run {
        return Err(CoreError::DryRunOperation);
    }
    let id = inst.id.as_str();
    let audit = Some(ctx.audit_in_write());
    let inst = ctx
        .state
        .store
        .modify_instance(&inst.account_id, id, change, audit)
        .await?;
    if change.password_hash.is_some() {
        tracing::info!(instance_id = %id, version = inst.binding.desired_password_version, "instance password reset, pending the next start or reboot");
        crate::agent_api::changed(ctx.state, &[id.to_string()]).await;
    }
    Ok(inst)
}

/// What a RunInstances call asks for, once each dialect has parsed its own parameter names.
pub struct Launch<'a> {
    pub account_id: &'a str,
    pub region_id: &'a str,
    pub zone_id: &'a str,
    pub image: &'static Image,
    pub instance_type: &'a str,
    pub amount: usize,
    pub name: Option<&'a str>,
    pub host_name: Option<&'a str>,
    pub description: &'a str,
    pub key_pair: Option<&'a KeyPair>,
    /// The crypt hash of the `Password` given, if one was.
    pub password_hash: Option<String>,
    pub io_optimized: bool,
    pub tags: Vec<Tag>,
}

/// Builds the instances, Running, with a key pair given at creation already in effect (it is
/// applied at the first boot).
pub fn build(l: &Launch<'_>) -> Result<Vec<Instance>, CoreError> {
    if l.key_pair.is_some() && l.image.os_type == OsType::Windows {
        return Err(CoreError::invalid(
            "KeyPairName",
            "Windows instances cannot use an SSH key pair.",
        ));
    }
    let now = keyplane_core::model::now();
    Ok((0..l.amount)
        .map(|_| {
            let id = ids::new_instance_id();
            let mut binding = Binding::default();
            if let Some(kp) = l.key_pair {
                binding.bind(&kp.id);
            }
            binding.boot();
            Instance {
                name: l.name.unwrap_or(&id).to_string(),
                host_name: l.host_name.unwrap_or(&id).to_string(),
                description: l.description.to_string(),
                id,
                account_id: l.account_id.to_string(),
                region_id: l.region_id.to_string(),
                zone_id: l.zone_id.to_string(),
                image_id: l.image.id.to_string(),
                instance_type: l.instance_type.to_string(),
                os_type: l.image.os_type,
                os_name: l.image.os_name.to_string(),
                status: InstanceStatus::Running,
                io_optimized: l.io_optimized,
                agent_installed: l.image.agent_installed,
                login_user: match l.image.os_type {
                    OsType::Windows => "Administrator",
                    OsType::Linux => "root",
                }
                .to_string(),
                provider: Provider::Sim,
                has_password: l.password_hash.is_some(),
                password_hash: l.password_hash.clone(),
                created_at: now,
                started_at: Some(now),
                key_pair_name: l.key_pair.map(|k| k.name.clone()),
                binding,
                tags: l.tags.clone(),
            }
        })
        .collect())
}

/// The RAM action of a power operation.
pub fn power_action(op: Power) -> &'static str {
    match op {
        Power::Start => "ecs:StartInstance",
        Power::Stop => "ecs:StopInstance",
        Power::Reboot => "ecs:RebootInstance",
    }
}

/// The caller's instance `id`, if it exists (in `region`, where the dialect fixes one) and the
/// caller may do `action` on it. Not found comes first, as on the vendor.
pub async fn authorized(
    ctx: &Ctx<'_>,
    action: &str,
    id: &str,
    region: Option<&str>,
) -> Result<Instance, CoreError> {
    let inst = ctx
        .state
        .store
        .instance(ctx.account(), id)
        .await?
        .filter(|i| region.is_none_or(|r| i.region_id == r))
        .ok_or_else(|| CoreError::InstanceNotFound(id.to_string()))?;
    ctx.caller
        .check(action, &ctx.caller.instance_arn(&inst.region_id, &inst.id))?;
    Ok(inst)
}

/// Starts, stops or reboots `inst` (the transition takes the configured delay), and wakes its
/// agent: a start or reboot is when a host applies its binding. `audit` is the call's record
/// ([`Ctx::audit_in_write`]) for a call of one instance; a batch, whose instances commit one by
/// one, passes None and is recorded by the pipeline once it is done.
pub async fn power(
    ctx: &Ctx<'_>,
    inst: &Instance,
    op: Power,
    audit: Option<&AuditRecord>,
) -> Result<(), CoreError> {
    let (done, held_by) = ctx.transition_done_at();
    ctx.state
        .store
        .power(ctx.account(), &inst.id, op, done, audit)
        .await?;
    ctx.hold(held_by, std::slice::from_ref(&inst.id));
    crate::agent_api::changed(ctx.state, std::slice::from_ref(&inst.id)).await;
    Ok(())
}
