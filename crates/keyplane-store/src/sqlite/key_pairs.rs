//! Key pairs and their tags, on SQLite (the queries of `../postgres/key_pairs.rs`).

use async_trait::async_trait;
use chrono::Utc;
use keyplane_core::model::{KeyPair, Tag, MAX_TAGS};
use keyplane_core::CoreError;
use rusqlite::params;

use super::audit::insert_audit;
use super::common::{check_key_pairs, list_page, load_key_pair_tags, push_key_pair_filter};
use super::engine::{db, is_unique_violation};
use super::rows::{key_pair_from_row, key_pair_with_tags_from_row, KEY_PAIR_TAGS};
use super::sql::{built_rows, execute, get, row, scalar, try_execute, Sql};
use super::SqliteStore;
use crate::{ts, AuditRecord, KeyPairFilter, KeyPairs, Listing, Page, Result};

#[async_trait]
impl KeyPairs for SqliteStore {
    async fn create_key_pair(
        &self,
        kp: &KeyPair,
        quota: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (kp, audit) = (kp.clone(), audit.cloned());
        self.engine
            .write(move |c| {
                let count: i64 = scalar(
                    c,
                    "SELECT COUNT(*) FROM key_pairs WHERE account_id = $1 AND region_id = $2",
                    params![kp.account_id, kp.region_id],
                )?
                .unwrap_or(0);
                if count as usize >= quota {
                    return Err(CoreError::KeyPairQuotaExceeded(quota));
                }
                let inserted = try_execute(
                    c,
                    "INSERT INTO key_pairs (id, account_id, region_id, name, public_key, fingerprint_sha256, \
                     fingerprint_md5, resource_group_id, description, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    params![
                        kp.id,
                        kp.account_id,
                        kp.region_id,
                        kp.name,
                        kp.public_key,
                        kp.fingerprint_sha256,
                        kp.fingerprint_md5,
                        kp.resource_group_id,
                        kp.description,
                        ts(kp.created_at),
                    ],
                );
                match inserted {
                    Err(e) if is_unique_violation(&e) => {
                        return Err(CoreError::KeyPairAlreadyExists(kp.name.clone()))
                    }
                    Err(e) => return Err(db(e)),
                    Ok(_) => {}
                }
                for t in &kp.tags {
                    execute(
                        c,
                        "INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3)",
                        params![kp.id, t.key, t.value],
                    )?;
                }
                audit.map_or(Ok(()), |a| insert_audit(c, &a))
            })
            .await
    }

    async fn key_pair_by_name(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<KeyPair>> {
        self.engine.read(|c| {
            let found = row(
                c,
                "SELECT * FROM key_pairs WHERE account_id = $1 AND region_id = $2 AND name = $3",
                params![account, region, name],
                key_pair_from_row,
            )?;
            let mut items: Vec<KeyPair> = found.into_iter().collect();
            load_key_pair_tags(c, &mut items)?;
            Ok(items.pop())
        })
    }

    async fn key_pair_by_id(&self, account: &str, id: &str) -> Result<Option<KeyPair>> {
        self.engine.read(|c| {
            let found = row(
                c,
                "SELECT * FROM key_pairs WHERE account_id = $1 AND id = $2",
                params![account, id],
                key_pair_from_row,
            )?;
            let mut items: Vec<KeyPair> = found.into_iter().collect();
            load_key_pair_tags(c, &mut items)?;
            Ok(items.pop())
        })
    }

    async fn list_key_pairs(&self, filter: &KeyPairFilter, page: Page) -> Result<Listing<KeyPair>> {
        self.engine.read(|c| {
            list_page(
                c,
                "key_pairs",
                &format!("*, {KEY_PAIR_TAGS}"),
                |q| push_key_pair_filter(q, filter),
                key_pair_with_tags_from_row,
                page,
            )
        })
    }

    async fn delete_key_pairs(
        &self,
        account: &str,
        region: &str,
        names: &[String],
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, region, names) = (account.to_string(), region.to_string(), names.to_vec());
        let audit = audit.cloned();
        self.engine
            .write(move |c| {
                let mut q = Sql::new("SELECT id, name FROM key_pairs WHERE account_id = ");
                q.push_bind(account.clone())
                    .push(" AND region_id = ")
                    .push_bind(region)
                    .push_in("name", &names);
                let found: std::collections::HashMap<String, String> =
                    built_rows(c, &q, |r| Ok((get(r, "name")?, get(r, "id")?)))?
                        .into_iter()
                        .collect();
                for name in &names {
                    // Deleting a key pair that is not there is not an error, as with the vendor.
                    let Some(id) = found.get(name) else { continue };
                    let bound: i64 = scalar(
                        c,
                        // Two lookups, each on its own index: an OR of the two columns was a scan on SQLite.
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE account_id = $1 AND key_pair_id = $2 LIMIT 1) AS desired) \
                 + (SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE account_id = $1 AND effective_key_pair_id = $3 LIMIT 1) AS effective)",
                        params![account, id, id],
                    )?
                    .unwrap_or(0);
                    if bound > 0 {
                        return Err(CoreError::KeyPairInUse(name.clone()));
                    }
                    execute(c, "DELETE FROM key_pairs WHERE id = $1", params![id])?;
                }
                audit.map_or(Ok(()), |a| insert_audit(c, &a))
            })
            .await
    }

    async fn key_pair_usage(&self, account: &str, key_pair_id: &str) -> Result<u64> {
        self.engine.read(|c| {
            let n: i64 = scalar(
                c,
                "SELECT COUNT(*) FROM instances WHERE account_id = $1 AND key_pair_id = $2",
                params![account, key_pair_id],
            )?
            .unwrap_or(0);
            Ok(n as u64)
        })
    }

    async fn tag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        tags: &[Tag],
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, ids, tags) = (account.to_string(), ids.to_vec(), tags.to_vec());
        self.write_audited(audit, move |c| {
            check_key_pairs(c, &account, &ids)?;
            for id in &ids {
                for t in &tags {
                    execute(
                        c,
                        "INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT(key_pair_id, key) DO UPDATE SET value = excluded.value",
                        params![id, t.key, t.value],
                    )?;
                }
                let n: i64 = scalar(
                    c,
                    "SELECT COUNT(*) FROM key_pair_tags WHERE key_pair_id = $1",
                    params![id],
                )?
                .unwrap_or(0);
                if n as usize > MAX_TAGS {
                    return Err(CoreError::TooManyTags);
                }
            }
            Ok(())
        })
        .await
    }

    async fn untag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        keys: Option<&[String]>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, ids) = (account.to_string(), ids.to_vec());
        let keys = keys.map(<[String]>::to_vec);
        self.write_audited(audit, move |c| {
            check_key_pairs(c, &account, &ids)?;
            for id in &ids {
                match &keys {
                    None => {
                        execute(
                            c,
                            "DELETE FROM key_pair_tags WHERE key_pair_id = $1",
                            params![id],
                        )?;
                    }
                    Some(keys) => {
                        for k in keys {
                            execute(
                                c,
                                "DELETE FROM key_pair_tags WHERE key_pair_id = $1 AND key = $2",
                                params![id, k],
                            )?;
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn set_key_pair_attribute(
        &self,
        account: &str,
        id: &str,
        attribute: crate::KeyPairAttribute,
        value: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, id, value) = (account.to_string(), id.to_string(), value.to_string());
        self.write_audited(audit, move |c| {
            let changed = execute(
                c,
                attribute.update(),
                params![value, ts(Utc::now()), account, id],
            )?;
            if changed == 0 {
                return Err(CoreError::KeyPairNotFound(id));
            }
            Ok(())
        })
        .await
    }
}
