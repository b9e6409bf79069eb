//! Key pairs and their tags, on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Utc;
use keyplane_core::model::{KeyPair, Tag, MAX_TAGS};
use keyplane_core::CoreError;
use sqlx::{QueryBuilder, Row};

use super::audit::commit;
use super::rows::{self, key_pair_from_row};
use super::store::*;
use super::{Db, SqlStore, FOR_UPDATE};
use crate::*;

#[async_trait]
impl KeyPairs for SqlStore {
    async fn create_key_pair(
        &self,
        kp: &KeyPair,
        quota: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        // The quota counts the account's key pairs: two creations must not both see room.
        let mut tx = self.begin(Serial::Account(&kp.account_id)).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM key_pairs WHERE account_id = $1 AND region_id = $2",
        )
        .bind(&kp.account_id)
        .bind(&kp.region_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if count as usize >= quota {
            return Err(CoreError::KeyPairQuotaExceeded(quota));
        }
        let inserted = sqlx::query(
            "INSERT INTO key_pairs (id, account_id, region_id, name, public_key, fingerprint_sha256, \
             fingerprint_md5, resource_group_id, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&kp.id)
        .bind(&kp.account_id)
        .bind(&kp.region_id)
        .bind(&kp.name)
        .bind(&kp.public_key)
        .bind(&kp.fingerprint_sha256)
        .bind(&kp.fingerprint_md5)
        .bind(&kp.resource_group_id)
        .bind(&kp.description)
        .bind(ts(kp.created_at))
        .execute(&mut *tx)
        .await;
        unique(inserted, CoreError::KeyPairAlreadyExists(kp.name.clone()))?;
        for t in &kp.tags {
            sqlx::query("INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3)")
                .bind(&kp.id)
                .bind(&t.key)
                .bind(&t.value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if let Some(a) = audit {
            super::audit::insert_audit(&mut *tx, a).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn key_pair_by_name(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<KeyPair>> {
        let row = sqlx::query(
            "SELECT * FROM key_pairs WHERE account_id = $1 AND region_id = $2 AND name = $3",
        )
        .bind(account)
        .bind(region)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let mut items: Vec<KeyPair> = row.iter().map(key_pair_from_row).collect::<Result<_>>()?;
        self.load_key_pair_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn key_pair_by_id(&self, account: &str, id: &str) -> Result<Option<KeyPair>> {
        let row = sqlx::query("SELECT * FROM key_pairs WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let mut items: Vec<KeyPair> = row.iter().map(key_pair_from_row).collect::<Result<_>>()?;
        self.load_key_pair_tags(&mut items).await?;
        Ok(items.pop())
    }

    async fn list_key_pairs(&self, filter: &KeyPairFilter, page: Page) -> Result<Listing<KeyPair>> {
        self.list_page(
            "key_pairs",
            rows::KEY_PAIRS_WITH_TAGS,
            |qb| push_key_pair_filter(qb, filter),
            rows::key_pair_with_tags_from_row,
            page,
        )
        .await
    }

    async fn delete_key_pairs(
        &self,
        account: &str,
        region: &str,
        names: &[String],
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        // Locked before the "still bound?" check: a bind holds its key pair FOR SHARE, so the
        // check sees every bind that committed and none can start until this one ends.
        let mut qb = QueryBuilder::<Db>::new("SELECT id, name FROM key_pairs WHERE account_id = ");
        qb.push_bind(account.to_string())
            .push(" AND region_id = ")
            .push_bind(region.to_string());
        push_in(&mut qb, "name", names);
        qb.push(" ORDER BY id").push(FOR_UPDATE);
        let locked: HashMap<String, String> = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get("name"), r.get("id")))
            .collect();
        for name in names {
            // Deleting a key pair that is not there is not an error, as with the vendor.
            let Some(id) = locked.get(name) else { continue };
            let bound: i64 = sqlx::query_scalar(
                // Two lookups, each on its own index: an OR of the two columns was a scan on SQLite.
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE account_id = $1 AND key_pair_id = $2 LIMIT 1) AS desired) \
                 + (SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE account_id = $1 AND effective_key_pair_id = $3 LIMIT 1) AS effective)",
            )
            .bind(account)
            .bind(id)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if bound > 0 {
                return Err(CoreError::KeyPairInUse(name.clone()));
            }
            sqlx::query("DELETE FROM key_pairs WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if let Some(a) = audit {
            super::audit::insert_audit(&mut *tx, a).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn key_pair_usage(&self, account: &str, key_pair_id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE account_id = $1 AND key_pair_id = $2",
        )
        .bind(account)
        .bind(key_pair_id)
        .fetch_one(&self.reader)
        .await
        .map_err(db)?;
        Ok(n as u64)
    }

    async fn tag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        tags: &[Tag],
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        lock_key_pairs(&mut tx, account, ids).await?;
        for id in ids {
            for t in tags {
                sqlx::query(
                    "INSERT INTO key_pair_tags (key_pair_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT(key_pair_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(id)
                .bind(&t.key)
                .bind(&t.value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM key_pair_tags WHERE key_pair_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if n as usize > MAX_TAGS {
                return Err(CoreError::TooManyTags);
            }
        }
        commit(tx, audit).await
    }

    async fn untag_key_pairs(
        &self,
        account: &str,
        ids: &[String],
        keys: Option<&[String]>,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        lock_key_pairs(&mut tx, account, ids).await?;
        for id in ids {
            match keys {
                None => {
                    sqlx::query("DELETE FROM key_pair_tags WHERE key_pair_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                Some(keys) => {
                    for k in keys {
                        sqlx::query(
                            "DELETE FROM key_pair_tags WHERE key_pair_id = $1 AND key = $2",
                        )
                        .bind(id)
                        .bind(k)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    }
                }
            }
        }
        commit(tx, audit).await
    }

    async fn set_key_pair_attribute(
        &self,
        account: &str,
        id: &str,
        attribute: KeyPairAttribute,
        value: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query(attribute.update())
            .bind(value)
            .bind(ts(Utc::now()))
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::KeyPairNotFound(id.to_string()));
        }
        commit(tx, audit).await
    }
}
