//! `keyplane serve`: open the store, bootstrap an empty one, listen, shut down gracefully.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use keyplane_api::ServerConfig;
use keyplane_core::ids;
use keyplane_core::secretbox::ServerKey;
use keyplane_store::{sqlite::SqliteStore, AccessKeyRecord, Store};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEYPLANE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database URL: sqlite://PATH.
    #[arg(
        long,
        env = "KEYPLANE_DB",
        default_value = "sqlite://keyplane-data/keyplane.db"
    )]
    db: String,
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
    /// Log as JSON lines instead of text.
    #[arg(long, env = "KEYPLANE_LOG_JSON")]
    log_json: bool,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    match url.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("unsupported --db {url:?}: expected sqlite://PATH"),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    init_logging(args.log_json);
    let path = sqlite_path(&args.db)?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_with(
            path.to_str().context("database path is not UTF-8")?,
            args.sqlite_synchronous == "full",
        )
        .await
        .with_context(|| format!("opening {}", path.display()))?,
    );
    let server_key = load_server_key(&path)?;
    let account = bootstrap(store.as_ref(), &path, &server_key).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, db = %path.display(), %account, "keyplane serving");
    let config = ServerConfig {
        transition_delay: Duration::from_millis(args.transition_delay_ms),
        throttle_per_second: args.throttle_per_second,
        throttle_burst: args.throttle_burst,
        server_key,
        ..ServerConfig::default()
    };
    keyplane_api::serve(store, config, listener, shutdown_signal()).await?;
    tracing::info!("keyplane stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Creates the default account on an empty store. The root AccessKey comes from
/// `KEYPLANE_ROOT_ACCESS_KEY_ID`/`_SECRET`, else is generated and written once, mode 0600, to
/// `root-access-key.json` beside the database.
/// The key that seals AccessKey secrets: `KEYPLANE_SERVER_KEY` (base64, 32 bytes), else the file
/// `server.key` beside the database, created (mode 0600) on first start. Losing it makes every
/// stored AccessKey unusable, so back it up with the database, but not in the same place.
fn load_server_key(db_path: &Path) -> anyhow::Result<ServerKey> {
    if let Ok(text) = std::env::var("KEYPLANE_SERVER_KEY") {
        return Ok(ServerKey::from_base64(&text)?);
    }
    let file = db_path.with_file_name("server.key");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
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

async fn bootstrap(
    store: &dyn Store,
    db_path: &Path,
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
        let file = db_path.with_file_name("root-access-key.json");
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
