//! Host instances, on SQLite (the queries of `../postgres/agents.rs`): registration, the agent's
//! credential, desired state and reports. Wake-ups stay in the server's memory: one process owns
//! the file.

use async_trait::async_trait;
use chrono::Utc;
use keyplane_core::model::{Instance, OsType};
use keyplane_core::CoreError;
use rusqlite::params;

use super::common::write_binding;
use super::rows::{insert_instance, instance_from_row, INSTANCE_COLUMNS};
use super::sql::{execute, get_at, row, rows, scalar};
use super::SqliteStore;
use crate::{
    parse_ts, ts, AgentDesired, AgentReport, Agents, RegistrationToken, RegistrationTokenInfo,
    Result,
};

#[async_trait]
impl Agents for SqliteStore {
    async fn create_registration_token(&self, t: &RegistrationToken) -> Result<()> {
        let t = t.clone();
        self.engine
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO registration_tokens (token_hash, token_id, account_id, region_id, zone_id, name, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    params![
                        t.token_hash,
                        t.token_id,
                        t.account_id,
                        t.region_id,
                        t.zone_id,
                        t.name,
                        ts(Utc::now()),
                        ts(t.expires_at),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_registration_tokens(&self, account: &str) -> Result<Vec<RegistrationTokenInfo>> {
        self.engine.read(|c| {
            rows(
                c,
                "SELECT token_id, region_id, zone_id, name, created_at, expires_at, used_at FROM registration_tokens \
                 WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at, token_id",
                params![account],
                |r| {
                    Ok(RegistrationTokenInfo {
                        token_id: get_at(r, 0)?,
                        region_id: get_at(r, 1)?,
                        zone_id: get_at(r, 2)?,
                        name: get_at(r, 3)?,
                        created_at: parse_ts(&get_at::<String>(r, 4)?)?,
                        expires_at: parse_ts(&get_at::<String>(r, 5)?)?,
                        used: get_at::<Option<String>>(r, 6)?.is_some(),
                    })
                },
            )
        })
    }

    async fn revoke_registration_token(&self, account: &str, token_id: &str) -> Result<bool> {
        let (account, token_id) = (account.to_string(), token_id.to_string());
        self.engine
            .write(move |c| {
                let done = execute(
                    c,
                    "UPDATE registration_tokens SET revoked_at = $1 \
                     WHERE account_id = $2 AND token_id = $3 AND revoked_at IS NULL",
                    params![ts(Utc::now()), account, token_id],
                )?;
                Ok(done == 1)
            })
            .await
    }

    async fn redeem_registration_token(
        &self,
        token_hash: &str,
        instance: &Instance,
        credential_hash: &str,
    ) -> Result<Option<Instance>> {
        let (token_hash, instance, credential_hash) = (
            token_hash.to_string(),
            instance.clone(),
            credential_hash.to_string(),
        );
        self.engine
            .write(move |c| {
                // One statement checks and claims the token, so no check can go stale before the
                // claim. The timestamps are fixed-width UTC text (`ts`), so comparing the text
                // compares the times.
                let now = ts(Utc::now());
                let claimed: Option<(String, String, String, String)> = row(
                    c,
                    "UPDATE registration_tokens SET used_at = $1, instance_id = $2 \
                     WHERE token_hash = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
                     RETURNING account_id, region_id, zone_id, name",
                    params![now, instance.id, token_hash],
                    |r| Ok((get_at(r, 0)?, get_at(r, 1)?, get_at(r, 2)?, get_at(r, 3)?)),
                )?;
                let Some((account, region, zone, name)) = claimed else {
                    return Ok(None);
                };
                let mut inst = instance;
                inst.account_id = account;
                inst.region_id = region;
                inst.zone_id = zone;
                if !name.is_empty() {
                    inst.name = name;
                }
                insert_instance(c, &inst, None)?;
                execute(
                    c,
                    "UPDATE instances SET agent_credential_hash = $1 WHERE id = $2",
                    params![credential_hash, inst.id],
                )?;
                Ok(Some(inst))
            })
            .await
    }

    async fn agent_credential(&self, instance_id: &str) -> Result<Option<(String, String)>> {
        self.engine.read(|c| {
            let found: Option<(String, Option<String>)> = row(
                c,
                "SELECT account_id, agent_credential_hash FROM instances WHERE id = $1 AND provider = 'host'",
                params![instance_id],
                |r| Ok((get_at(r, 0)?, get_at(r, 1)?)),
            )?;
            Ok(found.and_then(|(account, hash)| Some((account, hash?))))
        })
    }

    async fn agent_desired(&self, instance_id: &str) -> Result<Option<AgentDesired>> {
        self.engine.read(|c| {
            row(
                c,
                "SELECT i.id, i.login_user, i.desired_password_login, i.apply_seq, k.public_key, k.fingerprint_sha256, \
                 i.password_hash, i.desired_password_version, i.os_type \
                 FROM instances i LEFT JOIN key_pairs k ON k.id = i.key_pair_id WHERE i.id = $1 AND i.provider = 'host'",
                params![instance_id],
                |r| {
                    // The agent is for Linux: a Windows reset stays with the server.
                    let linux = get_at::<String>(r, 8)? == OsType::Linux.as_str();
                    let version: i64 = get_at(r, 7)?;
                    Ok(AgentDesired {
                        instance_id: get_at(r, 0)?,
                        login_user: get_at(r, 1)?,
                        password_login: get_at(r, 2)?,
                        apply_seq: get_at(r, 3)?,
                        public_key: get_at(r, 4)?,
                        fingerprint: get_at(r, 5)?,
                        password_hash: get_at::<Option<String>>(r, 6)?
                            .filter(|_| linux && version > 0),
                        password_version: if linux { version } else { 0 },
                    })
                },
            )
        })
    }

    async fn record_agent_report(
        &self,
        instance_id: &str,
        report: &AgentReport,
    ) -> Result<Instance> {
        let (instance_id, report) = (instance_id.to_string(), report.clone());
        self.engine
            .write(move |c| {
                let mut inst = row(
                    c,
                    &format!(
                        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1 AND provider = 'host'"
                    ),
                    params![instance_id],
                    instance_from_row,
                )?
                .ok_or_else(|| CoreError::InstanceNotFound(instance_id.clone()))?;
                // Which key pair the reported fingerprint belongs to: the desired or the confirmed
                // one, else a placeholder naming what was found.
                let candidates = [
                    inst.binding.desired_key_pair_id.clone(),
                    inst.binding.effective_key_pair_id.clone(),
                ];
                let mut found: Option<String> = None;
                if !report.fingerprints.is_empty() {
                    for kp in candidates.into_iter().flatten() {
                        let fp: Option<String> = scalar(
                            c,
                            "SELECT fingerprint_sha256 FROM key_pairs WHERE id = $1",
                            params![kp],
                        )?;
                        if report.fingerprints.len() == 1
                            && fp.as_deref() == Some(report.fingerprints[0].as_str())
                        {
                            found = Some(kp);
                            break;
                        }
                    }
                    if found.is_none() {
                        found = Some(format!("unknown:{}", report.fingerprints.join(",")));
                    }
                }
                match report.applied_seq {
                    Some(_) => inst.binding.host_applied(
                        found,
                        report.password_login,
                        report.password_version,
                        report.error.clone(),
                    ),
                    None if report.error.is_some() => inst.binding.host_applied(
                        None,
                        report.password_login,
                        None,
                        report.error.clone(),
                    ),
                    None => inst.binding.host_checked(found, report.password_login),
                }
                write_binding(c, &inst)?;
                execute(
                    c,
                    "UPDATE instances SET reported_fingerprints = $1, reported_at = $2 WHERE id = $3",
                    params![report.fingerprints.join(","), ts(Utc::now()), instance_id],
                )?;
                Ok(inst)
            })
            .await
    }

    /// One process owns the file: wake-ups stay in the server's memory.
    async fn announce(&self, _: &[String]) -> Result<()> {
        Ok(())
    }

    async fn announcements(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>> {
        Ok(None)
    }
}
