//! Property tests: bounded fuzzing of everything tickr reads but does not control. The
//! configuration file (whole documents, and its durations, sizes and status patterns), body
//! matchers, layer fingerprinting of responses, and the URLs of targets and redirects.
//!
//! Each property runs 256 generated cases by default, which is the run CI does. Set
//! `TICKR_PROPTEST_CASES` for a longer one, e.g. `TICKR_PROPTEST_CASES=20000 cargo test --release
//! --test it properties`. A failure prints the smallest input found. Such an input then becomes a
//! plain test below, so that it stays covered.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::sample::Index;
use tickr::config::{self, ByteSize, Config, HumanDuration, Matcher, StatusPattern};
use tickr::diagnosis::layer::{self, Attributor, Chain, Signal};
use url::Url;

/// Cases per property: 256, or `TICKR_PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("TICKR_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // A failing input is printed, then kept as a plain test in this file; no
        // `proptest-regressions/` files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Where generated documents claim to live. It does not exist: documents that name TLS files
/// must fail cleanly.
fn config_path() -> PathBuf {
    PathBuf::from("/nonexistent/tickr-properties/config.yml")
}

/// Lines of `text` as a YAML parser counts them: `\r\n`, `\r`, `\n`, NEL, LS and PS all break.
fn yaml_lines(text: &str) -> usize {
    let mut lines = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}

/// Parses `text` as a configuration; on error, checks that the error is positioned inside the
/// document and says something. Returns the configuration when it loaded.
fn parse_checked(text: &str) -> Result<Option<Config>, TestCaseError> {
    match config::parse(&config_path(), text) {
        Ok(config) => Ok(Some(config)),
        Err(e) => {
            let (line, col) = e
                .position
                .ok_or_else(|| TestCaseError::fail(format!("no position in {e}")))?;
            prop_assert!(line >= 1 && col >= 1, "position {line}:{col} in {e}");
            let lines = yaml_lines(text);
            prop_assert!(
                line <= lines + 1,
                "line {line} beyond the document's {lines} lines: {e}"
            );
            prop_assert!(!e.message.trim().is_empty(), "empty message: {e}");
            // One line, in logs and on stderr, whatever the document quoted.
            prop_assert!(
                !e.message
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
                "message with a line break or control character: {:?}",
                e.message
            );
            Ok(None)
        }
    }
}

/// `s` as a YAML double-quoted scalar that reads back as exactly `s`.
fn yaml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            // Line and paragraph separators are line breaks to YAML, even inside quotes.
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\U{:08X}", c as u32)),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' => {
                out.push(c)
            }
            c if c >= '\u{10000}' => out.push(c),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

// ----- Valid documents, from a grammar -------------------------------------------------------

/// One generated target and what loading it must give.
#[derive(Debug, Clone)]
struct GenTarget {
    name: String,
    url: String,
    interval_ms: u64,
    timeout_ms: Option<u64>,
    method: Option<&'static str>,
    headers: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    status: Vec<StatusPattern>,
    contains: Vec<String>,
    not_contains: Vec<String>,
    follow_redirects: Option<bool>,
    max_body: Option<(u64, &'static str)>,
    http_version: Option<&'static str>,
    confirm: Option<(usize, u64)>,
}

impl GenTarget {
    /// The timeout tickr must end up with.
    fn timeout(&self) -> Duration {
        let interval = Duration::from_millis(self.interval_ms);
        self.timeout_ms.map_or_else(
            || Duration::from_secs(10).min(interval * 4 / 5),
            Duration::from_millis,
        )
    }

    fn render(&self, out: &mut String) {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        out.push_str(&format!("  - name: {}\n", q(&self.name)));
        out.push_str(&format!("    url: {}\n", q(&self.url)));
        let interval = HumanDuration(Duration::from_millis(self.interval_ms));
        out.push_str(&format!("    interval: {interval}\n"));
        if let Some(t) = self.timeout_ms {
            out.push_str(&format!(
                "    timeout: {}\n",
                HumanDuration(Duration::from_millis(t))
            ));
        }
        if let Some(m) = self.method {
            out.push_str(&format!("    method: {m}\n"));
        }
        if !self.headers.is_empty() {
            out.push_str("    headers:\n");
            for (k, v) in &self.headers {
                out.push_str(&format!("      {k}: {}\n", q(v)));
            }
        }
        if !self.labels.is_empty() {
            let flow: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {}", q(v)))
                .collect();
            out.push_str(&format!("    labels: {{{}}}\n", flow.join(", ")));
        }
        if let Some(f) = self.follow_redirects {
            out.push_str(&format!("    follow_redirects: {f}\n"));
        }
        if let Some((n, unit)) = self.max_body {
            out.push_str(&format!("    max_body_bytes: {n}{unit}\n"));
        }
        if let Some(v) = self.http_version {
            out.push_str(&format!("    http_version: {v}\n"));
        }
        if let Some((n, delay)) = self.confirm {
            out.push_str(&format!("    confirm: {n}\n"));
            let delay = HumanDuration(Duration::from_millis(delay));
            out.push_str(&format!("    confirm_delay: {delay}\n"));
        }
        out.push_str("    expect:\n");
        let status: Vec<String> = self.status.iter().map(|s| format!("'{s}'")).collect();
        out.push_str(&format!("      status: [{}]\n", status.join(", ")));
        for (key, list) in [
            ("body_contains", &self.contains),
            ("body_not_contains", &self.not_contains),
        ] {
            if !list.is_empty() {
                out.push_str(&format!("      {key}:\n"));
                for text in list {
                    out.push_str(&format!("        - {}\n", q(text)));
                }
            }
        }
    }
}

/// A whole generated document.
#[derive(Debug, Clone)]
struct GenDoc {
    max_concurrent: Option<usize>,
    default_headers: Vec<(String, String)>,
    default_status: Option<StatusPattern>,
    events: Option<usize>,
    targets: Vec<GenTarget>,
}

impl GenDoc {
    fn render(&self) -> String {
        let mut out = String::from("# generated\n");
        if let Some(n) = self.max_concurrent {
            out.push_str(&format!("global:\n  max_concurrent_probes: {n}\n"));
        }
        if !self.default_headers.is_empty() || self.default_status.is_some() {
            out.push_str("defaults:\n");
            if !self.default_headers.is_empty() {
                out.push_str("  headers:\n");
                for (k, v) in &self.default_headers {
                    out.push_str(&format!("    {k}: {}\n", yaml_quote(v)));
                }
            }
            if let Some(s) = self.default_status {
                out.push_str(&format!("  expect: {{status: [\"{s}\"]}}\n"));
            }
        }
        if let Some(n) = self.events {
            out.push_str(&format!(
                "diagnosis:\n  events: {n}\n  body_excerpt: 2KiB\n"
            ));
        }
        if self.targets.is_empty() {
            out.push_str("targets: []\n");
        } else {
            out.push_str("targets:\n");
            for t in &self.targets {
                t.render(&mut out);
            }
        }
        out
    }
}

fn status_pattern() -> impl Strategy<Value = StatusPattern> {
    prop_oneof![
        (100u16..=599).prop_map(|c| StatusPattern { low: c, high: c }),
        (1u16..=5).prop_map(|c| StatusPattern {
            low: c * 100,
            high: c * 100 + 99
        }),
        (100u16..=599, 100u16..=599).prop_map(|(a, b)| StatusPattern {
            low: a.min(b),
            high: a.max(b)
        }),
    ]
}

fn url_strategy() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        // One hyphen at most: `xn--` would start an (invalid) punycode label.
        "[a-z][a-z0-9]{0,9}(\\.[a-z][a-z0-9]{0,4}(-[a-z0-9]{1,4})?){0,2}",
    ];
    (
        prop_oneof![Just("http"), Just("https")],
        host,
        prop::option::of(1u16..=65535),
        "(/[a-zA-Z0-9._~-]{0,8}){0,3}",
        prop::option::of("[a-z]{1,5}=[a-zA-Z0-9]{0,5}"),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{path}{query}")
        })
}

fn header_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9]{1,6}(-[a-z0-9]{1,6}){0,2}"
}

/// Values that are valid in HTTP and survive YAML: visible ASCII and inner spaces.
fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,30}[!-~])?"
}

fn target_strategy(name: String) -> impl Strategy<Value = GenTarget> {
    let label_name = "[a-z][a-z0-9_]{0,8}".prop_filter("not reserved", |l| {
        !config::RESERVED_LABELS.contains(&l.as_str())
    });
    let timing = (100u64..=3_600_000).prop_flat_map(|interval| {
        (
            Just(interval),
            prop::option::of(1..interval),
            prop::option::of((1usize..=10, 0u64..=2_000)),
        )
    });
    let texts = prop::collection::btree_set("[ -~]{1,12}", 0..5);
    (
        url_strategy(),
        timing,
        prop::option::of(prop::sample::select(vec!["GET", "post", "HEAD", "PUT"])),
        prop::collection::btree_map(header_name(), header_value(), 0..4),
        prop::collection::btree_map(label_name, "[ -~]{0,10}", 0..3),
        prop::collection::vec(status_pattern(), 1..4),
        texts,
        prop::option::of(any::<bool>()),
        prop::option::of((
            1u64..=64,
            prop::sample::select(vec!["KiB", "MiB", "kB", ""]),
        )),
        prop::option::of(prop::sample::select(vec!["auto", "http1", "http2"])),
    )
        .prop_map(
            move |(
                url,
                (interval_ms, timeout_ms, confirm),
                method,
                headers,
                labels,
                status,
                texts,
                follow_redirects,
                max_body,
                http_version,
            )| {
                let texts: Vec<String> = texts.into_iter().collect();
                let split = texts.len() / 2;
                let mut t = GenTarget {
                    name: name.clone(),
                    url,
                    interval_ms,
                    timeout_ms,
                    method,
                    headers: headers.into_iter().collect(),
                    labels: labels.into_iter().collect(),
                    status,
                    contains: texts[..split].to_vec(),
                    not_contains: texts[split..].to_vec(),
                    follow_redirects,
                    max_body,
                    http_version,
                    confirm: None,
                };
                // Confirmations only where they fit in the interval, as tickr demands.
                if let Some((n, delay)) = confirm {
                    let timeout = t.timeout().as_millis() as u64;
                    if (timeout + delay) * n as u64 + timeout <= interval_ms {
                        t.confirm = Some((n, delay));
                    }
                }
                t
            },
        )
}

fn doc_strategy() -> impl Strategy<Value = GenDoc> {
    let names = prop::collection::btree_set("[a-z][a-z0-9-]{0,11}", 0..6);
    let targets =
        names.prop_flat_map(|names| names.into_iter().map(target_strategy).collect::<Vec<_>>());
    (
        prop::option::of(1usize..=5000),
        prop::collection::btree_map(header_name(), "[ -~]{0,20}", 0..3),
        prop::option::of(status_pattern()),
        prop::option::of(1usize..=100_000),
        targets,
    )
        .prop_map(
            |(max_concurrent, default_headers, default_status, events, targets)| GenDoc {
                max_concurrent,
                default_headers: default_headers.into_iter().collect(),
                default_status,
                events,
                targets,
            },
        )
}

// ----- Mutations of valid documents ----------------------------------------------------------

/// Characters that mean something to YAML, and a few that mean trouble to text handling.
const NASTY: &[char] = &[
    ':', '-', ' ', '\n', '\r', '\t', '"', '\'', '{', '}', '[', ']', '#', '&', '*', '!', '|', '>',
    '%', '@', '`', ',', '?', '\\', '\0', '\u{85}', '\u{2028}', '\u{feff}', 'é', '😀',
];

/// Keys tickr knows (so that mutations put them in the wrong place or twice) and values of
/// every YAML kind.
const KEYS: &[&str] = &[
    "global",
    "defaults",
    "targets",
    "diagnosis",
    "name",
    "url",
    "labels",
    "interval",
    "timeout",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "max_body_bytes",
    "ip_protocol",
    "http_version",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "confirm",
    "confirm_delay",
    "per_address",
    "addresses",
    "expect",
    "status",
    "body_contains",
    "body_not_contains",
    "events",
    "body_excerpt",
    "redact_headers",
    "redact_query_params",
    "fingerprints",
    "origin",
    "layer",
    "text",
    "max_concurrent_probes",
    "<<",
];
const VALUES: &[&str] = &[
    "",
    "~",
    "null",
    "-1",
    "0",
    "1e999",
    "18446744073709551616",
    "0x10",
    ".nan",
    "[1, [2, {a: b}]]",
    "{a: 1, a: 2}",
    "&anchor x",
    "*anchor",
    "*missing",
    "!!binary aGk=",
    "!custom x",
    "|\n  block",
    ">-\n  folded",
    "'unterminated",
    "\"\\u0000\\uD800\"",
    "5xx",
    "6xx",
    "200-100",
    "1m30s",
    "4294967296ms",
    "99999999999999999999w",
    "1GiB",
    "https://user:pw@host/",
    "ftp://host/",
    "http://h}/",
    "127.0.0.1",
    "::1",
    "true",
    "yes",
    "\t",
    "- a\n- b",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(Index, usize),
    Duplicate(Index, usize),
    Replace(Index, char),
    Insert(Index, char),
    InsertLine(Index, usize, String, String),
    ReplaceValue(Index, String),
    SwapLines(Index, Index),
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
        1 => any::<String>(),
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(VALUES).prop_map(str::to_owned),
        1 => "[ -~]{0,20}",
        1 => any::<String>(),
    ]
}

fn char_strategy() -> impl Strategy<Value = char> {
    prop_oneof![3 => prop::sample::select(NASTY), 1 => any::<char>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<Index>(), char_strategy()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any::<Index>(), char_strategy()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<Index>(), 0usize..8, key_strategy(), value_strategy())
            .prop_map(|(i, indent, k, v)| Mutation::InsertLine(i, indent, k, v)),
        (any::<Index>(), value_strategy()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// Applies `m` to `text`, on characters (never inside one) or whole lines.
fn mutate(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::Delete(i, n) => {
            let start = at(i, chars.len());
            let end = (start + n).min(chars.len());
            chars.drain(start..end);
        }
        Mutation::Duplicate(i, n) => {
            let start = at(i, chars.len());
            let end = (start + n).min(chars.len());
            let copy: Vec<char> = chars[start..end].to_vec();
            chars.splice(end..end, copy);
        }
        Mutation::Replace(i, c) => {
            if !chars.is_empty() {
                let i = at(i, chars.len());
                chars[i] = *c;
            }
        }
        Mutation::Insert(i, c) => {
            let i = at(i, chars.len() + 1);
            chars.insert(i, *c);
        }
        Mutation::InsertLine(i, indent, k, v) => {
            let i = at(i, lines.len() + 1);
            lines.insert(i, format!("{}{k}: {v}", " ".repeat(*indent)));
            return lines.join("\n");
        }
        Mutation::ReplaceValue(i, v) => {
            let i = at(i, lines.len());
            if let Some((key, _)) = lines[i].split_once(": ") {
                lines[i] = format!("{key}: {v}");
            }
            return lines.join("\n");
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (at(a, lines.len()), at(b, lines.len()));
            lines.swap(a, b);
            return lines.join("\n");
        }
    }
    chars.into_iter().collect()
}

// ----- The configuration parser --------------------------------------------------------------

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn config_parser_survives_arbitrary_text(text in any::<String>()) {
        parse_checked(&text)?;
    }

    #[test]
    fn config_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_checked(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn config_parser_survives_yaml_shaped_noise(
        lines in prop::collection::vec((0usize..6, key_strategy(), value_strategy()), 0..12)
    ) {
        let text: Vec<String> = lines
            .iter()
            .map(|(indent, k, v)| format!("{}{k}: {v}", " ".repeat(*indent)))
            .collect();
        parse_checked(&text.join("\n"))?;
    }

    #[test]
    fn generated_valid_configs_load_as_written(doc in doc_strategy()) {
        let text = doc.render();
        let config = config::parse(&config_path(), &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(config.targets.len(), doc.targets.len(), "{}", text);
        for (got, want) in config.targets.iter().zip(&doc.targets) {
            prop_assert_eq!(&got.name, &want.name);
            prop_assert_eq!(got.url.clone(), Url::parse(&want.url).unwrap());
            prop_assert_eq!(got.interval, Duration::from_millis(want.interval_ms));
            prop_assert_eq!(got.timeout, want.timeout());
            let method = want.method.unwrap_or("GET").to_ascii_uppercase();
            prop_assert_eq!(got.method.as_str(), method.as_str());
            prop_assert_eq!(&got.expect_status, &want.status);
            prop_assert_eq!(got.matchers.len(), want.contains.len() + want.not_contains.len());
            prop_assert_eq!(got.confirm, want.confirm.map_or(0, |c| c.0));
            for (k, v) in doc.default_headers.iter().chain(&want.headers) {
                let set = got.headers.get(k.as_str()).map(|v| v.as_bytes().to_vec());
                // The target's own value wins over the default.
                let expected = want
                    .headers
                    .iter()
                    .find(|(name, _)| name == k)
                    .map_or(v, |(_, value)| value);
                prop_assert_eq!(set, Some(expected.as_bytes().to_vec()));
            }
            prop_assert_eq!(got.labels.len(), want.labels.len());
        }
    }

    #[test]
    fn mangled_valid_configs_fail_with_a_position(
        doc in doc_strategy(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut text = doc.render();
        for m in &mutations {
            text = mutate(&text, m);
        }
        parse_checked(&text)?;
    }

    /// A header value is sent as written, however YAML would read it (`0x1F`, `1e3`, `true`),
    /// and an error never quotes one.
    #[test]
    fn header_values_are_taken_as_written(
        value in prop_oneof![
            "[0-9][0-9a-fA-Fx.eE+_:-]{0,30}",
            prop::sample::select(vec!["true", "no", "~", "null", ".inf", "0o17", "!!int 5"]).prop_map(str::to_owned),
            "\\[[0-9a-z, ]{0,20}\\]",
        ],
    ) {
        let text = format!(
            "targets:\n  - name: t\n    url: http://127.0.0.1/\n    headers:\n      X-Api-Key: {value}\n"
        );
        match parse_checked(&text)? {
            Some(config) => {
                let sent = config.targets[0].headers.get("x-api-key").map(|v| v.as_bytes().to_vec());
                let written = value.strip_prefix("!!int ").unwrap_or(&value);
                prop_assert_eq!(sent, Some(written.as_bytes().to_vec()), "{}", value);
            }
            None => {
                let e = config::parse(&config_path(), &text).expect_err("refused");
                if value.len() >= 6 {
                    prop_assert!(!e.message.contains(value.as_str()), "{e} quotes the value");
                }
            }
        }
    }

    #[test]
    fn target_names_read_back_exactly(name in any::<String>()) {
        let text = format!("targets:\n  - name: {}\n    url: http://127.0.0.1/\n", yaml_quote(&name));
        match parse_checked(&text)? {
            Some(config) => prop_assert_eq!(&config.targets[0].name, &name),
            None => prop_assert!(name.trim().is_empty(), "{name:?} refused"),
        }
    }
}

// ----- Durations, sizes, status patterns -----------------------------------------------------

const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

const SIZE_UNITS: &[(&str, u128)] = &[
    ("", 1),
    ("B", 1),
    ("KB", 1_000),
    ("kB", 1_000),
    ("KiB", 1 << 10),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
    ("GB", 1_000_000_000),
    ("GiB", 1 << 30),
];

fn any_count() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1_000, 0u64..=u64::from(u32::MAX) * 2, any::<u64>()]
}

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn scalar_parsers_survive_arbitrary_text(s in any::<String>()) {
        let _ = HumanDuration::parse(&s);
        let _ = ByteSize::parse(&s);
        if let Ok(p) = StatusPattern::parse(&s) {
            prop_assert!(100 <= p.low && p.low <= p.high && p.high <= 599, "{s:?} → {p:?}");
        }
    }

    #[test]
    fn scalar_parsers_survive_scalar_shaped_text(
        s in "[ +-]?[0-9]{0,24}[ .]?(ms|s|m|h|d|w|y|xx|XX|-|KiB|MiB|GiB|kB|B|é|)[0-9]{0,4}[a-zX]{0,2}"
    ) {
        let _ = HumanDuration::parse(&s);
        let _ = ByteSize::parse(&s);
        if let Ok(p) = StatusPattern::parse(&s) {
            prop_assert!(100 <= p.low && p.low <= p.high && p.high <= 599, "{s:?} → {p:?}");
        }
    }

    #[test]
    fn durations_print_and_parse_back(ms in any_count()) {
        let d = HumanDuration(Duration::from_millis(ms));
        let text = d.to_string();
        prop_assert_eq!(HumanDuration::parse(&text), Ok(d), "{}", text);
    }

    /// `1h2m3s`-style compositions mean the sum of their parts, and a sum beyond what a
    /// duration holds is refused, not wrapped.
    #[test]
    fn durations_add_up_their_parts(
        parts in prop::collection::vec((any_count(), 0..DURATION_UNITS.len()), 1..5)
    ) {
        let text: String = parts
            .iter()
            .map(|(n, u)| format!("{n}{}", DURATION_UNITS[*u].0))
            .collect();
        let total: u128 = parts
            .iter()
            .map(|(n, u)| u128::from(*n) * DURATION_UNITS[*u].1)
            .sum();
        let parsed = HumanDuration::parse(&text);
        if total <= u128::from(u64::MAX) {
            prop_assert_eq!(parsed, Ok(HumanDuration(Duration::from_millis(total as u64))), "{}", text);
        } else {
            prop_assert!(parsed.is_err(), "{text} → {parsed:?}");
        }
    }

    #[test]
    fn sizes_multiply_out(n in any_count(), unit in 0..SIZE_UNITS.len(), space in any::<bool>()) {
        let (suffix, factor) = SIZE_UNITS[unit];
        let sep = if space && !suffix.is_empty() { " " } else { "" };
        let text = format!("{n}{sep}{suffix}");
        let want = u128::from(n) * factor;
        let parsed = ByteSize::parse(&text);
        if want <= u128::from(u64::MAX) {
            prop_assert_eq!(parsed, Ok(ByteSize(want as u64)), "{}", text);
        } else {
            prop_assert!(parsed.is_err(), "{text} → {parsed:?}");
        }
    }

    #[test]
    fn status_patterns_print_and_parse_back(p in status_pattern(), code in 0u16..1000) {
        let text = p.to_string();
        prop_assert_eq!(StatusPattern::parse(&text), Ok(p), "{}", text);
        prop_assert_eq!(p.matches(code), p.low <= code && code <= p.high);
    }
}

// ----- Body matchers -------------------------------------------------------------------------

/// The obvious, slow definition of "`needle` occurs in `haystack`".
fn occurs(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    (0..haystack.len()).any(|start| {
        needle
            .iter()
            .enumerate()
            .all(|(i, b)| haystack.get(start + i) == Some(b))
    })
}

/// Bodies and needles over a small alphabet (so that needles do occur), with bytes that are not
/// UTF-8 and characters of several bytes.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"ab<>/ ".to_vec()),
            1 => Just(0xc3u8),
            1 => Just(0xa9u8),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn matchers_agree_with_a_naive_search(
        body in body_bytes(),
        needle in "[ab<>/é ]{0,6}",
        slice in prop::option::of((any::<Index>(), 1usize..12)),
        negate in any::<bool>(),
    ) {
        // Half the time, a needle cut out of the body itself (when that is valid UTF-8).
        let text = slice
            .and_then(|(i, n)| {
                let start = i.index(body.len().max(1)).min(body.len());
                let end = (start + n).min(body.len());
                String::from_utf8(body[start..end].to_vec()).ok()
            })
            .unwrap_or(needle);
        let m = Matcher { label: "m".into(), text: text.clone(), negate, pattern: None };
        prop_assert_eq!(
            m.is_satisfied_by(&body),
            occurs(&body, text.as_bytes()) != negate,
            "{:?} in {:?}", text, String::from_utf8_lossy(&body)
        );
    }
}

// ----- Layer fingerprinting ------------------------------------------------------------------

/// Header names that some built-in fingerprint, or the edge detection, looks at.
fn fingerprint_headers() -> HashSet<HeaderName> {
    layer::headers_read().into_iter().collect()
}

/// Any byte sequence `HeaderValue` accepts: no control characters but tab, anything else
/// (including bytes ≥ 0x80, which HTTP/1 allows as obs-text).
fn header_value_bytes() -> impl Strategy<Value = HeaderValue> {
    prop::collection::vec(
        any::<u8>().prop_map(|b| {
            if b < 0x20 && b != b'\t' || b == 0x7f {
                b'x'
            } else {
                b
            }
        }),
        0..60,
    )
    .prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("filtered to valid bytes"))
}

fn header_name_strategy() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        prop::sample::select(fingerprint_headers().into_iter().collect::<Vec<_>>()),
        "[a-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
    ]
}

/// A header name no built-in fingerprint reads.
fn unrelated_header_name() -> impl Strategy<Value = HeaderName> {
    let read = fingerprint_headers();
    "[a-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(move |n| {
        let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
        if read.contains(&name) {
            HeaderName::from_bytes(format!("x-not-{n}").as_bytes()).unwrap()
        } else {
            name
        }
    })
}

fn header_map(names: impl Strategy<Value = HeaderName>) -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((names, header_value_bytes()), 0..8).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(k, v);
        }
        map
    })
}

/// Bodies that sometimes carry pieces of real error pages.
fn response_body() -> impl Strategy<Value = Vec<u8>> {
    let snippets = prop::sample::select(vec![
        "<center>nginx</center>",
        "Cloudflare Ray ID",
        "error code: ",
        "Guru Meditation",
        "Varnish cache server",
        "upstream connect error or disconnect/reset before headers",
        "No server is available to handle this request.",
        "<address>Apache",
        "Generated by cloudfront (CloudFront)",
        "Reference #",
        "Bad Gateway",
        " \n\t",
    ]);
    prop::collection::vec(
        prop_oneof![
            snippets.prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

/// A recorded response from `tests/fixtures/layers/`: headers and body.
fn layer_fixture(name: &str) -> (HeaderMap, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/layers")
        .join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .expect("a blank line after the head");
    let head = std::str::from_utf8(&raw[..text_end.0]).expect("UTF-8 head");
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(':').expect("a header line");
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(v.trim()).expect("header value"),
        );
    }
    (headers, raw[text_end.1..].to_vec())
}

const ERROR_PAGES: &[&str] = &[
    "nginx-502.http",
    "haproxy-503.http",
    "envoy-503.http",
    "cloudflare-502.http",
    "apache-502.http",
    "varnish-503.http",
    "unknown-express-500.http",
    "origin-via-nginx-502.http",
];

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn attribution_always_names_a_known_layer(
        headers in header_map(header_name_strategy()),
        body in response_body(),
    ) {
        let user = tickr::diagnosis::layer::Fingerprint {
            layer: "shop_gateway".into(),
            any_of: vec![vec![Signal::Header(HeaderName::from_static("x-gateway"), "shop".into())]],
        };
        for a in [Attributor::default(), Attributor::new(vec![user.clone()], vec![vec![Signal::Body("Sorry".into())]])] {
            let layers = a.layers();
            let got = a.attribute(&headers, &body);
            prop_assert!(layers.contains(&got.layer.as_str()), "{got:?} not in {layers:?}");
            prop_assert!(!got.evidence.is_empty());
            if let Some(edge) = Chain::read(&headers).edge() {
                prop_assert!(layers.contains(&edge), "edge {edge} not in {layers:?}");
            }
            for hop in &got.relayed_by {
                prop_assert!(layers.contains(&hop.as_str()), "relay {hop} not in {layers:?}");
            }
        }
    }

    #[test]
    fn unrelated_headers_never_change_an_attribution(
        page in prop::sample::select(ERROR_PAGES),
        extra in header_map(unrelated_header_name()),
    ) {
        let (headers, body) = layer_fixture(page);
        let a = Attributor::default();
        let before = a.attribute(&headers, &body);
        let mut more = headers.clone();
        for (k, v) in &extra {
            more.append(k.clone(), v.clone());
        }
        prop_assert_eq!(a.attribute(&more, &body).layer, before.layer);
        prop_assert_eq!(Chain::read(&more).edge(), Chain::read(&headers).edge());
    }
}

#[test]
fn error_pages_are_attributed_as_their_fixture_says() {
    // The property above compares with the attribution before; pin that one too.
    let a = Attributor::default();
    let (headers, body) = layer_fixture("nginx-502.http");
    assert_eq!(a.attribute(&headers, &body).layer, "nginx");
    let (headers, body) = layer_fixture("haproxy-503.http");
    assert_eq!(a.attribute(&headers, &body).layer, "haproxy");
}

// ----- URLs: configured targets and redirects ------------------------------------------------

/// URL-shaped text: schemes, credentials, hosts of every kind, ports, odd characters.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http://",
        "https://",
        "HTTP://",
        "ftp://",
        "file://",
        "data:",
        "javascript:",
        "//",
        "",
        "http:",
        "http:/",
        "https:///",
        "h\ttp://",
    ]);
    let userinfo = prop::sample::select(vec!["", "", "", "user@", "user:pw@", ":@", "@", "a@b@"]);
    let host = prop_oneof![
        prop::sample::select(vec![
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "localhost",
            "0x7f.1",
            "2130706433",
            "example.com.",
            "xn--nxasmq6b",
            "bücher.de",
            "h}",
            "h{",
            "a_b",
            "%41",
            "",
            "[",
            "::1",
            "256.1.1.1",
            "*.example",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9.%_~!$&'()*+,;=\\[\\]:{}|^`-]{0,12}",
    ];
    let port = prop::sample::select(vec![
        "", "", ":0", ":80", ":65535", ":65536", ":-1", ":x", ":",
    ]);
    let rest = prop_oneof!["[/?#a-zA-Z0-9 %{}|^`<>\"\\\\.-]{0,16}", any::<String>(),];
    (scheme, userinfo, host, port, rest).prop_map(|(s, u, h, p, r)| format!("{s}{u}{h}{p}{r}"))
}

/// What tickr does with a URL it is about to request: the probe turns it into an `http::Uri`,
/// and over HTTP/1.1 into an origin-form request target.
fn sendable(url: &Url) -> Result<(), String> {
    let uri: http::Uri = url.as_str().parse().map_err(|e| format!("{url}: {e}"))?;
    let origin = uri.path_and_query().map_or("/", |p| p.as_str());
    origin
        .parse::<http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("{origin}: {e}"))
}

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn configured_urls_are_http_with_a_host_and_no_credentials(raw in url_like()) {
        let text = format!("targets:\n  - name: t\n    url: {}\n", yaml_quote(&raw));
        if let Some(config) = parse_checked(&text)? {
            let url = &config.targets[0].url;
            prop_assert!(matches!(url.scheme(), "http" | "https"), "{raw:?} → {url}");
            prop_assert!(url.host().is_some(), "{raw:?} → {url}");
            prop_assert!(url.username().is_empty() && url.password().is_none(), "{raw:?} → {url}");
            prop_assert!(sendable(url).is_ok(), "{raw:?} accepted but {:?}", sendable(url));
        }
    }

    #[test]
    fn redirect_locations_resolve_without_panicking(
        base in url_strategy(),
        location in prop_oneof![url_like(), any::<String>()],
    ) {
        let base = Url::parse(&base).expect("generated base URL");
        // As the probe reads it: a header value that is visible ASCII, then `Url::join`.
        let Ok(value) = HeaderValue::from_str(&location) else { return Ok(()) };
        let Ok(location) = value.to_str() else { return Ok(()) };
        if let Ok(next) = base.join(location) {
            if matches!(next.scheme(), "http" | "https") {
                prop_assert!(next.host_str().is_some_and(|h| !h.is_empty()), "{location:?} → {next}");
                prop_assert!(next.port_or_known_default().is_some());
            }
        }
    }
}

#[test]
fn urls_the_request_cannot_carry_are_refused_at_load() {
    // `url` accepts `}` in a host; `http::Uri`, which the probe builds its request from, does not.
    let text = "targets:\n  - name: t\n    url: 'http://h}/'\n";
    let e = config::parse(&config_path(), text).expect_err("refused");
    assert_eq!(e.position, Some((3, 10)), "{e}");
}

#[test]
fn durations_too_long_to_compute_with_are_refused() {
    // 2,000 × 4294967295 weeks: each part fits, the sum does not fit what tickr multiplies
    // (the default timeout is 4/5 of the interval; confirmations multiply the delay).
    let huge = "4294967295w".repeat(2000);
    for key in ["interval", "confirm_delay"] {
        let text = format!(
            "targets:\n  - name: t\n    url: http://127.0.0.1/\n    confirm: 10\n    {key}: {huge}\n"
        );
        let e = config::parse(&config_path(), &text).expect_err("refused");
        assert_eq!(e.position.map(|p| p.0), Some(5), "{key}: {e}");
    }
}

#[test]
fn errors_quoting_the_document_stay_on_one_line() {
    let e = config::parse(&config_path(), "\"a\\nb\\u001b\": 1\n").expect_err("unknown key");
    assert_eq!(e.position, Some((1, 1)));
    assert!(
        e.message.contains("unknown field `a\\nb\\u{1b}`"),
        "{}",
        e.message
    );
}

#[test]
fn a_long_bad_value_is_quoted_by_its_ends() {
    let value = format!("{}x", "9".repeat(22_000));
    let text = format!("targets:\n  - {{name: a, url: 'http://127.0.0.1/', interval: {value}}}\n");
    let e = config::parse(&config_path(), &text).expect_err("bad duration");
    assert_eq!(e.position, Some((2, 51)), "{e}");
    assert!(e.message.len() < 1_000, "{} bytes", e.message.len());
    // What it was, where it went wrong, how much is not shown, and what was expected.
    assert!(
        e.message
            .starts_with("targets[0].interval: invalid duration \"999"),
        "{e}"
    );
    assert!(e.message.contains("999x\": expected e.g. 500ms"), "{e}");
    assert!(e.message.contains("characters left out)"), "{e}");
    // A short one is left whole.
    let text = "targets:\n  - {name: a, url: 'http://127.0.0.1/', interval: 10x}\n";
    let e = config::parse(&config_path(), text).expect_err("bad duration");
    assert!(
        e.message
            .ends_with("invalid duration \"10x\": expected e.g. 500ms, 30s, 1m30s, 2h"),
        "{e}"
    );
}

// ----- Limits --------------------------------------------------------------------------------

#[test]
fn at_most_max_targets_targets() {
    let mut text = String::from("targets:\n");
    for i in 0..=tickr::limits::MAX_TARGETS {
        text.push_str(&format!("  - {{name: t{i}, url: 'http://127.0.0.1/'}}\n"));
    }
    let e = config::parse(&config_path(), &text).expect_err("one target too many");
    let first_extra = tickr::limits::MAX_TARGETS + 2;
    assert_eq!(e.position, Some((first_extra, 5)), "{e}");
    assert!(e.message.contains("at most 100000 targets"), "{e}");
}

#[test]
fn a_configuration_file_is_read_up_to_16_mib() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yml");
    let mut text = String::from("targets: []\n");
    text.push_str(&"#".repeat(tickr::limits::MAX_CONFIG_BYTES as usize - text.len()));
    std::fs::write(&path, &text).expect("write");
    config::load(&path).expect("exactly 16 MiB loads");
    text.push('\n');
    std::fs::write(&path, &text).expect("write");
    let e = config::load(&path).expect_err("one byte more is refused");
    assert!(e.to_string().ends_with("larger than 16 MiB"), "{e}");
}

#[test]
fn aliases_cannot_blow_up_a_document() {
    // "Billion laughs": each level is ten of the previous one, 10^10 strings in 300 bytes.
    // Every key's type is strict, so the first nested list is an error; the YAML library also
    // stops following aliases after 100 jumps per event. This guards both.
    let mut nested = "&a0 [x, x, x, x, x, x, x, x, x, x]".to_owned();
    for i in 1..=9 {
        nested = format!("&a{i} [{nested}{}]", format!(", *a{}", i - 1).repeat(9));
    }
    let text = format!(
        "targets:\n  - name: t\n    url: http://127.0.0.1/\n    expect:\n      body_contains: {nested}\n    labels: {{x: *a9}}\n"
    );
    let started = std::time::Instant::now();
    let e = config::parse(&config_path(), &text).expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.position.map(|p| p.0), Some(5), "{e}");
}
