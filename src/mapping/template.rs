//! Templates of `apiresource` and `payload`, compiled once per route.
//!
//! Rules (README, Routes): a JSON string that is exactly `"{*}"` becomes the row
//! as an object; exactly `"{col}"` becomes that column's typed value; `{col}`
//! inside a longer string or an object key is interpolated as text (strings
//! as-is, null as the empty string, other values as their JSON text). In
//! `apiresource`, interpolated values are percent-encoded as path segments.
//!
//! Two names are not columns: `{changed}` is the array of the visible columns an
//! UPDATE changed (`[]` for inserts and deletes), and `{old.col}` is `col` before
//! the change (null for inserts; the deleted value for deletes). Both are
//! resolved when the template is compiled, so rendering never parses a name.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
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

/// What a `{name}` refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A column of the row (the new row, or the deleted one).
    Column(String),
    /// `{old.col}`: the column before the change.
    Old(String),
    /// `{changed}`: the visible columns an UPDATE changed, in table order.
    Changed,
}

impl Field {
    fn parse(name: &str) -> Field {
        match name {
            "changed" => Field::Changed,
            _ => match name.strip_prefix("old.") {
                Some(col) if !col.is_empty() => Field::Old(col.to_owned()),
                _ => Field::Column(name.to_owned()),
            },
        }
    }
}

/// What templates are filled from. `row` and `old` are already without
/// excluded columns.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub row: &'a Row,
    /// The row before the change: None for inserts (and when the route's
    /// payload reads no `{old.col}`).
    pub old: Option<&'a Row>,
    /// Names of the visible columns an UPDATE changed (empty otherwise).
    pub changed: &'a [String],
}

impl<'a> Source<'a> {
    /// A source with only a row (no previous values, nothing changed).
    pub fn row(row: &'a Row) -> Source<'a> {
        Source {
            row,
            old: None,
            changed: &[],
        }
    }

    /// The field's value; absent columns are null.
    pub fn get(&self, field: &Field) -> Cow<'a, Value> {
        const NULL: &Value = &Value::Null;
        match field {
            Field::Column(c) => Cow::Borrowed(self.row.get(c).unwrap_or(NULL)),
            Field::Old(c) => Cow::Borrowed(self.old.and_then(|o| o.get(c)).unwrap_or(NULL)),
            Field::Changed => Cow::Owned(Value::Array(
                self.changed.iter().cloned().map(Value::String).collect(),
            )),
        }
    }
}

/// A piece of a text template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    Field(Field),
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
                pieces.push(Piece::Field(Field::parse(name)));
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
    /// `"{col}"`, `"{old.col}"`, `"{changed}"`: one typed value.
    Field(Field),
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
                    [Piece::Field(f)] => JsonTemplate::Field(f.clone()),
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

    /// Every field the template refers to, in template order (`"{*}"` as the
    /// column `*`).
    pub fn fields(&self, out: &mut Vec<Field>) {
        match self {
            JsonTemplate::Row => out.push(Field::Column("*".into())),
            JsonTemplate::Field(f) => out.push(f.clone()),
            JsonTemplate::Text(p) => text_fields(p, out),
            JsonTemplate::Object(entries) => {
                for (k, v) in entries {
                    text_fields(k, out);
                    v.fields(out);
                }
            }
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.fields(out)),
            JsonTemplate::Literal(_) => {}
        }
    }

    /// Fill from `source`.
    pub fn render(&self, source: &Source<'_>) -> Value {
        match self {
            JsonTemplate::Row => Value::Object(source.row.to_json_map()),
            JsonTemplate::Field(f) => source.get(f).into_owned(),
            JsonTemplate::Text(p) => Value::String(render_text(p, source, false)),
            JsonTemplate::Object(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(render_text(k, source, false), v.render(source));
                }
                Value::Object(map)
            }
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(source)).collect())
            }
            JsonTemplate::Literal(v) => v.clone(),
        }
    }
}

/// A template filled from a source as it is serialized: the same JSON as
/// [`JsonTemplate::render`] gives, without building it as a `Value` first
/// (for `"{*}"`, a copy of the whole row).
pub struct Rendered<'t, 'a> {
    pub template: &'t JsonTemplate,
    pub source: &'t Source<'a>,
}

impl Serialize for Rendered<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let source = self.source;
        match self.template {
            JsonTemplate::Row => source.row.serialize(serializer),
            JsonTemplate::Field(f) => source.get(f).serialize(serializer),
            JsonTemplate::Text(p) => serializer.serialize_str(&render_text(p, source, false)),
            JsonTemplate::Object(entries) => {
                let keys: Vec<String> = entries
                    .iter()
                    .map(|(k, _)| render_text(k, source, false))
                    .collect();
                // two keys filled with the same text: the object keeps one
                // (as render does), so leave that to render
                if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
                    return self.template.render(source).serialize(serializer);
                }
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, (_, template)) in keys.iter().zip(entries) {
                    map.serialize_entry(key, &Rendered { template, source })?;
                }
                map.end()
            }
            JsonTemplate::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for template in items {
                    seq.serialize_element(&Rendered { template, source })?;
                }
                seq.end()
            }
            JsonTemplate::Literal(v) => v.serialize(serializer),
        }
    }
}

pub fn text_fields(pieces: &[Piece], out: &mut Vec<Field>) {
    for p in pieces {
        if let Piece::Field(f) = p {
            out.push(f.clone());
        }
    }
}

/// Interpolate; `path` percent-encodes values as URL path segments.
pub fn render_text(pieces: &[Piece], source: &Source<'_>, path: bool) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Literal(l) => out.push_str(l),
            Piece::Field(f) => {
                let value = source.get(f);
                let text = match value.as_ref() {
                    Value::Null => Cow::Borrowed(""),
                    Value::String(s) => Cow::Borrowed(s.as_str()),
                    v => Cow::Owned(v.to_string()),
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
        Row::from_json(json!({"id": "a b", "n": 3, "ok": true, "nul": null, "secret": "x"}))
    }

    #[test]
    fn text_templates_compile_and_render() {
        let r = row();
        let p = compile_text("/things/{id}/n/{n}").unwrap();
        assert_eq!(render_text(&p, &Source::row(&r), true), "/things/a%20b/n/3");
        assert_eq!(
            render_text(
                &compile_text("{nul}-{ok}").unwrap(),
                &Source::row(&r),
                false
            ),
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
        let r = row();
        let out = t.render(&Source::row(&r));
        assert_eq!(out["details"]["n"], json!(3));
        assert_eq!(out["details"]["label"], json!("n=3"));
        assert_eq!(out["details"]["all"]["ok"], json!(true));
        assert_eq!(out["details"]["k"], json!(1));
        assert_eq!(out["items"]["a b"], json!([true]));
        let mut fields = Vec::new();
        t.fields(&mut fields);
        assert!(
            fields.contains(&Field::Column("n".into()))
                && fields.contains(&Field::Column("*".into()))
        );
    }

    #[test]
    fn changed_and_old_values_are_fields_not_columns() {
        let t = JsonTemplate::compile(&json!({
            "changed": "{changed}", "was": "{old.n}", "now": "{n}",
            "label": "{old.id} -> {id} ({changed})", "{old.ok}": "{old.missing}"
        }))
        .unwrap();
        let (new, old) = (
            row(),
            Row::from_json(json!({"id": "z", "n": 2, "ok": false})),
        );
        let changed = vec!["id".to_owned(), "n".to_owned()];
        let source = Source {
            row: &new,
            old: Some(&old),
            changed: &changed,
        };
        let out = t.render(&source);
        assert_eq!(out["changed"], json!(["id", "n"]));
        assert_eq!(out["was"], json!(2));
        assert_eq!(out["now"], json!(3));
        assert_eq!(out["label"], json!(r#"z -> a b (["id","n"])"#));
        assert_eq!(out["false"], Value::Null);
        // no previous row (an insert): old values are null, nothing changed
        let out = t.render(&Source::row(&new));
        assert_eq!((&out["changed"], &out["was"]), (&json!([]), &Value::Null));
        assert_eq!(out["label"], json!(" -> a b ([])"));
        let mut fields = Vec::new();
        t.fields(&mut fields);
        assert!(fields.contains(&Field::Changed) && fields.contains(&Field::Old("n".into())));
        assert_eq!(Field::parse("old."), Field::Column("old.".into()));
    }

    #[test]
    fn serialized_as_rendered_gives_the_rendered_json() {
        let (new, old) = (row(), Row::from_json(json!({"id": "z", "n": 2})));
        let changed = vec!["n".to_owned()];
        let source = Source {
            row: &new,
            old: Some(&old),
            changed: &changed,
        };
        for template in [
            json!("{*}"),
            json!("{n}"),
            json!("n={n}, was {old.n}"),
            json!(7),
            json!({"all": "{*}", "{id}": ["{ok}", "{changed}", {"k": null}], "was": "{old.id}"}),
            // two keys filled with the same text: one is kept, as render keeps it
            json!({"{id}": 1, "k": 2, "a b": 3}),
            json!([]),
            json!({}),
        ] {
            let t = JsonTemplate::compile(&template).unwrap();
            let rendered = serde_json::to_string(&Rendered {
                template: &t,
                source: &source,
            })
            .unwrap();
            assert_eq!(rendered, t.render(&source).to_string(), "{template}");
        }
    }
}
