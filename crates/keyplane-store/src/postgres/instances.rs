//! Instances: creation, listing, key pair bindings and power operations, on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::binding::{check_bindable, check_resettable, transition, Power};
use keyplane_core::model::{Instance, InstanceStatus, KeyPair};
use keyplane_core::{CoreError, InstanceFailure};
use sqlx::{QueryBuilder, Row};

use super::audit::commit;
use super::rows::{self, instance_from_row};
use super::store::*;
use super::{Db, SqlStore, FOR_SHARE, FOR_UPDATE, FOR_UPDATE_SKIP_LOCKED};
use crate::*;

#[async_trait]
impl Instances for SqlStore {
    async fn insert_instances(
        &self,
        instances: &[Instance],
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for i in instances {
            rows::insert_instance(&mut tx, i, done_at).await?;
        }
        if let Some(a) = audit {
            super::audit::insert_audit(&mut *tx, a).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn instance(&self, account: &str, id: &str) -> Result<Option<Instance>> {
        let row = sqlx::query("SELECT * FROM instances WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let mut items: Vec<Instance> = row.iter().map(instance_from_row).collect::<Result<_>>()?;
        self.load_instance_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: Page,
    ) -> Result<Listing<Instance>> {
        self.list_page(
            "instances",
            rows::INSTANCES_WITH_TAGS,
            |qb| push_instance_filter(qb, filter),
            rows::instance_with_tags_from_row,
            page,
        )
        .await
    }

    async fn bind(
        &self,
        account: &str,
        region: &str,
        key_pair: &KeyPair,
        instance_ids: &[String],
        op: BindOp,
        audit: Option<BindAudit<'_>>,
    ) -> Result<Vec<InstanceOutcome>> {
        let mut tx = self.begin(Serial::Rows).await?;
        // The key pair first (shared: binds of one key pair run together, its deletion waits),
        // then the instances in ID order: every writer locks in this one order.
        let key_pair_query = format!("SELECT id FROM key_pairs WHERE id = $1{FOR_SHARE}");
        let still_there: Option<String> = sqlx::query_scalar(&key_pair_query)
            .bind(&key_pair.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if still_there.is_none() {
            return Err(CoreError::KeyPairNotFound(key_pair.name.clone()));
        }
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM instances WHERE account_id = ");
        qb.push_bind(account.to_string());
        push_in(&mut qb, "id", instance_ids);
        qb.push(" ORDER BY id").push(FOR_UPDATE);
        let rows = qb.build().fetch_all(&mut *tx).await.map_err(db)?;
        let mut found: HashMap<String, Instance> = HashMap::new();
        for r in &rows {
            let i = instance_from_row(r)?;
            found.insert(i.id.clone(), i);
        }
        let mut outcomes = Vec::with_capacity(instance_ids.len());
        let mut changed: Vec<Instance> = Vec::new();
        for id in instance_ids {
            let Some(mut inst) = found.remove(id).filter(|i| i.region_id == region) else {
                outcomes.push((id.clone(), Err(InstanceFailure::NotFound)));
                continue;
            };
            if let Err(f) = check_bindable(&inst) {
                outcomes.push((id.clone(), Err(f)));
                continue;
            }
            match op {
                BindOp::Attach => {
                    inst.binding.bind(&key_pair.id);
                    inst.key_pair_name = Some(key_pair.name.clone());
                    changed.push(inst);
                }
                // Detaching a key pair the instance does not have changes nothing.
                BindOp::Detach
                    if inst.binding.desired_key_pair_id.as_deref() == Some(&key_pair.id) =>
                {
                    inst.binding.unbind();
                    inst.key_pair_name = None;
                    changed.push(inst);
                }
                BindOp::Detach => {}
            }
            outcomes.push((id.clone(), Ok(())));
        }
        write_desired_bindings(&mut tx, &changed).await?;
        if let Some(a) = audit {
            super::audit::insert_audit(&mut *tx, &a.complete(&outcomes)).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }

    async fn power(
        &self,
        account: &str,
        id: &str,
        op: Power,
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance> {
        let mut tx = self.begin(Serial::Rows).await?;
        let mut inst = instance_in_tx(&mut tx, account, id).await?;
        let (during, after) = transition(inst.status, op)?;
        let boots = op != Power::Stop;
        if inst.provider == keyplane_core::model::Provider::Host {
            // A real host: the status is bookkeeping, and a start or reboot asks the agent to
            // apply; the binding changes only when the agent reports.
            inst.status = after;
            sqlx::query(
                "UPDATE instances SET status = $1, apply_seq = apply_seq + $2 WHERE id = $3",
            )
            .bind(after.as_str())
            .bind(boots as i64)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            commit(tx, audit).await?;
            return Ok(inst);
        }
        match done_at {
            None => {
                inst.status = after;
                if boots {
                    inst.binding.boot();
                    inst.started_at = Some(Utc::now());
                }
                write_binding(&mut tx, &inst).await?;
            }
            Some(at) => {
                inst.status = during;
                sqlx::query(
                    "UPDATE instances SET status = $1, transition_target = $2, transition_at = $3, \
                     transition_boots = $4 WHERE id = $5",
                )
                .bind(during.as_str())
                .bind(after.as_str())
                .bind(ts(at))
                .bind(boots)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        commit(tx, audit).await?;
        Ok(inst)
    }

    async fn modify_instance(
        &self,
        account: &str,
        id: &str,
        change: &InstanceChange,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance> {
        let mut tx = self.begin(Serial::Rows).await?;
        let mut inst = instance_in_tx(&mut tx, account, id).await?;
        if let Some(hash) = &change.password_hash {
            check_resettable(&inst)?;
            inst.password_hash = Some(hash.clone());
            inst.has_password = true;
            inst.binding.reset_password();
        }
        if let Some(v) = &change.name {
            inst.name = v.clone();
        }
        if let Some(v) = &change.description {
            inst.description = v.clone();
        }
        if let Some(v) = &change.host_name {
            inst.host_name = v.clone();
        }
        sqlx::query(
            "UPDATE instances SET name = $1, description = $2, host_name = $3 WHERE id = $4",
        )
        .bind(&inst.name)
        .bind(&inst.description)
        .bind(&inst.host_name)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if change.password_hash.is_some() {
            write_binding(&mut tx, &inst).await?;
        }
        commit(tx, audit).await?;
        self.load_instance_tags(std::slice::from_mut(&mut inst))
            .await?;
        Ok(inst)
    }

    async fn complete_transitions(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin(Serial::Rows).await?;
        // Every server sweeps: rows another sweep or a call holds are left for the next sweep.
        let due = format!(
            "SELECT * FROM instances WHERE transition_at IS NOT NULL AND transition_at <= $1 \
             ORDER BY id{FOR_UPDATE_SKIP_LOCKED}"
        );
        let rows = sqlx::query(&due)
            .bind(ts(now))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        for r in &rows {
            let mut inst = instance_from_row(r)?;
            let target: String = r.get("transition_target");
            inst.status = InstanceStatus::parse(&target)
                .ok_or_else(|| CoreError::Internal(format!("bad transition target {target}")))?;
            if r.get::<bool, _>("transition_boots") {
                inst.binding.boot();
                inst.started_at = Some(now);
            }
            write_binding(&mut tx, &inst).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(rows.len() as u64)
    }

    async fn reschedule_transitions(
        &self,
        account: &str,
        ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE instances SET transition_at = $1 \
             WHERE account_id = $2 AND id = ANY($3) AND transition_at IS NOT NULL",
        )
        .bind(ts(at))
        .bind(account)
        .bind(ids)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(r.rows_affected())
    }

    async fn delete_instance(
        &self,
        account: &str,
        id: &str,
        force: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let inst = instance_in_tx(&mut tx, account, id).await?;
        let deletable = match inst.status {
            InstanceStatus::Stopped => true,
            InstanceStatus::Running => force,
            _ => false,
        };
        if !deletable {
            return Err(CoreError::IncorrectInstanceStatus);
        }
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        commit(tx, audit).await
    }
}
