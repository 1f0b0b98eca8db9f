//! `steward recipients ...` (the register, and who received a person's data) and
//! `steward notify ...` (Art. 19 notifications a person acts on).

use anyhow::Context;
use hub::{Notification, RecipientInput, RecipientView, Registered};
use serde_json::json;

use crate::args::{Global, NotifyCmd, RecipientArgs, RecipientsCmd};
use crate::output::Output;
use crate::{actor_for, open_hub, parse_id};

fn input(a: RecipientArgs) -> anyhow::Result<RecipientInput> {
    let secret = match &a.secret_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the secret file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok(RecipientInput {
        role: a.role,
        purposes: a.purposes,
        groups: a.groups,
        legal_basis: a.legal_basis,
        contract: a.contract,
        country: a.country,
        endpoint: a.endpoint,
        secret,
        rotate_secret: false,
        allow_loopback: a.allow_loopback.then_some(true),
        allow_private: a.allow_private.then_some(true),
    })
}

fn describe(r: &RecipientView) -> String {
    let or_any = |v: &[String], any: &str| {
        if v.is_empty() {
            any.to_string()
        } else {
            v.join(", ")
        }
    };
    let mut s = format!(
        "{}  ({}{})\n  purposes: {}\n  field groups: {}\n",
        r.name,
        r.role,
        r.disabled
            .as_ref()
            .map(|d| format!(", DISABLED: {}", d.reason))
            .unwrap_or_default(),
        or_any(&r.purposes, "any purpose (limit with --purposes)"),
        or_any(&r.groups, "those of each purpose (limit with --groups)"),
    );
    if let Some(b) = &r.legal_basis {
        s.push_str(&format!("  legal basis: {b}\n"));
    }
    if let Some(c) = &r.contract {
        s.push_str(&format!("  contract: {c}\n"));
    }
    if let Some(c) = &r.country {
        s.push_str(&format!(
            "  country: {c}{}\n",
            if r.transfer_outside_uk_eea {
                " (outside the UK/EEA: a restricted transfer, needs adequacy or safeguards)"
            } else {
                ""
            }
        ));
    }
    match &r.endpoint {
        Some(e) => s.push_str(&format!("  webhook: {e} ({} signing secret(s))\n", r.signing_secrets)),
        None => s.push_str("  webhook: none (its notifications are tasks for a person: `steward notify pending`)\n"),
    }
    s
}

fn registered(out: &Output, r: &Registered, verb: &str) {
    out.emit(&json!(r), || {
        let mut s = format!("{verb} {}\n{}", r.recipient.name, describe(&r.recipient));
        if let Some(secret) = &r.secret {
            s.push_str(&format!(
                "\nSigning secret (shown this once; give it to the recipient to verify webhooks):\n{secret}\n"
            ));
        }
        s.trim_end().to_string()
    });
}

pub(crate) fn recipients(g: &Global, cmd: RecipientsCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        RecipientsCmd::Add { name, fields } => {
            let r = hub.add_registered_recipient(&actor, &name, input(fields)?)?;
            registered(&out, &r, "Registered");
        }
        RecipientsCmd::Update {
            name,
            fields,
            rotate_secret,
            deny_loopback,
            deny_private,
        } => {
            let mut i = input(fields)?;
            i.rotate_secret = rotate_secret;
            if deny_loopback {
                i.allow_loopback = Some(false);
            }
            if deny_private {
                i.allow_private = Some(false);
            }
            let r = hub.update_registered_recipient(&actor, &name, i)?;
            registered(&out, &r, "Updated");
        }
        RecipientsCmd::List => {
            let list = hub.list_registered_recipients(&actor)?;
            out.emit(&json!({"items": list}), || {
                if list.is_empty() {
                    "No recipient is registered (`steward recipients add NAME`).".into()
                } else {
                    list.iter()
                        .map(describe)
                        .collect::<Vec<_>>()
                        .join("\n")
                        .trim_end()
                        .to_string()
                }
            });
        }
        RecipientsCmd::Show { name } => {
            let r = hub.show_registered_recipient(&actor, &name)?;
            out.emit(&json!(r), || describe(&r).trim_end().to_string());
        }
        RecipientsCmd::Disable { name, reason } => {
            let r = hub.set_recipient_disabled(&actor, &name, Some(&reason))?;
            out.emit(&json!(r), || describe(&r).trim_end().to_string());
        }
        RecipientsCmd::Enable { name } => {
            let r = hub.set_recipient_disabled(&actor, &name, None)?;
            out.emit(&json!(r), || describe(&r).trim_end().to_string());
        }
        RecipientsCmd::Of { id } => {
            let id = parse_id(&id)?;
            let list = hub.recipients(&actor, &id)?;
            out.emit(&json!({"subject": id, "items": list}), || {
                if list.is_empty() {
                    return format!("No recipient is recorded for {id}.");
                }
                list.iter()
                    .map(|r| {
                        format!(
                            "{}  for {}  since {}{}{}",
                            r.recipient,
                            r.purpose.as_deref().unwrap_or("-"),
                            r.since,
                            r.last
                                .as_deref()
                                .map(|l| format!(", last {l}"))
                                .unwrap_or_default(),
                            if r.groups.is_empty() {
                                String::new()
                            } else {
                                format!("  ({})", r.groups.join(", "))
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

fn notification_line(n: &Notification) -> String {
    format!(
        "{}  {}  {}  {} ({})  their ref {}  {}{}",
        n.id,
        n.created,
        n.recipient,
        n.event,
        n.groups.join(", "),
        n.reference,
        n.state,
        n.attempts
            .last()
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(" (last attempt: {e})"))
            .unwrap_or_default()
    )
}

pub(crate) fn notify(g: &Global, cmd: NotifyCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        NotifyCmd::Pending { all } => {
            let list = hub.notifications_pending(&actor, all)?;
            out.emit(&json!({"items": list}), || {
                if list.is_empty() {
                    "Nothing to do: no recipient waits to be told of a change.".into()
                } else {
                    list.iter()
                        .map(notification_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        NotifyCmd::Done { id, note } => {
            let n = hub.complete_notification(&actor, &id, &note)?;
            out.emit(&json!(n), || format!("Done: {}", notification_line(&n)));
        }
        NotifyCmd::Deliver => {
            let r = hub.deliver_now(&actor)?;
            out.emit(&json!(r), || {
                format!(
                    "{} delivered, {} to try again later, {} now tasks for a person",
                    r.delivered, r.retrying, r.to_person
                )
            });
        }
    }
    Ok(())
}
