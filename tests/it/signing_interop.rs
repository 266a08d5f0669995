//! Interoperability of walhook's delivery signatures with independent verifiers:
//! the reference `standardwebhooks` library (v1), `cryptography` Ed25519 (v1a)
//! and `http-message-signatures` (RFC 9421), run as Python scripts from
//! `tests/py/` in a virtualenv at `<crate>/target/test-venv` (created on first
//! use from `tests/py/requirements.txt`; this needs network access once).

use crate::support::python::verify as run;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use walhook::delivery::signing::{RequestToSign, Schemes, SignatureMemo, SigningKey, jwks, sign};

const URL: &str = "https://receiver.example/hooks/walhook?tenant=acme&v=2";
const VERIFIERS: [&str; 3] = [
    "verify_standard.py",
    "verify_ed25519.py",
    "verify_rfc9421.py",
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random_secret() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

fn body() -> Vec<u8> {
    json!({
        "apiresource": "/organisations/79b3c6a2-5d1e-4f0a-9b8c-1a2b3c4d5e6f/softwarestatements/81b9e1f0-aaaa-4bbb-8ccc-0d1e2f3a4b5c",
        "updatetimestamp": "2024-12-12T17:38:03.850Z",
        "resourcepayload": {
            "organisationdetails": {"organisationid": "79b3c6a2-5d1e-4f0a-9b8c-1a2b3c4d5e6f"},
            "softwarestatements": {"81b9e1f0-aaaa-4bbb-8ccc-0d1e2f3a4b5c": {
                "softwaredetails": {"status": "suspended", "clientname": "Café ✓", "redirect_uris": ["https://a.example/cb"]}
            }}
        },
        "revision": 1084487
    })
    .to_string()
    .into_bytes()
}

/// A signed delivery as the Python verifiers read it.
fn delivery(
    id: &str,
    ts: i64,
    body: &[u8],
    secret: &str,
    keys: &[SigningKey],
    jwks_keys: &[SigningKey],
) -> Value {
    let req = RequestToSign {
        method: "POST",
        target_uri: URL,
        content_type: "application/json",
        webhook_id: id,
        timestamp: ts,
        body,
        body_sha256: walhook::delivery::signing::body_sha256(body),
    };
    let signed = sign(
        &req,
        &[secret],
        keys,
        Schemes::ALL,
        &mut SignatureMemo::default(),
    )
    .expect("sign");
    let http = signed.http_signature.expect("rfc9421 signed");
    json!({
        "url": URL,
        "method": "POST",
        "headers": {
            "content-type": "application/json",
            "webhook-id": id,
            "webhook-timestamp": ts.to_string(),
            "webhook-signature": signed.webhook_signature.expect("standard webhooks signed"),
            "webhook-event-type": "software_statement.suspended",
            "webhook-attempt": "1",
            "content-digest": http.content_digest,
            "signature-input": http.signature_input,
            "signature": http.signature,
        },
        "body_b64": STANDARD.encode(body),
        "secret": secret,
        "jwks": jwks(jwks_keys),
    })
}

fn assert_all(input: &Value, accept: bool, what: &str) {
    for script in VERIFIERS {
        match (run(script, input), accept) {
            (Ok(_), true) => {}
            // A deliberate rejection, not a crash of the script.
            (Err(err), false) => {
                eprintln!("{script} on {what}: {}", err.trim());
                assert!(
                    !err.contains("Traceback"),
                    "{script} crashed on {what}: {err}"
                );
            }
            (Ok(out), false) => panic!("{script} accepted {what}: {out}"),
            (Err(err), true) => panic!("{script} rejected {what}: {err}"),
        }
    }
}

#[test]
fn python_verifiers_accept_a_signed_delivery() {
    let key = SigningKey::generate();
    let input = delivery(
        "8a1c2d3e-0000-4000-8000-000000000001",
        now(),
        &body(),
        &random_secret(),
        std::slice::from_ref(&key),
        std::slice::from_ref(&key),
    );
    assert_all(&input, true, "a valid delivery");
    let kid = run("verify_rfc9421.py", &input).unwrap();
    assert!(kid.contains(&key.kid), "{kid}");
}

#[test]
fn python_verifiers_reject_tampering_staleness_and_wrong_credentials() {
    let key = SigningKey::generate();
    let keys = std::slice::from_ref(&key);
    let secret = random_secret();
    let id = "8a1c2d3e-0000-4000-8000-000000000002";
    let good = delivery(id, now(), &body(), &secret, keys, keys);
    assert_all(&good, true, "the untampered delivery");

    let mut tampered = good.clone();
    let mut altered = body();
    altered.extend_from_slice(b" ");
    tampered["body_b64"] = STANDARD.encode(altered).into();
    assert_all(&tampered, false, "a tampered body");

    let mut other_id = good.clone();
    other_id["headers"]["webhook-id"] = "8a1c2d3e-0000-4000-8000-000000000003".into();
    assert_all(&other_id, false, "a changed webhook-id");

    let stale = delivery(id, now() - 600, &body(), &secret, keys, keys);
    assert_all(&stale, false, "a 10-minute-old timestamp");

    // Wrong key: the JWKS publishes another key under the signer's kid, and
    // (for v1) the receiver holds another secret.
    let stranger = SigningKey::generate();
    let mut wrong = good.clone();
    let mut jwk = stranger.public_jwk();
    jwk["kid"] = key.kid.clone().into();
    wrong["jwks"] = json!({"keys": [jwk]});
    wrong["secret"] = random_secret().into();
    assert_all(&wrong, false, "a wrong key and secret");
    // Unknown kid for RFC 9421.
    let mut unknown = good.clone();
    unknown["jwks"] = jwks(std::slice::from_ref(&stranger));
    assert!(run("verify_rfc9421.py", &unknown).is_err());
    assert!(run("verify_ed25519.py", &unknown).is_err());
}

#[test]
fn rotated_keys_both_sign_and_the_old_one_still_verifies() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let both = [new.clone(), old.clone()];
    let secret = random_secret();
    let input = delivery(
        "8a1c2d3e-0000-4000-8000-000000000004",
        now(),
        &body(),
        &secret,
        &both,
        &both,
    );
    let sig = input["headers"]["webhook-signature"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sig.split(' ').filter(|e| e.starts_with("v1a,")).count(),
        2,
        "{sig}"
    );
    assert_all(&input, true, "a delivery signed with two keys");

    // Only the old key's v1a entry left: verifies against a JWKS listing both.
    let mut only_old = input.clone();
    let entries: Vec<&str> = sig.split(' ').collect();
    only_old["headers"]["webhook-signature"] = format!("{} {}", entries[0], entries[2]).into();
    assert!(
        run("verify_ed25519.py", &only_old)
            .unwrap()
            .contains(&old.kid)
    );
    // A receiver that only knows the old key still accepts the v1a entry.
    let mut old_jwks = input.clone();
    old_jwks["jwks"] = jwks(std::slice::from_ref(&old));
    assert!(
        run("verify_ed25519.py", &old_jwks)
            .unwrap()
            .contains(&old.kid)
    );

    // A delivery signed (RFC 9421) with the old key while it was current still
    // verifies against the JWKS listing both.
    let before = delivery(
        "8a1c2d3e-0000-4000-8000-000000000005",
        now(),
        &body(),
        &secret,
        std::slice::from_ref(&old),
        &both,
    );
    assert_all(&before, true, "an old-key delivery against a two-key JWKS");
}

#[tokio::test]
async fn signing_keys_in_postgres_rotate_and_retire() {
    use walhook::store::keys::{self, KeysError};
    let db = crate::support::Cluster::shared().database();
    let config = walhook::tls::ConnectConfig::parse(&db.url()).unwrap();
    let mut client = walhook::store::connect(&config).await.unwrap();
    walhook::store::migrate::migrate(&mut client).await.unwrap();

    // Concurrent ensure_key from several connections creates exactly one key.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let c = walhook::store::connect(&config).await.unwrap();
            keys::ensure_key(&c).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    keys::ensure_key(&client).await.unwrap();
    let first = keys::load_active(&client).await.unwrap();
    assert_eq!(first.len(), 1);
    let first_kid = first[0].kid.clone();

    // The last key cannot be retired; rotation makes a new current key.
    assert!(matches!(
        keys::retire(&client, &first_kid).await,
        Err(KeysError::LastKey(_))
    ));
    let second_kid = keys::rotate(&client).await.unwrap();
    let active = keys::load_active(&client).await.unwrap();
    let kids: Vec<&str> = active.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, [second_kid.as_str(), first_kid.as_str()]);
    // Stored keys sign like the ones generated: the thumbprint is recomputed.
    assert_eq!(active[1].public_bytes(), first[0].public_bytes());

    keys::retire(&client, &first_kid).await.unwrap();
    assert!(matches!(
        keys::retire(&client, &first_kid).await,
        Err(KeysError::AlreadyRetired(_))
    ));
    assert!(matches!(
        keys::retire(&client, "no-such-kid").await,
        Err(KeysError::UnknownKid(_))
    ));
    let active = keys::load_active(&client).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].kid, second_kid);
    // ensure_key leaves an existing unretired key alone.
    keys::ensure_key(&client).await.unwrap();
    assert_eq!(keys::load_active(&client).await.unwrap().len(), 1);

    // A row whose key does not match its kid is reported, not used.
    client
        .execute(
            "UPDATE walhook.signing_keys SET private_key = $1 WHERE kid = $2",
            &[&vec![7u8; 32], &second_kid],
        )
        .await
        .unwrap();
    assert!(matches!(
        keys::load_active(&client).await,
        Err(KeysError::Mismatch(_))
    ));
}
