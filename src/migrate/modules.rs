//! blackbox_exporter's modules into tickr's, key by key. What has an exact equivalent is
//! written; everything else is reported with its line and what to do instead.

use std::path::Path;

use serde_yaml::Value;

use super::yaml::Y;
use super::Report;

/// One converted module: its name and its keys.
pub struct Module {
    pub name: String,
    pub keys: Vec<(String, Y)>,
    /// The module's own timeout, if it sets one (targets' intervals must exceed it).
    pub timeout: Option<std::time::Duration>,
}

/// Every module of `blackbox.yml` that tickr can run (`prober: http`), converted.
pub fn convert(doc: &Value, dir: &Path, report: &mut Report) -> Vec<Module> {
    let mut out = Vec::new();
    let Some(modules) = doc.get("modules").and_then(Value::as_mapping) else {
        return out;
    };
    for (name, module) in modules {
        let name = scalar(name);
        let path = vec!["modules".to_owned(), name.clone()];
        let prober = module.get("prober").map(scalar).unwrap_or_default();
        if prober != "http" {
            report.at(
                &path,
                None,
                &format!(
                    "prober {prober:?} has no tickr equivalent (tickr probes HTTP and HTTPS): \
                     keep blackbox_exporter for this module"
                ),
            );
            continue;
        }
        let mut m = Module {
            name: name.clone(),
            keys: Vec::new(),
            timeout: None,
        };
        for (key, value) in module.as_mapping().into_iter().flatten() {
            let key = scalar(key);
            match key.as_str() {
                "prober" => {}
                "timeout" => match crate::config::HumanDuration::parse(&scalar(value)) {
                    Ok(d) => {
                        m.timeout = Some(d.0);
                        m.keys.push(("timeout".into(), Y::plain(d.to_string())));
                    }
                    Err(e) => report.at(&path, Some(&key), &e),
                },
                "http" => http(
                    value,
                    dir,
                    &[path.clone(), vec![key]].concat(),
                    &mut m,
                    report,
                ),
                _ => report.at(&path, Some(&key), "not used by the http prober: left out"),
            }
        }
        out.push(m);
    }
    out
}

/// The keys of a module's `http:` section.
fn http(section: &Value, dir: &Path, path: &[String], m: &mut Module, report: &mut Report) {
    let mut headers: Vec<(String, Y)> = Vec::new();
    let mut expect: Vec<(String, Y)> = Vec::new();
    let mut body = Matchers::default();
    // By lowercase header name: the name as written, `allow_missing`, the checks.
    let mut header_checks: Vec<(String, String, bool, Matchers)> = Vec::new();
    let mut versions: Vec<Y> = Vec::new();
    // The first way of authenticating that converts, with its key.
    let mut auth: Option<(String, Auth)> = None;
    let mut tls: Vec<(String, Y)> = Vec::new();
    let (mut preferred, mut fallback) = (None, true);
    let mut proxy = ProxySection::default();
    // `fail_if_ssl` and `fail_if_not_ssl`, when true.
    let (mut if_ssl, mut if_not_ssl) = (false, false);
    for (key, value) in section.as_mapping().into_iter().flatten() {
        let key = scalar(key);
        let here = Some(key.as_str());
        match key.as_str() {
            "valid_status_codes" => {
                let codes: Vec<Y> = list(value).iter().map(|c| Y::plain(scalar(c))).collect();
                if !codes.is_empty() {
                    expect.push(("status".into(), Y::List(codes)));
                }
            }
            "method" => m.keys.push(("method".into(), Y::text(scalar(value)))),
            "headers" => {
                for (name, v) in value.as_mapping().into_iter().flatten() {
                    headers.push((scalar(name), Y::text(scalar(v))));
                }
            }
            "body" => m.keys.push(("body".into(), Y::text(scalar(value)))),
            "follow_redirects" => m.keys.push((
                "follow_redirects".into(),
                Y::plain(bool_of(value).to_string()),
            )),
            "no_follow_redirects" => m.keys.push((
                "follow_redirects".into(),
                Y::plain((!bool_of(value)).to_string()),
            )),
            "fail_if_ssl" => if_ssl = bool_of(value),
            "fail_if_not_ssl" => if_not_ssl = bool_of(value),
            "fail_if_body_matches_regexp" | "fail_if_body_not_matches_regexp" => {
                let negate = key == "fail_if_body_matches_regexp";
                for (i, re) in list(value).iter().enumerate() {
                    let re = scalar(re);
                    if let Err(e) = body.add(&re, negate) {
                        report.at_index(
                            path,
                            &key,
                            i,
                            &format!("{re:?}: {e}: rewrite it for tickr's body_matches"),
                        );
                    }
                }
            }
            "fail_if_header_matches" | "fail_if_header_not_matches" => {
                let negate = key == "fail_if_header_matches";
                for (i, spec) in list(value).iter().enumerate() {
                    if let Err(e) = header_check(spec, negate, &mut header_checks) {
                        report.at_index(path, &key, i, &e);
                    }
                }
            }
            "valid_http_versions" => {
                for (i, v) in list(value).iter().enumerate() {
                    match scalar(v).as_str() {
                        v @ ("HTTP/1.0" | "HTTP/1.1" | "HTTP/2" | "HTTP/2.0") => {
                            versions.push(Y::text(v))
                        }
                        v => report.at_index(
                            path,
                            &key,
                            i,
                            &format!("{v:?}: tickr speaks HTTP/1.0, 1.1 and 2 only: left out"),
                        ),
                    }
                }
            }
            "tls_config" => tls_config(
                value,
                dir,
                &[path, std::slice::from_ref(&key)].concat(),
                &mut tls,
                report,
            ),
            "basic_auth" | "authorization" | "bearer_token" | "bearer_token_file" | "oauth2" => {
                match (&auth, convert_auth(&key, value, dir)) {
                    (Some((first, _)), _) => report.at(
                        path,
                        here,
                        &format!(
                            "blackbox_exporter takes one way of authenticating, and {first} is \
                             converted: left out"
                        ),
                    ),
                    (None, Ok(a)) => auth = Some((key.clone(), a)),
                    (None, Err(e)) => report.at(path, here, &e),
                }
            }
            "http_headers" => {
                for (name, spec) in value.as_mapping().into_iter().flatten() {
                    match http_header(spec, dir) {
                        Ok(Some(v)) => headers.push((scalar(name), v)),
                        Ok(None) => {}
                        Err(e) => report.at(path, here, &format!("{}: {e}", scalar(name))),
                    }
                }
            }
            "source_ip_address" => m
                .keys
                .push(("source_address".into(), Y::text(scalar(value)))),
            "body_file" => {
                let file = dir.join(scalar(value));
                m.keys
                    .push(("body_file".into(), Y::text(file.to_string_lossy())));
            }
            "preferred_ip_protocol" => preferred = Some(scalar(value)),
            "ip_protocol_fallback" => fallback = bool_of(value),
            "enable_http2" => {
                if !bool_of(value) {
                    m.keys.push(("http_version".into(), Y::plain("http1")));
                }
            }
            "enable_http3" if !bool_of(value) => {}
            "proxy_url" => proxy.url = Some(scalar(value)),
            "proxy_from_environment" => proxy.from_environment = bool_of(value),
            "no_proxy" => match crate::config::NoProxy::parse(scalar(value).split(',')) {
                Ok(_) => proxy.no_proxy = Some(scalar(value)),
                Err(e) => report.at(path, here, &format!("{e}: left out")),
            },
            // Go sends each value of a header as a line of its own; one line with the values
            // joined by commas means the same to HTTP.
            "proxy_connect_header" => {
                for (name, values) in value.as_mapping().into_iter().flatten() {
                    let values: Vec<String> = list(values).iter().map(scalar).collect();
                    proxy
                        .headers
                        .push((scalar(name), Y::text(values.join(", "))));
                }
            }
            "compression" => report.at(
                path,
                here,
                "tickr sends no Accept-Encoding and reads bodies as sent: left out",
            ),
            _ => report.at(path, here, "no tickr equivalent: left out"),
        }
    }
    match (preferred.as_deref(), fallback) {
        (Some("ip4"), false) => m.keys.push(("ip_protocol".into(), Y::plain("ipv4"))),
        (Some("ip6"), false) => m.keys.push(("ip_protocol".into(), Y::plain("ipv6"))),
        (Some("ip4"), true) => m.keys.push(("ip_protocol".into(), Y::plain("prefer_ipv4"))),
        (Some("ip6"), true) => m.keys.push(("ip_protocol".into(), Y::plain("prefer_ipv6"))),
        (Some(p), _) => report.at(
            path,
            Some("preferred_ip_protocol"),
            &format!("{p:?}: blackbox_exporter's are ip4 and ip6: left out"),
        ),
        (None, _) => {}
    }
    // Both judge the final response's connection, as `expect.tls` does.
    match (if_ssl, if_not_ssl) {
        (true, true) => report.at(
            path,
            Some("fail_if_ssl"),
            "with fail_if_not_ssl too, every probe fails: left out",
        ),
        (true, false) => expect.push(("tls".into(), Y::plain("forbidden"))),
        (false, true) => expect.push(("tls".into(), Y::plain("required"))),
        (false, false) => {}
    }
    // As blackbox_exporter's client, an `Authorization` in `headers` wins over the rest.
    let has_authorization = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    match auth {
        Some((key, _)) if has_authorization => report.at(
            path,
            Some(&key),
            "`headers` has an Authorization, which blackbox_exporter sends instead: left out",
        ),
        Some((_, Auth::Header(value))) => headers.push(("Authorization".into(), value)),
        Some((_, Auth::Key(key, value))) => m.keys.push((key, value)),
        None => {}
    }
    if !headers.is_empty() {
        m.keys.push(("headers".into(), Y::Map(headers)));
    }
    proxy.write(path, m, report);
    body.write("body_", &mut expect);
    if !header_checks.is_empty() {
        let checks = header_checks
            .into_iter()
            .map(|(_, name, allow_missing, matchers)| {
                let mut keys = Vec::new();
                matchers.write("", &mut keys);
                if allow_missing {
                    keys.push(("allow_missing".into(), Y::plain("true")));
                }
                (name, Y::Map(keys))
            })
            .collect();
        expect.push(("headers".into(), Y::Map(checks)));
    }
    if !versions.is_empty() {
        expect.push(("http_versions".into(), Y::List(versions)));
    }
    if !expect.is_empty() {
        m.keys.push(("expect".into(), Y::Map(expect)));
    }
    if !tls.is_empty() {
        m.keys.push(("tls".into(), Y::Map(tls)));
    }
}

/// Substring and regex matchers from blackbox's regular expressions: one that matches only one
/// text becomes a substring (blackbox's unanchored search of it is a substring search).
#[derive(Default)]
struct Matchers {
    contains: Vec<Y>,
    not_contains: Vec<Y>,
    matches: Vec<Y>,
    not_matches: Vec<Y>,
}

impl Matchers {
    /// `re` as a matcher that must (`negate`: must not) match. Go's RE2 and the regex crate read
    /// the same syntax but for a few corners: what the crate cannot compile is the error. A
    /// repeated expression is one check.
    fn add(&mut self, re: &str, negate: bool) -> Result<(), String> {
        let (list, text) = match literal(re) {
            Some(text) if negate => (&mut self.not_contains, text),
            Some(text) => (&mut self.contains, text),
            None => {
                if re.is_empty() {
                    return Err("an empty expression matches everything".into());
                }
                crate::config::compile_pattern(re)?;
                let list = if negate {
                    &mut self.not_matches
                } else {
                    &mut self.matches
                };
                (list, re.to_owned())
            }
        };
        let y = Y::text(text);
        if !list.contains(&y) {
            list.push(y);
        }
        Ok(())
    }

    /// The non-empty lists, their keys prefixed (`body_contains`, or `contains` of a header).
    fn write(self, prefix: &str, out: &mut Vec<(String, Y)>) {
        let lists = [
            ("contains", self.contains),
            ("not_contains", self.not_contains),
            ("matches", self.matches),
            ("not_matches", self.not_matches),
        ];
        for (key, list) in lists {
            if !list.is_empty() {
                out.push((format!("{prefix}{key}"), Y::List(list)));
            }
        }
    }
}

/// One of `fail_if_header_matches` / `fail_if_header_not_matches` (`negate`: the first), added
/// to the checks of its header. tickr has one `allow_missing` per header: checks of one header
/// that disagree on it cannot be written.
fn header_check(
    spec: &Value,
    negate: bool,
    checks: &mut Vec<(String, String, bool, Matchers)>,
) -> Result<(), String> {
    let name = spec.get("header").map(scalar).unwrap_or_default();
    if name.is_empty() {
        return Err("a check without a header name: left out".into());
    }
    let re = spec.get("regexp").map(scalar).unwrap_or_default();
    let allow_missing = spec.get("allow_missing").is_some_and(bool_of);
    let lower = name.to_ascii_lowercase();
    let i = match checks.iter().position(|c| c.0 == lower) {
        Some(i) if checks[i].2 != allow_missing => {
            return Err(format!(
                "{name}: allow_missing differs from another check of the header, and tickr \
                 has one allow_missing per header: left out"
            ))
        }
        Some(i) => i,
        None => {
            checks.push((lower, name.clone(), allow_missing, Matchers::default()));
            checks.len() - 1
        }
    };
    checks[i]
        .3
        .add(&re, negate)
        .map_err(|e| format!("{name}: {re:?}: {e}: rewrite it for tickr's expect.headers"))
}

/// How a module authenticates, in tickr's terms.
enum Auth {
    /// An `Authorization` header, written as it is.
    Header(Y),
    /// A key of its own: `basic_auth`, `bearer_token_file`.
    Key(String, Y),
}

/// One of blackbox's ways of authenticating (prometheus/common's HTTP client settings).
/// Relative files are read from blackbox's configuration directory, so they are made absolute.
fn convert_auth(key: &str, value: &Value, dir: &Path) -> Result<Auth, String> {
    let file = |v: &Value| Y::text(dir.join(scalar(v)).to_string_lossy());
    match key {
        "basic_auth" => {
            if value.get("username_file").is_some() {
                return Err(
                    "a username read from a file: tickr reads only the password from \
                            a file; write the username in basic_auth"
                        .into(),
                );
            }
            let mut keys = vec![(
                "username".to_owned(),
                Y::text(value.get("username").map(scalar).unwrap_or_default()),
            )];
            match (value.get("password"), value.get("password_file")) {
                (_, Some(f)) => keys.push(("password_file".into(), file(f))),
                (p, None) => keys.push((
                    "password".into(),
                    Y::text(p.map(scalar).unwrap_or_default()),
                )),
            }
            Ok(Auth::Key("basic_auth".into(), Y::Map(keys)))
        }
        "bearer_token" => Ok(Auth::Header(Y::text(format!("Bearer {}", scalar(value))))),
        "bearer_token_file" => Ok(Auth::Key("bearer_token_file".into(), file(value))),
        "authorization" => {
            let kind = value.get("type").map_or("Bearer".into(), scalar);
            match (value.get("credentials"), value.get("credentials_file")) {
                (Some(c), None) => Ok(Auth::Header(Y::text(format!("{kind} {}", scalar(c))))),
                (None, Some(f)) if kind.eq_ignore_ascii_case("bearer") => {
                    Ok(Auth::Key("bearer_token_file".into(), file(f)))
                }
                _ => Err(format!(
                    "{kind} credentials read from a file: tickr reads a Bearer token from a file \
                     (bearer_token_file) or a whole header value (`headers: {{Authorization: \
                     {{file: ...}}}}`, the file holding \"{kind} <credentials>\")"
                )),
            }
        }
        _ => Err(
            "no OAuth 2.0 client in tickr: a long-lived token in `headers` is the closest".into(),
        ),
    }
}

/// One header of prometheus/common's `http_headers` (`values`, `secrets`, `files`): tickr sends
/// one value per header, written inline or read from one file. `None`: nothing to send.
fn http_header(spec: &Value, dir: &Path) -> Result<Option<Y>, String> {
    let texts: Vec<String> = ["values", "secrets"]
        .iter()
        .flat_map(|k| spec.get(*k).map(list).unwrap_or_default())
        .map(|v| scalar(&v))
        .collect();
    let files = spec.get("files").map(list).unwrap_or_default();
    match (texts.len(), files.len()) {
        (0, 0) => Ok(None),
        (_, 0) => Ok(Some(Y::text(texts.join(", ")))),
        (0, 1) => {
            let file = dir.join(scalar(&files[0]));
            Ok(Some(Y::Map(vec![(
                "file".into(),
                Y::text(file.to_string_lossy()),
            )])))
        }
        _ => Err(
            "values from several files, or from files and text: tickr sends one value per \
                  header, inline or from one file: left out"
                .into(),
        ),
    }
}

/// The proxy keys of a module's `http:` section (prometheus/common's HTTP client settings),
/// written together once the section is read.
#[derive(Default)]
struct ProxySection {
    url: Option<String>,
    from_environment: bool,
    no_proxy: Option<String>,
    headers: Vec<(String, Y)>,
}

impl ProxySection {
    fn write(self, path: &[String], m: &mut Module, report: &mut Report) {
        match (self.url, self.from_environment) {
            (Some(_), true) => report.at(
                path,
                Some("proxy_from_environment"),
                "proxy_url and proxy_from_environment together (blackbox_exporter refuses \
                 them too): keep one and set it by hand",
            ),
            (Some(url), false) => m.keys.push(("proxy_url".into(), Y::text(url))),
            (None, true) => m
                .keys
                .push(("proxy_from_environment".into(), Y::plain("true"))),
            (None, false) => {}
        }
        if let Some(no_proxy) = self.no_proxy {
            m.keys.push(("no_proxy".into(), Y::text(no_proxy)));
        }
        if !self.headers.is_empty() {
            m.keys
                .push(("proxy_connect_headers".into(), Y::Map(self.headers)));
        }
    }
}

fn tls_config(
    value: &Value,
    dir: &Path,
    path: &[String],
    tls: &mut Vec<(String, Y)>,
    report: &mut Report,
) {
    for (key, v) in value.as_mapping().into_iter().flatten() {
        let key = scalar(key);
        match key.as_str() {
            "insecure_skip_verify" => tls.push((key, Y::plain(bool_of(v).to_string()))),
            "server_name" => tls.push((key, Y::text(scalar(v)))),
            // blackbox_exporter reads relative paths from its configuration's directory.
            "ca_file" | "cert_file" | "key_file" => {
                let file = dir.join(scalar(v));
                tls.push((key, Y::text(file.to_string_lossy())));
            }
            // Go spells them TLS10..TLS13; tickr's TLS library speaks 1.2 and 1.3 only.
            "min_version" | "max_version" => match (key.as_str(), scalar(v).as_str()) {
                (_, version @ ("TLS12" | "TLS13")) => tls.push((key, Y::plain(version))),
                ("min_version", version @ ("TLS10" | "TLS11")) => report.at(
                    path,
                    Some(&key),
                    &format!(
                        "{version}: tickr speaks TLS 1.2 and 1.3 only, so a server that offers \
                         nothing newer fails with reason tls; left out (TLS 1.2 is the least)"
                    ),
                ),
                (_, version) => report.at(
                    path,
                    Some(&key),
                    &format!(
                        "{version}: tickr speaks TLS 1.2 and 1.3 only (TLS12, TLS13): left out"
                    ),
                ),
            },
            _ => report.at(path, Some(&key), "no tickr equivalent: left out"),
        }
    }
}

/// The text a regular expression matches when it matches only one text (escaped punctuation
/// allowed), as blackbox's unanchored search of it equals a substring search.
pub fn literal(re: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => out.push(e),
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                return None
            }
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn bool_of(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

pub fn list(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_with_proxy_from_environment_is_reported_not_guessed() {
        let text = "modules:\n  m:\n    prober: http\n    http:\n      proxy_url: http://p:3128\n      proxy_from_environment: true\n      no_proxy: \"10.0.0.0/99\"\n";
        let doc: Value = serde_yaml::from_str(text).unwrap();
        let mut report = Report::new(Path::new("blackbox.yml"), text);
        let modules = convert(&doc, Path::new("."), &mut report);
        let keys: Vec<&str> = modules[0].keys.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!keys.iter().any(|k| k.contains("proxy")), "{keys:?}");
        let lines = report.take();
        assert!(
            lines[0].starts_with(
                "blackbox.yml:6: modules.m.http.proxy_from_environment: proxy_url and"
            ),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with(
                "blackbox.yml:7: modules.m.http.no_proxy: no_proxy entry \"10.0.0.0/99\""
            ),
            "{lines:?}"
        );
    }

    /// The module's keys as written, and the report.
    fn convert_http(http: &str) -> (String, Vec<String>) {
        let text = format!("modules:\n  m:\n    prober: http\n    http:\n{http}");
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let mut report = Report::new(Path::new("blackbox.yml"), &text);
        let modules = convert(&doc, Path::new("/etc/blackbox"), &mut report);
        let mut out = String::new();
        super::super::yaml::write_map(&mut out, &modules[0].keys, 0);
        (out, report.take())
    }

    #[test]
    fn header_checks_that_disagree_on_allow_missing_are_reported() {
        let (out, report) = convert_http(
            "      fail_if_header_matches:\n        - {header: X-Error, regexp: '.+', allow_missing: true}\n      fail_if_header_not_matches:\n        - {header: x-error, regexp: 'ok'}\n        - {header: Server, regexp: 'nginx/1\\.2[0-9]'}\n",
        );
        assert!(
            out.contains(
                "X-Error:\n      not_matches:\n        - \".+\"\n      allow_missing: true"
            ),
            "{out}"
        );
        assert!(out.contains("Server:\n      matches:"), "{out}");
        assert!(!out.contains("\"ok\""), "{out}");
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].starts_with("blackbox.yml:8: modules.m.http.fail_if_header_not_matches[0]: x-error: allow_missing differs"),
            "{report:?}"
        );
    }

    #[test]
    fn credentials_from_files_become_tickr_keys_or_are_reported() {
        let (out, report) = convert_http("      authorization: {credentials_file: token}\n");
        assert!(
            out.contains("bearer_token_file: \"/etc/blackbox/token\""),
            "{out}"
        );
        assert!(report.is_empty(), "{report:?}");
        let (out, report) = convert_http(
            "      authorization: {type: Token, credentials_file: token}\n      bearer_token: abc\n",
        );
        // What cannot be converted is reported, and the next way converts.
        assert!(out.contains("Authorization: \"Bearer abc\""), "{out}");
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].contains("Token credentials read from a file"),
            "{report:?}"
        );
    }

    #[test]
    fn only_literal_expressions_become_substrings() {
        assert_eq!(literal("Bad Gateway").as_deref(), Some("Bad Gateway"));
        assert_eq!(
            literal(r"<title>Shop \(EU\)").as_deref(),
            Some("<title>Shop (EU)")
        );
        assert_eq!(literal("a.b"), None);
        assert_eq!(literal(r"\d+"), None);
        assert_eq!(literal("^ok$"), None);
        assert_eq!(literal("a|b"), None);
    }
}
