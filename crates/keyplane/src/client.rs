//! The one signed HTTP client of the CLI: settings from flags, the environment or the profile file,
//! and a V3-signed call to any path of a keyplane server.

use anyhow::Context;
use keyplane_sig::alibaba::{sign_v3, V3Call};
use keyplane_sig::encode::pct;
use keyplane_sig::SecretKey;

/// The endpoint used when neither `--endpoint`, `KEYPLANE_ENDPOINT` nor the profile names one: the
/// address `keyplane serve` listens on by default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Where and as whom: the flags shared by `keyplane ecs` and `keyplane admin`.
#[derive(clap::Args, Clone)]
pub struct Connection {
    /// Server URL with its scheme, e.g. https://keyplane.example.com:8443 (plain http:// only to
    /// this host). Else KEYPLANE_ENDPOINT, else the profile's "endpoint", else
    /// http://127.0.0.1:8080.
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Trust only the CA certificates in this PEM file instead of the system's roots.
    #[arg(long, global = true, env = "KEYPLANE_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow plain http:// to a server that is not on this host (signed calls then cross the
    /// network in clear).
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// The region (RegionId) of the call. Else KEYPLANE_REGION or ALIBABA_CLOUD_REGION_ID, else
    /// the profile's "region".
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Profile file; it must exist when given. Without it, ~/.keyplane/profile.json if present.
    #[arg(long, global = true, env = "KEYPLANE_PROFILE")]
    pub profile: Option<String>,
}

#[derive(serde::Deserialize, Default)]
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

/// The profile file: the one `--profile`/`KEYPLANE_PROFILE` names, which must exist (a typo in its
/// name must not silently fall back to other settings), else `~/.keyplane/profile.json` if present.
fn load_profile(path: Option<&str>) -> anyhow::Result<(Profile, Option<std::path::PathBuf>)> {
    let (path, named) = match path {
        Some(p) => (std::path::PathBuf::from(p), true),
        None => match std::env::var_os("HOME") {
            Some(h) => (
                std::path::Path::new(&h).join(".keyplane/profile.json"),
                false,
            ),
            None => return Ok((Profile::default(), None)),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let profile = serde_json::from_str(&text)
                .with_context(|| format!("reading the profile {}", path.display()))?;
            Ok((profile, Some(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            Ok((Profile::default(), None))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "reading the profile {} (given by --profile or KEYPLANE_PROFILE)",
                path.display()
            )
        }),
    }
}

/// Resolved settings: flags, else `KEYPLANE_*` (or the vendor CLI's `ALIBABA_CLOUD_*`), else the profile.
pub struct Client {
    pub endpoint: String,
    /// Where the endpoint came from, for the error of a call that cannot reach it.
    endpoint_source: String,
    pub region: Option<String>,
    access_key_id: String,
    secret: SecretKey,
    http: reqwest::Client,
}

/// A server's answer: HTTP status and JSON body.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: serde_json::Value,
}

impl Client {
    pub fn new(c: &Connection) -> anyhow::Result<Self> {
        let (profile, profile_path) = load_profile(c.profile.as_deref())?;
        let (endpoint, endpoint_source) = if let Some(e) = &c.endpoint {
            (e.clone(), "--endpoint".to_string())
        } else if let Some(e) = env(&["KEYPLANE_ENDPOINT"]) {
            (e, "KEYPLANE_ENDPOINT".to_string())
        } else if let (Some(e), Some(p)) = (profile.endpoint, &profile_path) {
            (e, format!("the profile {}", p.display()))
        } else {
            (
                DEFAULT_ENDPOINT.to_string(),
                "the default: set --endpoint or KEYPLANE_ENDPOINT".to_string(),
            )
        };
        let region = c
            .region
            .clone()
            .or_else(|| env(&["KEYPLANE_REGION", "ALIBABA_CLOUD_REGION_ID"]))
            .or(profile.region);
        let access_key_id = env(&["KEYPLANE_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"])
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
        let transport = keyplane_agent::transport::Transport {
            ca_file: c.ca_file.clone(),
            insecure_http: c.insecure_http,
        };
        keyplane_agent::transport::check_url(&endpoint, c.insecure_http)
            .with_context(|| format!("the endpoint ({endpoint_source})"))?;
        let http = transport.client(&endpoint, reqwest::Client::builder())?;
        Ok(Self {
            endpoint,
            endpoint_source,
            region,
            access_key_id,
            secret,
            http,
        })
    }

    /// A V3-signed call (`x-acs-action`/`x-acs-version` set for the vendor API).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        action: &str,
        version: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<Answer> {
        let url = reqwest::Url::parse(&self.endpoint)
            .with_context(|| format!("bad endpoint {:?}", self.endpoint))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let call = V3Call {
            method,
            path,
            host: &host,
            action,
            version,
            query,
            body: b"",
            date: &date,
            nonce: &nonce,
        };
        let headers = sign_v3(&call, &self.access_key_id, &self.secret);
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
            .collect();
        let target = format!(
            "{}{path}?{}",
            self.endpoint.trim_end_matches('/'),
            qs.join("&")
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, &target);
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            req = req.header(name, value);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "calling the keyplane server at {} ({})",
                self.endpoint, self.endpoint_source
            )
        })?;
        let status = resp.status();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).with_context(|| {
            format!("the server answered HTTP {status} with a body that is not JSON")
        })?;
        Ok(Answer { status, body })
    }
}

/// The answer with only `fields` on success (a contract's shape), else as the server said.
pub fn only(mut answer: Answer, fields: &[&str]) -> Answer {
    if answer.status.is_success() {
        let body = &answer.body;
        let kept: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|f| (f.to_string(), body[*f].clone()))
            .collect();
        answer.body = serde_json::Value::Object(kept);
    }
    answer
}

/// Prints a success as pretty JSON on stdout, or the vendor error on stderr with exit code 1.
pub fn print(answer: Answer) -> anyhow::Result<std::process::ExitCode> {
    print_with_hint(answer, None)
}

/// [`print`], with a line saying what to do after a vendor error the caller recognised.
pub fn print_with_hint(
    answer: Answer,
    hint: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    if answer.status.is_success() {
        println!("{}", serde_json::to_string_pretty(&answer.body)?);
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        let b = &answer.body;
        eprintln!(
            "ERROR: {} (HTTP {}): {}\nRequestId: {}",
            b["Code"].as_str().unwrap_or("Unknown"),
            answer.status.as_u16(),
            b["Message"].as_str().unwrap_or(""),
            b["RequestId"].as_str().unwrap_or("")
        );
        if let Some(h) = hint {
            eprintln!("hint: {h}");
        }
        Ok(std::process::ExitCode::FAILURE)
    }
}
