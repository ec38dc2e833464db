//! A target's phase histograms as one block of plain atomics: per phase, the count of each
//! bucket and the sum's bits. Observing is two atomic additions (a third, compare-and-swap,
//! for the sum); encoding reads them in place. The failure exemplars are kept apart, one per
//! bucket a failure landed in, in a list that stays empty (and unallocated) for a target that
//! never failed. Six prometheus-client histograms took about 3 KB per target (two `Arc`s, a
//! lock, a bucket vector and an exemplar map each); this takes 8 bytes per bucket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::limits::MAX_BUCKETS;
use crate::probe::{Outcome, Phase};

use super::target::ExemplarLabels;

/// Bucket bounds, with their `le` texts (`+Inf` last), shared by every target that uses them.
#[derive(Debug, PartialEq)]
pub(super) struct Bounds {
    values: Box<[f64]>,
    labels: Box<[Box<str>]>,
}

impl Bounds {
    pub(super) fn new(values: &[f64]) -> Self {
        let labels = values
            .iter()
            .map(|v| dtoa::Buffer::new().format(*v).into())
            .chain(std::iter::once("+Inf".into()))
            .collect();
        Self {
            values: values.into(),
            labels,
        }
    }

    pub(super) fn same(&self, values: &[f64]) -> bool {
        self.values.len() == values.len()
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
struct Kept {
    cell: u32,
    labels: ExemplarLabels,
    value: f64,
}

/// The histograms of one target's phases.
#[derive(Debug)]
pub(super) struct Histograms {
    bounds: Arc<Bounds>,
    phases: &'static [Phase],
    /// Per phase, `bounds + 1` bucket counts (not cumulative) and then the sum's `f64` bits.
    cells: Box<[AtomicU64]>,
    exemplars: Mutex<Vec<Kept>>,
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
    /// Each bucket's `le` text, cumulative count and exemplar, in order.
    pub(super) fn buckets(&self, mut each: impl FnMut(&str, u64, Option<(ExemplarLabels, f64)>)) {
        let h = self.histograms;
        let kept = h.exemplars.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.phase * h.stride();
        let mut cumulative = 0;
        for (b, le) in h.bounds.labels.iter().enumerate() {
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
    pub(super) fn new(bounds: Arc<Bounds>, phases: &'static [Phase]) -> Self {
        let stride = bounds.values.len() + 2;
        Self {
            cells: (0..stride * phases.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            bounds,
            phases,
            exemplars: Mutex::new(Vec::new()),
        }
    }

    fn stride(&self) -> usize {
        self.bounds.values.len() + 2
    }

    pub(super) fn phases(&self) -> &'static [Phase] {
        self.phases
    }

    /// Observes every phase `outcome` finished; a failure's exemplar goes to each bucket hit.
    pub(super) fn observe(&self, outcome: &Outcome, exemplar: Option<ExemplarLabels>) {
        let stride = self.stride();
        for (i, phase) in self.phases.iter().enumerate() {
            let Some(d) = outcome.phases.get(*phase) else {
                continue;
            };
            let v = d.as_secs_f64();
            let cell = i * stride + self.bounds.bucket(v);
            self.cells[cell].fetch_add(1, Relaxed);
            let sum = &self.cells[i * stride + stride - 1];
            let _ = sum.fetch_update(Relaxed, Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
            if let Some(labels) = exemplar {
                let cell = cell as u32;
                let mut kept = self.exemplars.lock().unwrap_or_else(|e| e.into_inner());
                let new = Kept {
                    cell,
                    labels,
                    value: v,
                };
                match kept.iter_mut().find(|k| k.cell == cell) {
                    Some(k) => *k = new,
                    None => kept.push(new),
                }
            }
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
