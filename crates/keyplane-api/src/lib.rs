//! keyplane's HTTP server: one listener, shared plumbing (body limit, form decoding, signature and
//! replay checks), then one module per vendor dialect that parses the wire into core calls and
//! renders results and errors in its own envelope.
//!
//! Request flow: accept → [`wire::WireRequest`] → dialect recognised → [`pipeline`]: the dialect
//! reads the call and [`auth`] verifies its signature and replay window, then throttle, RAM gate,
//! ClientToken, the action's handler (→ [`ops`] → store), the dialect's envelope, audit.

pub mod acs;
pub mod actions;
pub mod agent_api;
pub mod aliyun;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod clock;
pub mod config;
pub mod console;
pub mod cpu;
pub mod emulator;
pub mod grants;
pub mod idempotency;
pub mod listener;
pub mod metrics;
pub mod native;
pub mod nonces;
pub mod ops;
pub mod page_token;
pub mod params;
pub mod pipeline;
pub mod ram_api;
pub mod registration_tokens;
pub mod reply;
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
    /// Failed console sign-ins per source address.
    pub sign_in_guard: console::guard::SignInGuard,
    /// Whether the store's writes are failing (read-only, full), for `/healthz`.
    pub writes: WriteHealth,
    /// Password hashing and key generation, bounded (SPEC section 6).
    pub cpu: cpu::CpuQueue,
    pub metrics: metrics::Metrics,
    /// The simulated clock of timed rules (real time unless an emulator moves it).
    pub clock: clock::Clock,
    /// The emulator's faults, when the server runs as one (`--emulator`).
    pub emulator: Option<emulator::Emulator>,
}

impl AppState {
    /// The state a server over `store` starts with (nonces loaded from the store).
    pub async fn new(store: Arc<dyn Store>, config: ServerConfig) -> anyhow::Result<Arc<Self>> {
        let nonces = nonces::NonceCache::load(store.clone()).await?;
        let throttle =
            throttle::Throttle::new(config.throttle_per_second, config.throttle_burst, &store);
        Ok(Arc::new(AppState {
            store,
            nonces,
            throttle,
            agents: agent_api::AgentHub::default(),
            sessions: console::Sessions::default(),
            sign_in_guard: console::guard::SignInGuard::default(),
            writes: WriteHealth::default(),
            cpu: cpu::CpuQueue::default(),
            metrics: metrics::Metrics::default(),
            clock: clock::Clock::default(),
            emulator: config.emulator.then(emulator::Emulator::default),
            config,
        }))
    }
}

/// Which vendor dialect a request speaks (SPEC section 11): from the signature scheme, then the
/// API version where that scheme signs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Aliyun,
    /// The Alibaba RAM API (2015-05-01), same signatures and envelope as `Aliyun`.
    Ram,
    Volc,
}

impl Dialect {
    /// `authorization` names the scheme: Volcengine's `HMAC-SHA256`, Alibaba V3 (whose version is
    /// the signed `x-acs-version` header), or none, when the version is the `Version` parameter
    /// (V1 signs it; an unsigned call fails authentication in the dialect it names). A V1 call is
    /// never steered by an `x-acs-version` header, which V1 does not sign.
    pub fn detect(
        authorization: Option<&str>,
        x_acs_version: Option<&str>,
        version_param: Option<&str>,
    ) -> Self {
        let by_version = |v: Option<&str>| match v {
            Some(ram_api::VERSION) => Self::Ram,
            Some(volc::VERSION) => Self::Volc,
            _ => Self::Aliyun,
        };
        match authorization {
            Some(a) if a.starts_with("HMAC-SHA256 ") => Self::Volc,
            Some(a) if a.starts_with("ACS3-") => match by_version(x_acs_version) {
                Self::Volc => Self::Aliyun,
                d => d,
            },
            _ => by_version(version_param),
        }
    }

    fn of(wire: &wire::WireRequest) -> Self {
        let authorization = wire.header("authorization");
        Self::detect(
            authorization,
            wire.header("x-acs-version"),
            wire.param("Version"),
        )
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests and flushes the nonce log.
pub async fn serve(
    store: Arc<dyn Store>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_metrics(store, config, listener, None, shutdown).await
}

/// [`serve`], and `GET /metrics` on `metrics` when given (SPEC section 11: a listener of its
/// own, so the API's port never exposes them).
pub async fn serve_with_metrics(
    store: Arc<dyn Store>,
    config: ServerConfig,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    store.complete_transitions(chrono::Utc::now()).await?;
    let state = AppState::new(store.clone(), config).await?;
    agent_api::forward_announcements(state.clone()).await?;
    let (stop_background, background) = spawn_background(state.clone());
    let metrics_task = metrics.map(|l| {
        let app = metrics::router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    });
    let app = router(state.clone());
    listener::run(listener, app, &state.config, shutdown).await?;
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = stop_background.send(());
    let _ = background.await;
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
        .route(
            "/api/v1/{*rest}",
            get(native::handle)
                .post(native::handle)
                .delete(native::handle),
        )
        .route(
            "/agent/v1/register",
            axum::routing::post(agent_api::register),
        )
        .route("/agent/v1/desired", get(agent_api::desired))
        .route("/agent/v1/report", axum::routing::post(agent_api::report))
        .with_state(state)
        // A bug must cost one request an InternalError, never the connection or the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            acs::panic_response,
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
    if is_browser_visit(&req) {
        use axum::response::IntoResponse;
        // A person who typed the server's address: the API has nothing to show them, the console
        // does. No SDK sends this (every call has a query string or an Authorization header).
        return axum::response::Redirect::to("/console/").into_response();
    }
    let (host, unread) = {
        let header = |name: &str| req.headers().get(name).and_then(|h| h.to_str().ok());
        let version = req
            .uri()
            .query()
            .and_then(|q| keyplane_sig::params::decode_form(q.as_bytes()).ok())
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "Version"))
            .map(|(_, v)| v);
        (
            header("host").unwrap_or("keyplane").to_string(),
            // Only for the envelope of a request that cannot even be read; a readable one is
            // recognised from its parsed parameters, form body included.
            Dialect::detect(
                header("authorization"),
                header("x-acs-version"),
                version.as_deref(),
            ),
        )
    };
    let wire = wire::WireRequest::read(req, state.config.max_body_bytes).await;
    let dialect = wire.as_ref().map_or(unread, Dialect::of);
    let format =
        acs::render::Format::from_param(wire.as_ref().ok().and_then(|w| w.param("Format")));
    guarded(dialect, async {
        match dialect {
            Dialect::Aliyun => pipeline::serve(&aliyun::dialect(&host, format), &state, wire).await,
            Dialect::Ram => pipeline::serve(&ram_api::dialect(&host, format), &state, wire).await,
            Dialect::Volc => pipeline::serve(&volc::Volc, &state, wire).await,
        }
    })
    .await
}

/// `answer`, or, should it panic, the dialect's own InternalError in the dialect's own envelope:
/// a bug costs the one call a 500 its SDK understands (the router's panic layer, the last
/// resort for every other route, knows no dialect).
async fn guarded(
    dialect: Dialect,
    answer: impl std::future::Future<Output = axum::response::Response>,
) -> axum::response::Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
        Ok(response) => response,
        Err(_) => match dialect {
            Dialect::Volc => volc::panic_response(),
            Dialect::Aliyun | Dialect::Ram => acs::panic_response(Box::new(())),
        },
    }
}

/// A plain `GET /` from a browser: no parameters, no signature, and HTML accepted.
fn is_browser_visit(req: &axum::http::Request<axum::body::Body>) -> bool {
    let headers = req.headers();
    req.method() == axum::http::Method::GET
        && req.uri().query().is_none_or(str::is_empty)
        && !headers.contains_key(axum::http::header::AUTHORIZATION)
        && headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

/// Whether the store's writes are failing: set when a call answers `ServiceUnavailable` (the
/// store maps a read-only or full database, or one out of reach, to it), cleared when a write
/// succeeds again, by a call or by `/healthz`'s own probe.
#[derive(Default)]
pub struct WriteHealth {
    failing: std::sync::atomic::AtomicBool,
}

impl WriteHealth {
    pub fn observe(&self, mutating: bool, result: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        if result == "ServiceUnavailable" {
            self.failing.store(true, Relaxed);
        } else if mutating && result.starts_with("OK") {
            self.failing.store(false, Relaxed);
        }
    }

    fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Ready means the store answers and takes writes, with room to write (SQLite: at least 1 MiB free
/// on its file system). A read-only store fails even a write that
/// changes nothing (the delete below); a full one fails only writes that need space, so after
/// writes have failed the probe writes a row (a throw-away nonce, purged with the others) and the
/// server is ready again only when that succeeds.
async fn healthz(State(state): State<Arc<AppState>>) -> (axum::http::StatusCode, &'static str) {
    let not_writable = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "not ready: the store cannot be written\n",
    );
    match state.store.default_account().await {
        Ok(Some(_)) => {}
        _ => return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
    }
    // Less than this left and the next checkpoint or batch may not fit: say so before it fails.
    const LOW_SPACE: u64 = 1024 * 1024;
    if state
        .store
        .free_bytes()
        .is_some_and(|free| free < LOW_SPACE)
    {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not ready: less than 1 MiB free where the store writes\n",
        );
    }
    if state
        .store
        .purge_nonces(chrono::DateTime::UNIX_EPOCH)
        .await
        .is_err()
    {
        return not_writable;
    }
    if state.writes.failing() {
        let probe = (
            "keyplane:healthz".to_string(),
            uuid::Uuid::new_v4().to_string(),
            chrono::Utc::now(),
        );
        if state.store.record_nonces(&[probe]).await.is_err() {
            return not_writable;
        }
        state.writes.observe(true, "OK");
    }
    if state.emulator.is_some() {
        return (axum::http::StatusCode::OK, "ok: emulator mode\n");
    }
    (axum::http::StatusCode::OK, "ok\n")
}

/// Periodic work kept off the request path: flushing and purging nonces, finishing transitions.
/// Stopped through the returned sender between two rounds, never cancelled inside one: a flush
/// cut off after it took its batch would lose those nonces, and with them replay protection
/// across the restart that follows.
fn spawn_background(
    state: Arc<AppState>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => return,
            }
            n += 1;
            if let Err(e) = state.nonces.flush().await {
                tracing::warn!(error = %e, "nonce flush failed; will retry");
            }
            if n.is_multiple_of(600) {
                housekeeping(&state).await;
            }
            if n.is_multiple_of(10) {
                purge_audit(&state).await;
                grants::expire(&state).await;
            }
            if !state.config.transition_delay.is_zero() || state.emulator.is_some() {
                if let Err(e) = state.store.complete_transitions(state.clock.now()).await {
                    tracing::warn!(error = %e, "completing transitions failed; will retry");
                }
            }
        }
    });
    (stop, task)
}

/// Audit records the retention purge deletes at a time, once a second: a short transaction
/// (a few milliseconds) that never holds the writer long, and up to 60,000 records a minute,
/// so a backlog (a retention just shortened) drains over some minutes instead of in one stall.
const AUDIT_PURGE_BATCH: u32 = 1_000;

/// The minute's chores: forgets what has outlived its window (signature nonces, ClientTokens
/// after 24 hours on the simulated clock) and idle in-memory state.
pub async fn housekeeping(state: &AppState) {
    state.nonces.purge().await;
    state.sign_in_guard.forget_idle();
    state.throttle.forget_idle();
    let tokens_before = state.clock.now() - chrono::Duration::hours(idempotency::RETENTION_HOURS);
    if let Err(e) = state.store.purge_tokens(tokens_before).await {
        tracing::warn!(error = %e, "purging ClientTokens failed; will retry");
    }
}

/// With a retention set, deletes up to [`AUDIT_PURGE_BATCH`] audit records older than it; the
/// count deleted. Runs once a second.
pub async fn purge_audit(state: &AppState) -> u64 {
    let Some(age) = state
        .config
        .audit_retention
        .and_then(|r| chrono::Duration::from_std(r).ok())
    else {
        return 0;
    };
    match state
        .store
        .purge_audit(chrono::Utc::now() - age, AUDIT_PURGE_BATCH)
        .await
    {
        Ok(n) => {
            if n > 0 {
                tracing::debug!(purged = n, "deleted audit records past the retention");
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "purging old audit records failed; will retry");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: axum::response::Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A handler that panics answers in its caller's dialect: the Volcengine SDK reads
    /// `ResponseMetadata.Error`, the Alibaba ones a top-level `Code` with a `RequestId`.
    #[tokio::test]
    async fn a_panicking_handler_answers_in_its_dialects_envelope() {
        let (status, volc) = body_of(guarded(Dialect::Volc, async { panic!("a bug") }).await).await;
        assert_eq!(status, 500);
        assert_eq!(volc["ResponseMetadata"]["Error"]["Code"], "InternalError");
        assert!(volc["ResponseMetadata"]["RequestId"].as_str().is_some());
        for dialect in [Dialect::Aliyun, Dialect::Ram] {
            let (status, ali) = body_of(guarded(dialect, async { panic!("a bug") }).await).await;
            assert_eq!(status, 500);
            assert_eq!(ali["Code"], "InternalError");
            assert!(ali["RequestId"].as_str().is_some());
        }
        let (status, _) = body_of(
            guarded(Dialect::Volc, async {
                axum::response::IntoResponse::into_response(axum::Json(serde_json::json!({})))
            })
            .await,
        )
        .await;
        assert_eq!(status, 200, "an answer that did not panic passes through");
    }
}
