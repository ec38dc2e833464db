//! Target sources at run time: [`Watchers`] runs one task per configured source, which watches
//! its files (`files`) or fetches its inventory (`http`) and reports every refresh; the
//! [`Catalog`] keeps each source's last good entries and merges them with the listed targets
//! into the one list the scheduler runs, diffed like a reload.

mod catalog;
pub mod files;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Discovered, Source, SourceKind, Target};

pub use catalog::{Catalog, Report};

/// One refresh of one source: its entries, or why there are none this time.
#[derive(Debug)]
pub struct Refresh {
    pub source: String,
    pub result: Result<Vec<Discovered>, String>,
}

/// A target group, as Prometheus' file and HTTP service discovery write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Each group's targets, with the group's labels.
fn entries(groups: Vec<Group>) -> impl Iterator<Item = Discovered> {
    groups.into_iter().flat_map(|g| {
        let labels = g.labels;
        g.targets.into_iter().map(move |address| Discovered {
            address,
            labels: labels.clone(),
        })
    })
}

/// The running source tasks, by source name.
#[derive(Debug)]
pub struct Watchers {
    running: HashMap<String, (Source, JoinHandle<()>)>,
    tx: mpsc::Sender<Refresh>,
}

impl Watchers {
    /// No tasks yet, and the receiving end of their refreshes.
    pub fn new() -> (Self, mpsc::Receiver<Refresh>) {
        let (tx, rx) = mpsc::channel(64);
        let watchers = Self {
            running: HashMap::new(),
            tx,
        };
        (watchers, rx)
    }

    /// Runs a task for each of `sources`: an unchanged source keeps its task (and so its
    /// files' fingerprint or its fetch schedule); a changed one starts over; a removed one
    /// stops.
    pub fn apply(&mut self, sources: &[Source]) {
        let mut keep = HashMap::with_capacity(sources.len());
        for source in sources {
            match self.running.remove(&source.name) {
                Some((old, task)) if old == *source => {
                    keep.insert(source.name.clone(), (old, task));
                }
                previous => {
                    if let Some((_, task)) = previous {
                        task.abort();
                    }
                    let task = tokio::spawn(watch(source.clone(), self.tx.clone()));
                    keep.insert(source.name.clone(), (source.clone(), task));
                }
            }
        }
        for (_, (_, task)) in self.running.drain() {
            task.abort();
        }
        self.running = keep;
    }

    /// Stops every task.
    pub fn stop_all(&mut self) {
        self.apply(&[]);
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One source's task: refreshes at once, then every `refresh`, until aborted.
async fn watch(source: Source, tx: mpsc::Sender<Refresh>) {
    match source.kind {
        SourceKind::Files { patterns, refresh } => {
            watch_files(source.name, patterns, refresh, tx).await
        }
        SourceKind::Http { endpoint, refresh } => {
            watch_http(source.name, endpoint, refresh, tx).await
        }
    }
}

/// Checks the files every `refresh`; reads them when their fingerprint changed (and at the
/// start). A failure is reported once, and tried again when the files change.
async fn watch_files(
    name: String,
    patterns: Vec<std::path::PathBuf>,
    refresh: Duration,
    tx: mpsc::Sender<Refresh>,
) {
    let mut last: Option<Result<files::Fingerprint, String>> = None;
    loop {
        let (patterns, previous) = (patterns.clone(), last.clone());
        // Listing, stat and parsing are blocking file-system work: off the probes' threads.
        let checked = tokio::task::spawn_blocking(move || {
            let seen = files::check(&patterns);
            if previous.as_ref() == Some(&seen) {
                return (seen, None);
            }
            let result = match &seen {
                Ok(fingerprint) => files::read(fingerprint),
                Err(e) => Err(e.clone()),
            };
            (seen, Some(result))
        });
        let Ok((seen, result)) = checked.await else {
            return;
        };
        if let Some(result) = result {
            let refresh = Refresh {
                source: name.clone(),
                result,
            };
            if tx.send(refresh).await.is_err() {
                return;
            }
            last = Some(seen);
        }
        tokio::time::sleep(refresh).await;
    }
}

/// Fetches the inventory at once, then every `refresh`.
async fn watch_http(
    name: String,
    endpoint: Arc<Target>,
    refresh: Duration,
    tx: mpsc::Sender<Refresh>,
) {
    let mut next = tokio::time::Instant::now();
    loop {
        let result = http::fetch(&endpoint).await;
        if tx
            .send(Refresh {
                source: name.clone(),
                result,
            })
            .await
            .is_err()
        {
            return;
        }
        next += refresh;
        tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
    }
}
