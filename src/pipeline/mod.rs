//! What happens after a probe, in order: attribute → record the event → count → log → confirm.
//!
//! [`Pipeline`] holds what every probe shares (metrics, recorder, diagnosis settings); [`Edge`]
//! and [`Addresses`] are what a target carries from one probe to the next.

mod confirm;
mod log;
mod rounds;

use std::sync::{Arc, RwLock};

use crate::config::{Diagnosis, Target};
use crate::diagnosis::events::Recorder;
use crate::diagnosis::layer::{Attribution, Chain, UNKNOWN};
use crate::metrics::{Metrics, TargetMetrics};
use crate::probe::{self, Outcome, Pinned, TraceId};

pub use log::log_outcome;
pub use rounds::Addresses;

/// The path every probe's outcome takes, shared by all probe tasks. Diagnosis settings are
/// replaced on reload without restarting the tasks.
#[derive(Debug)]
pub struct Pipeline {
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    diagnosis: RwLock<Arc<Diagnosis>>,
}

impl Pipeline {
    pub fn new(metrics: Arc<Metrics>, recorder: Arc<Recorder>, diagnosis: &Diagnosis) -> Self {
        Self {
            metrics,
            recorder,
            diagnosis: RwLock::new(Arc::new(diagnosis.clone())),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Takes a reloaded configuration's diagnosis settings, for the probes from now on.
    pub fn reconfigure(&self, diagnosis: &Diagnosis) {
        *self.diagnosis.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(diagnosis.clone());
        self.recorder.set_capacity(diagnosis.events);
    }

    /// Drops a removed target's events.
    pub fn forget(&self, target: &str) {
        self.recorder.forget(target);
    }

    fn diagnosis(&self) -> Arc<Diagnosis> {
        self.diagnosis
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Probes `target` now (at `pinned`'s address, if given) and records the outcome.
    pub async fn probe(
        &self,
        target: &Target,
        tm: &TargetMetrics,
        pinned: Option<Pinned>,
        edge: &mut Edge,
    ) {
        let outcome = self.run(target, pinned, None).await;
        self.record(target, tm, &outcome, edge, pinned).await;
    }

    /// One probe, counted in flight while it runs; in the trace `continuing`, or a new one.
    async fn run(
        &self,
        target: &Target,
        pinned: Option<Pinned>,
        continuing: Option<TraceId>,
    ) -> Outcome {
        self.metrics.in_flight.inc();
        let _in_flight = DecOnDrop(&self.metrics);
        probe::run_traced(target, pinned, continuing).await
    }

    /// Everything that follows from an outcome: attribution, the event, the series, the log
    /// line and, after a failure, the confirmations.
    async fn record(
        &self,
        target: &Target,
        tm: &TargetMetrics,
        outcome: &Outcome,
        edge: &mut Edge,
        pinned: Option<Pinned>,
    ) {
        if let Some(shortage) = outcome.shortage() {
            // tickr's own trouble, not the target's: no event, no series of the target, no
            // confirmation (which would only meet the same shortage).
            self.metrics.probe_skipped(shortage);
            log::shortage(target, outcome, shortage);
            return;
        }
        let diagnosis = self.diagnosis();
        let attribution = edge.attribute(outcome, &diagnosis);
        let event = self
            .recorder
            .record(target, outcome, attribution.as_ref(), &diagnosis);
        tm.record(
            outcome,
            Some(event.id),
            attribution.as_ref().map(|a| a.layer.as_str()),
        );
        log_outcome(target, outcome, event.id, attribution.as_ref());
        if !outcome.success() && target.confirm > 0 {
            let trace = outcome.ids.map(|i| i.trace_id);
            let confirmation = self.confirm(target, tm, pinned, trace).await;
            log::confirmed(target, event.id, &confirmation);
            event.set_confirmation(confirmation);
        }
    }
}

/// The product tickr connects to, and the chain behind it, as last seen in a response: blamed
/// for failures that never got one. A target keeps one, a per-address target one per address.
#[derive(Debug, Default)]
pub struct Edge {
    layer: Option<&'static str>,
    chain: Chain,
}

impl Edge {
    /// Which layer to blame: for a 5xx, the one whose fingerprint the response carries; for a
    /// response whose body broke off, the first hop (it closed the connection, on its own or
    /// passing on a break behind it); for a failure without any response, the first hop as
    /// last seen. Every response updates it.
    fn attribute(&mut self, o: &Outcome, d: &Diagnosis) -> Option<Attribution> {
        if let Some(headers) = &o.headers {
            let chain = Chain::read(headers);
            if let Some(seen) = chain.edge() {
                self.layer = Some(seen);
            }
            let attribution = if o.status.is_some_and(|s| s >= 500) {
                Some(d.attributor.attribute_in(headers, &o.body_head, &chain))
            } else if o.cut {
                Some(cut(o, &chain))
            } else {
                None
            };
            self.chain = chain;
            return attribution;
        }
        o.failure.as_ref()?;
        Some(match self.layer {
            Some(layer) => Attribution {
                layer: layer.to_owned(),
                evidence: format!("no response; the first hop last answered as {layer}"),
                relayed_by: Vec::new(),
                chain: self.chain.texts(),
            },
            None => Attribution {
                layer: UNKNOWN.to_owned(),
                evidence: "no response, and no earlier answer to judge the first hop by".into(),
                relayed_by: Vec::new(),
                chain: self.chain.texts(),
            },
        })
    }
}

/// The verdict on a response whose body broke off: the first hop ended it.
fn cut(o: &Outcome, chain: &Chain) -> Attribution {
    let layer = chain.edge().unwrap_or(UNKNOWN);
    let evidence = match chain.edge() {
        Some(edge) => format!(
            "the body broke off after {} bytes: {edge}, the first hop, ended the \
             response (on its own, or passing on a break behind it)",
            o.body_bytes
        ),
        None => format!(
            "the body broke off after {} bytes, and no header names the first hop",
            o.body_bytes
        ),
    };
    Attribution::new(layer, evidence, &chain.relays_of(layer), chain)
}

struct DecOnDrop<'a>(&'a Metrics);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Failure, Reason};

    fn diagnosis() -> Diagnosis {
        let text = "targets:\n  - name: t\n    url: https://example.com/\n";
        crate::config::parse(std::path::Path::new("config.yml"), text)
            .expect("valid")
            .diagnosis
    }

    fn answered(server: &str, status: u16) -> Outcome {
        let mut headers = http::HeaderMap::new();
        headers.insert("server", server.parse().expect("header value"));
        Outcome {
            status: Some(status),
            headers: Some(headers),
            ..Outcome::default()
        }
    }

    fn unanswered() -> Outcome {
        Outcome {
            failure: Some(Failure::new(Reason::Connect, "refused")),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_failure_without_a_response_blames_the_edge_last_seen() {
        let d = diagnosis();
        let mut edge = Edge::default();
        let first = edge.attribute(&unanswered(), &d).expect("attributed");
        assert_eq!(first.layer, UNKNOWN);
        assert!(edge.attribute(&answered("cloudflare", 200), &d).is_none());
        let later = edge.attribute(&unanswered(), &d).expect("attributed");
        assert_eq!(later.layer, "cloudflare");
        assert!(later.evidence.contains("last answered as cloudflare"));
    }

    #[test]
    fn a_dead_varnish_in_front_of_apache_is_blamed_not_the_server_it_passed_on() {
        let d = diagnosis();
        let mut edge = Edge::default();
        let mut ok = answered("Apache/2.4.62 (Debian)", 200);
        if let Some(h) = ok.headers.as_mut() {
            h.insert(
                "via",
                "1.1 varnish (Varnish/7.1)".parse().expect("header value"),
            );
        }
        assert!(edge.attribute(&ok, &d).is_none());
        let refused = edge.attribute(&unanswered(), &d).expect("attributed");
        assert_eq!(refused.layer, "varnish");
        assert_eq!(refused.chain.len(), 2, "{:?}", refused.chain);
    }
}
