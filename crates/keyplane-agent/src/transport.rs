//! How a keyplane client reaches its server (SPEC section 10): HTTPS trusting the system's roots or
//! one pinned CA, and plain HTTP only to this host unless the operator says `--insecure-http`.
//! Registration tokens, agent credentials and signed calls must never cross a network in clear.
//!
//! The agent and the CLI (`keyplane ecs|admin`) share this module, so both apply the same rule.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// The TLS settings of a client: flags, environment or the agent's config file.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// Trust only the CA certificates in this PEM file instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow plain `http://` to a host that is not this one.
    pub insecure_http: bool,
}

/// Parses `server` and refuses a URL that would send secrets in clear: `http://` to anything but
/// a loopback address (127.0.0.0/8, ::1, `localhost`) without `insecure_http`.
///
/// A URL without a scheme (`127.0.0.1:8080`, the form the SDKs' `endpoint` takes beside a separate
/// protocol setting) is refused with the fix rather than guessed: `http://` would be wrong for a
/// server with TLS on this host, `https://` for a plain one, and either guess would surface as a
/// TLS or connection error far from its cause.
pub fn check_url(server: &str, insecure_http: bool) -> anyhow::Result<reqwest::Url> {
    if !server.contains("://") {
        bail!(
            "{server:?} has no scheme: add https:// or http:// (http:// only to this host), \
             e.g. https://{server} or http://{server}"
        );
    }
    let url = reqwest::Url::parse(server).with_context(|| format!("bad server URL {server:?}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if insecure_http || is_loopback(&url) => Ok(url),
        "http" => bail!(
            "refusing plain http:// to {}: credentials would cross the network in clear. \
             Use https:// (with --ca-file for a private CA), or pass --insecure-http to accept \
             the risk",
            url.host_str().unwrap_or("")
        ),
        other => bail!("unsupported scheme {other:?} in {server:?}: use https:// or http://"),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

impl Transport {
    /// An HTTP client for `server` built from `builder`, after [`check_url`]. With an `https://`
    /// server it speaks nothing but HTTPS (no redirect can downgrade it); a certificate that does
    /// not verify fails the call.
    pub fn client(
        &self,
        server: &str,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::Client> {
        let url = check_url(server, self.insecure_http)?;
        let mut builder = builder.use_rustls_tls().https_only(url.scheme() == "https");
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("reading the CA file {}", path.display()))?;
            if certs.is_empty() {
                bail!("the CA file {} holds no PEM certificate", path.display());
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build().context("building the HTTPS client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_to_anything_but_this_host() {
        for allowed in [
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://LOCALHOST",
            "https://10.1.2.3",
            "https://keyplane.example.com",
        ] {
            assert!(check_url(allowed, false).is_ok(), "{allowed}");
        }
        for refused in [
            "http://10.1.2.3",
            "http://10.1.2.3:8080",
            "http://keyplane.internal:8080",
            "http://localhost.evil.example",
            "http://[::2]",
            "http://0.0.0.0:8080",
        ] {
            let err = check_url(refused, false).unwrap_err().to_string();
            assert!(err.contains("--insecure-http"), "{refused}: {err}");
            assert!(check_url(refused, true).is_ok(), "{refused}");
        }
        assert!(check_url("ftp://127.0.0.1", true).is_err());
        for bare in ["127.0.0.1:8080", "localhost:8080", "keyplane.internal"] {
            let err = check_url(bare, true).unwrap_err().to_string();
            assert!(
                err.contains("add https:// or http://") && err.contains(&format!("http://{bare}")),
                "{bare}: {err}"
            );
        }
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let t = Transport {
            ca_file: Some(path),
            insecure_http: false,
        };
        let err = t
            .client("https://127.0.0.1", reqwest::Client::builder())
            .unwrap_err();
        assert!(format!("{err:#}").contains("ca.pem"), "{err:#}");
        let missing = Transport {
            ca_file: Some(dir.path().join("missing.pem")),
            insecure_http: false,
        };
        let err = missing
            .client("https://127.0.0.1", reqwest::Client::builder())
            .unwrap_err();
        assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
    }
}
