//! Prometheus scrape jobs that send `__param_target` to a blackbox `/probe` into tickr targets
//! (static configs) and `file_sd` target sources; jobs on other service discovery are reported
//! with the `/probe` set-up that replaces them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::modules::{list, scalar, Module};
use super::yaml::Y;
use super::Report;
use crate::config::HumanDuration;

/// What the jobs become.
#[derive(Default)]
pub struct Converted {
    pub targets: Vec<Y>,
    pub sources: Vec<Y>,
    /// Modules the sources need at another interval than the module's: (name, base, interval).
    pub variants: Vec<(String, String, HumanDuration)>,
}

/// Prometheus' own default scrape interval.
const PROMETHEUS_INTERVAL: Duration = Duration::from_secs(60);

/// The standard relabelling of a blackbox job, which tickr's naming replaces: anything else is
/// reported.
fn standard(rule: &Value) -> bool {
    let get = |k: &str| rule.get(k).map(scalar).unwrap_or_default();
    let sources: Vec<String> = list(rule.get("source_labels").unwrap_or(&Value::Null))
        .iter()
        .map(scalar)
        .collect();
    let target = get("target_label");
    let action = get("action");
    if !(action.is_empty() || action == "replace") {
        return target == "__tmp_hash" || action == "keep" && sources == ["__tmp_hash"];
    }
    matches!(
        (sources.as_slice(), target.as_str()),
        ([s], "__param_target") if s == "__address__"
    ) || matches!((sources.as_slice(), target.as_str()), ([s], "instance") if s == "__param_target")
        || target == "__address__"
        || target == "__tmp_prometheus_job_name"
}

pub fn convert(doc: &Value, dir: &Path, modules: &[Module], report: &mut Report) -> Converted {
    let mut out = Converted::default();
    let global = doc
        .get("global")
        .and_then(|g| g.get("scrape_interval"))
        .and_then(|v| HumanDuration::parse(&scalar(v)).ok())
        .map_or(PROMETHEUS_INTERVAL, |d| d.0);
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, job) in list(doc.get("scrape_configs").unwrap_or(&Value::Null))
        .iter()
        .enumerate()
    {
        let name = job.get("job_name").map(scalar).unwrap_or_default();
        let path = vec!["scrape_configs".to_owned(), i.to_string()];
        let rules = list(job.get("relabel_configs").unwrap_or(&Value::Null));
        let sends_target = rules
            .iter()
            .any(|r| r.get("target_label").map(scalar).as_deref() == Some("__param_target"));
        if !sends_target {
            continue; // not a blackbox job
        }
        let module_name = job
            .get("params")
            .and_then(|p| p.get("module"))
            .and_then(|m| list(m).first().map(scalar))
            .unwrap_or_else(|| "http_2xx".into());
        let Some(module) = modules.iter().find(|m| m.name == module_name) else {
            report.at(
                &path,
                None,
                &format!(
                    "job {name:?} uses module {module_name:?}, which is not an HTTP module of \
                     the blackbox configuration: not converted"
                ),
            );
            continue;
        };
        for (r, rule) in rules.iter().enumerate() {
            if !standard(rule) {
                report.at_index(
                    &path,
                    "relabel_configs",
                    r,
                    "a relabel rule beyond blackbox's standard three: tickr names each target by \
                     its URL and takes group labels as they are; add labels to the targets",
                );
            }
        }
        let interval = job
            .get("scrape_interval")
            .and_then(|v| HumanDuration::parse(&scalar(v)).ok())
            .map_or(global, |d| d.0);
        let timeout = module.timeout.filter(|t| *t >= interval).map(|t| {
            let shorter = interval * 4 / 5;
            report.at(
                &path,
                Some("scrape_interval"),
                &format!(
                    "module {module_name:?} waits {:?}, not shorter than the job's interval {:?}: \
                     its targets get a timeout of {:?}",
                    t, interval, shorter
                ),
            );
            shorter
        });
        for (key, value) in job.as_mapping().into_iter().flatten() {
            let key = scalar(key);
            match key.as_str() {
                "static_configs" => {
                    for group in list(value) {
                        static_group(
                            &group,
                            &name,
                            &module_name,
                            interval,
                            timeout,
                            &path,
                            &mut names,
                            &mut out,
                            report,
                        );
                    }
                }
                "file_sd_configs" => {
                    for (n, sd) in list(value).iter().enumerate() {
                        let files: Vec<Y> = list(sd.get("files").unwrap_or(&Value::Null))
                            .iter()
                            .map(|f| Y::text(dir.join(scalar(f)).to_string_lossy()))
                            .collect();
                        let mut source = vec![
                            ("name".to_owned(), Y::text(source_name(&name, n))),
                            ("file_sd".to_owned(), Y::List(files)),
                        ];
                        if let Some(r) = sd.get("refresh_interval") {
                            if let Ok(d) = HumanDuration::parse(&scalar(r)) {
                                source.push(("refresh".into(), Y::plain(d.to_string())));
                            }
                        }
                        let variant = format!("{module_name}_{}", HumanDuration(interval));
                        if !out.variants.iter().any(|(v, ..)| *v == variant) {
                            out.variants.push((
                                variant.clone(),
                                module_name.clone(),
                                HumanDuration(interval),
                            ));
                        }
                        source.push(("module".into(), Y::text(variant)));
                        // blackbox reads a bare host as http://host.
                        source.push(("scheme".into(), Y::plain("http")));
                        source.push(("path".into(), Y::text("/")));
                        out.sources.push(Y::Map(source));
                    }
                }
                k if k.ends_with("_sd_configs") => report.at(
                    &path,
                    Some(k),
                    &format!(
                        "targets from {k} are known only to Prometheus: keep job {name:?}, point \
                         its __address__ at tickr's /probe, and let module {module_name:?} adopt \
                         them (probe_endpoint.adopt: a pattern over their URLs)"
                    ),
                ),
                _ => {}
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn static_group(
    group: &Value,
    job: &str,
    module: &str,
    interval: Duration,
    timeout: Option<Duration>,
    path: &[String],
    names: &mut BTreeMap<String, usize>,
    out: &mut Converted,
    report: &mut Report,
) {
    let mut labels = Vec::new();
    for (k, v) in group
        .get("labels")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        let k = scalar(k);
        if k.starts_with("__") {
            continue;
        }
        if matches!(k.as_str(), "job" | "instance") {
            report.at(
                path,
                Some("static_configs"),
                &format!("label {k:?} is Prometheus' own: left out"),
            );
            continue;
        }
        labels.push((k, Y::text(scalar(v))));
    }
    for t in list(group.get("targets").unwrap_or(&Value::Null)) {
        let t = scalar(&t);
        let url = if t.contains("://") {
            t.clone()
        } else {
            format!("http://{t}")
        };
        // Prometheus' `instance` is the target as written; tickr's name is unique.
        let seen = names.entry(t.clone()).or_default();
        *seen += 1;
        let name = if *seen == 1 {
            t.clone()
        } else {
            format!("{job}:{t}")
        };
        let mut target = vec![
            ("name".to_owned(), Y::text(name)),
            ("url".to_owned(), Y::text(url)),
            ("module".to_owned(), Y::text(module)),
            (
                "interval".to_owned(),
                Y::plain(HumanDuration(interval).to_string()),
            ),
        ];
        if let Some(t) = timeout {
            target.push(("timeout".into(), Y::plain(HumanDuration(t).to_string())));
        }
        if !labels.is_empty() {
            target.push(("labels".into(), Y::Map(labels.clone())));
        }
        out.targets.push(Y::Map(target));
    }
}

/// A target source's name from a job's: the characters a source name may hold.
fn source_name(job: &str, n: usize) -> String {
    let mut s: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == crate::config::ADOPTED_SOURCE {
        s = format!("job_{s}");
    }
    if n > 0 {
        s = format!("{s}_{n}");
    }
    s
}
