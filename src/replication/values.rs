//! STUB (owned by the decoder helper): text-format column values -> typed JSON.
use serde_json::Value;

pub fn text_to_json(_type_oid: u32, _text: &str) -> Value {
    todo!()
}
