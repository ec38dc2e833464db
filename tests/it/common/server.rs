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

impl ServerTls {
    pub fn new(leaf: &Leaf) -> Self {
        Self::with_alpn(leaf, &[b"h2", b"http/1.1"])
    }

    pub fn with_alpn(leaf: &Leaf, alpn: &[&[u8]]) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain PEM");
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(tickr::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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
    /// Answer 200 with the request's method, target, headers and body as the body.
    Echo,
    /// Read the request, write these bytes, close.
    Raw(&'static [u8]),
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
    handshakes: Handshakes,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
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
        let (stop, mut stopped) = oneshot::channel::<()>();
        let script = Arc::new(script);
        let is_tls = tls.is_some();
        let counter = connections.clone();
        let handshakes = Handshakes::default();
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let step = script[n % script.len()].clone();
                        let tls = tls.clone();
                        conns.spawn(handle(stream, step, tls, seen.clone()));
                    }
                }
            }
            conns.abort_all();
        });
        Self {
            addr,
            tls: is_tls,
            connections,
            handshakes,
            stop: Some(stop),
            task,
        }
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
            let _ = stream.shutdown().await;
        }
    }
}
