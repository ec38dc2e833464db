//! A target's phase histograms as one block of plain atomics: per phase, the count of each
//! bucket and the sum's bits. Observing is two atomic additions (a third, compare-and-swap,
//! for the sum); encoding reads them in place. The failure exemplars are kept apart, one per
//! bucket a failure landed in, with the target's other rarely used state (see `target.rs`).
//! Six prometheus-client histograms took about 3 KB per target (two `Arc`s, a lock, a bucket
//! vector and an exemplar map each); this takes 8 bytes per bucket and 24 for the block.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::limits::MAX_BUCKETS;
use crate::probe::{Outcome, Phase};

use super::target::ExemplarLabels;

/// Bucket bounds, with their `le` texts (`+Inf` last), and the phases observed: shared by
/// every target that has the same.
#[derive(Debug, PartialEq)]
pub(super) struct Layout {
    values: Box<[f64]>,
    labels: Box<[Box<str>]>,
    phases: &'static [Phase],
}

impl Layout {
    pub(super) fn new(values: &[f64], phases: &'static [Phase]) -> Self {
        let labels = values
            .iter()
            .map(|v| dtoa::Buffer::new().format(*v).into())
            .chain(std::iter::once("+Inf".into()))
            .collect();
        Self {
            values: values.into(),
            labels,
            phases,
        }
    }

    pub(super) fn same(&self, values: &[f64], phases: &[Phase]) -> bool {
        self.phases == phases
            && self.values.len() == values.len()
            && self
                .values
                .iter()
                .zip(values)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    /// The bucket of `v`: the first bound it does not exceed, else `+Inf`'s.
    fn bucket(&self, v: f64) -> usize {
        self.values
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.values.len())
    }
}

/// The last failure observed in a bucket, as its exemplar.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kept {
    cell: u32,
    labels: ExemplarLabels,
    value: f64,
}

impl Kept {
    /// Keeps `labels` as the exemplar of `cell` (from [`Histograms::observe`]) in `kept`,
    /// replacing the one before. The list grows by one: a failing target's few.
    pub(super) fn keep(kept: &mut Vec<Kept>, cell: u32, labels: ExemplarLabels, value: f64) {
        let new = Kept {
            cell,
            labels,
            value,
        };
        match kept.iter_mut().find(|k| k.cell == cell) {
            Some(k) => *k = new,
            None => {
                kept.reserve_exact(1);
                kept.push(new);
            }
        }
    }
}

/// The histograms of one target's phases.
#[derive(Debug)]
pub(super) struct Histograms {
    layout: Arc<Layout>,
    /// Per phase, `bounds + 1` bucket counts (not cumulative) and then the sum's `f64` bits.
    cells: Box<[AtomicU64]>,
}

/// One phase's histogram as read for encoding: bucket counts are copied out first, so that
/// `_count` (their total) always equals the `+Inf` bucket, even while a probe records.
pub(super) struct Read<'a> {
    pub(super) sum: f64,
    pub(super) count: u64,
    counts: [u64; MAX_BUCKETS + 1],
    histograms: &'a Histograms,
    phase: usize,
}

impl Read<'_> {
    /// Each bucket's `le` text, cumulative count and exemplar (from `kept`), in order.
    pub(super) fn buckets(
        &self,
        kept: &[Kept],
        mut each: impl FnMut(&str, u64, Option<(ExemplarLabels, f64)>),
    ) {
        let h = self.histograms;
        let base = self.phase * h.stride();
        let mut cumulative = 0;
        for (b, le) in h.layout.labels.iter().enumerate() {
            cumulative += self.counts[b];
            let cell = (base + b) as u32;
            let exemplar = (kept.iter())
                .find(|k| k.cell == cell)
                .map(|k| (k.labels, k.value));
            each(le, cumulative, exemplar);
        }
    }
}

impl Histograms {
    pub(super) fn new(layout: Arc<Layout>) -> Self {
        let stride = layout.values.len() + 2;
        Self {
            cells: (0..stride * layout.phases.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            layout,
        }
    }

    fn stride(&self) -> usize {
        self.layout.values.len() + 2
    }

    pub(super) fn phases(&self) -> &'static [Phase] {
        self.layout.phases
    }

    /// Observes every phase `outcome` finished, and tells `hit` each bucket's cell and value:
    /// a failure's exemplar goes to each bucket hit (see [`Kept::keep`]).
    pub(super) fn observe(&self, outcome: &Outcome, mut hit: impl FnMut(u32, f64)) {
        let stride = self.stride();
        for (i, phase) in self.layout.phases.iter().enumerate() {
            let Some(d) = outcome.phases.get(*phase) else {
                continue;
            };
            let v = d.as_secs_f64();
            let cell = i * stride + self.layout.bucket(v);
            self.cells[cell].fetch_add(1, Relaxed);
            let sum = &self.cells[i * stride + stride - 1];
            let _ = sum.fetch_update(Relaxed, Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
            hit(cell as u32, v);
        }
    }

    /// Phase `i` (of [`phases`](Self::phases)) for encoding.
    pub(super) fn read(&self, i: usize) -> Read<'_> {
        let stride = self.stride();
        let cells = &self.cells[i * stride..(i + 1) * stride];
        let mut counts = [0; MAX_BUCKETS + 1];
        for (c, cell) in counts.iter_mut().zip(&cells[..stride - 1]) {
            *c = cell.load(Relaxed);
        }
        Read {
            sum: f64::from_bits(cells[stride - 1].load(Relaxed)),
            count: counts.iter().sum(),
            counts,
            histograms: self,
            phase: i,
        }
    }
}
