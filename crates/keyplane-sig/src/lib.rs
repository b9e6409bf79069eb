//! Request signatures of the vendor dialects, as pure functions.
//!
//! The server side parses the wire into a [`SignedRequest`] view, asks [`alibaba::verify`] whether
//! the signature matches the secret of the claimed AccessKey, and gets back which key signed, with
//! which nonce and timestamp; replay and clock checks need state and live in the API layer.
//! The client side ([`alibaba::sign_v3`]) is what the CLI and the tests use to call a server.

pub mod alibaba;
pub mod encode;
pub mod params;
mod secret;
pub mod volc;

pub use secret::SecretKey;

/// What the verifier needs to know of an HTTP request, already form-decoded.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded query pairs; V3 signs only these.
    pub query: &'a [(String, String)],
    /// Decoded form-body pairs; V1 signs them together with the query.
    pub form: &'a [(String, String)],
    /// Header names lower-case, values as received.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request's signature could not be accepted. Each maps to a vendor error in the API layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No signature at all: neither an `Authorization` header nor a `Signature` parameter.
    #[error("the request carries no signature")]
    Missing,
    /// A signature element is absent or malformed (the named part).
    #[error("the signature element {0} is missing or malformed")]
    Incomplete(&'static str),
    /// The algorithm or version named by the client is not one we verify.
    #[error("unsupported signature method {0}")]
    UnsupportedMethod(String),
    /// The body does not hash to the value the client signed (`x-acs-content-sha256`).
    #[error("the payload hash does not match the body")]
    PayloadHashMismatch,
    /// Recomputed signature differs. Carries our string to sign, which the vendor echoes back.
    #[error("signature mismatch")]
    Mismatch { string_to_sign: String },
}
