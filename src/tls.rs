//! TLS client material for probes: trust roots, client certificates, the protocol versions a
//! target may negotiate, and a verifier that records what the server presented (the chain's
//! earliest `notAfter`, its leaf, and whether the chain verified) before judging it, so an
//! expired or untrusted certificate still reports what it was.
//!
//! Heavy objects (root store, verifier, client key) are built once per distinct configuration
//! and rebuilt in place when one of its files changes on disk; each probe gets a fresh
//! `ClientConfig` with resumption disabled, so every probe pays a full handshake like a new
//! visitor would. What a handshake proves is proven every time (the server's signature over
//! the handshake, with the key of the certificate it sent); only the verdict on the chain
//! itself, which depends on nothing but its bytes, the name, the roots and the clock, is
//! remembered for a while (`Verifier`), as browsers do.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Instant;

use bytes::Bytes;

use crate::limits::{
    CERT_LABEL_CHARS, NOT_AFTER_CACHE, TLS_FILE_CHECK, VERIFIED_CHAINS, VERIFIED_CHAIN_TTL,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};

/// The contents of a PEM file, shared by every target that names it.
pub type Pem = Arc<[u8]>;

/// A TLS protocol version a target may be held to. rustls, tickr's TLS library, speaks TLS 1.2
/// and 1.3 only: there is nothing older to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// The configuration's spelling (blackbox_exporter's too).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }

    /// Reads `TLS12`/`TLS13` and the obvious other spellings (`TLS 1.2`, `TLSv1.3`, `1.2`, any
    /// case). TLS 1.0 and 1.1 are recognised, to say why they cannot be had.
    pub fn parse(text: &str) -> Result<Self, String> {
        let squeezed: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '.' | '_'))
            .collect::<String>()
            .to_ascii_uppercase();
        let bare = squeezed.strip_prefix("TLS").unwrap_or(&squeezed);
        match bare.strip_prefix('V').unwrap_or(bare) {
            "12" => Ok(TlsVersion::Tls12),
            "13" => Ok(TlsVersion::Tls13),
            "10" | "11" => Err(format!(
                "TLS version {text:?} is not available: rustls, tickr's TLS library, speaks \
                 TLS 1.2 and 1.3 only (TLS12, TLS13)"
            )),
            _ => Err(format!(
                "unknown TLS version {text:?}: expected TLS12 or TLS13"
            )),
        }
    }
}

/// The versions a target may negotiate, `min` to `max` (both included, `min <= max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsVersions {
    min: TlsVersion,
    max: TlsVersion,
}

impl Default for TlsVersions {
    fn default() -> Self {
        Self {
            min: TlsVersion::Tls12,
            max: TlsVersion::Tls13,
        }
    }
}

impl TlsVersions {
    /// The range, or why there is none.
    pub fn new(min: TlsVersion, max: TlsVersion) -> Result<Self, String> {
        if min > max {
            return Err(format!(
                "min_version {} is above max_version {}: no TLS version is left",
                min.as_str(),
                max.as_str()
            ));
        }
        Ok(Self { min, max })
    }

    pub fn min(self) -> TlsVersion {
        self.min
    }

    pub fn max(self) -> TlsVersion {
        self.max
    }

    /// What rustls' builder takes, preferred first.
    fn rustls(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match (self.min, self.max) {
            (TlsVersion::Tls13, _) => &BOTH[..1],
            (_, TlsVersion::Tls12) => &BOTH[1..],
            _ => &BOTH,
        }
    }
}

/// TLS settings of one target, as configured: the key under which targets share material.
/// Files are named by path (resolved against the configuration's directory); their contents
/// are read at load and again whenever they change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    /// The certificate chain's file and its key's.
    pub client_files: Option<(PathBuf, PathBuf)>,
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
    pub versions: TlsVersions,
}

/// The contents of a target's TLS files, as last read.
#[derive(Clone, PartialEq)]
struct Files {
    ca: Option<Pem>,
    client: Option<(Pem, Pem)>,
}

impl Files {
    /// Reads (or takes from the file cache, if unchanged) every file `settings` names; an
    /// error names the setting and the path, never the contents.
    fn read(settings: &TlsSettings) -> Result<Self, (&'static str, String)> {
        let read = |path: &Path, key| {
            read_file(path).map_err(|e| (key, format!("cannot read {}: {e}", path.display())))
        };
        Ok(Self {
            ca: settings
                .ca_file
                .as_deref()
                .map(|p| read(p, "ca_file"))
                .transpose()?,
            client: match &settings.client_files {
                None => None,
                Some((cert, key)) => Some((read(cert, "cert_file")?, read(key, "key_file")?)),
            },
        })
    }
}

/// What a target's files build: the verifier over its roots, and its client key.
struct Material {
    files: Files,
    verifier: Arc<Verifier>,
    client_key: Option<Arc<CertifiedKey>>,
}

impl Material {
    /// Builds the material; an error names the offending setting and says what is wrong.
    fn build(files: Files) -> Result<Self, (&'static str, String)> {
        let verifier = match &files.ca {
            None => default_verifier(),
            Some(pem) => {
                let mut roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let certs = parse_certs(pem).map_err(|m| ("ca_file", m))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| ("ca_file", format!("unusable CA certificate: {e}")))?;
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| ("ca_file", format!("unusable CA certificates: {e}")))?;
                Arc::new(Verifier::new(webpki))
            }
        };
        let client_key = match &files.client {
            None => None,
            Some((cert_pem, key_pem)) => {
                let chain = parse_certs(cert_pem).map_err(|m| ("cert_file", m))?;
                let key = parse_key(key_pem).map_err(|m| ("key_file", m))?;
                let signing = provider()
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| ("key_file", format!("unsupported private key: {e}")))?;
                let certified = CertifiedKey::new(chain, signing);
                // A half-rotated pair (the new certificate, the old key) is refused, so that
                // the last good pair stays in use until both files are in place.
                match certified.keys_match() {
                    Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
                    Err(_) => {
                        let msg = "the private key does not belong to cert_file's certificate";
                        return Err(("key_file", msg.into()));
                    }
                }
                Some(Arc::new(certified))
            }
        };
        Ok(Self {
            files,
            verifier,
            client_key,
        })
    }
}

/// Ready-to-use TLS client material for the targets with one set of settings. Its files are
/// looked at again at most once per [`TLS_FILE_CHECK`] (by whichever probe comes first), and a
/// changed one is read and the material rebuilt, so a rotated client certificate or CA applies
/// to the next probes without a reload. A file that disappears or turns invalid leaves the
/// last good material in use, and is logged once.
pub struct ClientTls {
    settings: TlsSettings,
    server_name: Option<ServerName<'static>>,
    material: RwLock<Arc<Material>>,
    /// When the files were last looked at, in milliseconds of [`uptime_ms`].
    checked: AtomicU64,
    /// Whether the last look found a file unreadable or invalid (it was logged then).
    failing: AtomicBool,
    /// How many times the material was built: 1, and one more for each change taken up.
    builds: AtomicU64,
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

/// With `Eq`, comparing two `Arc<ClientTls>` that share their material is a pointer comparison.
impl Eq for ClientTls {}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_file", &self.settings.ca_file)
            .field("client_files", &self.settings.client_files)
            .field("insecure_skip_verify", &self.settings.insecure_skip_verify)
            .field("server_name", &self.settings.server_name)
            .field("versions", &self.settings.versions)
            .finish()
    }
}

/// The one crypto provider tickr uses. Passing it explicitly keeps rustls away from its
/// process-wide default, which panics when more than one provider is compiled in.
///
/// ring's suites, with AES-128-GCM first as Go and browsers order them: AES-256 first (ring's
/// order) makes a TLS 1.3 handshake hash with SHA-384, which processors do not accelerate,
/// where SHA-256 runs on their SHA instructions (4 % of an HTTPS probe's CPU).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites.sort_by_key(|suite| {
                use rustls::CipherSuite::*;
                !matches!(
                    suite.suite(),
                    TLS13_AES_128_GCM_SHA256
                        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                )
            });
            Arc::new(provider)
        })
        .clone()
}

/// The verifier for the compiled-in Mozilla roots, shared by every target without an extra CA.
fn default_verifier() -> Arc<Verifier> {
    static VERIFIER: OnceLock<Arc<Verifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("the built-in root store is valid");
            Arc::new(Verifier::new(webpki))
        })
        .clone()
}

/// Milliseconds since the first call: a monotonic clock that fits an atomic.
fn uptime_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Built material by settings, for as long as a target holds it: targets with the same TLS
/// settings share one verifier, root store and client key. 10,000 HTTPS targets with the same
/// `ca_file` took 205 MiB against 74 MiB without one, a root store each; shared, the CA costs
/// its one copy.
static SHARED: Mutex<Option<HashMap<TlsSettings, Weak<ClientTls>>>> = Mutex::new(None);

impl ClientTls {
    /// The material for `settings`: the one already built for the same settings if a target
    /// still holds it (rebuilt now if one of its files changed), else built now. This is the
    /// load's path, so an unreadable or invalid file is an error here (naming its setting),
    /// where later it only keeps the last good material.
    pub fn shared(settings: TlsSettings) -> Result<Arc<Self>, (&'static str, String)> {
        let files = Files::read(&settings)?;
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let cache = guard.get_or_insert_with(HashMap::new);
        if let Some(tls) = cache.get(&settings).and_then(Weak::upgrade) {
            if tls.material().files != files {
                tls.install(Material::build(files)?);
            }
            tls.checked.store(uptime_ms(), Ordering::Relaxed);
            tls.failing.store(false, Ordering::Relaxed);
            return Ok(tls);
        }
        let tls = Arc::new(Self::new(settings.clone(), files)?);
        // Entries of material nobody holds any more go as new ones come.
        if cache.len() >= 64 && cache.len().is_power_of_two() {
            cache.retain(|_, w| w.strong_count() > 0);
        }
        cache.insert(settings, Arc::downgrade(&tls));
        Ok(tls)
    }

    fn new(settings: TlsSettings, files: Files) -> Result<Self, (&'static str, String)> {
        let server_name = match &settings.server_name {
            None => None,
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| ("server_name", format!("invalid server name {name:?}")))?,
            ),
        };
        Ok(Self {
            material: RwLock::new(Arc::new(Material::build(files)?)),
            settings,
            server_name,
            checked: AtomicU64::new(uptime_ms()),
            failing: AtomicBool::new(false),
            builds: AtomicU64::new(1),
        })
    }

    /// How many times this material was built from its files: 1 at first, one more for each
    /// change of a file that was taken up (at a load, or by a probe noticing it).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// The versions probes with this material may negotiate.
    pub fn versions(&self) -> TlsVersions {
        self.settings.versions
    }

    fn material(&self) -> Arc<Material> {
        self.material
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn install(&self, material: Material) {
        *self.material.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        self.builds.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks at the files again if [`TLS_FILE_CHECK`] has passed since the last look, and
    /// takes up a change. Only one caller per period does the look; the others go on with
    /// the material as it is.
    fn refresh(&self) {
        if self.settings.ca_file.is_none() && self.settings.client_files.is_none() {
            return;
        }
        let now = uptime_ms();
        let last = self.checked.load(Ordering::Relaxed);
        let period = u64::try_from(TLS_FILE_CHECK.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < period
            || self
                .checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let looked = Files::read(&self.settings).and_then(|files| {
            if self.material().files == files {
                return Ok(false);
            }
            self.install(Material::build(files)?);
            Ok(true)
        });
        match looked {
            Ok(changed) => {
                let recovered = self.failing.swap(false, Ordering::Relaxed);
                if changed || recovered {
                    tracing::info!(
                        settings = ?self,
                        "TLS files re-read: probes use the new material"
                    );
                }
            }
            Err((key, error)) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        key,
                        error = %error,
                        settings = ?self,
                        "TLS file unusable: probes keep the last good material until it is fixed"
                    );
                }
            }
        }
    }

    /// The name to send in SNI and to verify the certificate against, for a URL host.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned())
            .map_err(|_| format!("invalid TLS server name {host:?}"))
    }

    /// A fresh client configuration for one connection, and the recorder of what the server
    /// presents.
    pub fn client_config(&self, alpn: &[&[u8]]) -> (Arc<ClientConfig>, Arc<ChainRecorder>) {
        self.refresh();
        let material = self.material();
        let recorder = Arc::new(ChainRecorder {
            inner: material.verifier.clone(),
            insecure: self.settings.insecure_skip_verify,
            seen: Mutex::new(Presented::default()),
        });
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.settings.versions.rustls())
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let mut config = match &material.client_key {
            Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::disabled();
        (Arc::new(config), recorder)
    }
}

/// What a file was when it was last read: inode, size, modification and change times. A
/// Kubernetes Secret or ConfigMap update swaps a symlink, which changes the inode that
/// `metadata` follows. Also what secrets read from files are compared by.
pub(crate) type FileState = (u64, u64, i64, i64, i64, i64);

pub(crate) fn file_state(m: &std::fs::Metadata) -> FileState {
    (
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// The contents of files read for TLS material, by path, with the state they were read in.
type FileCache = HashMap<PathBuf, (FileState, Pem)>;
static FILES: Mutex<Option<FileCache>> = Mutex::new(None);

/// The contents of a CA, certificate or key file: read once while it stays as it is (same
/// inode, size and times), so that 10,000 targets naming one `ca_file` read it once per load,
/// and a reload reads it again only when it changed.
fn read_file(path: &Path) -> std::io::Result<Pem> {
    let state = file_state(&std::fs::metadata(path)?);
    let mut guard = FILES.lock().unwrap_or_else(|e| e.into_inner());
    let files = guard.get_or_insert_with(HashMap::new);
    if let Some((seen, bytes)) = files.get(path) {
        if *seen == state {
            return Ok(bytes.clone());
        }
    }
    let bytes: Pem = std::fs::read(path)?.into();
    files.insert(path.to_owned(), (state, bytes.clone()));
    Ok(bytes)
}

/// Every certificate of a PEM file, in order; at least one.
pub(crate) fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM: {e:?}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The first private key of a PEM file. Never the parser's error: it may quote a line of the key.
pub(crate) fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "no usable private key found (PEM: PKCS#8, PKCS#1 or SEC1)".to_owned())
}

/// The `notAfter` of one certificate. Servers present the same chain probe after probe, and
/// parsing it was 3 % of an HTTPS probe's CPU, so results are kept by a keyed hash of the DER
/// bytes (SipHash with a per-process random key: a server cannot craft a collision).
fn not_after(der: &[u8]) -> Option<i64> {
    use std::collections::hash_map::RandomState;
    use std::collections::HashMap;
    use std::hash::BuildHasher;
    use std::sync::LazyLock;
    type Known = Mutex<HashMap<u64, Option<i64>>>;
    static CACHE: LazyLock<(RandomState, Known)> = LazyLock::new(Default::default);
    let (keys, cache) = &*CACHE;
    let key = keys.hash_one(der);
    if let Some(known) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return *known;
    }
    let parsed = x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp());
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= NOT_AFTER_CACHE {
        cache.clear();
    }
    cache.insert(key, parsed);
    parsed
}

/// What the server presented in one handshake, as the verifier saw it.
#[derive(Debug, Default, Clone)]
pub struct Presented {
    /// Earliest `notAfter` (Unix seconds) of the chain.
    pub not_after: Option<i64>,
    /// The leaf certificate, DER.
    pub leaf: Option<Bytes>,
    /// Whether the chain verified against the target's roots for its server name (at the
    /// time of the handshake), whatever `insecure_skip_verify` then made of it.
    pub verified: Option<bool>,
}

/// The standard WebPKI verifier over one set of roots, remembering the chains it accepted.
///
/// A chain's verdict depends only on its certificates, the name checked, the roots and the
/// time; a prober sees the same chain from the same server probe after probe, and checking
/// its signatures again was 13 % of an HTTPS probe's CPU. So an accepted chain is remembered
/// by a SHA-256 digest of the name and every certificate presented, and accepted again
/// without its signatures while the clock stays between its first acceptance and the
/// earliest `notAfter` among them, and for at most [`VERIFIED_CHAIN_TTL`]. A refused chain is
/// never remembered: it is checked in full every time, so its reason is always today's.
/// Roots belong to the verifier: a changed `ca_file` builds a new one, which starts empty.
/// The server's signature over each handshake is not a verdict on the chain: it is checked
/// every time.
pub(crate) struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    accepted: Mutex<HashMap<[u8; 32], Accepted>>,
    /// Chains checked in full (signatures and all), accepted or not.
    full: AtomicU64,
}

/// When a remembered chain was accepted, and until when it is good (Unix seconds).
#[derive(Clone, Copy)]
struct Accepted {
    at: u64,
    until: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("full", &self.full.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn new(webpki: Arc<WebPkiServerVerifier>) -> Self {
        Self {
            webpki,
            accepted: Mutex::new(HashMap::new()),
            full: AtomicU64::new(0),
        }
    }

    /// How many chains were checked in full so far.
    #[cfg(test)]
    fn full_checks(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// The verdict on a chain for `server_name` at `now`; `not_after` is the earliest
    /// `notAfter` of the certificates presented, if they all parse.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
        not_after: Option<i64>,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = chain_digest(end_entity, intermediates, server_name);
        let at = now.as_secs();
        let known = self.lock().get(&digest).copied();
        if known
            .is_some_and(|k| k.at <= at && at < k.until && at - k.at < VERIFIED_CHAIN_TTL.as_secs())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        // An accepted chain whose dates did not parse here is not remembered.
        if let (Ok(_), Some(until)) = (&verdict, not_after.and_then(|n| u64::try_from(n).ok())) {
            let mut accepted = self.lock();
            if accepted.len() >= VERIFIED_CHAINS && !accepted.contains_key(&digest) {
                // Room for the new one: any other goes (it is checked in full next time).
                let other = accepted.keys().next().copied();
                other.map(|key| accepted.remove(&key));
            }
            accepted.insert(digest, Accepted { at, until });
        }
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Accepted>> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// SHA-256 over the server name and every certificate, each with its length first, so that
/// no two different inputs read the same.
fn chain_digest(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
) -> [u8; 32] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut add = |part: &[u8]| {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    };
    add(server_name.to_str().as_bytes());
    add(end_entity);
    for cert in intermediates {
        add(cert);
    }
    let mut digest = [0; 32];
    digest.copy_from_slice(hash.finish().as_ref());
    digest
}

/// Wraps the standard verifier to record what the server presented before judging it. With
/// `insecure_skip_verify` the real verification still runs, and its verdict is recorded
/// before the chain is accepted anyway: "expiring" and "not trusted" stay apart.
#[derive(Debug)]
pub struct ChainRecorder {
    inner: Arc<Verifier>,
    insecure: bool,
    seen: Mutex<Presented>,
}

impl ChainRecorder {
    /// What the server presented, if it presented a chain.
    pub fn presented(&self) -> Presented {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (mut not_after, mut all_parse) = (None::<i64>, true);
        for der in std::iter::once(end_entity).chain(intermediates) {
            match self::not_after(der) {
                Some(n) => not_after = Some(not_after.map_or(n, |m| m.min(n))),
                None => all_parse = false,
            }
        }
        let verdict = self.inner.verify(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
            not_after.filter(|_| all_parse),
        );
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Presented {
            not_after,
            leaf: Some(Bytes::copy_from_slice(end_entity)),
            verified: Some(verdict.is_ok()),
        };
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.webpki.supported_verify_schemes()
    }
}

/// What `tickr_tls_cert_info` shows of a leaf certificate: no key material, only names and
/// numbers anyone connecting can read. Subject, issuer and serial are at most
/// [`CERT_LABEL_CHARS`] characters each; a certificate that does not parse shows only its
/// fingerprint (the others empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The distinguished names as RFC 4514 writes them (most specific first, `,` between
    /// attributes, special characters escaped), as Go's `pkix.Name.String()` and so
    /// blackbox_exporter's `probe_ssl_last_chain_info` show them.
    pub subject: String,
    pub issuer: String,
    /// Lower-case hexadecimal, without leading zeros (as blackbox_exporter shows it).
    pub serial: String,
    /// Lower-case hexadecimal SHA-256 of the DER.
    pub fingerprint_sha256: String,
}

impl CertFacts {
    /// Reads a DER certificate. Not for every probe: a target keeps the facts of the leaf it
    /// last saw and calls this only when the served leaf's bytes differ.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let fingerprint_sha256 = hex(digest.as_ref());
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => Self {
                subject: bounded(rfc4514(cert.subject())),
                issuer: bounded(rfc4514(cert.issuer())),
                serial: bounded(format!("{:x}", cert.serial)),
                fingerprint_sha256,
            },
            Err(_) => Self {
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                fingerprint_sha256,
            },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// At most [`CERT_LABEL_CHARS`] characters; a longer text is cut and ends in `…`.
fn bounded(text: String) -> String {
    if text.chars().count() <= CERT_LABEL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(CERT_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A distinguished name the way RFC 4514 writes it: relative names last to first, joined by
/// `,`; multi-valued ones joined by `+`; attribute types by their short names (else the dotted
/// OID), values escaped, and a value that is not a string as `#` and its hex bytes. Control
/// characters are escaped too (`\0a`), so a label value never holds one.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::oid_registry as oid;
    let short = |t: &x509_parser::der_parser::oid::Oid<'_>| -> Option<&'static str> {
        [
            (oid::OID_X509_COMMON_NAME, "CN"),
            (oid::OID_X509_COUNTRY_NAME, "C"),
            (oid::OID_X509_LOCALITY_NAME, "L"),
            (oid::OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
            (oid::OID_X509_ORGANIZATION_NAME, "O"),
            (oid::OID_X509_ORGANIZATIONAL_UNIT, "OU"),
            (oid::OID_X509_STREET_ADDRESS, "STREET"),
            (oid::OID_X509_SERIALNUMBER, "SERIALNUMBER"),
            (oid::OID_DOMAIN_COMPONENT, "DC"),
            (oid::OID_USERID, "UID"),
        ]
        .into_iter()
        .find(|(o, _)| o == t)
        .map(|(_, s)| s)
    };
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match short(attr.attr_type()) {
                Some(s) => out.push_str(s),
                None => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_value(value, &mut out),
                Err(_) => {
                    out.push('#');
                    out.push_str(&hex(attr.as_slice()));
                }
            }
            // Nobody needs more than the label keeps: stop reading an absurd name early.
            if out.len() > CERT_LABEL_CHARS * 4 {
                return out;
            }
        }
    }
    out
}

/// An attribute value escaped as RFC 4514 asks, plus control characters as `\XX`.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Earliest `notAfter` (Unix seconds) among DER certificates; unparsable ones are skipped.
    fn earliest_not_after<'a>(
        chain: impl IntoIterator<Item = &'a CertificateDer<'a>>,
    ) -> Option<i64> {
        chain.into_iter().filter_map(|der| not_after(der)).min()
    }
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(dn: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_read_as_rfc_4514_writes_them() {
        let der = cert_with(&[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Acme, Inc."),
            (DnType::CommonName, " shop+1 \"eu\"\n"),
        ]);
        let facts = CertFacts::of(&der);
        assert_eq!(
            facts.subject,
            r#"CN=\ shop\+1 \"eu\"\0a,O=Acme\, Inc.,C=DE"#
        );
        assert_eq!(facts.issuer, facts.subject, "self-signed");
        assert_eq!(facts.fingerprint_sha256.len(), 64);
        assert!(facts.serial.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn long_names_are_cut_at_the_bound() {
        let long = "x".repeat(1000);
        let facts = CertFacts::of(&cert_with(&[(DnType::CommonName, &long)]));
        assert_eq!(facts.subject.chars().count(), CERT_LABEL_CHARS);
        assert!(facts.subject.starts_with("CN=xxx") && facts.subject.ends_with('…'));
    }

    #[test]
    fn a_certificate_that_does_not_parse_shows_its_fingerprint_only() {
        let facts = CertFacts::of(b"not a certificate");
        assert_eq!((facts.subject.as_str(), facts.serial.as_str()), ("", ""));
        assert_eq!(facts.fingerprint_sha256.len(), 64);
    }

    /// A verifier trusting a fresh CA only, and a leaf for 127.0.0.1 that the CA signed, valid
    /// from 2026 until the start of 2031.
    fn signed_leaf() -> (Verifier, CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        leaf.not_before = rcgen::date_time_ymd(2026, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let leaf = leaf
            .signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key))
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        (
            Verifier::new(webpki),
            leaf.der().clone(),
            ca_cert.der().clone(),
        )
    }

    #[test]
    fn an_accepted_chain_is_remembered_within_its_dates_and_a_refused_one_never() {
        let (verifier, leaf, ca) = signed_leaf();
        let until = earliest_not_after([&leaf]).unwrap();
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        let other = ServerName::try_from("shop.example").unwrap();
        let t0 = 1_800_000_000; // January 2027
        let check = |name: &ServerName<'_>, chain: &[CertificateDer<'_>], at: u64| {
            let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
            let not_after = earliest_not_after([&leaf]);
            verifier
                .verify(&leaf, chain, name, &[], now, not_after)
                .is_ok()
        };
        let ttl = VERIFIED_CHAIN_TTL.as_secs();

        assert!(check(&ip, &[], t0));
        assert_eq!(verifier.full_checks(), 1);
        assert!(check(&ip, &[], t0 + 60));
        assert!(check(&ip, &[], t0 + ttl - 1));
        assert_eq!(verifier.full_checks(), 1, "remembered within the TTL");

        // Another name, other certificates presented: each its own verdict.
        assert!(!check(&other, &[], t0));
        assert!(!check(&other, &[], t0));
        assert_eq!(
            verifier.full_checks(),
            3,
            "a refused chain is never remembered"
        );
        assert!(check(&ip, std::slice::from_ref(&ca), t0));
        assert_eq!(verifier.full_checks(), 4);

        // The TTL, a clock set back, and the certificate's own end.
        assert!(check(&ip, &[], t0 + ttl));
        assert_eq!(verifier.full_checks(), 5, "checked again after the TTL");
        assert!(check(&ip, &[], t0 - 1));
        assert_eq!(verifier.full_checks(), 6, "a clock set back checks again");
        let until = u64::try_from(until).unwrap();
        assert!(check(&ip, &[], until - 1));
        assert_eq!(verifier.full_checks(), 7);
        assert!(
            !check(&ip, &[], until + 1),
            "an expired certificate is refused, remembered or not"
        );
        assert_eq!(verifier.full_checks(), 8);
    }

    #[test]
    fn a_full_memory_of_chains_makes_room_one_at_a_time() {
        let (verifier, leaf, _) = signed_leaf();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        let not_after = earliest_not_after([&leaf]);
        let name = |i: usize| ServerName::try_from(format!("n{i}.example")).unwrap();
        // Refused names leave nothing behind; fill the memory by hand, then add a real one.
        {
            let mut accepted = verifier.lock();
            for i in 0..VERIFIED_CHAINS {
                let digest = chain_digest(&leaf, &[], &name(i));
                accepted.insert(
                    digest,
                    Accepted {
                        at: 0,
                        until: u64::MAX,
                    },
                );
            }
        }
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        assert!(verifier
            .verify(&leaf, &[], &ip, &[], now, not_after)
            .is_ok());
        assert!(verifier
            .verify(&leaf, &[], &ip, &[], now, not_after)
            .is_ok());
        assert_eq!(verifier.full_checks(), 1);
        assert_eq!(verifier.lock().len(), VERIFIED_CHAINS);
    }

    #[test]
    fn versions_read_in_the_usual_spellings() {
        for (text, want) in [
            ("TLS12", TlsVersion::Tls12),
            ("TLS 1.2", TlsVersion::Tls12),
            ("tlsv1.3", TlsVersion::Tls13),
            ("1.3", TlsVersion::Tls13),
            ("TLS_1_3", TlsVersion::Tls13),
        ] {
            assert_eq!(TlsVersion::parse(text), Ok(want), "{text}");
        }
        assert!(TlsVersion::parse("TLS10").unwrap_err().contains("rustls"));
        assert!(TlsVersion::parse("TLS1.1")
            .unwrap_err()
            .contains("1.2 and 1.3 only"));
        assert!(TlsVersion::parse("SSL3").unwrap_err().contains("unknown"));
        assert!(TlsVersions::new(TlsVersion::Tls13, TlsVersion::Tls12).is_err());
        let only_12 = TlsVersions::new(TlsVersion::Tls12, TlsVersion::Tls12).unwrap();
        assert_eq!(only_12.rustls(), [&rustls::version::TLS12]);
        assert_eq!(TlsVersions::default().rustls().len(), 2);
    }
}
