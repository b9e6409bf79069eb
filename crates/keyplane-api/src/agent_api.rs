//! The agent API (`/agent/v1`, JSON) for `host` instances.
//!
//! - `POST /agent/v1/register` `{"Token","OsType","OsName","LoginUser","HostName"}` → `{"InstanceId","Credential"}`:
//!   a one-time registration token becomes a host instance and a per-instance credential (only its
//!   SHA-256 is kept).
//! - `GET /agent/v1/desired?wait=SECONDS` with `Authorization: Bearer <InstanceId>:<Credential>`
//!   and `If-None-Match`: the desired state and its ETag; while nothing changed it waits (long poll,
//!   at most 60 s) and then answers 304.
//!   The state carries `PasswordHash` (SHA-512 crypt, never the plaintext) and `PasswordVersion`
//!   after a password reset of a Linux instance.
//! - `POST /agent/v1/report` `{"AppliedSeq","Fingerprints","PasswordLogin","PasswordVersion","Error"}`:
//!   what is in effect on the host; the server derives the binding state from it.
//!
//! Whoever holds a token or a credential is still an untrusted client: bodies are read up to
//! [`MAX_BODY_BYTES`] (413 past it), and every field is checked and bounded before anything is
//! stored (400 `InvalidParameter` naming the field). A LoginUser becomes a path and a user on the
//! host, so it must be a plain POSIX user name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::agent_wire::{
    DesiredGrant, DesiredState, Registered, Registration, Report, ReportAnswer,
};
use keyplane_core::binding::Binding;
use keyplane_core::ids;
use keyplane_core::model::{Instance, InstanceStatus, OsType, Provider};
use keyplane_store::AgentReport;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

/// Wakes the long polls of one instance when its desired state changes.
#[derive(Default)]
pub struct AgentHub {
    waiters: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl AgentHub {
    fn waiter(&self, instance_id: &str) -> Arc<tokio::sync::Notify> {
        self.waiters
            .lock()
            .expect("hub lock")
            .entry(instance_id.to_string())
            .or_default()
            .clone()
    }

    /// Wakes every waiting agent (some changes may have been missed).
    pub fn notify_all(&self) {
        for n in self.waiters.lock().expect("hub lock").values() {
            n.notify_waiters();
        }
    }

    /// Tells the agents of these instances, if any are waiting, that something changed.
    pub fn notify<'a>(&self, instance_ids: impl IntoIterator<Item = &'a str>) {
        let waiters = self.waiters.lock().expect("hub lock");
        for id in instance_ids {
            if let Some(n) = waiters.get(id) {
                n.notify_waiters();
            }
        }
    }
}

/// Wakes the agents of these instances long-polling this server and, through the store, every
/// other server sharing it. A lost announcement costs the agent at most one long-poll period.
pub async fn changed(state: &AppState, instance_ids: &[String]) {
    state.agents.notify(instance_ids.iter().map(String::as_str));
    if state.store.shared() && !instance_ids.is_empty() {
        if let Err(e) = state.store.announce(instance_ids).await {
            tracing::warn!(error = %e, "announcing a desired-state change failed");
        }
    }
}

/// Forwards the store's announcements (other servers' changes) to this server's long polls.
pub async fn forward_announcements(state: Arc<AppState>) -> anyhow::Result<()> {
    let Some(mut rx) = state.store.announcements().await? else {
        return Ok(());
    };
    tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            if id == "*" {
                state.agents.notify_all();
            } else {
                state.agents.notify([id.as_str()]);
            }
        }
    });
    Ok(())
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"Code": code, "Message": message}))).into_response()
}

/// The largest register or report body: a report is at most a hundred fingerprints and an error
/// text of 4 KiB, far below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_FINGERPRINTS: usize = 100;
const MAX_FINGERPRINT_LEN: usize = 128;
const MAX_ERROR_LEN: usize = 4096;
const MAX_OS_NAME_LEN: usize = 255;
/// A token is `kprt-` and 60 characters; a longer one cannot be a token.
const MAX_TOKEN_LEN: usize = 128;

/// The JSON body of an agent call, bounded before it is parsed.
async fn read_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidParameter",
            "The body must be JSON (Content-Type: application/json).",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                &format!("The body is larger than {MAX_BODY_BYTES} bytes."),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            &format!("The body is not the expected JSON: {e}."),
        )
    })
}

/// A POSIX user name as `useradd` accepts it by default: `^[a-z_][a-z0-9_-]{0,31}$`. This refuses
/// `.` and `..` (paths), a leading `-` (an option to ssh or a tool) and a trailing `$` (machine
/// accounts).
pub fn valid_login_user(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A DNS-style host name: at most 253 characters, dot-separated labels of 1 to 63 letters, digits
/// and hyphens, none starting or ending with a hyphen.
pub fn valid_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The invisible and direction-changing characters that make a listing lie.
fn deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// Text shown to people as is (OsName): bounded, with no control or deceptive characters.
fn valid_display_text(text: &str, max_bytes: usize) -> bool {
    text.len() <= max_bytes && !text.chars().any(|c| c.is_control() || deceptive(c))
}

/// An apply error as the console and the API show it. It is sshd's or the system's message, which
/// may span lines, so it is kept, with every control character but a newline or a tab and every
/// deceptive character shown as U+FFFD instead of refusing the report (which would leave the
/// binding's state stale).
fn display_safe(text: String) -> String {
    if !text
        .chars()
        .any(|c| deceptive(c) || (c.is_control() && c != '\n' && c != '\t'))
    {
        return text;
    }
    text.chars()
        .map(|c| {
            if deceptive(c) || (c.is_control() && c != '\n' && c != '\t') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A fingerprint as the agent reports it: `SHA256:` and base64, or `invalid` for a line it could
/// not parse. No commas: the store keeps the list comma-separated.
fn valid_fingerprint(fp: &str) -> bool {
    fp.len() <= MAX_FINGERPRINT_LEN
        && !fp.is_empty()
        && fp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=:".contains(&b))
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r: Registration = match read_body(&headers, body).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    // Windows hosts are registered by tests and kept for compatibility; the agent itself sends linux.
    let os_type = match r.os_type.as_str() {
        "" | "linux" => OsType::Linux,
        "windows" => OsType::Windows,
        _ => return invalid("OsType is linux or windows."),
    };
    let login_user = if r.login_user.is_empty() {
        "root".to_string()
    } else {
        r.login_user
    };
    if r.token.len() > MAX_TOKEN_LEN {
        return invalid("Token is not a registration token.");
    }
    if !valid_login_user(&login_user) {
        return invalid(
            "LoginUser must be a POSIX user name: a lowercase letter or _, then up to 31 lowercase letters, digits, _ or -.",
        );
    }
    if !r.host_name.is_empty() && !valid_host_name(&r.host_name) {
        return invalid(
            "HostName must be a DNS name: at most 253 characters, labels of letters, digits and hyphens.",
        );
    }
    if !valid_display_text(&r.os_name, MAX_OS_NAME_LEN) {
        return invalid("OsName must be at most 255 bytes of printable text.");
    }
    let id = ids::new_instance_id();
    let credential = format!(
        "{}{}",
        ids::new_access_key_secret(),
        ids::new_access_key_secret()
    );
    let now = keyplane_core::model::now();
    let instance = Instance {
        name: if r.host_name.is_empty() {
            id.clone()
        } else {
            r.host_name.clone()
        },
        host_name: if r.host_name.is_empty() {
            id.clone()
        } else {
            r.host_name
        },
        description: String::new(),
        id: id.clone(),
        account_id: String::new(),
        region_id: String::new(),
        zone_id: String::new(),
        image_id: "host".into(),
        instance_type: "host".into(),
        os_type,
        os_name: r.os_name,
        status: InstanceStatus::Running,
        io_optimized: true,
        agent_installed: true,
        login_user,
        provider: Provider::Host,
        has_password: true,
        password_hash: None,
        created_at: now,
        started_at: Some(now),
        key_pair_name: None,
        binding: Binding::default(),
        tags: vec![],
    };
    match state
        .store
        .redeem_registration_token(&sha256_hex(&r.token), &instance, &sha256_hex(&credential))
        .await
    {
        Ok(Some(inst)) => {
            tracing::info!(instance_id = %inst.id, account = %inst.account_id, "a host registered");
            Json(Registered {
                instance_id: inst.id,
                region_id: inst.region_id,
                credential,
            })
            .into_response()
        }
        Ok(None) => error(
            StatusCode::FORBIDDEN,
            "InvalidRegistrationToken",
            "The registration token is unknown, used, expired or revoked.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "registration failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "The registration failed.",
            )
        }
    }
}

/// The instance whose credential the request carries.
async fn agent(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let denied = || {
        error(
            StatusCode::UNAUTHORIZED,
            "InvalidCredential",
            "The agent credential is not valid.",
        )
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(denied)?;
    let (id, credential) = bearer.split_once(':').ok_or_else(denied)?;
    let stored = state
        .store
        .agent_credential(id)
        .await
        .map_err(|_| denied())?;
    let Some((_, hash)) = stored else {
        return Err(denied());
    };
    if bool::from(hash.as_bytes().ct_eq(sha256_hex(credential).as_bytes())) {
        Ok(id.to_string())
    } else {
        Err(denied())
    }
}

#[derive(Deserialize)]
pub struct Wait {
    wait: Option<u64>,
}

pub async fn desired(State(state): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let q = match Query::<Wait>::try_from_uri(req.uri()) {
        Ok(Query(q)) => q,
        Err(e) => return e.into_response(),
    };
    let id = match agent(&state, req.headers()).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let seen = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // A waiting poll keeps only what it read: the request's head shares hyper's read buffer, which
    // would otherwise stay allocated for every agent waiting beside a fresh one for its next
    // request (docs/BENCHMARKS.md, run 13: about 8 KiB of the memory per waiting agent).
    drop(req);
    let _waiting = state.metrics.agent_waiting();
    // The wait ends well before the request timeout, which would otherwise cut the poll with an
    // empty 503 that the agent takes for an outage.
    let longest = state
        .config
        .request_timeout
        .saturating_sub(Duration::from_secs(5))
        .max(Duration::from_secs(1));
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0)).min(longest);
    let waiter = state.agents.waiter(&id);
    loop {
        // Register interest before reading, so a change between the read and the wait is not lost.
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let d = match state.store.agent_desired(&id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "InvalidInstance.NotFound",
                    "The instance no longer exists.",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the desired state failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Try again.",
                );
            }
        };
        let (grants, revoked_keys) = match host_grants(&state, &id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "reading the grants failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Try again.",
                );
            }
        };
        let body = DesiredState {
            grants,
            revoked_keys,
            instance_id: d.instance_id,
            login_user: d.login_user,
            public_key: d.public_key,
            fingerprint: d.fingerprint,
            password_login: d.password_login,
            apply_seq: d.apply_seq,
            password_hash: d.password_hash,
            password_version: d.password_version,
        };
        let text = serde_json::to_string(&body).expect("the desired state serializes");
        let etag = format!("\"{}\"", &sha256_hex(&text)[..32]);
        if seen.as_deref() != Some(etag.as_str()) {
            let json = [(header::CONTENT_TYPE, "application/json")];
            return ([(header::ETAG, etag)], json, text).into_response();
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
    }
}

/// The grants in effect on host `id` (in grant-ID order, so the text and its ETag change only
/// when they do) and the public keys revoked in its account.
async fn host_grants(
    state: &AppState,
    id: &str,
) -> Result<(Vec<DesiredGrant>, Vec<String>), keyplane_core::CoreError> {
    let Some((account, _)) = state.store.agent_credential(id).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let now = state.clock.now();
    let filter = keyplane_store::GrantFilter {
        account_id: account.clone(),
        instance_id: Some(id.to_string()),
        ..Default::default()
    };
    let mut grants: Vec<DesiredGrant> = state
        .store
        .list_grants(&filter)
        .await?
        .into_iter()
        .filter(|(g, inst)| g.in_effect(inst, now))
        .map(|(g, _)| DesiredGrant {
            grant_id: g.id,
            os_user: g.os_user,
            public_key: g.public_key,
            expires_at: g
                .expires_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
        .collect();
    grants.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
    let revoked = state.store.revoked_keys(&account).await?;
    Ok((grants, revoked))
}

pub async fn report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = match agent(&state, &headers).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let r: Report = match read_body(&headers, body).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    if r.fingerprints.len() > MAX_FINGERPRINTS {
        return invalid("Fingerprints holds at most 100 fingerprints.");
    }
    if !r.fingerprints.iter().all(|f| valid_fingerprint(f)) {
        return invalid("Fingerprints must be SHA256 fingerprints of at most 128 characters.");
    }
    if r.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_LEN) {
        return invalid("Error is at most 4096 bytes.");
    }
    if r.grants.len() > MAX_FINGERPRINTS * 10
        || r.grants.iter().any(|g| {
            g.grant_id.len() > 64 || g.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_LEN)
        })
    {
        return invalid(
            "Grants holds at most 1000 results, each an ID and an error of at most 4096 bytes.",
        );
    }
    if !r.grants.is_empty() {
        let results: Vec<(String, Option<String>)> = r
            .grants
            .iter()
            .map(|g| (g.grant_id.clone(), g.error.clone().map(display_safe)))
            .collect();
        if let Err(e) = state.store.record_grant_results(&id, &results).await {
            tracing::error!(error = %e, "recording grant results failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Try again.",
            );
        }
    }
    let report = AgentReport {
        applied_seq: r.applied_seq,
        fingerprints: r.fingerprints,
        password_login: r.password_login,
        password_version: r.password_version,
        error: r.error.map(display_safe),
    };
    match state.store.record_agent_report(&id, &report).await {
        Ok(inst) => Json(ReportAnswer {
            binding_state: inst.binding.state.as_str().to_string(),
            binding_error: inst.binding.error,
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "recording a report failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Try again.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::display_safe;

    #[test]
    fn an_apply_error_keeps_its_lines_but_not_its_deceptive_characters() {
        let sshd = "line 3: Bad configuration option: Foo\n\tterminating".to_string();
        assert_eq!(display_safe(sshd.clone()), sshd);
        assert_eq!(
            display_safe("\u{202E}evil\u{200B}\u{7}x".to_string()),
            "\u{FFFD}evil\u{FFFD}\u{FFFD}x"
        );
    }
}
