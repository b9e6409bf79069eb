//! The agent's side of `/agent/v1`: register, long-poll the desired state, report.

use std::time::Duration;

use anyhow::{bail, Context};
use keyplane_core::agent_wire::{Registered, Registration, Report};
use serde_json::Value;

use crate::apply::{Desired, Observed};
use crate::transport::Transport;

/// What the reconcile loop needs from the control plane: [`Client`] over HTTP, a fake in the
/// tests of the loop (`tests/reconcile.rs`).
#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait ControlPlane {
    /// Registers with a one-time token; returns the instance ID and the credential.
    async fn register(
        &self,
        token: &str,
        os_name: &str,
        login_user: &str,
        host_name: &str,
    ) -> anyhow::Result<(String, String)>;
    /// The desired state if it differs from `etag` (waiting up to `wait` seconds for a change),
    /// with its new ETag; `None` when nothing changed.
    async fn desired(
        &self,
        etag: Option<&str>,
        wait: u64,
    ) -> anyhow::Result<Option<(Desired, String)>>;
    /// Reports what is in effect after an apply (`applied_seq`) or a check (`None`).
    async fn report(
        &self,
        applied_seq: Option<i64>,
        observed: Option<&Observed>,
        error: Option<&str>,
    ) -> anyhow::Result<Value>;
}

/// Answers larger than this are not read (a server never sends one).
pub const MAX_RESPONSE: usize = 64 * 1024;

pub struct Client {
    base: String,
    http: reqwest::Client,
    bearer: Option<String>,
}

/// The body, read chunk by chunk and abandoned as soon as it passes [`MAX_RESPONSE`]: a server (or
/// anything on the way) sending gigabytes costs 64 KiB of memory, not gigabytes.
async fn read_bounded(mut resp: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let too_large =
        || anyhow::anyhow!("the server's answer is larger than {MAX_RESPONSE} bytes; ignored");
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_json(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let bytes = read_bounded(resp).await?;
    let v: Value =
        serde_json::from_slice(&bytes).context("the server's answer is not JSON; ignored")?;
    if !status.is_success() {
        bail!(
            "the server answered {status}: {} {}",
            v["Code"].as_str().unwrap_or(""),
            v["Message"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

impl Client {
    /// A client with the default transport: system roots, plain HTTP only to this host.
    pub fn new(server: &str) -> anyhow::Result<Self> {
        Self::with_transport(server, &Transport::default())
    }

    /// A client for `server` that speaks HTTPS as `transport` says (see [`crate::transport`]).
    pub fn with_transport(server: &str, transport: &Transport) -> anyhow::Result<Self> {
        let http = transport.client(
            server,
            reqwest::Client::builder().timeout(Duration::from_secs(90)),
        )?;
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http,
            bearer: None,
        })
    }

    pub fn authenticate(&mut self, instance_id: &str, credential: &str) {
        self.bearer = Some(format!("Bearer {instance_id}:{credential}"));
    }
}

impl ControlPlane for Client {
    async fn register(
        &self,
        token: &str,
        os_name: &str,
        login_user: &str,
        host_name: &str,
    ) -> anyhow::Result<(String, String)> {
        let body = Registration {
            token: token.into(),
            os_type: "linux".into(),
            os_name: os_name.into(),
            login_user: login_user.into(),
            host_name: host_name.into(),
        };
        let resp = self
            .http
            .post(format!("{}/agent/v1/register", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_string(&body)?)
            .send()
            .await?;
        let registered: Registered = serde_json::from_value(read_json(resp).await?)
            .context("the registration answer lacks InstanceId or Credential")?;
        Ok((registered.instance_id, registered.credential))
    }

    async fn desired(
        &self,
        etag: Option<&str>,
        wait: u64,
    ) -> anyhow::Result<Option<(Desired, String)>> {
        let mut req = self
            .http
            .get(format!("{}/agent/v1/desired?wait={wait}", self.base));
        if let Some(b) = &self.bearer {
            req = req.header("authorization", b);
        }
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        let started = std::time::Instant::now();
        let resp = req.send().await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        // A proxy (or an older server) that ends a long poll by its own timeout answers 503 or
        // 504 after the wait: nothing changed, and the server is not down.
        let ended_by_timeout = matches!(
            resp.status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE | reqwest::StatusCode::GATEWAY_TIMEOUT
        ) && wait > 0
            && started.elapsed() >= Duration::from_secs(wait);
        if ended_by_timeout && !resp.headers().contains_key("content-type") {
            return Ok(None);
        }
        let tag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let v = read_json(resp).await?;
        let desired: Desired =
            serde_json::from_value(v).context("the desired state is malformed; ignored")?;
        Ok(Some((desired, tag)))
    }

    async fn report(
        &self,
        applied_seq: Option<i64>,
        observed: Option<&Observed>,
        error: Option<&str>,
    ) -> anyhow::Result<Value> {
        let body = Report {
            applied_seq,
            fingerprints: observed.map(|o| o.fingerprints.clone()).unwrap_or_default(),
            password_login: observed.map(|o| o.password_login).unwrap_or(true),
            password_version: observed.and_then(|o| o.password_version),
            password_login_managed: observed.is_none_or(|o| o.password_login_managed),
            error: error.map(String::from),
            grants: observed.map(|o| o.grants.clone()).unwrap_or_default(),
        };
        let mut req = self
            .http
            .post(format!("{}/agent/v1/report", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_string(&body)?);
        if let Some(b) = &self.bearer {
            req = req.header("authorization", b);
        }
        read_json(req.send().await?).await
    }
}
