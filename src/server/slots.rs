//! Who holds the server's connections, by client, under `--web.max-connections`: at the limit a
//! newcomer from a client that holds fewer than the client holding most takes that client's
//! oldest connection; a newcomer from the client holding most is closed at once.
//!
//! So one client (a flood, a hoarder of idle connections) can take every slot only while nobody
//! else wants one, and tickr never holds more than the limit (plus the one being decided) of
//! descriptors for its server. Rejected: leaving connections beyond the limit in the kernel's
//! backlog. It costs no descriptor, but a client that keeps its connections busy then locks
//! everyone else out for as long as it likes.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often a full server is logged at warning level.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A client, as connections are counted: an IPv4 address (IPv4-mapped IPv6 included), or an
/// IPv6 /64, which one host is often given whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(Ipv4Addr),
    V6(u64),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The connections held, shared by the accept loop and every connection's [`Slot`].
#[derive(Debug, Clone)]
pub struct Slots {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    held: usize,
    next: u64,
    /// Each client's connections, oldest first, with the sender that asks one to close.
    by_client: HashMap<Client, VecDeque<(u64, oneshot::Sender<()>)>>,
    warned: Option<Instant>,
}

/// A connection's place: dropping it gives the place back. `evicted` completes when a
/// newcomer took the place; the connection should then close.
#[derive(Debug)]
pub struct Slot {
    slots: Slots,
    client: Client,
    id: u64,
    pub evicted: oneshot::Receiver<()>,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                limit: limit.max(1),
                held: 0,
                next: 0,
                by_client: HashMap::new(),
                warned: None,
            })),
        }
    }

    /// A place for a new connection from `ip`, or `None`: close it.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let client = Client::from(ip);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.held >= inner.limit {
            let (top, most) = inner
                .by_client
                .iter()
                .map(|(c, held)| (*c, held.len()))
                .max_by_key(|(_, n)| *n)
                .expect("a full server holds connections");
            let mine = inner.by_client.get(&client).map_or(0, VecDeque::len);
            let warn = inner.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if warn {
                inner.warned = Some(Instant::now());
            }
            // Taking one of the top client's makes them no less than one apart: fair shares,
            // never inverted, and the top client cannot take its own.
            let evict = mine + 2 <= most;
            if warn {
                tracing::warn!(
                    max_connections = inner.limit,
                    client = %ip,
                    "connection limit reached: a newcomer takes the oldest connection of the \
                     client holding most, or is closed if that is its own"
                );
            }
            if !evict {
                return None;
            }
            let held = inner.by_client.get_mut(&top).expect("the top client");
            if let Some((_, close)) = held.pop_front() {
                let _ = close.send(());
            }
            if held.is_empty() {
                inner.by_client.remove(&top);
            }
            inner.held -= 1;
        }
        let id = inner.next;
        inner.next += 1;
        inner.held += 1;
        let (close, evicted) = oneshot::channel();
        inner
            .by_client
            .entry(client)
            .or_default()
            .push_back((id, close));
        Some(Slot {
            slots: self.clone(),
            client,
            id,
            evicted,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = inner.by_client.get_mut(&self.client) else {
            return;
        };
        // An evicted connection was already taken out when its place was given away.
        let Some(at) = held.iter().position(|(id, _)| *id == self.id) else {
            return;
        };
        held.remove(at);
        if held.is_empty() {
            inner.by_client.remove(&self.client);
        }
        inner.held -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn a_newcomer_takes_the_oldest_place_of_the_client_holding_most() {
        let slots = Slots::new(3);
        let mut flood: Vec<Slot> = (0..3).map(|_| slots.admit(ip(2)).expect("room")).collect();
        // The flood's own newcomer is closed; the flood keeps its three.
        assert!(slots.admit(ip(2)).is_none());
        let mut oldest = flood.remove(0);
        assert!(oldest.evicted.try_recv().is_err());
        // Another client gets in, at the flood's oldest connection's expense.
        let guest = slots.admit(ip(1)).expect("room for another client");
        assert!(
            oldest.evicted.try_recv().is_ok(),
            "the flood's oldest is told to close"
        );
        drop(oldest);
        // 2 + 1 held: full again; the guest (1) cannot take the flood's (2): one apart.
        assert!(slots.admit(ip(1)).is_none());
        // A third client holds none: it takes one of the flood's.
        let third = slots.admit(ip(3)).expect("room for a third client");
        assert!(flood[0].evicted.try_recv().is_ok());
        drop((guest, third, flood));
        assert_eq!(slots.inner.lock().unwrap().held, 0);
        assert!(slots.inner.lock().unwrap().by_client.is_empty());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(Client::from(a), Client::from(b));
        assert_eq!(Client::from(mapped), Client::from(ip(1)));
    }
}
