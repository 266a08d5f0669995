//! Fuzz target: the pgoutput decoder and the typed-value conversion must never
//! panic, whatever bytes the replication stream hands them.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walhook::replication::pgoutput::{ColumnValue, Message, TupleData, decode};
use walhook::replication::values::text_to_json;

/// Types every text column under each OID that has a special case, plus the
/// relation's own column types when the message is a Relation.
const OIDS: [u32; 33] = [
    16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 199, 700, 701, 1000, 1001, 1005, 1007, 1009, 1014,
    1015, 1016, 1021, 1022, 1042, 1043, 1082, 1114, 1115, 1184, 1185, 1231, 1700, 3807,
];

fn type_all(tuple: &TupleData) {
    for value in &tuple.0 {
        if let ColumnValue::Text(bytes) = value {
            if let Ok(text) = std::str::from_utf8(bytes) {
                for oid in OIDS.iter().copied().chain([2950, 2951, 3802, 0, u32::MAX]) {
                    let _ = text_to_json(oid, text);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Also feed the raw input as text, so value parsing is fuzzed directly.
    if let Ok(text) = std::str::from_utf8(data) {
        for oid in OIDS {
            let _ = text_to_json(oid, text);
        }
    }
    match decode(&Bytes::copy_from_slice(data)) {
        Ok(Message::Relation(rel)) => {
            for column in &rel.columns {
                let _ = text_to_json(column.type_oid, &column.name);
            }
        }
        Ok(Message::Insert { new, .. }) => type_all(&new),
        Ok(Message::Update { old, key, new, .. }) => {
            old.iter().chain(key.iter()).for_each(type_all);
            type_all(&new);
        }
        Ok(Message::Delete { old, key, .. }) => old.iter().chain(key.iter()).for_each(type_all),
        // a logical message's content, as the writer reads a backfill watermark
        Ok(Message::Message { content, .. }) => {
            let _ = walhook::backfill::Watermark::parse(&content);
        }
        _ => {}
    }
});
