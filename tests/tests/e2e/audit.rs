//! The audit log from the outside: verification, checkpoints kept elsewhere, queries, exports.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn a_whole_data_directory_rolled_back_is_caught_by_a_checkpoint_kept_elsewhere() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Ann"}));
    for _ in 0..3 {
        env.json(&["subject", "show", &id], None);
    }
    assert_eq!(env.json(&["audit", "verify"], None)["ok"], true);
    // A copy of the directory as it is now (what an attacker with disk access could keep).
    let old = env.tmp.path().join("old-copy");
    assert!(std::process::Command::new("cp")
        .args(["-r", env.data.to_str().unwrap(), old.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    // More happens, and an auditor exports a checkpoint off the host.
    env.json(&["subject", "erase", &id], None);
    let cp = env.tmp.path().join("checkpoint.json");
    env.json(
        &[
            "audit",
            "checkpoint",
            "export",
            "--out",
            cp.to_str().unwrap(),
        ],
        None,
    );
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert!(exported["signature"].as_str().unwrap().len() == 128);
    let out = env.run(
        &["audit", "verify", "--against", cp.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The directory is rolled back to the old copy: on its own it still verifies...
    std::fs::remove_dir_all(&env.data).unwrap();
    std::fs::rename(&old, &env.data).unwrap();
    let out = env.run(&["audit", "verify"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // ...but not against the checkpoint kept elsewhere, which names where it breaks.
    let out = env.run(
        &[
            "audit",
            "verify",
            "--against",
            cp.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problem"]["kind"], "rollback");
    assert!(v["problem"]["seq"].as_u64().is_some());
}

#[test]
fn auditors_query_and_export_without_ever_seeing_a_value() {
    let env = Env::init();
    let fred = env.json(&["users", "add", "fred", "--role", "fundraiser"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let olga = env.json(&["users", "add", "olga", "--role", "auditor"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let id = env.add(&json!({"given_name": "Qcanaryaudit", "email": "canary.audit@example.org", "religion": "Zcanaryrel"}));
    for _ in 0..2 {
        env.json(&["subject", "show", &id, "--token", &fred], None);
    }
    let out = env.run(&["subject", "show", &id, "--token", &olga], None);
    assert_eq!(out.status.code(), Some(7));
    let out = env.run(&["subject", "show", &id, "--token", "stw_wrong"], None);
    assert_eq!(out.status.code(), Some(6));
    // Who read this donor's record (this year)?
    let year = &env.json(&["audit", "query", "--limit", "1", "--token", &olga], None)["items"][0]
        ["time"]
        .as_str()
        .unwrap()[..4]
        .to_string();
    let v = env.json(
        &[
            "audit",
            "query",
            "--subject",
            &id,
            "--action",
            "read",
            "--from",
            &format!("{year}-01-01"),
            "--token",
            &olga,
        ],
        None,
    );
    let who: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor_name"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("fred".to_string(), "ok".to_string()),
            ("fred".into(), "ok".into()),
            ("olga".into(), "denied".into())
        ]
    );
    // The failed authentication is there too.
    let v = env.json(
        &[
            "audit",
            "query",
            "--action",
            "authenticate",
            "--token",
            &olga,
        ],
        None,
    );
    assert_eq!(v["items"][0]["outcome"], "denied");
    assert_eq!(v["items"][0]["source"], "cli");
    // Nothing before the year began.
    let v = env.json(
        &[
            "audit",
            "query",
            "--to",
            &format!("{year}-01-01"),
            "--token",
            &olga,
        ],
        None,
    );
    assert_eq!(v["items"], json!([]));
    // Exports: JSON Lines and CSV, every event, no value anywhere.
    let jsonl = env.tmp.path().join("audit.jsonl");
    let csv = env.tmp.path().join("audit.csv");
    env.json(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--out",
            jsonl.to_str().unwrap(),
            "--token",
            &olga,
        ],
        None,
    );
    env.json(
        &[
            "audit",
            "export",
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
            "--token",
            &olga,
        ],
        None,
    );
    let jsonl_text = std::fs::read_to_string(&jsonl).unwrap();
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(jsonl_text.lines().count() >= 8, "{jsonl_text}");
    // The CSV export came second, so it also holds the event of the first export.
    assert_eq!(csv_text.lines().count(), jsonl_text.lines().count() + 2);
    assert!(csv_text.starts_with("seq,time,actor"));
    for text in [&jsonl_text, &csv_text] {
        let lower = text.to_lowercase();
        assert!(!lower.contains("canary"), "a value in the audit export");
    }
    let hits = find_markers(&env.data, &[], &["canary"]);
    assert!(hits.is_empty(), "{hits:?}");
    // A fundraiser may not read the log.
    let out = env.run(&["audit", "query", "--token", &fred], None);
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn a_damaged_store_is_named_as_damage_with_its_own_exit_code_not_as_bad_input() {
    let env = Env::init();
    for i in 0..5 {
        env.add(&serde_json::json!({"given_name": format!("Ann{i}")}));
    }
    let ok = env.run(&["audit", "verify"], None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // One byte of the store's log flipped, as a failing disk would.
    let db = env.data.join("store").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&db, bytes).unwrap();
    let out = env.run(&["audit", "verify", "--json"], None);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["error"]["code"], "storage_damaged", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("damaged") && message.contains("backup"),
        "{message}"
    );
}

#[test]
fn sealed_segments_are_archived_elsewhere_and_the_whole_log_verifies_from_the_archive() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Ann"}));
    let token = env.json(&["users", "add", "reader", "--role", "fundraiser"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Small segments, so that a few hundred reads fill several.
    let server = env.serve_with("warn", &["--audit-segment-kib", "8"]);
    for _ in 0..120 {
        let (status, _, _) = http(
            "GET",
            &format!("{}/v1/subjects/{id}", server.url),
            Some(&token),
            None,
        );
        assert_eq!(status, 200);
    }
    assert!(server.stop().success());
    let live = env.data.join("audit");
    let sealed = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
            })
            .unwrap_or(0)
    };
    assert!(sealed(&live) >= 3, "{} sealed segments", sealed(&live));
    let before = env.json(&["audit", "verify"], None);
    assert_eq!(before["ok"], true, "{before}");
    let archive = env.tmp.path().join("archive");
    let moved = env.json(
        &["audit", "archive", "--to", archive.to_str().unwrap()],
        None,
    );
    assert!(moved["segments"].as_u64().unwrap() >= 3, "{moved}");
    assert_eq!(sealed(&live), 0);
    assert_eq!(sealed(&archive) as u64, moved["segments"].as_u64().unwrap());
    // The live log verifies on its own, and the whole log with the archive read first.
    assert_eq!(env.json(&["audit", "verify"], None)["ok"], true);
    let whole = env.json(
        &["audit", "verify", "--archive", archive.to_str().unwrap()],
        None,
    );
    assert_eq!(whole["ok"], true, "{whole}");
    assert!(whole["events"].as_u64().unwrap() > 120, "{whole}");
    // An auditor with the archive and an exported checkpoint, and no data directory.
    let cp = env.tmp.path().join("cp.json");
    env.json(
        &[
            "audit",
            "checkpoint",
            "export",
            "--out",
            cp.to_str().unwrap(),
        ],
        None,
    );
    let verify_alone = || {
        std::process::Command::new(binary())
            .args(["audit", "verify-archive", "--json"])
            .arg(&archive)
            .arg("--checkpoint")
            .arg(&cp)
            .env_remove("STEWARD_DATA")
            .output()
            .unwrap()
    };
    let alone = verify_alone();
    assert!(alone.status.success(), "{}", stderr(&alone));
    let alone: Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert_eq!(alone["ok"], true, "{alone}");
    assert_eq!(alone["events"], moved["events"], "{alone}");
    // A byte changed in the archive is found, and named as damage at an event.
    let mut files: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    std::fs::write(&files[1], &bytes).unwrap();
    let out = env.run(
        &[
            "audit",
            "verify",
            "--archive",
            archive.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problem"]["kind"], "malformed", "{v}");
    let alone = verify_alone();
    assert_eq!(alone.status.code(), Some(1), "{}", stderr(&alone));
}
