//! `steward request ...`.

use anyhow::Context;
use serde_json::json;

use crate::args::{Global, RequestCmd};
use crate::output::Output;
use crate::{actor_for, open_hub, parse_id, usage};

/// Encrypts an export with age: to a recipient, or with the passphrase in a file.
pub(crate) fn seal(
    recipient: Option<&str>,
    passphrase_file: Option<&std::path::Path>,
    plain: &[u8],
) -> anyhow::Result<Vec<u8>> {
    match (recipient, passphrase_file) {
        (Some(r), _) => {
            exporters::age_encrypt(r, plain).map_err(|e| usage("bad_recipient", e.to_string()))
        }
        (None, Some(f)) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let pass = text.lines().next().unwrap_or_default();
            if pass.len() < 12 {
                return Err(usage(
                    "weak_passphrase",
                    "the export passphrase must be at least 12 characters",
                ));
            }
            Ok(exporters::age_encrypt_passphrase(pass, plain)?)
        }
        (None, None) => Ok(plain.to_vec()),
    }
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
            encrypt_passphrase_file,
        } => {
            let package = hub.access_package(&actor, &parse_id(&id)?)?;
            if encrypt_to.is_some() || encrypt_passphrase_file.is_some() {
                let mut tar = Vec::new();
                exporters::write_package_tar(&package, &mut tar)?;
                let sealed = seal(
                    encrypt_to.as_deref(),
                    encrypt_passphrase_file.as_deref(),
                    &tar,
                )?;
                std::fs::write(&path, sealed)
                    .with_context(|| format!("writing {}", path.display()))?;
            } else {
                exporters::write_package_dir(&package, &path)?;
            }
            out.emit(
                &json!({"request": id, "out": path, "encrypted": path.is_file()}),
                || format!("access package written to {}", path.display()),
            );
        }
    }
    Ok(())
}
