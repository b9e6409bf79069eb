//! `keyplane serve`: open the store, bootstrap an empty one, listen, shut down gracefully.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use keyplane_api::tls::TlsCerts;
use keyplane_api::ServerConfig;
use keyplane_core::ids;
use keyplane_core::secretbox::ServerKey;
use keyplane_store::{postgres::PgStore, sqlite::SqliteStore, AccessKeyRecord, Store};

/// Settings that are environment variables only, listed after the flags in `serve --help`.
const ENVIRONMENT_HELP: &str = "\
Environment (no flag):
  KEYPLANE_ROOT_ACCESS_KEY_ID, KEYPLANE_ROOT_ACCESS_KEY_SECRET
      The root AccessKey of the default account, made on an empty store (and registered again on
      every start while both are set). Unset: one is generated and written once to
      root-access-key.json (mode 0600) beside the database.
  KEYPLANE_SERVER_KEY
      The key that seals AccessKey secrets, base64 of 32 bytes; wins over --server-key-file.
  KEYPLANE_LOG
      The log filter, `tracing` syntax (default info), e.g. keyplane_api=debug.

Every flag above can also be set with the environment variable shown beside it; booleans take
1/0, true/false, yes/no, on/off. Logs go to stderr, coloured only on a terminal.
docs/CONFIGURATION.md has the whole reference.";

#[derive(clap::Args)]
#[command(after_help = ENVIRONMENT_HELP)]
pub struct ServeArgs {
    /// A TOML file of these settings, e.g. /etc/keyplane/server.toml: each key is a flag below
    /// with underscores for dashes; a flag or its environment variable wins over the file.
    #[arg(long, env = "KEYPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KEYPLANE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database URL: sqlite://PATH, or postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "KEYPLANE_DB",
        default_value = "sqlite://keyplane-data/keyplane.db"
    )]
    db: String,
    /// With PostgreSQL: where `server.key` and `root-access-key.json` live [default:
    /// keyplane-data]. With SQLite they live beside the database file, and a --data-dir that
    /// names another directory is refused.
    #[arg(long, env = "KEYPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The file of the key that seals AccessKey secrets (created 0600 if missing). Default:
    /// `server.key` beside the database. Keep it out of the data directory so that one copy of
    /// that directory (a backup, a snapshot) does not open every secret in it.
    #[arg(long, env = "KEYPLANE_SERVER_KEY_FILE")]
    server_key_file: Option<PathBuf>,
    /// How long simulated instances stay Starting/Stopping/Pending, in milliseconds.
    #[arg(long, env = "KEYPLANE_TRANSITION_DELAY_MS", default_value_t = 0)]
    transition_delay_ms: u64,
    /// Calls per second allowed per AccessKey and action (0 turns throttling off).
    #[arg(long, env = "KEYPLANE_THROTTLE_PER_SECOND", default_value_t = 1000)]
    throttle_per_second: u32,
    /// Burst size of the throttle.
    #[arg(long, env = "KEYPLANE_THROTTLE_BURST", default_value_t = 2000)]
    throttle_burst: u32,
    /// SQLite durability: `full` (every commit fsynced: survives a power cut) or `normal` (survives
    /// a crash of the process; a power cut can lose the last commits).
    #[arg(long, env = "KEYPLANE_SQLITE_SYNCHRONOUS", default_value = "full", value_parser = ["full", "normal"])]
    sqlite_synchronous: String,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); reloaded on SIGHUP.
    #[arg(long, env = "KEYPLANE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert; reloaded on SIGHUP.
    #[arg(long, env = "KEYPLANE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Clients reach this server through a TLS-terminating proxy: mark console cookies Secure
    /// without serving TLS here.
    #[arg(long, env = "KEYPLANE_BEHIND_HTTPS_PROXY", value_parser = BoolishValueParser::new())]
    behind_https_proxy: bool,
    /// Connections open at once; more wait in the listen backlog. Each waiting agent holds one.
    /// The server raises its open-file limit to fit (up to the hard limit).
    #[arg(long, env = "KEYPLANE_MAX_CONNECTIONS", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client may take to send a request's headers; also how long an idle keep-alive
    /// connection is kept.
    #[arg(long, env = "KEYPLANE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Seconds a client may take to finish the TLS handshake.
    #[arg(long, env = "KEYPLANE_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    tls_handshake_timeout_secs: u64,
    /// Seconds a write to a client may make no progress before the connection is closed (a
    /// client that stops reading its answers).
    #[arg(long, env = "KEYPLANE_WRITE_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_secs: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "KEYPLANE_LOG_JSON", value_parser = BoolishValueParser::new())]
    log_json: bool,
    /// Serve Prometheus metrics at `GET /metrics` on this address (a listener of its own; off
    /// when unset). Plain HTTP: bind it to a loopback or private address.
    #[arg(long, env = "KEYPLANE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// How long audit records are kept, e.g. `90d` (Alibaba Cloud's ActionTrail keeps its event
    /// history 90 days) or `12h`; older ones are deleted, up to 1,000 a second. `0`, the default, keeps
    /// them forever.
    #[arg(long, env = "KEYPLANE_AUDIT_RETENTION", default_value = "0", value_parser = parse_retention)]
    audit_retention: Retention,
    /// Emulator mode (SPEC section 14): fault injection, a controllable clock, snapshots and
    /// account deletion through `keyplane admin`. For tests of cloud automation only: never on a
    /// deployment with real hosts. The variable takes `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    #[arg(long, env = "KEYPLANE_EMULATOR", value_parser = BoolishValueParser::new())]
    emulator: bool,
}

/// `--audit-retention`: forever, or an age of at least a minute.
#[derive(Debug, Clone, Copy)]
struct Retention(Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    if text == "0" {
        return Ok(Retention(None));
    }
    match keyplane_core::duration::parse_secs(text) {
        Some(secs) if secs >= 60 => Ok(Retention(Some(Duration::from_secs(secs as u64)))),
        _ => Err(
            "0 (keep forever) or a number and a unit (s, m, h or d) of at least a minute, \
                  e.g. 90d or 12h"
                .into(),
        ),
    }
}

/// The directory `--data-dir` names, where it has a meaning: with SQLite the server's files live
/// beside the database (SPEC section 11), so a `--data-dir` naming another directory would be
/// silently ignored; it is refused instead. Naming the database's own directory is accepted.
fn check_data_dir(args: &ServeArgs) -> anyhow::Result<()> {
    let (Some(data_dir), Some(path)) = (
        &args.data_dir,
        args.db.strip_prefix("sqlite://").filter(|p| !p.is_empty()),
    ) else {
        return Ok(());
    };
    let file = path.split('?').next().unwrap_or(path);
    let db_dir = Path::new(file).parent().unwrap_or(Path::new(""));
    if same_dir(db_dir, data_dir) {
        return Ok(());
    }
    bail!(
        "--data-dir (KEYPLANE_DATA_DIR) {} is for PostgreSQL: with SQLite, server.key and \
         root-access-key.json live beside the database, in {}. Drop --data-dir, or put the \
         database there (--db sqlite://{}/keyplane.db); --server-key-file keeps the server key \
         elsewhere",
        data_dir.display(),
        shown_dir(db_dir).display(),
        data_dir.display().to_string().trim_end_matches('/'),
    )
}

/// `dir`, or `.` for the empty parent of a bare file name.
fn shown_dir(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Whether two paths name one directory: the same after resolving them when both exist, else the
/// same components (`a/b/` and `./a/b` are one directory).
fn same_dir(a: &Path, b: &Path) -> bool {
    let (a, b) = (shown_dir(a), shown_dir(b));
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => {
            let parts = |p| Path::components(p).filter(|c| *c != std::path::Component::CurDir);
            parts(a).eq(parts(b))
        }
    }
}

/// The open store, with the directory for the server's own files, the URL as it may be logged
/// (without a password), and, for SQLite, the lock that makes this server the file's only one.
struct Opened {
    store: Arc<dyn Store>,
    dir: PathBuf,
    shown: String,
    _lock: Option<std::fs::File>,
}

/// SQLite is one server's store: a second server on the same file would keep its own AccessKey
/// cache and nonce memory (a key disabled through one stays usable on the other). The lock is an
/// exclusive `flock` on `<database>.lock`, held for the life of the process (the kernel releases
/// it when the process ends, however it ends); the file names the holder's process ID.
fn lock_sqlite(path: &str) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let file = path.split('?').next().unwrap_or(path);
    if let Some(dir) = Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        if !dir.exists() {
            create_private_dir(dir)?;
        }
    }
    let lock_path = format!("{file}.lock");
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening {lock_path}"))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = lock.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another keyplane server".to_string()
        } else {
            format!("another keyplane server (process {holder})")
        };
        bail!(
            "{who} already serves {file}: SQLite is one server's store. Stop it first, or run \
             several servers over one PostgreSQL database (docs/DEPLOYMENT.md)"
        );
    }
    lock.set_len(0)?;
    lock.rewind()?;
    writeln!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// Opens the store `--db` names.
async fn open_store(args: &ServeArgs) -> anyhow::Result<Opened> {
    if let Some(path) = args.db.strip_prefix("sqlite://").filter(|p| !p.is_empty()) {
        let lock = lock_sqlite(path)?;
        let store = SqliteStore::open_with(path, args.sqlite_synchronous == "full")
            .await
            .with_context(|| format!("opening {path}"))?;
        let dir = Path::new(path)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        return Ok(Opened {
            store: Arc::new(store),
            dir,
            shown: args.db.clone(),
            _lock: Some(lock),
        });
    }
    if args.db.starts_with("postgres://") || args.db.starts_with("postgresql://") {
        let shown = without_password(&args.db);
        let store = PgStore::open(&args.db)
            .await
            .with_context(|| format!("opening {shown}"))?;
        let dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("keyplane-data"));
        create_private_dir(&dir)?;
        return Ok(Opened {
            store: Arc::new(store),
            dir,
            shown: shown.to_string(),
            _lock: None,
        });
    }
    bail!("unsupported --db: expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")
}

/// The URL with the password of its user part masked, for logs and errors.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:****@{host}{}", &rest[authority_end..])
        }
        _ => url.to_string(),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The certificate of `--tls-cert`/`--tls-key`: both or neither.
fn load_tls(args: &ServeArgs) -> anyhow::Result<Option<TlsCerts>> {
    match (&args.tls_cert, &args.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsCerts::load(cert, key)?)),
        _ => bail!("--tls-cert and --tls-key (KEYPLANE_TLS_CERT, KEYPLANE_TLS_KEY) go together: give both or neither"),
    }
}

/// Reloads the certificate on every SIGHUP; a reload that fails keeps the one in use. Listened
/// for from the start and without TLS too: SIGHUP's default action ends the process, and a
/// `systemctl reload keyplane` (the unit's ExecReload) must never stop a server.
fn reload_on_sighup(certs: Option<TlsCerts>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(certs) = &certs else {
                tracing::info!("SIGHUP: no TLS certificate to reload (--tls-cert is unset)");
                continue;
            };
            match certs.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "reloading the TLS certificate failed; keeping the one in use"
                ),
            }
        }
    });
    Ok(())
}

/// Raises the soft limit on open files to fit `connections` and the store's own files: the usual
/// soft limit (1,024) would stop a server at about a thousand agents, far below
/// `--max-connections`, with "too many open files" in the accept loop. The hard limit is the
/// operator's (systemd `LimitNOFILE=`); when it is too low the server says so and runs.
fn raise_open_file_limit(connections: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // The store (SQLite files or the PostgreSQL pool), the listener, logs, TLS files.
    let wanted = connections + 256;
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    limit.current = Some(wanted.min(hard));
    let raised = limit.current;
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        tracing::warn!(error = %e, soft, "could not raise the open-file limit");
    }
    if raised < Some(wanted) {
        tracing::warn!(
            hard,
            wanted,
            "the open-file limit is below --max-connections: raise it (ulimit -n, or LimitNOFILE= in the unit)"
        );
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::logging::init(args.log_json);
    check_data_dir(&args)?;
    let tls = load_tls(&args)?;
    reload_on_sighup(tls.clone())?;
    // The port first: a server that cannot listen must not leave a fresh database and keys behind.
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let metrics = match &args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    let opened = open_store(&args).await?;
    let (store, dir, shown) = (
        opened.store.clone(),
        opened.dir.clone(),
        opened.shown.clone(),
    );
    let key_file = args
        .server_key_file
        .clone()
        .unwrap_or_else(|| dir.join("server.key"));
    let server_key = load_server_key(&key_file)?;
    let account = bootstrap(store.as_ref(), &dir, &server_key).await?;
    // A store that cannot be written (a read-only file or directory, a full disk) must stop the
    // start with the reason, not answer every write with InternalError while /healthz says ok.
    store
        .purge_nonces(chrono::DateTime::UNIX_EPOCH)
        .await
        .map_err(|e| anyhow::anyhow!("the store {shown} cannot be written: {e}"))?;
    raise_open_file_limit(args.max_connections as u64);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mode = if args.emulator {
        "emulator"
    } else {
        "standard"
    };
    tracing::info!(listen = %listener.local_addr()?, %scheme, db = %shown, %account, mode, "keyplane serving");
    if args.emulator {
        tracing::warn!("emulator mode: faults, the clock and snapshots can be controlled through the API; never use it with real hosts");
    }
    if let Some(m) = &metrics {
        tracing::info!(metrics = %format!("http://{}/metrics", m.local_addr()?), "metrics serving");
    }
    let config = ServerConfig {
        https: tls.is_some() || args.behind_https_proxy,
        tls,
        max_connections: args.max_connections as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout_secs),
        write_timeout: Duration::from_secs(args.write_timeout_secs),
        transition_delay: Duration::from_millis(args.transition_delay_ms),
        throttle_per_second: args.throttle_per_second,
        throttle_burst: args.throttle_burst,
        server_key,
        audit_retention: args.audit_retention.0,
        emulator: args.emulator,
        ..ServerConfig::default()
    };
    keyplane_api::serve_with_metrics(store.clone(), config, listener, metrics, shutdown_signal())
        .await?;
    store.close().await;
    drop(opened);
    tracing::info!("keyplane stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Creates the default account on an empty store. The root AccessKey comes from
/// `KEYPLANE_ROOT_ACCESS_KEY_ID`/`_SECRET`, else is generated and written once, mode 0600, to
/// `root-access-key.json` beside the database.
/// The key that seals AccessKey secrets: `KEYPLANE_SERVER_KEY` (base64, 32 bytes), else `file`
/// (`--server-key-file`, default `server.key` beside the database), created (mode 0600) on first
/// start. Losing it makes every stored AccessKey unusable, so back it up, but not in the same place
/// as the database. Servers that share a PostgreSQL database must share this key.
fn load_server_key(file: &Path) -> anyhow::Result<ServerKey> {
    if let Ok(text) = std::env::var("KEYPLANE_SERVER_KEY") {
        return Ok(ServerKey::from_base64(&text)?);
    }
    let file = file.to_path_buf();
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            private(&file)?;
            Ok(ServerKey::from_base64(&text)
                .with_context(|| format!("reading {}", file.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ServerKey::generate();
            write_secret_text(&file, key.to_base64().as_str())?;
            tracing::info!(file = %file.display(), "generated the server key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// The server key opens every stored secret: a copy readable by others (left by hand, or by a
/// restore that ignored modes) is set to 0600, with a warning.
fn private(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(file = %file.display(), mode = format!("{:o}", mode & 0o777), "the server key was readable by others; now mode 0600");
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", file.display()))?;
    }
    Ok(())
}

async fn bootstrap(
    store: &dyn Store,
    dir: &Path,
    server_key: &ServerKey,
) -> anyhow::Result<String> {
    let from_env = match (
        std::env::var("KEYPLANE_ROOT_ACCESS_KEY_ID"),
        std::env::var("KEYPLANE_ROOT_ACCESS_KEY_SECRET"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        _ => None,
    };
    if let Some(account) = store.default_account().await? {
        check_server_key(store, &account, server_key).await?;
        if let Some((id, secret)) = from_env {
            store
                .insert_access_key(&AccessKeyRecord {
                    secret: server_key.seal(&id, &secret),
                    id,
                    account_id: account.clone(),
                    user_name: None,
                    active: true,
                })
                .await?;
        }
        return Ok(account);
    }
    let generated = from_env.is_none();
    let (id, secret) =
        from_env.unwrap_or_else(|| (ids::new_access_key_id(), ids::new_access_key_secret()));
    let key = AccessKeyRecord {
        secret: server_key.seal(&id, &secret),
        id,
        account_id: ids::new_account_id(),
        user_name: None,
        active: true,
    };
    let account = store.bootstrap(&key).await?;
    if generated {
        let file = dir.join("root-access-key.json");
        write_secret_file(
            &file,
            &serde_json::json!({
                "AccountId": account,
                "AccessKeyId": key.id,
                "AccessKeySecret": secret,
            }),
        )?;
        tracing::info!(file = %file.display(), "generated the root AccessKey");
    }
    Ok(account)
}

/// Refuses to start with a server key other than the one the store's secrets were sealed with
/// (a second server given its own key would fail every signature instead).
async fn check_server_key(store: &dyn Store, account: &str, key: &ServerKey) -> anyhow::Result<()> {
    let roots = store.list_access_keys(account, None).await?;
    let Some(first) = roots.first() else {
        return Ok(());
    };
    let Some(record) = store.access_key(&first.id).await? else {
        return Ok(());
    };
    if key.open(&record.id, &record.secret).is_err() {
        bail!(
            "the server key does not open the AccessKeys in this database: every server that \
             shares a database needs the same key (KEYPLANE_SERVER_KEY or server.key)"
        );
    }
    Ok(())
}

fn write_secret_file(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    write_secret_text(path, &serde_json::to_string_pretty(value)?)
}

fn write_secret_text(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{text}")?;
    f.sync_all()?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::{parse_retention, same_dir, without_password};
    use std::path::Path;

    #[test]
    fn the_audit_retention_is_forever_or_at_least_a_minute() {
        assert_eq!(parse_retention("0").unwrap().0, None);
        assert_eq!(
            parse_retention("90d").unwrap().0.unwrap().as_secs(),
            90 * 86_400
        );
        assert_eq!(parse_retention("1m").unwrap().0.unwrap().as_secs(), 60);
        for bad in ["59s", "", "forever", "-1d", "1.5d", "00"] {
            assert!(parse_retention(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_directory_is_the_same_whatever_its_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert!(same_dir(d, &d.join(".")));
        assert!(same_dir(d, Path::new(&format!("{}/", d.display()))));
        assert!(!same_dir(d, &d.join("other")));
        assert!(same_dir(Path::new(""), Path::new(".")));
        assert!(same_dir(Path::new("not/there"), Path::new("./not/there/")));
        assert!(!same_dir(
            Path::new("not/there"),
            Path::new("not/elsewhere")
        ));
    }

    #[test]
    fn database_passwords_are_masked() {
        assert_eq!(
            without_password("postgres://kp:s3cr@t@db:5432/keyplane"),
            "postgres://kp:****@db:5432/keyplane"
        );
        assert_eq!(
            without_password("postgres://kp@db/keyplane"),
            "postgres://kp@db/keyplane"
        );
        assert_eq!(
            without_password("postgres://db/k?x=@"),
            "postgres://db/k?x=@"
        );
    }
}
