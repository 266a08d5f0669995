//! Text from a receiver, made fit for a PostgreSQL `text` column.
//!
//! A response body and some error messages (a transport error's causes, a
//! redirect's `location`) are the receiver's words. PostgreSQL refuses NUL
//! (0x00) and invalid UTF-8 in text, and one refused row fails the recorder's
//! whole batch, which is retried until it is stored: one hostile receiver
//! would stop every subscription's outcomes. So each such text is made valid,
//! NUL-free and bounded here, before it becomes part of a record.

use std::borrow::Cow;

/// What stands for a NUL and for invalid UTF-8: U+FFFD REPLACEMENT CHARACTER.
pub const REPLACEMENT: char = '\u{FFFD}';

/// The longest error message recorded, in bytes.
pub const ERROR_LIMIT: usize = 1024;

/// The first `limit` bytes of a body as text: cut before a character the
/// limit would split (`bytes` may hold more than `limit` to show whether it
/// does), with invalid UTF-8 and NUL replaced by [`REPLACEMENT`]. Each
/// replacement takes three bytes, so the text has at most `3 * limit` bytes.
pub fn printable_body(bytes: &[u8], limit: usize) -> String {
    let kept = &bytes[..char_boundary(bytes, limit)];
    without_nul(&String::from_utf8_lossy(kept)).into_owned()
}

/// `text` cut to at most `limit` bytes (on a character boundary), NUL
/// replaced by [`REPLACEMENT`].
pub fn text_for_postgres(text: &str, limit: usize) -> String {
    let end = (0..=limit.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    without_nul(&text[..end]).into_owned()
}

fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', REPLACEMENT.encode_utf8(&mut [0; 4])))
    } else {
        Cow::Borrowed(text)
    }
}

/// Where to cut `bytes` to keep at most `limit`: at `limit`, or before the
/// start of the character the byte at `limit` continues (a UTF-8 character
/// is at most four bytes: at most three continuation bytes to step back).
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    if bytes.len() <= limit {
        return bytes.len();
    }
    let continues = |i: usize| bytes[i] & 0b1100_0000 == 0b1000_0000;
    (limit.saturating_sub(3)..=limit)
        .rev()
        .find(|&i| !continues(i))
        .unwrap_or(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_text_postgresql_accepts() {
        assert_eq!(printable_body(b"ok", 256), "ok");
        assert_eq!(printable_body(b"", 256), "");
        assert_eq!(printable_body(b"a\0b", 256), "a\u{FFFD}b");
        assert_eq!(printable_body(b"a\xffb\xc3", 256), "a\u{FFFD}b\u{FFFD}");
        let hostile = printable_body(&[0; 1000], 256);
        assert!(!hostile.contains('\0'));
        assert_eq!(hostile.chars().count(), 256);
        assert_eq!(hostile.len(), 3 * 256, "at most three bytes per byte kept");
    }

    #[test]
    fn the_limit_never_splits_a_character() {
        // "é" is two bytes: at 3 bytes, "aé" fits and "aéé" is cut before the second
        assert_eq!(printable_body("aéé".as_bytes(), 3), "aé");
        assert_eq!(printable_body("aéé".as_bytes(), 4), "aé");
        assert_eq!(printable_body("aéé".as_bytes(), 5), "aéé");
        // four-byte characters, cut at every offset inside one
        let text = "a🦀🦀";
        for limit in 1..=9 {
            let kept = printable_body(text.as_bytes(), limit);
            assert!(text.starts_with(&kept), "{limit}: {kept:?}");
            assert!(kept.len() <= limit && kept.len() + 4 > limit, "{limit}");
        }
        // the body's own broken end (nothing past the limit) is replaced
        assert_eq!(printable_body(b"a\xf0\x9f", 256), "a\u{FFFD}");
        // stray continuation bytes at the cut are not mistaken for a character
        assert_eq!(printable_body(&[0x80; 10], 4), "\u{FFFD}".repeat(4));
    }

    #[test]
    fn error_text_is_bounded_and_without_nul() {
        assert_eq!(text_for_postgres("refused", ERROR_LIMIT), "refused");
        assert_eq!(text_for_postgres("a\0b", ERROR_LIMIT), "a\u{FFFD}b");
        let long = "é".repeat(ERROR_LIMIT);
        let cut = text_for_postgres(&long, ERROR_LIMIT);
        assert_eq!(cut.len(), ERROR_LIMIT);
        assert_eq!(text_for_postgres(&long, 3), "é");
        assert_eq!(text_for_postgres("abc", 0), "");
    }
}
