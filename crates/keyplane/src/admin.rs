//! `keyplane admin …`: server administration through the native API, with the same endpoint and
//! credentials as `keyplane ecs` (the bootstrap root AccessKey administers the server).

use anyhow::Context;

use crate::client::{print, Client, Connection};

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Accounts: `create NAME`, `list` (the bootstrap account's root only).
    #[command(subcommand)]
    Account(AccountCommand),
    /// One-time registration tokens for `keyplane agent`: `create`, `list`, `revoke`.
    #[command(subcommand)]
    RegistrationToken(TokenCommand),
    /// Instances of one region with their binding state (none, pending_restart, applied, failed,
    /// drifted). The region is --region, else KEYPLANE_REGION or the profile's, else cn-hangzhou.
    Instances {
        /// Only this instance (i-…).
        #[arg(long)]
        instance: Option<String>,
    },
    /// The audit log, oldest records first, one page at a time (--next-token for the next):
    /// `audit --action AttachKeyPair --result Forbidden.RAM`.
    Audit {
        /// Only this action, e.g. AttachKeyPair.
        #[arg(long)]
        action: Option<String>,
        /// `root` or `user/<name>`.
        #[arg(long)]
        principal: Option<String>,
        /// `OK` or a vendor error code.
        #[arg(long)]
        result: Option<String>,
        /// Another account (the bootstrap root only).
        #[arg(long)]
        account: Option<String>,
        /// Only records at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Records per page (at most 1000).
        #[arg(long, default_value_t = 100)]
        max: u32,
        /// The NextToken of the previous page.
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Emulator faults (`--emulator` servers): `add`, `list`, `delete`, `clear`.
    #[command(subcommand)]
    Fault(crate::emulator::FaultCommand),
    /// The emulator's simulated clock: `advance`, `set`, `show`.
    #[command(subcommand)]
    Clock(crate::emulator::ClockCommand),
    /// Emulator snapshots of the whole store: `save`, `load`, `list`, `delete`.
    #[command(subcommand)]
    Snapshot(crate::emulator::SnapshotCommand),
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// A one-time token for `keyplane agent --token`; prints `{"Token", "TokenId", "ExpiresAt"}`
    /// (the token is shown only this once). The host's region is --region, else KEYPLANE_REGION
    /// or the profile's.
    Create {
        /// The zone of the host, e.g. cn-hangzhou-h.
        #[arg(long)]
        zone: Option<String>,
        /// The instance name the host gets.
        #[arg(long)]
        name: Option<String>,
        /// How long the token can be used: `90s`, `15m`, `8h`, `30d` (1 minute to 30 days;
        /// 24 hours when absent).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// The account's tokens not revoked: `{"Tokens": [{"TokenId", "Name", "ExpiresAt", "Used"}]}`
    /// (never the tokens themselves).
    List,
    /// Revokes a token by its ID (`rt-…`): no agent can register with it any more.
    Revoke {
        /// The token's ID, `rt-…`.
        token_id: String,
    },
}

#[derive(clap::Subcommand)]
enum AccountCommand {
    /// Creates an account; prints its root AccessKey (the secret is shown once).
    Create {
        /// The account's name.
        name: String,
    },
    /// Lists the accounts.
    List,
    /// Deletes an account and everything it holds but its audit records (emulator mode; the
    /// bootstrap root may delete any other account, an account's root its own). NAME is the
    /// account's name or ID.
    Delete {
        /// The account's name or ID.
        name: String,
    },
}

/// `admin instances` lists one region, and has always listed this one when none is set.
const DEFAULT_INSTANCES_REGION: &str = "cn-hangzhou";

pub async fn run(args: AdminArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.connection)?;
    let answer = match args.command {
        AdminCommand::Account(AccountCommand::Create { name }) => {
            let answer = client
                .call(
                    "POST",
                    "/api/v1/accounts",
                    "CreateAccount",
                    "v1",
                    &[("Name".into(), name)],
                )
                .await?;
            if answer.status.is_success() {
                let b = &answer.body;
                let out = serde_json::json!({
                    "AccountId": b["AccountId"],
                    "AccessKeyId": b["AccessKeyId"],
                    "AccessKeySecret": b["AccessKeySecret"],
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(std::process::ExitCode::SUCCESS);
            }
            answer
        }
        AdminCommand::RegistrationToken(TokenCommand::Create { zone, name, ttl }) => {
            let region = client.region.clone().context(
                "no region for the token: give --region REGION, or set KEYPLANE_REGION (or the \
                 profile's \"region\")",
            )?;
            let mut q: Vec<(String, String)> = vec![("Region".into(), region)];
            q.extend(zone.map(|z| ("Zone".to_string(), z)));
            q.extend(name.map(|n| ("Name".to_string(), n)));
            q.extend(ttl.map(|t| ("Ttl".to_string(), t)));
            let answer = client
                .call(
                    "POST",
                    "/api/v1/registration-tokens",
                    "CreateRegistrationToken",
                    "v1",
                    &q,
                )
                .await?;
            if answer.status.is_success() {
                let b = &answer.body;
                println!(
                    "{}",
                    serde_json::json!({"Token": b["Token"], "TokenId": b["TokenId"], "ExpiresAt": b["ExpiresAt"]})
                );
                return Ok(std::process::ExitCode::SUCCESS);
            }
            answer
        }
        AdminCommand::RegistrationToken(TokenCommand::List) => {
            let answer = client
                .call(
                    "GET",
                    "/api/v1/registration-tokens",
                    "DescribeRegistrationTokens",
                    "v1",
                    &[],
                )
                .await?;
            if answer.status.is_success() {
                let out = serde_json::json!({"Tokens": answer.body["Tokens"]});
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(std::process::ExitCode::SUCCESS);
            }
            answer
        }
        AdminCommand::RegistrationToken(TokenCommand::Revoke { token_id }) => {
            // The ID goes into the path: anything but an ID's characters is refused here rather
            // than sent as another path.
            if !token_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                anyhow::bail!("{token_id:?} is not a registration token ID (rt-…)");
            }
            let answer = client
                .call(
                    "POST",
                    &format!("/api/v1/registration-tokens/{token_id}/revoke"),
                    "RevokeRegistrationToken",
                    "v1",
                    &[],
                )
                .await?;
            if answer.status.is_success() {
                println!("{}", serde_json::json!({"TokenId": answer.body["TokenId"]}));
                return Ok(std::process::ExitCode::SUCCESS);
            }
            answer
        }
        AdminCommand::Instances { instance } => {
            let region = client
                .region
                .clone()
                .unwrap_or_else(|| DEFAULT_INSTANCES_REGION.to_string());
            let mut q: Vec<(String, String)> = vec![("RegionId".into(), region)];
            q.extend(instance.map(|i| ("InstanceId".to_string(), i)));
            client
                .call("GET", "/api/v1/instances", "DescribeInstances", "v1", &q)
                .await?
        }
        AdminCommand::Fault(c) => crate::emulator::fault(&client, c).await?,
        AdminCommand::Clock(c) => crate::emulator::clock(&client, c).await?,
        AdminCommand::Snapshot(c) => crate::emulator::snapshot(&client, c).await?,
        AdminCommand::Account(AccountCommand::Delete { name }) => {
            crate::emulator::delete_account(&client, &name).await?
        }
        AdminCommand::Account(AccountCommand::List) => {
            client
                .call("GET", "/api/v1/accounts", "ListAccounts", "v1", &[])
                .await?
        }
        AdminCommand::Audit {
            action,
            principal,
            result,
            account,
            since,
            max,
            next_token,
        } => {
            let mut q: Vec<(String, String)> = vec![("MaxResults".into(), max.to_string())];
            for (k, v) in [
                ("Action", action),
                ("Principal", principal),
                ("Result", result),
                ("AccountId", account),
                ("Since", since),
                ("NextToken", next_token),
            ] {
                if let Some(v) = v {
                    q.push((k.into(), v));
                }
            }
            client
                .call("GET", "/api/v1/audit", "DescribeAuditRecords", "v1", &q)
                .await?
        }
    };
    print(answer)
}
