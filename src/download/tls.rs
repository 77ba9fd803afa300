//! TLS as people have it: the system's roots plus `--ca-cert` (a CA, or a
//! self-signed server certificate trusted as itself, as curl, wget2 and aria2c
//! do), a client certificate (`--cert`, `--key`), `--insecure`; and TLS
//! failures told in plain words with the fix.
//!
//! One rustls configuration is built per run and handed to reqwest, with the
//! ALPN protocols of the client it is for (HTTP/2 and HTTP/1.1, or HTTP/1.1
//! only).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore};

use super::setup::ClientError;

/// What the TLS settings of a run are.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--insecure`: accept any certificate.
    pub insecure: bool,
    /// `--ca-cert`: PEM certificates to trust, beside the system's.
    pub ca_cert: Option<std::path::PathBuf>,
    /// `--cert`: the client certificate chain (PEM), for mutual TLS.
    pub cert: Option<std::path::PathBuf>,
    /// `--key`: the client certificate's private key (PEM); the `--cert`
    /// file itself when not given.
    pub key: Option<std::path::PathBuf>,
}

/// The crypto provider of the run (reqwest's own: aws-lc-rs).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A rustls client configuration for `options`, offering `alpn` (e.g. `h2`,
/// `http/1.1`) in that order.
pub fn client_config(
    options: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Build(e.to_string()))?;
    let check = if options.insecure {
        Check::Any
    } else {
        let pinned = match &options.ca_cert {
            Some(path) => read_certs(path, "--ca-cert")?,
            None => Vec::new(),
        };
        let system = if pinned.is_empty() {
            rustls_platform_verifier::Verifier::new(provider.clone())
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                pinned.clone(),
                provider.clone(),
            )
        }
        .map_err(|e| ClientError::Tls {
            flag: "--ca-cert",
            path: shown(options.ca_cert.as_deref()),
            reason: format!("cannot use the certificates: {e}"),
        })?;
        Check::System {
            system: Arc::new(system),
            pinned,
        }
    };
    let verifier = Arc::new(Verifier {
        check,
        provider: provider.clone(),
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &options.cert {
        None => builder.with_client_cert_resolver(Arc::new(NoClientCert)),
        Some(cert_path) => {
            let chain = read_certs(cert_path, "--cert")?;
            let key_path = options.key.as_deref().unwrap_or(cert_path);
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| ClientError::Tls {
                flag: "--key",
                path: key_path.display().to_string(),
                reason: format!("no PEM private key in it ({e})"),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls {
                    flag: "--key",
                    path: key_path.display().to_string(),
                    reason: format!("does not go with the --cert certificate: {e}"),
                })?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn shown(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// Every certificate in a PEM file; an error names the flag and the file.
fn read_certs(
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let err = |reason: String| ClientError::Tls {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "no certificate in the file (expected '-----BEGIN CERTIFICATE-----')".into(),
        ));
    }
    Ok(certs)
}

/// How the server's certificate is checked; the handshake's signatures are
/// always checked against the certificate's key.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

/// Which server certificates are accepted.
#[derive(Debug)]
enum Check {
    /// `--insecure`: any.
    Any,
    /// The system's verification, plus: a server certificate that is itself
    /// one of the `--ca-cert` certificates (`pinned`) is trusted as itself (a
    /// self-signed certificate, even one marked as a CA), once its host name
    /// and dates check.
    System {
        system: Arc<rustls_platform_verifier::Verifier>,
        pinned: Vec<CertificateDer<'static>>,
    },
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Check::System { system, pinned } = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        let refused =
            match system.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(ok) => return Ok(ok),
                Err(e) => e,
            };
        if !pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let mut itself = RootCertStore::empty();
        itself.add(end_entity.clone().into_owned())?;
        let algs = self.provider.signature_verification_algorithms.all;
        match rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &itself,
            &[],
            now,
            algs,
        ) {
            // The dates are checked before the CA flag: a self-signed
            // certificate that only fails as "a CA used as a server
            // certificate" is in date.
            Ok(()) => {}
            Err(TlsError::InvalidCertificate(CertificateError::Other(e)))
                if format!("{e:?}").contains("CaUsedAsEndEntity") => {}
            Err(e) => return Err(e),
        }
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Set once a server asked for a client certificate and volley had none to
/// give: with TLS 1.3 such a server refuses the connection only after the
/// handshake, so its refusal may read as a mere closed connection.
static CLIENT_CERT_ASKED: AtomicBool = AtomicBool::new(false);

/// No client certificate (no `--cert`), but remember that one was asked for.
#[derive(Debug)]
struct NoClientCert;

impl ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        CLIENT_CERT_ASKED.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// Every cause's text, one after the other, for recognising a kind of failure.
pub(super) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// A TLS failure in plain words with what to do, when `e` (or one of its
/// causes) is one; `host` is the server asked; `before_answer`: the failure
/// came before any answer (not in a body).
pub fn explain(
    e: &(dyn std::error::Error + 'static),
    host: &str,
    before_answer: bool,
) -> Option<String> {
    let want_cert = format!("{host} wants a client certificate; give --cert FILE (and --key FILE)");
    let Some(tls) = find_tls_error(e) else {
        // Over HTTP/2 the server's alert may reach volley only as text, or
        // only as a connection closed right after the handshake: read as
        // closed, or as a broken pipe or a reset when volley was still
        // sending its request.
        let text = chain_text(e);
        let refused = ["CertificateRequired", "BadCertificate", "UnknownCA"]
            .iter()
            .any(|alert| text.contains(&format!("fatal alert: {alert}")));
        let lower = text.to_ascii_lowercase();
        let closed = before_answer
            && [
                "connection closed",
                "unexpected eof",
                "broken pipe",
                "reset by peer",
            ]
            .iter()
            .any(|said| lower.contains(said));
        return (refused || closed && CLIENT_CERT_ASKED.load(Ordering::Relaxed))
            .then_some(want_cert);
    };
    let fix_trust = "(--ca-cert FILE trusts a private CA or a self-signed certificate; --insecure skips the check)";
    Some(match tls {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("the certificate of {host} is not signed by a trusted authority {fix_trust}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate of {host} has expired (fix the server's certificate, or --insecure)")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the certificate of {host} is not valid yet (check this machine's clock)")
            }
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the certificate of {host} is for {}, not {host} (use one of those names in the URL)",
                if presented.is_empty() {
                    "no host name".to_string()
                } else {
                    presented.iter().map(|n| plain_name(n)).collect::<Vec<_>>().join(", ")
                }
            ),
            CertificateError::NotValidForName => {
                format!("the certificate of {host} is not for {host} (use a name it is for)")
            }
            CertificateError::Revoked => format!("the certificate of {host} has been revoked"),
            CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => format!(
                "the certificate of {host} is self-signed {fix_trust}"
            ),
            other => format!("the certificate of {host} was refused ({other:?}) {fix_trust}"),
        },
        TlsError::PeerIncompatible(p) => format!(
            "{host} and volley have no TLS version or cipher in common ({p:?}); volley speaks TLS 1.2 and 1.3"
        ),
        TlsError::AlertReceived(alert) => match alert {
            rustls::AlertDescription::ProtocolVersion => format!(
                "{host} speaks no TLS version volley does (TLS 1.2 or 1.3)"
            ),
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA => want_cert,
            rustls::AlertDescription::HandshakeFailure => format!(
                "{host} refused the TLS handshake; if it wants a client certificate, give --cert FILE (and --key FILE)"
            ),
            other => format!("{host} ended the TLS handshake ({other:?})"),
        },
        other => format!("TLS with {host} failed: {other}"),
    })
}

/// A name as a certificate holds it, without rustls' wrapping:
/// `DnsName("example.org")` reads `example.org`.
fn plain_name(name: &str) -> &str {
    match (name.find('"'), name.rfind('"')) {
        (Some(a), Some(b)) if b > a => &name[a + 1..b],
        _ => name,
    }
}

/// The rustls error in an error's chain of causes.
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        // An io::Error's `source` skips the error it wraps: look inside.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}
