//! Every topic trait of the store, so that calls on an `Arc<dyn Store>` resolve:
//! `use keyplane_store::prelude::*`.

pub use crate::{Accounts, Agents, AuditLog, Instances, KeyPairs, Replay, Store};
