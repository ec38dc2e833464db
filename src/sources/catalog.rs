//! The catalog: every target tickr runs, from the configuration file, from each source's last
//! good refresh and from `/probe`'s adoptions, merged under one rule for names: the file's
//! targets first, then the sources in the order the file lists them, then the adopted ones; a
//! name already taken is a clash, counted and dropped, never an overwrite. A refresh that fails,
//! or that would take the total past [`MAX_TARGETS`], changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Discovered, Shard, Source, Target, Templates, ADOPTED_SOURCE};
use crate::limits::{MAX_ADOPTED, MAX_TARGETS};

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

/// A target `/probe` adopted: kept while it is asked for.
#[derive(Debug)]
struct Adopted {
    module: String,
    url: String,
    target: Arc<Target>,
    since: Instant,
    forget_after: Duration,
}

/// The targets of the file, of every source, and adopted by `/probe`.
#[derive(Debug)]
pub struct Catalog {
    listed: Vec<Arc<Target>>,
    templates: Arc<Templates>,
    states: Vec<State>,
    /// By name.
    adopted: BTreeMap<String, Adopted>,
    /// Whether any module lets `/probe` adopt, and so whether `source="probe"` is reported.
    adopts: bool,
    adopted_running: usize,
    /// Which of them this tickr runs: those its shard owns.
    shard: Shard,
}

impl Catalog {
    /// The file's targets, and its sources with nothing found yet.
    pub fn new(config: &Config) -> Self {
        let mut catalog = Self {
            listed: Vec::new(),
            templates: config.templates.clone(),
            states: Vec::new(),
            adopted: BTreeMap::new(),
            adopts: false,
            adopted_running: 0,
            shard: config.flags.shard,
        };
        catalog.reconfigure(config);
        catalog
    }

    /// Takes a new configuration: its targets and sources. A source that stays (by name) keeps
    /// its last good entries until its next refresh, rebuilt with the new modules and
    /// defaults.
    pub fn reconfigure(&mut self, config: &Config) {
        self.shard = config.flags.shard;
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
        // An adopted target stays if its module still adopts its URL; it takes the module's
        // new settings.
        self.adopts = !config.adoption.is_empty();
        let adopted = std::mem::take(&mut self.adopted);
        for (_, mut a) in adopted {
            let Some(rule) = config.adoption.get(&a.module) else {
                continue;
            };
            if !rule.allows(&a.url) {
                continue;
            }
            let Ok(target) = templates.adopted(Some(&a.module), &a.url) else {
                continue;
            };
            a.target = Arc::new(target);
            a.forget_after = rule.forget_after;
            self.adopted.insert(a.target.name.clone(), a);
        }
    }

    /// Adopts `url` with `module`'s settings (the caller checked that the module allows it):
    /// the target's name, and whether it is new. Bounded by [`MAX_ADOPTED`] and
    /// [`MAX_TARGETS`].
    pub fn adopt(
        &mut self,
        module: &str,
        url: &str,
        forget_after: Duration,
    ) -> Result<(String, bool), String> {
        let target = self.templates.adopted(Some(module), url)?;
        if !self.shard.owns(&target.name) {
            return Err(self.elsewhere(&target.name));
        }
        if self.adopted.contains_key(&target.name) {
            return Ok((target.name.clone(), false));
        }
        if self.adopted.len() >= MAX_ADOPTED {
            return Err(format!("{MAX_ADOPTED} targets are adopted already"));
        }
        if self.count() >= MAX_TARGETS {
            return Err(format!("tickr runs {MAX_TARGETS} targets already"));
        }
        let name = target.name.clone();
        let adopted = Adopted {
            module: module.to_owned(),
            url: url.to_owned(),
            target: Arc::new(target),
            since: Instant::now(),
            forget_after,
        };
        self.adopted.insert(name.clone(), adopted);
        Ok((name, true))
    }

    /// Drops the adopted targets not asked for (nor adopted) within their `forget_after`;
    /// their names.
    pub fn expire(
        &mut self,
        last_asked: impl Fn(&str) -> Option<Instant>,
        now: Instant,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        self.adopted.retain(|name, a| {
            let seen = last_asked(name).map_or(a.since, |t| t.max(a.since));
            let keep = now.saturating_duration_since(seen) <= a.forget_after;
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        gone
    }

    /// Targets held now, of every origin (before name clashes are resolved).
    fn count(&self) -> usize {
        self.listed.len()
            + self.states.iter().map(|s| s.built.len()).sum::<usize>()
            + self.adopted.len()
    }

    /// Takes one refresh of `source`. `Ok(true)` when its targets changed; `Err` with the
    /// reason when the refresh failed or was refused (its previous targets stay).
    pub fn refresh(
        &mut self,
        source: &str,
        result: Result<Vec<Discovered>, String>,
    ) -> Result<bool, String> {
        let others: usize = self.listed.len()
            + self.adopted.len()
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
    /// that has a name no earlier one took; of those, the ones this shard owns. Updates each
    /// source's counts (of the targets this shard runs).
    pub fn targets(&mut self) -> Vec<Arc<Target>> {
        let shard = self.shard;
        let mut names: HashSet<&str> = self.listed.iter().map(|t| t.name.as_str()).collect();
        let mut all: Vec<Arc<Target>> = (self.listed.iter())
            .filter(|t| shard.owns(&t.name))
            .cloned()
            .collect();
        for state in &mut self.states {
            let (mut running, mut clashes) = (0, 0);
            let mut mine: Vec<&Arc<Target>> = state.built.values().collect();
            // Entries in a stable order, so that which of two clashing entries wins does not
            // depend on a hash map's.
            mine.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.url.cmp(&b.url)));
            for target in mine {
                if !names.insert(target.name.as_str()) {
                    clashes += 1;
                } else if shard.owns(&target.name) {
                    all.push(target.clone());
                    running += 1;
                }
            }
            state.running = running;
            state.clashes = clashes;
        }
        self.adopted_running = 0;
        for a in self.adopted.values() {
            if names.insert(a.target.name.as_str()) {
                all.push(a.target.clone());
                self.adopted_running += 1;
            }
        }
        all
    }

    /// Why this tickr does not run `name`: another shard owns it.
    pub fn elsewhere(&self, name: &str) -> String {
        let owners: Vec<String> = (self.shard.owners(name).iter())
            .map(u32::to_string)
            .collect();
        format!(
            "{name:?} belongs to shard {} of {}, not to this one ({})",
            owners.join(" and "),
            self.shard.count(),
            self.shard.index()
        )
    }

    /// How many adopted targets run, when any module adopts (`source="probe"`).
    pub fn adopted_report(&self) -> Option<(&'static str, usize)> {
        self.adopts
            .then_some((ADOPTED_SOURCE, self.adopted_running))
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
