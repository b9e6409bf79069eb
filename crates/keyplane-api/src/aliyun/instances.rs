//! Simulated instances: RunInstances, DescribeInstances, DescribeInstanceStatus, Start/Stop/Reboot,
//! DeleteInstance, ModifyInstanceAttribute, with the vendor status model (Pending, Starting,
//! Running, Stopping, Stopped).

use keyplane_core::binding::{parse_id_list, Power};
use keyplane_core::catalog;
use keyplane_core::instance_password::Rule;
use keyplane_core::model::{Instance, InstanceStatus};
use keyplane_core::names;
use keyplane_core::CoreError;
use keyplane_store::{InstanceFilter, Page};
use serde_json::json;

use super::{minute, obj, tag_set, Body200, Ctx, TagItem};
use crate::ops::{instances, visible};
use crate::reply::{empty, Reply, Wrap};

/// Instances per RunInstances call (the vendor's `Amount` limit).
pub const MAX_AMOUNT: i64 = 100;
/// IDs per DescribeInstances call.
pub const MAX_DESCRIBE_IDS: usize = 100;

/// How this dialect names a status (a reboot shows as Starting, as on the vendor).
fn status_name(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Rebooting => "Starting",
        other => other.as_str(),
    }
}

fn parse_status(raw: &str) -> Result<InstanceStatus, CoreError> {
    match raw {
        "Pending" | "Starting" | "Running" | "Stopping" | "Stopped" => {
            Ok(InstanceStatus::parse(raw).expect("listed"))
        }
        _ => Err(CoreError::InvalidStatus(raw.to_string())),
    }
}

pub async fn run(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let image_id = ctx.p.required("ImageId")?;
    let instance_type = ctx.p.required("InstanceType")?;
    let image =
        catalog::image(image_id).ok_or_else(|| CoreError::ImageNotFound(image_id.into()))?;
    let zone = region.zone(ctx.p.opt("ZoneId"))?;
    let amount = ctx.p.int("Amount", 1, 1, MAX_AMOUNT)?;
    let io_optimized = match ctx.p.opt("IoOptimized") {
        None | Some("optimized") => true,
        Some("none") => false,
        Some(_) => {
            return Err(CoreError::invalid(
                "IoOptimized",
                "It must be none or optimized.",
            ))
        }
    };
    let tags = ctx.p.tags()?;
    ctx.caller
        .check("ecs:RunInstances", &ctx.caller.instance_arn(region.id, "*"))?;
    if let Some(name) = ctx.p.opt("KeyPairName") {
        ctx.caller
            .check("ecs:RunInstances", &ctx.caller.keypair_arn(region.id, name))?;
    }
    let key_pair = match ctx.p.opt("KeyPairName") {
        None => None,
        Some(name) => Some(crate::ops::keypairs::for_launch(ctx, region.id, name).await?),
    };
    let password_hash = instances::password_hash(
        &ctx.state.cpu,
        ctx.p.opt("Password"),
        image.os_type,
        Rule::Alibaba,
    )
    .await?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        return Err(CoreError::DryRunOperation);
    }
    let instances = instances::build(&instances::Launch {
        account_id: ctx.account(),
        region_id: region.id,
        zone_id: zone,
        image,
        instance_type,
        amount: amount as usize,
        name: ctx.p.opt("InstanceName"),
        host_name: ctx.p.opt("HostName"),
        description: ctx.p.opt("Description").unwrap_or_default(),
        key_pair: key_pair.as_ref(),
        password_hash,
        io_optimized,
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
    Ok(obj([("InstanceIdSets", json!({ "InstanceIdSet": ids }))]))
}

/// One instance of DescribeInstances, serialized straight from its row.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceItem<'a> {
    instance_id: &'a str,
    instance_name: &'a str,
    description: &'a str,
    host_name: &'a str,
    region_id: &'a str,
    zone_id: &'a str,
    status: &'static str,
    image_id: &'a str,
    instance_type: &'a str,
    #[serde(rename = "OSType")]
    os_type: &'static str,
    #[serde(rename = "OSName")]
    os_name: &'a str,
    cpu: u32,
    memory: u32,
    io_optimized: bool,
    key_pair_name: &'a str,
    creation_time: String,
    start_time: String,
    expired_time: &'static str,
    instance_charge_type: &'static str,
    internet_charge_type: &'static str,
    instance_network_type: &'static str,
    tags: Wrap<Vec<TagItem<'a>>>,
    operation_locks: Wrap<[(); 0]>,
    public_ip_address: Wrap<[(); 0]>,
    inner_ip_address: Wrap<[(); 0]>,
    security_group_ids: Wrap<[(); 0]>,
}

fn instance_item(i: &Instance) -> InstanceItem<'_> {
    let (cpu, memory) = catalog::instance_type_size(&i.instance_type);
    InstanceItem {
        instance_id: &i.id,
        instance_name: &i.name,
        description: &i.description,
        host_name: &i.host_name,
        region_id: &i.region_id,
        zone_id: &i.zone_id,
        status: status_name(i.status),
        image_id: &i.image_id,
        instance_type: &i.instance_type,
        os_type: i.os_type.as_str(),
        os_name: &i.os_name,
        cpu,
        memory,
        io_optimized: i.io_optimized,
        key_pair_name: i.key_pair_name.as_deref().unwrap_or_default(),
        creation_time: minute(i.created_at),
        start_time: i.started_at.map(minute).unwrap_or_default(),
        expired_time: EXPIRED_TIME,
        instance_charge_type: "PostPaid",
        internet_charge_type: "PayByTraffic",
        instance_network_type: "vpc",
        tags: tag_set(&i.tags),
        operation_locks: empty("LockReason"),
        public_ip_address: empty("IpAddress"),
        inner_ip_address: empty("IpAddress"),
        security_group_ids: empty("SecurityGroupId"),
    }
}

/// A DescribeInstances page (`NextToken` is empty when paging by number).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstancesPage<'a> {
    total_count: u64,
    page_number: i64,
    page_size: i64,
    next_token: String,
    instances: Wrap<Vec<InstanceItem<'a>>>,
}

/// Instances never expire here; the expiry filters compare against this fixed time.
const EXPIRED_TIME: &str = "2099-12-31T15:59Z";

fn parse_minute(name: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, CoreError> {
    chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%MZ")
        .map(|t| t.and_utc())
        .map_err(|_| CoreError::invalid(name, "Use the format yyyy-MM-ddTHH:mmZ."))
}

/// `Filter.N.Key`/`Filter.N.Value`: creation and expiry windows.
fn apply_filters(ctx: &Ctx<'_>, filter: &mut InstanceFilter) -> Result<(), CoreError> {
    let expired = parse_minute("ExpiredTime", EXPIRED_TIME)?;
    for n in 1..=4 {
        let Some(key) = ctx.p.opt(&format!("Filter.{n}.Key")) else {
            continue;
        };
        let name = format!("Filter.{n}.Value");
        let value = parse_minute(&name, ctx.p.required(&name)?)?;
        match key {
            "CreationStartTime" => filter.created_from = Some(value),
            "CreationEndTime" => filter.created_to = Some(value),
            "ExpiredStartTime" if value > expired => filter.ids = Some(Vec::new()),
            "ExpiredEndTime" if value < expired => filter.ids = Some(Vec::new()),
            "ExpiredStartTime" | "ExpiredEndTime" => {}
            other => return Err(CoreError::InvalidFilterKey(other.to_string())),
        }
    }
    Ok(())
}

pub async fn describe(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    let region = ctx.region()?;
    let ids = match ctx.p.opt("InstanceIds") {
        None => None,
        Some(raw) if raw.trim() == "[]" => Some(Vec::new()),
        Some(raw) => Some(parse_id_list(raw, MAX_DESCRIBE_IDS)?),
    };
    let mut filter = InstanceFilter {
        account_id: ctx.account().to_string(),
        region_id: region.id.to_string(),
        ids,
        name: ctx.p.pattern("InstanceName")?.map(str::to_string),
        key_pair_name: ctx.p.opt("KeyPairName").map(str::to_string),
        status: ctx.p.opt("Status").map(parse_status).transpose()?,
        io_optimized: ctx.p.bool("IoOptimized")?,
        zone_id: ctx.p.opt("ZoneId").map(str::to_string),
        image_id: ctx.p.opt("ImageId").map(str::to_string),
        tags: ctx.p.tags()?,
        ..Default::default()
    };
    apply_filters(ctx, &mut filter)?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        return Err(CoreError::DryRunOperation);
    }
    // NextToken/MaxResults paging wins over PageNumber/PageSize, as the vendor documents.
    let token_paging = ctx.p.opt("NextToken").is_some() || ctx.p.opt("MaxResults").is_some();
    if token_paging {
        let max = ctx
            .p
            .opt("MaxResults")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| CoreError::invalid("MaxResults", "It must be an integer."))
            })
            .transpose()?
            .unwrap_or(10)
            .clamp(10, 100);
        // Opaque, and bound to the caller and region: see crate::page_token.
        let scope = crate::page_token::Scope {
            listing: "aliyun.DescribeInstances",
            caller: ctx.caller,
            extra: region.id,
        };
        let key = &ctx.state.config.server_key;
        let seq = crate::page_token::open(key, &scope, ctx.p.opt("NextToken"))?;
        let listing = visible::instances(
            ctx,
            "ecs:DescribeInstances",
            &filter,
            Page::After {
                seq,
                limit: max as u64,
            },
        )
        .await?;
        let next = crate::page_token::seal(key, &scope, listing.next_seq);
        return Ok(Reply::rows(&InstancesPage {
            total_count: listing.total,
            page_number: 1,
            page_size: max,
            next_token: next,
            instances: Wrap(
                "Instance",
                listing.items.iter().map(instance_item).collect(),
            ),
        }));
    }
    let page_number = ctx.p.int("PageNumber", 1, 1, i32::MAX as i64)?;
    let page_size = ctx.p.int("PageSize", 10, 1, 100)?;
    let listing = visible::instances(
        ctx,
        "ecs:DescribeInstances",
        &filter,
        Page::Offset {
            offset: ((page_number - 1) * page_size) as u64,
            limit: page_size as u64,
        },
    )
    .await?;
    Ok(Reply::rows(&InstancesPage {
        total_count: listing.total,
        page_number,
        page_size,
        next_token: String::new(),
        instances: Wrap(
            "Instance",
            listing.items.iter().map(instance_item).collect(),
        ),
    }))
}

pub async fn describe_status(ctx: &Ctx<'_>) -> Result<Reply, CoreError> {
    let region = ctx.region()?;
    let ids: Vec<String> = ctx
        .p
        .repeat("InstanceId", MAX_DESCRIBE_IDS)?
        .into_iter()
        .map(str::to_string)
        .collect();
    let page_number = ctx.p.int("PageNumber", 1, 1, i32::MAX as i64)?;
    let page_size = ctx.p.int("PageSize", 10, 1, 50)?;
    let filter = InstanceFilter {
        account_id: ctx.account().to_string(),
        region_id: region.id.to_string(),
        ids: (!ids.is_empty()).then_some(ids),
        zone_id: ctx.p.opt("ZoneId").map(str::to_string),
        ..Default::default()
    };
    let listing = visible::instances(
        ctx,
        "ecs:DescribeInstanceStatus",
        &filter,
        Page::Offset {
            offset: ((page_number - 1) * page_size) as u64,
            limit: page_size as u64,
        },
    )
    .await?;
    let items = listing.items.iter().map(|i| InstanceStatusItem {
        instance_id: &i.id,
        status: status_name(i.status),
    });
    Ok(Reply::rows(&InstanceStatusPage {
        total_count: listing.total,
        page_number,
        page_size,
        instance_statuses: Wrap("InstanceStatus", items.collect()),
    }))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceStatusItem<'a> {
    instance_id: &'a str,
    status: &'static str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceStatusPage<'a> {
    total_count: u64,
    page_number: i64,
    page_size: i64,
    instance_statuses: Wrap<Vec<InstanceStatusItem<'a>>>,
}

/// The caller's instance `id`, if it exists and the caller may do `action` on it (in any region:
/// these calls carry no RegionId).
async fn check_instance(ctx: &Ctx<'_>, action: &str, id: &str) -> Result<Instance, CoreError> {
    instances::authorized(ctx, action, id, None).await
}

/// StartInstance, StopInstance, RebootInstance. No RegionId: the Tea SDK does not send one.
pub async fn power(ctx: &Ctx<'_>, op: Power) -> Result<Body200, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    ctx.p.bool("ForceStop")?;
    let inst = check_instance(ctx, instances::power_action(op), id).await?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        keyplane_core::binding::transition(inst.status, op)?;
        return Err(CoreError::DryRunOperation);
    }
    instances::power(ctx, &inst, op, Some(ctx.audit_in_write())).await?;
    Ok(Body200::new())
}

/// ModifyInstanceAttribute: `Password` (a reset, in effect from the next start or reboot),
/// `InstanceName`, `Description`, `HostName`. Every value is checked before anything changes.
pub async fn modify_attribute(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    let inst = check_instance(ctx, "ecs:ModifyInstanceAttribute", id).await?;
    let rule = instances::ModifyRule {
        password: Rule::Alibaba,
        host_name_param: "HostName",
        host_name_max: 64,
    };
    let description = ctx
        .p
        .opt("Description")
        .map(names::parse_instance_description)
        .transpose()?;
    let change = instances::change(&ctx.state.cpu, &ctx.p, &inst, &rule, description).await?;
    let dry_run = ctx.p.bool("DryRun")?.unwrap_or(false);
    instances::modify(ctx, &inst, &change, dry_run).await?;
    Ok(Body200::new())
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let id = ctx.p.required("InstanceId")?;
    let force = ctx.p.bool("Force")?.unwrap_or(false);
    check_instance(ctx, "ecs:DeleteInstance", id).await?;
    if ctx.p.bool("DryRun")?.unwrap_or(false) {
        return Err(CoreError::DryRunOperation);
    }
    ctx.state
        .store
        .delete_instance(ctx.account(), id, force, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}
