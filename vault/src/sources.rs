//! Source records: the fields of every record merged into a subject, kept inside the
//! subject's own encrypted profile (one reserved field, [`SOURCES`]), so they are sealed under
//! its data key, snapshotted with it for undo, and shredded with it on erasure.
//!
//! The matcher compares later records against these rather than against the merged profile,
//! whose fields survivorship may have taken from several records; `match check` looks for
//! source records of one subject that contradict each other, and a split takes one back out.
//!
//! ```text
//! sources = varint(count) source*
//! source  = varint(len) label(len) varint(fields) field*
//! field   = u16(field id) varint(len) value(len)      (the value's binary form)
//! ```
//! The bytes are kept hex-encoded in a text value (the record format holds values only).

use domain::{FieldId, Value};

use crate::record::{get_varint, put_varint};

/// The reserved profile field holding a subject's source records. Never returned by
/// [`crate::Vault::read_subject`]; read with [`crate::Vault::read_with_sources`].
pub const SOURCES: FieldId = FieldId(0xFFFE);

/// Most source records kept per subject: a person is rarely entered more often than this,
/// and the field must stay under the 64 KiB a text value may hold.
pub const MAX_SOURCES: usize = 48;

/// One record merged into a subject: where it came from and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Where it came from: `import:ID#ROW`, `stored` (the profile as it was before source
    /// records were kept), `api`, or `merge`. Never a personal value.
    pub label: String,
    /// Its subject fields, as they were read.
    pub fields: Vec<(FieldId, Value)>,
}

impl SourceRecord {
    /// True when both hold the same fields (labels aside).
    pub fn same_fields(&self, other: &SourceRecord) -> bool {
        let mut a: Vec<_> = self.fields.iter().collect();
        let mut b: Vec<_> = other.fields.iter().collect();
        a.sort_by_key(|(f, _)| *f);
        b.sort_by_key(|(f, _)| *f);
        a == b
    }
}

/// The profile field value holding `list` (at most [`MAX_SOURCES`] kept, the first ones).
pub fn encode(list: &[SourceRecord]) -> Value {
    let mut out = Vec::with_capacity(64 * list.len());
    let list = &list[..list.len().min(MAX_SOURCES)];
    put_varint(&mut out, list.len() as u64);
    for s in list {
        put_varint(&mut out, s.label.len() as u64);
        out.extend_from_slice(s.label.as_bytes());
        let fields: Vec<_> = s.fields.iter().filter(|(f, _)| *f != SOURCES).collect();
        put_varint(&mut out, fields.len() as u64);
        for (f, v) in fields {
            out.extend_from_slice(&f.0.to_be_bytes());
            let bytes = v.encode();
            put_varint(&mut out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
    }
    Value::Text(domain::Text::parse(&domain::hex(&out)).expect("non-empty hex"))
}

/// The source records in a profile field value written by [`encode`]; `None` when it is not
/// one.
pub fn decode(value: &Value) -> Option<Vec<SourceRecord>> {
    let Value::Text(t) = value else { return None };
    let bytes = domain::unhex(t.expose())?;
    let mut pos = 0;
    let count = get_varint(&bytes, &mut pos)? as usize;
    let mut out = Vec::with_capacity(count.min(MAX_SOURCES));
    for _ in 0..count {
        let len = get_varint(&bytes, &mut pos)? as usize;
        let label = std::str::from_utf8(bytes.get(pos..pos.checked_add(len)?)?).ok()?;
        pos += len;
        let n = get_varint(&bytes, &mut pos)? as usize;
        let mut fields = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let id = u16::from_be_bytes(bytes.get(pos..pos + 2)?.try_into().ok()?);
            pos += 2;
            let len = get_varint(&bytes, &mut pos)? as usize;
            let v = Value::decode(bytes.get(pos..pos.checked_add(len)?)?).ok()?;
            pos += len;
            fields.push((FieldId(id), v));
        }
        out.push(SourceRecord {
            label: label.to_string(),
            fields,
        });
    }
    (pos == bytes.len()).then_some(out)
}

/// The source records among a profile's fields (from [`crate::Vault::read_with_sources`]).
pub fn of_fields(fields: &[(FieldId, Value)]) -> Option<Vec<SourceRecord>> {
    fields
        .iter()
        .find(|(f, _)| *f == SOURCES)
        .and_then(|(_, v)| decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_records_survive_their_encoding() {
        let list = vec![
            SourceRecord {
                label: "import:abc#2".into(),
                fields: vec![
                    (FieldId(1), Value::Text(domain::Text::parse("Ann").unwrap())),
                    (
                        FieldId(7),
                        Value::Email(domain::Email::parse("a@example.org").unwrap()),
                    ),
                ],
            },
            SourceRecord {
                label: "stored".into(),
                fields: vec![],
            },
        ];
        let v = encode(&list);
        assert_eq!(decode(&v).unwrap(), list);
        let Value::Text(t) = &v else { panic!() };
        let mut cut = t.expose().to_string();
        cut.truncate(cut.len() - 2);
        assert!(decode(&Value::Text(domain::Text::parse(&cut).unwrap())).is_none());
        assert!(!format!("{v:?}").contains("Ann"));
    }
}
