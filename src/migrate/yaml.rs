//! The YAML `tickr migrate` writes: a small tree of mappings, lists and scalars, every string
//! quoted (as JSON, which YAML reads), so that no value changes its meaning on the way.

use std::fmt::Write as _;

/// A node of the configuration being written.
#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    /// Written as it is: a number, a boolean, a duration.
    Plain(String),
    /// Written quoted.
    Text(String),
    Map(Vec<(String, Y)>),
    List(Vec<Y>),
}

impl Y {
    pub fn text(s: impl Into<String>) -> Self {
        Y::Text(s.into())
    }

    pub fn plain(s: impl Into<String>) -> Self {
        Y::Plain(s.into())
    }
}

/// A key as YAML reads it back exactly: bare when it is a plain word, else quoted.
fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !k.starts_with(['-', '.'])
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && k.parse::<f64>().is_err();
    if plain {
        k.to_owned()
    } else {
        quote(k)
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string is JSON")
}

fn scalar(y: &Y) -> Option<String> {
    match y {
        Y::Plain(p) => Some(p.clone()),
        Y::Text(t) => Some(quote(t)),
        Y::Map(m) if m.is_empty() => Some("{}".into()),
        Y::List(l) if l.is_empty() => Some("[]".into()),
        _ => None,
    }
}

/// Writes the entries of a mapping at `indent` spaces.
pub fn write_map(out: &mut String, entries: &[(String, Y)], indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in entries {
        match scalar(v) {
            Some(s) => {
                let _ = writeln!(out, "{pad}{}: {s}", key(k));
            }
            None => {
                let _ = writeln!(out, "{pad}{}:", key(k));
                write_value(out, v, indent + 2);
            }
        }
    }
}

fn write_value(out: &mut String, v: &Y, indent: usize) {
    match v {
        Y::Map(m) => write_map(out, m, indent),
        Y::List(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match (scalar(item), item) {
                    (Some(s), _) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    (None, Y::Map(m)) => {
                        // The first entry on the dash's line, the rest under it.
                        let mut first = String::new();
                        write_map(&mut first, &m[..1], 0);
                        let _ = write!(out, "{pad}- {first}");
                        write_map(out, &m[1..], indent + 2);
                    }
                    (None, other) => {
                        let _ = writeln!(out, "{pad}-");
                        write_value(out, other, indent + 2);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(
                out,
                "{}{}",
                " ".repeat(indent),
                scalar(other).unwrap_or_default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let tree = vec![
            (
                "modules".to_owned(),
                Y::Map(vec![(
                    "http 2xx".to_owned(),
                    Y::Map(vec![
                        ("timeout".into(), Y::plain("5s")),
                        (
                            "headers".into(),
                            Y::Map(vec![("X-Yes".into(), Y::text("no"))]),
                        ),
                    ]),
                )]),
            ),
            (
                "targets".to_owned(),
                Y::List(vec![Y::Map(vec![
                    ("name".into(), Y::text("a: b")),
                    ("labels".into(), Y::Map(vec![("on".into(), Y::text("1"))])),
                ])]),
            ),
        ];
        let mut out = String::new();
        write_map(&mut out, &tree, 0);
        let back: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(
            back["modules"]["http 2xx"]["headers"]["X-Yes"], "no",
            "{out}"
        );
        assert_eq!(back["targets"][0]["name"], "a: b", "{out}");
        assert_eq!(back["targets"][0]["labels"]["on"], "1", "{out}");
    }
}
