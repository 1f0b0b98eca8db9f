//! Matching quality on FEBRL files: precision, recall and F1 of the auto-merge band and of
//! auto-merge + review, with and without the `soc_sec_id` column, ids hidden from the matcher.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use importers::matching::{self, MatchRecord, Thresholds};

/// Precision, recall, F1 of a predicted pair set against the true pairs.
pub(crate) fn prf(
    predicted: &BTreeSet<(usize, usize)>,
    truth: &BTreeSet<(usize, usize)>,
) -> (f64, f64, f64) {
    let tp = predicted.intersection(truth).count() as f64;
    let p = if predicted.is_empty() {
        1.0
    } else {
        tp / predicted.len() as f64
    };
    let r = if truth.is_empty() {
        1.0
    } else {
        tp / truth.len() as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

/// Pairs implied by a clustering (every two records with the same representative).
pub(crate) fn cluster_pairs(reps: &[usize]) -> BTreeSet<(usize, usize)> {
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, r) in reps.iter().enumerate() {
        groups.entry(*r).or_default().push(i);
    }
    let mut out = BTreeSet::new();
    for g in groups.values() {
        for (x, a) in g.iter().enumerate() {
            for b in &g[x + 1..] {
                out.insert((*a.min(b), *a.max(b)));
            }
        }
    }
    out
}

/// Reads a FEBRL file: the records (rec_id kept apart) and the true pairs by row index.
pub(crate) fn read_febrl(
    dir: &Path,
    name: &str,
) -> (Vec<Vec<(String, String)>>, BTreeSet<(usize, usize)>) {
    let mut rdr = csv::Reader::from_path(dir.join(format!("{name}.csv"))).expect("febrl file");
    let header: Vec<String> = rdr
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    let mut ids = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.expect("row");
        ids.insert(rec[0].to_string(), i);
        rows.push(
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect::<Vec<_>>(),
        );
    }
    let mut truth = BTreeSet::new();
    let mut l = csv::Reader::from_path(dir.join(format!("{name}_links.csv"))).expect("links");
    for rec in l.records() {
        let rec = rec.expect("link");
        let (a, b) = (ids[&rec[0]], ids[&rec[1]]);
        truth.insert((a.min(b), a.max(b)));
    }
    (rows, truth)
}

fn to_record(row: &[(String, String)], with_id: bool) -> MatchRecord {
    let get = |k: &str| {
        row.iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let dob = get("date_of_birth");
    let birth = if dob.len() == 8 {
        format!("{}-{}-{}", &dob[..4], &dob[4..6], &dob[6..])
    } else {
        String::new()
    };
    let street = format!("{} {}", get("street_number"), get("address_1"));
    let mut named = vec![
        ("given_name", get("given_name").to_string()),
        ("family_name", get("surname").to_string()),
        ("birth_date", birth),
        ("street", street),
        ("street2", get("address_2").to_string()),
        ("postal_code", get("postcode").to_string()),
        ("city", get("suburb").to_string()),
        ("region", get("state").to_string()),
    ];
    if with_id {
        named.push(("external_id", get("soc_sec_id").to_string()));
    }
    MatchRecord::from_named(named.iter().map(|(k, v)| (*k, v.as_str())))
}

/// Runs the matcher alone (no vault) on the FEBRL files and prints the figures.
pub(crate) fn matcher_only(dir: &Path) {
    for name in ["febrl1", "febrl2"] {
        let (rows, truth) = read_febrl(dir, name);
        for with_id in [true, false] {
            let records: Vec<MatchRecord> = rows.iter().map(|r| to_record(r, with_id)).collect();
            let existing = vec![false; records.len()];
            let t0 = std::time::Instant::now();
            let m = matching::run(&records, &existing, &[], Thresholds::default());
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let reps: Vec<usize> = m.reps.iter().map(|r| *r as usize).collect();
            let auto = cluster_pairs(&reps);
            let mut both = auto.clone();
            for s in &m.review {
                both.insert((s.a as usize, s.b as usize));
            }
            let (p1, r1, f1) = prf(&auto, &truth);
            let (p2, r2, f2) = prf(&both, &truth);
            println!(
                "{name} id={with_id}: compared {} pairs in {ms:.0} ms, lambda {:.4}, auto P {p1:.4} R {r1:.4} F1 {f1:.4} | auto+review P {p2:.4} R {r2:.4} F1 {f2:.4} (review {})",
                m.compared, m.params.lambda, m.review.len()
            );
        }
    }
}

/// The FEBRL files through the real import (a fresh data directory each time, the shipped
/// mapping file, ids hidden): quality of the auto-merge band (rows that became one subject)
/// and of auto-merge + review (plus the pairs the review queue holds).
pub(crate) fn import_quality(dir: &Path, mapping: &Path) {
    let mapping_text = std::fs::read_to_string(mapping).expect("mapping file");
    println!("| file | soc_sec_id | rows | error rows | auto-merge P | R | F1 | auto+review P | R | F1 | review items | import s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for name in ["febrl1", "febrl2"] {
        let (rows, truth) = read_febrl(dir, name);
        for with_id in [true, false] {
            let text = if with_id {
                mapping_text.clone()
            } else {
                mapping_text.replace("soc_sec_id = \"external_id\"", "soc_sec_id = \"ignore\"")
            };
            let (_tmp, hub) = crate::bench_hub();
            let actor = hub.local_actor();
            let options = hub::ImportOptions {
                profile: importers::Profile::parse("generic"),
                mapping: Some(importers::MappingFile::from_toml(&text).expect("mapping")),
                mapping_text: text,
                name: format!("{name}.csv"),
                ..Default::default()
            };
            let path = dir.join(format!("{name}.csv"));
            let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
                Ok(Box::new(std::fs::File::open(&path)?))
            };
            let t0 = std::time::Instant::now();
            let (record, report) = hub
                .import(&actor, &source, &options, &|_| {})
                .expect("import");
            let secs = t0.elapsed().as_secs_f64();
            // Row n of the file is record n - 2 (header on row 1).
            let mut subject_of: HashMap<String, Vec<usize>> = HashMap::new();
            let mut reps = vec![usize::MAX; rows.len()];
            for r in &report {
                let i = r.row as usize - 2;
                reps[i] = i;
                if let Some(s) = r.subject_id {
                    subject_of.entry(s.to_string()).or_default().push(i);
                }
            }
            for members in subject_of.values() {
                for m in members {
                    reps[*m] = members[0];
                }
            }
            let auto = cluster_pairs(&reps);
            let mut both = auto.clone();
            let items = hub.review_list(&actor, false).expect("review");
            for item in &items {
                let a = subject_of
                    .get(&item.a.to_string())
                    .cloned()
                    .unwrap_or_default();
                let b = subject_of
                    .get(&item.b.to_string())
                    .cloned()
                    .unwrap_or_default();
                for x in &a {
                    for y in &b {
                        both.insert((*x.min(y), *x.max(y)));
                    }
                }
            }
            let (p1, r1, f1) = prf(&auto, &truth);
            let (p2, r2, f2) = prf(&both, &truth);
            println!(
                "| {name} | {} | {} | {} | {p1:.4} | {r1:.4} | {f1:.4} | {p2:.4} | {r2:.4} | {f2:.4} | {} | {secs:.2} |",
                if with_id { "used" } else { "hidden" },
                record.counts.rows_read,
                record.counts.errors,
                items.len()
            );
        }
    }
}
