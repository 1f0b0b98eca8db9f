//! Consent over HTTP and the CLI: withdrawing is as easy as giving, segments honour the gate,
//! GPC signals are recorded, and the ledger holds no personal value.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn withdrawal_takes_the_same_call_as_consent_and_segments_follow_the_gate() {
    let env = Env::init();
    let admin = env.json(&["users", "add", "ada", "--role", "admin"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auditor = env.json(&["users", "add", "aud", "--role", "auditor"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let server = env.serve_with("warn", &["--rate-limit", "0"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let mut ids = Vec::new();
    for n in 0..4 {
        let body = json!({"given_name": format!("Qcanary{n}"), "email": format!("cnrynote{n}@example.org"), "notes": "private", "birth_date": "1950-05-05"});
        let (s, _, v) = http(
            "POST",
            &u("/v1/subjects"),
            Some(&admin),
            Some(&body.to_string()),
        );
        assert_eq!(s, 201);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let record = |id: &str, event: &str| {
        let body = json!({"purpose": "newsletter-email", "event": event, "source": "web-form", "method": "form", "notice_version": "v2"});
        http(
            "POST",
            &u(&format!("/v1/subjects/{id}/consent")),
            Some(&admin),
            Some(&body.to_string()),
        )
    };
    for id in &ids[..3] {
        assert_eq!(record(id, "given").0, 201);
    }
    // Withdrawing: the same endpoint, one step.
    let (s, _, v) = record(&ids[1], "withdrawn");
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["event"], "withdrawn");
    let (s, _, v) = http(
        "POST",
        &u(&format!("/v1/subjects/{}/consent", ids[2])),
        Some(&admin),
        Some(
            &json!({"purpose": "fundraising-post", "event": "objected", "source": "phone-call"})
                .to_string(),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {admin}"),
            &u("/v1/segments/newsletter-email"),
        ])
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], ids[0].as_str());
    assert!(lines[0].get("notes").is_none() && lines[0].get("birth_date").is_none());
    // A refused segment export is refused by the hub, with its audit event like any refusal.
    let (s, _, v) = http(
        "GET",
        &u("/v1/segments/newsletter-email"),
        Some(&auditor),
        None,
    );
    assert_eq!(s, 403, "{v}");
    // A bad `at` is a 400 with the error body, not a 200 whose stream breaks off.
    for at in ["", "yesterday"] {
        let (s, _, v) = http(
            "GET",
            &u(&format!("/v1/segments/newsletter-email?at={at}")),
            Some(&admin),
            None,
        );
        assert_eq!(s, 400, "at={at:?}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    // State and explanation.
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{}/consent", ids[2])),
        Some(&admin),
        None,
    );
    assert_eq!(v["purposes"]["newsletter-email"]["reason"], "objected");
    assert_eq!(v["purposes"]["gift-aid-claim"]["allowed"], true);
    assert_eq!(v["history"].as_array().unwrap().len(), 2);
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{}/consent/newsletter-email", ids[1])),
        Some(&admin),
        None,
    );
    assert_eq!(v["decision"]["reason"], "consent_withdrawn");
    assert_eq!(v["decision"]["deciding_event"]["source"], "web-form");
    // An auditor (who may not read subjects) sending Sec-GPC: 1 changes nothing and learns
    // nothing: 403 for a real id and for an unknown one alike.
    for target in [ids[3].as_str(), "01M8TNJGPGJTAP968Z40BDN2VP"] {
        let (s, _, v) = http_with(
            "GET",
            &u(&format!("/v1/subjects/{target}")),
            Some(&auditor),
            None,
            &["Sec-GPC: 1"],
        );
        assert_eq!(s, 403, "{target}: {v}");
    }
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{}/consent", ids[3])),
        Some(&admin),
        None,
    );
    assert!(
        !v.to_string().contains("\"gpc\""),
        "the auditor's refused read recorded a GPC opt-out: {v}"
    );
    // A read carrying Sec-GPC: 1 records an opt-out of sale/sharing, once.
    for _ in 0..2 {
        let (s, _, _) = http_with(
            "GET",
            &u(&format!("/v1/subjects/{}", ids[3])),
            Some(&admin),
            None,
            &["Sec-GPC: 1"],
        );
        assert_eq!(s, 200);
    }
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{}/consent", ids[3])),
        Some(&admin),
        None,
    );
    let gpc: Vec<&Value> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["collection_method"] == "gpc")
        .collect();
    assert_eq!(gpc.len(), 1, "{v}");
    assert_eq!(gpc[0]["purpose"], "data-sharing");
    assert_eq!(gpc[0]["event"], "withdrawn");
    // Content is refused where a reference belongs.
    let (s, _, v) = http("POST", &u(&format!("/v1/subjects/{}/consent", ids[0])), Some(&admin), Some(&json!({"purpose": "newsletter-email", "event": "given", "source": "form", "evidence": "email from cnrynote0@example.org"}).to_string()));
    assert_eq!(s, 400, "{v}");
    assert!(server.stop().success());
    let denied = env.json(
        &[
            "audit",
            "query",
            "--action",
            "export.segment",
            "--outcome",
            "denied",
        ],
        None,
    );
    assert_eq!(
        denied["items"].as_array().unwrap().len(),
        1,
        "the refused segment export is audited: {denied}"
    );
    // The CLI reads the same ledger; the explanation names the deciding event.
    let x = env.json(&["consent", "explain", &ids[2], "newsletter-email"], None);
    assert_eq!(x["decision"]["reason"], "objected");
    assert_eq!(
        x["decision"]["deciding_event"]["purpose"],
        "fundraising-post"
    );
    let out = env.run(
        &[
            "consent",
            "withdraw",
            "--subject",
            &ids[0],
            "--purpose",
            "newsletter-email",
            "--source",
            "cli",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = env.tmp.path().join("seg.csv");
    env.json(
        &[
            "export",
            "--purpose",
            "newsletter-email",
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        1,
        "header only: nobody left"
    );
    // No personal value in the ledger or anywhere in the data directory.
    let hits = find_markers(&env.data, &[], &["canary", "cnrynote"]);
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn exported_csv_cells_cannot_run_as_formulas() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "=cmd|' /C calc'!A0", "family_name": "+SUM(A1)", "email": "x@example.org"}));
    env.give_consent(&id, "newsletter-email", "form");
    let csv = env.tmp.path().join("seg.csv");
    env.json(
        &[
            "export",
            "--purpose",
            "newsletter-email",
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ],
        None,
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let row = text.lines().nth(1).unwrap();
    assert!(row.contains("'=cmd|"), "{row}");
    assert!(row.to_lowercase().contains("'+sum(a1)"), "{row}");
    assert!(
        !row.split(',')
            .any(|c| c.starts_with('=') || c.starts_with('+')),
        "{row}"
    );
}

#[test]
fn the_cli_says_how_consent_was_recorded_and_which_purposes_exist() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Cli", "email": "cli@example.org"}));
    env.json(
        &[
            "consent",
            "record",
            "--subject",
            &id,
            "--purpose",
            "newsletter-email",
            "--event",
            "given",
            "--source",
            "front-desk",
        ],
        None,
    );
    let h = env.json(&["consent", "history", "--subject", &id], None);
    assert_eq!(h["items"][0]["collection_method"], "cli", "{h}");
    // The id may be given as for `subject show ID` too.
    assert_eq!(env.json(&["consent", "history", &id], None), h);
    assert_eq!(
        env.json(&["consent", "state", &id], None)["purposes"]["newsletter-email"]["allowed"],
        true
    );
    let out = env.run(
        &[
            "consent",
            "record",
            "--subject",
            &id,
            "--purpose",
            "newsleter",
            "--event",
            "given",
            "--source",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("newsleter")
            && err.contains("newsletter-email")
            && err.contains("gift-aid-claim"),
        "{err}"
    );
    // Nothing due: said, not an empty screen.
    let out = env.run(&["request", "list", "--due-within", "7d"], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no open request is due within 7 days"));
}

#[test]
fn commands_take_the_subject_id_the_same_way_as_subject_show() {
    let env = Env::init();
    let id = env.add(&json!({"given_name": "Ann", "email": "ann@example.org"}));
    // Positional, as `subject show ID`; the flag still works.
    let recorded = env.json(
        &[
            "consent",
            "record",
            &id,
            "--purpose",
            "newsletter-email",
            "--event",
            "given",
            "--source",
            "web-form",
        ],
        None,
    );
    assert_eq!(recorded["subject"], id.as_str(), "{recorded}");
    env.json(
        &[
            "consent",
            "withdraw",
            "--subject",
            &id,
            "--purpose",
            "newsletter-email",
            "--source",
            "email-link",
        ],
        None,
    );
    let history = env.json(&["consent", "history", &id], None);
    assert_eq!(
        history["items"].as_array().map_or(0, Vec::len),
        2,
        "{history}"
    );
    let opened = env.json(
        &[
            "request",
            "open",
            &id,
            "--type",
            "access",
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    assert_eq!(opened["subject"], id.as_str(), "{opened}");
    // Both at once is refused as a usage error.
    let out = env.run(
        &[
            "request",
            "open",
            &id,
            "--subject",
            &id,
            "--type",
            "access",
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
