//! Follow-up probes after a failure: they tell a transient failure from a persistent one.

use crate::config::Target;
use crate::diagnosis::events::Confirmation;
use crate::metrics::TargetMetrics;
use crate::probe::{Pinned, TraceId};

use super::Pipeline;

impl Pipeline {
    /// Each follow-up on a fresh connection (to the same address when probing per address).
    /// Counted apart, so the schedule's counters stay one per slot; a follow-up tickr could not
    /// make for a shortage of its own is counted as skipped and not at all in the verdict.
    /// Follow-ups continue the failure's `trace` (each request a span of its own), so that one
    /// search for its id finds them next to the failure in the servers' logs.
    pub(super) async fn confirm(
        &self,
        target: &Target,
        tm: &TargetMetrics,
        pinned: Option<Pinned>,
        trace: Option<TraceId>,
    ) -> Confirmation {
        let (mut probes, mut failed) = (0, 0);
        for _ in 0..target.confirm {
            tokio::time::sleep(target.confirm_delay).await;
            let outcome = self.run(target, pinned, trace).await;
            if let Some(shortage) = outcome.shortage() {
                self.metrics.probe_skipped(shortage);
                continue;
            }
            tm.record_confirmation(outcome.success());
            probes += 1;
            failed += usize::from(!outcome.success());
        }
        Confirmation { probes, failed }
    }
}
