//! `steward import inspect`.

use std::path::Path;

use anyhow::Context;
use domain::RecordKind;
use hub::PolicyFiles;
use importers::{MappingFile, Profile, Reader, Target};
use serde_json::{json, Value};

use crate::args::Global;
use crate::output::Output;
use crate::usage;

fn describe(t: &Option<Target>) -> String {
    match t {
        None => "(not mapped)".into(),
        Some(Target::Field { field }) => field.clone(),
        Some(Target::Gift { field }) => format!("gift.{field}"),
        Some(Target::Contact2 { field }) => format!("contact2.{field}"),
        Some(Target::Consent { purpose, event, .. }) => format!("consent: {event} {purpose}"),
        Some(Target::Restrictions) => "consent: restrictions".into(),
        Some(Target::Ignore) => "(ignored)".into(),
    }
}

pub(crate) fn inspect(
    g: &Global,
    file: &Path,
    profile: Option<&str>,
    mapping: Option<&Path>,
    n_rows: usize,
    out: Output,
) -> anyhow::Result<()> {
    let policies = match &g.data {
        Some(d) => PolicyFiles::load(&d.join(hub::POLICY_DIR))?,
        None => PolicyFiles::defaults(),
    };
    let schema = policies.schema()?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = Reader::new(f, None)
        .map_err(|e| usage("unreadable_file", format!("{}: {e}", file.display())))?;
    let header = reader.header().to_vec();
    let profile = match profile {
        Some(p) => Profile::parse(p).ok_or_else(|| {
            usage(
                "bad_profile",
                "--profile is generic, civicrm, npsp, mailchimp, bloomerang or donorperfect",
            )
        })?,
        None => Profile::detect(&header),
    };
    let mut targets = profile.map(&header);
    let mut constants = serde_json::Map::new();
    if let Some(m) = mapping {
        let text =
            std::fs::read_to_string(m).with_context(|| format!("reading {}", m.display()))?;
        let file = MappingFile::from_toml(&text)
            .map_err(|e| usage("bad_mapping", format!("{}: {e}", m.display())))?;
        targets = file.map(&header, &targets);
        constants = file
            .constants
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
    }
    let dialect = reader.dialect().clone();
    let duplicates = reader.duplicate_columns();
    let columns: Vec<Value> = header
        .iter()
        .zip(&targets)
        .map(|(h, t)| json!({"column": h, "target": describe(t)}))
        .collect();
    let mut rows = Vec::new();
    for row in (&mut reader).take(n_rows) {
        match row {
            Err(e) => rows.push(json!({"row": e.row, "error": e.code, "column": e.column})),
            Ok(row) => {
                let mut checks = serde_json::Map::new();
                for (cell, t) in row.cells.iter().zip(&targets) {
                    let (record, field) = match t {
                        Some(Target::Field { field }) | Some(Target::Contact2 { field }) => {
                            (RecordKind::Subject, field)
                        }
                        Some(Target::Gift { field }) => (RecordKind::Gift, field),
                        _ => continue,
                    };
                    if cell.trim().is_empty() {
                        continue;
                    }
                    let mut obj = serde_json::Map::new();
                    obj.insert(field.clone(), json!(cell));
                    let verdict = match schema.parse_object(record, &obj) {
                        Ok(parsed) => {
                            let suspect = parsed.iter().any(|(_, v)| {
                                matches!(v, domain::Value::Email(e)
                                    if domain::email_domain_suspect(e.expose()))
                            });
                            if suspect { "email_domain_typo" } else { "ok" }.to_string()
                        }
                        Err(domain::Error::Fields(errs)) => errs
                            .first()
                            .map(|e| e.problem.code().to_string())
                            .unwrap_or_default(),
                        Err(other) => other.to_string(),
                    };
                    checks.insert(field.clone(), json!(verdict));
                }
                rows.push(json!({"row": row.number, "fields": checks}));
            }
        }
    }
    let doc = json!({
        "file": file, "delimiter": (dialect.delimiter as char).to_string(), "encoding": dialect.encoding,
        "bom": dialect.bom, "preamble_rows": dialect.preamble_rows, "profile": profile,
        "columns": columns, "duplicate_columns": duplicates, "constants": constants, "rows": rows,
    });
    out.emit(&doc, || {
        let mut s = format!(
            "{}: delimiter {:?}, {:?}{}, {} preamble row(s), profile {:?}\n\ncolumns:\n",
            file.display(),
            dialect.delimiter as char,
            dialect.encoding,
            if dialect.bom { " with BOM" } else { "" },
            dialect.preamble_rows,
            profile
        );
        for (h, t) in header.iter().zip(&targets) {
            s.push_str(&format!("  {h:<40} → {}\n", describe(t)));
        }
        if !duplicates.is_empty() {
            s.push_str(&format!(
                "\nduplicated column names: {}\n",
                duplicates.join(", ")
            ));
        }
        s.push_str("\nfirst rows (validity only, never values):\n");
        for r in &rows {
            s.push_str(&format!("  {r}\n"));
        }
        s
    });
    Ok(())
}
