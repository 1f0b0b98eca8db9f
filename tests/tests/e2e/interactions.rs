//! Interactions and donor analytics through the real binary and the real server: field
//! groups per role, one copy per participant, erasure, If-Match, the timeline, and the FEP
//! table of a gift history worked out by hand, with an objection left out and small cells
//! suppressed for a volunteer.

use serde_json::{json, Value};

use crate::access::tokens;
use crate::support::*;

fn interaction_list(env: &Env, subject: &str, token: Option<&str>) -> Value {
    let mut args = vec!["interaction", "list", "--subject", subject];
    if let Some(t) = token {
        args.extend(["--token", t]);
    }
    env.json(&args, None)
}

#[test]
fn interactions_are_sealed_per_participant_read_by_group_and_erased_with_one_participant() {
    let env = Env::init();
    let tokens = tokens(&env);
    let a = env.add(&json!({"given_name": "Ines", "family_name": "Marlow"}));
    let b = env.add(&json!({"given_name": "Tom", "family_name": "Marlow"}));
    let meeting = json!({"kind": "meeting", "direction": "inbound", "channel": "in_person",
        "occurred_at": "2026-03-01T10:00:00Z", "duration_minutes": 45,
        "summary": "Talked about a legacy gift CANARYSUMMARY",
        "details": "Mentioned a hospital stay CANARYDETAILS"});
    let v = env.json(
        &["interaction", "add", "--subject", &a, "--subject", &b],
        Some(&meeting.to_string()),
    );
    let iid = v["id"].as_str().unwrap().to_string();

    // Each role reads the groups it may: a volunteer that it happened, a fundraiser what it
    // was about, the DPO the special-category details too.
    let vol = interaction_list(&env, &a, Some(&tokens["volunteer"]));
    let item = &vol["items"][0];
    assert_eq!(item["fields"]["kind"], "meeting", "{vol}");
    assert_eq!(item["fields"]["occurred_at"], "2026-03-01T10:00:00Z");
    assert!(item["fields"].get("summary").is_none(), "{vol}");
    let withheld: Vec<&str> = item["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        withheld.contains(&"summary") && withheld.contains(&"details"),
        "{vol}"
    );
    let fr = interaction_list(&env, &a, Some(&tokens["fundraiser"]));
    assert!(fr["items"][0]["fields"]["summary"]
        .as_str()
        .unwrap()
        .contains("CANARYSUMMARY"));
    assert!(fr["items"][0]["fields"].get("details").is_none(), "{fr}");
    assert_eq!(fr["items"][0]["fields"]["duration_minutes"], 45);
    let dpo = interaction_list(&env, &b, Some(&tokens["dpo"]));
    assert!(dpo["items"][0]["fields"]["details"]
        .as_str()
        .unwrap()
        .contains("CANARYDETAILS"));
    assert_eq!(dpo["items"][0]["id"], iid.as_str());
    // The auditor reads none of it, and a volunteer may not write a special-category field.
    let out = env.run(
        &[
            "interaction",
            "list",
            "--subject",
            &a,
            "--token",
            &tokens["auditor"],
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = env.run(
        &[
            "interaction",
            "add",
            "--subject",
            &a,
            "--token",
            &tokens["volunteer"],
            "--json",
        ],
        Some(&json!({"kind": "call", "details": "no"}).to_string()),
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("details"), "{}", stderr(&out));
    // A bad value names its field.
    let out = env.run(
        &["interaction", "add", "--subject", &a, "--json"],
        Some(&json!({"kind": "telegram"}).to_string()),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("kind"), "{}", stderr(&out));

    // Nothing of it is in clear under the data directory.
    let hits = find_markers(&env.data, &[], &["CANARYSUMMARY", "CANARYDETAILS"]);
    assert!(hits.is_empty(), "found in clear: {hits:?}");

    // A task, then done.
    let task = env.json(
        &["interaction", "add", "--subject", &a],
        Some(&json!({"kind": "task", "summary": "Send the legacy pack", "follow_up_due": "2026-04-01"}).to_string()),
    );
    let tid = task["id"].as_str().unwrap().to_string();
    let shown = env.json(&["interaction", "show", &tid], None);
    assert_eq!(shown["fields"]["status"], "open", "{shown}");
    assert_eq!(shown["fields"]["staff"], "local-admin", "{shown}");
    env.json(
        &["interaction", "complete", &tid, "--outcome", "Pack sent"],
        None,
    );
    let shown = env.json(&["interaction", "show", &tid], None);
    assert_eq!(shown["fields"]["status"], "done", "{shown}");
    assert_eq!(shown["fields"]["outcome"], "Pack sent");
    assert!(shown["fields"]["completed_at"].is_string());

    // Erasing one participant takes its copy only; the other keeps the meeting.
    env.json(&["subject", "erase", &a, "--yes"], None);
    let out = env.run(&["interaction", "list", "--subject", &a, "--json"], None);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("CANARY"));
    let left = interaction_list(&env, &b, None);
    assert_eq!(left["items"].as_array().unwrap().len(), 1, "{left}");
    let shown = env.json(&["interaction", "show", &iid], None);
    assert_eq!(shown["fields"]["kind"], "meeting");

    // Over HTTP: If-Match on updates, and the timeline with what the role may not see named.
    let server = env.serve("warn");
    let u = |p: &str| format!("{}{p}", server.url);
    let admin = &tokens["admin"];
    let (s, _, v) = http_with(
        "PATCH",
        &u(&format!("/v1/interactions/{iid}")),
        Some(admin),
        Some(r#"{"outcome": "Will call back"}"#),
        &["If-Match: 1"],
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (s, _, v) = http_with(
        "PATCH",
        &u(&format!("/v1/interactions/{iid}")),
        Some(admin),
        Some(r#"{"outcome": "Stale"}"#),
        &["If-Match: 1"],
    );
    assert_eq!(s, 409, "{v}");
    let (s, _, v) = http(
        "POST",
        &u(&format!("/v1/subjects/{b}/gifts")),
        Some(admin),
        Some(r#"{"amount": "12.00", "currency": "GBP", "date": "2026-02-01"}"#),
    );
    assert_eq!(s, 201, "{v}");
    let (s, _, t) = http(
        "GET",
        &u(&format!("/v1/subjects/{b}/timeline")),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(s, 200, "{t}");
    let kinds: Vec<&str> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["interaction"], "{t}");
    assert!(t["omitted"].as_array().unwrap().iter().any(|o| o == "gift"));
    assert!(!t.to_string().contains("CANARY"), "{t}");
    let (s, _, t) = http(
        "GET",
        &u(&format!("/v1/subjects/{b}/timeline")),
        Some(admin),
        None,
    );
    assert_eq!(s, 200, "{t}");
    let items = t["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gift", "interaction"], "oldest first: {t}");
    let (s, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{b}/timeline")),
        Some(&tokens["auditor"]),
        None,
    );
    assert_eq!(s, 403, "{v}");
    // The interactions purpose flag: analytics may use them, newsletter-email may not.
    let (s, _, v) = http(
        "GET",
        &u(&format!(
            "/v1/subjects/{b}/interactions?purpose=newsletter-email"
        )),
        Some(admin),
        None,
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "consent_required", "{v}");
    server.stop();
}

/// A pattern's name, how many donors follow it, and their gifts (year, pounds).
type Pattern = (&'static str, usize, &'static [(i32, u32)]);

/// Donors by pattern.
const PATTERNS: &[Pattern] = &[
    ("A", 10, &[(2024, 10), (2025, 20)]),
    ("B", 10, &[(2024, 10)]),
    ("C", 10, &[(2023, 10), (2024, 30), (2025, 30)]),
    ("D", 12, &[(2023, 10), (2024, 10)]),
    ("E", 10, &[(2025, 5)]),
    ("F", 3, &[(2022, 10), (2025, 10)]),
    ("G", 10, &[(2023, 10), (2024, 50), (2025, 20)]),
    ("H", 1, &[(2024, 10), (2025, 10)]),
];

#[test]
fn fep_table_of_a_known_history_leaves_out_an_objection_and_suppresses_small_cells() {
    let env = Env::init();
    let tokens = tokens(&env);
    let server = env.serve_with("warn", &["--rate-limit", "0"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let admin = &tokens["admin"];
    let mut subjects = Vec::new();
    for (p, n, gifts) in PATTERNS {
        for i in 0..*n {
            let gifts: Vec<Value> = gifts
                .iter()
                .map(|(y, a)| json!({"amount": format!("{a}.00"), "currency": "GBP", "date": format!("{y}-06-15")}))
                .collect();
            subjects.push(json!({"given_name": format!("Donor{p}"), "family_name": format!("Pattern{i}"), "gifts": gifts}));
        }
    }
    let (s, _, v) = http(
        "POST",
        &u("/v1/subjects/batch"),
        Some(admin),
        Some(&json!({ "subjects": subjects }).to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let ids = v["ids"].as_array().unwrap();
    // The last subject (pattern H) objects to analytics.
    let h = ids.last().unwrap().as_str().unwrap();
    let (s, _, v) = http(
        "POST",
        &u(&format!("/v1/subjects/{h}/consent")),
        Some(admin),
        Some(r#"{"purpose": "analytics", "event": "objected", "source": "letter"}"#),
    );
    assert_eq!(s, 201, "{v}");

    let (s, _, t) = http("GET", &u("/v1/analytics/fep?year=2025"), Some(admin), None);
    assert_eq!(s, 200, "{t}");
    let cell = |k: &str| (t[k]["donors"].clone(), t[k]["amount"].clone());
    assert_eq!(cell("new_donors"), (json!(10), json!("50.00")), "{t}");
    assert_eq!(cell("recaptured"), (json!(3), json!("30.00")), "{t}");
    assert_eq!(cell("upgraded"), (json!(10), json!("100.00")), "{t}");
    assert_eq!(cell("same"), (json!(10), json!("0.00")), "{t}");
    assert_eq!(cell("downgraded"), (json!(10), json!("300.00")), "{t}");
    assert_eq!(cell("lapsed_new"), (json!(10), json!("100.00")), "{t}");
    assert_eq!(cell("lapsed_repeat"), (json!(12), json!("120.00")), "{t}");
    assert_eq!(cell("donors"), (json!(43), json!("780.00")), "{t}");
    assert_eq!(
        cell("previous_donors"),
        (json!(52), json!("1120.00")),
        "{t}"
    );
    let rate = |k: &str| t[k]["rate"].as_f64().unwrap();
    assert!((rate("overall") - 30.0 / 52.0).abs() < 1e-9, "{t}");
    assert!((rate("new") - 0.5).abs() < 1e-9, "{t}");
    assert!((rate("repeat") - 20.0 / 32.0).abs() < 1e-9, "{t}");
    assert!((t["donor_gain_loss_ratio"].as_f64().unwrap() - 13.0 / 22.0).abs() < 1e-9);
    assert!((t["money_gain_loss_ratio"].as_f64().unwrap() - 180.0 / 520.0).abs() < 1e-9);
    assert_eq!(t["coverage"]["excluded"], 1, "{t}");
    assert_eq!(t["coverage"]["donors"], 65, "{t}");
    assert_eq!(t["coverage"]["suppression"], false);
    assert_eq!(t["suppressed"], json!([]));

    // A volunteer: the 3 recaptured donors are held back, and one more cell of their total.
    let (s, _, t) = http(
        "GET",
        &u("/v1/analytics/fep?year=2025"),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["recaptured"]["donors"], Value::Null, "{t}");
    assert_eq!(t["recaptured"]["amount"], Value::Null, "{t}");
    assert_eq!(t["suppressed"], json!(["new_donors", "recaptured"]), "{t}");
    assert_eq!(t["new_donors"]["donors"], Value::Null, "{t}");
    assert_eq!(t["upgraded"]["donors"], 10, "{t}");
    assert_eq!(t["donor_gain_loss_ratio"], Value::Null);
    assert_eq!(t["coverage"]["suppression"], true);
    // ...who may not list people; a fundraiser may.
    let (s, _, v) = http(
        "GET",
        &u("/v1/analytics/lapsed?year=2025&list=true"),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(s, 403, "{v}");
    let (s, _, l) = http(
        "GET",
        &u("/v1/analytics/lapsed?year=2025&list=true"),
        Some(&tokens["fundraiser"]),
        None,
    );
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["lybunt"]["donors"], 22, "{l}");
    assert_eq!(l["lybunt"]["amount"], "220.00", "{l}");
    assert_eq!(l["lybunt_ids"].as_array().unwrap().len(), 22);
    assert_eq!(l["sybunt"]["donors"], 0, "no SYBUNT donors: {l}");
    // The run is audited with its purpose, parameters and count.
    server.stop();
    let events = env.json(&["audit", "query", "--action", "read.analytics"], None);
    let list = events["items"].as_array().unwrap();
    assert!(list.len() >= 4, "{events}");
    let e = list.iter().find(|e| e["outcome"] == "ok").unwrap();
    assert_eq!(e["purpose"], "analytics", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("year=2025"), "{e}");
    assert_eq!(e["count"], 65, "{e}");
    // The CLI answers the same.
    let r = env.json(&["analytics", "retention", "--year", "2025"], None);
    assert!((r["overall"]["rate"].as_f64().unwrap() - 30.0 / 52.0).abs() < 1e-9);
    // A filter's text is free text: the audit log says a filter was given, not what.
    let r = env.json(
        &[
            "analytics",
            "fep",
            "--year",
            "2025",
            "--fund",
            "jo.typed@example.org",
        ],
        None,
    );
    assert_eq!(r["donors"]["donors"], 0, "{r}");
    let out = env.run(&["audit", "export"], None);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("fund=given"), "{log}");
    assert!(
        !log.contains("jo.typed"),
        "a typed value reached the audit log"
    );
}

#[test]
fn civicrm_activities_link_by_contact_id_refuse_what_they_cannot_link_and_import_once() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Ada", "family_name": "Lee", "external_id": "civi-101"}));
    let b = env.add(&json!({"given_name": "Bo", "family_name": "Lee", "external_id": "civi-102"}));
    // Two subjects carry the same legacy id: a row naming it is never guessed.
    env.add(&json!({"given_name": "Cy", "family_name": "Ng", "external_id": "civi-103"}));
    env.add(&json!({"given_name": "Cy", "family_name": "Ng", "external_id": "civi-103"}));
    let file = env.tmp.path().join("activities.csv");
    std::fs::write(
        &file,
        "Activity ID,Activity Type,Subject,Activity Date,Details,Duration,Activity Status,Target Contact ID,Priority\n\
         9001,Phone Call,Thanked for gift,2024-03-01 10:15:00,,12,Completed,civi-101,Normal\n\
         9002,Meeting,Visit with both,2024-04-02 14:00:00,Spoke of a diagnosis,60,Completed,civi-101;civi-102,Normal\n\
         9003,Phone Call,Nobody,2024-04-03,,,Completed,civi-999,Normal\n\
         9004,Phone Call,Which one,2024-04-04,,,Completed,civi-103,Normal\n\
         9005,Meeting,Bad date,04/05/2024,,,Completed,civi-101,Normal\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    // A dry run links every row and writes nothing.
    let out = env.run(
        &["interaction", "import", path, "--dry-run", "--json"],
        None,
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["dry_run"].clone(), r["added"].clone()),
        (json!(true), json!(2)),
        "{r}"
    );
    assert_eq!(interaction_list(&env, &a, None)["items"], json!([]));
    let out = env.run(&["interaction", "import", path, "--json"], None);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["profile"], "civicrm", "{r}");
    assert_eq!(r["rows"], 5);
    assert_eq!(r["added"], 2, "{r}");
    let refused: Vec<(u64, String)> = r["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["row"].as_u64().unwrap(),
                x["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (4, "unknown_contact".to_string()),
            (5, "ambiguous_contact".to_string()),
            (6, "invalid_date".to_string())
        ],
        "{r}"
    );
    assert_eq!(r["unmapped_columns"], json!(["Priority"]));
    let list = interaction_list(&env, &a, None);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let both = interaction_list(&env, &b, None);
    let meeting = &both["items"][0];
    assert_eq!(meeting["fields"]["kind"], "meeting");
    assert_eq!(meeting["fields"]["duration_minutes"], 60);
    assert_eq!(meeting["participants"].as_array().unwrap().len(), 2);
    // Again: nothing new.
    let out = env.run(&["interaction", "import", path, "--json"], None);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["added"], 0, "{r}");
    assert_eq!(r["already_present"], 2, "{r}");
    assert_eq!(
        interaction_list(&env, &a, None)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let hits = find_markers(
        &env.data,
        &[],
        &["Spoke of a diagnosis", "Thanked for gift"],
    );
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn the_retention_sweep_removes_interactions_past_their_years_and_keeps_the_rest() {
    let env = Env::init();
    let a = env.add(&json!({"given_name": "Old", "family_name": "Friend"}));
    for at in ["2015-02-01T10:00:00Z", "2025-02-01T10:00:00Z"] {
        env.json(
            &["interaction", "add", "--subject", &a],
            Some(&json!({"kind": "letter", "occurred_at": at}).to_string()),
        );
    }
    let dry = env.json(
        &["retention", "run", "--dry-run", "--now", "2026-12-01"],
        None,
    );
    assert_eq!(dry["interactions_removed"], 1, "{dry}");
    assert_eq!(
        interaction_list(&env, &a, None)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let run = env.json(&["retention", "run", "--now", "2026-12-01"], None);
    assert_eq!(run["interactions_removed"], 1, "{run}");
    let left = interaction_list(&env, &a, None);
    let items = left["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{left}");
    assert_eq!(items[0]["fields"]["occurred_at"], "2025-02-01T10:00:00Z");
}

#[test]
fn a_private_release_spends_the_budget_and_is_refused_once_it_is_spent() {
    let env = Env::init();
    for i in 0..30 {
        env.add(
            &json!({"given_name": "P", "family_name": format!("Donor{i}"),
            "gifts": [{"amount": "10.00", "currency": "GBP", "date": "2024-05-01"},
                      {"amount": "10.00", "currency": "GBP", "date": "2025-05-01"}]}),
        );
    }
    // The default budget is 3.0: three releases of 1.0, then a refusal.
    for left in [2.0, 1.0, 0.0] {
        let r = env.json(
            &["analytics", "fep", "--year", "2025", "--epsilon", "1"],
            None,
        );
        assert!(
            (r["budget_left"].as_f64().unwrap() - left).abs() < 1e-9,
            "{r}"
        );
        let same = r["counts"]["same_repeat"].as_u64().unwrap()
            + r["counts"]["same_new"].as_u64().unwrap();
        // 30 retained donors, give or take the noise (|noise| > 12 has probability < 1e-4).
        assert!((18..=42).contains(&same), "{r}");
        assert!(r.get("amount").is_none() && !r.to_string().contains("\"amount\""));
    }
    let out = env.run(
        &[
            "analytics",
            "fep",
            "--year",
            "2025",
            "--epsilon",
            "0.5",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("privacy budget"), "{}", stderr(&out));
    let out = env.run(
        &[
            "analytics",
            "fep",
            "--year",
            "2025",
            "--epsilon",
            "2",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let events = env.json(&["audit", "query", "--action", "read.analytics"], None);
    let spent: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .collect();
    assert_eq!(spent.len(), 3, "{events}");
    assert!(spent
        .iter()
        .all(|e| e["reason"].as_str().unwrap().contains("epsilon=1")));
}

#[test]
fn a_merged_records_interactions_are_listed_with_the_kept_subject_and_come_back_on_undo() {
    let env = Env::init();
    let keep =
        env.add(&json!({"given_name": "Mae", "family_name": "Orr", "email": "mae@example.org"}));
    let gone =
        env.add(&json!({"given_name": "May", "family_name": "Orr", "email": "may@example.org"}));
    let friend = env.add(&json!({"given_name": "Ivo", "family_name": "Tam"}));
    let alone = env.json(
        &["interaction", "add", "--subject", &gone],
        Some(&json!({"kind": "letter", "occurred_at": "2025-01-10T09:00:00Z", "summary": "Welcome letter"}).to_string()),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shared = env.json(
        &[
            "interaction",
            "add",
            "--subject",
            &gone,
            "--subject",
            &friend,
        ],
        Some(
            &json!({"kind": "meeting", "occurred_at": "2025-02-10T09:00:00Z", "summary": "Coffee"})
                .to_string(),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = env.json(&["merge", &keep, &gone], None);
    // The kept subject lists both, as they were at the merge.
    let list = interaction_list(&env, &keep, None);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alone.as_str(), shared.as_str()], "{list}");
    // The shared meeting is still read and changed through its live participant.
    let shown = env.json(&["interaction", "show", &shared], None);
    assert_eq!(shown["fields"]["summary"], "Coffee");
    env.json(
        &["interaction", "update", &shared],
        Some(r#"{"outcome": "Will volunteer"}"#),
    );
    let f = interaction_list(&env, &friend, None);
    assert_eq!(f["items"][0]["fields"]["outcome"], "Will volunteer", "{f}");
    // One only the merged record held: refused with why, not "no such interaction".
    let out = env.run(&["interaction", "show", &alone, "--json"], None);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("merged"), "{}", stderr(&out));
    // The retention sweep passes the merged record's copies by (they go with it).
    let sweep = env.json(
        &["retention", "run", "--dry-run", "--now", "2026-12-01"],
        None,
    );
    assert_eq!(sweep["interactions_removed"], 0, "{sweep}");
    // Undo: the record comes back with its interactions.
    env.json(&["merge", "undo", m["id"].as_str().unwrap()], None);
    let back = interaction_list(&env, &gone, None);
    assert_eq!(back["items"].as_array().unwrap().len(), 2, "{back}");
    assert_eq!(interaction_list(&env, &keep, None)["items"], json!([]));
    env.json(&["interaction", "show", &alone], None);
}

#[test]
fn stewardship_compares_the_retention_of_contacted_donors_with_the_others() {
    let env = Env::init();
    let tokens = tokens(&env);
    let gift = |dates: &[&str]| -> Value {
        dates
            .iter()
            .map(|d| json!({"amount": "10.00", "currency": "GBP", "date": d}))
            .collect()
    };
    let donor = |n: usize, dates: &[&str]| {
        env.add(&json!({"given_name": format!("Donor{n}"), "family_name": "Steward", "gifts": gift(dates)}))
    };
    let call = |ids: &[&str], direction: &str, at: &str| {
        let mut args = vec!["interaction", "add"];
        for id in ids {
            args.extend(["--subject", id]);
        }
        env.json(
            &args,
            Some(&json!({"kind": "call", "direction": direction, "occurred_at": at}).to_string()),
        );
    };
    // Contacted: 12 donors of 2024 (ten calls, and one meeting with two of them), 8 gave
    // again in 2025.
    let contacted: Vec<String> = (0..12)
        .map(|i| {
            if i < 8 {
                donor(i, &["2024-05-01", "2025-06-01"])
            } else {
                donor(i, &["2024-05-01"])
            }
        })
        .collect();
    for id in &contacted[..10] {
        call(&[id], "outbound", "2025-03-01T10:00:00Z");
    }
    call(
        &[&contacted[10], &contacted[11]],
        "outbound",
        "2024-11-20T15:00:00Z",
    );
    // Not contacted: 12 donors (3 gave again), one who only called in (and gave again), one
    // called before the window (2023).
    for i in 0..12 {
        if i < 3 {
            donor(20 + i, &["2024-02-01", "2025-02-01"]);
        } else {
            donor(20 + i, &["2024-02-01"]);
        }
    }
    let inbound = donor(40, &["2024-03-01", "2025-03-01"]);
    call(&[&inbound], "inbound", "2025-01-05T09:00:00Z");
    let early = donor(41, &["2023-03-01", "2024-03-01"]);
    call(&[&early], "outbound", "2023-06-01T09:00:00Z");

    let r = env.json(&["analytics", "stewardship", "--year", "2025"], None);
    assert_eq!(
        r["previous"],
        json!({"from": "2024-01-01", "to": "2024-12-31"}),
        "{r}"
    );
    assert_eq!(r["contacted"]["base"], 12, "{r}");
    assert_eq!(r["contacted"]["retained"], 8, "{r}");
    assert_eq!(r["not_contacted"]["base"], 14, "{r}");
    assert_eq!(r["not_contacted"]["retained"], 4, "{r}");
    assert_eq!(r["outbound_interactions"], 11, "{r}");
    let rate = r["contacted"]["rate"].as_f64().unwrap();
    assert!((rate - 8.0 / 12.0).abs() < 1e-9, "{r}");
    // A volunteer sees no cell under ten people (8 retained gives both groups away).
    let out = env.run(
        &[
            "analytics",
            "stewardship",
            "--year",
            "2025",
            "--json",
            "--token",
            &tokens["volunteer"],
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["contacted"]["base"].is_null() && v["not_contacted"]["retained"].is_null(),
        "{v}"
    );
    assert_eq!(
        v["suppressed"],
        json!(["contacted", "not_contacted", "outbound_interactions"])
    );
    // The auditor: nothing.
    let out = env.run(
        &[
            "analytics",
            "stewardship",
            "--year",
            "2025",
            "--token",
            &tokens["auditor"],
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7));
    let audit = env.json(&["audit", "query", "--action", "read.analytics"], None);
    assert!(
        audit
            .to_string()
            .contains("analytics:stewardship year=2025"),
        "{audit}"
    );
}
