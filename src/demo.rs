//! `tickr demo`: an embedded HTTPS gateway on 127.0.0.1 that misbehaves like a real one, probed
//! by a real exporter on a short interval, so the pages and metrics have something to show at once.
//!
//! The gateway's certificate is signed by a throwaway CA minted at start, which tickr trusts
//! through `tls.ca_file`: the demo takes the same verification path as a real private CA. That
//! is why rcgen is a regular dependency; the alternative, a fixed key compiled into the binary,
//! would be a key anyone can read that users would be tempted to trust.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::cli::{self, DemoArgs};
use crate::config::{self, ConfigError, HumanDuration};
use crate::exporter::Exporter;
use crate::signals;

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot mint the demo certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up the demo gateway's TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot start the demo gateway on 127.0.0.1: {0}")]
    Gateway(#[source] io::Error),
    #[error("cannot write the demo files in {}: {source}", .dir.display())]
    Files {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the demo configuration is invalid (a bug): {0}")]
    Config(#[from] ConfigError),
    #[error(
        "cannot listen on {address}: {source} (another address: --web.listen-address 127.0.0.1:0)"
    )]
    Listen {
        address: String,
        #[source]
        source: io::Error,
    },
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: &DemoArgs) -> Result<(), DemoError> {
    // Half the interval leaves room for the slow answers to miss the timeout by a wide margin.
    let timeout = Duration::from_millis((args.interval.as_millis() / 2).max(50) as u64);
    let gateway = Gateway::start(timeout * 3).await?;
    let dir = DemoDir::create()?;
    let files = |source| DemoError::Files {
        dir: dir.0.clone(),
        source,
    };
    std::fs::write(dir.0.join("ca.pem"), &gateway.ca_pem).map_err(files)?;
    let path = dir.0.join("config.yml");
    std::fs::write(&path, demo_config(gateway.addr, args.interval, timeout)).map_err(files)?;
    let config = config::load(&path)?;
    let targets = config.targets.len();

    let address = cli::listen_address(&args.listen_address);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| DemoError::Listen {
            address: address.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| DemoError::Listen {
        address: address.clone(),
        source,
    })?;
    let exporter = Exporter::start(config).await;
    signals::reload_on_sighup(exporter.handle());
    // Installed before the URLs are printed, so whoever reads them can stop the demo at once.
    let shutdown = signals::shutdown();

    let web = if bound.ip().is_unspecified() {
        format!("http://localhost:{}", bound.port())
    } else {
        format!("http://{bound}")
    };
    println!(
        "tickr demo: probing {targets} targets on an embedded gateway at https://{gw} every {every}\n\
         (mostly 200; now and then an nginx 502 page, an application 503, a wrong page, a reset or an answer slower than the {limit} timeout)\n  \
         landing page   {web}/\n  \
         failed probes  {web}/events\n  \
         metrics        {web}/metrics\n  \
         configuration  {config} (edit it, then POST {web}/-/reload)\n\
         Ctrl-C to stop.",
        gw = gateway.addr,
        every = HumanDuration(args.interval),
        limit = HumanDuration(timeout),
        config = path.display(),
    );
    exporter.run(listener, shutdown).await;
    drop(gateway);
    drop(dir);
    Ok(())
}

/// The exporter's configuration for the demo: three endpoints of one shop behind the gateway.
fn demo_config(gateway: SocketAddr, interval: Duration, timeout: Duration) -> String {
    let base = format!("https://{gateway}");
    format!(
        r#"# Written by `tickr demo`; removed when it stops. Three endpoints of a shop behind one gateway.
defaults:
  interval: {interval}
  timeout: {timeout}
  labels: {{env: demo}}
  tls: {{ca_file: ca.pem}}
targets:
  - name: shop-home
    url: {base}/
    expect:
      status: [200]
      body_contains: ["<title>Demo shop"]
  - name: shop-checkout
    url: {base}/checkout
    expect:
      status: [200]
      body_contains: ["<title>Demo shop"]
  - name: shop-api
    url: {base}/api/health
    expect:
      status: [200]
      body_contains: ['"status":"ok"']
diagnosis:
  # The shop's own error answers: a 503 carrying one of these is the application's doing.
  origin:
    - body: ["We'll be right back"]
    - body: ['"status":"unavailable"']
"#,
        interval = HumanDuration(interval),
        timeout = HumanDuration(timeout),
    )
}

/// A private directory for the CA and the configuration, removed on drop.
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> Result<Self, DemoError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let tmp = std::env::temp_dir();
        let mut last = None;
        // `create`, not `create_all`: an existing path (another user's, or a symlink) is refused.
        for attempt in 0..100 {
            let dir = tmp.join(format!("tickr-demo-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) => last = Some(e),
            }
        }
        Err(DemoError::Files {
            dir: tmp,
            source: last.unwrap_or_else(|| io::Error::other("no attempt made")),
        })
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the gateway does with one connection (each probe is a fresh connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// The page, at once.
    Fine,
    /// nginx's own 502 page: the upstream did not answer properly.
    NginxBadGateway,
    /// The application's 503 page, relayed by nginx.
    AppUnavailable,
    /// A 200 with nginx's default welcome page: a request routed to the wrong server block.
    WrongPage,
    /// Reads the request, then resets the connection.
    Reset,
    /// The page, after longer than the probe's timeout.
    Slow,
}

/// One block of connections: mostly fine, every kind of trouble at least once. Each block is
/// shuffled afresh, so failures are spread irregularly but each shows up within a block.
const BLOCK: [Behaviour; 24] = {
    use Behaviour::*;
    [
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        Fine,
        NginxBadGateway,
        NginxBadGateway,
        AppUnavailable,
        WrongPage,
        Reset,
        Slow,
    ]
};

/// The order of behaviours: [`BLOCK`] shuffled by a fixed-seed xorshift, block after block,
/// so every run misbehaves the same way (no randomness crate needed for a demo).
struct Pattern {
    state: u64,
    block: [Behaviour; BLOCK.len()],
    next: usize,
}

impl Pattern {
    fn new() -> Self {
        Self {
            state: 0x2545_f491_4f6c_dd1d,
            block: BLOCK,
            next: BLOCK.len(),
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn next(&mut self) -> Behaviour {
        if self.next == self.block.len() {
            for i in (1..self.block.len()).rev() {
                let j = (self.random() % (i as u64 + 1)) as usize;
                self.block.swap(i, j);
            }
            self.next = 0;
        }
        self.next += 1;
        self.block[self.next - 1]
    }
}

/// The embedded gateway: HTTPS (h2 and http/1.1) on 127.0.0.1, stopped when dropped.
struct Gateway {
    addr: SocketAddr,
    ca_pem: String,
    task: JoinHandle<()>,
}

impl Gateway {
    async fn start(slow: Duration) -> Result<Self, DemoError> {
        let (ca_pem, tls) = certificate()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(DemoError::Gateway)?;
        let addr = listener.local_addr().map_err(DemoError::Gateway)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(async move {
            let mut pattern = Pattern::new();
            // Dropped with this task when the gateway stops, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(tcp, acceptor.clone(), pattern.next(), slow));
            }
        });
        Ok(Self { addr, ca_pem, task })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA (its PEM) and a server configuration with a leaf for 127.0.0.1 and localhost that it
/// signed, valid from yesterday for 90 days, so the expiry gauge shows a realistic date.
fn certificate() -> Result<(String, rustls::ServerConfig), DemoError> {
    let now = crate::time::since_epoch();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let day = Duration::from_secs(86_400);
    let (from, until) = (epoch + now - day, epoch + now + day * 90);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "tickr demo CA (throwaway)");
    (ca.not_before, ca.not_after) = (from, until);
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    leaf.distinguished_name
        .push(DnType::CommonName, "tickr demo gateway");
    (leaf.not_before, leaf.not_after) = (from, until);
    let cert = leaf.signed_by(&key, &Issuer::from_params(&ca, &ca_key))?;

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca_cert.pem(), config))
}

async fn serve(tcp: TcpStream, acceptor: TlsAcceptor, behaviour: Behaviour, slow: Duration) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    if behaviour == Behaviour::Reset {
        // As an upstream crashing mid-request looks through a TCP-level proxy: an RST.
        let mut request = [0u8; 4096];
        let _ = tls.read(&mut request).await;
        let (tcp, _) = tls.into_inner();
        let _ = tcp.set_zero_linger();
        return;
    }
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = service_fn(move |req| respond(req, behaviour, slow));
    let io = TokioIo::new(tls);
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

async fn respond(
    req: Request<Incoming>,
    behaviour: Behaviour,
    slow: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let api = path.starts_with("/api");
    let (status, content_type, body) = match behaviour {
        Behaviour::Fine | Behaviour::Reset => page(path),
        Behaviour::Slow => {
            tokio::time::sleep(slow).await;
            page(path)
        }
        Behaviour::NginxBadGateway => (502, "text/html", NGINX_502.to_owned()),
        Behaviour::AppUnavailable if api => (
            503,
            "application/json",
            r#"{"status":"unavailable","error":"database connection pool exhausted"}"#.to_owned(),
        ),
        Behaviour::AppUnavailable => (503, "text/html", APP_503.to_owned()),
        Behaviour::WrongPage => (200, "text/html", NGINX_WELCOME.to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("nginx"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    if status == 503 {
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("30"),
        );
    }
    Ok(response)
}

/// The healthy answer for `path`.
fn page(path: &str) -> (u16, &'static str, String) {
    if path.starts_with("/api") {
        return (
            200,
            "application/json",
            r#"{"status":"ok","orders_pending":3}"#.to_owned(),
        );
    }
    let (title, heading) = match path {
        "/checkout" => ("Demo shop: checkout", "Your basket"),
        _ => ("Demo shop", "Welcome to the demo shop"),
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{heading}</h1>\n\
         <p>Everything is fine here. Most of the time.</p></body></html>\n"
    );
    (200, "text/html; charset=utf-8", html)
}

/// nginx's built-in 502 page, byte for byte as nginx writes it with `server_tokens off`.
const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n\
<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";

/// The shop's own maintenance page.
const APP_503: &str = "<!DOCTYPE html>\n<html><head><title>Demo shop: back soon</title></head>\n\
<body><h1>We'll be right back</h1>\n<p>The shop is restarting after a deploy.</p></body></html>\n";

/// nginx's default welcome page, shortened: what a request routed to the default server gets.
const NGINX_WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n\
</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is \
successfully installed and working. Further configuration is required.</p>\n</body>\n</html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_holds_every_behaviour_and_mostly_fine_ones() {
        let mut pattern = Pattern::new();
        let first: Vec<Behaviour> = (0..BLOCK.len()).map(|_| pattern.next()).collect();
        let second: Vec<Behaviour> = (0..BLOCK.len()).map(|_| pattern.next()).collect();
        assert_ne!(first, second, "each block is shuffled afresh");
        for block in [&first, &second] {
            let fine = block.iter().filter(|b| **b == Behaviour::Fine).count();
            assert_eq!(fine, 18);
            for b in BLOCK {
                assert!(block.contains(&b), "{b:?} missing from {block:?}");
            }
        }
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let dir = DemoDir::create().expect("temp dir");
        let (ca_pem, _) = certificate().expect("certificate");
        std::fs::write(dir.0.join("ca.pem"), ca_pem).expect("write CA");
        let text = demo_config(
            "127.0.0.1:4433".parse().unwrap(),
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        let config = config::parse(&dir.0.join("config.yml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.targets.len(), 3);
        assert!(config.targets.iter().all(|t| t.timeout < t.interval));
    }
}
