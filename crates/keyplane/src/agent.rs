//! `keyplane agent`: the guest agent on a real Linux host. Flags override the `--config` file,
//! which overrides the defaults shown in `--help` (those of [`AgentConfig::default`], checked by a
//! test below).

use std::path::PathBuf;

use anyhow::Context;
use keyplane_agent::AgentConfig;

#[derive(clap::Args)]
#[command(after_help = "\
Every flag has a key of the same name in the --config file (underscores for dashes; --keys-only \
is manage_sshd = false, --check-interval is check_interval_secs); a flag wins over the file. \
KEYPLANE_LOG sets the log filter (default info); logs go to stderr, coloured only on a terminal. \
docs/AGENT.md has the whole reference.")]
pub struct AgentArgs {
    /// A TOML file with the settings below, e.g. /etc/keyplane/agent.toml (see
    /// packaging/agent.toml); unknown keys are refused. Without it: the flags, else the defaults
    /// shown here.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The keyplane server URL, e.g. https://keyplane.internal:8443 (plain http:// only to this
    /// host) [default: http://127.0.0.1:8080]
    #[arg(long)]
    server: Option<String>,
    /// Trust only the CA certificates in this PEM file instead of the system's roots.
    #[arg(long, env = "KEYPLANE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on this host (the registration token and the
    /// credential then cross the network in clear).
    #[arg(long)]
    insecure_http: bool,
    /// One-time registration token (`keyplane admin registration-token create`); needed only
    /// until the agent has registered.
    #[arg(long, env = "KEYPLANE_AGENT_TOKEN")]
    token: Option<String>,
    /// Where the instance ID and the credential are kept [default: /var/lib/keyplane-agent]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The user whose authorized_keys is managed [default: the instance's login user, root]
    #[arg(long)]
    login_user: Option<String>,
    /// Where the login user is looked up [default: /etc/passwd]
    #[arg(long)]
    passwd_file: Option<PathBuf>,
    /// sshd's main configuration file [default: /etc/ssh/sshd_config]
    #[arg(long)]
    sshd_config: Option<PathBuf>,
    /// The directory sshd_config includes; the agent's drop-in 00-keyplane.conf goes there
    /// [default: /etc/ssh/sshd_config.d]
    #[arg(long)]
    sshd_dropin_dir: Option<PathBuf>,
    /// The sshd binary, run as `sshd -t` (test) and `sshd -T` (effective settings)
    /// [default: /usr/sbin/sshd]
    #[arg(long)]
    sshd_bin: Option<PathBuf>,
    /// Run after `sshd -t` passed, to make sshd read its new configuration
    /// [default: systemctl reload ssh || systemctl reload sshd]
    #[arg(long)]
    reload_command: Option<String>,
    /// Manage keys only, never sshd's configuration: a binding is `applied` once its key is in
    /// authorized_keys where sshd accepts it; password login stays as sshd has it.
    #[arg(long)]
    keys_only: bool,
    /// Apply changes at once instead of at the next start or reboot.
    #[arg(long)]
    apply_online: bool,
    /// Seconds between checks of what is in effect [default: 60]
    #[arg(long)]
    check_interval: Option<u64>,
    /// Sets a reset password from its crypt hash (run as `chpasswd -e`)
    /// [default: /usr/sbin/chpasswd]
    #[arg(long)]
    chpasswd_bin: Option<PathBuf>,
    /// Read back to confirm a reset password is in effect [default: /etc/shadow]
    #[arg(long)]
    shadow_file: Option<PathBuf>,
    /// Serve the agent's Prometheus metrics at `GET /metrics` on this address, e.g.
    /// 127.0.0.1:9101 (off when unset)
    #[arg(long)]
    metrics_listen: Option<String>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::logging::init(false);
    let mut cfg = match &args.config {
        Some(path) => AgentConfig::from_file(path)
            .with_context(|| format!("reading the agent configuration {}", path.display()))?,
        None => AgentConfig::default(),
    };
    if let Some(v) = args.server {
        cfg.server = v;
    }
    if args.ca_file.is_some() {
        cfg.ca_file = args.ca_file;
    }
    if args.insecure_http {
        cfg.insecure_http = true;
    }
    if args.token.is_some() {
        cfg.token = args.token;
    }
    if let Some(v) = args.state_dir {
        cfg.state_dir = v;
    }
    if args.login_user.is_some() {
        cfg.login_user = args.login_user;
    }
    if let Some(v) = args.passwd_file {
        cfg.passwd_file = v;
    }
    if let Some(v) = args.sshd_config {
        cfg.sshd_config = v;
    }
    if let Some(v) = args.sshd_dropin_dir {
        cfg.sshd_dropin_dir = v;
    }
    if let Some(v) = args.sshd_bin {
        cfg.sshd_bin = v;
    }
    if let Some(v) = args.reload_command {
        cfg.reload_command = v;
    }
    if args.keys_only {
        cfg.manage_sshd = false;
    }
    if args.apply_online {
        cfg.apply_online = true;
    }
    if let Some(v) = args.check_interval {
        cfg.check_interval_secs = v;
    }
    if let Some(v) = args.chpasswd_bin {
        cfg.chpasswd_bin = v;
    }
    if let Some(v) = args.shadow_file {
        cfg.shadow_file = v;
    }
    if args.metrics_listen.is_some() {
        cfg.metrics_listen = args.metrics_listen;
    }
    if let Some(addr) = &cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        tracing::info!(metrics = %format!("http://{addr}/metrics"), "agent metrics serving");
        tokio::spawn(keyplane_agent::metrics::serve(listener));
    }
    keyplane_agent::run::run(cfg).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    /// `--help` shows the defaults the agent really uses, and says something about every flag.
    #[test]
    fn the_help_shows_every_default_and_describes_every_flag() {
        let mut command = Cli::command();
        let help = command.render_long_help().to_string();
        let d = AgentConfig::default();
        let shown = [
            d.server.clone(),
            d.state_dir.display().to_string(),
            d.passwd_file.display().to_string(),
            d.sshd_config.display().to_string(),
            d.sshd_dropin_dir.display().to_string(),
            d.sshd_bin.display().to_string(),
            d.reload_command.clone(),
            d.chpasswd_bin.display().to_string(),
            d.shadow_file.display().to_string(),
            d.check_interval_secs.to_string(),
        ];
        for value in shown {
            assert!(
                help.contains(&format!("[default: {value}]")),
                "{value} missing from:\n{help}"
            );
        }
        for arg in command.get_arguments() {
            if arg.get_id() != "help" {
                assert!(
                    arg.get_long_help().or(arg.get_help()).is_some(),
                    "{}",
                    arg.get_id()
                );
            }
        }
    }
}
