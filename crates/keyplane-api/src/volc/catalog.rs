//! DescribeRegions, DescribeZones, DescribeImages in the Volcengine dialect.

use keyplane_core::catalog::{IMAGES, REGIONS};
use keyplane_core::model::OsType;
use keyplane_core::CoreError;
use serde_json::{json, Value};

use super::{obj, Ctx, Output};

pub async fn regions(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let visible = ctx.caller.may_attempt("ecs:DescribeRegions");
    let items: Vec<Value> = REGIONS
        .iter()
        .filter(|_| visible)
        .map(|r| json!({"RegionId": r.id}))
        .collect();
    Ok(obj([
        ("Regions", Value::Array(items)),
        ("NextToken", json!("")),
    ]))
}

pub async fn zones(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let visible = ctx.caller.may_attempt("ecs:DescribeZones");
    let items: Vec<Value> = ctx
        .region()?
        .zones
        .iter()
        .filter(|_| visible)
        .map(|z| json!({"ZoneId": z}))
        .collect();
    Ok(obj([("Zones", Value::Array(items))]))
}

pub async fn images(ctx: &Ctx<'_>) -> Result<Output, CoreError> {
    let wanted = ctx.p.repeat("ImageIds", 100)?;
    let os = ctx.p.opt("OsType").map(str::to_ascii_lowercase);
    let visible = ctx.caller.may_attempt("ecs:DescribeImages");
    let items: Vec<Value> = IMAGES
        .iter()
        .filter(|_| visible)
        .filter(|i| wanted.is_empty() || wanted.contains(&i.id))
        .filter(|i| os.as_deref().is_none_or(|o| o == i.os_type.as_str()))
        .map(|i| {
            json!({
                "ImageId": i.id,
                "ImageName": i.name,
                "OsType": match i.os_type { OsType::Linux => "Linux", OsType::Windows => "Windows" },
                "OsName": i.os_name,
                "Platform": i.platform,
                "Architecture": "amd64",
                "Size": i.size_gib,
                "Status": "available",
                "Visibility": "public",
            })
        })
        .collect();
    let total = items.len();
    Ok(obj([
        ("Images", Value::Array(items)),
        ("NextToken", json!("")),
        ("TotalCount", json!(total)),
    ]))
}
