//! A subject's timeline: gifts, interactions, consent events, subject-rights requests and
//! merged records in time order, each kind only when the caller's role may see it. Each
//! kind is read through its own use case, so each read is authorised and audited as it is
//! everywhere else.

use std::collections::BTreeMap;

use domain::{AccessGroup, SubjectId};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::Error;
use crate::{Action, Actor, Hub};

/// One entry of a timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineItem {
    /// When: a date (`YYYY-MM-DD`) or a time (RFC 3339, UTC); sorts as text.
    pub at: String,
    /// gift, interaction, consent, request or merge.
    pub kind: &'static str,
    /// The id of the gift, interaction, request or merged record; the ledger sequence of a
    /// consent event.
    pub id: String,
    /// One line for people, from codes and the fields the role may read.
    pub title: String,
    /// The item's fields the role may read.
    pub fields: BTreeMap<String, Json>,
}

/// A subject's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timeline {
    /// The subject.
    pub subject: SubjectId,
    /// Oldest first.
    pub items: Vec<TimelineItem>,
    /// Kinds left out because the role may not see them.
    pub omitted: Vec<&'static str>,
}

fn text(fields: &BTreeMap<String, Json>, name: &str) -> String {
    match fields.get(name) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Hub {
    /// The subject's timeline, oldest first. A role that may read none of its kinds is
    /// refused (and learns nothing of the subject).
    pub fn timeline(&self, actor: &Actor, id: &SubjectId) -> Result<Timeline, Error> {
        let role = actor.principal.role;
        let gifts = self.allows_group(role, AccessGroup::Financial, Action::Read);
        let interactions = self.allows_group(role, AccessGroup::Interactions, Action::Read);
        let consent = self.allows(role, "consent", Action::Read);
        let requests = self.allows(role, "requests", Action::Read);
        let merges = self.allows_group(role, AccessGroup::Identity, Action::Read);
        if !(gifts || interactions || consent || requests) {
            // The refusal is audited like any other.
            return self.audited(actor, "read.subject", |trail| {
                trail.subject(id);
                Err(Error::Forbidden {
                    action: "read",
                    object: "subject".into(),
                    fields: Vec::new(),
                })
            });
        }
        let mut items = Vec::new();
        let mut omitted = Vec::new();
        if gifts {
            for g in self.list_gifts(actor, id)? {
                let title = format!(
                    "Gift of {} {}",
                    text(&g.fields, "currency"),
                    text(&g.fields, "amount")
                );
                items.push(TimelineItem {
                    at: text(&g.fields, "date"),
                    kind: "gift",
                    id: g.id.to_string(),
                    title: title.trim().to_string(),
                    fields: g.fields,
                });
            }
        } else {
            omitted.push("gift");
        }
        if interactions {
            for i in self.list_interactions(actor, id, None)? {
                let mut title = text(&i.fields, "kind");
                let direction = text(&i.fields, "direction");
                if !direction.is_empty() {
                    title = format!("{title} ({direction})");
                }
                let summary = text(&i.fields, "summary");
                if !summary.is_empty() {
                    title = format!("{title}: {summary}");
                }
                items.push(TimelineItem {
                    at: text(&i.fields, "occurred_at"),
                    kind: "interaction",
                    id: i.id.to_string(),
                    title,
                    fields: i.fields,
                });
            }
        } else {
            omitted.push("interaction");
        }
        if consent {
            for e in self.consent_history(actor, id)? {
                items.push(TimelineItem {
                    at: e.time.clone(),
                    kind: "consent",
                    id: e.seq.to_string(),
                    title: format!("Consent {} for {}", e.event.as_str(), e.purpose),
                    fields: BTreeMap::new(),
                });
            }
        } else {
            omitted.push("consent");
        }
        if requests {
            for r in self
                .list_requests(actor, None)?
                .into_iter()
                .filter(|r| r.subject == *id)
            {
                items.push(TimelineItem {
                    at: r.received.clone(),
                    kind: "request",
                    id: r.id.to_string(),
                    title: format!(
                        "{} request received ({}), now {}",
                        r.kind, r.jurisdiction, r.state
                    ),
                    fields: BTreeMap::new(),
                });
            }
        } else {
            omitted.push("request");
        }
        if merges {
            for gone in self.merged_into(actor, id)? {
                items.push(TimelineItem {
                    at: domain::format_timestamp((gone.unix_ms() / 1000) as i64),
                    kind: "merge",
                    id: gone.to_string(),
                    title: format!("Record {gone} (created then) merged into this one"),
                    fields: BTreeMap::new(),
                });
            }
        } else {
            omitted.push("merge");
        }
        items.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(Timeline {
            subject: *id,
            items,
            omitted,
        })
    }
}
