//! Helpers: locate the binary, run commands, start a server, make HTTP calls.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// `target/<profile>/steward`, built by `cargo test` (the `cli` package's own tests need it).
pub(crate) fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("steward");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// A data directory in a temporary folder, with its identity file beside it.
pub(crate) struct Env {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) data: PathBuf,
    pub(crate) identity: PathBuf,
}

impl Env {
    /// Runs `steward init`.
    pub(crate) fn init() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let env = Env {
            data: tmp.path().join("data"),
            identity: tmp.path().join("identity.txt"),
            tmp,
        };
        let out = env.run(
            &["init", "--identity", env.identity.to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    /// Runs `steward init --store URL`: the data in that PostgreSQL database.
    pub(crate) fn init_on(url: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let env = Env {
            data: tmp.path().join("data"),
            identity: tmp.path().join("identity.txt"),
            tmp,
        };
        let out = env.run(
            &[
                "init",
                "--identity",
                env.identity.to_str().unwrap(),
                "--store",
                url,
            ],
            None,
        );
        assert!(
            out.status.success(),
            "init --store failed: {}",
            stderr(&out)
        );
        env
    }

    /// A command on this data directory (no --identity: it must find the recorded one).
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args)
            .arg("--data")
            .arg(&self.data)
            .env_remove("STEWARD_IDENTITY")
            .env_remove("STEWARD_PASSPHRASE_FILE")
            .env_remove("STEWARD_DATA")
            .env_remove("STEWARD_TOKEN")
            .env_remove("STEWARD_STORE");
        c
    }

    /// Runs a command, feeding `stdin` if given.
    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn steward");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a command with `--json` and parses stdout; panics on failure.
    pub(crate) fn json(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all, stdin);
        assert!(
            out.status.success(),
            "steward {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
    }

    /// Adds a subject through the CLI and returns its id.
    pub(crate) fn add(&self, subject: &Value) -> String {
        let v = self.json(&["subject", "add"], Some(&subject.to_string()));
        v["id"].as_str().unwrap().to_string()
    }

    /// Records through the CLI that the subject gave consent to `purpose`, from `source`.
    pub(crate) fn give_consent(&self, id: &str, purpose: &str, source: &str) {
        self.json(
            &[
                "consent",
                "record",
                "--subject",
                id,
                "--purpose",
                purpose,
                "--event",
                "given",
                "--source",
                source,
            ],
            None,
        );
    }

    /// Starts `steward serve` on a free port, logging at `log_level` into a file.
    pub(crate) fn serve(&self, log_level: &str) -> Server {
        self.serve_with(log_level, &[])
    }

    /// [`Env::serve`] with extra options (limits).
    pub(crate) fn serve_with(&self, log_level: &str, extra: &[&str]) -> Server {
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.tmp.path().join(format!("server-{n}.log"));
        let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--json"];
        args.extend_from_slice(extra);
        let mut child = self
            .cmd(&args)
            .env("STEWARD_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn server");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut doc = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "server exited before listening: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            doc.push_str(&line);
            if line.trim_end() == "}" {
                break;
            }
        }
        let v: Value = serde_json::from_str(&doc).unwrap();
        Server {
            child,
            url: v["url"].as_str().unwrap().to_string(),
            log,
        }
    }
}

static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running server.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

impl Server {
    /// Sends SIGTERM and waits: the graceful shutdown path.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        // Nothing left to kill in Drop.
        let _ = self.child.kill();
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP call with curl: returns (status, headers, body as JSON or Null).
pub(crate) fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    http_with(method, url, token, body, &[])
}

/// [`http`] with extra request headers.
pub(crate) fn http_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String, Value) {
    let mut c = Command::new("curl");
    // No `Expect: 100-continue` dance for large bodies: one status line per answer.
    c.args(["-H", "Expect:"]);
    for h in headers {
        c.args(["-H", h]);
    }
    c.args([
        "-s",
        "-D",
        "-",
        "-X",
        method,
        url,
        "-H",
        "content-type: application/json",
    ]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if body.is_some() {
        c.args(["--data-binary", "@-"]);
        c.stdin(Stdio::piped());
    }
    c.stdout(Stdio::piped());
    let mut child = c.spawn().expect("curl is installed");
    if let Some(b) = body {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(rest).unwrap_or(Value::Null);
    (status, head.to_string(), json)
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Every regular file below `dir`.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Case-insensitive search for marker strings in every file below `dir` and in the extra
/// blobs; returns (marker, where) for each hit.
pub(crate) fn find_markers(
    dir: &Path,
    extra: &[(&str, Vec<u8>)],
    markers: &[&str],
) -> Vec<(String, String)> {
    let mut blobs: Vec<(String, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    blobs.extend(extra.iter().map(|(n, b)| (n.to_string(), b.clone())));
    let mut hits = Vec::new();
    for (name, bytes) in &mut blobs {
        bytes.make_ascii_lowercase();
        for marker in markers {
            let m = marker.to_ascii_lowercase();
            if memchr::memmem::find(bytes, m.as_bytes()).is_some() {
                hits.push((marker.to_string(), name.clone()));
            }
        }
    }
    hits
}

/// A fresh, empty database on the PostgreSQL server `STEWARD_TEST_PG` names (made with the
/// system's `psql`); `None` when no server is named, which CI does not allow.
pub(crate) fn fresh_database() -> Option<String> {
    let Ok(url) = std::env::var("STEWARD_TEST_PG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set STEWARD_TEST_PG (see .ci/run)"
        );
        return None;
    };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "steward_e2e_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .args([url.as_str(), "-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql (Debian's postgresql-client) runs");
    assert!(out.status.success(), "CREATE DATABASE: {}", stderr(&out));
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    Some(format!("{base}/{name}"))
}
