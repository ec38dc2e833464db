//! One request on one fresh connection, as the steps of [`Probe`] (the one context value a probe
//! carries): resolve (or take the pinned address), connect, the TLS handshake if the URL asks for
//! one, the HTTP handshake and request, and the read of the final body, each phase timed.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::Url;

use super::budget::{read_body, Metered, ReadBudget};
use super::classify::classify_hyper;
use super::resolve::resolve_for;
use super::trace::{Ids, TraceId};
use super::{Failure, Outcome, Phase, Pinned, Reason};
use crate::config::{HttpVersion, Target};
use crate::limits::BODY_HEAD;

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
pub(super) struct Response {
    inner: http::Response<Incoming>,
    driver: AbortOnDrop,
}

impl Response {
    pub(super) fn status(&self) -> http::StatusCode {
        self.inner.status()
    }
    pub(super) fn version(&self) -> Version {
        self.inner.version()
    }
    pub(super) fn headers(&self) -> &http::HeaderMap {
        self.inner.headers()
    }
    fn into_body(self) -> (Incoming, AbortOnDrop) {
        (self.inner.into_body(), self.driver)
    }
}

/// One probe in progress: the target, the outcome being built, and the step it is in (which a
/// timeout names). The steps are its methods, so no `&mut` state is handed from one to the next;
/// the future under the timeout borrows it, and what it holds is read after, fired or not.
pub(super) struct Probe<'t> {
    pub(super) target: &'t Target,
    pub(super) out: Outcome,
    pub(super) step: Phase,
    /// Whether to keep the final body in `body` ([`super::fetch`]); probes only judge it.
    pub(super) keep_body: bool,
    pub(super) body: Option<Bytes>,
    /// The final response's body as it arrives: what a break or the timeout leaves of it is
    /// kept for diagnosis.
    pub(super) received: BytesMut,
    /// The ids its requests carry, each request with a span id of its own.
    ids: Option<Ids>,
}

impl<'t> Probe<'t> {
    /// A probe in the trace `continuing`, or in a new one.
    pub(super) fn new(target: &'t Target, continuing: Option<TraceId>) -> Self {
        Self {
            target,
            out: Outcome::default(),
            step: Phase::Resolve,
            keep_body: false,
            body: None,
            received: BytesMut::new(),
            ids: Ids::start(target, continuing),
        }
    }

    /// The request for `url` (see [`build_request`]), with this probe's ids and a new span id.
    pub(super) fn request(
        &mut self,
        url: &Url,
        method: &Method,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut request = build_request(self.target, url, method, body)?;
        if let Some(ids) = &mut self.ids {
            ids.stamp(self.target, request.headers_mut());
        }
        Ok(request)
    }

    /// One request on one fresh connection, and the budget its reads draw on.
    pub(super) async fn exchange(
        &mut self,
        url: &Url,
        pinned: Option<Pinned>,
        method: &Method,
        body: Bytes,
    ) -> Result<(Response, ReadBudget), Failure> {
        let target = self.target;
        if let Some(via) = target.proxy.as_deref().and_then(|p| p.route(url)) {
            return self.through(via, url, method, body).await;
        }
        self.out.proxy = None;
        let host = url
            .host_str()
            .ok_or_else(|| Failure::new(Reason::Protocol, "URL without host"))?;
        let addr = self.resolve(url, pinned).await?;
        let tcp = self.connect(addr).await?;
        let budget = ReadBudget::new(self.target.max_body_bytes);
        let request = self.request(url, method, body)?;
        let response = self.secure_and_send(url, host, budget.wrap(tcp), request);
        Ok((response.await.map_err(|f| budget.explain(f))?, budget))
    }

    /// The address to connect to: the pinned one (timed as its lookup was), or the first the
    /// lookup gives.
    async fn resolve(&mut self, url: &Url, pinned: Option<Pinned>) -> Result<SocketAddr, Failure> {
        self.step = Phase::Resolve;
        let addr = match pinned {
            Some(p) => {
                self.out.phases.add(Phase::Resolve, p.resolve);
                p.addr
            }
            None => {
                let started = Instant::now();
                let addrs = resolve_for(self.target, url).await;
                self.out.phases.add(Phase::Resolve, started.elapsed());
                // The resolver's order (RFC 6724 preference) decides under `auto`.
                addrs?[0]
            }
        };
        self.out.remote = Some(addr);
        Ok(addr)
    }

    pub(super) async fn connect(&mut self, addr: SocketAddr) -> Result<TcpStream, Failure> {
        self.step = Phase::Connect;
        let started = Instant::now();
        let tcp = match self.target.source_address {
            None => TcpStream::connect(addr).await,
            Some(source) => connect_from(source, addr).await,
        }
        .map_err(|e| Failure::io(Reason::Connect, format_args!("connect to {addr}"), &e))?;
        self.out.phases.add(Phase::Connect, started.elapsed());
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// The TLS handshake if the URL asks for one, then the request; on a connection to the
    /// target, or a tunnel to it through a proxy.
    pub(super) async fn secure_and_send<S>(
        &mut self,
        url: &Url,
        host: &str,
        tcp: Metered<S>,
        request: Request<Full<Bytes>>,
    ) -> Result<Response, Failure>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let target = self.target;
        // The TLS facts are the final response's connection's: a hop over plain HTTP has none.
        self.out.tls_version = None;
        self.out.tls_cipher = None;
        if url.scheme() != "https" {
            let h2 = target.http_version == HttpVersion::Http2;
            return self.send(TokioIo::new(tcp), h2, request, false).await;
        }
        self.step = Phase::Tls;
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
        let presented = recorder.presented();
        if presented.leaf.is_some() {
            self.out.cert_not_after = presented.not_after;
            self.out.cert_leaf = presented.leaf;
            self.out.chain_verified = presented.verified;
        }
        let tls =
            handshake.map_err(|e| Failure::new(Reason::Tls, format!("TLS handshake: {e}")))?;
        self.out.phases.add(Phase::Tls, started.elapsed());
        let session = tls.get_ref().1;
        self.out.tls_version = session.protocol_version().map(tls_version_name);
        self.out.tls_cipher = session
            .negotiated_cipher_suite()
            .map(|s| s.suite().as_str().unwrap_or("other"));
        let h2 = session.alpn_protocol() == Some(b"h2");
        if target.http_version == HttpVersion::Http2 && !h2 {
            return Err(Failure::new(
                Reason::Protocol,
                "server did not negotiate HTTP/2 (ALPN h2)",
            ));
        }
        self.send(TokioIo::new(tls), h2, request, false).await
    }

    /// The HTTP handshake and the request, up to the response's head. `absolute`: an HTTP/1.1
    /// request to a forward proxy, which keeps the absolute URI.
    pub(super) async fn send<I>(
        &mut self,
        io: TokioIo<I>,
        h2: bool,
        mut request: Request<Full<Bytes>>,
        absolute: bool,
    ) -> Result<Response, Failure>
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.step = Phase::Processing;
        // From here the request may reach the server: its ids are worth looking for there.
        self.out.ids = self.ids;
        let started = Instant::now();
        let (response, driver) = if h2 {
            request.headers_mut().remove(HOST);
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(classify_hyper)?;
            let driver = spawn_driver(conn);
            (sender.send_request(request).await, driver)
        } else {
            if !absolute {
                let uri = request.uri();
                let origin_form = uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .parse()
                    .expect("a path is a URI");
                *request.uri_mut() = origin_form;
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(classify_hyper)?;
            let driver = spawn_driver(conn);
            (sender.send_request(request).await, driver)
        };
        let response = match response {
            Ok(response) => response,
            // hyper cancels a request that a dying connection never took up, whatever killed it:
            // a server answering h2 with HTTP/1.1 lands here or on the request, depending on
            // timing. The connection's own error says why, and keeps the reason from flipping to
            // `reset`.
            Err(e) if e.is_canceled() => {
                return Err(classify_hyper(driver.error().await.unwrap_or(e)));
            }
            Err(e) => return Err(classify_hyper(e)),
        };
        self.out.phases.add(Phase::Processing, started.elapsed());
        Ok(Response {
            inner: response,
            driver,
        })
    }

    /// Keeps what arrived of a final response's body that broke off (a reset, a closed
    /// connection, the timeout) and marks the outcome as cut.
    pub(super) fn keep_cut_body(&mut self) {
        let received = std::mem::take(&mut self.received);
        self.out.body_bytes = received.len() as u64;
        let mut head = received;
        head.truncate(BODY_HEAD);
        self.out.body_head = head.freeze();
        self.out.cut = true;
    }

    /// Reads the final response's body within `max_body_bytes`, keeping its head for diagnosis;
    /// the flag says whether there was more.
    pub(super) async fn transfer(
        &mut self,
        response: Response,
        budget: ReadBudget,
    ) -> Result<(Bytes, bool), Failure> {
        self.step = Phase::Transfer;
        let started = Instant::now();
        let (body, driver) = response.into_body();
        let read = read_body(body, self.target.max_body_bytes, &mut self.received).await;
        // The connection is driven until its body is read, and no longer.
        drop(driver);
        self.out.phases.add(Phase::Transfer, started.elapsed());
        let truncated = match read {
            Ok(truncated) => truncated,
            Err(f) => {
                self.keep_cut_body();
                return Err(budget.explain(f));
            }
        };
        let bytes = std::mem::take(&mut self.received).freeze();
        self.out.body_head = bytes.slice(..bytes.len().min(BODY_HEAD));
        self.out.body_bytes = bytes.len() as u64;
        Ok((bytes, truncated))
    }
}

/// A connection to `addr` from the local address `source` (any port).
async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
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
pub(super) fn request_uri(url: &Url) -> Result<http::Uri, Failure> {
    url.as_str().parse().map_err(|_| {
        let msg = "redirected to a location that cannot be requested over HTTP";
        Failure::new(Reason::Protocol, msg)
    })
}

/// HTTP/1.1 wants an origin-form target and a Host header; HTTP/2 wants the absolute URI, which
/// becomes `:scheme` and `:authority`. Both are prepared here; [`Probe::send`] picks.
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
    for h in &target.file_headers {
        headers.insert(h.name.clone(), h.value());
    }
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

/// Runs a hyper connection; its error, if any, is the task's output (see [`AbortOnDrop::error`]).
fn spawn_driver<F>(conn: F) -> AbortOnDrop
where
    F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    AbortOnDrop(tokio::spawn(conn))
}
