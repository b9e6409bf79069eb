//! The reconcile loop against a fake control plane: what the agent does to the host, and what it
//! reports, when the server is down, answers badly, has nothing new, or signals a reboot. The host
//! is a temporary home named by a temporary passwd file; sshd is not managed (keys only).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use keyplane_agent::apply::{Desired, Observed};
use keyplane_agent::client::ControlPlane;
use keyplane_agent::run::reconcile;
use keyplane_agent::AgentConfig;
use serde_json::{json, Value};

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f a";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnHw0lfSBjmuFUTxk4zAM+rvbP3m4wHZrKc6zzO2spx b";

/// What the fake server answers to one poll.
enum Poll {
    /// The connection fails.
    Down,
    /// An answer the client could not read (what `Client` turns a malformed body into).
    Malformed,
    /// 304: nothing changed since the ETag the agent sent.
    Unchanged,
    /// 200 with this state and ETag.
    State(Box<Desired>, &'static str),
}

/// One report: the ApplySeq it answers, the fingerprints in effect, the error if any.
type Report = (Option<i64>, Vec<String>, Option<String>);

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Poll>>,
    /// The ETag each poll carried.
    etags: Mutex<Vec<Option<String>>>,
    reports: Mutex<Vec<Report>>,
    /// Every report fails, as when the server goes away between the poll and the report.
    refuse_reports: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn new(script: Vec<Poll>) -> Self {
        Self {
            script: Mutex::new(script.into()),
            ..Self::default()
        }
    }
}

impl ControlPlane for Fake {
    async fn register(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> anyhow::Result<(String, String)> {
        anyhow::bail!("the loop never registers")
    }

    async fn desired(
        &self,
        etag: Option<&str>,
        _wait: u64,
    ) -> anyhow::Result<Option<(Desired, String)>> {
        self.etags.lock().unwrap().push(etag.map(String::from));
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Poll::Down) => anyhow::bail!("connection refused"),
            Some(Poll::Malformed) => anyhow::bail!("the desired state is malformed; ignored"),
            Some(Poll::Unchanged) => Ok(None),
            Some(Poll::State(d, tag)) => Ok(Some((*d, tag.to_string()))),
            // The script is played: the poll waits for ever, and the test's timeout ends the loop.
            None => std::future::pending().await,
        }
    }

    async fn report(
        &self,
        applied_seq: Option<i64>,
        observed: Option<&Observed>,
        error: Option<&str>,
    ) -> anyhow::Result<Value> {
        if self
            .refuse_reports
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            anyhow::bail!("connection refused");
        }
        let fingerprints = observed.map(|o| o.fingerprints.clone()).unwrap_or_default();
        self.reports
            .lock()
            .unwrap()
            .push((applied_seq, fingerprints, error.map(String::from)));
        Ok(json!({"BindingState": "applied"}))
    }
}

fn state(key: &str, apply_seq: i64) -> Desired {
    Desired {
        instance_id: "i-test".into(),
        fingerprint: None,
        login_user: "root".into(),
        public_key: Some(key.into()),
        password_login: false,
        apply_seq,
        password_hash: None,
        password_version: 0,
        grants: Vec::new(),
        revoked_keys: Vec::new(),
    }
}

/// A host: a home for `root` (this test's own user, so the agent's ownership checks pass) and the
/// agent's configuration for it.
fn host() -> (tempfile::TempDir, AgentConfig) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let passwd = dir.path().join("passwd");
    std::fs::write(
        &passwd,
        format!("root:x:{uid}:{gid}::{}:/bin/sh\n", home.display()),
    )
    .unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let cfg = AgentConfig {
        passwd_file: passwd,
        state_dir,
        sshd_config: dir.path().join("sshd_config"),
        sshd_dropin_dir: dir.path().join("sshd_config.d"),
        manage_sshd: false,
        check_interval_secs: 3600,
        ..AgentConfig::default()
    };
    (dir, cfg)
}

fn authorized_keys(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("home/.ssh/authorized_keys")).unwrap_or_default()
}

/// Plays the script to its end; the paused clock skips the loop's backoff sleeps.
async fn play(cfg: &AgentConfig, fake: &Fake) {
    let ended = tokio::time::timeout(Duration::from_secs(3600), reconcile(cfg, fake)).await;
    assert!(ended.is_err(), "the loop only ends when cancelled");
    assert!(
        fake.script.lock().unwrap().is_empty(),
        "every poll was made"
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_state_is_applied_and_outages_leave_the_host_as_it_is() {
    let (dir, cfg) = host();
    let fake = Fake::new(vec![
        Poll::Down,
        Poll::State(Box::new(state(KEY_A, 1)), "\"e1\""),
        Poll::Down,
        Poll::Malformed,
        Poll::Down,
    ]);
    play(&cfg, &fake).await;
    assert!(
        authorized_keys(&dir).contains(KEY_A),
        "the key is in and stays in"
    );
    let reports = fake.reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "one apply, one report: {reports:?}");
    assert_eq!(reports[0].0, Some(1));
    assert_eq!(reports[0].1.len(), 1);
    assert_eq!(reports[0].2, None);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_state_is_not_applied_again_and_each_poll_carries_the_etag() {
    let (_dir, cfg) = host();
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_A, 1)), "\"e1\""),
        Poll::Unchanged,
        Poll::Unchanged,
    ]);
    play(&cfg, &fake).await;
    assert_eq!(fake.reports.lock().unwrap().len(), 1);
    let etags = fake.etags.lock().unwrap();
    assert_eq!(etags[0], None);
    assert!(etags[1..].iter().all(|e| e.as_deref() == Some("\"e1\"")));
}

#[tokio::test(start_paused = true)]
async fn a_new_binding_waits_for_the_next_reboot_generation() {
    let (dir, cfg) = host();
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_A, 1)), "\"e1\""),
        // Rebound while the instance runs: the cloud applies it at the next start or reboot.
        Poll::State(Box::new(state(KEY_B, 1)), "\"e2\""),
        Poll::Unchanged,
    ]);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_A));
    assert!(!authorized_keys(&dir).contains(KEY_B));
    assert_eq!(fake.reports.lock().unwrap().len(), 1);

    // The agent starts again in the same boot (it resumes at ApplySeq 1), then the reboot: a
    // newer ApplySeq.
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_B, 1)), "\"e2\""),
        Poll::State(Box::new(state(KEY_B, 2)), "\"e3\""),
    ]);
    play(&cfg, &fake).await;
    let keys = authorized_keys(&dir);
    assert!(keys.contains(KEY_B) && !keys.contains(KEY_A), "{keys}");
    let seqs: Vec<Option<i64>> = fake.reports.lock().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(seqs, [Some(2)]);
}

/// The file the agent remembers its last acknowledged apply in.
fn applied_file(cfg: &AgentConfig) -> std::path::PathBuf {
    cfg.state_dir.join("applied")
}

#[tokio::test(start_paused = true)]
async fn an_agent_restarted_in_the_same_boot_leaves_a_pending_change_waiting() {
    let (dir, cfg) = host();
    play(
        &cfg,
        &Fake::new(vec![Poll::State(Box::new(state(KEY_A, 1)), "\"e1\"")]),
    )
    .await;
    let remembered = std::fs::read_to_string(applied_file(&cfg)).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert!(
        remembered.starts_with(&format!("{} i-test 1 false ", boot.trim())),
        "{remembered}"
    );
    // Rebound while the agent was down (an upgrade, a crash): its next start is not a boot.
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_B, 1)), "\"e2\""),
        Poll::Unchanged,
    ]);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_A) && !authorized_keys(&dir).contains(KEY_B));
    assert!(fake.reports.lock().unwrap().is_empty(), "nothing applied");
    // A reboot signalled while it was down is applied at its start.
    let fake = Fake::new(vec![Poll::State(Box::new(state(KEY_B, 2)), "\"e3\"")]);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_B) && !authorized_keys(&dir).contains(KEY_A));
    assert_eq!(fake.reports.lock().unwrap()[0].0, Some(2));
}

/// Applies KEY_A at ApplySeq 1, lets `change` alter the record or the settings, then starts the
/// agent again with KEY_B bound at the same ApplySeq: true when KEY_B was applied at once.
async fn applies_at_restart(change: impl Fn(&mut AgentConfig, &str) -> String) -> bool {
    let (dir, mut cfg) = host();
    play(
        &cfg,
        &Fake::new(vec![Poll::State(Box::new(state(KEY_A, 1)), "\"e1\"")]),
    )
    .await;
    let record = std::fs::read_to_string(applied_file(&cfg)).unwrap();
    let changed = change(&mut cfg, &record);
    std::fs::write(applied_file(&cfg), changed).unwrap();
    let fake = Fake::new(vec![Poll::State(Box::new(state(KEY_B, 1)), "\"e2\"")]);
    play(&cfg, &fake).await;
    let applied = authorized_keys(&dir).contains(KEY_B);
    assert_eq!(applied, fake.reports.lock().unwrap().len() == 1);
    applied
}

#[tokio::test(start_paused = true)]
async fn a_boot_another_instance_other_settings_or_an_unreadable_record_apply_at_once() {
    fn field(record: &str, i: usize, value: &str) -> String {
        let mut fields: Vec<&str> = record.split_whitespace().collect();
        fields[i] = value;
        fields.join(" ") + "\n"
    }
    assert!(
        !applies_at_restart(|_, r| r.to_string()).await,
        "the same boot resumes"
    );
    assert!(applies_at_restart(|_, r| field(r, 0, "00000000-0000-0000-0000-000000000000")).await);
    assert!(applies_at_restart(|_, r| field(r, 1, "i-other")).await);
    assert!(applies_at_restart(|_, r| field(r, 2, "one")).await);
    assert!(applies_at_restart(|_, r| field(r, 4, "0123")).await);
    assert!(applies_at_restart(|_, r| r.rsplit_once(' ').unwrap().0.to_string()).await);
    assert!(applies_at_restart(|_, r| format!("{} extra", r.trim())).await);
    assert!(applies_at_restart(|_, _| String::new()).await);
    // The server's ApplySeq went back (a restored backup, an emulator snapshot).
    assert!(applies_at_restart(|_, r| field(r, 2, "5")).await);
    // The agent's own settings changed: only a restart can bring them in.
    assert!(
        applies_at_restart(|cfg, r| {
            cfg.login_user = Some("root".into());
            r.to_string()
        })
        .await
    );
    assert!(
        applies_at_restart(|cfg, r| {
            cfg.reload_command = "true".into();
            r.to_string()
        })
        .await
    );
}

#[tokio::test(start_paused = true)]
async fn a_lower_apply_seq_is_applied_by_a_running_agent() {
    let (dir, cfg) = host();
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_A, 5)), "\"e1\""),
        // The server was restored to an older state, then the instance rebooted.
        Poll::State(Box::new(state(KEY_B, 1)), "\"e2\""),
    ]);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_B));
    let seqs: Vec<Option<i64>> = fake.reports.lock().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(seqs, [Some(5), Some(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_is_not_remembered_and_a_restart_tries_again() {
    let (dir, cfg) = host();
    let mut ghost = state(KEY_A, 1);
    ghost.login_user = "ghost".into();
    let fake = Fake::new(vec![Poll::State(Box::new(ghost), "\"e1\"")]);
    play(&cfg, &fake).await;
    assert!(
        fake.reports.lock().unwrap()[0].2.is_some(),
        "reported as failed"
    );
    assert!(!applied_file(&cfg).exists(), "not remembered");
    // The host is put right (the login user now as the server says), the agent restarted.
    let fake = Fake::new(vec![Poll::State(Box::new(state(KEY_A, 1)), "\"e1\"")]);
    play(&cfg, &fake).await;
    let report = fake.reports.lock().unwrap()[0].clone();
    assert_eq!(
        (report.0, report.2),
        (Some(1), None),
        "applied and reported"
    );
    assert!(authorized_keys(&dir).contains(KEY_A));
    assert!(applied_file(&cfg).exists());
}

#[tokio::test(start_paused = true)]
async fn an_apply_the_server_did_not_hear_is_applied_again_at_the_next_start() {
    let (dir, cfg) = host();
    let fake = Fake::new(vec![Poll::State(Box::new(state(KEY_A, 1)), "\"e1\"")]);
    fake.refuse_reports
        .store(true, std::sync::atomic::Ordering::Relaxed);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_A));
    assert!(!applied_file(&cfg).exists(), "not remembered");
    let fake = Fake::new(vec![Poll::State(Box::new(state(KEY_A, 1)), "\"e1\"")]);
    play(&cfg, &fake).await;
    assert_eq!(
        fake.reports.lock().unwrap()[0].0,
        Some(1),
        "applied and reported again"
    );
    assert!(applied_file(&cfg).exists());
}

#[tokio::test(start_paused = true)]
async fn with_apply_online_a_new_binding_is_applied_at_once() {
    let (dir, mut cfg) = host();
    cfg.apply_online = true;
    let fake = Fake::new(vec![
        Poll::State(Box::new(state(KEY_A, 1)), "\"e1\""),
        Poll::State(Box::new(state(KEY_B, 1)), "\"e2\""),
    ]);
    play(&cfg, &fake).await;
    assert!(authorized_keys(&dir).contains(KEY_B));
    assert_eq!(fake.reports.lock().unwrap().len(), 2);
}
