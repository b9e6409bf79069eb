//! The server's settings, with the defaults of SPEC sections 7 and 10.

use std::time::Duration;

use keyplane_core::secretbox::ServerKey;

/// Limits and behaviour of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a simulated instance stays in a transitional status (Starting, Stopping, …).
    pub transition_delay: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// How far a signed timestamp may be from the server clock.
    pub max_clock_skew: Duration,
    /// How long a signature nonce stays used.
    pub nonce_window: Duration,
    /// How long one request may take before the server gives up on it.
    pub request_timeout: Duration,
    /// Calls per second allowed per AccessKey and action (0: no throttling), and the burst.
    pub throttle_per_second: u32,
    pub throttle_burst: u32,
    /// Seals and opens the AccessKey secrets kept in the store.
    pub server_key: ServerKey,
    /// Clients reach this server over HTTPS (it serves TLS itself, or sits behind a TLS-terminating
    /// proxy): console cookies are then marked `Secure`.
    pub https: bool,
    /// Serve HTTPS with this certificate (reloadable); `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsCerts>,
    /// Connections open at once; the next waits in the listen backlog until one closes. Keep it
    /// below the process's file-descriptor limit (`ulimit -n`) less what the store needs.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle between requests (hyper runs one timer for both).
    pub header_read_timeout: Duration,
    /// How long a client may take to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long a write to a client may make no progress: a client that stops reading its
    /// answers (pipelining requests it never reads) would otherwise hold its connection forever.
    pub write_timeout: Duration,
    /// How long audit records are kept; `None` keeps them forever (the default, as before the
    /// setting existed).
    pub audit_retention: Option<Duration>,
    /// Emulator mode (SPEC section 14): fault injection, the clock, snapshots. Never on a
    /// deployment with real hosts.
    pub emulator: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            transition_delay: Duration::ZERO,
            max_body_bytes: 1024 * 1024,
            max_clock_skew: Duration::from_secs(15 * 60),
            nonce_window: Duration::from_secs(15 * 60),
            request_timeout: Duration::from_secs(30),
            throttle_per_second: 1000,
            throttle_burst: 2000,
            server_key: ServerKey::generate(),
            https: false,
            tls: None,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            audit_retention: None,
            emulator: false,
        }
    }
}
