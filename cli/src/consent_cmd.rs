//! `steward consent ...` and `steward export`.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use crate::args::{ConsentCmd, ConsentEventArgs, ExportArgs, Global};
use crate::output::Output;
use crate::{actor_for, open_hub, parse_id, usage};

fn new_consent(event: &str, a: &ConsentEventArgs) -> hub::NewConsent {
    hub::NewConsent {
        purpose: a.purpose.clone(),
        event: event.to_string(),
        at: a.at.clone(),
        jurisdiction: a.jurisdiction.clone(),
        method: a.method.clone(),
        source: a.source.clone(),
        notice_version: a.notice_version.clone(),
        notice_hash: a.notice_hash.clone(),
        evidence: a.evidence.clone(),
        expires: a.expires.clone(),
        contact_point: a.contact_point.clone(),
        pecr_basis: a.pecr_basis.clone(),
        pecr_conditions: a.pecr_condition.clone(),
    }
}

pub(crate) fn run(g: &Global, cmd: ConsentCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        ConsentCmd::Record { event, what } => record(&hub, &actor, &event, &what, out),
        ConsentCmd::Withdraw { what } => record(&hub, &actor, "withdrawn", &what, out),
        ConsentCmd::State { id, subject, at } => {
            let subject = id.or(subject).unwrap_or_default();
            let state = hub.consent_state(&actor, &parse_id(&subject)?, at.as_deref())?;
            out.emit(&json!(state), || {
                state
                    .purposes
                    .iter()
                    .map(|(p, d)| {
                        format!(
                            "{p:<24} {:<8} {}",
                            if d.allowed { "allowed" } else { "no" },
                            d.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        ConsentCmd::History { id, subject } => {
            let subject = id.or(subject).unwrap_or_default();
            let events = hub.consent_history(&actor, &parse_id(&subject)?)?;
            out.emit(&json!({"items": events}), || {
                events
                    .iter()
                    .map(|e| {
                        format!(
                            "{:>4}  {}  {:<24} {:<12} {} ({})",
                            e.seq,
                            e.time,
                            e.purpose,
                            e.event.as_str(),
                            e.source,
                            e.collection_method
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        ConsentCmd::Explain {
            subject,
            purpose,
            at,
        } => {
            let x = hub.consent_explain(&actor, &parse_id(&subject)?, &purpose, at.as_deref())?;
            out.emit(&json!(x), || {
                let mut s = format!(
                    "{}: {} ({}; lawful basis {:?})",
                    x.purpose,
                    if x.decision.allowed {
                        "may process"
                    } else {
                        "may not process"
                    },
                    x.decision.reason,
                    x.basis
                );
                match &x.decision.deciding_event {
                    Some(e) => s.push_str(&format!(
                        "\ndecided by event {}: {} for {} at {} (source {}, method {})",
                        e.seq,
                        e.event.as_str(),
                        e.purpose,
                        e.time,
                        e.source,
                        e.collection_method
                    )),
                    None => s.push_str("\nno ledger event decided it (the lawful basis did)"),
                }
                s
            });
            Ok(())
        }
    }
}

fn record(
    hub: &hub::Hub,
    actor: &hub::Actor,
    event: &str,
    what: &ConsentEventArgs,
    out: Output,
) -> anyhow::Result<()> {
    let subject = parse_id(
        what.id
            .as_deref()
            .or(what.subject.as_deref())
            .unwrap_or_default(),
    )?;
    let e = hub.record_consent(actor, &subject, new_consent(event, what))?;
    out.emit(&json!(e), || {
        format!(
            "recorded: {} {} for {} (event {})",
            e.purpose,
            e.event.as_str(),
            e.subject,
            e.seq
        )
    });
    Ok(())
}

pub(crate) fn export(g: &Global, args: &ExportArgs, out: Output) -> anyhow::Result<()> {
    if args.format != "jsonl" && args.format != "csv" {
        return Err(usage("bad_format", "--format is jsonl or csv"));
    }
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    let purpose = hub
        .purposes()
        .get(&args.purpose)
        .map_err(|e| usage("unknown_purpose", e.to_string()))?
        .clone();
    // With --encrypt-to the export is built in memory and only its age ciphertext is written.
    let mut buffer: Vec<u8> = Vec::new();
    let encrypt = args.encrypt_to.is_some() || args.encrypt_passphrase_file.is_some();
    let mut sink: Box<dyn Write + '_> = match (&args.out, encrypt) {
        (Some(_), true) => Box::new(&mut buffer),
        (Some(p), false) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        (None, _) => Box::new(std::io::stdout().lock()),
    };
    // An export to a recipient carries its reference for each person first.
    let columns: Vec<String> = args
        .recipient
        .iter()
        .map(|_| "ref".to_string())
        .chain(purpose.fields.iter().cloned())
        .collect();
    if args.format == "csv" {
        writeln!(sink, "{}", hub::files::segment_csv_header(&columns))?;
    }
    let mut io_error = None;
    let n = hub.segment_for(
        &actor,
        &args.purpose,
        args.at.as_deref(),
        args.recipient.as_deref(),
        &mut |row| {
            let line = if args.format == "jsonl" {
                serde_json::to_string(&row).unwrap_or_default()
            } else {
                hub::files::segment_csv_line(
                    &serde_json::to_value(&row).unwrap_or_default(),
                    &columns,
                )
            };
            if let Err(e) = writeln!(sink, "{line}") {
                io_error = Some(e);
                return Err(hub::Error::BadRequest("writing the export failed".into()));
            }
            Ok(())
        },
    );
    if let Some(e) = io_error {
        return Err(e).context("writing the export");
    }
    let n = n?;
    sink.flush()?;
    drop(sink);
    if let (Some(p), true) = (&args.out, encrypt) {
        let sealed = crate::request_cmd::seal(
            args.encrypt_to.as_deref(),
            args.encrypt_passphrase_file.as_deref(),
            &buffer,
        )?;
        std::fs::write(p, sealed).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.out {
        out.emit(
            &json!({"purpose": args.purpose, "subjects": n, "file": p}),
            || {
                format!(
                    "{n} subjects exported for {} to {}",
                    args.purpose,
                    p.display()
                )
            },
        );
    } else {
        out.note(&format!("{n} subjects exported for {}", args.purpose));
    }
    Ok(())
}
