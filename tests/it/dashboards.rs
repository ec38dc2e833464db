//! The Grafana dashboards in `dashboards/`: their structure (what Grafana needs to import them, and
//! the conventions every panel follows), and every query run against a real Prometheus that scrapes
//! tickr and evaluates the bundled rules: each must be valid PromQL, and each panel must show data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::procs::{get, request, Prometheus};
use crate::common::server::{ServerTls, Step, TestCa, TestServer, Validity};
use crate::common::tickr::Tickr;

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/tickr.rules.yml");

/// The uid of the overview, which must offer the `job` and `target` filters as multi-selects.
const OVERVIEW: &str = "tickr-overview";

/// The overview's panel that shows, per target, which locations fail.
const LOCATION_PANEL: &str = "Failed share by location";

/// Prometheus scrapes tickr, and evaluates the rules, this often.
const SCRAPE: Duration = Duration::from_secs(1);

/// Grafana's built-in variables as Grafana sets them at a 1s scrape interval on a short time
/// range: `$__rate_interval` is at least four scrape intervals, so every rate has two samples.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "4s"),
    ("__interval", "1s"),
    ("__interval_ms", "1000"),
    ("__range", "1m"),
    ("__range_s", "60"),
];

/// Dashboard variables as Grafana renders them into a query: one job, and both test targets
/// selected (Grafana joins the values of a multi-select as a regex alternation), and every location:
/// "All", which Grafana renders as the variable's custom all value, `.*`, and which also matches
/// series without a `location` label (a tickr that sets none).
const TEST_VALUES: &[(&str, &str)] = &[
    ("job", "tickr"),
    ("target", "(flaky|shop)"),
    ("location", ".*"),
];

/// The locations the test's Prometheus adds to two of its three scrapes of the same tickr (the
/// third has none), and the one location the dashboards are also shown for.
const LOCATIONS: &[&str] = &["eu-west", "us-east"];
const ONE_LOCATION: &str = "eu-west";

/// Series without a `target` label: filtered by `job` only.
const EXPORTER_LEVEL: &[&str] = &[
    "tickr_build_info",
    "tickr_config_last_reload_successful",
    "tickr_config_last_reload_success_timestamp_seconds",
    "tickr_scheduler_lag_seconds_bucket",
    "tickr_scheduler_lag_seconds_sum",
    "tickr_scheduler_lag_seconds_count",
    "tickr_probes_in_flight",
    "tickr_targets",
    "up",
];

/// Panels that may show nothing in the test, `(dashboard uid, title)`: tickr's alerts wait
/// minutes (`for:`) before they fire, and this test runs for seconds. Every other panel must show
/// data: target state, status classes and codes, 502 counts, failures and reasons, the latency
/// heatmap and phase quantiles, body matchers, certificate expiry, alert evidence from the
/// recording rules, and exporter health.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    ("tickr-overview", "Firing tickr alerts"),
    ("tickr-target", "Tickr alerts for this target"),
];

/// How long tickr and Prometheus get to fill every panel.
const DATA_LIMIT: Duration = Duration::from_secs(45);
const LIMIT: Duration = Duration::from_secs(15);

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

struct Dashboard {
    file: String,
    json: Value,
}

/// One PromQL query of a dashboard: a panel's target or an annotation.
struct Query {
    /// `dashboard uid / panel title`, for messages.
    place: String,
    title: String,
    /// The panel's id, or `None` for an annotation.
    panel: Option<u64>,
    ref_id: String,
    expr: String,
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or_default()
    }

    /// Every panel, including those nested in (collapsed) rows.
    fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for p in panels.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    fn variables(&self) -> &[Value] {
        self.json["templating"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn variable(&self, name: &str) -> Option<&Value> {
        self.variables().iter().find(|v| v["name"] == name)
    }

    /// What each `$variable` becomes in this dashboard's queries during the test.
    fn test_values(&self) -> Vec<(String, String)> {
        let mut values: Vec<(String, String)> = BUILTINS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for var in self.variables() {
            let name = var["name"].as_str().unwrap_or_default();
            if let Some((_, v)) = TEST_VALUES.iter().find(|(n, _)| *n == name) {
                values.push((name.to_owned(), v.to_string()));
            }
        }
        values
    }

    /// [`Self::test_values`] with one location selected instead of all.
    fn test_values_at(&self, location: &str) -> Vec<(String, String)> {
        let mut values = self.test_values();
        for (name, value) in &mut values {
            if name == "location" {
                *value = location.to_owned();
            }
        }
        values
    }

    /// Every panel target and annotation query (for variables, see [`variable_query`]).
    fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let title = p["title"].as_str().unwrap_or("?").to_owned();
                out.push(Query {
                    place: format!("{} / {title}", self.uid()),
                    title,
                    panel: p["id"].as_u64(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
        for a in self.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let title = format!("annotation {}", a["name"].as_str().unwrap_or("?"));
            out.push(Query {
                place: format!("{} / {title}", self.uid()),
                title,
                panel: None,
                ref_id: "annotation".to_owned(),
                expr: a["expr"]
                    .as_str()
                    .or(a["target"]["expr"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        out
    }
}

/// A query variable's PromQL, which Grafana stores as a string or as `{"query": ...}`.
fn variable_query(var: &Value) -> &str {
    var["query"]
        .as_str()
        .or(var["query"]["query"].as_str())
        .unwrap_or_default()
}

fn load() -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DASHBOARDS)
        .unwrap_or_else(|e| panic!("{DASHBOARDS}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards in {DASHBOARDS}: {files:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            }
        })
        .collect()
}

/// Replaces `$name` and `${name}` the way Grafana interpolates; an unknown variable is an error.
fn substitute(expr: &str, values: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("unknown variable ${name} in {expr:?}"))?;
        out.push_str(&value.1);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric names of a PromQL expression with their `{...}` matchers (empty when there are
/// none). Function names, keywords and `by (...)` labels come out too, and callers pick the
/// names they know; strings, `[...]` ranges and numbers are skipped.
fn selectors(expr: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = expr.chars().collect();
    // The index just past the `close` that matches the opener at `i`, skipping quoted strings.
    let skip = |mut i: usize, close: char| -> usize {
        i += 1;
        while i < chars.len() && chars[i] != close {
            if chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        (i + 1).min(chars.len())
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip(i, '"');
        } else if c == '[' {
            i = skip(i, ']');
        } else if c == '{' {
            i = skip(i, '}');
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut matchers = String::new();
            if j < chars.len() && chars[j] == '{' {
                let end = skip(j, '}');
                matchers = chars[j + 1..end - 1].iter().collect();
                i = end;
            }
            out.push((name, matchers));
        } else {
            i += 1;
        }
    }
    out
}

fn is_tickr_metric(name: &str) -> bool {
    name.starts_with("tickr_") || name.starts_with("target:tickr_")
}

/// What is wrong with the `job` / `target` / `location` filters of a panel or annotation query.
/// Exporter-level series carry no `location` (tickr adds it to per-target series only), and are
/// filtered by `job` alone. `label=~"$label|"` counts too: it also keeps series without the label,
/// as `ALERTS` needs (the location alerts have no `job`, most alerts no `location`).
fn filter_problems(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, matchers) in selectors(expr) {
        let exporter_level = EXPORTER_LEVEL.contains(&name.as_str());
        if !(exporter_level || is_tickr_metric(&name) || name == "ALERTS") {
            continue;
        }
        let m: String = matchers.chars().filter(|c| !c.is_whitespace()).collect();
        let has = |label: &str| {
            [format!("${label}"), format!("${{{label}}}")]
                .iter()
                .any(|v| {
                    m.contains(&format!("{label}=~\"{v}\""))
                        || m.contains(&format!("{label}=~\"{v}|\""))
                })
        };
        if !has("job") {
            problems.push(format!("{name} without job=~\"$job\""));
        }
        if !exporter_level && !has("target") {
            problems.push(format!("{name} without target=~\"$target\""));
        }
        if !exporter_level && !has("location") {
            problems.push(format!("{name} without location=~\"$location\""));
        }
    }
    problems
}

/// Every data link and panel link URL in a panel.
fn link_urls(panel: &Value) -> Vec<String> {
    let mut lists = vec![&panel["links"], &panel["fieldConfig"]["defaults"]["links"]];
    for o in panel["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for prop in o["properties"].as_array().into_iter().flatten() {
            if prop["id"] == "links" {
                lists.push(&prop["value"]);
            }
        }
    }
    lists
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|l| l["url"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_dashboard_is_importable_and_follows_the_conventions() {
    let dashboards = load();
    let uids: BTreeSet<&str> = dashboards.iter().map(Dashboard::uid).collect();
    let mut problems: Vec<String> = Vec::new();
    let mut drill_down_links = 0;
    assert_eq!(
        uids.len(),
        dashboards.len(),
        "dashboard uids must be unique"
    );
    assert!(uids.contains(OVERVIEW), "{uids:?}");

    for d in &dashboards {
        // Exemplars and links lead from a spike to the exact failed probe in tickr's /events.
        let events_link = d.json["links"].as_array().is_some_and(|ls| {
            ls.iter().any(|l| {
                l["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("${tickr_url}/events"))
            })
        });
        let mut problem = |what: String| problems.push(format!("{}: {what}", d.file));
        if !events_link
            || d.variable("tickr_url")
                .is_none_or(|v| v["type"] != "textbox")
        {
            problem("no link to ${tickr_url}/events with a `tickr_url` textbox variable".into());
        }
        if d.uid().is_empty() || d.json["title"].as_str().unwrap_or_default().is_empty() {
            problem("needs a uid and a title".into());
        }
        // Grafana 10 writes 38-39; an older model still imports (Grafana migrates it forward).
        if d.json["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            problem(format!("schemaVersion {}", d.json["schemaVersion"]));
        }
        if d.json.get("__inputs").is_some() {
            problem("has __inputs: use the datasource variable instead".into());
        }

        // Variables: a datasource picker and the job/target filters every query uses.
        let ds = d.variable("datasource");
        if !ds.is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus") {
            problem(format!(
                "no `datasource` variable of type datasource: {ds:?}"
            ));
        }
        for name in ["job", "location", "target"] {
            match d.variable(name) {
                None => problem(format!("no `{name}` variable")),
                Some(v) => {
                    if v["type"] != "query" || v["datasource"] != datasource() {
                        problem(format!(
                            "`{name}` must be a query variable on ${{datasource}}"
                        ));
                    }
                    if !variable_query(v).starts_with("label_values(") {
                        problem(format!("`{name}` query {:?}", variable_query(v)));
                    }
                    let multi = v["multi"] == true && v["includeAll"] == true;
                    if (d.uid() == OVERVIEW || name == "location") && !multi {
                        problem(format!("`{name}` must be multi-select with All"));
                    }
                }
            }
        }
        // "All" locations must also match series without a `location`: those of a tickr that
        // sets none, and every series when no tickr does (the variable then offers only All).
        // Grafana's default All is an alternation of the values found, which matches neither.
        if d.variable("location")
            .is_some_and(|v| v["allValue"] != ".*")
        {
            problem("`location` needs the custom all value `.*`".into());
        }
        if d.uid() == OVERVIEW {
            let by_location = d.panels().into_iter().any(|p| {
                p["title"] == LOCATION_PANEL
                    && p["targets"].as_array().into_iter().flatten().any(|t| {
                        t["expr"]
                            .as_str()
                            .is_some_and(|e| e.contains("by (target, location)"))
                    })
            });
            if !by_location {
                problem(format!(
                    "no panel {LOCATION_PANEL:?} with a query by (target, location)"
                ));
            }
        }
        if d.uid() != OVERVIEW {
            // A drill-down is about one target.
            if d.variable("target").is_some_and(|v| v["multi"] == true) {
                problem("the drill-down's `target` must be single-select".into());
            }
        }

        // Annotations run on the same datasource (no built-in Grafana one: it is added on load).
        for a in d.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if a["datasource"] != datasource() {
                problem(format!(
                    "annotation {} datasource {}",
                    a["name"], a["datasource"]
                ));
            }
        }

        // The dashboard links list every tickr dashboard, this one included.
        let tags: BTreeSet<&str> = d.json["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let lists_siblings = d.json["links"].as_array().into_iter().flatten().any(|l| {
            l["type"] == "dashboards"
                && l["tags"].as_array().is_some_and(|t| {
                    !t.is_empty()
                        && t.iter()
                            .all(|t| tags.contains(t.as_str().unwrap_or_default()))
                })
        });
        if !lists_siblings {
            problem("no dashboard link by this dashboard's tags".into());
        }

        // Panels.
        let mut ids = BTreeSet::new();
        let mut titles = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or_default();
            let mut problem =
                |what: String| problems.push(format!("{} / {title:?}: {what}", d.file));
            match p["id"].as_u64() {
                Some(id) if ids.insert(id) => {}
                _ => problem(format!("panel id {} missing or not unique", p["id"])),
            }
            if title.trim().is_empty() {
                problem("panel without a title".into());
            }
            let g = &p["gridPos"];
            let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
            if !matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24) {
                problem(format!("gridPos {g}"));
            }
            if p["type"] == "row" {
                continue;
            }
            // Titles name panels in this test's messages and in MAY_BE_EMPTY.
            if !titles.insert(title) {
                problem("title not unique in the dashboard".into());
            }
            if p["description"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                problem("no description".into());
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                problem("no unit".into());
            }
            if p["datasource"] != datasource() {
                problem(format!("panel datasource {}", p["datasource"]));
            }
            let targets = p["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if targets.is_empty() {
                problem("no queries".into());
            }
            let mut refs = BTreeSet::new();
            for t in targets {
                let ref_id = t["refId"].as_str().unwrap_or_default();
                if ref_id.is_empty() || !refs.insert(ref_id) {
                    problem(format!("refId {:?} missing or repeated", t["refId"]));
                }
                if t["datasource"] != datasource() {
                    problem(format!("query {ref_id} datasource {}", t["datasource"]));
                }
                if t["expr"].as_str().unwrap_or_default().trim().is_empty() {
                    problem(format!("query {ref_id} has no expr"));
                }
                if p["type"] == "heatmap" && t["format"] != "heatmap" {
                    problem(format!("heatmap query {ref_id} must use format heatmap"));
                }
            }
            for url in link_urls(p) {
                if let Some(rest) = url.strip_prefix("/d/") {
                    let uid = rest.split(['/', '?']).next().unwrap_or_default();
                    if !uids.contains(uid) {
                        problem(format!("link to unknown dashboard {uid:?}: {url}"));
                    } else if uid != d.uid() && url.contains("var-target=") {
                        drill_down_links += 1;
                    }
                }
            }
        }

        // Top-level panels do not overlap (Grafana would push them around on load). Panels in a
        // collapsed row keep their expanded positions, so only the top level is compared.
        let rects: Vec<(&str, [u64; 4])> = d.json["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let g = &p["gridPos"];
                let n = |k: &str| g[k].as_u64().unwrap_or_default();
                let title = p["title"].as_str().unwrap_or_default();
                (title, [n("x"), n("y"), n("w"), n("h")])
            })
            .collect();
        for (i, (a, [ax, ay, aw, ah])) in rects.iter().enumerate() {
            for (b, [bx, by, bw, bh]) in &rects[i + 1..] {
                if ax < &(bx + bw) && bx < &(ax + aw) && ay < &(by + bh) && by < &(ay + ah) {
                    problems.push(format!("{}: panels {a:?} and {b:?} overlap", d.file));
                }
            }
        }

        // Queries: the job/target filters everywhere, and only variables that exist.
        let values = d.test_values();
        for q in d.queries() {
            for p in filter_problems(&q.expr) {
                problems.push(format!("{} {}: {p}: {}", q.place, q.ref_id, q.expr));
            }
            if let Err(e) = substitute(&q.expr, &values) {
                problems.push(format!("{} {}: {e}", q.place, q.ref_id));
            }
        }
    }
    if drill_down_links == 0 {
        problems.push("no data link from a target to the drill-down (var-target=...)".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A panel's title and its queries, `(label for messages, interpolated PromQL)`.
struct PanelQueries {
    title: String,
    queries: Vec<(String, String)>,
}

/// The finite values of an instant query at "now", or Prometheus' error.
async fn instant(prometheus: &Prometheus, promql: &str) -> Result<Vec<f64>, String> {
    let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let (status, body) = get(prometheus.addr, &format!("/api/v1/query?query={q}")).await?;
    let json: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "HTTP {status}: {}: {}",
            json["errorType"].as_str().unwrap_or_default(),
            json["error"].as_str().unwrap_or_default()
        ));
    }
    let value = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let data = &json["data"];
    let values: Vec<Option<f64>> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| value(&s["value"][1]))
            .collect(),
        Some("scalar") => vec![value(&data["result"][1])],
        other => return Err(format!("unexpected result type {other:?}")),
    };
    Ok(values
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_real_prometheus_and_every_panel_shows_data() {
    let started = Instant::now();
    let dashboards = load();

    // A target with intermittent 502s, and an HTTPS target with a body matcher that sometimes
    // fails, so certificate, matcher and mismatch series exist too.
    let flaky = TestServer::plain(Step::statuses(&[200, 502, 200, 200, 502])).await;
    let ca = TestCa::new("tickr dashboards test CA");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let shop = TestServer::tls(
        vec![
            Step::body(200, "<title>Shop</title>"),
            Step::body(200, "<title>Shop</title>"),
            Step::body(200, "<title>Oops</title>"),
        ],
        ServerTls::new(&leaf),
    )
    .await;
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let tickr = Tickr::start(&format!(
        "defaults:\n  interval: 200ms\n  timeout: 150ms\ntargets:\n  \
         - name: flaky\n    url: {}\n    labels: {{team: web}}\n  \
         - name: shop\n    url: {}\n    tls: {{ca_file: {}}}\n    expect: {{body_contains: [\"<title>Shop\"]}}\n",
        flaky.url("/"),
        shop.url("/"),
        ca_file.display(),
    ))
    .await;
    let prometheus = Prometheus::start(
        &[("tickr", tickr.addr)],
        &[PathBuf::from(RULES)],
        SCRAPE,
        SCRAPE,
        None,
    )
    .await;
    prometheus.targets_up(LIMIT).await;

    // Two scrapes more of the same tickr, as if from two locations: the dashboards must show the
    // series of a tickr without a location, and of each location, under "All", and one location
    // when it is selected.
    scrape_as_locations(&prometheus, tickr.addr).await;

    // Everything twice: with every location ("All"), then with one.
    let mut ran = (0, 0);
    for location in [None, Some(ONE_LOCATION)] {
        let shown = location.map_or("all locations".to_owned(), |l| format!("location {l}"));
        // Every query, interpolated the way Grafana would, grouped by panel.
        let mut panels: BTreeMap<(String, u64), PanelQueries> = BTreeMap::new();
        let mut others: Vec<(String, String)> = Vec::new();
        for d in &dashboards {
            let values = match location {
                None => d.test_values(),
                Some(one) => d.test_values_at(one),
            };
            for q in d.queries() {
                let expr = substitute(&q.expr, &values)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", q.place, q.ref_id));
                let label = format!("{} {} ({shown})", q.place, q.ref_id);
                match q.panel {
                    Some(id) => {
                        let entry = panels.entry((d.uid().to_owned(), id)).or_insert_with(|| {
                            PanelQueries {
                                title: q.title.clone(),
                                queries: Vec::new(),
                            }
                        });
                        entry.queries.push((label, expr));
                    }
                    None => others.push((label, expr)),
                }
            }
        }
        for (uid, title) in MAY_BE_EMPTY {
            assert!(
                panels
                    .iter()
                    .any(|((u, _), p)| u == uid && p.title == *title),
                "MAY_BE_EMPTY names a panel that does not exist: {uid} / {title}"
            );
        }

        // Wait until every panel shows data: each of its queries returns a finite value. Rates need
        // two scrapes in their window, and the recording rules an evaluation after that.
        let mut pending: Vec<&(String, u64)> = panels
            .iter()
            .filter(|((uid, _), p)| !MAY_BE_EMPTY.contains(&(uid.as_str(), p.title.as_str())))
            .map(|(k, _)| k)
            .collect();
        let deadline = Instant::now() + DATA_LIMIT;
        let mut errors: Vec<String> = Vec::new();
        let mut empty: Vec<String> = Vec::new();
        loop {
            let mut still = Vec::new();
            empty.clear();
            for key in pending {
                let mut has_data = true;
                for (label, expr) in &panels[key].queries {
                    match instant(&prometheus, expr).await {
                        Ok(values) if values.is_empty() => {
                            has_data = false;
                            empty.push(format!("{label}: {expr}"));
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{label}: {e}\n    {expr}")),
                    }
                }
                if !has_data {
                    still.push(key);
                }
            }
            pending = still;
            if pending.is_empty() || !errors.is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // Then every query once more, the ones allowed to be empty and the annotations included:
        // some errors only show with data (e.g. a many-to-many match).
        let all = panels.values().flat_map(|p| &p.queries).chain(&others);
        for (label, expr) in all {
            if let Err(e) = instant(&prometheus, expr).await {
                errors.push(format!("{label}: {e}\n    {expr}"));
            }
        }
        ran.0 += panels.values().map(|p| p.queries.len()).sum::<usize>();
        ran.1 += others.len();
        errors.sort();
        errors.dedup();
        assert!(
            errors.is_empty(),
            "queries Prometheus refused:\n{}",
            errors.join("\n")
        );
        assert!(
            pending.is_empty(),
            "panels without data after {DATA_LIMIT:?} ({shown}); queries with no finite value:\n{}",
            empty.join("\n")
        );
    }

    // The overview's location panel: one row per target and location, and one for the tickr
    // without a location.
    let overview = dashboards
        .iter()
        .find(|d| d.uid() == OVERVIEW)
        .expect("overview");
    let panel = overview
        .queries()
        .into_iter()
        .find(|q| q.title == LOCATION_PANEL)
        .expect("location panel");
    let expr = substitute(&panel.expr, &overview.test_values()).expect("location panel query");
    let mut expected = BTreeSet::new();
    for target in ["flaky", "shop"] {
        for location in [""].iter().chain(LOCATIONS) {
            expected.insert((target.to_owned(), location.to_string()));
        }
    }
    // The loops above waited for one location's data: each other location's scrape job has its
    // own phase, and under load its second scrape (which a rate needs) can come seconds later.
    let deadline = Instant::now() + DATA_LIMIT;
    loop {
        let rows: BTreeSet<(String, String)> = prometheus
            .query(&expr)
            .await
            .into_iter()
            .map(|(labels, _)| {
                let label = |n: &str| labels.get(n).cloned().unwrap_or_default();
                (label("target"), label("location"))
            })
            .collect();
        if rows == expected {
            break;
        }
        assert!(
            Instant::now() < deadline && rows.is_subset(&expected),
            "{LOCATION_PANEL} after {DATA_LIMIT:?}: rows {rows:?}, expected {expected:?}\n{expr}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Variables: each `label_values(selector, label)` offers the values the test expects.
    for d in &dashboards {
        let values = d.test_values();
        for var in d.variables().iter().filter(|v| v["type"] == "query") {
            let name = var["name"].as_str().unwrap_or_default();
            let query = substitute(variable_query(var), &values).expect("variable query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{} `{name}`: {query}", d.file));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("{} `{name}`: label_values needs a selector", d.file));
            let promql = format!("count by ({}) ({selector})", label.trim());
            let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
            let data = prometheus.api(&format!("/api/v1/query?query={q}")).await;
            let offered: BTreeSet<&str> = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["metric"][label.trim()].as_str())
                .collect();
            let expected: &[&str] = match name {
                "job" => &["tickr"],
                "target" => &["flaky", "shop"],
                "location" => LOCATIONS,
                _ => &[],
            };
            assert!(
                !offered.is_empty() && expected.iter().all(|e| offered.contains(e)),
                "{} variable `{name}` ({query}) offers {offered:?}, expected {expected:?}",
                d.file
            );
        }
    }

    // Every tickr metric and recording rule a dashboard names exists in Prometheus: a typo in a
    // name is not an error in PromQL, just an empty panel.
    let present = prometheus
        .query(r#"count by (__name__) ({__name__=~"tickr_.*|target:tickr_.*"})"#)
        .await;
    let present: BTreeSet<&str> = present
        .iter()
        .filter_map(|(l, _)| l.get("__name__").map(String::as_str))
        .collect();
    let mut named = BTreeSet::new();
    for d in &dashboards {
        let exprs = d
            .queries()
            .into_iter()
            .map(|q| q.expr)
            .chain(d.variables().iter().map(|v| variable_query(v).to_owned()));
        for expr in exprs {
            for (name, _) in selectors(&expr) {
                if is_tickr_metric(&name) {
                    named.insert(name);
                }
            }
        }
    }
    let unknown: Vec<&String> = named
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "dashboards name metrics Prometheus does not have: {unknown:?}; it has {present:?}"
    );

    eprintln!(
        "dashboards: {} panel queries and {} others ran, for all locations and for one; took {:?}",
        ran.0,
        ran.1,
        started.elapsed()
    );
}

/// Makes the test's Prometheus scrape the same tickr twice more, with a `location` label per
/// [`LOCATIONS`] (as a Prometheus per location, or one that labels each location's job, would
/// show them), next to the scrape without one, and waits until all three are up. The harness
/// writes one static target per job; its file is edited and reloaded (`/-/reload`).
async fn scrape_as_locations(prometheus: &Prometheus, tickr: std::net::SocketAddr) {
    let file = prometheus.dir().join("prometheus.yml");
    let config = std::fs::read_to_string(&file).expect("prometheus.yml");
    let target = format!("      - targets: [\"{tickr}\"]\n");
    assert!(
        config.contains(&target),
        "the harness's prometheus.yml no longer lists {tickr} as expected:\n{config}"
    );
    let mut targets = target.clone();
    for location in LOCATIONS {
        targets.push_str(&format!(
            "      - targets: [\"{tickr}\"]\n        labels: {{location: {location}}}\n"
        ));
    }
    std::fs::write(&file, config.replace(&target, &targets)).expect("write prometheus.yml");
    let reply = request(prometheus.addr, "POST", "/-/reload", None, "").await;
    assert!(
        matches!(reply, Ok((200, _))),
        "reload: {reply:?}\n{}",
        prometheus.logs()
    );
    let deadline = Instant::now() + LIMIT;
    while prometheus.targets().await.len() < 1 + LOCATIONS.len() {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not take up the location scrapes:\n{}",
            prometheus.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    prometheus.targets_up(LIMIT).await;
}

#[test]
fn selectors_and_substitution_read_promql_as_grafana_and_prometheus_do() {
    let expr = r#"histogram_quantile(0.95, sum by (phase, le) (rate(tickr_probe_duration_seconds_bucket{job=~"$job", target=~"${target}", location=~"$location", phase="}"}[$__rate_interval]))) / on() group_left tickr_targets"#;
    let found = selectors(expr);
    let metrics: Vec<&(String, String)> =
        found.iter().filter(|(n, _)| is_tickr_metric(n)).collect();
    assert_eq!(
        metrics,
        vec![
            &(
                "tickr_probe_duration_seconds_bucket".to_owned(),
                r#"job=~"$job", target=~"${target}", location=~"$location", phase="}""#.to_owned()
            ),
            &("tickr_targets".to_owned(), String::new()),
        ]
    );
    assert_eq!(
        filter_problems(expr),
        vec!["tickr_targets without job=~\"$job\"".to_owned()]
    );
    // `=~"$label|"` also keeps series without the label; a per-target series needs a location.
    assert_eq!(
        filter_problems(r#"ALERTS{job=~"$job|", target=~"$target", location=~"${location}|"}"#),
        Vec::<String>::new()
    );
    assert_eq!(
        filter_problems(r#"tickr_probe_success{job=~"$job", target=~"$target"}"#),
        vec!["tickr_probe_success without location=~\"$location\"".to_owned()]
    );
    let values = vec![
        ("job".to_owned(), "tickr".to_owned()),
        ("target".to_owned(), "(a|b)".to_owned()),
        ("__rate_interval".to_owned(), "4s".to_owned()),
    ];
    assert_eq!(
        substitute(
            r#"x{job=~"$job",target=~"${target}"}[$__rate_interval]"#,
            &values
        ),
        Ok(r#"x{job=~"tickr",target=~"(a|b)"}[4s]"#.to_owned())
    );
    assert!(substitute("x[$__range]", &values).is_err());
}
