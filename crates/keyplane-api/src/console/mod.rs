//! The web console: static assets embedded in the binary (no build step, nothing fetched at run
//! time), and browser sessions for the native API.
//!
//! A session starts with an AccessKey ID and secret or a RAM user's console password, and lives in
//! an HttpOnly, SameSite=Strict cookie that expires after an hour; every request that changes
//! something must also carry the session's CSRF token in `X-CSRF-Token`. Sessions are kept in memory
//! by each server (a restart signs everyone out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::{ids, password, CoreError};
use keyplane_store::AccessKeyRecord;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::{self, Caller};
use crate::AppState;

pub const COOKIE: &str = "kp_session";
pub const TTL: Duration = Duration::from_secs(3600);

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

struct Session {
    key: AccessKeyRecord,
    principal: String,
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn insert(&self, key: AccessKeyRecord, principal: String) -> (String, String) {
        let (id, csrf) = (
            ids::new_access_key_secret() + &ids::new_access_key_secret(),
            ids::new_access_key_secret(),
        );
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires > Instant::now());
        map.insert(
            id.clone(),
            Session {
                key,
                principal,
                csrf: csrf.clone(),
                expires: Instant::now() + TTL,
            },
        );
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<(AccessKeyRecord, String, String)> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.key.clone(), s.principal.clone(), s.csrf.clone()))
    }

    fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
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

/// The caller of a signed-in browser; `mutating` requests must carry the CSRF token.
pub async fn session_caller(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    mutating: bool,
) -> Option<Result<Caller, Response>> {
    let id = session_id(headers)?;
    let Some((key, _, csrf)) = state.sessions.get(&id) else {
        return Some(Err(denied("Your session has expired; sign in again.")));
    };
    if mutating {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
            return Some(Err((StatusCode::FORBIDDEN, Json(json!({"Code": "InvalidCsrfToken", "Message": "The request lacks the session's CSRF token."}))).into_response()));
        }
    }
    // A disabled or deleted AccessKey ends its sessions too.
    if key.id != "console" {
        match state.store.access_key(&key.id).await {
            Ok(Some(k)) if k.active => {}
            _ => {
                return Some(Err(denied(
                    "The AccessKey of this session is no longer active.",
                )))
            }
        }
    }
    Some(
        auth::caller_for(state, key, peer)
            .await
            .map_err(|_| denied("Sign in again.")),
    )
}

fn denied(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"Code": "SessionRequired", "Message": message})),
    )
        .into_response()
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

/// `POST /api/v1/session`: one answer for every wrong credential, so nothing is learned from it.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Json(s): Json<SignIn>,
) -> Response {
    let wrong = || denied("The credentials are not valid.");
    match state
        .throttle
        .check(&peer.ip().to_string(), "ConsoleSignIn")
        .await
    {
        Ok(()) => {}
        Err(CoreError::Throttled) => return (StatusCode::TOO_MANY_REQUESTS, Json(json!({"Code": "Throttling", "Message": "Too many sign-in attempts; wait a moment."}))).into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"Code": "ServiceUnavailable", "Message": "Try again later."}))).into_response(),
    }
    let (key, principal) = match (
        s.access_key_id,
        s.access_key_secret,
        s.account_id,
        s.user_name,
        s.password,
    ) {
        (Some(id), Some(secret), ..) => {
            let Ok(Some(key)) = state.store.access_key(&id).await else {
                return wrong();
            };
            let Ok(stored) = state.config.server_key.open(&key.id, &key.secret) else {
                return wrong();
            };
            if !key.active || !bool::from(stored.as_bytes().ct_eq(secret.as_bytes())) {
                return wrong();
            }
            let principal = key
                .user_name
                .as_ref()
                .map(|u| format!("user/{u}"))
                .unwrap_or_else(|| "root".into());
            (key, principal)
        }
        (_, _, Some(account), Some(user), Some(pw)) => {
            let Ok(Some(hash)) = state.store.login_profile(&account, &user).await else {
                return wrong();
            };
            let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
                .await
                .unwrap_or(false);
            if !ok {
                return wrong();
            }
            let key = AccessKeyRecord {
                id: "console".into(),
                account_id: account,
                user_name: Some(user.clone()),
                secret: String::new(),
                active: true,
            };
            (key, format!("user/{user}"))
        }
        _ => return wrong(),
    };
    let account = key.account_id.clone();
    let (id, csrf) = state.sessions.insert(key, principal.clone());
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        TTL.as_secs()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({"AccountId": account, "Principal": principal, "CsrfToken": csrf})),
    )
        .into_response()
}

/// `GET /api/v1/session`: who is signed in (the page reads its CSRF token from here).
pub async fn current(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session_id(&headers).and_then(|id| state.sessions.get(&id)) {
        Some((key, principal, csrf)) => {
            Json(json!({"AccountId": key.account_id, "Principal": principal, "CsrfToken": csrf}))
                .into_response()
        }
        None => denied("Not signed in."),
    }
}

/// `DELETE /api/v1/session`: signs out (CSRF token required).
pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        if let Some((_, _, csrf)) = state.sessions.get(&id) {
            let sent = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) {
                return (StatusCode::FORBIDDEN, Json(json!({"Code": "InvalidCsrfToken", "Message": "The request lacks the session's CSRF token."}))).into_response();
            }
        }
        state.sessions.remove(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        Json(json!({})),
    )
        .into_response()
}
