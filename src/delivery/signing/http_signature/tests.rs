//! RFC 9421 signing and verifying: pinned bytes, the RFC's own example,
//! and the structured-field forms a verifier must take or refuse.
use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
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
    let params = signature_params(&components, 1_618_884_473, "test-key-ed25519", None).unwrap();
    let values = [
        "Tue, 20 Apr 2021 02:07:55 GMT",
        "POST",
        "/foo",
        "example.com",
        "application/json",
        "18",
    ];
    let lines: Vec<_> = components.iter().copied().zip(values).collect();
    let base = signature_base(&lines, &serialize_inner_list(&params));
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
    let members = parse_dictionary(r#"a=("x" "y");k="p,q", sig1=:AAAA:"#).unwrap();
    let keys: Vec<&str> = members.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["a", "sig1"]);
    let Some(ListEntry::InnerList(a)) = members.get("a") else {
        panic!("a is an inner list")
    };
    assert_eq!(serialize_inner_list(a), r#"("x" "y");k="p,q""#);
    let sig1 = parse_dictionary("sig1")
        .unwrap()
        .into_keys()
        .next()
        .unwrap();
    assert_eq!(signature_bytes("sig1=:AAAA:", &sig1), Some(vec![0, 0, 0]));
    assert_eq!(signature_bytes("sig1=AAAA", &sig1), None);
}

#[test]
fn sends_pinned_bytes_for_a_fixed_key() {
    let key = SigningKey::from_private_bytes(&[7; 32]).unwrap();
    let req = RequestToSign {
        method: "POST",
        target_uri: URI,
        content_type: "application/json",
        webhook_id: "msg_2Jb9xWAhWqPqLsVzWXXX",
        timestamp: 1_700_000_000,
        body: BODY,
        body_sha256: super::super::body_sha256(BODY),
    };
    let (digest, input, signature) = sign(&req, &key, &mut SignatureMemo::default());
    assert_eq!(
        digest,
        "sha-256=:SW+M5rEvNkUdINfZEeccZF1tF4rXUgJtgiUikSb+x1s=:"
    );
    let params = "(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \
                  \"webhook-id\" \"webhook-timestamp\");created=1700000000;\
                  keyid=\"--6IM5l0OosLj9yWskISYhUA3n_3CURQkmrYMSha_ck\";alg=\"ed25519\"";
    assert_eq!(input, format!("sig1={params}"));
    assert_eq!(
        signature,
        "sig1=:g6pJfuSQN35kXfHuSqCDC3wFVY1lvaTG3aSiR9CdPfE7tySEg/BiVGmEU1N0AUZdDYkw6CKn3DBSF55QdqfRAA==:"
    );
    let (_, base) = params_and_base(&req, &key.kid, &digest);
    assert_eq!(
        base,
        format!(
            "\"@method\": POST\n\"@target-uri\": {URI}\n\"content-digest\": {digest}\n\
             \"content-type\": application/json\n\"webhook-id\": msg_2Jb9xWAhWqPqLsVzWXXX\n\
             \"webhook-timestamp\": 1700000000\n\"@signature-params\": {params}"
        )
    );
    let sent = STANDARD.decode(&signature[6..signature.len() - 1]).unwrap();
    assert!(ed25519_ok(&key.public_bytes(), base.as_bytes(), &sent));
}

/// `signed(key, "evt-1")` with `signature-input: <input>` and a `signature`
/// a conforming signer makes under `label` over the base whose
/// `"@signature-params"` value is `params`.
fn resigned(key: &SigningKey, input: &str, label: &str, params: &str) -> Vec<(String, String)> {
    let mut headers = signed(key, "evt-1");
    let lines: Vec<String> = COVERED
        .iter()
        .map(|name| {
            let value = match *name {
                "@method" => "POST".to_owned(),
                "@target-uri" => URI.to_owned(),
                header => headers.iter().find(|(k, _)| k == header).unwrap().1.clone(),
            };
            format!("\"{name}\": {value}\n")
        })
        .collect();
    let base = format!("{}\"@signature-params\": {params}", lines.concat());
    let signature = STANDARD.encode(key.key.sign(base.as_bytes()).to_bytes());
    set(&mut headers, "signature-input", input);
    set(&mut headers, "signature", &format!("{label}=:{signature}:"));
    headers
}

const NAMES: &str = "\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \
                     \"webhook-id\" \"webhook-timestamp\"";

#[test]
fn verifies_rfc8941_forms_the_splitter_mishandled() {
    let key = SigningKey::generate();
    let kid = key.kid.clone();
    let keys = [(kid.clone(), key.public_bytes())];
    let now = 1_700_000_000;
    let canonical = format!("({NAMES});created=1700000000;keyid=\"{kid}\";alg=\"ed25519\"");
    // Spaces inside the inner list and after `;`: the base uses the
    // canonical serialization, not the bytes as received.
    let spaced = format!(
        "sig1=(  {} );created=1700000000; keyid=\"{kid}\";  alg=\"ed25519\"",
        NAMES.replace("\" \"", "\"   \"")
    );
    verify(
        &resigned(&key, &spaced, "sig1", &canonical),
        URI,
        BODY,
        &keys,
        now,
    )
    .unwrap();
    // Other members around `sig1`, with a tab after a comma.
    let among = format!("a=?0, b=(\"@method\");created=1,\tsig1={canonical}, c");
    verify(
        &resigned(&key, &among, "sig1", &canonical),
        URI,
        BODY,
        &keys,
        now,
    )
    .unwrap();
    // Parameters in another order, a boolean one and unknown ones are signed as sent.
    let reordered = format!(
        "({NAMES});alg=\"ed25519\";keyid=\"{kid}\";created=1700000000;nonce=\"a;b,c\";flag"
    );
    let input = format!("sig1={reordered}");
    verify(
        &resigned(&key, &input, "sig1", &reordered),
        URI,
        BODY,
        &keys,
        now,
    )
    .unwrap();
    // A `keyid` holding `;` and an escaped quote.
    let odd = [(r#"k;"1"#.to_owned(), key.public_bytes())];
    let params = format!(r#"({NAMES});created=1700000000;keyid="k;\"1""#);
    let input = format!("sig1={params}");
    verify(
        &resigned(&key, &input, "sig1", &params),
        URI,
        BODY,
        &odd,
        now,
    )
    .unwrap();
}

#[test]
fn verifies_sig1_else_the_first_signature() {
    let key = SigningKey::generate();
    let keys = [(key.kid.clone(), key.public_bytes())];
    let now = 1_700_000_000;
    let params = format!(
        "({NAMES});created=1700000000;keyid=\"{}\";alg=\"ed25519\"",
        key.kid
    );
    let other = format!("other=({NAMES});created=1700000000;keyid=\"someone-else\"");
    let mut headers = resigned(&key, &format!("{other}, sig1={params}"), "sig1", &params);
    let sig1 = headers[5].1.clone();
    set(&mut headers, "signature", &format!("other=:AAAA:, {sig1}"));
    verify(&headers, URI, BODY, &keys, now).unwrap();
    // Without `sig1`, the first signature is verified, under its own label.
    let first = format!("note=?1, mine={params}, {other}");
    let headers = resigned(&key, &first, "mine", &params);
    verify(&headers, URI, BODY, &keys, now).unwrap();
}

#[test]
fn malformed_structured_fields_are_refused() {
    let key = SigningKey::generate();
    let keys = [(key.kid.clone(), key.public_bytes())];
    let now = 1_700_000_000;
    let headers = signed(&key, "evt-1");
    let input = headers[4].1.clone();
    let cases = [
        input.replace("sig1=", "Sig1="),
        format!("{input},"),
        input.replace("\"ed25519\"", "\"ed25519"),
        input.replace("created=1700000000", "created=\"1700000000\""),
        input.replace("\"content-type\"", "\"content-type\";sf"),
        input.replace(&format!("\"{}\"", key.kid), &key.kid),
        format!("sig1=\"{}\"", key.kid),
    ];
    for bad in cases {
        let mut headers = headers.clone();
        set(&mut headers, "signature-input", &bad);
        assert_eq!(
            verify(&headers, URI, BODY, &keys, now),
            Err(VerifyError::Malformed("signature-input")),
            "{bad}"
        );
    }
    let signature = headers[5].1.clone();
    for bad in [
        &signature[..signature.len() - 1],
        "sig1=AAAA",
        "sig2=:AAAA:",
    ] {
        let mut headers = headers.clone();
        set(&mut headers, "signature", bad);
        assert_eq!(
            verify(&headers, URI, BODY, &keys, now),
            Err(VerifyError::Malformed("signature")),
            "{bad}"
        );
    }
    let mut headers = headers.clone();
    set(
        &mut headers,
        "content-digest",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3",
    );
    assert_eq!(
        verify(&headers, URI, BODY, &keys, now),
        Err(VerifyError::DigestMismatch)
    );
}
