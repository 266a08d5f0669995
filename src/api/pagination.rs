//! Cursor pagination: `limit` (1-100, default 20) and an opaque `cursor`.
//!
//! A cursor is the list's kind and the last row's sort key, base64url-encoded
//! (`w:<created_at µs>:<uuid>` for webhooks, `d:<id>` / `a:<id>` for deliveries
//! and audit entries). Keyset paging: a row is never shown twice or skipped,
//! whatever is inserted meanwhile. A page is fetched with one extra row, so a
//! page that ends exactly at the last row has no `nextCursor`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::error::{ApiError, ErrorDetail};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// `{"data": [...], "nextCursor": "..." | null}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` fetched with `limit + 1`; the cursor of the last kept row when
    /// there was more.
    pub fn new(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Page {
            data: rows,
            next_cursor,
        }
    }
}

/// Query parameters, each at most once, only the known ones.
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Parse a raw query string; an unknown or repeated parameter is a 400, an
    /// empty one (`?status=&limit=`) counts as absent.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Query, ApiError> {
        let mut params = HashMap::new();
        let mut details = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value_json = serde_json::Value::String(value.to_string());
            if !known.contains(&key.as_ref()) {
                let msg = format!("unknown query parameter; known: {}", known.join(", "));
                details.push(ErrorDetail::new(key.as_ref(), "query", value_json, msg));
            } else if value.is_empty() {
                continue;
            } else if params.insert(key.to_string(), value.to_string()).is_some() {
                details.push(ErrorDetail::new(
                    key.as_ref(),
                    "query",
                    value_json,
                    "given more than once",
                ));
            }
        }
        if details.is_empty() {
            Ok(Query { params })
        } else {
            Err(ApiError::invalid_all(details))
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// `limit`: an integer 1-100, default 20.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let Some(raw) = self.get("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(ErrorDetail::new(
                "limit",
                "query",
                serde_json::Value::String(raw.to_owned()),
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            ))),
        }
    }

    /// The decoded `cursor` of list `kind`, if given.
    pub fn cursor<T>(
        &self,
        kind: char,
        decode: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        let Some(raw) = self.get("cursor") else {
            return Ok(None);
        };
        let key = URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.strip_prefix(kind)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(&decode)
            });
        match key {
            Some(key) => Ok(Some(key)),
            None => Err(ApiError::invalid(ErrorDetail::new(
                "cursor",
                "query",
                serde_json::Value::String(raw.to_owned()),
                "cursor is not one this list returned as nextCursor",
            ))),
        }
    }
}

/// The cursor of list `kind` positioned after a row with sort key `key`.
pub fn encode_cursor(kind: char, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_belongs_to_its_list() {
        let cursor = encode_cursor('d', "42");
        let query = Query::parse(Some(&format!("cursor={cursor}")), &["cursor"]).unwrap();
        assert_eq!(
            query.cursor('d', |s| s.parse::<i64>().ok()).unwrap(),
            Some(42)
        );
        assert!(query.cursor('a', |s| s.parse::<i64>().ok()).is_err());
        let bad = Query::parse(Some("cursor=%%%"), &["cursor"]).unwrap();
        assert!(bad.cursor('d', |s| s.parse::<i64>().ok()).is_err());
    }

    #[test]
    fn pages_end_without_a_cursor() {
        let page = Page::new(vec![1, 2, 3], 3, |n| n.to_string());
        assert_eq!(page.next_cursor, None);
        let page = Page::new(vec![1, 2, 3, 4], 3, |n| n.to_string());
        assert_eq!(page.next_cursor.as_deref(), Some("3"));
        assert_eq!(page.data, vec![1, 2, 3]);
    }

    #[test]
    fn limits_are_checked() {
        for bad in ["0", "101", "x", "-1", "2.5"] {
            let q = Query::parse(Some(&format!("limit={bad}")), &["limit"]).unwrap();
            assert!(q.limit().is_err(), "{bad}");
        }
        let q = Query::parse(None, &["limit"]).unwrap();
        assert_eq!(q.limit().unwrap(), 20);
        assert!(Query::parse(Some("limt=5"), &["limit"]).is_err());
        let q = Query::parse(Some("limit=&cursor="), &["limit", "cursor"]).unwrap();
        assert_eq!(q.limit().unwrap(), 20, "empty means absent");
        assert_eq!(q.get("cursor"), None);
    }
}
