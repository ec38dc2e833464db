//! Name lookups through the system resolver, with a bounded number in flight.
//!
//! `getaddrinfo` blocks and cannot be cancelled. A probe that times out during a lookup gives up
//! on it, but the thread doing the lookup stays busy until libc itself gives up, which under a
//! resolver that drops queries is resolv.conf's `timeout` × `attempts` × servers: up to minutes.
//! Left unbounded, every probe of every target would park one more thread there (hundreds, each
//! with its stack), and the threads would crowd out the rest of the exporter.
//!
//! So at most [`LOOKUP_SLOTS`] lookups run at once, and a slot belongs to the lookup, not to the
//! probe that asked for it: a lookup its probe abandoned keeps its slot until it really ends.
//! When a resolver stops answering, the slots fill with unanswered lookups, further probes wait
//! for a slot under their own timeout and fail as `timeout` in the `resolve` step, and targets
//! that need no lookup (IP literals, static `addresses`) go on unaffected.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, LazyLock};

use crate::limits::LOOKUP_SLOTS;
use tokio::sync::Semaphore;

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(LOOKUP_SLOTS)));

/// Every address of `host:port`, in the resolver's order (RFC 6724 preference).
pub async fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let slot = Arc::clone(&SLOTS)
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("resolver closed"))?;
    let host = host.to_owned();
    let lookup = tokio::task::spawn_blocking(move || {
        // Held until getaddrinfo returns, however long after the caller stopped waiting.
        let _slot = slot;
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    });
    lookup.await.map_err(io::Error::other)?
}

/// Lookups currently holding a slot: running, or abandoned and still waiting on the resolver.
pub fn in_flight() -> usize {
    LOOKUP_SLOTS - SLOTS.available_permits()
}
