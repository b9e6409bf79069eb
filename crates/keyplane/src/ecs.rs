//! `keyplane ecs <Action> --Param value …`: one V3-signed Alibaba-dialect call, JSON on stdout;
//! on a vendor error, exit 1 with the code and message on stderr.

use anyhow::{bail, Context};

use crate::client::{print, Client, Connection};

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

pub async fn run(args: EcsArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.connection)?;
    let mut query = parse_params(&args.params)?;
    if let Some(r) = &client.region {
        if !query.iter().any(|(k, _)| k == "RegionId") {
            query.push(("RegionId".into(), r.clone()));
        }
    }
    print(
        client
            .call("POST", "/", &args.action, "2014-05-26", &query)
            .await?,
    )
}
