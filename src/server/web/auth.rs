//! The basic-auth check of `basic_auth_users`: bcrypt behind caches of recent verdicts and a
//! small queue that is fair across client addresses, so that a flood of wrong passwords from
//! some clients cannot lock out a user logging in from another.
//!
//! # Design
//!
//! A bcrypt check costs 50-100 ms of CPU at cost 10 (as `htpasswd -B` makes them) and doubles
//! with each step of cost. Checks run one at a time, so a flood of wrong passwords costs one
//! core, not all of them; the question is who waits for that core. What a request meets, in
//! order:
//!
//! 1. **Verdicts already known.** Prometheus sends the same credentials on every scrape, so
//!    successful checks are remembered (256 at most), and so are failed ones (the last 4,096):
//!    a wrong password sent again is answered 401 at once. Both are keyed by a SHA-256 of user
//!    name, the user's hash (none for an unknown user) and password, never by the password
//!    itself; a changed hash, or a user added under a name that used to be unknown, gives new
//!    keys, so no verdict outlives the hash it was made with. A known wrong password is
//!    answered as fast for an unknown user as for a real one: the shortcut tells nothing about
//!    which names exist.
//! 2. **The same credentials already being checked** (two first scrapes at once, a browser's
//!    page and its favicon): the request waits for that check's verdict instead of queueing
//!    another.
//! 3. **One check per client.** A client (an IPv4 address, or an IPv6 /64, which one host is
//!    often given whole) has at most one check waiting or running. A request from it with other
//!    credentials meanwhile is answered 429 with `Retry-After`, when its client's check ends:
//!    the flood's connections wait without costing anything instead of spinning on 429s, and
//!    300 of them from one address take one place in the queue, not 300.
//! 4. **A queue that answers within about a second.** It admits as many checks as the recent
//!    check time fits in a second; beyond that, 429 (after one check's time) rather than a
//!    wait that outlasts Prometheus' scrape timeout. Clients whose check failed in the last 5
//!    minutes get at most half of the queue, so that a flood spread over many addresses leaves
//!    room for clients that have not failed.
//!
//! A check that has started runs to its end even when its client goes away, and keeps its
//! place until then, so closing connections early buys no extra checks. Unknown users are
//! checked against a decoy hash of the highest configured cost, user names are compared in
//! constant time, and passwords longer than bcrypt's 72 bytes are refused, not cut.
//!
//! Rejected: a fixed rate of checks per address (it needs a guess of how fast bcrypt runs
//! here, and bounds nothing when the flood comes from many addresses; the queue above follows
//! the measured check time), and more than one check at a time (a flood would take every core
//! from the probes). Not solved: a legitimate client behind the same address as a flood (one
//! NAT) shares that address's one check, and gets 429 while the flood's check runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, AUTHORIZATION};
use tokio::sync::{watch, Semaphore};

use super::WebConfig;
// Whom a check is charged to: the same clients as connections are counted by.
use crate::limits::{
    QUEUE_MAX, QUEUE_MIN, QUEUE_WAIT, REFUSED_CAPACITY, SUSPECTS_CAPACITY, SUSPECT_FOR,
    VERIFIED_CAPACITY,
};
use crate::server::slots::Client;

/// The `caller` of its warning, as it was before it moved here from `webconfig/auth.rs`: log
/// filters and searches that operators wrote keep matching.
const CALLER: &str = "tickr::webconfig::auth";

/// What a check at cost 10 is taken to cost before one has been timed (it doubles with each
/// step of cost).
const COST_10_ESTIMATE: Duration = Duration::from_millis(100);

/// How long a client answered 429 is asked to wait.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often, at most, refused checks are logged as a warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the basic-auth check says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No credentials are needed, or these are a configured user's.
    Allowed,
    /// No credentials, or wrong ones: 401.
    Refused,
    /// Not checked: this client already has a check waiting or running, or the queue is full.
    /// 429, to be tried again after [`RETRY_AFTER`].
    Busy,
}

/// The basic-auth check with its caches, its queue and the decoy hashes (see the module doc).
pub(super) struct Authenticator {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The one bcrypt check at a time. A permit is held by the check itself, on the blocking
    /// pool, so that a check whose client went away still occupies it until it ends.
    bcrypt: Arc<Semaphore>,
    /// A bcrypt hash of a throwaway password per cost, made once per cost.
    decoys: Mutex<HashMap<u32, String>>,
}

#[derive(Default)]
struct State {
    /// Keys of credentials that passed a check.
    verified: HashSet<[u8; 32]>,
    /// Keys of credentials that failed one.
    refused: Recent<[u8; 32]>,
    /// The checks admitted (waiting or running), by key; each receiver wakes when its check ends.
    checking: HashMap<[u8; 32], watch::Receiver<()>>,
    /// The clients with a check admitted.
    clients: HashMap<Client, Queued>,
    /// Clients whose check failed, and when the last one did.
    suspects: Recent<Client>,
    /// A moving average of recent checks' durations; `None` before the first.
    check_time: Option<Duration>,
    /// When a full queue was last logged.
    warned: Option<Instant>,
}

/// A client's admitted check.
struct Queued {
    /// Whether the client counted as failing when it was admitted.
    suspect: bool,
    /// Wakes when the check ends.
    done: watch::Receiver<()>,
}

/// What a request learns when it asks for a check.
enum Admission {
    Known(Verdict),
    /// The same credentials are being checked: wait until that check ends, then look again.
    Wait(watch::Receiver<()>),
    /// No check now: the client's own check (when it has one) must end first.
    Busy(Option<watch::Receiver<()>>),
    Admitted(Ticket),
}

/// A place in the queue. Dropping it (the check ended, or the request gave up waiting for its
/// turn) frees the client's place and wakes requests waiting for the same credentials.
struct Ticket {
    shared: Arc<Shared>,
    key: [u8; 32],
    client: Client,
    _done: watch::Sender<()>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.checking.remove(&self.key);
        state.clients.remove(&self.client);
    }
}

impl Authenticator {
    pub(super) fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                bcrypt: Arc::new(Semaphore::new(1)),
                decoys: Mutex::default(),
            }),
        }
    }

    /// Checks the `Authorization` header of a request from `peer` against `config`'s users.
    pub(super) async fn authorize(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Verdict {
        if config.users.is_empty() {
            return Verdict::Allowed;
        }
        let Some((user, password)) = credentials(headers) else {
            return Verdict::Refused;
        };
        let wanted = digest(&[&user]);
        // Every user is compared, in constant time, so timing does not tell which name matched.
        let mut found = None;
        for u in &config.users {
            if constant_time_eq(&u.name_digest, &wanted) {
                found = Some(u);
            }
        }
        // No bcrypt hash is empty, so an unknown user's key cannot be a known user's.
        let hash = found.map_or(&b""[..], |u| u.hash.as_bytes());
        let key = digest(&[&user, hash, &password]);
        let client = Client::from(peer);
        let estimate = COST_10_ESTIMATE.mul_f64(2f64.powi(config.max_cost as i32 - 10));
        // A second round only when the check waited for ended without a verdict (its
        // request gave up before its turn); a third would mean that happened again: let the
        // client retry rather than loop here.
        for _ in 0..2 {
            match self.shared.admit(key, client, estimate, peer) {
                Admission::Known(verdict) => return verdict,
                Admission::Wait(mut done) => {
                    // Never sent to: `changed` returns when the check's ticket is dropped.
                    let _ = done.changed().await;
                }
                Admission::Busy(own) => {
                    // Answered when a retry could first be admitted: once the client's own
                    // check has ended, or after a check's time when the queue is full, and
                    // within RETRY_AFTER. A flood's connections then wait at no cost, instead
                    // of spinning on 429s and taking CPU from the checks.
                    let turn = async {
                        match own {
                            Some(mut done) => drop(done.changed().await),
                            None => tokio::time::sleep(self.shared.check_time(estimate)).await,
                        }
                    };
                    let _ = tokio::time::timeout(RETRY_AFTER, turn).await;
                    return Verdict::Busy;
                }
                Admission::Admitted(ticket) => {
                    let user = found.map(|u| (u.hash.clone(), u.cost));
                    return self.check(ticket, user, config.max_cost, password).await;
                }
            }
        }
        Verdict::Busy
    }

    /// Runs the bcrypt check of `ticket`'s credentials when its turn comes: against `user`'s
    /// hash and cost, or the decoy hash at `max_cost` for an unknown user.
    async fn check(
        &self,
        ticket: Ticket,
        user: Option<(String, u32)>,
        max_cost: u32,
        password: Vec<u8>,
    ) -> Verdict {
        let Ok(permit) = self.shared.bcrypt.clone().acquire_owned().await else {
            return Verdict::Refused;
        };
        let shared = self.shared.clone();
        let allowed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let known = user.is_some();
            let (hash, cost) = user.unwrap_or((String::new(), max_cost));
            let hash = if known { hash } else { shared.decoy(cost) };
            let started = Instant::now();
            // Like Go's bcrypt, a password longer than bcrypt's 72 bytes is refused, not cut.
            let matches = bcrypt::non_truncating_verify(&password, &hash).unwrap_or(false);
            // The decoy's own password lets no one in.
            let allowed = matches && known;
            shared.record(&ticket, allowed, started.elapsed());
            allowed
        })
        .await
        .unwrap_or(false);
        if allowed {
            Verdict::Allowed
        } else {
            Verdict::Refused
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recent check time, or `estimate` before the first check.
    fn check_time(&self, estimate: Duration) -> Duration {
        self.lock().check_time.unwrap_or(estimate)
    }

    /// Steps 1 to 4 of the module doc, under one lock. `estimate` is the check time assumed
    /// until one has been timed.
    fn admit(
        self: &Arc<Self>,
        key: [u8; 32],
        client: Client,
        estimate: Duration,
        peer: IpAddr,
    ) -> Admission {
        let mut state = self.lock();
        if state.verified.contains(&key) {
            return Admission::Known(Verdict::Allowed);
        }
        if state.refused.get(&key).is_some() {
            return Admission::Known(Verdict::Refused);
        }
        if let Some(done) = state.checking.get(&key) {
            return Admission::Wait(done.clone());
        }
        if let Some(own) = state.clients.get(&client) {
            return Admission::Busy(Some(own.done.clone()));
        }
        let now = Instant::now();
        let suspect = state
            .suspects
            .get(&client)
            .is_some_and(|failed| now.duration_since(failed) < SUSPECT_FOR);
        let capacity = queue_capacity(state.check_time.unwrap_or(estimate));
        let suspects_queued = state.clients.values().filter(|q| q.suspect).count();
        if state.clients.len() >= capacity || (suspect && suspects_queued >= capacity / 2) {
            if state
                .warned
                .is_none_or(|w| now.duration_since(w) >= WARN_EVERY)
            {
                state.warned = Some(now);
                tracing::warn!(
                    target: CALLER,
                    %peer,
                    queued = state.clients.len(),
                    "basic-auth checks refused with 429: more clients are logging in than bcrypt \
                     can answer within a second (a password-guessing flood?)"
                );
            }
            return Admission::Busy(None);
        }
        let (done, waiting) = watch::channel(());
        state.clients.insert(
            client,
            Queued {
                suspect,
                done: waiting.clone(),
            },
        );
        state.checking.insert(key, waiting);
        Admission::Admitted(Ticket {
            shared: self.clone(),
            key,
            client,
            _done: done,
        })
    }

    /// Remembers the verdict of `ticket`'s check, and how long the check took.
    fn record(&self, ticket: &Ticket, allowed: bool, took: Duration) {
        let mut state = self.lock();
        if allowed {
            if state.verified.len() >= VERIFIED_CAPACITY {
                state.verified.clear();
            }
            state.verified.insert(ticket.key);
        } else {
            let now = Instant::now();
            state.refused.insert(ticket.key, now, REFUSED_CAPACITY);
            state.suspects.insert(ticket.client, now, SUSPECTS_CAPACITY);
        }
        state.check_time = Some(match state.check_time {
            Some(average) => (average * 3 + took) / 4,
            None => took,
        });
    }

    fn decoy(&self, cost: u32) -> String {
        let mut decoys = self.decoys.lock().unwrap_or_else(|e| e.into_inner());
        decoys
            .entry(cost)
            .or_insert_with(|| bcrypt::hash("tickr decoy", cost).unwrap_or_default())
            .clone()
    }
}

/// How many checks fit in [`QUEUE_WAIT`] at `check_time` each.
fn queue_capacity(check_time: Duration) -> usize {
    let fits = QUEUE_WAIT.as_nanos() / check_time.as_nanos().max(1);
    usize::try_from(fits)
        .unwrap_or(QUEUE_MAX)
        .clamp(QUEUE_MIN, QUEUE_MAX)
}

/// A bounded map to the time each entry was last inserted; when full, the entry inserted first
/// goes.
struct Recent<K> {
    at: HashMap<K, Instant>,
    order: VecDeque<K>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Self {
            at: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Recent<K> {
    fn get(&self, key: &K) -> Option<Instant> {
        self.at.get(key).copied()
    }

    fn insert(&mut self, key: K, now: Instant, capacity: usize) {
        if self.at.insert(key, now).is_some() {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.at.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.at.len()
    }
}

/// User and password of an `Authorization: Basic` header.
fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Standard base64 (RFC 4648 §4), padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text
        .strip_suffix("==")
        .or_else(|| text.strip_suffix('='))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 6 leftover bits: a length of 4n+1 characters, which no encoding produces.
    (bits < 6).then_some(out)
}

/// SHA-256 of length-prefixed `parts`, from the ring provider tickr already carries.
pub(super) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let mut ctx = suite
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider
        .start();
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 output is 32 bytes")
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::pin::Pin;

    use super::*;

    const ALICE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const BOB: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    /// A configuration with alice (password `pw`) and carol (`pw2`), at bcrypt's lowest cost.
    fn config() -> WebConfig {
        let alice = bcrypt::hash("pw", 4).expect("bcrypt");
        let carol = bcrypt::hash("pw2", 4).expect("bcrypt");
        let text = format!("basic_auth_users:\n  alice: {alice}\n  carol: {carol}\n");
        super::super::parse(Path::new("web.yml"), &text).expect("valid")
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = format!("{user}:{password}").into_bytes();
        let mut encoded = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                encoded.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        let mut headers = HeaderMap::new();
        let value = format!("Basic {encoded}");
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    type Pending<'a> = Pin<Box<dyn Future<Output = Verdict> + 'a>>;

    /// Polls `check` once: its verdict if it needs no bcrypt turn, or the check, still waiting.
    async fn now<'a>(mut check: Pending<'a>) -> Result<Verdict, Pending<'a>> {
        tokio::select! {
            biased;
            verdict = &mut check => Ok(verdict),
            () = std::future::ready(()) => Err(check),
        }
    }

    /// Awaits `check` for a while: a test that goes wrong fails instead of hanging.
    async fn within(check: Pending<'_>) -> Option<Verdict> {
        tokio::time::timeout(RETRY_AFTER * 5, check).await.ok()
    }

    fn request<'a>(
        auth: &'a Authenticator,
        config: &'a WebConfig,
        headers: &'a HeaderMap,
        peer: IpAddr,
    ) -> Pending<'a> {
        Box::pin(auth.authorize(config, headers, peer))
    }

    #[test]
    fn decodes_basic_credentials() {
        let mut headers = HeaderMap::new();
        // "Aladdin:open sesame", RFC 7617's example.
        headers.insert(
            AUTHORIZATION,
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".parse().unwrap(),
        );
        assert_eq!(
            credentials(&headers),
            Some((b"Aladdin".to_vec(), b"open sesame".to_vec()))
        );
        assert_eq!(
            credentials(&basic("a", "b:c")),
            Some((b"a".to_vec(), b"b:c".to_vec()))
        );
        assert_eq!(base64_decode("YTpi"), Some(b"a:b".to_vec()));
        assert_eq!(base64_decode("YTpiYw"), Some(b"a:bc".to_vec()));
        assert_eq!(base64_decode("YTpiY"), None);
        assert_eq!(base64_decode("YT!i"), None);
    }

    #[tokio::test]
    async fn remembers_verdicts_keyed_by_credentials() {
        let config = config();
        let auth = Authenticator::new();
        let state = || auth.shared.lock();
        assert_eq!(
            auth.authorize(&config, &HeaderMap::new(), ALICE).await,
            Verdict::Refused
        );
        // A wrong password, and an unknown user checked against the decoy hash, even with the
        // decoy's own password.
        for (user, password) in [("alice", "no"), ("bob", "pw"), ("bob", "tickr decoy")] {
            let verdict = auth.authorize(&config, &basic(user, password), ALICE).await;
            assert_eq!(verdict, Verdict::Refused, "{user}:{password}");
        }
        assert!(state().verified.is_empty());
        assert_eq!(state().refused.len(), 3);
        assert_eq!(
            auth.authorize(&config, &basic("alice", "pw"), ALICE).await,
            Verdict::Allowed
        );
        assert_eq!(state().verified.len(), 1);
        assert_eq!(
            auth.shared
                .decoys
                .lock()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [&4]
        );

        // With bcrypt busy, known verdicts are still answered at once, from any address.
        let _bcrypt = auth.shared.bcrypt.clone().acquire_owned().await.unwrap();
        let (right, wrong) = (basic("alice", "pw"), basic("alice", "no"));
        assert_eq!(
            now(request(&auth, &config, &right, BOB)).await.ok(),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            now(request(&auth, &config, &wrong, BOB)).await.ok(),
            Some(Verdict::Refused)
        );
        // A new hash for alice: neither verdict holds for it.
        let changed = config_with_alice("no");
        assert!(now(request(&auth, &changed, &wrong, BOB)).await.is_err());
    }

    fn config_with_alice(password: &str) -> WebConfig {
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        let text = format!("basic_auth_users:\n  alice: {hash}\n");
        super::super::parse(Path::new("web.yml"), &text).expect("valid")
    }

    #[tokio::test]
    async fn one_check_per_client_and_the_same_credentials_share_one() {
        let config = config();
        let auth = Authenticator::new();
        let bcrypt = auth.shared.bcrypt.clone().acquire_owned().await.unwrap();
        let guess = |n: u8| basic("alice", &n.to_string());
        let (guess1, guess2, guess3) = (guess(1), guess(2), guess(3));
        let right = basic("carol", "pw2");
        let first = now(request(&auth, &config, &guess1, ALICE))
            .await
            .expect_err("queued");
        // Other credentials from the same client (the same IPv4 address, also mapped into
        // IPv6) get no check: 429, once the client's own check has ended.
        let mut busy = Vec::new();
        for peer in [ALICE, Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().into()] {
            busy.push(
                now(request(&auth, &config, &guess3, peer))
                    .await
                    .expect_err("held"),
            );
        }
        // The same for an IPv6 /64.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v6_next: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let v6_other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let in_v6 = now(request(&auth, &config, &guess2, v6))
            .await
            .expect_err("queued");
        busy.push(
            now(request(&auth, &config, &guess3, v6_next))
                .await
                .expect_err("held"),
        );
        // The same credentials as a check under way wait for its verdict, from any client.
        let twin = now(request(&auth, &config, &guess1, ALICE))
            .await
            .expect_err("waits");
        let from_bob = now(request(&auth, &config, &guess1, BOB))
            .await
            .expect_err("waits");
        let other_64 = now(request(&auth, &config, &right, v6_other))
            .await
            .expect_err("queued");
        assert_eq!(auth.shared.lock().clients.len(), 3);

        drop(bcrypt);
        assert_eq!(within(first).await, Some(Verdict::Refused));
        assert_eq!(within(twin).await, Some(Verdict::Refused));
        assert_eq!(within(from_bob).await, Some(Verdict::Refused));
        assert_eq!(within(in_v6).await, Some(Verdict::Refused));
        assert_eq!(within(other_64).await, Some(Verdict::Allowed));
        for b in busy {
            assert_eq!(within(b).await, Some(Verdict::Busy));
        }
        let state = auth.shared.lock();
        assert!(state.clients.is_empty() && state.checking.is_empty());
        // Two checks failed: guess 3 was never checked.
        assert_eq!(state.refused.len(), 2);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_frees_its_place() {
        let config = config();
        let auth = Authenticator::new();
        let bcrypt = auth.shared.bcrypt.clone().acquire_owned().await.unwrap();
        let guess = basic("alice", "1");
        let first = now(request(&auth, &config, &guess, ALICE))
            .await
            .expect_err("queued");
        let twin = now(request(&auth, &config, &guess, BOB))
            .await
            .expect_err("waits");
        drop(first);
        // The twin's check never ran: it queues its own, in its own client's place.
        let twin = now(twin).await.expect_err("queued");
        assert_eq!(
            auth.shared.lock().clients.keys().collect::<Vec<_>>(),
            [&Client::from(BOB)]
        );
        drop(bcrypt);
        assert_eq!(within(twin).await, Some(Verdict::Refused));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_failing_clients_get_half() {
        let config = config();
        let auth = Authenticator::new();
        let client = |n: usize| IpAddr::V4(Ipv4Addr::new(198, 51, 100, n as u8));
        let guesses: Vec<HeaderMap> = (0..8).map(|n| basic("alice", &n.to_string())).collect();
        let right = basic("carol", "pw2");
        // Clients 1 and 2 have failed once; checks are timed at 250 ms: four fit in a second.
        for n in [1, 2] {
            let verdict = auth.authorize(&config, &guesses[n], client(n)).await;
            assert_eq!(verdict, Verdict::Refused);
        }
        auth.shared.lock().check_time = Some(Duration::from_millis(250));
        let bcrypt = auth.shared.bcrypt.clone().acquire_owned().await.unwrap();

        let mut queued = Vec::new();
        for n in [1, 2] {
            let check = request(&auth, &config, &guesses[n + 2], client(n));
            queued.push(now(check).await.expect_err("queued"));
        }
        // A third failing client finds the failing clients' half taken; a new client does not.
        auth.shared
            .lock()
            .suspects
            .insert(client(3).into(), Instant::now(), SUSPECTS_CAPACITY);
        let mut busy = vec![now(request(&auth, &config, &guesses[5], client(3)))
            .await
            .expect_err("held")];
        for n in [4, 5] {
            let check = request(&auth, &config, &guesses[n + 2], client(n));
            queued.push(now(check).await.expect_err("queued"));
        }
        // Four queued: the next client gets 429, even one that has not failed.
        busy.push(
            now(request(&auth, &config, &right, client(6)))
                .await
                .expect_err("held"),
        );
        assert_eq!(auth.shared.lock().clients.len(), 4);
        // A full queue's 429 comes after a check's time (250 ms), with no check.
        for b in busy {
            assert_eq!(within(b).await, Some(Verdict::Busy));
        }
        assert_eq!(auth.shared.lock().refused.len(), 2);

        drop(bcrypt);
        for check in queued {
            assert_eq!(within(check).await, Some(Verdict::Refused));
        }
        assert_eq!(auth.shared.lock().refused.len(), 6);
        assert_eq!(
            auth.authorize(&config, &right, client(6)).await,
            Verdict::Allowed
        );
    }

    #[test]
    fn the_queue_holds_a_second_of_checks() {
        assert_eq!(queue_capacity(Duration::from_millis(60)), 16);
        assert_eq!(queue_capacity(Duration::from_millis(250)), 4);
        assert_eq!(queue_capacity(Duration::from_secs(3)), QUEUE_MIN);
        assert_eq!(queue_capacity(Duration::from_micros(100)), QUEUE_MAX);
        assert_eq!(queue_capacity(Duration::ZERO), QUEUE_MAX);
    }

    #[test]
    fn recent_forgets_the_oldest_first() {
        let mut recent = Recent::default();
        let t = Instant::now();
        for n in 0..4 {
            recent.insert(n, t, 3);
        }
        assert_eq!(recent.len(), 3);
        assert!(recent.get(&0).is_none() && recent.get(&3).is_some());
        // Inserting again refreshes the time, not the place.
        let later = t + Duration::from_secs(1);
        recent.insert(1, later, 3);
        assert_eq!(recent.get(&1), Some(later));
        recent.insert(4, later, 3);
        assert!(recent.get(&1).is_none());
    }
}
