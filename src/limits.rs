//! Every bound tickr puts on what a configuration file or a probed server can make it hold or do,
//! in one place that every module reads. The README's Limits table lists them for users; a value
//! beyond one in the file is an error with its line and column.

use std::time::Duration;

/// Largest configuration (or web configuration) file read: every other count in it is bounded
/// by its size first.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Most targets in one file: ten times what the performance figures measure.
pub const MAX_TARGETS: usize = 100_000;

/// Default cap on probes running at once, across all targets.
pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 1024;

/// Largest accepted `max_concurrent_probes`: far beyond what file descriptors allow, and within
/// what a semaphore can count.
pub const MAX_CONCURRENT_PROBES: usize = 1_000_000;

/// Shortest accepted probe interval; shorter ones are almost always a typo for seconds.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Largest accepted `max_body_bytes`: a probe reads at most this much per response.
pub const MAX_BODY_LIMIT: u64 = 64 << 20;

/// Bytes of a response body a probe keeps (for layer attribution and events); the rest is read,
/// up to `max_body_bytes`, but not kept. `diagnosis.body_excerpt` cannot exceed it.
pub const BODY_HEAD: usize = 64 << 10;

/// Most follow-up probes after a failure.
pub const MAX_CONFIRM: usize = 10;

/// Most addresses per target: listed in `addresses`, or probed with `per_address`.
pub const MAX_ADDRESSES: usize = 16;

/// Most buckets of one duration histogram.
pub const MAX_BUCKETS: usize = 30;

/// Default number of failed probes the event recorder keeps.
pub const DEFAULT_EVENTS: usize = 1000;

/// Most failed probes the event recorder may keep.
pub const MAX_EVENTS: usize = 100_000;

/// Default bytes of the body kept with each event (`diagnosis.body_excerpt`).
pub const DEFAULT_BODY_EXCERPT: u64 = 1024;

/// Characters of a long configuration error message kept at each end: messages quote the
/// offending value, which can be as long as the file.
pub const MESSAGE_END: usize = 200;
