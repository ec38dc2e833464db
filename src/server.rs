//! The HTTP side: `/metrics`, the landing page, health and readiness, and `POST /-/reload`, over
//! plain HTTP or, with a web configuration, TLS and basic auth on every endpoint.
//!
//! [`serve`] takes an already bound listener and any future as its shutdown trigger; on shutdown
//! it stops accepting and gives open connections a bounded grace period.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, VARY,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::slots::Slots;
use crate::webconfig::auth::{self, Verdict};
use crate::webconfig::{Web, WebConfig};
use crate::Handle;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long open connections get to finish after shutdown starts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long a client gets to complete the TLS handshake, so slow or silent clients cannot pile
/// up connections.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once by default (`--web.max-connections`).
pub const MAX_CONNECTIONS: usize = 128;

/// How long a write to a client may make no progress before the connection is closed, by
/// default (`--web.write-timeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once, so that descriptors stay for the probes. At the limit a
    /// newcomer takes the oldest connection of the client holding most (see [`crate::slots`]).
    pub max_connections: usize,
    /// A client that reads nothing for this long while tickr has something to send (a
    /// scraper that stopped reading, a wedged proxy) is cut off, and the scrape it asked for
    /// stops costing anything.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// A bound TCP listener, the web configuration (TLS, basic auth, headers) to serve it with,
/// and the limits each client is held to.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    web: Option<Arc<Web>>,
    limits: Limits,
}

impl Listener {
    /// Serves `tcp` as `web` says, or as plain HTTP without one, with the default limits.
    pub fn new(tcp: TcpListener, web: Option<WebConfig>) -> Self {
        Self {
            tcp,
            web: web.map(|w| Arc::new(Web::new(w))),
            limits: Limits::default(),
        }
    }

    /// The same, held to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self::new(tcp, None)
    }
}

/// Serves until `shutdown` completes, then drains connections for at most [`DRAIN_GRACE`].
pub async fn serve(listener: Listener, handle: Handle, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up: they are not watched yet.
    let (stopping, stopped) = watch::channel(false);
    let limits = listener.limits;
    let slots = Slots::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(slot) = slots.admit(peer.ip()) else {
                    tracing::debug!(%peer, "connection closed: the limit is reached and this client holds the most");
                    continue;
                };
                let connection = Connection {
                    handle: handle.clone(),
                    web: listener.web.clone(),
                    peer,
                    write_timeout: limits.write_timeout,
                };
                let stream = WriteDeadline::new(stream, limits.write_timeout, peer);
                let watcher = graceful.watcher();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut slot = slot;
                    tokio::select! {
                        () = connection.serve(stream, watcher, stopped) => {}
                        _ = &mut slot.evicted => tracing::debug!(%peer, "connection closed to make room for another client"),
                    }
                    // The place is given back only now that the connection is closed.
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?DRAIN_GRACE, "gave up waiting for HTTP connections to close");
    }
}

/// One accepted connection, before and after its TLS handshake.
struct Connection {
    handle: Handle,
    web: Option<Arc<Web>>,
    peer: SocketAddr,
    write_timeout: Duration,
}

impl Connection {
    async fn serve(
        self,
        stream: WriteDeadline<TcpStream>,
        watcher: Watcher,
        mut stopped: watch::Receiver<bool>,
    ) {
        // Read per connection: a renewed certificate or changed user list applies from here on.
        let config = match &self.web {
            Some(web) => Some(web.current().await),
            None => None,
        };
        let Some(tls) = config.as_ref().and_then(|c| c.tls()) else {
            return self.http(TokioIo::new(stream), config, watcher).await;
        };
        let handshake =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(tls).accept(stream));
        tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => self.http(TokioIo::new(stream), config, watcher).await,
                // Scanners, plain HTTP on the TLS port, unknown client certificates: routine,
                // and nothing an operator can act on, so debug.
                Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %self.peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => {}
        }
    }

    async fn http<I>(self, io: TokioIo<I>, config: Option<Arc<WebConfig>>, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            handle,
            web,
            peer,
            write_timeout,
        } = self;
        let service = service_fn(move |req: Request<Incoming>| {
            let handle = handle.clone();
            let web = web.clone();
            let config = config.clone();
            async move {
                let mut response = match (&web, &config) {
                    (Some(web), Some(config)) => {
                        match web.authorize(config, req.headers(), peer.ip()).await {
                            Verdict::Allowed => route(&handle, req, write_timeout).await,
                            Verdict::Refused => {
                                // Never the credentials: a mistyped password is still a password.
                                tracing::debug!(%peer, path = req.uri().path(), "basic auth failed");
                                unauthorized()
                            }
                            Verdict::Busy => {
                                tracing::debug!(
                                    %peer,
                                    path = req.uri().path(),
                                    "basic auth not checked: 429, this client or all at once \
                                     have too many checks waiting"
                                );
                                too_many_checks()
                            }
                        }
                    }
                    _ => route(&handle, req, write_timeout).await,
                };
                crate::browser::secure(response.headers_mut());
                // `insert`: a configured header replaces tickr's default of the same name.
                if let Some(config) = &config {
                    for (name, value) in config.headers() {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                Ok::<_, Infallible>(response)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(io, service);
        let _ = watcher.watch(conn).await;
    }
}

fn unauthorized() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        r#"Basic realm="tickr", charset="UTF-8""#.parse().expect("static"),
    );
    r
}

/// 429 for a request whose credentials were not checked (see [`crate::webconfig::auth`]).
fn too_many_checks() -> Response<Body> {
    let mut r = text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many logins at once; try again in a moment\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(auth::RETRY_AFTER.as_secs()));
    r
}

type Body = Either<Full<Bytes>, Chunks>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

async fn route(handle: &Handle, req: Request<Incoming>, write_timeout: Duration) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(handle, &req, write_timeout),
        (&Method::GET | &Method::HEAD, "/") => html(crate::pages::landing(handle)),
        (&Method::GET | &Method::HEAD, "/events") => events(handle, &req),
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => {
            if handle.is_ready() {
                text(StatusCode::OK, "Ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
            }
        }
        (&Method::POST | &Method::PUT, "/-/reload") => reload(handle, &req).await,
        (_, "/metrics" | "/" | "/events" | "/-/healthy" | "/-/ready" | "/-/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

/// Reloads, unless a web page sent the request: see [`crate::browser::sent_by_web_page`].
async fn reload(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    if let Some(page) = crate::browser::sent_by_web_page(req.headers()) {
        tracing::info!(sent_by = %page, "reload refused: a web page sent it");
        return text(
            StatusCode::FORBIDDEN,
            "Reload refused: a web page sent this request (it carries Origin or Sec-Fetch-Site); \
             reload with curl -X POST or SIGHUP\n",
        );
    }
    match handle.reload().await {
        Ok(()) => text(StatusCode::OK, "Configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Configuration rejected, previous one kept: {e}\n"),
        ),
    }
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|part| {
                let mut fields = part.split(';').map(str::trim);
                let coding = fields.next().unwrap_or_default();
                let refused = fields.any(|f| f.replace(' ', "") == "q=0");
                coding.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

/// `/metrics`, encoded on a blocking thread and streamed as it is written: a scrape of
/// thousands of targets takes a CPU for a while and would otherwise hold up a runtime worker
/// (and every probe queued on it), and its text need never be in memory whole.
///
/// The encoder waits for a slow client only between two targets' series, never while it holds
/// a lock that probes record under (see [`crate::metrics::Sink`]), and for at most
/// `write_timeout`. A body that ends before the encoder finished ends with an error, so that
/// the client sees a broken response, never a short exposition that looks complete.
fn metrics(handle: &Handle, req: &Request<Incoming>, write_timeout: Duration) -> Response<Body> {
    let gzip = accepts_gzip(req);
    let (tx, rx) = mpsc::channel(4);
    let complete = Arc::new(AtomicBool::new(false));
    let metrics = handle.metrics.clone();
    let out = Chunked::new(tx, gzip, write_timeout, complete.clone());
    tokio::task::spawn_blocking(move || {
        // An error means the client went away or stopped reading; nothing is left to tell.
        if let Ok(out) = metrics.stream(out) {
            out.finish();
        }
    });
    let mut r = Response::new(Either::Right(Chunks { rx, complete }));
    if gzip {
        r.headers_mut()
            .insert(CONTENT_ENCODING, "gzip".parse().expect("static"));
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, OPENMETRICS.parse().expect("static"));
    r.headers_mut()
        .insert(VARY, "Accept-Encoding".parse().expect("static"));
    r
}

/// How much text is encoded before it is compressed and sent on.
const CHUNK: usize = 128 << 10;

/// The exposition as it is written, in chunks to the response, gzipped when asked.
struct Chunked {
    text: String,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    tx: mpsc::Sender<Bytes>,
    /// The runtime the response is served on, to wait for room in `tx` with a timeout.
    runtime: tokio::runtime::Handle,
    write_timeout: Duration,
    complete: Arc<AtomicBool>,
}

impl Chunked {
    /// Must be made on the runtime (it keeps a handle to it).
    fn new(
        tx: mpsc::Sender<Bytes>,
        gzip: bool,
        write_timeout: Duration,
        complete: Arc<AtomicBool>,
    ) -> Self {
        Self {
            text: String::with_capacity(CHUNK + 16 * 1024),
            gzip: gzip.then(|| {
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(CHUNK / 4),
                    flate2::Compression::fast(),
                )
            }),
            tx,
            runtime: tokio::runtime::Handle::current(),
            write_timeout,
            complete,
        }
    }

    /// Sends what is encoded so far; `Err` once the client has gone or read nothing for the
    /// write timeout.
    fn flush(&mut self) -> std::fmt::Result {
        let chunk = match &mut self.gzip {
            Some(gz) => {
                gz.write_all(self.text.as_bytes())
                    .expect("writing to a Vec cannot fail");
                self.text.clear();
                Bytes::from(std::mem::take(gz.get_mut()))
            }
            None => Bytes::from(std::mem::replace(
                &mut self.text,
                String::with_capacity(CHUNK + 16 * 1024),
            )),
        };
        self.send(chunk)
    }

    fn send(&self, chunk: Bytes) -> std::fmt::Result {
        if chunk.is_empty() {
            return Ok(());
        }
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(self.write_timeout, self.tx.send(chunk)).await
        });
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(std::fmt::Error),
        }
    }

    fn finish(mut self) {
        if self.flush().is_err() {
            return;
        }
        if let Some(gz) = self.gzip.take() {
            let tail = gz.finish().expect("writing to a Vec cannot fail");
            if self.send(Bytes::from(tail)).is_err() {
                return;
            }
        }
        // Before `tx` is dropped, which ends the body.
        self.complete.store(true, Ordering::Release);
    }
}

impl crate::metrics::Sink for Chunked {
    fn write(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn pause(&mut self) -> std::fmt::Result {
        if self.text.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// A response body fed by [`Chunked`] from another thread.
struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match ready!(self.rx.poll_recv(cx)) {
            Some(chunk) => Some(Ok(hyper::body::Frame::data(chunk))),
            None if self.complete.load(Ordering::Acquire) => None,
            None => Some(Err(std::io::Error::other(
                "the exposition was not finished",
            ))),
        })
    }
}

/// A connection whose writes may stall for at most `timeout`: a client that stops reading
/// gets an error on its connection, which hyper then closes. Reads are not bounded here
/// (request heads have their own timeout, and tickr reads no request bodies).
struct WriteDeadline<I> {
    inner: I,
    timeout: Duration,
    peer: SocketAddr,
    /// Armed when a write first returned `Pending`; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteDeadline<I> {
    fn new(inner: I, timeout: Duration, peer: SocketAddr) -> Self {
        Self {
            inner,
            timeout,
            peer,
            stalled: None,
        }
    }

    /// After the inner write returned `poll`: progress disarms the deadline, a stall arms it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        tracing::warn!(peer = %self.peer, timeout = ?timeout, "client read nothing within the write timeout; connection closed");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write timeout",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

fn html(body: String) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("static"),
    );
    r
}

fn events(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let query =
        crate::pages::EventsQuery::parse(req.uri().query(), accept.contains("application/json"));
    if !query.json {
        return html(crate::pages::events_html(handle, &query));
    }
    let body = crate::browser::json(&crate::pages::events_json(handle, &query));
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}
