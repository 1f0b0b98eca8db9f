//! Recipients and Art. 19 notifications through the real binary, the real server and a real
//! webhook receiver on loopback that checks signatures and timestamps as Standard Webhooks
//! documents it (HMAC-SHA256 of `id.timestamp.body`, base64, `v1,` prefix, five minutes'
//! tolerance), and processes each `webhook-id` once.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::access::tokens;
use crate::support::*;

/// The receiver's check, as the convention documents it.
fn verify(key: &[u8], id: &str, ts: &str, body: &[u8], header: &str, now: i64) -> bool {
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    if (now - t).abs() > 300 {
        return false;
    }
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    header.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|sig| ring::hmac::verify(&k, &signed, &sig).is_ok())
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    ts: String,
    signature: String,
    body: Vec<u8>,
    verified: bool,
    answered: u16,
}

#[derive(Default)]
struct Book {
    deliveries: Vec<Delivery>,
    /// Answers to give before 200: (status, Retry-After).
    script: VecDeque<(u16, Option<u64>)>,
    /// Events processed (verified, answered 200, first time for their id).
    processed: Vec<Value>,
    seen: BTreeSet<String>,
}

/// A webhook receiver on loopback.
struct Receiver {
    url: String,
    key: Vec<u8>,
    book: Arc<Mutex<Book>>,
}

impl Receiver {
    fn start(key: Vec<u8>) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), key)
    }

    fn on(listener: TcpListener, key: Vec<u8>) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let book = Arc::new(Mutex::new(Book::default()));
        let (b, k) = (book.clone(), key.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut headers = std::collections::HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let h = |n: &str| headers.get(n).cloned().unwrap_or_default();
                let verified = verify(
                    &k,
                    &h("webhook-id"),
                    &h("webhook-timestamp"),
                    &body,
                    &h("webhook-signature"),
                    unix_now(),
                );
                let mut book = b.lock().unwrap();
                let (status, retry) = if !verified {
                    (400, None)
                } else {
                    book.script.pop_front().unwrap_or((200, None))
                };
                if status == 200 && book.seen.insert(h("webhook-id")) {
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    book.processed.push(event);
                }
                book.deliveries.push(Delivery {
                    id: h("webhook-id"),
                    ts: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    body: body.clone(),
                    verified,
                    answered: status,
                });
                drop(book);
                let extra = retry
                    .map(|r| format!("retry-after: {r}\r\n"))
                    .unwrap_or_default();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
                );
            }
        });
        Receiver { url, key, book }
    }

    fn wait_processed(&self, n: usize, within: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.book.lock().unwrap().processed.clone();
            if got.len() >= n || start.elapsed() > within {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.book.lock().unwrap().deliveries.clone()
    }
}

/// A Standard Webhooks secret file and its key.
fn secret(env: &Env, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let mut key = vec![0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(name.len() as u8);
    }
    let path = env.tmp.path().join(format!("{name}.secret"));
    std::fs::write(
        &path,
        format!(
            "whsec_{}\n",
            base64::engine::general_purpose::STANDARD.encode(&key)
        ),
    )
    .unwrap();
    (path, key)
}

fn export_to(env: &Env, purpose: &str, recipient: &str) -> Vec<Value> {
    let out = env.run(
        &[
            "export",
            "--purpose",
            purpose,
            "--recipient",
            recipient,
            "--format",
            "jsonl",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two string members of each item of a list, as a set of pairs.
fn pairs(items: &Value, a: &str, b: &str) -> BTreeSet<(String, String)> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n[a].as_str().unwrap().into(), n[b].as_str().unwrap().into()))
        .collect()
}

fn register(env: &Env, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["recipients", "add", name];
    args.extend_from_slice(extra);
    env.json(&args, None)
}

#[test]
fn an_erasure_reaches_a_webhook_recipient_once_and_a_person_for_the_other() {
    let env = Env::init();
    let tokens = tokens(&env);
    let (secret_file, key) = secret(&env, "mailhouse");
    let receiver = Receiver::start(key.clone());
    register(
        &env,
        "mailhouse",
        &[
            "--endpoint",
            &receiver.url,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--allow-loopback",
            "--purposes",
            "donor-stewardship",
            "--country",
            "GB",
        ],
    );
    let agency = register(
        &env,
        "Phone Agency",
        &["--country", "US", "--groups", "identity"],
    );
    assert_eq!(
        agency["recipient"]["transfer_outside_uk_eea"], true,
        "{agency}"
    );
    let orla = env.add(&json!({"given_name": "Orla", "family_name": "Vance",
        "email": "orla@example.org", "external_id": "MH-1001", "city": "Leeds"}));
    let other =
        env.add(&json!({"given_name": "Piet", "family_name": "Ros", "email": "piet@example.org"}));

    // The export to a recipient carries its own reference and only what the register allows.
    let rows = export_to(&env, "donor-stewardship", "mailhouse");
    let row = rows.iter().find(|r| r["id"] == orla.as_str()).unwrap();
    let reference = row["ref"].as_str().unwrap().to_string();
    assert!(
        reference.starts_with("r_") && row["email"] == "orla@example.org",
        "{row}"
    );
    let agency_rows = export_to(&env, "donor-stewardship", "Phone Agency");
    let arow = agency_rows
        .iter()
        .find(|r| r["id"] == orla.as_str())
        .unwrap();
    assert!(
        arow.get("email").is_none() && arow.get("city").is_none(),
        "{arow}"
    );
    assert_eq!(arow["family_name"], "Vance");
    assert_ne!(
        arow["ref"], row["ref"],
        "two recipients get different references"
    );
    // The register limits the purposes.
    let out = env.run(
        &[
            "export",
            "--purpose",
            "fundraising-post",
            "--recipient",
            "mailhouse",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("mailhouse"), "{}", stderr(&out));

    // Art. 15(1)(c), Art. 19: who received Orla's data.
    let of = env.json(&["recipients", "of", &orla], None);
    let names: BTreeSet<&str> = of["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["mailhouse", "Phone Agency"]), "{of}");
    let groups = of["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["recipient"] == "Phone Agency")
        .unwrap()["groups"]
        .clone();
    assert_eq!(groups, json!(["identity"]), "{of}");

    // An erasure request, then the erasure through the API.
    let req = env.json(
        &[
            "request",
            "open",
            "--type",
            "erasure",
            "--subject",
            &orla,
            "--jurisdiction",
            "uk-gdpr",
        ],
        None,
    );
    let req_id = req["id"].as_str().unwrap().to_string();
    let server = env.serve("warn");
    let (s, _, v) = http(
        "DELETE",
        &format!("{}/v1/subjects/{orla}", server.url),
        Some(&tokens["admin"]),
        None,
    );
    assert!((200..300).contains(&s), "{s} {v}");
    let got = receiver.wait_processed(1, Duration::from_secs(20));
    assert_eq!(
        got.len(),
        1,
        "one verified delivery: {:?}",
        receiver.deliveries()
    );
    let event = &got[0];
    assert_eq!(event["type"], "subject.erased", "{event}");
    assert_eq!(event["data"]["reference"], reference.as_str(), "{event}");
    let text = event.to_string().to_lowercase();
    for personal in [
        "orla",
        "vance",
        "example.org",
        "mh-1001",
        "leeds",
        &orla.to_lowercase(),
    ] {
        assert!(
            !text.contains(personal),
            "the webhook carried `{personal}`: {text}"
        );
    }
    // The other subject was not exported... it was, but not erased: nothing about it.
    assert!(!text.contains(&other.to_lowercase()));

    // The recipient without an endpoint is a task for a person, in the API and the CLI.
    let (s, _, pending) = http(
        "GET",
        &format!("{}/v1/notifications", server.url),
        Some(&tokens["dpo"]),
        None,
    );
    assert_eq!(s, 200, "{pending}");
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(items[0]["recipient"], "Phone Agency");
    assert_eq!(items[0]["state"], "task");
    assert_eq!(items[0]["groups"], json!(["identity"]));
    let task = items[0]["id"].as_str().unwrap().to_string();
    let (s, _, _) = http(
        "GET",
        &format!("{}/v1/notifications", server.url),
        Some(&tokens["volunteer"]),
        None,
    );
    assert_eq!(s, 403);

    // The request shows each recipient's state.
    let (s, _, r) = http(
        "GET",
        &format!("{}/v1/requests/{req_id}", server.url),
        Some(&tokens["dpo"]),
        None,
    );
    assert_eq!(s, 200, "{r}");
    let states = pairs(&r["notifications"], "recipient", "state");
    assert_eq!(
        states,
        BTreeSet::from([
            ("mailhouse".to_string(), "delivered".to_string()),
            ("Phone Agency".to_string(), "task".to_string())
        ]),
        "{r}"
    );

    // A person marks the task done, with a note; it is audited.
    let (s, _, done) = http(
        "POST",
        &format!("{}/v1/notifications/{task}/done", server.url),
        Some(&tokens["dpo"]),
        Some(r#"{"note": "phoned their DPO, ticket 4471"}"#),
    );
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["state"], "done");
    assert!(server.stop().success());
    let left = env.json(&["notify", "pending"], None);
    assert_eq!(left["items"], json!([]), "{left}");
    let audit = env.json(&["audit", "query", "--action", "notification"], None);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"deliver.notification") && actions.contains(&"complete.notification"),
        "{audit}"
    );
    let audit_text = audit.to_string().to_lowercase();
    assert!(
        !audit_text.contains("ticket 4471") && !audit_text.contains("orla"),
        "{audit_text}"
    );
}

#[test]
fn a_receiver_that_fails_twice_processes_the_event_once_and_410_disables_the_recipient() {
    let env = Env::init();
    let tokens = tokens(&env);
    let (secret_file, key) = secret(&env, "flaky");
    let flaky = Receiver::start(key.clone());
    // Two refusals with Retry-After: 1 s (the default schedule would wait 10 s, then 60 s).
    flaky.book.lock().unwrap().script = VecDeque::from([(503, Some(1)), (429, Some(1))]);
    let (gone_file, gone_key) = secret(&env, "gone-co");
    let gone = Receiver::start(gone_key);
    gone.book.lock().unwrap().script = VecDeque::from([(410, None)]);
    for (name, file, url) in [
        ("flaky", &secret_file, &flaky.url),
        ("gone-co", &gone_file, &gone.url),
    ] {
        register(
            &env,
            name,
            &[
                "--endpoint",
                url,
                "--secret-file",
                file.to_str().unwrap(),
                "--allow-loopback",
            ],
        );
    }
    let id =
        env.add(&json!({"given_name": "Ada", "family_name": "Quill", "email": "ada@example.org"}));
    export_to(&env, "donor-stewardship", "flaky");
    export_to(&env, "donor-stewardship", "gone-co");
    let server = env.serve("warn");
    // A rectification of a field both received.
    let (s, _, v) = http(
        "PATCH",
        &format!("{}/v1/subjects/{id}", server.url),
        Some(&tokens["admin"]),
        Some(r#"{"email": "ada.quill@example.org"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let got = flaky.wait_processed(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "subject.rectified");
    assert_eq!(got[0]["data"]["groups"], json!(["contact"]), "{}", got[0]);
    std::thread::sleep(Duration::from_millis(300));
    let attempts = flaky.deliveries();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.verified && a.id == attempts[0].id),
        "same webhook-id every time"
    );
    assert_eq!(
        attempts.iter().map(|a| a.answered).collect::<Vec<_>>(),
        vec![503, 429, 200]
    );
    assert!(server.stop().success());

    // 410 Gone: the recipient is disabled and a person takes over.
    let shown = env.json(&["recipients", "show", "gone-co"], None);
    assert!(
        shown["disabled"]["reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{shown}"
    );
    let pending = env.json(&["notify", "pending"], None);
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(
        (items[0]["recipient"].as_str(), items[0]["state"].as_str()),
        (Some("gone-co"), Some("failed"))
    );
    // A disabled recipient receives no export.
    let out = env.run(
        &[
            "export",
            "--purpose",
            "donor-stewardship",
            "--recipient",
            "gone-co",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("disabled"), "{}", stderr(&out));
}

#[test]
fn deliveries_pending_when_the_server_is_killed_are_sent_after_restart() {
    let env = Env::init();
    let tokens = tokens(&env);
    let (secret_file, key) = secret(&env, "later");
    let receiver = Receiver::start(key);
    // Busy at first: it asks to be tried again in 2 s, many times over.
    receiver.book.lock().unwrap().script = std::iter::repeat_n((503, Some(2)), 50).collect();
    register(
        &env,
        "later",
        &[
            "--endpoint",
            &receiver.url,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--allow-loopback",
        ],
    );
    let id =
        env.add(&json!({"given_name": "Kit", "family_name": "Marsh", "email": "kit@example.org"}));
    export_to(&env, "donor-stewardship", "later");
    let mut server = env.serve("warn");
    let (s, _, _) = http(
        "DELETE",
        &format!("{}/v1/subjects/{id}", server.url),
        Some(&tokens["admin"]),
        None,
    );
    assert!((200..300).contains(&s));
    let start = Instant::now();
    while receiver.deliveries().is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!receiver.deliveries().is_empty(), "a first attempt");
    // Killed, not stopped: nothing gets to tidy up.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    receiver.book.lock().unwrap().script.clear();
    let before = receiver.deliveries().len();
    let server = env.serve("warn");
    let got = receiver.wait_processed(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{:?}", receiver.deliveries());
    assert_eq!(got[0]["type"], "subject.erased");
    let all = receiver.deliveries();
    assert!(all.len() > before);
    assert!(
        all.iter().all(|d| d.id == all[0].id),
        "one event id throughout"
    );
    assert!(server.stop().success());
    let state = env.json(&["notify", "pending", "--all"], None);
    assert_eq!(state["items"], json!([]), "{state}");
}

#[test]
fn the_receivers_check_refuses_a_tampered_body_and_an_old_timestamp() {
    let env = Env::init();
    let (secret_file, key) = secret(&env, "checker");
    let receiver = Receiver::start(key.clone());
    register(
        &env,
        "checker",
        &[
            "--endpoint",
            &receiver.url,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--allow-loopback",
        ],
    );
    let id =
        env.add(&json!({"given_name": "Mo", "family_name": "Tarrant", "email": "mo@example.org"}));
    export_to(&env, "donor-stewardship", "checker");
    env.json(&["subject", "erase", &id], None);
    env.json(&["notify", "deliver"], None);
    let d = receiver.deliveries().pop().expect("a delivery");
    assert!(d.verified);
    let now = unix_now();
    assert!(verify(
        &receiver.key,
        &d.id,
        &d.ts,
        &d.body,
        &d.signature,
        now
    ));
    let mut tampered = d.body.clone();
    tampered.extend_from_slice(b" ");
    assert!(!verify(
        &receiver.key,
        &d.id,
        &d.ts,
        &tampered,
        &d.signature,
        now
    ));
    assert!(!verify(
        &receiver.key,
        "msg_other",
        &d.ts,
        &d.body,
        &d.signature,
        now
    ));
    assert!(
        !verify(
            &receiver.key,
            &d.id,
            &d.ts,
            &d.body,
            &d.signature,
            now + 301
        ),
        "a replay after five minutes"
    );
    assert!(
        !verify(&[7u8; 32], &d.id, &d.ts, &d.body, &d.signature, now),
        "another key"
    );

    // Rotation: the new secret and the old one both sign for a day.
    let rotated = env.json(
        &["recipients", "update", "checker", "--rotate-secret"],
        None,
    );
    let new_secret = rotated["secret"].as_str().unwrap();
    let new_key = base64::engine::general_purpose::STANDARD
        .decode(new_secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(rotated["recipient"]["signing_secrets"], 2, "{rotated}");
    let shown = env.json(&["recipients", "show", "checker"], None);
    assert!(
        !shown.to_string().contains(new_secret),
        "a secret is shown once"
    );
    let id2 = env.add(&json!({"given_name": "Jo", "family_name": "Tarrant"}));
    export_to(&env, "donor-stewardship", "checker");
    env.json(&["subject", "erase", &id2], None);
    env.json(&["notify", "deliver"], None);
    let d2 = receiver.deliveries().pop().unwrap();
    assert_eq!(d2.signature.split(' ').count(), 2, "{}", d2.signature);
    assert!(
        verify(&key, &d2.id, &d2.ts, &d2.body, &d2.signature, unix_now()),
        "old key still verifies"
    );
    assert!(
        verify(
            &new_key,
            &d2.id,
            &d2.ts,
            &d2.body,
            &d2.signature,
            unix_now()
        ),
        "new key verifies"
    );
}

#[test]
fn endpoints_at_private_addresses_and_operator_allowances_over_the_api_are_refused() {
    let env = Env::init();
    let tokens = tokens(&env);
    for (endpoint, extra) in [
        ("https://10.0.0.5/hook", None),
        ("https://169.254.169.254/latest/meta-data", None),
        ("https://[fd00::1]/hook", None),
        ("http://127.0.0.1:9/hook", None),
        ("http://198.51.100.7/hook", Some("--allow-loopback")),
        ("https://user:pw@203.0.113.10/hook", None),
    ] {
        let mut args = vec!["recipients", "add", "probe", "--endpoint", endpoint];
        args.extend(extra);
        let out = env.run(&args, None);
        assert!(!out.status.success(), "{endpoint} was accepted");
        assert!(
            stderr(&out).contains("endpoint"),
            "{endpoint}: {}",
            stderr(&out)
        );
    }
    assert_eq!(env.json(&["recipients", "list"], None)["items"], json!([]));
    // An endpoint without a secret gets one, shown once.
    let made = register(&env, "public", &["--endpoint", "https://203.0.113.10/hook"]);
    assert!(
        made["secret"].as_str().unwrap().starts_with("whsec_"),
        "{made}"
    );
    let server = env.serve("warn");
    let post = |body: Value, token: &str| {
        http(
            "POST",
            &format!("{}/v1/recipients", server.url),
            Some(token),
            Some(&body.to_string()),
        )
    };
    let (s, _, v) = post(
        json!({"name": "sneaky", "endpoint": "https://192.168.1.1/x"}),
        &tokens["dpo"],
    );
    assert_eq!(s, 400, "{v}");
    let (s, _, v) = post(
        json!({"name": "sneaky", "endpoint": "http://127.0.0.1:9/x", "allow_loopback": true}),
        &tokens["admin"],
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("command line"),
        "{v}"
    );
    let (s, _, v) = post(
        json!({"name": "Gift Aid Agent", "role": "processor", "purposes": ["gift-aid-claim"], "country": "GB"}),
        &tokens["fundraiser"],
    );
    assert_eq!(s, 403, "{v}");
    let (s, _, v) = post(
        json!({"name": "Gift Aid Agent", "role": "processor", "purposes": ["gift-aid-claim"], "country": "GB"}),
        &tokens["dpo"],
    );
    assert_eq!(s, 201, "{v}");
    let (s, _, list) = http(
        "GET",
        &format!("{}/v1/recipients", server.url),
        Some(&tokens["auditor"]),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains("whsec_"), "{list}");
    assert!(server.stop().success());
}

#[test]
fn an_import_that_changes_a_disclosed_subject_and_a_withdrawal_owe_the_recipient_a_notice() {
    let env = Env::init();
    register(
        &env,
        "Email Platform",
        &["--purposes", "newsletter-email,donor-stewardship"],
    );
    let id = env.add(&json!({"given_name": "Rae", "family_name": "Okafor",
        "email": "rae@example.org", "external_id": "CRM-77", "city": "Leeds"}));
    env.give_consent(&id, "newsletter-email", "form:signup");
    export_to(&env, "newsletter-email", "Email Platform");
    assert_eq!(env.json(&["notify", "pending"], None)["items"], json!([]));
    // The same person again from the old CRM, with a new city: merged by external id.
    let file = env.tmp.path().join("update.csv");
    std::fs::write(
        &file,
        "External ID,First Name,Last Name,Email,City\nCRM-77,Rae,Okafor,rae@example.org,York\n",
    )
    .unwrap();
    let v = env.json(
        &["import", file.to_str().unwrap(), "--profile", "generic"],
        None,
    );
    assert_eq!(v["merged"], 1, "{v}");
    let pending = env.json(&["notify", "pending"], None);
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(items[0]["event"], "subject.rectified");
    assert_eq!(items[0]["subject"], id.as_str());
    // Withdrawing the newsletter consent concerns the recipient of that purpose.
    env.json(
        &[
            "consent",
            "record",
            "--subject",
            &id,
            "--purpose",
            "newsletter-email",
            "--event",
            "withdrawn",
            "--source",
            "unsubscribe-link",
        ],
        None,
    );
    // A withdrawal for a purpose it never received for concerns nobody.
    env.json(
        &[
            "consent",
            "record",
            "--subject",
            &id,
            "--purpose",
            "fundraising-phone",
            "--event",
            "withdrawn",
            "--source",
            "phone",
        ],
        None,
    );
    let pending = env.json(&["notify", "pending"], None);
    let events: Vec<(&str, Option<&str>)> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["event"].as_str().unwrap(), n["purpose"].as_str()))
        .collect();
    assert_eq!(
        events,
        vec![
            ("subject.rectified", None),
            ("consent.withdrawn", Some("newsletter-email"))
        ],
        "{pending}"
    );
    // Done notifications are kept as long as closed requests (24 months), open ones always.
    let first = pending["items"][0]["id"].as_str().unwrap().to_string();
    env.json(
        &[
            "notify",
            "done",
            &first,
            "--note",
            "emailed their privacy team",
        ],
        None,
    );
    let now = env.json(&["retention", "run", "--dry-run"], None);
    assert_eq!(now["notifications_purged"], 0, "{now}");
    let later = env.json(&["retention", "run", "--now", "2031-01-01"], None);
    assert_eq!(later["notifications_purged"], 1, "{later}");
    let left = env.json(&["notify", "pending"], None);
    assert_eq!(left["items"].as_array().unwrap().len(), 1, "{left}");
    let out = env.run(&["notify", "done", &first, "--note", "again"], None);
    assert!(!out.status.success(), "a purged notification is gone");
}

#[test]
fn a_record_merged_into_another_is_still_told_of_by_the_reference_its_recipient_holds() {
    let env = Env::init();
    register(&env, "Mailing House", &[]);
    let kept = env
        .add(&json!({"given_name": "Nell", "family_name": "Garrow", "email": "nell@example.org"}));
    let rows = export_to(&env, "donor-stewardship", "Mailing House");
    let kept_ref = rows.iter().find(|r| r["id"] == kept.as_str()).unwrap()["ref"].clone();
    // A duplicate arrives after the export and is exported too, then merged into the first.
    let dup = env.add(
        &json!({"given_name": "Nell", "family_name": "Garrow", "email": "nell.g@example.org"}),
    );
    let rows = export_to(&env, "donor-stewardship", "Mailing House");
    let dup_ref = rows.iter().find(|r| r["id"] == dup.as_str()).unwrap()["ref"].clone();
    env.json(&["merge", &kept, &dup], None);
    // The merge changed both records as the recipient holds them.
    let pending = env.json(&["notify", "pending"], None);
    let merged = pairs(&pending["items"], "event", "reference");
    assert_eq!(
        merged,
        BTreeSet::from([
            (
                "subject.rectified".to_string(),
                kept_ref.as_str().unwrap().to_string()
            ),
            (
                "subject.rectified".to_string(),
                dup_ref.as_str().unwrap().to_string()
            )
        ]),
        "{pending}"
    );
    env.json(&["subject", "erase", &kept], None);
    let pending = env.json(&["notify", "pending"], None);
    let refs: BTreeSet<String> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "subject.erased")
        .map(|n| {
            assert_eq!(n["subject"], kept.as_str());
            n["reference"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        refs,
        BTreeSet::from([
            kept_ref.as_str().unwrap().to_string(),
            dup_ref.as_str().unwrap().to_string()
        ]),
        "{pending}"
    );
}

#[test]
fn undoing_an_import_tells_the_recipients_of_what_it_takes_back() {
    let env = Env::init();
    register(&env, "Mailing House", &[]);
    let file = env.tmp.path().join("new.csv");
    std::fs::write(
        &file,
        "First Name,Last Name,Email\nIvo,Stark,ivo@example.org\n",
    )
    .unwrap();
    let import = env.json(
        &["import", file.to_str().unwrap(), "--profile", "generic"],
        None,
    );
    let rows = export_to(&env, "donor-stewardship", "Mailing House");
    assert_eq!(rows.len(), 1);
    env.json(&["import", "undo", import["id"].as_str().unwrap()], None);
    let pending = env.json(&["notify", "pending"], None);
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(items[0]["event"], "subject.erased");
    assert_eq!(items[0]["reference"], rows[0]["ref"]);
}

#[test]
fn an_https_endpoint_whose_certificate_no_authority_signed_is_never_sent_anything() {
    let env = Env::init();
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/data/tls");
    let got = env.tmp.path().join("tls-got.txt");
    // A TLS receiver on loopback with a self-signed certificate for 127.0.0.1.
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        open(sys.argv[3], "a").write("got\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(format!("{tls}/cert.pem"))
        .arg(format!("{tls}/key.pem"))
        .arg(&got)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://127.0.0.1:{}/hook", port.trim());
    let (secret_file, _) = secret(&env, "tls");
    register(
        &env,
        "tls-house",
        &[
            "--endpoint",
            &url,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--allow-loopback",
        ],
    );
    let id = env.add(&json!({"given_name": "Cy", "family_name": "Ware"}));
    export_to(&env, "donor-stewardship", "tls-house");
    env.json(&["subject", "erase", &id], None);
    let r = env.json(&["notify", "deliver"], None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        (r["delivered"].as_u64(), r["retrying"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert!(
        !got.exists(),
        "the receiver was sent a request over an unverified connection"
    );
    let pending = env.json(&["notify", "pending", "--all"], None);
    let error = pending["items"][0]["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(error.contains("certificate"), "{pending}");
}
