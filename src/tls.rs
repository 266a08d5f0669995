//! TLS to PostgreSQL, for the SQL connections and the replication stream alike.
//!
//! The URL's `sslmode` and `sslrootcert` follow libpq: `disable` is plain TCP;
//! `prefer` tries TLS and falls back to plain, without checking the certificate;
//! `require` encrypts without checking the certificate (with `sslrootcert` it
//! acts as `verify-ca`, as libpq does); `verify-ca` checks the
//! chain against `sslrootcert` (or the Mozilla roots when absent); `verify-full`
//! also checks that the certificate names the host.
//!
//! A client certificate, for servers whose `pg_hba.conf` says `cert` (or
//! `clientcert=verify-full`), comes from `sslcert` and `sslkey` as in libpq: PEM
//! files, the key PKCS#8, PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
//! Both connections present it. An encrypted key (libpq's `sslpassword`) is
//! refused with a message saying how to decrypt it; libpq's default files under
//! `~/.postgresql/` are not read: name them. tokio-postgres parses none of
//! `verify-*`, `sslrootcert`, `sslcert`, `sslkey` or `sslpassword`, so
//! [`ConnectConfig::parse`] takes them out of the URL before handing the rest to
//! it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode as WireMode;

mod verify;

use verify::Lenient;

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
/// ...) plus libpq's full `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, which
/// tokio-postgres lacks. Both the SQL connections and the replication client
/// open theirs from one of these.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Everything but TLS verification (its `ssl_mode` says only whether to
    /// encrypt).
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the client certificate (PEM, the chain after it if any).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Whether `sslpassword` was given (walhook cannot decrypt keys).
    key_password: bool,
    /// The names of the parameters the URL gave, so that walhook's own
    /// defaults (the SQL sessions' keepalives and timeouts) leave them be.
    url_parameters: Vec<String>,
}

/// A client certificate chain and its private key.
type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    BadMode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("cannot read sslcert {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("cannot read sslkey {path}: {reason}")]
    ClientKey { path: PathBuf, reason: String },
    #[error("{0} is set without {1}: a client certificate needs both sslcert and sslkey")]
    HalfClientCert(&'static str, &'static str),
    #[error(
        "sslkey {path} is encrypted{}: walhook cannot decrypt keys; write a decrypted copy \
         readable only by walhook's user (openssl pkey -in {path} -out walhook.key; chmod 600 \
         walhook.key) and name it in sslkey",
        if *.password { " (sslpassword)" } else { "" }
    )]
    EncryptedKey { path: PathBuf, password: bool },
    #[error("sslcert {cert} and sslkey {key} do not go together: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("invalid database URL: {0}")]
    Url(String),
}

impl ConnectConfig {
    /// Parse a libpq URL (`postgres://...?sslmode=verify-full&sslrootcert=ca.pem`)
    /// or key=value string.
    pub fn parse(url: &str) -> Result<ConnectConfig, TlsError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (rest, mut tls) = if is_url {
            split_url(url)?
        } else {
            split_key_values(url)
        };
        let [mode, root_cert, client_cert, client_key, password] =
            TLS_PARAMETERS.map(|name| tls.remove(name));
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
            client_cert: client_cert.filter(|p| !p.is_empty()).map(PathBuf::from),
            client_key: client_key.filter(|p| !p.is_empty()).map(PathBuf::from),
            key_password: password.is_some_and(|p| !p.is_empty()),
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
        let verifier: Arc<dyn ServerCertVerifier> = match self.ssl_mode {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer | SslMode::Require => {
                Arc::new(Lenient::any_certificate(provider.clone()))
            }
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::Url(e.to_string()))?;
                if self.ssl_mode == SslMode::VerifyCa {
                    Arc::new(Lenient::chain_only(provider.clone(), webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config =
            match self.client_identity()? {
                None => builder.with_no_client_auth(),
                Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
                    TlsError::KeyMismatch {
                        cert: self.client_cert.clone().unwrap_or_default(),
                        key: self.client_key.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    }
                })?,
            };
        Ok(Some(config))
    }

    /// The client certificate chain and its key, read from `sslcert` and
    /// `sslkey`; `None` when the URL names neither.
    fn client_identity(&self) -> Result<Option<ClientIdentity>, TlsError> {
        let (cert_path, key_path) = match (&self.client_cert, &self.client_key) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::HalfClientCert("sslcert", "sslkey")),
            (None, Some(_)) => return Err(TlsError::HalfClientCert("sslkey", "sslcert")),
            (Some(cert), Some(key)) => (cert, key),
        };
        let bad_cert = |reason: String| TlsError::ClientCert {
            path: cert_path.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| bad_cert(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_cert(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad_cert("no PEM certificate in it".into()));
        }
        Ok(Some((certs, read_key(key_path, self.key_password)?)))
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

/// libpq's TLS parameters that tokio-postgres does not know, in the order
/// [`ConnectConfig::parse`] takes them.
const TLS_PARAMETERS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"];

/// The TLS parameters taken out of a URL or key=value string, by name.
type TlsParameters = std::collections::HashMap<&'static str, String>;

/// The TLS parameter named `key`, if it is one.
fn tls_parameter(key: &str) -> Option<&'static str> {
    TLS_PARAMETERS.into_iter().find(|name| *name == key)
}

/// Remove the [`TLS_PARAMETERS`] from a URL's query. The other parameters
/// stay as written: tokio-postgres percent-decodes them as libpq does, with `+`
/// a plus sign, so re-encoding them as a form (a space as `+`) would change
/// them (`options=-c%20jit%3Doff` would become `-c+jit=off`).
fn split_url(url: &str) -> Result<(String, TlsParameters), TlsError> {
    let mut parsed = url::Url::parse(url).map_err(|e| TlsError::Url(e.to_string()))?;
    let mut tls = TlsParameters::new();
    let mut kept = Vec::new();
    for pair in parsed.query().unwrap_or_default().split('&') {
        // an empty pair (`?&a=1`, `?a=1&`) has no key and is dropped
        if let Some((k, v)) = url::form_urlencoded::parse(pair.as_bytes()).next() {
            match tls_parameter(&k) {
                Some(name) => {
                    tls.insert(name, v.into_owned());
                }
                None => kept.push(pair),
            }
        }
    }
    let query = kept.join("&");
    parsed.set_query((!query.is_empty()).then_some(query.as_str()));
    Ok((parsed.to_string(), tls))
}

/// Remove the [`TLS_PARAMETERS`] from a key=value string.
fn split_key_values(s: &str) -> (String, TlsParameters) {
    let mut tls = TlsParameters::new();
    let mut kept = Vec::new();
    for token in s.split_whitespace() {
        match token
            .split_once('=')
            .and_then(|(k, v)| Some((tls_parameter(k)?, v)))
        {
            Some((name, v)) => {
                tls.insert(name, v.trim_matches('\'').to_owned());
            }
            None => kept.push(token),
        }
    }
    (kept.join(" "), tls)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1). An encrypted one is refused by
/// name rather than as "no key found".
fn read_key(path: &Path, password: bool) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bad = |reason: String| TlsError::ClientKey {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if text.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.to_owned(),
            password,
        });
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        bad(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (PKCS#8, RSA or EC PRIVATE KEY)".into()
            }
            other => other.to_string(),
        })
    })
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

    #[test]
    fn client_certificates_are_taken_out_of_both_forms() {
        let url = ConnectConfig::parse(
            "postgres://u@h/d?sslcert=/c/client.pem&sslmode=require&sslkey=/c/client%20key.pem&sslpassword=&application_name=x",
        )
        .unwrap();
        assert_eq!(url.client_cert, Some(PathBuf::from("/c/client.pem")));
        assert_eq!(url.client_key, Some(PathBuf::from("/c/client key.pem")));
        assert!(!url.key_password, "an empty sslpassword is none");
        assert_eq!(url.config.get_application_name(), Some("x"));
        let kv = ConnectConfig::parse(
            "host=h user=u sslmode=verify-full sslrootcert=ca.pem sslcert='c.pem' sslkey=k.pem sslpassword=s",
        )
        .unwrap();
        assert_eq!(kv.ssl_mode, SslMode::VerifyFull);
        assert_eq!(kv.client_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(kv.client_key, Some(PathBuf::from("k.pem")));
        assert!(kv.key_password);
        assert_eq!(kv.config.get_user(), Some("u"));
        // none given: no client certificate
        let none = ConnectConfig::parse("postgres://u@h/d?sslmode=require").unwrap();
        assert!(none.client_identity().unwrap().is_none());
        assert!(none.client_config().unwrap().is_some());
    }

    #[test]
    fn unusable_client_keys_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            path("cert.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            path("enc.key"),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(path("empty.key"), "not a key\n").unwrap();
        let config = |query: String| {
            ConnectConfig::parse(&format!("postgres://u@h/d?sslmode=require&{query}")).unwrap()
        };
        let error = |query: String| config(query).client_config().unwrap_err().to_string();

        let half = error(format!("sslcert={}", path("cert.pem")));
        assert!(half.contains("needs both sslcert and sslkey"), "{half}");
        let half = error(format!("sslkey={}", path("enc.key")));
        assert!(half.contains("sslkey is set without sslcert"), "{half}");
        let encrypted = error(format!(
            "sslcert={}&sslkey={}&sslpassword=secret",
            path("cert.pem"),
            path("enc.key")
        ));
        assert!(
            encrypted.contains("is encrypted (sslpassword)") && encrypted.contains("openssl pkey"),
            "{encrypted}"
        );
        let empty = error(format!(
            "sslcert={}&sslkey={}",
            path("cert.pem"),
            path("empty.key")
        ));
        assert!(empty.contains("no PEM private key"), "{empty}");
        let missing = error(format!(
            "sslcert={}&sslkey={}",
            path("absent.pem"),
            path("empty.key")
        ));
        assert!(missing.starts_with("cannot read sslcert"), "{missing}");
        // disable never reads them
        let plain = ConnectConfig::parse(&format!(
            "postgres://u@h/d?sslmode=disable&sslcert={}&sslkey={}",
            path("absent.pem"),
            path("absent.key")
        ))
        .unwrap();
        assert!(plain.client_config().unwrap().is_none());
    }
}
