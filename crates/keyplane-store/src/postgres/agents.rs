//! Host instances on PostgreSQL: registration, the agent's credential, desired state and
//! reports, and the wake-ups.

use async_trait::async_trait;
use chrono::Utc;
use keyplane_core::model::{Instance, OsType};
use keyplane_core::CoreError;
use sqlx::Row;

use super::rows::{insert_instance, instance_from_row};
use super::store::*;
use super::{SqlStore, FOR_UPDATE};
use crate::*;

#[async_trait]
impl Agents for SqlStore {
    async fn create_registration_token(&self, t: &RegistrationToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO registration_tokens (token_hash, token_id, account_id, region_id, zone_id, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.token_hash)
        .bind(&t.token_id)
        .bind(&t.account_id)
        .bind(&t.region_id)
        .bind(&t.zone_id)
        .bind(&t.name)
        .bind(ts(Utc::now()))
        .bind(ts(t.expires_at))
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_registration_tokens(&self, account: &str) -> Result<Vec<RegistrationTokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_id, region_id, zone_id, name, created_at, expires_at, used_at FROM registration_tokens \
             WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at, token_id",
        )
        .bind(account)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(RegistrationTokenInfo {
                    token_id: r.get(0),
                    region_id: r.get(1),
                    zone_id: r.get(2),
                    name: r.get(3),
                    created_at: parse_ts(&r.get::<String, _>(4))?,
                    expires_at: parse_ts(&r.get::<String, _>(5))?,
                    used: r.get::<Option<String>, _>(6).is_some(),
                })
            })
            .collect()
    }

    async fn revoke_registration_token(&self, account: &str, token_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE registration_tokens SET revoked_at = $1 \
             WHERE account_id = $2 AND token_id = $3 AND revoked_at IS NULL",
        )
        .bind(ts(Utc::now()))
        .bind(account)
        .bind(token_id)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn redeem_registration_token(
        &self,
        token_hash: &str,
        instance: &Instance,
        credential_hash: &str,
    ) -> Result<Option<Instance>> {
        let mut tx = self.begin(Serial::Rows).await?;
        // One statement checks and claims the token, so no check can go stale before the claim.
        // The timestamps are fixed-width UTC text (`ts`), so comparing the text compares the times.
        let now = ts(Utc::now());
        let row = sqlx::query(
            "UPDATE registration_tokens SET used_at = $1, instance_id = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
             RETURNING account_id, region_id, zone_id, name",
        )
        .bind(&now)
        .bind(&instance.id)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let mut inst = instance.clone();
        inst.account_id = row.get(0);
        inst.region_id = row.get(1);
        inst.zone_id = row.get(2);
        let name: String = row.get(3);
        if !name.is_empty() {
            inst.name = name;
        }
        insert_instance(&mut tx, &inst, None).await?;
        sqlx::query("UPDATE instances SET agent_credential_hash = $1 WHERE id = $2")
            .bind(credential_hash)
            .bind(&inst.id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(inst))
    }

    async fn agent_credential(&self, instance_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT account_id, agent_credential_hash FROM instances WHERE id = $1 AND provider = 'host'")
            .bind(instance_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(row.and_then(|r| Some((r.get(0), r.get::<Option<String>, _>(1)?))))
    }

    async fn agent_desired(&self, instance_id: &str) -> Result<Option<AgentDesired>> {
        let row = sqlx::query(
            "SELECT i.id, i.login_user, i.desired_password_login, i.apply_seq, k.public_key, k.fingerprint_sha256, \
             i.password_hash, i.desired_password_version, i.os_type \
             FROM instances i LEFT JOIN key_pairs k ON k.id = i.key_pair_id WHERE i.id = $1 AND i.provider = 'host'",
        )
        .bind(instance_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        Ok(row.map(|r| {
            // The agent is for Linux: a Windows reset stays with the server.
            let linux = r.get::<String, _>(8) == OsType::Linux.as_str();
            let version: i64 = r.get(7);
            AgentDesired {
                instance_id: r.get(0),
                login_user: r.get(1),
                password_login: r.get(2),
                apply_seq: r.get(3),
                public_key: r.get(4),
                fingerprint: r.get(5),
                password_hash: r
                    .get::<Option<String>, _>(6)
                    .filter(|_| linux && version > 0),
                password_version: if linux { version } else { 0 },
            }
        }))
    }

    async fn record_agent_report(
        &self,
        instance_id: &str,
        report: &AgentReport,
    ) -> Result<Instance> {
        let mut tx = self.begin(Serial::Rows).await?;
        let query =
            format!("SELECT * FROM instances WHERE id = $1 AND provider = 'host'{FOR_UPDATE}");
        let row = sqlx::query(&query)
            .bind(instance_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| CoreError::InstanceNotFound(instance_id.to_string()))?;
        let mut inst = instance_from_row(&row)?;
        // Which key pair the reported fingerprint belongs to: the desired or the confirmed one,
        // else a placeholder naming what was found.
        let candidates = [
            &inst.binding.desired_key_pair_id,
            &inst.binding.effective_key_pair_id,
        ];
        let mut found: Option<String> = None;
        if !report.fingerprints.is_empty() {
            for kp in candidates.into_iter().flatten() {
                let fp: Option<String> =
                    sqlx::query_scalar("SELECT fingerprint_sha256 FROM key_pairs WHERE id = $1")
                        .bind(kp)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                if report.fingerprints.len() == 1
                    && fp.as_deref() == Some(report.fingerprints[0].as_str())
                {
                    found = Some(kp.clone());
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
            None if report.error.is_some() => {
                inst.binding
                    .host_applied(None, report.password_login, None, report.error.clone())
            }
            None => inst.binding.host_checked(found, report.password_login),
        }
        write_binding(&mut tx, &inst).await?;
        sqlx::query(
            "UPDATE instances SET reported_fingerprints = $1, reported_at = $2 WHERE id = $3",
        )
        .bind(report.fingerprints.join(","))
        .bind(ts(Utc::now()))
        .bind(instance_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(inst)
    }

    async fn announce(&self, instance_ids: &[String]) -> Result<()> {
        self.announce_impl(instance_ids).await
    }

    async fn announcements(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>> {
        self.announcements_impl().await
    }
}
