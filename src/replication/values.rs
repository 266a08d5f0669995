//! Text-format column values -> typed JSON: how a pgoutput column becomes a
//! value in a webhook payload.
//!
//! pgoutput sends each column in PostgreSQL's text output format. The
//! replication session runs with `TimeZone=UTC` and `DateStyle=ISO`, so the
//! texts parsed here are what PostgreSQL prints under those settings. The
//! mapping, by the column's built-in type OID:
//!
//! | type | JSON |
//! |---|---|
//! | int2, int4, int8 | number (int8 beyond 2^53 stays an exact integer) |
//! | float4, float8 | number; `NaN`, `Infinity`, `-Infinity` as strings |
//! | numeric | number when an `i64`/`u64`/`f64` holds the exact decimal value, else the text |
//! | bool | `true` / `false` |
//! | json, jsonb | the embedded JSON value (the text if it does not parse) |
//! | timestamp, timestamptz | RFC 3339 in UTC with `T` and `Z`, e.g. `2024-12-12T17:32:57.570Z`: at least milliseconds, microseconds when PostgreSQL printed more than 3 fraction digits. A `timestamp` without time zone is taken to be UTC. `infinity`, BC and years past 9999 stay PostgreSQL's text. |
//! | date | the text (`YYYY-MM-DD`) |
//! | bytea | base64 (standard alphabet, padded) |
//! | arrays of the above | JSON arrays (nested for multi-dimensional), NULL elements as null |
//! | anything else (text, varchar, uuid, time, interval, enums, ...) | the text |
//!
//! Nothing here panics: a text that does not parse as its type falls back to
//! the string, so a surprising value still reaches the receiver.
use base64::Engine as _;
use serde_json::{Number, Value};

mod array;
mod time;

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// Types whose text is passed through as a JSON string on purpose.
const STRING_TYPES: [u32; 8] = [
    18,   // char
    19,   // name
    25,   // text
    1042, // bpchar
    1043, // varchar
    1082, // date
    2950, // uuid
    26,   // oid: an identifier, not a quantity
];

/// The element type of a supported array type.
fn array_element(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => BOOL,
        1001 => BYTEA,
        1002 => 18,
        1003 => 19,
        1005 => INT2,
        1007 => INT4,
        1016 => INT8,
        1021 => FLOAT4,
        1022 => FLOAT8,
        1231 => NUMERIC,
        1009 => 25,
        1015 => 1043,
        1014 => 1042,
        2951 => 2950,
        199 => JSON,
        3807 => JSONB,
        1182 => 1082,
        1115 => TIMESTAMP,
        1185 => TIMESTAMPTZ,
        _ => return None,
    })
}

/// Whether [`text_to_json`] knows the type (scalar or array); unknown types
/// are passed through as strings.
pub fn is_known_type(oid: u32) -> bool {
    matches!(
        oid,
        BOOL | BYTEA
            | INT8
            | INT2
            | INT4
            | JSON
            | FLOAT4
            | FLOAT8
            | TIMESTAMP
            | TIMESTAMPTZ
            | NUMERIC
            | JSONB
    ) || STRING_TYPES.contains(&oid)
        || array_element(oid).is_some()
}

/// Turns one column's text-format value into JSON by its type OID (see the
/// module docs for the mapping). Never fails: unparsable text stays a string.
pub fn text_to_json(type_oid: u32, text: &str) -> Value {
    scalar(type_oid, text).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// `None` when the text is not a valid value of the type.
fn scalar(type_oid: u32, text: &str) -> Option<Value> {
    match type_oid {
        INT2 | INT4 | INT8 => text.parse::<i64>().ok().map(Value::from),
        FLOAT4 | FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        NUMERIC => numeric(text).map(Value::Number),
        BOOL => match text {
            "t" | "true" => Some(Value::Bool(true)),
            "f" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
        JSON | JSONB => serde_json::from_str(text).ok(),
        TIMESTAMP | TIMESTAMPTZ => time::timestamp_to_rfc3339(text).map(Value::String),
        BYTEA => bytea(text).map(|b| Value::String(base64::prelude::BASE64_STANDARD.encode(b))),
        oid => {
            let element = array_element(oid)?;
            array::parse(text).map(|a| a.into_json(&|t| text_to_json(element, t)))
        }
    }
}

/// A numeric as a JSON number when no precision is lost: integers that fit
/// `i64`/`u64` exactly, other values when the `f64` nearest to them prints
/// back as the same decimal value (`1.30` -> `1.3`, but not `0.1000000000000000001`).
fn numeric(text: &str) -> Option<Number> {
    let value = Decimal::parse(text)?;
    if let Some(int) = value.integer_text() {
        if let Ok(i) = int.parse::<i64>() {
            return Some(i.into());
        }
        if let Ok(u) = int.parse::<u64>() {
            return Some(u.into());
        }
    }
    let float = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    let back = Decimal::parse(&format!("{float:e}"))?;
    (back == value).then(|| Number::from_f64(float)).flatten()
}

/// A decimal number as sign, significant digits and exponent, normalised so
/// equal values compare equal (`1.30` == `13e-1`, `0.000` == `0`).
#[derive(Debug, PartialEq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Self> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, text.get(1..)?),
            b'+' => (false, text.get(1..)?),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?.parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let frac_len = i64::try_from(frac.len()).ok()?;
        let joined = format!("{int}{frac}");
        let trimmed_end = joined.trim_end_matches('0');
        let trailing = i64::try_from(joined.len() - trimmed_end.len()).ok()?;
        let digits = trimmed_end.trim_start_matches('0').to_owned();
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        let exponent = exp.checked_sub(frac_len)?.checked_add(trailing)?;
        Some(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    /// The value as integer text (`5.00` -> `5`) when it is an integer of at
    /// most 20 digits, the most an `i64`/`u64` can hold.
    fn integer_text(&self) -> Option<String> {
        let zeros = usize::try_from(self.exponent).ok()?;
        if self.digits.len().checked_add(zeros)? > 20 {
            return None;
        }
        let sign = if self.negative { "-" } else { "" };
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            &self.digits
        };
        Some(format!("{sign}{digits}{}", "0".repeat(zeros)))
    }
}

/// Decodes bytea's hex (`\x0102`) or escape (`a\\b\001`) output format.
fn bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        let nibble = |c: u8| char::from(c).to_digit(16);
        return hex
            .chunks_exact(2)
            .map(|p| Some((nibble(p[0])? << 4 | nibble(p[1])?) as u8))
            .collect();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.as_bytes().iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            d0 @ b'0'..=b'3' => {
                let octal = |c: u8| (b'0'..=b'7').contains(&c).then(|| c - b'0');
                let (d1, d2) = (octal(bytes.next()?)?, octal(bytes.next()?)?);
                out.push((d0 - b'0') << 6 | d1 << 3 | d2);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
