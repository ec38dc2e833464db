//! The catalog: every target tickr runs, from the configuration file and from each source's
//! last good refresh, merged under one rule for names: the file's targets first, then the
//! sources in the order the file lists them; a name already taken is a clash, counted and
//! dropped, never an overwrite. A refresh that fails, or that would take the total past
//! [`MAX_TARGETS`], changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{Config, Discovered, Source, Target, Templates};
use crate::limits::MAX_TARGETS;

/// What the catalog holds of one source.
#[derive(Debug)]
struct State {
    source: Source,
    /// The last good entries; `None` before the first good refresh.
    entries: Option<Vec<Discovered>>,
    /// Their targets, built with the current templates, by entry (so that a refresh builds only
    /// what is new, and an unchanged entry keeps its target, schedule and counters).
    built: HashMap<Discovered, Arc<Target>>,
    /// Entries that are no valid target, and the first reason.
    invalid: usize,
    first_invalid: Option<String>,
    /// Whether the last refresh succeeded (`None` before the first).
    last_ok: Option<bool>,
    /// Set by the merge: targets this source runs, and names it lost to an earlier one.
    running: usize,
    clashes: usize,
}

/// One source's figures, for its self-metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: String,
    pub last_ok: Option<bool>,
    pub targets: usize,
    pub invalid: usize,
    pub clashes: usize,
}

/// The targets of the file and of every source.
#[derive(Debug)]
pub struct Catalog {
    listed: Vec<Arc<Target>>,
    templates: Arc<Templates>,
    states: Vec<State>,
}

impl Catalog {
    /// The file's targets, and its sources with nothing found yet.
    pub fn new(config: &Config) -> Self {
        let mut catalog = Self {
            listed: Vec::new(),
            templates: config.templates.clone(),
            states: Vec::new(),
        };
        catalog.reconfigure(config);
        catalog
    }

    /// Takes a new configuration: its targets and sources. A source that stays (by name) keeps
    /// its last good entries until its next refresh, rebuilt with the new modules and
    /// defaults.
    pub fn reconfigure(&mut self, config: &Config) {
        self.listed = config.targets.clone();
        self.templates = config.templates.clone();
        let mut old: HashMap<String, State> = self
            .states
            .drain(..)
            .map(|s| (s.source.name.clone(), s))
            .collect();
        for source in &config.sources {
            let state = match old.remove(&source.name) {
                Some(mut state) => {
                    state.source = source.clone();
                    state.built.clear();
                    state
                }
                None => State {
                    source: source.clone(),
                    entries: None,
                    built: HashMap::new(),
                    invalid: 0,
                    first_invalid: None,
                    last_ok: None,
                    running: 0,
                    clashes: 0,
                },
            };
            self.states.push(state);
        }
        let templates = self.templates.clone();
        for state in &mut self.states {
            if let Some(entries) = state.entries.take() {
                build(state, &templates, entries);
            }
        }
    }

    /// Takes one refresh of `source`. `Ok(true)` when its targets changed; `Err` with the
    /// reason when the refresh failed or was refused (its previous targets stay).
    pub fn refresh(
        &mut self,
        source: &str,
        result: Result<Vec<Discovered>, String>,
    ) -> Result<bool, String> {
        let others: usize = self.listed.len()
            + self
                .states
                .iter()
                .filter(|s| s.source.name != source)
                .map(|s| s.built.len())
                .sum::<usize>();
        let templates = self.templates.clone();
        let Some(state) = self.states.iter_mut().find(|s| s.source.name == source) else {
            return Ok(false); // a source removed by a reload while its refresh was on its way
        };
        let entries = match result {
            Ok(entries) => entries,
            Err(e) => {
                state.last_ok = Some(false);
                return Err(e);
            }
        };
        if others + entries.len() > MAX_TARGETS {
            state.last_ok = Some(false);
            return Err(format!(
                "{} entries would make more than {MAX_TARGETS} targets in all",
                entries.len()
            ));
        }
        state.last_ok = Some(true);
        if state.entries.as_ref() == Some(&entries) {
            return Ok(false);
        }
        build(state, &templates, entries);
        Ok(true)
    }

    /// Every target to run, sorted by nothing in particular: the file's, then each source's
    /// that has a name no earlier one took. Updates each source's counts.
    pub fn targets(&mut self) -> Vec<Arc<Target>> {
        let mut names: HashSet<&str> = self.listed.iter().map(|t| t.name.as_str()).collect();
        let mut all = self.listed.clone();
        for state in &mut self.states {
            let (mut running, mut clashes) = (0, 0);
            let mut mine: Vec<&Arc<Target>> = state.built.values().collect();
            // Entries in a stable order, so that which of two clashing entries wins does not
            // depend on a hash map's.
            mine.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.url.cmp(&b.url)));
            for target in mine {
                if names.insert(target.name.as_str()) {
                    all.push(target.clone());
                    running += 1;
                } else {
                    clashes += 1;
                }
            }
            state.running = running;
            state.clashes = clashes;
        }
        all
    }

    /// Each source's figures, in the file's order.
    pub fn reports(&self) -> Vec<Report> {
        self.states
            .iter()
            .map(|s| Report {
                source: s.source.name.clone(),
                last_ok: s.last_ok,
                targets: s.running,
                invalid: s.invalid,
                clashes: s.clashes,
            })
            .collect()
    }

    /// The first entry of `source` that is no valid target, with the reason, if any.
    pub fn first_invalid(&self, source: &str) -> Option<&str> {
        self.states
            .iter()
            .find(|s| s.source.name == source)
            .and_then(|s| s.first_invalid.as_deref())
    }
}

/// Builds the targets of `entries` into `state`, reusing the target of every entry it already
/// had (the same entry over the same templates is the same target).
fn build(state: &mut State, templates: &Templates, entries: Vec<Discovered>) {
    let mut built = HashMap::with_capacity(entries.len());
    let (mut invalid, mut first_invalid) = (0, None);
    for entry in &entries {
        if built.contains_key(entry) {
            continue;
        }
        let target = match state.built.remove(entry) {
            Some(target) => target,
            None => match templates.target(&state.source, entry) {
                Ok(target) => Arc::new(target),
                Err(e) => {
                    invalid += 1;
                    first_invalid.get_or_insert_with(|| {
                        let shown = templates.shown_url(&entry.address);
                        format!("{}: {e}", crate::config::one_line(&shown))
                    });
                    continue;
                }
            },
        };
        built.insert(entry.clone(), target);
    }
    state.built = built;
    state.invalid = invalid;
    state.first_invalid = first_invalid;
    state.entries = Some(entries);
}
