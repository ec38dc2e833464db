//! The HTTP side: `/metrics`, the landing page, health and readiness, and `POST /-/reload`, over
//! plain HTTP or, with a web configuration, TLS and basic auth on every endpoint.
//!
//! [`serve`] takes an already bound listener and any future as its shutdown trigger; on shutdown
//! it stops accepting and gives open connections a bounded grace period.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::webconfig::auth::{self, Verdict};
use crate::webconfig::{Web, WebConfig};
use crate::Handle;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long open connections get to finish after shutdown starts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long a client gets to complete the TLS handshake, so slow or silent clients cannot pile
/// up connections.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound TCP listener, and the web configuration (TLS, basic auth, headers) to serve it with.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    web: Option<Arc<Web>>,
}

impl Listener {
    /// Serves `tcp` as `web` says, or as plain HTTP without one.
    pub fn new(tcp: TcpListener, web: Option<WebConfig>) -> Self {
        Self {
            tcp,
            web: web.map(|w| Arc::new(Web::new(w))),
        }
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
                let connection = Connection {
                    handle: handle.clone(),
                    web: listener.web.clone(),
                    peer,
                };
                tokio::spawn(connection.serve(stream, graceful.watcher(), stopped.clone()));
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
}

impl Connection {
    async fn serve(self, stream: TcpStream, watcher: Watcher, mut stopped: watch::Receiver<bool>) {
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
        let Connection { handle, web, peer } = self;
        let service = service_fn(move |req: Request<Incoming>| {
            let handle = handle.clone();
            let web = web.clone();
            let config = config.clone();
            async move {
                let mut response = match (&web, &config) {
                    (Some(web), Some(config)) => {
                        match web.authorize(config, req.headers(), peer.ip()).await {
                            Verdict::Allowed => route(&handle, req).await,
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
                    _ => route(&handle, req).await,
                };
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

async fn route(handle: &Handle, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(handle, &req),
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
        (&Method::POST | &Method::PUT, "/-/reload") => match handle.reload().await {
            Ok(()) => text(StatusCode::OK, "Configuration reloaded\n"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Configuration rejected, previous one kept: {e}\n"),
            ),
        },
        (_, "/metrics" | "/" | "/events" | "/-/healthy" | "/-/ready" | "/-/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
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
fn metrics(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    let gzip = accepts_gzip(req);
    let (tx, rx) = mpsc::channel(4);
    let metrics = handle.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunked::new(tx, gzip);
        // An error means the client went away; nothing is left to tell.
        if metrics.encode_to(&mut out).is_ok() {
            out.finish();
        }
    });
    let mut r = Response::new(Either::Right(Chunks(rx)));
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
}

impl Chunked {
    fn new(tx: mpsc::Sender<Bytes>, gzip: bool) -> Self {
        Self {
            text: String::with_capacity(CHUNK + 1024),
            gzip: gzip.then(|| {
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(CHUNK / 4),
                    flate2::Compression::fast(),
                )
            }),
            tx,
        }
    }

    /// Sends what is encoded so far; `Err` once the client has gone.
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
                String::with_capacity(CHUNK + 1024),
            )),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.blocking_send(chunk).map_err(|_| std::fmt::Error)
    }

    fn finish(mut self) {
        if self.flush().is_err() {
            return;
        }
        if let Some(gz) = self.gzip.take() {
            let tail = gz.finish().expect("writing to a Vec cannot fail");
            let _ = self.tx.blocking_send(Bytes::from(tail));
        }
    }
}

impl std::fmt::Write for Chunked {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.text.push_str(s);
        if self.text.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// A response body fed by [`Chunked`] from another thread.
struct Chunks(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
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
    let body = serde_json::to_vec(&crate::pages::events_json(handle, &query))
        .expect("JSON values serialize");
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}
