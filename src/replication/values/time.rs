//! `timestamp`/`timestamptz` text (as printed with `DateStyle=ISO`) -> RFC 3339 UTC.
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

/// `2024-12-12 17:32:57.57+00` -> `2024-12-12T17:32:57.570Z`; an offset other
/// than `+00` is applied, no offset means UTC. Milliseconds at least,
/// microseconds when more than 3 fraction digits were printed. `None` for
/// what RFC 3339 cannot say (`infinity`, BC, years past 9999) or bad text.
pub(super) fn timestamp_to_rfc3339(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() < 19 || ![b' ', b'T'].contains(b.get(10)?) {
        return None;
    }
    let (year, month, day) = (digits(text, 0, 4)?, dash(text, 4, 5)?, dash(text, 7, 8)?);
    let (hour, minute, second) = (
        digits(text, 11, 2)?,
        colon(text, 13, 14)?,
        colon(text, 16, 17)?,
    );
    let mut rest = text.get(19..)?;
    let (mut micros, mut precise) = (0, false);
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=6).contains(&len) {
            return None;
        }
        let scale = 10u32.pow(6 - len as u32);
        micros = digits(fraction, 0, len)? * scale;
        precise = len > 3;
        rest = fraction.get(len..)?;
    }
    let offset_secs = offset(rest)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    let utc = NaiveDateTime::new(date, time).checked_sub_signed(TimeDelta::seconds(offset_secs))?;
    if !(0..=9999).contains(&chrono::Datelike::year(&utc)) {
        return None;
    }
    let fraction = if precise { "%.6f" } else { "%.3f" };
    Some(format!(
        "{}Z",
        utc.format(&format!("%Y-%m-%dT%H:%M:%S{fraction}"))
    ))
}

/// `+HH`, `+HH:MM`, `+HH:MM:SS` (or `-`) in seconds east of UTC; empty is 0.
fn offset(text: &str) -> Option<i64> {
    if text.is_empty() {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut secs = i64::from(digits(text, 1, 2)?) * 3600;
    match text.len() {
        3 => {}
        6 => secs += i64::from(colon(text, 3, 4)?) * 60,
        9 => secs += i64::from(colon(text, 3, 4)?) * 60 + i64::from(colon(text, 6, 7)?),
        _ => return None,
    }
    Some(sign * secs)
}

/// `len` ASCII digits at `start` as a number (no sign allowed).
fn digits(text: &str, start: usize, len: usize) -> Option<u32> {
    let s = text.get(start..start.checked_add(len)?)?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Two digits at `at` preceded by `-` at `sep`.
fn dash(text: &str, sep: usize, at: usize) -> Option<u32> {
    (text.as_bytes().get(sep)? == &b'-').then_some(())?;
    digits(text, at, 2)
}

/// Two digits at `at` preceded by `:` at `sep`.
fn colon(text: &str, sep: usize, at: usize) -> Option<u32> {
    (text.as_bytes().get(sep)? == &b':').then_some(())?;
    digits(text, at, 2)
}
