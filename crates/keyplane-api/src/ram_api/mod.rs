//! The Alibaba RAM API (version 2015-05-01) on the same listener, so the official SDK
//! (`alibabacloud-ram20150501`) manages users, AccessKeys and policies as it does on the vendor.
//! Same signatures and envelope as the ECS dialect; RAM actions are `ram:<Action>` on
//! `acs:ram:*:{account}:user/{name}` and `…:policy/{name}`.

use chrono::{DateTime, Utc};
use keyplane_core::ram::{ram_arn, Policy};
use keyplane_core::{ids, password, CoreError};
use keyplane_store::{AccessKeyRecord, PolicyRecord, User};
use serde_json::{json, Value};

use crate::acs::render::Format;
use crate::acs::Acs;
use crate::actions::{Action, READS, WRITES};
use crate::pipeline::{Ctx, Handler};
use crate::reply::{obj, Fields as Body200};

pub const VERSION: &str = "2015-05-01";
/// AccessKeys per user (and for the root), as the vendor allows.
pub const MAX_ACCESS_KEYS: usize = 2;

/// A row of [`ACTIONS`]; the RAM action is `ram:` and the name.
macro_rules! action {
    ($name:literal, $writes:expr, $call:path) => {
        Action {
            name: $name,
            ram: concat!("ram:", $name),
            writes: $writes,
            handler: |c| Box::pin(async move { $call(c).await.map($crate::reply::Reply::from) }),
        }
    };
}

/// Every action of the RAM API. Unlike the ECS dialects', every one of them, reads included, is
/// refused outright without an Allow for it (the vendor's behaviour: there is no partial listing).
pub static ACTIONS: &[Action<Handler>] = &[
    action!("CreateUser", WRITES, create_user),
    action!("GetUser", READS, get_user),
    action!("ListUsers", READS, list_users),
    action!("DeleteUser", WRITES, delete_user),
    action!("CreateLoginProfile", WRITES, create_login_profile),
    action!("UpdateLoginProfile", WRITES, update_login_profile),
    action!("DeleteLoginProfile", WRITES, delete_login_profile),
    action!("CreateAccessKey", WRITES, create_access_key),
    action!("ListAccessKeys", READS, list_access_keys),
    action!("UpdateAccessKey", WRITES, update_access_key),
    action!("DeleteAccessKey", WRITES, delete_access_key),
    action!("CreatePolicy", WRITES, create_policy),
    action!("GetPolicy", READS, get_policy),
    action!("ListPolicies", READS, list_policies),
    action!("DeletePolicy", WRITES, delete_policy),
    action!("AttachPolicyToUser", WRITES, attach_policy_to_user),
    action!("DetachPolicyFromUser", WRITES, detach_policy_from_user),
    action!("ListPoliciesForUser", READS, list_policies_for_user),
];

/// The RAM API for a call to `host`, answered in `format`.
pub fn dialect(host: &str, format: Format) -> Acs {
    Acs {
        name: "ram",
        version: VERSION,
        actions: ACTIONS,
        strict: true,
        tokens: None,
        host: host.to_string(),
        format,
    }
}

async fn delete_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "DeleteUser")?;
    ctx.state
        .store
        .delete_user(ctx.account(), &name, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

async fn delete_login_profile(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "DeleteLoginProfile")?;
    if ctx.state.store.user(ctx.account(), &name).await?.is_none() {
        return Err(CoreError::UserNotFound(name));
    }
    // The user's console sessions end with it (they are bound to the stored hash).
    if !ctx
        .state
        .store
        .delete_login_profile(ctx.account(), &name, Some(ctx.audit_in_write()))
        .await?
    {
        return Err(CoreError::LoginProfileNotFound(name));
    }
    Ok(Body200::new())
}

async fn delete_access_key(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let (user, id) = key_param(ctx, "DeleteAccessKey").await?;
    owned_key(ctx, user.as_deref(), &id).await?;
    ctx.state
        .store
        .delete_access_key(ctx.account(), &id, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

async fn delete_policy(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = policy_param(ctx, "DeletePolicy")?;
    ctx.state
        .store
        .delete_policy(ctx.account(), &name, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

async fn attach_policy_to_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let (user, policy) = user_and_policy(ctx, "AttachPolicyToUser")?;
    ctx.state
        .store
        .attach_policy(ctx.account(), &user, &policy, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

async fn detach_policy_from_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let (user, policy) = user_and_policy(ctx, "DetachPolicyFromUser")?;
    ctx.state
        .store
        .detach_policy(ctx.account(), &user, &policy, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// 1–64 letters, digits, `.`, `_`, `-`, `@`.
fn check_user_name(name: &str) -> Result<(), CoreError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    ok.then_some(())
        .ok_or_else(|| CoreError::InvalidUserName(name.to_string()))
}

/// The `UserName` parameter, checked against the caller's `ram:<action>` on that user.
fn user_param(ctx: &Ctx<'_>, action: &str) -> Result<String, CoreError> {
    let name = ctx.p.required("UserName")?;
    ctx.caller.check(
        &format!("ram:{action}"),
        &ram_arn(ctx.account(), "user", name),
    )?;
    Ok(name.to_string())
}

fn policy_param(ctx: &Ctx<'_>, action: &str) -> Result<String, CoreError> {
    let name = ctx.p.required("PolicyName")?;
    if ctx.p.opt("PolicyType").is_some_and(|t| t != "Custom") {
        return Err(CoreError::PolicyNotFound(name.to_string()));
    }
    ctx.caller.check(
        &format!("ram:{action}"),
        &ram_arn(ctx.account(), "policy", name),
    )?;
    Ok(name.to_string())
}

fn user_and_policy(ctx: &Ctx<'_>, action: &str) -> Result<(String, String), CoreError> {
    Ok((user_param(ctx, action)?, policy_param(ctx, action)?))
}

fn user_json(u: &User) -> Value {
    json!({
        "UserId": u.id,
        "UserName": u.name,
        "DisplayName": u.display_name,
        "Comments": u.comments,
        "Email": "",
        "MobilePhone": "",
        "CreateDate": date(u.created_at),
        "UpdateDate": date(u.created_at),
    })
}

async fn create_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "CreateUser")?;
    check_user_name(&name)?;
    let user = User {
        account_id: ctx.account().to_string(),
        id: ids::new_account_id(),
        display_name: ctx.p.opt("DisplayName").unwrap_or(&name).to_string(),
        comments: ctx.p.opt("Comments").unwrap_or_default().to_string(),
        name,
        created_at: keyplane_core::model::now(),
    };
    ctx.state
        .store
        .create_user(&user, Some(ctx.audit_in_write()))
        .await?;
    Ok(obj([("User", user_json(&user))]))
}

async fn get_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "GetUser")?;
    let user = ctx
        .state
        .store
        .user(ctx.account(), &name)
        .await?
        .ok_or(CoreError::UserNotFound(name))?;
    Ok(obj([("User", user_json(&user))]))
}

/// `Marker` is the offset of the next page, `MaxItems` 1–1000 (default 100).
fn page<T>(ctx: &Ctx<'_>, items: Vec<T>) -> Result<(Vec<T>, bool, String), CoreError> {
    let max = ctx.p.int("MaxItems", 100, 1, 1000)? as usize;
    let offset = match ctx.p.opt("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| CoreError::invalid("Marker", "Use the Marker of the previous page."))?,
    };
    let (items, _, next) = crate::ops::visible::page_in_memory(items, offset, max);
    Ok((
        items,
        next.is_some(),
        next.map(|n| n.to_string()).unwrap_or_default(),
    ))
}

async fn list_users(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let mut users = ctx.state.store.list_users(ctx.account()).await?;
    users.retain(|u| {
        ctx.caller
            .allowed("ram:ListUsers", &ram_arn(ctx.account(), "user", &u.name))
    });
    let (users, truncated, marker) = page(ctx, users)?;
    let list: Vec<Value> = users.iter().map(user_json).collect();
    Ok(obj([
        ("Users", json!({ "User": list })),
        ("IsTruncated", json!(truncated)),
        ("Marker", json!(marker)),
    ]))
}

async fn create_login_profile(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "CreateLoginProfile")?;
    let pw = ctx.p.required("Password")?.to_string();
    password::check_rules(&pw)?;
    if ctx.state.store.user(ctx.account(), &name).await?.is_none() {
        return Err(CoreError::UserNotFound(name));
    }
    let hash = ctx.state.cpu.run(move || password::hash(&pw)).await??;
    ctx.state
        .store
        .set_login_profile(ctx.account(), &name, &hash, Some(ctx.audit_in_write()))
        .await?;
    Ok(obj([(
        "LoginProfile",
        json!({
            "UserName": name,
            "PasswordResetRequired": ctx.p.bool("PasswordResetRequired")?.unwrap_or(false),
            "MFABindRequired": ctx.p.bool("MFABindRequired")?.unwrap_or(false),
            "CreateDate": date(Utc::now()),
        }),
    )]))
}

/// Sets a new console password (`Password` is optional, as on the vendor: without it nothing
/// changes). The new hash has a new salt, which ends the user's console sessions.
async fn update_login_profile(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "UpdateLoginProfile")?;
    let pw = ctx.p.opt("Password").map(str::to_string);
    if let Some(pw) = &pw {
        password::check_rules(pw)?;
    }
    ctx.p.bool("PasswordResetRequired")?;
    ctx.p.bool("MFABindRequired")?;
    if ctx.state.store.user(ctx.account(), &name).await?.is_none() {
        return Err(CoreError::UserNotFound(name));
    }
    if ctx
        .state
        .store
        .login_profile(ctx.account(), &name)
        .await?
        .is_none()
    {
        return Err(CoreError::LoginProfileNotFound(name));
    }
    if let Some(pw) = pw {
        let pw = zeroize::Zeroizing::new(pw);
        let hash = ctx.state.cpu.run(move || password::hash(&pw)).await??;
        ctx.state
            .store
            .set_login_profile(ctx.account(), &name, &hash, Some(ctx.audit_in_write()))
            .await?;
    }
    Ok(Body200::new())
}

/// Whose keys: `UserName`, else the calling user (a RAM user manages its own), else the root.
fn key_owner(ctx: &Ctx<'_>, action: &str) -> Result<Option<String>, CoreError> {
    let own = match &ctx.caller.principal {
        crate::auth::Principal::User(u) => Some(u.clone()),
        crate::auth::Principal::Root => None,
    };
    let user = ctx.p.opt("UserName").map(str::to_string).or(own);
    let resource = match &user {
        Some(u) => ram_arn(ctx.account(), "user", u),
        None => ram_arn(ctx.account(), "root", "*"),
    };
    ctx.caller.check(&format!("ram:{action}"), &resource)?;
    Ok(user)
}

async fn key_param(ctx: &Ctx<'_>, action: &str) -> Result<(Option<String>, String), CoreError> {
    let user = key_owner(ctx, action)?;
    Ok((user, ctx.p.required("UserAccessKeyId")?.to_string()))
}

/// The AccessKey `id` of `user` (or of the root) in the caller's account, else not found.
async fn owned_key(ctx: &Ctx<'_>, user: Option<&str>, id: &str) -> Result<(), CoreError> {
    let keys = ctx
        .state
        .store
        .list_access_keys(ctx.account(), user)
        .await?;
    keys.iter()
        .any(|k| k.id == id)
        .then_some(())
        .ok_or_else(|| CoreError::AccessKeyNotFound(id.to_string()))
}

async fn create_access_key(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let user = key_owner(ctx, "CreateAccessKey")?;
    if let Some(u) = &user {
        if ctx.state.store.user(ctx.account(), u).await?.is_none() {
            return Err(CoreError::UserNotFound(u.clone()));
        }
    }
    let (id, secret) = (ids::new_access_key_id(), ids::new_access_key_secret());
    let key = AccessKeyRecord {
        secret: ctx.state.config.server_key.seal(&id, &secret),
        id,
        account_id: ctx.account().to_string(),
        user_name: user,
        active: true,
    };
    ctx.state
        .store
        .create_access_key(&key, MAX_ACCESS_KEYS, Some(ctx.audit_in_write()))
        .await?;
    Ok(obj([(
        "AccessKey",
        json!({"AccessKeyId": key.id, "AccessKeySecret": secret, "Status": "Active", "CreateDate": date(Utc::now())}),
    )]))
}

async fn list_access_keys(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let user = key_owner(ctx, "ListAccessKeys")?;
    if let Some(u) = &user {
        if ctx.state.store.user(ctx.account(), u).await?.is_none() {
            return Err(CoreError::UserNotFound(u.clone()));
        }
    }
    let keys = ctx
        .state
        .store
        .list_access_keys(ctx.account(), user.as_deref())
        .await?;
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"AccessKeyId": k.id, "Status": if k.active { "Active" } else { "Inactive" }, "CreateDate": date(k.created_at)})
        })
        .collect();
    Ok(obj([("AccessKeys", json!({ "AccessKey": list }))]))
}

async fn update_access_key(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let (user, id) = key_param(ctx, "UpdateAccessKey").await?;
    let active = match ctx.p.required("Status")? {
        "Active" => true,
        "Inactive" => false,
        _ => return Err(CoreError::invalid("Status", "Active or Inactive.")),
    };
    owned_key(ctx, user.as_deref(), &id).await?;
    ctx.state
        .store
        .set_access_key_status(ctx.account(), &id, active, Some(ctx.audit_in_write()))
        .await?;
    Ok(Body200::new())
}

fn policy_json(p: &PolicyRecord, with_document: bool) -> Value {
    let mut v = json!({
        "PolicyName": p.name,
        "PolicyType": "Custom",
        "Description": p.description,
        "DefaultVersion": "v1",
        "AttachmentCount": p.attachment_count,
        "CreateDate": date(p.created_at),
        "UpdateDate": date(p.created_at),
    });
    if with_document {
        v["PolicyDocument"] = json!(p.document);
    }
    v
}

async fn create_policy(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = policy_param(ctx, "CreatePolicy")?;
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(CoreError::invalid(
            "PolicyName",
            "1-128 letters, digits and '-'.",
        ));
    }
    let document = ctx.p.required("PolicyDocument")?;
    Policy::parse(document)?;
    let record = PolicyRecord {
        account_id: ctx.account().to_string(),
        name,
        document: document.to_string(),
        description: ctx.p.opt("Description").unwrap_or_default().to_string(),
        created_at: keyplane_core::model::now(),
        attachment_count: 0,
    };
    ctx.state
        .store
        .create_policy(&record, Some(ctx.audit_in_write()))
        .await?;
    Ok(obj([(
        "Policy",
        json!({
            "PolicyName": record.name,
            "PolicyType": "Custom",
            "Description": record.description,
            "DefaultVersion": "v1",
            "CreateDate": date(record.created_at),
        }),
    )]))
}

async fn get_policy(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = policy_param(ctx, "GetPolicy")?;
    let p = ctx
        .state
        .store
        .policy(ctx.account(), &name)
        .await?
        .ok_or(CoreError::PolicyNotFound(name))?;
    Ok(obj([
        ("Policy", policy_json(&p, true)),
        (
            "DefaultPolicyVersion",
            json!({"VersionId": "v1", "IsDefaultVersion": true, "PolicyDocument": p.document, "CreateDate": date(p.created_at)}),
        ),
    ]))
}

async fn list_policies(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let mut policies = if ctx.p.opt("PolicyType") == Some("System") {
        Vec::new()
    } else {
        ctx.state.store.list_policies(ctx.account()).await?
    };
    policies.retain(|p| {
        ctx.caller.allowed(
            "ram:ListPolicies",
            &ram_arn(ctx.account(), "policy", &p.name),
        )
    });
    let (policies, truncated, marker) = page(ctx, policies)?;
    let list: Vec<Value> = policies.iter().map(|p| policy_json(p, false)).collect();
    Ok(obj([
        ("Policies", json!({ "Policy": list })),
        ("IsTruncated", json!(truncated)),
        ("Marker", json!(marker)),
    ]))
}

async fn list_policies_for_user(ctx: &Ctx<'_>) -> Result<Body200, CoreError> {
    let name = user_param(ctx, "ListPoliciesForUser")?;
    if ctx.state.store.user(ctx.account(), &name).await?.is_none() {
        return Err(CoreError::UserNotFound(name));
    }
    let list: Vec<Value> = ctx
        .state
        .store
        .user_policies(ctx.account(), &name)
        .await?
        .iter()
        .map(|(p, at)| {
            json!({"PolicyName": p.name, "PolicyType": "Custom", "Description": p.description, "DefaultVersion": "v1", "AttachDate": date(*at)})
        })
        .collect();
    Ok(obj([("Policies", json!({ "Policy": list }))]))
}
