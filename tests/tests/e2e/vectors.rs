//! Data written by an earlier Steward still reads. `vectors/` at the workspace root holds a
//! data directory, a backup of it and a signed audit checkpoint, written by the code of the
//! commit that added them, with what the commands printed then (`vectors/expected.json`).
//! Between them they hold every persistent format: encrypted records and their sources, the
//! data-key slot file, blind indexes, gifts, consent events, a subject-rights request, an
//! import's journal (plan, outcomes, undo snapshots), an erasure certificate, the audit
//! chain with its checkpoint, the sealed key ring and the backup file.
//!
//! `data_written_by_an_earlier_version_still_reads` copies them and reads everything back
//! with today's code: a change that would make existing data directories unreadable, or read
//! differently, fails it. A deliberate format change brings its own migration and adds new
//! vectors beside these (`STEWARD_WRITE_VECTORS=DIR cargo test -p tests --test e2e
//! write_vectors -- --ignored` writes a set); the old ones stay.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{binary, stderr};

/// The sets of vectors: `v1` (audit events in the store), `v2` (audit events in segment
/// files beside it).
const SETS: &[&str] = &["v1", "v2"];

fn vectors(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors")
        .join(set)
}

/// A `steward` command on `data`, unsealed with the vectors' identity file.
fn steward(data: &Path, identity: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--identity")
        .arg(identity)
        .env_remove("STEWARD_IDENTITY")
        .env_remove("STEWARD_PASSPHRASE_FILE")
        .env_remove("STEWARD_DATA")
        .env_remove("STEWARD_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("steward runs")
}

fn json_of(data: &Path, identity: &Path, args: &[&str], stdin: Option<&str>) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = match stdin {
        None => steward(data, identity, &all),
        Some(text) => {
            use std::io::Write;
            let mut child = Command::new(binary())
                .args(&all)
                .arg("--data")
                .arg(data)
                .arg("--identity")
                .arg(identity)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("steward runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    };
    assert!(
        out.status.success(),
        "steward {args:?} failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// The commands whose answers are compared: they read every kind of stored thing. Times that
/// a command computes from the clock (a request's days left) are not in them.
fn probes(ids: &Value) -> Vec<Vec<String>> {
    let s = |k: &str| ids[k].as_str().expect(k).to_string();
    vec![
        vec!["subject".into(), "show".into(), s("vera")],
        vec!["subject".into(), "show".into(), s("otto")],
        vec!["subject".into(), "gifts".into(), s("vera")],
        vec![
            "subject".into(),
            "find".into(),
            "--email".into(),
            "vera.vector@example.org".into(),
        ],
        vec![
            "subject".into(),
            "find".into(),
            "--phone".into(),
            "+44 20 7946 0000".into(),
        ],
        vec!["subject".into(), "certificate".into(), s("erased")],
        vec!["subject".into(), "list".into()],
        vec!["consent".into(), "history".into(), s("vera")],
        vec!["import".into(), "show".into(), s("import")],
        vec!["import".into(), "list".into()],
    ]
}

/// Keys whose values a command works out from the clock when it runs, dropped before
/// comparing (none of them is stored).
fn without_clock(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for k in ["days_left", "overdue", "now", "generated_at"] {
                    map.remove(k);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn data_written_by_an_earlier_version_still_reads() {
    for set in SETS {
        reads_back(&vectors(set));
    }
}

fn reads_back(v: &Path) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(v.join("expected.json")).unwrap())
            .expect("expected.json");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&v.join("data"), &data);
    let identity = v.join("identity.txt");

    // The audit chain first, before the reads below add events of their own: every event's
    // canonical bytes hash as they did, and the signed checkpoint still covers its prefix.
    let verify = json_of(&data, &identity, &["audit", "verify"], None);
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["events"], expected["audit_events"], "{verify}");
    let against = json_of(
        &data,
        &identity,
        &[
            "audit",
            "verify",
            "--against",
            v.join("checkpoint.json").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(against["ok"], true, "{against}");

    let ids = &expected["ids"];
    for (probe, answer) in probes(ids)
        .iter()
        .zip(expected["probes"].as_array().unwrap())
    {
        let args: Vec<&str> = probe.iter().map(String::as_str).collect();
        let now = without_clock(json_of(&data, &identity, &args, None));
        assert_eq!(
            now,
            without_clock(answer.clone()),
            "`steward {}` reads stored data differently",
            probe.join(" ")
        );
    }

    // The import's journal still undoes it: the snapshot of the subject it changed decrypts.
    let undo = json_of(
        &data,
        &identity,
        &["import", "undo", ids["import"].as_str().unwrap()],
        None,
    );
    assert_eq!(undo["status"], "undone", "{undo}");
    let vera = json_of(
        &data,
        &identity,
        &["subject", "show", ids["vera"].as_str().unwrap()],
        None,
    );
    assert_eq!(vera, expected["vera_before_import"]);

    // The backup file restores (its format, and the key ring sealed inside it).
    let restored = tmp.path().join("restored");
    let out = steward(
        &restored,
        &identity,
        &["backup", "restore", v.join("backup.stb").to_str().unwrap()],
    );
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let again = json_of(
        &restored,
        &identity,
        &["subject", "show", ids["vera"].as_str().unwrap()],
        None,
    );
    assert_eq!(again, expected["probes"][0]);
}

/// Writes a new set of vectors into `$STEWARD_WRITE_VECTORS` (a directory that must not
/// exist yet). Run by hand when a format changes on purpose; never in CI.
#[test]
#[ignore = "writes test vectors; run by hand with STEWARD_WRITE_VECTORS=DIR"]
fn write_vectors() {
    let out_dir = PathBuf::from(std::env::var("STEWARD_WRITE_VECTORS").expect("set it"));
    assert!(!out_dir.exists(), "{} exists", out_dir.display());
    std::fs::create_dir_all(&out_dir).unwrap();
    let data = out_dir.join("data");
    let identity = out_dir.join("identity.txt");
    let init = Command::new(binary())
        .args(["init", "--data"])
        .arg(&data)
        .arg("--identity")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let run = |args: &[&str], stdin: Option<&str>| json_of(&data, &identity, args, stdin);

    let vera = run(
        &["subject", "add"],
        Some(
            &json!({
                "kind": "person", "title": "Dr", "given_name": "Vera", "family_name": "Vector",
                "birth_date": "1970-03-04", "email": "vera.vector@example.org",
                "phone": "+44 20 7946 0000", "street": "1 Format Row", "city": "Leeds",
                "postal_code": "LS1 1AA", "country": "GB",
                "tags": ["major-donor", "volunteer"], "religion": "Quaker"
            })
            .to_string(),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let erased = run(
        &["subject", "add"],
        Some(
            &json!({"kind": "person", "given_name": "Ernst", "family_name": "Erased",
                     "email": "ernst@example.org"})
            .to_string(),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        &[
            "consent",
            "record",
            &vera,
            "--event",
            "given",
            "--purpose",
            "newsletter-email",
            "--source",
            "vector-form",
            "--at",
            "2025-05-06",
        ],
        None,
    );
    run(
        &[
            "request",
            "open",
            &vera,
            "--type",
            "access",
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let vera_before_import = run(&["subject", "show", &vera], None);
    let csv = out_dir.join("contributions.csv");
    std::fs::write(
        &csv,
        "Email,First Name,Last Name,Do Not Email,Do Not Phone,Total Amount,Date Received,Transaction ID\n\
         vera.vector@example.org,Vera,Vector,0,1,25.00,2024-01-01,TX-1\n\
         otto.offset@example.org,Otto,Offset,1,0,10.00,2024-02-01,TX-2\n",
    )
    .unwrap();
    let import = run(
        &["import", csv.to_str().unwrap(), "--profile", "civicrm"],
        None,
    );
    std::fs::remove_file(&csv).unwrap();
    let import_id = import["id"].as_str().unwrap().to_string();
    let otto = run(
        &["subject", "find", "--email", "otto.offset@example.org"],
        None,
    );
    let otto = otto["subjects"][0]["id"]
        .as_str()
        .or_else(|| otto[0]["id"].as_str())
        .or_else(|| otto["ids"][0].as_str())
        .unwrap_or_else(|| panic!("find's answer: {otto}"))
        .to_string();
    run(&["subject", "erase", &erased, "--yes"], None);
    let checkpoint = out_dir.join("checkpoint.json");
    run(
        &[
            "audit",
            "checkpoint",
            "export",
            "--out",
            checkpoint.to_str().unwrap(),
        ],
        None,
    );
    run(
        &[
            "backup",
            "create",
            out_dir.join("backup.stb").to_str().unwrap(),
        ],
        None,
    );

    let ids = json!({"vera": vera, "otto": otto, "erased": erased, "import": import_id});
    // The probes are answered on a copy, so the vectors hold no events of their own reads.
    let probe_dir = tempfile::tempdir().unwrap();
    let copy = probe_dir.path().join("data");
    copy_dir(&data, &copy);
    let audit_events = json_of(&copy, &identity, &["audit", "verify"], None)["events"].clone();
    let answers: Vec<Value> = probes(&ids)
        .iter()
        .map(|p| {
            let args: Vec<&str> = p.iter().map(String::as_str).collect();
            json_of(&copy, &identity, &args, None)
        })
        .collect();
    let expected = json!({
        "written_by": env!("CARGO_PKG_VERSION"),
        "ids": ids,
        "audit_events": audit_events,
        "probes": answers,
        "vera_before_import": vera_before_import,
    });
    std::fs::write(
        out_dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}
