//! When probes run: every target on its own interval, independently of scrapes, from one timer
//! that starts each due probe as a task of its own, waiting for a slot in the global probe limit
//! and handing the probe to the [`pipeline`](crate::pipeline); diff-and-apply on reload.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, Diagnosis, Target};
use crate::diagnosis::events::Recorder;
use crate::metrics::{Metrics, TargetMetrics};
use crate::pipeline::{Addresses, Edge, Pipeline};

/// A running target: its configuration, its series and its place in the timer.
#[derive(Debug)]
pub struct Running {
    pub target: Arc<Target>,
    pub metrics: Arc<TargetMetrics>,
    key: u64,
}

/// What [`Scheduler::apply`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// Owns the targets' schedules; [`apply`](Scheduler::apply) diffs a new configuration against
/// them.
#[derive(Debug)]
pub struct Scheduler {
    ctx: Arc<Context>,
    limit_size: usize,
    running: HashMap<String, Running>,
    /// Targets whose first probe runs as soon as they start, not at their spread-out slot.
    at_once: HashSet<String>,
    /// Fires the due probes; stops with the scheduler.
    driver: JoinHandle<()>,
}

/// What every probe shares: the pipeline its outcomes go through, the global limit, and the
/// timer.
#[derive(Debug)]
struct Context {
    pipeline: Arc<Pipeline>,
    limit: Arc<Semaphore>,
    timer: Timer,
}

/// Every target's next slot, in one heap that one task waits on. A task per target, asleep
/// between its probes, cost about 400 bytes each (100,000 targets: 40 MB) and a timer entry
/// apiece; here an idle target is a heap entry and a [`Slot`], and a task exists only while its
/// probe runs.
#[derive(Debug, Default)]
struct Timer {
    state: Mutex<Slots>,
    /// Wakes the driver when a slot earlier than the one it sleeps until is added.
    wake: Notify,
}

#[derive(Debug, Default)]
struct Slots {
    /// `(due, key)`, earliest first. Entries of removed targets stay until they come due and
    /// are skipped then: at most one per target that ran in the last interval.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    slots: HashMap<u64, Slot>,
    next_key: u64,
}

#[derive(Debug)]
struct Slot {
    target: Arc<Target>,
    metrics: Arc<TargetMetrics>,
    /// Where the target's slots are counted from: its start plus its spread.
    anchor: Instant,
    /// The slot its heap entry is for.
    next: Instant,
    /// What one probe leaves for the next; taken by the probe while it runs, so a target never
    /// has two in flight.
    carry: Option<Carry>,
    /// The running probe, to cancel when the target stops.
    probe: Option<JoinHandle<()>>,
}

/// The state a target keeps between its probes.
#[derive(Debug)]
enum Carry {
    /// The layer a failure without a response is blamed on.
    Single(Edge),
    /// Only a per-address target has a round's state to keep.
    PerAddress(Box<Addresses>),
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the target's slot out, with its running probe if any.
    fn remove(&self, key: u64) -> Option<JoinHandle<()>> {
        self.lock().slots.remove(&key).and_then(|s| s.probe)
    }
}

impl Slots {
    /// Queues `key` at `at`, waking the driver if that is now the earliest slot.
    fn queue(&mut self, key: u64, at: Instant, wake: &Notify) {
        let earliest = self
            .due
            .peek()
            .is_none_or(|Reverse((first, _))| at < *first);
        self.due.push(Reverse((at, key)));
        if earliest {
            wake.notify_one();
        }
    }
}

impl Scheduler {
    /// Must run inside a Tokio runtime: it starts the timer's task.
    pub fn new(metrics: Arc<Metrics>, recorder: Arc<Recorder>, diagnosis: &Diagnosis) -> Self {
        let ctx = Arc::new(Context {
            pipeline: Arc::new(Pipeline::new(metrics, recorder, diagnosis)),
            limit: Arc::new(Semaphore::new(0)),
            timer: Timer::default(),
        });
        Self {
            driver: tokio::spawn(drive(ctx.clone())),
            ctx,
            limit_size: 0,
            running: HashMap::new(),
            at_once: HashSet::new(),
        }
    }

    /// Makes the running set `targets` (the file's and the sources'), under `config`'s probe
    /// limit and diagnosis. Unchanged targets keep their schedule and counters; removed ones
    /// stop and lose their series; changed ones restart from zero.
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
                        self.stop(vec![old]).await;
                    } else {
                        applied.added += 1;
                    }
                    let now = self.at_once.remove(&target.name);
                    keep.insert(target.name.clone(), self.start(target.clone(), now));
                }
            }
        }
        let removed: Vec<_> = self.running.drain().map(|(_, old)| old).collect();
        applied.removed = removed.len();
        let names: Vec<Arc<Target>> = removed.iter().map(|r| r.target.clone()).collect();
        self.stop(removed).await;
        for target in names {
            self.ctx.pipeline.forget(&target.name);
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

    /// Stops every target (in-flight probes are cancelled).
    pub async fn stop_all(&mut self) {
        let all: Vec<_> = self.running.drain().map(|(_, old)| old).collect();
        self.stop(all).await;
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
        let spread = if at_once {
            Duration::ZERO
        } else {
            offset(&target.name, target.interval)
        };
        let anchor = Instant::now() + spread;
        let carry = if target.per_address {
            Carry::PerAddress(Box::default())
        } else {
            Carry::Single(Edge::default())
        };
        let mut slots = self.ctx.timer.lock();
        let key = slots.next_key;
        slots.next_key += 1;
        slots.slots.insert(
            key,
            Slot {
                target: target.clone(),
                metrics: metrics.clone(),
                anchor,
                next: anchor,
                carry: Some(carry),
                probe: None,
            },
        );
        slots.queue(key, anchor, &self.ctx.timer.wake);
        Running {
            target,
            metrics,
            key,
        }
    }

    /// Stops targets (in-flight probes included) and then removes their series, in that
    /// order: a probe finishing in between would otherwise create them again. Every probe is
    /// cancelled before any is waited for: the runtime then drops them all in one pass, where
    /// cancelling and awaiting one at a time costs a trip through the scheduler per target
    /// (seconds, for thousands of targets on a busy machine, while the reload or shutdown waits).
    async fn stop(&self, old: Vec<Running>) {
        let probes: Vec<JoinHandle<()>> = old
            .iter()
            .filter_map(|r| self.ctx.timer.remove(r.key))
            .collect();
        for probe in &probes {
            probe.abort();
        }
        for probe in probes {
            let _ = probe.await;
        }
        for r in old {
            r.metrics.remove();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The timer's task: sleeps until the earliest slot (or until an earlier one is queued), then
/// starts every probe that is due.
async fn drive(ctx: Arc<Context>) {
    loop {
        let earliest = {
            let mut slots = ctx.timer.lock();
            let now = Instant::now();
            while let Some(&Reverse((at, key))) = slots.due.peek() {
                if at > now {
                    break;
                }
                slots.due.pop();
                // A stopped or restarted target's entry, or one whose probe still runs.
                let Some(slot) = slots.slots.get_mut(&key) else {
                    continue;
                };
                if slot.next != at {
                    continue;
                }
                let Some(carry) = slot.carry.take() else {
                    continue;
                };
                let probe = probe(
                    ctx.clone(),
                    key,
                    at,
                    slot.target.clone(),
                    slot.metrics.clone(),
                    carry,
                );
                slot.probe = Some(tokio::spawn(probe));
            }
            slots.due.peek().map(|Reverse((at, _))| *at)
        };
        match earliest {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = ctx.timer.wake.notified() => {}
                }
            }
            None => ctx.timer.wake.notified().await,
        }
    }
}

/// One probe of the slot at `at`: waits for the limit, probes, and queues the target's next
/// slot. Slots missed because the probe or the limit ran late are skipped, never bunched.
async fn probe(
    ctx: Arc<Context>,
    key: u64,
    at: Instant,
    target: Arc<Target>,
    metrics: Arc<TargetMetrics>,
    mut carry: Carry,
) {
    let Ok(permit) = ctx.limit.acquire().await else {
        return;
    };
    ctx.pipeline
        .metrics()
        .scheduler_lag
        .observe(Instant::now().saturating_duration_since(at).as_secs_f64());
    match &mut carry {
        Carry::Single(edge) => {
            ctx.pipeline.probe(&target, &metrics, None, edge).await;
            drop(permit);
        }
        Carry::PerAddress(addresses) => {
            // Each address takes a slot of its own for its probe.
            drop(permit);
            addresses
                .round(&target, &metrics, &ctx.pipeline, &ctx.limit)
                .await;
        }
    }
    let mut slots = ctx.timer.lock();
    // Gone if the target stopped meanwhile (then this task is being cancelled anyway).
    let Some(slot) = slots.slots.get_mut(&key) else {
        return;
    };
    let next = next_slot(
        slot.anchor,
        target.interval,
        (at + target.interval).max(Instant::now()),
    );
    slot.next = next;
    slot.carry = Some(carry);
    slot.probe = None;
    slots.queue(key, next, &ctx.timer.wake);
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
