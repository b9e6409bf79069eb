//! Accounts, AccessKeys, RAM users with their console passwords, and policies, on SQLite (the same queries as `postgres/accounts.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::CoreError;
use rusqlite::{params, Connection};

use super::audit::insert_audit;
use super::engine::{db, is_unique_violation};
use super::rows::{policy_from_row, user_from_row};
use super::sql::{execute, get, get_at, row, rows, scalar, try_execute};
use super::SqliteStore;
use crate::{
    parse_ts, ts, AccessKeyInfo, AccessKeyRecord, Accounts, AuditRecord, PolicyRecord, Result, User,
};

const POLICY_SELECT: &str = "SELECT p.*, (SELECT COUNT(*) FROM user_policies u \
     WHERE u.account_id = p.account_id AND u.policy_name = p.name) AS attachments FROM policies p";

/// The account's user `name`, on the connection given (a reader's, or the writer's in a write).
fn user_on(c: &Connection, account: &str, name: &str) -> Result<Option<User>> {
    row(
        c,
        "SELECT * FROM users WHERE account_id = $1 AND name = $2",
        params![account, name],
        user_from_row,
    )
}

/// The account's policy `name`, on the connection given (a reader's, or the writer's in a write).
fn policy_on(c: &Connection, account: &str, name: &str) -> Result<Option<PolicyRecord>> {
    row(
        c,
        &format!("{POLICY_SELECT} WHERE p.account_id = $1 AND p.name = $2"),
        params![account, name],
        policy_from_row,
    )
}

fn status(active: bool) -> &'static str {
    if active {
        "Active"
    } else {
        "Inactive"
    }
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn bootstrap(&self, root_key: &AccessKeyRecord) -> Result<String> {
        let root_key = root_key.clone();
        self.engine
            .write(move |c| {
                let existing: Option<String> = scalar(
                    c,
                    "SELECT id FROM accounts ORDER BY created_at LIMIT 1",
                    params![],
                )?;
                if let Some(id) = existing {
                    return Ok(id);
                }
                let now = ts(Utc::now());
                execute(
                    c,
                    "INSERT INTO accounts (id, name, created_at) VALUES ($1, 'default', $2)",
                    params![root_key.account_id, now],
                )?;
                execute(
                    c,
                    "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
                     VALUES ($1, $2, NULL, $3, 'Active', $4)",
                    params![root_key.id, root_key.account_id, root_key.secret, now],
                )?;
                Ok(root_key.account_id)
            })
            .await
    }

    async fn default_account(&self) -> Result<Option<String>> {
        self.engine.read(|c| {
            scalar(
                c,
                "SELECT id FROM accounts ORDER BY created_at LIMIT 1",
                params![],
            )
        })
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        if let Some(key) = self.keys.get(id) {
            return Ok(Some(key));
        }
        let generation = self.keys.generation();
        let key = self.engine.read(|c| {
            row(
                c,
                "SELECT id, account_id, user_name, secret, status FROM access_keys WHERE id = $1",
                params![id],
                |r| {
                    Ok(AccessKeyRecord {
                        id: get_at(r, 0)?,
                        account_id: get_at(r, 1)?,
                        user_name: get_at(r, 2)?,
                        secret: get_at(r, 3)?,
                        active: get_at::<String>(r, 4)? == "Active",
                    })
                },
            )
        })?;
        if let Some(key) = &key {
            self.keys.put(generation, key.clone());
        }
        Ok(key)
    }

    async fn insert_access_key(&self, key: &AccessKeyRecord) -> Result<()> {
        let key = key.clone();
        let r = self
            .engine
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(id) DO UPDATE SET secret = excluded.secret, \
                     status = excluded.status",
                    params![
                        key.id,
                        key.account_id,
                        key.user_name,
                        key.secret,
                        status(key.active),
                        ts(Utc::now()),
                    ],
                )
            })
            .await;
        self.forget_access_keys();
        r?;
        Ok(())
    }

    async fn create_account(&self, name: &str, root: &AccessKeyRecord) -> Result<()> {
        let (name, root) = (name.to_string(), root.clone());
        self.engine
            .write(move |c| {
                let now = ts(Utc::now());
                execute(
                    c,
                    "INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)",
                    params![root.account_id, name, now],
                )?;
                execute(
                    c,
                    "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) VALUES ($1, $2, NULL, $3, 'Active', $4)",
                    params![root.id, root.account_id, root.secret, now],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_accounts(&self) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        self.engine.read(|c| {
            rows(
                c,
                "SELECT id, name, created_at FROM accounts ORDER BY created_at, id",
                params![],
                |r| {
                    Ok((
                        get_at(r, 0)?,
                        get_at(r, 1)?,
                        parse_ts(&get_at::<String>(r, 2)?)?,
                    ))
                },
            )
        })
    }

    async fn delete_account(&self, account: &str) -> Result<()> {
        let account = account.to_string();
        let deleted = self
            .engine
            .write(move |c| {
                for sql in crate::DELETE_ACCOUNT {
                    execute(c, sql, params![account])?;
                }
                Ok(())
            })
            .await;
        self.forget_access_keys();
        deleted
    }

    async fn create_user(&self, u: &User, audit: Option<&AuditRecord>) -> Result<()> {
        let u = u.clone();
        self.write_audited(audit, move |c| {
                let inserted = try_execute(
                    c,
                    "INSERT INTO users (account_id, name, id, display_name, comments, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    params![
                        u.account_id,
                        u.name,
                        u.id,
                        u.display_name,
                        u.comments,
                        ts(u.created_at),
                    ],
                );
                match inserted {
                    Err(e) if is_unique_violation(&e) => Err(CoreError::UserAlreadyExists(u.name)),
                    Err(e) => Err(db(e)),
                    Ok(_) => Ok(()),
                }
            })
            .await
    }

    async fn user(&self, account: &str, name: &str) -> Result<Option<User>> {
        self.engine.read(|c| user_on(c, account, name))
    }

    async fn list_users(&self, account: &str) -> Result<Vec<User>> {
        self.engine.read(|c| {
            rows(
                c,
                "SELECT * FROM users WHERE account_id = $1 ORDER BY name",
                params![account],
                user_from_row,
            )
        })
    }

    async fn delete_user(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, name) = (account.to_string(), name.to_string());
        self.write_audited(audit, move |c| {
            let exists: Option<String> = scalar(
                c,
                "SELECT name FROM users WHERE account_id = $1 AND name = $2",
                params![account, name],
            )?;
            if exists.is_none() {
                return Err(CoreError::UserNotFound(name));
            }
            let keys: i64 = scalar(
                c,
                "SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND user_name = $2",
                params![account, name],
            )?
            .unwrap_or(0);
            if keys > 0 {
                return Err(CoreError::UserHasAccessKeys(name));
            }
            let policies: i64 = scalar(
                c,
                "SELECT COUNT(*) FROM user_policies WHERE account_id = $1 AND user_name = $2",
                params![account, name],
            )?
            .unwrap_or(0);
            if policies > 0 {
                return Err(CoreError::UserHasPolicies(name));
            }
            execute(
                c,
                "DELETE FROM users WHERE account_id = $1 AND name = $2",
                params![account, name],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_login_profile(
        &self,
        account: &str,
        user: &str,
        hash: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, user, hash) = (account.to_string(), user.to_string(), hash.to_string());
        self.write_audited(audit, move |c| {
                // Checked in the write: no user can be deleted between the check and the insert.
                if user_on(c, &account, &user)?.is_none() {
                    return Err(CoreError::UserNotFound(user));
                }
                execute(
                    c,
                    "INSERT INTO login_profiles (account_id, user_name, password_hash, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT(account_id, user_name) DO UPDATE SET password_hash = excluded.password_hash",
                    params![account, user, hash, ts(Utc::now())],
                )?;
                Ok(())
            })
            .await
    }

    async fn login_profile(&self, account: &str, user: &str) -> Result<Option<String>> {
        self.engine.read(|c| {
            scalar(
                c,
                "SELECT password_hash FROM login_profiles WHERE account_id = $1 AND user_name = $2",
                params![account, user],
            )
        })
    }

    async fn delete_login_profile(
        &self,
        account: &str,
        user: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<bool> {
        let (account, user) = (account.to_string(), user.to_string());
        let audit = audit.cloned();
        self.engine
            .write(move |c| {
                let deleted = execute(
                    c,
                    "DELETE FROM login_profiles WHERE account_id = $1 AND user_name = $2",
                    params![account, user],
                )?;
                if deleted > 0 {
                    if let Some(a) = &audit {
                        insert_audit(c, a)?;
                    }
                }
                Ok(deleted > 0)
            })
            .await
    }

    async fn create_access_key(
        &self,
        key: &AccessKeyRecord,
        max: usize,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let key = key.clone();
        self.write_audited(audit, move |c| {
                if let Some(user) = &key.user_name {
                    let exists: Option<String> = scalar(
                        c,
                        "SELECT name FROM users WHERE account_id = $1 AND name = $2",
                        params![key.account_id, user],
                    )?;
                    if exists.is_none() {
                        return Err(CoreError::UserNotFound(user.clone()));
                    }
                }
                let count: i64 = scalar(
                    c,
                    "SELECT COUNT(*) FROM access_keys WHERE account_id = $1 AND user_name IS NOT DISTINCT FROM $2",
                    params![key.account_id, key.user_name],
                )?
                .unwrap_or(0);
                if count as usize >= max {
                    return Err(CoreError::AccessKeyLimit(max));
                }
                execute(
                    c,
                    "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    params![
                        key.id,
                        key.account_id,
                        key.user_name,
                        key.secret,
                        status(key.active),
                        ts(Utc::now()),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_access_keys(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<Vec<AccessKeyInfo>> {
        self.engine.read(|c| {
            rows(
                c,
                "SELECT id, user_name, status, created_at FROM access_keys WHERE account_id = $1 AND user_name IS NOT DISTINCT FROM $2 ORDER BY created_at, id",
                params![account, user],
                |r| {
                    Ok(AccessKeyInfo {
                        id: get_at(r, 0)?,
                        user_name: get_at(r, 1)?,
                        active: get_at::<String>(r, 2)? == "Active",
                        created_at: parse_ts(&get_at::<String>(r, 3)?)?,
                    })
                },
            )
        })
    }

    async fn set_access_key_status(
        &self,
        account: &str,
        id: &str,
        active: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, id) = (account.to_string(), id.to_string());
        let r = self
            .write_audited(audit, move |c| {
                let changed = execute(
                    c,
                    "UPDATE access_keys SET status = $1 WHERE account_id = $2 AND id = $3",
                    params![status(active), account, id],
                )?;
                if changed == 0 {
                    return Err(CoreError::AccessKeyNotFound(id));
                }
                Ok(())
            })
            .await;
        self.forget_access_keys();
        r
    }

    async fn delete_access_key(
        &self,
        account: &str,
        id: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, id) = (account.to_string(), id.to_string());
        let r = self
            .write_audited(audit, move |c| {
                let deleted = execute(
                    c,
                    "DELETE FROM access_keys WHERE account_id = $1 AND id = $2",
                    params![account, id],
                )?;
                if deleted == 0 {
                    return Err(CoreError::AccessKeyNotFound(id));
                }
                Ok(())
            })
            .await;
        self.forget_access_keys();
        r
    }

    async fn create_policy(&self, p: &PolicyRecord, audit: Option<&AuditRecord>) -> Result<()> {
        let p = p.clone();
        self.write_audited(audit, move |c| {
                let inserted = try_execute(
                    c,
                    "INSERT INTO policies (account_id, name, document, description, created_at) VALUES ($1, $2, $3, $4, $5)",
                    params![p.account_id, p.name, p.document, p.description, ts(p.created_at)],
                );
                match inserted {
                    Err(e) if is_unique_violation(&e) => {
                        Err(CoreError::PolicyAlreadyExists(p.name))
                    }
                    Err(e) => Err(db(e)),
                    Ok(_) => Ok(()),
                }
            })
            .await
    }

    async fn policy(&self, account: &str, name: &str) -> Result<Option<PolicyRecord>> {
        self.engine.read(|c| policy_on(c, account, name))
    }

    async fn list_policies(&self, account: &str) -> Result<Vec<PolicyRecord>> {
        self.engine.read(|c| {
            rows(
                c,
                &format!("{POLICY_SELECT} WHERE p.account_id = $1 ORDER BY p.name"),
                params![account],
                policy_from_row,
            )
        })
    }

    async fn delete_policy(
        &self,
        account: &str,
        name: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, name) = (account.to_string(), name.to_string());
        self.write_audited(audit, move |c| {
            let attached: i64 = scalar(
                c,
                "SELECT COUNT(*) FROM user_policies WHERE account_id = $1 AND policy_name = $2",
                params![account, name],
            )?
            .unwrap_or(0);
            if attached > 0 {
                return Err(CoreError::PolicyInUse(name));
            }
            let deleted = execute(
                c,
                "DELETE FROM policies WHERE account_id = $1 AND name = $2",
                params![account, name],
            )?;
            if deleted == 0 {
                return Err(CoreError::PolicyNotFound(name));
            }
            Ok(())
        })
        .await
    }

    async fn attach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, user, policy) = (account.to_string(), user.to_string(), policy.to_string());
        self.write_audited(audit, move |c| {
                // Checked in the write: neither can be deleted between the checks and the insert.
                if user_on(c, &account, &user)?.is_none() {
                    return Err(CoreError::UserNotFound(user));
                }
                if policy_on(c, &account, &policy)?.is_none() {
                    return Err(CoreError::PolicyNotFound(policy));
                }
                let inserted = try_execute(
                    c,
                    "INSERT INTO user_policies (account_id, user_name, policy_name, attached_at) VALUES ($1, $2, $3, $4)",
                    params![account, user, policy, ts(Utc::now())],
                );
                match inserted {
                    Err(e) if is_unique_violation(&e) => {
                        Err(CoreError::PolicyAlreadyAttached(policy))
                    }
                    Err(e) => Err(db(e)),
                    Ok(_) => Ok(()),
                }
            })
            .await
    }

    async fn detach_policy(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        audit: Option<&AuditRecord>,
    ) -> Result<()> {
        let (account, user, policy) = (account.to_string(), user.to_string(), policy.to_string());
        self.write_audited(audit, move |c| {
                if user_on(c, &account, &user)?.is_none() {
                    return Err(CoreError::UserNotFound(user));
                }
                let deleted = execute(
                    c,
                    "DELETE FROM user_policies WHERE account_id = $1 AND user_name = $2 AND policy_name = $3",
                    params![account, user, policy],
                )?;
                if deleted == 0 {
                    return Err(CoreError::PolicyNotAttached(policy));
                }
                Ok(())
            })
            .await
    }

    async fn user_policies(
        &self,
        account: &str,
        user: &str,
    ) -> Result<Vec<(PolicyRecord, DateTime<Utc>)>> {
        self.engine.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT q.*, up.attached_at FROM ({POLICY_SELECT}) q JOIN user_policies up \
                     ON up.account_id = q.account_id AND up.policy_name = q.name \
                     WHERE up.account_id = $1 AND up.user_name = $2 ORDER BY q.name"
                ),
                params![account, user],
                |r| {
                    Ok((
                        policy_from_row(r)?,
                        parse_ts(&get::<String>(r, "attached_at")?)?,
                    ))
                },
            )
        })
    }
}
