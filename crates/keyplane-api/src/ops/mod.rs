//! The operations both ECS dialects and the console perform, written once: a dialect reads its
//! parameters in its own spelling, calls an operation here, and renders the result in its own
//! envelope. Operations check each resource against the caller's policies; the pipeline has
//! already passed the action's RAM gate ([`crate::pipeline`]).

pub mod bindings;
pub mod instances;
pub mod keypairs;
pub mod visible;
