//! Simulated instances in the Volcengine dialect, with its status names.

use keyplane_core::binding::Power;
use keyplane_core::catalog;
use keyplane_core::instance_password::Rule;
use keyplane_core::model::{Instance, InstanceStatus, OsType};
use keyplane_core::names;
use keyplane_core::CoreError;
use keyplane_store::{AuditRecord, InstanceFilter, Page};
use serde_json::{json, Value};

use super::{iso, obj, tag_list, Ctx, Output, TagItem};
use crate::ops::{instances, visible};
use crate::reply::Reply;

pub const MAX_IDS: usize = 100;
pub const MAX_RESULTS: i64 = 100;
pub const MAX_COUNT: i64 = 100;

pub fn status_name(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Pending => "CREATING",
        InstanceStatus::Starting => "STARTING",
        InstanceStatus::Running => "RUNNING",
        InstanceStatus::Stopping => "STOPPING",
        InstanceStatus::Stopped => "STOPPED",
        InstanceStatus::Rebooting => "REBOOTING",
    }
}

fn parse_status(raw: &str) -> Result<InstanceStatus, CoreError> {
    InstanceStatus::ALL
        .into_iter()
        .find(|s| status_name(*s) == raw)
        .ok_or_else(|| CoreError::InvalidStatus(raw.to_string()))
}

/// One instance of DescribeInstances, serialized straight from its row.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceItem<'a> {
    instance_id: &'a str,
    instance_name: &'a str,
    description: &'a str,
    hostname: &'a str,
    status: &'static str,
    os_type: &'static str,
    os_name: &'a str,
    image_id: &'a str,
    instance_type_id: &'a str,
    cpus: u32,
    memory_size: u32,
    zone_id: &'a str,
    key_pair_name: &'a str,
    key_pair_id: &'a str,
    created_at: String,
    updated_at: String,
    project_name: &'static str,
    vpc_id: &'static str,
    tags: Vec<TagItem<'a>>,
}

fn instance_item(i: &Instance) -> InstanceItem<'_> {
    let (cpus, memory) = catalog::instance_type_size(&i.instance_type);
    InstanceItem {
        instance_id: &i.id,
        instance_name: &i.name,
        description: &i.description,
        hostname: &i.host_name,
        status: status_name(i.status),
        os_type: match i.os_type {
            OsType::Linux => "Linux",
            OsType::Windows => "Windows",
        },
        os_name: &i.os_name,
        image_id: &i.image_id,
        instance_type_id: &i.instance_type,
        cpus,
        memory_size: memory,
        zone_id: &i.zone_id,
        key_pair_name: i.key_pair_name.as_deref().unwrap_or_default(),
        key_pair_id: i.binding.desired_key_pair_id.as_deref().unwrap_or_default(),
        created_at: iso(i.created_at),
        updated_at: iso(i.started_at.unwrap_or(i.created_at)),
        project_name: "default",
        vpc_id: "",
        tags: tag_list(&i.tags),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstancesPage<'a> {
    instances: Vec<InstanceItem<'a>>,
    next_token: String,
    total_count: u64,
}

pub async fn describe(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    let max = ctx.p.int("MaxResults", 10, 1, MAX_RESULTS)?;
    let seq = ctx.page_position("volc.DescribeInstances")?;
    let filter = InstanceFilter {
        account_id: ctx.account().to_string(),
        region_id: ctx.region()?.id.to_string(),
        ids: ctx.list("InstanceIds", MAX_IDS)?,
        name: ctx.p.pattern("InstanceName")?.map(|n| format!("*{n}*")),
        key_pair_name: ctx.p.opt("KeyPairName").map(str::to_string),
        status: ctx.p.opt("Status").map(parse_status).transpose()?,
        zone_id: ctx.p.opt("ZoneId").map(str::to_string),
        image_id: ctx.p.opt("ImageId").map(str::to_string),
        tags: ctx.tag_filters()?,
        ..Default::default()
    };
    let page = Page::After {
        seq,
        limit: max as u64,
    };
    let listing = visible::instances(ctx, "ecs:DescribeInstances", &filter, page).await?;
    Ok(Reply::rows(&InstancesPage {
        instances: listing.items.iter().map(instance_item).collect(),
        next_token: ctx.next_token("volc.DescribeInstances", listing.next_seq),
        total_count: listing.total,
    }))
}

pub async fn run(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let image_id = ctx.p.required("ImageId")?;
    let instance_type = ctx
        .p
        .opt("InstanceTypeId")
        .or(ctx.p.opt("InstanceType"))
        .ok_or_else(|| CoreError::missing("InstanceTypeId"))?;
    let image =
        catalog::image(image_id).ok_or_else(|| CoreError::ImageNotFound(image_id.into()))?;
    let zone = ctx.region()?.zone(ctx.p.opt("ZoneId"))?;
    let count = ctx.p.int("Count", 1, 1, MAX_COUNT)?;
    ctx.caller.check(
        "ecs:RunInstances",
        &ctx.caller.instance_arn(ctx.region()?.id, "*"),
    )?;
    if let Some(name) = ctx.p.opt("KeyPairName") {
        ctx.caller.check(
            "ecs:RunInstances",
            &ctx.caller.keypair_arn(ctx.region()?.id, name),
        )?;
    }
    let key_pair = match ctx.p.opt("KeyPairName") {
        None => None,
        Some(name) => Some(crate::ops::keypairs::for_launch(ctx, ctx.region()?.id, name).await?),
    };
    let tags = ctx.p.tags_named("Tags")?;
    let password_hash = instances::password_hash(
        &ctx.state.cpu,
        ctx.p.opt("Password"),
        image.os_type,
        Rule::Volcengine,
    )
    .await?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        return Err(CoreError::DryRunOperation);
    }
    let instances = instances::build(&instances::Launch {
        account_id: ctx.account(),
        region_id: ctx.region()?.id,
        zone_id: zone,
        image,
        instance_type,
        amount: count as usize,
        name: ctx.p.opt("InstanceName"),
        host_name: ctx.p.opt("HostName").or(ctx.p.opt("Hostname")),
        description: ctx.p.opt("Description").unwrap_or_default(),
        key_pair: key_pair.as_ref(),
        password_hash,
        io_optimized: true,
        tags,
    })?;
    ctx.state
        .store
        .insert_instances(
            &instances,
            ctx.transition_done_at().0,
            Some(ctx.audit_in_write()),
        )
        .await?;
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    ctx.hold(ctx.transition_done_at().1, &ids);
    Ok(obj([("InstanceIds", json!(ids))]))
}

/// Powers one instance; `audit` as in [`instances::power`].
async fn power_one(
    ctx: &Ctx<'_>,
    id: &str,
    op: Power,
    audit: Option<&AuditRecord>,
) -> Result<(), CoreError> {
    let inst = check_instance(ctx, instances::power_action(op), id).await?;
    if let Some(keyplane_core::InstanceFailure::Injected { code, message }) =
        ctx.injected_failure(id)
    {
        return Err(CoreError::Injected {
            code,
            message: message.to_string(),
            status: 400,
        });
    }
    instances::power(ctx, &inst, op, audit).await
}

pub async fn power(ctx: &Ctx<'_>, op: Power) -> Result<Output, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    if let Some(mode) = ctx.p.opt("StoppedMode") {
        if !matches!(mode, "KeepCharging" | "StopCharging") {
            return Err(CoreError::invalid(
                "StoppedMode",
                "KeepCharging or StopCharging.",
            ));
        }
    }
    ctx.p.bool("ForceStop")?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        let inst = ctx
            .state
            .store
            .instance(ctx.account(), id)
            .await?
            .ok_or_else(|| CoreError::InstanceNotFound(id.into()))?;
        keyplane_core::binding::transition(inst.status, op)?;
        return Err(CoreError::DryRunOperation);
    }
    power_one(ctx, id, op, Some(ctx.audit_in_write())).await?;
    Ok(Output::new())
}

/// StartInstances / StopInstances / RebootInstances: per-instance `OperationDetails`.
pub async fn power_many(ctx: &Ctx<'_>, op: Power) -> Result<Output, CoreError> {
    let ids = ctx
        .list("InstanceIds", MAX_IDS)?
        .ok_or_else(|| CoreError::missing("InstanceIds"))?;
    ctx.p.bool("ForceStop")?;
    let mut details = Vec::with_capacity(ids.len());
    for id in &ids {
        let error = match power_one(ctx, id, op, None).await {
            Ok(()) => Value::Null,
            Err(CoreError::Internal(e)) => return Err(CoreError::Internal(e)),
            Err(e) => {
                let v = super::error::VolcError::from(e);
                json!({"Code": v.code, "Message": v.message})
            }
        };
        details.push(json!({"InstanceId": id, "Error": error}));
    }
    Ok(obj([("OperationDetails", Value::Array(details))]))
}

/// The caller's instance `id` in this region, if it exists and the caller may do `action` on it.
async fn check_instance(ctx: &Ctx<'_>, action: &str, id: &str) -> Result<Instance, CoreError> {
    instances::authorized(ctx, action, id, Some(ctx.region()?.id)).await
}

/// ModifyInstanceAttribute: `Password` (a reset, in effect from the next start or reboot),
/// `InstanceName`, `Description` (an empty one clears it, as the vendor documents), `Hostname`.
pub async fn modify_attribute(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    let inst = check_instance(ctx, "ecs:ModifyInstanceAttribute", id).await?;
    let description = match ctx.p.get("Description") {
        None => None,
        Some(d) => Some(names::parse_description(d).map_err(|_| {
            CoreError::InvalidInstanceAttribute {
                attribute: keyplane_core::error::InstanceAttribute::Description,
                reason: "it must start with a letter and have at most 255 letters, digits, spaces and . _ - = , ， 。".into(),
            }
        })?),
    };
    let rule = instances::ModifyRule {
        password: Rule::Volcengine,
        host_name_param: "Hostname",
        host_name_max: 63,
    };
    let change = instances::change(&ctx.state.cpu, &ctx.p, &inst, &rule, description).await?;
    let dry_run = ctx.p.bool("DryRun")?.unwrap_or(false);
    instances::modify(ctx, &inst, &change, dry_run).await?;
    Ok(Output::new())
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        return Err(CoreError::DryRunOperation);
    }
    let inst = check_instance(ctx, "ecs:DeleteInstance", id).await?;
    // Volcengine releases a RUNNING or STOPPED instance; transitional ones are refused.
    ctx.state
        .store
        .delete_instance(ctx.account(), &inst.id, true, Some(ctx.audit_in_write()))
        .await?;
    Ok(Output::new())
}
