//! One probe of one target: a fresh connection, a request, a bounded read of the answer, and an
//! [`Outcome`] with per-phase timings and at most one failure [`Reason`]. Knows nothing of
//! Prometheus; [`crate::metrics`] turns outcomes into samples.
//!
//! The steps are explicit (DNS, TCP, TLS, HTTP handshake) rather than a pooled client, so that each
//! phase can be timed and every probe measures what a new visitor would.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, HOST, LOCATION};
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::Url;

use crate::config::{HttpVersion, IpProtocol, Target};
use crate::fds::Shortage;

pub mod dns;

/// Redirects a probe follows before failing with [`Reason::Redirects`].
pub const MAX_REDIRECTS: u8 = 10;
/// How much of the final body an [`Outcome`] keeps for diagnosis. CDN error pages put their
/// signatures near the end, so this is more than a glance.
pub const BODY_HEAD: usize = 64 << 10;

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
    TooLarge,
    Redirects,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Reset,
        Reason::Protocol,
        Reason::Status,
        Reason::BodyMismatch,
        Reason::TooLarge,
        Reason::Redirects,
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
            Reason::TooLarge => "too_large",
            Reason::Redirects => "redirects",
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
    fn io(reason: Reason, what: impl std::fmt::Display, e: &io::Error) -> Self {
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
    Tls,
    Processing,
    Transfer,
    Total,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
        Phase::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
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
            Phase::Tls => self.tls,
            Phase::Processing => self.processing,
            Phase::Transfer => self.transfer,
            Phase::Total => Some(self.total),
        }
    }

    fn add(&mut self, phase: Phase, d: Duration) {
        let slot = match phase {
            Phase::Resolve => &mut self.resolve,
            Phase::Connect => &mut self.connect,
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
    /// The address of the last connection attempted.
    pub remote: Option<SocketAddr>,
    pub http_version: Option<Version>,
    pub tls_version: Option<&'static str>,
    /// Earliest `notAfter` (Unix seconds) of the last certificate chain presented.
    pub cert_not_after: Option<i64>,
    /// One entry per configured matcher, when they were evaluated: only on a final response with
    /// an expected status and a body within `max_body_bytes`.
    pub matches: Vec<bool>,
    pub redirects: u8,
    /// Headers of the final response, if one arrived.
    pub headers: Option<http::HeaderMap>,
    /// The start of the final response's body (at most [`BODY_HEAD`] bytes): enough to recognise
    /// an error page, bounded whatever `max_body_bytes` allows.
    pub body_head: Bytes,
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

/// Runs one probe of `target`, entirely under its timeout.
pub async fn run(target: &Target) -> Outcome {
    run_pinned(target, None).await
}

/// A first hop decided before the probe: per-address probing resolves once, then probes every
/// address, each timed as if it had done the lookup itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub addr: SocketAddr,
    pub resolve: Duration,
}

/// Like [`run`], with the first connection going to `pinned` (Host and SNI stay the URL's).
pub async fn run_pinned(target: &Target, pinned: Option<Pinned>) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::default();
    let mut step = "resolve";
    let result =
        tokio::time::timeout(target.timeout, probe(target, pinned, &mut out, &mut step)).await;
    out.failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(_) => Some(Failure::new(
            Reason::Timeout,
            format!(
                "no complete answer within {:?} (stuck in {step})",
                target.timeout
            ),
        )),
    };
    out.phases.total = start.elapsed();
    out
}

async fn probe(
    target: &Target,
    pinned: Option<Pinned>,
    out: &mut Outcome,
    step: &mut &'static str,
) -> Result<(), Failure> {
    let mut url = target.url.clone();
    let mut method = target.method.clone();
    let mut body = target.body.clone();
    let (status, body_read, truncated) = loop {
        let pin = pinned.filter(|_| out.redirects == 0);
        let (response, budget) =
            exchange(target, &url, pin, &method, body.clone(), out, step).await?;
        let code = response.status().as_u16();
        out.status = Some(code);
        out.http_version = Some(response.version());
        let redirect = target.follow_redirects && matches!(code, 301 | 302 | 303 | 307 | 308);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok());
        if let (true, Some(location)) = (redirect, location) {
            if out.redirects >= MAX_REDIRECTS {
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
            // Browsers turn a 303 (and a 301/302 after POST) into a GET without a body.
            if code == 303 || (matches!(code, 301 | 302) && method == Method::POST) {
                method = Method::GET;
                body = Bytes::new();
            }
            url = next;
            out.redirects += 1;
            continue;
        }
        out.headers = Some(response.headers().clone());
        *step = "transfer";
        let started = Instant::now();
        let read = read_body(response.into_body(), target.max_body_bytes).await;
        out.phases.add(Phase::Transfer, started.elapsed());
        let (bytes, truncated) = read.map_err(|f| budget.explain(f))?;
        out.body_head = bytes.slice(..bytes.len().min(BODY_HEAD));
        break (code, bytes, truncated);
    };

    if !target.expect_status.iter().any(|p| p.matches(status)) {
        return Err(Failure::new(
            Reason::Status,
            format!("unexpected status {status}"),
        ));
    }
    if truncated {
        let limit = target.max_body_bytes;
        return Err(Failure::new(
            Reason::TooLarge,
            format!("body exceeds max_body_bytes ({limit} bytes)"),
        ));
    }
    out.matches = target
        .matchers
        .iter()
        .map(|m| m.is_satisfied_by(&body_read))
        .collect();
    if let Some((m, _)) = target
        .matchers
        .iter()
        .zip(&out.matches)
        .find(|(_, ok)| !**ok)
    {
        let verb = if m.negate {
            "contains"
        } else {
            "does not contain"
        };
        return Err(Failure::new(
            Reason::BodyMismatch,
            format!("body {verb} {:?}", m.label),
        ));
    }
    Ok(())
}

/// Aborts the spawned connection driver when the probe is done with it (or is cancelled).
struct AbortOnDrop(JoinHandle<Result<(), hyper::Error>>);

impl AbortOnDrop {
    /// Waits for the connection to end, and returns its error, if it had one.
    async fn error(mut self) -> Option<hyper::Error> {
        (&mut self.0).await.ok()?.err()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response whose connection is kept alive for as long as its body is being read.
struct Response {
    inner: http::Response<Incoming>,
    driver: AbortOnDrop,
}

impl Response {
    fn status(&self) -> http::StatusCode {
        self.inner.status()
    }
    fn version(&self) -> Version {
        self.inner.version()
    }
    fn headers(&self) -> &http::HeaderMap {
        self.inner.headers()
    }
    fn into_body(self) -> (Incoming, AbortOnDrop) {
        (self.inner.into_body(), self.driver)
    }
}

/// One request on one fresh connection, and the budget its reads draw on.
async fn exchange(
    target: &Target,
    url: &Url,
    pinned: Option<Pinned>,
    method: &Method,
    body: Bytes,
    out: &mut Outcome,
    step: &mut &'static str,
) -> Result<(Response, ReadBudget), Failure> {
    let host = url
        .host_str()
        .ok_or_else(|| Failure::new(Reason::Protocol, "URL without host"))?;

    *step = "resolve";
    let addr = match pinned {
        Some(p) => {
            out.phases.add(Phase::Resolve, p.resolve);
            p.addr
        }
        None => {
            let started = Instant::now();
            let addrs = resolve_for(target, url).await;
            out.phases.add(Phase::Resolve, started.elapsed());
            // The resolver's order (RFC 6724 preference) decides under `auto`.
            addrs?[0]
        }
    };
    out.remote = Some(addr);

    *step = "connect";
    let started = Instant::now();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::io(Reason::Connect, format_args!("connect to {addr}"), &e))?;
    out.phases.add(Phase::Connect, started.elapsed());
    let _ = tcp.set_nodelay(true);
    let budget = ReadBudget::new(target.max_body_bytes);
    let request = build_request(target, url, method, body)?;
    let response = secure_and_send(target, url, host, budget.wrap(tcp), request, out, step).await;
    Ok((response.map_err(|f| budget.explain(f))?, budget))
}

/// The TLS handshake if the URL asks for one, then the request.
async fn secure_and_send(
    target: &Target,
    url: &Url,
    host: &str,
    tcp: Metered<TcpStream>,
    request: Request<Full<Bytes>>,
    out: &mut Outcome,
    step: &mut &'static str,
) -> Result<Response, Failure> {
    if url.scheme() == "https" {
        *step = "tls";
        let started = Instant::now();
        let alpn: &[&[u8]] = match target.http_version {
            HttpVersion::Auto => &[b"h2", b"http/1.1"],
            HttpVersion::Http1 => &[b"http/1.1"],
            HttpVersion::Http2 => &[b"h2"],
        };
        let (config, recorder) = target.tls.client_config(alpn);
        let name = target
            .tls
            .server_name(host)
            .map_err(|e| Failure::new(Reason::Tls, e))?;
        let handshake = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await;
        out.cert_not_after = recorder.not_after();
        let tls =
            handshake.map_err(|e| Failure::new(Reason::Tls, format!("TLS handshake: {e}")))?;
        out.phases.add(Phase::Tls, started.elapsed());
        let session = tls.get_ref().1;
        out.tls_version = session.protocol_version().map(tls_version_name);
        let h2 = session.alpn_protocol() == Some(b"h2");
        if target.http_version == HttpVersion::Http2 && !h2 {
            return Err(Failure::new(
                Reason::Protocol,
                "server did not negotiate HTTP/2 (ALPN h2)",
            ));
        }
        send(TokioIo::new(tls), h2, request, out, step).await
    } else {
        let h2 = target.http_version == HttpVersion::Http2;
        send(TokioIo::new(tcp), h2, request, out, step).await
    }
}

fn tls_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
        _ => "other",
    }
}

/// The URI a request for `url` carries. Configured URLs are checked at load, but a redirect can
/// name a host that the URL parser accepts and HTTP cannot carry (e.g. with `}` in it): that is
/// the server's error.
fn request_uri(url: &Url) -> Result<http::Uri, Failure> {
    url.as_str().parse().map_err(|_| {
        let msg = "redirected to a location that cannot be requested over HTTP";
        Failure::new(Reason::Protocol, msg)
    })
}

/// HTTP/1.1 wants an origin-form target and a Host header; HTTP/2 wants the absolute URI, which
/// becomes `:scheme` and `:authority`. Both are prepared here; [`send`] picks.
fn build_request(
    target: &Target,
    url: &Url,
    method: &Method,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = request_uri(url)?;
    let headers = request.headers_mut();
    headers.extend(target.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !headers.contains_key(HOST) {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&authority) {
            headers.insert(HOST, v);
        }
    }
    Ok(request)
}

async fn send<I>(
    io: TokioIo<I>,
    h2: bool,
    mut request: Request<Full<Bytes>>,
    out: &mut Outcome,
    step: &mut &'static str,
) -> Result<Response, Failure>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    *step = "processing";
    let started = Instant::now();
    let (response, driver) = if h2 {
        request.headers_mut().remove(HOST);
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(classify_hyper)?;
        let driver = spawn_driver(conn);
        (sender.send_request(request).await, driver)
    } else {
        let uri = request.uri();
        let origin_form = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .expect("a path is a URI");
        *request.uri_mut() = origin_form;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(classify_hyper)?;
        let driver = spawn_driver(conn);
        (sender.send_request(request).await, driver)
    };
    let response = match response {
        Ok(response) => response,
        // hyper cancels a request that a dying connection never took up, whatever killed it: a
        // server answering h2 with HTTP/1.1 lands here or on the request, depending on timing.
        // The connection's own error says why, and keeps the reason from flipping to `reset`.
        Err(e) if e.is_canceled() => {
            return Err(classify_hyper(driver.error().await.unwrap_or(e)));
        }
        Err(e) => return Err(classify_hyper(e)),
    };
    out.phases.add(Phase::Processing, started.elapsed());
    Ok(Response {
        inner: response,
        driver,
    })
}

/// Runs a hyper connection; its error, if any, is the task's output (see [`AbortOnDrop::error`]).
fn spawn_driver<F>(conn: F) -> AbortOnDrop
where
    F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    AbortOnDrop(tokio::spawn(conn))
}

/// How much one connection may read. What a probe keeps is bounded by `max_body_bytes`, but
/// hyper and h2 also read and discard on their own, without limit: an endless run of 1xx
/// interim responses (HTTP/1.1), or of frames without a body (HTTP/2). Such a server kept a
/// worker thread parsing for the probe's whole timeout, and two at once held up every other
/// probe's timers for seconds (found by `tests/it/hostile.rs`). Twice `max_body_bytes` plus
/// 1 MiB leaves room for any head, the TLS handshake and framing (even padded) around a body that
/// fits.
#[derive(Debug)]
struct ReadBudget {
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl ReadBudget {
    fn new(max_body_bytes: u64) -> Self {
        Self {
            limit: max_body_bytes.saturating_mul(2).saturating_add(1 << 20),
            exceeded: Arc::default(),
        }
    }

    fn wrap<S>(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            left: self.limit,
            exceeded: self.exceeded.clone(),
        }
    }

    /// Whatever error a layer above made of a spent budget, it is `too_large`.
    fn explain(&self, failure: Failure) -> Failure {
        if !self.exceeded.load(Ordering::Relaxed) {
            return failure;
        }
        Failure::new(
            Reason::TooLarge,
            format!(
                "the server sent more than {} bytes without completing a response",
                self.limit
            ),
        )
    }
}

/// Most a [`Metered`] stream reads at once. hyper asks for up to ~400 KB per read and parses all
/// of it in one go; in small reads, each charged to the task's cooperative budget, a flood is
/// parsed in slices and the worker thread gets back to other probes' timers in between.
const READ_SLICE: usize = 4 << 10;

/// A stream that reads in slices, cooperatively, and fails reads once its [`ReadBudget`] is
/// spent.
struct Metered<S> {
    inner: S,
    left: u64,
    exceeded: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            self.exceeded.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("read budget spent")));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut slice = [MaybeUninit::uninit(); READ_SLICE];
        let room = buf.remaining().min(READ_SLICE);
        let mut slice = ReadBuf::uninit(&mut slice[..room]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut slice))?;
        coop.made_progress();
        buf.put_slice(slice.filled());
        let read = slice.filled().len() as u64;
        self.left = self.left.saturating_sub(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads at most `limit` bytes of the body; the flag says whether there was more.
async fn read_body(
    (mut body, _driver): (Incoming, AbortOnDrop),
    limit: u64,
) -> Result<(Bytes, bool), Failure> {
    // Sized up front when the server announces a length, within reason: growing by doubling
    // copies the body several times, and a 64 KiB page would end up in a 128 KiB buffer.
    let announced = hyper::body::Body::size_hint(&body)
        .exact()
        .unwrap_or(0)
        .min(limit);
    let mut buf = BytesMut::with_capacity(usize::try_from(announced.min(1 << 20)).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(classify_hyper)?;
        if let Ok(data) = frame.into_data() {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(buf.len());
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                return Ok((buf.freeze(), true));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), false))
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

/// The addresses for `url`'s host: the target's static `addresses` when the host is the
/// target's own, else DNS.
async fn resolve_for(target: &Target, url: &Url) -> Result<Vec<SocketAddr>, Failure> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    if !target.addresses.is_empty() && url.host_str() == target.url.host_str() {
        return Ok(target
            .addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect());
    }
    resolve(host, port, target.ip_protocol).await
}

/// The addresses of `host` of the wanted family: never empty.
async fn resolve(host: &str, port: u16, protocol: IpProtocol) -> Result<Vec<SocketAddr>, Failure> {
    let wanted = |ip: &IpAddr| match protocol {
        IpProtocol::Auto => true,
        IpProtocol::Ipv4 => ip.is_ipv4(),
        IpProtocol::Ipv6 => ip.is_ipv6(),
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if wanted(&ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(Failure::new(
                Reason::Dns,
                format!("{ip} is not of the configured ip_protocol"),
            ))
        };
    }
    // RFC 6761: `.invalid` never resolves, so no query needs to leave the machine.
    let bare = literal.trim_end_matches('.').to_ascii_lowercase();
    if bare == "invalid" || bare.ends_with(".invalid") {
        return Err(Failure::new(
            Reason::Dns,
            format!("resolve {host}: reserved name that never resolves (RFC 6761)"),
        ));
    }
    let mut addrs = dns::lookup(host, port)
        .await
        .map_err(|e| Failure::io(Reason::Dns, format_args!("resolve {host}"), &e))?;
    addrs.retain(|a| wanted(&a.ip()));
    if addrs.is_empty() {
        let msg = format!("resolve {host}: no address for ip_protocol {protocol:?}");
        return Err(Failure::new(Reason::Dns, msg));
    }
    Ok(addrs)
}

/// I/O errors that mean the server (or something between) dropped the connection.
const RESET_KINDS: [io::ErrorKind; 4] = [
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::UnexpectedEof,
];

/// Maps a hyper error to exactly one reason: connection-level breakage is `reset`, anything the
/// server said that is not valid HTTP is `protocol`.
fn classify_hyper(e: hyper::Error) -> Failure {
    let detail = error_chain(&e);
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() || e.is_body_write_aborted() {
        return Failure::new(Reason::Reset, detail);
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_user() {
        return Failure::new(Reason::Protocol, detail);
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if RESET_KINDS.contains(&io.kind()) {
                return Failure::new(Reason::Reset, detail);
            }
        } else if h2_abandoned(s) {
            return Failure::new(Reason::Reset, detail);
        }
        source = s.source();
    }
    Failure::new(Reason::Protocol, detail)
}

/// Whether an HTTP/2 error says the server abandoned the response: it sent RST_STREAM or GOAWAY
/// with an error, or the connection ended under the stream. Over HTTP/1.1 the same crash or
/// restart shows as a closed connection, so this is `reset` too, not `protocol` (which stays for
/// frames h2 *detected* as malformed, and for resets h2 sent itself).
fn h2_abandoned(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<h2::Error>().is_some_and(|e| {
        e.is_remote()
            || e.get_io()
                .is_some_and(|io| RESET_KINDS.contains(&io.kind()))
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
