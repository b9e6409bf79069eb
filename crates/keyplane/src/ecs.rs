//! `keyplane ecs <Action> --Param value …`: one V3-signed Alibaba-dialect call, JSON on stdout;
//! on a vendor error, exit 1 with the code and message on stderr. A parameter the action does not
//! read is sent with a warning naming the nearest one it does ([`crate::ecs_params`]).

use anyhow::{bail, Context};

use crate::client::{print_with_hint, Client, Connection};
use crate::ecs_params::unknown_parameter_warning;

#[derive(clap::Args)]
pub struct EcsArgs {
    #[command(flatten)]
    connection: Connection,
    /// The action, e.g. DescribeKeyPairs.
    action: String,
    /// The action's parameters as `--Name value` pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    params: Vec<String>,
}

/// `--Name value` and `--Name=value` pairs, in order.
fn parse_params(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--") else {
            bail!("expected --Name, got {arg:?}")
        };
        match name.split_once('=') {
            Some((n, v)) => out.push((n.to_string(), v.to_string())),
            None => {
                let value = it
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?;
                out.push((name.to_string(), value.clone()));
            }
        }
    }
    Ok(out)
}

/// What to do about a vendor error the CLI itself can help with: a RegionId the call lacked is a
/// setting of the CLI, not of the action.
fn hint(answer: &crate::client::Answer) -> Option<&'static str> {
    let missing_region = answer.body["Code"] == "MissingParameter"
        && answer.body["Message"]
            .as_str()
            .is_some_and(|m| m.contains("\"RegionId\""));
    missing_region.then_some(
        "give the region with --region REGION, or set KEYPLANE_REGION (or the profile's \"region\")",
    )
}

pub async fn run(args: EcsArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut query = parse_params(&args.params)?;
    for (name, _) in &query {
        if let Some(warning) = unknown_parameter_warning(&args.action, name) {
            eprintln!("{warning}");
        }
    }
    let client = Client::new(&args.connection)?;
    if let Some(r) = &client.region {
        if !query.iter().any(|(k, _)| k == "RegionId") {
            query.push(("RegionId".into(), r.clone()));
        }
    }
    let answer = client
        .call("POST", "/", &args.action, "2014-05-26", &query)
        .await?;
    let hint = hint(&answer);
    print_with_hint(answer, hint)
}
