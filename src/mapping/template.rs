//! Templates of `apiresource` and `payload`, compiled once per route.
//!
//! Rules (PRODUCT.md 3.1): a JSON string that is exactly `"{*}"` becomes the row
//! as an object; exactly `"{col}"` becomes that column's typed value; `{col}`
//! inside a longer string or an object key is interpolated as text (strings
//! as-is, null as the empty string, other values as their JSON text). In
//! `apiresource`, interpolated values are percent-encoded as path segments.

use serde_json::{Map, Value};

use crate::replication::change::Row;

/// A template that cannot be compiled; the message names the position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{' at position {0} in template {1:?}")]
    Unclosed(usize, String),
    #[error("unmatched '}}' at position {0} in template {1:?}")]
    Unmatched(usize, String),
    #[error("empty '{{}}' at position {0} in template {1:?}")]
    Empty(usize, String),
}

/// A piece of a text template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    Column(String),
}

/// Compile `text` into literal and column pieces.
pub fn compile_text(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => {
                let start = i + 1;
                let mut end = None;
                for (j, d) in chars.by_ref() {
                    if d == '}' {
                        end = Some(j);
                        break;
                    }
                    if d == '{' {
                        return Err(TemplateError::Unclosed(i, text.to_owned()));
                    }
                }
                let end = end.ok_or_else(|| TemplateError::Unclosed(i, text.to_owned()))?;
                let name = text[start..end].trim();
                if name.is_empty() {
                    return Err(TemplateError::Empty(i, text.to_owned()));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Column(name.to_owned()));
            }
            '}' => return Err(TemplateError::Unmatched(i, text.to_owned())),
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// A compiled `payload` template.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// `"{*}"`: the whole row.
    Row,
    /// `"{col}"`: one typed value.
    Column(String),
    /// A string with interpolations.
    Text(Vec<Piece>),
    Object(Vec<(Vec<Piece>, JsonTemplate)>),
    Array(Vec<JsonTemplate>),
    Literal(Value),
}

impl JsonTemplate {
    pub fn compile(value: &Value) -> Result<JsonTemplate, TemplateError> {
        Ok(match value {
            Value::String(s) if s == "{*}" => JsonTemplate::Row,
            Value::String(s) => {
                let pieces = compile_text(s)?;
                match pieces.as_slice() {
                    [Piece::Column(c)] => JsonTemplate::Column(c.clone()),
                    [] | [Piece::Literal(_)] => JsonTemplate::Literal(value.clone()),
                    _ => JsonTemplate::Text(pieces),
                }
            }
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((compile_text(k)?, JsonTemplate::compile(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::compile)
                    .collect::<Result<_, _>>()?,
            ),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    /// Every column the template refers to (`*` for the whole row).
    pub fn columns(&self, out: &mut Vec<String>) {
        match self {
            JsonTemplate::Row => out.push("*".into()),
            JsonTemplate::Column(c) => out.push(c.clone()),
            JsonTemplate::Text(p) => text_columns(p, out),
            JsonTemplate::Object(entries) => {
                for (k, v) in entries {
                    text_columns(k, out);
                    v.columns(out);
                }
            }
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.columns(out)),
            JsonTemplate::Literal(_) => {}
        }
    }

    /// Fill from `row` (already without excluded columns).
    pub fn render(&self, row: &Row) -> Value {
        match self {
            JsonTemplate::Row => Value::Object(row.clone()),
            JsonTemplate::Column(c) => row.get(c).cloned().unwrap_or(Value::Null),
            JsonTemplate::Text(p) => Value::String(render_text(p, row, false)),
            JsonTemplate::Object(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(render_text(k, row, false), v.render(row));
                }
                Value::Object(map)
            }
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(row)).collect())
            }
            JsonTemplate::Literal(v) => v.clone(),
        }
    }
}

pub fn text_columns(pieces: &[Piece], out: &mut Vec<String>) {
    for p in pieces {
        if let Piece::Column(c) = p {
            out.push(c.clone());
        }
    }
}

/// Interpolate; `path` percent-encodes values as URL path segments.
pub fn render_text(pieces: &[Piece], row: &Row, path: bool) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Literal(l) => out.push_str(l),
            Piece::Column(c) => {
                let text = match row.get(c) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                };
                if path {
                    out.extend(
                        url::form_urlencoded::byte_serialize(text.as_bytes())
                            .map(|s| if s == "+" { "%20" } else { s }),
                    );
                } else {
                    out.push_str(&text);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Row {
        json!({"id": "a b", "n": 3, "ok": true, "nul": null, "secret": "x"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn text_templates_compile_and_render() {
        let p = compile_text("/things/{id}/n/{n}").unwrap();
        assert_eq!(render_text(&p, &row(), true), "/things/a%20b/n/3");
        assert_eq!(
            render_text(&compile_text("{nul}-{ok}").unwrap(), &row(), false),
            "-true"
        );
    }

    #[test]
    fn malformed_templates_name_the_position() {
        assert_eq!(
            compile_text("/a/{id"),
            Err(TemplateError::Unclosed(3, "/a/{id".into()))
        );
        assert_eq!(
            compile_text("/a/}"),
            Err(TemplateError::Unmatched(3, "/a/}".into()))
        );
        assert_eq!(
            compile_text("/a/{ }"),
            Err(TemplateError::Empty(3, "/a/{ }".into()))
        );
        assert!(compile_text("{a{b}}").is_err());
    }

    #[test]
    fn json_templates_keep_types_and_nesting() {
        let t = JsonTemplate::compile(&json!({
            "details": {"id": "{id}", "label": "n={n}", "n": "{n}", "all": "{*}", "k": 1},
            "items": {"{id}": ["{ok}"]}
        }))
        .unwrap();
        let out = t.render(&row());
        assert_eq!(out["details"]["n"], json!(3));
        assert_eq!(out["details"]["label"], json!("n=3"));
        assert_eq!(out["details"]["all"]["ok"], json!(true));
        assert_eq!(out["details"]["k"], json!(1));
        assert_eq!(out["items"]["a b"], json!([true]));
        let mut cols = Vec::new();
        t.columns(&mut cols);
        assert!(cols.contains(&"n".to_string()) && cols.contains(&"*".to_string()));
    }
}
