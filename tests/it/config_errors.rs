//! Configuration fixtures under `tests/fixtures/config/`: every valid file loads, every invalid one
//! fails at the line, column and with the message its first-line `# expect:` comment declares, no
//! error repeats a secret, and `tickr --config.check` reports exactly what the loader does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use http::Method;
use tickr::config::{self, Config, HttpVersion, IpProtocol, StatusPattern, Target};

/// The secret the fixtures put in Authorization headers, cookies and URL passwords.
const SECRET: &str = "s3cr3t-token";

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind)
}

/// Every `*.yml` file of `valid/` or `invalid/`, sorted so failures list in a stable order.
fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = fixture_dir(kind);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

/// What an invalid fixture declares on its first line: `# expect: LINE:COL: message substring`.
struct Expectation {
    line: usize,
    col: usize,
    text: String,
}

fn expectation(path: &Path) -> Expectation {
    let content = std::fs::read_to_string(path).expect("readable fixture");
    let first = content.lines().next().unwrap_or_default();
    let parsed = first.strip_prefix("# expect: ").and_then(|rest| {
        let (position, text) = rest.split_once(": ")?;
        let (line, col) = position.split_once(':')?;
        Some(Expectation {
            line: line.parse().ok()?,
            col: col.parse().ok()?,
            text: text.to_owned(),
        })
    });
    parsed.unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# expect: LINE:COL: message substring`, not {first:?}",
            path.display()
        )
    })
}

fn load_ok(path: &Path) -> Config {
    config::load(path).unwrap_or_else(|e| panic!("{} should load, got: {e}", path.display()))
}

fn target<'c>(config: &'c Config, name: &str) -> &'c Target {
    let found = config.targets.iter().find(|t| t.name == name);
    found.unwrap_or_else(|| panic!("no target {name:?} in {}", config.path.display()))
}

fn header<'t>(target: &'t Target, name: &str) -> Option<&'t str> {
    target
        .headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header value"))
}

/// `(label, text, negate)` of each matcher, in configuration order.
fn matchers(target: &Target) -> Vec<(&str, &str, bool)> {
    target
        .matchers
        .iter()
        .map(|m| (m.label.as_str(), m.text.as_str(), m.negate))
        .collect()
}

fn status(low: u16, high: u16) -> StatusPattern {
    StatusPattern { low, high }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_valid_fixture_loads() {
    let files = fixtures("valid");
    assert!(
        files.len() >= 5,
        "expected at least 5 valid fixtures, found {}",
        files.len()
    );
    // The fixtures name TLS files as `../tls/...`: that only resolves against the fixture's own
    // directory, not against the directory the tests run in.
    assert!(
        !Path::new("../tls/ca.pem").exists(),
        "the relative-path check below would prove nothing"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| config::load(path).err())
        .map(|e| e.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "valid fixtures were rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn empty_target_list_is_valid() {
    let config = load_ok(&fixture_dir("valid").join("empty-targets.yml"));
    assert!(config.targets.is_empty());
    assert_eq!(
        config.max_concurrent_probes,
        tickr::limits::DEFAULT_MAX_CONCURRENT_PROBES
    );
}

#[test]
fn minimal_fixture_gets_the_documented_defaults() {
    let config = load_ok(&fixture_dir("valid").join("minimal.yml"));
    assert_eq!(config.targets.len(), 1);
    let t = target(&config, "example-home");
    assert_eq!(t.url.as_str(), "https://example.com/");
    assert_eq!(t.interval, Duration::from_secs(60));
    assert_eq!(t.timeout, Duration::from_secs(10));
    assert_eq!(t.method, Method::GET);
    assert_eq!(
        header(t, "user-agent"),
        Some(concat!("tickr/", env!("CARGO_PKG_VERSION")))
    );
    assert!(t.follow_redirects);
    assert_eq!(t.max_body_bytes, 1 << 20);
    assert_eq!(t.ip_protocol, IpProtocol::Auto);
    assert_eq!(t.http_version, HttpVersion::Auto);
    assert_eq!(t.expect_status, [status(200, 299)]);
    assert!(t.labels.is_empty() && t.matchers.is_empty() && t.body.is_empty());
}

#[test]
fn full_fixture_merges_defaults_into_targets() {
    let config = load_ok(&fixture_dir("valid").join("full.yml"));
    assert_eq!(config.max_concurrent_probes, 64);
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["shop-home", "orders-api", "legacy-status", "staging-home"]
    );

    // Everything but labels and expectations comes from defaults.
    let shop = target(&config, "shop-home");
    assert_eq!(
        (shop.interval, shop.timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
    assert_eq!(shop.method, Method::GET);
    assert_eq!(
        header(shop, "user-agent"),
        Some("tickr-fixture/1.0"),
        "defaults replace the built-in User-Agent"
    );
    assert_eq!(header(shop, "accept"), Some("text/html"));
    assert_eq!(shop.max_body_bytes, 512 << 10);
    assert!(shop.follow_redirects);
    assert_eq!(
        shop.labels,
        labels(&[("env", "prod"), ("team", "web")]),
        "the target's team wins"
    );
    assert_eq!(shop.expect_status, [status(200, 200), status(301, 302)]);
    assert_eq!(
        matchers(shop),
        [
            ("<title>Shop", "<title>Shop", false),
            ("footer", "</footer>", false),
            ("Bad Gateway", "Bad Gateway", true),
            ("maintenance", "down for maintenance", true),
        ]
    );

    // Overrides every setting; headers merge key by key, the target's value winning.
    let api = target(&config, "orders-api");
    assert_eq!(
        (api.interval, api.timeout),
        (Duration::from_secs(15), Duration::from_secs(3))
    );
    assert_eq!(api.url.port(), Some(8443));
    assert_eq!(api.method, Method::POST);
    assert_eq!(&api.body[..], br#"{"check": "deep"}"#);
    assert_eq!(header(api, "accept"), Some("application/json"));
    assert_eq!(header(api, "content-type"), Some("application/json"));
    assert_eq!(header(api, "user-agent"), Some("tickr-fixture/1.0"));
    let auth = api
        .headers
        .get("authorization")
        .expect("Authorization header");
    assert!(auth.is_sensitive(), "header values are secrets");
    assert!(!api.follow_redirects);
    assert_eq!(api.max_body_bytes, 64 << 10);
    assert_eq!(api.ip_protocol, IpProtocol::Ipv4);
    assert_eq!(api.http_version, HttpVersion::Http2);
    assert_eq!(
        api.labels,
        labels(&[("env", "prod"), ("service", "orders"), ("team", "platform")])
    );
    assert_eq!(api.expect_status, [status(200, 299), status(304, 304)]);
    // `expect` merges key by key: body_not_contains still comes from defaults.
    assert_eq!(
        matchers(api),
        [
            (r#""status":"ok""#, r#""status":"ok""#, false),
            ("Bad Gateway", "Bad Gateway", true)
        ]
    );

    let legacy = target(&config, "legacy-status");
    assert_eq!(legacy.url.host_str(), Some("[2001:db8::10]"));
    assert_eq!(
        (legacy.interval, legacy.timeout),
        (Duration::from_secs(60), Duration::from_secs(5))
    );
    assert_eq!(
        (legacy.ip_protocol, legacy.http_version),
        (IpProtocol::Ipv6, HttpVersion::Http1)
    );
    assert_eq!(legacy.max_body_bytes, 4096);
    assert_eq!(legacy.expect_status, [status(200, 399)]);
    assert!(
        legacy.matchers.is_empty(),
        "an explicit empty list overrides the defaults' matchers"
    );

    let staging = target(&config, "staging-home");
    assert_eq!(
        (staging.interval, staging.timeout),
        (Duration::from_secs(120), Duration::from_secs(20))
    );
    // `preview` is secret by `diagnosis.redact_query_params`; the probe still sends it.
    assert_eq!(
        staging.shown_url,
        "https://staging.example.com/?preview=<redacted>&lang=en"
    );
    assert_eq!(staging.url.query(), Some("preview=s3cr3t-token&lang=en"));
    assert_eq!(config.diagnosis.redact_query_params, ["preview"]);

    // Targets without their own `tls` share the defaults' material; the others differ from it.
    assert_eq!(shop.tls, legacy.tls);
    assert_ne!(shop.tls, api.tls);
    assert_ne!(shop.tls, staging.tls);
}

#[test]
fn modules_sit_between_targets_and_defaults() {
    let config = load_ok(&fixture_dir("valid").join("modules.yml"));
    let home = target(&config, "home");
    assert_eq!(home.module.as_deref(), Some("http_2xx"));
    assert_eq!(home.expect_status, [status(200, 299)], "from the module");
    assert_eq!(home.interval, Duration::from_secs(30), "from defaults");
    assert_eq!(home.labels, labels(&[("env", "prod")]));

    let orders = target(&config, "orders");
    assert_eq!(orders.module.as_deref(), Some("api_post"));
    assert_eq!(orders.method, Method::POST);
    assert_eq!(&orders.body[..], br#"{"ping": true}"#);
    assert_eq!(orders.timeout, Duration::from_secs(3), "the target wins");
    assert_eq!(orders.interval, Duration::from_secs(30), "defaults fill in");
    assert_eq!(
        orders.labels,
        labels(&[("env", "prod"), ("team", "orders")]),
        "labels merge over all three layers, the target's value winning"
    );
    assert_eq!(header(orders, "content-type"), Some("application/json"));
    assert_eq!(header(orders, "user-agent"), Some("tickr-fixture/1.0"));
    assert_eq!(
        orders.expect_status,
        [status(200, 200), status(201, 201)],
        "the module's statuses and the target's matcher, side by side"
    );
    assert_eq!(matchers(orders), [("ok", "ok", false)]);

    let plain = target(&config, "plain");
    assert_eq!(plain.module, None);
    assert_eq!(plain.expect_status, [status(200, 299)], "the built-in");
    assert_eq!(plain.method, Method::GET);
}

#[test]
fn request_ids_follow_the_layers_and_a_configured_header_wins() {
    use tickr::config::Traceparent;
    let minimal = load_ok(&fixture_dir("valid").join("minimal.yml"));
    let home = target(&minimal, "example-home");
    assert_eq!(
        home.request_id.as_ref().map(|h| h.as_str()),
        Some("x-request-id")
    );
    assert_eq!(
        home.traceparent,
        Some(Traceparent { sampled: true }),
        "built in"
    );

    let config = load_ok(&fixture_dir("valid").join("request-ids.yml"));
    let shop = target(&config, "shop");
    assert_eq!(
        shop.request_id.as_ref().map(|h| h.as_str()),
        Some("x-correlation-id")
    );
    assert_eq!(shop.traceparent, Some(Traceparent { sampled: false }));
    let legacy = target(&config, "legacy");
    assert_eq!(
        (legacy.request_id.as_ref(), legacy.traceparent),
        (None, None)
    );
    let traced = target(&config, "traced");
    assert_eq!(
        traced.request_id.as_ref().map(|h| h.as_str()),
        Some("x-request-id")
    );
    assert_eq!(
        traced.traceparent,
        Some(Traceparent { sampled: true }),
        "`true` comes whole from the target: sampled, as built in"
    );
    // The target's own headers are more specific than the defaults' switches: sent as written.
    let fixed = target(&config, "fixed-id");
    assert_eq!((fixed.request_id.as_ref(), fixed.traceparent), (None, None));
    assert_eq!(header(fixed, "x-correlation-id"), Some("synthetic-probe"));
    assert!(header(fixed, "traceparent").is_some());
    // ... and the other way round: the target's switch beats its module's header.
    let generated = target(&config, "generated-id");
    assert_eq!(
        generated.request_id.as_ref().map(|h| h.as_str()),
        Some("x-request-id")
    );
    assert_eq!(header(generated, "x-request-id"), None);
}

#[test]
fn status_and_method_forms() {
    let config = load_ok(&fixture_dir("valid").join("status-patterns.yml"));
    let wide = target(&config, "anything-but-5xx");
    assert_eq!(
        wide.expect_status,
        [
            status(100, 199),
            status(200, 299),
            status(300, 399),
            status(400, 499)
        ]
    );
    assert_eq!(
        target(&config, "plain").expect_status,
        [status(200, 200)],
        "inherited from defaults"
    );
    let redirector = target(&config, "redirector");
    let codes: Vec<u16> = redirector.expect_status.iter().map(|p| p.low).collect();
    assert_eq!(codes, [301, 302, 307, 308]);
    let slow = target(&config, "slow-report");
    assert_eq!(
        (slow.interval, slow.timeout),
        (Duration::from_secs(3600), Duration::from_secs(120))
    );
    assert_eq!(slow.max_body_bytes, 8 << 20);

    let config = load_ok(&fixture_dir("valid").join("api-post.yml"));
    let search = target(&config, "search-api");
    assert_eq!(search.interval, Duration::from_secs(90));
    assert_eq!(search.method, Method::POST, "methods are case-insensitive");
    assert_eq!(&search.body[..], b"{\"query\": \"tickr\", \"limit\": 1}\n");
    assert!(
        header(search, "authorization").is_some(),
        "defaults' headers merge with the target's"
    );
    assert_eq!(header(search, "content-type"), Some("application/json"));
    assert_eq!(
        matchers(search),
        [
            ("has-results", r#""hits":"#, false),
            (r#""error""#, r#""error""#, true)
        ]
    );
    let config = load_ok(&fixture_dir("valid").join("histograms.yml"));
    let shop = &target(&config, "shop").histograms;
    assert_eq!(shop.phases, tickr::config::PhaseDetail::Total);
    assert_eq!(&shop.buckets[..], [0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
    let checkout = &target(&config, "checkout").histograms;
    assert_eq!(
        (checkout.phases, &checkout.buckets[..]),
        (tickr::config::PhaseDetail::All, &[0.05, 0.2, 1.0][..]),
        "a target's own keys win over the defaults"
    );
    let config = load_ok(&fixture_dir("valid").join("minimal.yml"));
    let defaults = &config.targets[0].histograms;
    assert_eq!(
        (defaults.phases, &defaults.buckets[..]),
        (
            tickr::config::PhaseDetail::All,
            &tickr::config::DEFAULT_BUCKETS[..]
        )
    );

    let config = load_ok(&fixture_dir("valid").join("api-post.yml"));
    let ui = target(&config, "search-ui");
    assert_eq!(ui.method, Method::HEAD);
    assert_eq!(
        (ui.interval, ui.timeout),
        (Duration::from_millis(500), Duration::from_millis(400))
    );
}

#[test]
fn every_invalid_fixture_fails_where_it_declares() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= 20,
        "expected at least 20 invalid fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let want = expectation(path);
        let prefix = format!("{}:{}:{}: ", path.display(), want.line, want.col);
        match config::load(path) {
            Ok(_) => failures.push(format!(
                "  want: {prefix}…{}\n   got: loaded without error",
                want.text
            )),
            Err(err) => {
                let got = err.to_string();
                let position_ok =
                    err.position == Some((want.line, want.col)) && got.starts_with(&prefix);
                if !position_ok || !got.contains(&want.text) || err.file != *path {
                    failures.push(format!("  want: {prefix}…{}\n   got: {got}", want.text));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid fixtures did not fail as declared:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_never_repeat_secrets() {
    let carries_secret = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .expect("readable fixture")
            .contains(SECRET)
    };
    let invalid: Vec<PathBuf> = fixtures("invalid")
        .into_iter()
        .filter(carries_secret)
        .collect();
    assert!(
        invalid.len() >= 5,
        "only {} invalid fixtures carry {SECRET:?}; the check would prove little",
        invalid.len()
    );
    let leaks: Vec<String> = invalid
        .iter()
        .map(|path| config::load(path).expect_err("invalid fixture").to_string())
        .filter(|message| message.contains(SECRET))
        .collect();
    assert!(
        leaks.is_empty(),
        "errors repeat a secret:\n{}",
        leaks.join("\n")
    );

    // A loaded configuration gets logged and debugged too.
    let valid: Vec<PathBuf> = fixtures("valid")
        .into_iter()
        .filter(carries_secret)
        .collect();
    assert!(!valid.is_empty(), "no valid fixture carries {SECRET:?}");
    for path in valid {
        let config = load_ok(&path);
        assert!(
            !format!("{config:?}").contains(SECRET),
            "{}: Debug shows a secret",
            path.display()
        );
    }
}

fn config_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickr"))
        .arg("--config.check")
        .arg("--config.file")
        .arg(path)
        // Relative paths in the file must resolve against its directory, wherever tickr runs.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run tickr")
}

#[test]
fn config_check_reports_the_loader_error_on_one_line() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= 20,
        "expected at least 20 invalid fixtures, found {}",
        files.len()
    );
    for path in &files {
        let out = config_check(path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: --config.check succeeded; stderr: {stderr}",
            path.display()
        );
        let want = config::load(path).expect_err("invalid fixture").to_string();
        assert_eq!(
            stderr,
            format!("{want}\n"),
            "{}: stderr must be exactly the loader's error",
            path.display()
        );
        // `file:line:col: message`, whatever the position is.
        let rest = stderr
            .strip_prefix(&format!("{}:", path.display()))
            .expect("starts with the file");
        let mut parts = rest.splitn(3, ':');
        let (line, col) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        assert!(
            line.parse::<usize>().is_ok_and(|l| l > 0) && col.parse::<usize>().is_ok_and(|c| c > 0),
            "{}: no line:col in {stderr:?}",
            path.display()
        );
        assert!(
            parts
                .next()
                .is_some_and(|m| m.starts_with(' ') && m.trim().len() > 1),
            "no message in {stderr:?}"
        );
    }
}

#[test]
fn config_check_accepts_valid_fixtures() {
    for path in fixtures("valid") {
        let out = config_check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: --config.check failed: {stderr}",
            path.display()
        );
        assert!(
            stderr.is_empty(),
            "{}: unexpected stderr: {stderr}",
            path.display()
        );
    }
}

#[test]
fn repository_example_config_passes_check() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yml"));
    let out = config_check(path);
    assert!(
        out.status.success(),
        "config.yml fails --config.check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Targets with the same TLS settings share one set of material (10,000 HTTPS targets with one
/// `ca_file` took 205 MiB against 74 MiB without it, a root store each); a renewed CA file is
/// read again on the next load and rebuilds that material in place (the targets keep running),
/// and other settings, TLS versions among them, keep theirs apart.
#[test]
fn targets_with_the_same_tls_settings_share_their_material() {
    let dir = tempfile::tempdir().unwrap();
    let ca = std::fs::read(fixture_dir("tls").join("ca.pem")).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    let yaml = "defaults: {tls: {ca_file: ca.pem}}\ntargets:\n\
                \x20 - {name: a, url: \"https://a.example/\"}\n\
                \x20 - {name: b, url: \"https://b.example/\"}\n\
                \x20 - {name: c, url: \"https://c.example/\", tls: {server_name: other.example}}\n\
                \x20 - {name: d, url: \"https://d.example/\", tls: {max_version: TLS12}}\n\
                \x20 - {name: e, url: \"https://e.example/\", tls: {max_version: TLS12}}\n";
    std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
    let first = load_ok(&dir.path().join("config.yml"));
    let (a, b, c) = (
        target(&first, "a"),
        target(&first, "b"),
        target(&first, "c"),
    );
    assert!(
        std::sync::Arc::ptr_eq(&a.tls, &b.tls),
        "same settings, one material"
    );
    assert!(
        !std::sync::Arc::ptr_eq(&a.tls, &c.tls),
        "another server name, its own"
    );
    let (d, e) = (target(&first, "d"), target(&first, "e"));
    assert!(
        !std::sync::Arc::ptr_eq(&a.tls, &d.tls),
        "other versions, its own"
    );
    assert!(
        std::sync::Arc::ptr_eq(&d.tls, &e.tls),
        "the same versions, shared"
    );

    // Loaded again, unchanged: the same material, not rebuilt.
    let builds = a.tls.builds();
    let again = load_ok(&dir.path().join("config.yml"));
    assert!(std::sync::Arc::ptr_eq(&a.tls, &target(&again, "a").tls));
    assert_eq!(a.tls.builds(), builds, "unchanged files are not read again");

    // The CA renewed (here: a second certificate appended): the same material, rebuilt from
    // the new file, and the target unchanged (it keeps running, and its counters).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut renewed = ca.clone();
    renewed.extend_from_slice(&ca);
    std::fs::write(dir.path().join("ca.pem"), &renewed).unwrap();
    let third = load_ok(&dir.path().join("config.yml"));
    assert!(std::sync::Arc::ptr_eq(&a.tls, &target(&third, "a").tls));
    assert_eq!(a.tls.builds(), builds + 1, "the renewed CA is built once");
    assert_eq!(a, target(&third, "a"), "a renewed CA keeps the target");
}

/// Targets whose settings come out the same share one copy of them (a fleet's targets mostly
/// differ in name, URL and labels only), whichever layer set them and across loads; a target
/// that differs in one setting has its own, and a reload still sees it as changed.
#[test]
fn targets_with_the_same_settings_share_one_probing() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let yaml = |d_interval: &str| {
        format!(
            "defaults: {{interval: 30s}}\nmodules: {{slow: {{timeout: 9s}}}}\ntargets:\n\
             \x20 - {{name: a, url: \"http://a.example/\", labels: {{team: x}}}}\n\
             \x20 - {{name: b, url: \"http://b.example/\"}}\n\
             \x20 - {{name: c, url: \"http://c.example/\", module: slow}}\n\
             \x20 - {{name: d, url: \"http://d.example/\", timeout: 9s}}\n\
             \x20 - {{name: e, url: \"http://e.example/\", interval: {d_interval}}}\n"
        )
    };
    std::fs::write(&path, yaml("30s")).unwrap();
    let first = load_ok(&path);
    let (a, b, c, d, e) = (
        target(&first, "a"),
        target(&first, "b"),
        target(&first, "c"),
        target(&first, "d"),
        target(&first, "e"),
    );
    assert!(
        Arc::ptr_eq(&a.probing, &b.probing),
        "labels are not settings"
    );
    assert!(
        Arc::ptr_eq(&a.probing, &e.probing),
        "the interval the defaults give, set again"
    );
    assert!(!Arc::ptr_eq(&a.probing, &c.probing), "another timeout");
    assert!(
        Arc::ptr_eq(&c.probing, &d.probing),
        "the same timeout from a module or the target"
    );
    assert_eq!(
        (c.timeout, a.timeout),
        (Duration::from_secs(9), Duration::from_secs(10))
    );

    // Loaded again: the same copies; one target changed: only it has a copy of its own, and
    // it compares unequal, so a reload restarts it.
    let again = load_ok(&path);
    assert!(Arc::ptr_eq(&a.probing, &target(&again, "a").probing));
    std::fs::write(&path, yaml("45s")).unwrap();
    let changed = load_ok(&path);
    let e2 = target(&changed, "e");
    assert!(!Arc::ptr_eq(&e.probing, &e2.probing));
    assert_eq!(e2.interval, Duration::from_secs(45));
    assert_ne!(e, e2, "a changed interval changes the target");
    assert_eq!(a, target(&changed, "a"), "the others stay as they were");
}

/// `tls.min_version`/`max_version` in their several spellings, and `expect.tls`, each key from
/// the most specific layer that sets it.
#[test]
fn tls_versions_and_expect_tls_merge_over_the_layers() {
    use tickr::config::ExpectTls;
    use tickr::tls::TlsVersion::{Tls12, Tls13};
    let config = load_ok(&fixture_dir("valid").join("tls-versions.yml"));
    let versions = |name| {
        let v = target(&config, name).tls.versions();
        (v.min(), v.max())
    };
    assert_eq!(versions("shop"), (Tls13, Tls13), "the module's minimum");
    assert_eq!(versions("legacy"), (Tls12, Tls12), "`1.2`, a YAML number");
    assert_eq!(versions("plain"), (Tls12, Tls13), "the defaults'");
    assert_eq!(
        target(&config, "shop").expect_tls,
        Some(ExpectTls::Required)
    );
    assert_eq!(
        target(&config, "plain").expect_tls,
        Some(ExpectTls::Forbidden)
    );
}
