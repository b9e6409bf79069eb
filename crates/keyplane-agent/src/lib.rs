//! The guest agent (`keyplane agent`): registers a Linux host once, then reconciles. It long-polls
//! the server for the desired state, applies it at start (boot) and when the server signals a start
//! or reboot, and reports what is really in effect.
//!
//! Every file edit is a pure `old text → new text` function ([`transform`]); writes are atomic and
//! never follow a symlink under the user's home ([`files`]); sshd is checked with `sshd -t` before
//! any reload and read back with `sshd -T` ([`sshd`]); [`apply`] puts them together so that password
//! login is never turned off unless the key is in place and sshd accepted the config. A password
//! reset arrives as a crypt hash and is set with `chpasswd -e` ([`password`]).

pub mod apply;
pub mod client;
pub mod config;
pub mod error;
pub mod files;
pub mod grants;
pub mod metrics;
pub mod password;
pub mod run;
pub mod sshd;
pub mod transform;
pub mod transport;

pub use config::AgentConfig;
pub use error::HostError;
