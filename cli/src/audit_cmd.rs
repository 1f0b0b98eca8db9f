//! `steward audit ...`.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use crate::args::{AuditCmd, AuditFilter, CheckpointCmd, Global};
use crate::output::Output;
use crate::{actor_for, open_hub, usage};

fn query(
    filter: &AuditFilter,
    after: Option<u64>,
    limit: usize,
) -> anyhow::Result<hub::audit_log::Query> {
    let outcome = match filter.outcome.as_deref() {
        None => None,
        Some("ok") => Some(hub::audit_log::Outcome::Ok),
        Some("denied") => Some(hub::audit_log::Outcome::Denied),
        Some("error") => Some(hub::audit_log::Outcome::Error),
        Some(_) => return Err(usage("bad_outcome", "--outcome is ok, denied or error")),
    };
    Ok(hub::audit_log::Query {
        subject: filter.subject.clone(),
        actor: filter.actor.clone(),
        action: filter.action.clone(),
        outcome,
        from: filter.from.clone(),
        to: filter.to.clone(),
        after,
        limit,
    })
}

fn event_line(e: &hub::audit_log::Event) -> String {
    format!(
        "{:>6}  {}  {:<18} {:<16} {:<7} {}{}{}",
        e.seq,
        e.time,
        e.actor_name,
        e.action,
        e.outcome.as_str(),
        e.subjects.join(" "),
        if e.fields.is_empty() {
            String::new()
        } else {
            format!("  [{}]", e.fields.join(", "))
        },
        e.reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default()
    )
}

/// `audit verify-archive`: needs no data directory, only the archive and a checkpoint of the
/// same log (for its public key).
fn verify_archive(
    dir: &std::path::Path,
    checkpoint: &std::path::Path,
    out: Output,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(checkpoint)
        .with_context(|| format!("reading {}", checkpoint.display()))?;
    let public_key = serde_json::from_str::<hub::ExportedCheckpoint>(&text)
        .map(|e| e.checkpoint)
        .or_else(|_| hub::audit_log::Checkpoint::from_json(&text))
        .map_err(|e| usage("bad_checkpoint", e.to_string()))?
        .public_key;
    if !dir.is_dir() {
        return Err(usage(
            "not_found",
            format!("{} is not a directory", dir.display()),
        ));
    }
    let v = hub::audit_log::verify_archive(dir, &public_key)
        .map_err(|e| usage("bad_archive", e.to_string()))?;
    out.emit(&json!(v), || match &v.problem {
        None => format!(
            "audit archive intact: {} events in {} segment(s), each signed at its end, head {}",
            v.events, v.checkpoints, v.head
        ),
        Some(p) => format!(
            "audit archive damaged at event {}: {} ({})",
            p.seq, p.detail, p.kind
        ),
    });
    if !v.ok {
        std::process::exit(1);
    }
    Ok(())
}

pub(crate) fn run(g: &Global, cmd: AuditCmd, out: Output) -> anyhow::Result<()> {
    if let AuditCmd::VerifyArchive { dir, checkpoint } = &cmd {
        return verify_archive(dir, checkpoint, out);
    }
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        AuditCmd::VerifyArchive { .. } => unreachable!("handled before the hub opens"),
        AuditCmd::Archive { to } => {
            let (segments, events) = hub.audit_archive(&actor, &to)?;
            out.emit(&json!({"segments": segments, "events": events, "to": to}), || {
                if segments == 0 {
                    "no sealed audit segment to archive yet (a segment is sealed when it reaches 4 MiB)".to_string()
                } else {
                    format!(
                        "{segments} sealed audit segment(s), {events} events, moved to {}; verify the whole log with `steward audit verify --archive {}`",
                        to.display(),
                        to.display()
                    )
                }
            });
            Ok(())
        }
        AuditCmd::Verify { against, archive } => {
            let against = against
                .map(|p| {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    hub::audit_log::Checkpoint::from_json(&text)
                        .map_err(|e| usage("bad_checkpoint", e.to_string()))
                })
                .transpose()?;
            let v = hub.audit_verify_with_archive(&actor, against.as_ref(), archive.as_deref())?;
            out.emit(&json!(v), || match &v.problem {
                None if v.unsigned_tail > 0 => format!(
                    "audit log verified: {} events, {} checkpoints and the signed head check out; the last {} events follow the last checkpoint (each block of them is signed, but a rollback of them shows only --against a later exported checkpoint), head {}",
                    v.events, v.checkpoints, v.unsigned_tail, v.head
                ),
                None => format!(
                    "audit log intact: {} events, {} checkpoints and the signed head verified, head {}",
                    v.events, v.checkpoints, v.head
                ),
                Some(p) => format!(
                    "audit log damaged at event {}: {} ({})",
                    p.seq, p.detail, p.kind
                ),
            });
            if !v.ok {
                // Flush the store (the verification itself was audited) before leaving.
                drop(hub);
                std::process::exit(1);
            }
            Ok(())
        }
        AuditCmd::Query {
            filter,
            after,
            limit,
        } => {
            let (events, next) = hub.audit_query(&actor, &query(&filter, after, limit)?)?;
            out.emit(&json!({"items": events, "next": next}), || {
                let mut s: Vec<String> = events.iter().map(event_line).collect();
                if let Some(n) = next {
                    s.push(format!("(more: --after {n})"));
                }
                s.join("\n")
            });
            Ok(())
        }
        AuditCmd::Export {
            filter,
            format,
            out: path,
        } => {
            if format != "jsonl" && format != "csv" {
                return Err(usage("bad_format", "--format is jsonl or csv"));
            }
            let mut sink: Box<dyn Write> = match &path {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            if format == "csv" {
                writeln!(sink, "{}", hub::files::audit_csv_header())?;
            }
            let mut after = None;
            let mut n = 0u64;
            loop {
                let (events, next) = hub.audit_query(&actor, &query(&filter, after, 10_000)?)?;
                for e in &events {
                    if format == "jsonl" {
                        writeln!(sink, "{}", serde_json::to_string(e)?)?;
                    } else {
                        let line = hub::files::audit_csv_line(&serde_json::to_value(e)?);
                        writeln!(sink, "{line}")?;
                    }
                    n += 1;
                }
                match next {
                    Some(s) => after = Some(s),
                    None => break,
                }
            }
            sink.flush()?;
            if let Some(p) = path {
                out.emit(&json!({"events": n, "file": p}), || {
                    format!("{n} events written to {}", p.display())
                });
            }
            Ok(())
        }
        AuditCmd::Checkpoint(CheckpointCmd::Export { out: path }) => {
            let cp = hub.export_checkpoint(&actor)?;
            let text = serde_json::to_string_pretty(&cp)?;
            match path {
                Some(p) => {
                    std::fs::write(&p, format!("{text}\n"))
                        .with_context(|| format!("writing {}", p.display()))?;
                    out.emit(&json!(cp), || {
                        format!(
                            "checkpoint of {} events, with the {} subject(s) erased so far, written to {} (keep it off this host: `audit verify --against` and `backup restore --checkpoint` read it)",
                            cp.checkpoint.size,
                            cp.erasures.len(),
                            p.display()
                        )
                    });
                }
                None => out.emit(&json!(cp), || text.clone()),
            }
            Ok(())
        }
    }
}
