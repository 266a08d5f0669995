//! One decoded row: column names and typed JSON values, in the table's
//! column order. What the replication stage hands to mapping for every
//! change, so it is built once per row and read a few times.
//!
//! Names are shared (`Arc<str>`), not copied: every row of a relation holds
//! the names its Relation message gave, so decoding a row allocates its
//! values only. A lookup is a scan: a table has tens of columns, and
//! comparing a few short names costs less than hashing one (a
//! `serde_json::Map` hashed every name it stored and every name looked up:
//! with the copies, about a twelfth of walhook's CPU in a drain).

use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Column name -> typed JSON value, in the table's column order; each name
/// at most once.
#[derive(Debug, Clone, Default)]
pub struct Row {
    columns: Vec<(Arc<str>, Value)>,
}

impl Row {
    pub fn with_capacity(columns: usize) -> Row {
        Row {
            columns: Vec::with_capacity(columns),
        }
    }

    /// Set `name` to `value`: in place when the row has that column (its
    /// previous value is returned), else as its last column.
    pub fn insert(&mut self, name: impl Into<Arc<str>>, value: Value) -> Option<Value> {
        let name = name.into();
        match self.columns.iter_mut().find(|(n, _)| **n == *name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.columns.push((name, value));
                None
            }
        }
    }

    /// Add a column the row does not have (a decoder's columns are distinct
    /// by construction: no search).
    pub fn push(&mut self, name: Arc<str>, value: Value) {
        debug_assert!(!self.contains_key(&name), "column {name} twice");
        self.columns.push((name, value));
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// `(name, value)` in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(|(n, v)| (&**n, v))
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The columns whose name `keep` accepts, names shared with this row.
    pub fn filtered(&self, mut keep: impl FnMut(&str) -> bool) -> Row {
        Row {
            columns: self
                .columns
                .iter()
                .filter(|(n, _)| keep(n))
                .cloned()
                .collect(),
        }
    }

    /// The row as a JSON object (a copy), for payloads that hold it as a
    /// [`Value`].
    pub fn to_json_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(n, v)| (n.to_owned(), v.clone()))
            .collect()
    }
}

/// Rows written as JSON objects, for tests.
#[cfg(test)]
impl Row {
    pub(crate) fn from_json(object: Value) -> Row {
        serde_json::from_value(object).expect("a row is a JSON object")
    }
}

/// As two JSON objects compare: the same names with equal values, in any
/// order.
impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.len() == other.len() && self.iter().all(|(n, v)| other.get(n) == Some(v))
    }
}

impl<N: Into<Arc<str>>> FromIterator<(N, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (N, Value)>>(columns: I) -> Row {
        let mut row = Row::default();
        for (name, value) in columns {
            row.insert(name, value);
        }
        row
    }
}

/// As a JSON object, in column order.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// From a JSON object (a later duplicate name replaces the earlier value, as
/// in `serde_json`).
impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of column values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
                let mut row = Row::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    row.insert(name, value);
                }
                Ok(row)
            }
        }
        deserializer.deserialize_map(RowVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_row_reads_and_writes_as_the_json_object_of_its_columns() {
        let text = r#"{"id":7,"name":"Acme","tags":["a"],"gone":null}"#;
        let row: Row = serde_json::from_str(text).unwrap();
        assert_eq!(row.len(), 4);
        assert_eq!(row.get("name"), Some(&json!("Acme")));
        assert_eq!(row.get("gone"), Some(&Value::Null));
        assert_eq!(row.get("missing"), None);
        assert!(row.contains_key("tags") && !row.contains_key("Tags"));
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            text,
            "column order kept"
        );
        assert_eq!(
            Value::Object(row.to_json_map()),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let names: Vec<&str> = row.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["id", "name", "tags", "gone"]);
    }

    #[test]
    fn insert_replaces_a_column_in_place_and_equality_ignores_order() {
        let mut row: Row = [("a", json!(1)), ("b", json!(2))].into_iter().collect();
        assert_eq!(row.insert("a", json!(3)), Some(json!(1)));
        assert_eq!(row.insert("c", json!(4)), None);
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"a":3,"b":2,"c":4}"#
        );
        let reordered: Row = [("c", json!(4)), ("a", json!(3)), ("b", json!(2))]
            .into_iter()
            .collect();
        assert_eq!(row, reordered);
        assert_ne!(row, row.filtered(|n| n != "b"));
        assert_ne!(row.filtered(|n| n != "b"), row);
        let duplicated: Row = serde_json::from_str(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(serde_json::to_string(&duplicated).unwrap(), r#"{"a":2}"#);
    }
}
