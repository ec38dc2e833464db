//! TLS facts and TLS settings against real TLS servers (rustls, with rcgen certificates):
//! `tickr_tls_info` (version and cipher of the last handshake), `tickr_tls_cert_info` (the
//! served leaf, checked against what the test computes from the certificate it minted, and
//! replaced when the server's certificate changes), `tickr_tls_chain_verified` (computed under
//! `insecure_skip_verify` too), `tls.min_version`/`max_version`, `expect.tls`, and a client
//! certificate rotated on disk taking effect without a reload.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tickr::config::Target;
use tickr::metrics::Metrics;
use tickr::probe::{self, Outcome};

use crate::common::exposition::Exposition;
use crate::common::server::{
    Leaf, ServedCert, ServerTls, ServerTlsOptions, Step, TestCa, TestServer, Validity,
};
use crate::common::tickr::target;

/// A target registered with fresh metrics, probed on demand.
struct Probed {
    target: Arc<Target>,
    metrics: Arc<Metrics>,
    tm: Arc<tickr::metrics::TargetMetrics>,
}

impl Probed {
    fn new(yaml: &str) -> Self {
        let target = target(yaml);
        let metrics = Arc::new(Metrics::new());
        let tm = metrics.register_target(&target);
        Self {
            target,
            metrics,
            tm,
        }
    }

    async fn probe(&self) -> Outcome {
        let o = probe::run(&self.target).await;
        self.tm.record(&o, None, None);
        o
    }

    fn exposition(&self) -> Exposition {
        Exposition::parse(&self.metrics.encode())
    }
}

fn reason(o: &Outcome) -> Option<&'static str> {
    o.failure.as_ref().map(|f| f.reason.as_str())
}

/// The one series of `name` for target `t`, as its labels.
fn only(e: &Exposition, name: &str, t: &str) -> std::collections::BTreeMap<String, String> {
    let labels = [("target", t)];
    let found: Vec<_> = e.find(name, &labels).collect();
    assert_eq!(found.len(), 1, "{name} for {t}:\n{}", e.text);
    assert_eq!(found[0].value, 1.0, "{name} is 1");
    found[0]
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What `tickr_tls_cert_info` must say of `leaf`, worked out here from the certificate the
/// test minted: the serial from its raw bytes, the fingerprint from its DER.
fn expected_serial_and_fingerprint(leaf: &Leaf) -> (String, String) {
    let der = CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
        .next()
        .expect("a leaf")
        .expect("leaf PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("leaf parses");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let serial = hex(cert.raw_serial()).trim_start_matches('0').to_owned();
    let fingerprint = hex(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
    (serial, fingerprint)
}

/// A CA and a directory holding its PEM as `ca.pem`.
struct Trust {
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Trust {
    fn new(name: &str) -> Self {
        let ca = TestCa::new(name);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        Self { ca, dir }
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }
}

fn tls12_only(leaf: &Leaf) -> ServerTls {
    ServerTls::with(ServerTlsOptions {
        versions: &[&rustls::version::TLS12],
        ..ServerTlsOptions::new(leaf)
    })
}

#[tokio::test]
async fn tls_info_names_the_version_and_cipher_of_the_last_handshake() {
    let trust = Trust::new("tickr tls facts CA");
    let leaf = trust.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let modern = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let old = TestServer::tls(Step::statuses(&[200]), tls12_only(&leaf)).await;

    for (name, server, version, suite_prefix) in [
        ("modern", &modern, "TLS 1.3", "TLS13_"),
        ("old", &old, "TLS 1.2", "TLS_ECDHE_"),
    ] {
        let p = Probed::new(&format!(
            "name: {name}\nurl: {}\ntls: {{ca_file: {}}}",
            server.url("/"),
            trust.ca_file()
        ));
        assert!(
            p.exposition().find("tickr_tls_info", &[]).next().is_none(),
            "no series before the first handshake"
        );
        for _ in 0..3 {
            let o = p.probe().await;
            assert_eq!(reason(&o), None, "{name}: {:?}", o.failure);
        }
        let e = p.exposition();
        let info = only(&e, "tickr_tls_info", name);
        assert_eq!(info["version"], version, "{name}");
        assert!(
            info["cipher"].starts_with(suite_prefix) && info["cipher"].len() > suite_prefix.len(),
            "{name}: cipher {:?}",
            info["cipher"]
        );
        assert_eq!(
            e.get("tickr_tls_chain_verified", &[("target", name)]),
            Some(1.0)
        );
    }

    // Over plain HTTP there is no handshake, and none of the TLS series.
    let plain = TestServer::plain(Step::statuses(&[200])).await;
    let p = Probed::new(&format!("name: plain\nurl: {}", plain.url("/")));
    p.probe().await;
    let e = p.exposition();
    for name in [
        "tickr_tls_info",
        "tickr_tls_cert_info",
        "tickr_tls_chain_verified",
    ] {
        assert!(e.find(name, &[]).next().is_none(), "{name}:\n{}", e.text);
    }
}

#[tokio::test]
async fn cert_info_is_the_served_leaf_replaced_when_it_changes() {
    let trust = Trust::new("tickr tls facts CA");
    let first = trust.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let second = trust.ca.leaf(&["127.0.0.1", "localhost"], Validity::Valid);
    let served = ServedCert::new(&first);
    let server = TestServer::tls(
        Step::statuses(&[200]),
        ServerTls::with(ServerTlsOptions {
            cert: served.clone(),
            ..ServerTlsOptions::new(&first)
        }),
    )
    .await;
    let p = Probed::new(&format!(
        "name: shop\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        trust.ca_file()
    ));

    for leaf in [&first, &second] {
        served.set(leaf);
        for _ in 0..2 {
            let o = p.probe().await;
            assert_eq!(reason(&o), None, "{:?}", o.failure);
        }
        let e = p.exposition();
        // One series, the current leaf's: the previous one is replaced, not kept beside it.
        let cert = only(&e, "tickr_tls_cert_info", "shop");
        let (serial, fingerprint) = expected_serial_and_fingerprint(leaf);
        assert_eq!(cert["subject"], "CN=tickr test leaf");
        assert_eq!(cert["issuer"], "CN=tickr tls facts CA");
        assert_eq!(cert["serial"], serial);
        assert_eq!(cert["fingerprint_sha256"], fingerprint);
        assert_eq!(
            e.get(
                "tickr_tls_cert_not_after_timestamp_seconds",
                &[("target", "shop")]
            ),
            Some(leaf.not_after_unix as f64)
        );
        // Facts about a certificate, never its key.
        for line in leaf.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!e.text.contains(line), "key material in the exposition");
        }
    }
    assert_ne!(
        expected_serial_and_fingerprint(&first),
        expected_serial_and_fingerprint(&second)
    );
}

#[tokio::test]
async fn chain_verified_tells_an_untrusted_chain_from_a_trusted_one() {
    let trust = Trust::new("tickr trusted CA");
    let stranger = TestCa::new("tickr unknown CA");
    let untrusted = stranger.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&untrusted)).await;

    // Accepted under insecure_skip_verify, and still reported as not verified.
    let skip = Probed::new(&format!(
        "name: skip\nurl: {}\ntls: {{insecure_skip_verify: true}}",
        server.url("/")
    ));
    let o = skip.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    let e = skip.exposition();
    assert_eq!(
        e.get("tickr_tls_chain_verified", &[("target", "skip")]),
        Some(0.0)
    );
    assert_eq!(
        only(&e, "tickr_tls_cert_info", "skip")["issuer"],
        "CN=tickr unknown CA"
    );

    // Without it, the same chain fails the probe (reason tls), and the facts are there too.
    let strict = Probed::new(&format!(
        "name: strict\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        trust.ca_file()
    ));
    let o = strict.probe().await;
    assert_eq!(reason(&o), Some("tls"));
    let e = strict.exposition();
    assert_eq!(
        e.get("tickr_tls_chain_verified", &[("target", "strict")]),
        Some(0.0)
    );
    only(&e, "tickr_tls_cert_info", "strict");
    assert!(
        e.find("tickr_tls_info", &[]).next().is_none(),
        "no handshake completed"
    );

    // The stranger's CA trusted, under insecure_skip_verify still: verified.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &stranger.pem).unwrap();
    let trusted = Probed::new(&format!(
        "name: trusted\nurl: {}\ntls: {{insecure_skip_verify: true, ca_file: {}}}",
        server.url("/"),
        dir.path().join("ca.pem").display()
    ));
    trusted.probe().await;
    assert_eq!(
        trusted
            .exposition()
            .get("tickr_tls_chain_verified", &[("target", "trusted")]),
        Some(1.0)
    );

    // An expired certificate from a trusted CA: expiring is not untrusted, but it does not
    // verify either, and its notAfter says why.
    let expired = trust.ca.leaf(&["127.0.0.1"], Validity::Expired);
    let old = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&expired)).await;
    let p = Probed::new(&format!(
        "name: expired\nurl: {}\ntls: {{ca_file: {}, insecure_skip_verify: true}}",
        old.url("/"),
        trust.ca_file()
    ));
    p.probe().await;
    let e = p.exposition();
    assert_eq!(
        e.get("tickr_tls_chain_verified", &[("target", "expired")]),
        Some(0.0)
    );
    assert_eq!(
        e.get(
            "tickr_tls_cert_not_after_timestamp_seconds",
            &[("target", "expired")]
        ),
        Some(expired.not_after_unix as f64)
    );
}

#[tokio::test]
async fn min_and_max_version_are_negotiated_and_enforced() {
    let trust = Trust::new("tickr tls facts CA");
    let leaf = trust.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let modern = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let old = TestServer::tls(Step::statuses(&[200]), tls12_only(&leaf)).await;

    // A server offering 1.3, a target held to 1.2 at most: 1.2.
    let capped = Probed::new(&format!(
        "name: capped\nurl: {}\ntls: {{ca_file: {}, max_version: TLS12}}",
        modern.url("/"),
        trust.ca_file()
    ));
    let o = capped.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(o.tls_version, Some("TLS 1.2"));
    assert_eq!(
        only(&capped.exposition(), "tickr_tls_info", "capped")["version"],
        "TLS 1.2"
    );

    // A 1.2-only server, a target that wants 1.3 at least: a TLS failure.
    let strict = Probed::new(&format!(
        "name: strict\nurl: {}\ntls: {{ca_file: {}, min_version: \"TLS 1.3\"}}",
        old.url("/"),
        trust.ca_file()
    ));
    let o = strict.probe().await;
    assert_eq!(reason(&o), Some("tls"), "{:?}", o.failure);
    assert_eq!(
        strict
            .exposition()
            .value("tickr_probe_failures_total", &[("reason", "tls")]),
        1.0
    );

    // The same target against the 1.3 server: fine.
    let ok = Probed::new(&format!(
        "name: ok\nurl: {}\ntls: {{ca_file: {}, min_version: TLS13, max_version: TLS13}}",
        modern.url("/"),
        trust.ca_file()
    ));
    let o = ok.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(o.tls_version, Some("TLS 1.3"));
}

#[tokio::test]
async fn expect_tls_judges_the_final_response_connection() {
    let trust = Trust::new("tickr tls facts CA");
    let leaf = trust.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let plain = TestServer::plain(Step::statuses(&[200])).await;
    let secure = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    // An HTTPS URL whose final response comes over plain HTTP, after a redirect.
    let downgrade = TestServer::tls(
        vec![Step::redirect(302, &plain.url("/"))],
        ServerTls::new(&leaf),
    )
    .await;

    let ca = trust.ca_file();
    for (url, expect, want) in [
        (plain.url("/"), "required", Some("tls")),
        (plain.url("/"), "forbidden", None),
        (secure.url("/"), "required", None),
        (secure.url("/"), "forbidden", Some("tls")),
        (downgrade.url("/"), "required", Some("tls")),
        (downgrade.url("/"), "forbidden", None),
    ] {
        let p = Probed::new(&format!(
            "name: t\nurl: {url}\ntls: {{ca_file: {ca}}}\nexpect: {{tls: {expect}}}"
        ));
        let o = p.probe().await;
        assert_eq!(
            reason(&o),
            want,
            "{url} expecting tls {expect}: {:?}",
            o.failure
        );
        assert_eq!(o.status, Some(200), "the answer was read before judging it");
        let counted = p
            .exposition()
            .value("tickr_probe_failures_total", &[("reason", "tls")]);
        assert_eq!(counted, f64::from(u8::from(want.is_some())));
    }
}

/// Log lines written while it is the thread's subscriber (the test runs on one thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Writes a file the way a rotation does: a new file moved into place, never half written.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.new"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Long enough for the material to look at its files again.
const RECHECK: Duration = Duration::from_millis(1_200);

/// tickr remembers the chains it accepted (their signatures are not checked again for a while);
/// the server's signature over each handshake is checked every time. Nothing a server or an
/// operator changes may hide behind a remembered verdict: the accepted chain presented without
/// its key (a copied certificate), a chain from an unknown CA under the same name, and a
/// `ca_file` replaced by one that no longer trusts the server.
#[tokio::test]
async fn a_remembered_chain_hides_no_change_of_certificate_key_or_roots() {
    let trust = Trust::new("tickr remembered CA");
    let stranger = TestCa::new("tickr stranger CA");
    let good = trust.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let served = ServedCert::new(&good);
    let server = TestServer::tls(
        Step::statuses(&[200]),
        ServerTls::with(ServerTlsOptions {
            cert: served.clone(),
            ..ServerTlsOptions::new(&good)
        }),
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    replace(files.path(), "ca.pem", &trust.ca.pem);
    let p = Probed::new(&format!(
        "name: shop\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        files.path().join("ca.pem").display()
    ));
    let verified = |p: &Probed| {
        p.exposition()
            .get("tickr_tls_chain_verified", &[("target", "shop")])
    };
    for _ in 0..3 {
        let o = p.probe().await;
        assert_eq!(reason(&o), None, "{:?}", o.failure);
    }

    // The same chain, signed for with another key: the handshake's signature fails.
    let other_key = trust.ca.leaf(&["127.0.0.1"], Validity::Valid).key_pem;
    served.set(&Leaf {
        key_pem: other_key,
        ..good.clone()
    });
    let o = p.probe().await;
    assert_eq!(
        reason(&o),
        Some("tls"),
        "a copied certificate without its key"
    );

    // A chain from an unknown CA for the same name: refused at once.
    served.set(&stranger.leaf(&["127.0.0.1"], Validity::Valid));
    let o = p.probe().await;
    assert_eq!(reason(&o), Some("tls"));
    assert_eq!(verified(&p), Some(0.0));

    // Back to the accepted chain: accepted again.
    served.set(&good);
    let o = p.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(verified(&p), Some(1.0));

    // The ca_file now trusts the stranger only: the accepted chain is refused from the next
    // look at the file on, without a reload.
    replace(files.path(), "ca.pem", &stranger.pem);
    tokio::time::sleep(RECHECK).await;
    let o = p.probe().await;
    assert_eq!(reason(&o), Some("tls"), "the old CA is no longer trusted");
    assert_eq!(verified(&p), Some(0.0));
}

#[tokio::test]
async fn a_rotated_client_certificate_applies_without_a_reload() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server_ca = Trust::new("tickr server CA");
    let clients = TestCa::new("tickr client CA");
    let stranger = TestCa::new("tickr stranger CA");
    let server_leaf = server_ca.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(
        Step::statuses(&[200]),
        ServerTls::with(ServerTlsOptions {
            client_ca: Some(&clients.pem),
            alpn: &[b"http/1.1"],
            ..ServerTlsOptions::new(&server_leaf)
        }),
    )
    .await;

    let files = tempfile::tempdir().unwrap();
    let good = clients.leaf(&["client.example"], Validity::Valid);
    replace(files.path(), "client.pem", &good.chain_pem);
    replace(files.path(), "client.key", &good.key_pem);
    let p = Probed::new(&format!(
        "name: mtls\nurl: {}\ntls: {{ca_file: {}, cert_file: {}, key_file: {}}}",
        server.url("/"),
        server_ca.ca_file(),
        files.path().join("client.pem").display(),
        files.path().join("client.key").display(),
    ));
    let o = p.probe().await;
    assert_eq!(reason(&o), None, "a client certificate the server trusts");
    let builds = p.target.tls.builds();

    // Rotated to a certificate the server does not trust: the next probes fail.
    let wrong = stranger.leaf(&["client.example"], Validity::Valid);
    replace(files.path(), "client.key", &wrong.key_pem);
    replace(files.path(), "client.pem", &wrong.chain_pem);
    tokio::time::sleep(RECHECK).await;
    let o = p.probe().await;
    assert!(
        o.failure.is_some(),
        "the server refuses the stranger's client"
    );
    assert_eq!(p.target.tls.builds(), builds + 1, "one rebuild per change");

    // Rotated to a new trusted one: the next probes succeed.
    let renewed = clients.leaf(&["client.example"], Validity::Valid);
    replace(files.path(), "client.key", &renewed.key_pem);
    replace(files.path(), "client.pem", &renewed.chain_pem);
    tokio::time::sleep(RECHECK).await;
    let o = p.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert!(
        !log.text().contains("TLS file unusable"),
        "good rotations are no warning:\n{}",
        log.text()
    );

    // The key disappears, then comes back as garbage: the last good pair stays in use, and
    // one warning says so.
    std::fs::remove_file(files.path().join("client.key")).unwrap();
    for _ in 0..2 {
        tokio::time::sleep(RECHECK).await;
        let o = p.probe().await;
        assert_eq!(reason(&o), None, "the last good material: {:?}", o.failure);
    }
    replace(files.path(), "client.key", "not a key\n");
    tokio::time::sleep(RECHECK).await;
    let o = p.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    let text = log.text();
    assert_eq!(
        text.matches("TLS file unusable").count(),
        1,
        "logged once:\n{text}"
    );
    assert!(text.contains("client.key"), "the warning names the file");
    for line in renewed
        .key_pem
        .lines()
        .chain(good.key_pem.lines())
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!text.contains(line), "key material in the log");
    }

    // A good pair again: taken up, and said so.
    replace(files.path(), "client.key", &good.key_pem);
    replace(files.path(), "client.pem", &good.chain_pem);
    tokio::time::sleep(RECHECK).await;
    let o = p.probe().await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert!(log.text().contains("TLS files re-read"), "{}", log.text());
}

#[tokio::test]
async fn per_address_targets_have_their_own_tls_facts_which_go_with_the_target() {
    let trust = Trust::new("tickr tls facts CA");
    let stranger = TestCa::new("tickr unknown CA");
    let trusted = trust.ca.leaf(&["shop.test"], Validity::Valid);
    let untrusted = stranger.leaf(&["shop.test"], Validity::Valid);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let _one = TestServer::tls_on(
        ([127, 0, 0, 1], port).into(),
        Step::statuses(&[200]),
        ServerTls::new(&trusted),
    )
    .await;
    let _two = TestServer::tls_on(
        ([127, 0, 0, 2], port).into(),
        Step::statuses(&[200]),
        tls12_only(&untrusted),
    )
    .await;
    let pool = format!(
        "  - name: pool\n    url: https://shop.test:{port}/\n    addresses: [127.0.0.1, 127.0.0.2]\n    \
         per_address: true\n    interval: 200ms\n    timeout: 150ms\n    \
         tls: {{ca_file: {}, insecure_skip_verify: true}}\n",
        trust.ca_file()
    );
    let other = "  - {name: other, url: \"http://127.0.0.1:9/\", interval: 1s}\n";
    let tickr = crate::common::tickr::Tickr::start(&format!("targets:\n{pool}{other}")).await;
    let at = |ip| [("target", "pool"), ("address", ip)];
    let m = tickr
        .wait_for(
            Duration::from_secs(10),
            "TLS facts of both addresses",
            |m| {
                ["127.0.0.1", "127.0.0.2"]
                    .iter()
                    .all(|ip| m.get("tickr_tls_chain_verified", &at(ip)).is_some())
                    && m.find("tickr_tls_info", &at("127.0.0.2")).next().is_some()
            },
        )
        .await;
    assert_eq!(
        m.get("tickr_tls_chain_verified", &at("127.0.0.1")),
        Some(1.0)
    );
    assert_eq!(
        m.get("tickr_tls_chain_verified", &at("127.0.0.2")),
        Some(0.0)
    );
    let label = |name, ip, label| {
        let labels = at(ip);
        let found: Vec<_> = m.find(name, &labels).collect();
        assert_eq!(found.len(), 1, "one {name} series per address");
        found[0].labels[label].clone()
    };
    assert_eq!(label("tickr_tls_info", "127.0.0.1", "version"), "TLS 1.3");
    assert_eq!(label("tickr_tls_info", "127.0.0.2", "version"), "TLS 1.2");
    let issuer = |ip| label("tickr_tls_cert_info", ip, "issuer");
    assert_eq!(issuer("127.0.0.1"), "CN=tickr tls facts CA");
    assert_eq!(issuer("127.0.0.2"), "CN=tickr unknown CA");

    // The target removed by a reload: its TLS series go with the rest of its series.
    tickr.write_config(&format!("targets:\n{other}"));
    assert_eq!(tickr.post("/-/reload").await.status, 200);
    let m = tickr
        .wait_for(Duration::from_secs(5), "the pool's series gone", |m| {
            m.series_of("pool") == 0
        })
        .await;
    for name in [
        "tickr_tls_info",
        "tickr_tls_cert_info",
        "tickr_tls_chain_verified",
    ] {
        assert!(m.find(name, &[("target", "pool")]).next().is_none());
    }
    tickr.stop().await;
}
