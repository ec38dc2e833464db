//! The HTML pages in a real headless Chromium (Debian's `chromium`): they render, show the
//! events with their evidence, escape what responses carry, fit the window, land on an event's
//! anchor, and log no console errors, policy violations included. Full-page screenshots are
//! written to `target/tmp/browser/` for a person to look at; the test prints their paths.
//! And pages of other origins, as a browser runs them, trying to reload tickr.
//!
//! Chromium is driven over the DevTools protocol by the small WebSocket client below (no new
//! crates). `--dump-dom` and `--enable-logging` were the alternative: they show the DOM and
//! some console lines, but not uncaught exceptions, failed loads or layout, which the protocol
//! reports exactly, in one browser for every page.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server::{ServerTls, Step, TestCa, TestServer, Validity};
use crate::common::tickr::Tickr;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest wait for Chromium to start, answer a command or load a page.
const LIMIT: Duration = Duration::from_secs(30);

const SHOP_PAGE: &str =
    "<!DOCTYPE html><html><head><title>Shop</title></head><body>ok</body></html>";
const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
/// An application error page carrying markup and a script: the pages must show it as text.
const APP_503: &str = "<!DOCTYPE html><html><head><title>Down</title>\
<script>console.error(\"injected\")</script></head><body><h1>Sorry, the checkout is down</h1>\
<img src=x onerror=\"console.error('injected')\"></body></html>";

fn respond(status: u16, headers: &[(&'static str, &str)], body: &str) -> Step {
    Step::Respond {
        status,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// `failures` scripted failures, then successes for as long as the test runs.
fn script(failures: Vec<Step>, success: Step) -> Vec<Step> {
    let mut steps = vec![success.clone()];
    steps.extend(failures);
    steps.extend(std::iter::repeat_n(success, 500));
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_chromium_with_their_events_and_no_console_errors() {
    let html = [("content-type", "text/html")];
    let nginx = [("server", "nginx/1.22.1"), ("content-type", "text/html")];
    let shop = TestServer::plain(script(
        vec![respond(502, &nginx, NGINX_502); 3],
        respond(200, &nginx, SHOP_PAGE),
    ))
    .await;
    let ca = TestCa::new("browser test CA");
    let api = TestServer::tls(
        script(
            vec![Step::Close, Step::Reset, Step::Close],
            Step::body(200, "{\"status\":\"ok\"}"),
        ),
        ServerTls::new(&ca.leaf(&["127.0.0.1"], Validity::Valid)),
    )
    .await;
    let long_value = format!("{}-end", "0123456789abcdef".repeat(24));
    let checkout = TestServer::plain(script(
        vec![
            Step::slow(200, Duration::from_secs(2)),
            Step::slow(200, Duration::from_secs(2)),
            respond(
                503,
                &[
                    ("content-type", "text/html"),
                    ("x-debug", "<b>not bold</b> & \"quoted\""),
                    ("x-trace", &long_value),
                ],
                APP_503,
            ),
        ],
        respond(200, &html, SHOP_PAGE),
    ))
    .await;
    // Nothing listens here: every probe of `legacy` fails to connect.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let ca_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(ca_dir.path().join("ca.pem"), &ca.pem).expect("write CA");
    let long_path = "/api/v2/orders/7f3c9a2e4b1d4e6f8a9b0c1d2e3f4a5b/items?include=pricing,availability,shipping-estimates,gift-wrapping";
    let tickr = Tickr::start(&format!(
        "defaults:\n  interval: 200ms\n  timeout: 150ms\n  labels: {{team: web}}\n\
         targets:\n\
         \x20 - name: shop\n    url: {shop}\n    expect: {{body_contains: [\"<title>Shop\"]}}\n\
         \x20 - name: api\n    url: {api}\n    tls: {{ca_file: {ca}}}\n\
         \x20 - name: checkout\n    url: {checkout}\n\
         \x20 - name: legacy\n    url: http://{refused}/\n    interval: 1s\n    timeout: 500ms\n",
        shop = shop.url("/"),
        api = api.url("/healthz"),
        ca = ca_dir.path().join("ca.pem").display(),
        checkout = checkout.url(long_path),
    ))
    .await;

    // Until every target has failed as scripted (and `shop` has succeeded, for comparison).
    let deadline = Instant::now() + Duration::from_secs(15);
    let recorder = tickr.handle.recorder.clone();
    let failures = |t: &str| recorder.failures(Some(t), None, 100).len();
    while !(failures("shop") >= 3
        && failures("api") >= 3
        && failures("checkout") >= 3
        && failures("legacy") >= 1
        && recorder.last_success("shop").is_some())
    {
        assert!(
            Instant::now() < deadline,
            "targets did not fail as scripted: shop {}, api {}, checkout {}, legacy {}",
            failures("shop"),
            failures("api"),
            failures("checkout"),
            failures("legacy")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app_error = recorder
        .failures(Some("checkout"), None, 100)
        .into_iter()
        .find(|e| e.status == Some(503))
        .expect("the checkout's 503 event")
        .id;

    // A page whose inline style and style attribute its own policy forbids, as tickr's would.
    let canary = TestServer::plain(vec![respond(
        200,
        &[
            ("content-type", "text/html"),
            ("content-security-policy", "default-src 'none'"),
        ],
        "<!DOCTYPE html><title>canary</title><style>p{color:red}</style><p style=\"color:blue\">x</p>",
    )])
    .await;
    let canary = canary.url("/");

    let base = format!("http://{}", tickr.addr);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    // Chromium is driven with blocking I/O, off the runtime that serves the pages it loads.
    tokio::task::spawn_blocking(move || check_pages(&base, &shots, app_error, &canary))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    tickr.stop().await;
}

fn check_pages(base: &str, shots: &Path, app_error: u64, canary: &str) {
    let mut chromium = Chromium::launch();

    // The check below sees a policy violation, as it would on tickr's pages.
    let violating = chromium.open(canary);
    let problems = chromium.problems(&violating);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("violates the following Content Security Policy directive")),
        "a page breaking its policy went unnoticed: {problems:?}"
    );
    chromium.close(violating);

    let landing = chromium.open(&format!("{base}/"));
    // The screenshot first, so that it shows what a failing assertion below is about.
    chromium.screenshot(&landing, &shots.join("landing.png"), true);
    chromium.assert_sound(&landing);
    let rows: Vec<String> = strings(&chromium.eval(
        &landing,
        "[...document.querySelectorAll('tr')].slice(1).map(r => r.innerText)",
    ));
    for name in ["shop", "api", "checkout", "legacy"] {
        assert!(
            rows.iter().any(|r| r.starts_with(name)),
            "no row for {name}: {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.starts_with("legacy") && r.contains("failing")),
        "{rows:?}"
    );
    let link = chromium.eval(
        &landing,
        "document.querySelector('a[href=\"/events?target=checkout\"]') !== null",
    );
    assert_eq!(link, true, "the landing page links to each target's events");
    chromium.close(landing);

    let events = chromium.open(&format!("{base}/events"));
    chromium.screenshot(&events, &shots.join("events.png"), true);
    chromium.assert_sound(&events);
    // textContent: the evidence inside the (closed) events counts too.
    let text = chromium
        .eval(&events, "document.body.textContent")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for want in [
        "Failed probes",
        "Patterns",
        "Timeline",
        "layer nginx",
        "unexpected status 502",
        "timeout",
        "connect",
        "checkout",
        "legacy",
        "Response headers",
        "server: nginx/1.22.1",
        // Markup from responses is shown as text, not rendered.
        "<center>nginx/1.22.1</center>",
        "x-debug: <b>not bold</b> & \"quoted\"",
        "<script>console.error(\"injected\")</script>",
    ] {
        assert!(
            text.contains(want),
            "/events does not show {want:?}:\n{text}"
        );
    }
    assert!(
        text.contains("reset") || text.contains("protocol"),
        "no closed connection on /events:\n{text}"
    );
    let hints = strings(&chromium.eval(
        &events,
        "[...document.querySelectorAll('.hint')].map(h => h.innerText)",
    ));
    assert!(
        hints
            .iter()
            .any(|h| h.starts_with("shop") && h.contains("nginx layer")),
        "{hints:?}"
    );
    let ids = strings(&chromium.eval(
        &events,
        "[...document.querySelectorAll('details')].map(d => d.querySelector(':scope > .event').id)",
    ));
    assert!(ids.len() >= 10, "{ids:?}");
    assert!(
        ids.iter().all(|id| id
            .strip_prefix("event-")
            .is_some_and(|n| n.parse::<u64>().is_ok())),
        "{ids:?}"
    );
    let marks = chromium.eval(
        &events,
        "[...document.querySelectorAll('svg a')].filter(a => \
         document.getElementById(a.getAttribute('href').slice(1))).length",
    );
    assert!(
        marks.as_u64().unwrap_or(0) >= 10,
        "timeline marks link to events: {marks}"
    );
    // Every event expanded, as a person digging through them would: still no wider than the
    // window, whatever the long headers and URLs.
    chromium.eval(
        &events,
        "document.querySelectorAll('details').forEach(d => d.open = true)",
    );
    chromium.screenshot(&events, &shots.join("events-open.png"), true);
    chromium.assert_sound(&events);
    chromium.close(events);

    // The JSON, as a browser shows it when a person follows the page's link.
    let json = chromium.open(&format!("{base}/events?format=json"));
    chromium.assert_quiet(&json);
    let parsed = chromium.eval(
        &json,
        "(() => { const j = JSON.parse(document.body.innerText); \
         return {events: j.events.length, markup: j.events.some(e => e.body_excerpt.includes('<script>'))}; })()",
    );
    assert_eq!(parsed["markup"], true, "{parsed}");
    assert!(parsed["events"].as_u64().unwrap_or(0) >= 10, "{parsed}");
    chromium.close(json);

    let shop = chromium.open(&format!("{base}/events?target=shop"));
    chromium.screenshot(&shop, &shots.join("events-shop.png"), true);
    chromium.assert_sound(&shop);
    let summaries = strings(&chromium.eval(
        &shop,
        "[...document.querySelectorAll('details > summary b')].map(b => b.innerText)",
    ));
    assert!(
        !summaries.is_empty() && summaries.iter().all(|t| t == "shop"),
        "{summaries:?}"
    );
    let text = chromium.eval(&shop, "document.body.innerText");
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("Last success, for comparison")),
        "{text}"
    );
    chromium.close(shop);

    // Where an exemplar links to: that one event, expanded.
    let exemplar = chromium.open(&format!("{base}/events?id={app_error}"));
    chromium.screenshot(&exemplar, &shots.join("event-by-id.png"), true);
    chromium.assert_sound(&exemplar);
    let shown = chromium.eval(
        &exemplar,
        "[...document.querySelectorAll('details')].map(d => ({id: d.querySelector('.event').id, open: d.open}))",
    );
    assert_eq!(
        shown[0],
        json!({"id": format!("event-{app_error}"), "open": true}),
        "{shown}"
    );
    chromium.close(exemplar);

    // Where a link to the anchor (a timeline mark, a dashboard) lands: the event, opened by
    // the browser because the target is inside it, with its summary in view.
    let anchor = chromium.open(&format!("{base}/events?target=checkout#event-{app_error}"));
    chromium.screenshot(&anchor, &shots.join("event-anchor.png"), false);
    chromium.assert_sound(&anchor);
    let target = chromium.eval(
        &anchor,
        "(() => { const t = document.querySelector(':target'); if (!t) return null; \
         const d = t.closest('details'); \
         const r = d.querySelector('summary').getBoundingClientRect(); \
         return {id: t.id, open: d.open, top: r.top, height: innerHeight, text: d.innerText, \
                 highlighted: getComputedStyle(d).borderTopColor}; })()",
    );
    assert_eq!(target["id"], format!("event-{app_error}"), "{target}");
    assert_eq!(
        target["open"], true,
        "the linked event is expanded: {target}"
    );
    assert_eq!(target["highlighted"], "rgb(207, 34, 46)", "{target}");
    let top = target["top"].as_f64().unwrap_or(-1.0);
    assert!(
        (0.0..target["height"].as_f64().unwrap_or(0.0)).contains(&top),
        "the linked event is in view: {target}"
    );
    assert!(
        target["text"]
            .as_str()
            .is_some_and(|t| t.contains("Sorry, the checkout is down")),
        "{target}"
    );
    chromium.close(anchor);
}

/// A page of another origin that POSTs to tickr's reload endpoint in every way a page can
/// without a CORS preflight: `?attack=` names a form to submit (each of the three encodings a
/// form can send), or `fetch` for `fetch` (no-cors and simple cors) and `sendBeacon`.
fn attack_page(reload: &str) -> String {
    let form = |id: &str, enctype: &str| {
        format!(
            "<form id=\"{id}\" method=\"post\" enctype=\"{enctype}\" action=\"{reload}\">\
             <input name=\"x\" value=\"1\"></form>"
        )
    };
    format!(
        "<!DOCTYPE html><html><head><title>attacker</title></head><body>{}{}{}<script>\
         const u = '{reload}', ignore = () => {{}};\
         const attack = new URLSearchParams(location.search).get('attack');\
         if (attack === 'fetch') {{\
           fetch(u, {{method: 'POST', mode: 'no-cors'}}).catch(ignore);\
           fetch(u, {{method: 'POST', mode: 'no-cors', body: 'x', headers: {{'Content-Type': 'text/plain'}}}}).catch(ignore);\
           fetch(u, {{method: 'POST', body: new URLSearchParams('x=1')}}).catch(ignore);\
           navigator.sendBeacon(u, 'x');\
         }} else {{ document.getElementById(attack).submit(); }}\
         </script></body></html>",
        form("urlencoded", "application/x-www-form-urlencoded"),
        form("text", "text/plain"),
        form("multipart", "multipart/form-data"),
    )
}

/// Pages of other origins (another port of 127.0.0.1: same site; 127.0.0.2: another site) try to
/// reload tickr as a browser lets them, and a page of a name rebound to tickr's address tries
/// from tickr's own origin: the browser sends every request, tickr refuses each, and the new
/// configuration waiting on disk is not loaded until curl asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_cannot_reload_tickr() {
    let tickr = Tickr::start("targets: []\n").await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    tickr.write_config(&format!(
        "targets:\n  - name: sneaked\n    url: http://{refused}/\n    interval: 1h\n"
    ));
    let loaded = || -> Vec<String> {
        let targets = tickr.handle.targets();
        targets.iter().map(|(t, _)| t.name.clone()).collect()
    };
    let reloaded_at = tickr
        .metrics()
        .await
        .get("tickr_config_last_reload_success_timestamp_seconds", &[])
        .expect("the reload timestamp");

    let reload = format!("http://{}/-/reload", tickr.addr);
    let page = attack_page(&reload);
    let html = [("content-type", "text/html")];
    let same_site = TestServer::plain(vec![respond(200, &html, &page)]).await;
    let cross_site =
        TestServer::plain_on(([127, 0, 0, 2], 0).into(), vec![respond(200, &html, &page)]).await;
    let attackers = [same_site.url("/"), cross_site.url("/")];
    let rebound = format!("http://rebind.test:{}/-/healthy", tickr.addr.port());
    let url = reload.clone();
    let answers = tokio::task::spawn_blocking(move || {
        // The name resolves to tickr's address, as an attacker's DNS would rebind it once the
        // page has loaded from the attacker's server.
        let mut chromium =
            Chromium::launch_with(&["--host-resolver-rules=MAP rebind.test 127.0.0.1"]);
        let mut answers = Vec::new();
        for attacker in &attackers {
            for (attack, requests) in [
                ("urlencoded", 1),
                ("text", 1),
                ("multipart", 1),
                ("fetch", 4),
            ] {
                let page = chromium.open(&format!("{attacker}?attack={attack}"));
                for answer in chromium.answers(&page, &url, requests) {
                    answers.push((format!("{attacker} {attack}"), answer));
                }
                chromium.close(page);
            }
        }
        let page = chromium.open_with(&rebound, true);
        let status = chromium.eval(
            &page,
            "fetch('/-/reload', {method: 'POST'}).then(r => r.status)",
        );
        let rebinding = chromium.answers(&page, &rebound.replace("/-/healthy", "/-/reload"), 1);
        assert_eq!(Some(rebinding[0].0), status.as_u64(), "{rebinding:?}");
        answers.push(("rebound name".to_owned(), rebinding[0].clone()));
        chromium.close(page);
        answers
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    for (who, answer) in &answers {
        println!("{who}: {answer:?}");
    }
    assert_eq!(answers.len(), 2 * 7 + 1, "{answers:#?}");
    assert!(
        answers.iter().all(|(_, (status, _, _))| *status == 403),
        "a page reached the reload: {answers:#?}"
    );
    assert_eq!(loaded(), Vec::<String>::new(), "a page reloaded tickr");
    assert_eq!(
        tickr
            .metrics()
            .await
            .get("tickr_config_last_reload_success_timestamp_seconds", &[]),
        Some(reloaded_at),
        "a page reloaded tickr"
    );

    // A script still can.
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "-X", "POST"])
        .arg(&reload)
        .output()
        .expect("curl must be installed");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "Configuration reloaded\n",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(loaded(), ["sneaked"]);
    tickr.stop().await;
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A page open in its own tab, with the DevTools session attached to it.
struct Page {
    url: String,
    target: String,
    session: String,
}

/// Headless Chromium in its own process group and profile, closed (or killed) on drop.
struct Chromium {
    child: Child,
    profile: tempfile::TempDir,
    ws: WebSocket,
    next_id: u64,
    /// Protocol events not yet looked at, in arrival order.
    events: VecDeque<Value>,
}

impl Chromium {
    fn launch() -> Self {
        Self::launch_with(&[])
    }

    /// Like [`launch`](Self::launch), with extra command-line flags.
    fn launch_with(extra: &[&str]) -> Self {
        if !Path::new(CHROMIUM).is_file() {
            panic!(
                "{CHROMIUM} is required by this test and was not found.\n\
                 Install the Debian package `chromium` (apt-get install -y chromium fonts-dejavu-core); \
                 the README's test command installs it before running the tests."
            );
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let data = profile.path().join("data");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--mute-audio",
                "--window-size=1280,1600",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", data.display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}"));
        let mut chromium = Self {
            child,
            profile,
            ws: WebSocket::closed(),
            next_id: 1,
            events: VecDeque::new(),
        };
        // Chromium writes the port it picked, and the browser's WebSocket path, to this file.
        let port_file = data.join("DevToolsActivePort");
        let deadline = Instant::now() + LIMIT;
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if let Ok(port) = port.parse::<u16>() {
                        break (port, path.to_owned());
                    }
                }
            }
            if let Ok(Some(status)) = chromium.child.try_wait() {
                panic!("Chromium exited ({status}):\n{}", chromium.log());
            }
            assert!(
                Instant::now() < deadline,
                "Chromium did not open its DevTools port within {LIMIT:?}:\n{}",
                chromium.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        chromium.ws = WebSocket::connect(port, &path)
            .unwrap_or_else(|e| panic!("DevTools WebSocket: {e}\n{}", chromium.log()));
        chromium
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends a command and returns its result; events read meanwhile are kept.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        self.ws
            .send(&message.to_string())
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let deadline = Instant::now() + LIMIT;
        loop {
            let reply = self.receive(method, deadline);
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
            self.events.push_back(reply);
        }
    }

    fn receive(&mut self, waiting_for: &str, deadline: Instant) -> Value {
        let text = self.ws.receive(deadline).unwrap_or_else(|e| {
            panic!(
                "no answer from Chromium while waiting for {waiting_for}: {e}\n{}",
                self.log()
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad DevTools message {e}: {text}"))
    }

    /// Waits for the event `method` of `session`, leaving other events queued.
    fn wait_for(&mut self, session: &str, method: &str) {
        let matches = |e: &Value| e["method"] == method && e["sessionId"] == session;
        if let Some(i) = self.events.iter().position(matches) {
            self.events.remove(i);
            return;
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let event = self.receive(method, deadline);
            if matches(&event) {
                return;
            }
            self.events.push_back(event);
        }
    }

    /// Opens `url` in a new tab, watching its console, log and network from before the first
    /// byte.
    fn open(&mut self, url: &str) -> Page {
        self.open_with(url, false)
    }

    /// Like [`open`](Self::open); with `bypass_csp`, the page's own Content-Security-Policy is
    /// ignored, so that script evaluated in it acts as an attacker's script would in a page of
    /// that origin without tickr's policy.
    fn open_with(&mut self, url: &str, bypass_csp: bool) -> Page {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))
            ["targetId"]
            .as_str()
            .expect("targetId")
            .to_owned();
        let session = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        if bypass_csp {
            self.call(
                Some(&session),
                "Page.setBypassCSP",
                json!({"enabled": true}),
            );
        }
        let navigated = self.call(Some(&session), "Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("cannot load {url}: {error}");
        }
        self.wait_for(&session, "Page.loadEventFired");
        Page {
            url: url.to_owned(),
            target,
            session,
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw on {}: {exception}", page.url);
        }
        result["result"]["value"].clone()
    }

    /// The page loaded with 200, runs no script, logged no error or warning, and fits the
    /// window's width (a wider page would scroll sideways).
    fn assert_sound(&mut self, page: &Page) {
        let facts = self.eval(
            page,
            "({status: performance.getEntriesByType('navigation')[0].responseStatus, \
              title: document.title, scripts: document.scripts.length, \
              width: document.documentElement.scrollWidth, window: document.documentElement.clientWidth, \
              wide: [...document.querySelectorAll('body *')] \
                .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth) \
                .map(e => e.tagName + ' ' + (e.innerText || '').slice(0, 80))})",
        );
        assert_eq!(facts["status"], 200, "{}: {facts}", page.url);
        assert!(
            facts["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("tickr")),
            "{}: {facts}",
            page.url
        );
        assert_eq!(facts["scripts"], 0, "{}: {facts}", page.url);
        assert!(
            facts["width"].as_f64().unwrap_or(f64::MAX) <= facts["window"].as_f64().unwrap_or(0.0),
            "{} is wider than the window: {facts}",
            page.url
        );
        self.assert_quiet(page);
    }

    /// The page was served with tickr's Content-Security-Policy, and logged no error or warning:
    /// a violation of the policy is one (see [`problems`](Self::problems)).
    fn assert_quiet(&mut self, page: &Page) {
        let policy = self
            .events
            .iter()
            .rev()
            .find(|e| {
                e["sessionId"] == page.session.as_str()
                    && e["method"] == "Network.responseReceived"
                    && e["params"]["type"] == "Document"
            })
            .and_then(|e| e["params"]["response"]["headers"]["content-security-policy"].as_str())
            .unwrap_or_default();
        assert!(
            policy.starts_with("default-src 'none'; style-src 'sha256-"),
            "{} came without tickr's policy: {policy:?}",
            page.url
        );
        let problems = self.problems(page);
        assert!(
            problems.is_empty(),
            "{} logged problems:\n{}",
            page.url,
            problems.join("\n")
        );
    }

    /// The page's console errors and warnings, uncaught exceptions, and errors the browser
    /// logged: Chromium reports each violation of a Content-Security-Policy as such an error.
    fn problems(&self, page: &Page) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["sessionId"] == page.session.as_str())
            .filter_map(problem)
            .collect()
    }

    /// Waits until the page has had answers to `count` requests for `url`, and returns each
    /// answer's status with the `Origin` and `Sec-Fetch-Site` headers Chromium sent (`-` for
    /// none), as the network stack saw them.
    fn answers(&mut self, page: &Page, url: &str, count: usize) -> Vec<(u64, String, String)> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let of_page = |e: &&Value| e["sessionId"] == page.session.as_str();
            // By request id: the extra-info events carry what went over the wire (the status
            // too when the browser then withholds the response from the page, as CORS does).
            let event = |method: &str, id: &Value| {
                self.events
                    .iter()
                    .filter(of_page)
                    .find(|e| e["method"] == method && e["params"]["requestId"] == *id)
            };
            let answers: Vec<_> = self
                .events
                .iter()
                .filter(of_page)
                .filter(|e| {
                    e["method"] == "Network.requestWillBeSent"
                        && e["params"]["request"]["url"] == url
                })
                .filter_map(|r| {
                    let id = &r["params"]["requestId"];
                    let sent = event("Network.requestWillBeSentExtraInfo", id)?;
                    let answer = event("Network.responseReceivedExtraInfo", id)?;
                    let headers = &sent["params"]["headers"];
                    let header = |name: &str| {
                        headers
                            .as_object()
                            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                            .and_then(|(_, v)| v.as_str())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    Some((
                        answer["params"]["statusCode"].as_u64().unwrap_or(0),
                        header("origin"),
                        header("sec-fetch-site"),
                    ))
                })
                .collect();
            if answers.len() >= count {
                return answers;
            }
            match self.ws.receive(deadline) {
                Ok(text) => self.events.push_back(
                    serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("bad DevTools message {e}: {text}")),
                ),
                Err(e) => {
                    let seen: Vec<String> = self
                        .events
                        .iter()
                        .filter(of_page)
                        .filter(|e| {
                            e["method"]
                                .as_str()
                                .is_some_and(|m| m.starts_with("Network."))
                        })
                        .map(|e| format!("{} {}", e["method"], e["params"]["requestId"]))
                        .collect();
                    panic!(
                        "{}: {} of {count} requests for {url} answered ({e}): {answers:?}\n{}",
                        page.url,
                        answers.len(),
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// Writes a PNG of the page (whole, or what the window shows) and prints where it is.
    fn screenshot(&mut self, page: &Page, path: &Path, whole: bool) {
        let mut params = json!({"format": "png"});
        if whole {
            let metrics = self.call(Some(&page.session), "Page.getLayoutMetrics", json!({}));
            let size = &metrics["cssContentSize"];
            let height = size["height"].as_f64().unwrap_or(1600.0).min(8000.0);
            params["captureBeyondViewport"] = true.into();
            params["clip"] =
                json!({"x": 0, "y": 0, "width": size["width"], "height": height, "scale": 1});
        }
        let shot = self.call(Some(&page.session), "Page.captureScreenshot", params);
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{}: a screenshot of {} bytes",
            page.url,
            png.len()
        );
        std::fs::write(path, &png).expect("write screenshot");
        println!("screenshot of {}: {}", page.url, path.display());
    }

    fn close(&mut self, page: Page) {
        self.call(None, "Target.closeTarget", json!({"targetId": page.target}));
        self.events
            .retain(|e| e["sessionId"] != page.session.as_str());
    }
}

/// A console error or warning, an uncaught exception, or an error or warning the browser
/// logged (a failed load, a blocked resource), as one line.
fn problem(event: &Value) -> Option<String> {
    let p = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled"
            if ["error", "warning", "assert"].contains(&p["type"].as_str()?) =>
        {
            Some(format!("console.{}: {}", p["type"], p["args"]))
        }
        "Runtime.exceptionThrown" => Some(format!("uncaught: {}", p["exceptionDetails"])),
        "Log.entryAdded" if ["error", "warning"].contains(&p["entry"]["level"].as_str()?) => {
            Some(format!(
                "{} {}: {} {}",
                p["entry"]["level"], p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
            ))
        }
        _ => None,
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Politely first; then the whole process group (renderers, zygote), whatever happened.
        let _ = self
            .ws
            .send(&json!({"id": 0, "method": "Browser.close"}).to_string());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Just enough of a WebSocket client (RFC 6455) for the DevTools protocol: text messages,
/// masked as a client must, fragments reassembled, pings answered.
struct WebSocket {
    reader: Option<BufReader<TcpStream>>,
    writer: Option<TcpStream>,
}

impl WebSocket {
    fn closed() -> Self {
        Self {
            reader: None,
            writer: None,
        }
    }

    fn connect(port: u16, path: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        // The key is any 16 bytes in base64; Chromium's answer is not worth verifying here.
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        stream.set_read_timeout(Some(LIMIT))?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 101") {
            return Err(io::Error::other(format!("handshake refused: {status}")));
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        Ok(Self {
            reader: Some(reader),
            writer: Some(writer),
        })
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.frame(0x1, text.as_bytes())
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("not connected"))?;
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 1 << 16 => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x17, 0xc3, 0x9e];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        writer.write_all(&frame)
    }

    /// The next text message, or an error when `deadline` passes first.
    fn receive(&mut self, deadline: Instant) -> io::Result<String> {
        let mut message = Vec::new();
        loop {
            let reader = self
                .reader
                .as_mut()
                .ok_or_else(|| io::Error::other("not connected"))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            reader.get_ref().set_read_timeout(Some(left))?;
            let mut head = [0u8; 2];
            reader.read_exact(&mut head)?;
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    reader.read_exact(&mut n)?;
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    reader.read_exact(&mut n)?;
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                reader.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
            reader.read_exact(&mut payload)?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                0x0..=0x2 => {
                    message.extend(payload);
                    if fin {
                        return String::from_utf8(message).map_err(io::Error::other);
                    }
                }
                0x8 => return Err(io::Error::other("Chromium closed the WebSocket")),
                0x9 => self.frame(0xa, &payload)?,
                _ => {}
            }
        }
    }
}

/// Standard base64 (with padding), as DevTools sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() / 4 * 3 + 3);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | value(*c) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_every_padding() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode(""), b"");
}
