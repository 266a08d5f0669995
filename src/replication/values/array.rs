//! PostgreSQL's array text syntax: `{1,2}`, `{"a b",NULL,"NULL"}`,
//! `{{1,2},{3,4}}`, `[0:1]={7,8}`.
use serde_json::Value;

/// PostgreSQL's MAXDIM: deeper nesting is not an array PostgreSQL printed.
const MAX_DEPTH: usize = 6;

/// A parsed array: elements are still text, to be typed by the caller.
#[derive(Debug, PartialEq)]
pub(super) enum Item {
    Null,
    Text(String),
    Array(Vec<Item>),
}

impl Item {
    /// Nested JSON arrays, each text element typed by `element`.
    pub(super) fn into_json(self, element: &dyn Fn(&str) -> Value) -> Value {
        match self {
            Item::Null => Value::Null,
            Item::Text(t) => element(&t),
            Item::Array(items) => {
                Value::Array(items.into_iter().map(|i| i.into_json(element)).collect())
            }
        }
    }
}

/// Parses an array literal; `None` if it is not one.
pub(super) fn parse(text: &str) -> Option<Item> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    if p.peek() == Some(b'[') {
        // Dimension decoration of arrays whose lower bound is not 1.
        let eq = p.s.iter().position(|&b| b == b'=')?;
        let decoration = p.s.get(..eq)?;
        if !decoration.iter().all(|b| b"[]:-0123456789".contains(b)) {
            return None;
        }
        p.pos = eq + 1;
    }
    p.skip_ws();
    let out = p.array(1)?;
    p.skip_ws();
    (p.pos == p.s.len()).then_some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// `{` elements `}`, the opening brace not yet consumed.
    fn array(&mut self, depth: usize) -> Option<Item> {
        if depth > MAX_DEPTH || self.next()? != b'{' {
            return None;
        }
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Item::Array(items));
        }
        loop {
            self.skip_ws();
            let item = match self.peek()? {
                b'{' => self.array(depth + 1)?,
                b'"' => self.quoted()?,
                _ => self.unquoted()?,
            };
            items.push(item);
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(Item::Array(items)),
                _ => return None,
            }
        }
    }

    /// `"..."` with backslash escapes; never NULL.
    fn quoted(&mut self) -> Option<Item> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => out.push(self.next()?),
                b => out.push(b),
            }
        }
        String::from_utf8(out).ok().map(Item::Text)
    }

    /// Up to the next unescaped `,` or `}`; surrounding whitespace is not
    /// part of the value and an unescaped `NULL` (any case) is NULL.
    fn unquoted(&mut self) -> Option<Item> {
        let mut out = Vec::new();
        let mut escaped = false;
        // Length of `out` up to its last escaped or non-space byte.
        let mut keep = 0;
        loop {
            match self.peek()? {
                b',' | b'}' => break,
                b'{' | b'"' => return None,
                b'\\' => {
                    self.pos += 1;
                    out.push(self.next()?);
                    escaped = true;
                    keep = out.len();
                }
                b => {
                    self.pos += 1;
                    out.push(b);
                    if !b.is_ascii_whitespace() {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        if out.is_empty() {
            return None;
        }
        if !escaped && out.eq_ignore_ascii_case(b"NULL") {
            return Some(Item::Null);
        }
        String::from_utf8(out).ok().map(Item::Text)
    }
}
