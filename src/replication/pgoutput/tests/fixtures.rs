//! Real pgoutput bytes, captured from PostgreSQL 15.18 with
//! `pg_logical_slot_peek_binary_changes('slot', NULL, NULL, 'proto_version',
//! '1', 'publication_names', 'pub', 'messages', 'true')` after:
//!
//! ```sql
//! CREATE TABLE t (id int primary key, name text, n numeric, tags text[],
//!                 ts timestamptz, b bytea);
//! ALTER TABLE t REPLICA IDENTITY FULL;
//! CREATE TABLE k (id int primary key, v text);
//! INSERT INTO t VALUES (1, 'a "b", c', 1.30, '{x,"y z",NULL}',
//!                       '2024-12-12 17:32:57.57+00', '\x0102');
//! UPDATE t SET name = NULL WHERE id = 1;
//! DELETE FROM t WHERE id = 1;
//! INSERT INTO k VALUES (7, 'seven'); UPDATE k SET id = 8 WHERE id = 7;
//! DELETE FROM k WHERE id = 8;
//! TRUNCATE t, k;
//! SELECT pg_logical_emit_message(true, 'p', 'x');
//! -- and, with a replication origin 'src' set up for the session:
//! CREATE TYPE mood AS ENUM ('ok','sad'); CREATE TABLE e (id int primary key, m mood);
//! INSERT INTO e VALUES (1, 'ok');
//! ```
use super::*;

const BEGIN: &str = "420000000001532c18000303e4698c9cbf000002d8";
const COMMIT: &str = "43000000000001532c180000000001532c48000303e4698c9cbf";
const RELATION_T: &str = "52000040007075626c69630074006600060169640000000017ffffffff016e616d65\
    0000000019ffffffff016e00000006a4ffffffff017461677300000003f1ffffffff01747300000004a0ffff\
    ffff01620000000011ffffffff";
const INSERT_T: &str = "49000040004e0006740000000131740000000861202262222c206374000000\
    04312e3330740000000e7b782c2279207a222c4e554c4c7d7400000019323032342d31322d31322031373a33\
    323a35372e35372b303074000000065c7830313032";
const UPDATE_T_FULL: &str = "55000040004f0006740000000131740000000861202262222c206374000000\
    04312e3330740000000e7b782c2279207a222c4e554c4c7d7400000019323032342d31322d31322031373a33\
    323a35372e35372b303074000000065c78303130324e00067400000001316e7400000004312e333074000000\
    0e7b782c2279207a222c4e554c4c7d7400000019323032342d31322d31322031373a33323a35372e35372b30\
    3074000000065c7830313032";
const DELETE_T_FULL: &str = "44000040004f00067400000001316e7400000004312e3330740000000e7b78\
    2c2279207a222c4e554c4c7d7400000019323032342d31322d31322031373a33323a35372e35372b30307400\
    0000065c7830313032";
const UPDATE_K_KEY: &str = "55000040074b00027400000001376e4e00027400000001387400000005736576656e";
const DELETE_K_KEY: &str = "44000040074b00027400000001386e";
const TRUNCATE: &str = "5400000002000000400000004007";
const MESSAGE: &str = "4d010000000001534a1870000000000178";
const ORIGIN: &str = "4f0000000000abcdef73726300";
const TYPE_MOOD: &str = "590000401a7075626c6963006d6f6f6400";
const RELATION_E: &str = "520000401f7075626c69630065006400020169640000000017ffffffff006d00\
    0000401affffffff";

fn fixture(h: &str) -> Message {
    decode_strict(hex(h))
}

const ROW: [&str; 6] = [
    "1",
    "a \"b\", c",
    "1.30",
    "{x,\"y z\",NULL}",
    "2024-12-12 17:32:57.57+00",
    "\\x0102",
];

#[test]
fn real_begin_commit() {
    assert_eq!(
        fixture(BEGIN),
        Message::Begin {
            final_lsn: "0/1532C18".parse().unwrap(),
            commit_time_us: 0x0003_03e4_698c_9cbf,
            xid: 728
        }
    );
    assert_eq!(
        fixture(COMMIT),
        Message::Commit {
            flags: 0,
            commit_lsn: "0/1532C18".parse().unwrap(),
            end_lsn: "0/1532C48".parse().unwrap(),
            commit_time_us: 0x0003_03e4_698c_9cbf
        }
    );
}

#[test]
fn real_relation() {
    let Message::Relation(rel) = fixture(RELATION_T) else {
        panic!("not a relation")
    };
    assert_eq!(
        (rel.oid, rel.namespace.as_str(), rel.name.as_str()),
        (16384, "public", "t")
    );
    assert_eq!(rel.replica_identity, b'f');
    let cols: Vec<_> = rel
        .columns
        .iter()
        .map(|c| (c.flags, c.name.as_str(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        cols,
        [
            (1, "id", 23, -1),
            (1, "name", 25, -1),
            (1, "n", 1700, -1),
            (1, "tags", 1009, -1),
            (1, "ts", 1184, -1),
            (1, "b", 17, -1)
        ]
    );
}

#[test]
fn real_insert_update_delete_full() {
    let row = TupleData(ROW.iter().map(|s| text(s)).collect());
    assert_eq!(
        fixture(INSERT_T),
        Message::Insert {
            relation_oid: 16384,
            new: row.clone()
        }
    );
    let mut nulled = row.clone();
    nulled.0[1] = ColumnValue::Null;
    assert_eq!(
        fixture(UPDATE_T_FULL),
        Message::Update {
            relation_oid: 16384,
            old: Some(row),
            key: None,
            new: nulled.clone()
        }
    );
    assert_eq!(
        fixture(DELETE_T_FULL),
        Message::Delete {
            relation_oid: 16384,
            old: Some(nulled),
            key: None
        }
    );
}

#[test]
fn real_key_update_and_delete() {
    assert_eq!(
        fixture(UPDATE_K_KEY),
        Message::Update {
            relation_oid: 16391,
            old: None,
            key: Some(TupleData(vec![text("7"), ColumnValue::Null])),
            new: TupleData(vec![text("8"), text("seven")])
        }
    );
    assert_eq!(
        fixture(DELETE_K_KEY),
        Message::Delete {
            relation_oid: 16391,
            old: None,
            key: Some(TupleData(vec![text("8"), ColumnValue::Null]))
        }
    );
}

#[test]
fn real_truncate_message_origin_type() {
    assert_eq!(
        fixture(TRUNCATE),
        Message::Truncate {
            options: 0,
            relation_oids: vec![16384, 16391]
        }
    );
    assert_eq!(
        fixture(MESSAGE),
        Message::Message {
            transactional: true,
            lsn: "0/1534A18".parse().unwrap(),
            prefix: "p".into(),
            content: Bytes::from_static(b"x")
        }
    );
    assert_eq!(
        fixture(ORIGIN),
        Message::Origin {
            commit_lsn: "0/ABCDEF".parse().unwrap(),
            name: "src".into()
        }
    );
    assert_eq!(
        fixture(TYPE_MOOD),
        Message::Type {
            oid: 16410,
            namespace: "public".into(),
            name: "mood".into()
        }
    );
    let Message::Relation(rel) = fixture(RELATION_E) else {
        panic!("not a relation")
    };
    assert_eq!(rel.replica_identity, b'd');
    assert_eq!((rel.columns[0].flags, rel.columns[1].type_oid), (1, 16410));
}
