//! `keyplane agent`: the guest agent on a real Linux host. Flags override the `--config` file.

use std::path::PathBuf;

use keyplane_agent::AgentConfig;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// A TOML file with the settings below (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The keyplane server URL, e.g. https://keyplane.internal:8443.
    #[arg(long)]
    server: Option<String>,
    /// Trust only the CA certificates in this PEM file instead of the system's roots.
    #[arg(long, env = "KEYPLANE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on this host (the registration token and the
    /// credential then cross the network in clear).
    #[arg(long)]
    insecure_http: bool,
    /// One-time registration token (`keyplane admin registration-token create`).
    #[arg(long, env = "KEYPLANE_AGENT_TOKEN")]
    token: Option<String>,
    /// Where the instance ID and the credential are kept.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The user whose authorized_keys is managed.
    #[arg(long)]
    login_user: Option<String>,
    #[arg(long)]
    passwd_file: Option<PathBuf>,
    #[arg(long)]
    sshd_config: Option<PathBuf>,
    #[arg(long)]
    sshd_dropin_dir: Option<PathBuf>,
    #[arg(long)]
    sshd_bin: Option<PathBuf>,
    /// Run after `sshd -t` passed, to make sshd read its new configuration.
    #[arg(long)]
    reload_command: Option<String>,
    /// Manage keys only, never sshd's configuration.
    #[arg(long)]
    keys_only: bool,
    /// Apply changes at once instead of at the next start or reboot.
    #[arg(long)]
    apply_online: bool,
    /// Seconds between checks of what is in effect.
    #[arg(long)]
    check_interval: Option<u64>,
    /// Sets a reset password from its crypt hash (run as `chpasswd -e`).
    #[arg(long)]
    chpasswd_bin: Option<PathBuf>,
    /// Read back to confirm a reset password is in effect.
    #[arg(long)]
    shadow_file: Option<PathBuf>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYPLANE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = match &args.config {
        Some(path) => AgentConfig::from_file(path)?,
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
    keyplane_agent::run::run(cfg).await?;
    Ok(std::process::ExitCode::SUCCESS)
}
