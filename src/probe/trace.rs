//! The ids a probe sends so that the servers it passes through can log them: a W3C Trace
//! Context `traceparent` (one trace id per probe, a new span id per request) and a request id
//! header (`X-Request-Id`) holding the same trace id, so both lead to the same log lines.
//!
//! Random bytes come from a per-thread pool filled from the operating system's generator a
//! kilobyte at a time: unpredictable ids without a system call per probe.

use std::cell::RefCell;
use std::fmt;

use http::header::{HeaderMap, HeaderValue};

use crate::config::Target;
pub use crate::config::TRACEPARENT;

/// A trace id: 16 random bytes, never all zero. Shown as 32 lower-case hex digits, which is
/// also the request id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span id (Trace Context's `parent-id`): 8 random bytes, never all zero; 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    pub fn random() -> Self {
        Self(nonzero_random())
    }

    /// 32 lower-case hex digits.
    pub fn hex(&self) -> Hex<32> {
        Hex::of(&self.0)
    }
}

impl SpanId {
    pub fn random() -> Self {
        Self(nonzero_random())
    }

    /// 16 lower-case hex digits.
    pub fn hex(&self) -> Hex<16> {
        Hex::of(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Lower-case hex (or a `traceparent` value) on the stack: `N` ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    fn of(bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        debug_assert_eq!(bytes.len() * 2, N);
        let mut out = [0; N];
        for (i, b) in bytes.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII")
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).expect("hex is a valid header value")
    }
}

/// What a probe's requests carry: its trace id, the span id of the request being (or last) sent,
/// and which headers carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: TraceId,
    /// The span id of the last request sent: `traceparent`'s `parent-id`, new for each request
    /// (each redirect hop, each follow-up probe).
    pub span_id: SpanId,
    /// `traceparent`'s sampled flag (`01` or `00`).
    pub sampled: bool,
    /// Whether the requests carry `traceparent`.
    pub traceparent: bool,
    /// Whether they carry the target's request id header (its value: the trace id).
    pub request_id: bool,
}

impl Ids {
    /// The ids of a probe of `target`: in the trace `continuing` (a follow-up of a failure) or a
    /// new one. `None` when the target sends neither header: then no randomness is drawn.
    pub fn start(target: &Target, continuing: Option<TraceId>) -> Option<Self> {
        if target.request_id.is_none() && target.traceparent.is_none() {
            return None;
        }
        Some(Self {
            trace_id: continuing.unwrap_or_else(TraceId::random),
            span_id: SpanId::random(),
            sampled: target.traceparent.is_some_and(|t| t.sampled),
            traceparent: target.traceparent.is_some(),
            request_id: target.request_id.is_some(),
        })
    }

    /// The value of the request id header: the trace id's 32 hex digits.
    pub fn request_id_value(&self) -> Hex<32> {
        self.trace_id.hex()
    }

    /// `00-<trace id>-<span id>-<flags>` (version 00 of W3C Trace Context).
    pub fn traceparent_value(&self) -> Hex<55> {
        let mut out = [0; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id.hex().0);
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id.hex().0);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        Hex(out)
    }

    /// A new span id for the next request, and its headers in `headers` (replacing any of the
    /// same name: validation already let a configured header win where it should).
    pub(super) fn stamp(&mut self, target: &Target, headers: &mut HeaderMap) {
        self.span_id = SpanId::random();
        if self.traceparent {
            headers.insert(TRACEPARENT, self.traceparent_value().header_value());
        }
        if let Some(name) = &target.request_id {
            headers.insert(name.clone(), self.request_id_value().header_value());
        }
    }
}

/// `N` random bytes, not all zero (which Trace Context forbids; a chance of 2⁻⁶⁴ at worst).
fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes = random::<N>();
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

/// How many random bytes a thread draws at once: about 40 probes' worth (16 for the trace id,
/// 8 per request).
const POOL_BYTES: usize = 1024;

struct Pool {
    bytes: [u8; POOL_BYTES],
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { bytes: [0; POOL_BYTES], used: POOL_BYTES })
    };
}

/// `N` bytes from this thread's pool, refilled when it runs out.
fn random<const N: usize>() -> [u8; N] {
    POOL.with_borrow_mut(|pool| {
        if pool.used + N > POOL_BYTES {
            pool.refill();
        }
        let mut out = [0; N];
        out.copy_from_slice(&pool.bytes[pool.used..pool.used + N]);
        pool.used += N;
        out
    })
}

impl Pool {
    fn refill(&mut self) {
        use ring::rand::SecureRandom;
        if ring::rand::SystemRandom::new()
            .fill(&mut self.bytes)
            .is_err()
        {
            // The system generator does not fail on any platform tickr runs on; if it ever
            // did, ids from std's randomly keyed hasher still differ from probe to probe.
            fallback(&mut self.bytes);
        }
        self.used = 0;
    }
}

fn fallback(bytes: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let now = crate::time::since_epoch().as_nanos();
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u128(now);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn target(yaml: &str) -> Target {
        let text = format!("targets:\n  - name: t\n    url: http://example.com/\n{yaml}");
        let mut config =
            crate::config::parse(std::path::Path::new("config.yml"), &text).expect("valid");
        std::sync::Arc::unwrap_or_clone(config.targets.remove(0))
    }

    /// Trace Context's grammar for version 00, checked by hand rather than with the code
    /// under test: `00-` 32 lower-case hex `-` 16 lower-case hex `-` 2 hex.
    fn is_w3c_traceparent(v: &str) -> bool {
        let parts: Vec<&str> = v.split('-').collect();
        let hex = |s: &str, n| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && nonzero(parts[1])
            && hex(parts[2], 16)
            && nonzero(parts[2])
            && (parts[3] == "01" || parts[3] == "00")
    }

    #[test]
    fn traceparent_is_version_00_lower_case_hex_with_the_sampled_flag() {
        for (yaml, flags) in [
            ("", "01"),
            ("    traceparent: true\n", "01"),
            ("    traceparent: {sampled: false}\n", "00"),
            ("    traceparent: {sampled: true}\n", "01"),
        ] {
            let t = target(yaml);
            let mut ids = Ids::start(&t, None).expect("ids");
            let mut headers = HeaderMap::new();
            ids.stamp(&t, &mut headers);
            let v = headers[TRACEPARENT].to_str().expect("ASCII");
            assert!(is_w3c_traceparent(v), "{v}");
            assert!(v.ends_with(&format!("-{flags}")), "{yaml}: {v}");
            assert_eq!(v, ids.traceparent_value().as_str());
            assert_eq!(&v[3..35], ids.trace_id.to_string());
            assert_eq!(&v[36..52], ids.span_id.to_string());
            assert_eq!(headers["x-request-id"], ids.trace_id.to_string().as_str());
        }
    }

    #[test]
    fn hex_is_lower_case_and_in_byte_order() {
        let id = TraceId([
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x47,
            0x36, 0x0a,
        ]);
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e47360a");
        assert_eq!(
            SpanId([0, 0xf0, 7, 0x67, 0xaa, 0x0b, 0xa9, 0x02]).to_string(),
            "00f00767aa0ba902"
        );
    }

    #[test]
    fn every_probe_has_a_new_trace_and_every_request_a_new_span() {
        let t = target("");
        let mut traces = HashSet::new();
        let mut spans = HashSet::new();
        // More than one pool's worth, so refills are crossed too.
        for _ in 0..2_000 {
            let mut ids = Ids::start(&t, None).expect("ids");
            assert!(traces.insert(ids.trace_id), "trace id repeated");
            for _ in 0..3 {
                ids.stamp(&t, &mut HeaderMap::new());
                assert!(spans.insert(ids.span_id), "span id repeated");
            }
        }
        // A follow-up keeps the trace and gets a span of its own.
        let first = Ids::start(&t, None).expect("ids");
        let follow_up = Ids::start(&t, Some(first.trace_id)).expect("ids");
        assert_eq!(follow_up.trace_id, first.trace_id);
        assert_ne!(follow_up.span_id, first.span_id);
    }

    #[test]
    fn ids_are_never_all_zero_and_use_every_hex_digit() {
        let mut digits = HashSet::new();
        for _ in 0..500 {
            let (trace, span) = (TraceId::random(), SpanId::random());
            assert_ne!(trace.0, [0; 16]);
            assert_ne!(span.0, [0; 8]);
            digits.extend(trace.to_string().bytes());
        }
        assert_eq!(digits.len(), 16, "{digits:?}");
    }

    #[test]
    fn switched_off_headers_are_not_sent() {
        let t = target("    request_id: false\n    traceparent: false\n");
        assert_eq!(Ids::start(&t, None), None);
        let t = target("    request_id: X-Correlation-Id\n    traceparent: false\n");
        let mut ids = Ids::start(&t, None).expect("ids");
        let mut headers = HeaderMap::new();
        ids.stamp(&t, &mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(
            headers["x-correlation-id"],
            ids.trace_id.to_string().as_str()
        );
        let t = target("    request_id: false\n");
        let mut ids = Ids::start(&t, None).expect("ids");
        let mut headers = HeaderMap::new();
        ids.stamp(&t, &mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), [&TRACEPARENT]);
    }

    #[test]
    fn the_fallback_differs_from_call_to_call() {
        let (mut a, mut b) = ([0; 32], [0; 32]);
        fallback(&mut a);
        fallback(&mut b);
        assert_ne!(a, b);
        assert!(a.iter().any(|x| *x != 0));
    }
}
