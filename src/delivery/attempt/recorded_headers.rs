//! The request headers stored with an attempt (`walhook.delivery_attempts.
//! request_headers`), so an operator can see in SQL, in `/v1` and in the
//! console what a receiver was sent and check its signature.
//!
//! Kept: the headers walhook sets itself and signs or signs with
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`, the RFC 9421
//! `signature-input`, `signature` and `content-digest`, `content-type`) and
//! its informational ones (`webhook-event-type`, `webhook-attempt`). Left
//! out: `authorization` and the subscription's own `headers`, which may hold
//! credentials. Each value is read from the request as sent, so a custom
//! header that a walhook header replaced is not what is stored. Which
//! attempts keep them is the setting `attempt_request_headers` (by default
//! those that did not succeed).

use reqwest::header::HeaderMap;

/// The names stored, in the order they are written.
pub const RECORDED: [&str; 9] = [
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "webhook-event-type",
    "webhook-attempt",
    "content-digest",
    "signature-input",
    "signature",
];

/// The recorded headers present in `headers` as a JSON object (name ->
/// value), ready for a `jsonb` column. Values that are not visible ASCII
/// cannot come from walhook and are left out.
pub fn recorded_headers(headers: &HeaderMap) -> String {
    let mut json = String::with_capacity(640);
    json.push('{');
    for name in RECORDED {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if json.len() > 1 {
            json.push(',');
        }
        json.push('"');
        json.push_str(name);
        json.push_str("\":\"");
        // written in place, no string per value (this runs for every
        // attempt): a header value is visible ASCII or tab, so `"`, `\`
        // and tab are all JSON needs escaped
        for c in value.chars() {
            match c {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                '\t' => json.push_str("\\t"),
                c => json.push(c),
            }
        }
        json.push('"');
    }
    json.push('}');
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn walhook_headers_are_kept_and_credentials_left_out() {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert(
            "signature-input",
            HeaderValue::from_static(r#"sig1=("@method" "content-digest");keyid="k1""#),
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        headers.insert("x-api-key", HeaderValue::from_static("also-secret"));
        let json = recorded_headers(&headers);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "webhook-id": "msg_1",
                "signature-input": r#"sig1=("@method" "content-digest");keyid="k1""#,
            })
        );
        assert!(!json.contains("s3cret") && !json.contains("also-secret"));
    }

    #[test]
    fn quotes_backslashes_and_tabs_are_escaped() {
        let mut headers = HeaderMap::new();
        let value = "a\"b\\c\td";
        headers.insert("webhook-id", HeaderValue::from_static("a\"b\\c\td"));
        let parsed: serde_json::Value = serde_json::from_str(&recorded_headers(&headers)).unwrap();
        assert_eq!(parsed["webhook-id"], value);
    }

    #[test]
    fn no_recorded_header_is_an_empty_object() {
        assert_eq!(recorded_headers(&HeaderMap::new()), "{}");
    }
}
