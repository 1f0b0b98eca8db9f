//! A data directory whose store is PostgreSQL: several servers over one database at once,
//! the CLI beside them, one audit chain, versions checked across servers, and a database
//! that is not this directory's refused. Runs against the server `STEWARD_TEST_PG` names.

use serde_json::{json, Value};

use crate::support::{fresh_database, http, http_with, stderr, Env};

fn token_of(env: &Env, name: &str, role: &str) -> String {
    env.json(&["users", "add", name, "--role", role], None)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn create(url: &str, token: &str, body: &Value) -> String {
    let (s, _, v) = http(
        "POST",
        &format!("{url}/v1/subjects"),
        Some(token),
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn two_servers_and_the_cli_share_one_database() {
    let Some(db) = fresh_database() else { return };
    let env = Env::init_on(&db);
    assert!(
        !env.data.join("store").exists() && !env.data.join("keys/deks.slots").exists(),
        "the data directory keeps no sled store and no slot file"
    );
    let admin = token_of(&env, "ada", "admin");
    let a = env.serve("info");
    let b = env.serve("info");
    // Created through one, read, updated and erased through the other.
    let id = create(
        &a.url,
        &admin,
        &json!({"given_name": "Perpetua", "family_name": "Quillfeather", "email": "pq@example.org"}),
    );
    let (s, _, v) = http(
        "GET",
        &format!("{}/v1/subjects/{id}", b.url),
        Some(&admin),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["fields"]["given_name"], "Perpetua", "{v}");
    // If-Match holds across servers: B moves the record to version 2, so A's write
    // made against version 1 is refused.
    let patch = |url: &str, version: &str, city: &str| {
        let header = format!("If-Match: {version}");
        http_with(
            "PATCH",
            &format!("{url}/v1/subjects/{id}"),
            Some(&admin),
            Some(&json!({"city": city}).to_string()),
            &[header.as_str()],
        )
    };
    let (s, _, v) = patch(&b.url, "1", "Leeds");
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = patch(&a.url, "1", "York");
    assert_eq!(s, 409, "a stale version through the other server: {v}");
    let (s, _, v) = http(
        "GET",
        &format!("{}/v1/subjects/{id}", a.url),
        Some(&admin),
        None,
    );
    assert_eq!(
        (s, v["fields"]["city"].as_str()),
        (200, Some("Leeds")),
        "{v}"
    );
    // A user made through one server signs in on the other at once.
    let (s, _, v) = http(
        "POST",
        &format!("{}/v1/users", a.url),
        Some(&admin),
        Some(r#"{"name":"fay","role":"fundraiser"}"#),
    );
    assert_eq!(s, 201, "{v}");
    let fay = v["token"].as_str().unwrap().to_string();
    let (s, _, v) = http(
        "GET",
        &format!("{}/v1/subjects/{id}", b.url),
        Some(&fay),
        None,
    );
    assert_eq!(s, 200, "{v}");
    // Writes from both servers at once: every one lands, and the audit log stays one chain.
    let ids: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = [&a.url, &b.url, &a.url, &b.url]
            .into_iter()
            .enumerate()
            .map(|(w, url)| {
                let admin = admin.clone();
                scope.spawn(move || {
                    (0..15)
                        .map(|i| {
                            create(
                                url,
                                &admin,
                                &json!({"given_name": format!("W{w}"), "family_name": format!("Concurrent{i}")}),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 60);
    for (i, id) in ids.iter().enumerate() {
        let url = if i % 2 == 0 { &b.url } else { &a.url };
        let (s, _, v) = http(
            "GET",
            &format!("{url}/v1/subjects/{id}"),
            Some(&admin),
            None,
        );
        assert_eq!(s, 200, "{id}: {v}");
    }
    // The CLI runs while both servers hold the directory.
    let shown = env.json(&["subject", "show", &id], None);
    assert_eq!(shown["fields"]["city"], "Leeds", "{shown}");
    let verified = env.json(&["audit", "verify"], None);
    assert!(verified["problem"].is_null(), "{verified}");
    assert!(
        verified["events"].as_u64().unwrap() > 120,
        "every read and write of both servers is in the one chain: {verified}"
    );
    // Erased through B: A answers 410 at once.
    let (s, _, v) = http(
        "DELETE",
        &format!("{}/v1/subjects/{id}", b.url),
        Some(&admin),
        None,
    );
    assert!((200..300).contains(&s), "{s} {v}");
    let (s, _, _) = http(
        "GET",
        &format!("{}/v1/subjects/{id}", a.url),
        Some(&admin),
        None,
    );
    assert_eq!(s, 410);
    // Each server's audit events are in the chain, in order, whoever wrote them.
    let (s, _, v) = http(
        "GET",
        &format!("{}/v1/audit?action=create.subject&limit=1000", b.url),
        Some(&admin),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let events = v["items"].as_array().unwrap();
    assert_eq!(events.len(), 61, "{v}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let verified = env.json(&["audit", "verify"], None);
    assert!(verified["problem"].is_null(), "{verified}");
}

#[test]
fn a_database_that_is_not_this_directorys_is_refused() {
    let Some(db) = fresh_database() else { return };
    let first = Env::init_on(&db);
    // A second `init` on the same database: refused, nothing made.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::binary())
        .args([
            "init",
            "--data",
            other.path().join("d").to_str().unwrap(),
            "--identity",
            other.path().join("id.txt").to_str().unwrap(),
            "--store",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already holds"), "{}", stderr(&out));
    assert!(!other.path().join("d").exists() && !other.path().join("id.txt").exists());
    // Another directory pointed at this database: refused on open by the keyed identity.
    let Some(second_db) = fresh_database() else {
        return;
    };
    let second = Env::init_on(&second_db);
    std::fs::copy(
        first.data.join("store.toml"),
        second.data.join("store.toml"),
    )
    .unwrap();
    let out = second.run(&["subject", "list", "--json"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("store_refused") || err.contains("another Steward"),
        "{err}"
    );
    // The first directory still works.
    let id = first.add(&json!({"given_name": "Ida"}));
    assert_eq!(
        first.json(&["subject", "show", &id], None)["fields"]["given_name"],
        "Ida"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::binary())
        .args([
            "init",
            "--data",
            tmp.path().join("d").to_str().unwrap(),
            "--identity",
            tmp.path().join("id.txt").to_str().unwrap(),
            "--store",
            "postgres://ada:s3cret@127.0.0.1:1/steward",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("s3cret"),
        "{err}"
    );
    assert!(!tmp.path().join("d").exists(), "nothing made");
}
