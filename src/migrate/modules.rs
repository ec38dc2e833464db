//! blackbox_exporter's modules into tickr's, key by key. What has an exact equivalent is
//! written; everything else is reported with its line and what to do instead.

use std::path::Path;

use base64::Engine as _;
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
    let (mut contains, mut not_contains) = (Vec::new(), Vec::new());
    let (mut matches, mut not_matches) = (Vec::new(), Vec::new());
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
                    match literal(&re) {
                        Some(text) if negate => not_contains.push(Y::text(text)),
                        Some(text) => contains.push(Y::text(text)),
                        // Go's RE2 and the regex crate read the same syntax, but for a few
                        // corners: what the crate cannot compile is reported.
                        None => match crate::config::compile_pattern(&re) {
                            Ok(_) if negate => not_matches.push(Y::text(re)),
                            Ok(_) => matches.push(Y::text(re)),
                            Err(e) => report.at_index(
                                path,
                                &key,
                                i,
                                &format!("{re:?}: {e}: rewrite it for tickr's body_matches"),
                            ),
                        },
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
            "basic_auth" => {
                let user = value.get("username").map(scalar).unwrap_or_default();
                match value.get("password") {
                    Some(p) if value.get("password_file").is_none() => {
                        let token = base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{}", scalar(p)));
                        headers.push(("Authorization".into(), Y::text(format!("Basic {token}"))));
                    }
                    _ => report.at(
                        path,
                        here,
                        "a password read from a file: put the header \
                         `Authorization: Basic <base64 of user:password>` in `headers`",
                    ),
                }
            }
            "bearer_token" => {
                headers.push((
                    "Authorization".into(),
                    Y::text(format!("Bearer {}", scalar(value))),
                ));
            }
            "authorization" => match value.get("credentials") {
                Some(c) if value.get("credentials_file").is_none() => {
                    let kind = value.get("type").map_or("Bearer".into(), scalar);
                    headers.push((
                        "Authorization".into(),
                        Y::text(format!("{kind} {}", scalar(c))),
                    ));
                }
                _ => report.at(
                    path,
                    here,
                    "credentials read from a file: put the `Authorization` header in `headers`",
                ),
            },
            "preferred_ip_protocol" => preferred = Some(scalar(value)),
            "ip_protocol_fallback" => fallback = bool_of(value),
            "enable_http2" => {
                if !bool_of(value) {
                    m.keys.push(("http_version".into(), Y::plain("http1")));
                }
            }
            "enable_http3" if !bool_of(value) => {}
            "bearer_token_file" => report.at(
                path,
                here,
                "a token read from a file: put `Authorization: Bearer <token>` in `headers`",
            ),
            "body_file" => report.at(path, here, "a body read from a file: put it in `body`"),
            "valid_http_versions" => report.at(
                path,
                here,
                "tickr does not fail a probe on the HTTP version: it shows it in \
                 probe_http_version (/probe); `http_version: http1|http2` forces one",
            ),
            "fail_if_header_matches" | "fail_if_header_not_matches" => report.at(
                path,
                here,
                "no header checks in tickr yet: check the header in your dashboards, or keep \
                 this module in blackbox_exporter",
            ),
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
            "oauth2" => report.at(
                path,
                here,
                "no OAuth 2.0 client in tickr: a long-lived token in `headers` is the closest",
            ),
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
        (Some(p), _) => report.at(
            path,
            Some("preferred_ip_protocol"),
            &format!(
                "{p:?} with fallback: tickr's `ip_protocol: auto` takes the resolver's order \
                 (IPv6 first where the host has IPv6), `ipv4`/`ipv6` only that family"
            ),
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
    if !headers.is_empty() {
        m.keys.push(("headers".into(), Y::Map(headers)));
    }
    proxy.write(path, m, report);
    if !contains.is_empty() {
        expect.push(("body_contains".into(), Y::List(contains)));
    }
    if !not_contains.is_empty() {
        expect.push(("body_not_contains".into(), Y::List(not_contains)));
    }
    if !matches.is_empty() {
        expect.push(("body_matches".into(), Y::List(matches)));
    }
    if !not_matches.is_empty() {
        expect.push(("body_not_matches".into(), Y::List(not_matches)));
    }
    if !expect.is_empty() {
        m.keys.push(("expect".into(), Y::Map(expect)));
    }
    if !tls.is_empty() {
        m.keys.push(("tls".into(), Y::Map(tls)));
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
                "proxy_url and proxy_from_environment together (blackbox_exporter refuses                  them too): keep one and set it by hand",
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
