//! Diagnosis: what a failed probe says beyond its reason. [`layer`] names the layer (CDN, load
//! balancer, proxy, application) that most likely produced an error response; [`events`] keeps
//! the last failures with their evidence, and the hints drawn from them.

pub mod events;
pub mod layer;
