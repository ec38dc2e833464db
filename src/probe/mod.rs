//! One probe of one target: a fresh connection, a request, a bounded read of the answer, and an
//! [`Outcome`] with per-phase timings and at most one failure [`Reason`]. Knows nothing of
//! Prometheus: the metrics stage above turns outcomes into samples.
//!
//! The steps are explicit (DNS, TCP, TLS, HTTP handshake) rather than a pooled client, so that each
//! phase can be timed and every probe measures what a new visitor would.
//!
//! Here: [`run`] (and [`fetch`], which keeps the body), the redirect loop and [`resolve_target`]. Below: `exchange` (one request on one
//! fresh connection, the steps of the context value a probe carries), `outcome` (the types of
//! [`Outcome`]), `budget` (the read budget), `resolve` and [`dns`] (addresses), `proxy` (the
//! same exchange through a forward proxy: CONNECT or plain forwarding), `trace` (the request
//! and trace ids each request carries), and `classify` (errors into exactly one [`Reason`]).

mod budget;
mod classify;
pub mod dns;
mod exchange;
mod outcome;
mod proxy;
mod resolve;
mod trace;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::LOCATION;
use http::Method;
use url::Url;

use crate::config::{ExpectTls, Target};

pub use outcome::{Failure, Outcome, Phase, Phases, Pinned, Reason};
pub use trace::{Ids, SpanId, TraceId, TRACEPARENT};

use crate::limits::MAX_REDIRECTS;
use exchange::{request_uri, Probe};
use resolve::resolve_for;

/// Runs one probe of `target`, entirely under its timeout.
pub async fn run(target: &Target) -> Outcome {
    run_pinned(target, None).await
}

/// Like [`run`], and the whole body of the final response when the probe succeeded (at most
/// the target's `max_body_bytes`): for reading a document, such as a target source's inventory.
pub async fn fetch(target: &Target) -> (Outcome, Option<Bytes>) {
    let mut probe = Probe::new(target, None);
    probe.keep_body = true;
    let out = finish(target, &mut probe, None).await;
    let body = probe.body.take().filter(|_| out.failure.is_none());
    (out, body)
}

/// Like [`run`], with the first connection going to `pinned` (Host and SNI stay the URL's).
pub async fn run_pinned(target: &Target, pinned: Option<Pinned>) -> Outcome {
    run_traced(target, pinned, None).await
}

/// Like [`run_pinned`], in the trace `continuing` if given (a follow-up probe of a failure
/// continues the failure's trace, with spans of its own), else in a new one.
pub async fn run_traced(
    target: &Target,
    pinned: Option<Pinned>,
    continuing: Option<TraceId>,
) -> Outcome {
    let mut probe = Probe::new(target, continuing);
    finish(target, &mut probe, pinned).await
}

/// Runs `probe` under the target's timeout and completes its outcome.
async fn finish(target: &Target, probe: &mut Probe<'_>, pinned: Option<Pinned>) -> Outcome {
    let start = Instant::now();
    let result = tokio::time::timeout(target.timeout, probe.follow(pinned)).await;
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(_) => {
            if probe.step == Phase::Transfer {
                probe.keep_cut_body();
            }
            Some(timed_out(target, probe))
        }
    };
    let mut out = std::mem::take(&mut probe.out);
    out.failure = failure;
    out.phases.total = start.elapsed();
    out
}

/// The failure of a probe its timeout cut short: `proxy` while it was still reaching the proxy
/// or waiting for its answer to CONNECT, else `timeout`.
fn timed_out(target: &Target, probe: &Probe<'_>) -> Failure {
    let step = probe.step.as_str();
    match &probe.out.proxy {
        Some(via) if matches!(probe.step, Phase::Resolve | Phase::Connect | Phase::Proxy) => {
            Failure::new(
                Reason::Proxy,
                format!(
                    "proxy {via}: no answer within {:?} (stuck in {step})",
                    target.timeout
                ),
            )
        }
        _ => Failure::new(
            Reason::Timeout,
            format!(
                "no complete answer within {:?} (stuck in {step})",
                target.timeout
            ),
        ),
    }
}

impl Probe<'_> {
    /// Requests the target's URL, follows redirects to the final response, reads its body and
    /// judges it.
    async fn follow(&mut self, pinned: Option<Pinned>) -> Result<(), Failure> {
        let target = self.target;
        let mut url = target.url.clone();
        let mut method = target.method.clone();
        let mut body = target.body();
        loop {
            let pin = pinned.filter(|_| self.out.redirects == 0);
            let (response, budget) = self.exchange(&url, pin, &method, body.clone()).await?;
            let code = response.status().as_u16();
            self.out.status = Some(code);
            self.out.http_version = Some(response.version());
            if let Some(next) = self.redirect(&url, code, response.headers())? {
                // Browsers turn a 303 (and a 301/302 after POST) into a GET without a body.
                if code == 303 || (matches!(code, 301 | 302) && method == Method::POST) {
                    method = Method::GET;
                    body = Bytes::new();
                }
                url = next;
                self.out.redirects += 1;
                continue;
            }
            self.out.headers = Some(response.headers().clone());
            let version = response.version();
            let (bytes, truncated) = self.transfer(response, budget).await?;
            if self.keep_body {
                self.body = Some(bytes.clone());
            }
            self.judge_tls()?;
            return self.judge(code, version, &bytes, truncated);
        }
    }

    /// Where a response sends the probe next, if it is a redirect the target follows.
    fn redirect(
        &self,
        url: &Url,
        code: u16,
        headers: &http::HeaderMap,
    ) -> Result<Option<Url>, Failure> {
        let redirect = self.target.follow_redirects && matches!(code, 301 | 302 | 303 | 307 | 308);
        let location = headers.get(LOCATION).and_then(|l| l.to_str().ok());
        let (true, Some(location)) = (redirect, location) else {
            return Ok(None);
        };
        if self.out.redirects >= MAX_REDIRECTS {
            return Err(Failure::new(
                Reason::Redirects,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        let next = url.join(location).map_err(|e| {
            Failure::new(
                Reason::Protocol,
                format!("redirect to an invalid location: {e}"),
            )
        })?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(Failure::new(
                Reason::Redirects,
                format!("redirect to unsupported scheme {:?}", next.scheme()),
            ));
        }
        // Refused here, before any lookup or connection for it.
        request_uri(&next)?;
        Ok(Some(next))
    }

    /// The final response's connection against `expect.tls`, before the response itself: an
    /// answer over the wrong kind of connection (a plain-HTTP portal, a forgotten redirect)
    /// says nothing about the service. Both ways fail with reason `tls`.
    fn judge_tls(&self) -> Result<(), Failure> {
        let secure = self.out.tls_version.is_some();
        match self.target.expect_tls {
            Some(ExpectTls::Required) if !secure => Err(Failure::new(
                Reason::Tls,
                "expect.tls is required, but the final response came over plain HTTP",
            )),
            Some(ExpectTls::Forbidden) if secure => Err(Failure::new(
                Reason::Tls,
                "expect.tls is forbidden, but the final response came over TLS",
            )),
            _ => Ok(()),
        }
    }

    /// The final response against what the target expects: its status, its HTTP version, its
    /// headers, its size, then each body matcher (all matchers evaluated, for `matches`; the
    /// first that fails names the failure).
    fn judge(
        &mut self,
        status: u16,
        version: http::Version,
        body: &[u8],
        truncated: bool,
    ) -> Result<(), Failure> {
        let target = self.target;
        if !target.expect_status.iter().any(|p| p.matches(status)) {
            return Err(Failure::new(
                Reason::Status,
                format!("unexpected status {status}"),
            ));
        }
        if !target.http_versions.is_empty() && !target.http_versions.contains(&version) {
            return Err(Failure::new(
                Reason::Protocol,
                format!("answered over {version:?}, which expect.http_versions does not list"),
            ));
        }
        let headers = self.out.headers.as_ref();
        self.out.header_matches = (target.header_checks.iter())
            .map(|c| headers.is_some_and(|h| c.is_satisfied_by(h)))
            .collect();
        if let Some((c, _)) = (target.header_checks.iter())
            .zip(&self.out.header_matches)
            .find(|(_, ok)| !**ok)
        {
            let present = headers.is_some_and(|h| h.contains_key(&c.name));
            let detail = if present {
                format!("header {} fails the check {:?}", c.name, c.matcher.label)
            } else {
                format!("header {} is missing (check {:?})", c.name, c.matcher.label)
            };
            return Err(Failure::new(Reason::HeaderMismatch, detail));
        }
        if truncated {
            let limit = target.max_body_bytes;
            return Err(Failure::new(
                Reason::TooLarge,
                format!("body exceeds max_body_bytes ({limit} bytes)"),
            ));
        }
        self.out.matches = target
            .matchers
            .iter()
            .map(|m| m.is_satisfied_by(body))
            .collect();
        if let Some((m, _)) = target
            .matchers
            .iter()
            .zip(&self.out.matches)
            .find(|(_, ok)| !**ok)
        {
            let verb = match (m.negate, m.pattern.is_some()) {
                (true, false) => "contains",
                (false, false) => "does not contain",
                (true, true) => "matches",
                (false, true) => "does not match",
            };
            return Err(Failure::new(
                Reason::BodyMismatch,
                format!("body {verb} {:?}", m.label),
            ));
        }
        Ok(())
    }
}

/// Every address of the target's host (of the configured family), at most `limit`, in the
/// resolver's order; and how long the lookup took.
pub async fn resolve_target(
    target: &Target,
    limit: usize,
) -> Result<(Vec<SocketAddr>, Duration), Failure> {
    let started = Instant::now();
    let mut addrs = resolve_for(target, &target.url).await?;
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs.truncate(limit);
    Ok((addrs, started.elapsed()))
}
