//! Everything the CLI prints to stdout goes through here: one JSON document with `--json`,
//! readable text otherwise. Diagnostics go to stderr.

use std::io::Write;

use serde_json::Value;

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// One JSON document on stdout instead of text.
    pub(crate) json: bool,
}

impl Output {
    /// Prints a result: `value` as JSON, or the text `human` builds.
    pub(crate) fn emit(&self, value: &Value, human: impl FnOnce() -> String) {
        let mut out = std::io::stdout().lock();
        let text = if self.json {
            serde_json::to_string_pretty(value).unwrap_or_default()
        } else {
            human()
        };
        if !text.is_empty() {
            let _ = writeln!(out, "{text}");
        }
    }

    /// A line for people (stderr), never part of the JSON document.
    pub(crate) fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// Prints an error: JSON on stdout with `--json`, and the message on stderr.
    pub(crate) fn error(&self, code: &str, message: &str) {
        if self.json {
            let v = serde_json::json!({"error": {"code": code, "message": message}});
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
        }
        let _ = writeln!(std::io::stderr().lock(), "error: {message}");
    }
}
