//! The foundation: encrypted vault, the binary, the server, erasure, rotation, backups.

use serde_json::{json, Value};

use crate::support::*;

fn admin_token(env: &Env) -> String {
    let v = env.json(&["users", "add", "tester", "--role", "admin"], None);
    v["token"].as_str().unwrap().to_string()
}

fn canary_subject(i: usize) -> Value {
    json!({
        "given_name": format!("Qcanarygiven{i}x"),
        "family_name": format!("Zcanaryfam{i}x"),
        "email": format!("Canary.Mail{i}@Example.org"),
        "phone": format!("020 7946 0{:03}", i % 1000),
        "street": format!("{i} Qcanarystreet Road"),
        "notes": format!("secret cnrynote{i}zz"),
        "birth_date": "1961-07-14",
    })
}

/// Every canary value, in every form the code may produce (as typed, lower-cased, E.164),
/// contains one of these markers; the scan is case-insensitive.
const MARKERS: &[&str] = &["canary", "cnrynote", "cnryupdated", "2079460"];

#[test]
fn no_canary_reaches_the_data_directory_or_the_logs() {
    let env = Env::init();
    let token = admin_token(&env);
    let server = env.serve("debug");
    let n = 1000;
    let batch: Vec<Value> = (0..n).map(canary_subject).collect();
    let (status, _, body) = http(
        "POST",
        &format!("{}/v1/subjects/batch", server.url),
        Some(&token),
        Some(&json!({ "subjects": batch }).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let ids: Vec<String> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), n);
    // Exercise reads, lookups, updates and gifts so that every path has a chance to leak.
    for i in (0..n).step_by(97) {
        let (s, _, v) = http(
            "GET",
            &format!("{}/v1/subjects/{}", server.url, ids[i]),
            Some(&token),
            None,
        );
        assert_eq!(s, 200);
        assert_eq!(
            v["fields"]["given_name"],
            format!("Qcanarygiven{i}x"),
            "the API returns the value"
        );
        assert_eq!(v["fields"]["email"], format!("canary.mail{i}@example.org"));
        let (s, _, v) = http(
            "POST",
            &format!("{}/v1/subjects/lookup", server.url),
            Some(&token),
            Some(&json!({"email": format!("CANARY.MAIL{i}@example.org")}).to_string()),
        );
        assert_eq!(s, 200);
        assert_eq!(v["ids"], json!([ids[i]]));
        let (s, _, _) = http(
            "PATCH",
            &format!("{}/v1/subjects/{}", server.url, ids[i]),
            Some(&token),
            Some(&json!({"notes": format!("secret cnryupdated{i}zz")}).to_string()),
        );
        assert_eq!(s, 200);
        let (s, _, _) = http(
            "POST",
            &format!("{}/v1/subjects/{}/gifts", server.url, ids[i]),
            Some(&token),
            Some(&json!({"amount": "12.34", "campaign": format!("Qcanarygiven{i}x")}).to_string()),
        );
        assert_eq!(s, 201);
        // An invalid write: the error must not echo the value.
        let (s, _, v) = http(
            "PATCH",
            &format!("{}/v1/subjects/{}", server.url, ids[i]),
            Some(&token),
            Some(&json!({"email": format!("Zcanaryfam{i}x-not-an-email")}).to_string()),
        );
        assert_eq!(s, 422);
        assert!(!v.to_string().contains("Zcanaryfam"), "{v}");
    }
    let log_path = server.log.clone();
    assert!(server.stop().success(), "graceful shutdown exits 0");
    // The CLI path too.
    for i in n..n + 5 {
        env.add(&canary_subject(i));
    }
    let log = std::fs::read(&log_path).unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("route=/v1/subjects/{id}"),
        "the log was captured"
    );
    let hits = find_markers(&env.data, &[("server log", log)], MARKERS);
    assert!(
        hits.is_empty(),
        "plaintext found: {:?}",
        &hits[..hits.len().min(10)]
    );
}

#[test]
fn erased_subject_is_unreadable_even_from_an_old_copy_of_the_store() {
    let env = Env::init();
    let a = env
        .add(&json!({"given_name": "Ann", "email": "ann@example.org", "phone": "0113 496 0001"}));
    let b = env.add(&json!({"given_name": "Bob", "email": "bob@example.org"}));
    // An old copy of the store, as a stale disk image or a file-level backup would hold it.
    let old_store = env.tmp.path().join("old-store");
    let status = std::process::Command::new("cp")
        .args([
            "-r",
            env.data.join("store").to_str().unwrap(),
            old_store.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let out = env.run(&["subject", "erase", &a], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["subject", "show", &a], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("erased"), "{}", stderr(&out));
    assert_eq!(
        env.json(&["subject", "find", "--email", "ann@example.org"], None)["ids"],
        json!([])
    );
    assert_eq!(
        env.json(&["subject", "find", "--phone", "01134960001"], None)["ids"],
        json!([])
    );
    assert_eq!(
        env.json(&["subject", "show", &b], None)["fields"]["given_name"],
        "Bob"
    );

    // Put the old store back: its ciphertext and index entries for Ann are there, but her
    // data key was shredded, so nothing decrypts.
    std::fs::remove_dir_all(env.data.join("store")).unwrap();
    std::fs::rename(&old_store, env.data.join("store")).unwrap();
    let out = env.run(&["subject", "show", &a], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("erased"));
    assert_eq!(
        env.json(&["subject", "show", &b], None)["fields"]["given_name"],
        "Bob"
    );
}

#[test]
fn backup_and_restore_give_back_every_subject_identically() {
    let env = Env::init();
    let out = env.run(&["demo", "--no-serve", "--size", "300"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = env.json(&["subject", "list", "--limit", "1000"], None)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300);
    let file = env.tmp.path().join("backup.stb");
    env.json(&["backup", "create", file.to_str().unwrap()], None);
    let restored = env.tmp.path().join("restored");
    let out = std::process::Command::new(binary())
        .args([
            "backup",
            "restore",
            file.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
            "--identity",
            env.identity.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let show = |data: &std::path::Path, id: &str| -> Value {
        let out = std::process::Command::new(binary())
            .args([
                "subject",
                "show",
                id,
                "--json",
                "--data",
                data.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for id in ids.iter().step_by(7) {
        assert_eq!(show(&env.data, id), show(&restored, id));
    }

    // With the server holding the directory, the backup goes through it.
    let token = admin_token(&env);
    let fred = env.json(&["users", "add", "fred", "--role", "fundraiser"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let server = env.serve("warn");
    // A fundraiser may not take backups: the server's 403 exits 7, as a refusal done
    // locally does, and leaves no file.
    let refused = env.tmp.path().join("refused.stb");
    let out = env.run(
        &[
            "backup",
            "create",
            refused.to_str().unwrap(),
            "--token",
            &fred,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(!refused.exists());
    let file2 = env.tmp.path().join("backup2.stb");
    let out = env.run(
        &[
            "backup",
            "create",
            file2.to_str().unwrap(),
            "--token",
            &token,
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Without a token it says what to do.
    let out = env.run(
        &[
            "backup",
            "create",
            env.tmp.path().join("x.stb").to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    drop(server);
    let restored2 = env.tmp.path().join("restored2");
    let out = std::process::Command::new(binary())
        .args([
            "backup",
            "restore",
            file2.to_str().unwrap(),
            "--data",
            restored2.to_str().unwrap(),
            "--identity",
            env.identity.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for id in ids.iter().step_by(11) {
        assert_eq!(show(&env.data, id), show(&restored2, id));
    }
}

#[test]
fn key_rotation_through_the_cli_keeps_every_subject_readable() {
    let env = Env::init();
    let ids: Vec<String> = (0..30).map(|i| env.add(&canary_subject(i))).collect();
    let before: Vec<Value> = ids
        .iter()
        .map(|id| env.json(&["subject", "show", id], None))
        .collect();
    let r = env.json(&["keys", "rotate", "--batch-size", "7"], None);
    assert_eq!(r["target_version"], 2);
    assert_eq!(r["rewrapped"], 30);
    assert_eq!(r["complete"], true);
    let r = env.json(&["keys", "rotate"], None);
    assert_eq!(r["target_version"], 3);
    for (id, b) in ids.iter().zip(&before) {
        let after = env.json(&["subject", "show", id], None);
        assert_eq!(after["fields"], b["fields"]);
    }
}

#[test]
fn bad_input_is_refused_naming_the_field_and_nothing_is_written() {
    let env = Env::init();
    let cases = [
        (json!({"email": "Zsecret-at-example.org"}), "email"),
        (json!({"phone": "Zsecret 12"}), "phone"),
        (json!({"birth_date": "03/04/1980"}), "birth_date"),
        (json!({"birth_date": "Zsecret"}), "birth_date"),
        (json!({"shoe_size": "Zsecret"}), "shoe_size"),
    ];
    for (input, field) in cases {
        let out = env.run(&["subject", "add"], Some(&input.to_string()));
        assert_eq!(out.status.code(), Some(4), "{input}");
        let err = stderr(&out);
        assert!(err.contains(field), "{err}");
        assert!(
            !err.contains("Zsecret"),
            "the error echoes the value: {err}"
        );
    }
    let out = env.run(&["subject", "add"], Some("{not json"));
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("not valid JSON"));
    // An email typed where an id belongs is refused without being repeated.
    for args in [
        &["subject", "show", "zsecret@example.org"][..],
        &["consent", "history", "--subject", "zsecret@example.org"][..],
    ] {
        let out = env.run(args, None);
        assert_eq!(out.status.code(), Some(4), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("not a Steward id"), "{err}");
        assert!(
            !err.contains("zsecret"),
            "the error echoes the input: {err}"
        );
    }
    assert_eq!(env.json(&["subject", "list"], None)["items"], json!([]));
}

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut v: Vec<_> = files_under(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, m.len(), m.modified().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_wrong_identity_cannot_unseal_and_changes_nothing() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Ann"}));
    let other = Env::init();
    let before = snapshot(&env.data);
    let out = env.run(
        &[
            "subject",
            "show",
            &id,
            "--identity",
            other.identity.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("cannot unseal"), "{}", stderr(&out));
    let out = env.run(
        &[
            "subject",
            "add",
            "--identity",
            other.identity.to_str().unwrap(),
        ],
        Some(r#"{"given_name":"X"}"#),
    );
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(snapshot(&env.data), before);
}

#[test]
fn init_refuses_an_existing_directory() {
    let env = Env::init();
    let before = snapshot(&env.data);
    let out = env.run(
        &[
            "init",
            "--identity",
            env.tmp.path().join("new-id.txt").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(8));
    assert!(stderr(&out).contains("already exists"));
    assert_eq!(snapshot(&env.data), before);
    assert!(!env.tmp.path().join("new-id.txt").exists());
}

#[test]
fn a_command_on_a_directory_held_by_a_server_says_so_and_touches_nothing() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Ann"}));
    let server = env.serve("warn");
    let before = snapshot(&env.data.join("store"));
    let out = env.run(&["subject", "show", &id], None);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(err.contains("in use") && err.contains(&server.url), "{err}");
    let out = env.run(&["subject", "erase", &id], None);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(snapshot(&env.data.join("store")), before);
    assert!(server.stop().success());
    assert_eq!(
        env.json(&["subject", "show", &id], None)["fields"]["given_name"],
        "Ann"
    );
}

#[test]
fn the_http_api_creates_reads_updates_and_erases() {
    let env = Env::init();
    let token = admin_token(&env);
    let server = env.serve("warn");
    let u = |p: &str| format!("{}{p}", server.url);
    let (s, _, v) = http("GET", &u("/healthz"), None, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, head, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&token),
        Some(r#"{"given_name":"Vic","email":"vic@example.org","gifts":[{"amount":"5"}]}"#),
    );
    assert_eq!(s, 201, "{v}");
    assert!(head.to_ascii_lowercase().contains("x-request-id:"));
    let id = v["id"].as_str().unwrap().to_string();
    let (s, _, v) = http("GET", &u(&format!("/v1/subjects/{id}")), Some(&token), None);
    assert_eq!(s, 200);
    assert_eq!(v["fields"]["given_name"], "Vic");
    assert_eq!(v["withheld"], json!([]));
    assert_eq!(v["version"], 1);
    // Stale version → 409; current → 200.
    let (s, _, v) = http(
        "PATCH",
        &u(&format!("/v1/subjects/{id}")),
        Some(&token),
        Some(r#"{"city":"Leeds"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let mut c = std::process::Command::new("curl");
    let out = c
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            &u(&format!("/v1/subjects/{id}")),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "If-Match: 1",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"city":"York"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "409");
    // `If-Match: *` is "any version": the write goes through.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            &u(&format!("/v1/subjects/{id}")),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "If-Match: *",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"city":"York"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // Invalid → 422 naming the field.
    let (s, _, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&token),
        Some(r#"{"email":"nope"}"#),
    );
    assert_eq!(s, 422);
    assert_eq!(v["error"]["code"], "invalid_input");
    assert_eq!(v["error"]["fields"][0]["field"], "email");
    // Malformed JSON → 400 with the same error shape.
    let (s, _, v) = http("POST", &u("/v1/subjects"), Some(&token), Some("{nope"));
    assert_eq!(s, 400);
    assert!(v["error"]["code"].is_string());
    // Bad token → 401; unknown id → 404; unknown route → 404.
    assert_eq!(
        http(
            "GET",
            &u(&format!("/v1/subjects/{id}")),
            Some("stw_bad"),
            None
        )
        .0,
        401
    );
    assert_eq!(
        http(
            "GET",
            &u("/v1/subjects/01M822MXWA053813Q00TW23TP9"),
            Some(&token),
            None
        )
        .0,
        404
    );
    assert_eq!(http("GET", &u("/v1/nothing"), Some(&token), None).0, 404);
    // Erase → 200, then 410 Gone.
    let (s, _, _) = http(
        "DELETE",
        &u(&format!("/v1/subjects/{id}")),
        Some(&token),
        None,
    );
    assert_eq!(s, 200);
    let (s, _, v) = http("GET", &u(&format!("/v1/subjects/{id}")), Some(&token), None);
    assert_eq!(s, 410);
    assert_eq!(v["error"]["code"], "erased");
    assert!(server.stop().success());
}

#[test]
fn a_passphrase_sealed_directory_works_with_the_passphrase_file_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pass = tmp.path().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new(binary());
        c.args(args)
            .arg("--data")
            .arg(&data)
            .env_remove("STEWARD_IDENTITY")
            .env_remove("STEWARD_PASSPHRASE_FILE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let p = pass.to_str().unwrap();
    assert!(run(&["init", "--passphrase-file", p], None)
        .status
        .success());
    let out = run(
        &["subject", "add", "--passphrase-file", p, "--json"],
        Some(r#"{"given_name":"Pat"}"#),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = id["id"].as_str().unwrap();
    // Without the passphrase it says how to give it.
    let out = run(&["subject", "show", id], None);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).contains("--passphrase-file"),
        "{}",
        stderr(&out)
    );
    let wrong = tmp.path().join("wrong.txt");
    std::fs::write(&wrong, "nope\n").unwrap();
    let out = run(
        &[
            "subject",
            "show",
            id,
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &["subject", "show", id, "--passphrase-file", p, "--json"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Pat"));
}

#[test]
fn the_demo_seeds_consent_never_tops_up_and_checks_its_port_first() {
    let env = Env::init();
    let out = env.run(&["demo", "--no-serve", "--size", "40"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = env.json(&["subject", "list", "--limit", "100"], None)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 40);
    // Consent histories: most gave email consent, some withdrew it, some objected to post.
    let mut reasons = std::collections::BTreeMap::new();
    for id in &ids {
        let v = env.json(&["consent", "state", "--subject", id], None);
        let r = v["purposes"]["newsletter-email"]["reason"]
            .as_str()
            .unwrap()
            .to_string();
        *reasons.entry(r).or_insert(0) += 1;
        let r = v["purposes"]["fundraising-post"]["reason"]
            .as_str()
            .unwrap()
            .to_string();
        *reasons.entry(format!("post:{r}")).or_insert(0) += 1;
    }
    for r in [
        "consent_given",
        "consent_withdrawn",
        "no_consent",
        "post:objected",
    ] {
        assert!(reasons.get(r).copied().unwrap_or(0) > 0, "{r}: {reasons:?}");
    }
    // A mailing house in the register received the stewardship list: erasing one of its
    // people leaves the DPO a task (unless they objected, so were never sent).
    let register = env.json(&["recipients", "list"], None);
    assert_eq!(
        register["items"][0]["name"], "Demo Mailing House Ltd",
        "{register}"
    );
    let victim = ids
        .iter()
        .find(|id| {
            env.json(&["recipients", "of", id], None)["items"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
        })
        .expect("someone was sent the stewardship list")
        .clone();
    // Erase one, run the demo again: nobody is created in their place.
    env.json(&["subject", "erase", &victim], None);
    let tasks = env.json(&["notify", "pending"], None);
    assert_eq!(tasks["items"].as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(tasks["items"][0]["recipient"], "Demo Mailing House Ltd");
    let out = env.run(&["demo", "--no-serve", "--size", "40"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = env.json(&["subject", "list", "--limit", "100"], None)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, 39, "the demo topped up after an erasure");
    // A page larger than 1,000 is refused (as over HTTP), not cut short without a cursor.
    let out = env.run(&["subject", "list", "--limit", "5000"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("1 to 1000"), "{}", stderr(&out));
    // A taken port: refused before anything is loaded or a token issued.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let fresh = tempfile::tempdir().unwrap();
    let dir = fresh.path().join("demo");
    let out = std::process::Command::new(binary())
        .args(["demo", "--addr", &addr, "--data", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot listen"), "{}", stderr(&out));
    assert!(!dir.exists(), "nothing was created");
}
