//! Per-address targets: each round resolves once, probes every address at the same time, and
//! lets an address's series go only after it has been missing for a while.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::Target;
use crate::limits::{ADDRESS_GRACE_ROUNDS, MAX_ADDRESSES};
use crate::metrics::TargetMetrics;
use crate::probe::{self, Failure, Outcome, Pinned, Reason};

use super::{Edge, Pipeline};

/// The addresses of a per-address target, with their series and edge layer.
#[derive(Debug, Default)]
pub struct Addresses {
    known: BTreeMap<IpAddr, Known>,
    /// Blamed for a failed resolution, which has no address to blame.
    edge: Edge,
}

#[derive(Debug)]
struct Known {
    metrics: Arc<TargetMetrics>,
    edge: Edge,
    missed: u32,
}

impl Addresses {
    /// Resolves once, then probes every address at the same time, each holding a slot of
    /// `limit`. A failed resolution is the target's own failure, counted in its own series.
    pub async fn round(
        &mut self,
        target: &Arc<Target>,
        tm: &Arc<TargetMetrics>,
        pipeline: &Arc<Pipeline>,
        limit: &Arc<Semaphore>,
    ) {
        let (addrs, took) = match resolve(target).await {
            Ok(found) => found,
            Err(outcome) => {
                pipeline
                    .record(target, tm, &outcome, &mut self.edge, None)
                    .await;
                return;
            }
        };
        tm.resolved();
        self.probe_all(target, tm, pipeline, limit, &addrs, took)
            .await;
        self.age(tm, pipeline, &addrs);
        tm.touch();
    }

    async fn probe_all(
        &mut self,
        target: &Arc<Target>,
        tm: &Arc<TargetMetrics>,
        pipeline: &Arc<Pipeline>,
        limit: &Arc<Semaphore>,
        addrs: &[SocketAddr],
        took: Duration,
    ) {
        let mut round = tokio::task::JoinSet::new();
        for addr in addrs {
            let known = self.known.entry(addr.ip()).or_insert_with(|| Known {
                metrics: pipeline.metrics.register_address(tm, target, addr.ip()),
                edge: Edge::default(),
                missed: 0,
            });
            known.missed = 0;
            let (target, pipeline, limit, child) = (
                target.clone(),
                pipeline.clone(),
                limit.clone(),
                known.metrics.clone(),
            );
            // Moved into the probe's task and back with its result: a task that panics loses
            // it, and the address starts again as never seen.
            let mut edge = std::mem::take(&mut known.edge);
            let pinned = Pinned {
                addr: *addr,
                resolve: took,
            };
            round.spawn(async move {
                let _permit = limit.acquire().await;
                pipeline
                    .probe(&target, &child, Some(pinned), &mut edge)
                    .await;
                (pinned.addr.ip(), edge)
            });
        }
        while let Some(done) = round.join_next().await {
            if let Ok((ip, edge)) = done {
                if let Some(known) = self.known.get_mut(&ip) {
                    known.edge = edge;
                }
            }
        }
    }

    /// Counts a round missed by every address not resolved this time, and removes the series
    /// of those missing for [`ADDRESS_GRACE_ROUNDS`].
    fn age(&mut self, tm: &TargetMetrics, pipeline: &Pipeline, addrs: &[SocketAddr]) {
        let resolved: HashSet<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
        let mut gone = Vec::new();
        for (ip, known) in &mut self.known {
            if !resolved.contains(ip) {
                known.missed += 1;
                if known.missed >= ADDRESS_GRACE_ROUNDS {
                    gone.push(*ip);
                }
            }
        }
        for ip in gone {
            self.known.remove(&ip);
            pipeline.metrics.remove_address(tm, ip);
        }
    }
}

/// The target's addresses and how long finding them took; or, when that fails, the outcome to
/// record in their place: no probe ran, so only the failure and the time spent resolving.
async fn resolve(target: &Target) -> Result<(Vec<SocketAddr>, Duration), Outcome> {
    let started = std::time::Instant::now();
    let resolved =
        tokio::time::timeout(target.timeout, probe::resolve_target(target, MAX_ADDRESSES))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::new(
                    Reason::Timeout,
                    "no answer from the resolver (stuck in resolve)",
                ))
            });
    resolved.map_err(|failure| {
        let elapsed = started.elapsed();
        let dns = failure.reason == Reason::Dns;
        let mut outcome = Outcome {
            failure: Some(failure),
            ..Outcome::default()
        };
        outcome.phases.total = elapsed;
        if dns {
            outcome.phases.resolve = Some(elapsed);
        }
        outcome
    })
}
