//! tickr's test harness: real components as child processes (one module each), the one way a
//! test starts a program of its own ([`launch`]), a scripted TLS test server, tickr in-process,
//! an exposition parser, and the `/proc` readers.
//!
//! A crate of its own, a dev-dependency of tickr, so the integration tests (`tests/it`), the soak
//! (`tests/soak.rs`) and the bench (`benches/figures.rs`) link the same compiled harness instead
//! of each compiling `#[path]` copies of its files under `allow(dead_code)`. It depends on tickr
//! (for in-process runs and its TLS provider): cargo allows that cycle through a dev-dependency.

pub mod alertmanager;
pub mod apache;
pub mod caddy;
pub mod exposition;
pub mod h2o;
pub mod haproxy;
pub mod in_process;
pub mod launch;
pub mod lighttpd;
pub mod nghttpx;
pub mod nginx;
pub mod process;
pub mod procfs;
pub mod prometheus;
pub mod reverse;
pub mod server;
pub mod squid;
pub mod tinyproxy;
pub mod varnish;
pub mod victoria;

pub use alertmanager::Alertmanager;
pub use apache::{Apache, ApacheOptions};
pub use caddy::Caddy;
pub use h2o::H2o;
pub use haproxy::Haproxy;
pub use launch::{Launch, Listening};
pub use lighttpd::Lighttpd;
pub use nghttpx::Nghttpx;
pub use nginx::Nginx;
pub use process::{free_port, get, request, require, Process};
pub use procfs::status_field;
pub use prometheus::{Alert, Prometheus, ScrapeTarget};
pub use reverse::{AccessLine, Route};
pub use squid::Squid;
pub use tinyproxy::Tinyproxy;
pub use varnish::{Varnish, VarnishTimeouts};
pub use victoria::Victoria;
