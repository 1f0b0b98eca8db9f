//! The console in a real browser: Debian's Chromium, driven through chromedriver's WebDriver
//! API (W3C) over loopback with curl. Each test saves a screenshot under
//! `target/browser-screenshots/` when it fails, and runs axe-core (vendored, MPL-2.0) on
//! every screen it opens: no serious or critical violation is accepted.
//!
//! Needs `chromedriver` and `chromium` (`.ci/run` installs them). Without them the tests say
//! so and pass, except under CI (`CI` set), where they fail.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::console::{console_env, PASSWORD};
use crate::support::{binary, Server};

const AXE: &str = include_str!("../../assets/axe-4.14.1.min.js");
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tools() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("/usr/bin/{n}"))
            .find(|p| std::path::Path::new(p).exists())
    };
    match (
        find(&["chromedriver"]),
        find(&["chromium", "chromium-browser"]),
    ) {
        (Some(d), Some(c)) => Some((d, c)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("chromium and chromedriver are required under CI (apt-get install chromium chromium-driver)")
        }
        _ => {
            eprintln!("browser tests skipped: chromium or chromedriver is not installed");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session on its own chromedriver and Chromium profile.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    name: String,
    _profile: tempfile::TempDir,
}

fn wd(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-X",
        method,
        url,
        "-H",
        "content-type: application/json",
    ]);
    // The body on stdin: axe-core alone is larger than an argument may be.
    if body.is_some() {
        c.args(["--data-binary", "@-"]).stdin(Stdio::piped());
    }
    let mut child = c.stdout(Stdio::piped()).spawn().expect("curl is installed");
    if let Some(b) = body {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b.to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

impl Browser {
    fn start(name: &str) -> Option<Browser> {
        let (driver_bin, chromium) = tools()?;
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while wd("GET", &format!("{base}/status"), None)["value"]["ready"] != true {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v = wd("POST", &format!("{base}/session"), Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Some(Browser {
            driver,
            base,
            session,
            name: name.to_string(),
            _profile: profile,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = wd(
            method,
            &format!("{}/session/{}{path}", self.base, self.session),
            body.as_ref(),
        );
        if let Some(err) = v["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The visible text of the page's main content (whitespace runs as one space), read in one script (an element looked up
    /// first could be replaced by an htmx swap before its text is read).
    fn text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = wd(
                "POST",
                &format!("{}/session/{}/execute/sync", self.base, self.session),
                Some(
                    &json!({"script": "const m = document.querySelector('main'); return m ? m.innerText : null", "args": []}),
                ),
            );
            if let Some(t) = v["value"].as_str() {
                // Cells are separated by tabs, lines by newlines: one space each.
                return t.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            // Between two pages (a navigation in flight): ask again.
            assert!(
                Instant::now() < deadline,
                "no page content at {}: {v}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = wd(
                "POST",
                &format!("{}/session/{}/element", self.base, self.session),
                Some(&json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Keys pressed one after another on whatever has the focus (keyboard-only use).
    fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Waits until the page's URL path is `path` (after a form's redirect).
    fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url();
            let here = url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            if here == path || here.starts_with(&format!("{path}?")) {
                // Let the document finish loading.
                let _ = self.script("return document.readyState", json!([]));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still at {url}, waiting for {path}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs axe-core on the page: no serious or critical violation.
    fn accessible(&self, screen: &str) {
        self.script(&format!("{AXE}\n;return true;"), json!([]));
        let v = self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": "const done = arguments[arguments.length - 1];
                axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(
                  r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))))
                  .catch(e => done(JSON.stringify([{id: 'axe failed', impact: String(e)}])));", "args": []})),
        );
        let found: Value = serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap();
        assert_eq!(
            found,
            json!([]),
            "axe: serious or critical violations on {screen}"
        );
    }

    fn sign_in(&self, server: &Server, user: &str, password: &str) {
        self.open(&format!("{}/", server.url));
        self.type_into("#username", user);
        self.type_into("#password", password);
        self.click("form.signin button[type=submit]");
    }

    fn screenshot(&self) {
        let v = wd(
            "GET",
            &format!("{}/session/{}/screenshot", self.base, self.session),
            None,
        );
        let Some(b64) = v["value"].as_str() else {
            return;
        };
        let target = binary()
            .parent()
            .and_then(|p| p.parent())
            .map(|t| t.join("browser-screenshots"))
            .unwrap();
        let _ = std::fs::create_dir_all(&target);
        let path = target.join(format!("{}.png", self.name));
        let _ = std::fs::write(&path, base64_decode(b64));
        eprintln!("screenshot of the failing page: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.screenshot();
        }
        let _ = wd(
            "DELETE",
            &format!("{}/session/{}", self.base, self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn browser_sign_in_bad_password_each_roles_view_and_sign_out() {
    let Some(b) = Browser::start("sign-in-and-roles") else {
        return;
    };
    let (env, id) = console_env();
    // A recipient told by hand of an erasure: a task with its form on the DPO's work queue.
    crate::console::hand_told_erasure(&env);
    let server = env.serve("info");
    // The sign-in page, then a wrong password.
    b.open(&format!("{}/", server.url));
    b.accessible("sign-in");
    b.sign_in(&server, "vera", "wrong password entirely");
    assert!(b.text().contains("The user name or password is not right"));
    b.accessible("sign-in with an error");
    // A volunteer: the name, no gift, no special category.
    b.sign_in(&server, "vera", PASSWORD);
    b.wait_for_path("/home");
    b.accessible("work queue (volunteer)");
    b.open(&format!("{}/subjects/{id}", server.url));
    let text = b.text();
    assert!(text.contains("Winnifred Quarles"), "{text}");
    assert!(text.contains("Gifts are not visible to your role"));
    assert!(!text.contains("4321") && !text.contains("wheelchair"));
    b.accessible("constituent (volunteer)");
    // Sign out: back at sign-in, and the page is closed again.
    b.click("form.signout button");
    b.wait_for_path("/");
    b.open(&format!("{}/subjects/{id}", server.url));
    b.wait_for_path("/");
    assert!(!b.find("#password").is_empty());
    // A DPO: gifts, consent, special category after a reveal with a reason.
    b.sign_in(&server, "dora", PASSWORD);
    b.wait_for_path("/home");
    assert!(b.text().contains("Recipients to tell by hand"));
    b.accessible("work queue (dpo)");
    b.open(&format!("{}/subjects/{id}", server.url));
    let text = b.text();
    assert!(
        text.contains("4321.00") && text.contains("Total GBP 4331.50"),
        "{text}"
    );
    assert!(!text.contains("wheelchair"));
    b.click("form.reveal button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("wheelchair") {
        assert!(
            Instant::now() < deadline,
            "the reveal did not show the field"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    b.accessible("constituent revealed (dpo)");
    b.open(&format!("{}/policies", server.url));
    assert!(b.text().contains("What each role may do"));
    b.accessible("policies");
    b.open(&format!("{}/analytics?year=2025", server.url));
    assert!(b.text().contains("Retention over the years"));
    b.accessible("analytics");
    b.open(&format!("{}/recipients", server.url));
    assert!(b.text().contains("Phone Agency"));
    b.accessible("recipients");
    // An auditor: no personal data; the audit log with the reveal and its reason.
    b.click("form.signout button");
    b.wait_for_path("/");
    b.sign_in(&server, "aldo", PASSWORD);
    b.wait_for_path("/home");
    b.open(&format!("{}/subjects/{id}", server.url));
    let text = b.text();
    assert!(text.contains("Not open to your role") && !text.contains("Winnifred"));
    b.open(&format!("{}/audit", server.url));
    b.type_into("#action", "read.subject");
    b.type_into("#subject", &id);
    b.click("form.filters button");
    b.wait_for_path("/audit");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("reveal:subject-request") {
        assert!(
            Instant::now() < deadline,
            "no reveal in the audit page: {}",
            b.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    b.accessible("audit query");
}

#[test]
fn browser_lockout_csrf_refusal_ended_session_and_keyboard_only() {
    let Some(b) = Browser::start("lockout-csrf-session") else {
        return;
    };
    let (env, id) = console_env();
    let server = env.serve("info");
    // Keyboard only: type the name, Tab to the password, Enter to sign in.
    b.open(&format!("{}/", server.url));
    b.find("#username");
    b.keys("fran");
    b.keys("\u{E004}"); // Tab
    b.keys(PASSWORD);
    b.keys("\u{E007}"); // Enter
    b.wait_for_path("/home");
    // Tab from the top of the page reaches the skip link first, then the navigation.
    b.keys("\u{E004}");
    let focused = b.script("return document.activeElement.textContent", json!([]));
    assert_eq!(focused, "Skip to the main content");
    b.keys("\u{E004}\u{E004}");
    let focused = b.script("return document.activeElement.textContent", json!([]));
    assert_eq!(focused, "Find a constituent");
    b.keys("\u{E007}");
    b.wait_for_path("/find");
    b.accessible("find");
    // Find by email, then open the constituent from the results with the keyboard.
    b.click("input[value=email]");
    b.type_into("#term", "wq@example.org");
    b.keys("\u{E007}");
    let link = b.find("ul.results a");
    b.accessible("find results");
    b.cmd("POST", &format!("/element/{link}/click"), Some(json!({})));
    b.wait_for_path(&format!("/subjects/{id}"));
    // A form whose CSRF token was changed is refused, and nothing is found.
    b.open(&format!("{}/find", server.url));
    b.script(
        "document.querySelector('form[action=\"/find\"] input[name=csrf]').value = '0'.repeat(64); return true",
        json!([]),
    );
    b.type_into("#term", "wq@example.org");
    b.click("form[action='/find'] button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("This form cannot be accepted") {
        assert!(Instant::now() < deadline, "no CSRF refusal: {}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.source().contains(&format!("/subjects/{id}")));
    // Five wrong passwords lock the account; the page says for how long.
    b.click("form.signout button");
    b.wait_for_path("/");
    for _ in 0..5 {
        b.sign_in(&server, "vera", "not it at all, sorry");
        b.find("p.notice");
    }
    b.sign_in(&server, "vera", PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("locked for 15 more minute(s)") {
        assert!(
            Instant::now() < deadline,
            "no lockout message: {}",
            b.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A session that has ended: signed in as fran, the password changes (the CLI, with the
    // server stopped), and the next page asks to sign in again, saying why.
    b.sign_in(&server, "fran", PASSWORD);
    b.wait_for_path("/home");
    server.stop();
    let pw = env.tmp.path().join("pw-new");
    std::fs::write(&pw, "fran's second passphrase\n").unwrap();
    let out = env.run(
        &[
            "users",
            "password",
            "fran",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let server = env.serve("info");
    // The browser keeps its cookie for the address; the new server is on a new port, so
    // carry the cookie over as a browser would for the same origin.
    let cookie = b.cmd("GET", "/cookie/steward_session", None);
    b.open(&format!("{}/", server.url));
    b.cmd(
        "POST",
        "/cookie",
        Some(json!({"cookie": {"name": "steward_session", "value": cookie["value"], "path": "/", "httpOnly": true, "sameSite": "Strict"}})),
    );
    b.open(&format!("{}/home", server.url));
    b.wait_for_path("/");
    assert!(b.text().contains("Your session has ended"), "{}", b.text());
}

#[test]
fn browser_subject_access_request_from_opening_to_the_package_download() {
    let Some(b) = Browser::start("subject-access-request") else {
        return;
    };
    let (env, id) = console_env();
    let server = env.serve("info");
    b.sign_in(&server, "dora", PASSWORD);
    b.wait_for_path("/home");
    // From the constituent's page: open an access request under the UK GDPR.
    b.open(&format!("{}/subjects/{id}", server.url));
    b.script(
        "document.querySelector('#kind').value = 'access'; return true",
        json!([]),
    );
    b.click("form.open-request button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.url().contains("/requests/") {
        assert!(Instant::now() < deadline, "no request page: {}", b.url());
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = b.text();
    assert!(
        text.contains("Request: access") && text.contains("day(s) left"),
        "{text}"
    );
    b.accessible("request (received)");
    // The package is not released before the identity is verified: the page says why.
    let refused = fetch_package(&b);
    assert_eq!(refused["status"], 409, "{refused}");
    let request_path = b
        .url()
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap();
    // Identity verified, then work started.
    b.click("form.step button");
    b.wait_for_path(&request_path);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("identity-verified") {
        assert!(Instant::now() < deadline, "not verified: {}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.click("form.step button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("in-progress") {
        assert!(Instant::now() < deadline, "not started: {}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.accessible("request (in progress)");
    // Download the package as the browser would (the form's POST, with its CSRF token and
    // the suggested passphrase), and open it with age and a zip reader.
    let passphrase = b
        .script(
            "return document.querySelector('#passphrase').value",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(passphrase.len(), 29, "{passphrase}");
    let v = fetch_package(&b);
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["disposition"]
        .as_str()
        .unwrap()
        .contains("access-package.zip.age"));
    let sealed = base64_decode(v["body"].as_str().unwrap());
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase));
    let zip = age::decrypt(&identity, &sealed).expect("the passphrase shown opens the package");
    let zip_path = env.tmp.path().join("package.zip");
    std::fs::write(&zip_path, &zip).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile, json; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.loads(z.read('package.json'))['data']['given_name'])",
            zip_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Winnifred");
    // The history records the package (its name and hash), then the request is completed.
    b.open(&format!("{}{request_path}", server.url));
    assert!(b.text().contains("access-package.zip.age"), "{}", b.text());
    b.click("form.step button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("completed") {
        assert!(Instant::now() < deadline, "not completed: {}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.accessible("request (completed)");
    b.open(&format!("{}/requests", server.url));
    b.accessible("requests");
}

/// Posts the page's access-package form as the browser would (its CSRF token and passphrase)
/// and returns the status, the Content-Disposition and the body (base64).
fn fetch_package(b: &Browser) -> Value {
    b.cmd(
        "POST",
        "/execute/async",
        Some(json!({"script": "const done = arguments[arguments.length - 1];
            const form = document.querySelector('form.package');
            fetch(form.action, {method: 'POST', body: new URLSearchParams(new FormData(form))})
              .then(r => r.arrayBuffer().then(buf => {
                 let s = ''; const a = new Uint8Array(buf);
                 for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
                 done({status: r.status, disposition: r.headers.get('content-disposition'), body: btoa(s)});
              }));", "args": []})),
    )
}

#[test]
fn browser_review_compares_two_records_and_accepts_one_person() {
    let Some(b) = Browser::start("review") else {
        return;
    };
    let (env, _id) = console_env();
    // T Reed may be Tom Reed (review); Kim and Kit Oak may be one person (review); Jo and Tom
    // Reed are a household.
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
    env.json(
        &["import", file.to_str().unwrap(), "--profile", "generic"],
        None,
    );
    let open = |env: &crate::support::Env| {
        env.json(&["review", "list"], None)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "duplicate")
            .count()
    };
    assert_eq!(open(&env), 2);
    let server = env.serve("info");
    b.sign_in(&server, "ada", PASSWORD);
    b.wait_for_path("/home");
    b.open(&format!("{}/review", server.url));
    b.accessible("review queue");
    let text = b.text();
    assert!(
        text.contains("same person") && text.contains("same household"),
        "{text}"
    );
    // The first proposal of one person twice, side by side.
    let link = b
        .script(
            "const row = [...document.querySelectorAll('tbody tr')].find(r => r.textContent.includes('same person'));
             return row.querySelector('a').getAttribute('href')",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    b.open(&format!("{}{link}", server.url));
    let text = b.text();
    assert!(
        text.contains("Record A (kept)") && (text.contains("Reed") || text.contains("Oak")),
        "{text}"
    );
    let meters = b.script(
        "return [...document.querySelectorAll('meter')].filter(m => m.getAttribute('aria-label')).length",
        json!([]),
    );
    assert!(
        meters.as_u64().unwrap() >= 2,
        "each field's weight is a labelled meter"
    );
    b.accessible("compare two records");
    b.click("form.decide button[value=accept]");
    b.wait_for_path("/review");
    server.stop();
    assert_eq!(open(&env), 1, "one proposal decided");
    let merges = env.json(&["audit", "query", "--action", "merge"], None);
    assert!(merges.to_string().contains("ada"), "{merges}");
}

#[test]
fn browser_import_from_upload_through_dry_run_commit_report_and_undo() {
    let Some(b) = Browser::start("import") else {
        return;
    };
    let (env, _id) = console_env();
    let file = env.tmp.path().join("donors.csv");
    std::fs::write(
        &file,
        "First Name,Last Name,Email,Birth Date\n\
         Ann,Lee,ann.lee@example.org,13/10/1965\n\
         Bob,Stone,bob.stone@example.org,02/03/1970\n\
         Cy,Marsh,not an email,25/12/1980\n",
    )
    .unwrap();
    let server = env.serve("info");
    b.sign_in(&server, "ada", PASSWORD);
    b.wait_for_path("/home");
    b.open(&format!("{}/imports", server.url));
    b.accessible("imports");
    let input = b.find("#file");
    b.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": file.to_str().unwrap()})),
    );
    b.script(
        "document.querySelector('#profile').value = 'generic'; return true",
        json!([]),
    );
    b.click("form.upload button[value=dry-run]");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.text().contains("A dry run: nothing was written") {
        assert!(Instant::now() < deadline, "no dry run: {}", b.text());
        std::thread::sleep(Duration::from_millis(200));
        if b.text().contains("Working") {
            b.open(&b.url());
        }
    }
    let text = b.text();
    assert!(
        text.contains("Rows read 3") && text.contains("New constituents 2"),
        "{text}"
    );
    assert!(
        text.contains("Birth Date: day first"),
        "the date column's order is said: {text}"
    );
    assert!(
        text.contains("Problems") && !text.contains("not an email"),
        "row problems without values: {text}"
    );
    b.accessible("dry run");
    // Nothing was written by the dry run: no import is listed, and no one is found.
    let dry_run_page = b.url();
    b.open(&format!("{}/imports", server.url));
    assert!(b.text().contains("No imports yet"), "{}", b.text());
    b.open(&format!("{}/find", server.url));
    b.type_into("#term", "Lee");
    b.click("form[action='/find'] button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("No constituent has that name") {
        assert!(Instant::now() < deadline, "{}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.open(&dry_run_page);
    b.click("form[action$='/commit'] button");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.text().contains("Download the report") {
        assert!(Instant::now() < deadline, "no import result: {}", b.text());
        std::thread::sleep(Duration::from_millis(200));
        if b.text().contains("Working") {
            b.open(&b.url());
        }
    }
    let text = b.text();
    assert!(
        text.contains("completed") && text.contains("New constituents 2"),
        "{text}"
    );
    b.accessible("import result");
    let csv = b.cmd(
        "POST",
        "/execute/async",
        Some(json!({"script": "const done = arguments[arguments.length - 1];
            fetch(document.querySelector('a[href$=\"report.csv\"]').href).then(r => r.text()).then(done);", "args": []})),
    );
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("row,outcome,subject_id,matched_subject_id,error_code\n2,new,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("4,error,")), "{csv}");
    // The imported people are found by name; then undo takes the two constituents away.
    let result_page = b.url();
    b.open(&format!("{}/find", server.url));
    b.type_into("#term", "lee");
    b.click("form[action='/find'] button");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.text().contains("Ann Lee") {
        assert!(Instant::now() < deadline, "{}", b.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.accessible("find by name");
    b.open(&result_page);
    b.click("form[action$='/undo'] button");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.text().contains("undone") {
        assert!(Instant::now() < deadline, "not undone: {}", b.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    let out = env.run(
        &[
            "subject",
            "find",
            "--email",
            "ann.lee@example.org",
            "--json",
        ],
        None,
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"id\""),
        "undone: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
