//! The emulator's native API (SPEC section 14), under `/api/v1/emulator/`, signed like the rest of
//! `/api/v1`, for an account's root or a RAM user allowed `keyplane:ManageEmulator`:
//!
//! - `POST /faults?Action=&Dialect=&InstanceId=&KeyPairName=&Code=&HttpStatus=&Message=&LatencyMs=&Hold=&Count=&Probability=&Seed=`
//!   → `{"FaultId"}`; `GET /faults` → `{"Faults": [...]}`; `DELETE /faults/{FaultId}`;
//!   `DELETE /faults` (all of the account's).
//! - `GET /clock`, `POST /clock/advance?Seconds=N`, `POST /clock/set?At=RFC3339` → `{"Now"}`.
//! - `POST /snapshots?Name=` (save), `POST /snapshots/{Name}/load`, `GET /snapshots`,
//!   `DELETE /snapshots/{Name}`: the whole store, in `snapshots/` beside the SQLite database.
//! - `DELETE /accounts/{NameOrId}`: an account and all it holds but its audit records.

use chrono::{DateTime, SecondsFormat, Utc};
use keyplane_core::CoreError;
use serde_json::{json, Map, Value};

use super::{Effect, Fault, Trigger, MAX_LATENCY_MS};
use crate::auth::Caller;
use crate::params::Params;
use crate::AppState;

type Answer = Result<Map<String, Value>, CoreError>;

/// The longest snapshot name, and its characters.
const MAX_NAME: usize = 64;

/// `method path` under `/api/v1/emulator/`, for `caller`.
pub async fn handle(
    state: &AppState,
    caller: &Caller,
    method: &str,
    path: &str,
    p: &Params<'_>,
) -> Answer {
    let Some(emulator) = &state.emulator else {
        return Err(CoreError::EmulatorOff);
    };
    caller.check("keyplane:ManageEmulator", "*")?;
    let rest = path.trim_start_matches("/api/v1/emulator/");
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["faults"]) => {
            let fault = parse_fault(caller, p)?;
            let id = emulator.add(fault)?;
            tracing::info!(fault = %id, account = %caller.account_id, "emulator fault added");
            Ok(obj([("FaultId", json!(id))]))
        }
        ("GET", ["faults"]) => Ok(obj([(
            "Faults",
            Value::Array(emulator.list(&caller.account_id)),
        )])),
        ("DELETE", ["faults"]) => {
            let (n, held) = emulator
                .remove(&caller.account_id, None)
                .unwrap_or_default();
            release(state, caller, &held).await?;
            Ok(obj([("Deleted", json!(n))]))
        }
        ("DELETE", ["faults", id]) => {
            let Some((_, held)) = emulator.remove(&caller.account_id, Some(id)) else {
                return Err(CoreError::invalid(
                    "FaultId",
                    "No fault of this account has this ID.",
                ));
            };
            release(state, caller, &held).await?;
            Ok(obj([("FaultId", json!(id))]))
        }
        ("GET", ["clock"]) => Ok(now(state.clock.now())),
        ("POST", ["clock", "advance"]) => {
            let secs = p.int("Seconds", 0, 0, 10 * 365 * 86_400)?;
            if p.get("Seconds").is_none() {
                return Err(CoreError::missing("Seconds"));
            }
            let at = state.clock.advance(chrono::Duration::seconds(secs));
            tracing::info!(seconds = secs, now = %at, "emulator clock advanced");
            tick(state, at).await?;
            Ok(now(at))
        }
        ("POST", ["clock", "set"]) => {
            let at = parse_at(p.required("At")?)?;
            if at < state.clock.now() {
                return Err(CoreError::invalid(
                    "At",
                    "The clock only moves forward: give a time after the current one (clock show).",
                ));
            }
            let at = state.clock.set(at);
            tracing::info!(now = %at, "emulator clock set");
            tick(state, at).await?;
            Ok(now(at))
        }
        ("POST", ["snapshots"]) => {
            let name = snapshot_name(p.required("Name")?)?;
            let path = snapshot_path(state, name)?;
            state.store.save_snapshot(&path).await?;
            tracing::info!(snapshot = name, "emulator snapshot saved");
            Ok(obj([("Name", json!(name))]))
        }
        ("POST", ["snapshots", name, "load"]) => {
            let name = snapshot_name(name)?;
            let path = snapshot_path(state, name)?;
            state.store.load_snapshot(&path).await?;
            tracing::info!(snapshot = name, "emulator snapshot loaded");
            Ok(obj([("Name", json!(name))]))
        }
        ("GET", ["snapshots"]) => Ok(obj([("Snapshots", Value::Array(snapshots(state)?))])),
        ("DELETE", ["snapshots", name]) => {
            let name = snapshot_name(name)?;
            let path = snapshot_path(state, name)?;
            std::fs::remove_file(&path)
                .map_err(|_| CoreError::invalid("Name", "No snapshot has this name."))?;
            Ok(obj([("Name", json!(name))]))
        }
        ("DELETE", ["accounts", name]) => delete_account(state, caller, name).await,
        _ => Err(CoreError::invalid(
            "path",
            format!("{method} {path} is not an emulator control"),
        )),
    }
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    crate::reply::obj(pairs)
}

fn now(at: DateTime<Utc>) -> Map<String, Value> {
    obj([("Now", json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)))])
}

fn parse_at(text: &str) -> Result<DateTime<Utc>, CoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .filter(|t| *t < keyplane_store::held_until() - chrono::Duration::days(365))
        .ok_or_else(|| CoreError::invalid("At", "An RFC 3339 time, e.g. 2030-01-01T00:00:00Z."))
}

/// What the clock moving completes at once: transitions now due.
async fn tick(state: &AppState, at: DateTime<Utc>) -> Result<(), CoreError> {
    state.store.complete_transitions(at).await?;
    Ok(())
}

/// Completes the transitions a deleted fault held.
async fn release(state: &AppState, caller: &Caller, held: &[String]) -> Result<(), CoreError> {
    if held.is_empty() {
        return Ok(());
    }
    let now = state.clock.now();
    state
        .store
        .reschedule_transitions(&caller.account_id, held, now)
        .await?;
    state.store.complete_transitions(now).await?;
    crate::agent_api::changed(state, held).await;
    Ok(())
}

fn parse_fault(caller: &Caller, p: &Params<'_>) -> Result<Fault, CoreError> {
    let action = p.required("Action")?;
    if action.is_empty() || action.len() > 64 || !action.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(CoreError::invalid(
            "Action",
            "An API action's name, e.g. AttachKeyPair.",
        ));
    }
    let dialect = match p.get("Dialect").unwrap_or("any") {
        "any" => None,
        "alibaba" => Some("alibaba"),
        "volcengine" => Some("volcengine"),
        _ => return Err(CoreError::invalid("Dialect", "alibaba, volcengine or any.")),
    };
    let id_like = |name: &str| -> Result<Option<String>, CoreError> {
        match p.get(name) {
            None => Ok(None),
            Some(v) if !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control) => {
                Ok(Some(v.to_string()))
            }
            Some(_) => Err(CoreError::invalid(name, "1 to 128 characters.")),
        }
    };
    let instance_id = id_like("InstanceId")?;
    let key_pair = id_like("KeyPairName")?;
    let code = p.get("Code");
    let latency = p.get("LatencyMs");
    let hold = p.bool("Hold")?.unwrap_or(false);
    let effect = match (code, latency, hold) {
        (Some(code), None, false) => {
            let valid = !code.is_empty()
                && code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            let code = valid
                .then(|| keyplane_core::intern::intern(code))
                .flatten()
                .ok_or_else(|| {
                    CoreError::invalid(
                        "Code",
                        "A vendor error code: letters, digits, . _ -, at most 64.",
                    )
                })?;
            let status = p.int("HttpStatus", 400, 400, 599)? as u16;
            let message = p
                .get("Message")
                .unwrap_or("An error injected by the keyplane emulator.");
            if message.chars().count() > 512 {
                return Err(CoreError::invalid("Message", "At most 512 characters."));
            }
            Effect::Code {
                code,
                message: message.to_string(),
                status,
            }
        }
        (None, Some(_), false) => {
            let ms = p.int("LatencyMs", 0, 1, MAX_LATENCY_MS as i64)?;
            Effect::Latency(std::time::Duration::from_millis(ms as u64))
        }
        (None, None, true) => Effect::Hold,
        _ => {
            return Err(CoreError::invalid(
                "Code",
                "Give exactly one of Code, LatencyMs or Hold.",
            ))
        }
    };
    let count = match p.get("Count") {
        Some(_) => Some(p.int("Count", 1, 1, 1_000_000)? as u64),
        None => None,
    };
    let probability = match p.get("Probability") {
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| CoreError::invalid("Probability", "A number from 0 to 1."))?,
        ),
        None => None,
    };
    let seed = match p.get("Seed") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| CoreError::invalid("Seed", "A whole number."))?,
        ),
        None => None,
    };
    let trigger = match (count, probability) {
        (Some(_), Some(_)) => {
            return Err(CoreError::invalid(
                "Count",
                "Give Count or Probability, not both.",
            ))
        }
        (Some(n), None) => Trigger::Count(n),
        (None, Some(p)) => Trigger::Probability {
            p,
            rng: Box::new(super::rng(seed)),
        },
        (None, None) if seed.is_some() => {
            return Err(CoreError::invalid(
                "Seed",
                "A seed goes with a Probability.",
            ))
        }
        (None, None) => Trigger::Always,
    };
    Ok(Fault {
        id: format!("fault-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        account: caller.account_id.clone(),
        dialect,
        action: action.to_string(),
        instance_id,
        key_pair,
        effect,
        trigger,
        count,
        probability,
        seed,
        fired: 0,
        held: Vec::new(),
    })
}

/// A fault as `fault list` shows it.
pub fn describe(f: &Fault) -> Value {
    let mut out = json!({
        "FaultId": f.id,
        "Action": f.action,
        "Dialect": f.dialect.unwrap_or("any"),
        "InstanceId": f.instance_id,
        "KeyPairName": f.key_pair,
        "Count": f.count,
        "Remaining": match f.trigger { Trigger::Count(n) => Some(n), _ => None },
        "Probability": f.probability,
        "Seed": f.seed,
        "Fired": f.fired,
        "Held": f.held,
    });
    let effect = match &f.effect {
        Effect::Code {
            code,
            message,
            status,
        } => json!({"Code": code, "Message": message, "HttpStatus": status}),
        Effect::Latency(d) => json!({"LatencyMs": d.as_millis() as u64}),
        Effect::Hold => json!({"Hold": true}),
    };
    if let (Some(out), Value::Object(effect)) = (out.as_object_mut(), effect) {
        out.extend(effect);
    }
    out
}

fn snapshot_name(name: &str) -> Result<&str, CoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(name).ok_or_else(|| {
        CoreError::invalid(
            "Name",
            format!("1 to {MAX_NAME} letters, digits, . _ -, not starting with a dot."),
        )
    })
}

/// Where snapshots live: `snapshots/` beside the SQLite database, created 0700.
fn snapshot_dir(state: &AppState) -> Result<std::path::PathBuf, CoreError> {
    let Some(dir) = state.store.snapshot_dir() else {
        // The store says why (PostgreSQL): ask it to try, and pass its refusal on.
        return Err(CoreError::invalid(
            "Snapshot",
            "Snapshots need the embedded SQLite store; with PostgreSQL use pg_dump and pg_restore \
             (docs/EMULATOR.md).",
        ));
    };
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| CoreError::Internal(format!("create {dir:?}: {e}")))?;
    Ok(dir)
}

fn snapshot_path(state: &AppState, name: &str) -> Result<std::path::PathBuf, CoreError> {
    Ok(snapshot_dir(state)?.join(format!("{name}.db")))
}

fn snapshots(state: &AppState) -> Result<Vec<Value>, CoreError> {
    let dir = snapshot_dir(state)?;
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| CoreError::Internal(format!("read {dir:?}: {e}")))?;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".db") else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let saved: DateTime<Utc> = meta
            .modified()
            .map(Into::into)
            .unwrap_or_else(|_| Utc::now());
        out.push(json!({
            "Name": name,
            "Bytes": meta.len(),
            "SavedAt": saved.to_rfc3339_opts(SecondsFormat::Secs, true),
        }));
    }
    out.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    Ok(out)
}

/// Deletes the account named (by name or ID): the bootstrap account's root may delete any other
/// account, another account's root only its own. The bootstrap account cannot be deleted.
async fn delete_account(state: &AppState, caller: &Caller, name: &str) -> Answer {
    let accounts = state.store.list_accounts().await?;
    let matching: Vec<&(String, String, DateTime<Utc>)> = accounts
        .iter()
        .filter(|(id, n, _)| id == name || n == name)
        .collect();
    let id = match matching.as_slice() {
        [one] => one.0.clone(),
        [] => {
            return Err(CoreError::invalid(
                "Name",
                "No account has this name or ID.",
            ))
        }
        _ => {
            return Err(CoreError::invalid(
                "Name",
                "Several accounts have this name: give the account's ID.",
            ))
        }
    };
    let bootstrap = state.store.default_account().await?;
    if bootstrap.as_deref() == Some(id.as_str()) {
        return Err(CoreError::invalid(
            "Name",
            "The bootstrap account holds the server's root AccessKey and cannot be deleted.",
        ));
    }
    let own = caller.account_id == id && caller.is_root();
    let admin = caller.is_root() && bootstrap.as_deref() == Some(caller.account_id.as_str());
    if !own && !admin {
        return Err(CoreError::Forbidden {
            action: "keyplane:DeleteAccount".into(),
            resource: "*".into(),
        });
    }
    state.store.delete_account(&id).await?;
    tracing::info!(account = %id, "emulator account deleted");
    Ok(obj([("AccountId", json!(id))]))
}
