//! File descriptors, which probes and the HTTP server draw on: the soft limit raised to the hard
//! one at start (as the Go runtime does for every Go exporter), and [`Shortage`], which tells a
//! probe that tickr itself could not make (no descriptor, no buffer, no local port) from a
//! failure of its target.

use std::io;

use crate::limits::RESERVE;
use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// A resource on tickr's side that a probe could not get. Such a probe says nothing about its
/// target: it is counted in `tickr_probes_skipped_total{cause}`, never in the target's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shortage {
    /// `EMFILE`/`ENFILE`: the process's (or the system's) descriptor limit.
    FileDescriptors,
    /// `ENOBUFS`/`ENOMEM`: the kernel had no memory for the socket.
    Memory,
    /// `EADDRNOTAVAIL` on connect: no local port (or source address) left to connect from.
    LocalPorts,
}

impl Shortage {
    pub const ALL: [Shortage; 3] = [
        Shortage::FileDescriptors,
        Shortage::Memory,
        Shortage::LocalPorts,
    ];

    /// The `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Shortage::FileDescriptors => "file_descriptors",
            Shortage::Memory => "memory",
            Shortage::LocalPorts => "local_ports",
        }
    }

    /// The shortage behind `e`, if it is one.
    pub fn of(e: &io::Error) -> Option<Self> {
        match Errno::from_io_error(e)? {
            Errno::MFILE | Errno::NFILE => Some(Shortage::FileDescriptors),
            Errno::NOBUFS | Errno::NOMEM => Some(Shortage::Memory),
            Errno::ADDRNOTAVAIL => Some(Shortage::LocalPorts),
            _ => None,
        }
    }
}

/// The descriptor limit before and after [`raise_limit`]; `None` for unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: Option<u64>,
    pub now: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Service managers commonly start
/// processes at a soft 1024 with a far higher hard limit, and 1024 is not much for a prober
/// with a thousand probes in flight and its own HTTP clients.
pub fn raise_limit() -> io::Result<Raised> {
    let limit = getrlimit(Resource::Nofile);
    let raised = Raised {
        before: limit.current,
        now: limit.maximum,
        hard: limit.maximum,
    };
    if limit.current == limit.maximum {
        return Ok(raised);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(raised)
}

/// The soft descriptor limit now in force; `None` for unlimited.
pub fn limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Logs what [`raise_limit`] did, and warns when `wanted` descriptors (probes plus server
/// connections at their limits) and [`RESERVE`] do not fit under the limit: then a burst
/// can run out, and the probes it costs are counted as skipped, not as failures.
pub fn report(raised: io::Result<Raised>, wanted: usize) {
    let text = |l: Option<u64>| l.map_or("unlimited".to_owned(), |n| n.to_string());
    let now = match raised {
        Ok(r) => {
            if r.before != r.now {
                tracing::info!(
                    before = text(r.before),
                    now = text(r.now),
                    "raised the file descriptor limit to the hard limit"
                );
            } else {
                tracing::debug!(limit = text(r.now), "file descriptor limit");
            }
            r.now
        }
        Err(e) => {
            let now = limit();
            tracing::warn!(error = %e, limit = text(now), "could not raise the file descriptor limit");
            now
        }
    };
    if let Some(limit) = now {
        if wanted as u64 + RESERVE > limit {
            tracing::warn!(
                limit,
                wanted = wanted as u64 + RESERVE,
                "the file descriptor limit is below what max_concurrent_probes and \
                 --web.max-connections may use at once; probes that find none left are \
                 counted in tickr_probes_skipped_total"
            );
        }
    }
}
