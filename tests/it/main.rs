//! tickr's integration tests, in one binary so the suite links once.
//!
//! Everything runs on 127.0.0.1 with ports the OS picks; servers a test starts, it stops.

mod common;

mod addresses;
mod browser;
mod checks;
mod clients;
mod config_errors;
mod cut;
mod dashboards;
mod demo;
mod diagnosis;
mod dns;
mod e2e;
mod exposition;
mod fleet;
mod harness;
mod hostile;
mod layers;
mod layout;
mod locations;
mod migrate;
mod probe_endpoint;
mod probes;
mod prometheus;
mod properties;
mod proxy;
mod reload;
mod request_ids;
mod reverse_proxies;
mod secret_files;
mod secrets;
mod sources;
mod tls_facts;
mod web_security;
mod webconfig;
