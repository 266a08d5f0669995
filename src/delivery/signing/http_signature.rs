//! RFC 9421 HTTP Message Signatures (Ed25519) and RFC 9530 `content-digest`.
//!
//! walhook signs with label `sig1` and the current key, covering, in this order,
//! `"@method" "@target-uri" "content-digest" "content-type" "webhook-id"
//! "webhook-timestamp"` with parameters `;created=<ts>;keyid="<kid>";alg="ed25519"`.
//! The signature base is built exactly as RFC 9421 section 2.5 says: one
//! `"name": value` line per component, then the `"@signature-params"` line, joined
//! by `\n` with no trailing newline.
//!
//! `signature-input`, `signature` and `content-digest` are RFC 8941 structured
//! field dictionaries; [`sfv`] parses and serializes them. The
//! `"@signature-params"` value is the signature's inner list as sfv serializes
//! it, the same bytes that follow `sig1=` in `signature-input`. The verifier
//! takes any valid RFC 8941 form of the three headers, builds the
//! `"@signature-params"` line by serializing the inner list it received (RFC
//! 9421 section 2.3: the canonical form, not the bytes as received), insists
//! that all six components are covered, that the digest matches the body and
//! that `created` is fresh.

use super::standard_webhooks::{check_timestamp, ed25519_ok};
use super::{HeaderLookup, PublicKey, RequestToSign, SignatureMemo, SigningKey, VerifyError};
use sfv::{
    BareItem, DictSerializer, Dictionary, InnerList, Integer, Item, Key, KeyRef, ListEntry,
    ListSerializer, Parameters, Parser, StringRef, Version, key_ref,
};

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

// Dictionary and parameter keys, checked when compiled.
const LABEL_KEY: &KeyRef = key_ref(LABEL);
const SHA_256: &KeyRef = key_ref("sha-256");
const CREATED: &KeyRef = key_ref("created");
const KEYID: &KeyRef = key_ref("keyid");
const ALG: &KeyRef = key_ref("alg");

/// RFC 9530 `content-digest` value: `sha-256=:<base64(sha256(body))>:`.
pub fn content_digest(body: &[u8]) -> String {
    content_digest_of(&super::body_sha256(body))
}

/// The `content-digest` value of a body whose SHA-256 is `body_sha256`.
fn content_digest_of(body_sha256: &[u8; 32]) -> String {
    dictionary_member(SHA_256, body_sha256.to_vec().into())
}

/// A serialized dictionary of one member, `name=value`.
fn dictionary_member(name: &KeyRef, value: ListEntry) -> String {
    let mut dictionary = DictSerializer::new();
    dictionary.members([(name, &value)]);
    // `None` only for a dictionary without members.
    dictionary.finish().unwrap_or_default()
}

/// RFC 9421 section 2.3 signature parameters: the covered component names as an
/// inner list of strings, with `created`, `keyid` and, if given, `alg`. Fails
/// for a `created` beyond 15 digits or a name or `keyid` that is not printable
/// ASCII.
fn signature_params(
    components: &[&str],
    created: i64,
    keyid: &str,
    alg: Option<&str>,
) -> Result<InnerList, sfv::Error> {
    let string = |value: &str| StringRef::from_str(value).map(BareItem::from);
    let items = components
        .iter()
        .map(|name| string(name).map(Item::new))
        .collect::<Result<_, _>>()?;
    let mut params = Parameters::new();
    params.insert(CREATED.to_owned(), Integer::try_from(created)?.into());
    params.insert(KEYID.to_owned(), string(keyid)?);
    if let Some(alg) = alg {
        params.insert(ALG.to_owned(), string(alg)?);
    }
    Ok(InnerList::with_params(items, params))
}

/// The `"@signature-params"` value: the inner list serialized on its own.
fn serialize_inner_list(list: &InnerList) -> String {
    let mut members = ListSerializer::new();
    let mut inner = members.inner_list();
    inner.items(&list.items);
    _ = inner.finish().parameters(&list.params);
    // `None` only for a list without members.
    members.finish().unwrap_or_default()
}

/// RFC 9421 section 2.5 signature base; `signature_params` is the inner
/// list serialized ([`serialize_inner_list`]).
fn signature_base(lines: &[(&str, &str)], signature_params: &str) -> String {
    let mut base = String::new();
    for (name, value) in lines {
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {signature_params}"));
    base
}

/// The signature parameters (serialized) and the signature base for `req`,
/// signed by key `kid`, with `digest` as its `content-digest`.
///
/// # Panics
/// If `kid` is not printable ASCII or `req.timestamp` has more than 15 digits;
/// a kid is an RFC 7638 thumbprint (base64url) and a timestamp comes from
/// chrono (years up to 262143: 13 digits), so neither happens.
fn params_and_base(req: &RequestToSign<'_>, kid: &str, digest: &str) -> (String, String) {
    let params = signature_params(&COVERED, req.timestamp, kid, Some("ed25519"))
        .expect("a kid is base64url and a timestamp has at most 15 digits");
    let params = serialize_inner_list(&params);
    let timestamp = req.timestamp.to_string();
    let lines = [
        ("@method", req.method),
        ("@target-uri", req.target_uri),
        ("content-digest", digest),
        ("content-type", req.content_type),
        ("webhook-id", req.webhook_id),
        ("webhook-timestamp", timestamp.as_str()),
    ];
    let base = signature_base(&lines, &params);
    (params, base)
}

/// `(content-digest, signature-input, signature)` for a request, signed by `key`.
pub(super) fn sign(
    req: &RequestToSign<'_>,
    key: &SigningKey,
    memo: &mut SignatureMemo,
) -> (String, String, String) {
    let digest = content_digest_of(&req.body_sha256);
    let (params, base) = params_and_base(req, &key.kid, &digest);
    let signature = memo.sign(key, base.as_bytes());
    (
        digest,
        // a dictionary of one member whose value is the inner list the base
        // ends with, serialized once
        format!("{LABEL}={params}"),
        dictionary_member(LABEL_KEY, signature.to_vec().into()),
    )
}

/// An RFC 8941 dictionary field (RFC 9421 and RFC 9530 predate RFC 9651's
/// dates and display strings), or `None` if it is not one.
fn parse_dictionary(field: &str) -> Option<Dictionary> {
    Parser::new(field)
        .with_version(Version::Rfc8941)
        .parse()
        .ok()
}

/// The signature to verify: label `sig1`, else the first signature (inner list)
/// in `signature-input`. `None` if `sig1` is not an inner list or there is none.
fn chosen_signature(inputs: &Dictionary) -> Option<(&Key, &InnerList)> {
    match inputs.get_key_value(LABEL) {
        Some(member) => inner_list(member),
        None => inputs.iter().find_map(inner_list),
    }
}

fn inner_list<'a>((label, entry): (&'a Key, &'a ListEntry)) -> Option<(&'a Key, &'a InnerList)> {
    match entry {
        ListEntry::InnerList(list) => Some((label, list)),
        ListEntry::Item(_) => None,
    }
}

/// A signature-input member: covered component names and the parameters read.
struct Input<'a> {
    components: Vec<&'a str>,
    created: Option<i64>,
    keyid: Option<&'a str>,
    alg: Option<&'a str>,
}

/// `None` if a component is not a string without parameters (walhook supports
/// no component parameters) or `created`, `keyid` or `alg` has the wrong type.
fn parse_input(list: &InnerList) -> Option<Input<'_>> {
    let components = list
        .items
        .iter()
        .map(component_name)
        .collect::<Option<_>>()?;
    Some(Input {
        components,
        created: param(&list.params, CREATED, BareItem::as_integer)?.map(i64::from),
        keyid: param(&list.params, KEYID, string)?,
        alg: param(&list.params, ALG, string)?,
    })
}

fn string(value: &BareItem) -> Option<&str> {
    value.as_string().map(StringRef::as_str)
}

fn component_name(item: &Item) -> Option<&str> {
    if item.params.is_empty() {
        string(&item.bare_item)
    } else {
        None
    }
}

/// Parameter `name` read by `read`: `Some(None)` if absent, `None` if `read`
/// refuses its type.
fn param<'a, T>(
    params: &'a Parameters,
    name: &KeyRef,
    read: impl Fn(&'a BareItem) -> Option<T>,
) -> Option<Option<T>> {
    match params.get(name) {
        None => Some(None),
        Some(value) => read(value).map(Some),
    }
}

/// Whether a `content-digest` field holds the body's SHA-256 as `sha-256`.
fn digest_matches(field: &str, body: &[u8]) -> bool {
    let expected = super::body_sha256(body);
    parse_dictionary(field)
        .as_ref()
        .and_then(|digests| digests.get(SHA_256))
        .and_then(|entry| match entry {
            ListEntry::Item(item) => item.bare_item.as_byte_sequence(),
            ListEntry::InnerList(_) => None,
        })
        .is_some_and(|digest| digest == &expected[..])
}

/// The value of each covered component, in order.
fn component_values(
    components: &[&str],
    method: &str,
    target_uri: &str,
    headers: HeaderLookup<'_>,
) -> Result<Vec<String>, VerifyError> {
    let value = |component: &str| match component {
        "@method" => Ok(method.to_owned()),
        "@target-uri" => Ok(target_uri.to_owned()),
        name if name.starts_with('@') => Err(VerifyError::Malformed("signature-input")),
        name => headers(name)
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| VerifyError::MissingComponent(name.to_owned())),
    };
    components.iter().map(|c| value(c)).collect()
}

/// The signature labelled `label` in a `signature` field.
fn signature_bytes(field: &str, label: &Key) -> Option<Vec<u8>> {
    match parse_dictionary(field)?.get(label)? {
        ListEntry::Item(item) => item.bare_item.as_byte_sequence().map(<[u8]>::to_vec),
        ListEntry::InnerList(_) => None,
    }
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
    let inputs = parse_dictionary(&si).ok_or(VerifyError::Malformed("signature-input"))?;
    let (label, list) =
        chosen_signature(&inputs).ok_or(VerifyError::Malformed("signature-input"))?;
    let input = parse_input(list).ok_or(VerifyError::Malformed("signature-input"))?;
    if let Some(missing) = COVERED.iter().find(|c| !input.components.contains(c)) {
        return Err(VerifyError::NotCovered(missing));
    }
    let created = input
        .created
        .ok_or(VerifyError::Malformed("signature-input"))?;
    check_timestamp(&created.to_string(), now, tolerance_secs)?;
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
    if !digest_matches(&digest, body) {
        return Err(VerifyError::DigestMismatch);
    }

    let values = component_values(&input.components, method, target_uri, headers)?;
    let lines: Vec<(&str, &str)> = input
        .components
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    let base = signature_base(&lines, &serialize_inner_list(list));
    let signature = signature_bytes(&sig, label).ok_or(VerifyError::Malformed("signature"))?;
    if ed25519_ok(public, base.as_bytes(), &signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests;
