//! `steward request ...`.

use std::path::Path;

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
            hub::files::age_encrypt(r, plain).map_err(|e| usage("bad_recipient", e.to_string()))
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
            Ok(hub::files::age_encrypt_passphrase(pass, plain)?)
        }
        (None, None) => Ok(plain.to_vec()),
    }
}

/// A new random passphrase for an encrypted package (see `hub::keys::new_passphrase`).
fn new_passphrase() -> anyhow::Result<String> {
    hub::keys::new_passphrase().ok_or_else(|| anyhow::anyhow!("the system's random source failed"))
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
            id,
            subject,
            jurisdiction,
            received,
        } => {
            let subject = id.or(subject).unwrap_or_default();
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
                if list.is_empty() {
                    return match days {
                        Some(d) => format!("no open request is due within {d} days"),
                        None => "no requests".to_string(),
                    };
                }
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
            force,
            override_reason,
            encrypt_to,
            encrypt_passphrase_file,
            generate_passphrase,
        } => {
            let rid = parse_id(&id)?;
            if let Some(p) = &path {
                refuse_overwrite(p, force)?;
            }
            let why = override_reason.as_deref();
            if hub.get_request(&actor, &rid)?.kind == "erasure" {
                return fulfil_erasure(&hub, &actor, &id, path.as_deref(), force, why, out);
            }
            let Some(path) = path else {
                return Err(usage(
                    "missing_out",
                    "an access package needs --out (a folder, X.zip, X.tar or X.zip.age)",
                ));
            };
            let sealing = Sealing {
                to: encrypt_to,
                passphrase_file: encrypt_passphrase_file,
                generate: generate_passphrase,
            };
            fulfil_access(&hub, &actor, &id, &path, force, why, sealing, out)?;
        }
    }
    Ok(())
}

/// Refuses to replace what is at `path` unless told to.
fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(usage(
            "exists",
            format!(
                "{} already exists: nothing is overwritten silently; choose another --out or add --force",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `request fulfil` on an erasure request: erases (the hub checks the request's state) and
/// writes the certificate to `path` when asked.
fn fulfil_erasure(
    hub: &hub::Hub,
    actor: &hub::Actor,
    id: &str,
    path: Option<&Path>,
    force: bool,
    why: Option<&str>,
    out: Output,
) -> anyhow::Result<()> {
    let (r, certificate) = hub.fulfil_erasure(actor, &parse_id(id)?, why)?;
    if let Some(p) = path {
        let body = serde_json::to_vec_pretty(&certificate)?;
        hub::files::write_private(p, &body, force)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let next = format!("steward request update {id} --action complete");
    out.emit(
        &json!({"request": id, "erased": certificate.subject, "certificate": certificate,
                "state": r.state, "next": next}),
        || {
            format!(
                "{}\n\nrecorded in the request's history; next: {next}",
                certificate.text()
            )
        },
    );
    Ok(())
}

/// How an access package is encrypted, if at all.
struct Sealing {
    to: Option<String>,
    passphrase_file: Option<std::path::PathBuf>,
    generate: bool,
}

/// `request fulfil` on an access or portability request: writes the package as `path` names
/// it (folder, .zip, .tar, or an age file holding a zip or tar) and records what it wrote.
#[allow(clippy::too_many_arguments)]
fn fulfil_access(
    hub: &hub::Hub,
    actor: &hub::Actor,
    id: &str,
    path: &Path,
    force: bool,
    why: Option<&str>,
    sealing: Sealing,
    out: Output,
) -> anyhow::Result<()> {
    let encrypted = sealing.to.is_some() || sealing.passphrase_file.is_some() || sealing.generate;
    let lower = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let format = match (encrypted, lower.rsplit('.').next().unwrap_or_default()) {
        (true, _) => "age",
        (false, "zip") => "zip",
        (false, "tar") => "tar",
        (false, "age") => {
            return Err(usage(
                "not_encrypted",
                "--out names an .age file: add --generate-passphrase (a passphrase sent by another channel), --encrypt-passphrase-file or --encrypt-to, or name a folder, .zip or .tar",
            ))
        }
        (false, _) => "folder",
    };
    let generated = sealing.generate.then(new_passphrase).transpose()?;
    let rid = parse_id(id)?;
    let package = hub.access_package(actor, &rid, why)?;
    let files = hub::files::package_files(&package);
    // What the history records: the package's own file names, never the name given to --out
    // (which may well be the person's name).
    let produced: Vec<(String, Vec<u8>)> = if format == "folder" {
        hub::files::write_private_dir(path, &files, force)
            .with_context(|| format!("writing {}", path.display()))?;
        files
    } else {
        // Inside an age file: a zip, which any computer opens once decrypted, unless the
        // name asks for a tar (X.tar.age).
        let inner_zip = format != "tar" && !lower.ends_with(".tar.age");
        let mut bytes = Vec::new();
        if inner_zip {
            hub::files::write_zip(&mut bytes, &files)?;
        } else {
            hub::files::write_tar(&mut bytes, &files)?;
        }
        let inner = if inner_zip { "zip" } else { "tar" };
        let mut name = format!("access-package.{inner}");
        if let Some(pass) = &generated {
            bytes = hub::files::age_encrypt_passphrase(pass, &bytes)?;
        } else if encrypted {
            bytes = seal(
                sealing.to.as_deref(),
                sealing.passphrase_file.as_deref(),
                &bytes,
            )?;
        }
        if encrypted {
            name.push_str(".age");
        }
        hub::files::write_private(path, &bytes, force)
            .with_context(|| format!("writing {}", path.display()))?;
        vec![(name, bytes)]
    };
    let r = hub.record_fulfilment(actor, &rid, &produced, why)?;
    let step = r.history.last().cloned();
    let next = format!("steward request update {id} --action complete");
    out.emit(
        &json!({"request": id, "out": path, "format": format, "encrypted": encrypted,
                "passphrase": generated,
                "produced": step.as_ref().map(|s| s.produced.clone()).unwrap_or_default(),
                "state": r.state, "next": next}),
        || {
            let mut s = format!("access package written to {} ({format})\n", path.display());
            if let Some(pass) = &generated {
                s.push_str(&format!(
                    "passphrase (shown once, not stored): {pass}\n  send it by another channel than the file (a phone call, a text); the person opens the file with the age tool (age -d), or any tool that reads age files\n"
                ));
            }
            for p in step.iter().flat_map(|s| &s.produced) {
                s.push_str(&format!("  {p}\n"));
            }
            s.push_str(&format!("recorded in the request's history; next: {next}"));
            s
        },
    );
    Ok(())
}
