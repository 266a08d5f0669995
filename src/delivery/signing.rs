//! STUB (owned by the signing helper): Standard Webhooks + RFC 9421 signatures.

/// An Ed25519 signing key with its JWK thumbprint.
pub struct SigningKey {
    pub kid: String,
    pub key: ed25519_dalek::SigningKey,
}

/// What is signed: the request as it will be sent.
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub target_uri: &'a str,
    pub content_type: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// Header values to add to the request.
pub struct SignedHeaders {
    pub webhook_signature: String,
    pub content_digest: String,
    pub signature_input: String,
    pub signature: String,
}

/// Sign with every symmetric secret (`whsec_...`, current first) and every
/// unretired key (current first; RFC 9421 uses the current one).
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("subscription secret is not of the form whsec_<base64>")]
    BadSecret,
}

pub fn sign(
    _req: &RequestToSign<'_>,
    _secrets: &[&str],
    _keys: &[SigningKey],
) -> Result<SignedHeaders, SigningError> {
    todo!()
}

pub fn jwks(_keys: &[SigningKey]) -> serde_json::Value {
    serde_json::json!({"keys": []})
}
