//! What a configuration error is: a file, a 1-based line and column, and a one-line message;
//! and [`Invalid`], a validation error still holding the path of the node it is about.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use super::locate::{parse_path, Seg};
use crate::limits::MESSAGE_END;

/// A configuration that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; `None` when the file could not be read at all.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// An error is one line (`file:line:col: message`, in logs too), but serde quotes keys as they
/// are: escape line breaks and other control characters. Messages quote the offending value,
/// which can be as long as the file; a long one keeps its start and end, which hold what the
/// value was and what was expected.
pub(crate) fn one_line(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    let left_out = chars.len().saturating_sub(2 * MESSAGE_END);
    let mut out = String::new();
    if left_out > 32 {
        escape_into(&mut out, &chars[..MESSAGE_END]);
        let _ = write!(out, "…({left_out} characters left out)…");
        escape_into(&mut out, &chars[chars.len() - MESSAGE_END..]);
    } else {
        escape_into(&mut out, &chars);
    }
    out
}

fn escape_into(out: &mut String, chars: &[char]) {
    for &c in chars {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// serde_yaml writes " at line L column C" into its messages; tickr puts the position in front.
pub(crate) fn strip_positions(message: &str) -> String {
    let mut out = message.to_owned();
    while let Some(start) = out.find(" at line ") {
        let rest = &out[start + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let line_len = digits(rest);
        let Some(after) = rest[line_len..].strip_prefix(" column ") else {
            break;
        };
        let end = start + " at line ".len() + line_len + " column ".len() + digits(after);
        out.replace_range(start..end, "");
    }
    out
}

/// `targets[0]: duplicate field `interval`` → the mapping's path and the key.
pub(super) fn duplicate_field(message: &str) -> Option<(Vec<Seg>, String)> {
    let (path, rest) = match message.split_once(": duplicate field `") {
        Some(split) => split,
        None => ("", message.strip_prefix("duplicate field `")?),
    };
    let key = rest.split('`').next()?;
    Some((parse_path(path), key.to_owned()))
}

/// A validation error and the path of the node it is about.
pub(super) struct Invalid(pub Vec<Seg>, pub String);

pub(super) fn at(base: &[Seg], key: &'static str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::Key(key));
    p
}
