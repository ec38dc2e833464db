//! The pages a person reads: the landing page and the failure events (as HTML and JSON).
//!
//! Server-rendered and script-free: events expand with `<details>`, and each has an anchor
//! (`#event-<id>`), which is what exemplars and dashboard links point at. The anchor is on the
//! event's content, not on its `<details>`: browsers open a closed `<details>` to reveal a
//! fragment target inside it, but not one that is the `<details>` itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use serde_json::{json, Value};

use crate::diagnosis::events::Event;
use crate::handle::{Handle, Placement};
use crate::limits::MAX_EVENTS_SHOWN;
use crate::logging::rfc3339;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#1f2328}\
table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
.ok{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}.none{color:#888}\
details{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.3em .8em}\
details:has(>.event:target){border-color:#cf222e;box-shadow:0 0 0 2px #ffd7d5}\
.event{scroll-margin-top:3em}.event table{width:100%}.event th{width:9em}\
.event td{overflow-wrap:anywhere}summary{cursor:pointer}\
pre{background:#f6f8fa;padding:.6em;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;max-height:20em}\
.hint{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em .8em;margin:.3em 0}\
nav a{margin-right:1em}code{background:#0000000f;border-radius:4px;padding:0 .3em}svg{background:#f6f8fa;border-radius:4px}\
th{white-space:nowrap}.url{overflow-wrap:anywhere;min-width:12em}.nowrap{white-space:nowrap}\
.legend span{margin-right:1.2em;white-space:nowrap}\
.legend svg{background:none;margin-right:.35em;vertical-align:-1px}";

/// The policy every response carries (see [`crate::server::browser::secure`]): nothing may load but
/// the pages' one stylesheet, by its hash, and the `data:` icon; no script at all, no form, no
/// `<base>`, no framing. Add here what a page comes to need.
pub fn content_security_policy() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let sha256 = suite.tls13().expect("a TLS 1.3 suite").common.hash_provider;
        let hash = base64(sha256.hash(STYLE.as_bytes()).as_ref());
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'"
        )
    });
    &POLICY
}

/// Standard base64 (RFC 4648 §4) with padding, as CSP hashes are written.
fn base64(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(DIGITS[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// The `data:,` icon stops browsers asking for `/favicon.ico`, whose 404 each would log as a
/// console error.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body><nav><a href=\"/\">tickr</a><a href=\"/events\">Events</a>\
         <a href=\"/metrics\">Metrics</a></nav>{body}</body></html>\n",
        title = escape(title)
    )
}

/// `/`: version and every target with its state.
pub fn landing(handle: &Handle) -> String {
    let targets = handle.targets();
    let mut html = String::with_capacity(2048 + targets.len() * 256);
    let _ = write!(
        html,
        "<h1>tickr {version}</h1><p>Scheduled HTTP(S) probes; every outcome is counted.</p>{placement}\
         <p><a href=\"/metrics\">Metrics</a> · <a href=\"/events\">Failed probes</a> · \
         <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\
         <h2>Targets ({count})</h2><table><tr><th>Target</th><th>URL</th><th>State</th><th>Last status</th>\
         <th>Successes</th><th>Failures</th><th>Interval</th><th>Last probe</th></tr>",
        version = env!("CARGO_PKG_VERSION"),
        placement = placement_html(&handle.placement()),
        count = targets.len()
    );
    for (target, tm) in &targets {
        let s = tm.summary();
        let (class, state) = match s.last_success {
            Some(true) => ("ok", "up"),
            Some(false) => ("fail", "failing"),
            None => ("none", "not probed yet"),
        };
        let name = escape(&target.name);
        let _ = write!(
            html,
            "<tr><td><a href=\"/events?target={link}\">{name}</a></td><td class=\"url\">{url}</td><td class=\"{class}\">{state}</td>\
             <td>{status}</td><td>{ok}</td><td>{failed}</td><td>{interval:?}</td><td class=\"nowrap\">{last}</td></tr>",
            link = escape(&url::form_urlencoded::byte_serialize(target.name.as_bytes()).collect::<String>()),
            url = escape(&target.shown_url),
            status = s.last_status,
            ok = s.successes,
            failed = s.failures,
            interval = target.interval,
            last = rfc3339(s.last_probe_timestamp),
        );
    }
    html.push_str("</table>");
    page("tickr", &html)
}

/// Where this tickr probes from and which share of the targets it owns, when it is one of a
/// fleet; nothing for a lone tickr.
fn placement_html(p: &Placement) -> String {
    let mut parts = Vec::new();
    if let Some(place) = &p.location {
        parts.push(format!("Probing from <b>{}</b>", escape(place)));
    }
    let s = p.shard;
    if s.count() > 1 {
        let replicas = match s.replicas() {
            1 => String::new(),
            r => format!(", each target probed by {r} of them"),
        };
        parts.push(format!(
            "shard <b>{}</b> of {} (targets are split by rendezvous hashing of their names{replicas}): only the targets this shard owns are listed, probed and exposed",
            s.index(),
            s.count()
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("<p class=\"placement\">{}.</p>", parts.join(" · "))
}

/// What `/events` was asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventsQuery {
    pub target: Option<String>,
    /// Unix seconds.
    pub since: Option<f64>,
    pub id: Option<u64>,
    pub limit: usize,
    pub json: bool,
}

impl EventsQuery {
    /// Reads `?target=&since=&id=&limit=&format=json`; unknown or malformed values are ignored.
    pub fn parse(query: Option<&str>, wants_json: bool) -> Self {
        let mut q = Self {
            limit: 200,
            json: wants_json,
            ..Self::default()
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "target" if !v.is_empty() => q.target = Some(v.into_owned()),
                "since" => q.since = v.parse().ok(),
                "id" => q.id = v.parse().ok(),
                "limit" => q.limit = v.parse().unwrap_or(q.limit),
                "format" => q.json = v == "json",
                _ => {}
            }
        }
        q.limit = q.limit.clamp(1, MAX_EVENTS_SHOWN);
        q
    }
}

fn select(handle: &Handle, q: &EventsQuery) -> Vec<Arc<Event>> {
    let all = handle
        .recorder
        .failures(q.target.as_deref(), q.since, MAX_EVENTS_SHOWN);
    all.into_iter()
        .filter(|e| q.id.is_none_or(|id| e.id == id))
        .take(q.limit)
        .collect()
}

/// `/events?format=json`: failures (newest first), the last success of each target shown, and
/// the pattern hints.
pub fn events_json(handle: &Handle, q: &EventsQuery) -> Value {
    let failures = select(handle, q);
    let mut targets: Vec<String> = handle
        .targets()
        .iter()
        .map(|(t, _)| t.name.clone())
        .collect();
    if let Some(t) = &q.target {
        targets.retain(|name| name == t);
    }
    let last_success: serde_json::Map<String, Value> = targets
        .iter()
        .filter_map(|t| {
            handle
                .recorder
                .last_success(t)
                .map(|e| (t.clone(), e.to_json()))
        })
        .collect();
    let hints: Vec<Value> = handle
        .recorder
        .hints()
        .into_iter()
        .filter(|h| q.target.as_ref().is_none_or(|t| *t == h.target))
        .map(|h| json!({"target": h.target, "text": h.text}))
        .collect();
    let placement = handle.placement();
    json!({
        "location": placement.location,
        "shard": {
            "index": placement.shard.index(),
            "count": placement.shard.count(),
            "replicas": placement.shard.replicas(),
        },
        "events": failures.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "last_success": last_success,
        "hints": hints,
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Hints write names as `reason`, as in logs; on a page those become `<code>`.
fn code_spans(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len() + 32);
    let mut parts = escaped.split('`');
    out.push_str(parts.next().unwrap_or_default());
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        match (i % 2, i + 1 == rest.len()) {
            // An unmatched last backtick stays as it was.
            (0, true) => {
                out.push('`');
                out.push_str(part);
            }
            (0, false) => {
                let _ = write!(out, "<code>{part}</code>");
            }
            _ => out.push_str(part),
        }
    }
    out
}

/// Colours of the reasons on the timeline.
fn reason_colour(reason: Option<&str>) -> &'static str {
    match reason {
        Some("status") => "#cf222e",
        Some("timeout") => "#bf8700",
        Some("reset") => "#8250df",
        Some("connect") => "#0969da",
        Some("tls") => "#1b7c83",
        Some("proxy") => "#953800",
        Some("body_mismatch" | "header_mismatch") => "#bf3989",
        _ => "#57606a",
    }
}

/// `/events`: failures per target on a timeline, each expandable with its evidence.
pub fn events_html(handle: &Handle, q: &EventsQuery) -> String {
    let failures = select(handle, q);
    let now = crate::time::unix_now();
    let mut html = String::with_capacity(8192 + failures.len() * 2048);
    intro_html(&mut html, q, failures.len());
    html.push_str(&placement_html(&handle.placement()));
    hints_html(&mut html, handle, q);

    let mut by_target: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &failures {
        by_target.entry(e.target.as_str()).or_default().push(e);
    }
    timeline_html(&mut html, &failures, &by_target, now);

    html.push_str("<h2>Events</h2>");
    if failures.is_empty() {
        html.push_str("<p class=\"none\">No failed probes recorded.</p>");
    }
    for e in &failures {
        event_html(&mut html, e, true, q.id == Some(e.id));
    }
    successes_html(&mut html, handle, q, &by_target);
    page("tickr: failed probes", &html)
}

/// The heading: whose failures, how many, and the same as JSON.
fn intro_html(html: &mut String, q: &EventsQuery, shown: usize) {
    let scope = q
        .target
        .as_deref()
        .map_or(String::new(), |t| format!(" of {}", escape(t)));
    let _ = write!(html, "<h1>Failed probes{scope}</h1>");
    let _ = write!(
        html,
        "<p>The last {} failed probe{} tickr kept in memory (successes never push them out), newest first. \
         <a href=\"?{}format=json\">JSON</a></p>",
        shown,
        plural(shown),
        q.target.as_deref().map_or(String::new(), |t| format!(
            "target={}&amp;",
            escape(&url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>())
        ))
    );
}

/// The patterns the recorder noticed, for the targets shown.
fn hints_html(html: &mut String, handle: &Handle, q: &EventsQuery) {
    let hints = handle.recorder.hints();
    let hints: Vec<_> = hints
        .iter()
        .filter(|h| q.target.as_ref().is_none_or(|t| *t == h.target))
        .collect();
    if !hints.is_empty() {
        html.push_str("<h2>Patterns</h2>");
        for h in hints {
            let _ = write!(
                html,
                "<div class=\"hint\"><b>{}</b>: {}</div>",
                escape(&h.target),
                code_spans(&escape(&h.text))
            );
        }
    }
}

/// A timeline per target, over the span of the failures shown (at least the last five
/// minutes: with a whole hour, the first minutes' marks piled up into one bar at the end).
fn timeline_html(
    html: &mut String,
    failures: &[Arc<Event>],
    by_target: &BTreeMap<&str, Vec<&Event>>,
    now: f64,
) {
    if by_target.is_empty() {
        return;
    }
    let start = failures.iter().map(|e| e.time).fold(now - 300.0, f64::min);
    let span = (now - start).max(1.0);
    let _ = write!(
        html,
        "<h2>Timeline</h2><p>From {} to now; each mark is a failed probe, coloured by reason.</p><table>",
        rfc3339(start)
    );
    for (target, events) in by_target {
        let _ = write!(
            html,
            "<tr><td><a href=\"?target={}\">{}</a></td><td><svg width=\"720\" height=\"22\" role=\"img\" aria-label=\"failures of {}\">",
            escape(&url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()),
            escape(target),
            escape(target)
        );
        for e in events {
            let x = 4.0 + 712.0 * (e.time - start) / span;
            let _ = write!(
                html,
                "<a href=\"#event-{id}\"><rect x=\"{x:.1}\" y=\"3\" width=\"3\" height=\"16\" fill=\"{colour}\"><title>{when} {reason} {status}</title></rect></a>",
                id = e.id,
                colour = reason_colour(e.reason),
                when = rfc3339(e.time),
                reason = e.reason.unwrap_or_default(),
                status = e.status.map_or(String::new(), |s| s.to_string()),
            );
        }
        let n = events.len();
        let _ = write!(html, "</svg></td><td>{n} failure{}</td></tr>", plural(n));
    }
    html.push_str("</table><p class=\"legend\">");
    let mut reasons: Vec<&str> = failures
        .iter()
        .map(|e| e.reason.unwrap_or("other"))
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    // A swatch drawn like the marks: the policy allows no `style` attribute.
    for reason in reasons {
        let _ = write!(
            html,
            "<span><svg width=\"11\" height=\"11\" aria-hidden=\"true\"><rect width=\"11\" height=\"11\" rx=\"2\" fill=\"{}\"/></svg>{reason}</span>",
            reason_colour(Some(reason))
        );
    }
    html.push_str("</p>");
}

/// The last success of each target shown (or asked for), to compare the failures with.
fn successes_html(
    html: &mut String,
    handle: &Handle,
    q: &EventsQuery,
    by_target: &BTreeMap<&str, Vec<&Event>>,
) {
    let mut shown: Vec<String> = by_target.keys().map(|t| (*t).to_owned()).collect();
    if let Some(t) = &q.target {
        if !shown.contains(t) {
            shown.push(t.clone());
        }
    }
    let successes: Vec<_> = shown
        .iter()
        .filter_map(|t| handle.recorder.last_success(t))
        .collect();
    if !successes.is_empty() {
        html.push_str("<h2>Last success, for comparison</h2>");
        for e in &successes {
            event_html(html, e, false, false);
        }
    }
}

/// `open` expands the event: the one an exemplar link (`?id=`) asked for.
fn event_html(html: &mut String, e: &Event, failure: bool, open: bool) {
    let confirmation = e
        .confirmation
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map(|c| {
            format!(
                " · confirmed {} ({} of {} follow-ups failed)",
                c.verdict(),
                c.failed,
                c.probes
            )
        });
    let _ = write!(
        html,
        "<details{open}><summary><span class=\"{class}\">{what}</span> · {when} · <b>{target}</b>{location}{status}{layer}{remote}{confirmation}</summary>",
        open = if open { " open" } else { "" },
        class = if failure { "fail" } else { "ok" },
        what = e.reason.unwrap_or("success"),
        when = rfc3339(e.time),
        target = escape(&e.target),
        location = e.location.as_deref().map_or(String::new(), |l| format!(" from {}", escape(l))),
        status = e.status.map_or(String::new(), |s| format!(" · {s}")),
        layer = e.layer.as_deref().map_or(String::new(), |l| format!(" · layer {}", escape(l))),
        remote = e.remote.as_deref().map_or(String::new(), |r| format!(" · {}", escape(r))),
        confirmation = confirmation.unwrap_or_default(),
    );
    let _ = write!(
        html,
        "<div class=\"event\" id=\"event-{}\"><table><tr><th>Event</th><td>{}</td></tr><tr><th>URL</th><td>{}</td></tr>",
        e.id,
        e.id,
        escape(&e.url)
    );
    ids_html(html, e);
    let rows = [
        ("Error", e.error.clone()),
        ("Through proxy", e.proxy.as_deref().map(str::to_owned)),
        ("Layer evidence", e.evidence.clone()),
        (
            "Relayed by",
            (!e.relayed_by.is_empty()).then(|| e.relayed_by.join(" → ")),
        ),
        (
            "Chain (origin first)",
            (!e.chain.is_empty()).then(|| e.chain.join(" → ")),
        ),
        (
            "Body",
            e.cut
                .then(|| format!("cut: broke off after {} bytes", e.body_bytes)),
        ),
        ("HTTP", e.http_version.map(str::to_owned)),
        ("TLS", e.tls_version.map(str::to_owned)),
        (
            "Redirects",
            (e.redirects > 0).then(|| e.redirects.to_string()),
        ),
    ];
    for (name, value) in rows {
        if let Some(v) = value {
            let _ = write!(html, "<tr><th>{name}</th><td>{}</td></tr>", escape(&v));
        }
    }
    let phases: Vec<String> = e
        .phases_ms
        .iter()
        .map(|(p, ms)| format!("{p} {ms} ms"))
        .collect();
    let _ = write!(
        html,
        "<tr><th>Phases</th><td>{}</td></tr></table>",
        escape(&phases.join(" · "))
    );
    if !e.headers.is_empty() {
        html.push_str("<p>Response headers</p><pre>");
        for (k, v) in &e.headers {
            let _ = writeln!(html, "{}: {}", escape(k), escape(v));
        }
        html.push_str("</pre>");
    }
    if !e.body_excerpt.is_empty() {
        let _ = write!(
            html,
            "<p>Body (start)</p><pre>{}</pre>",
            escape(&e.body_excerpt)
        );
    }
    html.push_str("</div></details>");
}

/// The ids the probe sent, and the line that finds its request in the logs of every server it
/// passed through (where they log the header: see the README's "Request ids").
fn ids_html(html: &mut String, e: &Event) {
    let Some(ids) = e.ids else { return };
    if let (Some(id), Some(header)) = (e.request_id(), &e.request_id_header) {
        let _ = write!(
            html,
            "<tr><th>Request id</th><td>{}: {id}</td></tr>",
            escape(&header_case(header.as_str()))
        );
    }
    if ids.traceparent {
        let _ = write!(
            html,
            "<tr><th>traceparent</th><td>{}</td></tr>",
            ids.traceparent_value().as_str()
        );
    }
    let _ = write!(
        html,
        "<tr><th>Find it</th><td><code>grep {}</code> in the proxies' and the application's logs</td></tr>",
        ids.trace_id
    );
}

/// `x-request-id` as people write it: `X-Request-Id`.
fn header_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_csp_hashes_are_written() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn the_policy_allows_the_stylesheet_by_its_sha256() {
        // The digest as `printf a | openssl dgst -sha256 -binary | base64` writes it.
        assert_eq!(
            base64(
                rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
                    .tls13()
                    .expect("TLS 1.3")
                    .common
                    .hash_provider
                    .hash(b"a")
                    .as_ref()
            ),
            "ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs="
        );
        let policy = content_security_policy();
        assert!(
            policy.starts_with("default-src 'none'; style-src 'sha256-"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn header_names_are_shown_as_people_write_them() {
        assert_eq!(header_case("x-request-id"), "X-Request-Id");
        assert_eq!(header_case("x-correlation-id"), "X-Correlation-Id");
        assert_eq!(header_case("traceparent"), "Traceparent");
    }

    #[test]
    fn backticks_become_code_and_a_lone_one_stays() {
        assert_eq!(
            code_spans("3 of 3 are `reset`: cut"),
            "3 of 3 are <code>reset</code>: cut"
        );
        assert_eq!(code_spans("a `b` c `d"), "a <code>b</code> c `d");
        assert_eq!(code_spans("plain"), "plain");
    }
}
