//! The reconcile loop: register once, then long-poll; apply at the host's boot and when the server
//! signals a start or reboot (or at once with `apply_online`); check periodically; keep going
//! through any server outage with backoff and jitter, keeping the host as it is meanwhile.
//!
//! A start of the agent is not a boot of the host: an agent restarted by a package upgrade, a
//! crash or an operator resumes from the last apply the server acknowledged in this boot (the
//! `applied` file in the state directory, keyed by the kernel's boot ID), so a change waiting for
//! the instance's restart keeps waiting instead of taking a working key away.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;

use crate::apply::{self, Desired};
use crate::client::{Client, ControlPlane};
use crate::config::AgentConfig;

/// The longest long poll the agent asks for.
pub const MAX_WAIT_SECS: u64 = 20;

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn write_state(path: &std::path::Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    Ok(())
}

/// The instance ID and credential: from the state directory, else by registering with the token.
async fn identity(
    cfg: &AgentConfig,
    client: &impl ControlPlane,
) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))?;
    let id_path = cfg.state_dir.join("instance-id");
    let cred_path = cfg.state_dir.join("credential");
    if let (Ok(id), Ok(cred)) = (
        std::fs::read_to_string(&id_path),
        std::fs::read_to_string(&cred_path),
    ) {
        return Ok((id.trim().to_string(), cred.trim().to_string()));
    }
    let token = cfg
        .token
        .as_deref()
        .context("not registered yet: give --token")?;
    let user = cfg.login_user.clone().unwrap_or_else(|| "root".into());
    let (id, credential) = client
        .register(token, &os_name(), &user, &host_name())
        .await?;
    write_state(&cred_path, &credential, 0o600)?;
    write_state(&id_path, &format!("{id}\n"), 0o644)?;
    println!("{id}");
    tracing::info!(instance_id = %id, "registered");
    Ok((id, credential))
}

/// The state-directory file naming the last apply that worked and that the server acknowledged:
/// boot ID, instance ID, ApplySeq, the password setting applied, and a digest of the settings it
/// was applied with.
const APPLIED_FILE: &str = "applied";

/// The kernel's ID of this boot: a new one at every boot, the same for every process until then.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_string())
}

/// The settings that decide what an apply writes where. An agent restarted with other values
/// (another login user, keys only switched off, another sshd) applies at once, as at a boot:
/// a restart is the only way such a change can take effect.
fn settings_digest(cfg: &AgentConfig) -> String {
    use sha2::Digest;
    let settings = format!(
        "{:?}",
        (
            &cfg.login_user,
            &cfg.passwd_file,
            &cfg.sshd_config,
            &cfg.sshd_dropin_dir,
            &cfg.sshd_bin,
            &cfg.reload_command,
            cfg.manage_sshd,
            &cfg.chpasswd_bin,
            &cfg.shadow_file,
        )
    );
    hex::encode(&sha2::Sha256::digest(settings.as_bytes())[..16])
}

/// An apply of this boot that worked and that the server acknowledged.
struct Applied {
    instance_id: String,
    apply_seq: i64,
    password_login: bool,
}

/// What this boot applied with these settings; `None` after a boot, on a first start, with other
/// settings, or when the file is unreadable (then the agent applies at once, as at a boot).
fn resume(cfg: &AgentConfig) -> Option<Applied> {
    use std::io::Read;
    let boot = boot_id()?;
    let mut text = String::new();
    std::fs::File::open(cfg.state_dir.join(APPLIED_FILE))
        .ok()?
        .take(512)
        .read_to_string(&mut text)
        .ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [b, id, seq, password, digest] = fields[..] else {
        return None;
    };
    if b != boot || digest != settings_digest(cfg) {
        return None;
    }
    Some(Applied {
        instance_id: id.to_string(),
        apply_seq: seq.parse().ok()?,
        password_login: password.parse().ok()?,
    })
}

/// Remembers an apply that worked and that the server acknowledged, for a restart of the agent
/// in this boot.
fn remember(cfg: &AgentConfig, desired: &Desired) {
    let Some(boot) = boot_id() else { return };
    let text = format!(
        "{boot} {} {} {} {}\n",
        desired.instance_id,
        desired.apply_seq,
        desired.password_login,
        settings_digest(cfg)
    );
    let path = cfg.state_dir.join(APPLIED_FILE);
    if let Err(e) = crate::files::atomic_write_system(&path, text.as_bytes(), 0o600) {
        // Only costs a restart of the agent its resume: it then applies at once, as at a boot.
        tracing::warn!(error = %e, "remembering the apply failed");
    }
}

/// Applies and reports; errors are reported, never only logged. True when the apply worked and
/// the server took the report.
async fn apply_and_report(
    cfg: &AgentConfig,
    client: &impl ControlPlane,
    desired: &Desired,
) -> bool {
    let outcome = apply::apply(cfg, desired);
    crate::metrics::METRICS.applied(outcome.is_ok());
    let result = match &outcome {
        Ok(observed) => {
            client
                .report(Some(desired.apply_seq), Some(observed), None)
                .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "apply failed");
            let observed = apply::observe(cfg, &desired.login_user, desired.password_login).ok();
            client
                .report(
                    Some(desired.apply_seq),
                    observed.as_ref(),
                    Some(&e.to_string()),
                )
                .await
        }
    };
    match result {
        Ok(v) => {
            tracing::info!(state = %v["BindingState"], "reported the apply");
            outcome.is_ok()
        }
        Err(e) => {
            tracing::warn!(error = %e, "reporting the apply failed");
            false
        }
    }
}

pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    let mut client = Client::with_transport(&cfg.server, &cfg.transport())?;
    let (id, credential) = identity(&cfg, &client).await?;
    client.authenticate(&id, &credential);
    reconcile(&cfg, &client).await
}

/// Long-polls `client` for ever, applying and reporting as the module doc says; it ends only when
/// the task running it is cancelled.
pub async fn reconcile(cfg: &AgentConfig, client: &impl ControlPlane) -> anyhow::Result<()> {
    let check_every = Duration::from_secs(cfg.check_interval_secs.max(1));
    // Shorter than every timeout on the way (the server's request timeout is 30 s, proxies often
    // 60 s), so a poll ends because the server answered, not because something gave up.
    let wait = cfg.check_interval_secs.clamp(1, MAX_WAIT_SECS);
    let (mut etag, mut current): (Option<String>, Option<Desired>) = (None, None);
    // What this boot last applied, when the agent restarts within it.
    if boot_id().is_none() {
        tracing::warn!("no kernel boot ID: every start of the agent applies as at a boot");
    }
    let resumed = resume(cfg);
    let mut applied_seq: Option<i64> = None;
    // The password setting of the state last applied: what a keys-only agent's checks report, so
    // that a change not yet applied is not mistaken for drift.
    let mut applied_password_login = resumed.as_ref().is_none_or(|r| r.password_login);
    let mut backoff = Duration::from_secs(1);
    let mut last_check = Instant::now();
    // What the grants were last applied from (SPEC section 15); nothing to do at start unless an
    // earlier run left grants sections behind.
    let mut applied_grants = crate::grants::nothing_left(cfg)
        .then(|| crate::grants::fingerprint(&Desired::default(), chrono::Utc::now()));
    let metrics = &crate::metrics::METRICS;
    loop {
        let polled = client.desired(etag.as_deref(), wait).await;
        if polled.is_ok() && backoff > Duration::from_secs(1) {
            metrics.reconnected();
        }
        match polled {
            Ok(Some((desired, tag))) => {
                backoff = Duration::from_secs(1);
                etag = Some(tag);
                // First contact is the boot, unless this boot already applied this very state
                // generation; later another ApplySeq is a start or reboot (or, lower, a server
                // restored from a backup or an emulator snapshot).
                let due = match applied_seq {
                    None => resumed.as_ref().is_none_or(|r| {
                        r.instance_id != desired.instance_id || r.apply_seq != desired.apply_seq
                    }),
                    Some(s) => desired.apply_seq != s,
                } || (cfg.apply_online && current.as_ref() != Some(&desired));
                if due {
                    if apply_and_report(cfg, client, &desired).await {
                        remember(cfg, &desired);
                    }
                    applied_password_login = desired.password_login;
                } else if applied_seq.is_none() {
                    tracing::info!(
                        apply_seq = desired.apply_seq,
                        "resumed: this boot already applied this state; changes wait for a start or reboot"
                    );
                }
                applied_seq = Some(desired.apply_seq);
                current = Some(desired);
            }
            Ok(None) => backoff = Duration::from_secs(1),
            Err(e) => {
                metrics.server_error();
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64 + jitter,
                    "the server is unreachable or answered badly; keeping the host as it is"
                );
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        }
        // Grants apply as soon as they change, and again when one's deadline passes.
        if let Some(d) = &current {
            let now = chrono::Utc::now();
            let wanted = crate::grants::fingerprint(d, now);
            if applied_grants.as_ref() != Some(&wanted) {
                let results = crate::grants::apply(cfg, d, applied_password_login, now);
                crate::metrics::METRICS.applied(results.iter().all(|r| r.error.is_none()));
                let observed = apply::observe(cfg, &d.login_user, applied_password_login);
                match observed {
                    Ok(mut o) => {
                        o.grants = results;
                        if let Err(e) = client.report(None, Some(&o), None).await {
                            tracing::warn!(error = %e, "reporting the grants failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "checking the host failed"),
                }
                applied_grants = Some(wanted);
            }
        }
        if let Some(d) = &current {
            if last_check.elapsed() >= check_every {
                last_check = Instant::now();
                match apply::observe(cfg, &d.login_user, applied_password_login) {
                    Ok(o) => {
                        if let Err(e) = client.report(None, Some(&o), None).await {
                            tracing::warn!(error = %e, "reporting a check failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "checking the host failed"),
                }
            }
        }
    }
}
