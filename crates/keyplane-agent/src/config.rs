//! The agent's configuration: a TOML file (`--config`) and flags, flags winning.

use std::path::PathBuf;

use serde::Deserialize;

/// Everything the agent needs; see `docs/AGENT.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The keyplane server, e.g. `https://keyplane.internal:8443`. Plain `http://` only to a
    /// loopback address, unless `insecure_http`.
    pub server: String,
    /// Trust only the CA certificates in this PEM file (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Allow plain `http://` to a server that is not on this host: the registration token and the
    /// agent's credential then cross the network in clear.
    pub insecure_http: bool,
    /// A one-time registration token (needed only until the agent has registered).
    pub token: Option<String>,
    /// Where the instance ID and the credential are kept (0700; the credential 0600).
    pub state_dir: PathBuf,
    /// The user whose `~/.ssh/authorized_keys` is managed; default: what the server says.
    pub login_user: Option<String>,
    pub passwd_file: PathBuf,
    pub sshd_config: PathBuf,
    pub sshd_dropin_dir: PathBuf,
    pub sshd_bin: PathBuf,
    /// Run after `sshd -t` passed and the sshd files changed.
    pub reload_command: String,
    /// false: manage keys only, never sshd's configuration.
    pub manage_sshd: bool,
    /// Apply a change as soon as it is seen instead of at the next start or reboot.
    pub apply_online: bool,
    /// Seconds between periodic checks of what is in effect.
    pub check_interval_secs: u64,
    /// Sets a reset password from its crypt hash (`chpasswd -e`, hash on stdin).
    pub chpasswd_bin: PathBuf,
    /// Read back after `chpasswd` to confirm the hash is in effect.
    pub shadow_file: PathBuf,
    /// Serve the agent's Prometheus metrics at `GET /metrics` on this address (off when unset).
    pub metrics_listen: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: "http://127.0.0.1:8080".into(),
            ca_file: None,
            insecure_http: false,
            token: None,
            state_dir: "/var/lib/keyplane-agent".into(),
            login_user: None,
            passwd_file: "/etc/passwd".into(),
            sshd_config: "/etc/ssh/sshd_config".into(),
            sshd_dropin_dir: "/etc/ssh/sshd_config.d".into(),
            sshd_bin: "/usr/sbin/sshd".into(),
            reload_command: "systemctl reload ssh || systemctl reload sshd".into(),
            manage_sshd: true,
            apply_online: false,
            check_interval_secs: 60,
            chpasswd_bin: "/usr/sbin/chpasswd".into(),
            shadow_file: "/etc/shadow".into(),
            metrics_listen: None,
        }
    }
}

impl AgentConfig {
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(toml::from_str(&text)?)
    }

    /// How the agent reaches the server.
    pub fn transport(&self) -> crate::transport::Transport {
        crate::transport::Transport {
            ca_file: self.ca_file.clone(),
            insecure_http: self.insecure_http,
        }
    }

    /// The drop-in that sorts first: sshd keeps the first value it reads.
    pub fn dropin_path(&self) -> PathBuf {
        self.sshd_dropin_dir.join("00-keyplane.conf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_example_file_parses_and_unknown_keys_are_refused() {
        let example = include_str!("../../../packaging/agent.toml");
        let cfg: AgentConfig = toml::from_str(example).unwrap();
        assert_eq!(cfg.server, "https://keyplane.internal:8443");
        assert_eq!(cfg.ca_file, Some(PathBuf::from("/etc/keyplane/ca.pem")));
        assert!(!cfg.insecure_http);
        assert!(cfg.manage_sshd && !cfg.apply_online);
        assert_eq!(
            cfg.dropin_path(),
            PathBuf::from("/etc/ssh/sshd_config.d/00-keyplane.conf")
        );
        assert!(toml::from_str::<AgentConfig>("sever = \"typo\"").is_err());
    }

    /// The file's commented keys say "this is the default": they must be.
    #[test]
    fn the_packaged_example_file_comments_out_exactly_the_defaults() {
        let example = include_str!("../../../packaging/agent.toml");
        let uncommented: Vec<&str> = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect();
        let mut shown: AgentConfig = toml::from_str(&uncommented.join("\n")).unwrap();
        // Unset by default; the file shows an example value.
        assert_eq!(shown.login_user.take().as_deref(), Some("root"));
        assert!(shown.metrics_listen.take().is_some());
        let set: AgentConfig = toml::from_str(example).unwrap();
        let defaults = AgentConfig {
            server: set.server,
            ca_file: set.ca_file,
            token: set.token,
            ..AgentConfig::default()
        };
        assert_eq!(format!("{shown:?}"), format!("{defaults:?}"));
    }
}
