//! keyplane's HTTP server: one listener, shared plumbing (body limit, form decoding, signature and
//! replay checks), then one module per vendor dialect that parses the wire into core calls and
//! renders results and errors in its own envelope.
//!
//! Request flow: accept → [`wire::WireRequest`] → dialect recognised → [`auth`] verifies the
//! signature and replay window → the dialect's action handler → core rules → store → envelope.

pub mod agent_api;
pub mod aliyun;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod config;
pub mod console;
pub mod idempotency;
pub mod listener;
pub mod native;
pub mod nonces;
pub mod params;
pub mod ram_api;
pub mod sim;
pub mod throttle;
pub mod tls;
pub mod volc;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keyplane_store::Store;
use tokio::net::TcpListener;

pub use config::ServerConfig;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    pub nonces: nonces::NonceCache,
    pub throttle: throttle::Throttle,
    pub agents: agent_api::AgentHub,
    pub sessions: console::Sessions,
}

/// Which vendor dialect a request speaks (SPEC section 11): from `x-acs-version`, the signature
/// scheme, or `Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Aliyun,
    /// The Alibaba RAM API (2015-05-01), same signatures and envelope as `Aliyun`.
    Ram,
    Volc,
}

impl Dialect {
    pub fn detect(headers: &axum::http::HeaderMap, query: Option<&str>) -> Self {
        let ram_version = format!("Version={}", ram_api::VERSION);
        if let Some(v) = headers.get("x-acs-version") {
            return if v.as_bytes() == ram_api::VERSION.as_bytes() {
                Self::Ram
            } else {
                Self::Aliyun
            };
        }
        if query.is_some_and(|q| q.split('&').any(|p| p == ram_version)) {
            return Self::Ram;
        }
        let volc_auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("HMAC-SHA256 "));
        let volc_version = query.is_some_and(|q| {
            q.split('&')
                .any(|p| p == format!("Version={}", volc::VERSION))
        });
        if volc_auth || volc_version {
            Self::Volc
        } else {
            Self::Aliyun
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests and flushes the nonce log.
pub async fn serve(
    store: Arc<dyn Store>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    store.complete_transitions(chrono::Utc::now()).await?;
    let nonces = nonces::NonceCache::load(store.clone()).await?;
    let throttle =
        throttle::Throttle::new(config.throttle_per_second, config.throttle_burst, &store);
    let state = Arc::new(AppState {
        store: store.clone(),
        config,
        nonces,
        throttle,
        agents: agent_api::AgentHub::default(),
        sessions: console::Sessions::default(),
    });
    agent_api::forward_announcements(state.clone()).await?;
    let background = spawn_background(state.clone());
    let app = router(state.clone());
    listener::run(listener, app, &state.config, shutdown).await?;
    background.abort();
    state.nonces.flush().await?;
    Ok(())
}

pub fn router(state: Arc<AppState>) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(vendor_api).post(vendor_api))
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css))
        .route("/console/favicon.svg", get(console::favicon))
        .route("/favicon.ico", get(console::favicon))
        .route(
            "/api/v1/session",
            get(console::current)
                .post(console::sign_in)
                .delete(console::sign_out),
        )
        .route("/api/v1/{*rest}", get(native::handle).post(native::handle))
        .route(
            "/agent/v1/register",
            axum::routing::post(agent_api::register),
        )
        .route("/agent/v1/desired", get(agent_api::desired))
        .route("/agent/v1/report", axum::routing::post(agent_api::report))
        .with_state(state)
        // A bug must cost one request an InternalError, never the connection or the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            aliyun::panic_response,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
}

/// Both vendor dialects share the listener's `/`.
async fn vendor_api(
    State(state): State<Arc<AppState>>,
    req: axum::http::Request<axum::body::Body>,
) -> axum::response::Response {
    let dialect = Dialect::detect(req.headers(), req.uri().query());
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("keyplane")
        .to_string();
    let wire = wire::WireRequest::read(req, state.config.max_body_bytes).await;
    match dialect {
        Dialect::Aliyun => aliyun::handle(&state, wire, &host).await,
        Dialect::Ram => ram_api::handle(&state, wire, &host).await,
        Dialect::Volc => volc::handle(&state, wire).await,
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> (axum::http::StatusCode, &'static str) {
    match state.store.default_account().await {
        Ok(Some(_)) => (axum::http::StatusCode::OK, "ok\n"),
        _ => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
    }
}

/// Periodic work kept off the request path: flushing and purging nonces, finishing transitions.
fn spawn_background(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            if let Err(e) = state.nonces.flush().await {
                tracing::warn!(error = %e, "nonce flush failed; will retry");
            }
            if n.is_multiple_of(600) {
                state.nonces.purge().await;
            }
            if !state.config.transition_delay.is_zero() {
                if let Err(e) = state.store.complete_transitions(chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "completing transitions failed; will retry");
                }
            }
        }
    })
}
