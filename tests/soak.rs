//! The load tests of `tests/it/soak.rs`, in a test binary of their own: cargo runs test binaries
//! one after another, so thousands of probes a second do not slow the timing-sensitive tests of
//! `tests/it` running beside them (nor they the soak's figures).
//!
//! `cargo test --test soak -- --nocapture` shows the samples; `TICKR_SOAK_SECS` and
//! `TICKR_SOAK_TARGETS` lengthen and widen the soak.

/// The shared harness of `tests/it`, of which these tests use only a part.
#[path = "it/common"]
mod common {
    #![allow(dead_code)]
    pub mod exposition;
    pub mod procs;
    pub mod server;
    pub mod tickr;
}

#[path = "it/soak.rs"]
mod soak;
