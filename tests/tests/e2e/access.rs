//! Access control through real HTTP against the real `policies/` files: the authorisation
//! matrix, the error statuses, the OpenAPI document and policy reloads.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::support::*;

const ROLES: [&str; 6] = [
    "admin",
    "fundraiser",
    "volunteer",
    "data-manager",
    "dpo",
    "auditor",
];

/// A representative field of each group, with a value.
fn field_of(category: &str) -> (&'static str, Value) {
    match category {
        "identity" => ("given_name", json!("Vic")),
        "contact" => ("city", json!("Leeds")),
        "financial" => ("gift_aid_declared", json!(true)),
        "special" => ("religion", json!("Quaker")),
        "profile" => ("notes", json!("likes walks")),
        other => panic!("unknown category {other}"),
    }
}

struct Row {
    role: String,
    method: String,
    route: String,
    category: String,
    allow: bool,
}

fn matrix() -> Vec<Row> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/authz_matrix.csv"
    ))
    .unwrap();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        assert_eq!(c.len(), 5, "{line}");
        assert!(c[4] == "allow" || c[4] == "deny", "{line}");
        rows.push(Row {
            role: c[0].into(),
            method: c[1].into(),
            route: c[2].into(),
            category: c[3].into(),
            allow: c[4] == "allow",
        });
    }
    rows
}

pub(crate) fn tokens(env: &Env) -> BTreeMap<String, String> {
    ROLES
        .iter()
        .map(|r| {
            let v = env.json(&["users", "add", &format!("u-{r}"), "--role", r], None);
            (r.to_string(), v["token"].as_str().unwrap().to_string())
        })
        .collect()
}

fn assert_error_shape(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[test]
fn every_role_gets_exactly_what_the_authorisation_matrix_says() {
    let env = Env::init();
    let tokens = tokens(&env);
    let admin = tokens["admin"].clone();
    let server = env.serve_with("warn", &["--rate-limit", "0"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let base = json!({"given_name": "Vic", "email": "vic@example.org", "external_id": "EXT-1",
        "city": "Leeds", "gift_aid_declared": true, "religion": "Quaker", "notes": "likes walks",
        "gifts": [{"amount": "5.00"}]});
    let (s, _, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&admin),
        Some(&base.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let admin_view =
        |id: &str| http("GET", &u(&format!("/v1/subjects/{id}")), Some(&admin), None).2;

    // Every route of the OpenAPI document has rows for every role, and every row names a
    // documented route.
    let (_, _, doc) = http("GET", &u("/openapi.json"), None, None);
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let rows = matrix();
    let mut missing = Vec::new();
    for (method, path) in &documented {
        for role in ROLES {
            if !rows
                .iter()
                .any(|r| &r.method == method && &r.route == path && r.role == role)
            {
                missing.push(format!("{role} {method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes without rows in tests/data/authz_matrix.csv: {missing:?}"
    );
    for r in &rows {
        assert!(
            documented.contains(&(r.method.clone(), r.route.clone())),
            "row for an undocumented route: {} {}",
            r.method,
            r.route
        );
    }

    let mut checked = 0;
    for (n, row) in rows.iter().enumerate() {
        let token = tokens[&row.role].as_str();
        let ctx = format!(
            "{} {} {} [{}] expected {}",
            row.role,
            row.method,
            row.route,
            row.category,
            if row.allow { "allow" } else { "deny" }
        );
        let deny_403 = |s: u16, v: &Value| {
            assert_eq!(s, 403, "{ctx}: {v}");
            assert_error_shape(v, "forbidden");
        };
        match (row.method.as_str(), row.route.as_str()) {
            ("GET", "/healthz") | ("GET", "/metrics") => {
                let (s, _, _) = http("GET", &u(&row.route), None, None);
                assert_eq!(s == 200, row.allow, "{ctx}");
            }
            ("GET", "/v1/subjects/{id}") => {
                let (name, _) = field_of(&row.category);
                let (s, _, v) = http("GET", &u(&format!("/v1/subjects/{id}")), Some(token), None);
                if s == 403 {
                    assert!(!row.allow, "{ctx}: 403");
                    assert_error_shape(&v, "forbidden");
                } else {
                    assert_eq!(s, 200, "{ctx}");
                    let shown = v["fields"].get(name).is_some();
                    let withheld = v["withheld"].as_array().unwrap().iter().any(|w| w == name);
                    assert_eq!(shown, row.allow, "{ctx}: {v}");
                    assert_eq!(withheld, !row.allow, "{ctx}: {v}");
                }
            }
            ("PATCH", "/v1/subjects/{id}") => {
                let (name, value) = field_of(&row.category);
                let before = admin_view(&id);
                // Allowed: write the same value back; denied: try to change it.
                let body = if row.allow {
                    json!({ name: value })
                } else {
                    json!({ name: if name == "gift_aid_declared" { json!(false) } else { json!("Changed") } })
                };
                let (s, _, v) = http(
                    "PATCH",
                    &u(&format!("/v1/subjects/{id}")),
                    Some(token),
                    Some(&body.to_string()),
                );
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                    assert_eq!(v["error"]["fields"], json!([name]), "{ctx}");
                    let after = admin_view(&id);
                    assert_eq!(
                        after["fields"], before["fields"],
                        "{ctx}: a refused write changed data"
                    );
                    assert_eq!(after["version"], before["version"], "{ctx}");
                }
            }
            ("POST", "/v1/subjects") | ("POST", "/v1/subjects/batch") => {
                let (name, value) = field_of(&row.category);
                let one = json!({ name: value });
                let body = if row.route.ends_with("batch") {
                    json!({"subjects": [one]})
                } else {
                    one
                };
                let (s, _, v) = http("POST", &u(&row.route), Some(token), Some(&body.to_string()));
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/subjects/lookup") => {
                let body = if row.category == "contact" {
                    json!({"email": "vic@example.org"})
                } else {
                    json!({"external_id": "EXT-1"})
                };
                let (s, _, v) = http("POST", &u(&row.route), Some(token), Some(&body.to_string()));
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                    assert!(
                        v["ids"].as_array().unwrap().iter().any(|x| x == &json!(id)),
                        "{ctx}"
                    );
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/subjects") => {
                let (s, _, v) = http("GET", &u("/v1/subjects?limit=2"), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("DELETE", "/v1/subjects/{id}") => {
                let (_, _, v) = http(
                    "POST",
                    &u("/v1/subjects"),
                    Some(&admin),
                    Some(r#"{"given_name":"Temp"}"#),
                );
                let victim = v["id"].as_str().unwrap().to_string();
                let (s, _, v) = http(
                    "DELETE",
                    &u(&format!("/v1/subjects/{victim}")),
                    Some(token),
                    None,
                );
                let (after, _, _) = http(
                    "GET",
                    &u(&format!("/v1/subjects/{victim}")),
                    Some(&admin),
                    None,
                );
                if row.allow {
                    assert_eq!((s, after), (200, 410), "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                    assert_eq!(after, 200, "{ctx}: a refused erase erased");
                }
            }
            ("POST", "/v1/subjects/{id}/gifts") => {
                let (s, _, v) = http(
                    "POST",
                    &u(&format!("/v1/subjects/{id}/gifts")),
                    Some(token),
                    Some(r#"{"amount":"1.00"}"#),
                );
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/subjects/{id}/gifts") => {
                let (s, _, v) = http(
                    "GET",
                    &u(&format!("/v1/subjects/{id}/gifts")),
                    Some(token),
                    None,
                );
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/users") => {
                let (s, _, v) = http("GET", &u("/v1/users"), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}");
                    assert!(
                        !v.to_string().contains("token_hash"),
                        "token hashes are never served"
                    );
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/users") => {
                let body = json!({"name": format!("new-{n}"), "role": "volunteer"});
                let (s, _, v) = http(
                    "POST",
                    &u("/v1/users"),
                    Some(token),
                    Some(&body.to_string()),
                );
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}");
                    assert!(v["token"].as_str().unwrap().starts_with("stw_"));
                } else {
                    deny_403(s, &v);
                }
            }
            ("DELETE", "/v1/users/{name}")
            | ("PATCH", "/v1/users/{name}")
            | ("PUT", "/v1/users/{name}/password") => {
                let victim = format!("victim-{n}");
                let (s, _, _) = http(
                    "POST",
                    &u("/v1/users"),
                    Some(&admin),
                    Some(&json!({"name": victim, "role": "volunteer"}).to_string()),
                );
                assert_eq!(s, 201);
                let body = match row.method.as_str() {
                    "PATCH" => Some(r#"{"role":"auditor"}"#),
                    "PUT" => Some(r#"{"password":"a long enough passphrase"}"#),
                    _ => None,
                };
                let path = if row.method == "PUT" {
                    format!("/v1/users/{victim}/password")
                } else {
                    format!("/v1/users/{victim}")
                };
                let (s, _, v) = http(&row.method, &u(&path), Some(token), body);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/admin/backup") => {
                let (s, _, v) = http("GET", &u("/v1/admin/backup"), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/audit")
            | ("GET", "/v1/audit/verify")
            | ("GET", "/v1/audit/checkpoint") => {
                let (s, _, v) = http("GET", &u(&row.route), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                    if row.route == "/v1/audit/verify" {
                        assert_eq!(v["ok"], true, "{ctx}: {v}");
                    }
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/subjects/{id}/consent") => {
                let body = json!({"purpose": "newsletter-email", "event": "given", "source": "matrix-test"});
                let (s, _, v) = http(
                    "POST",
                    &u(&format!("/v1/subjects/{id}/consent")),
                    Some(token),
                    Some(&body.to_string()),
                );
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/subjects/{id}/consent")
            | ("GET", "/v1/subjects/{id}/consent/{purpose}") => {
                let path = row
                    .route
                    .replace("{id}", &id)
                    .replace("{purpose}", "newsletter-email");
                let (s, _, v) = http("GET", &u(&path), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/v1/segments/{purpose}") => {
                let (s, _, v) = http(
                    "GET",
                    &u("/v1/segments/fundraising-post"),
                    Some(token),
                    None,
                );
                if row.allow {
                    assert_eq!(s, 200, "{ctx}")
                } else {
                    deny_403(s, &v)
                }
            }
            ("GET", "/.well-known/gpc.json") => {
                let (s, _, v) = http("GET", &u(&row.route), None, None);
                assert_eq!((s, &v["gpc"]), (200, &json!(true)), "{ctx}");
            }
            ("POST", "/v1/requests")
            | ("GET", "/v1/requests")
            | ("GET", "/v1/requests/{id}")
            | ("POST", "/v1/requests/{id}/steps") => {
                // A request opened by the admin for the row to act on.
                let body = json!({"type": "access", "subject": id, "jurisdiction": "uk-gdpr"});
                let (s, _, v) = http(
                    "POST",
                    &u("/v1/requests"),
                    Some(&admin),
                    Some(&body.to_string()),
                );
                assert_eq!(s, 201, "{v}");
                let rid = v["id"].as_str().unwrap().to_string();
                let (s, _, v) = match (row.method.as_str(), row.route.as_str()) {
                    ("POST", "/v1/requests") => http(
                        "POST",
                        &u("/v1/requests"),
                        Some(token),
                        Some(&body.to_string()),
                    ),
                    ("GET", "/v1/requests") => {
                        http("GET", &u("/v1/requests?due_within=40d"), Some(token), None)
                    }
                    ("GET", _) => {
                        http("GET", &u(&format!("/v1/requests/{rid}")), Some(token), None)
                    }
                    _ => http(
                        "POST",
                        &u(&format!("/v1/requests/{rid}/steps")),
                        Some(token),
                        Some(r#"{"action":"verify"}"#),
                    ),
                };
                if row.allow {
                    assert!(s == 200 || s == 201, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/imports")
            | ("GET", "/v1/imports")
            | ("GET", "/v1/imports/{id}")
            | ("POST", "/v1/imports/{id}/undo") => {
                // An import started by the admin for the row to act on (a distinct file each
                // time, so each is a new import).
                let file = format!(
                    "First Name,Last Name,Email\nMatrix,Row{checked},matrix{checked}@example.org\n"
                );
                let start = |t: &str| {
                    http(
                        "POST",
                        &u("/v1/imports?profile=generic&name=matrix.csv"),
                        Some(t),
                        Some(&file),
                    )
                };
                let (s, _, v) = start(&admin);
                assert_eq!(s, 202, "{v}");
                let iid = v["import_id"].as_str().unwrap().to_string();
                for _ in 0..200 {
                    let (_, _, v) =
                        http("GET", &u(&format!("/v1/imports/{iid}")), Some(&admin), None);
                    if v["status"] != "running" {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                let (s, _, v) = match (row.method.as_str(), row.route.as_str()) {
                    ("POST", "/v1/imports") => start(token),
                    ("GET", "/v1/imports") => http("GET", &u("/v1/imports"), Some(token), None),
                    ("GET", _) => http("GET", &u(&format!("/v1/imports/{iid}")), Some(token), None),
                    _ => http(
                        "POST",
                        &u(&format!("/v1/imports/{iid}/undo")),
                        Some(token),
                        None,
                    ),
                };
                if row.allow {
                    assert!(s == 200 || s == 202, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("PUT", "/v1/mappings/{name}") | ("GET", "/v1/mappings") => {
                let (s, _, v) = if row.method == "PUT" {
                    let mapping = "[columns]\n\"Given\" = \"given_name\"\n";
                    http("PUT", &u("/v1/mappings/matrix"), Some(token), Some(mapping))
                } else {
                    http("GET", &u("/v1/mappings"), Some(token), None)
                };
                if row.allow {
                    assert!(s == 200 || s == 204, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/reviews")
            | ("POST", "/v1/reviews/{id}")
            | ("POST", "/v1/merges/{id}/undo") => {
                let (s, _, v) = match row.route.as_str() {
                    "/v1/reviews" => http("GET", &u("/v1/reviews"), Some(token), None),
                    "/v1/reviews/{id}" => http(
                        "POST",
                        &u("/v1/reviews/0000000000000000"),
                        Some(token),
                        Some(r#"{"decision":"reject"}"#),
                    ),
                    _ => http(
                        "POST",
                        &u("/v1/merges/0000000000000000/undo"),
                        Some(token),
                        None,
                    ),
                };
                if row.allow {
                    // The queue lists; an unknown item or merge is "not found", not "forbidden".
                    assert!(s == 200 || s == 404, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/merges") | ("GET", "/v1/match/explain") => {
                let mk = |name: &str| {
                    let (s, _, v) = http(
                        "POST",
                        &u("/v1/subjects"),
                        Some(&admin),
                        Some(&json!({"given_name": name, "family_name": "Merge"}).to_string()),
                    );
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().unwrap().to_string()
                };
                let (a, b) = (mk("Keep"), mk("Gone"));
                let (s, _, v) = if row.method == "POST" {
                    http(
                        "POST",
                        &u("/v1/merges"),
                        Some(token),
                        Some(&json!({"keep": a, "gone": b}).to_string()),
                    )
                } else {
                    http(
                        "GET",
                        &u(&format!("/v1/match/explain?a={a}&b={b}")),
                        Some(token),
                        None,
                    )
                };
                if row.allow {
                    assert!(s == 200 || s == 201, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/match/check")
            | ("GET", "/v1/subjects/{id}/sources")
            | ("POST", "/v1/subjects/{id}/split") => {
                // Two people merged by mistake (by the admin), then the row's request.
                let mk = |name: &str, born: &str| {
                    let body =
                        json!({"given_name": name, "family_name": "Split", "birth_date": born});
                    let (s, _, v) = http(
                        "POST",
                        &u("/v1/subjects"),
                        Some(&admin),
                        Some(&body.to_string()),
                    );
                    assert_eq!(s, 201, "{v}");
                    v["id"].as_str().unwrap().to_string()
                };
                let (a, b) = (mk("Mary", "1950-01-02"), mk("Wendy", "1960-03-04"));
                let merge = json!({"keep": a, "gone": b}).to_string();
                let (s, _, v) = http("POST", &u("/v1/merges"), Some(&admin), Some(&merge));
                assert_eq!(s, 201, "{v}");
                let (s, _, v) = match row.route.as_str() {
                    "/v1/match/check" => http("GET", &u(&row.route), Some(token), None),
                    "/v1/subjects/{id}/sources" => http(
                        "GET",
                        &u(&format!("/v1/subjects/{a}/sources")),
                        Some(token),
                        None,
                    ),
                    _ => http(
                        "POST",
                        &u(&format!("/v1/subjects/{a}/split")),
                        Some(token),
                        Some(r#"{"record": 2}"#),
                    ),
                };
                if row.allow {
                    assert!(s == 200 || s == 201, "{ctx}: {s} {v}");
                } else {
                    deny_403(s, &v);
                    let (_, _, after) = http(
                        "GET",
                        &u(&format!("/v1/subjects/{a}/sources")),
                        Some(&admin),
                        None,
                    );
                    assert_eq!(after["records"].as_array().unwrap().len(), 2, "{ctx}");
                }
            }
            ("POST", "/v1/subjects/{id}/interactions") => {
                let body = json!({"kind": "call", "summary": "Matrix call"});
                let (s, _, v) = http(
                    "POST",
                    &u(&format!("/v1/subjects/{id}/interactions")),
                    Some(token),
                    Some(&body.to_string()),
                );
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/subjects/{id}/interactions")
            | ("GET", "/v1/subjects/{id}/timeline")
            | ("GET", "/v1/analytics/fep")
            | ("GET", "/v1/analytics/retention")
            | ("GET", "/v1/analytics/lapsed")
            | ("GET", "/v1/analytics/rfm")
            | ("GET", "/v1/analytics/stewardship") => {
                let path = row.route.replace("{id}", &id) + "?year=2025";
                let (s, _, v) = http("GET", &u(&path), Some(token), None);
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/interactions/{id}")
            | ("PATCH", "/v1/interactions/{id}")
            | ("POST", "/v1/interactions/{id}/complete") => {
                let (s, _, made) = http(
                    "POST",
                    &u(&format!("/v1/subjects/{id}/interactions")),
                    Some(&admin),
                    Some(&json!({"kind": "task", "summary": "Matrix task"}).to_string()),
                );
                assert_eq!(s, 201, "{made}");
                let path = row.route.replace("{id}", made["ids"][0].as_str().unwrap());
                let body = match row.method.as_str() {
                    "PATCH" => Some(json!({"outcome": "Matrix outcome"}).to_string()),
                    "POST" => Some(json!({"outcome": "Matrix done"}).to_string()),
                    _ => None,
                };
                let (s, _, v) = http(&row.method, &u(&path), Some(token), body.as_deref());
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("GET", "/v1/recipients")
            | ("GET", "/v1/notifications")
            | ("GET", "/v1/subjects/{id}/recipients")
            | ("GET", "/v1/recipients/{name}")
            | ("PATCH", "/v1/recipients/{name}")
            | ("POST", "/v1/recipients/{name}/disable") => {
                // One registered recipient for the rows that name one.
                let (s, _, v) = http(
                    "POST",
                    &u("/v1/recipients"),
                    Some(&admin),
                    Some(&json!({"name": "matrix-r", "country": "GB"}).to_string()),
                );
                assert!(s == 201 || s == 409, "{v}");
                let path = row.route.replace("{id}", &id).replace("{name}", "matrix-r");
                let body = match (row.method.as_str(), row.route.as_str()) {
                    ("PATCH", _) => Some(json!({"contract": format!("DPA-{n}")}).to_string()),
                    ("POST", _) => Some(json!({"reason": null}).to_string()),
                    _ => None,
                };
                let before = http("GET", &u("/v1/recipients/matrix-r"), Some(&admin), None).2;
                let (s, _, v) = http(&row.method, &u(&path), Some(token), body.as_deref());
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                    let after = http("GET", &u("/v1/recipients/matrix-r"), Some(&admin), None).2;
                    assert_eq!(
                        before, after,
                        "{ctx}: a refused change changed the register"
                    );
                }
            }
            ("POST", "/v1/recipients") => {
                let body = json!({"name": format!("matrix-new-{n}"), "role": "controller"});
                let (s, _, v) = http(
                    "POST",
                    &u("/v1/recipients"),
                    Some(token),
                    Some(&body.to_string()),
                );
                if row.allow {
                    assert_eq!(s, 201, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                }
            }
            ("POST", "/v1/notifications/{id}/done") => {
                // A recipient without an endpoint received a new subject's data; the subject
                // is rectified: a task for a person.
                let (s, _, _) = http(
                    "POST",
                    &u("/v1/recipients"),
                    Some(&admin),
                    Some(&json!({"name": "matrix-task"}).to_string()),
                );
                assert!(s == 201 || s == 409);
                let (_, _, made) = http(
                    "POST",
                    &u("/v1/subjects"),
                    Some(&admin),
                    Some(&json!({"given_name": format!("Task{n}"), "city": "York"}).to_string()),
                );
                let sid = made["id"].as_str().unwrap().to_string();
                let (s, _, _) = http(
                    "GET",
                    &u("/v1/segments/donor-stewardship?recipient=matrix-task"),
                    Some(&admin),
                    None,
                );
                assert_eq!(s, 200);
                let (s, _, _) = http(
                    "PATCH",
                    &u(&format!("/v1/subjects/{sid}")),
                    Some(&admin),
                    Some(r#"{"city": "Hull"}"#),
                );
                assert_eq!(s, 200);
                let (_, _, pending) = http("GET", &u("/v1/notifications"), Some(&admin), None);
                let task = pending["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["subject"] == sid.as_str())
                    .unwrap_or_else(|| panic!("{ctx}: no task for {sid}: {pending}"))["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let (s, _, v) = http(
                    "POST",
                    &u(&format!("/v1/notifications/{task}/done")),
                    Some(token),
                    Some(r#"{"note": "told them by phone"}"#),
                );
                if row.allow {
                    assert_eq!(s, 200, "{ctx}: {v}");
                } else {
                    deny_403(s, &v);
                    let (_, _, still) = http("GET", &u("/v1/notifications"), Some(&admin), None);
                    assert!(
                        still.to_string().contains(&task),
                        "{ctx}: a refused step closed the task"
                    );
                }
            }
            (m, r) => panic!("the test does not know how to exercise {m} {r}: add it here"),
        }
        checked += 1;
    }
    assert_eq!(checked, rows.len());
    assert!(server.stop().success());
}

#[test]
fn each_error_status_comes_with_the_error_body() {
    let env = Env::init();
    let tokens = tokens(&env);
    let admin = tokens["admin"].clone();
    let server = env.serve_with("warn", &["--rate-limit", "0", "--body-limit-mib", "1"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let (_, _, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&admin),
        Some(r#"{"given_name":"Ann","email":"ann@example.org"}"#),
    );
    let id = v["id"].as_str().unwrap().to_string();

    // 401: unknown, malformed and missing tokens alike, with no hint which.
    for t in [Some("stw_0000"), Some("nonsense"), None] {
        let (s, head, v) = http("GET", &u(&format!("/v1/subjects/{id}")), t, None);
        assert_eq!(s, 401);
        assert_error_shape(&v, "unauthenticated");
        assert!(head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"));
    }
    // A revoked token is 401 too.
    let (s, _, v) = http(
        "POST",
        &u("/v1/users"),
        Some(&admin),
        Some(r#"{"name":"gone","role":"admin"}"#),
    );
    assert_eq!(s, 201);
    let gone = v["token"].as_str().unwrap().to_string();
    assert_eq!(http("GET", &u("/v1/users"), Some(&gone), None).0, 200);
    assert_eq!(
        http("DELETE", &u("/v1/users/gone"), Some(&admin), None).0,
        200
    );
    let (s, _, v) = http("GET", &u("/v1/users"), Some(&gone), None);
    assert_eq!(s, 401);
    assert_error_shape(&v, "unauthenticated");
    // 403.
    let (s, _, v) = http(
        "PATCH",
        &u(&format!("/v1/subjects/{id}")),
        Some(&tokens["volunteer"]),
        Some(r#"{"given_name":"X"}"#),
    );
    assert_eq!(s, 403);
    assert_error_shape(&v, "forbidden");
    // 404: unknown subject, unknown user, unknown route.
    let (s, _, v) = http(
        "GET",
        &u("/v1/subjects/01M822MXWA053813Q00TW23TP9"),
        Some(&admin),
        None,
    );
    assert_eq!(s, 404);
    assert_error_shape(&v, "not_found");
    let (s, _, v) = http("DELETE", &u("/v1/users/nobody"), Some(&admin), None);
    assert_eq!(s, 404);
    assert_error_shape(&v, "not_found");
    let (s, headers, v) = http("GET", &u("/v2/anything"), Some(&admin), None);
    assert_eq!(s, 404);
    assert_error_shape(&v, "no_such_route");
    assert!(
        headers.to_ascii_lowercase().contains("x-request-id:"),
        "every response has a request id: {headers}"
    );
    // 409: stale If-Match; taken user name.
    let (s, _, v) = http_with(
        "PATCH",
        &u(&format!("/v1/subjects/{id}")),
        Some(&admin),
        Some(r#"{"city":"York"}"#),
        &["If-Match: 7"],
    );
    assert_eq!(s, 409);
    assert_error_shape(&v, "conflict");
    let (s, _, v) = http(
        "POST",
        &u("/v1/users"),
        Some(&admin),
        Some(r#"{"name":"u-admin","role":"admin"}"#),
    );
    assert_eq!(s, 409);
    assert_error_shape(&v, "conflict");
    // 413: over the 1 MiB body limit.
    let big = json!({"notes": "x".repeat(1_200_000)}).to_string();
    let (s, _, v) = http("POST", &u("/v1/subjects"), Some(&admin), Some(&big));
    assert_eq!(s, 413);
    assert_error_shape(&v, "payload_too_large");
    // 422: invalid field, named.
    let (s, _, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&admin),
        Some(r#"{"email":"not-an-email"}"#),
    );
    assert_eq!(s, 422);
    assert_error_shape(&v, "invalid_input");
    assert_eq!(v["error"]["fields"][0]["field"], "email");
    // 400: malformed JSON, same shape.
    let (s, _, v) = http("POST", &u("/v1/subjects"), Some(&admin), Some("{"));
    assert_eq!(s, 400);
    assert_error_shape(&v, "malformed_json");
    drop(server);

    // 429 with Retry-After, per token: another token is not affected.
    let server = env.serve_with("warn", &["--rate-limit", "1", "--rate-burst", "3"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let mut statuses = Vec::new();
    let mut limited_head = String::new();
    let mut limited_body = Value::Null;
    for _ in 0..6 {
        let (s, head, v) = http("GET", &u(&format!("/v1/subjects/{id}")), Some(&admin), None);
        if s == 429 {
            limited_head = head;
            limited_body = v;
        }
        statuses.push(s);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_error_shape(&limited_body, "rate_limited");
    assert!(
        limited_head.to_ascii_lowercase().contains("retry-after: "),
        "{limited_head}"
    );
    let (s, _, _) = http(
        "GET",
        &u(&format!("/v1/subjects/{id}")),
        Some(&tokens["dpo"]),
        None,
    );
    assert_eq!(s, 200, "another token has its own bucket");
}

#[test]
fn openapi_metrics_and_policy_reload_on_sighup() {
    let env = Env::init();
    let tokens = tokens(&env);
    let server = env.serve_with("info", &["--rate-limit", "0"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let (s, _, doc) = http("GET", &u("/openapi.json"), None, None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/subjects/{id}"]["get"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The document's info is what the project set, nothing inherited from package metadata.
    let info = doc["info"].as_object().unwrap();
    let keys: Vec<&str> = info.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["description", "license", "title", "version"],
        "{info:?}"
    );
    assert_eq!(doc["info"]["license"]["name"], "AGPL-3.0-or-later");
    // No email address but the examples' reserved example.org domain.
    let text = doc.to_string();
    for (i, _) in text.match_indices('@') {
        assert!(
            text[i..].starts_with("@example.org"),
            "an address in the document: {}",
            &text[i.saturating_sub(40)..(i + 40).min(text.len())]
        );
    }

    let (_, _, v) = http(
        "POST",
        &u("/v1/subjects"),
        Some(&tokens["admin"]),
        Some(r#"{"given_name":"Ann","gift_aid_declared":true}"#),
    );
    let id = v["id"].as_str().unwrap().to_string();
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{id}")),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(v["withheld"], json!(["gift_aid_declared"]));

    let out = std::process::Command::new("curl")
        .args(["-s", &u("/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains(
            r#"steward_http_requests_total{route="/v1/subjects/{id}",method="GET",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("steward_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("steward_vault_key_slots 1"));

    // Let volunteers read financial data, reload with SIGHUP, and see the field appear.
    let policy = env.data.join("policies/policy.csv");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("p, volunteer, subject:financial, read\n");
    std::fs::write(&policy, &text).unwrap();
    // Each SIGHUP leaves one log line ("reloaded" or "refused"); wait for it, not for a time.
    let reloads = || {
        std::fs::read_to_string(&server.log)
            .unwrap_or_default()
            .matches("policy")
            .count()
    };
    let hup = || {
        let before = reloads();
        std::process::Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .unwrap();
        let started = std::time::Instant::now();
        while reloads() == before && started.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(reloads() > before, "the server did not react to SIGHUP");
    };
    hup();
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{id}")),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(v["fields"]["gift_aid_declared"], true, "{v}");
    // A broken edit is refused and the rules in force stay.
    std::fs::write(
        &policy,
        format!("{text}p, volunteer, subject:nonsense, read\n"),
    )
    .unwrap();
    hup();
    let (_, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{id}")),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(v["fields"]["gift_aid_declared"], true, "{v}");
    // Purposes reload with the rules: a purpose added to the file is in force after SIGHUP.
    std::fs::write(&policy, &text).unwrap();
    let purposes = env.data.join("policies/purposes.toml");
    let mut ptext = std::fs::read_to_string(&purposes).unwrap();
    ptext.push_str("\n[[purpose]]\nname = \"reload-check\"\ndescription = \"x\"\nbasis = \"legitimate_interests\"\nmarketing = false\nopt_out = true\nfields = [\"given_name\"]\nretention = \"while active\"\n");
    std::fs::write(&purposes, &ptext).unwrap();
    hup();
    let (s, _, v) = http(
        "GET",
        &u(&format!("/v1/subjects/{id}/consent")),
        Some(&tokens["admin"]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("reload-check"), "{v}");
    let log = server.log.clone();
    assert!(server.stop().success());
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("policy files reloaded") && log.contains("policy reload refused"),
        "{log}"
    );
    // The CLI check names the bad line.
    std::fs::write(
        &policy,
        format!("{text}p, volunteer, subject:nonsense, read\n"),
    )
    .unwrap();
    let out = env.run(&["policy", "check"], None);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("unknown object \"subject:nonsense\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_cli_goes_through_the_same_door_as_a_principal() {
    let env = Env::init();
    let tokens = tokens(&env);
    let id = env.add(&json!({"given_name": "Ann", "email": "ann@example.org", "religion": "r"}));
    // With a volunteer's token the CLI sees what a volunteer sees over HTTP.
    let v = env.json(
        &["subject", "show", &id, "--token", &tokens["volunteer"]],
        None,
    );
    assert_eq!(
        v["fields"],
        json!({"given_name": "Ann", "email": "ann@example.org"})
    );
    assert_eq!(v["withheld"], json!(["religion"]));
    let out = env.run(
        &["subject", "erase", &id, "--token", &tokens["volunteer"]],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("may not erase"), "{}", stderr(&out));
    let out = env.run(
        &["subject", "show", &id, "--token", &tokens["auditor"]],
        None,
    );
    assert_eq!(out.status.code(), Some(7));
    let out = env.run(&["subject", "show", &id, "--token", "stw_bogus"], None);
    assert_eq!(out.status.code(), Some(6));
    // Without a token it is the local admin.
    assert_eq!(
        env.json(&["subject", "show", &id], None)["withheld"],
        json!([])
    );
    // Users: list shows roles, never tokens or hashes.
    let list = env.json(&["users", "list"], None);
    assert!(!list.to_string().contains("stw_") && !list.to_string().contains("token_hash"));
    assert_eq!(list["items"].as_array().unwrap().len(), 7);
}

#[test]
fn failed_authentications_from_one_source_are_limited_and_audited_once_per_window() {
    let env = Env::init();
    let tokens = tokens(&env);
    let server = env.serve_with("warn", &["--auth-failures-per-minute", "5"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let events = |env: &Env| {
        env.json(
            &[
                "audit",
                "query",
                "--limit",
                "100000",
                "--action",
                "authenticate",
            ],
            None,
        )["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut statuses = Vec::new();
    let mut retry = String::new();
    for _ in 0..40 {
        let (s, head, v) = http("GET", &u("/v1/subjects"), Some("not-a-token"), None);
        if s == 429 {
            assert_error_shape(&v, "rate_limited");
            retry = head;
        }
        statuses.push(s);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(
        retry.to_ascii_lowercase().contains("retry-after: "),
        "{retry}"
    );
    // While the source is held back, even a good token waits: guessing cannot go on.
    let (s, _, _) = http("GET", &u("/v1/subjects"), Some(&tokens["admin"]), None);
    assert_eq!(s, 429);
    server.stop();
    // Five events for the five failures, and one for the 36 requests refused unread.
    let items = events(&env);
    let failed: Vec<&Value> = items
        .iter()
        .filter(|e| e["reason"] == "unauthenticated")
        .collect();
    assert_eq!(failed.len(), 5, "{items:?}");
    let summary: Vec<&Value> = items
        .iter()
        .filter(|e| e["reason"] == "too_many_failed_authentications")
        .collect();
    assert_eq!(summary.len(), 1, "{items:?}");
    assert_eq!(summary[0]["count"], 36, "{:?}", summary[0]);
}

#[test]
fn an_empty_upload_and_an_empty_mapping_are_refused_naming_what_is_missing() {
    let env = Env::init();
    let tokens = tokens(&env);
    let server = env.serve_with("warn", &["--rate-limit", "0"]);
    let u = |p: &str| format!("{}{p}", server.url);
    let admin = Some(tokens["admin"].as_str());
    let (s, _, v) = http("POST", &u("/v1/imports?profile=generic"), admin, Some(""));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("empty"),
        "{v}"
    );
    let (s, _, v) = http("PUT", &u("/v1/mappings/nothing"), admin, Some("\n"));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sets nothing"),
        "{v}"
    );
    let (s, _, v) = http("GET", &u("/v1/mappings"), admin, None);
    assert_eq!(s, 200);
    assert_eq!(v["names"], serde_json::json!([]), "nothing was stored");
}
