//! `steward-bench`: benchmark runners. Each measurement runs in a child process of its own so
//! that its peak RSS is its own.
//!
//! ```text
//! steward-bench vault-suite [--sizes 100000,1000000] [--batch 1000]   # the table in BENCHMARKS.md
//! steward-bench vault --n N --mode encrypted|plain [--batch B]        # one run, one JSON line
//! steward-bench batch-json N                                          # a POST /v1/subjects/batch body
//! steward-bench audit-suite [--events 1000000] [--threads 8]          # audit append, verify, read cost
//! steward-bench audit-scale [--events 10000000]                     # verify a long log: speed, memory
//! steward-bench consent-suite [--subjects 1000000]                    # segment vs plain scan
//! steward-bench requests-suite [--erasures 10000]                     # access package, erasures
//! steward-bench recipients-suite [--erasures 10000]                  # outbox cost on erasure,
//!     webhook deliveries per second
//! steward-bench retention-suite [--subjects 1000000]                  # retention sweep
//! steward-bench analytics-suite [--subjects 1000000] [--interactions 100000] # FEP, LYBUNT,
//!     interaction adds, a 1,000-item timeline
//! steward-bench import-quality [--febrl DIR] [--mapping M.toml]      # each FEBRL set in DIR through the import
//! steward-bench match-only [DIR]                                      # the matcher alone on FEBRL
//! steward-bench import-synthetic [--n N] [--dup 0.1] [--seed S] [--parts K] # synthetic donor import
//!     (K consecutive pieces imported one after another: later ones match against the vault)
//! steward-bench import-households [--n N] [--dup 0.1] [--seed S] [--parts K] [--second 0.3]
//!     (households, twins, namesakes, shared emails and phones; --second: that share of the
//!     people again as a second system exports them, imported after into the same vault)
//! steward-bench donor-file --out F --truth T [--n N] [--dup D]        # write a donor file
//! steward-bench household-file --out F --truth T [--n N] [--dup D]    # the file import-households
//!     imports (same defaults, same seed), for a peer tool (bench/splink_households.py)
//! steward-bench match-file FILE                                       # debug: m/u and false pairs
//! steward-bench serve --data D --identity I --addr A [--discard-audit] # the real router, for
//!     measuring the audit append's share of an HTTP read (bench only: the product has no such switch)
//! ```

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use domain::{FieldId, IndexKind, RecordKind, Schema, SubjectId, SubjectKind, Value};
use serde_json::{json, Value as Json};
use vault::{keyspaces, Batch, NewSubject, SealTo, SledOptions, SledStore, Store, Unlock, Vault};

mod analytics_bench;
mod audit_bench;
mod consent_bench;
mod match_bench;
mod recipients_bench;
mod requests_bench;
mod retention_bench;

/// The allocator the `steward` binary uses, so measured figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 20_261_122;
const READ_FIELDS: [&str; 5] = ["given_name", "family_name", "email", "phone", "postal_code"];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--n` (rows, default 100,000), `--dup` (share of repeated people, default 0.1) and `--seed`
/// of the donor-file commands.
fn donor_args(args: &[String]) -> (usize, f64, u64) {
    let n = arg(args, "--n")
        .map(|v| v.parse().expect("--n"))
        .unwrap_or(100_000);
    let dup = arg(args, "--dup")
        .map(|v| v.parse().expect("--dup"))
        .unwrap_or(0.1);
    let seed = arg(args, "--seed")
        .map(|v| v.parse().expect("--seed"))
        .unwrap_or(SEED);
    (n, dup, seed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("match-only") => {
            match_bench::matcher_only(std::path::Path::new(
                &args
                    .get(2)
                    .cloned()
                    .unwrap_or_else(|| "../shared/data/febrl".into()),
            ));
        }
        Some("import-quality") => {
            match_bench::import_quality(
                std::path::Path::new(
                    &arg(&args, "--febrl").unwrap_or_else(|| "../shared/data/febrl".into()),
                ),
                std::path::Path::new(
                    &arg(&args, "--mapping")
                        .unwrap_or_else(|| "importers/mappings/febrl.toml".into()),
                ),
            );
        }
        Some("match-file") => {
            match_bench::match_file(std::path::Path::new(&args[2]));
        }
        Some("import-synthetic") => {
            let (n, dup, seed) = donor_args(&args);
            let parts = arg(&args, "--parts")
                .map(|v| v.parse().expect("--parts"))
                .unwrap_or(1);
            match_bench::import_synthetic(match_bench::Generated::Donors, n, dup, seed, parts, 0.0);
        }
        Some("import-households") => {
            let (n, dup, seed) = donor_args(&args);
            let parts = arg(&args, "--parts")
                .map(|v| v.parse().expect("--parts"))
                .unwrap_or(1);
            let second = arg(&args, "--second")
                .map(|v| v.parse().expect("--second"))
                .unwrap_or(0.0);
            match_bench::import_synthetic(
                match_bench::Generated::Households,
                n,
                dup,
                seed,
                parts,
                second,
            );
        }
        Some("household-file") => {
            let (n, dup, seed) = donor_args(&args);
            let out = arg(&args, "--out").expect("--out FILE");
            let truth = arg(&args, "--truth").expect("--truth FILE");
            let mut o = std::io::BufWriter::new(std::fs::File::create(&out).expect("out"));
            let mut t = std::io::BufWriter::new(std::fs::File::create(&truth).expect("truth"));
            let made = synth::household_file(n, dup, seed, &mut o, &mut t).expect("write");
            eprintln!("{n} rows, {} people", made.people);
        }
        Some("donor-file") => {
            let (n, dup, seed) = donor_args(&args);
            let out = arg(&args, "--out").expect("--out FILE");
            let truth = arg(&args, "--truth").expect("--truth FILE");
            let people = match_bench::generate(n, dup, seed, Path::new(&out), Path::new(&truth));
            eprintln!("{n} rows, {people} people");
        }
        Some("vault") => {
            let n: usize = arg(&args, "--n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000);
            let batch: usize = arg(&args, "--batch")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            let mode = arg(&args, "--mode").unwrap_or_else(|| "encrypted".into());
            let result = run_vault(n, batch, &mode);
            println!("{result}");
        }
        Some("batch-json") => {
            let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
            let subjects: Vec<Json> = synth::Generator::new(SEED ^ 0xba7c)
                .take(n)
                .map(|c| {
                    let mut v = c.to_json();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("gifts");
                    }
                    v
                })
                .collect();
            println!("{}", json!({ "subjects": subjects }));
        }
        Some("serve") => {
            let data = arg(&args, "--data").expect("--data DIR");
            let identity = arg(&args, "--identity").expect("--identity FILE");
            let addr = arg(&args, "--addr").unwrap_or_else(|| "127.0.0.1:0".into());
            audit_bench::serve(
                &data,
                &identity,
                &addr,
                args.iter().any(|a| a == "--discard-audit"),
            );
        }
        Some("analytics-suite") => {
            let n: usize = arg(&args, "--subjects")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            let k: usize = arg(&args, "--interactions")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000);
            analytics_bench::suite(n, k);
        }
        Some("retention-suite") => {
            let n: usize = arg(&args, "--subjects")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            retention_bench::suite(n);
        }
        Some("recipients-suite") => {
            let n: usize = arg(&args, "--erasures")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000);
            recipients_bench::suite(n);
        }
        Some("requests-suite") => {
            let n: usize = arg(&args, "--erasures")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000);
            requests_bench::suite(n);
        }
        Some("consent-suite") => {
            let n: usize = arg(&args, "--subjects")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            consent_bench::suite(n);
        }
        Some("audit-scale") => {
            let n: u64 = arg(&args, "--events")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000_000);
            audit_bench::scale(n);
        }
        Some("audit-verify") => {
            let data = arg(&args, "--data").expect("--data DIR");
            let identity = arg(&args, "--identity").expect("--identity FILE");
            audit_bench::verify_only(&data, &identity);
        }
        Some("audit-suite") => {
            let n: u64 = arg(&args, "--events")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            let threads: usize = arg(&args, "--threads")
                .and_then(|v| v.parse().ok())
                .unwrap_or(8);
            let subjects: usize = arg(&args, "--subjects")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000);
            let reads: usize = arg(&args, "--reads")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200_000);
            audit_bench::suite(n, threads, subjects, reads);
        }
        Some("vault-suite") => {
            let sizes: Vec<usize> = arg(&args, "--sizes")
                .unwrap_or_else(|| "100000,1000000".into())
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect();
            let batch = arg(&args, "--batch").unwrap_or_else(|| "1000".into());
            let repeat: usize = arg(&args, "--repeat")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            vault_suite(&sizes, &batch, repeat);
        }
        _ => {
            eprintln!("usage: steward-bench vault-suite [--sizes 100000,1000000] [--batch 1000]\n       steward-bench vault --n N --mode encrypted|plain [--batch B]");
            std::process::exit(2);
        }
    }
}

/// A fresh data directory (under `BENCH_DIR`, default `.`) with the default policies, opened.
pub(crate) fn bench_hub() -> (tempfile::TempDir, Arc<hub::Hub>) {
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    let dir = tmp.path().join("d");
    let identity = tmp.path().join("id.txt");
    hub::Hub::init(
        &dir,
        &SealTo::Identity(identity.clone()),
        &hub::PolicyFiles::defaults(),
    )
    .expect("init");
    let hub = Arc::new(hub::Hub::open(&dir, &Unlock::Identity(identity)).expect("open"));
    (tmp, hub)
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn vault_suite(sizes: &[usize], batch: &str, repeat: usize) {
    let exe = std::env::current_exe().expect("own path");
    println!("Medians of {repeat} run(s) per row; plain and encrypted alternate within each repetition.\n");
    println!("| N | mode | write subjects/s | read+decrypt 5 fields subjects/s (2 threads) | bytes on disk / subject | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        let mut runs: Vec<Vec<Json>> = vec![Vec::new(), Vec::new()];
        for _ in 0..repeat.max(1) {
            for (m, mode) in ["plain", "encrypted"].into_iter().enumerate() {
                let out = Command::new(&exe)
                    .args([
                        "vault",
                        "--n",
                        &n.to_string(),
                        "--mode",
                        mode,
                        "--batch",
                        batch,
                    ])
                    .output()
                    .expect("run child");
                let line = String::from_utf8_lossy(&out.stdout);
                let v: Json = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
                    panic!("child failed: {}", String::from_utf8_lossy(&out.stderr))
                });
                runs[m].push(v);
            }
        }
        let mut rates = Vec::new();
        for (m, mode) in ["plain", "encrypted"].into_iter().enumerate() {
            let med = |k: &str| {
                median(
                    runs[m]
                        .iter()
                        .map(|v| v[k].as_f64().unwrap_or(0.0))
                        .collect(),
                )
            };
            let v = json!({
                "write_per_s": med("write_per_s"),
                "read_per_s": med("read_per_s"),
                "bytes_per_subject": med("bytes_per_subject"),
                "peak_rss_mib": med("peak_rss_mib"),
            });
            println!(
                "| {n} | {mode} | {:.0} | {:.0} | {:.0} | {:.0} |",
                v["write_per_s"].as_f64().unwrap_or(0.0),
                v["read_per_s"].as_f64().unwrap_or(0.0),
                v["bytes_per_subject"].as_f64().unwrap_or(0.0),
                v["peak_rss_mib"].as_f64().unwrap_or(0.0)
            );
            rates.push(v);
        }
        let w = rates[1]["write_per_s"].as_f64().unwrap_or(0.0)
            / rates[0]["write_per_s"].as_f64().unwrap_or(1.0);
        let r = rates[1]["read_per_s"].as_f64().unwrap_or(0.0)
            / rates[0]["read_per_s"].as_f64().unwrap_or(1.0);
        println!("| {n} | encrypted ÷ plain | {w:.2} | {r:.2} | | |");
    }
}

pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = p.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// One synthetic batch, parsed against the schema (outside the timed section).
pub(crate) fn make_batch(
    schema: &Schema,
    generator: &mut synth::Generator,
    n: usize,
) -> Vec<NewSubject> {
    (0..n)
        .map(|_| {
            let c = generator.next_constituent();
            NewSubject {
                kind: SubjectKind::Individual,
                fields: schema
                    .parse_object(RecordKind::Subject, &c.fields)
                    .expect("valid synthetic data"),
                gifts: Vec::new(),
            }
        })
        .collect()
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = synth::Rng::new(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

fn run_vault(n: usize, batch: usize, mode: &str) -> Json {
    let schema =
        Arc::new(Schema::from_toml(include_str!("../../policies/schema.toml")).expect("schema"));
    let read_ids: Vec<FieldId> = READ_FIELDS
        .iter()
        .map(|f| schema.field(RecordKind::Subject, f).expect("field").id)
        .collect();
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    let dir = tmp.path().join("data");
    let mut generator = synth::Generator::new(SEED);
    let mut write_secs = 0.0;
    let mut n_fields = 0usize;
    let (ids, read_secs, size) = if mode == "encrypted" {
        let identity = tmp.path().join("id.txt");
        Vault::init(&dir, &SealTo::Identity(identity.clone())).expect("init");
        let vault = Vault::open(&dir, &Unlock::Identity(identity), schema.clone()).expect("open");
        let mut ids = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let items = make_batch(&schema, &mut generator, batch.min(n - done));
            n_fields += items.iter().map(|s| s.fields.len()).sum::<usize>();
            let t = Instant::now();
            ids.extend(vault.create_subjects(&items).expect("write"));
            write_secs += t.elapsed().as_secs_f64();
            done += items.len();
        }
        vault.flush().expect("flush");
        let mut order = ids.clone();
        shuffle(&mut order, 7);
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in order.chunks(order.len().div_ceil(2)) {
                let vault = &vault;
                let read_ids = &read_ids;
                s.spawn(move || {
                    for id in chunk {
                        let r = vault
                            .read_subject(id, &|f| read_ids.contains(&f))
                            .expect("read");
                        assert!(r.fields.len() >= 3);
                    }
                });
            }
        });
        let read_secs = t.elapsed().as_secs_f64();
        drop(vault);
        (ids, read_secs, dir_bytes(&dir))
    } else {
        std::fs::create_dir_all(&dir).expect("dir");
        let store = SledStore::open(&dir.join("store"), &SledOptions::default()).expect("store");
        let mut ids = Vec::with_capacity(n);
        let mut done = 0u64;
        let mut rng = synth::Rng::new(99);
        while (done as usize) < n {
            let items = make_batch(&schema, &mut generator, batch.min(n - done as usize));
            n_fields += items.iter().map(|s| s.fields.len()).sum::<usize>();
            let t = Instant::now();
            // The same serialised content as the vault writes, without encryption: id-keyed
            // records of (field id, length, encoded value) and the same index entries, with
            // the normalised value in place of the keyed hash.
            let mut b = Batch::new();
            for item in &items {
                let mut r = [0u8; 10];
                r[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                let id = SubjectId::from_parts(done, r);
                done += 1;
                let mut rec = vec![1u8, item.kind.code()];
                for (f, v) in &item.fields {
                    let enc = v.encode();
                    rec.extend_from_slice(&f.0.to_le_bytes());
                    rec.extend_from_slice(&(enc.len() as u16).to_le_bytes());
                    rec.extend_from_slice(&enc);
                    let def = schema.field_by_id(RecordKind::Subject, *f).expect("field");
                    if def.index != IndexKind::None {
                        let mut k = f.0.to_be_bytes().to_vec();
                        k.extend_from_slice(v.index_term().unwrap_or_default().as_bytes());
                        k.extend_from_slice(id.as_bytes());
                        b.put(keyspaces::INDEX, k, Vec::new());
                    }
                }
                b.put(keyspaces::SUBJECTS, id.as_bytes().to_vec(), rec);
                ids.push(id);
            }
            store.apply(b).expect("write");
            store.flush().expect("flush");
            write_secs += t.elapsed().as_secs_f64();
        }
        let mut order = ids.clone();
        shuffle(&mut order, 7);
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in order.chunks(order.len().div_ceil(2)) {
                let store = &store;
                let read_ids = &read_ids;
                s.spawn(move || {
                    for id in chunk {
                        let rec = store
                            .get(keyspaces::SUBJECTS, id.as_bytes())
                            .expect("get")
                            .expect("present");
                        let mut pos = 2;
                        let mut found = 0;
                        while pos < rec.len() {
                            let f = u16::from_le_bytes([rec[pos], rec[pos + 1]]);
                            let len = u16::from_le_bytes([rec[pos + 2], rec[pos + 3]]) as usize;
                            if read_ids.contains(&FieldId(f)) {
                                Value::decode(&rec[pos + 4..pos + 4 + len]).expect("decode");
                                found += 1;
                            }
                            pos += 4 + len;
                        }
                        assert!(found >= 3);
                    }
                });
            }
        });
        let read_secs = t.elapsed().as_secs_f64();
        drop(store);
        (ids, read_secs, dir_bytes(&dir))
    };
    json!({
        "mode": mode,
        "n": ids.len(),
        "batch": batch,
        "fields_per_subject": n_fields as f64 / n as f64,
        "write_secs": write_secs,
        "write_per_s": n as f64 / write_secs,
        "read_secs": read_secs,
        "read_per_s": n as f64 / read_secs,
        "bytes_per_subject": size as f64 / n as f64,
        "peak_rss_mib": peak_rss_mib(),
    })
}
