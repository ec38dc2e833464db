//! The load tests of `tests/it/soak.rs`, in a test binary of their own: cargo runs test binaries
//! one after another, so thousands of probes a second do not slow the timing-sensitive tests of
//! `tests/it` running beside them (nor they the soak's figures).
//!
//! `cargo test --test soak -- --nocapture` shows the samples; `TICKR_SOAK_SECS` and
//! `TICKR_SOAK_TARGETS` lengthen and widen the soak.

/// The parts of the shared harness these tests use (not `procs`, whose own tests start nginx
/// and Alertmanager: `tests/it` runs those).
#[path = "it/common"]
mod common {
    #![allow(dead_code)]
    pub mod exposition;
    pub mod server;
    pub mod tickr;
}

#[path = "it/soak.rs"]
mod soak;
