//! `steward request ...`.

use anyhow::Context;
use serde_json::json;

use crate::args::{Global, RequestCmd};
use crate::output::Output;
use crate::{actor_for, open_hub, usage};

fn parse_id(raw: &str) -> anyhow::Result<domain::SubjectId> {
    raw.parse().map_err(|_| {
        usage(
            "bad_id",
            format!("`{raw}` is not an id (26 characters of base32)"),
        )
    })
}

fn line(r: &hub::SubjectRequest) -> String {
    format!(
        "{}  {:<13} {:<8} {:<17} due {}  subject {}",
        r.id, r.kind, r.jurisdiction, r.state, r.due, r.subject
    )
}

pub(crate) fn run(g: &Global, cmd: RequestCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        RequestCmd::Open {
            kind,
            subject,
            jurisdiction,
            received,
        } => {
            let r = hub.open_request(
                &actor,
                &parse_id(&subject)?,
                &kind,
                &jurisdiction,
                received.as_deref(),
            )?;
            out.emit(&json!(r), || {
                format!("request {} opened; answer due {}", r.id, r.due)
            });
        }
        RequestCmd::List { due_within } => {
            let days = due_within
                .map(|d| {
                    d.trim_end_matches('d')
                        .parse::<u32>()
                        .map_err(|_| usage("bad_due_within", "--due-within takes days, as in 7d"))
                })
                .transpose()?;
            let list = hub.list_requests(&actor, days)?;
            out.emit(&json!({"items": list}), || {
                list.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        RequestCmd::Show { id } => {
            let r = hub.get_request(&actor, &parse_id(&id)?)?;
            out.emit(&json!(r), || {
                let mut s = line(&r);
                for step in &r.history {
                    s.push_str(&format!(
                        "\n  {}  {:<9} → {}{}",
                        step.at,
                        step.action,
                        step.state,
                        step.reason
                            .as_deref()
                            .map(|x| format!("  ({x})"))
                            .unwrap_or_default()
                    ));
                }
                s
            });
        }
        RequestCmd::Update { id, action, reason } => {
            let r = hub.advance_request(&actor, &parse_id(&id)?, &action, reason.as_deref())?;
            out.emit(&json!(r), || line(&r));
        }
        RequestCmd::Fulfil {
            id,
            out: path,
            encrypt_to,
        } => {
            let package = hub.access_package(&actor, &parse_id(&id)?)?;
            match encrypt_to {
                Some(recipient) => {
                    let mut tar = Vec::new();
                    exporters::write_package_tar(&package, &mut tar)?;
                    let sealed = exporters::age_encrypt(&recipient, &tar)
                        .map_err(|e| usage("bad_recipient", e.to_string()))?;
                    std::fs::write(&path, sealed)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => exporters::write_package_dir(&package, &path)?,
            }
            out.emit(
                &json!({"request": id, "out": path, "encrypted": path.is_file()}),
                || format!("access package written to {}", path.display()),
            );
        }
    }
    Ok(())
}
