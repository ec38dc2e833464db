//! The process starters (one module per component in `tickr-harness`), gathered under the one
//! path the tests import them from.

pub use tickr_harness::process::{free_port, get, request, require, Process};
pub use tickr_harness::procfs::status_field;
pub use tickr_harness::{Alertmanager, Caddy, Haproxy, Nginx, Prometheus};
