//! tickr: a Prometheus exporter that probes HTTP(S) targets on its own schedule and counts every
//! outcome, so that an intermittent 502 between two scrapes is never lost.
//!
//! # Layout
//!
//! Data flows one way, `config → scheduler → probe → (layer, events, metrics) → server`:
//!
//! - [`config`]: the YAML file in two stages, a strict mirror and validated [`config::Target`]s.
//! - [`tls`]: trust roots, client certificates, and a verifier that records certificate expiry.
//! - [`scheduler`]: one task per target on its own interval; diff-and-apply on reload.
//! - [`probe`]: one request on a fresh connection, timed per phase, into an [`probe::Outcome`];
//!   [`dns`] bounds the blocking system lookups it needs.
//! - [`metrics`]: outcomes into counters, histograms and gauges; the OpenMetrics exposition.
//! - [`layer`]: which layer (CDN, load balancer, proxy, application) generated an error.
//! - [`events`]: the failure recorder (the last failed probes, with their evidence) and hints;
//!   [`redact`] says what is secret (header values, secret-looking query parameters) and hides
//!   it in every form a server may echo it in, and in every URL tickr shows.
//! - [`server`]: `/metrics`, health, readiness and reload over HTTP; [`pages`] renders the
//!   landing page and `/events`.
//! - [`browser`]: what the server tells browsers and refuses from them: security headers, no
//!   reload sent by a web page, JSON without markup.
//! - [`webconfig`]: `--web.config.file` (exporter-toolkit format): TLS, client certificates and
//!   bcrypt basic auth for every endpoint.
//! - [`cli`], [`logging`], [`signals`]: the edges `main.rs` wires together; [`fds`] the
//!   descriptor limit, and the shortages that are tickr's own rather than a target's.
//! - [`demo`]: `tickr demo`, an embedded misbehaving HTTPS gateway and an exporter probing it.
//!
//! [`Exporter`] ties them together: [`Exporter::start`] begins probing, [`Exporter::run`] serves
//! a bound listener until a shutdown future completes, and a [`Handle`] reloads from anywhere.

pub mod browser;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dns;
pub mod events;
pub mod fds;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod pages;
pub mod probe;
pub mod redact;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod slots;
pub mod tls;
pub mod webconfig;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use config::{Config, Target};
use metrics::{Metrics, TargetMetrics};
use scheduler::Scheduler;

type ReloadReply = oneshot::Sender<Result<(), String>>;

/// A cheap, cloneable view of a running exporter: what the HTTP handlers and signal handlers use.
#[derive(Clone, Debug)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<events::Recorder>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ready: AtomicBool,
    targets: RwLock<Vec<(Arc<Target>, Arc<TargetMetrics>)>>,
    reloads: mpsc::Sender<ReloadReply>,
}

impl Handle {
    /// True once the configuration is loaded and the scheduler runs.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    /// The running targets with their series, sorted by name.
    pub fn targets(&self) -> Vec<(Arc<Target>, Arc<TargetMetrics>)> {
        self.shared
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the configuration file and applies it; on error the running one stays.
    pub async fn reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .reloads
            .send(tx)
            .await
            .map_err(|_| "tickr is shutting down".to_owned())?;
        rx.await.map_err(|_| "tickr is shutting down".to_owned())?
    }
}

/// The exporter: a scheduler probing the configured targets, and the state its server shows.
#[derive(Debug)]
pub struct Exporter {
    handle: Handle,
    scheduler: Scheduler,
    config: Config,
    reloads: mpsc::Receiver<ReloadReply>,
}

impl Exporter {
    /// Starts probing every target of `config`. Must run inside a Tokio runtime.
    pub async fn start(config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let (tx, reloads) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            ready: AtomicBool::new(false),
            targets: RwLock::default(),
            reloads: tx,
        });
        let recorder = Arc::new(events::Recorder::new(config.diagnosis.events));
        let handle = Handle {
            metrics: metrics.clone(),
            recorder: recorder.clone(),
            shared,
        };
        let mut scheduler = Scheduler::new(metrics.clone(), recorder.clone(), &config.diagnosis);
        let applied = scheduler.apply(&config).await;
        tracing::info!(targets = applied.added, file = %config.path.display(), "configuration loaded");
        let exporter = Self {
            handle,
            scheduler,
            config,
            reloads,
        };
        exporter.publish();
        metrics.reload_successful.set(1);
        metrics.reload_timestamp.set(unix_now());
        exporter.handle.shared.ready.store(true, Ordering::Relaxed);
        exporter
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    fn publish(&self) {
        *self
            .handle
            .shared
            .targets
            .write()
            .unwrap_or_else(|e| e.into_inner()) = self.scheduler.targets();
    }

    async fn reload(&mut self) -> Result<(), String> {
        let metrics = &self.handle.metrics;
        // Parsing and validating a large file takes a while (about a second for 100,000
        // targets); on a runtime worker, it would hold up the probes scheduled there.
        let path = self.config.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(config::ConfigError {
                    file: self.config.path.clone(),
                    position: None,
                    message: format!("loading the configuration failed: {e}"),
                })
            });
        match loaded {
            Ok(config) => {
                let applied = self.scheduler.apply(&config).await;
                self.config = config;
                self.publish();
                metrics.reload_successful.set(1);
                metrics.reload_timestamp.set(unix_now());
                tracing::info!(
                    added = applied.added,
                    removed = applied.removed,
                    changed = applied.changed,
                    unchanged = applied.unchanged,
                    "configuration reloaded"
                );
                Ok(())
            }
            Err(e) => {
                metrics.reload_successful.set(0);
                tracing::error!(error = %e, "configuration rejected; the previous one keeps running");
                Err(e.to_string())
            }
        }
    }

    /// Serves `listener` (a `TcpListener`, or a [`server::Listener`] carrying a web
    /// configuration) and handles reloads until `shutdown` completes; then stops accepting,
    /// drains HTTP connections under a grace period and cancels in-flight probes.
    pub async fn run(
        mut self,
        listener: impl Into<server::Listener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener.into(), self.handle.clone(), async {
            let _ = server_stopped.await;
        }));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some(reply) = self.reloads.recv() => {
                    let _ = reply.send(self.reload().await);
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down");
        self.handle.shared.ready.store(false, Ordering::Relaxed);
        let _ = stop_server.send(());
        self.scheduler.stop_all().await;
        let _ = server.await;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
