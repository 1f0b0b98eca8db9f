//! One function per command.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::Context;
use hub::keys::{RotationOptions, SealTo};
use hub::{Hub, Lookup, NewSubjectInput, PolicyFiles};
use serde_json::{json, Value};

use crate::args::{BackupCmd, Cli, Command, InitArgs, KeysCmd, PolicyCmd, SubjectCmd, UsersCmd};
use crate::output::Output;
use crate::{actor_for, data_dir, open_hub, parse_id, usage};

pub(crate) fn run(cli: Cli, out: Output) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(args) => {
            crate::init_logging("warn");
            init(g, &args, out)
        }
        Command::Serve(args) => {
            crate::init_logging("info");
            crate::serve::serve(g, &args, out)
        }
        Command::Demo(args) => {
            crate::init_logging("info");
            crate::serve::demo(g, &args, out)
        }
        Command::Recipients(cmd) => {
            crate::init_logging("warn");
            crate::recipients_cmd::recipients(g, cmd, out)
        }
        Command::Notify(cmd) => {
            crate::init_logging("warn");
            crate::recipients_cmd::notify(g, cmd, out)
        }
        Command::Interaction(cmd) => {
            crate::init_logging("warn");
            crate::interaction_cmd::interaction(g, cmd, out)
        }
        Command::Analytics(cmd) => {
            crate::init_logging("warn");
            crate::interaction_cmd::analytics(g, cmd, out)
        }
        Command::Subject(SubjectCmd::Timeline { id }) => {
            crate::init_logging("warn");
            crate::interaction_cmd::timeline(g, &id, out)
        }
        Command::Subject(cmd) => {
            crate::init_logging("warn");
            subject(g, cmd, out)
        }
        Command::Users(cmd) => {
            crate::init_logging("warn");
            users(g, cmd, out)
        }
        Command::Keys(KeysCmd::Rotate { batch_size }) => {
            crate::init_logging("warn");
            let hub = open_hub(g)?;
            let report = hub.rotate_keys(
                &actor_for(&hub, g)?,
                &RotationOptions {
                    batch_size,
                    max_batches: None,
                },
            )?;
            out.emit(&json!(report), || {
                format!(
                    "KEK rotated to version {}: {} data keys rewrapped, {} skipped{}",
                    report.target_version,
                    report.rewrapped,
                    report.skipped,
                    if report.resumed {
                        " (resumed an interrupted rotation)"
                    } else {
                        ""
                    }
                )
            });
            Ok(())
        }
        Command::Consent(cmd) => {
            crate::init_logging("warn");
            crate::consent_cmd::run(g, cmd, out)
        }
        Command::Ropa(crate::args::RopaCmd::Export {
            format,
            out: path,
            policies,
        }) => {
            let dir = match policies {
                Some(d) => d,
                None => data_dir(g)?.join(hub::POLICY_DIR),
            };
            let (doc, md) = hub::ropa(&PolicyFiles::load(&dir)?)?;
            let text = match format.as_str() {
                "markdown" | "md" => md,
                "json" => serde_json::to_string_pretty(&doc)?,
                _ => return Err(usage("bad_format", "--format is markdown or json")),
            };
            match path {
                Some(p) => {
                    std::fs::write(&p, &text)
                        .with_context(|| format!("writing {}", p.display()))?;
                    out.emit(&json!({"file": p}), || {
                        format!("records of processing written to {}", p.display())
                    });
                }
                None => out.emit(&doc, || text.clone()),
            }
            Ok(())
        }
        Command::Retention(crate::args::RetentionCmd::Run { dry_run, now }) => {
            crate::init_logging("warn");
            let hub = open_hub(g)?;
            let report = hub.retention_run(&actor_for(&hub, g)?, dry_run, now.as_deref())?;
            out.emit(&json!(report), || {
                format!(
                    "{}as of {}: {} legal hold(s) ended and shredded, {} closed request record(s) purged, {} of {} supporters lapsed ({} erased), {} old interaction(s) removed, {} finished notification(s) purged",
                    if report.dry_run { "dry run, nothing changed; " } else { "" },
                    report.as_of,
                    report.holds_ended.len(),
                    report.requests_purged,
                    report.lapsed,
                    report.subjects_checked,
                    report.lapsed_erased,
                    report.interactions_removed,
                    report.notifications_purged
                )
            });
            Ok(())
        }
        Command::Import(args) => {
            crate::init_logging("warn");
            crate::import_cmd::run(g, args, out)
        }
        Command::Review(cmd) => {
            crate::init_logging("warn");
            crate::import_cmd::review(g, cmd, out)
        }
        Command::Merge(args) => {
            crate::init_logging("warn");
            crate::import_cmd::merge(g, args, out)
        }
        Command::Match(cmd) => {
            crate::init_logging("warn");
            crate::import_cmd::explain(g, cmd, out)
        }
        Command::Request(cmd) => {
            crate::init_logging("warn");
            crate::request_cmd::run(g, cmd, out)
        }
        Command::Export(args) => {
            crate::init_logging("warn");
            crate::consent_cmd::export(g, &args, out)
        }
        Command::Audit(cmd) => {
            crate::init_logging("warn");
            crate::audit_cmd::run(g, cmd, out)
        }
        Command::Backup(cmd) => {
            crate::init_logging("warn");
            backup(g, cmd, out)
        }
        Command::Policy(PolicyCmd::Check { dir }) => {
            let dir = match dir {
                Some(d) => d,
                None => data_dir(g)?.join(hub::POLICY_DIR),
            };
            let files = PolicyFiles::load(&dir)?;
            let schema = files.schema()?;
            let policy = files.policy()?;
            let purposes = files.purposes(&schema)?;
            let n_purposes = purposes.all().len();
            // organisation.toml and retention.toml parse as the records of processing use them.
            hub::ropa(&files)?;
            let n = schema.fields(domain::RecordKind::Subject).count();
            let n_gift = schema.fields(domain::RecordKind::Gift).count();
            let table: Vec<Value> = policy
                .table()
                .into_iter()
                .map(|(role, objects)| {
                    let allowed: serde_json::Map<String, Value> = objects
                        .into_iter()
                        .map(|(o, acts)| {
                            (
                                o.to_string(),
                                json!(acts.iter().map(|a| a.as_str()).collect::<Vec<_>>()),
                            )
                        })
                        .collect();
                    json!({"role": role, "allowed": allowed})
                })
                .collect();
            out.emit(
                &json!({"ok": true, "dir": dir, "subject_fields": n, "gift_fields": n_gift, "purposes": n_purposes,
                        "rules": policy.rule_count(), "decisions": table}),
                || {
                    let mut s = format!(
                        "{}: valid ({n} subject fields, {n_gift} gift fields, {n_purposes} purposes, {} rules; anything not listed is denied)\n",
                        dir.display(),
                        policy.rule_count()
                    );
                    for (role, objects) in policy.table() {
                        s.push_str(&format!("\n{role}\n"));
                        if objects.is_empty() {
                            s.push_str("  (nothing)\n");
                        }
                        for (o, acts) in objects {
                            let acts: Vec<&str> = acts.iter().map(|a| a.as_str()).collect();
                            s.push_str(&format!("  {o:<18} {}\n", acts.join(", ")));
                        }
                    }
                    s
                },
            );
            Ok(())
        }
    }
}

fn init(g: &crate::args::Global, args: &InitArgs, out: Output) -> anyhow::Result<()> {
    let dir = data_dir(g)?;
    let seal_to = match (&args.passphrase_file, &g.passphrase_file) {
        (Some(p), _) | (None, Some(p)) => {
            SealTo::Passphrase(hub::keys::read_passphrase_file(p).map_err(hub::Error::from)?)
        }
        (None, None) => SealTo::Identity(match &g.identity {
            Some(p) => p.clone(),
            None => {
                let p = default_identity_path(&dir);
                out.note(&format!(
                    "warning: no --identity given; the identity file goes to {} beside the data directory. \
                     In production keep it elsewhere (a separate disk or a secrets manager): whoever holds \
                     both can read everything.",
                    p.display()
                ));
                p
            }
        }),
    };
    let policies = match &args.policies {
        Some(p) => PolicyFiles::load(p)?,
        None if Path::new("policies/schema.toml").exists() => {
            PolicyFiles::load(Path::new("policies"))?
        }
        None => PolicyFiles::defaults(),
    };
    let store = match &args.store {
        Some(text) => hub::StoreChoice::parse(text).map_err(hub::Error::from)?,
        None => hub::StoreChoice::Sled,
    };
    let report = Hub::init_with(&dir, &seal_to, &policies, &store)?;
    out.emit(&json!(report), || {
        let mut s = format!(
            "Initialised {} (master secret sealed with age, {})",
            dir.display(),
            report.vault.seal.method
        );
        if let Some(p) = &report.vault.seal.identity_path {
            s.push_str(&format!(
                "\nIdentity file: {}{}",
                p.display(),
                if report.vault.identity_created {
                    " (new; back it up, it is the only way in)"
                } else {
                    ""
                }
            ));
        }
        s.push_str(&format!("\nPolicies: copied from {}", report.policies_from));
        s
    });
    Ok(())
}

/// `DIR.identity.txt` beside the data directory.
pub(crate) fn default_identity_path(dir: &Path) -> std::path::PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "steward".into());
    dir.with_file_name(format!("{name}.identity.txt"))
}

pub(crate) fn read_stdin_json() -> anyhow::Result<Value> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading JSON from stdin")?;
    if text.trim().is_empty() {
        return Err(usage(
            "empty_input",
            "expected a JSON object on stdin, got nothing",
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        usage(
            "malformed_json",
            format!(
                "stdin is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn subject(g: &crate::args::Global, cmd: SubjectCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        SubjectCmd::Add { kind } => {
            let mut value = read_stdin_json()?;
            if let (Some(k), Value::Object(m)) = (kind, &mut value) {
                m.insert("kind".into(), Value::String(k));
            }
            let input = NewSubjectInput::from_json(value)?;
            let hub = open_hub(g)?;
            let id = hub.create_subject(&actor_for(&hub, g)?, input)?;
            out.emit(&json!({"id": id}), || id.to_string());
        }
        SubjectCmd::Show { id, purpose } => {
            let id = parse_id(&id)?;
            let hub = open_hub(g)?;
            let view = hub.get_subject_for(&actor_for(&hub, g)?, &id, purpose.as_deref())?;
            out.emit(&json!(view), || {
                let mut s = format!(
                    "{} ({}, version {})",
                    view.id,
                    view.kind.as_str(),
                    view.version
                );
                for (k, v) in &view.fields {
                    let shown = match v {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    s.push_str(&format!("\n  {k:<26} {shown}"));
                }
                if !view.withheld.is_empty() {
                    s.push_str(&format!("\n  withheld: {}", view.withheld.join(", ")));
                }
                s
            });
        }
        SubjectCmd::Find {
            email,
            phone,
            external_id,
            family_name,
        } => {
            let (lookup, term) = match (email, phone, external_id, family_name) {
                (Some(e), _, _, _) => (Lookup::Email, e),
                (_, Some(p), _, _) => (Lookup::Phone, p),
                (_, _, Some(x), _) => (Lookup::ExternalId, x),
                (_, _, _, Some(n)) => (Lookup::FamilyName, n),
                _ => {
                    return Err(usage(
                        "missing_lookup",
                        "give --email, --phone, --external-id or --family-name",
                    ))
                }
            };
            let hub = open_hub(g)?;
            let ids = hub.find(&actor_for(&hub, g)?, lookup, &term)?;
            out.emit(&json!({"ids": ids}), || {
                if ids.is_empty() {
                    "no subject found".into()
                } else {
                    ids.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        SubjectCmd::Update { id, if_version } => {
            let id = parse_id(&id)?;
            let Value::Object(patch) = read_stdin_json()? else {
                return Err(usage(
                    "malformed_json",
                    "expected a JSON object of field names and values on stdin",
                ));
            };
            let hub = open_hub(g)?;
            let version = hub.update_subject(&actor_for(&hub, g)?, &id, patch, if_version)?;
            out.emit(&json!({"id": id, "version": version}), || {
                format!("{id} updated to version {version}")
            });
        }
        SubjectCmd::Erase { ids, yes } => {
            let ids = ids
                .iter()
                .map(|i| parse_id(i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            if !yes && std::io::stdin().is_terminal() {
                eprint!(
                    "Erase {} subject(s)? Their data keys are destroyed: this cannot be undone. Type yes to go on: ",
                    ids.len()
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if answer.trim() != "yes" {
                    return Err(usage(
                        "not_confirmed",
                        "nothing was erased (answer yes, or pass --yes)",
                    ));
                }
            }
            if let [id] = ids.as_slice() {
                let certificate = hub.erase_subject(&actor, id)?;
                out.emit(
                    &json!({"id": id, "erased": true, "certificate": certificate}),
                    || certificate.text(),
                );
            } else {
                let certificates = hub.erase_subjects(&actor, &ids)?;
                out.emit(
                    &json!({"erased": ids.len(), "certificates": certificates}),
                    || {
                        certificates
                            .iter()
                            .map(|c| c.text())
                            .collect::<Vec<_>>()
                            .join("\n\n")
                    },
                );
            }
        }
        SubjectCmd::Certificate { id } => {
            let id = parse_id(&id)?;
            let hub = open_hub(g)?;
            let c = hub.erasure_certificate(&actor_for(&hub, g)?, &id)?;
            out.emit(&json!(c), || c.text());
        }
        SubjectCmd::List { after, limit } => {
            // As the API does: a page is 1 to 1,000 ids, and a larger ask is refused rather
            // than cut short with no cursor to the rest.
            if !(1..=1000).contains(&limit) {
                return Err(usage(
                    "bad_limit",
                    "--limit is 1 to 1000; page on with --after NEXT",
                ));
            }
            let after = after.as_deref().map(parse_id).transpose()?;
            let hub = open_hub(g)?;
            let ids = hub.list_subjects(&actor_for(&hub, g)?, after.as_ref(), limit)?;
            let next = (ids.len() == limit).then(|| ids.last().copied()).flatten();
            out.emit(&json!({"items": ids, "next": next}), || {
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        SubjectCmd::Recipients { id, add, purpose } => {
            let id = parse_id(&id)?;
            let hub = open_hub(g)?;
            let actor = actor_for(&hub, g)?;
            let list = match add {
                Some(name) => hub.add_recipient(&actor, &id, &name, purpose.as_deref())?,
                None => hub.recipients(&actor, &id)?,
            };
            out.emit(&json!({"items": list}), || {
                list.iter()
                    .map(|r| {
                        format!(
                            "{}  since {}{}",
                            r.recipient,
                            r.since,
                            r.purpose
                                .as_deref()
                                .map(|p| format!("  ({p})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        SubjectCmd::Held { id } => {
            let id = parse_id(&id)?;
            let hub = open_hub(g)?;
            match hub.held_data(&actor_for(&hub, g)?, &id)? {
                Some((info, data)) => out.emit(&json!({"hold": info, "data": data}), || {
                    format!(
                        "held under {} until {} ({})\n{}",
                        info.hold,
                        info.until,
                        info.reason,
                        serde_json::to_string_pretty(&data).unwrap_or_default()
                    )
                }),
                None => out.emit(
                    &json!({"subject": id, "erased": true, "hold": null, "data": null}),
                    || format!("{id}: erased, nothing held"),
                ),
            }
        }
        SubjectCmd::Timeline { .. } => unreachable!("dispatched in run"),
        SubjectCmd::Gifts { id } => {
            let id = parse_id(&id)?;
            let hub = open_hub(g)?;
            let gifts = hub.list_gifts(&actor_for(&hub, g)?, &id)?;
            out.emit(&json!({"items": gifts}), || {
                gifts
                    .iter()
                    .map(|gift| {
                        let f = |k: &str| {
                            gift.fields
                                .get(k)
                                .and_then(|v| v.as_str())
                                .unwrap_or("-")
                                .to_string()
                        };
                        format!(
                            "{}  {}  {} {}  {}",
                            gift.id,
                            f("date"),
                            f("amount"),
                            f("currency"),
                            f("campaign")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

/// The first line of a password file, without its line ending.
fn read_password_file(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        anyhow::bail!(
            "the password file {} is empty: its first line is the password",
            path.display()
        );
    }
    Ok(line)
}

fn users(g: &crate::args::Global, cmd: UsersCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    let role = |r: &str| r.parse::<hub::Role>().map_err(hub::Error::from);
    match cmd {
        UsersCmd::Add {
            name,
            role: r,
            password_file,
        } => {
            let password = password_file
                .as_deref()
                .map(read_password_file)
                .transpose()?;
            let (p, token) =
                hub.add_user_with_password(&actor, &name, role(&r)?, password.as_deref())?;
            out.emit(
                &json!({"id": p.id, "name": p.name, "role": p.role, "token": token,
                        "console_password": p.has_password()}),
                || {
                    format!(
                        "User {} ({}) added{}. API token (shown once, keep it safe):\n{token}",
                        p.name,
                        p.role,
                        if p.has_password() {
                            ", with a console password"
                        } else {
                            ""
                        }
                    )
                },
            );
        }
        UsersCmd::Password {
            name,
            password_file,
        } => {
            let password = read_password_file(&password_file)?;
            let p = hub.set_password(&actor, &name, &password)?;
            out.emit(&json!(p), || {
                format!(
                    "Console password of {} set; their console sessions have ended",
                    p.name
                )
            });
        }
        UsersCmd::Token { name } => {
            let (p, token) = hub.reissue_token(&actor, &name)?;
            out.emit(
                &json!({"id": p.id, "name": p.name, "role": p.role, "token": token}),
                || {
                    format!(
                        "New token for {} (the old one no longer works):\n{token}",
                        p.name
                    )
                },
            );
        }
        UsersCmd::List => {
            let list = hub.list_users(&actor)?;
            out.emit(&json!({"items": list}), || {
                list.iter()
                    .map(|p| {
                        format!(
                            "{:<24} {:<13} {}{}",
                            p.name,
                            p.role,
                            p.created,
                            if p.revoked { "  (revoked)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UsersCmd::Revoke { name } => {
            let p = hub.revoke_user(&actor, &name)?;
            out.emit(&json!(p), || format!("{} revoked", p.name));
        }
        UsersCmd::Role { name, role: r } => {
            let p = hub.set_user_role(&actor, &name, role(&r)?)?;
            out.emit(&json!(p), || format!("{} is now {}", p.name, p.role));
        }
    }
    Ok(())
}

fn backup(g: &crate::args::Global, cmd: BackupCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { file } => {
            let dir = data_dir(g)?;
            let tmp = file.with_extension("partial");
            let result = (|| -> anyhow::Result<Value> {
                let mut f = std::fs::File::create(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                match open_hub(g) {
                    Ok(hub) => {
                        let report = hub.backup(&actor_for(&hub, g)?, &mut f)?;
                        Ok(json!(report))
                    }
                    Err(e) if matches!(e.downcast_ref::<hub::Error>(), Some(h) if h.kind() == hub::ErrorKind::InUse) =>
                    {
                        let url = owner_url(&dir).ok_or(e)?;
                        let token = g.token.clone().ok_or_else(|| {
                            usage("token_required", format!(
                                "a server at {url} holds {}; give --token (an admin's API token) to back up through it",
                                dir.display()
                            ))
                        })?;
                        let bytes =
                            crate::client::download(&url, "/v1/admin/backup", &token, &mut f)?;
                        Ok(json!({"bytes": bytes, "via": url}))
                    }
                    Err(e) => Err(e),
                }
            })();
            match result {
                Ok(report) => {
                    std::fs::rename(&tmp, &file)
                        .with_context(|| format!("writing {}", file.display()))?;
                    out.emit(&report, || format!("Backup written to {} (encrypted; restore needs the same identity or passphrase)", file.display()));
                    Ok(())
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        BackupCmd::Restore {
            file,
            journal,
            checkpoint,
        } => {
            let dir = data_dir(g)?;
            let mut f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let unlock = match (&g.identity, &g.passphrase_file) {
                (Some(i), _) => hub::keys::Unlock::Identity(i.clone()),
                (None, Some(p)) => hub::keys::Unlock::Passphrase(hub::keys::read_passphrase_file(p).map_err(hub::Error::from)?),
                (None, None) => {
                    return Err(usage(
                        "identity_required",
                        "give --identity FILE (or --passphrase-file FILE) that unseals the backed-up directory",
                    ))
                }
            };
            // What names the later erasures is read first: a missing or damaged one stops the
            // restore before anything is written.
            let later = match (&journal, &checkpoint) {
                (Some(j), _) => hub::LaterErasures::Journal(
                    std::fs::read_to_string(j)
                        .with_context(|| format!("reading {}", j.display()))?,
                ),
                (None, Some(c)) => {
                    let text = std::fs::read_to_string(c)
                        .with_context(|| format!("reading {}", c.display()))?;
                    let cp: hub::ExportedCheckpoint = serde_json::from_str(&text).map_err(|e| {
                        usage(
                            "bad_checkpoint",
                            format!("{} is not an exported checkpoint: {e}", c.display()),
                        )
                    })?;
                    hub::LaterErasures::Checkpoint(Box::new(cp))
                }
                (None, None) => hub::LaterErasures::None,
            };
            let mut reader = std::io::BufReader::new(&mut f);
            let report = Hub::restore_backup(&mut reader, &dir, &unlock, &later)?;
            out.emit(&json!(report), || {
                format!(
                    "Restored {} entries and {} data keys into {}",
                    report.entries,
                    report.key_slots,
                    dir.display()
                )
            });
            Ok(())
        }
    }
}

/// The URL of the server holding `dir`, from its owner note.
fn owner_url(dir: &Path) -> Option<String> {
    let note = std::fs::read_to_string(dir.join(hub::keys::layout::OWNER)).ok()?;
    let start = note.find("http://")?;
    let url: String = note[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')')
        .collect();
    Some(url)
}
