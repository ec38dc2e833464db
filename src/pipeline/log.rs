//! The log lines a probe leaves: one per failure with its evidence, the confirmation verdict,
//! and tickr's own shortages, rate-limited.

use std::time::Duration;

use crate::config::Target;
use crate::diagnosis::events::Confirmation;
use crate::diagnosis::layer::Attribution;
use crate::fds::Shortage;
use crate::probe::Outcome;

/// The `caller` of these lines, as it was before they moved here from the scheduler: log
/// filters and searches that operators wrote keep matching.
const CALLER: &str = "tickr::scheduler";

/// Every failed probe is one log line with the evidence; successes only at debug level.
pub fn log_outcome(target: &Target, o: &Outcome, event: u64, attribution: Option<&Attribution>) {
    let remote = o.remote.map(|a| a.to_string()).unwrap_or_default();
    let status = o.status.unwrap_or(0);
    let layer = attribution.map_or("", |a| a.layer.as_str());
    // The ids a server could have logged: empty when the probe sent none.
    let (request_id, trace_id) = match o.ids {
        Some(ids) => (
            ids.request_id.then(|| ids.request_id_value()),
            ids.traceparent.then(|| ids.trace_id.hex()),
        ),
        None => (None, None),
    };
    let p = &o.phases;
    match &o.failure {
        Some(f) => tracing::warn!(
            target: CALLER,
            target = %target.name,
            location = target.location(),
            reason = f.reason.as_str(),
            status,
            layer,
            remote = %remote,
            proxy = o.proxy.as_deref().unwrap_or_default(),
            event,
            request_id = request_id.as_ref().map_or("", |h| h.as_str()),
            trace_id = trace_id.as_ref().map_or("", |h| h.as_str()),
            error = %target.secrets().redact_str(&f.detail),
            resolve_ms = ms(p.resolve),
            connect_ms = ms(p.connect),
            proxy_ms = ms(p.proxy),
            tls_ms = ms(p.tls),
            processing_ms = ms(p.processing),
            transfer_ms = ms(p.transfer),
            total_ms = ms(Some(p.total)),
            "probe failed"
        ),
        None => {
            tracing::debug!(target: CALLER, target = %target.name, status, remote = %remote, total_ms = ms(Some(p.total)), "probe succeeded")
        }
    }
}

/// The verdict of a failure's follow-up probes.
pub(super) fn confirmed(target: &Target, event: u64, confirmation: &Confirmation) {
    tracing::info!(
        target: CALLER,
        target = %target.name,
        location = target.location(),
        event,
        verdict = confirmation.verdict(),
        failed = confirmation.failed,
        of = confirmation.probes,
        "failure confirmed"
    );
}

/// A probe tickr could not make: at most one warning every [`SHORTAGE_LOG_EVERY`] (a
/// shortage comes in bursts of thousands of probes), each at debug level.
pub(super) fn shortage(target: &Target, o: &Outcome, shortage: Shortage) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let detail = o.failure.as_ref().map_or("", |f| f.detail.as_str());
    let now = crate::time::since_epoch().as_secs();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + SHORTAGE_LOG_EVERY.as_secs()
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            target: CALLER,
            target = %target.name,
            cause = shortage.as_str(),
            error = %detail,
            fd_limit = crate::fds::limit(),
            "probe skipped: tickr is short of a resource of its own; not counted against the target (see tickr_probes_skipped_total)"
        );
    } else {
        tracing::debug!(target: CALLER, target = %target.name, cause = shortage.as_str(), error = %detail, "probe skipped");
    }
}

/// How often a shortage is logged at warning level.
const SHORTAGE_LOG_EVERY: Duration = Duration::from_secs(10);

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3)
}
