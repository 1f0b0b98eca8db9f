//! Matching quality on FEBRL files: precision, recall and F1 of the auto-merge band and of
//! auto-merge + review, with and without the `soc_sec_id` column, ids hidden from the matcher.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use importers::matching::{self, MatchRecord, Thresholds};

/// One FEBRL record: (column, value) pairs.
type Row = Vec<(String, String)>;

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

/// A CSV reader on `path` and the file's header.
fn open_csv(path: &Path) -> (csv::Reader<std::fs::File>, Vec<String>) {
    let mut rdr = csv::Reader::from_path(path).expect("csv file");
    let header = rdr
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    (rdr, header)
}

/// The FEBRL sets in `dir`: every `NAME.csv` with a `NAME_links.csv` beside it, by name
/// (`../shared/data/febrl` holds FEBRL1 and FEBRL2; other sets of the kind can be dropped in).
pub(crate) fn febrl_sets(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix(".csv")?;
            (!stem.ends_with("_links") && dir.join(format!("{stem}_links.csv")).exists())
                .then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

/// Reads a FEBRL file: the records (rec_id kept apart) and the true pairs by row index.
pub(crate) fn read_febrl(dir: &Path, name: &str) -> (Vec<Row>, BTreeSet<(usize, usize)>) {
    let (mut rdr, header) = open_csv(&dir.join(format!("{name}.csv")));
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
    for name in febrl_sets(dir) {
        let (rows, truth) = read_febrl(dir, &name);
        for with_id in [true, false] {
            let mut records: Vec<MatchRecord> =
                rows.iter().map(|r| to_record(r, with_id)).collect();
            let existing = vec![false; records.len()];
            let t0 = std::time::Instant::now();
            let m = matching::run(&mut records, &existing, &[], &[], Thresholds::default());
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let reps: Vec<usize> = m.reps.iter().map(|r| *r as usize).collect();
            let auto = cluster_pairs(&reps);
            let mut both = auto.clone();
            for s in &m.review {
                both.insert((s.0.a as usize, s.0.b as usize));
            }
            let (p1, r1, f1) = prf(&auto, &truth);
            let (p2, r2, f2) = prf(&both, &truth);
            // Debug aid: the comparison vectors of true pairs held back for review.
            if std::env::var_os("STEWARD_BENCH_HELD").is_some() {
                let mut held: HashMap<String, usize> = HashMap::new();
                for (s, why) in &m.review {
                    let pair = (s.a as usize, s.b as usize);
                    if truth.contains(&pair) {
                        let g = matching::compare(&records[pair.0], &records[pair.1]);
                        let band = if s.probability >= 0.99 {
                            "auto"
                        } else {
                            "review"
                        };
                        *held.entry(format!("{g:?} {band} {why:?}")).or_default() += 1;
                    }
                }
                let reviewed: HashSet<(usize, usize)> = m
                    .review
                    .iter()
                    .map(|(s, _)| (s.a as usize, s.b as usize))
                    .collect();
                for pair in truth.difference(&auto) {
                    if !reviewed.contains(pair) {
                        let g = matching::compare(&records[pair.0], &records[pair.1]);
                        *held.entry(format!("{g:?} below")).or_default() += 1;
                    }
                }
                let mut v: Vec<_> = held.into_iter().collect();
                v.sort_by_key(|a| std::cmp::Reverse(a.1));
                for (g, c) in v.iter().take(15) {
                    println!("  held {c:>5} {g}");
                }
            }
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
    for name in febrl_sets(dir) {
        let (rows, truth) = read_febrl(dir, &name);
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
            let report = report.to_vec().expect("report");
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

/// Debug aid: the matcher on a CSV with columns named as schema fields; prints m/u, lambda
/// and the number of clusters.
pub(crate) fn match_file(path: &Path) {
    let (mut rdr, header) = open_csv(path);
    let mut records: Vec<MatchRecord> = rdr
        .records()
        .map(|r| {
            let r = r.expect("row");
            MatchRecord::from_named(
                header
                    .iter()
                    .map(String::as_str)
                    .zip(r.iter())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let existing = vec![false; records.len()];
    let m = matching::run(&mut records, &existing, &[], &[], Thresholds::default());
    let clusters: std::collections::HashSet<u32> = m.reps.iter().copied().collect();
    if let Ok(text) = std::fs::read_to_string(path.with_extension("truth")) {
        let entity: Vec<usize> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let pairs = matching::candidate_pairs(&records, &existing, matching::MAX_BLOCK);
        let mut fp: HashMap<String, usize> = HashMap::new();
        let mut fp_n = 0;
        for (a, b) in pairs.into_iter().map(matching::pair_of) {
            let g = matching::compare(&records[a as usize], &records[b as usize]);
            if m.params.probability(&g) >= 0.99
                && !matching::needs_review(&g)
                && entity[a as usize] != entity[b as usize]
            {
                fp_n += 1;
                *fp.entry(format!("{g:?}")).or_default() += 1;
            }
        }
        let mut v: Vec<_> = fp.into_iter().collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.1));
        println!("false auto pairs {fp_n}; top patterns:");
        for (g, c) in v.iter().take(8) {
            println!("  {c:>6} {g}");
        }
    }
    println!(
        "records {} clusters {} compared {} lambda {:.4} iterations {}",
        records.len(),
        clusters.len(),
        m.compared,
        m.params.lambda,
        m.params.iterations
    );
    for (i, f) in matching::FIELDS.iter().enumerate() {
        println!(
            "{f:<14} m {:?}\n{:<14} u {:?}",
            m.params.m[i].map(|x| (x * 1e4).round() / 1e4),
            "",
            m.params.u[i].map(|x| (x * 1e6).round() / 1e6)
        );
    }
}

/// Generates a synthetic donor file (and its truth) with `synth::donor_file`.
pub(crate) fn generate(n: usize, dup: f64, seed: u64, out: &Path, truth: &Path) -> usize {
    let mut o = std::io::BufWriter::new(std::fs::File::create(out).expect("out"));
    let mut t = std::io::BufWriter::new(std::fs::File::create(truth).expect("truth"));
    synth::donor_file(n, dup, seed, &mut o, &mut t).expect("write")
}

/// Which generator a synthetic import bench uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Generated {
    /// `synth::donor_file`: independent people, a share repeated.
    Donors,
    /// `synth::household_file`: households, twins, namesakes, shared contact points.
    Households,
}

/// One import of a synthetic donor file into a fresh data directory, through the hub (the
/// same code as `steward import`): stage timings, peak RSS and, against the truth, the
/// quality of the auto-merge band. With `second > 0` (households only), a second system's
/// export of that share of the rows (other columns, US dates) is imported after it into the
/// same vault and scored with it. One JSON line.
pub(crate) fn import_synthetic(
    kind: Generated,
    n: usize,
    dup: f64,
    seed: u64,
    parts: usize,
    second: f64,
) {
    let (tmp, hub) = crate::bench_hub();
    let file = tmp.path().join("donors.csv");
    let truth_file = tmp.path().join("truth.csv");
    let t0 = std::time::Instant::now();
    let people = match kind {
        Generated::Donors => generate(n, dup, seed, &file, &truth_file),
        Generated::Households => {
            let mut o = std::io::BufWriter::new(std::fs::File::create(&file).expect("out"));
            let mut t = std::io::BufWriter::new(std::fs::File::create(&truth_file).expect("truth"));
            synth::household_file(n, dup, seed, &mut o, &mut t)
                .expect("write")
                .people
        }
    };
    // With several parts, the file is cut into consecutive pieces imported one after the
    // other: rows of a later piece find their duplicates in the vault, not in the file.
    let mut pieces: Vec<(std::path::PathBuf, usize, Option<&str>)> =
        split_rows(&file, parts.max(1))
            .into_iter()
            .map(|(p, first)| (p, first, None))
            .collect();
    let mut truth_text = std::fs::read_to_string(&truth_file).expect("truth");
    let mut total = n;
    if second > 0.0 {
        let first = std::fs::read_to_string(&file).expect("file");
        let path = tmp.path().join("second.csv");
        let mut o = Vec::new();
        let mut t = Vec::new();
        let rows = synth::second_export(&first, &truth_text, second, seed, &mut o, &mut t)
            .expect("second export");
        std::fs::write(&path, o).expect("write second");
        // Rows of the second file are numbered after the first's in the truth.
        for line in String::from_utf8(t).expect("utf-8").lines().skip(1) {
            let (r, rest) = line.split_once(',').expect("row,...");
            let r: usize = r.parse().expect("row");
            truth_text.push_str(&format!("{},{rest}\n", r + total));
        }
        pieces.push((path, total, Some(synth::SECOND_MAPPING)));
        total += rows;
    }
    let gen_s = t0.elapsed().as_secs_f64();
    let actor = hub.local_actor();
    let t1 = std::time::Instant::now();
    let mut report = Vec::new();
    let mut records = Vec::new();
    for (path, first, mapping) in pieces {
        let options = hub::ImportOptions {
            profile: importers::Profile::parse("generic"),
            mapping: mapping.map(|m| importers::MappingFile::from_toml(m).expect("mapping")),
            mapping_text: mapping.unwrap_or("").to_string(),
            name: path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        };
        let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
            Ok(Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&path)?,
            )))
        };
        let (r, rows) = hub
            .import(&actor, &source, &options, &|_| {})
            .expect("import");
        // Row numbers of every piece as rows of the whole file.
        report.extend(rows.to_vec().expect("report").into_iter().map(|mut row| {
            row.row += first as u64;
            row
        }));
        records.push(r);
    }
    let import_s = t1.elapsed().as_secs_f64();
    // Debug aid: keep the inputs and the report to study the wrong links by hand.
    if let Some(keep) = std::env::var_os("STEWARD_BENCH_KEEP") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).expect("keep dir");
        for name in ["donors.csv", "second.csv"] {
            let _ = std::fs::copy(tmp.path().join(name), keep.join(name));
        }
        std::fs::write(keep.join("truth.csv"), &truth_text).expect("keep truth");
        let mut w = csv::Writer::from_path(keep.join("report.csv")).expect("keep report");
        for r in &report {
            w.serialize(r).expect("report row");
        }
    }
    // Quality: pairs of rows that became one subject, against pairs of rows of one entity.
    let mut entity = vec![0usize; total];
    let mut household = vec![usize::MAX; total];
    for line in truth_text.lines().skip(1) {
        let mut it = line.split(',');
        let r = it.next().expect("row").parse::<usize>().expect("row") - 2;
        entity[r] = it.next().expect("entity").parse().expect("entity");
        if let Some(h) = it.next() {
            household[r] = h.parse().expect("household");
        }
    }
    let mut by_subject: HashMap<String, Vec<usize>> = HashMap::new();
    for r in &report {
        if let Some(s) = r.subject_id {
            by_subject
                .entry(s.to_string())
                .or_default()
                .push(r.row as usize - 2);
        }
    }
    // (pairs, of which same entity, of which different people of one household)
    let count_pairs = |groups: &mut dyn Iterator<Item = Vec<usize>>| -> (u64, u64, u64) {
        let mut pairs = 0u64;
        let mut same = 0u64;
        let mut housemates = 0u64;
        for g in groups {
            let mut per_entity: HashMap<usize, u64> = HashMap::new();
            let mut per_household: HashMap<usize, u64> = HashMap::new();
            for i in &g {
                *per_entity.entry(entity[*i]).or_default() += 1;
                if household[*i] != usize::MAX {
                    *per_household.entry(household[*i]).or_default() += 1;
                }
            }
            let k = g.len() as u64;
            pairs += k * (k - 1) / 2;
            let same_here = per_entity.values().map(|c| c * (c - 1) / 2).sum::<u64>();
            same += same_here;
            let household_pairs = per_household.values().map(|c| c * (c - 1) / 2).sum::<u64>();
            housemates += household_pairs.saturating_sub(same_here);
        }
        (pairs, same, housemates)
    };
    let (predicted, tp, housemates) = count_pairs(&mut by_subject.values().cloned());
    let largest = by_subject.values().map(Vec::len).max().unwrap_or(0);
    let mut by_entity: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, e) in entity.iter().enumerate() {
        by_entity.entry(*e).or_default().push(i);
    }
    let (truth_pairs, _, _) = count_pairs(&mut by_entity.values().cloned());
    let p = if predicted == 0 {
        1.0
    } else {
        tp as f64 / predicted as f64
    };
    let r = if truth_pairs == 0 {
        1.0
    } else {
        tp as f64 / truth_pairs as f64
    };
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    // The review queue: how many duplicate items put two records of one person side by side,
    // the pairs a person accepting them would add, and the items by why they were held.
    let mut review_true_items = 0u64;
    let mut review_true_pairs = 0u64;
    let mut held_for: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let review = hub.review_list(&actor, false).expect("review list");
    let review_total = review.iter().filter(|i| i.kind == "duplicate").count() as u64;
    for item in review.iter().filter(|i| i.kind == "duplicate") {
        let rows_of =
            |id: &domain::SubjectId| by_subject.get(&id.to_string()).cloned().unwrap_or_default();
        let (ra, rb) = (rows_of(&item.a), rows_of(&item.b));
        let pairs: u64 = ra
            .iter()
            .map(|x| rb.iter().filter(|y| entity[*x] == entity[**y]).count() as u64)
            .sum();
        let reason = <[u8; 12]>::try_from(item.levels.as_slice())
            .ok()
            .and_then(|g| importers::matching::hold_reason(&g))
            .unwrap_or("none");
        let e = held_for.entry(reason.to_string()).or_default();
        e.0 += 1;
        if pairs > 0 {
            review_true_items += 1;
            review_true_pairs += pairs;
            e.1 += 1;
        }
    }
    let recall_with_review = if truth_pairs == 0 {
        1.0
    } else {
        (tp + review_true_pairs) as f64 / truth_pairs as f64
    };
    let record = records.last().expect("one piece at least");
    let stages: serde_json::Map<String, serde_json::Value> = record
        .stages
        .iter()
        .map(|s| {
            (
                s.stage.clone(),
                serde_json::json!({"seconds": s.seconds, "rows_per_s": s.rows_per_second}),
            )
        })
        .collect();
    let sum = |f: &dyn Fn(&hub::ImportRecord) -> u64| records.iter().map(f).sum::<u64>();
    println!(
        "{}",
        serde_json::json!({
            "generator": format!("{kind:?}").to_lowercase(), "rows": total, "parts": parts.max(1),
            "second_share": second, "people": people, "generate_s": gen_s, "import_s": import_s,
            "rows_per_s": total as f64 / import_s, "stages": stages,
            "new": sum(&|r| r.counts.new), "merged": sum(&|r| r.counts.merged),
            "review": sum(&|r| r.counts.review), "errors": sum(&|r| r.counts.errors),
            "compared_pairs": sum(&|r| r.compared_pairs),
            "review_items": sum(&|r| r.review_count),
            "household_proposals": sum(&|r| r.household_proposals),
            "household_pairs": sum(&|r| r.household_pairs),
            "precision": p, "recall": r, "f1": f1,
            "review_duplicate_items": review_total,
            "review_items_of_one_person": review_true_items,
            "recall_if_review_accepted": recall_with_review,
            "review_items_by_reason": held_for
                .iter()
                .map(|(k, (n, t))| (k.clone(), serde_json::json!({"items": n, "of_one_person": t})))
                .collect::<serde_json::Map<_, _>>(),
            "wrong_pairs": predicted - tp, "wrong_housemate_pairs": housemates,
            "largest_subject_rows": largest,
            "peak_rss_mib": crate::peak_rss_mib(),
        })
    );
    drop(hub);
    drop(tmp);
}

/// Cuts a CSV file with a one-line header (and no line breaks inside cells, as the generator
/// writes) into `parts` consecutive files, each with the header; with each, the number of
/// data rows before it.
fn split_rows(file: &Path, parts: usize) -> Vec<(std::path::PathBuf, usize)> {
    if parts == 1 {
        return vec![(file.to_path_buf(), 0)];
    }
    let text = std::fs::read_to_string(file).expect("donor file");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let per = rows.len().div_ceil(parts);
    rows.chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let path = file.with_file_name(format!("donors-part{}.csv", i + 1));
            let mut out = String::with_capacity(header.len() + chunk.len() * 100);
            out.push_str(header);
            out.push('\n');
            for line in chunk {
                out.push_str(line);
                out.push('\n');
            }
            std::fs::write(&path, out).expect("write part");
            (path, i * per)
        })
        .collect()
}
