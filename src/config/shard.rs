//! Which targets this tickr owns when several share one configuration: `--shard.count` N,
//! `--shard.index` I (or the ordinal of a StatefulSet pod's host name) and `--shard.replicas` R.
//! A target is owned by the R shards that score highest for its name (rendezvous hashing), so
//! changing N moves only the targets whose top R changed: about R/N of them.

use std::fmt;

/// Most shards one configuration can be split into.
pub const MAX_SHARDS: u32 = 1024;

/// This tickr's place among the shards; [`Shard::default`] is the only shard, owning everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
    replicas: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            index: 0,
            count: 1,
            replicas: 1,
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)?;
        if self.replicas > 1 {
            write!(f, ", {} replicas of each target", self.replicas)?;
        }
        Ok(())
    }
}

impl Shard {
    /// Shard `index` of `count`, each target owned by `replicas` of them; the errors name the
    /// flags.
    pub fn new(index: u32, count: u32, replicas: u32) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "--shard.count must be between 1 and {MAX_SHARDS}, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "--shard.index {index} must be below --shard.count {count} (shards count from 0)"
            ));
        }
        if replicas == 0 || replicas > count {
            return Err(format!(
                "--shard.replicas {replicas} must be between 1 and --shard.count {count}"
            ));
        }
        Ok(Self {
            index,
            count,
            replicas,
        })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Whether this shard probes the target `name`.
    pub fn owns(&self, name: &str) -> bool {
        if self.replicas >= self.count {
            return true;
        }
        let mine = score(self.index, name);
        // Owned when fewer than R shards outrank this one (ties go to the lower index).
        let above = (0..self.count)
            .filter(|&i| i != self.index)
            .filter(|&i| {
                let s = score(i, name);
                s > mine || (s == mine && i < self.index)
            })
            .count();
        above < self.replicas as usize
    }

    /// The shards that probe `name`, by rank (the first is the one that would keep it alone).
    pub fn owners(&self, name: &str) -> Vec<u32> {
        let mut all: Vec<(u64, u32)> = (0..self.count).map(|i| (score(i, name), i)).collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter()
            .take(self.replicas as usize)
            .map(|(_, i)| i)
            .collect()
    }
}

/// The trailing ordinal of a StatefulSet pod's name (`tickr-2` → 2).
pub fn ordinal_of(host: &str) -> Result<u32, String> {
    let host = host.trim();
    // A fully qualified name (`tickr-2.tickr.monitoring.svc`) starts with the pod's.
    let pod = host.split('.').next().unwrap_or_default();
    let digits = pod.rsplit_once('-').map_or("", |(_, d)| d);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "--shard.index-from-hostname: host name {host:?} does not end in -<ordinal> as a StatefulSet pod's does"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("--shard.index-from-hostname: ordinal of {host:?} is too large"))
}

/// This machine's host name: `$HOSTNAME` (which Kubernetes sets to the pod's name), else the
/// kernel's.
pub fn host_name() -> Result<String, String> {
    if let Some(h) = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
    {
        return Ok(h);
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .map_err(|e| format!("--shard.index-from-hostname: cannot read the host name: {e}"))
}

/// A shard's score for a name: 64-bit FNV-1a over the shard's index and the name, then the
/// SplitMix64 finaliser so that neighbouring indexes give unrelated scores. Fixed here rather
/// than taken from `std`'s hasher, whose output may change between Rust releases: shards of
/// different builds must agree on who owns what.
fn score(index: u32, name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in index.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("https://svc-{i}.example.com/health"))
            .collect()
    }

    #[test]
    fn every_target_has_exactly_r_owners_and_owns_agrees_with_owners() {
        for (count, replicas) in [(1, 1), (3, 1), (4, 2), (5, 3), (2, 2)] {
            let shards: Vec<Shard> = (0..count)
                .map(|i| Shard::new(i, count, replicas).unwrap())
                .collect();
            for name in names(2000) {
                let owning: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.owns(&name))
                    .map(Shard::index)
                    .collect();
                assert_eq!(
                    owning.len(),
                    replicas as usize,
                    "{name} with {count}/{replicas}"
                );
                let mut owners = shards[0].owners(&name);
                owners.sort_unstable();
                assert_eq!(owning, owners);
            }
        }
    }

    #[test]
    fn shards_get_even_shares() {
        let all = names(20_000);
        for count in [2u32, 4, 7] {
            for index in 0..count {
                let s = Shard::new(index, count, 1).unwrap();
                let mine = all.iter().filter(|n| s.owns(n)).count() as f64;
                let fair = all.len() as f64 / f64::from(count);
                assert!((mine / fair - 1.0).abs() < 0.06, "{s}: {mine} of {fair}");
            }
        }
    }

    #[test]
    fn growing_from_three_shards_to_four_moves_about_a_quarter() {
        let all = names(20_000);
        for replicas in [1u32, 2] {
            let owners = |count| {
                let s = Shard::new(0, count, replicas).unwrap();
                all.iter()
                    .map(|n| {
                        let mut o = s.owners(n);
                        o.sort_unstable();
                        o
                    })
                    .collect::<Vec<_>>()
            };
            let (before, after) = (owners(3), owners(4));
            // A target moves when one of its owners changes; with rendezvous hashing only to
            // the new shard, so the moved share is the new shard's: R/N.
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let share = moved as f64 / all.len() as f64;
            let expected = f64::from(replicas) / 4.0;
            assert!((share - expected).abs() < 0.02, "R={replicas}: {share}");
            for (b, a) in before.iter().zip(&after) {
                assert!(
                    a.iter().all(|s| b.contains(s) || *s == 3),
                    "only the new shard gains targets: {b:?} → {a:?}"
                );
            }
        }
    }

    #[test]
    fn scores_are_fixed_across_builds() {
        // Shards of different tickr versions must agree on owners: these may never change
        // (the values were computed independently of this code).
        assert_eq!(score(0, "shop"), 0x5575_bdad_5aec_b39c);
        assert_eq!(score(3, "https://shop.example.com/"), 0x3bec_c007_2b3b_a3bb);
        let two_of_five = Shard::new(0, 5, 2).unwrap();
        assert_eq!(two_of_five.owners("shop"), [0, 1]);
        assert_eq!(two_of_five.owners("api"), [0, 4]);
        assert_eq!(two_of_five.owners("checkout-eu"), [4, 2]);
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(Shard::new(3, 3, 1).unwrap_err().contains("--shard.index 3"));
        assert!(Shard::new(0, 0, 1).unwrap_err().contains("--shard.count"));
        assert!(Shard::new(0, 2, 3)
            .unwrap_err()
            .contains("--shard.replicas 3"));
        assert!(Shard::new(0, 2, 0)
            .unwrap_err()
            .contains("--shard.replicas 0"));
    }

    #[test]
    fn ordinals_of_pod_names() {
        assert_eq!(ordinal_of("tickr-2"), Ok(2));
        assert_eq!(ordinal_of("tickr-probe-eu-13\n"), Ok(13));
        assert_eq!(
            ordinal_of("tickr-0.tickr.monitoring.svc.cluster.local"),
            Ok(0)
        );
        for bad in ["tickr", "tickr-", "tickr-a1", "web01", ""] {
            assert!(ordinal_of(bad).is_err(), "{bad}");
        }
    }
}
