//! Subject-rights requests through the binary, and access packages the stock `age` opens.

use serde_json::{json, Value};

use crate::support::*;

fn age_keys(env: &Env) -> (std::path::PathBuf, String) {
    let key = env.tmp.path().join("recipient.key");
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("the stock age tool is installed (.ci/run installs it)");
    assert!(out.status.success());
    let out = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    (key, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn deadlines_follow_the_law_and_the_workflow_records_every_step() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Sar"}));
    let open = |received: &str, jurisdiction: &str| {
        env.json(
            &[
                "request",
                "open",
                "--type",
                "access",
                "--subject",
                &id,
                "--jurisdiction",
                jurisdiction,
                "--received",
                received,
            ],
            None,
        )
    };
    assert_eq!(open("2028-01-31", "gdpr")["due"], "2028-02-29");
    // A date out of any sensible range is refused with its parameter named, not a panic.
    for far in ["9999-12-31", "1066-10-14"] {
        let out = env.run(
            &[
                "request",
                "open",
                "--type",
                "access",
                "--subject",
                &id,
                "--jurisdiction",
                "gdpr",
                "--received",
                far,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(4), "{far}: {}", stderr(&out));
        assert!(stderr(&out).contains("received"), "{}", stderr(&out));
    }
    assert_eq!(open("2027-01-31", "uk-gdpr")["due"], "2027-03-01");
    let ccpa = open("2026-11-20", "ccpa");
    assert_eq!(
        (ccpa["acknowledge_by"].as_str(), ccpa["due"].as_str()),
        (Some("2026-12-04"), Some("2027-01-04"))
    );
    let r = open("2026-12-01", "uk-gdpr");
    let rid = r["id"].as_str().unwrap();
    assert_eq!(r["due"], "2027-01-04"); // 1 Jan 2027 is a Friday bank holiday; 2 and 3 a weekend
    let step = |action: &str, reason: Option<&str>| {
        let mut args = vec!["request", "update", rid, "--action", action];
        if let Some(r) = reason {
            args.extend(["--reason", r]);
        }
        env.run(&[args, vec!["--json"]].concat(), None)
    };
    assert!(step("verify", None).status.success());
    let out = step("extend", None);
    assert_eq!(out.status.code(), Some(4), "an extension needs a reason");
    let out = step("extend", Some("complex: several systems to search"));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["due"].as_str()),
        (Some("extended"), Some("2027-03-01"))
    );
    assert!(step("start", None).status.success());
    assert!(step("complete", None).status.success());
    assert_eq!(
        step("refuse", Some("too late")).status.code(),
        Some(8),
        "closed requests stay closed"
    );
    // A refusal records its reasons and that the subject was told of the right to complain.
    let other = open("2026-11-02", "uk-gdpr");
    let oid = other["id"].as_str().unwrap();
    let out = env.run(
        &[
            "request",
            "update",
            oid,
            "--action",
            "refuse",
            "--reason",
            "manifestly unfounded",
            "--json",
        ],
        None,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "refused");
    assert!(v["history"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("right to complain"));

    let v = env.json(&["request", "show", rid], None);
    let actions: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["open", "verify", "extend", "start", "complete"]);
    // Due soon: one received 40 days ago is overdue and listed; the others are not yet due.
    let days_ago = |n: u32| {
        let out = std::process::Command::new("date")
            .args(["-u", "+%F", "-d", &format!("{n} days ago")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let overdue = open(&days_ago(40), "uk-gdpr");
    let due = env.json(&["request", "list", "--due-within", "7d"], None);
    let listed: Vec<&str> = due["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [overdue["id"].as_str().unwrap()]);
    let all = env.json(&["request", "list"], None);
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        4,
        "every open request"
    );
    // One-off holidays come from holidays.toml: 8 May 2023 (the coronation) moves a deadline.
    assert_eq!(open("2023-04-08", "uk-gdpr")["due"], "2023-05-09");
    let bad = env.run(
        &[
            "request",
            "open",
            "--type",
            "access",
            "--subject",
            &id,
            "--jurisdiction",
            "mars",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(4));
}

#[test]
fn the_access_package_opens_with_stock_age_and_holds_items_a_to_h() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Sar", "family_name": "Subject", "email": "sar@example.org", "gifts": [{"amount": "12.00"}]}));
    env.give_consent(&id, "newsletter-email", "signup-form");
    env.json(&["subject", "show", &id], None);
    // A meeting with someone else: the package lists it, never the other participant.
    let other = env.add(&json!({"given_name": "Oth", "family_name": "Person"}));
    env.json(
        &["interaction", "add", "--subject", &id, "--subject", &other],
        Some(&json!({"kind": "meeting", "occurred_at": "2026-01-05T11:00:00Z", "summary": "Talked about volunteering"}).to_string()),
    );
    let r = env.json(
        &[
            "request",
            "open",
            "--type",
            "access",
            "--subject",
            &id,
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let (key, recipient) = age_keys(&env);
    verify_and_start(&env, r["id"].as_str().unwrap());
    // Named .tar.age: a tar inside (the default inside age is a zip, tested below).
    let sealed = env.tmp.path().join("package.tar.age");
    env.json(
        &[
            "request",
            "fulfil",
            r["id"].as_str().unwrap(),
            "--out",
            sealed.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
        ],
        None,
    );
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(
        !bytes.windows(15).any(|w| w == b"sar@example.org"),
        "the file is encrypted"
    );
    let tar = env.tmp.path().join("package.tar");
    let out = std::process::Command::new("age")
        .args([
            "-d",
            "-i",
            key.to_str().unwrap(),
            "-o",
            tar.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stock age could not decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = env.tmp.path().join("unpacked");
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("tar")
        .args(["xf", tar.to_str().unwrap(), "-C", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    assert_eq!(p["data"]["email"], "sar@example.org");
    assert_eq!(p["gifts"][0]["amount"], "12.00");
    assert_eq!(p["interactions"][0]["kind"], "meeting", "{p}");
    assert_eq!(p["interactions"][0]["summary"], "Talked about volunteering");
    assert!(
        !p.to_string().contains(&other),
        "another participant is named"
    );
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("Our contacts with you") && html.contains("Talked about volunteering"));
    for item in [
        "purposes",
        "categories",
        "recipients",
        "retention",
        "rights",
        "complaint",
        "source",
        "automated_decisions",
        "consent_history",
        "access_history",
    ] {
        assert!(!p[item].is_null(), "item {item} missing");
    }
    assert!(p["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["purpose"] == "newsletter-email" && x["applies_now"] == true));
    assert!(p["categories"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "user.contact.email"));
    assert!(p["rights"].as_array().unwrap().len() >= 4);
    assert!(p["complaint"]
        .as_str()
        .unwrap()
        .contains("Information Commissioner"));
    assert_eq!(p["consent_history"][0]["purpose"], "newsletter-email");
    assert!(p["access_history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "read.subject" && e["who"] == "local-admin"));
    let csv = std::fs::read_to_string(dir.join("data.csv")).unwrap();
    assert!(csv.contains("email,sar@example.org"));
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("sar@example.org") && html.contains("Your rights"));
    // A letter a person reads: the gifts themselves, and plain words, not internal names.
    assert!(html.contains("<td>12.00</td>"), "the gift is in the page");
    for internal in [
        "LegitimateInterests",
        "user.contact",
        "policies/retention",
        "retention class",
        "given_name",
    ] {
        assert!(!html.contains(internal), "{internal} in the letter");
    }
    assert!(html.contains("your email addresses"), "categories in words");
    assert!(html.contains("on the basis of our legitimate interests"));
    // Without --encrypt-to: a folder.
    let folder = env.tmp.path().join("plain");
    env.json(
        &[
            "request",
            "fulfil",
            r["id"].as_str().unwrap(),
            "--out",
            folder.to_str().unwrap(),
        ],
        None,
    );
    assert!(folder.join("package.json").exists());
}

#[test]
fn an_erasure_made_after_a_backup_survives_its_restore() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Ann", "email": "ann@example.org"}));
    let b = env.add(&json!({"given_name": "Bob"}));
    let backup = env.tmp.path().join("before.stb");
    env.json(&["backup", "create", backup.to_str().unwrap()], None);
    env.json(&["subject", "erase", &a], None);
    let restore = |name: &str, journal: bool| {
        let target = env.tmp.path().join(name);
        let journal_path = env.data.join("erasures.journal");
        let mut args = vec![
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
            "--identity",
            env.identity.to_str().unwrap(),
        ];
        if journal {
            args.extend(["--journal", journal_path.to_str().unwrap()]);
        }
        let out = std::process::Command::new(binary())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        target
    };
    let show = |dir: &std::path::Path, id: &str| {
        std::process::Command::new(binary())
            .args(["subject", "show", id, "--data", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // With the live journal, the erasure is applied again before anything is served.
    let restored = restore("restored", true);
    let out = show(&restored, &a);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("erased"));
    assert!(show(&restored, &b).status.success());
    let out = std::process::Command::new(binary())
        .args([
            "audit",
            "query",
            "--action",
            "replay.erasure",
            "--json",
            "--data",
            restored.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["subjects"][0], a.as_str());
    // Without it, the old backup alone would bring Ann back: that is what the journal is for.
    let bare = restore("bare", false);
    assert!(show(&bare, &a).status.success());
    // A restore that fails (a journal that is not there) leaves nothing behind: no directory
    // in which Ann could be read.
    let failed = env.tmp.path().join("failed");
    let out = std::process::Command::new(binary())
        .args([
            "backup",
            "restore",
            backup.to_str().unwrap(),
            "--data",
            failed.to_str().unwrap(),
            "--identity",
            env.identity.to_str().unwrap(),
            "--journal",
            env.tmp.path().join("nonexistent").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !failed.exists(),
        "a failed restore left {}",
        failed.display()
    );
    let leftovers: Vec<String> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn with_the_live_directory_lost_an_exported_checkpoint_keeps_erasures_erased() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Ann", "email": "ann@example.org"}));
    let b = env.add(&json!({"given_name": "Bob"}));
    let backup = env.tmp.path().join("before.stb");
    env.json(&["backup", "create", backup.to_str().unwrap()], None);
    env.json(&["subject", "erase", &a], None);
    // The operator exports a checkpoint and keeps it off the host; then the host is lost.
    let cp = env.tmp.path().join("offsite-checkpoint.json");
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
    assert_eq!(exported["erasures"], json!([a]), "{exported}");
    std::fs::remove_dir_all(&env.data).unwrap();
    let restore = |name: &str, checkpoint: &std::path::Path| {
        let target = env.tmp.path().join(name);
        let out = std::process::Command::new(binary())
            .args([
                "backup",
                "restore",
                backup.to_str().unwrap(),
                "--data",
                target.to_str().unwrap(),
                "--identity",
                env.identity.to_str().unwrap(),
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (target, out)
    };
    let show = |dir: &std::path::Path, id: &str| {
        std::process::Command::new(binary())
            .args(["subject", "show", id, "--data", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let (restored, out) = restore("restored", &cp);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = show(&restored, &a);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(show(&restored, &b).status.success());
    // The restored audit log is the backup's, older than the checkpoint: verified against
    // it, the lost events show as a rollback (which is what happened), not as intact.
    let out = std::process::Command::new(binary())
        .args([
            "audit",
            "verify",
            "--against",
            cp.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rollback"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A list with Ann taken out no longer carries the log's signature: refused, and
    // nothing is left behind.
    let mut forged = exported.clone();
    forged["erasures"] = json!([]);
    let forged_path = env.tmp.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (target, out) = restore("forged", &forged_path);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));
    assert!(!target.exists());
}

#[test]
fn an_erased_persons_email_does_not_come_back_into_marketing() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Ann", "email": "Ann@Example.org"}));
    env.json(&["subject", "erase", &a], None);
    let again = env.add(&json!({"given_name": "Ann", "email": "ann@example.org"}));
    let other = env.add(&json!({"given_name": "Bob", "email": "bob@example.org"}));
    let out = env.run(
        &[
            "export",
            "--purpose",
            "fundraising-post",
            "--format",
            "jsonl",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&other), "{text}");
    assert!(
        !text.contains(&again),
        "the erased person is back in a marketing segment: {text}"
    );
    let x = env.json(&["consent", "explain", &again, "fundraising-post"], None);
    assert_eq!(x["decision"]["reason"], "objected");
    assert_eq!(
        x["decision"]["deciding_event"]["source"],
        "suppression-list"
    );
    // The suppression list holds keyed hashes only.
    assert!(find_markers(&env.data, &[], &["ann@example"]).is_empty());
}

#[test]
fn an_encrypted_export_opens_with_stock_age_and_matches_the_plain_one() {
    let env = Env::init();
    for n in 0..3 {
        let id =
            env.add(&json!({"given_name": format!("P{n}"), "email": format!("p{n}@example.org")}));
        env.give_consent(&id, "newsletter-email", "form");
    }
    let plain = env.tmp.path().join("seg.jsonl");
    let sealed = env.tmp.path().join("seg.jsonl.age");
    let (key, recipient) = age_keys(&env);
    env.json(
        &[
            "export",
            "--purpose",
            "newsletter-email",
            "--out",
            plain.to_str().unwrap(),
        ],
        None,
    );
    env.json(
        &[
            "export",
            "--purpose",
            "newsletter-email",
            "--out",
            sealed.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
        ],
        None,
    );
    let out = std::process::Command::new("age")
        .args(["-d", "-i", key.to_str().unwrap(), sealed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&plain).unwrap()
    );
    assert_eq!(std::fs::read_to_string(&plain).unwrap().lines().count(), 3);
    // Both exports are in the audit log with the purpose and the count.
    let v = env.json(&["audit", "query", "--action", "export.segment"], None);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|e| e["purpose"] == "newsletter-email" && e["count"] == 3));
}

#[test]
fn the_records_of_processing_are_built_from_the_policy_files() {
    let env = Env::init();
    let doc = env.json(&["ropa", "export", "--format", "json"], None);
    for key in [
        "controller",
        "dpo",
        "purposes",
        "categories_of_subjects",
        "categories_of_data",
        "recipients",
        "transfers",
        "retention",
        "security_measures",
    ] {
        assert!(!doc[key].is_null(), "{key} missing");
    }
    assert_eq!(doc["purposes"].as_array().unwrap().len(), 10);
    let gift_aid = doc["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gift-aid-claim")
        .unwrap();
    assert_eq!(gift_aid["lawful_basis"], "legal_obligation");
    assert!(doc["categories_of_data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["special"] == true));
    let md = env.tmp.path().join("ropa.md");
    env.json(&["ropa", "export", "--out", md.to_str().unwrap()], None);
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# Records of processing activities"));
    assert!(text.contains("| gift-aid-claim"));
    // The lists of the default organisation.toml reach the document (they once sat under
    // [dpo], where TOML filed them away).
    for key in [
        "categories_of_subjects",
        "recipients",
        "transfers",
        "security_measures",
    ] {
        assert!(
            !doc[key].as_array().unwrap().is_empty(),
            "{key} is empty: {doc}"
        );
    }
    assert!(doc["recipients"].to_string().contains("HMRC"));
    // A key where the loader does not read it is an error naming it.
    let org = env.data.join("policies/organisation.toml");
    let text = std::fs::read_to_string(&org).unwrap();
    std::fs::write(&org, format!("{text}\nrecipeints = [\"typo\"]\n")).unwrap();
    let out = env.run(&["policy", "check"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("recipeints"), "{}", stderr(&out));
}

#[test]
fn a_gift_aid_donors_erasure_keeps_only_the_held_minimum_until_its_date() {
    let env = Env::init();
    let id = env.add(&json!({
        "title": "Mrs", "given_name": "Gail", "family_name": "Aid", "street": "1 High Street", "postal_code": "LS1 4AP",
        "email": "gail@example.org", "phone": "0113 496 0555", "notes": "Qcanaryheldnote",
        "gift_aid_declared": true, "gift_aid_declaration_date": "2019-05-01",
        "gifts": [
            {"amount": "50.00", "currency": "GBP", "date": "2024-06-10", "gift_aid": true, "campaign": "Spring Appeal"},
            {"amount": "5.00", "currency": "GBP", "date": "2024-09-01", "gift_aid": false}
        ]
    }));
    let old_store = env.tmp.path().join("old-store");
    assert!(std::process::Command::new("cp")
        .args([
            "-r",
            env.data.join("store").to_str().unwrap(),
            old_store.to_str().unwrap()
        ])
        .status()
        .unwrap()
        .success());
    let v = env.json(&["subject", "erase", &id], None);
    let cert = &v["certificate"];
    // Last covered gift 10 June 2024 → accounting period ends 31 March 2025 → + 6 years.
    assert_eq!(cert["held"]["until"], "2031-03-31", "{cert}");
    assert_eq!(cert["held"]["hold"], "gift-aid");
    assert_eq!(cert["held"]["gifts"], 1);
    assert!(cert["statement"].as_str().unwrap().contains("2031-03-31"));
    assert_eq!(
        env.run(&["subject", "show", &id], None).status.code(),
        Some(3)
    );
    // The held minimum is readable (by the DPO/admin), nothing else.
    let held = env.json(&["subject", "held", &id], None);
    let fields = held["data"]["fields"].as_object().unwrap();
    for kept in [
        "given_name",
        "family_name",
        "street",
        "postal_code",
        "gift_aid_declared",
        "gift_aid_declaration_date",
    ] {
        assert!(fields.contains_key(kept), "{kept} not held: {held}");
    }
    for gone in ["email", "phone", "notes"] {
        assert!(!fields.contains_key(gone), "{gone} held: {held}");
    }
    assert_eq!(held["data"]["gifts"].as_array().unwrap().len(), 1);
    assert_eq!(held["data"]["gifts"][0]["amount"], "50.00");
    assert!(held["data"]["gifts"][0].get("campaign").is_none());
    // The original record, put back from an old copy of the store, does not decrypt.
    std::fs::rename(env.data.join("store"), env.tmp.path().join("new-store")).unwrap();
    std::fs::rename(&old_store, env.data.join("store")).unwrap();
    let out = env.run(&["subject", "show", &id], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    std::fs::remove_dir_all(env.data.join("store")).unwrap();
    std::fs::rename(env.tmp.path().join("new-store"), env.data.join("store")).unwrap();
    // Before the date the sweep keeps it; after, it shreds it.
    let r = env.json(&["retention", "run", "--now", "2031-03-31"], None);
    assert_eq!(r["holds_ended"], json!([]));
    let r = env.json(
        &["retention", "run", "--now", "2031-04-01", "--dry-run"],
        None,
    );
    assert_eq!(r["holds_ended"], json!([id]));
    assert!(
        env.run(&["subject", "held", &id], None).status.success(),
        "a dry run changes nothing"
    );
    let r = env.json(&["retention", "run", "--now", "2031-04-01"], None);
    assert_eq!(r["holds_ended"], json!([id]));
    let after = env.json(&["subject", "held", &id], None);
    assert_eq!(
        (&after["erased"], &after["hold"], &after["data"]),
        (&json!(true), &Value::Null, &Value::Null),
        "the hold ended: erased, nothing held"
    );
    assert!(find_markers(&env.data, &[], &["canaryheld", "gail@example"]).is_empty());
}

#[test]
fn the_retention_sweep_lists_supporters_without_activity_for_review() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Old"}));
    env.add(&json!({"given_name": "Also old"}));
    let r = env.json(
        &["retention", "run", "--dry-run", "--now", "2027-06-01"],
        None,
    );
    assert_eq!(
        (r["subjects_checked"].as_u64(), r["lapsed"].as_u64()),
        (Some(2), Some(0))
    );
    // Seven years on, both are lapsed (the default rule reviews after 6 years; lists only).
    let r = env.json(&["retention", "run", "--now", "2033-12-01"], None);
    assert_eq!(r["lapsed"], 2);
    assert_eq!(r["lapsed_erased"], 0);
    assert!(r["lapsed_sample"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == a.as_str()));
    assert!(
        env.run(&["subject", "show", &a], None).status.success(),
        "review only: nothing erased"
    );
}

#[test]
fn recipients_are_recorded_listed_in_the_package_and_named_for_notice_at_erasure() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Rae", "email": "rae@example.org"}));
    let v = env.json(
        &[
            "subject",
            "recipients",
            &id,
            "--add",
            "Mailing House Ltd",
            "--purpose",
            "fundraising-post",
        ],
        None,
    );
    assert_eq!(v["items"][0]["recipient"], "Mailing House Ltd");
    let out = env.run(
        &[
            "subject",
            "recipients",
            &id,
            "--add",
            "jo@mailinghouse.example",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "a person's email is not a recipient"
    );
    let r = env.json(
        &[
            "request",
            "open",
            "--type",
            "access",
            "--subject",
            &id,
            "--jurisdiction",
            "gdpr",
        ],
        None,
    );
    let folder = env.tmp.path().join("pkg");
    verify_and_start(&env, r["id"].as_str().unwrap());
    env.json(
        &[
            "request",
            "fulfil",
            r["id"].as_str().unwrap(),
            "--out",
            folder.to_str().unwrap(),
        ],
        None,
    );
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("package.json")).unwrap())
            .unwrap();
    assert!(p["recipients"][0]
        .as_str()
        .unwrap()
        .starts_with("Mailing House Ltd, for fundraising-post"));
    let v = env.json(&["subject", "erase", &id], None);
    assert_eq!(
        v["certificate"]["notify"][0]["recipient"],
        "Mailing House Ltd"
    );
}

/// Verifies the requester's identity and starts the request: what must come before fulfilling.
fn verify_and_start(env: &Env, request: &str) {
    for action in ["verify", "start"] {
        env.json(&["request", "update", request, "--action", action], None);
    }
}

#[test]
fn an_access_package_is_released_only_after_verification_and_never_overwritten() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Vera", "family_name": "Fied", "email": "vera@example.org", "phone": "+447911123456"}));
    let r = env.json(
        &[
            "request",
            "open",
            "--type",
            "access",
            "--subject",
            &id,
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let rid = r["id"].as_str().unwrap().to_string();
    let folder = env.tmp.path().join("pkg");
    let fulfil = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "request",
            "fulfil",
            &rid,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        env.run(&args, None)
    };
    // Before verification: refused, naming the step, and nothing written.
    let out = fulfil(&folder, &[]);
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("verif") && said.contains("--action verify"),
        "{said}"
    );
    assert!(!folder.exists(), "nothing written");
    // Verified but not started: still refused, naming the start.
    env.json(&["request", "update", &rid, "--action", "verify"], None);
    let out = fulfil(&folder, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--action start")
            || String::from_utf8_lossy(&out.stdout).contains("--action start")
    );
    env.json(&["request", "update", &rid, "--action", "start"], None);
    // Started: a private folder, the step recorded with each file's hash, the next step named.
    let out = fulfil(&folder, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["next"].as_str().unwrap().contains("--action complete"),
        "{v}"
    );
    // It names the controller and the recipients that policies/organisation.toml lists.
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("package.json")).unwrap())
            .unwrap();
    assert!(
        p["controller"]
            .as_str()
            .unwrap()
            .starts_with("Example Charity"),
        "{}",
        p["controller"]
    );
    assert!(
        p["recipients"]
            .to_string()
            .contains("HMRC (Gift Aid claims)"),
        "{}",
        p["recipients"]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        for f in ["package.json", "data.csv", "index.html"] {
            assert_eq!(mode(&folder.join(f)), 0o600, "{f}");
        }
    }
    let shown = env.json(&["request", "show", &rid], None);
    let step = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "fulfil")
        .cloned()
        .unwrap_or_else(|| panic!("no fulfil step: {shown}"));
    let produced: Vec<&str> = step["produced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(produced.len(), 3, "{step}");
    assert!(
        produced.iter().all(|p| p.contains(" sha256:")),
        "{produced:?}"
    );
    assert!(
        !shown.to_string().contains("vera@example.org"),
        "no personal value in the history"
    );
    // A second time: refused without --force, then overwritten with it.
    let out = fulfil(&folder, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--force")
            || String::from_utf8_lossy(&out.stdout).contains("--force")
    );
    assert!(fulfil(&folder, &["--force"]).status.success());
    // A .zip is a zip that ordinary tools open, 0600.
    let zip = env.tmp.path().join("pkg.zip");
    assert!(fulfil(&zip, &[]).status.success());
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile, json; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps(sorted(z.namelist()))); print(json.loads(z.read('package.json'))['data']['email'])",
            zip.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("\"data.csv\", \"index.html\", \"package.json\"")
            && text.contains("vera@example.org"),
        "{text}"
    );
    // A generated passphrase, shown once: the file decrypts with it to a zip.
    let sealed = env.tmp.path().join("pkg.zip.age");
    let out = fulfil(&sealed, &["--generate-passphrase"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pass = v["passphrase"].as_str().unwrap().to_string();
    assert_eq!(pass.len(), 29, "{pass}");
    let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(pass.clone()));
    let zip_bytes = age::decrypt(&identity, &std::fs::read(&sealed).unwrap()).unwrap();
    assert!(zip_bytes.starts_with(b"PK\x03\x04"), "a zip inside");
    // Any other .age name holds a zip too: what ordinary tools open once decrypted.
    let plain_name = env.tmp.path().join("for-the-person.age");
    let out = fulfil(&plain_name, &["--generate-passphrase", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(
        v["passphrase"].as_str().unwrap().to_string(),
    ));
    let inner = age::decrypt(&identity, &std::fs::read(&plain_name).unwrap()).unwrap();
    assert!(
        inner.starts_with(b"PK\x03\x04"),
        "a zip inside a plain .age name"
    );
    let shown = env.json(&["request", "show", &rid], None);
    assert!(
        !shown.to_string().contains(&pass),
        "the passphrase is not kept"
    );
    // An .age name without encryption is refused rather than written as a folder.
    let out = fulfil(&env.tmp.path().join("pkg.age"), &[]);
    assert!(!out.status.success());
    assert!(!env.tmp.path().join("pkg.age").exists());
}

#[test]
fn a_dpo_may_release_before_verification_only_with_a_reason_kept_in_the_history() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Otto", "email": "otto@example.org"}));
    let r = env.json(
        &[
            "request",
            "open",
            "--type",
            "access",
            "--subject",
            &id,
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let rid = r["id"].as_str().unwrap();
    let folder = env.tmp.path().join("early");
    env.json(
        &[
            "request",
            "fulfil",
            rid,
            "--out",
            folder.to_str().unwrap(),
            "--override-reason",
            "identity confirmed in person at the office, ref DPO-17",
        ],
        None,
    );
    assert!(folder.join("package.json").exists());
    let shown = env.json(&["request", "show", rid], None);
    let step = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "fulfil")
        .cloned()
        .unwrap();
    assert!(
        step["reason"]
            .as_str()
            .unwrap()
            .contains("override before verification: identity confirmed"),
        "{step}"
    );
}

#[test]
fn an_erasure_certificate_is_kept_and_printed_again_on_demand() {
    let env = Env::init();
    let id =
        env.add(&json!({"given_name": "Cert", "family_name": "Ify", "email": "cert@example.org"}));
    env.json(
        &[
            "subject",
            "recipients",
            &id,
            "--add",
            "Mailing House Ltd",
            "--purpose",
            "fundraising-post",
        ],
        None,
    );
    let first = env.json(&["subject", "erase", &id], None);
    let cert = first["certificate"].clone();
    assert!(cert["erased_at"].is_string());
    assert_eq!(
        cert["notify"][0]["recipient"], "Mailing House Ltd",
        "{cert}"
    );
    // Text mode is a document: date, what went, who to tell.
    let out = env.run(&["subject", "certificate", &id], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "ERASURE CERTIFICATE",
        "Erased at:",
        cert["erased_at"].as_str().unwrap(),
        "Mailing House Ltd",
        "Art. 19",
    ] {
        assert!(text.contains(part), "{part} missing from:\n{text}");
    }
    assert!(!text.contains("cert@example.org"), "no personal value");
    // JSON is the same certificate.
    let again = env.json(&["subject", "certificate", &id], None);
    assert_eq!(again["erased_at"], cert["erased_at"]);
    // A second erase answers with the kept certificate instead of an error.
    let second = env.json(&["subject", "erase", &id], None);
    assert_eq!(second["certificate"]["erased_at"], cert["erased_at"]);
    assert_eq!(second["certificate"]["already_erased"], true);
    // Nothing held: said as such, not "no subject".
    let out = env.run(&["subject", "held", &id], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("erased, nothing held"));
    // A subject that was never there is still not found.
    let out = env.run(
        &["subject", "certificate", "01M8TNJGPGJTAP968Z40BDN2VP"],
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn an_erasure_request_erases_only_once_verified_and_started() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Eve", "email": "eve@example.org"}));
    let r = env.json(
        &[
            "request",
            "open",
            "--type",
            "erasure",
            "--subject",
            &id,
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let rid = r["id"].as_str().unwrap().to_string();
    let out = env.run(&["request", "fulfil", &rid], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--action verify"), "{}", stderr(&out));
    assert_eq!(
        env.json(&["subject", "show", &id], None)["fields"]["given_name"],
        "Eve",
        "nothing erased on an unverified request"
    );
    verify_and_start(&env, &rid);
    let cert_file = env.tmp.path().join("certificate.json");
    let v = env.json(
        &[
            "request",
            "fulfil",
            &rid,
            "--out",
            cert_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(v["erased"], id.as_str());
    assert_eq!(
        env.run(&["subject", "show", &id], None).status.code(),
        Some(3)
    );
    let kept: Value = serde_json::from_slice(&std::fs::read(&cert_file).unwrap()).unwrap();
    assert_eq!(kept["erased_at"], v["certificate"]["erased_at"]);
    let shown = env.json(&["request", "show", &rid], None);
    let step = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "fulfil")
        .cloned()
        .unwrap();
    assert!(step["produced"][0]
        .as_str()
        .unwrap()
        .starts_with("erasure-certificate.json sha256:"));
}
