//! What a probe returns: its [`Outcome`] (the only output), the per-phase timings and the one
//! failure [`Reason`], if any. Plain values: nothing here knows how they are counted or shown.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Version;

use super::trace::Ids;
use crate::fds::Shortage;

/// Why a probe failed: exactly one per failed probe. The strings are label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Dns,
    Connect,
    Tls,
    Timeout,
    Reset,
    Protocol,
    Status,
    BodyMismatch,
    HeaderMismatch,
    TooLarge,
    Redirects,
    /// The forward proxy could not be reached, failed, or refused the CONNECT (407 included).
    Proxy,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Reset,
        Reason::Protocol,
        Reason::Status,
        Reason::BodyMismatch,
        Reason::HeaderMismatch,
        Reason::TooLarge,
        Reason::Redirects,
        Reason::Proxy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Reset => "reset",
            Reason::Protocol => "protocol",
            Reason::Status => "status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::TooLarge => "too_large",
            Reason::Redirects => "redirects",
            Reason::Proxy => "proxy",
        }
    }
}

/// A failed probe: the reason (a fixed label value) and a human-readable detail for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
    /// Set when the probe failed for want of something on tickr's side (a descriptor, a
    /// local port): then it is no evidence about the target at all.
    pub shortage: Option<Shortage>,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            shortage: None,
        }
    }

    /// The failure of a system call for `what`: tickr's own shortage when the error says so.
    pub(super) fn io(reason: Reason, what: impl std::fmt::Display, e: &io::Error) -> Self {
        Self {
            shortage: Shortage::of(e),
            ..Self::new(reason, format!("{what}: {e}"))
        }
    }
}

/// The phases of a probe, in order. `Total` spans the whole probe, redirects included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Resolve,
    Connect,
    /// Through a forward proxy: the CONNECT exchange (and the TLS handshake with an `https://`
    /// proxy). Only probes that go through one have it.
    Proxy,
    Tls,
    Processing,
    Transfer,
    Total,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Proxy,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
        Phase::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Proxy => "proxy",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
            Phase::Total => "total",
        }
    }
}

/// Time spent in each phase; `None` for phases the probe never finished (or never needed, like
/// TLS over plain HTTP). Across redirects, each phase is the sum over all hops.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    pub resolve: Option<Duration>,
    pub connect: Option<Duration>,
    pub proxy: Option<Duration>,
    pub tls: Option<Duration>,
    pub processing: Option<Duration>,
    pub transfer: Option<Duration>,
    pub total: Duration,
}

impl Phases {
    pub fn get(&self, phase: Phase) -> Option<Duration> {
        match phase {
            Phase::Resolve => self.resolve,
            Phase::Connect => self.connect,
            Phase::Proxy => self.proxy,
            Phase::Tls => self.tls,
            Phase::Processing => self.processing,
            Phase::Transfer => self.transfer,
            Phase::Total => Some(self.total),
        }
    }

    pub(super) fn add(&mut self, phase: Phase, d: Duration) {
        let slot = match phase {
            Phase::Resolve => &mut self.resolve,
            Phase::Connect => &mut self.connect,
            Phase::Proxy => &mut self.proxy,
            Phase::Tls => &mut self.tls,
            Phase::Processing => &mut self.processing,
            Phase::Transfer => &mut self.transfer,
            Phase::Total => {
                self.total += d;
                return;
            }
        };
        *slot = Some(slot.unwrap_or_default() + d);
    }
}

/// Everything one probe saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub failure: Option<Failure>,
    /// Status of the final response, if one arrived.
    pub status: Option<u16>,
    pub phases: Phases,
    /// The address of the last connection attempted (the proxy's, through a proxy).
    pub remote: Option<SocketAddr>,
    /// The proxy the last request went through (its URL as shown: credentials replaced);
    /// `None` when it went direct.
    pub proxy: Option<std::sync::Arc<str>>,
    pub http_version: Option<Version>,
    /// The TLS version the final response's connection negotiated (`TLS 1.2`, `TLS 1.3`);
    /// `None` when it was plain HTTP or its handshake did not complete.
    pub tls_version: Option<&'static str>,
    /// That connection's cipher suite, by its IANA name (`TLS13_AES_256_GCM_SHA384`).
    pub tls_cipher: Option<&'static str>,
    /// Earliest `notAfter` (Unix seconds) of the last certificate chain presented.
    pub cert_not_after: Option<i64>,
    /// The leaf (DER) of the last certificate chain presented, also when it did not verify.
    pub cert_leaf: Option<Bytes>,
    /// Whether that chain verified against the target's roots for its server name, also under
    /// `insecure_skip_verify` (which accepts it either way).
    pub chain_verified: Option<bool>,
    /// One entry per configured matcher, when they were evaluated: only on a final response with
    /// an expected status and a body within `max_body_bytes`.
    pub matches: Vec<bool>,
    /// Likewise for each configured header check.
    pub header_matches: Vec<bool>,
    pub redirects: u8,
    /// Headers of the final response, if one arrived.
    pub headers: Option<http::HeaderMap>,
    /// The start of the final response's body (at most [`BODY_HEAD`](crate::limits::BODY_HEAD) bytes): enough to recognise
    /// an error page, bounded whatever `max_body_bytes` allows. Of a body that broke off,
    /// what arrived.
    pub body_head: Bytes,
    /// How many bytes of the final response's body arrived.
    pub body_bytes: u64,
    /// The final response's head arrived and its body broke off (a reset, a premature close, an
    /// h2 `RST_STREAM`, the timeout): a response, but not a whole one.
    pub cut: bool,
    /// The request id and trace ids the last request sent carried; `None` when no request was
    /// sent, or the target sends neither header.
    pub ids: Option<Ids>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The probe could not be made for want of something on tickr's side: it tells nothing
    /// about the target.
    pub fn shortage(&self) -> Option<Shortage> {
        self.failure.as_ref()?.shortage
    }
}

/// A first hop decided before the probe: per-address probing resolves once, then probes every
/// address, each timed as if it had done the lookup itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub addr: SocketAddr,
    pub resolve: Duration,
}
