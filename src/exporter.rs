//! The exporter's lifecycle: [`Exporter::start`] loads the targets into the scheduler,
//! [`Exporter::run`] serves a bound listener and answers reloads until a shutdown future
//! completes, then drains. It wires config → scheduler → server, and owns the [`Handle`]'s state.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, Config};
use crate::diagnosis::events::Recorder;
use crate::handle::{Handle, ReloadReply};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::server;
use crate::time::unix_now;

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
        let recorder = Arc::new(Recorder::new(config.diagnosis.events));
        let (handle, reloads) = Handle::new(metrics.clone(), recorder.clone());
        let mut scheduler = Scheduler::new(metrics.clone(), recorder, &config.diagnosis);
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
        exporter.handle.set_ready(true);
        exporter
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Shows the scheduler's targets through the handle.
    fn publish(&self) {
        self.handle.publish(self.scheduler.targets());
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
        self.handle.set_ready(false);
        let _ = stop_server.send(());
        self.scheduler.stop_all().await;
        let _ = server.await;
    }
}
