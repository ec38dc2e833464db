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
/// up to `max_body_bytes`, but not kept. CDN error pages put their signatures near the end, so
/// this is more than a glance. `diagnosis.body_excerpt` cannot exceed it.
pub const BODY_HEAD: usize = 64 << 10;

/// Largest file a header value, password or token is read from.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Largest `body_file`.
pub const MAX_BODY_FILE_BYTES: u64 = 1 << 20;

/// How often a file a secret is read from is looked at again (one `stat`, shared by every
/// target that names it); it is read again only when it changed.
pub const SECRET_FILE_RECHECK: Duration = Duration::from_secs(1);

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

// --- Probes ---

/// Redirects a probe follows before it fails with reason `redirects`.
pub const MAX_REDIRECTS: u8 = 10;

/// Largest head a forward proxy may answer a CONNECT with (status line and headers); a longer
/// one fails the probe with reason `proxy`. Squid's and tinyproxy's are a few hundred bytes.
pub const MAX_PROXY_HEAD: usize = 16 << 10;

/// Most header lines in a proxy's answer to CONNECT.
pub const MAX_PROXY_HEADERS: usize = 64;

/// How many lookups may be in flight at once, process-wide. Enough for thousands of targets
/// against a resolver that answers in milliseconds; small enough that a resolver that never
/// answers holds only this many threads.
pub const LOOKUP_SLOTS: usize = 32;

/// Rounds of resolutions an address may be missing from before its series go: DNS that
/// rotates through a pool should not make series come and go.
pub const ADDRESS_GRACE_ROUNDS: u32 = 10;

/// Certificates whose `notAfter` is remembered, at most; then the memory starts over.
pub const NOT_AFTER_CACHE: usize = 4096;

/// Accepted certificate chains a verifier remembers, at most (a 32-byte digest and two times
/// each); past it, one remembered chain makes room for each new one.
pub const VERIFIED_CHAINS: usize = 4096;

/// How long an accepted chain is accepted again without checking its signatures, at most.
pub const VERIFIED_CHAIN_TTL: Duration = Duration::from_secs(600);

/// Characters of a certificate's subject, issuer or serial kept in `tickr_tls_cert_info`'s
/// labels: a name can be as long as the certificate, and a label value is stored and sent on
/// every scrape. A longer one is cut and ends in `…`.
pub const CERT_LABEL_CHARS: usize = 256;

/// How often a target's TLS files (`ca_file`, `cert_file`, `key_file`) are looked at for a
/// change: one `stat` per file per this period, whatever the number of targets sharing them.
pub const TLS_FILE_CHECK: Duration = Duration::from_secs(1);

// --- Events ---

/// Headers an event keeps at most.
pub const MAX_HEADERS: usize = 64;

/// The longest value an event keeps of each header (cut with `…`).
pub const MAX_HEADER_VALUE: usize = 512;

/// Most events one `/events` answer carries.
pub const MAX_EVENTS_SHOWN: usize = 1000;

// --- tickr's own server ---

/// Connections served at once by default (`--web.max-connections`).
pub const MAX_CONNECTIONS: usize = 128;

/// How long a write to a client may make no progress before the connection is closed, by
/// default (`--web.write-timeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client gets to complete the TLS handshake, so slow or silent clients cannot pile
/// up connections.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after shutdown starts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown may run past the HTTP drain's grace period before the process exits
/// anyway: the drain and the cancelling of probes take that much at most, so only something
/// stuck reaches it.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// Descriptors tickr needs besides one per probe and per connection: its listener, runtime,
/// log output, DNS lookups in flight, files being read.
pub const RESERVE: u64 = 64;

// --- Basic auth ---

/// Successful verifications kept, at most; the set is emptied when full (only a correct
/// password can fill it).
pub const VERIFIED_CAPACITY: usize = 256;

/// Failed verifications kept, at most, the oldest forgotten first: 32-byte keys, about 200 KiB
/// in all.
pub const REFUSED_CAPACITY: usize = 4096;

/// Clients whose check failed, kept at most (the oldest forgotten first).
pub const SUSPECTS_CAPACITY: usize = 4096;

/// How long a client whose check failed counts as failing (and gets at most half the queue).
pub const SUSPECT_FOR: Duration = Duration::from_secs(300);

/// The longest an admitted check should wait for its turn: the queue admits as many checks as
/// the recent check time fits in this, within [`QUEUE_MIN`] and [`QUEUE_MAX`].
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The fewest checks the basic-auth queue admits, however slow bcrypt runs.
pub const QUEUE_MIN: usize = 2;

/// The most checks the basic-auth queue admits, however fast bcrypt runs.
pub const QUEUE_MAX: usize = 64;

/// Target sources (`target_sources`) at most, and what one may hold.
pub const MAX_SOURCES: usize = 64;
/// The most one source's answer may be: an http_sd body, or a file_sd source's files together.
/// Larger is a failed refresh (about 300 bytes an entry: 100,000 targets with labels fit).
pub const MAX_SOURCE_BYTES: u64 = 32 << 20;
/// How often a file_sd source's files are checked for a change (modification time, size,
/// inode), by default and at the least.
pub const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(5);
pub const MIN_FILE_SD_REFRESH: Duration = Duration::from_millis(100);
/// How often an http_sd inventory is fetched, by default and at the least; and the default
/// timeout of one fetch (or four fifths of a shorter refresh).
pub const DEFAULT_HTTP_SD_REFRESH: Duration = Duration::from_secs(60);
pub const MIN_HTTP_SD_REFRESH: Duration = Duration::from_secs(1);
pub const DEFAULT_HTTP_SD_TIMEOUT: Duration = Duration::from_secs(10);

/// Targets `/probe` may adopt at once (they count against [`MAX_TARGETS`] too), and how long
/// an adopted target is kept without a request for it, by default.
pub const MAX_ADOPTED: usize = 10_000;
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);
/// Compiled size of one adoption pattern at most: a pattern beyond it is a config error.
pub const MAX_PATTERN_BYTES: usize = 1 << 20;
/// What `/probe` leaves of Prometheus' scrape timeout for sending its answer, and the wait for
/// a first probe when the scraper sends no timeout.
pub const PROBE_ANSWER_MARGIN: Duration = Duration::from_millis(500);
pub const PROBE_DEFAULT_WAIT: Duration = Duration::from_secs(10);
