//! TLS client material for probes: trust roots, client certificates, and a verifier that records
//! the served chain's earliest `notAfter` before judging it, so an expired or untrusted
//! certificate still reports when it expires.
//!
//! Heavy objects (root store, verifier, client key) are built once per distinct configuration;
//! each probe gets a fresh `ClientConfig` with resumption disabled, so every probe pays a full
//! handshake like a new visitor would.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::limits::NOT_AFTER_CACHE;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The contents of a PEM file, shared by every target that names it.
pub type Pem = Arc<[u8]>;

/// TLS settings of one target, as read from the configuration (file contents, not paths, so that
/// a reload notices a renewed CA or client certificate).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca_pem: Option<Pem>,
    /// The certificate chain and its key.
    pub client_pem: Option<(Pem, Pem)>,
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
}

/// Ready-to-use TLS client material for one target.
pub struct ClientTls {
    settings: TlsSettings,
    verifier: Arc<WebPkiServerVerifier>,
    client_key: Option<Arc<CertifiedKey>>,
    server_name: Option<ServerName<'static>>,
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
            .field("extra_ca", &self.settings.ca_pem.is_some())
            .field("client_cert", &self.settings.client_pem.is_some())
            .field("insecure_skip_verify", &self.settings.insecure_skip_verify)
            .field("server_name", &self.settings.server_name)
            .finish()
    }
}

/// The one crypto provider tickr uses. Passing it explicitly keeps rustls away from its
/// process-wide default, which panics when more than one provider is compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The verifier for the compiled-in Mozilla roots, shared by every target without an extra CA.
fn default_verifier() -> Arc<WebPkiServerVerifier> {
    static VERIFIER: OnceLock<Arc<WebPkiServerVerifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("the built-in root store is valid")
        })
        .clone()
}

/// Built material by settings, for as long as a target holds it: targets with the same TLS
/// settings share one verifier, root store and client key. 10,000 HTTPS targets with the same
/// `ca_file` took 205 MiB against 74 MiB without one, a root store each; shared, the CA costs
/// its one copy.
static SHARED: Mutex<Option<HashMap<TlsSettings, Weak<ClientTls>>>> = Mutex::new(None);

impl ClientTls {
    /// The material for `settings`: the one already built for the same settings if a target
    /// still holds it, else built now.
    pub fn shared(settings: TlsSettings) -> Result<Arc<Self>, (&'static str, String)> {
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let cache = guard.get_or_insert_with(HashMap::new);
        if let Some(tls) = cache.get(&settings).and_then(Weak::upgrade) {
            return Ok(tls);
        }
        let tls = Arc::new(Self::new(settings.clone())?);
        // Entries of material nobody holds any more go as new ones come.
        if cache.len() >= 64 && cache.len().is_power_of_two() {
            cache.retain(|_, w| w.strong_count() > 0);
        }
        cache.insert(settings, Arc::downgrade(&tls));
        Ok(tls)
    }

    /// Builds the material; an error names the offending setting and says what is wrong.
    pub fn new(settings: TlsSettings) -> Result<Self, (&'static str, String)> {
        let verifier = match &settings.ca_pem {
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
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| ("ca_file", format!("unusable CA certificates: {e}")))?
            }
        };
        let client_key = match &settings.client_pem {
            None => None,
            Some((cert_pem, key_pem)) => {
                let chain = parse_certs(cert_pem).map_err(|m| ("cert_file", m))?;
                let key = parse_key(key_pem).map_err(|m| ("key_file", m))?;
                let signing = provider()
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| ("key_file", format!("unsupported private key: {e}")))?;
                Some(Arc::new(CertifiedKey::new(chain, signing)))
            }
        };
        let server_name = match &settings.server_name {
            None => None,
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| ("server_name", format!("invalid server name {name:?}")))?,
            ),
        };
        Ok(Self {
            settings,
            verifier,
            client_key,
            server_name,
        })
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

    /// A fresh client configuration for one connection, and the recorder of its certificate chain.
    pub fn client_config(&self, alpn: &[&[u8]]) -> (Arc<ClientConfig>, Arc<ChainRecorder>) {
        let recorder = Arc::new(ChainRecorder {
            inner: self.verifier.clone(),
            insecure: self.settings.insecure_skip_verify,
            not_after: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let mut config = match &self.client_key {
            Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::disabled();
        (Arc::new(config), recorder)
    }
}

/// What a file was when it was last read: inode, size, modification and change times.
type FileState = (u64, u64, i64, i64, i64, i64);

/// The contents of files read for TLS material, by path, with the state they were read in.
type Files = HashMap<PathBuf, (FileState, Pem)>;
static FILES: Mutex<Option<Files>> = Mutex::new(None);

/// The contents of a CA, certificate or key file: read once while it stays as it is (same
/// inode, size and times), so that 10,000 targets naming one `ca_file` read it once per load,
/// and a reload reads it again only when it changed.
pub fn read_file(path: &Path) -> std::io::Result<Pem> {
    let m = std::fs::metadata(path)?;
    let state = (
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
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

/// Earliest `notAfter` (Unix seconds) among DER certificates; unparsable ones are skipped.
pub fn earliest_not_after<'a>(
    chain: impl IntoIterator<Item = &'a CertificateDer<'a>>,
) -> Option<i64> {
    chain.into_iter().filter_map(|der| not_after(der)).min()
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

/// Wraps the standard verifier to record the chain's earliest `notAfter` before judging it.
#[derive(Debug)]
pub struct ChainRecorder {
    inner: Arc<WebPkiServerVerifier>,
    insecure: bool,
    not_after: Mutex<Option<i64>>,
}

impl ChainRecorder {
    /// Earliest `notAfter` of the chain the server presented, if it presented one.
    pub fn not_after(&self) -> Option<i64> {
        *self.not_after.lock().unwrap_or_else(|e| e.into_inner())
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
        let earliest = earliest_not_after(std::iter::once(end_entity).chain(intermediates));
        *self.not_after.lock().unwrap_or_else(|e| e.into_inner()) = earliest;
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
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
