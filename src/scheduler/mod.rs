//! Runs every target on its own interval, independently of scrapes.
//!
//! One task per target: it sleeps until its next slot, waits for a slot in the global probe
//! limit, probes, records. A target therefore never has two probes in flight. First slots are
//! spread across the interval by a hash of the target's name (as Prometheus spreads scrapes), so
//! ten thousand targets do not fire in the same second, and a restarted tickr keeps the same
//! phases. Slots missed because a probe or the limit ran late are skipped, never bunched.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, Diagnosis, Target, MAX_ADDRESSES};
use crate::events::{Confirmation, Recorder};
use crate::fds::Shortage;
use crate::layer::{Attribution, UNKNOWN};
use crate::metrics::{Metrics, TargetMetrics};
use crate::probe::{self, Failure, Outcome, Pinned, Reason};

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
}

/// What every probe task shares: where outcomes go, the global limit, and the diagnosis
/// settings (replaced on reload without restarting the tasks).
#[derive(Debug)]
struct Context {
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    limit: Arc<Semaphore>,
    diagnosis: RwLock<Arc<Diagnosis>>,
}

impl Context {
    fn diagnosis(&self) -> Arc<Diagnosis> {
        self.diagnosis
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Scheduler {
    pub fn new(metrics: Arc<Metrics>, recorder: Arc<Recorder>, diagnosis: &Diagnosis) -> Self {
        let ctx = Context {
            metrics,
            recorder,
            limit: Arc::new(Semaphore::new(0)),
            diagnosis: RwLock::new(Arc::new(diagnosis.clone())),
        };
        Self {
            ctx: Arc::new(ctx),
            limit_size: 0,
            running: HashMap::new(),
        }
    }

    /// Makes the running set match `config`. Unchanged targets keep their task, schedule and
    /// counters; removed ones stop and lose their series; changed ones restart from zero.
    pub async fn apply(&mut self, config: &Config) -> Applied {
        self.resize_limit(config.max_concurrent_probes);
        *self
            .ctx
            .diagnosis
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.diagnosis.clone());
        self.ctx.recorder.set_capacity(config.diagnosis.events);
        let mut applied = Applied::default();
        let mut keep = HashMap::with_capacity(config.targets.len());
        for target in &config.targets {
            match self.running.remove(&target.name) {
                Some(old) if old.target == *target => {
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
                    keep.insert(target.name.clone(), self.start(target.clone()));
                }
            }
        }
        let removed: Vec<_> = self.running.drain().collect();
        abort_all(removed.iter().map(|(_, old)| old));
        for (name, old) in removed {
            applied.removed += 1;
            stop(old).await;
            self.ctx.recorder.forget(&name);
        }
        self.running = keep;
        self.ctx.metrics.targets.set(self.running.len() as i64);
        applied
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

    fn start(&self, target: Arc<Target>) -> Running {
        let metrics = self.ctx.metrics.register_target(&target);
        let fut = run_target(target.clone(), metrics.clone(), self.ctx.clone());
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

/// Where in its interval a target's slots fall: a stable hash of its name.
pub fn offset(name: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h.finish()) % nanos) as u64)
}

/// The first slot at or after `now` for a schedule anchored at `anchor`.
pub fn next_slot(anchor: Instant, interval: Duration, now: Instant) -> Instant {
    if now <= anchor {
        return anchor;
    }
    let behind = now - anchor;
    let periods = behind.as_nanos().div_ceil(interval.as_nanos().max(1));
    anchor + interval * u32::try_from(periods).unwrap_or(u32::MAX)
}

async fn run_target(target: Arc<Target>, tm: Arc<TargetMetrics>, ctx: Arc<Context>) {
    let anchor = Instant::now() + offset(&target.name, target.interval);
    let mut slot = anchor;
    // The product tickr connects to, as last seen in a response: blamed for failures that
    // never got one. Per-address targets keep one per address.
    let mut edge = None;
    let mut addresses = Addresses::default();
    loop {
        tokio::time::sleep_until(slot).await;
        let Ok(permit) = ctx.limit.acquire().await else {
            return;
        };
        ctx.metrics
            .scheduler_lag
            .observe(Instant::now().saturating_duration_since(slot).as_secs_f64());
        // Boxed: a probe's state (TLS, HTTP, buffers) is about 12 KB, and inline it would make
        // every idle target's task that large, all the time, instead of only while it probes.
        if target.per_address {
            drop(permit);
            Box::pin(addresses.round(&target, &tm, &ctx)).await;
        } else {
            edge = Box::pin(probe_and_record(&target, &tm, &ctx, None, edge)).await;
            drop(permit);
        }
        slot = next_slot(
            anchor,
            target.interval,
            (slot + target.interval).max(Instant::now()),
        );
    }
}

/// One probe, and everything that follows from it: attribution, the event, the series, the log
/// line and, after a failure, the confirmations. Returns the edge layer as now known.
async fn probe_and_record(
    target: &Target,
    tm: &TargetMetrics,
    ctx: &Context,
    pinned: Option<Pinned>,
    mut edge: Option<String>,
) -> Option<String> {
    let metrics = &ctx.metrics;
    metrics.in_flight.inc();
    let in_flight = DecOnDrop(metrics);
    let outcome = probe::run_pinned(target, pinned).await;
    drop(in_flight);
    record(target, tm, ctx, &outcome, &mut edge, pinned).await;
    edge
}

async fn record(
    target: &Target,
    tm: &TargetMetrics,
    ctx: &Context,
    outcome: &Outcome,
    edge: &mut Option<String>,
    pinned: Option<Pinned>,
) {
    if let Some(shortage) = outcome.shortage() {
        // tickr's own trouble, not the target's: no event, no series of the target, no
        // confirmation (which would only meet the same shortage).
        ctx.metrics.probe_skipped(shortage);
        log_shortage(target, outcome, shortage);
        return;
    }
    let diagnosis = ctx.diagnosis();
    let attribution = attribute(outcome, &diagnosis, edge);
    let event = ctx
        .recorder
        .record(target, outcome, attribution.as_ref(), &diagnosis);
    tm.record(
        outcome,
        Some(event.id),
        attribution.as_ref().map(|a| a.layer.as_str()),
    );
    log_outcome(target, outcome, event.id, attribution.as_ref());
    if !outcome.success() && target.confirm > 0 {
        let confirmation = confirm(target, tm, &ctx.metrics, pinned).await;
        tracing::info!(
            target = %target.name,
            event = event.id,
            verdict = confirmation.verdict(),
            failed = confirmation.failed,
            of = confirmation.probes,
            "failure confirmed"
        );
        event.set_confirmation(confirmation);
    }
}

/// Rounds of resolutions an address may be missing from before its series go: DNS that
/// rotates through a pool should not make series come and go.
const ADDRESS_GRACE_ROUNDS: u32 = 10;

/// The addresses of a per-address target, with their series and edge layer.
#[derive(Default)]
struct Addresses {
    known: BTreeMap<IpAddr, Known>,
    edge: Option<String>,
}

struct Known {
    metrics: Arc<TargetMetrics>,
    edge: Option<String>,
    missed: u32,
}

impl Addresses {
    /// Resolves once, then probes every address at the same time, each holding a slot of the
    /// global limit.
    async fn round(&mut self, target: &Arc<Target>, tm: &Arc<TargetMetrics>, ctx: &Arc<Context>) {
        let started = std::time::Instant::now();
        let resolved = match tokio::time::timeout(
            target.timeout,
            probe::resolve_target(target, MAX_ADDRESSES),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                "no answer from the resolver (stuck in resolve)",
            )),
        };
        let (addrs, took) = match resolved {
            Ok(found) => found,
            Err(failure) => {
                // No address to blame: the target's own series count it.
                let elapsed = started.elapsed();
                let mut outcome = Outcome {
                    failure: Some(failure),
                    ..Outcome::default()
                };
                outcome.phases.total = elapsed;
                if outcome
                    .failure
                    .as_ref()
                    .is_some_and(|f| f.reason == Reason::Dns)
                {
                    outcome.phases.resolve = Some(elapsed);
                }
                record(target, tm, ctx, &outcome, &mut self.edge, None).await;
                return;
            }
        };
        tm.resolved();
        let mut round = tokio::task::JoinSet::new();
        for addr in &addrs {
            let known = self.known.entry(addr.ip()).or_insert_with(|| Known {
                metrics: ctx.metrics.register_address(tm, target, addr.ip()),
                edge: None,
                missed: 0,
            });
            known.missed = 0;
            let (target, ctx, child, edge) = (
                target.clone(),
                ctx.clone(),
                known.metrics.clone(),
                known.edge.take(),
            );
            let pinned = Pinned {
                addr: *addr,
                resolve: took,
            };
            round.spawn(async move {
                let _permit = ctx.limit.acquire().await;
                (
                    pinned.addr.ip(),
                    probe_and_record(&target, &child, &ctx, Some(pinned), edge).await,
                )
            });
        }
        while let Some(done) = round.join_next().await {
            if let Ok((ip, edge)) = done {
                if let Some(known) = self.known.get_mut(&ip) {
                    known.edge = edge;
                }
            }
        }
        let resolved: std::collections::HashSet<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
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
            ctx.metrics.remove_address(tm, ip);
        }
        tm.touch();
    }
}

/// Follow-up probes after a failure, each on a fresh connection (to the same address when
/// probing per address): they tell a transient failure from a persistent one. Counted apart,
/// so the schedule's counters stay one per slot.
async fn confirm(
    target: &Target,
    tm: &TargetMetrics,
    metrics: &Metrics,
    pinned: Option<Pinned>,
) -> Confirmation {
    let (mut probes, mut failed) = (0, 0);
    for _ in 0..target.confirm {
        tokio::time::sleep(target.confirm_delay).await;
        metrics.in_flight.inc();
        let in_flight = DecOnDrop(metrics);
        let outcome = probe::run_pinned(target, pinned).await;
        drop(in_flight);
        if let Some(shortage) = outcome.shortage() {
            metrics.probe_skipped(shortage);
            continue;
        }
        tm.record_confirmation(outcome.success());
        probes += 1;
        failed += usize::from(!outcome.success());
    }
    Confirmation { probes, failed }
}

/// Which layer to blame: for a 5xx, the one whose fingerprint the response carries; for a
/// failure without any response, the first hop as last seen. `edge` is updated from every
/// response.
fn attribute(o: &Outcome, d: &Diagnosis, edge: &mut Option<String>) -> Option<Attribution> {
    if let Some(headers) = &o.headers {
        if let Some(seen) = d.attributor.edge(headers) {
            *edge = Some(seen);
        }
        return o
            .status
            .filter(|s| *s >= 500)
            .map(|_| d.attributor.attribute(headers, &o.body_head));
    }
    o.failure.as_ref()?;
    Some(match edge {
        Some(layer) => Attribution {
            layer: layer.clone(),
            evidence: format!("no response; the first hop last answered as {layer}"),
        },
        None => Attribution {
            layer: UNKNOWN.to_owned(),
            evidence: "no response, and no earlier answer to judge the first hop by".into(),
        },
    })
}

struct DecOnDrop<'a>(&'a Metrics);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

/// A probe tickr could not make: at most one warning every [`SHORTAGE_LOG_EVERY`] (a
/// shortage comes in bursts of thousands of probes), each at debug level.
fn log_shortage(target: &Target, o: &Outcome, shortage: Shortage) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let detail = o.failure.as_ref().map_or("", |f| f.detail.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + SHORTAGE_LOG_EVERY.as_secs()
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            target = %target.name,
            cause = shortage.as_str(),
            error = %detail,
            fd_limit = crate::fds::limit(),
            "probe skipped: tickr is short of a resource of its own; not counted against the target (see tickr_probes_skipped_total)"
        );
    } else {
        tracing::debug!(target = %target.name, cause = shortage.as_str(), error = %detail, "probe skipped");
    }
}

/// How often a shortage is logged at warning level.
const SHORTAGE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Every failed probe is one log line with the evidence; successes only at debug level.
pub fn log_outcome(target: &Target, o: &Outcome, event: u64, attribution: Option<&Attribution>) {
    let remote = o.remote.map(|a| a.to_string()).unwrap_or_default();
    let status = o.status.unwrap_or(0);
    let layer = attribution.map_or("", |a| a.layer.as_str());
    let p = &o.phases;
    match &o.failure {
        Some(f) => tracing::warn!(
            target = %target.name,
            reason = f.reason.as_str(),
            status,
            layer,
            remote = %remote,
            event,
            error = %target.secrets.redact_str(&f.detail),
            resolve_ms = ms(p.resolve),
            connect_ms = ms(p.connect),
            tls_ms = ms(p.tls),
            processing_ms = ms(p.processing),
            transfer_ms = ms(p.transfer),
            total_ms = ms(Some(p.total)),
            "probe failed"
        ),
        None => {
            tracing::debug!(target = %target.name, status, remote = %remote, total_ms = ms(Some(p.total)), "probe succeeded")
        }
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
