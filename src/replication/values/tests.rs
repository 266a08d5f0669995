//! Typed-value tests, with texts as PostgreSQL 15 prints them (TimeZone=UTC,
//! DateStyle=ISO).
use serde_json::json;

use super::*;

fn j(oid: u32, text: &str) -> Value {
    text_to_json(oid, text)
}

#[test]
fn integers() {
    assert_eq!(j(INT2, "-32768"), json!(-32768));
    assert_eq!(j(INT4, "42"), json!(42));
    // Beyond 2^53: exact, as an i64, not rounded through f64.
    assert_eq!(j(INT8, "9007199254740993").to_string(), "9007199254740993");
    assert_eq!(j(INT8, "-9223372036854775808"), json!(i64::MIN));
    assert_eq!(j(INT4, "4x"), json!("4x"));
    assert_eq!(j(26, "12345"), json!("12345"), "oid stays text");
}

#[test]
fn floats() {
    assert_eq!(j(FLOAT8, "1.5e-07"), json!(1.5e-7));
    assert_eq!(j(FLOAT8, "1e+20"), json!(1e20));
    assert_eq!(j(FLOAT4, "1.1"), json!(1.1));
    assert_eq!(j(FLOAT8, "-0"), json!(-0.0));
    for special in ["NaN", "Infinity", "-Infinity"] {
        assert_eq!(j(FLOAT8, special), json!(special));
        assert_eq!(j(FLOAT4, special), json!(special));
    }
}

#[test]
fn numerics_are_numbers_only_when_exact() {
    assert_eq!(j(NUMERIC, "1.30"), json!(1.3));
    assert_eq!(j(NUMERIC, "-123.4500"), json!(-123.45));
    assert_eq!(j(NUMERIC, "0.000"), json!(0));
    assert_eq!(j(NUMERIC, "-5"), json!(-5));
    assert_eq!(j(NUMERIC, "5.00"), json!(5));
    assert_eq!(j(NUMERIC, "18446744073709551615"), json!(u64::MAX));
    assert_eq!(
        j(NUMERIC, "9007199254740993").to_string(),
        "9007199254740993"
    );
    assert_eq!(j(NUMERIC, "100000000000000000000"), json!(1e20));
    // Not exactly representable: kept as text.
    for text in [
        "123456789012345678901234567890",
        "0.1000000000000000001",
        "9007199254740993.5",
        "NaN",
        "Infinity",
        "-Infinity",
        "",
        "-",
        ".",
        "1.2.3",
    ] {
        assert_eq!(j(NUMERIC, text), json!(text), "{text}");
    }
    let huge = format!("1{}", "0".repeat(400));
    assert_eq!(j(NUMERIC, &huge), json!(huge));
}

#[test]
fn decimal_normalisation() {
    let d = |s| Decimal::parse(s).unwrap();
    assert_eq!(d("1.30"), d("13e-1"));
    assert_eq!(d("-0.0"), d("0"));
    assert_eq!(d("001200"), d("1.2e3"));
    assert_ne!(d("-1"), d("1"));
    assert_eq!(d("5e2").integer_text().as_deref(), Some("500"));
    assert_eq!(d("-5.00").integer_text().as_deref(), Some("-5"));
    assert_eq!(d("0.000").integer_text().as_deref(), Some("0"));
    assert_eq!(d("0.5").integer_text(), None);
    assert_eq!(d("1e20").integer_text(), None);
    assert!(Decimal::parse("1e99999999999999999999").is_none());
    assert!(Decimal::parse("1.5e-9223372036854775808").is_none());
    assert!(Decimal::parse("1e").is_none() && Decimal::parse("e5").is_none());
}

#[test]
fn booleans_strings_uuid_date() {
    assert_eq!(j(BOOL, "t"), json!(true));
    assert_eq!(j(BOOL, "f"), json!(false));
    assert_eq!(j(BOOL, "maybe"), json!("maybe"));
    for oid in [25, 1043, 1042, 19, 18] {
        assert_eq!(j(oid, "a b "), json!("a b "));
    }
    let uuid = "79b3cb1e-1234-4e6f-9a3c-0a1b2c3d4e5f";
    assert_eq!(j(2950, uuid), json!(uuid));
    assert_eq!(j(1082, "2024-01-01"), json!("2024-01-01"));
    assert_eq!(j(1082, "0044-03-15 BC"), json!("0044-03-15 BC"));
    assert_eq!(j(1186, "1 day 02:00:00"), json!("1 day 02:00:00"));
}

#[test]
fn json_is_embedded() {
    assert_eq!(j(JSONB, r#"{"a": [1, 2]}"#), json!({"a": [1, 2]}));
    assert_eq!(j(JSON, "null"), json!(null));
    assert_eq!(j(JSON, "{broken"), json!("{broken"));
    // Beyond serde_json's recursion limit: the text, no stack overflow.
    let deep = "[".repeat(100_000);
    assert_eq!(j(JSONB, &deep), json!(deep));
}

#[test]
fn timestamps() {
    let ts = |t| j(TIMESTAMPTZ, t);
    assert_eq!(
        ts("2024-12-12 17:32:57.57+00"),
        json!("2024-12-12T17:32:57.570Z")
    );
    assert_eq!(
        ts("2024-12-12 17:32:57+00"),
        json!("2024-12-12T17:32:57.000Z")
    );
    assert_eq!(
        ts("2024-12-12 17:32:57.123456+00"),
        json!("2024-12-12T17:32:57.123456Z")
    );
    assert_eq!(
        ts("2024-12-12 17:32:57.1234+00"),
        json!("2024-12-12T17:32:57.123400Z")
    );
    // Other session time zones are converted to UTC.
    assert_eq!(
        ts("2024-12-12 23:02:57.123456+05:30"),
        json!("2024-12-12T17:32:57.123456Z")
    );
    assert_eq!(
        ts("1900-01-01 05:21:10+05:21:10"),
        json!("1900-01-01T00:00:00.000Z")
    );
    assert_eq!(
        ts("2024-01-01 01:00:00-02"),
        json!("2024-01-01T03:00:00.000Z")
    );
    assert_eq!(
        ts("2023-12-31 20:30:00-03:30"),
        json!("2024-01-01T00:00:00.000Z")
    );
    // timestamp without time zone is taken as UTC.
    assert_eq!(
        j(TIMESTAMP, "2024-02-29 00:00:00.5"),
        json!("2024-02-29T00:00:00.500Z")
    );
    for text in [
        "infinity",
        "-infinity",
        "0044-03-15 12:00:00+00 BC",
        "10000-01-01 00:00:00+00",
        "2023-02-29 00:00:00+00",
        "2024-12-12 24:00:00+00",
        "2024-12-12 17:32:57.+00",
        "2024-12-12 17:32:57.1234567+00",
        "2024-12-12 17:32:57+0",
        "2024-12-12 17:32:57 UTC",
        "0000-01-01 00:00:00+01",
        "2024-1-12 17:32:57+00",
        "2024-12-12 17:32:5é+00",
        "",
    ] {
        assert_eq!(ts(text), json!(text), "{text}");
    }
}

#[test]
fn bytea_is_base64() {
    assert_eq!(j(BYTEA, "\\x0102"), json!("AQI="));
    assert_eq!(j(BYTEA, "\\x"), json!(""));
    assert_eq!(j(BYTEA, "\\xDEADbeef"), json!("3q2+7w=="));
    // Escape format (bytea_output = escape).
    assert_eq!(j(BYTEA, "a\\\\b\\001\\377"), json!("YVxiAf8="));
    for bad in ["\\x0", "\\xzz", "a\\9", "a\\", "\\0"] {
        assert_eq!(j(BYTEA, bad), json!(bad), "{bad}");
    }
}

#[test]
fn arrays_of_each_type() {
    assert_eq!(j(1007, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
    assert_eq!(
        j(1016, "{9223372036854775807,NULL}"),
        json!([i64::MAX, null])
    );
    assert_eq!(j(1005, "[0:1]={7,8}"), json!([7, 8]));
    assert_eq!(
        j(1022, "{NaN,Infinity,-Infinity,1.5}"),
        json!(["NaN", "Infinity", "-Infinity", 1.5])
    );
    assert_eq!(j(1021, "{0.5}"), json!([0.5]));
    assert_eq!(
        j(1231, "{1.30,123456789012345678901234567890}"),
        json!([1.3, "123456789012345678901234567890"])
    );
    assert_eq!(j(1000, "{t,f}"), json!([true, false]));
    assert_eq!(j(1014, r#"{"a b "}"#), json!(["a b "]));
    assert_eq!(j(1015, "{x}"), json!(["x"]));
    assert_eq!(
        j(2951, "{79b3cb1e-1234-4e6f-9a3c-0a1b2c3d4e5f}"),
        json!(["79b3cb1e-1234-4e6f-9a3c-0a1b2c3d4e5f"])
    );
    assert_eq!(j(3807, r#"{"{\"a\": 1}"}"#), json!([{"a": 1}]));
    assert_eq!(j(199, r#"{"{\"a\":1}",NULL}"#), json!([{"a": 1}, null]));
    assert_eq!(j(1182, "{2024-01-01}"), json!(["2024-01-01"]));
    assert_eq!(
        j(1115, r#"{"2024-01-01 00:00:00"}"#),
        json!(["2024-01-01T00:00:00.000Z"])
    );
    assert_eq!(
        j(1185, r#"{"2024-12-12 17:32:57.57+00",infinity}"#),
        json!(["2024-12-12T17:32:57.570Z", "infinity"])
    );
    assert_eq!(j(1001, r#"{"\\x01","\\x"}"#), json!(["AQ==", ""]));
}

#[test]
fn array_text_syntax() {
    // As PostgreSQL prints '{"a\\\"b","c,d",NULL,"NULL",""}'::text[].
    assert_eq!(
        j(1009, r#"{"a\\\"b","c,d",NULL,"NULL",""}"#),
        json!(["a\\\"b", "c,d", null, "NULL", ""])
    );
    assert_eq!(
        j(1009, r#"{"{x}","a}b",null,"\\"}"#),
        json!(["{x}", "a}b", null, "\\"])
    );
    assert_eq!(
        j(1009, r#"{ a b , \NULL ,x\ }"#),
        json!(["a b", "NULL", "x "])
    );
    assert_eq!(j(1009, "{}"), json!([]));
    assert_eq!(j(1007, "{{},{}}"), json!([[], []]));
    assert_eq!(j(1009, "{é,\"ü\"}"), json!(["é", "ü"]));
    assert_eq!(j(1007, "{{{{{{1}}}}}}"), json!([[[[[[1]]]]]]));
    for bad in [
        "",
        "{",
        "}",
        "{1",
        "{1,}",
        "{,1}",
        "{1}x",
        "{\"a}",
        "{a\"b}",
        "{{1}",
        "[1:2]{1,2}",
        "[x]={1}",
        "{{{{{{{1}}}}}}}",
        "{1\\",
        "1,2",
    ] {
        assert_eq!(j(1007, bad), json!(bad), "{bad}");
    }
    let deep = format!("{}{}", "{".repeat(100_000), "}".repeat(100_000));
    assert_eq!(j(1007, &deep), json!(deep));
}

#[test]
fn known_types() {
    for oid in [
        16, 17, 20, 21, 23, 114, 700, 701, 1114, 1184, 1700, 3802, 25, 2950, 1009, 1185, 199,
    ] {
        assert!(is_known_type(oid), "{oid}");
    }
    for oid in [0, 1083, 1186, 869, 16410, u32::MAX] {
        assert!(!is_known_type(oid), "{oid}");
    }
}
