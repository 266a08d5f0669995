//! Decoder tests: messages built by a small encoder, and real bytes captured
//! from PostgreSQL 15 with `pg_logical_slot_peek_binary_changes`.
use super::*;

/// Test-only encoder for the pgoutput wire format.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn tag(mut self, t: u8) -> Self {
        self.0.push(t);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A tuple of text columns; `None` is NULL.
    fn tuple(self, cols: &[Option<&str>]) -> Self {
        let mut e = self.u16(cols.len() as u16);
        for c in cols {
            e = match c {
                None => e.tag(b'n'),
                Some(t) => e.tag(b't').i32(t.len() as i32).raw(t.as_bytes()),
            };
        }
        e
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn text(s: &str) -> ColumnValue {
    ColumnValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn hex(s: &str) -> Bytes {
    let digits: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    Bytes::from(digits)
}

/// Every prefix of a valid message is an error, never a panic.
fn assert_every_prefix_fails(buf: &Bytes) {
    for n in 0..buf.len() {
        let res = decode(&buf.slice(..n));
        assert!(res.is_err(), "prefix of {n} bytes decoded: {res:?}");
    }
}

/// Decodes, then checks prefixes fail and trailing garbage fails.
fn decode_strict(buf: Bytes) -> Message {
    let msg = decode(&buf).expect("decodes");
    assert_every_prefix_fails(&buf);
    let mut longer = buf.to_vec();
    longer.push(0);
    assert_eq!(
        decode(&Bytes::from(longer)),
        Err(DecodeError::TrailingBytes {
            offset: buf.len(),
            count: 1
        })
    );
    msg
}

#[test]
fn begin_and_commit() {
    let begin = Enc::default().tag(b'B').u64(0x1_0000_0010).u64(123).u32(42);
    assert_eq!(
        decode_strict(begin.bytes()),
        Message::Begin {
            final_lsn: Lsn(0x1_0000_0010),
            commit_time_us: 123,
            xid: 42
        }
    );
    let commit = Enc::default().tag(b'C').tag(0).u64(5).u64(9).u64(u64::MAX);
    assert_eq!(
        decode_strict(commit.bytes()),
        Message::Commit {
            flags: 0,
            commit_lsn: Lsn(5),
            end_lsn: Lsn(9),
            commit_time_us: -1
        }
    );
}

#[test]
fn origin_type_and_message() {
    let origin = Enc::default().tag(b'O').u64(7).str("upstream");
    assert_eq!(
        decode_strict(origin.bytes()),
        Message::Origin {
            commit_lsn: Lsn(7),
            name: "upstream".into()
        }
    );
    let ty = Enc::default()
        .tag(b'Y')
        .u32(16400)
        .str("public")
        .str("mood");
    assert_eq!(
        decode_strict(ty.bytes()),
        Message::Type {
            oid: 16400,
            namespace: "public".into(),
            name: "mood".into()
        }
    );
    let m = Enc::default()
        .tag(b'M')
        .tag(0)
        .u64(3)
        .str("p")
        .i32(3)
        .raw(b"a\0b");
    assert_eq!(
        decode_strict(m.bytes()),
        Message::Message {
            transactional: false,
            lsn: Lsn(3),
            prefix: "p".into(),
            content: Bytes::from_static(b"a\0b")
        }
    );
}

#[test]
fn relation() {
    let buf = Enc::default()
        .tag(b'R')
        .u32(16385)
        .str("public")
        .str("t")
        .tag(b'f')
        .u16(2)
        .tag(1)
        .str("id")
        .u32(23)
        .i32(-1)
        .tag(0)
        .str("name")
        .u32(1043)
        .i32(36);
    let Message::Relation(rel) = decode_strict(buf.bytes()) else {
        panic!("not a relation")
    };
    assert_eq!(rel.oid, 16385);
    assert_eq!((rel.namespace.as_str(), rel.name.as_str()), ("public", "t"));
    assert_eq!(rel.replica_identity, b'f');
    assert_eq!(
        rel.columns[1],
        ColumnInfo {
            flags: 0,
            name: "name".into(),
            type_oid: 1043,
            type_modifier: 36
        }
    );
    assert_eq!(rel.columns.len(), 2);
}

#[test]
fn insert_with_every_column_kind() {
    let buf = Enc::default()
        .tag(b'I')
        .u32(9)
        .tag(b'N')
        .u16(4)
        .tag(b'n')
        .tag(b'u')
        .tag(b't')
        .i32(2)
        .raw(b"hi")
        .tag(b'b')
        .i32(0)
        .bytes();
    let msg = decode_strict(buf.clone());
    let Message::Insert { relation_oid, new } = msg else {
        panic!("not an insert")
    };
    assert_eq!(relation_oid, 9);
    assert_eq!(
        new.0,
        vec![
            ColumnValue::Null,
            ColumnValue::UnchangedToast,
            text("hi"),
            ColumnValue::Binary(Bytes::new())
        ]
    );
    // Zero-copy: the text value points into the input buffer.
    let ColumnValue::Text(hi) = &new.0[2] else {
        unreachable!()
    };
    assert_eq!(hi.as_ptr(), buf[buf.len() - 7..].as_ptr());
}

#[test]
fn update_forms() {
    let plain = Enc::default()
        .tag(b'U')
        .u32(1)
        .tag(b'N')
        .tuple(&[Some("1")]);
    assert_eq!(
        decode_strict(plain.bytes()),
        Message::Update {
            relation_oid: 1,
            old: None,
            key: None,
            new: TupleData(vec![text("1")])
        }
    );
    for (tag, is_old) in [(b'O', true), (b'K', false)] {
        let buf = Enc::default()
            .tag(b'U')
            .u32(1)
            .tag(tag)
            .tuple(&[Some("1"), None])
            .tag(b'N')
            .tuple(&[Some("2"), Some("x")]);
        let Message::Update { old, key, new, .. } = decode_strict(buf.bytes()) else {
            panic!("not an update")
        };
        let before = Some(TupleData(vec![text("1"), ColumnValue::Null]));
        assert_eq!(if is_old { &old } else { &key }, &before);
        assert_eq!(if is_old { key } else { old }, None);
        assert_eq!(new.0, vec![text("2"), text("x")]);
    }
    let missing_new = Enc::default()
        .tag(b'U')
        .u32(1)
        .tag(b'O')
        .tuple(&[None])
        .tag(b'X');
    assert!(matches!(
        decode(&missing_new.bytes()),
        Err(DecodeError::Unexpected { offset: 9, .. })
    ));
}

#[test]
fn delete_forms() {
    let buf = Enc::default()
        .tag(b'D')
        .u32(3)
        .tag(b'K')
        .tuple(&[Some("8")]);
    assert_eq!(
        decode_strict(buf.bytes()),
        Message::Delete {
            relation_oid: 3,
            old: None,
            key: Some(TupleData(vec![text("8")]))
        }
    );
    let no_tuple = Enc::default().tag(b'D').u32(3).tag(b'N').tuple(&[None]);
    assert!(decode(&no_tuple.bytes()).is_err());
}

#[test]
fn truncate() {
    let buf = Enc::default().tag(b'T').u32(2).tag(3).u32(10).u32(11);
    assert_eq!(
        decode_strict(buf.bytes()),
        Message::Truncate {
            options: 3,
            relation_oids: vec![10, 11]
        }
    );
}

#[test]
fn unknown_tags_are_errors() {
    for tag in [b'X', b'S', b'E', b'A', 0, 0xff] {
        assert_eq!(
            decode(&Bytes::from(vec![tag, 0, 0, 0, 0])),
            Err(DecodeError::UnknownTag { tag })
        );
    }
    assert!(decode(&Bytes::new()).is_err());
}

#[test]
fn hostile_lengths_and_counts_do_not_allocate_or_panic() {
    // Column length -1 and i32::MAX; tuple count 65535; truncate count u32::MAX.
    let neg = Enc::default()
        .tag(b'I')
        .u32(1)
        .tag(b'N')
        .u16(1)
        .tag(b't')
        .i32(-1);
    assert_eq!(
        decode(&neg.bytes()),
        Err(DecodeError::NegativeLength { offset: 9, len: -1 })
    );
    let huge = Enc::default()
        .tag(b'I')
        .u32(1)
        .tag(b'N')
        .u16(1)
        .tag(b't')
        .i32(i32::MAX);
    assert!(matches!(
        decode(&huge.bytes()),
        Err(DecodeError::Truncated { .. })
    ));
    let many = Enc::default()
        .tag(b'I')
        .u32(1)
        .tag(b'N')
        .u16(u16::MAX)
        .tag(b'n');
    assert!(matches!(
        decode(&many.bytes()),
        Err(DecodeError::Truncated { .. })
    ));
    let trunc = Enc::default().tag(b'T').u32(u32::MAX).tag(0).u32(1);
    assert!(matches!(
        decode(&trunc.bytes()),
        Err(DecodeError::Truncated { .. })
    ));
    let msg = Enc::default().tag(b'M').tag(1).u64(0).str("p").i32(-5);
    assert!(matches!(
        decode(&msg.bytes()),
        Err(DecodeError::NegativeLength { .. })
    ));
    let bad_kind = Enc::default().tag(b'I').u32(1).tag(b'N').u16(1).tag(b'x');
    assert!(matches!(
        decode(&bad_kind.bytes()),
        Err(DecodeError::Unexpected {
            offset: 8,
            found: b'x',
            ..
        })
    ));
}

#[test]
fn strings_need_nul_and_utf8() {
    let no_nul = Enc::default().tag(b'O').u64(1).raw(b"abc");
    assert_eq!(
        decode(&no_nul.bytes()),
        Err(DecodeError::MissingNul { offset: 9 })
    );
    let bad_utf8 = Enc::default().tag(b'O').u64(1).raw(b"\xff\xfe\0");
    assert_eq!(
        decode(&bad_utf8.bytes()),
        Err(DecodeError::InvalidUtf8 { offset: 9 })
    );
}

#[test]
fn pg_epoch_conversion() {
    assert_eq!(pg_time_to_utc(0).to_rfc3339(), "2000-01-01T00:00:00+00:00");
    // The commit time of the first captured fixture transaction.
    let t = pg_time_to_utc(0x0003_03e4_698c_9cbf);
    let micros = chrono::SecondsFormat::Micros;
    assert_eq!(
        t.to_rfc3339_opts(micros, true),
        "2026-11-22T23:14:48.381631Z"
    );
    assert_eq!(
        pg_time_to_utc(-1).to_rfc3339_opts(micros, true),
        "1999-12-31T23:59:59.999999Z"
    );
    assert_eq!(
        pg_time_to_utc(i64::MAX),
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    );
    assert_eq!(
        pg_time_to_utc(i64::MIN),
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    );
}

mod fixtures;
