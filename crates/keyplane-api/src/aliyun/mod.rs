//! The Alibaba Cloud ECS dialect (API version 2014-05-26): `GET`/`POST /`, parameters from the query
//! and a form body, `Action`/`Version` as parameters (V1) or `x-acs-*` headers (V3). The envelope and
//! the errors are every Alibaba Cloud API's ([`crate::acs`]); this module has the ECS actions.

mod catalog;
mod instances;
mod keypairs;
mod tags;

use keyplane_core::binding::Power;

use crate::acs::render::Format;
use crate::acs::Acs;
use crate::actions::{ecs_action as action, Action, READS, WRITES};
use crate::pipeline::Handler;
use crate::reply::Wrap;

pub use crate::pipeline::Ctx;

pub const VERSION: &str = "2014-05-26";

pub use crate::reply::obj;
/// The response body of one action, without `RequestId`.
pub use crate::reply::Fields as Body200;

/// The dialect for a call to `host`, answered in `format`.
pub fn dialect(host: &str, format: Format) -> Acs {
    Acs {
        name: "aliyun",
        version: VERSION,
        actions: ACTIONS,
        strict: false,
        tokens: Some("aliyun"),
        host: host.to_string(),
        format,
    }
}

/// The ECS actions on behalf of a console session: the same table, checks and envelope, audited
/// as the console's.
pub fn console() -> Acs {
    Acs {
        name: "console",
        ..dialect("console", Format::Json)
    }
}

/// Every action of the dialect (docs/RAM.md has the same table); anything else is
/// `InvalidAction.NotFound`.
pub static ACTIONS: &[Action<Handler>] = &[
    action!("CreateKeyPair", WRITES, keypairs::create),
    action!("ImportKeyPair", WRITES, keypairs::import),
    action!("DescribeKeyPairs", READS, keypairs::describe),
    action!("DeleteKeyPairs", WRITES, keypairs::delete),
    action!("AttachKeyPair", WRITES, keypairs::attach),
    action!("DetachKeyPair", WRITES, keypairs::detach),
    action!("TagResources", WRITES, tags::tag),
    action!("UntagResources", WRITES, tags::untag),
    action!("JoinResourceGroup", WRITES, tags::join_resource_group),
    action!("RunInstances", WRITES, instances::run),
    action!("DescribeInstances", READS, instances::describe),
    action!("DescribeInstanceStatus", READS, instances::describe_status),
    action!("StartInstance", WRITES, |c| instances::power(
        c,
        Power::Start
    )),
    action!("StopInstance", WRITES, |c| instances::power(c, Power::Stop)),
    action!("RebootInstance", WRITES, |c| instances::power(
        c,
        Power::Reboot
    )),
    action!("DeleteInstance", WRITES, instances::delete),
    action!(
        "ModifyInstanceAttribute",
        WRITES,
        instances::modify_attribute
    ),
    action!("DescribeRegions", READS, catalog::regions),
    action!("DescribeZones", READS, catalog::zones),
    action!("DescribeImages", READS, catalog::images),
];

/// Describe times are minute precision on this dialect: `2024-01-01T00:00Z`.
pub fn minute(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// One tag in a listing: `{"TagKey","TagValue"}`.
#[derive(serde::Serialize)]
pub struct TagItem<'a> {
    #[serde(rename = "TagKey")]
    key: &'a str,
    #[serde(rename = "TagValue")]
    value: &'a str,
}

/// A resource's tags in a listing: `{"Tag":[{"TagKey","TagValue"}]}`.
pub fn tag_set(tags: &[keyplane_core::model::Tag]) -> Wrap<Vec<TagItem<'_>>> {
    let items = tags.iter().map(|t| TagItem {
        key: &t.key,
        value: &t.value,
    });
    Wrap("Tag", items.collect())
}
