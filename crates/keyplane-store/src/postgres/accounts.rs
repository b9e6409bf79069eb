//! Accounts, AccessKeys, RAM users with their console passwords, and policies, for both SQL
//! backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::CoreError;
use sqlx::Row;

use super::audit::commit;
use super::store::*;
use super::{DbRow, SqlStore};
use crate::*;

fn user_from_row(r: &DbRow) -> Result<User> {
    Ok(User {
        account_id: r.get("account_id"),
        name: r.get("name"),
        id: r.get("id"),
        display_name: r.get("display_name"),
        comments: r.get("comments"),
        created_at: parse_ts(r.get("created_at"))?,
    })
}

fn policy_from_row(r: &DbRow) -> Result<PolicyRecord> {
    Ok(PolicyRecord {
        account_id: r.get("account_id"),
        name: r.get("name"),
        document: r.get("document"),
        description: r.get("description"),
        created_at: parse_ts(r.get("created_at"))?,
        attachment_count: r.get::<i64, _>("attachments") as u64,
    })
}

const POLICY_SELECT: &str = "SELECT p.*, (SELECT COUNT(*) FROM user_policies u \
     WHERE u.account_id = p.account_id AND u.policy_name = p.name) AS attachments FROM policies p";

#[async_trait]
impl Accounts for SqlStore {
    async fn bootstrap(&self, root_key: &AccessKeyRecord) -> Result<String> {
        let mut tx = self.begin(Serial::Everything).await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let now = ts(Utc::now());
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, 'default', $2)")
            .bind(&root_key.account_id)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
             VALUES ($1, $2, NULL, $3, 'Active', $4)",
        )
        .bind(&root_key.id)
        .bind(&root_key.account_id)
        .bind(&root_key.secret)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(root_key.account_id.clone())
    }

    async fn default_account(&self) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT id FROM accounts ORDER BY created_at LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        let cache = self.key_cache();
        if let Some(key) = cache.and_then(|c| c.get(id)) {
            return Ok(Some(key));
        }
        let generation = cache.map(|c| c.generation());
        let row = sqlx::query(
            "SELECT id, account_id, user_name, secret, status FROM access_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let key = row.map(|r| AccessKeyRecord {
            id: r.get(0),
            account_id: r.get(1),
            user_name: r.get(2),
            secret: r.get(3),
            active: r.get::<String, _>(4) == "Active",
        });
        if let (Some(cache), Some(generation), Some(key)) = (cache, generation, &key) {
            cache.put(generation, key.clone());
        }
        Ok(key)
    }

    async fn insert_access_key(&self, key: &AccessKeyRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(id) DO UPDATE SET secret = excluded.secret, \
             status = excluded.status",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.user_name)
        .bind(&key.secret)
        .bind(if key.active { "Active" } else { "Inactive" })
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await;
        self.forget_access_keys();
        r.map_err(db)?;
        Ok(())
    }

    async fn create_account(&self, name: &str, root: &AccessKeyRecord) -> Result<()> {
        let mut tx = self.begin(Serial::Everything).await?;
        let now = ts(Utc::now());
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&root.account_id)
            .bind(name)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) VALUES ($1, $2, NULL, $3, 'Active', $4)",
        )
        .bind(&root.id)
        .bind(&root.account_id)
        .bind(&root.secret)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn list_accounts(&self) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.get(0), r.get(1), parse_ts(r.get(2))?)))
            .collect()
    }

    async fn delete_account(&self, account: &str) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        for sql in crate::DELETE_ACCOUNT {
            sqlx::query(sql)
                .bind(account)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let committed = tx.commit().await.map_err(db);
        self.keys.forget_all();
        committed
    }

    async fn create_user(&self, u: &User, audit: Option<&AuditRecord>) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query(
            "INSERT INTO users (account_id, name, id, display_name, comments, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.account_id)
        .bind(&u.name)
        .bind(&u.id)
        .bind(&u.display_name)
        .bind(&u.comments)
        .bind(ts(u.created_at))
        .execute(&mut *tx)
        .await;
        unique(r, CoreError::UserAlreadyExists(u.name.clone()))?;
        commit(tx, audit).await
    }

    async fn user(&self, account: &str, name: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, account: &str) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE account_id = $1 ORDER BY name")
            .bind(account)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn delete_user(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Account(account)).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE account_id = $1 AND name = $2")
                .bind(account)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if exists.is_none() {
            return Err(CoreError::UserNotFound(name.to_string()));
        }
        let keys: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND user_name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if keys > 0 {
            return Err(CoreError::UserHasAccessKeys(name.to_string()));
        }
        let policies: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM user_policies WHERE account_id = $1 AND user_name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if policies > 0 {
            return Err(CoreError::UserHasPolicies(name.to_string()));
        }
        sqlx::query("DELETE FROM users WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        commit(tx, audit).await
    }

    async fn set_login_profile(
        &self,
        account: &str,
        user: &str,
        hash: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        if self.user(account, user).await?.is_none() {
            return Err(CoreError::UserNotFound(user.to_string()));
        }
        sqlx::query(
            "INSERT INTO login_profiles (account_id, user_name, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT(account_id, user_name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(account)
        .bind(user)
        .bind(hash)
        .bind(ts(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit(tx, audit).await
    }

    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT password_hash FROM login_profiles WHERE account_id = $1 AND user_name = $2",
        )
        .bind(account)
        .bind(user)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)
    }

    async fn delete_login_profile(
        &self,
        account: &str,
        user: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query("DELETE FROM login_profiles WHERE account_id = $1 AND user_name = $2")
            .bind(account)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        commit(tx, audit).await?;
        Ok(true)
    }

    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Account(&key.account_id)).await?;
        if let Some(user) = &key.user_name {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT name FROM users WHERE account_id = $1 AND name = $2")
                    .bind(&key.account_id)
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if exists.is_none() {
                return Err(CoreError::UserNotFound(user.clone()));
            }
        }
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND user_name IS NOT DISTINCT FROM $2",
        )
        .bind(&key.account_id)
        .bind(&key.user_name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if count as usize >= max {
            return Err(CoreError::AccessKeyLimit(max));
        }
        sqlx::query(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.user_name)
        .bind(&key.secret)
        .bind(if key.active { "Active" } else { "Inactive" })
        .bind(ts(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit(tx, audit).await
    }

    async fn list_access_keys(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<Vec<AccessKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, user_name, status, created_at FROM access_keys WHERE account_id = $1 AND user_name IS NOT DISTINCT FROM $2 ORDER BY created_at, id",
        )
        .bind(account)
        .bind(user)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(AccessKeyInfo {
                    id: r.get(0),
                    user_name: r.get(1),
                    active: r.get::<String, _>(2) == "Active",
                    created_at: parse_ts(r.get(3))?,
                })
            })
            .collect()
    }

    async fn set_access_key_status(
        &self,
        account: &str,
        id: &str,
        active: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query("UPDATE access_keys SET status = $1 WHERE account_id = $2 AND id = $3")
            .bind(if active { "Active" } else { "Inactive" })
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::AccessKeyNotFound(id.to_string()));
        }
        let committed = commit(tx, audit).await;
        // After the commit: a call between a forget and the commit would cache the old key again.
        self.forget_access_keys();
        committed
    }

    async fn delete_access_key(
        &self,
        account: &str,
        id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query("DELETE FROM access_keys WHERE account_id = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::AccessKeyNotFound(id.to_string()));
        }
        let committed = commit(tx, audit).await;
        // After the commit: a call between a forget and the commit would cache the old key again.
        self.forget_access_keys();
        committed
    }

    async fn create_policy(&self, p: &PolicyRecord, audit: Option<&AuditRecord>) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        let r = sqlx::query(
            "INSERT INTO policies (account_id, name, document, description, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.account_id)
        .bind(&p.name)
        .bind(&p.document)
        .bind(&p.description)
        .bind(ts(p.created_at))
        .execute(&mut *tx)
        .await;
        unique(r, CoreError::PolicyAlreadyExists(p.name.clone()))?;
        commit(tx, audit).await
    }

    async fn policy(&self, account: &str, name: &str) -> Result<Option<PolicyRecord>> {
        let row = sqlx::query(&format!(
            "{POLICY_SELECT} WHERE p.account_id = $1 AND p.name = $2"
        ))
        .bind(account)
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn list_policies(&self, account: &str) -> Result<Vec<PolicyRecord>> {
        let rows = sqlx::query(&format!(
            "{POLICY_SELECT} WHERE p.account_id = $1 ORDER BY p.name"
        ))
        .bind(account)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn delete_policy(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Account(account)).await?;
        let attached: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM user_policies WHERE account_id = $1 AND policy_name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if attached > 0 {
            return Err(CoreError::PolicyInUse(name.to_string()));
        }
        let r = sqlx::query("DELETE FROM policies WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::PolicyNotFound(name.to_string()));
        }
        commit(tx, audit).await
    }

    async fn attach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        if self.user(account, user).await?.is_none() {
            return Err(CoreError::UserNotFound(user.to_string()));
        }
        if self.policy(account, policy).await?.is_none() {
            return Err(CoreError::PolicyNotFound(policy.to_string()));
        }
        let r = sqlx::query("INSERT INTO user_policies (account_id, user_name, policy_name, attached_at) VALUES ($1, $2, $3, $4)")
            .bind(account)
            .bind(user)
            .bind(policy)
            .bind(ts(Utc::now()))
            .execute(&mut *tx)
            .await;
        unique(r, CoreError::PolicyAlreadyAttached(policy.to_string()))?;
        commit(tx, audit).await
    }

    async fn detach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let mut tx = self.begin(Serial::Rows).await?;
        if self.user(account, user).await?.is_none() {
            return Err(CoreError::UserNotFound(user.to_string()));
        }
        let r = sqlx::query(
            "DELETE FROM user_policies WHERE account_id = $1 AND user_name = $2 AND policy_name = $3",
        )
        .bind(account)
        .bind(user)
        .bind(policy)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(CoreError::PolicyNotAttached(policy.to_string()));
        }
        commit(tx, audit).await
    }

    async fn user_policies(
        &self,
        account: &str,
        user: &str,
    ) -> Result<Vec<(PolicyRecord, DateTime<Utc>)>> {
        let rows = sqlx::query(&format!(
            "SELECT q.*, up.attached_at FROM ({POLICY_SELECT}) q JOIN user_policies up \
             ON up.account_id = q.account_id AND up.policy_name = q.name \
             WHERE up.account_id = $1 AND up.user_name = $2 ORDER BY q.name"
        ))
        .bind(account)
        .bind(user)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((policy_from_row(r)?, parse_ts(r.get("attached_at"))?)))
            .collect()
    }
}
