//! Durations, sizes and status patterns: never a panic, and what parses prints back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickr::config::{ByteSize, HumanDuration, StatusPattern};

fuzz_target!(|text: &str| {
    if let Ok(d) = HumanDuration::parse(text) {
        assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d), "{text:?}");
    }
    let _ = ByteSize::parse(text);
    if let Ok(p) = StatusPattern::parse(text) {
        assert!(100 <= p.low && p.low <= p.high && p.high <= 599, "{text:?}");
        assert_eq!(StatusPattern::parse(&p.to_string()), Ok(p), "{text:?}");
    }
});
