//! Configuration in two stages: [`file`] mirrors what users write; [`Config`] is what the rest of
//! tickr runs on, validated, with defaults applied and TLS material loaded.
//!
//! Each target is validated in `target`, over the layers `merge` walks; every error names the
//! file, line and column (`error`). `--config.check` runs exactly [`load`].

mod error;
mod file;
mod locate;
mod merge;
mod proxy;
mod secret;
mod shard;
mod sources;
mod target;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::header::HeaderName;

pub use error::ConfigError;
use error::{at, duplicate_field, Invalid};
pub(crate) use error::{one_line, strip_positions};
pub use file::{
    ByteSize, ExpectTls, HttpVersion, HumanDuration, IpProtocol, PhaseDetail, StatusPattern,
};
pub(crate) use locate::{locate, Seg};
pub use proxy::{NoProxy, Proxy, ProxyEndpoint};
pub use secret::{Content, FileHeader, Form, SecretFile};
pub use shard::{host_name, ordinal_of, Shard, MAX_SHARDS};
pub use sources::{Discovered, Source, SourceKind, Templates, ADOPTED_SOURCE, NAME_LABEL};
pub(crate) use target::compile_pattern;
use target::validate_target;
pub use target::{
    HeaderCheck, HistogramDetail, Matcher, Pattern, Probing, Target, Traceparent, DEFAULT_BUCKETS,
    DEFAULT_REQUEST_ID, LOCATION_LABEL, RESERVED_LABELS, TRACEPARENT,
};

use crate::diagnosis::layer::{self, Attributor, Fingerprint, Signal};
use crate::limits::{
    BODY_HEAD, DEFAULT_BODY_EXCERPT, DEFAULT_EVENTS, DEFAULT_FORGET_AFTER,
    DEFAULT_MAX_CONCURRENT_PROBES, MAX_CONCURRENT_PROBES, MAX_CONFIG_BYTES, MAX_EVENTS,
    MAX_TARGETS, MIN_INTERVAL,
};

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// What the command line adds to the file; kept for reloads.
    pub flags: Flags,
    /// Where this tickr probes from: `--probe.location`, else `global.location`.
    pub location: Option<String>,
    pub max_concurrent_probes: usize,
    /// The targets the file lists; target sources add theirs at run time.
    pub targets: Vec<Arc<Target>>,
    pub sources: Vec<Source>,
    /// What builds a discovered (or adopted) target the way a listed one is built.
    pub templates: Arc<Templates>,
    /// By module: which URLs `/probe` may adopt, and when it forgets them.
    pub adoption: BTreeMap<String, Adoption>,
    pub diagnosis: Diagnosis,
}

/// What the command line decides beside the file: a location that wins over
/// `global.location`, and this tickr's shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub location: Option<String>,
    pub shard: Shard,
}

/// A module's leave for `/probe` to add targets.
#[derive(Debug, Clone)]
pub struct Adoption {
    /// A URL matching one of these may be adopted.
    pub patterns: Vec<Pattern>,
    /// An adopted target nobody asked for this long is dropped.
    pub forget_after: std::time::Duration,
}

impl Adoption {
    /// Whether `url` (as `/probe` was given it, normalised) may be adopted.
    pub fn allows(&self, url: &str) -> bool {
        self.patterns.iter().any(|p| p.0.is_match(url.as_bytes()))
    }
}

/// How failures are explained: the event recorder's bounds and the layer fingerprints.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// Failed probes kept in memory (successes never evict them).
    pub events: usize,
    /// Bytes of the body kept with each event.
    pub body_excerpt: usize,
    /// Response headers whose values events never keep (lowercase names).
    pub redact_headers: Vec<String>,
    /// Query parameters whose values are secrets besides those [`crate::redact::is_secret_param`]
    /// recognises (lowercase names).
    pub redact_query_params: Vec<String>,
    pub attributor: Arc<Attributor>,
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &Flags::default())
}

/// [`load`], with what the command line adds.
pub fn load_with(path: &Path, flags: &Flags) -> Result<Config, ConfigError> {
    parse_with(path, &read_capped(path, "configuration")?, flags)
}

/// Reads a file of `what` (in errors) of at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_capped(path: &Path, what: &str) -> Result<String, ConfigError> {
    let unreadable = |message| ConfigError {
        file: path.to_owned(),
        position: None,
        message,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| unreadable(format!("cannot read {what}: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        let max = MAX_CONFIG_BYTES >> 20;
        return Err(unreadable(format!(
            "cannot read {what}: larger than {max} MiB"
        )));
    }
    Ok(text)
}

/// Validates configuration `text`; `path` names it in errors and anchors relative file paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, &Flags::default())
}

/// [`parse`], with what the command line adds.
pub fn parse_with(path: &Path, text: &str, flags: &Flags) -> Result<Config, ConfigError> {
    let error = |position, message: String| ConfigError {
        file: path.to_owned(),
        position,
        message: one_line(&message),
    };
    let mut file: file::File = serde_yaml::from_str(text).map_err(|e| {
        let message = strip_positions(&e.to_string());
        let mut position = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        // serde reports a key given twice at the start of its mapping; point at the repeat.
        if let Some((path, key)) = duplicate_field(&message) {
            position = locate(text, &[path, vec![Seg::Name(key, 1)]].concat()).unwrap_or(position);
        }
        error(Some(position), message)
    })?;
    read_header_scalars(&mut file, text);
    let dir = path.parent().unwrap_or(Path::new("."));
    validate(file, dir, path, flags)
        .map_err(|Invalid(at, message)| error(Some(locate(text, &at).unwrap_or((1, 1))), message))
}

/// Header values that YAML typed as numbers, booleans or null, replaced by their text as written
/// (one more walk of the document, only when there are any).
fn read_header_scalars(file: &mut file::File, text: &str) {
    let mut blocks: Vec<(Vec<Seg>, &mut file::Headers)> = Vec::new();
    // `headers` and `proxy_connect_headers` of one layer of settings at `at`.
    fn settings<'a>(
        blocks: &mut Vec<(Vec<Seg>, &'a mut file::Headers)>,
        at: Vec<Seg>,
        s: &'a mut file::Settings,
    ) {
        let keys = [
            ("headers", &mut s.headers),
            ("proxy_connect_headers", &mut s.proxy_connect_headers),
        ];
        for (key, headers) in keys {
            if let Some(h) = headers.as_mut() {
                blocks.push(([&at[..], &[Seg::Key(key)]].concat(), h));
            }
        }
    }
    settings(&mut blocks, vec![Seg::Key("defaults")], &mut file.defaults);
    for (name, m) in &mut file.modules {
        settings(
            &mut blocks,
            vec![Seg::Key("modules"), Seg::Field(name.clone())],
            m,
        );
    }
    for (i, t) in file.targets.iter_mut().enumerate() {
        settings(&mut blocks, vec![Seg::Key("targets"), Seg::Index(i)], t);
    }
    for (i, s) in file.target_sources.iter_mut().enumerate() {
        if let Some(h) = s.http_sd.as_mut().and_then(|h| h.headers.as_mut()) {
            let at = vec![
                Seg::Key("target_sources"),
                Seg::Index(i),
                Seg::Key("http_sd"),
                Seg::Key("headers"),
            ];
            blocks.push((at, h));
        }
    }
    let wanted: Vec<Vec<Seg>> = blocks.iter().flat_map(|(at, h)| h.scalars(at)).collect();
    if wanted.is_empty() {
        return;
    }
    let written: HashMap<Vec<Seg>, String> = locate::scalars(text, &wanted).into_iter().collect();
    for (at, h) in blocks {
        h.fill(&at, &written);
    }
}

fn validate(file: file::File, dir: &Path, path: &Path, flags: &Flags) -> Result<Config, Invalid> {
    if let Some(place) = &file.global.location {
        validate_location(place)
            .map_err(|m| Invalid(vec![Seg::Key("global"), Seg::Key("location")], m))?;
    }
    // The command line's location (checked as the flag was parsed) wins over the file's.
    let location = flags.location.clone().or(file.global.location.clone());
    let defaults = file.defaults;
    only_targets_name(&defaults, &[Seg::Key("defaults")], "defaults")?;
    only_a_modules(&defaults, &[Seg::Key("defaults")], "defaults")?;
    let mut adoption = BTreeMap::new();
    for (name, module) in &file.modules {
        let here = [Seg::Key("modules"), Seg::Field(name.clone())];
        validate_module_name(name)
            .map_err(|m| Invalid(vec![Seg::Key("modules"), Seg::Name(name.clone(), 0)], m))?;
        only_targets_name(module, &here, "a module")?;
        if let Some(spec) = &module.probe_endpoint {
            let here = [&here[..], &[Seg::Key("probe_endpoint")]].concat();
            if let Some(a) = validate_adoption(spec, &here)? {
                adoption.insert(name.clone(), a);
            }
        }
    }
    let max_concurrent_probes = file
        .global
        .max_concurrent_probes
        .unwrap_or(DEFAULT_MAX_CONCURRENT_PROBES);
    let limit_at = || vec![Seg::Key("global"), Seg::Key("max_concurrent_probes")];
    if max_concurrent_probes == 0 {
        return Err(Invalid(
            limit_at(),
            "max_concurrent_probes must be at least 1".into(),
        ));
    }
    if max_concurrent_probes > MAX_CONCURRENT_PROBES {
        let msg = format!("max_concurrent_probes must be at most {MAX_CONCURRENT_PROBES}");
        return Err(Invalid(limit_at(), msg));
    }
    if file.targets.len() > MAX_TARGETS {
        let at = vec![Seg::Key("targets"), Seg::Index(MAX_TARGETS)];
        return Err(Invalid(at, format!("at most {MAX_TARGETS} targets")));
    }

    // First: which query parameters are secret decides how the targets' URLs are shown.
    let diagnosis = validate_diagnosis(file.diagnosis)?;
    let mut names = HashSet::new();
    let mut used = HashSet::new();
    let mut targets = Vec::with_capacity(file.targets.len());
    for (i, target) in file.targets.iter().enumerate() {
        let base = vec![Seg::Key("targets"), Seg::Index(i)];
        only_a_modules(target, &base, "a target")?;
        let module = match target.module.as_deref() {
            None => None,
            Some(name) => {
                let settings = file.modules.get(name).ok_or_else(|| {
                    Invalid(at(&base, "module"), unknown_module(name, &file.modules))
                })?;
                used.insert(name);
                Some((name, settings))
            }
        };
        let t = validate_target(
            &defaults,
            module,
            target,
            dir,
            &base,
            &diagnosis.redact_query_params,
        )?
        .placed(location.as_deref());
        if !names.insert(t.name.clone()) {
            let at = at(&base, "name");
            return Err(Invalid(at, format!("duplicate target name {:?}", t.name)));
        }
        targets.push(Arc::new(t));
    }
    let sources = sources::validate_sources(
        &file.target_sources,
        &file.modules,
        dir,
        &diagnosis.redact_query_params,
    )?;
    // A module no target names yet, or one a source names, is checked as a target that sets
    // nothing of its own would see it (as a discovered target will), so that its errors show at
    // load, not on first use.
    let bare_use = |name: &str| {
        !used.contains(name) || sources.iter().any(|s| s.module.as_deref() == Some(name))
    };
    for (name, module) in file.modules.iter().filter(|(n, _)| bare_use(n)) {
        let here = vec![Seg::Key("modules"), Seg::Field(name.clone())];
        let bare = file::Settings {
            name: Some(format!("module {name}")),
            url: Some("http://module.check/".into()),
            ..file::Settings::default()
        };
        let module = Some((name.as_str(), module));
        validate_target(
            &defaults,
            module,
            &bare,
            dir,
            &here,
            &diagnosis.redact_query_params,
        )?;
    }
    let templates = Templates::new(
        defaults,
        file.modules,
        dir,
        &diagnosis.redact_query_params,
        location.as_deref(),
    );
    Ok(Config {
        path: path.to_owned(),
        flags: flags.clone(),
        location,
        max_concurrent_probes,
        targets,
        sources,
        templates: Arc::new(templates),
        adoption,
        diagnosis,
    })
}

/// `name`, `url` and `module` say which target is which: in `defaults` or a module they would
/// make every target the same one.
fn only_targets_name(settings: &file::Settings, here: &[Seg], what: &str) -> Result<(), Invalid> {
    for (key, set) in [
        ("name", settings.name.is_some()),
        ("url", settings.url.is_some()),
        ("module", settings.module.is_some()),
    ] {
        if set {
            let at = [here, &[Seg::Key(key)]].concat();
            return Err(Invalid(
                at,
                format!("`{key}` belongs to a target, not to {what}"),
            ));
        }
    }
    Ok(())
}

/// `probe_endpoint` says what `/probe` may do with a module's targets.
fn only_a_modules(settings: &file::Settings, here: &[Seg], what: &str) -> Result<(), Invalid> {
    if settings.probe_endpoint.is_some() {
        let at = [here, &[Seg::Key("probe_endpoint")]].concat();
        let msg = format!("`probe_endpoint` belongs to a module, not to {what}");
        return Err(Invalid(at, msg));
    }
    Ok(())
}

/// The adoption patterns of a module, compiled with bounds; `None` when it adopts nothing.
fn validate_adoption(
    spec: &file::ProbeEndpointSpec,
    here: &[Seg],
) -> Result<Option<Adoption>, Invalid> {
    let mut patterns = Vec::new();
    for (i, text) in spec.adopt.iter().flatten().enumerate() {
        let at = [here, &[Seg::Key("adopt"), Seg::Index(i)]].concat();
        patterns.push(compile_pattern(text).map_err(|m| Invalid(at, m))?);
    }
    let forget_after = spec.forget_after.map_or(DEFAULT_FORGET_AFTER, |d| d.0);
    if forget_after < MIN_INTERVAL {
        let at = [here, &[Seg::Key("forget_after")]].concat();
        let msg = format!("forget_after must be at least {MIN_INTERVAL:?}");
        return Err(Invalid(at, msg));
    }
    Ok((!patterns.is_empty()).then_some(Adoption {
        patterns,
        forget_after,
    }))
}

/// A location is a label value that people read on pages and in alerts: a short, printable
/// name such as `eu-west` or `fra1`.
pub fn validate_location(place: &str) -> Result<(), String> {
    if place.trim().is_empty() {
        return Err("location must not be empty".into());
    }
    if place.chars().count() > 64 || place.contains(char::is_control) || place != place.trim() {
        return Err(format!(
            "invalid location {:?}: expected at most 64 printable characters, no surrounding space",
            one_line(place)
        ));
    }
    Ok(())
}

/// Module names are what `module:` and `/probe?module=` say: short words, as in blackbox.yml.
pub(super) fn validate_module_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid module name {:?}: expected letters, digits, `_`, `-` or `.`",
            one_line(name)
        ))
    }
}

pub(super) fn unknown_module(name: &str, modules: &BTreeMap<String, file::Settings>) -> String {
    const SHOWN: usize = 10;
    let mut known: Vec<&str> = modules.keys().map(String::as_str).take(SHOWN).collect();
    if modules.len() > SHOWN {
        known.push("…");
    }
    if known.is_empty() {
        format!(
            "unknown module {:?}: no `modules` are defined",
            one_line(name)
        )
    } else {
        format!(
            "unknown module {:?}: expected one of {}",
            one_line(name),
            known.join(", ")
        )
    }
}

fn validate_diagnosis(d: file::Diagnosis) -> Result<Diagnosis, Invalid> {
    let at = |key| vec![Seg::Key("diagnosis"), Seg::Key(key)];
    let events = d.events.unwrap_or(DEFAULT_EVENTS);
    if events == 0 || events > MAX_EVENTS {
        return Err(Invalid(
            at("events"),
            format!("events must be between 1 and {MAX_EVENTS}"),
        ));
    }
    let body_excerpt = d.body_excerpt.map_or(DEFAULT_BODY_EXCERPT, |b| b.0);
    if body_excerpt > BODY_HEAD as u64 {
        let max = BODY_HEAD;
        return Err(Invalid(
            at("body_excerpt"),
            format!("body_excerpt must be at most {max} bytes"),
        ));
    }
    let mut redact_headers: Vec<String> = crate::redact::REDACTED_HEADERS
        .iter()
        .map(|h| (*h).to_owned())
        .collect();
    for name in d.redact_headers.unwrap_or_default() {
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Invalid(
                at("redact_headers"),
                format!("invalid header name {name:?}"),
            )
        })?;
        redact_headers.push(name.to_ascii_lowercase());
    }
    let mut redact_query_params = Vec::new();
    for name in d.redact_query_params.unwrap_or_default() {
        // Names are compared once decoded; these would never be one.
        if name.is_empty() || name.contains(['&', '=', '#']) || name.contains(char::is_control) {
            return Err(Invalid(
                at("redact_query_params"),
                format!("invalid query parameter name {name:?}"),
            ));
        }
        redact_query_params.push(name.to_lowercase());
    }
    let mut user = Vec::new();
    for (i, spec) in d.fingerprints.unwrap_or_default().into_iter().enumerate() {
        let here = [at("fingerprints"), vec![Seg::Index(i)]].concat();
        let valid = !spec.layer.is_empty()
            && spec
                .layer
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid || [layer::ORIGIN, layer::UNKNOWN].contains(&spec.layer.as_str()) {
            let msg = format!(
                "invalid layer name {:?}: expected [a-z0-9_]+, not origin or unknown",
                spec.layer
            );
            return Err(Invalid([here, vec![Seg::Key("layer")]].concat(), msg));
        }
        let signals = signals(&spec.headers, &spec.body).map_err(|m| Invalid(here, m))?;
        user.push(Fingerprint {
            layer: spec.layer,
            any_of: vec![signals],
        });
    }
    let mut origin = Vec::new();
    for (i, spec) in d.origin.unwrap_or_default().into_iter().enumerate() {
        let here = [at("origin"), vec![Seg::Index(i)]].concat();
        origin.push(signals(&spec.headers, &spec.body).map_err(|m| Invalid(here, m))?);
    }
    Ok(Diagnosis {
        events,
        body_excerpt: body_excerpt as usize,
        redact_headers,
        redact_query_params,
        attributor: Arc::new(Attributor::new(user, origin)),
    })
}

fn signals(
    headers: &std::collections::BTreeMap<String, String>,
    body: &[String],
) -> Result<Vec<Signal>, String> {
    let mut all = Vec::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        all.push(Signal::Header(name, value.to_ascii_lowercase()));
    }
    for text in body {
        if text.is_empty() {
            return Err("a body signal must not be empty".into());
        }
        all.push(Signal::Body(text.clone()));
    }
    if all.is_empty() {
        return Err("a fingerprint needs at least one header or body signal".into());
    }
    Ok(all)
}
