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
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Target;
use crate::fds::Shortage;
use crate::probe::Reason;

mod target;

use target::{EventLabel, Own, Targets, NO_CERT};
pub use target::{Summary, TargetLabels, TargetMetrics};

/// Buckets of `tickr_scheduler_lag_seconds`.
pub const LAG_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Status codes whose counters exist from the start, at zero (see the module docs).
pub const PRECREATED_CODES: [u16; 4] = [500, 502, 503, 504];

/// One series' labels: the target's, then the family's own.
struct Labels<'a, const N: usize>(&'a TargetLabels, [(&'static str, &'a str); N]);

impl<const N: usize> EncodeLabelSet for Labels<'_, N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)?;
        self.1.as_slice().encode(encoder)
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;
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
    series: Arc<Targets>,
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
        let series = Arc::new(Targets::default());
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
        let own = Own::of(target);
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

impl Collector for Targets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // A snapshot: probes and reloads go on while the scrape encodes.
        let all = self.snapshot();
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
                    let [url, method, interval, timeout] = own.facts.each_ref().map(String::as_str);
                    let facts = [
                        ("url", url),
                        ("method", method),
                        ("interval", interval),
                        ("timeout", timeout),
                    ];
                    m.encode_info(&Labels(&tm.labels, facts))
                }
                None => Ok(()),
            },
        )
    }
}
