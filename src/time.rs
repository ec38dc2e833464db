//! Wall-clock time as tickr reports it: seconds since the Unix epoch, in gauges, events and log
//! lines. Written once here; a clock set before 1970 reads as the epoch rather than failing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time since the Unix epoch (zero if the clock is set before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Unix seconds, with the fraction: what timestamp gauges and events carry.
pub fn unix_now() -> f64 {
    since_epoch().as_secs_f64()
}
