//! A tiny HTTP client and an OpenMetrics text parser, so tests compare values, not raw text
//! (series order in the exposition is hash order).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The `Accept` header Prometheus sends when it scrapes (2.42): OpenMetrics first, then the text
/// format. tickr answers OpenMetrics to it, and the text format to clients that do not ask.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One HTTP/1.1 request on a fresh connection.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses OpenMetrics, or the text format 0.0.4 (what tickr answers a client that does not
    /// ask for OpenMetrics); panics on anything malformed (that is a test failure). OpenMetrics
    /// must end with `# EOF`; a text-format body cut short fails in its HTTP framing instead.
    pub fn parse(text: &str) -> Self {
        if text.contains("# EOF") {
            assert!(text.ends_with("# EOF\n"), "exposition must end with # EOF");
        } else {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "exposition cut short"
            );
        }
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            samples
                .push(parse_line(line).unwrap_or_else(|| panic!("malformed sample line: {line}")));
        }
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples named `name` whose labels include every pair in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample matching; `None` if there is none, panics if several match.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self.find(name, labels).collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// Like [`get`](Self::get), treating a missing series as 0.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample carrying `target="<name>"`.
    pub fn series_of(&self, target: &str) -> usize {
        self.samples
            .iter()
            .filter(|s| s.labels.get("target").map(String::as_str) == Some(target))
            .count()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    // Drop an exemplar, if any: `... value # {labels} value`.
    let line = match line.find(" # ") {
        Some(i) => &line[..i],
        None => line,
    };
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some(Sample {
                name: n.to_owned(),
                labels: BTreeMap::new(),
                value: parse_value(v)?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest[1..].char_indices().peekable();
    let body = &rest[1..];
    let end;
    loop {
        let (start, c) = *chars.peek()?;
        if c == '}' {
            end = start;
            break;
        }
        if c == ',' {
            chars.next();
            continue;
        }
        let eq = body[start..].find('=')? + start;
        let key = body[start..eq].to_owned();
        while chars.peek()?.0 <= eq {
            chars.next();
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    let value_text = body[end + 1..].trim();
    let value_text = value_text.split(' ').next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value_text)?,
    })
}

fn parse_value(v: &str) -> Option<f64> {
    match v.trim() {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

#[test]
fn parses_labels_with_escapes() {
    let text = "# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uo,te}\"} 3\ny 4.5\n# EOF\n";
    let e = Exposition::parse(text);
    assert_eq!(e.get("x_total", &[("b", "q\"uo,te}")]), Some(3.0));
    assert_eq!(e.get("y", &[]), Some(4.5));
}
