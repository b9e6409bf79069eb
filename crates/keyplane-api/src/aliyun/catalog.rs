//! DescribeRegions, DescribeZones, DescribeImages: the built-in catalog.

use keyplane_core::catalog::{IMAGES, REGIONS};
use keyplane_core::model::OsType;
use keyplane_core::CoreError;
use serde_json::{json, Value};

use super::{obj, Body200, Ctx};

fn english_name(region: &str) -> &'static str {
    match region {
        "cn-hangzhou" => "China (Hangzhou)",
        "cn-shanghai" => "China (Shanghai)",
        "cn-beijing" => "China (Beijing)",
        "ap-southeast-1" => "Singapore",
        _ => "",
    }
}

pub async fn regions(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    // Without permission a Describe call is an empty list, as on the vendor.
    let visible = ctx.caller.may_attempt("ecs:DescribeRegions");
    let english = ctx
        .p
        .opt("AcceptLanguage")
        .is_some_and(|l| l.starts_with("en"));
    let items: Vec<Value> = REGIONS
        .iter()
        .filter(|_| visible)
        .map(|r| {
            json!({
                "RegionId": r.id,
                "LocalName": if english { english_name(r.id) } else { r.local_name },
                "RegionEndpoint": format!("ecs.{}.aliyuncs.com", r.id),
                "Status": "available",
            })
        })
        .collect();
    Ok(obj([("Regions", json!({ "Region": items }))]))
}

pub async fn zones(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let visible = ctx.caller.may_attempt("ecs:DescribeZones");
    let items: Vec<Value> = region
        .zones
        .iter()
        .filter(|_| visible)
        .map(|z| {
            json!({
                "ZoneId": z,
                "LocalName": z,
                "AvailableResourceCreation": {"ResourceTypes": ["Instance", "Disk"]},
                "AvailableInstanceTypes": {"InstanceTypes": ["ecs.g7.large", "ecs.g7.xlarge", "ecs.t6-c1m1.large"]},
            })
        })
        .collect();
    Ok(obj([("Zones", json!({ "Zone": items }))]))
}

pub async fn images(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let region = ctx.region()?;
    let page_number = ctx.p.int("PageNumber", 1, 1, i32::MAX as i64)?;
    let page_size = ctx.p.int("PageSize", 10, 1, 100)?;
    let wanted_ids: Option<Vec<&str>> = ctx
        .p
        .opt("ImageId")
        .map(|s| s.split(',').map(str::trim).collect());
    let os_type = ctx.p.opt("OSType").map(|s| s.to_ascii_lowercase());
    let name = ctx.p.opt("ImageName");
    let visible = ctx.caller.may_attempt("ecs:DescribeImages");
    let matching: Vec<_> = IMAGES
        .iter()
        .filter(|_| visible)
        .filter(|i| wanted_ids.as_ref().is_none_or(|w| w.contains(&i.id)))
        .filter(|i| os_type.as_deref().is_none_or(|o| o == i.os_type.as_str()))
        .filter(|i| name.is_none_or(|n| keyplane_core::wildcard::matches(n, i.name)))
        .collect();
    let start = ((page_number - 1) * page_size) as usize;
    let items: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size as usize)
        .map(|i| {
            json!({
                "ImageId": i.id,
                "ImageName": i.name,
                "OSType": i.os_type.as_str(),
                "OSName": i.os_name,
                "OSNameEn": i.name,
                "Platform": i.platform,
                "Architecture": "x86_64",
                "Status": "Available",
                "ImageOwnerAlias": "system",
                "IsSupportIoOptimized": true,
                "Size": i.size_gib,
                "Usage": "instance",
                "Description": if i.agent_installed || i.os_type == OsType::Windows { "" } else { "No key pair agent installed." },
            })
        })
        .collect();
    Ok(obj([
        ("RegionId", json!(region.id)),
        ("TotalCount", json!(matching.len())),
        ("PageNumber", json!(page_number)),
        ("PageSize", json!(page_size)),
        ("Images", json!({ "Image": items })),
    ]))
}
