//! The web console: static assets embedded in the binary (no build step, nothing fetched at run
//! time), and browser sessions for the native API.
//!
//! A session starts with an AccessKey ID and secret or a RAM user's console password, and lives in
//! an HttpOnly, SameSite=Strict cookie that expires after an hour; every request that changes
//! something must also carry the session's CSRF token in `X-CSRF-Token`. Sessions are kept in memory
//! by each server (a restart signs everyone out) and end when their credential changes
//! ([`session`]); failed sign-ins are throttled per source address ([`guard`]).

pub mod guard;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::{password, CoreError};
use keyplane_store::AccessKeyRecord;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::{self, Caller};
use crate::AppState;

pub use session::{Sessions, TTL};

pub const COOKIE: &str = "kp_session";

const INDEX: &str = include_str!("../../../../web/console/index.html");
const APP_JS: &str = include_str!("../../../../web/console/app.js");
const APP_CSS: &str = include_str!("../../../../web/console/app.css");
const FAVICON: &str = include_str!("../../../../web/console/favicon.svg");

pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

pub async fn app_js() -> Response {
    page(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    page(APP_CSS, "text/css; charset=utf-8")
}

pub async fn favicon() -> Response {
    page(FAVICON, "image/svg+xml")
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Everything the console needs is served here; nothing else may load.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())?
        .split(';')
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
}

/// The session a request's cookie names, if it is still valid; `Err` is the answer to send.
async fn valid_session(state: &AppState, id: &str) -> Result<session::Session, Response> {
    let Some(s) = state.sessions.get(id) else {
        return Err(denied("Your session has expired; sign in again."));
    };
    match s.still_valid(state).await {
        Ok(true) => Ok(s),
        Ok(false) => {
            state.sessions.remove(id);
            Err(denied(match s.binding {
                session::Binding::AccessKey => {
                    "The AccessKey of this session is no longer active; sign in again."
                }
                session::Binding::Password(_) => {
                    "The password of this session has changed or was removed; sign in again."
                }
            }))
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// The caller of a signed-in browser; `mutating` requests must carry the CSRF token.
pub async fn session_caller(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    mutating: bool,
) -> Option<Result<Caller, Response>> {
    let id = session_id(headers)?;
    let s = match valid_session(state, &id).await {
        Ok(s) => s,
        Err(response) => return Some(Err(response)),
    };
    if mutating && !csrf_matches(headers, &s.csrf) {
        return Some(Err(csrf_refused()));
    }
    Some(
        auth::caller_for(state, s.key, peer)
            .await
            .map_err(|_| denied("Sign in again.")),
    )
}

fn csrf_matches(headers: &HeaderMap, csrf: &str) -> bool {
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    bool::from(sent.as_bytes().ct_eq(csrf.as_bytes()))
}

fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"Code": "InvalidCsrfToken", "Message": "The request lacks the session's CSRF token."})),
    )
        .into_response()
}

/// The answer to a console request (it carries `X-CSRF-Token`, which only the console sends) that
/// has no session cookie at all: the cookie expired in the browser or was cleared by a sign-out in
/// another tab. Without this the request fell through to signature authentication and the console
/// showed a signature error for every action instead of its sign-in screen.
pub fn session_ended() -> Response {
    denied("Your session has ended; sign in again.")
}

fn denied(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"Code": "SessionRequired", "Message": message})),
    )
        .into_response()
}

/// 503 for a full CPU queue or a store out of reach: nothing was decided, the caller may retry.
fn unavailable(e: &CoreError) -> Response {
    let message = match e {
        CoreError::Busy => "The server is busy with other sign-ins; try again in a moment.",
        _ => "The service is temporarily unavailable; try again later.",
    };
    if let CoreError::Internal(detail) = e {
        tracing::error!(%detail, "console sign-in");
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(json!({"Code": "ServiceUnavailable", "Message": message})),
    )
        .into_response()
}

/// The session cookie, `Secure` when clients reach the server over HTTPS.
fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = if state.config.https { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignIn {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    account_id: Option<String>,
    user_name: Option<String>,
    password: Option<String>,
}

/// Who a sign-in proved to be.
struct SignedIn {
    key: AccessKeyRecord,
    principal: String,
    binding: session::Binding,
}

/// The identity `s` proves, or `None`. Every attempt, whatever it holds, costs exactly one argon2
/// verification through the CPU queue (against a dummy hash when there is no stored one), so an
/// unknown user, a user without a console password, a wrong password and an unknown or wrong
/// AccessKey take the same work and get the same answer.
async fn authenticate(state: &AppState, s: SignIn) -> Result<Option<SignedIn>, CoreError> {
    let (candidate, password, stored) = match (
        s.access_key_id,
        s.access_key_secret,
        s.account_id,
        s.user_name,
        s.password,
    ) {
        (Some(id), Some(secret), ..) => {
            let key = state.store.access_key(&id).await?.filter(|key| {
                key.active
                    && state
                        .config
                        .server_key
                        .open(&key.id, &key.secret)
                        .is_ok_and(|stored| bool::from(stored.as_bytes().ct_eq(secret.as_bytes())))
            });
            let candidate = key.map(|key| SignedIn {
                principal: key
                    .user_name
                    .as_ref()
                    .map(|u| format!("user/{u}"))
                    .unwrap_or_else(|| "root".into()),
                key,
                binding: session::Binding::AccessKey,
            });
            (candidate, secret, None)
        }
        (_, _, Some(account), Some(user), Some(pw)) => {
            let stored = state.store.login_profile(&account, &user).await?;
            let candidate = stored.as_deref().map(|hash| SignedIn {
                principal: format!("user/{user}"),
                key: AccessKeyRecord {
                    // Not an AccessKey: the name this session's calls are throttled and audited
                    // under. One per user, so that no user's calls use up another's throttle (one
                    // shared name let any account starve every other account's console users).
                    id: format!("console:{account}:{user}"),
                    account_id: account,
                    user_name: Some(user.clone()),
                    secret: String::new(),
                    active: true,
                },
                binding: session::Binding::password(hash),
            });
            (candidate, pw, stored)
        }
        _ => (None, String::new(), None),
    };
    let password_ok = state
        .cpu
        .run(move || password::verify_or_dummy(&password, stored.as_deref()))
        .await?;
    Ok(candidate.filter(|c| match c.binding {
        session::Binding::AccessKey => true,
        session::Binding::Password(_) => password_ok,
    }))
}

/// `POST /api/v1/session`: one answer for every wrong credential, so nothing is learned from it;
/// an address that keeps failing gets 429 before any password is hashed.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Json(s): Json<SignIn>,
) -> Response {
    if let Err(wait) = state.sign_in_guard.begin(peer.ip()) {
        return too_many_attempts(wait);
    }
    let signed = match authenticate(&state, s).await {
        Ok(Some(signed)) => signed,
        // The attempt stays charged: it failed.
        Ok(None) => return denied("The credentials are not valid."),
        Err(e) => {
            state.sign_in_guard.refund(peer.ip());
            return unavailable(&e);
        }
    };
    state.sign_in_guard.refund(peer.ip());
    let account = signed.key.account_id.clone();
    let principal = signed.principal.clone();
    let (id, csrf) = state
        .sessions
        .insert(signed.key, signed.principal, signed.binding);
    (
        [(header::SET_COOKIE, cookie(&state, &id, TTL.as_secs()))],
        Json(json!({"AccountId": account, "Principal": principal, "CsrfToken": csrf})),
    )
        .into_response()
}

fn too_many_attempts(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.max(1).to_string())],
        Json(json!({
            "Code": "Throttling",
            "Message": format!("Too many failed sign-ins from this address; try again in {} seconds.", secs.max(1)),
        })),
    )
        .into_response()
}

/// `GET /api/v1/session`: who is signed in (the page reads its CSRF token from here).
pub async fn current(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(id) = session_id(&headers) else {
        return denied("Not signed in.");
    };
    match valid_session(&state, &id).await {
        Ok(s) => Json(
            json!({"AccountId": s.key.account_id, "Principal": s.principal, "CsrfToken": s.csrf}),
        )
        .into_response(),
        Err(response) => response,
    }
}

/// `DELETE /api/v1/session`: signs out (CSRF token required).
pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        if let Some(s) = state.sessions.get(&id) {
            if !csrf_matches(&headers, &s.csrf) {
                return csrf_refused();
            }
        }
        state.sessions.remove(&id);
    }
    (
        [(header::SET_COOKIE, cookie(&state, "", 0))],
        Json(json!({})),
    )
        .into_response()
}
