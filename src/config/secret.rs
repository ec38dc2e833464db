//! Settings whose value lives in a file (Kubernetes mounts Secrets as files): a header value, a
//! basic-auth password, a bearer token, a request body. Read at load, where an unreadable file is
//! a configuration error, and again whenever the file changes, so that a rotated token applies to
//! the next probe without a reload. A file that disappears or turns invalid later keeps its last
//! good value and is logged once, by path, never by content.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use crate::limits::{MAX_BODY_FILE_BYTES, MAX_SECRET_FILE_BYTES, SECRET_FILE_RECHECK};
use crate::tls::{file_state, FileState};

/// How a file's bytes become a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    /// A token, a password or a header value: surrounding white space (the newline editors and
    /// `echo` add) is dropped, and what is left must be valid in an HTTP header.
    Token,
    /// A request body: the bytes as they are.
    Body,
}

impl Content {
    fn limit(self) -> u64 {
        match self {
            Content::Token => MAX_SECRET_FILE_BYTES,
            Content::Body => MAX_BODY_FILE_BYTES,
        }
    }

    /// The value in `bytes`, or why there is none. Never quotes the bytes.
    fn value(self, bytes: Vec<u8>) -> Result<Bytes, String> {
        match self {
            Content::Body => Ok(bytes.into()),
            Content::Token => {
                let text = bytes.trim_ascii();
                if text.is_empty() {
                    return Err("is empty".into());
                }
                if HeaderValue::from_bytes(text).is_err() {
                    return Err("holds characters an HTTP header cannot carry".into());
                }
                Ok(Bytes::copy_from_slice(text))
            }
        }
    }
}

/// One file's value, shared by every setting that names the same file the same way.
pub struct SecretFile {
    path: PathBuf,
    content: Content,
    state: Mutex<Seen>,
}

/// The last good value, the state of the file it came from, and when that state was checked.
struct Seen {
    value: Bytes,
    file: FileState,
    checked: Instant,
    /// Set while the file cannot be used, so that the trouble is logged once.
    failing: bool,
}

/// Equal when they name the same file the same way: a reload keeps a target whose secret file
/// changed content (the new content applies anyway).
impl PartialEq for SecretFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.content == other.content
    }
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecretFile({})", self.path.display())
    }
}

type Open = HashMap<(PathBuf, Content), Weak<SecretFile>>;
static OPEN: Mutex<Option<Open>> = Mutex::new(None);

impl SecretFile {
    /// The file at `path`, read now: 10,000 targets naming one token file share one value and
    /// one check per [`SECRET_FILE_RECHECK`]. The error says why the file cannot be used,
    /// without its content.
    pub fn open(path: &Path, content: Content) -> Result<Arc<Self>, String> {
        let (file, value) = read(path, content)?;
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let open = open.get_or_insert_with(HashMap::new);
        let key = (path.to_owned(), content);
        if let Some(shared) = open.get(&key).and_then(Weak::upgrade) {
            *shared.seen() = Seen {
                value,
                file,
                checked: Instant::now(),
                failing: false,
            };
            return Ok(shared);
        }
        open.retain(|_, f| f.strong_count() > 0);
        let shared = Arc::new(Self {
            path: path.to_owned(),
            content,
            state: Mutex::new(Seen {
                value,
                file,
                checked: Instant::now(),
                failing: false,
            }),
        });
        open.insert(key, Arc::downgrade(&shared));
        Ok(shared)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value: the file is looked at again (one `stat`) when the last look is older
    /// than [`SECRET_FILE_RECHECK`], and read again only when it changed.
    pub fn value(&self) -> Bytes {
        let mut seen = self.seen();
        if seen.checked.elapsed() < SECRET_FILE_RECHECK {
            return seen.value.clone();
        }
        seen.checked = Instant::now();
        let changed = match std::fs::metadata(&self.path) {
            Ok(m) => file_state(&m) != seen.file,
            Err(_) => true,
        };
        if changed {
            match read(&self.path, self.content) {
                Ok((file, value)) => {
                    if seen.failing {
                        tracing::info!(file = %self.path.display(), "secret file is usable again");
                    }
                    *seen = Seen {
                        value,
                        file,
                        checked: seen.checked,
                        failing: false,
                    };
                }
                Err(why) if !seen.failing => {
                    seen.failing = true;
                    tracing::warn!(
                        file = %self.path.display(),
                        "secret file {why}; probes keep its last value"
                    );
                }
                Err(_) => {}
            }
        }
        seen.value.clone()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The file's state and value, read within the content's size limit.
fn read(path: &Path, content: Content) -> Result<(FileState, Bytes), String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("cannot be read: {e}");
    let mut f = std::fs::File::open(path).map_err(fail)?;
    let meta = f.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let limit = content.limit();
    let mut bytes = Vec::new();
    f.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > limit {
        return Err(format!("is larger than {limit} bytes"));
    }
    Ok((file_state(&meta), content.value(bytes)?))
}

/// A request header whose value comes from a file, read when each request is built.
#[derive(Debug, Clone, PartialEq)]
pub struct FileHeader {
    pub name: HeaderName,
    pub file: Arc<SecretFile>,
    pub form: Form,
}

/// How a file's value becomes the header's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// The value itself (`headers: {X-Api-Key: {file: ...}}`).
    Plain,
    /// `Bearer <token>` (`bearer_token_file`).
    Bearer,
    /// `Basic base64(username:password)` (`basic_auth.password_file`).
    Basic(String),
}

impl FileHeader {
    /// The header's value now, marked sensitive.
    pub fn value(&self) -> HeaderValue {
        let mut v = header_value(&self.form, &self.file.value());
        v.set_sensitive(true);
        v
    }

    /// The secrets to redact: the file's value and the header built from it.
    pub fn secrets(&self) -> [Bytes; 2] {
        let raw = self.file.value();
        let header = Bytes::copy_from_slice(header_value(&self.form, &raw).as_bytes());
        [raw, header]
    }
}

/// The header value for `secret` in `form`. A token file's value was checked to be valid in a
/// header, and the forms add only valid characters.
pub(crate) fn header_value(form: &Form, secret: &[u8]) -> HeaderValue {
    let built = match form {
        Form::Plain => HeaderValue::from_bytes(secret),
        Form::Bearer => HeaderValue::from_bytes(&[b"Bearer ", secret].concat()),
        Form::Basic(user) => {
            let pair = [user.as_bytes(), b":", secret].concat();
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            HeaderValue::from_str(&format!("Basic {encoded}"))
        }
    };
    built.unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_checked_bodies_are_not() {
        assert_eq!(
            Content::Token.value(b"  s3cret\n".to_vec()).unwrap(),
            "s3cret"
        );
        assert!(Content::Token.value(b"\n".to_vec()).is_err());
        let bad = Content::Token.value(b"Zq7\nXw9".to_vec()).unwrap_err();
        assert!(!bad.contains("Zq7"), "{bad} quotes the content");
        assert_eq!(Content::Body.value(b" {}\n".to_vec()).unwrap(), " {}\n");
    }

    #[test]
    fn forms() {
        assert_eq!(header_value(&Form::Bearer, b"t0k"), "Bearer t0k");
        // RFC 7617's example.
        let basic = header_value(&Form::Basic("Aladdin".into()), b"open sesame");
        assert_eq!(basic, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }
}
