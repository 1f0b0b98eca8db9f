//! The web console over real HTTP (curl, no browser): sign-in, cookies, headers, CSRF,
//! lockout, session end, and what each role's page of one constituent shows. The browser
//! tests (`browser.rs`) drive the same pages in Chromium.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{Env, Server};

pub(crate) const PASSWORD: &str = "correct horse battery staple 7";

/// A data directory with one user per role (password [`PASSWORD`]) and one constituent with
/// a gift and a special-category field; returns the env and the subject's id.
pub(crate) fn console_env() -> (Env, String) {
    let env = Env::init();
    let pw = env.tmp.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    for (name, role) in [
        ("ada", "admin"),
        ("vera", "volunteer"),
        ("fran", "fundraiser"),
        ("dora", "dpo"),
        ("aldo", "auditor"),
    ] {
        let v = env.json(
            &[
                "users",
                "add",
                name,
                "--role",
                role,
                "--password-file",
                pw.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(v["console_password"], true, "{v}");
    }
    let id = env.add(&json!({
        "given_name": "Winnifred", "family_name": "Quarles", "email": "wq@example.org",
        "health_notes": "Uses a wheelchair",
        "gifts": [{"amount": "4321.00", "currency": "GBP", "date": "2025-05-01"},
                  {"amount": "10.50", "currency": "GBP", "date": "2025-06-01"}]
    }));
    (env, id)
}

/// A cookie jar and curl, for one browser-like client.
pub(crate) struct Client {
    jar: std::path::PathBuf,
    base: String,
}

/// One answer: status, headers (lower-case names), body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl Client {
    pub(crate) fn new(dir: &Path, name: &str, server: &Server) -> Client {
        Client {
            jar: dir.join(format!("{name}.cookies")),
            base: server.url.clone(),
        }
    }

    /// GET or POST (a form, url-encoded by curl) without following redirects.
    pub(crate) fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut c = Command::new("curl");
        c.args(["-s", "-D", "-", "-X", method])
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .arg(format!("{}{path}", self.base));
        for (k, v) in form {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = c
            .stdout(Stdio::piped())
            .output()
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            headers: head.to_string(),
            body: body.to_string(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Answer {
        self.call("GET", path, &[])
    }

    pub(crate) fn sign_in(&self, user: &str, password: &str) -> Answer {
        self.get("/");
        self.call(
            "POST",
            "/sign-in",
            &[
                ("username", user),
                ("password", password),
                ("next", "/home"),
            ],
        )
    }

    /// The CSRF token in a page's forms.
    pub(crate) fn csrf(&self, path: &str) -> String {
        let page = self.get(path).body;
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("the page has a CSRF field");
        page[at + 19..at + 19 + 64].to_string()
    }
}

#[test]
fn console_sign_in_sets_a_strict_cookie_and_each_role_sees_its_own_page() {
    let (env, id) = console_env();
    let server = env.serve("info");
    let anon = Client::new(env.tmp.path(), "anon", &server);
    // Not signed in: the page of a constituent sends to sign-in, remembering the path.
    let a = anon.get(&format!("/subjects/{id}"));
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location").unwrap(),
        format!("/?next=/subjects/{id}")
    );
    let page = anon.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"username\"") && page.body.contains("type=\"password\""));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!page.body.contains("<script>"), "no inline script");
    assert_eq!(page.header("cache-control").unwrap(), "no-store");
    // The vendored htmx is served from the binary.
    let htmx = anon.get("/static/htmx-2.0.11.min.js");
    assert_eq!(htmx.status, 200);
    assert!(htmx.body.contains("htmx"), "htmx is served");

    // A sign-in posted from another site is refused (browsers send Origin with form posts);
    // from this one it works.
    for (origin, status) in [("http://evil.example", "403"), (server.url.as_str(), "303")] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Origin: {origin}"),
            ])
            .args([
                "--data-urlencode",
                "username=vera",
                "--data-urlencode",
                &format!("password={PASSWORD}"),
            ])
            .arg(format!("{}/sign-in", server.url))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            status,
            "Origin {origin}"
        );
    }
    // A volunteer: the name, no gift, no special category.
    let vera = Client::new(env.tmp.path(), "vera", &server);
    let signed = vera.sign_in("vera", PASSWORD);
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location").unwrap(), "/home");
    let cookie = signed.header("set-cookie").unwrap();
    for part in [
        "steward_session=stw_s_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let v = vera.get(&format!("/subjects/{id}"));
    assert_eq!(v.status, 200);
    assert!(v.body.contains("Winnifred"));
    assert!(!v.body.contains("4321") && !v.body.contains("4,321"));
    assert!(v.body.contains("Gifts are not visible to your role"));
    assert!(!v.body.contains("wheelchair"));
    assert!(
        v.body.contains("not visible to your role"),
        "withheld fields are named"
    );

    // An admin: the gifts and their total; special category hidden until revealed.
    let ada = Client::new(env.tmp.path(), "ada", &server);
    assert_eq!(ada.sign_in("ada", PASSWORD).status, 303);
    let a = ada.get(&format!("/subjects/{id}"));
    assert!(
        a.body.contains("4321.00") && a.body.contains("Total GBP 4331.50"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("wheelchair"), "hidden until revealed");
    assert!(a.body.contains("special category, hidden until revealed"));
    let csrf = ada.csrf(&format!("/subjects/{id}"));
    let r = ada.call(
        "POST",
        &format!("/subjects/{id}/reveal"),
        &[("csrf", &csrf), ("reason", "care")],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("wheelchair"));
    // A reason outside the list is refused.
    let r = ada.call(
        "POST",
        &format!("/subjects/{id}/reveal"),
        &[("csrf", &csrf), ("reason", "curiosity")],
    );
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("wheelchair"));

    // An auditor reads no personal data; the page says so.
    let aldo = Client::new(env.tmp.path(), "aldo", &server);
    assert_eq!(aldo.sign_in("aldo", PASSWORD).status, 303);
    let p = aldo.get(&format!("/subjects/{id}"));
    assert_eq!(p.status, 403);
    assert!(!p.body.contains("Winnifred"));
    assert!(p.body.contains("Not open to your role"));
    // ... and finds the page views in the audit log: the reveal with its reason.
    let log = aldo.get(&format!("/audit?subject={id}&action=read.subject"));
    assert_eq!(log.status, 200);
    assert!(log.body.contains("reveal:care"), "{}", log.body);
    assert!(log.body.contains("vera (volunteer)") && log.body.contains("ada (admin)"));
    let denied = aldo.get("/audit?action=read.subject&outcome=denied");
    assert!(denied.body.contains("aldo (auditor)"));
    let bad = aldo.get("/audit?from=yesterday");
    assert!(bad.body.contains("From: not a date"), "{}", bad.body);
    // The chain verifies; a checkpoint is signed; a range exports as CSV.
    let csrf = aldo.csrf("/audit");
    let v = aldo.call("POST", "/audit/verify", &[("csrf", &csrf)]);
    assert!(v.body.contains("The log verifies."), "{}", v.body);
    let c = aldo.call("POST", "/audit/checkpoint", &[("csrf", &csrf)]);
    let cp: serde_json::Value = serde_json::from_str(&c.body).expect("a checkpoint as JSON");
    assert!(
        cp["signature"].as_str().is_some() && cp["erasures"].is_array(),
        "{cp}"
    );
    let csv = aldo.get(&format!(
        "/audit/export.csv?subject={id}&action=read.subject"
    ));
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines.len() >= 4 && lines[1..].iter().all(|l| l.contains("read.subject")),
        "{}",
        csv.body
    );
    assert!(!csv.body.contains("Winnifred") && !csv.body.contains("wheelchair"));

    // Find by email: a POST with the CSRF token; the term is not in any URL.
    let csrf = vera.csrf("/find");
    let f = vera.call(
        "POST",
        "/find",
        &[("csrf", &csrf), ("by", "email"), ("term", "WQ@example.org")],
    );
    assert_eq!(f.status, 200);
    assert!(f.body.contains(&format!("/subjects/{id}")));
    // By family name, as typed in any case, with or without the first letters of a given
    // name: one search event names who was returned.
    for (term, given, found) in [
        ("QUARLES", "", true),
        ("quarles", "win", true),
        ("Quarles", "bob", false),
        ("Quarrels", "", false),
    ] {
        let f = vera.call(
            "POST",
            "/find",
            &[
                ("csrf", &csrf),
                ("by", "family_name"),
                ("term", term),
                ("given", given),
            ],
        );
        assert_eq!(f.status, 200);
        assert_eq!(
            f.body.contains("Winnifred Quarles") && f.body.contains(&format!("/subjects/{id}")),
            found,
            "{term} {given}: {}",
            f.body
        );
    }
    let f = vera.call(
        "POST",
        "/find",
        &[("csrf", &csrf), ("by", "family_name"), ("term", "'-")],
    );
    assert!(
        f.body.contains("A name needs at least one letter")
            || f.body.contains("a name needs at least one letter"),
        "{}",
        f.body
    );
    // Without the CSRF token, or with another session's, nothing is done.
    let other = ada.csrf("/find");
    for bad in ["", other.as_str(), "not-a-token"] {
        let f = vera.call(
            "POST",
            "/find",
            &[("csrf", bad), ("by", "email"), ("term", "wq@example.org")],
        );
        assert_eq!(f.status, 403, "csrf {bad:?}");
        assert!(!f.body.contains(&format!("/subjects/{id}")));
    }
    // Sign-out ends the session: the same cookie no longer opens pages.
    let csrf = vera.csrf("/home");
    let out = vera.call("POST", "/sign-out", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(vera.get("/home").status, 303);
    // The session cookie never reaches the server log.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("stw_s_") && !log.contains("Winnifred") && !log.contains("wq@"));
}

#[test]
fn console_lockout_after_five_failures_is_audited_and_a_new_password_ends_sessions() {
    let (env, _id) = console_env();
    let server = env.serve("info");
    let vera = Client::new(env.tmp.path(), "vera", &server);
    let open = vera.sign_in("vera", PASSWORD);
    assert_eq!(open.status, 303);
    let mallory = Client::new(env.tmp.path(), "mallory", &server);
    let started = std::time::Instant::now();
    for i in 1..=5 {
        let a = mallory.sign_in("vera", "not the password at all");
        assert_eq!(a.status, 401, "attempt {i}");
        assert!(
            a.body.contains("The user name or password is not right"),
            "{}",
            a.body
        );
        assert!(!a.body.contains("locked"));
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "a second's delay after each failure"
    );
    // Locked now: the right password is refused too, saying for how long.
    let a = mallory.sign_in("vera", PASSWORD);
    assert_eq!(a.status, 401);
    assert!(
        a.body.contains("locked for 15 more minute(s)"),
        "{}",
        a.body
    );
    // An unknown name reads exactly like a wrong password.
    let a = mallory.sign_in("nobody-here", PASSWORD);
    assert!(a.body.contains("The user name or password is not right"));
    // The session begun before the lock still works (the lock stops new sign-ins).
    assert_eq!(vera.get("/home").status, 200);
    // The audit log has every attempt, with its reason, and never the password.
    let aldo = Client::new(env.tmp.path(), "aldo", &server);
    assert_eq!(aldo.sign_in("aldo", PASSWORD).status, 303);
    let log = aldo.get("/audit?action=create.session&outcome=denied").body;
    assert_eq!(
        log.matches("(bad_credentials)").count(),
        5,
        "4 against vera, 1 unknown:\n{log}"
    );
    assert_eq!(log.matches("(locked_now)").count(), 1);
    assert_eq!(log.matches("(locked)").count(), 1);
    assert!(!log.contains("not the password"));
    // An admin sets a new password (the CLI, with the server stopped): the lock is lifted and
    // vera's old session has ended.
    server.stop();
    let pw2 = env.tmp.path().join("pw2");
    std::fs::write(&pw2, "a brand new passphrase\n").unwrap();
    let out = env.run(
        &[
            "users",
            "password",
            "vera",
            "--password-file",
            pw2.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let short = env.tmp.path().join("short");
    std::fs::write(&short, "short\n").unwrap();
    let out = env.run(
        &[
            "users",
            "password",
            "vera",
            "--password-file",
            short.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(crate::support::stderr(&out).contains("12 to 256 characters"));
    let server = env.serve("info");
    let vera = Client {
        jar: vera.jar.clone(),
        base: server.url.clone(),
    };
    let ended = vera.get("/home");
    assert_eq!(ended.status, 303);
    assert!(ended.header("location").unwrap().starts_with("/?ended=1"));
    let page = vera.get("/?ended=1&next=/home");
    assert!(page.body.contains("Your session has ended"));
    assert_eq!(vera.sign_in("vera", "a brand new passphrase").status, 303);
    assert_eq!(vera.get("/home").status, 200);
}

#[test]
fn console_records_consent_erases_with_confirmation_and_shows_policies() {
    let (env, id) = console_env();
    let server = env.serve("info");
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    let page = dora.get(&format!("/subjects/{id}")).body;
    assert!(page.contains("Record a consent event") && page.contains("Erase this constituent"));
    assert!(
        page.contains("Gift of GBP 4321.00"),
        "the timeline has the gifts"
    );
    // A consent event from the page lands in the ledger and the timeline.
    let csrf = dora.csrf(&format!("/subjects/{id}"));
    let r = dora.call(
        "POST",
        &format!("/subjects/{id}/consent"),
        &[
            ("csrf", &csrf),
            ("purpose", "newsletter-email"),
            ("event", "given"),
            ("source", "signup-form-2026"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = dora.get(&format!("/subjects/{id}")).body;
    assert!(
        page.contains("Consent given for newsletter-email"),
        "{page}"
    );
    // A fundraiser reads consent but may not record it: no form, and a forged post is refused.
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    let page = fran.get(&format!("/subjects/{id}")).body;
    assert!(!page.contains("Record a consent event") && !page.contains("Erase this constituent"));
    let csrf_f = fran.csrf(&format!("/subjects/{id}"));
    let r = fran.call(
        "POST",
        &format!("/subjects/{id}/consent"),
        &[
            ("csrf", &csrf_f),
            ("purpose", "newsletter-email"),
            ("event", "withdrawn"),
            ("source", "x"),
        ],
    );
    assert_eq!(r.status, 403);
    let r = fran.call(
        "POST",
        &format!("/subjects/{id}/erase"),
        &[("csrf", &csrf_f), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403);
    // Erasure needs the box ticked.
    let r = dora.call("POST", &format!("/subjects/{id}/erase"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 400);
    assert_eq!(
        dora.get(&format!("/subjects/{id}")).status,
        200,
        "not erased"
    );
    let r = dora.call(
        "POST",
        &format!("/subjects/{id}/erase"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").unwrap(),
        format!("/subjects/{id}/certificate")
    );
    let cert = dora.get(&format!("/subjects/{id}/certificate"));
    assert!(
        cert.body.contains("ERASURE CERTIFICATE") && !cert.body.contains("Winnifred"),
        "{}",
        cert.body
    );
    let gone = dora.get(&format!("/subjects/{id}"));
    assert_eq!(gone.status, 410);
    // The work queue: each role its own part.
    let home = dora.get("/home").body;
    assert!(home.contains("Subject-rights requests") && !home.contains("Imports in progress"));
    let ada = Client::new(env.tmp.path(), "ada", &server);
    assert_eq!(ada.sign_in("ada", PASSWORD).status, 303);
    let home = ada.get("/home").body;
    assert!(home.contains("Imports in progress") && home.contains("Possible duplicates"));
    // Policies: purposes and each role's permissions, for any role.
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    let home = vera.get("/home").body;
    assert!(home.contains("Nothing waits for your role here"), "{home}");
    let p = vera.get("/policies");
    assert_eq!(p.status, 200);
    assert!(p.body.contains("newsletter-email") && p.body.contains("subject:special"));
    // The audit log has both writes, done through the console's hub calls.
    let aldo = Client::new(env.tmp.path(), "aldo", &server);
    assert_eq!(aldo.sign_in("aldo", PASSWORD).status, 303);
    let log = aldo.get(&format!("/audit?subject={id}")).body;
    assert!(
        log.contains("update.consent") && log.contains("erase.subject"),
        "{log}"
    );
    assert!(
        log.contains("(forbidden)"),
        "the fundraiser's refused writes are audited"
    );
}

#[test]
fn console_edits_only_what_changed_and_refuses_a_stale_form() {
    let (env, id) = console_env();
    let server = env.serve("info");
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    let form = fran.get(&format!("/subjects/{id}/edit"));
    assert_eq!(form.status, 200);
    assert!(form.body.contains("value=\"Winnifred\"") && !form.body.contains("wheelchair"));
    let csrf = fran.csrf(&format!("/subjects/{id}/edit"));
    let r = fran.call(
        "POST",
        &format!("/subjects/{id}/edit"),
        &[
            ("csrf", &csrf),
            ("_version", "1"),
            ("given_name", "Winnie"),
            ("family_name", "Quarles"),
            ("email", "wq@example.org"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = fran.get(&format!("/subjects/{id}")).body;
    assert!(page.contains("Winnie Quarles"), "{page}");
    // The same form again (version 1) is stale now: refused, nothing written.
    let r = fran.call(
        "POST",
        &format!("/subjects/{id}/edit"),
        &[("csrf", &csrf), ("_version", "1"), ("given_name", "Wendy")],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(fran
        .get(&format!("/subjects/{id}"))
        .body
        .contains("Winnie Quarles"));
    // A volunteer may not edit: no link, and the form is refused.
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    assert!(!vera
        .get(&format!("/subjects/{id}"))
        .body
        .contains("Edit details"));
    assert_eq!(vera.get(&format!("/subjects/{id}/edit")).status, 403);
    // The audit log names the one field that changed.
    server.stop();
    let events = env.json(&["audit", "query", "--action", "update.subject"], None);
    let items = events["items"]
        .as_array()
        .or(events.as_array())
        .cloned()
        .unwrap_or_default();
    let ok: Vec<_> = items.iter().filter(|e| e["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 1, "{events}");
    assert_eq!(ok[0]["fields"], json!(["given_name"]), "{events}");
}

#[test]
fn console_work_queue_lists_legal_holds_that_end_soon_for_the_dpo_only() {
    let (env, _id) = console_env();
    // A hold that ends at the end of the calendar year of the last gift: last year's gift
    // makes a hold that is already due.
    let retention = env.data.join("policies/retention.toml");
    let text = std::fs::read_to_string(&retention)
        .unwrap()
        .replace("years_after_period_end = 6", "years_after_period_end = 0")
        .replace(
            "accounting_year_end = \"03-31\"",
            "accounting_year_end = \"12-31\"",
        );
    std::fs::write(&retention, text).unwrap();
    let held = env.add(&json!({
        "given_name": "Hal", "family_name": "Dunn", "gift_aid_declared": true,
        "gift_aid_declaration_date": "2024-01-10",
        "gifts": [{"amount": "25.00", "currency": "GBP", "date": "2025-06-01", "gift_aid": true}]
    }));
    env.json(&["subject", "erase", &held], None);
    let server = env.serve("info");
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    let home = dora.get("/home").body;
    assert!(home.contains("Legal holds ending within a month"), "{home}");
    assert!(
        home.contains("2025-12-31") && home.contains("gift-aid") && home.contains(&held),
        "{home}"
    );
    assert!(
        !home.contains("Hal") && !home.contains("Dunn"),
        "the hold's values are not shown"
    );
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    assert!(!fran.get("/home").body.contains("Legal holds"));
}

#[test]
fn console_maps_unrecognised_columns_into_a_saved_mapping_and_checks_again() {
    let (env, _id) = console_env();
    let file = env.tmp.path().join("odd.csv");
    std::fs::write(
        &file,
        "First Name,Family Called,E-post\nAnn,Lee,ann.lee@example.org\nBob,Stone,bob@example.org\n",
    )
    .unwrap();
    let server = env.serve("info");
    let ada = Client::new(env.tmp.path(), "ada", &server);
    assert_eq!(ada.sign_in("ada", PASSWORD).status, 303);
    let csrf = ada.csrf("/imports");
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-b"])
        .arg(&ada.jar)
        .args([
            "-F",
            &format!("csrf={csrf}"),
            "-F",
            &format!("file=@{}", file.display()),
        ])
        .args(["-F", "profile=generic", "-F", "mode=dry-run"])
        .arg(format!("{}/imports", server.url))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("{head}"))
        .trim()
        .to_string();
    let wait = |path: &str| {
        for _ in 0..100 {
            let page = ada.get(path).body;
            if page.contains("A dry run: nothing was written") {
                return page;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no dry run at {path}");
    };
    let page = wait(&location);
    assert!(
        page.contains("Map the columns Steward did not recognise"),
        "{page}"
    );
    assert!(page.contains("Family Called") && page.contains("E-post"));
    let names: Vec<(String, String)> = (0..2)
        .map(|i| {
            let pattern = format!("name=\"name-{i}\" value=\"");
            let at = page.find(&pattern).unwrap() + pattern.len();
            let end = page[at..].find('"').unwrap();
            (format!("name-{i}"), page[at..at + end].to_string())
        })
        .collect();
    let target = |column: &str| {
        if column == "E-post" {
            "email"
        } else {
            "family_name"
        }
    };
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), csrf.clone()),
        ("mapping_name".into(), "odd-crm".into()),
    ];
    for (i, (k, column)) in names.iter().enumerate() {
        form.push((k.clone(), column.clone()));
        form.push((format!("col-{i}"), target(column).into()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = ada.call("POST", &format!("{location}/mapping"), &pairs);
    assert_eq!(r.status, 303, "{}", r.body);
    let again = wait(r.header("location").unwrap().trim());
    assert!(
        !again.contains("Columns no profile or mapping reads"),
        "{again}"
    );
    assert!(again.contains("New constituents</th><td>2"), "{again}");
    // The mapping is kept for the next imports.
    assert!(ada.get("/imports").body.contains("value=\"odd-crm\""));
    server.stop();
    let stored = std::fs::read_to_string(env.data.join("mappings/odd-crm.toml")).unwrap();
    assert!(
        stored.contains("\"Family Called\" = \"family_name\"")
            && stored.contains("\"E-post\" = \"email\""),
        "{stored}"
    );
}

#[test]
fn console_admin_changes_the_access_rules_which_are_in_force_at_once() {
    let (env, id) = console_env();
    let server = env.serve("info");
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    assert!(vera
        .get(&format!("/subjects/{id}"))
        .body
        .contains("wq@example.org"));
    assert!(!vera
        .get("/policies")
        .body
        .contains("Change the access rules"));
    let ada = Client::new(env.tmp.path(), "ada", &server);
    assert_eq!(ada.sign_in("ada", PASSWORD).status, 303);
    let page = ada.get("/policies").body;
    assert!(page.contains("Change the access rules"));
    let rules = std::fs::read_to_string(env.data.join("policies/policy.csv")).unwrap();
    let csrf = ada.csrf("/policies");
    // A rule that does not parse changes nothing and is named.
    let bad = format!("{rules}\np, volunteer, subject:nonsense, read\n");
    let r = ada.call(
        "POST",
        "/policies/rules",
        &[("csrf", &csrf), ("rules", &bad)],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("subject:nonsense"), "{}", r.body);
    assert_eq!(
        std::fs::read_to_string(env.data.join("policies/policy.csv")).unwrap(),
        rules
    );
    // Volunteers lose contact details: at once, no restart.
    let fewer = rules.replace("p, volunteer, subject:contact, read\n", "");
    assert_ne!(fewer, rules);
    let r = ada.call(
        "POST",
        "/policies/rules",
        &[("csrf", &csrf), ("rules", &fewer)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = vera.get(&format!("/subjects/{id}")).body;
    assert!(
        page.contains("Winnifred") && !page.contains("wq@example.org"),
        "{page}"
    );
    // Only an admin may change them.
    let csrf_v = vera.csrf("/policies");
    let r = vera.call(
        "POST",
        "/policies/rules",
        &[("csrf", &csrf_v), ("rules", &rules)],
    );
    assert_eq!(r.status, 403);
    server.stop();
    assert_eq!(
        std::fs::read_to_string(env.data.join("policies/policy.csv")).unwrap(),
        fewer
    );
    let events = env
        .json(&["audit", "query", "--action", "update.policy"], None)
        .to_string();
    assert!(
        events.contains("\"ok\"") && events.contains("\"denied\""),
        "{events}"
    );
}

#[test]
fn console_links_a_member_to_its_household_record() {
    let (env, _id) = console_env();
    let file = env.tmp.path().join("household.csv");
    std::fs::write(
        &file,
        "First Name,Last Name,Street,Postcode,City\n\
         Tom,Reed,5 Park Lane,BS1 5TR,Bristol\n\
         Jo,Reed,5 Park Lane,BS1 5TR,Bristol\n",
    )
    .unwrap();
    env.json(
        &["import", file.to_str().unwrap(), "--profile", "generic"],
        None,
    );
    env.json(&["review", "link", "--all-households"], None);
    let tom = env.json(&["subject", "find", "--family-name", "reed"], None)["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let household = env.json(&["subject", "show", &tom], None)["fields"]["household"]
        .as_str()
        .expect("linked into a household")
        .to_string();
    let server = env.serve("info");
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    let page = fran.get(&format!("/subjects/{tom}")).body;
    assert!(
        page.contains(&format!("href=\"/subjects/{household}\"")),
        "{page}"
    );
    // The household's page lists its members.
    let home = fran.get(&format!("/subjects/{household}"));
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("Members of this household"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("Tom Reed") && home.body.contains("Jo Reed"),
        "{}",
        home.body
    );
    assert!(home.body.contains(&format!("href=\"/subjects/{tom}\"")));
}

#[test]
fn console_work_queue_lists_consents_in_force_that_expire_this_month() {
    let (env, _) = console_env();
    let soon = String::from_utf8(
        Command::new("date")
            .args(["-u", "-d", "+5 min", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let next_year = format!("{}-06-01T00:00:00Z", soon[..4].parse::<u32>().unwrap() + 1);
    let person = |name: &str| env.add(&json!({"given_name": name, "family_name": "Expiry"}));
    let record = |id: &str, event: &str, expires: Option<&str>| {
        let mut args = vec![
            "consent",
            "record",
            id,
            "--purpose",
            "newsletter-email",
            "--event",
            event,
            "--source",
            "form-7",
        ];
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        env.json(&args, None);
    };
    let (a, b, c, d) = (person("Ann"), person("Ben"), person("Cat"), person("Dan"));
    record(&a, "given", Some(&soon)); // listed
    record(&b, "given", Some(&next_year)); // not this month
    record(&c, "given", Some(&soon));
    record(&c, "withdrawn", None); // withdrawn since: not listed
    record(&d, "given", Some(&soon));
    record(&d, "renewed", Some(&next_year)); // renewed: not listed
    let server = env.serve("info");
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    let home = dora.get("/home").body;
    assert!(home.contains("Consents expiring this month"), "{home}");
    for (id, listed) in [(&a, true), (&b, false), (&c, false), (&d, false)] {
        assert_eq!(
            home.contains(&format!("/subjects/{id}")),
            listed,
            "{id}: {home}"
        );
    }
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    assert!(!vera.get("/home").body.contains("Consents expiring"));
}

#[test]
fn console_request_list_filters_by_type_and_law_in_the_url() {
    let (env, id) = console_env();
    let open = |kind: &str, law: &str| {
        env.json(
            &[
                "request",
                "open",
                "--subject",
                &id,
                "--type",
                kind,
                "--jurisdiction",
                law,
            ],
            None,
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let access = open("access", "uk-gdpr");
    let erasure = open("erasure", "ccpa");
    let server = env.serve("info");
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    for (query, want_access, want_erasure) in [
        ("", true, true),
        ("?type=erasure", false, true),
        ("?law=uk-gdpr", true, false),
        ("?type=access&law=ccpa", false, false),
    ] {
        let page = dora.get(&format!("/requests{query}")).body;
        assert_eq!(
            page.contains(&format!("/requests/{access}")),
            want_access,
            "{query}"
        );
        assert_eq!(
            page.contains(&format!("/requests/{erasure}")),
            want_erasure,
            "{query}"
        );
    }
}

#[test]
fn console_timeline_names_the_records_merged_into_a_constituent() {
    let (env, id) = console_env();
    let other = env.add(
        &json!({"given_name": "Winnie", "family_name": "Quarles", "email": "wq2@example.org"}),
    );
    let m = env.json(&["merge", &id, &other], None);
    let server = env.serve("info");
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    let page = fran.get(&format!("/subjects/{id}")).body;
    assert!(
        page.contains("Merged into this record: <code>") && page.contains(&other),
        "{page}"
    );
    server.stop();
    env.json(&["merge", "undo", m["id"].as_str().unwrap()], None);
    let server = env.serve("info");
    let fran = Client::new(env.tmp.path(), "fran2", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    assert!(!fran
        .get(&format!("/subjects/{id}"))
        .body
        .contains("Merged into this record"));
}

#[test]
fn an_older_data_directory_finds_by_name_after_its_schema_gains_the_index_and_a_reindex() {
    let env = crate::support::Env::init();
    // As made before the name and household indexes: the schema has neither.
    let schema = env.data.join("policies/schema.toml");
    let with = std::fs::read_to_string(&schema).unwrap();
    let without = with
        .replace("index = \"name\"\n", "")
        .replace("index = \"ref\"\n", "");
    assert_ne!(with, without);
    std::fs::write(&schema, &without).unwrap();
    let id = env.add(&json!({"given_name": "Olwen", "family_name": "O'Neill"}));
    let found = |env: &crate::support::Env| {
        env.json(&["subject", "find", "--family-name", "oneill"], None)["ids"].clone()
    };
    assert_eq!(found(&env), json!([]));
    std::fs::write(&schema, &with).unwrap();
    assert_eq!(found(&env), json!([]), "not indexed until the reindex");
    env.json(&["match", "reindex"], None);
    assert_eq!(found(&env), json!([id]));
}

#[test]
fn console_admin_adds_a_purpose_which_the_gate_uses_at_once() {
    let (env, id) = console_env();
    let server = env.serve("info");
    let ada = Client::new(env.tmp.path(), "ada", &server);
    assert_eq!(ada.sign_in("ada", PASSWORD).status, 303);
    assert!(!ada
        .get(&format!("/subjects/{id}"))
        .body
        .contains("spring-appeal-sms"));
    let before = std::fs::read_to_string(env.data.join("policies/purposes.toml")).unwrap();
    let csrf = ada.csrf("/policies");
    // A purpose naming a field the catalogue does not have changes nothing.
    let bad = format!(
        "{before}\n[[purpose]]\nname = \"spring-appeal-sms\"\ndescription = \"x\"\nbasis = \"consent\"\nchannel = \"sms\"\nmarketing = true\nopt_out = true\nfields = [\"shoe_size\"]\nretention = \"until withdrawn\"\n"
    );
    let r = ada.call(
        "POST",
        "/policies/purposes",
        &[("csrf", &csrf), ("purposes", &bad)],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("shoe_size"), "{}", r.body);
    assert_eq!(
        std::fs::read_to_string(env.data.join("policies/purposes.toml")).unwrap(),
        before
    );
    // A valid one is in force at once: the constituent's consent table lists it, not allowed
    // (no consent given), and consent can be recorded for it.
    let good = bad.replace("[\"shoe_size\"]", "[\"given_name\", \"mobile\"]");
    let r = ada.call(
        "POST",
        "/policies/purposes",
        &[("csrf", &csrf), ("purposes", &good)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = ada.get(&format!("/subjects/{id}")).body;
    assert!(page.contains("<td>spring-appeal-sms</td>"), "{page}");
    let csrf = ada.csrf(&format!("/subjects/{id}"));
    let r = ada.call(
        "POST",
        &format!("/subjects/{id}/consent"),
        &[
            ("csrf", &csrf),
            ("purpose", "spring-appeal-sms"),
            ("event", "given"),
            ("source", "call-2026-12"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(ada
        .get(&format!("/subjects/{id}"))
        .body
        .contains("Consent given for spring-appeal-sms"));
    // The API's document names the purposes in force now, not those of the server's start.
    let (_, _, doc) =
        crate::support::http("GET", &format!("{}/openapi.json", server.url), None, None);
    let segment = &doc["paths"]["/v1/segments/{purpose}"]["get"]["parameters"];
    assert!(
        segment.to_string().contains("spring-appeal-sms"),
        "{segment}"
    );
    // Only an admin sees and may post the form.
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    assert!(!dora.get("/policies").body.contains("Change the purposes"));
    let csrf_d = dora.csrf("/policies");
    let r = dora.call(
        "POST",
        "/policies/purposes",
        &[("csrf", &csrf_d), ("purposes", &before)],
    );
    assert_eq!(r.status, 403);
    server.stop();
    assert_eq!(
        std::fs::read_to_string(env.data.join("policies/purposes.toml")).unwrap(),
        good
    );
}

#[test]
fn console_analytics_draws_retention_and_suppresses_small_cells_for_a_volunteer() {
    let (env, id) = console_env();
    env.json(
        &["interaction", "add", "--subject", &id],
        Some(&json!({"kind": "call", "direction": "outbound", "occurred_at": "2025-07-01T09:00:00Z", "summary": "Thanked her"}).to_string()),
    );
    let server = env.serve("info");
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    // The constituent's timeline holds the call.
    let page = fran.get(&format!("/subjects/{id}")).body;
    assert!(page.contains("Call (outbound): Thanked her"), "{page}");
    let a = fran.get("/analytics?year=2025");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("<svg") && a.body.contains("Retention over the years"),
        "{}",
        a.body
    );
    // One donor, new in 2025: shown exactly to a role that reads gifts.
    assert!(a.body.contains("New donors"), "{}", a.body);
    assert!(
        a.body.contains("Stewardship: did contact keep donors?"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("suppressed"), "{}", a.body);
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    let v = vera.get("/analytics?year=2025");
    assert_eq!(v.status, 200, "{}", v.body);
    assert!(v.body.contains("suppressed"), "{}", v.body);
    assert!(!v.body.contains("4331.50"), "{}", v.body);
    // The volunteer's timeline shows the call without what was said.
    let page = vera.get(&format!("/subjects/{id}")).body;
    assert!(
        page.contains("Call (outbound)") && !page.contains("Thanked her"),
        "{page}"
    );
    let aldo = Client::new(env.tmp.path(), "aldo", &server);
    assert_eq!(aldo.sign_in("aldo", PASSWORD).status, 303);
    assert_eq!(aldo.get("/analytics?year=2025").status, 403);
    server.stop();
}

/// A recipient without a webhook ("Phone Agency", in the US, identity only) received a
/// subject's data and the subject was erased: a task for a person on the DPO's work queue.
pub(crate) fn hand_told_erasure(env: &Env) {
    env.json(
        &[
            "recipients",
            "add",
            "Phone Agency",
            "--country",
            "US",
            "--groups",
            "identity",
        ],
        None,
    );
    let gone = env.add(&json!({"given_name": "Ula", "family_name": "Brenn"}));
    let out = env.run(
        &[
            "export",
            "--purpose",
            "donor-stewardship",
            "--recipient",
            "Phone Agency",
        ],
        None,
    );
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    env.json(&["subject", "erase", &gone], None);
}

#[test]
fn console_lists_recipients_and_a_dpo_marks_a_notice_done_from_the_work_queue() {
    let (env, _id) = console_env();
    hand_told_erasure(&env);
    let server = env.serve("info");
    let dora = Client::new(env.tmp.path(), "dora", &server);
    assert_eq!(dora.sign_in("dora", PASSWORD).status, 303);
    let page = dora.get("/recipients").body;
    assert!(
        page.contains("Phone Agency") && page.contains("restricted transfer"),
        "{page}"
    );
    let home = dora.get("/home").body;
    assert!(home.contains("Recipients to tell by hand"), "{home}");
    let at = home
        .find("/notifications/msg_")
        .expect("a task with its form");
    let id = home[at + 15..at + 15 + 36].to_string();
    assert!(
        !home.contains("Ula") && !home.contains("Brenn"),
        "no value on the work queue"
    );
    // Without a note nothing changes; with one, the task is done and gone from the queue.
    let csrf = dora.csrf("/home");
    let refused = dora.call(
        "POST",
        &format!("/notifications/{id}/done"),
        &[("csrf", &csrf), ("note", "")],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let done = dora.call(
        "POST",
        &format!("/notifications/{id}/done"),
        &[("csrf", &csrf), ("note", "letter sent, ref L-88")],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(!dora.get("/home").body.contains(&id));
    // A volunteer has no register and no notices.
    let vera = Client::new(env.tmp.path(), "vera", &server);
    assert_eq!(vera.sign_in("vera", PASSWORD).status, 303);
    assert_eq!(vera.get("/recipients").status, 403);
    assert!(!vera.get("/home").body.contains("Recipients to tell"));
    let fran = Client::new(env.tmp.path(), "fran", &server);
    assert_eq!(fran.sign_in("fran", PASSWORD).status, 303);
    let csrf = fran.csrf("/home");
    let refused = fran.call(
        "POST",
        &format!("/notifications/{id}/done"),
        &[("csrf", &csrf), ("note", "x")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
}
