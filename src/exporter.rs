//! The exporter's lifecycle: [`Exporter::start`] loads the targets into the scheduler,
//! [`Exporter::run`] serves a bound listener and answers reloads and target sources' refreshes
//! until a shutdown future completes, then drains. It wires config → sources → scheduler →
//! server, and owns the [`Handle`]'s state.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, Config};
use crate::diagnosis::events::Recorder;
use crate::handle::{Adopt, Handle, Placement, ReloadReply};
use crate::metrics::Metrics;
use crate::scheduler::{Applied, Scheduler};
use crate::server;
use crate::sources::{Catalog, Refresh, Watchers};
use crate::time::unix_now;

/// The exporter: a scheduler probing the configured targets, and the state its server shows.
#[derive(Debug)]
pub struct Exporter {
    handle: Handle,
    scheduler: Scheduler,
    config: Config,
    reloads: mpsc::Receiver<ReloadReply>,
    /// The file's targets and every source's, merged.
    catalog: Catalog,
    watchers: Watchers,
    refreshes: mpsc::Receiver<Refresh>,
    adoptions: mpsc::Receiver<Adopt>,
}

/// How often adopted targets are checked for having been forgotten.
const SWEEP: std::time::Duration = std::time::Duration::from_millis(250);

impl Exporter {
    /// Starts probing every target of `config`. Must run inside a Tokio runtime.
    pub async fn start(config: Config) -> Self {
        let metrics = Arc::new(Metrics::of_shard(&config.flags.shard));
        let recorder = Arc::new(Recorder::new(config.diagnosis.events));
        let (handle, reloads, adoptions) = Handle::new(metrics.clone(), recorder.clone());
        let scheduler = Scheduler::new(metrics.clone(), recorder, &config.diagnosis);
        let catalog = Catalog::new(&config);
        let (mut watchers, refreshes) = Watchers::new();
        watchers.apply(&config.sources);
        let mut exporter = Self {
            handle,
            scheduler,
            config,
            reloads,
            catalog,
            watchers,
            refreshes,
            adoptions,
        };
        exporter.place();
        let applied = exporter.apply().await;
        let shard = exporter.config.flags.shard;
        tracing::info!(
            targets = applied.added,
            sources = exporter.config.sources.len(),
            file = %exporter.config.path.display(),
            location = exporter.config.location.as_deref(),
            shard = (shard.count() > 1).then(|| shard.to_string()),
            "configuration loaded"
        );
        metrics.reload_successful.set(1);
        metrics.reload_timestamp.set(unix_now());
        exporter.handle.set_ready(true);
        exporter
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Shows where this tickr probes from and its shard, as the configuration says.
    fn place(&self) {
        self.handle.set_placement(Placement {
            location: self.config.location.clone(),
            shard: self.config.flags.shard,
        });
    }

    /// Runs the catalog's targets, shows them through the handle, and updates the sources'
    /// self-metrics.
    async fn apply(&mut self) -> Applied {
        let targets = self.catalog.targets();
        let applied = self.scheduler.apply(&self.config, &targets).await;
        self.handle.publish(self.scheduler.targets());
        let sources = &self.handle.metrics.sources;
        for report in self.catalog.reports() {
            sources.add(&report.source);
            sources.set_counts(
                &report.source,
                report.targets,
                report.invalid,
                report.clashes,
            );
        }
        match self.catalog.adopted_report() {
            Some((source, running)) => sources.set_targets(source, running),
            None => sources.remove(crate::config::ADOPTED_SOURCE),
        }
        applied
    }

    /// Answers `/probe`'s request to adopt a URL: allowed only by the module's
    /// `probe_endpoint.adopt`; a new target's first probe runs at once.
    async fn adopt(&mut self, request: Adopt) {
        let Adopt { module, url, reply } = request;
        let answer = match self.config.adoption.get(&module) {
            None => Err(format!("module {module:?} lets /probe adopt no target")),
            Some(rule) if !rule.allows(&url) => Err(format!(
                "module {module:?} does not let /probe adopt {}",
                self.config.templates.shown_url(&url)
            )),
            Some(rule) => self.catalog.adopt(&module, &url, rule.forget_after),
        };
        let answer = match answer {
            Ok((name, true)) => {
                self.scheduler.at_once(&name);
                self.apply().await;
                tracing::info!(target = %name, module = %module, "target adopted through /probe");
                Ok(name)
            }
            Ok((name, false)) => Ok(name),
            Err(e) => Err(e),
        };
        let _ = reply.send(answer);
    }

    /// Drops the adopted targets nobody asked for within their module's `forget_after`.
    async fn sweep(&mut self) {
        let handle = self.handle.clone();
        let gone = self
            .catalog
            .expire(|name| handle.last_asked(name), std::time::Instant::now());
        if gone.is_empty() {
            return;
        }
        self.apply().await;
        let running = self.scheduler.targets();
        handle.forget_asked(|name| running.iter().any(|(t, _)| t.name == name));
        for name in gone {
            tracing::info!(target = %name, "adopted target dropped: /probe has not asked for it");
        }
    }

    /// Takes one refresh of a target source: on success its targets are diffed in like a
    /// reload's; on failure its previous targets stay, and one line says why.
    async fn refresh(&mut self, refresh: Refresh) {
        let Refresh { source, result } = refresh;
        let counted = result.as_ref().map_or(0, Vec::len);
        match self.catalog.refresh(&source, result) {
            Ok(changed) => {
                self.handle.metrics.sources.refreshed(&source, true);
                if changed {
                    let applied = self.apply().await;
                    tracing::info!(
                        source = %source,
                        entries = counted,
                        added = applied.added,
                        removed = applied.removed,
                        changed = applied.changed,
                        unchanged = applied.unchanged,
                        "target source refreshed"
                    );
                    let clashes = self
                        .catalog
                        .reports()
                        .into_iter()
                        .find(|r| r.source == source);
                    if let Some(r) = clashes.filter(|r| r.clashes > 0) {
                        tracing::warn!(source = %source, clashes = r.clashes, "target source lists names that the file or an earlier source has already; those entries run no target");
                    }
                    if let Some(invalid) = self.catalog.first_invalid(&source) {
                        tracing::warn!(source = %source, first = %invalid, "target source lists entries that are no valid target; they are left out");
                    }
                }
            }
            Err(error) => {
                self.handle.metrics.sources.refreshed(&source, false);
                tracing::warn!(source = %source, error = %error, "target source refresh failed; its previous targets stay");
            }
        }
    }

    async fn reload(&mut self) -> Result<(), String> {
        let metrics = self.handle.metrics.clone();
        // Parsing and validating a large file takes a while (about a second for 100,000
        // targets); on a runtime worker, it would hold up the probes scheduled there.
        let path = self.config.path.clone();
        let flags = self.config.flags.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load_with(&path, &flags))
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
                for gone in self
                    .config
                    .sources
                    .iter()
                    .filter(|old| !config.sources.iter().any(|new| new.name == old.name))
                {
                    metrics.sources.remove(&gone.name);
                }
                self.catalog.reconfigure(&config);
                self.watchers.apply(&config.sources);
                self.config = config;
                self.place();
                let applied = self.apply().await;
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
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(reply) = self.reloads.recv() => {
                    let _ = reply.send(self.reload().await);
                }
                Some(refresh) = self.refreshes.recv() => self.refresh(refresh).await,
                Some(request) = self.adoptions.recv() => self.adopt(request).await,
                _ = sweep.tick() => self.sweep().await,
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down");
        self.handle.set_ready(false);
        let _ = stop_server.send(());
        self.watchers.stop_all();
        self.scheduler.stop_all().await;
        let _ = server.await;
    }
}
