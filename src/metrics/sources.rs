//! The self-metrics of target sources: whether each one's last refresh worked, how its
//! refreshes went, and how many targets it runs (and drops, as invalid or as a clash).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// `tickr_target_source_*`, by `source`.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    success: Family<Labels, Gauge>,
    refreshes: Family<Labels, Counter>,
    targets: Family<Labels, Gauge>,
    dropped: Family<Labels, Gauge>,
}

/// Why a source's entry runs no target.
const DROPPED: [&str; 2] = ["clash", "invalid"];

impl SourceMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "tickr_target_source_refresh_success",
            "1 if the last refresh of the target source succeeded (its targets are current), 0 if it failed (its previous targets stay)",
            m.success.clone(),
        );
        r.register(
            "tickr_target_source_refreshes",
            "Refreshes of the target source, by result",
            m.refreshes.clone(),
        );
        r.register(
            "tickr_target_source_targets",
            "Targets the source runs now",
            m.targets.clone(),
        );
        r.register(
            "tickr_target_source_dropped_targets",
            "Entries of the source's last good refresh that run no target: invalid, or a name an earlier source or the file already has (clash)",
            m.dropped.clone(),
        );
        m
    }

    /// Creates a source's series (the refresh counters at zero), if they are not there yet.
    pub fn add(&self, source: &str) {
        for result in ["success", "failure"] {
            let _ = self.refreshes.get_or_create(&refresh(source, result));
        }
    }

    /// Counts one refresh, and sets the success gauge from it.
    pub fn refreshed(&self, source: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.refreshes.get_or_create(&refresh(source, result)).inc();
        self.success.get_or_create(&of(source)).set(i64::from(ok));
    }

    /// Sets what the source runs now and what it dropped.
    pub fn set_counts(&self, source: &str, targets: usize, invalid: usize, clashes: usize) {
        self.targets.get_or_create(&of(source)).set(targets as i64);
        for (reason, n) in DROPPED.iter().zip([clashes, invalid]) {
            let labels = vec![
                ("source", source.to_owned()),
                ("reason", (*reason).to_owned()),
            ];
            self.dropped.get_or_create(&labels).set(n as i64);
        }
    }

    /// Sets how many targets `/probe` adopted run now (`source="probe"`, which has no
    /// refreshes).
    pub fn set_targets(&self, source: &str, targets: usize) {
        self.targets.get_or_create(&of(source)).set(targets as i64);
    }

    /// Removes every series of a source that is no longer configured.
    pub fn remove(&self, source: &str) {
        self.success.remove(&of(source));
        self.targets.remove(&of(source));
        for result in ["success", "failure"] {
            self.refreshes.remove(&refresh(source, result));
        }
        for reason in DROPPED {
            let labels = vec![("source", source.to_owned()), ("reason", reason.to_owned())];
            self.dropped.remove(&labels);
        }
    }
}

fn of(source: &str) -> Labels {
    vec![("source", source.to_owned())]
}

fn refresh(source: &str, result: &str) -> Labels {
    vec![("source", source.to_owned()), ("result", result.to_owned())]
}
