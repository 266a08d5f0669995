//! The server certificate checks of `require`, `prefer` and `verify-ca`,
//! which rustls does not offer: the handshake is always checked against the
//! certificate's key; the chain is checked only by `verify-ca`, and the name
//! never. `verify-full` needs none of this: rustls's own verifier does it.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

/// Encrypt and check that the handshake is signed by the certificate's key.
/// `require` / `prefer` accept any certificate (`chain` is `None`);
/// `verify-ca` wants a chain that leads to a trusted root, whatever name the
/// certificate gives.
#[derive(Debug)]
pub(super) struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl Lenient {
    /// `require` / `prefer`: any certificate.
    pub(super) fn any_certificate(provider: Arc<CryptoProvider>) -> Lenient {
        Lenient {
            provider,
            chain: None,
        }
    }

    /// `verify-ca`: the chain as `webpki` (built with `provider`) checks it,
    /// the name aside.
    pub(super) fn chain_only(
        provider: Arc<CryptoProvider>,
        webpki: Arc<WebPkiServerVerifier>,
    ) -> Lenient {
        Lenient {
            provider,
            chain: Some(webpki),
        }
    }
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
