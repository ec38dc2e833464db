//! Errors into reasons: every hyper (and h2, and I/O) error a probe meets becomes exactly one
//! [`Reason`], `reset` for a connection the server dropped, `protocol` for what is not HTTP.

use std::io;

use super::{Failure, Reason};

/// I/O errors that mean the server (or something between) dropped the connection.
const RESET_KINDS: [io::ErrorKind; 4] = [
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::UnexpectedEof,
];

/// Maps a hyper error to exactly one reason: connection-level breakage is `reset`, anything the
/// server said that is not valid HTTP is `protocol`.
pub(super) fn classify_hyper(e: hyper::Error) -> Failure {
    let detail = error_chain(&e);
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() || e.is_body_write_aborted() {
        return Failure::new(Reason::Reset, detail);
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_user() {
        return Failure::new(Reason::Protocol, detail);
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if RESET_KINDS.contains(&io.kind()) {
                return Failure::new(Reason::Reset, detail);
            }
        } else if h2_abandoned(s) {
            return Failure::new(Reason::Reset, detail);
        }
        source = s.source();
    }
    Failure::new(Reason::Protocol, detail)
}

/// Whether an HTTP/2 error says the server abandoned the response: it sent RST_STREAM or GOAWAY
/// with an error, or the connection ended under the stream. Over HTTP/1.1 the same crash or
/// restart shows as a closed connection, so this is `reset` too, not `protocol` (which stays for
/// frames h2 *detected* as malformed, and for resets h2 sent itself).
fn h2_abandoned(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<h2::Error>().is_some_and(|e| {
        e.is_remote()
            || e.get_io()
                .is_some_and(|io| RESET_KINDS.contains(&io.kind()))
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
