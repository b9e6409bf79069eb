//! Logging for `serve` and `agent`: `tracing` to stderr, filtered by `KEYPLANE_LOG` (default
//! `info`), as text or JSON lines.
//!
//! Colour only on a terminal: a log written to a file, a pipe or the journal must stay plain text
//! that grep and log shippers read as written, so ANSI escapes are off unless stderr is a terminal
//! (and `NO_COLOR` is unset, <https://no-color.org>).

use std::io::IsTerminal;

/// Whether log lines may carry ANSI colour codes.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the process's log subscriber.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!json && colour());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
