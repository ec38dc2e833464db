//! Turns probe outcomes into Prometheus samples, and encodes the exposition: [`Metrics`] holds
//! the registry, the exporter-wide series and every target's; `target.rs` is a target's block
//! of atomics, `families.rs` the table of per-target families that the collector here walks.
//!
//! Each target owns its series in one [`TargetMetrics`]: counters and gauges as plain atomics,
//! each phase histogram as prometheus-client's (which keeps per-bucket exemplars). Recording an
//! outcome is a handful of atomic operations, and a target costs about 4.6 KB with every phase
//! histogram (1.6 KB with `total` only). At scrape time, the collector walks the targets once
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
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::config::{Shard, Target};
use crate::fds::Shortage;

mod families;
pub mod probe;
mod sources;
mod target;
pub mod text;

use families::FAMILIES;
pub use sources::SourceMetrics;
use target::{Own, Targets};
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

/// The collector: every family of [`FAMILIES`] in turn, each with every target's series, and a
/// [`pause`] after each target's, where nothing is locked.
impl Collector for Targets {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        encode_targets(&self.snapshot(), encoder)
    }
}

/// Every family of [`FAMILIES`] of `all`.
fn encode_targets(all: &[Arc<TargetMetrics>], mut encoder: DescriptorEncoder) -> fmt::Result {
    for family in FAMILIES.iter() {
        // A family that no target has is left out, descriptor included.
        if !all.iter().any(|tm| (family.has)(tm)) {
            continue;
        }
        let unit = family.unit.as_ref();
        let mut metric = encoder.encode_descriptor(family.name, family.help, unit, family.kind)?;
        for tm in all.iter().filter(|tm| (family.has)(tm)) {
            family.write(tm, &mut metric)?;
            // `write` has released whatever it locked.
            pause()?;
        }
    }
    Ok(())
}
