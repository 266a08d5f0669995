//! TLS to PostgreSQL, for the SQL connections and the replication stream alike.
//!
//! The URL's `sslmode` and `sslrootcert` follow libpq: `disable` is plain TCP;
//! `prefer` tries TLS and falls back to plain, without checking the certificate;
//! `require` encrypts without checking the certificate (with `sslrootcert` it
//! acts as `verify-ca`, as libpq does); `verify-ca` checks the
//! chain against `sslrootcert` (or the Mozilla roots when absent); `verify-full`
//! also checks that the certificate names the host. tokio-postgres parses
//! neither `verify-*` nor `sslrootcert`, so [`ConnectConfig::parse`] takes them out
//! of the URL before handing the rest to it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};
use tokio_postgres::config::SslMode as WireMode;

/// libpq's `sslmode`, all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How to connect to PostgreSQL, parsed from a `--database-url` or
/// `--replication-url`: tokio-postgres's settings (host, port, user, database,
/// ...) plus libpq's full `sslmode` and `sslrootcert`, which tokio-postgres
/// lacks. Both the SQL connections and the replication client open theirs from
/// one of these.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Everything but TLS verification (its `ssl_mode` says only whether to
    /// encrypt).
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
    /// The names of the parameters the URL gave, so that walhook's own
    /// defaults (the SQL sessions' keepalives and timeouts) leave them be.
    url_parameters: Vec<String>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    BadMode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("invalid database URL: {0}")]
    Url(String),
}

impl ConnectConfig {
    /// Parse a libpq URL (`postgres://...?sslmode=verify-full&sslrootcert=ca.pem`)
    /// or key=value string.
    pub fn parse(url: &str) -> Result<ConnectConfig, TlsError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (rest, mode, root_cert) = if is_url {
            split_url(url)?
        } else {
            split_key_values(url)
        };
        let ssl_mode = match mode.as_deref() {
            None | Some("prefer") | Some("allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            // libpq: require with a root certificate verifies the chain
            Some("require") if root_cert.is_some() => SslMode::VerifyCa,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => return Err(TlsError::BadMode(other.to_owned())),
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| TlsError::Url(e.to_string()))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            _ => WireMode::Require,
        });
        Ok(ConnectConfig {
            config,
            ssl_mode,
            root_cert: root_cert.map(PathBuf::from),
            url_parameters: parameter_names(url, is_url),
        })
    }

    /// Whether the URL (or key=value string) set `parameter`, e.g.
    /// `keepalives_idle`: a default of walhook's must not replace it.
    pub fn url_sets(&self, parameter: &str) -> bool {
        self.url_parameters.iter().any(|p| p == parameter)
    }

    /// The rustls configuration for this database; `None` for `disable`.
    pub fn client_config(&self) -> Result<Option<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Url(e.to_string()))?;
        let config = match self.ssl_mode {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| TlsError::Url(e.to_string()))?;
                let verifier: Arc<dyn ServerCertVerifier> = if self.ssl_mode == SslMode::VerifyCa {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            }
        };
        Ok(Some(config))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let bad = |reason: String| TlsError::RootCert {
                    path: path.clone(),
                    reason,
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                    roots
                        .add(cert.map_err(|e| bad(e.to_string()))?)
                        .map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no PEM certificate in it".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(roots)
    }
}

/// Remove `sslmode` and `sslrootcert` from a URL's query. The other
/// parameters stay as written: tokio-postgres percent-decodes them as libpq
/// does, with `+` a plus sign, so re-encoding them as a form (a space as `+`)
/// would change them (`options=-c%20jit%3Doff` would become `-c+jit=off`).
fn split_url(url: &str) -> Result<(String, Option<String>, Option<String>), TlsError> {
    let mut parsed = url::Url::parse(url).map_err(|e| TlsError::Url(e.to_string()))?;
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in parsed.query().unwrap_or_default().split('&') {
        match url::form_urlencoded::parse(pair.as_bytes()).next() {
            Some((k, v)) if k == "sslmode" => mode = Some(v.into_owned()),
            Some((k, v)) if k == "sslrootcert" => root = Some(v.into_owned()),
            Some(_) => kept.push(pair),
            None => {} // an empty pair (`?&a=1`, `?a=1&`)
        }
    }
    let query = kept.join("&");
    parsed.set_query((!query.is_empty()).then_some(query.as_str()));
    Ok((parsed.to_string(), mode, root))
}

/// Remove `sslmode=` and `sslrootcert=` from a key=value string.
fn split_key_values(s: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for token in s.split_whitespace() {
        match token.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_owned()),
            _ => kept.push(token),
        }
    }
    (kept.join(" "), mode, root)
}

/// The names of a URL's query parameters, or of a key=value string's keys.
fn parameter_names(url: &str, is_url: bool) -> Vec<String> {
    if is_url {
        url::Url::parse(url)
            .map(|u| u.query_pairs().map(|(k, _)| k.into_owned()).collect())
            .unwrap_or_default()
    } else {
        url.split_whitespace()
            .filter_map(|token| token.split_once('='))
            .map(|(k, _)| k.to_owned())
            .collect()
    }
}

/// `require` / `prefer`: encrypt, accept any certificate, still check that the
/// handshake is signed by the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
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
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_the_rest_stays() {
        let db = ConnectConfig::parse(
            "postgres://u:p@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(db.ssl_mode, SslMode::VerifyFull);
        assert_eq!(db.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(db.config.get_application_name(), Some("x"));
        assert_eq!(db.config.get_ssl_mode(), WireMode::Require);
        // the rest of the query as written, decoded by tokio-postgres
        let db = ConnectConfig::parse(
            "postgres://u@h/d?options=-c%20jit%3Doff&sslmode=disable&application_name=a+b",
        )
        .unwrap();
        assert_eq!(db.config.get_options(), Some("-c jit=off"));
        assert_eq!(db.config.get_application_name(), Some("a+b"));
        assert!(db.url_sets("options") && db.url_sets("sslmode") && !db.url_sets("user"));
        let kv = ConnectConfig::parse("host=db user=u sslmode=disable").unwrap();
        assert_eq!(kv.ssl_mode, SslMode::Disable);
        assert_eq!(kv.config.get_user(), Some("u"));
        assert_eq!(
            ConnectConfig::parse("postgres://u@h/d").unwrap().ssl_mode,
            SslMode::Prefer
        );
        assert_eq!(
            ConnectConfig::parse("postgres://u@h/d?sslmode=require&sslrootcert=ca.pem")
                .unwrap()
                .ssl_mode,
            SslMode::VerifyCa
        );
        assert!(matches!(
            ConnectConfig::parse("postgres://u@h/d?sslmode=sometimes"),
            Err(TlsError::BadMode(_))
        ));
    }
}
