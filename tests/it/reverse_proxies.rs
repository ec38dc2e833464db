//! Real reverse proxies from Debian's packages (Apache with mod_proxy, Varnish, lighttpd, Squid
//! in accel mode, h2o, nghttpx over TLS and HTTP/2) and two chains of them (Varnish → nginx,
//! nginx → Apache) in front of upstreams that fail in each way a probe meets: what each proxy
//! answers, byte for byte, read with a raw client. Each test checks the status codes, that the
//! proxy's access log has exactly one line per request with the request's `X-Request-Id` and
//! `traceparent`, and prints what the built-in attribution makes of every answer.
//!
//! Then tickr itself probes every front of the same proxy (one target per upstream behaviour,
//! `confirm: 0`; nghttpx over TLS with HTTP/1.1 and HTTP/2) until each target has had 3 probes,
//! is stopped, and every target is checked: the code and class of
//! `tickr_http_responses_total`, the reason of `tickr_probe_failures_total`, the layer of
//! `tickr_http_server_errors_total` and of every event, the hops the events say relayed the
//! answer, what a cut body left (`cut`, `body_bytes`), and that tickr's probes equal the proxy's
//! access-log lines carrying their request ids. Each test prints that table too, with a
//! right/wrong verdict per target.
//!
//! `cargo test --test it reverse_proxies -- --nocapture` prints the tables. With
//! `TICKR_CAPTURE_DIR=<dir>` set, every answer is also written there as `<proxy>-<upstream>.http`
//! (raw bytes as received; chunked bodies left chunked), which is how the proxy fixtures of
//! `tests/fixtures/layers/` were recorded (see its README).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tickr::diagnosis::layer::Attributor;
use tickr_harness::reverse::AccessLine;
use tickr_harness::{free_port, Apache, H2o, Lighttpd, Nghttpx, Nginx, Route, Squid, Varnish};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::common::exposition::Exposition;
use crate::common::server::{Step, TestCa, TestServer, Validity};
use crate::common::tickr::Tickr;
use tickr::diagnosis::events::Event;

/// Each proxy's timeout for connecting upstream and for the upstream's answer: a hanging
/// upstream is slower than that by far. lighttpd and Squid take whole seconds (1 s).
const PROXY_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the raw client waits for a whole answer.
const CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// The application's own HTML error page (with its own `Server` and `Via`, to see whether the
/// proxy passes them through).
const APP_PAGE: &str = "<html><body><h1>Sorry, the shop is down</h1>\
                        <p>Error reference: shop-app-error-7f3</p></body></html>";

/// Go's `http.Error(w, http.StatusText(502), 502)`: `text/plain; charset=utf-8`, `nosniff`, the
/// text and a newline (`fmt.Fprintln`); the server adds `Date` and `Content-Length`.
const GO_HTTP_ERROR: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
X-Content-Type-Options: nosniff\r\n\
Date: Sun, 06 Dec 2026 17:40:00 GMT\r\n\
Content-Length: 12\r\n\r\nBad Gateway\n";

/// Express 4.22's `res.sendStatus(502)` on Node 20, as captured: the status text without a
/// newline, a weak ETag of it, `X-Powered-By: Express`.
const EXPRESS_SEND_STATUS: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\n\
X-Powered-By: Express\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 11\r\n\
ETag: W/\"b-FEHf78Vtp5PKyYpamsYZRti5SW0\"\r\n\
Date: Sun, 06 Dec 2026 17:33:39 GMT\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=5\r\n\r\nBad Gateway";

/// A 200 whose body stops after 25 of its 1000 bytes, then a TCP reset.
const CUT_BODY: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\nthe first part of a body\n";

/// One way the upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// Nothing listens on its port.
    Refused,
    /// Reads the request and closes the connection without a word.
    Close,
    /// Reads the request and resets the connection.
    Reset,
    /// Accepts and never answers.
    Hang,
    /// Answers 502 with its own HTML page, `Server` and `Via`.
    AppHtml502,
    /// Answers 502 as Go's `http.Error` does.
    Go502,
    /// Answers 502 as Express's `res.sendStatus` does.
    Express502,
    /// Sends a 200 head and part of the body, then resets.
    CutBody,
}

impl Upstream {
    const ALL: [Upstream; 8] = [
        Upstream::Refused,
        Upstream::Close,
        Upstream::Reset,
        Upstream::Hang,
        Upstream::AppHtml502,
        Upstream::Go502,
        Upstream::Express502,
        Upstream::CutBody,
    ];

    fn name(self) -> &'static str {
        match self {
            Upstream::Refused => "refused",
            Upstream::Close => "close",
            Upstream::Reset => "reset",
            Upstream::Hang => "hang",
            Upstream::AppHtml502 => "app-html-502",
            Upstream::Go502 => "go-502",
            Upstream::Express502 => "express-502",
            Upstream::CutBody => "cut-body",
        }
    }
}

/// An upstream for every [`Upstream`], alive as long as this is.
struct Upstreams {
    servers: Vec<(Upstream, TestServer)>,
    refused: SocketAddr,
}

impl Upstreams {
    async fn start() -> Self {
        let mut servers = Vec::new();
        for u in Upstream::ALL {
            let step = match u {
                Upstream::Refused => continue,
                Upstream::Close => Step::Close,
                Upstream::Reset => Step::Reset,
                Upstream::Hang => Step::Hang,
                Upstream::AppHtml502 => Step::Respond {
                    status: 502,
                    headers: vec![
                        ("content-type", "text/html; charset=utf-8".to_owned()),
                        ("server", "shop-app/1.0".to_owned()),
                        ("via", "1.1 shop-internal-hop".to_owned()),
                    ],
                    body: APP_PAGE.to_owned(),
                    delay: Duration::ZERO,
                },
                Upstream::Go502 => Step::Raw(GO_HTTP_ERROR),
                Upstream::Express502 => Step::Raw(EXPRESS_SEND_STATUS),
                Upstream::CutBody => Step::RawThenReset(CUT_BODY),
            };
            servers.push((u, TestServer::plain(vec![step]).await));
        }
        Self {
            servers,
            refused: ([127, 0, 0, 1], free_port()).into(),
        }
    }

    fn addr(&self, u: Upstream) -> SocketAddr {
        match u {
            Upstream::Refused => self.refused,
            _ => self
                .servers
                .iter()
                .find(|(s, _)| *s == u)
                .map(|(_, server)| server.addr)
                .expect("an upstream for every behaviour"),
        }
    }

    /// A route per behaviour, each front on a port distinct from the refused one (which
    /// `free_port` could hand out again: a proxy listening there would proxy to itself).
    fn routes(&self) -> Vec<(Upstream, Route)> {
        Upstream::ALL
            .iter()
            .map(|u| loop {
                let route = Route::to(self.addr(*u));
                if route.listen != self.refused {
                    break (*u, route);
                }
            })
            .collect()
    }
}

/// What one request through a proxy got: the bytes that arrived (a whole HTTP/1.1 answer, or
/// for HTTP/2 its HTTP/1.1 equivalent) and how the read ended.
#[derive(Debug, Clone)]
struct Capture {
    raw: Vec<u8>,
    /// `None` when the answer ended cleanly; else what the client met (reset, stream error).
    error: Option<String>,
}

/// A parsed answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Capture {
    /// How the answer ended: the client's error, else "eof", and whether the body was shorter
    /// than its `Content-Length` said.
    fn end(&self) -> String {
        let how = self.error.clone().unwrap_or_else(|| "eof".to_owned());
        let Some(a) = self.answer() else {
            return how;
        };
        let declared = a
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        match declared {
            Some(n) if n > a.body.len() => format!("{how}, {} of {n} bytes", a.body.len()),
            _ => how,
        }
    }

    fn answer(&self) -> Option<Answer> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(&self.raw).ok()? else {
            return None;
        };
        let status = response.code?;
        let mut map = HeaderMap::new();
        for h in response.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                map.append(name, value);
            }
        }
        let body = self.raw[len..].to_vec();
        let chunked = map
            .get("transfer-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let body = if chunked { dechunk(&body) } else { body };
        Some(Answer {
            status,
            headers: map,
            body,
        })
    }
}

/// The data of a chunked body, as far as it goes.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let data = &raw[eol + 2..];
        out.extend_from_slice(&data[..size.min(data.len())]);
        raw = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// `X-Request-Id` and `traceparent` of one request: the id names the proxy and the behaviour.
fn ids(proxy: &str, u: Upstream) -> (String, String) {
    let rid = format!("{proxy}-{}", u.name());
    // A W3C trace id is 32 hex digits: the id's bytes, hex-encoded and padded.
    let mut trace: String = rid.bytes().map(|b| format!("{b:02x}")).collect();
    trace.truncate(32);
    let traceparent = format!("00-{trace:0<32}-00f067aa0ba902b7-01");
    (rid, traceparent)
}

/// One GET over `stream` with `Connection: close`, reading until the end, an error or
/// [`CLIENT_LIMIT`].
async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: SocketAddr,
    rid: &str,
    traceparent: &str,
) -> Capture {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tickr-capture\r\nAccept: */*\r\n\
         X-Request-Id: {rid}\r\ntraceparent: {traceparent}\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Capture {
            raw: Vec::new(),
            error: Some(format!("write: {e}")),
        };
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) => return Some(format!("{:?}: {e}", e.kind())),
            }
        }
    };
    let error = tokio::time::timeout(CLIENT_LIMIT, read_all)
        .await
        .unwrap_or_else(|_| Some(format!("no end after {CLIENT_LIMIT:?}")));
    Capture { raw, error }
}

async fn plain_get(addr: SocketAddr, rid: &str, traceparent: &str) -> Capture {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(tcp) => raw_exchange(tcp, addr, rid, traceparent).await,
        Err(e) => Capture {
            raw: Vec::new(),
            error: Some(format!("connect: {e}")),
        },
    }
}

/// A TLS client trusting `ca_pem`, offering `alpn`.
fn tls_connector(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(tickr::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_stream(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// One GET over HTTP/1.1 in TLS.
async fn tls_h1_get(ca_pem: &str, addr: SocketAddr, rid: &str, traceparent: &str) -> Capture {
    match tls_stream(&tls_connector(ca_pem, &[b"http/1.1"]), addr).await {
        Ok(tls) => raw_exchange(tls, addr, rid, traceparent).await,
        Err(e) => Capture {
            raw: Vec::new(),
            error: Some(e),
        },
    }
}

/// One GET over HTTP/2 in TLS, written down as the HTTP/1.1 answer it stands for (status line
/// with the standard reason, the headers as received, the body data that arrived); `error`
/// says how the stream ended when it did not end cleanly (e.g. nghttpx's RST_STREAM).
async fn h2_get(ca_pem: &str, addr: SocketAddr, rid: &str, traceparent: &str) -> Capture {
    let attempt = async {
        let tls = tls_stream(&tls_connector(ca_pem, &[b"h2"]), addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let request = http::Request::builder()
            .uri(format!("https://{addr}/"))
            .header("user-agent", "tickr-capture")
            .header("x-request-id", rid)
            .header("traceparent", traceparent)
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("h2 send: {e}"))?;
        let status = response.status();
        let mut raw = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        for (k, v) in response.headers() {
            raw.extend_from_slice(k.as_str().as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(v.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let mut body = response.into_body();
        let mut error = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        raw.extend_from_slice(data);
                    }
                }
                Err(e) => {
                    let detail = std::error::Error::source(&e)
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default();
                    error = Some(format!("h2 body: {e}{detail}"));
                    break;
                }
            }
        }
        Ok::<_, String>(Capture { raw, error })
    };
    match tokio::time::timeout(CLIENT_LIMIT, attempt).await {
        Ok(Ok(capture)) => capture,
        Ok(Err(e)) => Capture {
            raw: Vec::new(),
            error: Some(e),
        },
        Err(_) => Capture {
            raw: Vec::new(),
            error: Some(format!("no end after {CLIENT_LIMIT:?}")),
        },
    }
}

/// How the front of a proxy is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Plain,
    TlsH1,
    H2,
}

/// One row of a capture table.
struct Row {
    proxy: String,
    upstream: Upstream,
    client: Client,
    capture: Capture,
}

/// Requests every route concurrently, once per client kind.
async fn capture_all(
    proxy: &str,
    routes: &[(Upstream, Route)],
    clients: &[Client],
    ca_pem: Option<&str>,
) -> Vec<Row> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (u, route)) in routes.iter().enumerate() {
        for client in clients {
            let (u, addr, client) = (*u, route.listen, *client);
            let tag = match client {
                Client::Plain | Client::TlsH1 => proxy.to_owned(),
                Client::H2 => format!("{proxy}-h2"),
            };
            let (rid, tp) = ids(&tag, u);
            let ca = ca_pem.map(str::to_owned);
            set.spawn(async move {
                let capture = match client {
                    Client::Plain => plain_get(addr, &rid, &tp).await,
                    Client::TlsH1 => tls_h1_get(ca.as_deref().unwrap(), addr, &rid, &tp).await,
                    Client::H2 => h2_get(ca.as_deref().unwrap(), addr, &rid, &tp).await,
                };
                (i, client, tag, u, capture)
            });
        }
    }
    let mut rows = Vec::new();
    while let Some(done) = set.join_next().await {
        let (i, client, tag, upstream, capture) = done.expect("request task");
        rows.push((
            i,
            client as u8,
            Row {
                proxy: tag,
                upstream,
                client,
                capture,
            },
        ));
    }
    rows.sort_by_key(|(i, c, _)| (*i, *c));
    let rows: Vec<Row> = rows.into_iter().map(|(_, _, r)| r).collect();
    save_captures(&rows);
    rows
}

/// Writes each capture to `$TICKR_CAPTURE_DIR/<proxy>-<upstream>.http` when that is set.
fn save_captures(rows: &[Row]) {
    let Some(dir) = std::env::var_os("TICKR_CAPTURE_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("capture dir");
    for r in rows {
        let name = format!("{}-{}", r.proxy, r.upstream.name());
        std::fs::write(dir.join(format!("{name}.http")), &r.capture.raw).expect("write capture");
        if let Some(e) = &r.capture.error {
            std::fs::write(dir.join(format!("{name}.error")), e).expect("write capture error");
        }
    }
}

const SHOWN_HEADERS: &[&str] = &[
    "server",
    "via",
    "x-cache",
    "x-cache-lookup",
    "x-squid-error",
    "x-varnish",
    "age",
    "retry-after",
    "content-type",
    "x-content-type-options",
    "x-powered-by",
    "etag",
];

fn print_table(rows: &[Row]) {
    let attributor = Attributor::default();
    let mut out = String::from(
        "\n| proxy | upstream | status | headers | body (start) | end | layer (evidence) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (status, headers, body, layer) = match r.capture.answer() {
            Some(a) => {
                let shown: Vec<String> = SHOWN_HEADERS
                    .iter()
                    .flat_map(|h| {
                        a.headers
                            .get_all(*h)
                            .iter()
                            .map(move |v| format!("{h}: {}", String::from_utf8_lossy(v.as_bytes())))
                    })
                    .collect();
                let body: String = String::from_utf8_lossy(&a.body)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(70)
                    .collect();
                let got = attributor.attribute(&a.headers, &a.body);
                (
                    a.status.to_string(),
                    shown.join("; "),
                    body,
                    format!("{} ({})", got.layer, got.evidence),
                )
            }
            None => (
                "-".to_owned(),
                String::new(),
                format!("{} bytes", r.capture.raw.len()),
                String::new(),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {status} | {headers} | {} | {} | {layer} |",
            r.proxy,
            r.upstream.name(),
            body.replace('|', "\\|"),
            r.capture.end()
        );
    }
    eprintln!("{out}");
}

/// What the proxy must answer for each behaviour: its own code for the failures, the
/// upstream's 502 for the relayed ones (with the upstream's body), and a 200 head for the
/// cut body (the bytes before the reset arrive; the end is not clean).
fn check_rows(rows: &[Row], generated: &[(Upstream, u16)], logs: &str) {
    for r in rows {
        let what = format!("{} / {} ({:?})", r.proxy, r.upstream.name(), r.client);
        let answer = r.capture.answer().unwrap_or_else(|| {
            panic!(
                "{what}: no answer ({:?}, {} bytes)\n{logs}",
                r.capture.error,
                r.capture.raw.len()
            )
        });
        let body = String::from_utf8_lossy(&answer.body);
        match r.upstream {
            Upstream::AppHtml502 => {
                assert_eq!(answer.status, 502, "{what}");
                assert!(body.contains("Sorry, the shop is down"), "{what}: {body}");
            }
            Upstream::Go502 => {
                assert_eq!(
                    (answer.status, body.as_ref()),
                    (502, "Bad Gateway\n"),
                    "{what}"
                );
            }
            Upstream::Express502 => {
                assert_eq!(
                    (answer.status, body.as_ref()),
                    (502, "Bad Gateway"),
                    "{what}"
                );
            }
            // Varnish in front of nginx sees nginx's cut relay: it streams the 200 head when
            // the body's first bytes come in time, else it fails the fetch with its own 503.
            Upstream::CutBody if r.proxy.starts_with("varnish-") && answer.status == 503 => {}
            Upstream::CutBody => {
                assert_eq!(answer.status, 200, "{what}");
                assert!(answer.body.len() < 1000, "{what}: the whole body arrived");
            }
            failure => {
                let want = generated
                    .iter()
                    .find(|(u, _)| *u == failure)
                    .map(|(_, code)| *code)
                    .unwrap_or_else(|| panic!("{what}: no expected code"));
                assert_eq!(answer.status, want, "{what}: {body}\n{logs}");
            }
        }
    }
}

/// Every request has exactly one access-log line, with its request id, traceparent and status.
fn check_access_log(rows: &[Row], lines: &[AccessLine], logs: &str) {
    assert_eq!(
        lines.len(),
        rows.len(),
        "one access-log line per request:\n{lines:#?}\n{logs}"
    );
    for r in rows {
        let (rid, tp) = ids(&r.proxy, r.upstream);
        let line = lines
            .iter()
            .find(|l| l.request_id.as_deref() == Some(rid.as_str()))
            .unwrap_or_else(|| panic!("no access-log line for {rid}:\n{lines:#?}"));
        assert_eq!(line.traceparent.as_deref(), Some(tp.as_str()), "{line:?}");
        if let Some(a) = r.capture.answer() {
            // When Varnish over nginx fails a cut fetch with its own 503 (see `check_rows`),
            // varnishncsa was seen to log the 200 of the backend response it had begun with.
            let varnish_cut_503 = r.proxy.starts_with("varnish-")
                && r.upstream == Upstream::CutBody
                && a.status == 503
                && line.status == 200;
            if !varnish_cut_503 {
                assert_eq!(line.status, a.status, "{rid}: {line:?}");
            }
        }
    }
}

fn routes_of(routes: &[(Upstream, Route)]) -> Vec<Route> {
    routes.iter().map(|(_, r)| *r).collect()
}

#[tokio::test]
async fn apache_mod_proxy() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let apache = Apache::start(&routes_of(&routes), PROXY_TIMEOUT).await;
    let rows = capture_all("apache", &routes, &[Client::Plain], None).await;
    print_table(&rows);
    // A read timeout is 502 "Error reading from remote server" too, not 504.
    let generated = [
        (Upstream::Refused, 503),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 502),
    ];
    check_rows(&rows, &generated, &apache.logs());
    check_access_log(&rows, &apache.access_log(rows.len()).await, &apache.logs());

    // Apache passes the origin's `Server` on and adds no `Via`: nothing shows that it relayed
    // the application's 502s, so they are `unknown` and Apache must not be named.
    let want = wants(
        "apache",
        &generated,
        Relayed::Invisible("apache"),
        Want::cut("apache", true),
    );
    let probes = probes("apache", &routes, "http", false, want);
    let mut seen = tickr_phase(&probes, SLOW, None, || apache.logs()).await;
    settle().await;
    let names = names(&probes);
    let lines = apache
        .access_log(expected_lines(&seen, &names, rows.len()))
        .await;
    check_counts("apache", &mut seen, &names, &lines, rows.len());
    report("apache", &seen, &apache.logs());
}

#[tokio::test]
async fn varnish() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let varnish = Varnish::start(&routes_of(&routes), PROXY_TIMEOUT).await;
    let rows = capture_all("varnish", &routes, &[Client::Plain], None).await;
    print_table(&rows);
    let generated = [
        (Upstream::Refused, 503),
        (Upstream::Close, 503),
        (Upstream::Reset, 503),
        (Upstream::Hang, 503),
    ];
    check_rows(&rows, &generated, &varnish.logs());
    check_access_log(
        &rows,
        &varnish.access_log(rows.len()).await,
        &varnish.logs(),
    );

    // Varnish adds `Via: 1.1 varnish`; of a cut body it sends the head and none of the bytes.
    let want = wants(
        "varnish",
        &generated,
        Relayed::Includes("varnish"),
        Want::cut("varnish", false),
    );
    let probes = probes("varnish", &routes, "http", false, want);
    let mut seen = tickr_phase(&probes, FAST, None, || varnish.logs()).await;
    settle().await;
    let names = names(&probes);
    let lines = varnish
        .access_log(expected_lines(&seen, &names, rows.len()))
        .await;
    check_counts("varnish", &mut seen, &names, &lines, rows.len());
    report("varnish", &seen, &varnish.logs());
}

#[tokio::test]
async fn lighttpd() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let lighttpd = Lighttpd::start(&routes_of(&routes), PROXY_TIMEOUT).await;
    let rows = capture_all("lighttpd", &routes, &[Client::Plain], None).await;
    print_table(&rows);
    // An upstream that closes or resets before its head is 500, not 502.
    let generated = [
        (Upstream::Refused, 503),
        (Upstream::Close, 500),
        (Upstream::Reset, 500),
        (Upstream::Hang, 504),
    ];
    check_rows(&rows, &generated, &lighttpd.logs());
    check_access_log(
        &rows,
        &lighttpd.access_log(rows.len()).await,
        &lighttpd.logs(),
    );

    // lighttpd passes the origin's `Server` on and adds no `Via`: like Apache, invisible on
    // what it relays.
    let want = wants(
        "lighttpd",
        &generated,
        Relayed::Invisible("lighttpd"),
        Want::cut("lighttpd", true),
    );
    let probes = probes("lighttpd", &routes, "http", false, want);
    let mut seen = tickr_phase(&probes, LIGHTTPD, None, || lighttpd.logs()).await;
    settle().await;
    let names = names(&probes);
    let lines = lighttpd
        .access_log(expected_lines(&seen, &names, rows.len()))
        .await;
    check_counts("lighttpd", &mut seen, &names, &lines, rows.len());
    report("lighttpd", &seen, &lighttpd.logs());
}

#[tokio::test]
async fn squid_accel() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let squid = Squid::reverse(&routes_of(&routes), PROXY_TIMEOUT).await;
    let rows = capture_all("squid", &routes, &[Client::Plain], None).await;
    print_table(&rows);
    // A refused `cache_peer` is 502 ERR_READ_ERROR, not 503 ERR_CONNECT_FAIL as when Squid
    // goes direct.
    let generated = [
        (Upstream::Refused, 502),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 504),
    ];
    check_rows(&rows, &generated, &squid.logs());
    check_access_log(
        &rows,
        &squid.reverse_access_log(rows.len()).await,
        &squid.logs(),
    );

    // Squid adds `Via: 1.1 <host> (squid/…)`.
    let want = wants(
        "squid",
        &generated,
        Relayed::Includes("squid"),
        Want::cut("squid", true),
    );
    let probes = probes("squid", &routes, "http", false, want);
    let mut seen = tickr_phase(&probes, SLOW, None, || squid.logs()).await;
    settle().await;
    let names = names(&probes);
    let lines = squid
        .reverse_access_log(expected_lines(&seen, &names, rows.len()))
        .await;
    check_counts("squid", &mut seen, &names, &lines, rows.len());
    report("squid", &seen, &squid.logs());
}

#[tokio::test]
async fn h2o() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let h2o = H2o::start(&routes_of(&routes), PROXY_TIMEOUT).await;
    let rows = capture_all("h2o", &routes, &[Client::Plain], None).await;
    print_table(&rows);
    // h2o 2.2 answers every upstream failure 502, its I/O timeout included.
    let generated = [
        (Upstream::Refused, 502),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 502),
    ];
    check_rows(&rows, &generated, &h2o.logs());
    check_access_log(&rows, &h2o.access_log(rows.len()).await, &h2o.logs());

    // h2o writes its own `Server` on what it relays.
    let want = wants(
        "h2o",
        &generated,
        Relayed::Includes("h2o"),
        Want::cut("h2o", true),
    );
    let probes = probes("h2o", &routes, "http", false, want);
    let mut seen = tickr_phase(&probes, FAST, None, || h2o.logs()).await;
    settle().await;
    let names = names(&probes);
    let lines = h2o
        .access_log(expected_lines(&seen, &names, rows.len()))
        .await;
    check_counts("h2o", &mut seen, &names, &lines, rows.len());
    report("h2o", &seen, &h2o.logs());
}

#[tokio::test]
async fn nghttpx_over_tls_h1_and_h2() {
    let upstreams = Upstreams::start().await;
    let routes = upstreams.routes();
    let ca = TestCa::new("tickr reverse proxies CA");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let nghttpx = Nghttpx::start(&routes_of(&routes), PROXY_TIMEOUT, &leaf).await;
    let rows = capture_all(
        "nghttpx",
        &routes,
        &[Client::TlsH1, Client::H2],
        Some(&ca.pem),
    )
    .await;
    print_table(&rows);
    let generated = [
        (Upstream::Refused, 502),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 504),
    ];
    check_rows(&rows, &generated, &nghttpx.logs());
    for (i, (u, _)) in routes.iter().enumerate() {
        let mine: Vec<Row> = rows
            .iter()
            .filter(|r| r.upstream == *u)
            .map(|r| Row {
                proxy: r.proxy.clone(),
                upstream: r.upstream,
                client: r.client,
                capture: r.capture.clone(),
            })
            .collect();
        check_access_log(&mine, &nghttpx.access_log(i, 2).await, &nghttpx.logs());
    }

    // nghttpx adds `Via` and writes its own `Server`; each route is a process of its own, with
    // its own access log, which the raw client left 2 lines in.
    let want = wants(
        "nghttpx",
        &generated,
        Relayed::Includes("nghttpx"),
        Want::cut("nghttpx", true),
    );
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let mut all = probes("nghttpx", &routes, "https", false, &want);
    all.extend(probes("nghttpx", &routes, "https", true, &want));
    // TLS to nghttpx: sixteen handshakes a second were seen to take up to a second on a loaded
    // machine, past FAST's timeout; SLOW leaves room and still outlasts nghttpx's 504.
    let mut seen = tickr_phase(&all, SLOW, Some(&ca_file), || nghttpx.logs()).await;
    settle().await;
    for i in 0..routes.len() {
        let names = [all[i].name.as_str(), all[routes.len() + i].name.as_str()];
        let lines = nghttpx
            .access_log(i, expected_lines(&seen, &names, 2))
            .await;
        check_counts(&format!("front {i}"), &mut seen, &names, &lines, 2);
    }
    report("nghttpx", &seen, &nghttpx.logs());
}

/// nginx `server` blocks for `routes`, with `timeout` to connect and to read, logging each
/// request's id for the chain's checks.
fn nginx_servers(routes: &[Route], timeout: Duration) -> String {
    let t = timeout.as_millis();
    let mut servers = String::new();
    for r in routes {
        let _ = writeln!(
            servers,
            "server {{\n    listen {};\n    access_log access-rid.log rid;\n    location / {{\n        \
             proxy_pass http://{};\n        proxy_connect_timeout {t}ms;\n        proxy_read_timeout {t}ms;\n    }}\n}}",
            r.listen, r.upstream
        );
    }
    format!(
        "log_format rid 'status=$status rid=$http_x_request_id tp=$http_traceparent \"$request\"';\n{servers}"
    )
}

/// Varnish in front of nginx in front of the upstreams: nginx generates the errors and Varnish
/// relays them; a dead nginx (nothing on Varnish's backend port) is Varnish's own 503.
#[tokio::test]
async fn chain_varnish_then_nginx() {
    let upstreams = Upstreams::start().await;
    let inner = upstreams.routes();
    let nginx = Nginx::start(&nginx_servers(&routes_of(&inner), PROXY_TIMEOUT)).await;
    // Varnish waits longer than nginx, so that nginx's own 504 reaches it.
    let outer: Vec<(Upstream, Route)> = inner
        .iter()
        .map(|(u, r)| (*u, Route::to(r.listen)))
        .collect();
    let varnish = Varnish::start(&routes_of(&outer), PROXY_TIMEOUT * 4).await;
    let rows = capture_all("varnish-nginx", &outer, &[Client::Plain], None).await;
    // nginx gone: Varnish's backend refuses.
    let dead = Route::to(([127, 0, 0, 1], free_port()).into());
    let lone = Varnish::start(&[dead], PROXY_TIMEOUT).await;
    let dead_rows = capture_all(
        "varnish-dead-nginx",
        &[(Upstream::Refused, dead)],
        &[Client::Plain],
        None,
    )
    .await;
    print_table(&rows);
    print_table(&dead_rows);
    let logs = format!("{}{}", nginx.logs(), varnish.logs());
    let generated = [
        (Upstream::Refused, 502),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 504),
    ];
    check_rows(&rows, &generated, &logs);
    check_rows(&dead_rows, &[(Upstream::Refused, 503)], &lone.logs());
    check_access_log(&rows, &varnish.access_log(rows.len()).await, &logs);
    let inner_lines = rid_log(&nginx);
    check_access_log(&rows, &inner_lines, &logs);

    // nginx generates the errors, Varnish relays them (its `Via`); the application's pages come
    // through both; a dead nginx is Varnish's own 503. Of a cut body Varnish streams the head
    // (with none of the bytes) or, when the first bytes come late, fails with its own 503.
    let generated = wants(
        "nginx",
        &generated,
        Relayed::Includes("varnish"),
        Want::cut("varnish", false),
    );
    let want = |u| match u {
        Upstream::Refused | Upstream::Close | Upstream::Reset | Upstream::Hang => generated(u)
            .into_iter()
            .map(|w| Want {
                relayed: Relayed::Exactly(&["varnish"]),
                ..w
            })
            .collect(),
        Upstream::CutBody => vec![Want::cut("varnish", false), Want::own(503, "varnish")],
        _ => generated(u),
    };
    let mut all = probes("varnish-nginx", &outer, "http", false, want);
    all.extend(probes(
        "varnish-dead-nginx",
        &[(Upstream::Refused, dead)],
        "http",
        false,
        |_| vec![Want::own(503, "varnish")],
    ));
    let logs = || format!("{}{}{}", nginx.logs(), varnish.logs(), lone.logs());
    let mut seen = tickr_phase(&all, FAST, None, logs).await;
    settle().await;
    let names = names(&all);
    let (chain, lone_names) = names.split_at(outer.len());
    let lines = varnish
        .access_log(expected_lines(&seen, chain, rows.len()))
        .await;
    check_counts("varnish", &mut seen, chain, &lines, rows.len());
    check_counts("nginx", &mut seen, chain, &rid_log(&nginx), rows.len());
    let lines = lone
        .access_log(expected_lines(&seen, lone_names, dead_rows.len()))
        .await;
    check_counts(
        "lone varnish",
        &mut seen,
        lone_names,
        &lines,
        dead_rows.len(),
    );
    report("varnish → nginx", &seen, &logs());
}

/// nginx in front of Apache in front of the upstreams: Apache generates the errors and nginx
/// relays them; a dead Apache is nginx's own 502.
#[tokio::test]
async fn chain_nginx_then_apache() {
    let upstreams = Upstreams::start().await;
    let inner = upstreams.routes();
    let apache = Apache::start(&routes_of(&inner), PROXY_TIMEOUT).await;
    let mut outer: Vec<(Upstream, Route)> = inner
        .iter()
        .map(|(u, r)| (*u, Route::to(r.listen)))
        .collect();
    // Apache gone: nginx's upstream refuses.
    let dead = Route::to(([127, 0, 0, 1], free_port()).into());
    outer.push((Upstream::Refused, dead));
    let nginx = Nginx::start(&nginx_servers(&routes_of(&outer), PROXY_TIMEOUT * 4)).await;
    let (chain, lone) = outer.split_at(inner.len());
    let rows = capture_all("nginx-apache", chain, &[Client::Plain], None).await;
    let dead_rows = capture_all("nginx-dead-apache", lone, &[Client::Plain], None).await;
    print_table(&rows);
    print_table(&dead_rows);
    let logs = format!("{}{}", nginx.logs(), apache.logs());
    let generated = [
        (Upstream::Refused, 503),
        (Upstream::Close, 502),
        (Upstream::Reset, 502),
        (Upstream::Hang, 502),
    ];
    check_rows(&rows, &generated, &logs);
    check_rows(&dead_rows, &[(Upstream::Refused, 502)], &logs);
    check_access_log(&rows, &apache.access_log(rows.len()).await, &logs);

    // Apache generates the errors, nginx relays them (writing its own `Server`, which names it
    // as the hop on tickr's side); a dead Apache is nginx's own 502. nginx closes tickr's
    // connection on a cut body: the first hop.
    let generated = wants(
        "apache",
        &generated,
        Relayed::Includes("nginx"),
        Want::cut("nginx", true),
    );
    let want = |u| match u {
        Upstream::Refused | Upstream::Close | Upstream::Reset | Upstream::Hang => generated(u)
            .into_iter()
            .map(|w| Want {
                relayed: Relayed::Exactly(&["nginx"]),
                ..w
            })
            .collect(),
        _ => generated(u),
    };
    let mut all = probes("nginx-apache", chain, "http", false, want);
    all.extend(probes("nginx-dead-apache", lone, "http", false, |_| {
        vec![Want::own(502, "nginx")]
    }));
    let logs = || format!("{}{}", nginx.logs(), apache.logs());
    // Apache's read timeout is a whole second.
    let mut seen = tickr_phase(&all, SLOW, None, logs).await;
    settle().await;
    let names = names(&all);
    let (chain_names, _) = names.split_at(chain.len());
    let lines = apache
        .access_log(expected_lines(&seen, chain_names, rows.len()))
        .await;
    check_counts("apache", &mut seen, chain_names, &lines, rows.len());
    check_counts(
        "nginx",
        &mut seen,
        &names,
        &rid_log(&nginx),
        rows.len() + dead_rows.len(),
    );
    report("nginx → apache", &seen, &logs());
}

// ---------------------------------------------------------------------------------------------
// tickr's own probes through the same proxies
// ---------------------------------------------------------------------------------------------

/// Probes each target has finished before tickr is stopped.
const PROBES: f64 = 3.0;

/// How long tickr may take to get [`PROBES`] probes of every target done.
const PROBE_LIMIT: Duration = Duration::from_secs(40);

/// How often tickr probes, and its timeout: above the proxy's own timeouts, so that the proxy's
/// answer to a hanging upstream arrives before tickr gives up.
#[derive(Debug, Clone, Copy)]
struct Pace {
    interval: &'static str,
    timeout: &'static str,
}

/// For proxies that give up after [`PROXY_TIMEOUT`] (500 ms).
const FAST: Pace = Pace {
    interval: "1s",
    timeout: "900ms",
};

/// Apache (its read `timeout=`) and Squid time out in whole seconds (1 s): tickr waits longer,
/// so probes less often.
const SLOW: Pace = Pace {
    interval: "2s",
    timeout: "1800ms",
};

/// lighttpd's 504 to a hanging upstream, with its 1 s timeouts, was seen to take up to 3.6 s
/// (tickr timed out first at 1.8 s and at 2.5 s): tickr waits 5.5 s.
const LIGHTTPD: Pace = Pace {
    interval: "6s",
    timeout: "5500ms",
};

/// Which hops the event must name as having relayed the response.
#[derive(Debug, Clone, Copy)]
enum Relayed {
    /// Exactly these, in this order (origin's side first).
    Exactly(&'static [&'static str]),
    /// This one among them (an application's own `Via` adds its own hop).
    Includes(&'static str),
    /// The proxy leaves no trace on what it relays (it passes the origin's `Server` on and
    /// adds no `Via`): it cannot be named, and must not be guessed.
    Invisible(&'static str),
    /// Not asserted.
    Any,
}

impl Relayed {
    fn holds(self, got: &[String]) -> bool {
        match self {
            Relayed::Exactly(want) => got.iter().map(String::as_str).eq(want.iter().copied()),
            Relayed::Includes(hop) => got.iter().any(|h| h == hop),
            Relayed::Invisible(hop) => got.iter().all(|h| h != hop),
            Relayed::Any => true,
        }
    }
}

/// What tickr must report for every probe of one target.
#[derive(Debug, Clone, Copy)]
struct Want {
    code: u16,
    /// The failure reasons allowed (a cut body is met as a reset, or as a timeout when the
    /// proxy holds the connection open).
    reasons: &'static [&'static str],
    layer: &'static str,
    relayed: Relayed,
    cut: bool,
    /// Some of the cut body arrived (`body_bytes > 0`); `false`: none did (`body_bytes == 0`).
    bytes: bool,
}

impl Want {
    /// The proxy's own error page for an upstream failure, straight to tickr.
    fn own(code: u16, layer: &'static str) -> Self {
        Self {
            code,
            reasons: &["status"],
            layer,
            relayed: Relayed::Exactly(&[]),
            cut: false,
            bytes: false,
        }
    }

    /// Another layer's error page relayed to tickr.
    fn relayed(code: u16, layer: &'static str, relayed: Relayed) -> Self {
        Self {
            relayed,
            ..Self::own(code, layer)
        }
    }

    /// A 200 cut in its body, the cut attributed to `layer`.
    fn cut(layer: &'static str, bytes: bool) -> Self {
        Self {
            code: 200,
            reasons: &["reset", "timeout"],
            layer,
            relayed: Relayed::Any,
            cut: true,
            bytes,
        }
    }

    fn class(&self) -> String {
        if self.cut {
            "cut".to_owned()
        } else {
            format!("{}xx", self.code / 100)
        }
    }

    fn matches(&self, e: &Event) -> bool {
        e.status == Some(self.code)
            && e.reason.is_some_and(|r| self.reasons.contains(&r))
            && e.layer.as_deref() == Some(self.layer)
            && self.relayed.holds(&e.relayed_by)
            && e.cut == self.cut
            && (!self.cut || (e.body_bytes > 0) == self.bytes)
    }
}

/// The wants of one proxy's routes: its own `generated` codes for the upstream failures,
/// `unknown` for the application's relayed 502s (`relay`: how the proxy shows on them), and a
/// cut 200 attributed to `cut`.
fn wants<'a>(
    layer: &'static str,
    generated: &'a [(Upstream, u16)],
    relay: Relayed,
    cut: Want,
) -> impl Fn(Upstream) -> Vec<Want> + 'a {
    move |u| match u {
        Upstream::AppHtml502 | Upstream::Go502 | Upstream::Express502 => {
            vec![Want::relayed(502, "unknown", relay)]
        }
        Upstream::CutBody => vec![cut],
        failure => {
            let code = generated
                .iter()
                .find(|(g, _)| *g == failure)
                .map(|(_, c)| *c)
                .expect("a code for every upstream failure");
            vec![Want::own(code, layer)]
        }
    }
}

/// One target of tickr's phase: a front of the proxy and what every probe of it must report
/// (one of `wants`: a proxy that may answer one of two ways).
struct Probe {
    name: String,
    url: String,
    h2: bool,
    wants: Vec<Want>,
}

/// One target per route of `routes`, named `<proxy>-<upstream>` (`-h2` with `h2`).
fn probes(
    proxy: &str,
    routes: &[(Upstream, Route)],
    scheme: &str,
    h2: bool,
    want: impl Fn(Upstream) -> Vec<Want>,
) -> Vec<Probe> {
    routes
        .iter()
        .map(|(u, r)| Probe {
            name: format!("{proxy}{}-{}", if h2 { "-h2" } else { "" }, u.name()),
            url: format!("{scheme}://{}/", r.listen),
            h2,
            wants: want(*u),
        })
        .collect()
}

/// What tickr reported for one target, and what was wrong with it.
struct Seen {
    name: String,
    /// Probes that ended (`tickr_probe_runs_total` at the stop), one event each.
    runs: u64,
    codes: String,
    reasons: String,
    layers: String,
    relayed: String,
    cut: String,
    /// The longest probe, in ms.
    slowest: f64,
    /// The request ids of its probes, from its events.
    ids: Vec<String>,
    /// Access-log lines carrying those ids, per proxy log checked.
    logged: Vec<String>,
    wrong: Vec<String>,
}

/// A sorted, deduplicated `a, b` of `items`.
fn distinct(items: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v.dedup();
    v.join(", ")
}

/// Starts tickr on `probes` (`ca_file`: the CA of TLS fronts), waits until each target has
/// [`PROBES`] probes done, stops tickr so that no probe is left in flight, and checks every
/// target's series and events against its wants.
async fn tickr_phase(
    probes: &[Probe],
    pace: Pace,
    ca_file: Option<&std::path::Path>,
    logs: impl Fn() -> String,
) -> Vec<Seen> {
    let mut yaml = format!(
        "defaults:\n  interval: {}\n  timeout: {}\n  confirm: 0\n",
        pace.interval, pace.timeout
    );
    if let Some(ca) = ca_file {
        let _ = writeln!(yaml, "  tls:\n    ca_file: {:?}", ca.display().to_string());
    }
    yaml.push_str("diagnosis:\n  events: 100000\ntargets:\n");
    for p in probes {
        let _ = writeln!(yaml, "  - name: {}\n    url: {}", p.name, p.url);
        if p.h2 {
            yaml.push_str("    http_version: http2\n");
        }
    }
    let tickr = Tickr::start(&yaml).await;
    let runs = |m: &Exposition, name: &str| -> f64 {
        m.find("tickr_probe_runs_total", &[("target", name)])
            .map(|s| s.value)
            .sum()
    };
    let deadline = tokio::time::Instant::now() + PROBE_LIMIT;
    let m = loop {
        let m = tickr.metrics().await;
        if probes.iter().all(|p| runs(&m, &p.name) >= PROBES) {
            break m;
        }
        if tokio::time::Instant::now() > deadline {
            let counts: Vec<String> = probes
                .iter()
                .map(|p| format!("{}: {}", p.name, runs(&m, &p.name)))
                .collect();
            panic!(
                "not {PROBES} probes of every target after {PROBE_LIMIT:?}: {counts:?}\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The series are checked in that last scrape: shutdown removes them. The recorder stays,
    // and since every probe here fails, it holds one event per probe that ended; a probe that
    // was in flight at the stop is cancelled and never counted (its request may still be in
    // the proxy's log, see `check_counts`).
    let handle = tickr.handle.clone();
    tickr.stop().await;

    let mut seen = Vec::new();
    for p in probes {
        let name = p.name.as_str();
        let mut wrong = Vec::new();
        let runs = runs(&m, name);
        let positive = |series: &'static str| {
            m.find(series, &[("target", name)])
                .filter(|s| s.value > 0.0)
                .cloned()
                .collect::<Vec<_>>()
        };
        let sum = |samples: &[crate::common::exposition::Sample]| -> f64 {
            samples.iter().map(|s| s.value).sum()
        };
        let label = |s: &crate::common::exposition::Sample, k: &str| {
            s.labels.get(k).cloned().unwrap_or_default()
        };

        // Every probe got a head, counted with the wanted code and class.
        let responses = positive("tickr_http_responses_total");
        for s in &responses {
            let (code, class) = (label(s, "code"), label(s, "class"));
            if !p
                .wants
                .iter()
                .any(|w| w.code.to_string() == code && w.class() == class)
            {
                wrong.push(format!("response code={code} class={class}"));
            }
        }
        if sum(&responses) != runs {
            wrong.push(format!("{} responses for {runs} probes", sum(&responses)));
        }
        // Every probe failed, for a wanted reason.
        let failures = positive("tickr_probe_failures_total");
        for s in &failures {
            let reason = label(s, "reason");
            if !p.wants.iter().any(|w| w.reasons.contains(&reason.as_str())) {
                wrong.push(format!("failure reason={reason}"));
            }
        }
        if sum(&failures) != runs {
            wrong.push(format!("{} failures for {runs} probes", sum(&failures)));
        }
        // Every 5xx went to the wanted layer; a cut 200 is no server error.
        let server_errors = positive("tickr_http_server_errors_total");
        for s in &server_errors {
            let (code, layer) = (label(s, "code"), label(s, "layer"));
            if !p
                .wants
                .iter()
                .any(|w| !w.cut && w.code.to_string() == code && w.layer == layer)
            {
                wrong.push(format!("server error code={code} layer={layer}"));
            }
        }
        let errors_wanted: f64 = responses
            .iter()
            .filter(|s| label(s, "code").starts_with('5'))
            .map(|s| s.value)
            .sum();
        if sum(&server_errors) != errors_wanted {
            wrong.push(format!(
                "{} server errors for {errors_wanted} 5xx responses",
                sum(&server_errors)
            ));
        }
        // One event per probe, each as wanted.
        let events = handle.recorder.failures(Some(name), None, 100_000);
        // At most one probe ended between the last scrape and the stop.
        let ended = events.len() as f64;
        if ended < runs || ended > runs + 1.0 {
            wrong.push(format!(
                "{ended} events for {runs} probes counted at the last scrape"
            ));
        }
        for e in &events {
            if !p.wants.iter().any(|w| w.matches(e)) {
                wrong.push(format!("event {}", e.to_json()));
            }
        }
        let ids: Vec<String> = events.iter().filter_map(|e| e.request_id()).collect();
        if ids.len() != events.len() {
            wrong.push(format!(
                "{} of {} events without a request id",
                events.len() - ids.len(),
                events.len()
            ));
        }
        seen.push(Seen {
            name: p.name.clone(),
            runs: events.len() as u64,
            codes: distinct(
                responses
                    .iter()
                    .map(|s| format!("{} {}", label(s, "code"), label(s, "class"))),
            ),
            reasons: distinct(failures.iter().map(|s| label(s, "reason"))),
            layers: distinct(events.iter().map(|e| e.layer.clone().unwrap_or_default())),
            relayed: distinct(events.iter().map(|e| format!("{:?}", e.relayed_by))),
            cut: distinct(
                events
                    .iter()
                    .map(|e| format!("{} ({} B)", e.cut, e.body_bytes)),
            ),
            slowest: events
                .iter()
                .flat_map(|e| e.phases_ms.iter().filter(|(p, _)| *p == "total"))
                .map(|(_, ms)| *ms)
                .fold(0.0, f64::max),
            ids,
            logged: Vec::new(),
            wrong,
        });
    }
    seen
}

/// tickr's counts against one access log of the proxy (`what`), which holds `raw` lines of the
/// raw-client phase besides tickr's: each probe of `targets` has exactly one line, found by
/// its request id. The only other lines allowed are those of probes that shutdown cancelled in
/// flight (tickr counts a probe when it ends; the proxy logs the request all the same), at
/// most one per target.
fn check_counts(what: &str, seen: &mut [Seen], targets: &[&str], lines: &[AccessLine], raw: usize) {
    let mut matched = 0;
    for s in seen
        .iter_mut()
        .filter(|s| targets.contains(&s.name.as_str()))
    {
        let mine = lines
            .iter()
            .filter(|l| l.request_id.as_ref().is_some_and(|id| s.ids.contains(id)))
            .count();
        let distinct_ids = {
            let mut v = s.ids.clone();
            v.sort();
            v.dedup();
            v.len()
        };
        s.logged.push(format!("{what}: {mine}"));
        if mine as u64 != s.runs || distinct_ids as u64 != s.runs {
            s.wrong.push(format!(
                "{what}: {mine} access-log lines for {} probes ({distinct_ids} distinct ids)",
                s.runs
            ));
        }
        matched += mine;
    }
    let extra = lines.len().saturating_sub(raw + matched);
    if extra > targets.len() || lines.len() < raw + matched {
        let first = seen
            .iter_mut()
            .find(|s| targets.contains(&s.name.as_str()))
            .expect("a target");
        first.wrong.push(format!(
            "{what}: {} lines, {raw} raw + {matched} of tickr's probes + {extra} unexplained",
            lines.len()
        ));
    }
}

/// The largest number of lines a proxy's log should get: the raw client's and every probe of
/// `targets` (a probe cancelled in flight by the shutdown may add one per target, which is not
/// waited for).
fn expected_lines(seen: &[Seen], targets: &[&str], raw: usize) -> usize {
    raw + seen
        .iter()
        .filter(|s| targets.contains(&s.name.as_str()))
        .map(|s| s.runs as usize)
        .sum::<usize>()
}

/// Prints tickr's table for `proxy`, then fails on whatever was wrong.
fn report(proxy: &str, seen: &[Seen], logs: &str) {
    let mut out = format!(
        "\ntickr through {proxy}\n\
         | target | probes | slowest | code | reason | layer | relayed_by | cut (bytes) | access log | verdict |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for s in seen {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ms | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.runs,
            s.slowest,
            s.codes,
            s.reasons,
            s.layers,
            s.relayed,
            s.cut,
            s.logged.join("; "),
            if s.wrong.is_empty() {
                "right".to_owned()
            } else {
                format!("WRONG: {}", s.wrong.join(" / "))
            }
        );
    }
    eprintln!("{out}");
    let wrong: Vec<String> = seen
        .iter()
        .filter(|s| !s.wrong.is_empty())
        .map(|s| format!("{}: {}", s.name, s.wrong.join("\n    ")))
        .collect();
    assert!(wrong.is_empty(), "{proxy}:\n{}\n{logs}", wrong.join("\n"));
}

/// Lets the proxies write the lines of requests just answered (and of probes cancelled in
/// flight, which a hanging upstream holds for up to the proxy's 1 s timeout).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn names(probes: &[Probe]) -> Vec<&str> {
    probes.iter().map(|p| p.name.as_str()).collect()
}

/// The lines of the `rid` access log that [`nginx_servers`] configures.
fn rid_log(nginx: &Nginx) -> Vec<AccessLine> {
    std::fs::read_to_string(nginx.dir().join("access-rid.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(AccessLine::parse)
        .collect()
}
