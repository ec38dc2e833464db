//! Hints: plain-words observations drawn from a target's failures in the ring (one bad node,
//! a scheduled minute, a dominant reason, a stalling phase or layer).

use std::collections::{HashMap, HashSet};

use super::Event;
use crate::diagnosis::layer::UNKNOWN;

/// One observation about a target's failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub target: String,
    pub text: String,
}

/// Failures needed before a pattern is worth mentioning, and the share that makes a cluster.
const HINT_MIN_FAILURES: usize = 3;
const HINT_SHARE: f64 = 0.75;

/// The most common value among `values` and how often it occurs.
fn mode<T: Eq + std::hash::Hash + Clone>(values: impl Iterator<Item = T>) -> Option<(T, usize)> {
    let mut counts: HashMap<T, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n)
}

pub(super) fn hints_for(target: &str, failures: &[&Event], success: Option<&Event>) -> Vec<Hint> {
    if failures.len() < HINT_MIN_FAILURES {
        return Vec::new();
    }
    [
        bad_node(failures, success),
        scheduled_minute(failures),
        dominant_reason(failures),
        stalled_phase(failures),
        dominant_layer(failures),
    ]
    .into_iter()
    .flatten()
    .map(|text| Hint {
        target: target.to_owned(),
        text,
    })
    .collect()
}

/// Whether `count` of the failures is enough of them to call it a cluster.
fn clusters(count: usize, failures: &[&Event]) -> bool {
    count as f64 / failures.len() as f64 >= HINT_SHARE
}

/// One remote address behind most failures, while others answer: a bad node.
fn bad_node(failures: &[&Event], success: Option<&Event>) -> Option<String> {
    let n = failures.len();
    let addresses: HashSet<&str> = failures
        .iter()
        .filter_map(|e| e.remote.as_deref())
        .chain(success.and_then(|s| s.remote.as_deref()))
        .collect();
    let (addr, count) = mode(failures.iter().filter_map(|e| e.remote.as_deref()))?;
    if addresses.len() < 2 || !clusters(count, failures) {
        return None;
    }
    Some(format!(
        "{count} of {n} failures came from {addr}, while other addresses answered: one bad node or backend?"
    ))
}

/// The same minute of the hour, across different hours: something scheduled.
fn scheduled_minute(failures: &[&Event]) -> Option<String> {
    let n = failures.len();
    let hours: HashSet<i64> = failures.iter().map(|e| (e.time / 3600.0) as i64).collect();
    let (minute, count) = mode(
        failures
            .iter()
            .map(|e| ((e.time / 60.0) as i64).rem_euclid(60)),
    )?;
    if hours.len() < 2 || !clusters(count, failures) {
        return None;
    }
    Some(format!(
        "{count} of {n} failures happened at minute :{minute:02} of the hour, across {} hours: a cron job, backup or scheduled restart?",
        hours.len()
    ))
}

/// One reason dominating says which kind of trouble it is.
fn dominant_reason(failures: &[&Event]) -> Option<String> {
    let n = failures.len();
    let (reason, count) = mode(failures.iter().filter_map(|e| e.reason))?;
    if !clusters(count, failures) {
        return None;
    }
    let meaning = match reason {
        "timeout" => "the application is slow or hung, or a proxy waits on it: compare with the proxy's timeouts",
        "reset" => "connections are cut mid-request: crashes, restarts or a proxy closing them",
        "connect" => "nothing accepts connections: the service is down, restarting or out of file descriptors",
        "status" => "a layer answers with an error status: see which layer below",
        "tls" => "the TLS handshake fails: certificate or protocol configuration",
        "dns" => "the name does not resolve reliably",
        "proxy" => "the forward proxy refuses, fails or rejects the CONNECT (407: its credentials)",
        _ => "one kind of failure dominates",
    };
    Some(format!(
        "{count} of {n} failures are `{reason}`: {meaning}."
    ))
}

/// Timeouts stuck in one step point at the layer that stalls.
fn stalled_phase(failures: &[&Event]) -> Option<String> {
    let n = failures.len();
    let (step, count) = mode(failures.iter().filter_map(|e| {
        e.error
            .as_deref()
            .and_then(|m| m.split("stuck in ").nth(1))
            .map(|s| s.trim_end_matches(')').to_owned())
    }))?;
    (count >= HINT_MIN_FAILURES && clusters(count, failures))
        .then(|| format!("{count} of {n} failures timed out in the {step} phase."))
}

/// One layer generating most error responses.
fn dominant_layer(failures: &[&Event]) -> Option<String> {
    let n = failures.len();
    let (layer, count) = mode(
        failures
            .iter()
            .filter_map(|e| e.layer.as_deref())
            .filter(|l| *l != UNKNOWN),
    )?;
    clusters(count, failures)
        .then(|| format!("{count} of {n} failures were attributed to the {layer} layer."))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn event(id: u64, time: f64, remote: &str, reason: &'static str, layer: Option<&str>) -> Event {
        Event {
            id,
            time,
            target: "shop".into(),
            url: "https://shop.example/".into(),
            location: None,
            success: false,
            remote: Some(remote.into()),
            proxy: None,
            http_version: None,
            tls_version: None,
            status: Some(502),
            reason: Some(reason),
            error: None,
            phases_ms: Box::new([]),
            layer: layer.map(str::to_owned),
            evidence: None,
            relayed_by: vec![],
            chain: vec![],
            cut: false,
            body_bytes: 0,
            headers: vec![],
            body_excerpt: String::new(),
            redirects: 0,
            confirmation: Mutex::new(None),
            ids: None,
            request_id_header: None,
        }
    }

    #[test]
    fn hints_name_a_bad_node_a_scheduled_minute_and_a_dominant_reason() {
        // Four failures at :05 past four different hours, three from one address of two.
        let f: Vec<Event> = (0..4)
            .map(|h| {
                let remote = if h == 3 {
                    "10.0.0.2:443"
                } else {
                    "10.0.0.1:443"
                };
                event(
                    h,
                    1_800_000_000.0 - 1_800_000_000.0 % 3600.0 + (h as f64) * 3600.0 + 300.0,
                    remote,
                    "reset",
                    Some("nginx"),
                )
            })
            .collect();
        let refs: Vec<&Event> = f.iter().collect();
        let text: Vec<String> = hints_for("shop", &refs, None)
            .into_iter()
            .map(|h| h.text)
            .collect();
        assert!(
            text.iter().any(|t| t.contains("came from 10.0.0.1:443")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("minute :05")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("`reset`")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("nginx layer")), "{text:?}");
        // Two failures are no pattern.
        assert!(hints_for("shop", &refs[..2], None).is_empty());
    }
}
