//! `steward import`, `import inspect|list|show|undo`, `review`, `merge`, `match explain`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use domain::RecordKind;
use hub::import::Thresholds;
use hub::import::{MappingFile, Profile, Reader, Target};
use hub::{ImportOptions, ImportRecord, PolicyFiles, Progress, RowReport};
use serde_json::{json, Value};

use crate::args::{Global, ImportArgs, ImportCmd, MatchCmd, MergeArgs, MergeCmd, ReviewCmd};
use crate::output::Output;
use crate::{actor_for, open_hub, parse_id, usage};

fn parse_profile(p: &str) -> anyhow::Result<Profile> {
    Profile::parse(p).ok_or_else(|| {
        usage(
            "bad_profile",
            "--profile is generic, civicrm, npsp, mailchimp, bloomerang or donorperfect",
        )
    })
}

fn read_mapping(m: &Path) -> anyhow::Result<(MappingFile, String)> {
    let text = std::fs::read_to_string(m).with_context(|| format!("reading {}", m.display()))?;
    let file = MappingFile::from_toml(&text)
        .map_err(|e| usage("bad_mapping", format!("{}: {e}", m.display())))?;
    Ok((file, text))
}

/// `steward import ...`.
pub(crate) fn run(g: &Global, args: ImportArgs, out: Output) -> anyhow::Result<()> {
    match args.cmd {
        Some(ImportCmd::Inspect {
            file,
            profile,
            mapping,
            rows,
        }) => inspect(g, &file, profile.as_deref(), mapping.as_deref(), rows, out),
        Some(ImportCmd::Undo { id }) => {
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let record = hub.undo_import(&actor, &id)?;
            out.emit(&json!(record), || {
                format!("import {id} undone: subjects it created are gone, subjects it changed are as they were")
            });
            Ok(())
        }
        Some(ImportCmd::List) => {
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let list = hub.list_imports(&actor)?;
            out.emit(&json!({ "imports": list }), || {
                let mut s = String::new();
                for r in &list {
                    s.push_str(&format!(
                        "{}  {:<9} {}  {} rows: {} new, {} merged, {} review, {} errors ({})\n",
                        r.id,
                        r.status,
                        r.started,
                        r.counts.rows_read,
                        r.counts.new,
                        r.counts.merged,
                        r.counts.review,
                        r.counts.errors,
                        r.file
                    ));
                }
                if s.is_empty() {
                    s.push_str("no imports yet");
                }
                s
            });
            Ok(())
        }
        Some(ImportCmd::Show { id, report }) => {
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let record = hub.import_record(&actor, &id)?;
            if let Some(path) = &report {
                write_report(path, hub.import_report(&actor, &id)?.rows())?;
            }
            out.emit(&summary_json(&record), || summary_text(&record));
            Ok(())
        }
        None => {
            let Some(file) = args.file.clone() else {
                return Err(usage(
                    "missing_file",
                    "give the file to import: steward import FILE --profile P (or a subcommand: inspect, list, show, undo)",
                ));
            };
            import(g, &file, &args, out)
        }
    }
}

/// Writes the report beside `path` and renames it into place once whole; rows are written as
/// they are read from the store.
fn write_report(
    path: &Path,
    rows: impl Iterator<Item = Result<RowReport, hub::Error>>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "{}", hub::REPORT_CSV_HEADER)?;
    for r in rows {
        writeln!(w, "{}", r?.csv_line())?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn summary_json(r: &ImportRecord) -> Value {
    let mut v = json!(r);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("import_id".into(), json!(r.id));
        // `problems` holds the first ones only; every row is in the report.
        obj.insert(
            "problems_left_out".into(),
            json!(r.problems_total.saturating_sub(r.problems.len() as u64)),
        );
    }
    v
}

/// One line per date column: the order it is read in and what decided it.
fn date_columns_text(columns: &[hub::import::DateColumn]) -> String {
    let mut s = String::new();
    for d in columns {
        let why = match d.decided_by.as_str() {
            "option" => "as --date-order says".to_string(),
            "file" => format!(
                "from the file ({} value(s) read only that way)",
                d.day_first_values.max(d.month_first_values)
            ),
            "profile" => "the source system's habit (the file's values read either way)".into(),
            "schema" => "date_order in policies/schema.toml".into(),
            "mixed" => format!(
                "undecided: {} value(s) read only day-first and {} only month-first; its {} ambiguous value(s) are refused (choose with --date-order)",
                d.day_first_values, d.month_first_values, d.ambiguous_values
            ),
            _ if d.ambiguous_values > 0 => format!(
                "undecided: nothing tells; its {} ambiguous value(s) are refused (choose with --date-order)",
                d.ambiguous_values
            ),
            _ => "no value needs an order".into(),
        };
        s.push_str(&format!(
            "  dates in column \"{}\": {} ({why})\n",
            d.column,
            d.order.as_deref().unwrap_or("order unknown")
        ));
    }
    s
}

fn summary_text(r: &ImportRecord) -> String {
    let c = &r.counts;
    let mut s = format!(
        "import {} ({}): {}\n  rows read {}: {} new, {} merged, {} for review, {} unchanged, {} errors, {} with warnings\n",
        r.id, r.profile, r.status, c.rows_read, c.new, c.merged, c.review, c.unchanged, c.errors, c.warnings
    );
    if r.already_imported {
        s.push_str(
            "  this file was imported before (same content, same options): nothing changed\n",
        );
    }
    if r.resumed {
        s.push_str("  an interrupted run of this import was finished\n");
    }
    s.push_str(&date_columns_text(&r.date_columns));
    if !r.unmapped_columns.is_empty() {
        s.push_str(&format!(
            "  columns not imported (no field for them; map them in a mapping file): {}\n",
            r.unmapped_columns.join(", ")
        ));
    }
    if !r.ignored_columns.is_empty() {
        s.push_str(&format!(
            "  columns read and left out on purpose (ignore): {}\n",
            r.ignored_columns.join(", ")
        ));
    }
    for st in &r.stages {
        s.push_str(&format!(
            "  {:<6} {:>8.2} s  {:>10.0} rows/s\n",
            st.stage, st.seconds, st.rows_per_second
        ));
    }
    if !r.problems.is_empty() {
        s.push_str(&format!("  problems ({} in all):\n", r.problems_total));
        for p in r.problems.iter().take(20) {
            s.push_str(&format!(
                "    row {}{}: {} {} ({})\n",
                p.row,
                p.column
                    .as_ref()
                    .map(|c| format!(", column \"{c}\""))
                    .unwrap_or_default(),
                p.severity,
                p.code,
                p.message
            ));
        }
        let shown = r.problems.len().min(20) as u64;
        if r.problems_total > shown {
            s.push_str(&format!(
                "    ... and {} more: the report lists every row (--report R.csv, or steward import show {} --report R.csv)\n",
                r.problems_total - shown,
                r.id
            ));
        }
    }
    let pairs = r.review_count.max(r.review_items.len() as u64);
    if pairs > 0 {
        s.push_str(&format!(
            "  {pairs} pair(s) wait in the review queue: steward review list\n"
        ));
    }
    if r.household_proposals > 0 {
        s.push_str(&format!(
            "  {} household(s) proposed (people alike who share a house): steward review list, then review link ID or review link --all-households\n",
            r.household_proposals
        ));
    }
    if r.status != "dry_run" && !r.already_imported {
        s.push_str(&format!("  undo with: steward import undo {}\n", r.id));
    }
    s
}

/// A one-line progress display on a terminal's stderr (rows/s and ETA), or plain lines.
fn progress_line(start: Instant, enabled: bool, lines: bool) -> impl Fn(Progress) {
    move |p: Progress| {
        if lines {
            let total = p.total.map(|t| format!(" total={t}")).unwrap_or_default();
            let _ = writeln!(
                std::io::stderr().lock(),
                "progress stage={} done={}{total}",
                p.stage,
                p.done
            );
            return;
        }
        if !enabled {
            return;
        }
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let rate = p.done as f64 / secs;
        let eta = match p.total {
            Some(t) if rate > 0.0 && t >= p.done => {
                format!(", ETA {:.0} s", (t - p.done) as f64 / rate)
            }
            _ => String::new(),
        };
        let total = p.total.map(|t| format!("/{t}")).unwrap_or_default();
        let _ = write!(
            std::io::stderr().lock(),
            "\r{:<6} {}{} rows, {:.0} rows/s{}      ",
            p.stage,
            p.done,
            total,
            rate,
            eta
        );
    }
}

fn import(g: &Global, file: &Path, args: &ImportArgs, out: Output) -> anyhow::Result<()> {
    let profile = args.profile.as_deref().map(parse_profile).transpose()?;
    let (mapping, mapping_text) = match &args.mapping {
        Some(m) => {
            let (f, t) = read_mapping(m)?;
            (Some(f), t)
        }
        None => (None, String::new()),
    };
    for (name, v) in [
        ("--auto-merge-above", args.auto_merge_above),
        ("--review-above", args.review_above),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(usage(
                "bad_threshold",
                format!("{name} is a probability between 0 and 1"),
            ));
        }
    }
    if args.review_above > args.auto_merge_above {
        return Err(usage(
            "bad_threshold",
            "--review-above must not be above --auto-merge-above",
        ));
    }
    std::fs::metadata(file).with_context(|| format!("opening {}", file.display()))?;
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    let options = ImportOptions {
        profile,
        mapping,
        mapping_text,
        dry_run: args.dry_run,
        thresholds: Thresholds {
            auto_merge: args.auto_merge_above,
            review: args.review_above,
        },
        name: file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        id: None,
        date_order: match &args.date_order {
            Some(o) => Some(hub::import::parse_order(o).ok_or_else(|| {
                usage(
                    "bad_date_order",
                    "--date-order is day-first (03/04/1980 is 3 April) or month-first (4 March)",
                )
            })?),
            None => None,
        },
        max_error_share: (!args.accept_errors).then_some(0.5),
    };
    let path = file.to_path_buf();
    let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(&path)?,
        )))
    };
    let show = !out.json && !args.progress_lines && std::io::stderr().is_terminal();
    let progress = progress_line(Instant::now(), show, args.progress_lines);
    let (record, report) = hub.import(&actor, &source, &options, &progress)?;
    if show {
        let _ = writeln!(std::io::stderr().lock());
    }
    if let Some(path) = &args.report {
        write_report(path, report.rows())?;
    }
    out.emit(&summary_json(&record), || summary_text(&record));
    // Rows were refused: the summary is printed as usual, and the exit code says so.
    if record.counts.errors > 0 {
        return Err(crate::Quiet(crate::exit::ROWS_REFUSED).into());
    }
    Ok(())
}

/// `steward review ...`.
pub(crate) fn review(g: &Global, cmd: ReviewCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        ReviewCmd::List { all } => {
            let items = hub.review_list(&actor, all)?;
            out.emit(&json!({ "items": items }), || {
                let mut s = String::new();
                for i in &items {
                    if i.kind == "household" {
                        s.push_str(&format!(
                            "{}  {:<8} p={:.3}  one household? {} people: {} (link or reject)\n",
                            i.id,
                            i.status,
                            i.probability,
                            i.members.len().max(2),
                            i.members
                                .iter()
                                .map(|m| m.to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        ));
                    } else {
                        s.push_str(&format!(
                            "{}  {:<8} p={:.3}  keep {}  merge {}\n",
                            i.id, i.status, i.probability, i.a, i.b
                        ));
                    }
                }
                if s.is_empty() {
                    s.push_str("the review queue is empty");
                }
                s
            });
        }
        ReviewCmd::Accept { id } => {
            let m = hub.review_accept(&actor, &id)?;
            out.emit(&json!(m), || {
                format!(
                    "merged {} into {} (merge {}; undo with: steward merge undo {})",
                    m.gone, m.keep, m.id, m.id
                )
            });
        }
        ReviewCmd::Link {
            id: Some(id),
            all_households: false,
        } => {
            let item = hub.review_link(&actor, &id)?;
            out.emit(&json!(item), || {
                format!(
                    "{} people are linked into one household (review item {id})",
                    item.members.len().max(2)
                )
            });
        }
        ReviewCmd::Link { .. } => {
            let open: Vec<_> = hub
                .review_list(&actor, false)?
                .into_iter()
                .filter(|i| i.kind == "household")
                .collect();
            let mut linked = Vec::new();
            let mut refused = Vec::new();
            for item in open {
                match hub.review_link(&actor, &item.id) {
                    Ok(i) => linked.push(i.id),
                    Err(e) => refused.push(json!({"id": item.id, "error": e.to_string()})),
                }
            }
            out.emit(&json!({"linked": linked, "refused": refused}), || {
                let mut s = format!("{} household proposal(s) linked", linked.len());
                for r in &refused {
                    s.push_str(&format!("\n  {}: {}", r["id"], r["error"]));
                }
                s
            });
        }
        ReviewCmd::Reject { id } => {
            let item = hub.review_reject(&actor, &id)?;
            out.emit(&json!(item), || {
                format!(
                    "review item {id} rejected: {} and {} stay apart",
                    item.a, item.b
                )
            });
        }
    }
    Ok(())
}

/// `steward merge A B` and `steward merge undo ID`.
pub(crate) fn merge(g: &Global, args: MergeArgs, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match args.cmd {
        Some(MergeCmd::Undo { id }) => {
            let undone = hub.undo(&actor, &id)?;
            out.emit(&json!(undone), || match &undone {
                hub::Undone::Merge(m) => format!(
                    "merge {id} undone: {} and {} are as they were",
                    m.keep, m.gone
                ),
                hub::Undone::Split(s) => format!(
                    "split {id} undone: record {} is back in {}, and {} is gone",
                    s.record, s.subject, s.split_off
                ),
            });
        }
        Some(MergeCmd::Split { subject, record }) => {
            let id = parse_id(&subject)?;
            let s = hub.split_subject(&actor, &id, record)?;
            out.emit(&json!(s), || {
                format!(
                    "record {} ({}) of {} is now subject {}, with {} consent event(s) of its own; gifts stayed with {} (split {}; undo with: steward merge undo {})",
                    s.record, s.source, s.subject, s.split_off, s.consent_moved, s.subject, s.id, s.id
                )
            });
        }
        None => {
            let (Some(a), Some(b)) = (args.keep, args.gone) else {
                return Err(usage(
                    "missing_subject",
                    "give two subject ids: steward merge KEEP GONE",
                ));
            };
            let (a, b) = (parse_id(&a)?, parse_id(&b)?);
            let m = hub.merge_subjects(&actor, &a, &b, None)?;
            out.emit(&json!(m), || {
                format!(
                    "merged {} into {} (merge {}; undo with: steward merge undo {})",
                    m.gone, m.keep, m.id, m.id
                )
            });
        }
    }
    Ok(())
}

/// `steward match explain A B`.
pub(crate) fn explain(g: &Global, cmd: MatchCmd, out: Output) -> anyhow::Result<()> {
    let (a, b) = match cmd {
        MatchCmd::Explain { a, b } => (a, b),
        MatchCmd::Check => {
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let r = hub.match_check(&actor)?;
            out.emit(&json!(r), || {
                let mut s = format!(
                    "{} subject(s) read, {} made of several records; {} contradiction(s)\n",
                    r.subjects,
                    r.with_sources,
                    r.findings.len()
                );
                for f in &r.findings {
                    let fix = if f.repair == "split" {
                        format!(
                            "steward merge split {} --record {}",
                            f.subject, f.records[1]
                        )
                    } else {
                        "no source records kept: undo that import, or correct by hand".into()
                    };
                    s.push_str(&format!(
                        "  {}  records {} and {} ({} / {}) differ on {}: {}\n",
                        f.subject,
                        f.records[0],
                        f.records[1],
                        f.sources[0],
                        f.sources[1],
                        f.reason,
                        fix
                    ));
                }
                s
            });
            return Ok(());
        }
        MatchCmd::Sources { subject } => {
            let id = parse_id(&subject)?;
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let list = hub.source_records(&actor, &id)?;
            let rows: Vec<_> = list
                .iter()
                .map(|(n, from, fields)| json!({"record": n, "source": from, "fields": fields}))
                .collect();
            out.emit(&json!(rows), || {
                let mut s = String::new();
                for (n, from, fields) in &list {
                    s.push_str(&format!("  {n}  {from}  ({})\n", fields.join(", ")));
                }
                s
            });
            return Ok(());
        }
        MatchCmd::Reindex => {
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let n = hub.reindex_matching(&actor)?;
            out.emit(&json!({ "subjects": n }), || {
                format!("blocking keys stored for {n} subject(s)")
            });
            return Ok(());
        }
    };
    let (a, b) = (parse_id(&a)?, parse_id(&b)?);
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    let e = hub.explain_match(&actor, &a, &b)?;
    out.emit(&json!(e), || {
        let mut s = format!(
            "{} vs {}: score {:.2}, probability {:.4} → {}\nan import would: {}{}\n(m/u: {})\n\n",
            e.a,
            e.b,
            e.score,
            e.probability,
            e.band,
            e.decision,
            e.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
            e.parameters
        );
        for f in &e.fields {
            s.push_str(&format!(
                "  {:<14} {:<10} {:>+7.2}\n",
                f.field, f.level, f.weight
            ));
        }
        s
    });
    Ok(())
}

fn describe(t: &Option<Target>) -> String {
    match t {
        None => "(not mapped)".into(),
        Some(Target::Field { field }) => field.clone(),
        Some(Target::Gift { field }) => format!("gift.{field}"),
        Some(Target::Contact2 { field }) => format!("contact2.{field}"),
        Some(Target::Consent { purpose, event, .. }) => format!("consent: {event} {purpose}"),
        Some(Target::Restrictions) => "consent: restrictions".into(),
        Some(Target::Address) => {
            "address (street, street2, city, region, postal_code, country)".into()
        }
        Some(Target::Ignore) => "(ignored)".into(),
    }
}

fn inspect(
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
        Some(p) => parse_profile(p)?,
        None => Profile::detect(&header),
    };
    let mut targets = profile.map(&header);
    let mut constants = serde_json::Map::new();
    if let Some(m) = mapping {
        let (file, _) = read_mapping(m)?;
        targets = file.map(&header, &targets);
        constants = file
            .constants
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
    }
    let dialect = reader.dialect().clone();
    let duplicates = reader.duplicate_columns();
    // The order of each date column, worked out from the whole file as the import does.
    let mut evidence = hub::import::DateEvidence::for_targets(&schema, &targets);
    if !evidence.is_empty() {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let all = Reader::new(f, None)
            .map_err(|e| usage("unreadable_file", format!("{}: {e}", file.display())))?;
        for row in all.flatten() {
            evidence.observe(&row.cells);
        }
    }
    let date_columns = evidence.decide(&header, None, profile.date_order(), schema.date_order);
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
                // The region each phone number is read in, as the import reads it.
                let country = row
                    .cells
                    .iter()
                    .zip(&targets)
                    .find(|(c, t)| {
                        !c.trim().is_empty()
                            && matches!(t, Some(Target::Field { field }) if field == "country")
                    })
                    .map(|(c, _)| c.as_str())
                    .or_else(|| constants.get("country").and_then(Value::as_str))
                    .and_then(domain::country_code);
                let mut regions = serde_json::Map::new();
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
                    let is_phone = schema
                        .field(record, field)
                        .is_some_and(|d| d.ty == domain::FieldType::Phone);
                    let mut doubt = false;
                    if is_phone && matches!(t, Some(Target::Field { .. })) {
                        let reading = hub::import::read_phone_checked(
                            cell,
                            country.as_deref(),
                            &schema.default_region,
                        );
                        if let (Some(region), true) = (&reading.region, reading.from_row) {
                            if let Ok(e164) = domain::normalise_phone(cell, region) {
                                obj.insert(field.clone(), json!(e164));
                            }
                        }
                        doubt = !reading.doubt.is_empty();
                        let said = match &reading.region {
                            None => "own country code".to_string(),
                            Some(r) if reading.from_row => format!("{r} (the row's country)"),
                            Some(r) => format!("{r} (default region)"),
                        };
                        regions.insert(field.clone(), json!(said));
                    }
                    let verdict = match schema.parse_object(record, &obj) {
                        Ok(_) if doubt => "phone_region_unsure".to_string(),
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
                let mut r = json!({"row": row.number, "fields": checks});
                if !regions.is_empty() {
                    r["phone_regions"] = Value::Object(regions);
                }
                rows.push(r);
            }
        }
    }
    let doc = json!({
        "file": file, "delimiter": (dialect.delimiter as char).to_string(), "encoding": dialect.encoding,
        "bom": dialect.bom, "preamble_rows": dialect.preamble_rows, "profile": profile,
        "columns": columns, "duplicate_columns": duplicates, "constants": constants, "rows": rows,
        "date_columns": date_columns,
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
        if !date_columns.is_empty() {
            s.push('\n');
            s.push_str(&date_columns_text(&date_columns));
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
