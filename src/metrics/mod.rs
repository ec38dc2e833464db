//! Turns probe outcomes into Prometheus samples, and encodes the exposition.
//!
//! Each target owns its series in one [`TargetMetrics`]: counters and gauges as plain atomics,
//! each phase histogram as prometheus-client's (which keeps per-bucket exemplars). Recording an
//! outcome is a handful of atomic operations, and a target costs about 4.6 KB with every phase
//! histogram (1.6 KB with `total` only). At scrape time, one [`Collector`] walks the targets once
//! per family and hands each series to prometheus-client's encoder, which names and formats it.
//! Fourteen `Family` maps (a hash-map entry, lock and label copy per series) cost 10.5 KB per
//! target and a third more encode time; they were measured and replaced.
//!
//! Counters a user alerts on (runs by result, failures by reason, the gateway 5xx codes, body
//! mismatches) exist at zero from the target's start: a series that appears already at 1 hides
//! its first increment from `increase()`, and the first 502 is the one that matters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, Exemplar, HistogramWithExemplars};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::{PhaseDetail, Target};
use crate::fds::Shortage;
use crate::probe::{Outcome, Phase, Reason};

/// Buckets of `tickr_scheduler_lag_seconds`.
pub const LAG_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Status codes whose counters exist from the start, at zero (see the module docs).
pub const PRECREATED_CODES: [u16; 4] = [500, 502, 503, 504];

/// `target` first, then the target's own labels. Shared by every series of one target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetLabels(Arc<[(String, String)]>);

impl TargetLabels {
    pub fn new(target: &Target) -> Self {
        Self::with_address(target, None)
    }

    /// With per-address probing, each address's series also carry `address`.
    pub fn with_address(target: &Target, address: Option<IpAddr>) -> Self {
        let mut labels = vec![("target".to_owned(), target.name.clone())];
        labels.extend(target.labels.iter().cloned());
        if let Some(ip) = address {
            labels.push(("address".to_owned(), ip.to_string()));
        }
        Self(labels.into())
    }
}

impl EncodeLabelSet for TargetLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        self.0.as_ref().encode(encoder)
    }
}

/// One series' labels: the target's, then the family's own.
struct Labels<'a, const N: usize>(&'a TargetLabels, [(&'static str, &'a str); N]);

impl<const N: usize> EncodeLabelSet for Labels<'_, N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)?;
        self.1.as_slice().encode(encoder)
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;
/// The exemplar of a failure observation: the id of its event in the failure recorder.
type EventLabel = [(&'static str, String); 1];
type ExHistogram = HistogramWithExemplars<EventLabel>;

fn event_label(id: u64) -> EventLabel {
    [("event_id", id.to_string())]
}

/// A counter whose last failure increment keeps the failure's event id, as its exemplar.
#[derive(Debug, Default)]
struct Count {
    value: AtomicU64,
    /// The event id + 1; 0 for none.
    event: AtomicU64,
}

impl Count {
    fn inc(&self, event: Option<u64>) {
        self.value.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = event {
            self.event.store(id + 1, Ordering::Relaxed);
        }
    }

    fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    fn encode(&self, encoder: &mut MetricEncoder, labels: &impl EncodeLabelSet) -> fmt::Result {
        let value = self.get();
        let family = encoder.encode_family(labels)?;
        match self.event.load(Ordering::Relaxed).checked_sub(1) {
            // prometheus-client builds exemplars only inside its own metrics, so the rare
            // series that has one is encoded through a throwaway counter carrying it, with the
            // increment it marks (1) as the exemplar's value.
            Some(id) if value > 0 => {
                let counter = CounterWithExemplar::<EventLabel>::default();
                counter.inc_by(value - 1, None, None);
                counter.inc_by(1, Some(event_label(id)), None);
                counter.encode(family)
            }
            _ => {
                let mut family = family;
                family.encode_counter::<EventLabel, _, u64>(&value, None::<&Exemplar<_, _>>)
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Where [`Metrics::stream`] writes an exposition.
pub trait Sink {
    /// Takes more text. Must not wait: the encoder may hold a series' lock meanwhile.
    fn write(&mut self, text: &str);
    /// Called between two targets' series, where the encoder holds no lock: the place to
    /// wait for a slow client. `Err` ends the encoding.
    fn pause(&mut self) -> fmt::Result;
}

thread_local! {
    /// The sink of the exposition being streamed on this thread, for the collector's pauses.
    /// prometheus-client hands the collector only its own encoder, so the sink is found here;
    /// an encoding runs start to end on one thread.
    static PAUSE: RefCell<Option<Rc<RefCell<dyn Sink>>>> = const { RefCell::new(None) };
}

/// A pause point of the collector: lets the sink of a streamed exposition wait, if any.
fn pause() -> fmt::Result {
    PAUSE.with(|p| match &*p.borrow() {
        Some(sink) => sink.borrow_mut().pause(),
        None => Ok(()),
    })
}

/// The [`fmt::Write`] prometheus-client writes into, in front of a [`Sink`].
struct SinkWriter(Rc<RefCell<dyn Sink>>);

impl fmt::Write for SinkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.borrow_mut().write(s);
        Ok(())
    }
}

/// Every series tickr exposes, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    series: Arc<Series>,
    pub reload_successful: Gauge,
    pub reload_timestamp: FloatGauge,
    pub scheduler_lag: Histogram,
    pub in_flight: Gauge,
    pub targets: Gauge,
    /// `tickr_probes_skipped_total`, by [`Shortage::ALL`].
    skipped: [Counter; Shortage::ALL.len()],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let series = Arc::new(Series::default());
        r.register_collector(Box::new(series.clone()));
        r.register(
            "tickr_build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("tls", "rustls"),
            ]),
        );
        let reload_successful = Gauge::default();
        r.register(
            "tickr_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded",
            reload_successful.clone(),
        );
        let reload_timestamp = FloatGauge::default();
        r.register_with_unit(
            "tickr_config_last_reload_success_timestamp",
            "When the configuration was last loaded successfully",
            Unit::Seconds,
            reload_timestamp.clone(),
        );
        let scheduler_lag = Histogram::new(LAG_BUCKETS.iter().copied());
        r.register_with_unit(
            "tickr_scheduler_lag",
            "How late each probe started versus its slot",
            Unit::Seconds,
            scheduler_lag.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "tickr_probes_in_flight",
            "Probes running now",
            in_flight.clone(),
        );
        let targets = Gauge::default();
        r.register("tickr_targets", "Configured targets", targets.clone());
        let skipped = Family::<[(&'static str, &'static str); 1], Counter>::default();
        r.register(
            "tickr_probes_skipped",
            "Probes tickr could not make for want of a resource of its own (cause), not counted against any target",
            skipped.clone(),
        );
        // Every cause exists at zero, so the first shortage is an increase.
        let skipped =
            Shortage::ALL.map(|s| skipped.get_or_create(&[("cause", s.as_str())]).clone());
        Self {
            registry: r,
            series,
            reload_successful,
            reload_timestamp,
            scheduler_lag,
            in_flight,
            targets,
            skipped,
        }
    }

    /// Counts a probe that tickr could not make (see [`Shortage`]).
    pub fn probe_skipped(&self, shortage: Shortage) {
        let i = Shortage::ALL
            .iter()
            .position(|s| *s == shortage)
            .expect("every shortage is listed");
        self.skipped[i].inc();
    }

    /// The whole exposition in OpenMetrics text, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        self.encode_to(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    /// Writes the exposition into `out` as it goes, so a large one need not be held whole.
    pub fn encode_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        prometheus_client::encoding::text::encode(out, &self.registry)
    }

    /// Encodes the exposition into `sink`, which may wait for a slow client in
    /// [`Sink::pause`]: that is called only between two targets' series, where no lock of
    /// any series is held, so a scraper that stops reading never holds up the probes that
    /// record into those series. Returns the sink, or `Err` once the sink gave up.
    pub fn stream<S: Sink + 'static>(&self, sink: S) -> Result<S, fmt::Error> {
        let sink = Rc::new(RefCell::new(sink));
        let shared: Rc<RefCell<dyn Sink>> = sink.clone();
        PAUSE.with(|p| *p.borrow_mut() = Some(shared.clone()));
        let encoded = self.encode_to(&mut SinkWriter(shared));
        PAUSE.with(|p| *p.borrow_mut() = None);
        encoded?;
        Ok(Rc::into_inner(sink)
            .expect("the encoder keeps no handle to the sink")
            .into_inner())
    }

    /// Creates the series of `target` (at zero) and returns the handles to record its outcomes.
    pub fn register_target(&self, target: &Target) -> Arc<TargetMetrics> {
        let own = Own {
            interval: target.interval.as_secs_f64(),
            facts: [
                ("url", target.shown_url.clone()),
                ("method", target.method.to_string()),
                ("interval", format!("{:?}", target.interval)),
                ("timeout", format!("{:?}", target.timeout)),
            ],
        };
        self.series
            .insert(target, TargetLabels::new(target), Some(Box::new(own)))
    }

    /// The series of one address of a per-address target; they belong to `parent`, which
    /// removes them with its own and sums them in its summary.
    pub fn register_address(
        &self,
        parent: &TargetMetrics,
        target: &Target,
        ip: IpAddr,
    ) -> Arc<TargetMetrics> {
        let tm = self
            .series
            .insert(target, TargetLabels::with_address(target, Some(ip)), None);
        parent
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, tm.clone());
        tm
    }

    /// Forgets an address that no longer resolves, with its series.
    pub fn remove_address(&self, parent: &TargetMetrics, ip: IpAddr) {
        if let Some(tm) = parent
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip)
        {
            tm.remove();
        }
    }
}

/// Every target's series, keyed (and so exposed) in label order.
#[derive(Debug, Default)]
struct Series(RwLock<BTreeMap<TargetLabels, Arc<TargetMetrics>>>);

impl Series {
    fn insert(
        self: &Arc<Self>,
        target: &Target,
        labels: TargetLabels,
        own: Option<Box<Own>>,
    ) -> Arc<TargetMetrics> {
        let phases: &[Phase] = match target.histograms.phases {
            PhaseDetail::All => &Phase::ALL,
            PhaseDetail::Total => &[Phase::Total],
        };
        let buckets = &target.histograms.buckets;
        let tm = Arc::new(TargetMetrics {
            labels: labels.clone(),
            series: Arc::downgrade(self),
            own,
            runs: Default::default(),
            success: AtomicI64::new(0),
            status_code: AtomicI64::new(0),
            phases: phases
                .iter()
                .map(|p| (*p, ExHistogram::new(buckets.iter().copied())))
                .collect(),
            failures: Default::default(),
            matchers: target
                .matchers
                .iter()
                .map(|m| (m.label.clone(), AtomicI64::new(0), AtomicU64::new(0)))
                .collect(),
            state_changes: AtomicU64::new(0),
            // Only targets that confirm failures have these series.
            confirmations: (target.confirm > 0).then(Default::default),
            last_probe: AtomicU64::new(0),
            cert_not_after: AtomicI64::new(NO_CERT),
            codes: Mutex::new(PRECREATED_CODES.map(|c| (c, Count::default())).into()),
            server_errors: Mutex::new(Vec::new()),
            last_result: AtomicU8::new(UNKNOWN),
            children: Mutex::new(BTreeMap::new()),
        });
        // Until the first probe, "last probe" is when the target was loaded: a target whose
        // probes never start then ages like one whose probes stopped, and alerts can see both.
        tm.touch();
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(labels, tm.clone());
        tm
    }
}

const UNKNOWN: u8 = 0;
const SUCCEEDED: u8 = 1;
const FAILED: u8 = 2;
const NO_CERT: i64 = i64::MIN;

/// What only a configured target has, not each of its addresses.
#[derive(Debug)]
struct Own {
    interval: f64,
    /// `tickr_target_info`'s labels besides the target's own.
    facts: [(&'static str, String); 4],
}

/// The series of one target (or one address of a per-address target).
pub struct TargetMetrics {
    labels: TargetLabels,
    series: std::sync::Weak<Series>,
    own: Option<Box<Own>>,
    /// Success, failure.
    runs: [Count; 2],
    success: AtomicI64,
    status_code: AtomicI64,
    phases: Box<[(Phase, ExHistogram)]>,
    failures: [Count; Reason::ALL.len()],
    /// Label, last result, mismatches.
    matchers: Box<[(String, AtomicI64, AtomicU64)]>,
    state_changes: AtomicU64,
    /// Success, failure.
    confirmations: Option<[AtomicU64; 2]>,
    /// Unix seconds, as f64 bits.
    last_probe: AtomicU64,
    cert_not_after: AtomicI64,
    codes: Mutex<Vec<(u16, Count)>>,
    server_errors: Mutex<Vec<(u16, Box<str>, Count)>>,
    last_result: AtomicU8,
    /// Per-address series of a target probed at every address.
    children: Mutex<BTreeMap<IpAddr, Arc<TargetMetrics>>>,
}

impl fmt::Debug for TargetMetrics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("TargetMetrics")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// What the landing page shows of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub last_success: Option<bool>,
    pub last_status: i64,
    pub last_probe_timestamp: f64,
    pub successes: u64,
    pub failures: u64,
}

impl TargetMetrics {
    /// Records one finished probe. `event` is the failure recorder's id for it, attached as an
    /// exemplar to the failure observations; `layer` is the attributed layer of a 5xx.
    pub fn record(&self, outcome: &Outcome, event: Option<u64>, layer: Option<&str>) {
        let ok = outcome.success();
        let exemplar = if ok { None } else { event };
        self.runs[usize::from(!ok)].inc(exemplar);
        self.success.store(i64::from(ok), Ordering::Relaxed);
        for (phase, histogram) in self.phases.iter() {
            if let Some(d) = outcome.phases.get(*phase) {
                histogram.observe(d.as_secs_f64(), exemplar.map(event_label), None);
            }
        }
        if let Some(code) = outcome.status {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            match codes.iter().position(|(c, _)| *c == code) {
                Some(i) => codes[i].1.inc(exemplar),
                None => {
                    let count = Count::default();
                    count.inc(exemplar);
                    let at = codes.partition_point(|(c, _)| *c < code);
                    codes.insert(at, (code, count));
                }
            }
            drop(codes);
            if code >= 500 {
                let layer = layer.unwrap_or(crate::layer::UNKNOWN);
                let mut all = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
                match all.iter().position(|(c, l, _)| *c == code && **l == *layer) {
                    Some(i) => all[i].2.inc(event),
                    None => {
                        let count = Count::default();
                        count.inc(event);
                        all.push((code, layer.into(), count));
                        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                    }
                }
            }
        }
        self.status_code
            .store(outcome.status.map_or(0, i64::from), Ordering::Relaxed);
        if let Some(failure) = &outcome.failure {
            let i = Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .expect("every reason is listed");
            self.failures[i].inc(exemplar);
        }
        for (i, (_, gauge, mismatches)) in self.matchers.iter().enumerate() {
            let matched = outcome.matches.get(i).copied();
            gauge.store(i64::from(matched == Some(true)), Ordering::Relaxed);
            if matched == Some(false) {
                mismatches.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = if ok { SUCCEEDED } else { FAILED };
        let before = self.last_result.swap(now, Ordering::Relaxed);
        if before != UNKNOWN && before != now {
            self.state_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.touch();
        if let Some(not_after) = outcome.cert_not_after {
            self.cert_not_after.store(not_after, Ordering::Relaxed);
        }
    }

    /// Counts one follow-up probe after a failure.
    pub fn record_confirmation(&self, success: bool) {
        if let Some([ok, failed]) = &self.confirmations {
            if success { ok } else { failed }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a round of per-address probes as done, for the stall alert.
    pub fn touch(&self) {
        self.last_probe
            .store(unix_now().to_bits(), Ordering::Relaxed);
    }

    /// The target at a glance; for a per-address target, its addresses together: failing when
    /// any address failed last, counts summed, status of the most recent probe.
    pub fn summary(&self) -> Summary {
        let own = Summary {
            last_success: match self.last_result.load(Ordering::Relaxed) {
                SUCCEEDED => Some(true),
                FAILED => Some(false),
                _ => None,
            },
            last_status: self.status_code.load(Ordering::Relaxed),
            last_probe_timestamp: f64::from_bits(self.last_probe.load(Ordering::Relaxed)),
            successes: self.runs[0].get(),
            failures: self.runs[1].get(),
        };
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut all) = children
            .values()
            .map(|c| c.summary())
            .reduce(|a, b| Summary {
                last_success: match (a.last_success, b.last_success) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    _ => None,
                },
                last_status: if b.last_probe_timestamp >= a.last_probe_timestamp {
                    b.last_status
                } else {
                    a.last_status
                },
                last_probe_timestamp: a.last_probe_timestamp.max(b.last_probe_timestamp),
                successes: a.successes + b.successes,
                failures: a.failures + b.failures,
            })
        else {
            return own;
        };
        // The target's own series count the rounds whose lookup failed.
        all.successes += own.successes;
        all.failures += own.failures;
        if own.last_success == Some(false) {
            all.last_success = Some(false);
            all.last_status = 0;
        }
        all
    }

    /// A per-address round resolved: the last lookup failure, if any, is over.
    pub fn resolved(&self) {
        self.last_result.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Removes every series of this target (and of its addresses) from the exposition. A newer
    /// registration under the same labels (a changed target, restarted) keeps its own.
    pub fn remove(&self) {
        for (_, child) in
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()))
        {
            child.remove();
        }
        let Some(series) = self.series.upgrade() else {
            return;
        };
        let mut all = series.0.write().unwrap_or_else(|e| e.into_inner());
        if all
            .get(&self.labels)
            .is_some_and(|tm| std::ptr::eq(Arc::as_ptr(tm), self))
        {
            all.remove(&self.labels);
        }
    }
}

type Each<'a> = &'a dyn Fn(&TargetMetrics, &mut MetricEncoder) -> fmt::Result;

/// One family: its descriptor, then the series of every target that has any (none: omitted).
fn family(
    encoder: &mut DescriptorEncoder,
    all: &[Arc<TargetMetrics>],
    (name, help, unit, kind): (&str, &str, Option<&Unit>, MetricType),
    has: impl Fn(&TargetMetrics) -> bool,
    each: Each,
) -> fmt::Result {
    if !all.iter().any(|tm| has(tm)) {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for tm in all.iter().filter(|tm| has(tm)) {
        each(tm, &mut metric)?;
        // `each` has released whatever it locked.
        pause()?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    encoder.encode_family(labels)?.encode_gauge(&v)
}

fn class(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Collector for Series {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // A snapshot: probes and reloads go on while the scrape encodes.
        let all: Vec<Arc<TargetMetrics>> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let e = &mut encoder;
        let always = |_: &TargetMetrics| true;
        use MetricType::{Counter, Gauge, Histogram, Info};
        let seconds = Some(&Unit::Seconds);

        family(
            e,
            &all,
            (
                "tickr_probe_runs",
                "Finished probes, by result.",
                None,
                Counter,
            ),
            always,
            &|tm, m| {
                tm.runs[1].encode(m, &Labels(&tm.labels, [("result", "failure")]))?;
                tm.runs[0].encode(m, &Labels(&tm.labels, [("result", "success")]))
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_probe_success",
                "1 if the last probe succeeded, else 0.",
                None,
                Gauge,
            ),
            always,
            &|tm, m| gauge(m, &tm.labels, tm.success.load(Ordering::Relaxed)),
        )?;
        family(
            e,
            &all,
            (
                "tickr_probe_duration",
                "Duration of each probe phase; a failed probe observes the phases it finished, and total.",
                seconds,
                Histogram,
            ),
            |tm| !tm.phases.is_empty(),
            &|tm, m| {
                for (phase, histogram) in tm.phases.iter() {
                    let labels = Labels(&tm.labels, [("phase", phase.as_str())]);
                    histogram.encode(m.encode_family(&labels)?)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_http_responses",
                "Final HTTP responses received, by status code and class.",
                None,
                Counter,
            ),
            always,
            &|tm, m| {
                let codes = tm.codes.lock().unwrap_or_else(|e| e.into_inner());
                let mut text = itoa::Buffer::new();
                for (code, count) in codes.iter() {
                    let labels = Labels(
                        &tm.labels,
                        [("code", text.format(*code)), ("class", class(*code))],
                    );
                    count.encode(m, &labels)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_http_server_errors",
                "Final 5xx responses, by status code and the layer that most likely generated them.",
                None,
                Counter,
            ),
            |tm| {
                !tm.server_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
            },
            &|tm, m| {
                let all = tm.server_errors.lock().unwrap_or_else(|e| e.into_inner());
                let mut text = itoa::Buffer::new();
                for (code, layer, count) in all.iter() {
                    let labels = Labels(&tm.labels, [("code", text.format(*code)), ("layer", layer)]);
                    count.encode(m, &labels)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_http_status_code",
                "Status code of the last probe's final response, 0 if none.",
                None,
                Gauge,
            ),
            always,
            &|tm, m| gauge(m, &tm.labels, tm.status_code.load(Ordering::Relaxed)),
        )?;
        family(
            e,
            &all,
            (
                "tickr_probe_failures",
                "Failed probes, by reason.",
                None,
                Counter,
            ),
            always,
            &|tm, m| {
                for (reason, count) in Reason::ALL.iter().zip(&tm.failures) {
                    count.encode(m, &Labels(&tm.labels, [("reason", reason.as_str())]))?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_body_match",
                "1 if the last evaluated body satisfied the matcher, else 0.",
                None,
                Gauge,
            ),
            |tm| !tm.matchers.is_empty(),
            &|tm, m| {
                for (label, last, _) in tm.matchers.iter() {
                    let labels = Labels(&tm.labels, [("matcher", label.as_str())]);
                    gauge(m, &labels, last.load(Ordering::Relaxed))?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_body_mismatches",
                "Probes with an expected status whose body failed the matcher.",
                None,
                Counter,
            ),
            |tm| !tm.matchers.is_empty(),
            &|tm, m| {
                for (label, _, mismatches) in tm.matchers.iter() {
                    let labels = Labels(&tm.labels, [("matcher", label.as_str())]);
                    let v = mismatches.load(Ordering::Relaxed);
                    m.encode_family(&labels)?
                        .encode_counter::<EventLabel, _, u64>(&v, None)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_probe_state_changes",
                "Transitions between success and failure.",
                None,
                Counter,
            ),
            always,
            &|tm, m| {
                let v = tm.state_changes.load(Ordering::Relaxed);
                m.encode_family(&tm.labels)?
                    .encode_counter::<EventLabel, _, u64>(&v, None)
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_confirmations",
                "Follow-up probes after a failure, by result; not counted in tickr_probe_runs_total.",
                None,
                Counter,
            ),
            |tm| tm.confirmations.is_some(),
            &|tm, m| {
                for (result, count) in ["success", "failure"]
                    .iter()
                    .zip(tm.confirmations.iter().flatten())
                {
                    let v = count.load(Ordering::Relaxed);
                    m.encode_family(&Labels(&tm.labels, [("result", *result)]))?
                        .encode_counter::<EventLabel, _, u64>(&v, None)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_last_probe_timestamp",
                "When the last probe finished (before the first: when the target was loaded).",
                seconds,
                Gauge,
            ),
            always,
            &|tm, m| {
                let v = f64::from_bits(tm.last_probe.load(Ordering::Relaxed));
                gauge(m, &tm.labels, v)
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_probe_interval",
                "Configured time between the starts of two probes.",
                seconds,
                Gauge,
            ),
            |tm| tm.own.is_some(),
            &|tm, m| match &tm.own {
                Some(own) => gauge(m, &tm.labels, own.interval),
                None => Ok(()),
            },
        )?;
        family(
            e,
            &all,
            (
                "tickr_tls_cert_not_after_timestamp",
                "Earliest notAfter in the last certificate chain served, also when verification failed.",
                seconds,
                Gauge,
            ),
            |tm| tm.cert_not_after.load(Ordering::Relaxed) != NO_CERT,
            &|tm, m| gauge(m, &tm.labels, tm.cert_not_after.load(Ordering::Relaxed)),
        )?;
        family(
            e,
            &all,
            (
                "tickr_target",
                "Static facts about each configured target.",
                None,
                Info,
            ),
            |tm| tm.own.is_some(),
            &|tm, m| match &tm.own {
                Some(own) => {
                    let facts = own.facts.each_ref().map(|(k, v)| (*k, v.as_str()));
                    m.encode_info(&Labels(&tm.labels, facts))
                }
                None => Ok(()),
            },
        )
    }
}
