//! `keyplane admin fault|clock|snapshot …`: the emulator's controls (SPEC section 14) through the
//! native API. Each prints the JSON the contract names on stdout and exits 0, or the server's
//! error on stderr and exits 1 (on a server without `--emulator`: emulator mode is off).

use crate::client::{only, Answer, Client};

#[derive(clap::Subcommand)]
pub enum FaultCommand {
    /// Adds a fault; prints `{"FaultId"}`. Exactly one of --code, --latency-ms, --hold.
    Add {
        /// The API action it matches, e.g. AttachKeyPair.
        #[arg(long)]
        action: String,
        /// The dialect it matches.
        #[arg(long, default_value = "any", value_parser = ["alibaba", "volcengine", "any"])]
        dialect: String,
        /// Only calls naming this instance; with --code on a batch action (Attach/Detach,
        /// Start/Stop/Reboot batches), only this instance's entry fails.
        #[arg(long)]
        instance_id: Option<String>,
        /// Only calls naming this key pair (name or ID).
        #[arg(long)]
        key_pair: Option<String>,
        /// Answer this vendor error code.
        #[arg(long)]
        code: Option<String>,
        /// The HTTP status of --code when the dialect does not know the code (default 400).
        #[arg(long)]
        http_status: Option<u16>,
        /// The message of --code.
        #[arg(long)]
        message: Option<String>,
        /// Delay the call this many milliseconds (at most 20,000).
        #[arg(long)]
        latency_ms: Option<u64>,
        /// Keep the instances the call starts, stops, reboots or runs in their transitional
        /// status until the fault is deleted.
        #[arg(long)]
        hold: bool,
        /// Fire for the next N matching calls only.
        #[arg(long, conflicts_with = "probability")]
        count: Option<u64>,
        /// Fire with this probability (0 to 1).
        #[arg(long)]
        probability: Option<f64>,
        /// The seed of --probability's draws, for a reproducible run.
        #[arg(long, requires = "probability")]
        seed: Option<u64>,
    },
    /// The account's faults: `{"Faults": [{"FaultId", "Action", …, "Fired": N}]}`.
    List,
    /// Deletes a fault (releasing what it holds).
    Delete {
        /// The fault's ID, `fault-…`.
        fault_id: String,
    },
    /// Deletes every fault of the account.
    Clear,
}

#[derive(clap::Subcommand)]
pub enum ClockCommand {
    /// Moves the simulated clock ahead; prints `{"Now"}`.
    Advance {
        #[arg(long)]
        seconds: u64,
    },
    /// Sets the simulated clock (forward only); prints `{"Now"}`.
    Set {
        /// An RFC 3339 time, e.g. 2030-01-01T00:00:00Z.
        #[arg(long)]
        at: String,
    },
    /// Prints `{"Now"}`.
    Show,
}

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Saves the whole store as NAME (replacing a snapshot of that name).
    Save { name: String },
    /// Loads snapshot NAME: every call then sees exactly the saved state.
    Load { name: String },
    /// The snapshots: `{"Snapshots": [{"Name", "Bytes", "SavedAt"}]}`.
    List,
    /// Deletes snapshot NAME.
    Delete { name: String },
}

/// A path segment from the command line: only the characters of an ID or a name, so no text can
/// turn into another path.
fn segment(what: &str, value: &str) -> anyhow::Result<String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && value != "."
        && value != "..";
    anyhow::ensure!(ok, "{value:?} is not a {what}: letters, digits, . _ - only");
    Ok(value.to_string())
}

const BASE: &str = "/api/v1/emulator";

async fn call(
    client: &Client,
    method: &str,
    path: &str,
    action: &str,
    q: &[(String, String)],
) -> anyhow::Result<Answer> {
    client
        .call(method, &format!("{BASE}{path}"), action, "v1", q)
        .await
}

pub async fn fault(client: &Client, command: FaultCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        FaultCommand::Add {
            action,
            dialect,
            instance_id,
            key_pair,
            code,
            http_status,
            message,
            latency_ms,
            hold,
            count,
            probability,
            seed,
        } => {
            let mut q: Vec<(String, String)> =
                vec![("Action".into(), action), ("Dialect".into(), dialect)];
            let optional = [
                ("InstanceId", instance_id),
                ("KeyPairName", key_pair),
                ("Code", code),
                ("HttpStatus", http_status.map(|s| s.to_string())),
                ("Message", message),
                ("LatencyMs", latency_ms.map(|s| s.to_string())),
                ("Hold", hold.then(|| "true".to_string())),
                ("Count", count.map(|s| s.to_string())),
                ("Probability", probability.map(|s| s.to_string())),
                ("Seed", seed.map(|s| s.to_string())),
            ];
            q.extend(
                optional
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
            );
            only(
                call(client, "POST", "/faults", "AddFault", &q).await?,
                &["FaultId"],
            )
        }
        FaultCommand::List => only(
            call(client, "GET", "/faults", "DescribeFaults", &[]).await?,
            &["Faults"],
        ),
        FaultCommand::Delete { fault_id } => {
            let id = segment("fault ID", &fault_id)?;
            only(
                call(
                    client,
                    "DELETE",
                    &format!("/faults/{id}"),
                    "DeleteFault",
                    &[],
                )
                .await?,
                &["FaultId"],
            )
        }
        FaultCommand::Clear => only(
            call(client, "DELETE", "/faults", "ClearFaults", &[]).await?,
            &["Deleted"],
        ),
    })
}

pub async fn clock(client: &Client, command: ClockCommand) -> anyhow::Result<Answer> {
    let answer = match command {
        ClockCommand::Advance { seconds } => {
            let q = [("Seconds".to_string(), seconds.to_string())];
            call(client, "POST", "/clock/advance", "AdvanceClock", &q).await?
        }
        ClockCommand::Set { at } => {
            let q = [("At".to_string(), at)];
            call(client, "POST", "/clock/set", "SetClock", &q).await?
        }
        ClockCommand::Show => call(client, "GET", "/clock", "DescribeClock", &[]).await?,
    };
    Ok(only(answer, &["Now"]))
}

pub async fn snapshot(client: &Client, command: SnapshotCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        SnapshotCommand::Save { name } => {
            let q = [("Name".to_string(), segment("snapshot name", &name)?)];
            only(
                call(client, "POST", "/snapshots", "SaveSnapshot", &q).await?,
                &["Name"],
            )
        }
        SnapshotCommand::Load { name } => {
            let name = segment("snapshot name", &name)?;
            let path = format!("/snapshots/{name}/load");
            only(
                call(client, "POST", &path, "LoadSnapshot", &[]).await?,
                &["Name"],
            )
        }
        SnapshotCommand::List => only(
            call(client, "GET", "/snapshots", "DescribeSnapshots", &[]).await?,
            &["Snapshots"],
        ),
        SnapshotCommand::Delete { name } => {
            let name = segment("snapshot name", &name)?;
            let path = format!("/snapshots/{name}");
            only(
                call(client, "DELETE", &path, "DeleteSnapshot", &[]).await?,
                &["Name"],
            )
        }
    })
}

/// `keyplane admin account delete NAME`.
pub async fn delete_account(client: &Client, name: &str) -> anyhow::Result<Answer> {
    let name = segment("account name or ID", name)?;
    Ok(only(
        call(
            client,
            "DELETE",
            &format!("/accounts/{name}"),
            "DeleteAccount",
            &[],
        )
        .await?,
        &["AccountId"],
    ))
}
