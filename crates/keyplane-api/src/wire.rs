//! The HTTP request as the dialects and the verifier see it: bounded body, form-decoded query and
//! body (empty values kept, non-UTF-8 refused), lower-case header names.

use axum::body::Body;
use axum::http::Request;
use keyplane_sig::params::{decode_form, NotUtf8};

/// Why a request could not even be read.
#[derive(Debug)]
pub enum WireError {
    BodyTooLarge(usize),
    NotUtf8(String),
    Unreadable,
    /// A body that is not a form. Every action takes its parameters from the query or a form, and
    /// a body whose meaning depends on an unsigned `Content-Type` would let a header on the way
    /// change what a V3 signature (which covers only the body's hash) means.
    NotAForm,
}

impl From<NotUtf8> for WireError {
    fn from(e: NotUtf8) -> Self {
        Self::NotUtf8(e.0)
    }
}

pub struct WireRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The TCP peer, for `acs:SourceIp` and the audit log.
    pub peer: Option<std::net::SocketAddr>,
}

impl WireRequest {
    pub async fn read(req: Request<Body>, max_body: usize) -> Result<Self, WireError> {
        let (parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Err(WireError::BodyTooLarge(max_body));
        }
        let body = axum::body::to_bytes(body, max_body)
            .await
            .map_err(|_| WireError::BodyTooLarge(max_body))?
            .to_vec();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let is_form = headers.iter().any(|(n, v)| {
            n == "content-type" && v.starts_with("application/x-www-form-urlencoded")
        });
        let query = decode_form(parts.uri.query().unwrap_or("").as_bytes())?;
        let form = if is_form {
            decode_form(&body)?
        } else if body.is_empty() {
            Vec::new()
        } else {
            return Err(WireError::NotAForm);
        };
        Ok(Self {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query,
            form,
            headers,
            body,
            peer,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter from the query, else the form body.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The action and API version an Alibaba-signed call asks for, read only from what its scheme
    /// signs (see [`keyplane_sig::alibaba::selector`]).
    pub fn alibaba_selector(&self) -> keyplane_sig::alibaba::Selector<'_> {
        keyplane_sig::alibaba::selector(&self.sig_view())
    }

    /// The request as the signature verifier sees it.
    pub fn sig_view(&self) -> keyplane_sig::alibaba::SignedRequest<'_> {
        keyplane_sig::alibaba::SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            form: &self.form,
            headers: &self.headers,
            body: &self.body,
        }
    }
}
