//! RFC 9421 HTTP Message Signatures (Ed25519) and RFC 9530 `content-digest`.
//!
//! walhook signs with label `sig1` and the current key, covering, in this order,
//! `"@method" "@target-uri" "content-digest" "content-type" "webhook-id"
//! "webhook-timestamp"` with parameters `;created=<ts>;keyid="<kid>";alg="ed25519"`.
//! The signature base is built exactly as RFC 9421 section 2.5 says: one
//! `"name": value` line per component, then the `"@signature-params"` line, joined
//! by `\n` with no trailing newline. The verifier takes the parameters verbatim
//! from `signature-input`, insists that all six components are covered, that the
//! digest matches the body and that `created` is fresh.

use super::standard_webhooks::{check_timestamp, ed25519_ok};
use super::{HeaderLookup, PublicKey, RequestToSign, SignatureMemo, SigningKey, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The signature label walhook uses.
pub const LABEL: &str = "sig1";

/// Components walhook covers, in order; a verifier requires all of them.
pub const COVERED: [&str; 6] = [
    "@method",
    "@target-uri",
    "content-digest",
    "content-type",
    "webhook-id",
    "webhook-timestamp",
];

/// RFC 9530 `content-digest` value: `sha-256=:<base64(sha256(body))>:`.
pub fn content_digest(body: &[u8]) -> String {
    content_digest_of(&Sha256::digest(body).into())
}

/// The `content-digest` value of a body whose SHA-256 is `body_sha256`.
fn content_digest_of(body_sha256: &[u8; 32]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(body_sha256))
}

/// The `@signature-params` value: the inner list of component names, then the
/// already serialized parameters (`;created=...;keyid="..."`).
fn signature_params(components: &[&str], params: &str) -> String {
    let names: Vec<String> = components.iter().map(|c| format!("\"{c}\"")).collect();
    format!("({}){params}", names.join(" "))
}

/// RFC 9421 section 2.5 signature base.
fn signature_base(lines: &[(&str, &str)], signature_params: &str) -> String {
    let mut base = String::new();
    for (name, value) in lines {
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {signature_params}"));
    base
}

/// `(content-digest, signature-input, signature)` for a request, signed by `key`.
pub(super) fn sign(
    req: &RequestToSign<'_>,
    key: &SigningKey,
    memo: &mut SignatureMemo,
) -> (String, String, String) {
    let digest = content_digest_of(&req.body_sha256);
    let timestamp = req.timestamp.to_string();
    let params = signature_params(
        &COVERED,
        &format!(
            ";created={};keyid=\"{}\";alg=\"ed25519\"",
            req.timestamp, key.kid
        ),
    );
    let lines = [
        ("@method", req.method),
        ("@target-uri", req.target_uri),
        ("content-digest", digest.as_str()),
        ("content-type", req.content_type),
        ("webhook-id", req.webhook_id),
        ("webhook-timestamp", timestamp.as_str()),
    ];
    let signature = memo.sign(key, signature_base(&lines, &params).as_bytes());
    (
        digest,
        format!("{LABEL}={params}"),
        format!("{LABEL}=:{}:", STANDARD.encode(signature)),
    )
}

/// Split a structured-field dictionary into `(key, raw value)` members, honouring
/// quotes and parentheses. Good enough for `signature-input`, `signature` and
/// `content-digest`; not a general RFC 8941 parser.
fn dictionary(field: &str) -> Vec<(&str, &str)> {
    let mut raw = Vec::new();
    let (mut start, mut depth, mut quoted, mut escaped) = (0, 0i32, false, false);
    for (i, c) in field.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                raw.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    raw.push(&field[start..]);
    raw.into_iter()
        .filter_map(|member| member.trim().split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

/// A byte sequence item `:<base64>:`.
fn byte_sequence(value: &str) -> Option<Vec<u8>> {
    let inner = value.strip_prefix(':')?.split(':').next()?;
    STANDARD.decode(inner).ok()
}

/// A signature-input member: covered component names and the parameters.
struct Input<'a> {
    components: Vec<&'a str>,
    created: Option<&'a str>,
    keyid: Option<&'a str>,
    alg: Option<&'a str>,
}

fn parse_input(value: &str) -> Option<Input<'_>> {
    let rest = value.strip_prefix('(')?;
    let close = rest.find(')')?;
    let components = rest[..close]
        .split_whitespace()
        .map(|item| item.strip_prefix('"')?.strip_suffix('"'))
        .collect::<Option<Vec<_>>>()?;
    let params_raw = &rest[close + 1..];
    let mut input = Input {
        components,
        created: None,
        keyid: None,
        alg: None,
    };
    for param in params_raw.split(';').skip(1) {
        let (name, raw) = param.split_once('=')?;
        let unquoted = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
        match name.trim() {
            "created" => input.created = Some(raw),
            "keyid" => input.keyid = Some(unquoted?),
            "alg" => input.alg = Some(unquoted?),
            _ => {}
        }
    }
    Some(input)
}

/// Verify a request's RFC 9421 signature (label `sig1`, else the first one) and
/// its `content-digest` against `body`. `created` must be within
/// `tolerance_secs` of `now`; `keyid` must name one of `public_keys`.
pub fn verify_http_signature(
    method: &str,
    target_uri: &str,
    headers: HeaderLookup<'_>,
    body: &[u8],
    public_keys: &[PublicKey],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let si = headers("signature-input").ok_or(VerifyError::MissingHeader("signature-input"))?;
    let sig = headers("signature").ok_or(VerifyError::MissingHeader("signature"))?;
    let inputs = dictionary(&si);
    let (label, raw) = inputs
        .iter()
        .find(|(label, _)| *label == LABEL)
        .or(inputs.first())
        .ok_or(VerifyError::Malformed("signature-input"))?;
    let input = parse_input(raw).ok_or(VerifyError::Malformed("signature-input"))?;
    if let Some(missing) = COVERED.iter().find(|c| !input.components.contains(c)) {
        return Err(VerifyError::NotCovered(missing));
    }
    let created = input
        .created
        .ok_or(VerifyError::Malformed("signature-input"))?;
    check_timestamp(created, now, tolerance_secs)?;
    if let Some(alg) = input.alg.filter(|alg| *alg != "ed25519") {
        return Err(VerifyError::BadAlgorithm(alg.to_owned()));
    }
    let keyid = input
        .keyid
        .ok_or(VerifyError::Malformed("signature-input"))?;
    let (_, public) = public_keys
        .iter()
        .find(|(kid, _)| kid == keyid)
        .ok_or_else(|| VerifyError::UnknownKey(keyid.to_owned()))?;

    let digest = headers("content-digest").ok_or(VerifyError::MissingHeader("content-digest"))?;
    let expected = Sha256::digest(body);
    let digest_ok = dictionary(&digest).iter().any(|(alg, value)| {
        *alg == "sha-256" && byte_sequence(value).as_deref() == Some(&expected[..])
    });
    if !digest_ok {
        return Err(VerifyError::DigestMismatch);
    }

    let mut values = Vec::with_capacity(input.components.len());
    for component in &input.components {
        let value = match *component {
            "@method" => method.to_owned(),
            "@target-uri" => target_uri.to_owned(),
            name if name.starts_with('@') => return Err(VerifyError::Malformed("signature-input")),
            name => headers(name)
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| VerifyError::MissingComponent(name.to_owned()))?,
        };
        values.push(value);
    }
    let lines: Vec<(&str, &str)> = input
        .components
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    let base = signature_base(&lines, raw);
    let signature = dictionary(&sig)
        .into_iter()
        .find(|(l, _)| l == label)
        .and_then(|(_, value)| byte_sequence(value))
        .ok_or(VerifyError::Malformed("signature"))?;
    if ed25519_ok(public, base.as_bytes(), &signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn reproduces_rfc9421_b26_ed25519() {
        // RFC 9421 B.1.4 test-key-ed25519 (PKCS#8; the seed is the last 32 bytes).
        let pkcs8 = STANDARD
            .decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")
            .unwrap();
        let key = SigningKey::from_private_bytes(&pkcs8[pkcs8.len() - 32..]).unwrap();
        let components = [
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ];
        let params = signature_params(
            &components,
            ";created=1618884473;keyid=\"test-key-ed25519\"",
        );
        let values = [
            "Tue, 20 Apr 2021 02:07:55 GMT",
            "POST",
            "/foo",
            "example.com",
            "application/json",
            "18",
        ];
        let lines: Vec<_> = components.iter().copied().zip(values).collect();
        let base = signature_base(&lines, &params);
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\
             \"@authority\": example.com\n\"content-type\": application/json\n\
             \"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \
             \"@authority\" \"content-type\" \"content-length\");created=1618884473;\
             keyid=\"test-key-ed25519\""
        );
        assert_eq!(
            STANDARD.encode(key.key.sign(base.as_bytes()).to_bytes()),
            "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
        );
    }

    #[test]
    fn content_digest_matches_rfc9530_example() {
        // RFC 9530 section 2: {"hello": "world"} with sha-256.
        assert_eq!(
            content_digest(br#"{"hello": "world"}"#),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }

    const URI: &str = "https://receiver.example/hooks?tenant=acme&x=1";
    const BODY: &[u8] = br#"{"apiresource":"/organisations/9","revision":7}"#;

    fn signed(key: &SigningKey, id: &str) -> Vec<(String, String)> {
        let req = RequestToSign {
            method: "POST",
            target_uri: URI,
            content_type: "application/json",
            webhook_id: id,
            timestamp: 1_700_000_000,
            body: BODY,
            body_sha256: super::super::body_sha256(BODY),
        };
        let (digest, input, signature) = sign(&req, key, &mut SignatureMemo::default());
        [
            ("content-type", "application/json".to_owned()),
            ("content-digest", digest),
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", "1700000000".to_owned()),
            ("signature-input", input),
            ("signature", signature),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn verify(
        headers: &[(String, String)],
        uri: &str,
        body: &[u8],
        keys: &[PublicKey],
        now: i64,
    ) -> Result<(), VerifyError> {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        verify_http_signature("POST", uri, &lookup, body, keys, now, 300)
    }

    fn set(headers: &mut [(String, String)], name: &str, value: &str) {
        headers.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_owned();
    }

    #[test]
    fn signs_the_documented_input_and_verifies() {
        let key = SigningKey::generate();
        let keys = [(key.kid.clone(), key.public_bytes())];
        let headers = signed(&key, "evt-1");
        assert_eq!(
            headers[4].1,
            format!(
                "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \
                 \"webhook-id\" \"webhook-timestamp\");created=1700000000;keyid=\"{}\";alg=\"ed25519\"",
                key.kid
            )
        );
        verify(&headers, URI, BODY, &keys, 1_700_000_100).unwrap();
    }

    #[test]
    fn tampering_staleness_and_wrong_keys_fail() {
        let key = SigningKey::generate();
        let keys = [(key.kid.clone(), key.public_bytes())];
        let headers = signed(&key, "evt-1");
        let now = 1_700_000_000;
        assert_eq!(
            verify(&headers, URI, b"{}", &keys, now),
            Err(VerifyError::DigestMismatch)
        );
        let mut digest_too = headers.clone();
        set(&mut digest_too, "content-digest", &content_digest(b"{}"));
        assert_eq!(
            verify(&digest_too, URI, b"{}", &keys, now),
            Err(VerifyError::BadSignature)
        );
        let mut other_id = headers.clone();
        set(&mut other_id, "webhook-id", "evt-2");
        assert_eq!(
            verify(&other_id, URI, BODY, &keys, now),
            Err(VerifyError::BadSignature)
        );
        let other_uri = "https://receiver.example/hooks?tenant=evil&x=1";
        assert_eq!(
            verify(&headers, other_uri, BODY, &keys, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&headers, URI, BODY, &keys, now + 301),
            Err(VerifyError::Stale(301))
        );
        let stranger = SigningKey::generate();
        let wrong = [(key.kid.clone(), stranger.public_bytes())];
        assert_eq!(
            verify(&headers, URI, BODY, &wrong, now),
            Err(VerifyError::BadSignature)
        );
        let unknown = [(stranger.kid.clone(), stranger.public_bytes())];
        assert_eq!(
            verify(&headers, URI, BODY, &unknown, now),
            Err(VerifyError::UnknownKey(key.kid.clone()))
        );
    }

    #[test]
    fn partial_coverage_and_other_algorithms_are_refused() {
        let key = SigningKey::generate();
        let keys = [(key.kid.clone(), key.public_bytes())];
        let mut headers = signed(&key, "evt-1");
        let narrowed = headers[4].1.replace(" \"webhook-id\"", "");
        set(&mut headers, "signature-input", &narrowed);
        assert_eq!(
            verify(&headers, URI, BODY, &keys, 1_700_000_000),
            Err(VerifyError::NotCovered("webhook-id"))
        );
        let mut headers = signed(&key, "evt-1");
        let rsa = headers[4].1.replace("ed25519", "rsa-pss-sha512");
        set(&mut headers, "signature-input", &rsa);
        assert!(matches!(
            verify(&headers, URI, BODY, &keys, 1_700_000_000),
            Err(VerifyError::BadAlgorithm(_))
        ));
    }

    #[test]
    fn dictionary_splits_on_top_level_commas_only() {
        let members = dictionary(r#"a=("x" "y");k="p,q", sig1=:AAAA:"#);
        assert_eq!(
            members,
            vec![("a", r#"("x" "y");k="p,q""#), ("sig1", ":AAAA:")]
        );
        assert_eq!(byte_sequence(":AAAA:"), Some(vec![0, 0, 0]));
        assert_eq!(byte_sequence("AAAA"), None);
    }
}
