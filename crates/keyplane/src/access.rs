//! `keyplane access …` (SPEC section 15): grants of a key pair to named OS users, beside the
//! vendor binding, and revocation of a key pair everywhere, through the native API with the same
//! `--endpoint`, `--ca-file`, `--region` and profile settings as `keyplane ecs`.

use anyhow::Context;

use crate::client::{only, print, Client, Connection};

#[derive(clap::Args)]
pub struct AccessArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(clap::Subcommand)]
enum AccessCommand {
    /// Grants a key pair to OS user USER on instances; prints `{"Grants": [...], "Failed": [...]}`.
    Grant {
        /// The key pair's name.
        #[arg(long)]
        key_pair: String,
        /// An instance (i-…); repeat for several (at most 50).
        #[arg(long = "instance-id", required = true)]
        instance_ids: Vec<String>,
        /// The OS user the key logs in as (it must exist on the host; it is never created).
        #[arg(long)]
        os_user: String,
        /// How long the grant lasts: `90s`, `15m`, `8h`, `30d` (1 minute to 90 days; none: until
        /// revoked). sshd itself refuses the key after the deadline (`expiry-time`).
        #[arg(long)]
        ttl: Option<String>,
        /// Applied by the agent at once, without a restart (otherwise at the next start or
        /// reboot, like a binding).
        #[arg(long)]
        now: bool,
    },
    /// The grants: `{"Grants": [{"GrantId", "InstanceId", "KeyPairName", "OsUser", "ExpiresAt",
    /// "State", …}]}`; all regions unless --region.
    List {
        /// Only this instance's.
        #[arg(long)]
        instance_id: Option<String>,
        /// Only this key pair's (needs --region).
        #[arg(long)]
        key_pair: Option<String>,
    },
    /// Ends one grant (applied at once where the agent can).
    Revoke {
        #[arg(long)]
        grant_id: String,
    },
    /// Ends every binding and grant of a key pair in the account at once, and makes every host
    /// refuse its key (sshd `RevokedKeys`), copies added by hand included.
    RevokeKey {
        #[arg(long)]
        key_pair: String,
    },
    /// Lifts `revoke-key`: the key pair can be bound and granted again.
    UnrevokeKey {
        #[arg(long)]
        key_pair: String,
    },
}

pub async fn run(args: AccessArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::new(&args.connection)?;
    let region = || {
        client.region.clone().context(
            "no region: give --region REGION, or set KEYPLANE_REGION (or the profile's \"region\")",
        )
    };
    let answer = match args.command {
        AccessCommand::Grant {
            key_pair,
            instance_ids,
            os_user,
            ttl,
            now,
        } => {
            let mut q = vec![
                ("Region".to_string(), region()?),
                ("KeyPairName".to_string(), key_pair),
                ("OsUser".to_string(), os_user),
            ];
            for (n, id) in instance_ids.into_iter().enumerate() {
                q.push((format!("InstanceId.{}", n + 1), id));
            }
            q.extend(ttl.map(|t| ("Ttl".to_string(), t)));
            if now {
                q.push(("Now".into(), "true".into()));
            }
            only(
                client
                    .call("POST", "/api/v1/grants", "GrantAccess", "v1", &q)
                    .await?,
                &["Grants", "Failed"],
            )
        }
        AccessCommand::List {
            instance_id,
            key_pair,
        } => {
            let mut q = Vec::new();
            q.extend(client.region.clone().map(|r| ("Region".to_string(), r)));
            q.extend(instance_id.map(|i| ("InstanceId".to_string(), i)));
            q.extend(key_pair.map(|k| ("KeyPairName".to_string(), k)));
            only(
                client
                    .call("GET", "/api/v1/grants", "DescribeGrants", "v1", &q)
                    .await?,
                &["Grants"],
            )
        }
        AccessCommand::Revoke { grant_id } => {
            anyhow::ensure!(
                !grant_id.is_empty()
                    && grant_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{grant_id:?} is not a grant ID (gr-…)"
            );
            let path = format!("/api/v1/grants/{grant_id}/revoke");
            only(
                client
                    .call("POST", &path, "RevokeAccess", "v1", &[])
                    .await?,
                &["GrantId", "State"],
            )
        }
        AccessCommand::RevokeKey { key_pair } => {
            let q = [
                ("Region".to_string(), region()?),
                ("KeyPairName".to_string(), key_pair),
            ];
            only(
                client
                    .call("POST", "/api/v1/revoked-keys", "RevokeKey", "v1", &q)
                    .await?,
                &["KeyPairName", "Revoked", "UnboundInstances"],
            )
        }
        AccessCommand::UnrevokeKey { key_pair } => {
            let q = [
                ("Region".to_string(), region()?),
                ("KeyPairName".to_string(), key_pair),
            ];
            only(
                client
                    .call("DELETE", "/api/v1/revoked-keys", "UnrevokeKey", "v1", &q)
                    .await?,
                &["KeyPairName", "Revoked"],
            )
        }
    };
    print(answer)
}
