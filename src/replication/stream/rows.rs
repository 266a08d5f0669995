//! A pgoutput tuple as a typed row: text values through
//! [`crate::replication::values`], unchanged TOAST values taken from the old
//! row when the table has `REPLICA IDENTITY FULL`.

use std::sync::Arc;

use serde_json::Value;

use super::super::change::{RelationInfo, Row};
use super::super::lsn::Lsn;
use super::super::pgoutput::{ColumnValue, TupleData};
use super::super::values::text_to_json;
use super::error::{StreamError, unexpected};

/// Turn a tuple into a typed row. Unchanged TOAST values are taken from `old`
/// (present under `REPLICA IDENTITY FULL`); those not available are left out of
/// the row and named in the second value.
pub(super) fn tuple_to_row(
    lsn: Lsn,
    relation: &RelationInfo,
    tuple: &TupleData,
    old: Option<&Row>,
) -> Result<(Row, Vec<String>), StreamError> {
    if tuple.0.len() != relation.columns.len() {
        return Err(unexpected(
            lsn,
            &format!(
                "tuple of {} columns for relation {} of {} columns",
                tuple.0.len(),
                relation.qualified_name(),
                relation.columns.len()
            ),
        ));
    }
    let mut row = Row::with_capacity(tuple.0.len());
    let mut missing = Vec::new();
    for ((name, type_oid), value) in relation.columns.iter().zip(&tuple.0) {
        let json = match value {
            ColumnValue::Null => Value::Null,
            ColumnValue::Text(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| unexpected(lsn, &format!("column {name} is not valid UTF-8")))?;
                text_to_json(*type_oid, text)
            }
            ColumnValue::Binary(_) => {
                return Err(unexpected(lsn, &format!("binary value for column {name}")));
            }
            ColumnValue::UnchangedToast => match old.and_then(|o| o.get(name)) {
                Some(v) => v.clone(),
                None => {
                    missing.push(name.to_string());
                    continue;
                }
            },
        };
        row.push(Arc::clone(name), json);
    }
    Ok((row, missing))
}
