//! The subject-access package (GDPR Art. 15): the data, and items (a) to (h).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::{csv_cell, html_escape, write_tar, Error};

/// Everything an access package holds. The hub fills it from what the subject's record, the
/// ledger, the audit log and the policy files say.
#[derive(Debug, Clone, Serialize)]
pub struct AccessPackage {
    /// The request this answers.
    pub request_id: String,
    /// The subject.
    pub subject_id: String,
    /// When it was generated (UTC).
    pub generated_at: String,
    /// The controller, as the policy files name it.
    pub controller: String,
    /// The personal data held: field name → value.
    pub data: BTreeMap<String, Value>,
    /// Gifts.
    pub gifts: Vec<BTreeMap<String, Value>>,
    /// Interactions (calls, meetings, letters...): this subject's copies, without the other
    /// participants.
    pub interactions: Vec<BTreeMap<String, Value>>,
    /// (a) Purposes of the processing, with their lawful basis and whether they apply now.
    pub purposes: Vec<Value>,
    /// (b) Categories of personal data concerned (codes, for systems).
    pub categories: Vec<String>,
    /// (b) The same in words, for the person.
    pub categories_in_words: Vec<String>,
    /// (c) Recipients or categories of recipients.
    pub recipients: Vec<String>,
    /// (d) Retention periods or the criteria used.
    pub retention: Vec<Value>,
    /// (e) The rights to rectification, erasure, restriction and objection.
    pub rights: Vec<String>,
    /// (f) The right to complain to a supervisory authority.
    pub complaint: String,
    /// (g) The source of data not collected from the subject.
    pub source: Vec<String>,
    /// (h) Automated decision-making, including profiling.
    pub automated_decisions: String,
    /// The consent ledger of the subject.
    pub consent_history: Vec<Value>,
    /// Who accessed the subject's data, and when (from the audit log).
    pub access_history: Vec<Value>,
}

/// A field's name as a person reads it: `given_name` is "Given name".
fn in_words(field: &str) -> String {
    let words = field.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// The package's files: package.json, data.csv and index.html, with their bytes.
pub fn package_files(p: &AccessPackage) -> Vec<(String, Vec<u8>)> {
    let json = serde_json::to_vec_pretty(p).unwrap_or_default();
    let mut csv = String::from("field,value\n");
    for (k, v) in &p.data {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        csv.push_str(&format!("{},{}\n", csv_cell(k), csv_cell(&text)));
    }
    let mut html = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your personal data</title>\n<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.45}h1{font-size:1.5em}th{text-align:left;padding-right:1.5em;font-weight:600}td,th{vertical-align:top}</style></head><body>\n");
    html.push_str(&format!(
        "<h1>The personal data {} holds about you</h1>\n",
        html_escape(&p.controller)
    ));
    let name: Vec<&str> = ["given_name", "family_name"]
        .iter()
        .filter_map(|f| p.data.get(*f).and_then(Value::as_str))
        .collect();
    html.push_str(&format!(
        "<p>Dear {},</p>\n<p>You asked us for a copy of the personal data we hold about you. This letter answers that request (reference {}, prepared {}): it lists the data itself, then why we use it, who receives it, how long we keep it and what you can ask of us. The same data comes with it as a spreadsheet (data.csv) and for computers (package.json).</p>\n<h2>Your data</h2>\n<table>\n",
        html_escape(&if name.is_empty() {
            "supporter".to_string()
        } else {
            name.join(" ")
        }),
        html_escape(&p.request_id),
        html_escape(p.generated_at.get(..10).unwrap_or(&p.generated_at))
    ));
    for (k, v) in &p.data {
        let text = match v {
            // A phone number as people write it (+44 7700 900123).
            Value::String(s) => domain::phone_display(s).unwrap_or_else(|| s.clone()),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        html.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            html_escape(&in_words(k)),
            html_escape(&text)
        ));
    }
    html.push_str("</table>\n");
    html.push_str("<h2>Your gifts</h2>\n");
    if p.gifts.is_empty() {
        html.push_str("<p>We hold no gifts from you.</p>\n");
    } else {
        // Every column any gift has, in a readable order.
        let order = [
            "date",
            "amount",
            "currency",
            "fund",
            "campaign",
            "appeal",
            "payment_method",
            "gift_aid",
            "status",
        ];
        let mut columns: Vec<&str> = order
            .iter()
            .copied()
            .filter(|c| p.gifts.iter().any(|g| g.contains_key(*c)))
            .collect();
        for g in &p.gifts {
            for k in g.keys() {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
        html.push_str("<table>\n<tr>");
        for c in &columns {
            html.push_str(&format!("<th>{}</th>", html_escape(&c.replace('_', " "))));
        }
        html.push_str("</tr>\n");
        for g in &p.gifts {
            html.push_str("<tr>");
            for c in &columns {
                let text = match g.get(*c) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Bool(true)) => "yes".into(),
                    Some(Value::Bool(false)) => "no".into(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                html.push_str(&format!("<td>{}</td>", html_escape(&text)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    html.push_str("<h2>Our contacts with you</h2>\n");
    if p.interactions.is_empty() {
        html.push_str(
            "<p>We hold no record of calls, meetings, letters or other contacts with you.</p>\n",
        );
    } else {
        html.push_str("<table>\n<tr><th>when</th><th>what</th><th>direction</th><th>summary</th><th>details</th><th>outcome</th></tr>\n");
        for i in &p.interactions {
            html.push_str("<tr>");
            for c in [
                "occurred_at",
                "kind",
                "direction",
                "summary",
                "details",
                "outcome",
            ] {
                let text = match i.get(c) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                html.push_str(&format!("<td>{}</td>", html_escape(&text)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    let list = |title: &str, items: &[String]| {
        let mut s = format!("<h2>{}</h2>\n<ul>\n", html_escape(title));
        for i in items {
            s.push_str(&format!("<li>{}</li>\n", html_escape(i)));
        }
        s.push_str("</ul>\n");
        s
    };
    let purposes: Vec<String> = p
        .purposes
        .iter()
        .map(|v| v["summary"].as_str().unwrap_or_default().to_string())
        .collect();
    html.push_str(&list("Why we process it (purposes)", &purposes));
    html.push_str(&list("What kinds of data", &p.categories_in_words));
    html.push_str(&list("Who receives it", &p.recipients));
    let retention: Vec<String> = p
        .retention
        .iter()
        .map(|v| v["summary"].as_str().unwrap_or_default().to_string())
        .collect();
    html.push_str(&list("How long we keep it", &retention));
    html.push_str(&list("Your rights", &p.rights));
    html.push_str(&format!(
        "<h2>Complaints</h2>\n<p>{}</p>\n",
        html_escape(&p.complaint)
    ));
    html.push_str(&list("Where the data came from", &p.source));
    html.push_str(&format!(
        "<h2>Automated decisions</h2>\n<p>{}</p>\n",
        html_escape(&p.automated_decisions)
    ));
    html.push_str(&format!(
        "<h2>Your consent history and who accessed your data</h2>\n<p>{} consent event(s) and {} access(es) are listed in package.json.</p>\n<p>If anything here is wrong or incomplete, tell us and we will put it right.</p>\n<p>Yours sincerely,<br>{}</p>\n</body></html>\n",
        p.consent_history.len(),
        p.access_history.len(),
        html_escape(&p.controller)
    ));
    vec![
        ("package.json".into(), json),
        ("data.csv".into(), csv.into_bytes()),
        ("index.html".into(), html.into_bytes()),
    ]
}

/// Writes the package as a tar archive (package.json, data.csv, index.html).
pub fn write_package_tar(p: &AccessPackage, out: &mut dyn Write) -> Result<(), Error> {
    write_tar(out, &package_files(p))
}

/// Writes the package as a folder only its owner may open: see [`crate::write_private_dir`].
pub fn write_package_dir(p: &AccessPackage, dir: &Path, replace: bool) -> Result<(), Error> {
    crate::write_private_dir(dir, &package_files(p), replace)
}
