//! Turns probe outcomes into Prometheus samples, and encodes the exposition: [`Metrics`] holds
//! the registry of exporter-wide series and every target's; `target.rs` is a target's block of
//! atomics, `histogram.rs` its phase histograms, `families.rs` the table of per-target families
//! and `encode.rs` their text.
//!
//! Each target owns its series in one [`TargetMetrics`]: counters, gauges and the buckets of
//! its phase histograms as plain atomics, the rest under one lock, with the exemplars of
//! failures (and whatever else only some targets need) kept apart in a box that a target that
//! never fails does not allocate. Recording an outcome takes that lock once and a handful of
//! atomic operations. At scrape time, prometheus-client encodes the exporter-wide registry,
//! then the families are written here, walking the targets once per family with each target's
//! labels rendered once; the sink may wait for the client between chunks, where nothing is
//! locked. prometheus-client's own histograms (two `Arc`s, a lock, a bucket vector and an
//! exemplar map each, about 500 bytes) and before them fourteen `Family` maps (10.5 KB per
//! target) were measured and replaced; prometheus-client cannot encode exemplars it does not
//! store itself, so the per-target text is written here, byte for byte as it would write it
//! (the golden exposition and a test against its histograms pin that).
//!
//! Counters a user alerts on (runs by result, failures by reason, the gateway 5xx codes, body
//! mismatches) exist at zero from the target's start: a series that appears already at 1 hides
//! its first increment from `increase()`, and the first 502 is the one that matters.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::config::{Shard, Target};
use crate::fds::Shortage;

mod encode;
mod families;
mod histogram;
pub mod probe;
mod sources;
mod target;
pub mod text;

use families::FAMILIES;
pub use sources::SourceMetrics;
use target::Targets;
pub use target::{Summary, TargetLabels, TargetMetrics};

/// Buckets of `tickr_scheduler_lag_seconds`.
pub const LAG_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Status codes whose counters exist from the start, at zero (see the module docs).
pub const PRECREATED_CODES: [u16; 4] = [500, 502, 503, 504];

type FloatGauge = Gauge<f64, AtomicU64>;

/// Where [`Metrics::stream`] writes an exposition.
pub trait Sink {
    /// Takes more text. Must not wait: the encoder may hold a series' lock meanwhile.
    fn write(&mut self, text: &str);
    /// Called between two targets' series, where the encoder holds no lock: the place to
    /// wait for a slow client. `Err` ends the encoding.
    fn pause(&mut self) -> fmt::Result;
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
    pub sources: SourceMetrics,
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
    /// The metrics of a lone tickr (the only shard).
    pub fn new() -> Self {
        Self::of_shard(&Shard::default())
    }

    /// The metrics of `shard`, which `tickr_shard_info` shows.
    pub fn of_shard(shard: &Shard) -> Self {
        let mut r = Registry::default();
        let series = Arc::new(Targets::default());
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
        let sources = SourceMetrics::register(&mut r);
        r.register(
            "tickr_shard",
            "Which shard this tickr is: index of count, each target owned by replicas of them",
            Info::new(vec![
                ("index", shard.index().to_string()),
                ("count", shard.count().to_string()),
                ("replicas", shard.replicas().to_string()),
            ]),
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
            sources,
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
        self.encode_as(Format::OpenMetrics)
    }

    /// The whole exposition in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        let done = self.stream(Collect(String::with_capacity(64 * 1024)), format);
        done.expect("collecting into a String cannot fail").0
    }

    /// Encodes the exposition into `sink`, which may wait for a slow client in
    /// [`Sink::pause`]: that is called between chunks of the targets' series, where no lock
    /// of any series is held, so a scraper that stops reading never holds up the probes that
    /// record into those series. Returns the sink, or `Err` once the sink gave up.
    pub fn stream<S: Sink>(&self, sink: S, format: Format) -> Result<S, fmt::Error> {
        stream(&self.registry, &self.series.snapshot(), sink, format)
    }

    /// Creates the series of `target` (at zero) and returns the handles to record its outcomes.
    pub fn register_target(&self, target: &Target) -> Arc<TargetMetrics> {
        let own = self.series.own(target);
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
        parent.add_child(ip, tm.clone());
        tm
    }

    /// Forgets an address that no longer resolves, with its series.
    pub fn remove_address(&self, parent: &TargetMetrics, ip: IpAddr) {
        if let Some(tm) = parent.take_child(ip) {
            tm.remove();
        }
    }
}

/// The two expositions `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (see [`text`]).
    Text,
}

/// Writes `registry` (by prometheus-client), then every family of [`FAMILIES`] of `all` (by
/// [`encode`]), then (in OpenMetrics) `# EOF`. In the text format, the exporter-wide series and
/// each family's descriptor are rewritten from OpenMetrics ([`text::to_text`]); the targets'
/// samples, nearly all of the text, are the same lines in both but for the exemplars, so they
/// are written once, as they go out.
pub(crate) fn stream<S: Sink>(
    registry: &Registry,
    all: &[Arc<TargetMetrics>],
    mut sink: S,
    format: Format,
) -> Result<S, fmt::Error> {
    let mut text = String::with_capacity(CHUNK + 16 * 1024);
    prometheus_client::encoding::text::encode_registry(&mut text, registry)?;
    let openmetrics = format == Format::OpenMetrics;
    if !openmetrics {
        text = text::to_text(&text);
    }
    for family in FAMILIES.iter() {
        // A family that no target has is left out, descriptor included.
        if !all.iter().any(|tm| (family.has)(tm)) {
            continue;
        }
        if openmetrics {
            encode::descriptor(&mut text, family);
        } else {
            let mut descriptor = String::new();
            encode::descriptor(&mut descriptor, family);
            text.push_str(&text::to_text(&descriptor));
        }
        for tm in all.iter().filter(|tm| (family.has)(tm)) {
            family.write(tm, &mut text, openmetrics)?;
            if text.len() >= CHUNK {
                sink.write(&text);
                text.clear();
                // `write` has released whatever it locked.
                sink.pause()?;
            }
        }
    }
    if openmetrics {
        text.push_str("# EOF\n");
    }
    sink.write(&text);
    Ok(sink)
}

/// How much text is gathered before the sink takes it (and may wait for the client).
const CHUNK: usize = 32 * 1024;

/// A sink that keeps everything, for [`Metrics::encode`] and `/probe`.
pub(crate) struct Collect(pub(crate) String);

impl Sink for Collect {
    fn write(&mut self, text: &str) {
        self.0.push_str(text);
    }

    fn pause(&mut self) -> fmt::Result {
        Ok(())
    }
}
