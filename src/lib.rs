//! tickr: a Prometheus exporter that probes HTTP(S) targets on its own schedule and counts every
//! outcome, so that an intermittent 502 between two scrapes is never lost.
//!
//! # Layout
//!
//! Data flows one way, `config → scheduler → probe → (diagnosis, metrics) → server`. Modules are
//! listed top down; each uses only those at its level or below:
//!
//! - [`cli`], [`logging`], [`signals`]: the edges `main.rs` wires together. [`demo`]: `tickr
//!   demo`, an embedded misbehaving HTTPS gateway and an exporter probing it.
//! - [`exporter`]: the lifecycle, [`Exporter::start`] / [`Exporter::run`] / reload; it wires
//!   config → scheduler → server.
//! - [`server`]: `/metrics`, health, readiness and reload over HTTP; [`pages`] renders the
//!   landing page and `/events`; [`browser`] what the server tells browsers and refuses from
//!   them; [`webconfig`] `--web.config.file`: TLS, client certificates and basic auth.
//! - [`handle`]: what the server, signals and pages may read and ask of the running exporter.
//! - [`scheduler`]: one task per target on its own interval; diff-and-apply on reload.
//! - [`metrics`]: outcomes into counters, histograms and gauges; the OpenMetrics exposition.
//! - [`diagnosis`]: which layer (CDN, load balancer, proxy, application) produced an error, and
//!   the failure recorder (the last failed probes, with their evidence) and its hints.
//! - [`probe`]: one request on a fresh connection, timed per phase, into a [`probe::Outcome`];
//!   [`probe::dns`] bounds the blocking system lookups it needs.
//! - [`config`]: the YAML file in two stages, a strict mirror and validated [`config::Target`]s.
//! - Leaves: [`time`] (Unix time, once), [`tls`] (trust roots, client certificates, expiry),
//!   [`redact`] (what is secret, hidden in every form a server may echo it in), [`fds`] (the
//!   descriptor limit, and the shortages that are tickr's own rather than a target's).

pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnosis;
pub mod exporter;
pub mod fds;
pub mod handle;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod probe;
pub mod redact;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod time;
pub mod tls;

pub use exporter::Exporter;
pub use handle::Handle;
