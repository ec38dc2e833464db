//! The merge of a target's settings over the layers below it (its module, then `defaults`),
//! written once: each setting comes from the most specific layer that sets it, else from tickr's
//! built-in value, and remembers which layer that was so that an error points at the line that
//! set it.

use super::file::Settings;
use super::locate::Seg;

/// The settings a target is built from, most specific first, each with its path in the file.
pub(super) struct Layers<'a> {
    layers: Vec<(&'a Settings, Vec<Seg>)>,
}

/// Which layer a merged setting came from: its index in [`Layers`], most specific first; the
/// built-in value ranks after every layer. A lower rank is the more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank(usize);

/// A merged setting and where it came from.
pub(super) struct Merged<T> {
    pub value: T,
    pub rank: Rank,
}

impl<'a> Layers<'a> {
    /// A target's layers: the target itself (at `base`), its module if it names one, then
    /// `defaults`.
    pub fn new(
        target: &'a Settings,
        base: &[Seg],
        module: Option<(&str, &'a Settings)>,
        defaults: &'a Settings,
    ) -> Self {
        let mut layers = vec![(target, base.to_vec())];
        if let Some((name, settings)) = module {
            let at = vec![Seg::Key("modules"), Seg::Field(name.to_owned())];
            layers.push((settings, at));
        }
        layers.push((defaults, vec![Seg::Key("defaults")]));
        Self { layers }
    }

    /// The value of `field` from the most specific layer that sets it, if any does.
    pub fn first<T: ?Sized>(
        &self,
        field: fn(&'a Settings) -> Option<&'a T>,
    ) -> Option<Merged<&'a T>> {
        self.layers.iter().enumerate().find_map(|(i, (s, _))| {
            field(s).map(|value| Merged {
                value,
                rank: Rank(i),
            })
        })
    }

    /// The value of `field` from the most specific layer that sets it, else `built_in`.
    pub fn get<T: Clone>(
        &self,
        field: fn(&'a Settings) -> Option<&'a T>,
        built_in: T,
    ) -> Merged<T> {
        self.first(field).map_or(
            Merged {
                value: built_in,
                rank: self.built_in(),
            },
            |m| Merged {
                value: m.value.clone(),
                rank: m.rank,
            },
        )
    }

    /// Like [`Layers::get`], with the built-in value computed only when no layer sets `field`.
    pub fn get_or_else<T: Clone>(
        &self,
        field: fn(&'a Settings) -> Option<&'a T>,
        built_in: impl FnOnce() -> T,
    ) -> Merged<T> {
        match self.first(field) {
            Some(m) => Merged {
                value: m.value.clone(),
                rank: m.rank,
            },
            None => Merged {
                value: built_in(),
                rank: self.built_in(),
            },
        }
    }

    /// Every layer's value of `field`, least specific first: for settings merged entry by entry
    /// (headers, labels), where a later entry overrides an earlier one of the same name.
    pub fn each<T: ?Sized>(
        &self,
        field: fn(&'a Settings) -> Option<&'a T>,
    ) -> impl Iterator<Item = Merged<&'a T>> + '_ {
        let layers = self.layers.iter().enumerate().rev();
        layers.filter_map(move |(i, (s, _))| {
            field(s).map(|value| Merged {
                value,
                rank: Rank(i),
            })
        })
    }

    /// The rank of the built-in values, below every layer.
    pub fn built_in(&self) -> Rank {
        Rank(self.layers.len())
    }

    /// The path of `key` in the layer of `rank`. A built-in value has no line of its own: it
    /// points at the least specific layer, where a user would set it.
    pub fn at(&self, rank: Rank, key: &'static str) -> Vec<Seg> {
        let last = self.layers.len() - 1;
        let mut p = self.layers[rank.0.min(last)].1.clone();
        p.push(Seg::Key(key));
        p
    }
}

impl<T> Merged<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Merged<U> {
        Merged {
            value: f(self.value),
            rank: self.rank,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Settings {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_most_specific_layer_wins_and_says_where() {
        let (t, d) = (
            settings("{method: POST}"),
            settings("{method: PUT, body: x}"),
        );
        let base = [Seg::Key("targets"), Seg::Index(3)];
        let layers = Layers::new(&t, &base, None, &d);
        let method = layers.get(|s| s.method.as_ref(), "GET".to_owned());
        assert_eq!(method.value, "POST");
        assert_eq!(layers.at(method.rank, "method"), at(&base, "method"));
        let body = layers.get(|s| s.body.as_ref(), String::new());
        assert_eq!(body.value, "x");
        assert_eq!(layers.at(body.rank, "body"), defaults("body"));
    }

    #[test]
    fn a_built_in_value_points_at_the_defaults() {
        let (t, d) = (Settings::default(), Settings::default());
        let layers = Layers::new(&t, &[], None, &d);
        let confirm = layers.get(|s| s.confirm.as_ref(), 0);
        assert_eq!(confirm.rank, layers.built_in());
        assert_eq!(layers.at(confirm.rank, "confirm"), defaults("confirm"));
    }

    #[test]
    fn each_walks_the_layers_least_specific_first() {
        let (t, d) = (settings("{confirm: 1}"), settings("{confirm: 2}"));
        let layers = Layers::new(&t, &[], None, &d);
        let all: Vec<usize> = layers
            .each(|s| s.confirm.as_ref())
            .map(|m| *m.value)
            .collect();
        assert_eq!(all, [2, 1]);
    }

    #[test]
    fn a_module_sits_between_the_target_and_the_defaults() {
        let (t, m, d) = (
            settings("{method: POST}"),
            settings("{method: PUT, body: from-module, confirm: 2}"),
            settings("{body: from-defaults, confirm: 1, interval: 5s}"),
        );
        let base = [Seg::Key("targets"), Seg::Index(0)];
        let layers = Layers::new(&t, &base, Some(("api", &m)), &d);
        assert_eq!(
            layers.get(|s| s.method.as_ref(), String::new()).value,
            "POST"
        );
        let body = layers.get(|s| s.body.as_ref(), String::new());
        assert_eq!(body.value, "from-module");
        let module_body = vec![
            Seg::Key("modules"),
            Seg::Field("api".into()),
            Seg::Key("body"),
        ];
        assert_eq!(layers.at(body.rank, "body"), module_body);
        let interval = layers.first(|s| s.interval.as_ref()).unwrap();
        assert_eq!(layers.at(interval.rank, "interval"), defaults("interval"));
        let all: Vec<usize> = layers
            .each(|s| s.confirm.as_ref())
            .map(|m| *m.value)
            .collect();
        assert_eq!(all, [1, 2], "least specific first");
    }

    fn at(base: &[Seg], key: &'static str) -> Vec<Seg> {
        [base, &[Seg::Key(key)]].concat()
    }

    fn defaults(key: &'static str) -> Vec<Seg> {
        vec![Seg::Key("defaults"), Seg::Key(key)]
    }
}
