//! The handle shared with the server, the signal handlers and the pages: what they may read of
//! the running exporter (readiness, targets, metrics, recorded events) and ask of it (a reload,
//! the adoption of a target by `/probe`). The exporter writes the state behind it; everyone else
//! only reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::config::{Shard, Target};
use crate::diagnosis::events::Recorder;
use crate::metrics::{Metrics, TargetMetrics};

/// How a reload request is answered: the error message of a rejected configuration.
pub(crate) type ReloadReply = oneshot::Sender<Result<(), String>>;

/// A request from `/probe` to adopt `url` with `module`'s settings. Answered with the target's
/// name, or why it may not be adopted (one line).
#[derive(Debug)]
pub(crate) struct Adopt {
    pub module: String,
    pub url: String,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// A cheap, cloneable view of a running exporter: what the HTTP handlers and signal handlers use.
#[derive(Clone, Debug)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<Recorder>,
    shared: Arc<Shared>,
}

/// Where this tickr stands in a fleet: the place it probes from and its shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub location: Option<String>,
    pub shard: Shard,
}

#[derive(Debug)]
struct Shared {
    ready: AtomicBool,
    placement: RwLock<Placement>,
    targets: RwLock<Vec<(Arc<Target>, Arc<TargetMetrics>)>>,
    reloads: mpsc::Sender<ReloadReply>,
    adoptions: mpsc::Sender<Adopt>,
    /// When `/probe` last asked for each target, by name: adopted targets are kept while asked
    /// for.
    asked: Mutex<HashMap<String, Instant>>,
}

impl Handle {
    /// A handle that is not ready and shows no targets, and the receiving end of its reload
    /// requests, for the exporter to answer.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        recorder: Arc<Recorder>,
    ) -> (Self, mpsc::Receiver<ReloadReply>, mpsc::Receiver<Adopt>) {
        let (tx, reloads) = mpsc::channel(8);
        let (adopt_tx, adoptions) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            ready: AtomicBool::new(false),
            placement: RwLock::default(),
            targets: RwLock::default(),
            reloads: tx,
            adoptions: adopt_tx,
            asked: Mutex::default(),
        });
        let handle = Self {
            metrics,
            recorder,
            shared,
        };
        (handle, reloads, adoptions)
    }

    /// True once the configuration is loaded and the scheduler runs.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
    }

    /// Where this tickr probes from, and which shard it is.
    pub fn placement(&self) -> Placement {
        self.shared
            .placement
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_placement(&self, placement: Placement) {
        *self
            .shared
            .placement
            .write()
            .unwrap_or_else(|e| e.into_inner()) = placement;
    }

    /// The running targets with their series, sorted by name.
    pub fn targets(&self) -> Vec<(Arc<Target>, Arc<TargetMetrics>)> {
        self.shared
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the targets shown, after the scheduler applied a configuration.
    pub(crate) fn publish(&self, targets: Vec<(Arc<Target>, Arc<TargetMetrics>)>) {
        *self
            .shared
            .targets
            .write()
            .unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// Asks the exporter to adopt `url` with `module`'s settings (its `probe_endpoint.adopt`
    /// decides); the adopted target's name, or why not.
    pub async fn adopt(&self, module: &str, url: &str) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        let request = Adopt {
            module: module.to_owned(),
            url: url.to_owned(),
            reply,
        };
        let gone = || "tickr is shutting down".to_owned();
        self.shared
            .adoptions
            .send(request)
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Notes that `/probe` asked for the target `name` now.
    pub fn asked(&self, name: &str) {
        let mut asked = self.shared.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.insert(name.to_owned(), Instant::now());
    }

    /// When `/probe` last asked for `name`, forgetting names no longer running.
    pub(crate) fn last_asked(&self, name: &str) -> Option<Instant> {
        let asked = self.shared.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.get(name).copied()
    }

    /// Forgets when `/probe` asked for names that are not in `keep`.
    pub(crate) fn forget_asked(&self, keep: impl Fn(&str) -> bool) {
        let mut asked = self.shared.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.retain(|name, _| keep(name));
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
