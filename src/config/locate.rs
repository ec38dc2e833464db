//! Finds the line and column of a node in a YAML document, for errors found after parsing.
//!
//! serde_yaml keeps no spans, but it does position every error raised while a node is being
//! deserialized. So to locate `targets[3].timeout` we walk the document again with a seed that
//! fails on purpose when it reaches that node, and read the position off the error.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// The value under a fixed key.
    Key(&'static str),
    /// The value under a key named at run time (a header, a label).
    Field(String),
    /// The `n`th occurrence (0-based) of a key itself rather than its value: for errors about
    /// the key, such as an invalid header name or a key given twice. Must end the path.
    Name(String, usize),
    Index(usize),
}

impl Seg {
    fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Field(k) | Seg::Name(k, _) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

/// Reads a path out of a serde_yaml message prefix such as `targets[0].expect.status`.
pub fn parse_path(text: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in text.split('.') {
        let (name, indices) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            path.push(Seg::Field(name.to_owned()));
        }
        for index in indices.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                path.push(Seg::Index(i));
            }
        }
    }
    path
}

/// Line and column (both 1-based) of the node at `path`, or of the deepest ancestor that exists.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    for depth in (0..=path.len()).rev() {
        let seed = Locator(&path[..depth]);
        let deserializer = serde_yaml::Deserializer::from_str(text);
        if let Err(err) = seed.deserialize(deserializer) {
            if err.to_string().contains(MARKER) {
                if let Some(loc) = err.location() {
                    return Some((loc.line(), loc.column()));
                }
            }
        }
    }
    None
}

/// The text of the scalars at `paths` exactly as written (YAML reads `0x1F` as the number 31;
/// this reads `0x1F`), in one walk of the document: each path with a scalar there, and its text.
pub fn scalars(text: &str, paths: &[Vec<Seg>]) -> Vec<(Vec<Seg>, String)> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let paths: Vec<&[Seg]> = paths.iter().map(Vec::as_slice).collect();
    Walker { depth: 0, paths }
        .deserialize(deserializer)
        .unwrap_or_default()
}

/// Walks the document down the branches that lead to one of `paths`, and reads each as text.
struct Walker<'p> {
    depth: usize,
    paths: Vec<&'p [Seg]>,
}

type Scalars = Vec<(Vec<Seg>, String)>;

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = Scalars;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalars, D::Error> {
        if let Some(path) = self.paths.iter().find(|p| p.len() == self.depth) {
            return Ok(vec![(path.to_vec(), String::deserialize(d)?)]);
        }
        match self.paths.first().map(|p| &p[self.depth]) {
            Some(Seg::Index(_)) => d.deserialize_seq(self),
            _ => d.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = Scalars;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalars, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let paths: Vec<&[Seg]> = (self.paths.iter().copied())
                .filter(|p| p[self.depth].key() == Some(key.as_str()))
                .collect();
            if paths.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                let depth = self.depth + 1;
                found.extend(map.next_value_seed(Walker { depth, paths })?);
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalars, A::Error> {
        let mut found = Vec::new();
        for i in 0.. {
            let paths: Vec<&[Seg]> = (self.paths.iter().copied())
                .filter(|p| p[self.depth] == Seg::Index(i))
                .collect();
            let more = if paths.is_empty() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                let depth = self.depth + 1;
                let next = seq.next_element_seed(Walker { depth, paths })?;
                next.map(|f| found.extend(f)).is_some()
            };
            if !more {
                break;
            }
        }
        Ok(found)
    }
}

const MARKER: &str = "tickr-locate-marker";

struct Locator<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Locator<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.0.first() {
            None => deserializer.deserialize_any(Found),
            Some(Seg::Index(_)) => deserializer.deserialize_seq(self),
            Some(_) => deserializer.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for Locator<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(want) = self.0.first().and_then(Seg::key) else {
            return Ok(());
        };
        if let Some(Seg::Name(_, nth)) = self.0.first() {
            let mut seen = 0;
            while let Some(matched) = map.next_key_seed(KeyProbe {
                want,
                fail: seen == *nth,
            })? {
                seen += usize::from(matched);
                map.next_value::<IgnoredAny>()?;
            }
            return Ok(());
        }
        while let Some(key) = map.next_key::<String>()? {
            if key == want {
                return map.next_value_seed(Locator(&self.0[1..]));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Seg::Index(want)) = self.0.first() else {
            return Ok(());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Locator(&self.0[1..]))?;
        Ok(())
    }
}

/// Reads a mapping key; fails on the key `want` when `fail` is set, so the error carries the
/// key's own position. Otherwise says whether the key was `want`.
struct KeyProbe<'a> {
    want: &'a str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let matched = v == self.want;
        if self.fail && matched {
            return Err(E::custom(MARKER));
        }
        Ok(matched)
    }
}

/// Fails on whatever node it is handed, so that the error carries that node's position.
struct Found;

impl<'de> Visitor<'de> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(MARKER)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(MARKER))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(MARKER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_nodes() {
        let doc = "defaults:\n  interval: 1m\ntargets:\n  - name: a\n    url: x\n  - name: b\n    timeout: 2m\n";
        assert_eq!(
            locate(doc, &[Seg::Key("defaults"), Seg::Key("interval")]),
            Some((2, 13))
        );
        let timeout = [Seg::Key("targets"), Seg::Index(1), Seg::Key("timeout")];
        assert_eq!(locate(doc, &timeout), Some((7, 14)));
        let key = [
            Seg::Key("targets"),
            Seg::Index(1),
            Seg::Name("timeout".into(), 0),
        ];
        assert_eq!(locate(doc, &key), Some((7, 5)));
        let twice = "a: 1\nb: 2\na: 3\n";
        assert_eq!(locate(twice, &[Seg::Name("a".into(), 1)]), Some((3, 1)));
        assert_eq!(
            parse_path("targets[1].timeout"),
            vec![
                Seg::Field("targets".into()),
                Seg::Index(1),
                Seg::Field("timeout".into())
            ]
        );
        let key = vec![Seg::Key("h"), Seg::Field("X-Key".into())];
        let list = vec![Seg::Key("l"), Seg::Index(1)];
        assert_eq!(
            scalars(
                "h: {X-Key: 0x1F, b: 2}\nl: [1, 1.50]\n",
                &[key.clone(), list.clone()]
            ),
            vec![(key, "0x1F".into()), (list, "1.50".into())]
        );
        // A missing key falls back to its parent: the second target.
        let missing = [Seg::Key("targets"), Seg::Index(1), Seg::Key("url")];
        assert_eq!(locate(doc, &missing), Some((6, 5)));
    }
}
