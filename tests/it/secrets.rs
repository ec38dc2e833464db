//! Secrets from the configuration (header values and the client key) never come out of tickr:
//! not in metrics, logs, pages, events or error messages. The tickr binary runs at debug level,
//! in both log formats. It probes targets that fail in several ways, one of them a server that
//! echoes the request, secrets included, into its 502 page and its headers. The test then reads
//! every endpoint, has broken configurations that carry secrets refused, stops tickr, and greps
//! everything it printed or served for each secret.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::exposition::http;
use crate::common::server::{TestCa, Validity};

/// Distinctive values that must never come out of tickr.
const AUTHORIZATION: &str = "tickr-s3cret-AUTH-7f3a9c";
const API_KEY: &str = "tickr-s3cret-APIKEY-51be02";
const COOKIE: &str = "tickr-s3cret-COOKIE-c0ffee";
const TARGET_TOKEN: &str = "tickr-s3cret-TARGET-9d41aa";
/// A numeric key: YAML reads it as a number too big for an integer unless tickr takes the
/// text as written (an error would quote it).
const NUMERIC_KEY: &str = "98765432109876543210987";
/// Secrets that appear only in the broken configurations.
const RELOAD_SECRETS: &[&str] = &[
    "tickr-s3cret-RELOAD-list-01",
    "tickr-s3cret-RELOAD-ctrl-02",
    "tickr-s3cret-RELOAD-quote-03",
    "tickr-s3cret-RELOAD-string-04",
    "tickr-s3cret-RELOAD-map-05",
    "tickr-s3cret-RELOAD-alias-06",
    "55555555555555555555555555",
];

/// A server that answers every request with the request itself: in the body, and the
/// Authorization and Cookie values in response headers. `/ok` is a 200, `/redirect` sends the
/// client to `/fail?token=<its X-Api-Key>`, anything else is a 502.
struct EchoServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => echo(tcp).await,
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                echo(stream).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        request
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, location) = if path.starts_with("/ok") {
        ("200 OK", String::new())
    } else if path.starts_with("/redirect") {
        let to = format!("location: /fail?token={}\r\n", header("x-api-key"));
        ("302 Found", to)
    } else {
        ("502 Bad Gateway", String::new())
    };
    let body = format!("<h1>Bad gateway</h1>\nYou sent:\n{request}");
    let response = format!(
        "HTTP/1.1 {status}\r\nserver: {}\r\nx-reflected: {}\r\ncontent-type: text/plain\r\n{location}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        header("cookie"),
        header("authorization"),
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A TLS server configuration that demands a client certificate signed by `ca`.
fn mtls_config(ca: &TestCa, leaf: &crate::common::server::Leaf) -> Arc<rustls::ServerConfig> {
    let provider = tickr::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain PEM");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The base64 text of a PEM block: what must never appear, whole or line by line.
fn pem_body(pem: &str) -> Vec<String> {
    let lines: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mut all = vec![lines.concat()];
    all.extend(lines.into_iter().filter(|l| l.len() >= 16));
    all
}

fn running_config(echo: SocketAddr, tls: SocketAddr, refused: SocketAddr) -> String {
    format!(
        r#"defaults:
  interval: 500ms
  timeout: 200ms
  headers:
    Authorization: "Bearer {AUTHORIZATION}"
    X-Api-Key: {API_KEY}
    Cookie: "session={COOKIE}"
    X-Numeric-Key: {NUMERIC_KEY}
diagnosis:
  body_excerpt: 64KiB
targets:
  - name: refused
    url: http://{refused}/
  - name: echo-502
    url: http://{echo}/fail
    confirm: 1
    confirm_delay: 50ms
    headers: {{X-Target-Token: {TARGET_TOKEN}}}
  - name: echo-redirect
    url: http://{echo}/redirect
  - name: echo-ok
    url: http://{echo}/ok
  - name: mtls-502
    url: https://localhost:{port}/fail
    addresses: [127.0.0.1]
    tls: {{ca_file: ca.pem, cert_file: client.pem, key_file: client.key}}
"#,
        port = tls.port()
    )
}

/// Broken configurations, each carrying a secret where a careless error message would quote it.
fn broken_configs(running: &str) -> Vec<String> {
    let target = |headers: &str| {
        format!("targets:\n  - name: broken\n    url: http://127.0.0.1:1/\n    headers:\n{headers}")
    };
    vec![
        target(&format!("      X-Api-Key: [{}]\n", RELOAD_SECRETS[0])),
        target(&format!(
            "      Authorization: \"Bearer {}\\u0001\"\n",
            RELOAD_SECRETS[1]
        )),
        target(&format!(
            "      Authorization: \"Bearer {}\n",
            RELOAD_SECRETS[2]
        )),
        format!(
            "targets:\n  - name: broken\n    url: http://127.0.0.1:1/\n    headers: \"Authorization: {}\"\n",
            RELOAD_SECRETS[3]
        ),
        target(&format!("      Cookie: {{session: {}}}\n", RELOAD_SECRETS[4])),
        format!(
            "{}  - name: broken\n    url: http://127.0.0.1:1/\n    headers: {{X-Api-Key: &key {}}}\n    bogus: *key\n",
            running, RELOAD_SECRETS[5]
        ),
        // The running file with one more key, and a numeric key next to it.
        format!(
            "{running}  - name: broken\n    url: http://127.0.0.1:1/\n    headers: {{X-Numeric: {}}}\n    interval: 1\n",
            RELOAD_SECRETS[6]
        ),
    ]
}

/// The tickr binary, its output in files; killed if the test fails before stopping it.
struct Binary {
    child: Child,
}

impl Drop for Binary {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits for the `listening` line and reads the address from it.
async fn listening_address(stderr: &Path, bin: &mut Binary) -> SocketAddr {
    for _ in 0..200 {
        let log = std::fs::read_to_string(stderr).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("listening")) {
            let start = line.find("127.0.0.1:").expect("an address in the line");
            let digits: String = line[start + "127.0.0.1:".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return format!("127.0.0.1:{digits}").parse().expect("address");
        }
        if let Some(status) = bin.child.try_wait().expect("try_wait") {
            panic!("tickr exited with {status}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tickr did not log `listening`");
}

/// One full run in one log format: everything tickr printed and served, and the text of the
/// client key it was given.
async fn run_and_collect(format: &str) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("tickr secrets CA");
    let server_leaf = ca.leaf(&["localhost"], Validity::Valid);
    let client = ca.leaf(&["tickr-client"], Validity::Valid);
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).expect("write CA");
    std::fs::write(dir.path().join("client.pem"), &client.chain_pem).expect("write cert");
    std::fs::write(dir.path().join("client.key"), &client.key_pem).expect("write key");

    let echo = EchoServer::start(None).await;
    let tls = EchoServer::start(Some(mtls_config(&ca, &server_leaf))).await;
    let refused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused_addr = refused.local_addr().expect("addr");
    drop(refused);

    let config = dir.path().join("config.yml");
    let running = running_config(echo.addr, tls.addr, refused_addr);
    std::fs::write(&config, &running).expect("write config");
    let (stdout, stderr) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
    let mut bin = Binary {
        child: Command::new(env!("CARGO_BIN_EXE_tickr"))
            .arg("--config.file")
            .arg(&config)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(["--log.level", "debug", "--log.format", format])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn tickr"),
    };
    let addr = listening_address(&stderr, &mut bin).await;

    // Wait until every way of failing has been recorded, the echoing ones with their echo.
    let mut served = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = http(addr, "GET", "/events?format=json", &[]).await.text();
        let json: serde_json::Value = serde_json::from_str(&events).expect("events JSON");
        let failed = |target: &str, reason: &str| {
            json["events"].as_array().into_iter().flatten().any(|e| {
                e["target"] == target
                    && e["reason"] == reason
                    && (target == "refused"
                        || e["body_excerpt"]
                            .as_str()
                            .is_some_and(|b| b.contains("authorization: ")))
            })
        };
        let done = failed("refused", "connect")
            && failed("echo-502", "status")
            && failed("echo-redirect", "status")
            && failed("mtls-502", "status")
            && json["last_success"]["echo-ok"].is_object();
        if done {
            served.push_str(&events);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every failure recorded in 20s:\n{events}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let events: serde_json::Value = serde_json::from_str(&served).expect("events JSON");
    let id = events["events"][0]["id"].as_u64().expect("an event id");
    let echoed = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["target"] == "echo-502")
        .expect("an echo-502 event");
    // The echo was kept, with the secrets replaced in place: in headers and in the body.
    let headers = echoed["headers"].to_string();
    assert!(
        headers.contains(r#"["x-reflected","<redacted>"]"#),
        "{headers}"
    );
    assert!(headers.contains(r#"["server","<redacted>"]"#), "{headers}");
    let body = echoed["body_excerpt"].as_str().unwrap_or_default();
    assert!(body.contains("x-target-token: <redacted>"), "{body}");
    assert!(body.contains("x-numeric-key: <redacted>"), "{body}");

    let pages = [
        "/".to_owned(),
        "/metrics".to_owned(),
        "/events".to_owned(),
        "/events?format=json".to_owned(),
        "/events?target=echo-502".to_owned(),
        format!("/events?id={id}"),
        format!("/events?id={id}&format=json"),
        "/-/healthy".to_owned(),
        "/-/ready".to_owned(),
        format!("/probe?target=http://{}/&module=http", echo.addr),
    ];
    for path in &pages {
        let reply = http(addr, "GET", path, &[]).await;
        served.push_str(&format!("\n--- GET {path} {}\n", reply.status));
        for (k, v) in &reply.headers {
            served.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        served.push_str(&reply.text());
    }

    // Broken configurations: refused with a message, never quoting the secret in them.
    let broken = broken_configs(&running);
    for (i, text) in broken.iter().enumerate() {
        std::fs::write(&config, text).expect("write broken config");
        let reply = http(addr, "POST", "/-/reload", &[]).await;
        let message = reply.text();
        assert_ne!(reply.status, 200, "broken config {i} accepted:\n{text}");
        assert!(
            message.contains("config.yml:"),
            "no file:line:col in {message:?}"
        );
        served.push_str(&format!(
            "\n--- POST /-/reload (broken {i}) {}\n{message}",
            reply.status
        ));
    }
    // And once by SIGHUP, which only logs.
    signal(bin.child.id(), "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config, &running).expect("restore config");
    let metrics = http(addr, "GET", "/metrics", &[]).await.text();
    assert!(
        metrics.contains("tickr_config_last_reload_successful 0"),
        "the broken reloads were not refused"
    );
    served.push_str(&metrics);

    signal(bin.child.id(), "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bin.child.try_wait().expect("try_wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "tickr did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::fs::read_to_string(&stdout).expect("stdout");
    let err = std::fs::read_to_string(&stderr).expect("stderr");
    // Not vacuous: debug lines, failed probes, refused reloads and confirmations were logged.
    for needle in [
        "probe succeeded",
        "probe failed",
        "configuration rejected",
        "failure confirmed",
    ] {
        assert!(
            err.contains(needle),
            "no {needle:?} in the {format} log:\n{err}"
        );
    }
    drop((echo, tls));
    let output = format!("--- stdout\n{out}\n--- stderr\n{err}\n--- served\n{served}");
    (output, pem_body(&client.key_pem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_metrics_pages_or_errors() {
    for format in ["logfmt", "json"] {
        let (output, key) = run_and_collect(format).await;
        let mut secrets: Vec<&str> =
            vec![AUTHORIZATION, API_KEY, COOKIE, TARGET_TOKEN, NUMERIC_KEY];
        secrets.extend(RELOAD_SECRETS);
        secrets.extend(key.iter().map(String::as_str));
        for secret in secrets {
            if let Some(at) = output.find(secret) {
                let context: String = output[at.saturating_sub(300)..]
                    .chars()
                    .take(300 + secret.len() + 100)
                    .collect();
                panic!("{format}: secret {secret:?} came out of tickr:\n…{context}…");
            }
        }
    }
}
