//! TLS to the database, as libpq's `sslmode` reads: `disable`; `prefer` (the default) and
//! `require` encrypt without checking the server's certificate; `verify-ca` checks that a
//! trusted authority signed it; `verify-full` checks that and the host name. The trusted
//! authorities are the system's, or the PEM file `sslrootcert` names (managed databases often
//! use their own CA). tokio-postgres knows only the first three modes, so the URL's `sslmode`
//! and `sslrootcert` are read here and removed before it parses the rest.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsWish {
    /// libpq's mode.
    pub mode: String,
    /// A PEM file of trusted authorities (`sslrootcert`), else the system's.
    pub root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL: the URL tokio-postgres can
/// parse, and what TLS must do.
///
/// # Errors
/// An `sslmode` libpq does not know.
pub fn split_url(url: &str) -> anyhow::Result<(String, TlsWish)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut wish = TlsWish {
        mode: "prefer".into(),
        root_cert: None,
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => wish.mode = v.to_string(),
            Some(("sslrootcert", v)) => wish.root_cert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    if !["disable", "prefer", "require", "verify-ca", "verify-full"].contains(&wish.mode.as_str()) {
        bail!(
            "store.url: sslmode={} is not one of disable, prefer, require, verify-ca, verify-full",
            wish.mode
        );
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, wish))
}

fn percent_decode(text: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
        .ok()
        .and_then(|v| v.into_iter().next())
        .map_or_else(|| text.to_string(), |(_, v)| v)
}

impl TlsWish {
    /// tokio-postgres's mode for this wish.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode.as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            _ => SslMode::Require,
        }
    }

    /// The connector: verifying as the mode says.
    ///
    /// # Errors
    /// The root certificate file cannot be read or holds no certificate.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let config = match self.mode.as_str() {
            "verify-ca" | "verify-full" => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("TLS certificate verifier")?;
                let verifier: Arc<dyn ServerCertVerifier> = match self.mode.as_str() {
                    "verify-full" => webpki,
                    _ => Arc::new(ChainOnly(webpki)),
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(file) => {
                let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
                    .with_context(|| format!("store.url: cannot read sslrootcert {file}"))?
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("store.url: sslrootcert {file} is not PEM"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                anyhow::ensure!(
                    added > 0,
                    "store.url: sslrootcert {file} holds no certificate"
                );
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                anyhow::ensure!(
                    !roots.is_empty(),
                    "store.url: no system root certificates found: set sslrootcert"
                );
            }
        }
        Ok(roots)
    }
}

/// `verify-ca`: the chain must lead to a trusted authority; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, the server's certificate not checked (as libpq does
/// without a root certificate). The handshake's signatures are still checked.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_of_the_url_and_the_rest_kept() {
        let (url, wish) = split_url(
            "postgres://fx@db/fx?sslmode=verify-full&application_name=fxhook&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://fx@db/fx?application_name=fxhook");
        assert_eq!(wish.mode, "verify-full");
        assert_eq!(wish.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (url, wish) = split_url("postgres://fx@db/fx").unwrap();
        assert_eq!(
            (url.as_str(), wish.mode.as_str()),
            ("postgres://fx@db/fx", "prefer")
        );
        assert!(split_url("postgres://db/fx?sslmode=allow-all").is_err());
    }

    #[test]
    fn a_root_certificate_file_that_is_not_one_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let wish = TlsWish {
            mode: "verify-full".into(),
            root_cert: Some(file.display().to_string()),
        };
        let err = format!("{:#}", wish.connector().err().unwrap());
        assert!(err.contains("sslrootcert"), "{err}");
    }
}
