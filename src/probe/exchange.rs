//! One request on one fresh connection: resolve (or take the pinned address), connect, the TLS
//! handshake if the URL asks for one, and the HTTP handshake and request, each phase timed.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::Url;

use super::budget::{Metered, ReadBudget};
use super::classify::classify_hyper;
use super::resolve::resolve_for;
use super::{Failure, Outcome, Phase, Pinned, Reason};
use crate::config::{HttpVersion, Target};

/// Aborts the spawned connection driver when the probe is done with it (or is cancelled).
pub(super) struct AbortOnDrop(JoinHandle<Result<(), hyper::Error>>);

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
    pub(super) fn into_body(self) -> (Incoming, AbortOnDrop) {
        (self.inner.into_body(), self.driver)
    }
}

/// One request on one fresh connection, and the budget its reads draw on.
pub(super) async fn exchange(
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
pub(super) fn request_uri(url: &Url) -> Result<http::Uri, Failure> {
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
