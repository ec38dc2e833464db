//! The test harness shared by every integration test (and by the issues that build on this one):
//! a TLS test server with generated certificates, tickr in-process, external processes (nginx,
//! Prometheus, Alertmanager) in temp dirs, and an exposition parser.
// Each test module uses a different part of the harness.
#![allow(dead_code)]

pub mod exposition;
pub mod procs;
pub mod server;
pub mod tickr;
