//! tickr: a Prometheus exporter that probes HTTP(S) targets on its own schedule and counts every
//! outcome, so that an intermittent 502 between two scrapes is never lost.
//!
//! # Layout
//!
//! Data flows one way, `config → sources → scheduler → probe → pipeline → (diagnosis, metrics)
//! → server`, one folder a stage. Modules are listed top down, and each uses only those at its
//! level or below (`tests/it/layout.rs` checks it):
//!
//! - [`cli`], [`signals`], [`demo`], [`migrate`]: the edges `main.rs` wires together,
//!   `tickr demo`, and `tickr migrate` (from blackbox_exporter).
//! - [`exporter`]: the lifecycle, [`Exporter::start`] / [`Exporter::run`] / reload; it wires
//!   config → scheduler → server.
//! - [`server`]: the HTTP side: the accept loop and connection limit, routes, the streamed
//!   exposition, the pages, what browsers are told, and [`server::web`] (`--web.config.file`).
//! - [`handle`]: what the server and signals may read and ask of the running exporter.
//! - [`sources`]: target sources at run time (file_sd, http_sd), each refresh merged with the
//!   file's targets into the one list the scheduler runs.
//! - [`scheduler`]: when probes run: one timer for all targets, spread, the global limit, reload diffs.
//! - [`pipeline`]: what follows a probe: attribute, record the event, count, log, confirm.
//! - [`metrics`]: each target's block of series, the table of families, the exposition.
//! - [`diagnosis`]: the failure recorder and its hints; below config, the attribution engine
//!   ([`diagnosis::layer`]) that names the layer (CDN, proxy, application) behind an error.
//! - [`probe`]: one request on a fresh connection, timed per phase, into a [`probe::Outcome`].
//! - [`config`]: the YAML file in two stages, a strict mirror and validated [`config::Target`]s.
//! - Leaves: [`limits`] (every bound), [`time`], [`tls`] (probe-side trust and expiry),
//!   [`redact`] (what is secret, hidden in every form), [`fds`] (the descriptor limit, and the
//!   shortages that are tickr's own), [`logging`].

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
pub mod migrate;
pub mod pipeline;
pub mod probe;
pub mod redact;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod sources;
pub mod time;
pub mod tls;

pub use exporter::Exporter;
pub use handle::Handle;
