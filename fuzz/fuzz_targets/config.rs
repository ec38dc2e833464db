//! The configuration parser: any text either loads or fails with a position inside the
//! document and a one-line message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = tickr::config::parse(Path::new("/nonexistent/fuzz/config.yml"), text) {
        let (line, col) = e.position.expect("a position");
        let breaks = text
            .replace("\r\n", "\n")
            .chars()
            .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
            .count();
        assert!(line >= 1 && col >= 1, "{e}");
        assert!(line <= breaks + 2, "{e}");
        assert!(!e.message.trim().is_empty(), "{e}");
        assert!(!e.message.chars().any(char::is_control), "{e}");
    }
});
