//! When probes run: one task per target on its own interval, independently of scrapes, waiting
//! for a slot in the global probe limit and handing the probe to the [`pipeline`](crate::pipeline);
//! diff-and-apply on reload.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, Diagnosis, Target};
use crate::diagnosis::events::Recorder;
use crate::metrics::{Metrics, TargetMetrics};
use crate::pipeline::{Addresses, Edge, Pipeline};

/// A running target: its configuration, its series and its task.
#[derive(Debug)]
pub struct Running {
    pub target: Arc<Target>,
    pub metrics: Arc<TargetMetrics>,
    task: JoinHandle<()>,
}

/// What [`Scheduler::apply`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// Owns the probe tasks; [`apply`](Scheduler::apply) diffs a new configuration against them.
#[derive(Debug)]
pub struct Scheduler {
    ctx: Arc<Context>,
    limit_size: usize,
    running: HashMap<String, Running>,
    /// Targets whose first probe runs as soon as they start, not at their spread-out slot.
    at_once: std::collections::HashSet<String>,
}

/// What every probe task shares: the pipeline its outcomes go through, and the global limit.
#[derive(Debug)]
struct Context {
    pipeline: Arc<Pipeline>,
    limit: Arc<Semaphore>,
}

impl Scheduler {
    pub fn new(metrics: Arc<Metrics>, recorder: Arc<Recorder>, diagnosis: &Diagnosis) -> Self {
        let ctx = Context {
            pipeline: Arc::new(Pipeline::new(metrics, recorder, diagnosis)),
            limit: Arc::new(Semaphore::new(0)),
        };
        Self {
            ctx: Arc::new(ctx),
            limit_size: 0,
            running: HashMap::new(),
            at_once: Default::default(),
        }
    }

    /// Makes the running set `targets` (the file's and the sources'), under `config`'s probe
    /// limit and diagnosis. Unchanged targets keep their task, schedule and counters; removed
    /// ones stop and lose their series; changed ones restart from zero.
    pub async fn apply(&mut self, config: &Config, targets: &[Arc<Target>]) -> Applied {
        self.resize_limit(config.max_concurrent_probes);
        self.ctx.pipeline.reconfigure(&config.diagnosis);
        let mut applied = Applied::default();
        let mut keep = HashMap::with_capacity(targets.len());
        for target in targets {
            match self.running.remove(&target.name) {
                // The same Arc first: a refresh or an adoption re-applies thousands of targets
                // that the catalog kept as they were, and comparing each whole is the cost.
                Some(old) if Arc::ptr_eq(&old.target, target) || old.target == *target => {
                    applied.unchanged += 1;
                    keep.insert(target.name.clone(), old);
                }
                previous => {
                    if let Some(old) = previous {
                        applied.changed += 1;
                        stop(old).await;
                    } else {
                        applied.added += 1;
                    }
                    let now = self.at_once.remove(&target.name);
                    keep.insert(target.name.clone(), self.start(target.clone(), now));
                }
            }
        }
        let removed: Vec<_> = self.running.drain().collect();
        abort_all(removed.iter().map(|(_, old)| old));
        for (name, old) in removed {
            applied.removed += 1;
            stop(old).await;
            self.ctx.pipeline.forget(&name);
        }
        self.running = keep;
        self.ctx
            .pipeline
            .metrics()
            .targets
            .set(self.running.len() as i64);
        applied
    }

    /// Makes the next start of the target `name` probe at once (a target `/probe` adopted,
    /// whose first answer waits for it), its later slots following from there.
    pub fn at_once(&mut self, name: &str) {
        self.at_once.insert(name.to_owned());
    }

    /// The running targets, sorted by name.
    pub fn targets(&self) -> Vec<(Arc<Target>, Arc<TargetMetrics>)> {
        let mut all: Vec<_> = self
            .running
            .values()
            .map(|r| (r.target.clone(), r.metrics.clone()))
            .collect();
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        all
    }

    /// Stops every probe task (in-flight probes are cancelled).
    pub async fn stop_all(&mut self) {
        let all: Vec<_> = self.running.drain().map(|(_, old)| old).collect();
        abort_all(&all);
        for old in all {
            stop(old).await;
        }
    }

    fn resize_limit(&mut self, size: usize) {
        if size > self.limit_size {
            self.ctx.limit.add_permits(size - self.limit_size);
        } else if size < self.limit_size {
            // Shrinks as probes finish: forgetting permits held by running probes is not possible.
            let fewer = self.ctx.limit.forget_permits(self.limit_size - size);
            let rest = self.limit_size - size - fewer;
            if rest > 0 {
                let limit = self.ctx.limit.clone();
                tokio::spawn(async move {
                    if let Ok(p) = limit.acquire_many(rest as u32).await {
                        p.forget();
                    }
                });
            }
        }
        self.limit_size = size;
    }

    fn start(&self, target: Arc<Target>, at_once: bool) -> Running {
        let metrics = self.ctx.pipeline.metrics().register_target(&target);
        let fut = run_target(target.clone(), metrics.clone(), self.ctx.clone(), at_once);
        let task = tokio::spawn(fut);
        Running {
            target,
            metrics,
            task,
        }
    }
}

/// Cancels every task before waiting for any: the runtime then drops them all in one pass,
/// where aborting and awaiting one at a time costs a trip through the scheduler per target
/// (seconds, for thousands of targets on a busy machine, while the reload or shutdown waits).
fn abort_all<'a>(all: impl IntoIterator<Item = &'a Running>) {
    for old in all {
        old.task.abort();
    }
}

/// Stops a target's task (in-flight probe included) and then removes its series, in that
/// order: a probe finishing in between would otherwise create them again.
async fn stop(old: Running) {
    old.task.abort();
    let _ = old.task.await;
    old.metrics.remove();
}

/// Where in its interval a target's slots fall: a stable hash of its name, so first slots
/// spread across the interval (as Prometheus spreads scrapes), ten thousand targets do not fire
/// in the same second, and a restarted tickr keeps the same phases.
pub fn offset(name: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h.finish()) % nanos) as u64)
}

/// The first slot at or after `now` for a schedule anchored at `anchor`: slots missed because a
/// probe or the limit ran late are skipped, never bunched.
pub fn next_slot(anchor: Instant, interval: Duration, now: Instant) -> Instant {
    if now <= anchor {
        return anchor;
    }
    let behind = now - anchor;
    let periods = behind.as_nanos().div_ceil(interval.as_nanos().max(1));
    anchor + interval * u32::try_from(periods).unwrap_or(u32::MAX)
}

/// Sleeps until each slot, waits for the limit, probes: one probe at a time, so a target never
/// has two in flight.
async fn run_target(target: Arc<Target>, tm: Arc<TargetMetrics>, ctx: Arc<Context>, at_once: bool) {
    let spread = if at_once {
        Duration::ZERO
    } else {
        offset(&target.name, target.interval)
    };
    let anchor = Instant::now() + spread;
    let mut slot = anchor;
    let mut edge = Edge::default();
    // Only a per-address target has a round's state to keep between probes.
    let mut addresses = target.per_address.then(Box::<Addresses>::default);
    loop {
        tokio::time::sleep_until(slot).await;
        let Ok(permit) = ctx.limit.acquire().await else {
            return;
        };
        ctx.pipeline
            .metrics()
            .scheduler_lag
            .observe(Instant::now().saturating_duration_since(slot).as_secs_f64());
        // Boxed: a probe's state (TLS, HTTP, buffers) is about 12 KB, and inline it would make
        // every idle target's task that large, all the time, instead of only while it probes.
        if let Some(addresses) = addresses.as_mut() {
            // Each address takes a slot of its own for its probe.
            drop(permit);
            Box::pin(addresses.round(&target, &tm, &ctx.pipeline, &ctx.limit)).await;
        } else {
            Box::pin(ctx.pipeline.probe(&target, &tm, None, &mut edge)).await;
            drop(permit);
        }
        slot = next_slot(
            anchor,
            target.interval,
            (slot + target.interval).max(Instant::now()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_within_the_interval_and_spread() {
        let interval = Duration::from_secs(60);
        let mut seconds = std::collections::HashSet::new();
        for i in 0..1000 {
            let o = offset(&format!("target-{i}"), interval);
            assert!(o < interval);
            seconds.insert(o.as_secs());
        }
        // 1000 names over 60 one-second buckets: every second is used.
        assert_eq!(seconds.len(), 60);
    }

    #[test]
    fn missed_slots_are_skipped_not_bunched() {
        let anchor = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(next_slot(anchor, i, anchor), anchor);
        assert_eq!(
            next_slot(anchor, i, anchor + Duration::from_secs(10)),
            anchor + i
        );
        assert_eq!(
            next_slot(anchor, i, anchor + Duration::from_secs(35)),
            anchor + i * 4
        );
    }
}
