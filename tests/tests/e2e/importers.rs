//! Importing, from the outside: so far `steward import inspect`.

use serde_json::{json, Value};

use crate::support::*;

fn data(name: &str) -> String {
    format!(
        "{}/../importers/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn inspect(args: &[&str]) -> (Value, String) {
    let out = std::process::Command::new(binary())
        .args(["import", "inspect"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn inspect_shows_dialect_profile_and_mapping_but_never_a_value() {
    let (v, text) = inspect(&[&data("npsp_template.csv")]);
    assert_eq!(v["profile"], "npsp");
    assert_eq!(v["preamble_rows"], 4);
    let cols = v["columns"].as_array().unwrap();
    assert!(cols
        .iter()
        .any(|c| c["column"] == "Contact1 First Name" && c["target"] == "given_name"));
    assert!(cols
        .iter()
        .any(|c| c["column"] == "Contact2 First Name" && c["target"] == "contact2.given_name"));
    assert!(
        !text.contains("NPSP__CONTACT1_FIRSTNAME__C"),
        "a cell value was echoed"
    );

    let mapping = format!(
        "{}/../importers/mappings/febrl.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (v, text) = inspect(&[
        &data("febrl_sample.csv"),
        "--profile",
        "generic",
        "--mapping",
        &mapping,
        "--rows",
        "20",
    ]);
    assert_eq!(v["profile"], "generic");
    assert_eq!(v["constants"]["country"], "AU");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows
        .iter()
        .all(|r| r["fields"]["family_name"] == "ok" || r["fields"].get("family_name").is_none()));
    // The first data row of the sample: no value of it appears in the output.
    let sample = std::fs::read_to_string(data("febrl_sample.csv")).unwrap();
    let first: Vec<&str> = sample.lines().nth(1).unwrap().split(',').collect();
    for cell in first.iter().filter(|c| c.len() > 4) {
        assert!(!text.contains(cell), "value {cell:?} echoed");
    }
    // Windows-1252 is detected.
    let (v, _) = inspect(&[&data("donorperfect_windows1252.csv")]);
    assert_eq!(
        (v["encoding"].as_str(), v["profile"].as_str()),
        (Some("windows1252"), Some("donorperfect"))
    );
}

#[test]
fn inspect_reports_likely_email_domain_typos_without_fixing_or_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emails.csv");
    std::fs::write(
        &file,
        "Email Address,First Name,Last Name\n\
         ann@gmail.com,Ann,Lee\n\
         bob@gmial.com,Bob,Ray\n\
         cy@hotmail.co,Cy,Fox\n\
         di@charity.org.uk,Di,Hall\n",
    )
    .unwrap();
    let (v, text) = inspect(&[file.to_str().unwrap(), "--profile", "mailchimp"]);
    let verdicts: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fields"]["email"].as_str().unwrap_or("(missing)"))
        .collect();
    assert_eq!(
        verdicts,
        ["ok", "email_domain_typo", "email_domain_typo", "ok"]
    );
    for value in ["gmial", "hotmail.co", "bob@", "Bob"] {
        assert!(!text.contains(value), "value {value:?} echoed");
    }
}

fn fixture(path: &str) -> String {
    data(path)
}

/// Runs `steward import FILE ... --report R --json`; returns the summary and the report rows.
fn import(env: &Env, file: &str, extra: &[&str]) -> (Value, Vec<Vec<String>>) {
    let report = env.tmp.path().join(format!(
        "report-{}.csv",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut args = vec![
        "import",
        file,
        "--report",
        report.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = env.run(&args, None);
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    // Exit 0 when every row went in, 9 when some were refused (the report says which).
    let refused = v["errors"].as_u64().unwrap_or(0) > 0;
    assert_eq!(
        out.status.code(),
        Some(if refused { 9 } else { 0 }),
        "steward {args:?}: {v}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("row,outcome,subject_id,matched_subject_id,error_code")
    );
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (v, rows)
}

fn counts(v: &Value) -> [u64; 5] {
    ["rows_read", "new", "merged", "review", "errors"].map(|k| v[k].as_u64().unwrap())
}

fn show(env: &Env, id: &str) -> Value {
    env.json(&["subject", "show", id], None)
}

fn gate(env: &Env, id: &str, purpose: &str) -> (bool, String) {
    let v = env.json(&["consent", "state", "--subject", id], None);
    let p = &v["purposes"][purpose];
    (
        p["allowed"].as_bool().unwrap(),
        p["reason"].as_str().unwrap().to_string(),
    )
}

/// Every subject id, page by page.
fn all_subjects(env: &Env) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["subject", "list", "--limit", "1000"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let v = env.json(&args, None);
        let items = v["items"].as_array().unwrap();
        out.extend(items.iter().map(|i| i.as_str().unwrap().to_string()));
        match v["next"].as_str() {
            Some(n) if !items.is_empty() => after = Some(n.to_string()),
            _ => return out,
        }
    }
}

fn subject_count(env: &Env) -> usize {
    all_subjects(env).len()
}

#[test]
fn each_profile_fixture_imports_end_to_end() {
    let env = Env::init();
    // CiviCRM contacts with contributions: a duplicate (case and spaces in the email) merges,
    // an invalid email and an ambiguous birth date are row errors, gifts and opt-outs land.
    let (v, rows) = import(&env, &fixture("profiles/civicrm_contributions.csv"), &[]);
    assert_eq!(v["profile"], "civicrm");
    assert_eq!(counts(&v), [6, 3, 1, 0, 2]);
    assert_eq!(rows.len(), 6);
    let ann = rows[0][2].clone();
    assert_eq!(
        (rows[2][1].as_str(), rows[2][2].as_str()),
        ("merged", ann.as_str())
    );
    assert_eq!(
        (rows[3][1].as_str(), rows[3][4].as_str()),
        ("error", "invalid_value")
    );
    assert_eq!(
        (rows[4][1].as_str(), rows[4][4].as_str()),
        ("error", "ambiguous_date")
    );
    let a = show(&env, &ann);
    assert_eq!(
        a["fields"]["given_name"], "Ann",
        "the first spelling of the name stays"
    );
    assert_eq!(a["fields"]["postal_code"], "SW1A 1AA");
    assert_eq!(a["fields"]["country"], "GB");
    let tags: Vec<&str> = a["fields"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["Newsletter", "Major donor", "Events"] {
        assert!(tags.contains(&t), "tags are unioned: {tags:?}");
    }
    let gifts = env.json(&["subject", "gifts", &ann], None)["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(gifts.len(), 2, "both contributions of the merged rows");
    assert!(gifts
        .iter()
        .any(|g| g["fields"]["amount"] == "25.00" && g["fields"]["payment_method"] == "card"));
    // "Do Not Email" is a channel preference, not an objection to all marketing.
    assert_eq!(gate(&env, &ann, "newsletter-email").1, "consent_withdrawn");
    assert_eq!(
        gate(&env, &ann, "fundraising-post"),
        (true, "legitimate_interests".to_string())
    );
    let bob = &rows[1][2];
    assert_eq!(
        env.json(&["subject", "gifts", bob], None)["items"][0]["fields"]["amount"],
        "1250.00"
    );

    // NPSP, label row then API-name row: the same people; Contact1 and Contact2 share a
    // household; the second file changes nothing.
    let (v, rows) = import(
        &env,
        &fixture("profiles/npsp_labels.csv"),
        &["--profile", "npsp"],
    );
    assert_eq!(counts(&v), [3, 2, 1, 0, 0]);
    let tom = show(&env, &rows[0][2]);
    let household = tom["fields"]["household"].as_str().unwrap().to_string();
    assert_eq!(show(&env, &household)["kind"], "household");
    let before = subject_count(&env);
    let (v, rows2) = import(
        &env,
        &fixture("profiles/npsp_api_names.csv"),
        &["--profile", "npsp"],
    );
    assert_eq!(v["unchanged"], 3, "{v}");
    assert_eq!(
        subject_count(&env),
        before,
        "no new subject, no new household"
    );
    assert_eq!(rows2[0][2], rows[0][2]);

    // Mailchimp: OPTIN_TIME is a consent; the unsubscribed file withdraws it.
    let (v, rows) = import(&env, &fixture("profiles/mailchimp_subscribed.csv"), &[]);
    assert_eq!(
        (v["profile"].as_str(), counts(&v)),
        (Some("mailchimp"), [3, 2, 0, 0, 1])
    );
    let sam = rows[1][2].clone();
    assert!(gate(&env, &sam, "newsletter-email").0);
    let (_, rows) = import(&env, &fixture("profiles/mailchimp_unsubscribed.csv"), &[]);
    assert_eq!(
        (rows[0][1].as_str(), rows[0][2].as_str()),
        ("merged", sam.as_str())
    );
    assert_eq!(gate(&env, &sam, "newsletter-email").1, "consent_withdrawn");

    // Bloomerang, pipe-separated: communication restrictions opt out of their channels.
    let (v, rows) = import(&env, &fixture("profiles/bloomerang.csv"), &[]);
    assert_eq!(v["profile"], "bloomerang");
    assert_eq!(gate(&env, &rows[0][2], "fundraising-post").1, "opted_out");
    assert_eq!(
        gate(&env, &rows[0][2], "fundraising-phone").1,
        "consent_withdrawn"
    );

    // DonorPerfect in Windows-1252: accents decoded, two gifts of one donor, nomail.
    let (v, rows) = import(&env, &fixture("profiles/donorperfect.csv"), &[]);
    assert_eq!(
        (v["profile"].as_str(), counts(&v)),
        (Some("donorperfect"), [3, 2, 1, 0, 0])
    );
    let jose = show(&env, &rows[0][2]);
    assert_eq!(jose["fields"]["given_name"], "José");
    assert_eq!(
        env.json(&["subject", "gifts", &rows[0][2]], None)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(gate(&env, &rows[0][2], "fundraising-post").1, "opted_out");

    // A spreadsheet: the generic profile guesses the columns; a mistyped email domain is
    // reported (never fixed) and does not replace the good address.
    let (v, rows) = import(
        &env,
        &fixture("profiles/generic_spreadsheet.csv"),
        &["--profile", "generic"],
    );
    assert_eq!(counts(&v), [3, 2, 1, 0, 0]);
    assert_eq!(v["warnings"], 1);
    assert!(v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["code"] == "email_domain_typo" && p["row"] == 4));
    assert_eq!(
        show(&env, &rows[0][2])["fields"]["email"],
        "harriet.vane@example.org"
    );
}

#[test]
fn malformed_files_get_a_clear_report_and_their_good_rows_imported() {
    let env = Env::init();
    // (file, [rows, new, merged, review, errors], error rows with their codes)
    type Case<'a> = (&'a str, [u64; 5], &'a [(usize, &'a str)]);
    let cases: &[Case] = &[
        (
            "import/fail_bad_encoding.csv",
            [3, 2, 0, 0, 1],
            &[(1, "invalid_text")],
        ),
        (
            "import/fail_ragged_rows.csv",
            [5, 3, 0, 0, 2],
            &[(1, "ragged_row"), (3, "ragged_row")],
        ),
        (
            "import/fail_unbalanced_quotes.csv",
            [3, 0, 0, 0, 1],
            &[(2, "unbalanced_quote")],
        ),
        ("import/fail_header_only.csv", [0, 0, 0, 0, 0], &[]),
        ("import/fail_duplicated_header.csv", [2, 0, 0, 0, 0], &[]),
    ];
    for (file, expect, errors) in cases {
        let (v, rows) = import(&env, &fixture(file), &["--profile", "generic"]);
        if expect[0] == 0 {
            assert_eq!(v["problems"][0]["code"], "no_rows", "{file}: say it: {v}");
        }
        let mut got = counts(&v);
        // Rows of people already imported by an earlier case are merged or unchanged.
        got[1] += v["merged"].as_u64().unwrap() + v["unchanged"].as_u64().unwrap();
        got[2] = 0;
        let mut want = *expect;
        want[1] = want[0] - want[4];
        assert_eq!(got, want, "{file}: {v}");
        assert_eq!(
            rows.len() as u64,
            expect[0],
            "{file}: one report line per row"
        );
        for (i, code) in *errors {
            assert_eq!(
                (rows[*i][1].as_str(), rows[*i][4].as_str()),
                ("error", *code),
                "{file}"
            );
        }
        for r in rows.iter().filter(|r| r[1] != "error") {
            assert!(!r[2].is_empty(), "{file}: good rows are imported");
        }
    }
    // The duplicated Email column: the first one's value is kept, and it is reported.
    let (v, rows) = import(
        &env,
        &fixture("import/fail_duplicated_header.csv"),
        &["--profile", "generic", "--dry-run"],
    );
    assert!(v["problems"][0]["code"] == "duplicated_column", "{v}");
    assert!(rows.iter().all(|r| r[1] != "error"));
    // An empty file is refused with words, and nothing is written.
    let out = env.run(&["import", &fixture("import/fail_empty.csv")], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));

    // A 10 MB cell: that row is an error, the rows around it are imported.
    let big = env.tmp.path().join("big_field.csv");
    let mut text = String::from("First Name,Last Name,Notes\nAnn,Big,short\nBob,Big,\"");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    text.push_str("\"\nCy,Big,short\n");
    std::fs::write(&big, text).unwrap();
    let (v, rows) = import(&env, big.to_str().unwrap(), &["--profile", "generic"]);
    assert_eq!(counts(&v), [3, 2, 0, 0, 1], "{v}");
    assert_eq!(
        (rows[1][1].as_str(), rows[1][4].as_str()),
        ("error", "field_too_long")
    );
}

#[test]
fn reimporting_the_same_file_changes_nothing_and_dry_run_writes_nothing() {
    let env = Env::init();
    let file = fixture("profiles/civicrm_contributions.csv");
    let (dry, dry_rows) = import(&env, &file, &["--dry-run"]);
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(counts(&dry), [6, 3, 1, 0, 2]);
    assert!(dry_rows.iter().all(|r| r[1] != "new" || r[2].is_empty()));
    assert_eq!(subject_count(&env), 0, "a dry run writes nothing");
    let (first, rows) = import(&env, &file, &[]);
    let n = subject_count(&env);
    let audit_before = env.json(&["audit", "query", "--limit", "100000"], None)["items"]
        .as_array()
        .unwrap()
        .len();
    let (again, rows2) = import(&env, &file, &[]);
    assert_eq!(again["already_imported"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["unchanged"], 4);
    assert_eq!(subject_count(&env), n);
    for (a, b) in rows.iter().zip(&rows2) {
        assert_eq!(a[2], b[2], "each row traces to the same subject");
        let expected = if a[1] == "error" {
            "error"
        } else {
            "unchanged"
        };
        assert_eq!(b[1], expected, "row {} again", a[0]);
    }
    assert_eq!(rows2.len(), rows.len());
    let _ = audit_before;
    // The same rows saved with Windows line endings (and a byte-order mark) are the same
    // file: nothing new, every row unchanged.
    let crlf = env.tmp.path().join("crlf.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &crlf,
        format!(
            "\u{feff}{}",
            text.replace("\r\n", "\n").replace('\n', "\r\n")
        ),
    )
    .unwrap();
    let (v, _) = import(&env, crlf.to_str().unwrap(), &[]);
    assert_eq!(v["already_imported"], true, "{v}");
    assert_eq!(subject_count(&env), n);
    // The same people in another file (a copy with a different name and row order) match
    // the vault: nothing new.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].reverse();
    let copy = env.tmp.path().join("copy.csv");
    std::fs::write(&copy, lines.join("\n")).unwrap();
    let (v, _) = import(&env, copy.to_str().unwrap(), &[]);
    assert_eq!(v["new"], 0, "{v}");
    assert_eq!(subject_count(&env), n);
}

#[test]
fn undo_of_an_import_that_updated_subjects_restores_them_exactly() {
    let env = Env::init();
    let ann = env.add(&json!({"given_name": "Ann", "family_name": "Lee", "email": "ann.lee@example.org", "city": "London"}));
    let other =
        env.add(&json!({"given_name": "Zed", "family_name": "Zulu", "email": "zed@example.org"}));
    env.give_consent(&ann, "newsletter-email", "form-1");
    let before = show(&env, &ann);
    let history_before = env.json(&["consent", "history", "--subject", &ann], None);
    let n = subject_count(&env);
    let file = fixture("profiles/civicrm_contributions.csv");
    let (v, rows) = import(&env, &file, &[]);
    assert_eq!(
        (rows[0][1].as_str(), rows[0][2].as_str()),
        ("merged", ann.as_str()),
        "{v}"
    );
    let after = show(&env, &ann);
    assert_ne!(after["fields"], before["fields"], "the import changed Ann");
    assert_eq!(after["fields"]["city"], "London");
    assert!(subject_count(&env) > n);
    let id = v["id"].as_str().unwrap();
    env.json(&["import", "undo", id], None);
    assert_eq!(
        show(&env, &ann),
        before,
        "Ann exactly as before, version included"
    );
    assert_eq!(
        env.json(&["consent", "history", "--subject", &ann], None),
        history_before
    );
    assert!(env.json(&["subject", "gifts", &ann], None)["items"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        subject_count(&env),
        n,
        "subjects the import created are gone"
    );
    assert_eq!(show(&env, &other)["version"], 1);
    // Found again by email: the index is back as it was.
    let found = env.json(&["subject", "find", "--email", "ann.lee@example.org"], None);
    assert_eq!(found["ids"][0], json!(ann), "{found}");
    // An undone import can be run again, and undo refuses twice.
    let out = env.run(&["import", "undo", id], None);
    assert!(!out.status.success());
    let (v, _) = import(&env, &file, &[]);
    assert_ne!(v["id"].as_str().unwrap(), id);
}

#[test]
fn merge_keeps_the_most_restrictive_consent_and_both_evidence_trails() {
    let env = Env::init();
    let a =
        env.add(&json!({"given_name": "Ann", "family_name": "Lee", "email": "ann@example.org"}));
    let b = env.add(&json!({"given_name": "Anne", "family_name": "Lee", "phone": "+447700900123"}));
    // B consented, then withdrew; A's consent is the most recent event of all. Folded by
    // time alone, A's consent would win; the merge must keep B's withdrawal in force.
    env.give_consent(&b, "newsletter-email", "form-b");
    env.json(
        &[
            "consent",
            "record",
            "--subject",
            &b,
            "--purpose",
            "newsletter-email",
            "--event",
            "withdrawn",
            "--source",
            "call-b",
        ],
        None,
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    env.give_consent(&a, "newsletter-email", "form-a");
    assert!(gate(&env, &a, "newsletter-email").0);
    assert!(!gate(&env, &b, "newsletter-email").0);
    let a_before = show(&env, &a);
    let b_before = show(&env, &b);
    let explain = env.json(&["match", "explain", &a, &b], None);
    assert_eq!(explain["fields"][1]["level"], "exact", "{explain}");
    let text = env.run(&["match", "explain", &a, &b], None);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        !text.contains("Ann") && !text.contains("ann@"),
        "explain shows no value"
    );

    let m = env.json(&["merge", &a, &b], None);
    let merged = show(&env, &a);
    assert_eq!(
        merged["fields"]["phone"], "+447700900123",
        "B's phone fills A's gap"
    );
    assert_eq!(merged["fields"]["email"], "ann@example.org");
    let (allowed, _) = gate(&env, &a, "newsletter-email");
    assert!(!allowed, "the most restrictive consent wins");
    let history = env.json(&["consent", "history", "--subject", &a], None);
    let items = history["items"].as_array().unwrap();
    let sources: Vec<&str> = items
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    for s in ["form-a", "form-b", "call-b"] {
        assert!(sources.contains(&s), "evidence {s} kept: {sources:?}");
    }
    assert!(items
        .iter()
        .any(|e| e["merged_from"] == json!(b) && e["source"] == "call-b"));
    assert!(items
        .iter()
        .any(|e| e["source"].as_str().unwrap().starts_with("merge:") && e["event"] == "withdrawn"));
    let out = env.run(&["subject", "show", &b], None);
    assert!(!out.status.success(), "B is no longer a subject of its own");

    env.json(&["merge", "undo", m["id"].as_str().unwrap()], None);
    assert_eq!(show(&env, &a), a_before);
    assert_eq!(show(&env, &b), b_before);
    assert!(gate(&env, &a, "newsletter-email").0);
}

#[test]
fn review_queue_lists_accepts_and_rejects() {
    let env = Env::init();
    // Same surname and address, given names that could be one person's (an initial, a
    // typo): never merged without a person, so both pairs land in the queue. Jo and Tom
    // Reed are two people of one household: a household pair, not a review item.
    let file = env.tmp.path().join("household.csv");
    std::fs::write(
        &file,
        "First Name,Last Name,Street,Postcode,City\n\
         Tom,Reed,5 Park Lane,BS1 5TR,Bristol\n\
         T,Reed,5 Park Lane,BS1 5TR,Bristol\n\
         Jo,Reed,5 Park Lane,BS1 5TR,Bristol\n\
         Kim,Oak,1 Elm Road,LS1 4AP,Leeds\n\
         Kit,Oak,1 Elm Road,LS1 4AP,Leeds\n",
    )
    .unwrap();
    let (v, rows) = import(&env, file.to_str().unwrap(), &["--profile", "generic"]);
    assert_eq!(
        v["new"].as_u64().unwrap() + v["review"].as_u64().unwrap(),
        5,
        "{v}"
    );
    assert!(v["household_pairs"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(
        rows[2][1], "new",
        "Jo Reed is a person of her own: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r[1] == "review" && !r[3].is_empty()),
        "{rows:?}"
    );
    let all = env.json(&["review", "list"], None)["items"]
        .as_array()
        .unwrap()
        .clone();
    // Jo and Tom (or T) Reed share a house: proposed as a household, which `accept` will
    // not merge; `link` puts both in one household.
    let (households, items): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|i| i["kind"] == "household");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(!households.is_empty(), "no household proposal");
    let first = households[0]["id"].as_str().unwrap();
    assert!(!env.run(&["review", "accept", first], None).status.success());
    let linked = env.json(&["review", "link", "--all-households"], None);
    assert_eq!(
        linked["linked"].as_array().unwrap().len(),
        households.len(),
        "{linked}"
    );
    assert!(
        !env.run(&["review", "link", first], None).status.success(),
        "linked once"
    );
    let n = subject_count(&env);
    let accepted = env.json(
        &["review", "accept", items[0]["id"].as_str().unwrap()],
        None,
    );
    assert_eq!(subject_count(&env), n - 1);
    env.json(
        &["review", "reject", items[1]["id"].as_str().unwrap()],
        None,
    );
    assert!(env.json(&["review", "list"], None)["items"]
        .as_array()
        .unwrap()
        .is_empty());
    let out = env.run(
        &["review", "reject", items[1]["id"].as_str().unwrap()],
        None,
    );
    assert!(!out.status.success(), "decided once");
    env.json(&["merge", "undo", accepted["id"].as_str().unwrap()], None);
    assert_eq!(subject_count(&env), n);
    assert_eq!(
        env.json(&["review", "list"], None)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The same people again, in another order: the rejected pair is not asked again and the
    // open one is not queued twice.
    let again = env.tmp.path().join("household_again.csv");
    std::fs::write(
        &again,
        "First Name,Last Name,Street,Postcode,City\n\
         Kit,Oak,1 Elm Road,LS1 4AP,Leeds\n\
         Kim,Oak,1 Elm Road,LS1 4AP,Leeds\n\
         Jo,Reed,5 Park Lane,BS1 5TR,Bristol\n\
         Tom,Reed,5 Park Lane,BS1 5TR,Bristol\n",
    )
    .unwrap();
    import(&env, again.to_str().unwrap(), &["--profile", "generic"]);
    assert_eq!(subject_count(&env), n, "the same four people");
    assert_eq!(
        env.json(&["review", "list"], None)["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "still just the reopened pair"
    );
}

/// Polls `GET /v1/imports/{id}` until the import is no longer running; returns its view.
fn wait_for_import(base: &str, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let (s, _, v) = http("GET", &format!("{base}/v1/imports/{id}"), Some(token), None);
        assert_eq!(s, 200, "{v}");
        last = v;
        if last["status"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    last
}

#[test]
fn imports_over_http_upload_then_poll_status_and_report() {
    let env = Env::init();
    let tokens = crate::access::tokens(&env);
    let server = env.serve("warn");
    let u = |p: &str| format!("{}{p}", server.url);
    let body = std::fs::read_to_string(fixture("profiles/civicrm_contributions.csv")).unwrap();
    let (s, _, v) = http(
        "POST",
        &u("/v1/imports?profile=civicrm&name=civicrm.csv"),
        Some(&tokens["data-manager"]),
        Some(&body),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["import_id"].as_str().unwrap().to_string();
    let last = wait_for_import(&server.url, &tokens["data-manager"], &id);
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["import"]["new"], 3);
    let report = last["report"].as_array().unwrap();
    assert_eq!(report.len(), 6);
    assert_eq!(report[3]["error_code"], "invalid_value");
    assert!(
        !last.to_string().contains("ann.lee"),
        "no value in the status"
    );
    let (s, _, _) = http(
        "GET",
        &u(&format!("/v1/imports/{id}")),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(s, 403);

    // A mapping file uploaded by name, then named by an import.
    let mapping = std::fs::read_to_string(format!(
        "{}/../importers/mappings/febrl.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let put = |name: &str, token: &str, text: &str| {
        http(
            "PUT",
            &u(&format!("/v1/mappings/{name}")),
            Some(token),
            Some(text),
        )
    };
    let (s, _, v) = put("febrl", &tokens["data-manager"], &mapping);
    assert_eq!(s, 204, "{v}");
    let (s, _, v) = put("febrl", &tokens["volunteer"], &mapping);
    assert_eq!(s, 403, "{v}");
    // A broken mapping is refused with where it is wrong, and the stored one stays.
    let (s, _, v) = put("febrl", &tokens["data-manager"], "[columns\ngiven_name = ");
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("mapping"),
        "{v}"
    );
    let (s, _, v) = put("no.dots", &tokens["admin"], &mapping);
    assert_eq!(s, 400, "{v}");
    let (s, _, v) = http("GET", &u("/v1/mappings"), Some(&tokens["admin"]), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["names"], json!(["febrl"]));
    let febrl = std::fs::read_to_string(fixture("febrl_sample.csv")).unwrap();
    let (s, _, v) = http(
        "POST",
        &u("/v1/imports?profile=generic&mapping=febrl&dry_run=true"),
        Some(&tokens["admin"]),
        Some(&febrl),
    );
    assert_eq!(s, 202, "{v}");
    let id = v["import_id"].as_str().unwrap().to_string();
    let last = wait_for_import(&server.url, &tokens["admin"], &id);
    assert_eq!(last["status"], "dry_run", "{last}");
    assert_eq!(last["import"]["errors"], 0, "the mapping was used: {last}");
    assert!(last["import"]["merged"].as_u64().unwrap() > 0, "{last}");
    let (s, _, v) = http(
        "POST",
        &u("/v1/imports?mapping=..%2Fetc%2Fpasswd"),
        Some(&tokens["admin"]),
        Some("a,b\n1,2\n"),
    );
    assert_eq!(s, 400, "{v}");
    assert!(server.stop().success());
}

/// A synthetic donor file of `n` rows, about one in ten repeating an earlier person.
fn donor_file(path: &std::path::Path, n: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    synth::donor_file(n, 0.1, 7, &mut out, &mut std::io::sink()).unwrap();
}

/// Which rows share a subject: the partition of row numbers, independent of the ids.
fn partition(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows {
        groups.entry(r[2].clone()).or_default().push(r[0].clone());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().collect();
    out.sort();
    out
}

#[test]
fn an_import_killed_at_any_point_finishes_on_rerun_with_no_row_lost_or_doubled() {
    let reference = Env::init();
    let file = reference.tmp.path().join("donors.csv");
    donor_file(&file, 30_000);
    let file = file.to_str().unwrap().to_string();
    let (v, expected) = import(&reference, &file, &["--profile", "generic"]);
    assert_eq!(v["rows_read"], 30_000);
    assert!(v["batches"].as_u64().unwrap() >= 5, "{v}");
    let expected_subjects = subject_count(&reference);

    let env = Env::init();
    // Kill (SIGKILL, no cleanup of any kind) at chosen points, known from the progress lines
    // the import prints: while matching (nothing written yet), then after the first, the
    // third and the fifth written batch (each run resumes where the last one stopped).
    let mut interrupted_mid_write = 0;
    for (stage, batches) in [("match", 0u64), ("write", 1), ("write", 3), ("write", 5)] {
        use std::io::BufRead;
        let mut child = env
            .cmd(&[
                "import",
                &file,
                "--profile",
                "generic",
                "--json",
                "--progress-lines",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = 0;
        for line in lines.lines() {
            let line = line.unwrap();
            if line.starts_with(&format!("progress stage={stage} ")) {
                seen += 1;
                if seen > batches.saturating_sub(1) as usize || stage == "match" {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let list = env.json(&["import", "list"], None);
        if let Some(i) = list["imports"].as_array().unwrap().first() {
            let (done, all) = (
                i["batches_done"].as_u64().unwrap(),
                i["batches"].as_u64().unwrap(),
            );
            if i["status"] == "running" && done > 0 && done < all {
                interrupted_mid_write += 1;
            }
        }
    }
    assert!(
        interrupted_mid_write >= 2,
        "kills did not land while batches were being written ({interrupted_mid_write})"
    );
    let (v, rows) = import(&env, &file, &["--profile", "generic"]);
    assert_eq!(v["status"], "completed");
    assert_eq!(rows.len(), 30_000, "every row reported once");
    assert_eq!(
        subject_count(&env),
        expected_subjects,
        "no subject lost or doubled"
    );
    assert_eq!(
        partition(&rows),
        partition(&expected),
        "the same rows end up together"
    );
    let listed = all_subjects(&env);
    let reported: std::collections::BTreeSet<String> = rows.iter().map(|r| r[2].clone()).collect();
    assert!(
        listed == reported,
        "every subject is a reported row's, and every row's subject exists ({} listed, {} reported)",
        listed.len(),
        reported.len()
    );
    // And once more: nothing to do.
    let (again, _) = import(&env, &file, &["--profile", "generic"]);
    assert_eq!(again["already_imported"], true);
    assert_eq!(subject_count(&env), expected_subjects);
}

#[test]
fn contact2_is_matched_within_the_household_of_contact1() {
    let env = Env::init();
    let (_, rows) = import(
        &env,
        &fixture("profiles/npsp_labels.csv"),
        &["--profile", "npsp"],
    );
    let tom = rows[0][2].clone();
    let household = show(&env, &tom)["fields"]["household"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone outside the Reeds' household with the email the next row gives Contact2.
    let ann = env
        .add(&json!({"given_name": "Ann", "family_name": "Lee", "email": "ann.lee@example.org"}));
    let file = env.tmp.path().join("npsp_more.csv");
    std::fs::write(
        &file,
        "Contact1 First Name,Contact1 Last Name,Contact1 Personal Email,Contact2 First Name,Contact2 Last Name,Contact2 Personal Email,Home Street,Home City,Home Zip/Postal Code\n\
         Tom,Reed,tom.reed@example.org,Ann,Lee,ann.lee@example.org,5 Park Lane,Bristol,BS1 5TR\n",
    )
    .unwrap();
    let before = subject_count(&env);
    let (_, rows) = import(&env, file.to_str().unwrap(), &["--profile", "npsp"]);
    assert_eq!(rows[0][2], tom, "Contact1 is Tom, in his household");
    assert_eq!(
        show(&env, &ann)["version"],
        1,
        "the Ann outside the household is untouched"
    );
    assert_eq!(
        subject_count(&env),
        before + 1,
        "Contact2 is a new person in the household"
    );
    let items = env.json(&["review", "list"], None)["items"]
        .as_array()
        .unwrap()
        .clone();
    let item = items
        .iter()
        .find(|i| i["a"] == json!(ann))
        .expect("a review item beside Ann");
    let new_c2 = item["b"].as_str().unwrap();
    assert_eq!(show(&env, new_c2)["fields"]["household"], json!(household));
}

#[test]
fn match_reindex_reads_every_subject_and_is_refused_to_a_volunteer() {
    let env = Env::init();
    env.add(&json!({"given_name": "Ann", "family_name": "Lee", "postal_code": "SW1A 1AA"}));
    env.add(&json!({"given_name": "Bob", "family_name": "Tan"}));
    assert_eq!(env.json(&["match", "reindex"], None)["subjects"], 2);
    let token = env.json(&["users", "add", "vol", "--role", "volunteer"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.run(&["match", "reindex", "--token", &token], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("may not"), "{}", stderr(&out));
}

/// A CiviCRM contributions row for person `i`: found again by email, a gift `tx`, and "Do
/// Not Email" (an objection to the newsletter).
fn civicrm_row(i: usize, tx: &str, do_not_phone: u8) -> String {
    // Family names from letters only, one per person.
    let mut family = String::from("Fam");
    let mut n = i;
    for _ in 0..3 {
        family.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    format!(
        "{},Individual,Ann,,{family},,,,,,,,,p{i}@example.org,1,{do_not_phone},0,0,0,,,,,,Donation,2024-01-01,10.00,Credit Card,{tx},Completed,,",
        1000 + i
    )
}

#[test]
fn rows_merging_into_subjects_of_the_batch_before_keep_every_gift_and_consent_event() {
    // Batches are prepared while the one before is still being written: rows of the second
    // batch merge into subjects the first creates, repeat its gifts (one gift each, not two)
    // and repeat its consent event (recorded once); a third batch adds consent events
    // (numbered after the first batch's).
    let env = Env::init();
    // One write batch of people (hub::BATCH_ROWS), twice, then 200 of them again.
    let people = 4096;
    let header = std::fs::read_to_string(fixture("profiles/civicrm_contributions.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut text = header + "\n";
    for i in 0..people {
        text += &civicrm_row(i, &format!("TX-A{i}"), 0);
        text.push('\n');
    }
    for i in 0..people {
        text += &civicrm_row(i, &format!("TX-A{i}"), 0);
        text.push('\n');
    }
    for i in 0..200 {
        text += &civicrm_row(i, &format!("TX-B{i}"), 1);
        text.push('\n');
    }
    let file = env.tmp.path().join("contributions.csv");
    std::fs::write(&file, text).unwrap();
    let (v, rows) = import(&env, file.to_str().unwrap(), &["--profile", "civicrm"]);
    assert_eq!(v["status"], "completed", "{v}");
    assert!(v["batches"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    // Every row of person i is one subject.
    let mut subject_of = vec![String::new(); people];
    for (n, r) in rows.iter().enumerate() {
        let i = n % people;
        if subject_of[i].is_empty() {
            subject_of[i] = r[2].clone();
        }
        assert_eq!(r[2], subject_of[i], "row {} of person {i}", r[0]);
    }
    assert_eq!(subject_count(&env), people);
    for i in [0, 1, 199, 200, people / 2, people - 1] {
        let id = &subject_of[i];
        let gifts = env.json(&["subject", "gifts", id], None);
        let expected_gifts = if i < 200 { 2 } else { 1 };
        assert_eq!(
            gifts["items"].as_array().unwrap().len(),
            expected_gifts,
            "person {i}: {gifts}"
        );
        let history = env.json(&["consent", "history", "--subject", id], None);
        // "Do Not Email" on every row of a person is one event; the third batch's
        // "Do Not Phone" is numbered after it.
        let expected_events = if i < 200 { 2 } else { 1 };
        assert_eq!(
            history["items"].as_array().unwrap().len(),
            expected_events,
            "person {i}: {history}"
        );
        assert!(!gate(&env, id, "newsletter-email").0);
    }
    // And undo takes all of it back.
    env.json(&["import", "undo", v["id"].as_str().unwrap()], None);
    assert_eq!(subject_count(&env), 0);
}

/// Rows grouped by the subject they became: a wrong merge is a group holding two people.
fn people_per_subject(
    rows: &[Vec<String>],
    entity: &std::collections::HashMap<u64, (u64, u64)>,
    offset: u64,
    groups: &mut std::collections::HashMap<String, Vec<(u64, u64, u64)>>,
) {
    for r in rows {
        if r[2].is_empty() {
            continue;
        }
        let row: u64 = r[0].parse().unwrap();
        let (person, household) = entity[&(row + offset)];
        groups
            .entry(r[2].clone())
            .or_default()
            .push((row + offset, person, household));
    }
}

#[test]
fn households_twins_and_namesakes_are_never_merged() {
    // 10,000 rows of the adversarial generator (households sharing an address, a landline
    // and sometimes one email; twins; strangers of one name; nicknames, typos, people who
    // moved), then a second system's export of 30% of them with US dates into the same vault.
    let env = Env::init();
    let (mut file, mut truth) = (Vec::new(), Vec::new());
    let stats = synth::household_file(10_000, 0.1, 7, &mut file, &mut truth).unwrap();
    let (first, first_truth) = (
        String::from_utf8(file).unwrap(),
        String::from_utf8(truth).unwrap(),
    );
    let (mut second, mut second_truth) = (Vec::new(), Vec::new());
    let second_rows =
        synth::second_export(&first, &first_truth, 0.3, 7, &mut second, &mut second_truth).unwrap();
    let dir = env.tmp.path();
    std::fs::write(dir.join("donors.csv"), &first).unwrap();
    std::fs::write(dir.join("second.csv"), &second).unwrap();
    std::fs::write(dir.join("second.toml"), synth::SECOND_MAPPING).unwrap();
    // row -> (person, household); the second file's rows numbered after the first's.
    let mut entity = std::collections::HashMap::new();
    let offset = 10_000u64;
    for (text, add) in [
        (first_truth.as_str(), 0),
        (std::str::from_utf8(&second_truth).unwrap(), offset),
    ] {
        for line in text.lines().skip(1) {
            let v: Vec<u64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            entity.insert(v[0] + add, (v[1], v[2]));
        }
    }
    let (v1, rows1) = import(
        &env,
        dir.join("donors.csv").to_str().unwrap(),
        &["--profile", "generic"],
    );
    let map = dir.join("second.toml");
    let (v2, rows2) = import(
        &env,
        dir.join("second.csv").to_str().unwrap(),
        &["--profile", "generic", "--mapping", map.to_str().unwrap()],
    );
    assert_eq!(rows2.len(), second_rows);
    // The US dates are read month-first, as the column's own values (10/13/1965) show.
    let dates = v2["date_columns"].as_array().unwrap();
    assert_eq!(dates.len(), 1, "{v2}");
    assert_eq!(dates[0]["order"], "month-first", "{v2}");
    assert_eq!(dates[0]["decided_by"], "file", "{v2}");
    assert!(v2["errors"].as_u64().unwrap() <= 5, "{v2}");
    let mut groups = std::collections::HashMap::new();
    people_per_subject(&rows1, &entity, 0, &mut groups);
    people_per_subject(&rows2, &entity, offset, &mut groups);
    let mut merged_pairs = 0u64;
    for (subject, members) in &groups {
        let people: std::collections::BTreeSet<u64> = members.iter().map(|m| m.1).collect();
        assert_eq!(
            people.len(),
            1,
            "subject {subject} holds rows of {} people: {members:?}",
            people.len()
        );
        merged_pairs += (members.len() * (members.len() - 1) / 2) as u64;
    }
    // And it still finds most duplicates: the rows of one person that became one subject.
    let mut per_person: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for (person, _) in entity.values() {
        *per_person.entry(*person).or_default() += 1;
    }
    let true_pairs: u64 = per_person.values().map(|k| k * (k - 1) / 2).sum();
    let recall = merged_pairs as f64 / true_pairs as f64;
    assert!(recall > 0.85, "recall {recall:.3}; {v1}");
    // The file holds the hard cases this is about.
    assert!(stats.shared_households > 1_000 && stats.twins > 10 && stats.namesakes > 100);
}

#[test]
fn a_rows_country_decides_the_region_of_its_phone_numbers() {
    // Default region GB; the mapping says the file is Australian, and one row's own country
    // column says New Zealand.
    let env = Env::init();
    let map = env.tmp.path().join("au.toml");
    std::fs::write(
        &map,
        "[columns]\nfirst = \"given_name\"\nlast = \"family_name\"\nemail = \"email\"\n\
         phone = \"phone\"\nland = \"country\"\n[constants]\ncountry = \"AU\"\n",
    )
    .unwrap();
    let file = env.tmp.path().join("au.csv");
    std::fs::write(
        &file,
        "first,last,email,phone,land\n\
         Ava,Kestrel,ava@example.org,0412 345 678,\n\
         Nia,Tane,nia@example.org,021 123 4567,NZ\n\
         Uma,Reed,uma@example.org,+44 7700 900123,\n",
    )
    .unwrap();
    let (v, rows) = import(
        &env,
        file.to_str().unwrap(),
        &["--profile", "generic", "--mapping", map.to_str().unwrap()],
    );
    assert_eq!(v["errors"], 0, "{v}");
    let phone = |row: usize| show(&env, &rows[row][2])["fields"]["phone"].clone();
    assert_eq!(phone(0), "+61412345678");
    assert_eq!(phone(1), "+64211234567");
    assert_eq!(
        phone(2),
        "+447700900123",
        "a number with its country code stays"
    );
    // inspect says which region each number is read in.
    let (v, text) = inspect(&[
        file.to_str().unwrap(),
        "--profile",
        "generic",
        "--mapping",
        map.to_str().unwrap(),
    ]);
    let regions: Vec<&Value> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["phone_regions"]["phone"])
        .collect();
    assert_eq!(
        regions,
        [
            &json!("AU (the row's country)"),
            &json!("NZ (the row's country)"),
            &json!("own country code")
        ],
        "{v}"
    );
    assert!(!text.contains("0412"), "a value was echoed");
    // Without a country, an Australian mobile read as British is a number nobody uses there:
    // it is imported as written and the column is named in a warning.
    let bare = env.tmp.path().join("bare.csv");
    std::fs::write(
        &bare,
        "First Name,Last Name,Email,Phone
Zoe,Quill,zoe@example.org,0412 345 679
         Yan,Pike,yan@example.org,07911 123456
",
    )
    .unwrap();
    let (v, _) = import(&env, bare.to_str().unwrap(), &["--profile", "generic"]);
    let unsure: Vec<&Value> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["code"] == "phone_region_unsure")
        .collect();
    assert_eq!(unsure.len(), 1, "{v}");
    assert_eq!(
        (&unsure[0]["row"], &unsure[0]["column"]),
        (&json!(2), &json!("Phone"))
    );
    assert!(unsure[0]["message"].as_str().unwrap().contains("AU"));
    let (v, _) = inspect(&[bare.to_str().unwrap(), "--profile", "generic"]);
    assert_eq!(
        v["rows"][0]["fields"]["phone"], "phone_region_unsure",
        "{v}"
    );
    assert_eq!(v["rows"][1]["fields"]["phone"], "ok", "{v}");
}

#[test]
fn an_import_refusing_most_of_its_rows_writes_nothing_unless_told() {
    let env = Env::init();
    let file = env.tmp.path().join("mostly_bad.csv");
    let mut text = String::from("First Name,Last Name,Email\n");
    for i in 0..10 {
        let email = if i < 6 {
            "broken@".to_string()
        } else {
            format!("ok{i}@example.org")
        };
        text.push_str(&format!("Name{i},Family{i},{email}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    let out = env.run(&["import", path, "--profile", "generic", "--json"], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let said = format!("{err} {}", stderr(&out));
    assert!(
        said.contains("6 of 10 rows") && said.contains("--accept-errors"),
        "{said}"
    );
    assert_eq!(subject_count(&env), 0, "nothing was written");
    // Told to, it imports the four good rows and exits 9: some rows were refused.
    let (v, rows) = import(&env, path, &["--profile", "generic", "--accept-errors"]);
    assert_eq!(
        (v["new"].as_u64(), v["errors"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(rows.len(), 10);
    assert_eq!(subject_count(&env), 4);
}

#[test]
fn columns_an_import_did_not_use_are_named() {
    let env = Env::init();
    let file = env.tmp.path().join("extra.csv");
    std::fs::write(
        &file,
        "First Name,Last Name,Email,Shoe Size\nAda,Byron,ada@example.org,5\n",
    )
    .unwrap();
    let (v, _) = import(&env, file.to_str().unwrap(), &["--profile", "generic"]);
    assert_eq!(v["unmapped_columns"], json!(["Shoe Size"]), "{v}");
    let out = env.run(&["import", "show", v["id"].as_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Shoe Size"));
    // CiviCRM's State goes to the region field.
    let civi = env.tmp.path().join("civi.csv");
    std::fs::write(
        &civi,
        "Contact ID,First Name,Last Name,Email,State,Postal Code\n7,Cy,Dee,cy@example.org,Ontario,K1A 0B1\n",
    )
    .unwrap();
    let (v, rows) = import(&env, civi.to_str().unwrap(), &["--profile", "civicrm"]);
    assert_eq!(v["unmapped_columns"], json!([]), "{v}");
    assert_eq!(show(&env, &rows[0][2])["fields"]["region"], "Ontario");
}

#[test]
fn consent_columns_mean_what_they_say_under_the_organisations_law_and_once() {
    let env = Env::init();
    // An Australian organisation.
    let org = env.data.join("policies/organisation.toml");
    let text = std::fs::read_to_string(&org).unwrap();
    std::fs::write(
        &org,
        text.replace(
            "jurisdiction = \"uk-gdpr\"",
            "jurisdiction = \"au-privacy-act\"",
        ),
    )
    .unwrap();
    // CiviCRM: each "Do Not" column is its own channel; "Do Not Trade" is sharing.
    let civi = env.tmp.path().join("civi.csv");
    std::fs::write(
        &civi,
        "Contact ID,First Name,Last Name,Email,Do Not Email,Do Not Phone,Do Not Mail,Do Not Sms,Do Not Trade\n\
         1,Ann,Lee,ann@example.org,1,0,0,0,0\n\
         2,Bob,Tan,bob@example.org,0,1,0,0,1\n",
    )
    .unwrap();
    let (v, rows) = import(&env, civi.to_str().unwrap(), &["--profile", "civicrm"]);
    assert_eq!(v["new"], 2, "{v}");
    let (ann, bob) = (rows[0][2].clone(), rows[1][2].clone());
    assert_eq!(gate(&env, &ann, "newsletter-email").1, "consent_withdrawn");
    assert!(
        gate(&env, &ann, "fundraising-post").0,
        "no email is not no post"
    );
    assert_eq!(gate(&env, &bob, "fundraising-phone").1, "consent_withdrawn");
    assert!(gate(&env, &bob, "fundraising-post").0);
    assert_eq!(gate(&env, &bob, "data-sharing").1, "consent_withdrawn");
    let history = env.json(&["consent", "history", "--subject", &ann], None);
    let events = history["items"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["jurisdiction"] == "au-privacy-act"),
        "{history}"
    );

    // A mapping may name the law its file's consents were collected under.
    let map = env.tmp.path().join("ca.toml");
    std::fs::write(
        &map,
        "jurisdiction = \"ccpa\"\n[columns]\nfirst = \"given_name\"\nlast = \"family_name\"\n\
         email = \"email\"\noptin = { to = \"consent\", purpose = \"newsletter-email\", event = \"given\" }\n",
    )
    .unwrap();
    // Two rows of one person carrying the same opt-in: one event.
    let file = env.tmp.path().join("ca.csv");
    std::fs::write(
        &file,
        "first,last,email,optin\n\
         Cy,Dee,cy@example.org,2024-03-01 10:00:00\n\
         Cy,Dee,cy@example.org,2024-03-01 10:00:00\n",
    )
    .unwrap();
    let (v, rows) = import(
        &env,
        file.to_str().unwrap(),
        &["--profile", "generic", "--mapping", map.to_str().unwrap()],
    );
    assert_eq!(
        (v["new"].as_u64(), v["merged"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let history = env.json(&["consent", "history", "--subject", &rows[0][2]], None);
    let events = history["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(events[0]["jurisdiction"], "ccpa");
    // The same file again, as another import: still one event.
    let again = env.tmp.path().join("ca2.csv");
    std::fs::write(
        &again,
        "first,last,email,optin\nCy,Dee,cy@example.org,2024-03-01 10:00:00\n",
    )
    .unwrap();
    import(
        &env,
        again.to_str().unwrap(),
        &["--profile", "generic", "--mapping", map.to_str().unwrap()],
    );
    let history = env.json(&["consent", "history", "--subject", &rows[0][2]], None);
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
}

#[test]
fn a_mailchimp_address_is_split_and_never_replaces_a_more_complete_one() {
    let env = Env::init();
    let civi = env.tmp.path().join("civi.csv");
    std::fs::write(
        &civi,
        "Contact ID,First Name,Last Name,Email,Street Address,City,State,Postal Code,Country\n\
         1,Ann,Lee,ann@example.org,1 High Street,Bath,Somerset,BA1 1AA,GB\n\
         2,Bob,Tan,bob@example.org,2 Low Road,Leeds,Yorkshire,LS1 1AA,GB\n",
    )
    .unwrap();
    let (_, rows) = import(&env, civi.to_str().unwrap(), &["--profile", "civicrm"]);
    let (ann, bob) = (rows[0][2].clone(), rows[1][2].clone());
    // Mailchimp: Ann's address as one cell (a bare street, less complete than what is
    // stored); Bob's with all its parts and a second line; a new person's.
    let mc = env.tmp.path().join("mailchimp.csv");
    std::fs::write(
        &mc,
        "Email Address,First Name,Last Name,Address,OPTIN_TIME\n\
         ann@example.org,Ann,Lee,1 High St,2024-01-01 10:00:00\n\
         bob@example.org,Bob,Tan,2 Low Road  Flat 3  Leeds  West Yorkshire  LS1 1AA  United Kingdom,2024-01-01 10:00:00\n\
         cy@example.org,Cy,Dee,512 Means St.  Suite 400  Atlanta  GA  30318  USA,2024-01-01 10:00:00\n\
         di@example.org,Di,Fox,somewhere  odd,2024-01-01 10:00:00\n",
    )
    .unwrap();
    let (v, rows) = import(&env, mc.to_str().unwrap(), &[]);
    assert_eq!(v["profile"], "mailchimp");
    assert_eq!(rows[0][2], ann);
    assert_eq!(rows[1][2], bob, "{rows:?}");
    let a = show(&env, &ann)["fields"].clone();
    assert_eq!(
        (
            &a["street"],
            &a["city"],
            &a["region"],
            &a["postal_code"],
            &a["country"]
        ),
        (
            &json!("1 High Street"),
            &json!("Bath"),
            &json!("Somerset"),
            &json!("BA1 1AA"),
            &json!("GB")
        ),
        "the structured address stays: {a}"
    );
    let b = show(&env, &bob)["fields"].clone();
    assert_eq!(
        (
            &b["street"],
            &b["street2"],
            &b["region"],
            &b["postal_code"],
            &b["country"]
        ),
        (
            &json!("2 Low Road"),
            &json!("Flat 3"),
            &json!("West Yorkshire"),
            &json!("LS1 1AA"),
            &json!("GB")
        ),
        "an address as complete moves as a whole: {b}"
    );
    let c = show(&env, &rows[2][2])["fields"].clone();
    assert_eq!(
        (
            &c["street"],
            &c["street2"],
            &c["city"],
            &c["region"],
            &c["postal_code"],
            &c["country"]
        ),
        (
            &json!("512 Means St."),
            &json!("Suite 400"),
            &json!("Atlanta"),
            &json!("GA"),
            &json!("30318"),
            &json!("US")
        ),
        "{c}"
    );
    // One that cannot be split is kept whole, with a warning naming the column.
    assert_eq!(
        show(&env, &rows[3][2])["fields"]["street"],
        "somewhere  odd"
    );
    let warned = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["code"] == "address_not_split" && p["column"] == "Address" && p["row"] == 5);
    assert!(warned, "{v}");
}

#[test]
fn damaged_files_account_for_every_row() {
    let dir = data("damaged");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/expected.json")).unwrap())
            .unwrap();
    let cases = expected.as_object().unwrap();
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(on_disk, cases.len(), "every file has its expected report");
    for (name, want) in cases.iter().filter(|(k, _)| !k.starts_with('_')) {
        let env = Env::init();
        let file = format!("{dir}/{name}");
        if name.starts_with("fail_") {
            // Refused whole: nothing written, and the refusal says how to go on.
            let out = env.run(&["import", &file, "--profile", "generic", "--json"], None);
            assert_eq!(out.status.code(), Some(4), "{name}: {}", stderr(&out));
            assert_eq!(subject_count(&env), 0, "{name}: nothing written");
        }
        let (v, rows) = import(&env, &file, &["--profile", "generic", "--accept-errors"]);
        let read = want["rows_read"].as_u64().unwrap();
        assert_eq!(v["rows_read"], read, "{name}: {v}");
        assert_eq!(rows.len() as u64, read, "{name}: one report line per row");
        let problems = v["problems"].as_array().unwrap();
        let refused: Vec<(u64, &str, Option<&str>)> = problems
            .iter()
            .filter(|p| p["severity"] == "error")
            .map(|p| {
                (
                    p["row"].as_u64().unwrap(),
                    p["code"].as_str().unwrap(),
                    p["column"].as_str(),
                )
            })
            .collect();
        match &want["errors"] {
            Value::String(all) if all == "all" => {
                assert_eq!(v["errors"], read, "{name}: {v}");
            }
            list => {
                let list: Vec<(u64, &str, Option<&str>)> = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        (
                            e[0].as_u64().unwrap(),
                            e[1].as_str().unwrap(),
                            e[2].as_str(),
                        )
                    })
                    .collect();
                assert_eq!(refused, list, "{name}: {v}");
                assert_eq!(v["errors"], list.len(), "{name}");
            }
        }
        // Every row is accounted for: refused ones by code, the rest in a subject.
        for r in &rows {
            if r[1] == "error" {
                assert!(!r[4].is_empty(), "{name}: row {} has a code", r[0]);
            } else {
                assert!(!r[2].is_empty(), "{name}: row {} imported", r[0]);
            }
        }
        if let Some(w) = want.get("warning") {
            assert!(problems.iter().any(|p| &p["code"] == w), "{name}: {v}");
        }
        // Valid accented names are kept exactly, whatever else the file holds.
        if *name == "invalid_utf8_byte.csv" {
            let row = rows.iter().find(|r| r[0] == "2").unwrap();
            let f = show(&env, &row[2])["fields"].clone();
            assert_eq!(
                (&f["given_name"], &f["family_name"]),
                (&json!("José"), &json!("Núñez0"))
            );
        }
        if *name == "nul_byte.csv" || *name == "bom_mid_file.csv" {
            for r in rows.iter().filter(|r| r[1] != "error") {
                let f = show(&env, &r[2])["fields"].clone();
                for v in f.as_object().unwrap().values().filter_map(Value::as_str) {
                    assert!(
                        !v.contains(['\u{0}', '\u{feff}']),
                        "{name}: row {}: {v:?}",
                        r[0]
                    );
                }
            }
        }
    }
}

#[test]
fn explain_says_a_typo_at_home_with_the_birth_date_merges_and_twins_do_not() {
    let env = Env::init();
    let person = |given: &str| {
        env.add(
            &json!({"given_name": given, "family_name": "Smith", "birth_date": "2005-01-27",
            "street": "130 The Green", "city": "Bristol", "postal_code": "BS8 8HW"}),
        )
    };
    let (jon, john, jack) = (person("Jon"), person("John"), person("Jack"));
    let explain = |a: &str, b: &str| env.json(&["match", "explain", a, b], None);
    let typo = explain(&jon, &john);
    assert_eq!(typo["decision"], "merge", "{typo}");
    // John and Jack, born the same day at one house: twins may be named so.
    let twins = explain(&john, &jack);
    assert_ne!(twins["decision"], "merge", "{twins}");
}

#[test]
fn undoing_an_import_takes_the_interactions_of_the_subjects_it_created() {
    let env = Env::init();
    let (v, rows) = import(&env, &fixture("profiles/civicrm_contributions.csv"), &[]);
    let created = rows
        .iter()
        .find(|r| r[1] == "new")
        .map(|r| r[2].clone())
        .expect("the import created a subject");
    let iid = env.json(
        &["interaction", "add", "--subject", &created],
        Some(&json!({"kind": "call"}).to_string()),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.json(&["import", "undo", v["id"].as_str().unwrap()], None);
    let out = env.run(&["interaction", "show", &iid, "--json"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}
