//! A test target: plain HTTP or TLS (rcgen certificates), answering each new connection with
//! the next step of a script (cycling), so a test knows exactly what every probe met.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A certificate authority for tests.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A leaf certificate (with its chain) and key, in PEM.
#[derive(Clone)]
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after_unix: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Validity {
    Valid,
    Expired,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        Self { params, key, pem }
    }

    /// A leaf for `names` (DNS names or IP addresses) signed by this CA.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tickr test leaf");
        let (from, until) = match validity {
            Validity::Valid => ((2020, 1, 1), (2080, 6, 1)),
            Validity::Expired => ((2020, 1, 1), (2021, 3, 1)),
        };
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let not_after_unix = params.not_after.unix_timestamp();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            not_after_unix,
        }
    }
}

/// Server-side TLS configuration offering h2 and http/1.1.
#[derive(Clone)]
pub struct ServerTls(Arc<rustls::ServerConfig>);

/// The server's certificate, which a test may replace while the server runs (the next
/// handshakes present the new one).
#[derive(Clone, Debug)]
pub struct ServedCert(Arc<std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>>);

impl ServedCert {
    pub fn new(leaf: &Leaf) -> Self {
        Self(Arc::new(std::sync::RwLock::new(certified(leaf))))
    }

    /// From the next handshake on, present `leaf`.
    pub fn set(&self, leaf: &Leaf) {
        *self.0.write().unwrap() = certified(leaf);
    }
}

impl rustls::server::ResolvesServerCert for ServedCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap().clone())
    }
}

fn certified(leaf: &Leaf) -> Arc<rustls::sign::CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain PEM");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key PEM");
    let key = tickr::tls::provider()
        .key_provider
        .load_private_key(key)
        .expect("leaf key");
    Arc::new(rustls::sign::CertifiedKey::new(chain, key))
}

/// How a [`ServerTls`] is built: its certificate, the TLS versions it speaks, and whose
/// client certificates it demands, if any.
pub struct ServerTlsOptions<'a> {
    pub cert: ServedCert,
    pub alpn: &'a [&'a [u8]],
    /// TLS 1.3 and 1.2 when empty.
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    /// Demand a client certificate signed by this CA (PEM).
    pub client_ca: Option<&'a str>,
}

impl<'a> ServerTlsOptions<'a> {
    pub fn new(leaf: &Leaf) -> Self {
        Self {
            cert: ServedCert::new(leaf),
            alpn: &[b"h2", b"http/1.1"],
            versions: &[],
            client_ca: None,
        }
    }
}

impl ServerTls {
    pub fn new(leaf: &Leaf) -> Self {
        Self::with_alpn(leaf, &[b"h2", b"http/1.1"])
    }

    pub fn with_alpn(leaf: &Leaf, alpn: &[&[u8]]) -> Self {
        Self::with(ServerTlsOptions {
            alpn,
            ..ServerTlsOptions::new(leaf)
        })
    }

    pub fn with(options: ServerTlsOptions<'_>) -> Self {
        let provider = tickr::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone());
        let builder = match options.versions {
            [] => builder.with_safe_default_protocol_versions(),
            versions => builder.with_protocol_versions(versions),
        }
        .expect("versions");
        let builder = match options.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(cert.expect("CA PEM")).expect("CA root");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(options.cert));
        config.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
        Self(Arc::new(config))
    }
}

/// What the server does with one connection.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer every request on the connection with this status, headers and body, after `delay`.
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    },
    /// Read the request, then close the connection without a word.
    Close,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// Accept and never answer.
    Hang,
    /// Read the request and never answer, but let go of the connection once the client closes
    /// it (a [`Hang`](Step::Hang) holds it until the server stops): for long runs, where the
    /// server must not pile up the sockets of probes that timed out long ago.
    Stall,
    /// Answer 200 with the request's method, target, headers and body as the body.
    Echo,
    /// Read the request, write these bytes, close.
    Raw(&'static [u8]),
    /// Like [`Step::Raw`], with bytes built at run time (e.g. a gzip bomb behind a head).
    Blob(Bytes),
    /// Read the request, write these bytes, then hold the connection open without a word.
    RawThenHang(&'static [u8]),
    /// Read the request, write these bytes, then reset the connection (RST), e.g. mid-body.
    RawThenReset(&'static [u8]),
    /// Read the request, then send `HTTP/1.1 200 OK` and its headers one byte per `every`.
    TrickleHeaders { every: Duration },
    /// Read the request, send a 200 head, then body bytes until the client goes away: chunked,
    /// or delimited by the connection's end.
    EndlessBody { chunked: bool },
    /// Read the request, send a status line and then one header `bytes` long.
    HugeHeaders { bytes: usize },
    /// Read the request, then send interim responses with this 1xx status until the client goes
    /// away, never a final response.
    Informational(u16),
    /// HTTP/2 with prior knowledge (h2c): settings, then for stream 1 a 200 head and part of a
    /// body, then the abort.
    H2Abort(H2Abort),
}

/// How [`Step::H2Abort`] ends the response it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Abort {
    /// RST_STREAM(INTERNAL_ERROR) on stream 1; the connection stays open.
    RstStream,
    /// GOAWAY(last stream 1, INTERNAL_ERROR), then the connection closes.
    GoAway,
    /// The connection closes (FIN) without a frame to say why.
    Close,
    /// The connection is reset (RST) without a frame to say why.
    TcpReset,
}

impl Step {
    pub fn status(status: u16) -> Self {
        Step::Respond {
            status,
            headers: vec![],
            body: format!("status {status}\n"),
            delay: Duration::ZERO,
        }
    }

    pub fn body(status: u16, body: &str) -> Self {
        Step::Respond {
            status,
            headers: vec![],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub fn slow(status: u16, delay: Duration) -> Self {
        Step::Respond {
            status,
            headers: vec![],
            body: "slow\n".into(),
            delay,
        }
    }

    pub fn redirect(status: u16, location: &str) -> Self {
        Step::Respond {
            status,
            headers: vec![("location", location.to_owned())],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// A script from status codes, e.g. `&[200, 502, 200]`.
    pub fn statuses(codes: &[u16]) -> Vec<Step> {
        codes.iter().map(|c| Step::status(*c)).collect()
    }
}

/// A running test server. Stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    tls: bool,
    connections: Arc<AtomicUsize>,
    peers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    open: Arc<OpenConnections>,
    handshakes: Handshakes,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Connections being handled right now, and the most there ever were at once.
#[derive(Default)]
struct OpenConnections {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// Counts one connection as open until dropped (also when its handler is aborted).
struct Open(Arc<OpenConnections>);

impl Open {
    fn new(open: &Arc<OpenConnections>) -> Self {
        let now = open.now.fetch_add(1, Ordering::SeqCst) + 1;
        open.max.fetch_max(now, Ordering::SeqCst);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestServer {
    pub async fn plain(script: Vec<Step>) -> Self {
        Self::start(script, None).await
    }

    /// A plain server on a given loopback address and port (e.g. 127.0.0.2, to stand for a
    /// second node of one service).
    pub async fn plain_on(addr: SocketAddr, script: Vec<Step>) -> Self {
        Self::start_on(addr, script, None).await
    }

    pub async fn tls(script: Vec<Step>, tls: ServerTls) -> Self {
        Self::start(script, Some(tls)).await
    }

    /// A TLS server on a given loopback address and port.
    pub async fn tls_on(addr: SocketAddr, script: Vec<Step>, tls: ServerTls) -> Self {
        Self::start_on(addr, script, Some(tls)).await
    }

    async fn start(script: Vec<Step>, tls: Option<ServerTls>) -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into(), script, tls).await
    }

    async fn start_on(addr: SocketAddr, script: Vec<Step>, tls: Option<ServerTls>) -> Self {
        assert!(!script.is_empty(), "a script needs at least one step");
        assert!(
            addr.ip().is_loopback(),
            "test servers listen on loopback only"
        );
        let listener = TcpListener::bind(addr).await.expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_peers = peers.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let script = Arc::new(script);
        let is_tls = tls.is_some();
        let counter = connections.clone();
        let handshakes = Handshakes::default();
        let seen = handshakes.clone();
        let open = Arc::new(OpenConnections::default());
        let counting = open.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        seen_peers.lock().unwrap().push(peer);
                        let _ = stream.set_nodelay(true);
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let step = script[n % script.len()].clone();
                        let tls = tls.clone();
                        let handler = handle(stream, step, tls, seen.clone());
                        let open = Open::new(&counting);
                        conns.spawn(async move {
                            handler.await;
                            drop(open);
                        });
                    }
                    // Reaps finished handlers: a JoinSet keeps them until joined, which over a
                    // long run of short connections adds up.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.abort_all();
        });
        Self {
            addr,
            tls: is_tls,
            connections,
            peers,
            open,
            handshakes,
            stop: Some(stop),
            task,
        }
    }

    /// The address of every connection's client so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// The kind of every completed TLS handshake so far (full or resumed), in order.
    pub fn handshakes(&self) -> Vec<rustls::HandshakeKind> {
        self.handshakes.0.lock().unwrap().clone()
    }

    /// A URL on this server, e.g. `url("/health")`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections open right now (accepted, and their handler not finished).
    pub fn open_connections(&self) -> usize {
        self.open.now.load(Ordering::SeqCst)
    }

    /// The most connections that were ever open at the same time. A handler ends when it has
    /// answered and the client has closed (or, for [`Step::Hang`], never): use a server that
    /// answers at once to learn how many requests a client had in flight together.
    pub fn max_concurrent(&self) -> usize {
        self.open.max.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

#[derive(Clone, Default)]
struct Handshakes(Arc<std::sync::Mutex<Vec<rustls::HandshakeKind>>>);

async fn handle(tcp: TcpStream, step: Step, tls: Option<ServerTls>, handshakes: Handshakes) {
    match tls {
        None => serve(tcp, step, |s| s).await,
        Some(ServerTls(config)) => {
            let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
                return;
            };
            if let Some(kind) = stream.get_ref().1.handshake_kind() {
                handshakes.0.lock().unwrap().push(kind);
            }
            serve(stream, step, |s| s.into_inner().0).await;
        }
    }
}

async fn serve<S>(mut stream: S, step: Step, into_tcp: impl FnOnce(S) -> TcpStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match step {
        Step::Respond {
            status,
            headers,
            body,
            delay,
        } => {
            let service = service_fn(move |_req| {
                let (headers, body) = (headers.clone(), body.clone());
                async move {
                    tokio::time::sleep(delay).await;
                    let mut r = http::Response::builder().status(status);
                    for (k, v) in headers {
                        r = r.header(k, v);
                    }
                    Ok::<_, Infallible>(r.body(Full::new(Bytes::from(body))).expect("response"))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Step::Close => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.shutdown().await;
        }
        Step::Reset => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let tcp = into_tcp(stream);
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
        Step::Hang => {
            std::future::pending::<()>().await;
        }
        Step::Stall => {
            let mut buf = [0u8; 4096];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Step::Echo => {
            let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
                for (k, v) in req.headers() {
                    text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                }
                let body = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                text.push_str(&String::from_utf8_lossy(&body));
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Step::Raw(bytes) => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(bytes).await;
            lingering_close(stream).await;
        }
        Step::Blob(bytes) => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(&bytes).await;
            lingering_close(stream).await;
        }
        Step::RawThenHang(bytes) => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(bytes).await;
            let _ = stream.flush().await;
            std::future::pending::<()>().await;
        }
        Step::RawThenReset(bytes) => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(bytes).await;
            let _ = stream.flush().await;
            // Let the bytes reach the client before the RST overtakes them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tcp = into_tcp(stream);
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
        Step::TrickleHeaders { every } => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let head =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
            for byte in head {
                if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }
        Step::EndlessBody { chunked } => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let (head, piece): (&[u8], Vec<u8>) = if chunked {
                let mut piece = format!("{:x}\r\n", FILLER.len()).into_bytes();
                piece.extend_from_slice(&FILLER);
                piece.extend_from_slice(b"\r\n");
                (
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                    piece,
                )
            } else {
                (
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
                    FILLER.to_vec(),
                )
            };
            if stream.write_all(head).await.is_err() {
                return;
            }
            while stream.write_all(&piece).await.is_ok() {}
        }
        Step::HugeHeaders { bytes } => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nx-huge: ")
                .await
                .is_err()
            {
                return;
            }
            let mut sent = 0;
            while sent < bytes {
                let n = FILLER.len().min(bytes - sent);
                if stream.write_all(&FILLER[..n]).await.is_err() {
                    return;
                }
                sent += n;
            }
            let _ = stream.write_all(b"\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }
        Step::Informational(status) => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let head =
                format!("HTTP/1.1 {status} Informational\r\nlink: </a.css>; rel=preload\r\n\r\n");
            let block = head.repeat(64 * 1024 / head.len());
            while stream.write_all(block.as_bytes()).await.is_ok() {}
        }
        Step::H2Abort(how) => {
            if let Some(stream) = h2_abort(stream, how).await {
                let tcp = into_tcp(stream);
                let _ = tcp.set_zero_linger();
                drop(tcp);
            }
        }
    }
}

/// Body filler for endless bodies.
static FILLER: [u8; 16 * 1024] = [b'x'; 16 * 1024];

/// One HTTP/2 frame (RFC 9113 §4.1).
/// Closes as nginx and Apache do after an answer: the write side first, then what the client
/// still sends is read and dropped until it closes too (for at most a second). Closing with the
/// client's bytes unread makes the kernel answer them with a RST, which can reach the client
/// before it has read the answer: an HTTP/2 client then reports a broken pipe, not the HTTP/1.1
/// it was about to reject (`an_http1_answer_to_http2_is_protocol_every_time`).
pub async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Returns the stream when the caller is to reset it.
async fn h2_abort<S>(mut stream: S, how: H2Abort) -> Option<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const INTERNAL_ERROR: u32 = 0x2;
    let mut preface = [0u8; 24];
    if stream.read_exact(&mut preface).await.is_err() {
        return None;
    }
    if stream
        .write_all(&h2_frame(SETTINGS, 0, 0, &[]))
        .await
        .is_err()
    {
        return None;
    }
    // Read frames until the request's HEADERS, acknowledging the client's SETTINGS.
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return None;
        }
        match (head[3], head[4] & ACK) {
            (SETTINGS, 0) => {
                let _ = stream.write_all(&h2_frame(SETTINGS, ACK, 0, &[])).await;
            }
            (HEADERS, _) => break,
            _ => {}
        }
    }
    // 0x88: HPACK static table entry 8, `:status: 200`.
    let mut answer = h2_frame(HEADERS, END_HEADERS, 1, &[0x88]);
    answer.extend(h2_frame(DATA, 0, 1, b"the first half of a body"));
    match how {
        H2Abort::RstStream => {
            answer.extend(h2_frame(RST_STREAM, 0, 1, &INTERNAL_ERROR.to_be_bytes()));
        }
        H2Abort::GoAway => {
            let mut payload = 1u32.to_be_bytes().to_vec();
            payload.extend_from_slice(&INTERNAL_ERROR.to_be_bytes());
            answer.extend(h2_frame(GOAWAY, 0, 0, &payload));
        }
        H2Abort::Close | H2Abort::TcpReset => {}
    }
    if stream.write_all(&answer).await.is_err() {
        return None;
    }
    let _ = stream.flush().await;
    // Let the frames reach the client before the connection ends.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match how {
        H2Abort::RstStream => std::future::pending().await,
        H2Abort::GoAway | H2Abort::Close => {
            let _ = stream.shutdown().await;
            None
        }
        H2Abort::TcpReset => Some(stream),
    }
}
