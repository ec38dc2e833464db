//! Target sources, validated: where discovered targets come from ([`Source`]), and the
//! [`Templates`] that turn each discovered entry into a [`Target`] the way a configured target is
//! built (its own keys, then its module's, then `defaults`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{at, Invalid};
use super::file::{self, HumanDuration, Settings, SourceSpec, StatusPattern};
use super::locate::Seg;
use super::target::{validate_target, Target};
use crate::limits::{
    DEFAULT_FILE_SD_REFRESH, DEFAULT_HTTP_SD_REFRESH, DEFAULT_HTTP_SD_TIMEOUT, MAX_SOURCES,
    MAX_SOURCE_BYTES, MIN_FILE_SD_REFRESH, MIN_HTTP_SD_REFRESH,
};

/// The `source` label of targets that `/probe` adopted; no configured source may take it.
pub const ADOPTED_SOURCE: &str = "probe";

/// A group label that names the discovered target (else its URL does).
pub const NAME_LABEL: &str = "tickr_name";

/// One target source, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// The module of every target it yields.
    pub module: Option<String>,
    /// For entries given as `host[:port]`: `<scheme>://host[:port]<path>`.
    pub scheme: String,
    pub path: String,
}

/// Where a source reads its entries.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Files in Prometheus' file_sd format (YAML or JSON), checked every `refresh`.
    Files {
        /// Absolute; the last path element may be a glob (`*`, `?`).
        patterns: Vec<PathBuf>,
        refresh: Duration,
    },
    /// An inventory in Prometheus' HTTP SD format, fetched every `refresh` as `endpoint`
    /// describes (URL, headers, TLS, timeout, size limit: a target's own settings).
    Http {
        endpoint: Arc<Target>,
        refresh: Duration,
    },
}

/// One entry of a source: a target as a file or an inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Discovered {
    /// A URL (`http`/`https`), or `host[:port]`.
    pub address: String,
    /// Its group's labels, as listed (`__` labels included: [`Templates::target`] drops them).
    pub labels: BTreeMap<String, String>,
}

/// What turns a discovered entry into a target: `defaults` and `modules` as written, and what
/// validation needs besides.
#[derive(Clone, Default)]
pub struct Templates {
    defaults: Settings,
    modules: BTreeMap<String, Settings>,
    dir: PathBuf,
    secret_params: Vec<String>,
    location: Option<String>,
}

/// By module name only: the settings as written hold header values, which are secrets.
impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Templates {
    pub(super) fn new(
        defaults: Settings,
        modules: BTreeMap<String, Settings>,
        dir: &Path,
        secret_params: &[String],
        location: Option<&str>,
    ) -> Self {
        Self {
            defaults,
            modules,
            dir: dir.to_owned(),
            secret_params: secret_params.to_vec(),
            location: location.map(str::to_owned),
        }
    }

    /// `url` as tickr shows it: secret-looking query values hidden.
    pub fn shown_url(&self, url: &str) -> String {
        crate::redact::url(url, &self.secret_params).into_owned()
    }

    /// Whether `name` is a configured module.
    pub fn has_module(&self, name: &str) -> bool {
        self.modules.contains_key(name)
    }

    /// The target an entry of `source` stands for, or why it cannot be one (one line).
    pub fn target(&self, source: &Source, entry: &Discovered) -> Result<Target, String> {
        self.build(
            source.module.as_deref(),
            &url_of(&entry.address, &source.scheme, &source.path)?,
            &entry.labels,
        )
    }

    /// The target of `url` with `module`'s settings, as `/probe` adopts one.
    pub fn adopted(&self, module: Option<&str>, url: &str) -> Result<Target, String> {
        self.build(module, url, &BTreeMap::new())
    }

    fn build(
        &self,
        module: Option<&str>,
        url: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Target, String> {
        let module = match module {
            Some(name) => Some((
                name,
                self.modules
                    .get(name)
                    .ok_or_else(|| format!("unknown module {name:?}"))?,
            )),
            None => None,
        };
        let shown = crate::redact::url(url, &self.secret_params).into_owned();
        let name = labels.get(NAME_LABEL).cloned().unwrap_or(shown);
        let kept: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, _)| !k.starts_with("__") && k.as_str() != NAME_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let settings = Settings {
            name: Some(name),
            url: Some(url.to_owned()),
            labels: (!kept.is_empty()).then_some(kept),
            ..Settings::default()
        };
        validate_target(
            &self.defaults,
            module,
            &settings,
            &self.dir,
            &[],
            &self.secret_params,
        )
        .map(|t| t.placed(self.location.as_deref()))
        .map_err(|Invalid(path, message)| match path.last() {
            Some(Seg::Field(label)) => format!("label {label:?}: {message}"),
            _ => message,
        })
    }
}

/// A URL as given, or `<scheme>://host[:port]<path>` for a bare address (as Prometheus writes a
/// blackbox target).
fn url_of(address: &str, scheme: &str, path: &str) -> Result<String, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("an empty target".into());
    }
    if address.contains("://") {
        return Ok(address.to_owned());
    }
    if address.contains(['/', '?', '#', '@']) || address.contains(char::is_whitespace) {
        return Err(format!(
            "{:?} is neither a URL nor host[:port]",
            crate::config::one_line(address)
        ));
    }
    Ok(format!("{scheme}://{address}{path}"))
}

/// Validates `target_sources` (their names, kinds and settings) against the modules there are.
pub(super) fn validate_sources(
    specs: &[SourceSpec],
    modules: &BTreeMap<String, Settings>,
    dir: &Path,
    secret_params: &[String],
) -> Result<Vec<Source>, Invalid> {
    if specs.len() > MAX_SOURCES {
        let at = vec![Seg::Key("target_sources"), Seg::Index(MAX_SOURCES)];
        return Err(Invalid(at, format!("at most {MAX_SOURCES} target sources")));
    }
    let mut sources: Vec<Source> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let base = vec![Seg::Key("target_sources"), Seg::Index(i)];
        let source = validate_source(spec, &base, modules, dir, secret_params)?;
        if sources.iter().any(|s| s.name == source.name) {
            let msg = format!("duplicate target source name {:?}", source.name);
            return Err(Invalid(at(&base, "name"), msg));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn validate_source(
    spec: &SourceSpec,
    base: &[Seg],
    modules: &BTreeMap<String, Settings>,
    dir: &Path,
    secret_params: &[String],
) -> Result<Source, Invalid> {
    let name = spec
        .name
        .clone()
        .ok_or_else(|| Invalid(base.to_vec(), "a target source needs a `name`".into()))?;
    super::validate_module_name(&name)
        .map_err(|m| Invalid(at(base, "name"), m.replace("module", "target source")))?;
    if name == ADOPTED_SOURCE {
        let msg =
            format!("the source name {ADOPTED_SOURCE:?} is tickr's, for targets /probe adopts");
        return Err(Invalid(at(base, "name"), msg));
    }
    if let Some(module) = &spec.module {
        if !modules.contains_key(module) {
            let msg = super::unknown_module(module, modules);
            return Err(Invalid(at(base, "module"), msg));
        }
    }
    let scheme = spec.scheme.clone().unwrap_or_else(|| "https".into());
    if !matches!(scheme.as_str(), "http" | "https") {
        let msg = format!("scheme must be http or https, not {scheme:?}");
        return Err(Invalid(at(base, "scheme"), msg));
    }
    let path = spec.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
        let msg = format!("path must start with `/`, not {:?}", super::one_line(&path));
        return Err(Invalid(at(base, "path"), msg));
    }
    let kind = match (&spec.file_sd, &spec.http_sd) {
        (Some(files), None) => files_kind(files, spec.refresh, base, dir)?,
        (None, Some(http)) => {
            if spec.refresh.is_some() {
                let msg = "`refresh` of an http_sd source goes under `http_sd`";
                return Err(Invalid(at(base, "refresh"), msg.into()));
            }
            http_kind(&name, http, base, dir, secret_params)?
        }
        _ => {
            let msg = "a target source needs exactly one of `file_sd` and `http_sd`";
            return Err(Invalid(base.to_vec(), msg.into()));
        }
    };
    Ok(Source {
        name,
        kind,
        module: spec.module.clone(),
        scheme,
        path,
    })
}

fn files_kind(
    files: &[String],
    refresh: Option<HumanDuration>,
    base: &[Seg],
    dir: &Path,
) -> Result<SourceKind, Invalid> {
    if files.is_empty() {
        let msg = "file_sd needs at least one file or pattern";
        return Err(Invalid(at(base, "file_sd"), msg.into()));
    }
    let mut patterns = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let here = [at(base, "file_sd"), vec![Seg::Index(i)]].concat();
        let path = dir.join(file);
        let parent = path.parent().map(Path::to_string_lossy).unwrap_or_default();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if file.is_empty() || name.is_empty() {
            return Err(Invalid(here, "expected a file name or pattern".into()));
        }
        if parent.contains(['*', '?', '[']) {
            let msg = "a pattern may only be in the file name, the last path element";
            return Err(Invalid(here, msg.into()));
        }
        let extension_ok = [".json", ".yml", ".yaml"].iter().any(|e| name.ends_with(e));
        if !extension_ok {
            let msg = format!(
                "{:?}: file_sd files end in .json, .yml or .yaml",
                super::one_line(file)
            );
            return Err(Invalid(here, msg));
        }
        patterns.push(path);
    }
    let refresh = refresh.map_or(DEFAULT_FILE_SD_REFRESH, |r| r.0);
    if refresh < MIN_FILE_SD_REFRESH {
        let msg = format!("refresh must be at least {MIN_FILE_SD_REFRESH:?}");
        return Err(Invalid(at(base, "refresh"), msg));
    }
    Ok(SourceKind::Files { patterns, refresh })
}

fn http_kind(
    name: &str,
    http: &file::HttpSdSpec,
    base: &[Seg],
    dir: &Path,
    secret_params: &[String],
) -> Result<SourceKind, Invalid> {
    let here = at(base, "http_sd");
    let url = http
        .url
        .clone()
        .ok_or_else(|| Invalid(here.clone(), "http_sd needs a `url`".into()))?;
    let refresh = http.refresh.map_or(DEFAULT_HTTP_SD_REFRESH, |r| r.0);
    if refresh < MIN_HTTP_SD_REFRESH {
        let msg = format!("refresh must be at least {MIN_HTTP_SD_REFRESH:?}");
        return Err(Invalid(at(&here, "refresh"), msg));
    }
    // The inventory is fetched as a target that nobody sees would be probed: the same
    // validation of its URL, headers (secrets) and TLS, and a body limit of its own. Nothing
    // of `defaults` applies: its headers and timeouts are for the probed services.
    let settings = Settings {
        name: Some(format!("target source {name}")),
        url: Some(url),
        interval: Some(HumanDuration(refresh)),
        timeout: Some(
            http.timeout
                .unwrap_or(HumanDuration(DEFAULT_HTTP_SD_TIMEOUT.min(refresh * 4 / 5))),
        ),
        headers: http.headers.clone(),
        tls: http.tls.clone().map(Box::new),
        max_body_bytes: Some(file::ByteSize(MAX_SOURCE_BYTES)),
        expect: Some(Box::new(file::Expect {
            status: Some(vec![StatusPattern::parse("200").expect("a code")]),
            ..file::Expect::default()
        })),
        ..Settings::default()
    };
    let endpoint = validate_target(
        &Settings::default(),
        None,
        &settings,
        dir,
        &here,
        secret_params,
    )?;
    Ok(SourceKind::Http {
        endpoint: Arc::new(endpoint),
        refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_take_the_scheme_and_path() {
        assert_eq!(
            url_of("shop.example.com:8443", "https", "/health").unwrap(),
            "https://shop.example.com:8443/health"
        );
        assert_eq!(
            url_of("http://a.example.com/x?y=1", "https", "/").unwrap(),
            "http://a.example.com/x?y=1"
        );
        assert!(url_of("a.example.com/path", "https", "/").is_err());
        assert!(url_of(" ", "https", "/").is_err());
    }
}
