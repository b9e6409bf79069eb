//! Emulator mode (SPEC section 14): fault injection, the simulated clock's controls, snapshots and
//! account deletion, for tests of cloud automation. Off unless the server runs with `--emulator`:
//! then every control answers `OperationDenied.EmulatorOff` and changes nothing.
//!
//! Faults live in this server's memory, per account (a test's faults touch only its own
//! account's calls). A call's faults are decided once, when the pipeline reaches it (after
//! authentication and the RAM gate): a request-level error, a latency, a hold of the transitions
//! it starts, and per-instance errors inside a batch. Every fault that fires is named in the
//! call's audit record.

pub mod native;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keyplane_core::{CoreError, InstanceFailure};
use rand::{Rng, SeedableRng};

use crate::pipeline::Ctx;

/// The most faults one account may have at once.
pub const MAX_FAULTS: usize = 100;
/// The longest latency a fault adds: below the request timeout (30 s), so the call still answers.
pub const MAX_LATENCY_MS: u64 = 20_000;

/// The batch actions whose instances can fail one by one (`--instance-id` with `--code`).
const BATCHES: &[&str] = &[
    "AttachKeyPair",
    "DetachKeyPair",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
];
/// The actions that start a transition a fault can hold.
const TRANSITIONS: &[&str] = &[
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "RunInstances",
];

/// What a fault does when it fires.
#[derive(Debug, Clone)]
pub enum Effect {
    /// The call (or, for a batch with an instance, that instance) fails with this code.
    Code {
        code: &'static str,
        message: String,
        status: u16,
    },
    Latency(Duration),
    /// The transitions the call starts stay in their transitional status until the fault goes.
    Hold,
}

/// When a matching call makes a fault fire.
#[derive(Debug)]
pub enum Trigger {
    Always,
    /// The next N matching calls (instances, for a batch's per-instance fault).
    Count(u64),
    Probability {
        p: f64,
        rng: Box<rand::rngs::StdRng>,
    },
}

#[derive(Debug)]
pub struct Fault {
    pub id: String,
    pub account: String,
    /// `alibaba` or `volcengine`; `None` matches both.
    pub dialect: Option<&'static str>,
    pub action: String,
    pub instance_id: Option<String>,
    pub key_pair: Option<String>,
    pub effect: Effect,
    pub trigger: Trigger,
    /// `--count`, `--probability` and `--seed` as given, for the listing.
    pub count: Option<u64>,
    pub probability: Option<f64>,
    pub seed: Option<u64>,
    pub fired: u64,
    /// Instances whose transitions this fault holds.
    pub held: Vec<String>,
}

impl Fault {
    /// Whether it fires this time (a count is used up, a probability drawn).
    fn fire(&mut self) -> bool {
        let fires = match &mut self.trigger {
            Trigger::Always => true,
            Trigger::Count(0) => false,
            Trigger::Count(n) => {
                *n -= 1;
                true
            }
            Trigger::Probability { p, rng } => rng.gen_bool(*p),
        };
        if fires {
            self.fired += 1;
        }
        fires
    }
}

/// What the faults decided for one call.
#[derive(Debug, Default)]
pub struct CallFaults {
    pub error: Option<CoreError>,
    pub latency: Duration,
    /// The fault holding the transitions this call starts.
    pub hold: Option<String>,
    /// Instances of a batch that fail, with the fault's code.
    pub instances: HashMap<String, InstanceFailure>,
    /// The IDs of the faults that fired, for the audit record.
    pub fired: Vec<String>,
}

/// The emulator's state: the faults of every account.
#[derive(Default)]
pub struct Emulator {
    faults: Mutex<Vec<Fault>>,
}

/// The dialect family of a pipeline dialect: the RAM API and the console speak Alibaba's.
fn family(dialect: &str) -> &'static str {
    match dialect {
        "volc" => "volcengine",
        _ => "alibaba",
    }
}

impl Emulator {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, fault: Fault) -> Result<String, CoreError> {
        let mut faults = self.lock();
        if faults.iter().filter(|f| f.account == fault.account).count() >= MAX_FAULTS {
            return Err(CoreError::invalid(
                "Action",
                format!("At most {MAX_FAULTS} faults per account: delete some first."),
            ));
        }
        let id = fault.id.clone();
        faults.push(fault);
        Ok(id)
    }

    /// The account's faults, as `fault list` shows them.
    pub fn list(&self, account: &str) -> Vec<serde_json::Value> {
        self.lock()
            .iter()
            .filter(|f| f.account == account)
            .map(native::describe)
            .collect()
    }

    /// Removes the account's fault `id` (every fault with `None`); the instances they held, to
    /// release.
    pub fn remove(&self, account: &str, id: Option<&str>) -> Option<(usize, Vec<String>)> {
        let mut faults = self.lock();
        let before = faults.len();
        let mut released = Vec::new();
        faults.retain_mut(|f| {
            let gone = f.account == account && id.is_none_or(|id| f.id == id);
            if gone {
                released.append(&mut f.held);
            }
            !gone
        });
        let removed = before - faults.len();
        (removed > 0 || id.is_none()).then_some((removed, released))
    }

    /// Notes that `fault` holds `ids`' transitions, to release them when it goes.
    pub fn held(&self, fault: &str, ids: &[String]) {
        if let Some(f) = self.lock().iter_mut().find(|f| f.id == fault) {
            f.held.extend(ids.iter().cloned());
        }
    }

    /// Decides the faults of the call in `ctx`. `named` are the instance IDs and key pair names
    /// the call names (see [`named`]).
    pub fn for_call(&self, ctx: &Ctx<'_>) -> CallFaults {
        let mut out = CallFaults::default();
        let mut faults = self.lock();
        let (instances, key_pairs) = named(ctx);
        let batch = BATCHES.contains(&ctx.action);
        for f in faults.iter_mut() {
            let matches = f.account == ctx.caller.account_id
                && f.action == ctx.action
                && f.dialect.is_none_or(|d| d == family(ctx.dialect))
                && f.key_pair.as_ref().is_none_or(|k| key_pairs.contains(k));
            if !matches {
                continue;
            }
            match (f.effect.clone(), f.instance_id.clone()) {
                // One instance of a batch: it fails, the others go on.
                (Effect::Code { code, message, .. }, Some(id)) if batch => {
                    if instances.contains(&id) && f.fire() {
                        let message =
                            keyplane_core::intern::intern(&message).unwrap_or("Injected.");
                        out.instances
                            .insert(id, InstanceFailure::Injected { code, message });
                        out.fired.push(f.id.clone());
                    }
                }
                (effect, instance) => {
                    if instance.is_some_and(|i| !instances.contains(&i)) {
                        continue;
                    }
                    if matches!(effect, Effect::Hold) && !TRANSITIONS.contains(&ctx.action) {
                        continue;
                    }
                    // A request-level error fails the call: later rules have nothing to act on.
                    if out.error.is_some() || !f.fire() {
                        continue;
                    }
                    out.fired.push(f.id.clone());
                    match effect {
                        Effect::Code {
                            code,
                            message,
                            status,
                        } => {
                            out.error = Some(CoreError::Injected {
                                code,
                                message,
                                status,
                            })
                        }
                        Effect::Latency(d) => out.latency += d,
                        Effect::Hold => out.hold = Some(f.id.clone()),
                    }
                }
            }
        }
        out
    }
}

/// The instance IDs and key pair names (or IDs) a call names, by every parameter spelling of
/// both dialects: `InstanceId`, `InstanceIds` as a JSON list or `InstanceIds.N`, `KeyPairName`,
/// `KeyPairNames`, `KeyPairId`, `KeyPairIds.N`, `ResourceId.N`.
pub fn named(ctx: &Ctx<'_>) -> (Vec<String>, Vec<String>) {
    let (mut instances, mut key_pairs) = (Vec::new(), Vec::new());
    for (k, v) in ctx.p.pairs() {
        let into = match k.split('.').next().unwrap_or(k) {
            "InstanceId" | "InstanceIds" => &mut instances,
            "KeyPairName" | "KeyPairNames" | "KeyPairId" | "KeyPairIds" | "ResourceId" => {
                &mut key_pairs
            }
            _ => continue,
        };
        match keyplane_core::json_list::first(v, crate::audit::MAX_RESOURCES) {
            Some(list) => into.extend(list.iter().map(|s| s.to_string())),
            None if !v.is_empty() => into.push(v.to_string()),
            None => {}
        }
    }
    (instances, key_pairs)
}

/// A probability trigger's generator: seeded when asked, so a run is reproducible.
pub fn rng(seed: Option<u64>) -> rand::rngs::StdRng {
    match seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_entropy(),
    }
}
