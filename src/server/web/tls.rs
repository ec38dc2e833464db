//! TLS from the web configuration: the rustls `ServerConfig` built in steps from
//! `tls_server_config`, and the client-certificate verifier (with `client_allowed_sans`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureAlgorithm,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};

use crate::server::web::file::{CipherName, ClientAuth, CurveName, TlsFile, TlsVersion};
use crate::server::web::{at, tls_at, Invalid};
use crate::tls;

/// The rustls configuration `t` describes, its files read relative to `dir` (and added to
/// `files`, to be watched). Errors come in the order of the steps: the PEM material, the
/// versions, the provider (key, cipher suites, curves), then the client verifier.
pub(super) fn server_config(
    t: TlsFile,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<ServerConfig, Invalid> {
    let Material {
        chain,
        key,
        key_at,
        client_ca,
    } = Material::read(&t, dir, files)?;
    let (min, versions) = versions(&t)?;
    let provider = Arc::new(provider(&t, min, &key, key_at)?);

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| Invalid(tls_at("min_version"), format!("unusable TLS settings: {e}")))?;
    let verifier = client_verifier(&t, client_ca, provider)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Invalid(
            tls_at(key_at),
            format!("the key does not go with the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Go's default, and what the key means: the server's order of cipher_suites wins.
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok(config)
}

/// The PEM material of `tls_server_config`, parsed: the certificate chain, the key (and the
/// key's name in the file, for errors) and the client CA, not yet parsed.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_at: &'static str,
    client_ca: Option<Vec<u8>>,
}

impl Material {
    fn read(t: &TlsFile, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Self, Invalid> {
        let cert = pem(
            t.cert_file.as_deref(),
            t.cert.as_deref(),
            ("cert_file", "cert"),
            dir,
            files,
        )?;
        let key = pem(
            t.key_file.as_deref(),
            t.key.as_ref().map(|k| k.0.as_str()),
            ("key_file", "key"),
            dir,
            files,
        )?;
        let client_ca = pem(
            t.client_ca_file.as_deref(),
            t.client_ca.as_deref(),
            ("client_ca_file", "client_ca"),
            dir,
            files,
        )?;
        let key_at = if t.key_file.is_some() {
            "key_file"
        } else {
            "key"
        };
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err(Invalid(
                at(&["tls_server_config"]),
                "TLS needs both cert_file and key_file (or inline cert and key)".into(),
            ));
        };
        let cert_at = if t.cert_file.is_some() {
            "cert_file"
        } else {
            "cert"
        };
        let chain = certificates(&cert, cert_at)?;
        let key = tls::parse_key(&key).map_err(|m| Invalid(tls_at(key_at), m))?;
        Ok(Self {
            chain,
            key,
            key_at,
            client_ca,
        })
    }
}

/// `min_version` and `max_version` (TLS 1.2 to 1.3 by default) as rustls' versions.
fn versions(t: &TlsFile) -> Result<(TlsVersion, Vec<&'static SupportedProtocolVersion>), Invalid> {
    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    if min > max {
        return Err(Invalid(
            tls_at("max_version"),
            "max_version is lower than min_version".into(),
        ));
    }
    let versions = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();
    Ok((min, versions))
}

/// tickr's crypto provider, with the cipher suites and curves `t` chooses.
fn provider(
    t: &TlsFile,
    min: TlsVersion,
    key: &PrivateKeyDer<'static>,
    key_at: &str,
) -> Result<CryptoProvider, Invalid> {
    let mut provider: CryptoProvider = (*tls::provider()).clone();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Invalid(tls_at(key_at), format!("unsupported private key: {e}")))?;
    // Empty lists mean the defaults, as in Go.
    if let Some(names) = t.cipher_suites.as_ref().filter(|n| !n.is_empty()) {
        provider.cipher_suites = cipher_suites(&provider, names, min, signing_key.algorithm())?;
    }
    if let Some(curves) = t.curve_preferences.as_ref().filter(|c| !c.is_empty()) {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for CurveName(group) in curves {
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(*group);
            }
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

/// Every TLS 1.3 suite of `provider`, then the TLS 1.2 suites `names` chooses, in their order;
/// refused when TLS 1.2 is off or none of them can sign with the key's `algorithm`.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[CipherName],
    min: TlsVersion,
    algorithm: SignatureAlgorithm,
) -> Result<Vec<SupportedCipherSuite>, Invalid> {
    if min == TlsVersion::Tls13 {
        return Err(Invalid(
            tls_at("cipher_suites"),
            "cipher_suites only apply to TLS 1.2, which min_version TLS13 turns off".into(),
        ));
    }
    let mut chosen: Vec<SupportedCipherSuite> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    for CipherName(suite) in names {
        if !chosen.contains(suite) {
            chosen.push(*suite);
        }
    }
    if !chosen
        .iter()
        .any(|s| s.tls13().is_none() && s.usable_for_signature_algorithm(algorithm))
    {
        return Err(Invalid(
            tls_at("cipher_suites"),
            format!("none of cipher_suites can be used with the certificate's {algorithm:?} key"),
        ));
    }
    Ok(chosen)
}

fn client_verifier(
    t: &TlsFile,
    client_ca: Option<Vec<u8>>,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Invalid> {
    let auth = t.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    let ca_at = if t.client_ca_file.is_some() {
        "client_ca_file"
    } else {
        "client_ca"
    };
    let optional = match auth {
        ClientAuth::NoClientCert => {
            if client_ca.is_some() {
                return Err(Invalid(
                    tls_at(ca_at),
                    "a client CA is set but client_auth_type is NoClientCert; \
                     set client_auth_type: RequireAndVerifyClientCert"
                        .into(),
                ));
            }
            if t.client_allowed_sans.is_some() {
                return Err(Invalid(
                    tls_at("client_allowed_sans"),
                    "client_allowed_sans needs client_auth_type: RequireAndVerifyClientCert".into(),
                ));
            }
            return Ok(None);
        }
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            return Err(Invalid(
                tls_at("client_auth_type"),
                format!(
                    "{auth:?} is not supported: it accepts client certificates without \
                     verifying them; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) \
                     with client_ca_file"
                ),
            ));
        }
        ClientAuth::VerifyClientCertIfGiven => true,
        ClientAuth::RequireAndVerifyClientCert => false,
    };
    let Some(client_ca) = client_ca else {
        return Err(Invalid(
            tls_at("client_auth_type"),
            format!("{auth:?} needs client_ca_file, the CA that signs client certificates"),
        ));
    };
    if optional && t.client_allowed_sans.is_some() {
        return Err(Invalid(
            tls_at("client_allowed_sans"),
            "client_allowed_sans needs client_auth_type: RequireAndVerifyClientCert: with \
             VerifyClientCertIfGiven a client without a certificate has no SAN to check"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certificates(&client_ca, ca_at)? {
        roots
            .add(cert)
            .map_err(|e| Invalid(tls_at(ca_at), format!("unusable CA certificate: {e}")))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| Invalid(tls_at(ca_at), format!("unusable client CA: {e}")))?;
    Ok(Some(match &t.client_allowed_sans {
        Some(sans) => Arc::new(AllowedSans {
            inner: verifier,
            allowed: sans.clone(),
        }),
        None => verifier,
    }))
}

/// Verifies client certificates as `inner` does, then requires one of their subject alternative
/// names (DNS, e-mail, IP or URI, compared exactly) to be in `allowed`.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    fn names(cert: &CertificateDer<'_>) -> Vec<String> {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => {
                        Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if Self::names(end_entity)
            .iter()
            .any(|n| self.allowed.contains(n))
        {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "no subject alternative name of the client certificate is in client_allowed_sans"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where PEM material comes from: a file (relative to the web config) or an inline value.
fn pem(
    t_file: Option<&str>,
    inline: Option<&str>,
    (file_key, inline_key): (&str, &str),
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Vec<u8>>, Invalid> {
    let t_file = t_file.filter(|f| !f.is_empty());
    let inline = inline.filter(|i| !i.is_empty());
    match (t_file, inline) {
        (Some(_), Some(_)) => Err(Invalid(
            tls_at(inline_key),
            format!("set {inline_key} or {file_key}, not both"),
        )),
        (Some(name), None) => {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| {
                Invalid(
                    tls_at(file_key),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            files.push(path);
            Ok(Some(bytes))
        }
        (None, inline) => Ok(inline.map(|i| i.as_bytes().to_vec())),
    }
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    tls::parse_certs(pem).map_err(|m| Invalid(tls_at(key), m))
}
