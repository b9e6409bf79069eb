//! Instances: creation, listing, key pair bindings and power operations, on SQLite (the same queries
//! as `postgres/instances.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::binding::{check_bindable, check_resettable, transition, Power};
use keyplane_core::model::{Instance, InstanceStatus, KeyPair};
use keyplane_core::{CoreError, InstanceFailure};
use rusqlite::params;

use super::audit::insert_audit;
use super::common::{
    instance_in_tx, list_page, load_instance_tags, push_instance_filter, write_binding,
    write_desired_bindings,
};
use super::rows::{
    insert_instance, instance_from_row, instance_with_tags_from_row, INSTANCE_COLUMNS,
    INSTANCE_TAGS,
};
use super::sql::{built_rows, execute, get, row, rows, scalar, Sql};
use super::SqliteStore;
use crate::{
    ts, AuditRecord, BindAudit, BindOp, InstanceChange, InstanceFilter, InstanceOutcome, Instances,
    Listing, Page, Result,
};

#[async_trait]
impl Instances for SqliteStore {
    async fn insert_instances(
        &self,
        instances: &[Instance],
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (instances, audit) = (instances.to_vec(), audit.cloned());
        self.engine
            .write(move |c| {
                for i in &instances {
                    insert_instance(c, i, done_at)?;
                }
                audit.map_or(Ok(()), |a| insert_audit(c, &a))
            })
            .await
    }

    async fn instance(&self, account: &str, id: &str) -> Result<Option<Instance>> {
        self.engine.read(|c| {
            let found = row(
                c,
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances WHERE account_id = $1 AND id = $2"
                ),
                params![account, id],
                instance_from_row,
            )?;
            let mut items: Vec<Instance> = found.into_iter().collect();
            load_instance_tags(c, &mut items)?;
            Ok(items.pop())
        })
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: Page,
    ) -> Result<Listing<Instance>> {
        self.engine.read(|c| {
            list_page(
                c,
                "instances",
                &format!("{INSTANCE_COLUMNS}, {INSTANCE_TAGS}"),
                |q| push_instance_filter(q, filter),
                instance_with_tags_from_row,
                page,
            )
        })
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
        let (account, region) = (account.to_string(), region.to_string());
        let (key_pair, instance_ids) = (key_pair.clone(), instance_ids.to_vec());
        let audit = audit.map(|a| (a.record.clone(), a.failure_code));
        self.engine
            .write(move |c| {
                // The key pair may have been deleted since the caller looked it up.
                let still_there: Option<String> = scalar(
                    c,
                    "SELECT id FROM key_pairs WHERE id = $1",
                    params![key_pair.id],
                )?;
                if still_there.is_none() {
                    return Err(CoreError::KeyPairNotFound(key_pair.name.clone()));
                }
                let mut q = Sql::new(format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances WHERE account_id = "
                ));
                q.push_bind(account);
                q.push_in("id", &instance_ids);
                q.push(" ORDER BY id");
                let mut found: HashMap<String, Instance> = HashMap::new();
                for i in built_rows(c, &q, instance_from_row)? {
                    found.insert(i.id.clone(), i);
                }
                let mut outcomes = Vec::with_capacity(instance_ids.len());
                let mut changed: Vec<Instance> = Vec::new();
                for id in &instance_ids {
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
                            if inst.binding.desired_key_pair_id.as_deref()
                                == Some(&key_pair.id) =>
                        {
                            inst.binding.unbind();
                            inst.key_pair_name = None;
                            changed.push(inst);
                        }
                        BindOp::Detach => {}
                    }
                    outcomes.push((id.clone(), Ok(())));
                }
                write_desired_bindings(c, &changed)?;
                if let Some((record, failure_code)) = &audit {
                    let a = BindAudit {
                        record,
                        failure_code: *failure_code,
                    };
                    insert_audit(c, &a.complete(&outcomes))?;
                }
                Ok(outcomes)
            })
            .await
    }

    async fn power(
        &self,
        account: &str,
        id: &str,
        op: Power,
        done_at: Option<DateTime<Utc>>,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance> {
        let (account, id) = (account.to_string(), id.to_string());
        self.write_audited(audit, move |c| {
                let mut inst = instance_in_tx(c, &account, &id)?;
                let (during, after) = transition(inst.status, op)?;
                let boots = op != Power::Stop;
                if inst.provider == keyplane_core::model::Provider::Host {
                    // A real host: the status is bookkeeping, and a start or reboot asks the agent
                    // to apply; the binding changes only when the agent reports.
                    inst.status = after;
                    execute(
                        c,
                        "UPDATE instances SET status = $1, apply_seq = apply_seq + $2 WHERE id = $3",
                        params![after.as_str(), boots as i64, id],
                    )?;
                    return Ok(inst);
                }
                match done_at {
                    None => {
                        inst.status = after;
                        if boots {
                            inst.binding.boot();
                            inst.started_at = Some(Utc::now());
                        }
                        write_binding(c, &inst)?;
                    }
                    Some(at) => {
                        inst.status = during;
                        execute(
                            c,
                            "UPDATE instances SET status = $1, transition_target = $2, transition_at = $3, \
                             transition_boots = $4 WHERE id = $5",
                            params![during.as_str(), after.as_str(), ts(at), boots, id],
                        )?;
                    }
                }
                Ok(inst)
            })
            .await
    }

    async fn modify_instance(
        &self,
        account: &str,
        id: &str,
        change: &InstanceChange,
        audit: Option<&AuditRecord>,
    ) -> Result<Instance> {
        let (account, id, change) = (account.to_string(), id.to_string(), change.clone());
        let mut inst = self.write_audited(audit, move |c| {
                let mut inst = instance_in_tx(c, &account, &id)?;
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
                execute(
                    c,
                    "UPDATE instances SET name = $1, description = $2, host_name = $3 WHERE id = $4",
                    params![inst.name, inst.description, inst.host_name, id],
                )?;
                if change.password_hash.is_some() {
                    write_binding(c, &inst)?;
                }
                Ok(inst)
            })
            .await?;
        self.engine
            .read(|c| load_instance_tags(c, std::slice::from_mut(&mut inst)))?;
        Ok(inst)
    }

    async fn complete_transitions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.engine
            .write(move |c| {
                // The single writer serializes sweeps and calls: every due row is completed.
                let due = rows(
                    c,
                    &format!(
                        "SELECT {INSTANCE_COLUMNS}, transition_target, transition_boots FROM instances \
                         WHERE transition_at IS NOT NULL AND transition_at <= $1 ORDER BY id"
                    ),
                    params![ts(now)],
                    |r| {
                        let mut inst = instance_from_row(r)?;
                        let target: String = get(r, "transition_target")?;
                        inst.status = InstanceStatus::parse(&target).ok_or_else(|| {
                            CoreError::Internal(format!("bad transition target {target}"))
                        })?;
                        if get::<bool>(r, "transition_boots")? {
                            inst.binding.boot();
                            inst.started_at = Some(now);
                        }
                        Ok(inst)
                    },
                )?;
                for inst in &due {
                    write_binding(c, inst)?;
                }
                Ok(due.len() as u64)
            })
            .await
    }

    async fn reschedule_transitions(
        &self,
        account: &str,
        ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let (account, ids) = (account.to_string(), ids.to_vec());
        self.engine
            .write(move |c| {
                let mut moved = 0;
                for id in &ids {
                    moved += execute(
                        c,
                        "UPDATE instances SET transition_at = $1 \
                         WHERE account_id = $2 AND id = $3 AND transition_at IS NOT NULL",
                        params![ts(at), account, id],
                    )?;
                }
                Ok(moved as u64)
            })
            .await
    }

    async fn delete_instance(
        &self,
        account: &str,
        id: &str,
        force: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, id) = (account.to_string(), id.to_string());
        self.write_audited(audit, move |c| {
            let inst = instance_in_tx(c, &account, &id)?;
            let deletable = match inst.status {
                InstanceStatus::Stopped => true,
                InstanceStatus::Running => force,
                _ => false,
            };
            if !deletable {
                return Err(CoreError::IncorrectInstanceStatus);
            }
            execute(c, "DELETE FROM instances WHERE id = $1", params![id])?;
            Ok(())
        })
        .await
    }
}
