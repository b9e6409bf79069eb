//! What every Alibaba Cloud API shares: the V1/V3 signatures, the envelope (`RequestId`, `Code`,
//! `Message`, JSON or `Format=XML`) and the error codes. The ECS dialect ([`crate::aliyun`]), the
//! RAM API ([`crate::ram_api`]) and the console's actions are each an [`Acs`] with their own
//! version and action table.

pub mod error;
pub mod render;

use axum::response::Response;
use futures_util::future::BoxFuture;
use keyplane_core::CoreError;

use crate::actions::{self, Action};
use crate::auth;
use crate::pipeline::{Ctx, Dialect, Handler, Head, Meta};
use crate::reply::Reply;
use crate::wire::WireRequest;
use crate::AppState;
use error::AliError;
use render::Format;

/// One Alibaba Cloud API on the shared listener.
pub struct Acs {
    pub name: &'static str,
    pub version: &'static str,
    pub actions: &'static [Action<Handler>],
    /// Whether reads pass the RAM gate too, and calls of unknown actions are audited: the RAM
    /// API's rules.
    pub strict: bool,
    /// Whether writes honour a ClientToken (keyplane's addition on ECS, SPEC section 3), and the
    /// name their tokens are scoped by.
    pub tokens: Option<&'static str>,
    /// For `HostId` in errors.
    pub host: String,
    pub format: Format,
}

impl Dialect for Acs {
    type Error = AliError;

    fn name(&self) -> &'static str {
        self.name
    }

    fn actions(&self) -> &'static [Action<Handler>] {
        self.actions
    }

    fn read<'a>(
        &'a self,
        state: &'a AppState,
        wire: &'a WireRequest,
        meta: &'a mut Meta,
    ) -> BoxFuture<'a, Result<Head, AliError>> {
        Box::pin(async move {
            // What runs is only what the signature covers: see `WireRequest::alibaba_selector`.
            let selected = wire.alibaba_selector();
            meta.action = selected.action.unwrap_or("").to_string();
            meta.access_key_id = keyplane_sig::alibaba::claim(&wire.sig_view())
                .map(|c| c.access_key_id)
                .unwrap_or_default();
            if selected.version != Some(self.version) {
                return Err(AliError::invalid_version());
            }
            let caller = auth::alibaba(state, wire).await?;
            if meta.action.is_empty() {
                return Err(CoreError::missing("Action").into());
            }
            Ok(Head {
                caller,
                region: None,
            })
        })
    }

    fn unknown_action(&self, action: &str) -> AliError {
        AliError::invalid_action(action, &actions::names(self.actions))
    }

    fn gates_reads(&self) -> bool {
        self.strict
    }

    fn audits_unknown_actions(&self) -> bool {
        self.strict
    }

    fn idempotency(&self, _: &Ctx<'_>) -> Option<(&'static str, String)> {
        self.tokens.map(|scope| (scope, scope.to_string()))
    }

    fn code(&self, e: &AliError) -> String {
        e.code.to_string()
    }

    fn success(&self, meta: &Meta, reply: Reply) -> Response {
        render::success(&meta.action, &meta.request_id, reply, self.format)
    }

    fn failure(&self, meta: &Meta, e: &AliError) -> Response {
        tracing::info!(
            request_id = %meta.request_id,
            action = %meta.action,
            access_key_id = %meta.access_key_id,
            code = e.code,
            status = e.status.as_u16(),
            "failed"
        );
        let mut r = render::error(e, &meta.request_id, &self.host, self.format);
        if e.code == "Throttling" {
            // The Tea SDK turns this header into a ThrottlingException with a retry delay (ms).
            r.headers_mut().insert(
                "x-acs-retry-after",
                axum::http::HeaderValue::from_static("1000"),
            );
        }
        r
    }
}

/// The response to a handler that panicked: a vendor InternalError, the details in the log.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let request_id = keyplane_core::ids::new_request_id();
    tracing::error!(%request_id, "a request handler panicked");
    render::error(&error::internal(), &request_id, "keyplane", Format::Json)
}
