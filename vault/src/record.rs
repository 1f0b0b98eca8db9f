//! The on-disk form of an encrypted record and the AEAD around each field.
//!
//! ```text
//! record  = format(1) kind(1) varint(slot) varint(version) nonce_base(12) field*
//! field   = varint(field id) varint(len) ciphertext(len, GCM tag included)
//! ```
//! Field `i` of a record is sealed with nonce `nonce_base XOR i` (in the last four bytes):
//! the base is drawn fresh for every record version, so every (data key, nonce) pair is new,
//! while storing one nonce per record instead of one per field. The additional data binds the
//! subject id, the record id (gift id, or zeros for the profile), the field id and the record
//! version, so a ciphertext moved to another subject, record, field or version fails to open.

use domain::{FieldId, SubjectId, Value};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const FORMAT: u8 = 1;
pub(crate) const TAG_LEN: usize = 16;

/// The clear part of a record: nothing personal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) kind: u8,
    pub(crate) slot: u64,
    pub(crate) version: u32,
    pub(crate) nonce_base: [u8; NONCE_LEN],
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn nonce_for(base: &[u8; NONCE_LEN], i: u32) -> Nonce {
    let mut n = *base;
    for (b, x) in n[NONCE_LEN - 4..].iter_mut().zip(i.to_be_bytes()) {
        *b ^= x;
    }
    Nonce::assume_unique_for_key(n)
}

fn aad(subject: &SubjectId, record: &[u8; 16], field: FieldId, version: u32) -> [u8; 38] {
    let mut a = [0u8; 38];
    a[..16].copy_from_slice(subject.as_bytes());
    a[16..32].copy_from_slice(record);
    a[32..34].copy_from_slice(&field.0.to_be_bytes());
    a[34..].copy_from_slice(&version.to_be_bytes());
    a
}

/// Encrypts a record. `record` is the gift id, or zeros for a subject's profile.
pub(crate) fn seal(
    dek: &LessSafeKey,
    header: &Header,
    subject: &SubjectId,
    record: &[u8; 16],
    fields: &[(FieldId, Value)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + fields.len() * 40);
    out.push(FORMAT);
    out.push(header.kind);
    put_varint(&mut out, header.slot);
    put_varint(&mut out, u64::from(header.version));
    out.extend_from_slice(&header.nonce_base);
    let mut plain = Zeroizing::new(Vec::with_capacity(64));
    for (i, (field, value)) in fields.iter().enumerate() {
        plain.clear();
        value.encode_into(&mut plain);
        let ad = aad(subject, record, *field, header.version);
        let tag = dek
            .seal_in_place_separate_tag(
                nonce_for(&header.nonce_base, i as u32),
                Aad::from(&ad),
                &mut plain,
            )
            .expect("AES-GCM seal of a bounded buffer");
        put_varint(&mut out, u64::from(field.0));
        put_varint(&mut out, (plain.len() + TAG_LEN) as u64);
        out.extend_from_slice(&plain);
        out.extend_from_slice(tag.as_ref());
    }
    out
}

/// Reads the clear header; returns it and where the fields start.
pub(crate) fn header(bytes: &[u8]) -> Result<(Header, usize)> {
    let corrupt = || Error::Corrupt {
        what: "record header".into(),
    };
    if bytes.len() < 2 || bytes[0] != FORMAT {
        return Err(corrupt());
    }
    let mut pos = 2;
    let slot = get_varint(bytes, &mut pos).ok_or_else(corrupt)?;
    let version =
        u32::try_from(get_varint(bytes, &mut pos).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let nonce_base: [u8; NONCE_LEN] = bytes
        .get(pos..pos + NONCE_LEN)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    pos += NONCE_LEN;
    Ok((
        Header {
            kind: bytes[1],
            slot,
            version,
            nonce_base,
        },
        pos,
    ))
}

/// A decrypted record: its header, the fields asked for, and the ids of the others.
pub(crate) struct Opened {
    pub(crate) header: Header,
    pub(crate) fields: Vec<(FieldId, Value)>,
    pub(crate) skipped: Vec<FieldId>,
}

/// Decrypts the fields `wanted` accepts, in one pass that also lists the others. A field that
/// fails authentication is an error, never skipped: silent loss would hide tampering.
pub(crate) fn open(
    dek: &LessSafeKey,
    bytes: &[u8],
    subject: &SubjectId,
    record: &[u8; 16],
    wanted: &dyn Fn(FieldId) -> bool,
) -> Result<Opened> {
    let (h, mut pos) = header(bytes)?;
    let corrupt = || Error::Corrupt {
        what: format!("record of subject {subject}"),
    };
    let mut fields = Vec::new();
    let mut skipped = Vec::new();
    let mut i: u32 = 0;
    let mut buf = Zeroizing::new(Vec::with_capacity(64));
    while pos < bytes.len() {
        let field = FieldId(
            u16::try_from(get_varint(bytes, &mut pos).ok_or_else(corrupt)?)
                .map_err(|_| corrupt())?,
        );
        let len = get_varint(bytes, &mut pos).ok_or_else(corrupt)? as usize;
        // A stored length is not trusted: one near 2^64 would overflow the end.
        let end = pos.checked_add(len).ok_or_else(corrupt)?;
        let ct = bytes.get(pos..end).ok_or_else(corrupt)?;
        pos = end;
        if wanted(field) {
            buf.clear();
            buf.extend_from_slice(ct);
            let ad = aad(subject, record, field, h.version);
            let plain = dek
                .open_in_place(nonce_for(&h.nonce_base, i), Aad::from(&ad), &mut buf)
                .map_err(|_| Error::Tampered {
                    subject: *subject,
                    what: format!("field {}", field.0),
                })?;
            let value = Value::decode(plain).map_err(|_| Error::Corrupt {
                what: format!("value of field {} of subject {subject}", field.0),
            })?;
            fields.push((field, value));
        } else {
            skipped.push(field);
        }
        i += 1;
    }
    Ok(Opened {
        header: h,
        fields,
        skipped,
    })
}

/// Entry points for the fuzz targets under `fuzz/` (feature `fuzz` only).
#[cfg(feature = "fuzz")]
pub(crate) fn fuzz_framing(bytes: &[u8]) {
    // A fixed key: no input authenticates under it, so this walks the framing (header,
    // varints, lengths) of every field without decrypting any.
    let key = LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[7u8; 32]).expect("key"),
    );
    let subject = SubjectId::from_bytes([1u8; 16]);
    let _ = header(bytes);
    let _ = open(&key, bytes, &subject, &[0u8; 16], &|_| false);
    let _ = open(&key, bytes, &subject, &[0u8; 16], &|_| true);
}
