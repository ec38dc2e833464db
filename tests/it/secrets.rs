//! Secrets from the configuration (header values, secret-looking query parameters and the client
//! key) never come out of tickr: not in metrics, logs, pages, events or error messages, and in
//! no form a server may echo them in. The tickr binary runs at debug level, in both log formats.
//! It probes targets that fail in several ways, one of them a server that echoes the request,
//! secrets included, into its 502 page and its headers: as sent, without the auth scheme, in
//! either case, base64, URL-encoded and escaped. The test then reads every endpoint, has broken
//! configurations that carry secrets refused (by reload and by `--config.check`), stops tickr,
//! and searches everything it printed or served for every form of each secret.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::common::exposition::http;
use crate::common::server::{TestCa, Validity};
use tickr_harness::{Launch, Listening};

/// Distinctive values that must never come out of tickr. The bearer token holds `"` and `\`,
/// so that its escaped forms (in JSON, and in the layer evidence) differ from it.
const AUTHORIZATION: &str = r#"tickr-s3cret"AUTH\7f3a9c"#;
const API_KEY: &str = "tickr-s3cret-APIKEY-51be02";
const COOKIE: &str = "tickr-s3cret-COOKIE-c0ffee";
const TARGET_TOKEN: &str = "tickr-s3cret-TARGET-9d41aa";
/// A numeric key: YAML reads it as a number too big for an integer unless tickr takes the
/// text as written (an error would quote it).
const NUMERIC_KEY: &str = "98765432109876543210987";
/// The value of the `api_key` query parameter of `echo-502`, decoded; the URL carries it
/// percent-encoded ([`QUERY_KEY_IN_URL`]).
const QUERY_KEY: &str = "tickr-s3cret/QUERY+2b7e15";
const QUERY_KEY_IN_URL: &str = "tickr-s3cret%2FQUERY%2B2b7e15";
/// An S3-style presigned URL's signature, in the URL of `echo-ok`.
const SIGNATURE: &str = "tickr-s3cret-SIGNATURE-e4d1";
/// A session id the echo server hands out in a redirect: a secret tickr was never given, in a
/// parameter named like one.
const MINTED_SESSION: &str = "tickr-s3cret-MINTED-a1b2c3";
/// Secrets read from files: a bearer token, an API key and a basic-auth password.
const FILE_TOKEN: &str = "tickr-s3cret-FILETOKEN-77ab01";
const FILE_API_KEY: &str = "tickr-s3cret-FILEKEY-5c3d9e";
const FILE_PASSWORD: &str = "tickr-s3cret-FILEPASS-0e8f42";
/// Secrets in the query of URLs that do not parse, in broken configurations.
const URL_SECRETS: &[&str] = &[
    "tickr-s3cret-BADURL-domain-01",
    "tickr-s3cret-BADURL-brace-02",
];
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

/// A server that answers every request with the request itself: in the body, with every echoed
/// value also in the forms of [`echoed_forms`], and the Authorization, Cookie and `api_key`
/// values in response headers (the Authorization value in `Server` too, which the layer evidence
/// quotes). `/ok` is a 200, `/redirect` sends the client to
/// `/fail?token=<its X-Api-Key>&api_key=<its api_key>&session=<a minted session>`, anything else
/// is a 502.
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
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    let api_key = param("api_key");
    let (status, location) = if path.starts_with("/ok") {
        ("200 OK", String::new())
    } else if path.starts_with("/redirect") {
        let to = format!(
            "location: /fail?token={}&api_key={api_key}&session={MINTED_SESSION}&page=2\r\n",
            header("x-api-key")
        );
        ("302 Found", to)
    } else {
        ("502 Bad Gateway", String::new())
    };
    let decoded_key: String = url::form_urlencoded::parse(format!("k={api_key}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()
        .unwrap_or_default();
    let authorization = header("authorization");
    let mut body = format!("<h1>Bad gateway</h1>\nYou sent:\n{request}");
    for (what, value) in [
        ("authorization", authorization.clone()),
        ("x-api-key", header("x-api-key")),
        ("cookie", header("cookie")),
        ("api_key", decoded_key.clone()),
    ] {
        for (form, text) in echoed_forms(&value) {
            body.push_str(&format!("{what}, {form}: {text}\n"));
        }
    }
    let token = authorization
        .split_once(' ')
        .map_or(authorization.as_str(), |(_, t)| t);
    let response = format!(
        "HTTP/1.1 {status}\r\nserver: {authorization}\r\nx-reflected: {authorization}\r\n\
         x-reflected-bare: {token}\r\nx-reflected-lower: {}\r\nx-reflected-base64: {}\r\n\
         x-reflected-key: {decoded_key}\r\nx-cookie: {}\r\ncontent-type: text/plain\r\n\
         {location}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        token.to_ascii_lowercase(),
        STANDARD.encode(token),
        header("cookie"),
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The forms a careless server echoes a value in: as sent, the token without its auth scheme, in
/// either case, base64 (both alphabets, padded or not, and inside longer base64 text at each of
/// the three alignments), URL-encoded, JSON- and HTML-escaped.
fn echoed_forms(value: &str) -> Vec<(&'static str, String)> {
    let token = value.split_once(' ').map_or(value, |(_, t)| t);
    let form_encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    vec![
        ("as sent", value.to_owned()),
        ("token", token.to_owned()),
        ("lowercase", value.to_ascii_lowercase()),
        ("uppercase", value.to_ascii_uppercase()),
        ("token lowercase", token.to_ascii_lowercase()),
        ("base64", STANDARD.encode(value)),
        ("token base64", STANDARD.encode(token)),
        ("token base64 unpadded", STANDARD_NO_PAD.encode(token)),
        ("base64url", URL_SAFE.encode(value)),
        ("token base64url", URL_SAFE_NO_PAD.encode(token)),
        (
            "header dump base64",
            STANDARD.encode(format!("Authorization: {value}")),
        ),
        ("token at 1 base64", STANDARD.encode(format!("tok={token}"))),
        (
            "token at 2 base64url",
            URL_SAFE_NO_PAD.encode(format!("auth={token}")),
        ),
        ("url-encoded", form_encoded(value)),
        ("token url-encoded", form_encoded(token)),
        ("url-encoded lowercase", form_encoded(value).to_lowercase()),
        ("json", json_escape(value)),
        ("token json", json_escape(token)),
        ("html", html_escape(value)),
    ]
}

/// `s` as written inside a JSON string (and, for these secrets, by Rust's `{:?}`).
fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("json");
    quoted[1..quoted.len() - 1].to_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Every form of `secret` that must not come out of tickr, lowercased (the search ignores case):
/// what [`echoed_forms`] makes of it and of its token, base64 inside longer base64 text at each
/// alignment, and each of those as written into a JSON string or an HTML page.
fn forbidden_forms(secret: &str) -> Vec<String> {
    let mut forms: Vec<String> = echoed_forms(secret).into_iter().map(|(_, f)| f).collect();
    let token = secret.split_once(' ').map_or(secret, |(_, t)| t);
    for s in [secret, token] {
        forms.extend(base64_cores(s.as_bytes()));
    }
    let mut all = Vec::new();
    for f in forms {
        // A form shorter than this would be found by chance; none of the secrets is that short.
        if f.len() < 12 {
            continue;
        }
        all.push(json_escape(&f));
        all.push(html_escape(&f));
        all.push(f);
    }
    let mut all: Vec<String> = all.into_iter().map(|f| f.to_ascii_lowercase()).collect();
    all.sort();
    all.dedup();
    all
}

/// The part of any base64 text (standard or URL-safe alphabet) that holds `secret` whole,
/// preceded by 0, 1 or 2 bytes in its group of three: only the characters that depend on the
/// secret's bytes alone.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for offset in 0..3 {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret);
        let text = STANDARD_NO_PAD.encode(&bytes);
        let skip = [0, 2, 3][offset];
        let whole = bytes.len() * 8 / 6;
        let core = &text[skip..whole];
        cores.push(core.to_owned());
        cores.push(core.replace('+', "-").replace('/', "_"));
    }
    cores
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
    // A JSON string is a YAML double-quoted scalar: the token's `"` and `\` stay as they are.
    let authorization = serde_json::to_string(&format!("Bearer {AUTHORIZATION}")).expect("json");
    format!(
        r#"defaults:
  interval: 500ms
  timeout: 200ms
  headers:
    Authorization: {authorization}
    X-Api-Key: {API_KEY}
    Cookie: "session={COOKIE}"
    X-Numeric-Key: {NUMERIC_KEY}
diagnosis:
  body_excerpt: 64KiB
targets:
  - name: refused
    url: http://{refused}/
  - name: echo-502
    url: http://{echo}/fail?api_key={QUERY_KEY_IN_URL}&page=1
    confirm: 1
    confirm_delay: 50ms
    headers: {{X-Target-Token: {TARGET_TOKEN}}}
  - name: echo-files
    url: http://{echo}/fail
    bearer_token_file: token
    headers: {{X-Api-Key: {{file: api-key}}}}
  - name: echo-basic
    url: http://{echo}/fail
    basic_auth: {{username: probe, password_file: password}}
  - name: echo-redirect
    url: http://{echo}/redirect?api_key={QUERY_KEY_IN_URL}
  - name: echo-redirect-kept
    url: http://{echo}/redirect?api_key={QUERY_KEY_IN_URL}
    follow_redirects: false
  - name: echo-ok
    url: http://{echo}/ok?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature={SIGNATURE}
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
    .into_iter()
    .chain(invalid_urls())
    .collect()
}

/// Configurations whose URL does not parse, or cannot be sent, with a secret in its query: the
/// error quotes the URL.
fn invalid_urls() -> Vec<String> {
    vec![
        format!(
            "targets:\n  - name: broken\n    url: \"http://shop example.com/?api_key={}\"\n",
            URL_SECRETS[0]
        ),
        format!(
            "targets:\n  - name: broken\n    url: \"http://sh{{op}}.example.com/?X-Amz-Signature={}\"\n",
            URL_SECRETS[1]
        ),
    ]
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
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
    for (file, secret) in [
        ("token", FILE_TOKEN),
        ("api-key", FILE_API_KEY),
        ("password", FILE_PASSWORD),
    ] {
        std::fs::write(dir.path().join(file), format!("{secret}\n")).expect("write secret");
    }

    let echo = EchoServer::start(None).await;
    let tls = EchoServer::start(Some(mtls_config(&ca, &server_leaf))).await;
    let refused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused_addr = refused.local_addr().expect("addr");
    drop(refused);

    let config = dir.path().join("config.yml");
    let running = running_config(echo.addr, tls.addr, refused_addr);
    std::fs::write(&config, &running).expect("write config");
    let Listening {
        process: mut bin,
        addr,
    } = Launch::new("tickr", env!("CARGO_BIN_EXE_tickr"))
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(["--log.level", "debug", "--log.format", format])
        .start()
        .await;
    let (stdout, stderr) = (bin.dir().join("stdout.log"), bin.dir().join("stderr.log"));

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
            && failed("echo-files", "status")
            && failed("echo-basic", "status")
            && failed("echo-redirect", "status")
            && failed("echo-redirect-kept", "status")
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
    // The values read from files were sent (the echo has them) and replaced like inline ones.
    let excerpt_of = |target: &str| {
        let event = events["events"].as_array().into_iter().flatten();
        let mut event = event.filter(|e| e["target"] == target);
        let e = event.next().unwrap_or_else(|| panic!("no {target} event"));
        e["body_excerpt"].as_str().unwrap_or_default().to_owned()
    };
    let files = excerpt_of("echo-files");
    let basic = excerpt_of("echo-basic");
    for body in [&files, &basic] {
        assert!(body.contains("authorization: <redacted>"), "{body}");
        assert!(body.contains("authorization, token base64: "), "{body}");
    }
    assert!(files.contains("x-api-key: <redacted>"), "{files}");
    // Each encoded echo was there, and was replaced: the assertions below are not vacuous.
    for form in [
        "base64",
        "token at 2 base64url",
        "url-encoded",
        "json",
        "uppercase",
    ] {
        let line = format!("authorization, {form}: ");
        assert!(body.contains(&line), "no {line:?} in {body}");
    }
    let header = |e: &serde_json::Value, name: &str| {
        e["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        header(echoed, "x-reflected-bare").as_deref(),
        Some("<redacted>")
    );
    assert_eq!(
        header(echoed, "x-reflected-key").as_deref(),
        Some("<redacted>")
    );
    // The URL keeps the parameter's name, the value is replaced; other parameters stay.
    let echo_url = format!("http://{}/fail?api_key=<redacted>&page=1", echo.addr);
    assert_eq!(echoed["url"], echo_url.as_str());
    let kept = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["target"] == "echo-redirect-kept")
        .expect("an echo-redirect-kept event");
    // A location's secret-looking parameters are replaced too, even one tickr was never given.
    assert_eq!(
        header(kept, "location").as_deref(),
        Some("/fail?token=<redacted>&api_key=<redacted>&session=<redacted>&page=2"),
    );

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
        if path == "/metrics" {
            let info =
                format!(r#"tickr_target_info{{target="echo-502",url="{echo_url}",method="GET""#);
            assert!(
                reply.text().contains(&info),
                "no {info} in\n{}",
                reply.text()
            );
        }
        if path == "/" {
            let shown = html_escape(&format!(
                "http://{}/fail?api_key=<redacted>&page=1",
                echo.addr
            ));
            assert!(
                reply.text().contains(&shown),
                "no {shown} in\n{}",
                reply.text()
            );
        }
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
    // `--config.check` quotes the invalid URLs the same way.
    for (i, text) in invalid_urls().iter().enumerate() {
        let broken = dir.path().join(format!("broken-url-{i}.yml"));
        std::fs::write(&broken, text).expect("write broken config");
        let check = Command::new(env!("CARGO_BIN_EXE_tickr"))
            .args(["--config.check", "--config.file"])
            .arg(&broken)
            .output()
            .expect("run --config.check");
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(!check.status.success(), "broken URL {i} accepted:\n{text}");
        assert!(stderr.contains("invalid URL"), "{stderr}");
        assert!(stderr.contains("=<redacted>"), "{stderr}");
        served.push_str(&format!(
            "\n--- --config.check (broken URL {i})\n{}{stderr}",
            String::from_utf8_lossy(&check.stdout)
        ));
    }
    // And once by SIGHUP, which only logs.
    signal(bin.pid(), "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config, &running).expect("restore config");
    let metrics = http(addr, "GET", "/metrics", &[]).await.text();
    assert!(
        metrics.contains("tickr_config_last_reload_successful 0"),
        "the broken reloads were not refused"
    );
    served.push_str(&metrics);

    signal(bin.pid(), "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bin.exited().is_none() {
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

/// `text` around `at..at + len`, 300 bytes before and 100 after, cut at character boundaries.
fn context(text: &str, at: usize, len: usize) -> &str {
    let mut start = at.saturating_sub(300);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + len + 100).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    &text[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_metrics_pages_or_errors() {
    for format in ["logfmt", "json"] {
        let (output, key) = run_and_collect(format).await;
        let bearer = format!("Bearer {AUTHORIZATION}");
        let cookie = format!("session={COOKIE}");
        let file_bearer = format!("Bearer {FILE_TOKEN}");
        let basic = STANDARD.encode(format!("probe:{FILE_PASSWORD}"));
        let mut secrets: Vec<&str> = vec![
            FILE_TOKEN,
            &file_bearer,
            FILE_API_KEY,
            FILE_PASSWORD,
            &basic,
            AUTHORIZATION,
            &bearer,
            API_KEY,
            COOKIE,
            &cookie,
            TARGET_TOKEN,
            NUMERIC_KEY,
            QUERY_KEY,
            QUERY_KEY_IN_URL,
            SIGNATURE,
        ];
        secrets.extend(RELOAD_SECRETS);
        secrets.extend(URL_SECRETS);
        // ASCII lowercase keeps every byte offset of `output`.
        let lowered = output.to_ascii_lowercase();
        for secret in secrets {
            for form in forbidden_forms(secret) {
                if let Some(at) = lowered.find(&form) {
                    let context = context(&output, at, form.len());
                    panic!(
                        "{format}: secret {secret:?} came out of tickr as {form:?}:\n…{context}…"
                    );
                }
            }
        }
        // The client key's PEM text, as written.
        for secret in &key {
            if let Some(at) = output.find(secret.as_str()) {
                let context = context(&output, at, secret.len());
                panic!("{format}: the client key came out of tickr:\n…{context}…");
            }
        }
    }
}
