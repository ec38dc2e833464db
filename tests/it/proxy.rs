//! Probes through real forward proxies (Debian's tinyproxy and Squid, and Squid behind a
//! TLS-ending HAProxy as an `https://` proxy): CONNECT for https targets and HTTP/2 with prior
//! knowledge, plain forwarding for http ones, counted on both sides; what a proxy that refuses,
//! hangs or asks for credentials makes of a probe (reason `proxy`, never `connect` or `status` of
//! the target); `no_proxy`, the environment, and secrets kept out of everything tickr shows.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tickr::config::Target;
use tickr::probe::{self, Outcome};
use tickr_harness::{free_port, get, Launch, Listening, Squid, Tinyproxy};

use crate::common::exposition::Exposition;
use crate::common::server::{ServerTls, Step, TestCa, TestServer, Validity};
use crate::common::tickr::target;
use crate::probes::probe_n;

fn reason(o: &Outcome) -> Option<&'static str> {
    o.failure.as_ref().map(|f| f.reason.as_str())
}

/// A TLS test server with a certificate from a CA written to a file the target can name.
struct Https {
    server: TestServer,
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Https {
    async fn start(script: Vec<Step>) -> Self {
        let ca = TestCa::new("tickr proxy test CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
        let server = TestServer::tls(script, ServerTls::new(&leaf)).await;
        Self { server, ca, dir }
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// A target for this server's `/`, with `extra` YAML lines.
    fn target(&self, name: &str, extra: &str) -> Arc<Target> {
        target(&format!(
            "name: {name}\nurl: {}\ntimeout: 5s\ntls: {{ca_file: {}}}\n{extra}",
            self.server.url("/"),
            self.ca_file()
        ))
    }
}

/// What every proxied probe of a healthy target shows: success, the proxy named, and each phase
/// up to the target's TLS handshake timed (the CONNECT exchange as `proxy`).
fn assert_tunnelled(outcomes: &[Outcome], shown: &str) {
    for o in outcomes {
        assert_eq!(reason(o), None, "{:?}", o.failure);
        assert_eq!(o.proxy.as_deref(), Some(shown));
        let p = &o.phases;
        assert!(
            p.connect.is_some() && p.proxy.is_some() && p.tls.is_some(),
            "{p:?}"
        );
        assert_eq!(o.tls_version, Some("TLS 1.3"));
    }
}

#[tokio::test]
async fn https_through_tinyproxy_by_connect_counts_on_both_sides() {
    let proxy = Tinyproxy::start(None).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let t = https.target("shop", &format!("proxy_url: {}", proxy.url(None)));
    let (outcomes, m) = probe_n(&t, 5).await;
    assert_tunnelled(&outcomes, &proxy.url(None));
    assert_eq!(
        outcomes[0].http_version,
        Some(http::Version::HTTP_2),
        "ALPN inside the tunnel"
    );
    assert_eq!(
        https.server.connections(),
        5,
        "one tunnelled connection per probe"
    );
    let connects = proxy.requests(5).await;
    let want = format!("CONNECT {} HTTP/1.1", https.server.addr);
    assert_eq!(
        connects.iter().filter(|r| **r == want).count(),
        5,
        "{connects:?}\n{}",
        proxy.logs()
    );
    let shop = |phase| [("target", "shop"), ("phase", phase)];
    assert_eq!(
        m.get("tickr_probe_duration_seconds_count", &shop("proxy")),
        Some(5.0)
    );
    assert_eq!(
        m.get("tickr_probe_duration_seconds_count", &shop("tls")),
        Some(5.0)
    );
    let failures = |reason| {
        m.get(
            "tickr_probe_failures_total",
            &[("target", "shop"), ("reason", reason)],
        )
    };
    assert_eq!(
        failures("proxy"),
        Some(0.0),
        "a proxied target has the reason at 0"
    );
    assert_eq!(
        m.value(
            "tickr_probe_runs_total",
            &[("target", "shop"), ("result", "success")]
        ),
        5.0
    );
}

#[tokio::test]
async fn https_through_squid_by_connect_counts_on_both_sides() {
    let proxy = Squid::start().await;
    let https = Https::start(Step::statuses(&[200])).await;
    let t = https.target("shop", &format!("proxy_url: {}", proxy.url()));
    let (outcomes, _) = probe_n(&t, 5).await;
    assert_tunnelled(&outcomes, &proxy.url());
    assert_eq!(https.server.connections(), 5);
    let log = proxy.access_log(5).await;
    let want = format!("CONNECT {} 200", https.server.addr);
    assert_eq!(
        log.iter().filter(|l| l.starts_with(&want)).count(),
        5,
        "{log:#?}\n{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn http_targets_are_forwarded_in_absolute_form() {
    let squid = Squid::start().await;
    let tiny = Tinyproxy::start(None).await;
    let server = TestServer::plain(vec![Step::Echo]).await;
    for (via, url) in [("squid", squid.url()), ("tinyproxy", tiny.url(None))] {
        let t = target(&format!(
            "name: {via}\nurl: {}\ntimeout: 5s\nproxy_url: {url}\nproxy_connect_headers: {{X-Probe-Team: web}}",
            server.url("/health?x=1")
        ));
        let (o, body) = probe::fetch(&t).await;
        assert_eq!(reason(&o), None, "{via}: {:?}", o.failure);
        assert_eq!(o.proxy.as_deref(), Some(url.as_str()));
        assert_eq!(o.phases.proxy, None, "{via}: no CONNECT, no proxy phase");
        let body = String::from_utf8_lossy(body.as_deref().unwrap_or_default()).to_lowercase();
        // The proxy relayed it (each adds its Via); the header meant for the proxy's CONNECT
        // did not travel to the target.
        assert!(body.contains("via:"), "{via}: {body}");
        assert!(!body.contains("x-probe-team"), "{via}: {body}");
    }
    assert_eq!(server.connections(), 2);
    let want = format!("GET {} ", server.url("/health?x=1"));
    let log = squid.access_log(1).await;
    // Squid logs URLs without their query.
    let logged = format!("GET {}? 200 ", server.url("/health"));
    assert!(log[0].starts_with(&logged), "{log:?}");
    let requests = tiny.requests(1).await;
    assert_eq!(requests, [format!("{want}HTTP/1.1")]);
}

#[tokio::test]
async fn connect_headers_and_credentials_in_the_url_reach_the_proxy() {
    let squid = Squid::start().await;
    let https = Https::start(Step::statuses(&[200])).await;
    let proxy_url = format!("http://probe:p%40ss@{}", squid.addr);
    let t = https.target(
        "shop",
        &format!("proxy_url: {proxy_url}\nproxy_connect_headers: {{X-Probe-Team: web}}"),
    );
    let (outcomes, _) = probe_n(&t, 1).await;
    let shown = format!("http://<credentials>@{}", squid.addr);
    assert_tunnelled(&outcomes, &shown);
    let log = squid.access_log(1).await;
    let token = base64::engine::general_purpose::STANDARD.encode("probe:p@ss");
    let headers = log[0].to_lowercase();
    assert!(headers.contains("x-probe-team: web"), "{log:?}");
    let auth = format!("proxy-authorization: basic {}", token.to_lowercase());
    assert!(headers.contains(&auth), "{log:?}");
}

#[tokio::test]
async fn a_proxy_asking_for_credentials_is_reason_proxy_with_its_phase() {
    let proxy = Tinyproxy::start(Some(("probe", "hunter22"))).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let without = https.target("without", &format!("proxy_url: {}", proxy.url(None)));
    let wrong = https.target(
        "wrong",
        &format!("proxy_url: {}", proxy.url(Some("probe:nope"))),
    );
    let right = https.target(
        "right",
        &format!("proxy_url: {}", proxy.url(Some("probe:hunter22"))),
    );
    // Without credentials tinyproxy asks for them (407); with wrong ones it answers 401.
    for (t, code) in [(&without, "407"), (&wrong, "401")] {
        let (outcomes, m) = probe_n(t, 2).await;
        for o in &outcomes {
            assert_eq!(reason(o), Some("proxy"), "{:?}", o.failure);
            let detail = &o.failure.as_ref().unwrap().detail;
            assert!(detail.contains(&format!("answered {code} ")), "{detail}");
            assert!(
                !detail.contains("nope") && !detail.contains("hunter22"),
                "{detail}"
            );
            assert!(
                o.phases.proxy.is_some(),
                "the CONNECT exchange finished: {o:?}"
            );
            assert_eq!(
                (o.status, o.phases.tls),
                (None, None),
                "never reached the target"
            );
        }
        let name = t.name.as_str();
        let count = |reason| {
            m.value(
                "tickr_probe_failures_total",
                &[("target", name), ("reason", reason)],
            )
        };
        assert_eq!(
            (count("proxy"), count("connect"), count("status")),
            (2.0, 0.0, 0.0)
        );
        assert_eq!(
            m.get(
                "tickr_probe_duration_seconds_count",
                &[("target", name), ("phase", "proxy")]
            ),
            Some(2.0)
        );
    }
    assert_eq!(https.server.connections(), 0, "no CONNECT got through");
    let (outcomes, _) = probe_n(&right, 1).await;
    assert_eq!(reason(&outcomes[0]), None, "{:?}", outcomes[0].failure);
    assert_eq!(https.server.connections(), 1);

    // Plain forwarding carries the credentials too.
    let plain = TestServer::plain(Step::statuses(&[200])).await;
    for (credentials, want) in [(Some("probe:hunter22"), None), (None, Some("status"))] {
        let t = target(&format!(
            "name: plain\nurl: {}\ntimeout: 5s\nproxy_url: {}",
            plain.url("/"),
            proxy.url(credentials)
        ));
        let o = probe::run(&t).await;
        assert_eq!(reason(&o), want, "{:?}", o.failure);
        // A proxy's own answer to a forwarded request is the response the probe got.
        assert_eq!(o.status, Some(if want.is_some() { 407 } else { 200 }));
    }
    assert_eq!(plain.connections(), 1);
}

#[tokio::test]
async fn a_proxy_credential_from_a_file_applies_when_rotated_without_a_reload() {
    let proxy = Tinyproxy::start(Some(("probe", "hunter22"))).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let basic = |pair: &str| {
        format!(
            "Basic {}\n",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let file = https.dir.path().join("proxy-credentials");
    std::fs::write(&file, basic("probe:nope")).unwrap();
    let t = https.target(
        "rotated",
        &format!(
            "proxy_url: {}\nproxy_connect_headers: {{Proxy-Authorization: {{file: {}}}}}",
            proxy.url(None),
            file.display()
        ),
    );
    let o = probe::run(&t).await;
    assert_eq!(reason(&o), Some("proxy"), "{:?}", o.failure);
    assert!(o.failure.as_ref().unwrap().detail.contains("answered 401 "));
    // The file's value is a secret like an inline one.
    let echoed = format!("the proxy said: {}", basic("probe:nope").trim());
    let shown = t.secrets().redact_str(&echoed).into_owned();
    let token = base64::engine::general_purpose::STANDARD.encode("probe:nope");
    assert!(!shown.contains(&token), "{shown}");

    std::fs::write(&file, basic("probe:hunter22")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let o = probe::run(&t).await;
        if reason(&o).is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", o.failure);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        https.server.connections(),
        1,
        "only the rotated credential got through"
    );
}

#[tokio::test]
async fn a_closed_proxy_port_is_reason_proxy_not_connect() {
    let https = Https::start(Step::statuses(&[200])).await;
    let port = free_port();
    let t = https.target("shop", &format!("proxy_url: http://127.0.0.1:{port}"));
    let (outcomes, m) = probe_n(&t, 1).await;
    let o = &outcomes[0];
    assert_eq!(reason(o), Some("proxy"), "{:?}", o.failure);
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.starts_with(&format!("proxy http://127.0.0.1:{port}: connect to")),
        "{detail}"
    );
    assert_eq!((o.phases.connect, o.phases.proxy), (None, None));
    let count = |reason| {
        m.value(
            "tickr_probe_failures_total",
            &[("target", "shop"), ("reason", reason)],
        )
    };
    assert_eq!((count("proxy"), count("connect")), (1.0, 0.0));
    assert_eq!(https.server.connections(), 0);
}

#[tokio::test]
async fn a_proxy_that_never_answers_connect_is_reason_proxy() {
    // A TCP server that accepts and says nothing stands for a hung proxy.
    let hung = TestServer::plain(vec![Step::Hang]).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let t = target(&format!(
        "name: shop\nurl: {}\ntimeout: 500ms\ninterval: 5s\ntls: {{ca_file: {}}}\nproxy_url: http://{}",
        https.server.url("/"),
        https.ca_file(),
        hung.addr
    ));
    let o = probe::run(&t).await;
    assert_eq!(reason(&o), Some("proxy"), "{:?}", o.failure);
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("(stuck in proxy)"), "{detail}");
    assert!(
        o.phases.connect.is_some() && o.phases.proxy.is_none(),
        "{:?}",
        o.phases
    );
    assert_eq!(https.server.connections(), 0);
}

#[tokio::test]
async fn http2_with_prior_knowledge_goes_through_a_tunnel() {
    let proxy = Tinyproxy::start(None).await;
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let t = target(&format!(
        "name: h2c\nurl: {}\ntimeout: 5s\nhttp_version: http2\nproxy_url: {}",
        server.url("/"),
        proxy.url(None)
    ));
    let o = probe::run(&t).await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(o.http_version, Some(http::Version::HTTP_2));
    assert!(o.phases.proxy.is_some());
    assert_eq!(
        proxy.requests(1).await,
        [format!("CONNECT {} HTTP/1.1", server.addr)]
    );
}

#[tokio::test]
async fn no_proxy_hosts_go_direct_redirects_included() {
    let proxy = Tinyproxy::start(None).await;
    let direct = Https::start(Step::statuses(&[200])).await;
    // Every host bypasses: the proxy sees nothing.
    let t = direct.target(
        "bypass",
        &format!(
            "proxy_url: {}\nno_proxy: [localhost, 127.0.0.0/8]",
            proxy.url(None)
        ),
    );
    let (outcomes, m) = probe_n(&t, 2).await;
    for o in &outcomes {
        assert_eq!(reason(o), None, "{:?}", o.failure);
        assert_eq!((o.proxy.as_deref(), o.phases.proxy), (None, None));
    }
    assert_eq!(direct.server.connections(), 2);
    assert_eq!(
        m.get(
            "tickr_probe_duration_seconds_count",
            &[("target", "bypass"), ("phase", "proxy")]
        ),
        Some(0.0),
        "the target may use the proxy: the histogram is there, unobserved"
    );

    // The first hop goes through the proxy, the redirect to a bypassed port goes direct: each
    // URL decides for itself.
    let first = TestServer::plain(vec![Step::redirect(302, &direct.server.url("/landed"))]).await;
    let t = target(&format!(
        "name: redirected\nurl: {}\ntimeout: 5s\ntls: {{ca_file: {}}}\nproxy_url: {}\nno_proxy: \"127.0.0.1:{}\"",
        first.url("/"),
        direct.ca_file(),
        proxy.url(None),
        direct.server.addr.port()
    ));
    let o = probe::run(&t).await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(
        (o.redirects, o.proxy.as_deref()),
        (1, None),
        "the last hop went direct"
    );
    assert_eq!((first.connections(), direct.server.connections()), (1, 3));
    assert_eq!(
        proxy.requests(1).await,
        [format!("GET {} HTTP/1.1", first.url("/"))],
        "only the first hop went through the proxy"
    );
}

/// tickr as a binary: the environment it starts in, and its logs.
async fn tickr_with_env(yaml: &str, env: &[(&str, String)]) -> Listening {
    let mut launch = Launch::tickr(env!("CARGO_BIN_EXE_tickr"), yaml);
    for (k, v) in env {
        launch = launch.env(*k, v);
    }
    let mut tickr = launch.start().await;
    tickr
        .process
        .wait_http_ok(tickr.addr, "/-/ready", Duration::from_secs(30))
        .await;
    tickr
}

/// Scrapes until `done` holds of the exposition (or panics after 20 s).
async fn scrape_until(tickr: &Listening, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = get(tickr.addr, "/metrics").await.expect("scrape");
        assert_eq!(status, 200);
        let m = Exposition::parse(&text);
        if done(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting:\n{text}\n{}",
            tickr.process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn proxy_from_environment_reads_https_proxy_and_no_proxy_at_load() {
    let proxy = Tinyproxy::start(None).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let bypassed = TestServer::plain(Step::statuses(&[200])).await;
    let yaml = format!(
        "defaults:\n  proxy_from_environment: true\n  interval: 1s\n  timeout: 800ms\n\
         targets:\n  - name: tunnelled\n    url: {}\n    tls: {{ca_file: {}}}\n\
         \x20 - name: plain\n    url: {}\n",
        https.server.url("/"),
        https.ca_file(),
        bypassed.url("/")
    );
    // HTTPS_PROXY for https URLs; the http target has no HTTP_PROXY, and NO_PROXY names it too.
    let env = [
        ("HTTPS_PROXY", proxy.addr.to_string()),
        ("NO_PROXY", format!("127.0.0.1:{}", bypassed.addr.port())),
        ("HTTP_PROXY", String::new()),
        ("http_proxy", String::new()),
        ("https_proxy", String::new()),
        ("no_proxy", String::new()),
    ];
    let tickr = tickr_with_env(&yaml, &env).await;
    let runs = |m: &Exposition, t| {
        m.value(
            "tickr_probe_runs_total",
            &[("target", t), ("result", "success")],
        )
    };
    let m = scrape_until(&tickr, |m| {
        runs(m, "tunnelled") >= 2.0 && runs(m, "plain") >= 2.0
    })
    .await;
    let proxy_count = m.get(
        "tickr_probe_duration_seconds_count",
        &[("target", "tunnelled"), ("phase", "proxy")],
    );
    assert!(proxy_count >= Some(2.0), "{proxy_count:?}");
    let plain_phase = m.get(
        "tickr_probe_duration_seconds_count",
        &[("target", "plain"), ("phase", "proxy")],
    );
    // No HTTP_PROXY: the http URL goes direct, but a redirect to https would not, so the
    // target has the phase, never observed.
    assert_eq!(plain_phase, Some(0.0));
    let connects = proxy.requests(2).await;
    assert!(connects.len() >= 2, "{connects:?}");
    let want = format!("CONNECT {} HTTP/1.1", https.server.addr);
    assert!(
        connects.iter().all(|r| *r == want),
        "only the https target: {connects:?}"
    );
}

#[tokio::test]
async fn proxy_secrets_stay_out_of_metrics_events_and_logs() {
    const PASSWORD: &str = "pr0xy-s3cr3t-pass";
    const HEADER: &str = "pr0xy-s3cr3t-header";
    let proxy = Tinyproxy::start(Some(("probe", "the-right-one"))).await;
    let https = Https::start(Step::statuses(&[200])).await;
    let yaml = format!(
        "defaults:\n  interval: 1s\n  timeout: 800ms\n\
         \x20 proxy_url: http://probe:{PASSWORD}@{}\n\
         \x20 proxy_connect_headers: {{X-Proxy-Token: {HEADER}}}\n\
         targets:\n  - name: refused\n    url: {}\n    tls: {{ca_file: {}}}\n",
        proxy.addr,
        https.server.url("/"),
        https.ca_file()
    );
    let tickr = tickr_with_env(&yaml, &[]).await;
    scrape_until(&tickr, |m| {
        m.value(
            "tickr_probe_failures_total",
            &[("target", "refused"), ("reason", "proxy")],
        ) >= 2.0
    })
    .await;
    let (_, metrics) = get(tickr.addr, "/metrics").await.unwrap();
    let (_, events) = get(tickr.addr, "/events?format=json").await.unwrap();
    let (_, page) = get(tickr.addr, "/events").await.unwrap();
    let (_, landing) = get(tickr.addr, "/").await.unwrap();
    let logs = tickr.process.stderr();
    let json: serde_json::Value = serde_json::from_str(&events).expect("events JSON");
    let first = &json["events"][0];
    let shown = format!("http://<credentials>@{}", proxy.addr);
    assert_eq!(first["proxy"], shown.as_str(), "{json:#}");
    assert_eq!(first["reason"], "proxy");
    assert!(page.contains("Through proxy"), "{page}");
    assert!(logs.contains("reason=proxy"), "{logs}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("probe:{PASSWORD}"));
    for (what, text) in [
        ("/metrics", &metrics),
        ("/events JSON", &events),
        ("/events", &page),
        ("/", &landing),
        ("logs", &logs),
    ] {
        for secret in [PASSWORD, HEADER, basic.as_str()] {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    }
    assert_eq!(https.server.connections(), 0);
}

#[tokio::test]
async fn an_https_proxy_is_spoken_to_in_tls_and_verified() {
    use tickr_harness::Haproxy;
    // A real https:// proxy: HAProxy ends TLS with a certificate from the test CA and passes the
    // bytes to Squid.
    let squid = Squid::start().await;
    let https = Https::start(Step::statuses(&[200])).await;
    let other_ca = TestCa::new("not trusted by the target's tls settings");
    let mut fronts = String::new();
    let mut ports = Vec::new();
    for (i, leaf) in [
        https.ca.leaf(&["127.0.0.1"], Validity::Valid),
        other_ca.leaf(&["127.0.0.1"], Validity::Valid),
    ]
    .iter()
    .enumerate()
    {
        let pem = https.dir.path().join(format!("proxy-{i}.pem"));
        std::fs::write(&pem, format!("{}{}", leaf.chain_pem, leaf.key_pem)).unwrap();
        let port = free_port();
        ports.push(port);
        fronts.push_str(&format!(
            "listen tls{i}\n    mode tcp\n    bind 127.0.0.1:{port} ssl crt {}\n    server squid {}\n\n",
            pem.display(),
            squid.addr
        ));
    }
    let _haproxy = Haproxy::start(Duration::from_secs(5), &fronts).await;

    let t = https.target(
        "tls-proxy",
        &format!("proxy_url: https://127.0.0.1:{}", ports[0]),
    );
    let (outcomes, _) = probe_n(&t, 2).await;
    assert_tunnelled(&outcomes, &format!("https://127.0.0.1:{}", ports[0]));
    assert_eq!(https.server.connections(), 2);
    let log = squid.access_log(2).await;
    let want = format!("CONNECT {} 200", https.server.addr);
    assert_eq!(
        log.iter().filter(|l| l.starts_with(&want)).count(),
        2,
        "{log:?}"
    );

    let t = https.target(
        "untrusted-proxy",
        &format!("proxy_url: https://127.0.0.1:{}", ports[1]),
    );
    let o = probe::run(&t).await;
    assert_eq!(reason(&o), Some("proxy"), "{:?}", o.failure);
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("TLS handshake"), "{detail}");
    assert_eq!(https.server.connections(), 2, "the target never saw it");
}
