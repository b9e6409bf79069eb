//! `keyplane ecs <Action> --Param value …`: one V3-signed Alibaba-dialect call, JSON on stdout;
//! on a vendor error, exit 1 with the code and message on stderr.
//!
//! Endpoint, region and AccessKey come from flags, else the environment (`KEYPLANE_*`, then the
//! vendor CLI's `ALIBABA_CLOUD_*`), else the profile file `~/.keyplane/profile.json`.

use anyhow::{bail, Context};
use keyplane_sig::alibaba::{sign_v3, V3Call};
use keyplane_sig::encode::pct;
use keyplane_sig::SecretKey;

#[derive(clap::Args)]
pub struct EcsArgs {
    /// Server URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    endpoint: Option<String>,
    /// Default RegionId for the call.
    #[arg(long)]
    region: Option<String>,
    /// Profile file (default ~/.keyplane/profile.json).
    #[arg(long, env = "KEYPLANE_PROFILE")]
    profile: Option<String>,
    /// The action, e.g. DescribeKeyPairs.
    action: String,
    /// The action's parameters as `--Name value` pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    params: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
struct Profile {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn load_profile(path: Option<&str>) -> anyhow::Result<Profile> {
    let path = match path {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::Path::new(&h).join(".keyplane/profile.json"),
            None => return Ok(Profile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
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
    let profile = load_profile(args.profile.as_deref())?;
    let endpoint = args
        .endpoint
        .or_else(|| env(&["KEYPLANE_ENDPOINT"]))
        .or(profile.endpoint)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let region = args
        .region
        .or_else(|| env(&["KEYPLANE_REGION", "ALIBABA_CLOUD_REGION_ID"]))
        .or(profile.region);
    let ak = env(&["KEYPLANE_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"])
        .or(profile.access_key_id)
        .context("no AccessKey ID: set KEYPLANE_ACCESS_KEY_ID or the profile file")?;
    let secret = SecretKey::new(
        env(&[
            "KEYPLANE_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ])
        .or(profile.access_key_secret)
        .context("no AccessKey secret: set KEYPLANE_ACCESS_KEY_SECRET or the profile file")?,
    );
    let mut query = parse_params(&args.params)?;
    if let Some(r) = region {
        if !query.iter().any(|(k, _)| k == "RegionId") {
            query.push(("RegionId".into(), r));
        }
    }
    let url =
        reqwest::Url::parse(&endpoint).with_context(|| format!("bad endpoint {endpoint:?}"))?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let call = V3Call {
        method: "POST",
        host: &host,
        action: &args.action,
        version: "2014-05-26",
        query: &query,
        body: b"",
        date: &date,
        nonce: &nonce,
    };
    let headers = sign_v3(&call, &ak, &secret);
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let target = format!("{}/?{}", endpoint.trim_end_matches('/'), qs.join("&"));
    let mut req = reqwest::Client::new().post(&target);
    for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(name, value);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling {endpoint}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let body: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!("the server answered HTTP {status} with a body that is not JSON")
    })?;
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ERROR: {} (HTTP {}): {}\nRequestId: {}",
            body["Code"].as_str().unwrap_or("Unknown"),
            status.as_u16(),
            body["Message"].as_str().unwrap_or(""),
            body["RequestId"].as_str().unwrap_or("")
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}
