//! The handle shared with the server, the signal handlers and the pages: what they may read of
//! the running exporter (readiness, targets, metrics, recorded events) and ask of it (a reload).
//! The exporter writes the state behind it; everyone else only reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::config::Target;
use crate::diagnosis::events::Recorder;
use crate::metrics::{Metrics, TargetMetrics};

/// How a reload request is answered: the error message of a rejected configuration.
pub(crate) type ReloadReply = oneshot::Sender<Result<(), String>>;

/// A cheap, cloneable view of a running exporter: what the HTTP handlers and signal handlers use.
#[derive(Clone, Debug)]
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<Recorder>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ready: AtomicBool,
    targets: RwLock<Vec<(Arc<Target>, Arc<TargetMetrics>)>>,
    reloads: mpsc::Sender<ReloadReply>,
}

impl Handle {
    /// A handle that is not ready and shows no targets, and the receiving end of its reload
    /// requests, for the exporter to answer.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        recorder: Arc<Recorder>,
    ) -> (Self, mpsc::Receiver<ReloadReply>) {
        let (tx, reloads) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            ready: AtomicBool::new(false),
            targets: RwLock::default(),
            reloads: tx,
        });
        let handle = Self {
            metrics,
            recorder,
            shared,
        };
        (handle, reloads)
    }

    /// True once the configuration is loaded and the scheduler runs.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
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
