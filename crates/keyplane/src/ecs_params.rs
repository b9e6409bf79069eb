//! The parameters keyplane reads for each action of the Alibaba dialect, so that `keyplane ecs`
//! can warn about a typo (`--KeyPairNmae`) before the server silently ignores it, as the vendor's
//! API ignores parameters it does not know.
//!
//! Only a warning: scripts written for the vendor pass parameters keyplane does not read (a
//! security group to RunInstances, say) and must keep working by changing only the endpoint, so
//! the parameter is still sent. The table follows docs/API-COMPATIBILITY.md; a test checks it
//! against the parameter names the server's handlers read.

/// Read (or accepted and ignored) on every action.
const COMMON: &[&str] = &[
    "RegionId",
    "ClientToken",
    "OwnerId",
    "OwnerAccount",
    "ResourceOwnerAccount",
    "ResourceOwnerId",
];

const TAGS: &[&str] = &["Tag.N.Key", "Tag.N.Value"];

/// The parameters of `action` besides [`COMMON`] and, where listed, [`TAGS`]; `None` for an
/// action keyplane does not serve (the server answers `InvalidAction.NotFound`).
fn action_params(action: &str) -> Option<(&'static [&'static str], bool)> {
    let with_tags = true;
    Some(match action {
        "CreateKeyPair" => (&["KeyPairName", "ResourceGroupId"][..], with_tags),
        "ImportKeyPair" => (
            &["KeyPairName", "PublicKeyBody", "ResourceGroupId"],
            with_tags,
        ),
        "DescribeKeyPairs" => (
            &[
                "KeyPairName",
                "KeyPairFingerPrint",
                "PageNumber",
                "PageSize",
                "IncludePublicKey",
                "ResourceGroupId",
            ],
            with_tags,
        ),
        "DeleteKeyPairs" => (&["KeyPairNames"], false),
        "AttachKeyPair" | "DetachKeyPair" => (&["KeyPairName", "InstanceIds"], false),
        "TagResources" => (&["ResourceType", "ResourceId.N"], with_tags),
        "UntagResources" => (&["ResourceType", "ResourceId.N", "TagKey.N", "All"], false),
        "JoinResourceGroup" => (&["ResourceType", "ResourceId", "ResourceGroupId"], false),
        "RunInstances" => (
            &[
                "ImageId",
                "InstanceType",
                "ZoneId",
                "Amount",
                "InstanceName",
                "HostName",
                "Description",
                "KeyPairName",
                "Password",
                "IoOptimized",
                "DryRun",
            ],
            with_tags,
        ),
        "DescribeInstances" => (
            &[
                "InstanceIds",
                "InstanceName",
                "KeyPairName",
                "Status",
                "IoOptimized",
                "ZoneId",
                "ImageId",
                "Filter.N.Key",
                "Filter.N.Value",
                "PageNumber",
                "PageSize",
                "NextToken",
                "MaxResults",
                "DryRun",
                "AdditionalAttributes.N",
            ],
            with_tags,
        ),
        "DescribeInstanceStatus" => (&["InstanceId.N", "ZoneId", "PageNumber", "PageSize"], false),
        "StartInstance" | "StopInstance" | "RebootInstance" => {
            (&["InstanceId", "DryRun", "ForceStop"], false)
        }
        "DeleteInstance" => (&["InstanceId", "Force", "DryRun"], false),
        "ModifyInstanceAttribute" => (
            &[
                "InstanceId",
                "Password",
                "InstanceName",
                "Description",
                "HostName",
                "DryRun",
            ],
            false,
        ),
        "DescribeRegions" => (&["AcceptLanguage"], false),
        "DescribeZones" => (&[], false),
        "DescribeImages" => (
            &["ImageId", "OSType", "ImageName", "PageNumber", "PageSize"],
            false,
        ),
        _ => return None,
    })
}

/// Every parameter `action` reads, with `.N` for the index of a repeated one.
fn known(action: &str) -> Option<Vec<&'static str>> {
    let (own, tags) = action_params(action)?;
    let mut all: Vec<&str> = COMMON.iter().chain(own).copied().collect();
    if tags {
        all.extend(TAGS);
    }
    Some(all)
}

/// `Tag.3.Key` → `Tag.N.Key`: the indexes of repeated parameters do not matter here.
fn shape(name: &str) -> String {
    name.split('.')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                "N"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Levenshtein distance, ignoring case (`--keypairname` is still the parameter it looks like).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The warning for a parameter `action` does not read, naming the nearest one it does when that
/// is close enough to be a typo; `None` when the parameter is known (or the action is not).
pub fn unknown_parameter_warning(action: &str, name: &str) -> Option<String> {
    let known = known(action)?;
    let shaped = shape(name);
    if known.contains(&shaped.as_str()) {
        return None;
    }
    let nearest = known
        .iter()
        .map(|k| (distance(&shaped, k), *k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2));
    let guess = match nearest {
        Some((_, k)) => format!("; did you mean --{}?", k.replace(".N", ".1")),
        None => String::new(),
    };
    Some(format!(
        "warning: {action} has no parameter {name:?} that keyplane reads{guess} (sent anyway; \
         the server ignores parameters it does not read)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_names_the_nearest_parameter_of_the_action() {
        let w = unknown_parameter_warning("DescribeKeyPairs", "KeyPairNmae").unwrap();
        assert!(w.contains("did you mean --KeyPairName?"), "{w}");
        let w = unknown_parameter_warning("AttachKeyPair", "InstanceId").unwrap();
        assert!(w.contains("did you mean --InstanceIds?"), "{w}");
        let w = unknown_parameter_warning("DescribeInstances", "Tag.1.Kye").unwrap();
        assert!(w.contains("did you mean --Tag.1.Key?"), "{w}");
        let w = unknown_parameter_warning("RunInstances", "dryrun").unwrap();
        assert!(w.contains("did you mean --DryRun?"), "{w}");
    }

    #[test]
    fn known_parameters_and_unknown_actions_pass_silently() {
        for (action, name) in [
            ("DescribeKeyPairs", "KeyPairName"),
            ("DescribeKeyPairs", "Tag.3.Value"),
            ("DescribeInstances", "Filter.2.Key"),
            ("DescribeInstanceStatus", "InstanceId.7"),
            ("RebootInstance", "RegionId"),
            ("AttachKeyPair", "ClientToken"),
            ("NoSuchAction", "Anything"),
        ] {
            assert_eq!(
                unknown_parameter_warning(action, name),
                None,
                "{action} {name}"
            );
        }
    }

    #[test]
    fn a_vendor_parameter_far_from_any_known_one_is_named_without_a_guess() {
        let w = unknown_parameter_warning("RunInstances", "SecurityGroupId").unwrap();
        assert!(
            w.contains("\"SecurityGroupId\"") && !w.contains("did you mean"),
            "{w}"
        );
        assert!(w.contains("sent anyway"), "{w}");
    }

    #[test]
    fn the_table_covers_every_action_the_server_serves() {
        for action in keyplane_api::actions::names(keyplane_api::aliyun::ACTIONS) {
            assert!(
                known(action).is_some(),
                "{action} is missing from the table"
            );
        }
    }

    /// Every parameter name a handler of the dialect reads appears in the table, so a parameter
    /// added to the server without the table makes this fail rather than warn users wrongly.
    #[test]
    fn the_table_holds_every_parameter_the_server_reads() {
        let sources = [
            include_str!("../../keyplane-api/src/aliyun/keypairs.rs"),
            include_str!("../../keyplane-api/src/aliyun/instances.rs"),
            include_str!("../../keyplane-api/src/aliyun/catalog.rs"),
            include_str!("../../keyplane-api/src/aliyun/tags.rs"),
            include_str!("../../keyplane-api/src/aliyun/mod.rs"),
        ];
        let every: Vec<&str> = keyplane_api::aliyun::ACTIONS
            .iter()
            .flat_map(|a| known(a.name).unwrap())
            .collect();
        let mut read = Vec::new();
        for source in sources {
            for reader in [
                ".opt(\"",
                ".required(\"",
                ".int(\"",
                ".bool(\"",
                ".pattern(\"",
                ".repeat(\"",
            ] {
                for (at, _) in source.match_indices(reader) {
                    let rest = &source[at + reader.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    let name = if reader == ".repeat(\"" {
                        format!("{name}.N")
                    } else {
                        name.to_string()
                    };
                    read.push(name);
                }
            }
        }
        assert!(read.len() > 30, "the scan found the handlers' parameters");
        for name in read {
            assert!(every.contains(&name.as_str()), "{name} is missing");
        }
    }
}
