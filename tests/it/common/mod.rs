//! The test harness shared by every integration test, from the `tickr-harness` crate
//! (`tests/harness/`, also used by the soak and the bench), under the paths the tests import:
//! a TLS test server with generated certificates, tickr in-process, external processes (nginx,
//! Prometheus, Alertmanager, HAProxy, Caddy) in temp dirs, and an exposition parser.

pub mod procs;

pub use tickr_harness::in_process as tickr;
pub use tickr_harness::{exposition, server};
