//! keyplane's domain, free of I/O: the newtypes every request is parsed into (names, IDs, public
//! keys and their fingerprints), key pairs, instances, the binding state machine, the attach and
//! detach rules, the built-in catalog, and the dialect-neutral [`CoreError`].
//!
//! Both vendor dialects parse into these types and render [`CoreError`] through their own tables,
//! so a rule lives here once.

pub mod agent_wire;
pub mod binding;
pub mod catalog;
pub mod duration;
pub mod error;
pub mod grant;
pub mod ids;
pub mod instance_password;
pub mod intern;
pub mod json_list;
pub mod model;
pub mod names;
pub mod password;
pub mod pubkey;
pub mod ram;
pub mod secretbox;
pub mod suggest;
pub mod wildcard;

pub use error::{CoreError, InstanceFailure};
