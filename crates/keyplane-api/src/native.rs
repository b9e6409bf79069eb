//! keyplane's native API (`/api/v1`, JSON): server administration. Requests are signed like an
//! Alibaba V3 call (`ACS3-HMAC-SHA256` over the method, path, query and headers), so the CLI and any
//! tool that signs vendor calls can use it with the same AccessKeys.
//!
//! - `POST /api/v1/accounts?Name=…`: create an account; only the bootstrap account's root may.
//!   Answers `{"AccountId", "AccessKeyId", "AccessKeySecret"}` (the secret once).
//! - `GET /api/v1/accounts`: list accounts (the bootstrap root).
//! - `GET /api/v1/audit?Action=&Principal=&Result=&AccountId=&Since=&MaxResults=&NextToken=&Order=`:
//!   the audit log of the caller's account (the bootstrap root may name any account); a RAM user
//!   needs an Allow for `keyplane:DescribeAuditRecords`. `Order=OldestFirst` (the default) or
//!   `NewestFirst` (the console's audit page: NextToken then leads to older records).
//! - `POST /api/v1/registration-tokens?Region=&Zone=&Name=&Ttl=`: a one-time token for
//!   `keyplane agent` (`keyplane:CreateRegistrationToken`); answers `{"Token", "TokenId",
//!   "ExpiresAt"}`, the token shown once. `Ttl` is `90s`, `15m`, `8h`, `30d` (1 minute to 30 days,
//!   default 24 h).
//! - `GET /api/v1/registration-tokens`: `{"Tokens": [{"TokenId", "Name", "ExpiresAt", "Used"}]}`,
//!   the account's tokens not revoked, without secrets (`keyplane:DescribeRegistrationTokens`).
//! - `POST /api/v1/registration-tokens/{TokenId}/revoke`: the token no longer registers anything
//!   (`keyplane:RevokeRegistrationToken`); answers `{"TokenId"}`. See `registration_tokens`.
//! - `POST /api/v1/ecs/{Action}` (form body): an Alibaba ECS action for the console's session,
//!   with the same RAM checks and audit as a signed call.
//! - `GET /api/v1/instances?RegionId=&InstanceId=`: instances with their binding state
//!   (`none`, `pending_restart`, `applied`, `failed` with the reason, `drifted`).
//! - `/api/v1/grants`, `/api/v1/revoked-keys`: grants and revocation (SPEC section 15), see
//!   [`crate::grants`].
//! - `/api/v1/emulator/…`: the emulator's controls (SPEC section 14), see [`crate::emulator`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::Request;
use axum::response::Response;
use keyplane_core::{ids, CoreError};
use keyplane_store::{AccessKeyRecord, AuditFilter, Page};
use serde_json::{json, Value};

use crate::acs::error::AliError;
use crate::acs::render::{self, Format};
use crate::auth::{self, Caller};
use crate::params::Params;
use crate::wire::WireRequest;
use crate::AppState;

pub async fn handle(
    State(state): State<Arc<AppState>>,
    req: Request<axum::body::Body>,
) -> Response {
    let request_id = keyplane_core::ids::new_request_id();
    let host = "keyplane";
    let wire = match WireRequest::read(req, state.config.max_body_bytes).await {
        Ok(w) => w,
        Err(e) => return render::error(&e.into(), &request_id, host, Format::Json),
    };
    // A browser session (the console) or a signed call (the CLI and tools).
    let mutating = wire.method != "GET";
    let session =
        crate::console::session_caller(&state, &session_headers(&wire), wire.peer, mutating).await;
    let caller = match session {
        Some(Ok(c)) => c,
        Some(Err(response)) => return response,
        // A console request whose cookie is gone (expired, or cleared by a sign-out elsewhere):
        // 401, so the page goes back to its sign-in screen. Signed calls never send the header.
        None if wire.header("authorization").is_none() && wire.header("x-csrf-token").is_some() => {
            return crate::console::session_ended()
        }
        // The native API is selected by method and path, which only a V3 signature covers in
        // the vendor's scheme; V1 is for the vendor dialects at `/`.
        None if wire.header("authorization").is_none() => {
            return render::error(&AliError::v3_required(), &request_id, host, Format::Json)
        }
        None => match auth::alibaba(&state, &wire).await {
            Ok(c) => c,
            Err(e) => return render::error(&AliError::from(e), &request_id, host, Format::Json),
        },
    };
    let p = Params::new(&wire.query, &wire.form);
    if let Err(e) = p.nul_free() {
        return render::error(&e.into(), &request_id, host, Format::Json);
    }
    if let Some(action) = wire.path.strip_prefix("/api/v1/ecs/") {
        if wire.method != "POST" {
            return render::error(
                &CoreError::invalid("method", "Use POST.").into(),
                &request_id,
                host,
                Format::Json,
            );
        }
        let mut params = wire.query.clone();
        params.extend(wire.form.iter().cloned());
        let meta = crate::pipeline::Meta {
            request_id: keyplane_core::ids::new_request_id(),
            action: action.to_string(),
            access_key_id: caller.access_key_id.clone(),
            ..Default::default()
        };
        let p = Params::new(&params, &[]);
        let ctx = crate::pipeline::Ctx::new(&state, &caller, p, &meta, "console", None);
        return crate::pipeline::run(&crate::aliyun::console(), &ctx, &meta).await;
    }
    let result = match (wire.method.as_str(), wire.path.as_str()) {
        ("POST", "/api/v1/grants") => crate::grants::create(&state, &caller, &p, &request_id).await,
        ("GET", "/api/v1/grants") => crate::grants::list(&state, &caller, &p).await,
        ("POST", path) if revoked_grant_id(path).is_some() => {
            let id = revoked_grant_id(path).unwrap_or_default();
            crate::grants::revoke(&state, &caller, id, &request_id).await
        }
        ("POST", "/api/v1/revoked-keys") => {
            crate::grants::revoke_key(&state, &caller, &p, &request_id).await
        }
        ("DELETE", "/api/v1/revoked-keys") => {
            crate::grants::unrevoke_key(&state, &caller, &p, &request_id).await
        }
        (method, path) if path.starts_with("/api/v1/emulator/") => {
            crate::emulator::native::handle(&state, &caller, method, path, &p).await
        }
        ("POST", "/api/v1/accounts") => create_account(&state, &caller, &p).await,
        ("GET", "/api/v1/accounts") => list_accounts(&state, &caller).await,
        ("GET", "/api/v1/audit") => audit(&state, &caller, &p).await,
        ("POST", "/api/v1/registration-tokens") => {
            crate::registration_tokens::create(&state, &caller, &p).await
        }
        ("GET", "/api/v1/registration-tokens") => {
            crate::registration_tokens::list(&state, &caller).await
        }
        ("POST", path) if revoked_token_id(path).is_some() => {
            let token_id = revoked_token_id(path).unwrap_or_default();
            crate::registration_tokens::revoke(&state, &caller, token_id).await
        }
        ("GET", "/api/v1/instances") => instances(&state, &caller, &p).await,
        _ => Err(CoreError::invalid(
            "path",
            format!("{} {} is not an API of this server", wire.method, wire.path),
        )),
    };
    match result {
        Ok(body) => render::success("Native", &request_id, body, Format::Json),
        Err(e) => render::error(&AliError::from(e), &request_id, host, Format::Json),
    }
}

/// `G` of `/api/v1/grants/{G}/revoke`, if it has a grant ID's characters.
fn revoked_grant_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/v1/grants/")?
        .strip_suffix("/revoke")?;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then_some(id)
}

fn session_headers(wire: &WireRequest) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in &wire.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(v),
        ) {
            h.append(name, value);
        }
    }
    h
}

/// The bootstrap account's root administers the server.
async fn require_admin(state: &AppState, caller: &Caller) -> Result<(), CoreError> {
    let bootstrap = state.store.default_account().await?;
    if caller.is_root() && bootstrap.as_deref() == Some(caller.account_id.as_str()) {
        Ok(())
    } else {
        Err(CoreError::Forbidden {
            action: "keyplane:AdministerServer".into(),
            resource: "*".into(),
        })
    }
}

async fn create_account(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
) -> Result<serde_json::Map<String, Value>, CoreError> {
    require_admin(state, caller).await?;
    let name = p.required("Name")?;
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "Name",
            "At most 64 characters, no control characters.",
        ));
    }
    let (id, secret) = (ids::new_access_key_id(), ids::new_access_key_secret());
    let account = ids::new_account_id();
    let key = AccessKeyRecord {
        secret: state.config.server_key.seal(&id, &secret),
        id: id.clone(),
        account_id: account.clone(),
        user_name: None,
        active: true,
    };
    state.store.create_account(name, &key).await?;
    Ok(crate::reply::obj([
        ("AccountId", json!(account)),
        ("Name", json!(name)),
        ("AccessKeyId", json!(id)),
        ("AccessKeySecret", json!(secret)),
    ]))
}

async fn list_accounts(
    state: &AppState,
    caller: &Caller,
) -> Result<serde_json::Map<String, Value>, CoreError> {
    require_admin(state, caller).await?;
    let list: Vec<Value> = state
        .store
        .list_accounts()
        .await?
        .iter()
        .map(|(id, name, at)| json!({"AccountId": id, "Name": name, "CreateTime": at.to_rfc3339()}))
        .collect();
    Ok(crate::reply::obj([("Accounts", Value::Array(list))]))
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
) -> Result<serde_json::Map<String, Value>, CoreError> {
    caller.check("keyplane:DescribeAuditRecords", "*")?;
    let account = match p.opt("AccountId") {
        Some(a) if a != caller.account_id => {
            require_admin(state, caller).await?;
            a.to_string()
        }
        _ => caller.account_id.clone(),
    };
    let since = p
        .opt("Since")
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)))
        .transpose()
        .map_err(|_| CoreError::invalid("Since", "Use RFC 3339, e.g. 2026-01-01T00:00:00Z."))?;
    let filter = AuditFilter {
        account_id: Some(account),
        action: p.opt("Action").map(str::to_string),
        principal: p.opt("Principal").map(str::to_string),
        result: p.opt("Result").map(str::to_string),
        since,
    };
    let max = p.int("MaxResults", 100, 1, 1000)?;
    // Opaque, bound to the caller and the account listed: see crate::page_token.
    let listed = filter.account_id.clone().unwrap_or_default();
    let scope = crate::page_token::Scope {
        listing: "native.audit",
        caller,
        extra: &listed,
    };
    let key = &state.config.server_key;
    let newest_first = match p.opt("Order") {
        None | Some("OldestFirst") => false,
        Some("NewestFirst") => true,
        Some(_) => {
            return Err(CoreError::invalid(
                "Order",
                "Use NewestFirst or OldestFirst.",
            ))
        }
    };
    let listing = if newest_first {
        let scope = crate::page_token::Scope {
            listing: "native.audit.newest",
            ..scope
        };
        let (listing, older) = newest_audit_page(state, &filter, &scope, p, max as u64).await?;
        (listing, crate::page_token::seal(key, &scope, older))
    } else {
        let seq = crate::page_token::open(key, &scope, p.opt("NextToken"))?;
        let listing = state
            .store
            .list_audit(
                &filter,
                Page::After {
                    seq,
                    limit: max as u64,
                },
            )
            .await?;
        let next = crate::page_token::seal(key, &scope, listing.next_seq);
        (listing, next)
    };
    let (listing, next_token) = listing;
    let records: Vec<Value> = listing
        .items
        .iter()
        .map(|r| {
            json!({
                "Time": r.at.to_rfc3339(),
                "AccountId": r.account_id,
                "Principal": r.principal,
                "AccessKeyId": r.access_key_id,
                "SourceIp": r.source_ip,
                "Dialect": r.dialect,
                "Action": r.action,
                "Resources": r.resources,
                "Result": r.result,
                "HttpStatus": r.status,
                "RequestId": r.request_id,
                "ClientToken": r.client_token,
                "InstanceResults": r.instance_results,
                "Injected": r.injected,
            })
        })
        .collect();
    Ok(crate::reply::obj([
        ("TotalCount", json!(listing.total)),
        ("NextToken", json!(next_token)),
        ("Records", Value::Array(records)),
    ]))
}

/// `Order=NewestFirst` (the console's audit page): the newest `max` records, newest first, and the
/// position of the next older page. The records are numbered from the oldest; the audit log only
/// grows, so the records before a position stay where they are while newer ones arrive, and the
/// token of the next older page (the end, exclusive, of that page) stays right.
async fn newest_audit_page(
    state: &AppState,
    filter: &AuditFilter,
    scope: &crate::page_token::Scope<'_>,
    p: &Params<'_>,
    max: u64,
) -> Result<
    (
        keyplane_store::Listing<keyplane_store::AuditRecord>,
        Option<i64>,
    ),
    CoreError,
> {
    let end = match crate::page_token::open(&state.config.server_key, scope, p.opt("NextToken"))? {
        // The first page ends with the newest record.
        0 => {
            let count = Page::Offset {
                offset: 0,
                limit: 0,
            };
            state.store.list_audit(filter, count).await?.total
        }
        end => end as u64,
    };
    let offset = end.saturating_sub(max);
    let mut listing = state
        .store
        .list_audit(
            filter,
            Page::Offset {
                offset,
                limit: end - offset,
            },
        )
        .await?;
    listing.items.reverse();
    Ok((listing, (offset > 0).then_some(offset as i64)))
}

/// The `{TokenId}` of `/api/v1/registration-tokens/{TokenId}/revoke`.
fn revoked_token_id(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/registration-tokens/")?
        .strip_suffix("/revoke")
}

async fn instances(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
) -> Result<serde_json::Map<String, Value>, CoreError> {
    let region = p.opt("RegionId").unwrap_or("cn-hangzhou");
    let filter = keyplane_store::InstanceFilter {
        account_id: caller.account_id.clone(),
        region_id: region.to_string(),
        ids: p.opt("InstanceId").map(|i| vec![i.to_string()]),
        ..Default::default()
    };
    let listing = state
        .store
        .list_instances(
            &filter,
            Page::Offset {
                offset: 0,
                limit: 1000,
            },
        )
        .await?;
    let list: Vec<Value> = listing
        .items
        .iter()
        .filter(|i| {
            caller.allowed(
                "ecs:DescribeInstances",
                &caller.instance_arn(&i.region_id, &i.id),
            )
        })
        .map(|i| {
            json!({
                "InstanceId": i.id,
                "InstanceName": i.name,
                "RegionId": i.region_id,
                "Provider": i.provider.as_str(),
                "Status": i.status.as_str(),
                "OsType": i.os_type.as_str(),
                // The catalog's English name for images (the vendor dialect keeps the Chinese OSName).
                "OsName": keyplane_core::catalog::image(&i.image_id).map(|im| im.name).unwrap_or(&i.os_name),
                "LoginUser": i.login_user,
                "KeyPairName": i.key_pair_name.clone().unwrap_or_default(),
                "BindingState": i.binding.state.as_str(),
                "BindingError": i.binding.error,
                "PasswordLogin": i.binding.effective_password_login,
                // A ModifyInstanceAttribute Password not yet in effect (it waits for a restart).
                "PasswordResetPending": i.binding.desired_password_version != i.binding.effective_password_version,
            })
        })
        .collect();
    Ok(crate::reply::obj([("Instances", Value::Array(list))]))
}
