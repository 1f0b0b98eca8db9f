//! The import journal: the stored plan (each row's outcome and target), the file's
//! fingerprint, and the keys they are stored under.

use super::*;

/// One row of a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PlanRow {
    pub(super) row: u64,
    pub(super) outcome: u8,
    pub(super) target: Option<SubjectId>,
    pub(super) matched: Option<SubjectId>,
    /// Contact2's subject (NPSP households) and whether the row creates it.
    pub(super) c2: Option<(SubjectId, bool)>,
    /// Household subject created by this row.
    pub(super) household: Option<SubjectId>,
    /// Index into the record's code table (errors), 0 = none.
    pub(super) code: u16,
}

pub(super) const ZERO: [u8; 16] = [0; 16];

/// A review-band pair: the two subjects, the probability, the two records compared.
pub(super) type ReviewPair = (Option<SubjectId>, Option<SubjectId>, f64, u32, u32);

pub(super) fn put_id(out: &mut Vec<u8>, id: Option<SubjectId>) {
    out.extend_from_slice(id.as_ref().map(|i| i.as_bytes()).unwrap_or(&ZERO));
}

pub(super) fn get_id(b: &[u8]) -> Option<SubjectId> {
    (b != ZERO).then(|| SubjectId::from_slice(b)).flatten()
}

pub(super) fn encode_plan(rows: &[PlanRow], done: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + rows.len() * 78);
    out.push(done as u8);
    for r in rows {
        out.extend_from_slice(&r.row.to_be_bytes());
        out.push(r.outcome);
        put_id(&mut out, r.target);
        put_id(&mut out, r.matched);
        put_id(&mut out, r.c2.map(|c| c.0));
        out.push(r.c2.map(|c| c.1 as u8).unwrap_or(0));
        put_id(&mut out, r.household);
        out.extend_from_slice(&r.code.to_be_bytes());
    }
    out
}

pub(super) fn decode_plan(b: &[u8]) -> Option<(bool, Vec<PlanRow>)> {
    let done = *b.first()? == 1;
    let mut rows = Vec::new();
    for c in b[1..].chunks(8 + 1 + 16 * 4 + 1 + 2) {
        if c.len() != 76 {
            return None;
        }
        let c2 = get_id(&c[41..57]).map(|id| (id, c[57] == 1));
        rows.push(PlanRow {
            row: u64::from_be_bytes(c[..8].try_into().ok()?),
            outcome: c[8],
            target: get_id(&c[9..25]),
            matched: get_id(&c[25..41]),
            c2,
            household: get_id(&c[58..74]),
            code: u16::from_be_bytes(c[74..76].try_into().ok()?),
        });
    }
    Some((done, rows))
}

/// The mark a rejected review pair leaves (either order).
pub(crate) fn rejected_key(a: &SubjectId, b: &SubjectId) -> Vec<u8> {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    let mut k = b"x/".to_vec();
    k.extend_from_slice(x.as_bytes());
    k.extend_from_slice(y.as_bytes());
    k
}

pub(super) fn key(kind: &str, import: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = format!("{kind}/{import}/").into_bytes();
    k.extend_from_slice(rest);
    k
}

impl Hub {
    pub(super) fn fingerprint(
        source: Source<'_>,
        options: &ImportOptions,
    ) -> Result<String, Error> {
        let mut ctx = vault::crypto::Sha256::new();
        let mut r =
            source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        // Over the rows, not the line endings: the same rows saved with CRLF (a spreadsheet
        // on Windows) or with a byte-order mark are the same file.
        let mut buf = vec![0u8; 1 << 16];
        let mut out = Vec::with_capacity(1 << 16);
        let mut first = true;
        let mut carriage = false;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
            if n == 0 {
                break;
            }
            let mut bytes = &buf[..n];
            if first {
                first = false;
                bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
            }
            out.clear();
            for &b in bytes {
                if carriage && b != b'\n' {
                    out.push(b'\r');
                }
                carriage = b == b'\r';
                if !carriage {
                    out.push(b);
                }
            }
            ctx.update(&out);
        }
        if carriage {
            ctx.update(b"\r");
        }
        ctx.update(format!("{:?}", options.profile).as_bytes());
        ctx.update(options.mapping_text.as_bytes());
        ctx.update(format!("{:?}", options.thresholds).as_bytes());
        if let Some(order) = options.date_order {
            ctx.update(format!("{order:?}").as_bytes());
        }
        Ok(domain::hex(&ctx.finish()))
    }

    pub(super) fn store_get_json<T: for<'de> Deserialize<'de>>(
        &self,
        k: &[u8],
    ) -> Result<Option<T>, Error> {
        Ok(match self.vault.store().get(ks::IMPORTS, k)? {
            Some(v) => serde_json::from_slice(&v).ok(),
            None => None,
        })
    }

    /// A fresh import id (16 hex digits).
    pub fn new_import_id(&self) -> Result<String, Error> {
        Ok(domain::hex(
            &self.vault.new_subject_ids(1)?[0].as_bytes()[6..14],
        ))
    }

    pub(super) fn load_import(&self, id: &str) -> Result<ImportRecord, Error> {
        self.store_get_json(&key("i", id, b""))?
            .ok_or_else(|| Error::Missing(format!("import {id}")))
    }

    pub(super) fn plan_chunk(&self, id: &str, b: u32) -> Result<(bool, Vec<PlanRow>), Error> {
        let k = key("p", id, &b.to_be_bytes());
        let v = self
            .vault
            .store()
            .get(ks::IMPORTS, &k)?
            .ok_or_else(|| Error::Internal(format!("import {id}: plan batch {b} missing")))?;
        decode_plan(&v)
            .ok_or_else(|| Error::Internal(format!("import {id}: plan batch {b} damaged")))
    }
}
