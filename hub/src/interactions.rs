//! Interactions: calls, emails, meetings, letters, events, notes and tasks with constituents.
//!
//! An interaction names its participants (one or more subjects); each keeps its own copy,
//! encrypted under its own key, so erasing one participant leaves the others theirs. The
//! fields are the `[[interaction_field]]`s of `schema.toml`, in three access groups:
//! `subject:interactions` (that it happened), `subject:interaction_notes` (what it was about)
//! and `subject:special` (free text that may be special-category data). A role reads only
//! the groups it may read; a write naming a group it may not write is refused whole.

use std::collections::BTreeMap;

use domain::{AccessGroup, FieldId, InteractionId, RecordKind, SubjectId, INTERACTION_RESERVED};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::Error;
use crate::subjects::invalid;
use crate::{Action, Actor, Hub};

/// Most participants one interaction may have.
pub const MAX_PARTICIPANTS: usize = 20;

/// Most interactions one call may add.
pub const MAX_INTERACTIONS: usize = 10_000;

/// An interaction to add: its participants and its fields by name.
#[derive(Debug, Clone)]
pub struct NewInteraction {
    /// The subjects it involved (at least one).
    pub participants: Vec<SubjectId>,
    /// Field names → JSON values (`kind` is required).
    pub fields: Map<String, Json>,
}

impl NewInteraction {
    /// Reads `{"participants": [...], "<field>": <value>, ...}`; `subject` (the path's or the
    /// command's subject) is added to the participants.
    pub fn from_json(value: Json, subject: Option<SubjectId>) -> Result<NewInteraction, Error> {
        let Json::Object(mut fields) = value else {
            return Err(Error::BadRequest(
                "expected a JSON object of interaction fields".into(),
            ));
        };
        let mut participants: Vec<SubjectId> = subject.into_iter().collect();
        match fields.remove("participants") {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                for item in items {
                    let id = item.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                        Error::BadRequest("`participants` must be a list of subject ids".into())
                    })?;
                    if !participants.contains(&id) {
                        participants.push(id);
                    }
                }
            }
            Some(_) => {
                return Err(Error::BadRequest(
                    "`participants` must be a list of subject ids".into(),
                ))
            }
        }
        for reserved in INTERACTION_RESERVED {
            if fields.contains_key(*reserved) {
                return Err(Error::BadRequest(format!(
                    "`{reserved}` cannot be set; it is managed by Steward"
                )));
            }
        }
        Ok(NewInteraction {
            participants,
            fields,
        })
    }
}

/// One interaction as a principal may see it (one participant's copy).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InteractionView {
    /// Its id.
    pub id: InteractionId,
    /// Version, for `If-Match`.
    pub version: u32,
    /// The subjects it involved, as last written (erased ones included, by id only).
    pub participants: Vec<SubjectId>,
    /// The fields the principal may read.
    pub fields: BTreeMap<String, Json>,
    /// Names of fields present but held back from this principal.
    pub withheld: Vec<String>,
}

impl Hub {
    fn interaction_groups(&self, actor: &Actor, action: Action) -> Vec<AccessGroup> {
        [
            AccessGroup::Interactions,
            AccessGroup::InteractionNotes,
            AccessGroup::Special,
        ]
        .into_iter()
        .filter(|g| self.allows_group(actor.principal.role, *g, action))
        .collect()
    }

    fn interaction_field(&self, f: FieldId) -> Option<&domain::FieldDef> {
        self.schema.field_by_id(RecordKind::Interaction, f)
    }

    /// Adds one interaction; returns its id.
    pub fn add_interaction(
        &self,
        actor: &Actor,
        input: NewInteraction,
    ) -> Result<InteractionId, Error> {
        Ok(self.add_interactions(actor, vec![input])?[0])
    }

    /// Adds interactions in one atomic batch (all or none) with one audit event. `kind` is
    /// required; `occurred_at` defaults to now, `staff` to the actor's name and, for a task,
    /// `status` to open.
    pub fn add_interactions(
        &self,
        actor: &Actor,
        inputs: Vec<NewInteraction>,
    ) -> Result<Vec<InteractionId>, Error> {
        self.audited(actor, "create.interaction", |trail| {
            self.require(actor, AccessGroup::Interactions.object(), Action::Write)?;
            if inputs.is_empty() {
                return Err(Error::BadRequest("no interaction given".into()));
            }
            if inputs.len() > MAX_INTERACTIONS {
                return Err(Error::BadRequest(format!(
                    "a batch holds at most {MAX_INTERACTIONS} interactions; this one has {}",
                    inputs.len()
                )));
            }
            let batch = inputs.len() > 1;
            let now = domain::format_timestamp(time::OffsetDateTime::now_utc().unix_timestamp());
            let mut items = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.into_iter().enumerate() {
                let item = batch.then_some(i);
                let at = |what: &str| {
                    item.map(|i| format!("item {i}: {what}"))
                        .unwrap_or_else(|| what.to_string())
                };
                for p in &input.participants {
                    trail.subject(p);
                }
                trail.fields(input.fields.keys());
                if input.participants.is_empty() {
                    return Err(Error::BadRequest(at(
                        "an interaction needs at least one participant (--subject, or `participants`)",
                    )));
                }
                if input.participants.len() > MAX_PARTICIPANTS {
                    return Err(Error::BadRequest(at(&format!(
                        "an interaction has at most {MAX_PARTICIPANTS} participants"
                    ))));
                }
                self.check_writable(actor, RecordKind::Interaction, input.fields.keys())?;
                let mut fields = input.fields;
                if fields.get("kind").is_none_or(Json::is_null) {
                    return Err(Error::Invalid {
                        item,
                        errors: vec![domain::FieldError {
                            field: "kind".into(),
                            problem: domain::FieldProblem::Empty,
                        }],
                    });
                }
                fields
                    .entry("occurred_at")
                    .or_insert_with(|| Json::String(now.clone()));
                fields
                    .entry("staff")
                    .or_insert_with(|| Json::String(actor.principal.name.clone()));
                if fields.get("kind").and_then(Json::as_str) == Some("task") {
                    fields
                        .entry("status")
                        .or_insert_with(|| Json::String("open".into()));
                }
                let parsed = self
                    .schema
                    .parse_object(RecordKind::Interaction, &fields)
                    .map_err(|e| invalid(e, item))?;
                // A participant that is not there (or was erased) is refused by the write,
                // which loads each one's key anyway.
                items.push((input.participants, parsed));
            }
            trail.count = Some(items.len() as u64);
            self.commit_audited(actor, "create.interaction", trail, |mut batch| {
                for (participants, _) in &items {
                    for p in participants {
                        crate::retention::touch(&mut batch, p);
                    }
                }
                Ok(self.vault.add_interactions_with(&items, batch)?)
            })
        })
    }

    fn interaction_view(&self, record: vault::InteractionRecord) -> InteractionView {
        let name = |f: FieldId| {
            self.interaction_field(f)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| format!("field_{}", f.0))
        };
        let mut withheld: Vec<String> = record.other_fields.iter().map(|f| name(*f)).collect();
        withheld.sort();
        InteractionView {
            id: record.id,
            version: record.version,
            participants: record.participants,
            fields: record
                .fields
                .iter()
                .map(|(f, v)| (name(*f), v.to_json()))
                .collect(),
            withheld,
        }
    }

    /// A subject's interactions (its own copies), oldest first, with the fields the role may
    /// read. With a purpose, only when that purpose may use interactions and the consent gate
    /// allows it for this subject.
    pub fn list_interactions(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        purpose: Option<&str>,
    ) -> Result<Vec<InteractionView>, Error> {
        self.audited(actor, "read.interaction", |trail| {
            trail.subject(subject);
            trail.purpose = purpose.map(str::to_string);
            self.require(actor, AccessGroup::Interactions.object(), Action::Read)?;
            if let Some(p) = purpose {
                self.interaction_purpose(subject, p)?;
            }
            let groups = self.interaction_groups(actor, Action::Read);
            let wanted = |f: FieldId| {
                self.interaction_field(f)
                    .is_some_and(|d| groups.contains(&d.group))
            };
            let records = self.vault.list_interactions(subject, &wanted)?;
            let views: Vec<InteractionView> = records
                .into_iter()
                .map(|r| self.interaction_view(r))
                .collect();
            for v in &views {
                trail.fields(v.fields.keys());
            }
            trail.fields.sort();
            trail.fields.dedup();
            trail.count = Some(views.len() as u64);
            Ok(views)
        })
    }

    /// Refuses unless `purpose` lists interactions and the gate allows it for `subject`.
    fn interaction_purpose(&self, subject: &SubjectId, purpose: &str) -> Result<(), Error> {
        let p = self.purpose(purpose)?;
        if !p.interactions {
            return Err(Error::ConsentRequired {
                purpose: purpose.to_string(),
                reason: "purpose_excludes_interactions".into(),
            });
        }
        let decision = self.gate(subject, purpose)?;
        if !decision.allowed {
            return Err(Error::ConsentRequired {
                purpose: purpose.to_string(),
                reason: decision.reason,
            });
        }
        Ok(())
    }

    /// One interaction by id: the copy of its first remaining participant.
    pub fn get_interaction(
        &self,
        actor: &Actor,
        id: &InteractionId,
    ) -> Result<InteractionView, Error> {
        self.audited(actor, "read.interaction", |trail| {
            self.require(actor, AccessGroup::Interactions.object(), Action::Read)?;
            let holders = self.vault.interaction_holders(id)?;
            let Some(holder) = holders.first() else {
                return Err(self.no_live_copy(id)?);
            };
            for h in &holders {
                trail.subject(h);
            }
            let groups = self.interaction_groups(actor, Action::Read);
            let wanted = |f: FieldId| {
                self.interaction_field(f)
                    .is_some_and(|d| groups.contains(&d.group))
            };
            let record = self.vault.read_interaction(holder, id, &wanted)?;
            let view = self.interaction_view(record);
            trail.fields(view.fields.keys());
            Ok(view)
        })
    }

    /// Why an interaction has no live participant's copy: none at all, or only in records
    /// merged into another subject (read there, unchanged until the merge is undone).
    fn no_live_copy(&self, id: &InteractionId) -> Result<Error, Error> {
        Ok(if self.vault.interaction_copies(id)?.is_empty() {
            Error::Missing(format!("interaction {id}"))
        } else {
            Error::Conflict(format!(
                "interaction {id} belongs only to a record merged into another subject: it is listed with that subject's interactions, as it was at the merge, and changes only after the merge is undone"
            ))
        })
    }

    /// Applies a patch (`null` removes a field) to every remaining participant's copy;
    /// all or nothing. Returns the new version.
    pub fn update_interaction(
        &self,
        actor: &Actor,
        id: &InteractionId,
        patch: Map<String, Json>,
        if_version: Option<u32>,
    ) -> Result<u32, Error> {
        self.audited(actor, "update.interaction", |trail| {
            trail.fields(patch.keys());
            self.require(actor, AccessGroup::Interactions.object(), Action::Write)?;
            if patch.is_empty() {
                return Err(Error::BadRequest("the patch names no field".into()));
            }
            for reserved in INTERACTION_RESERVED {
                if patch.contains_key(*reserved) {
                    return Err(Error::BadRequest(format!(
                        "`{reserved}` cannot be changed; it is managed by Steward"
                    )));
                }
            }
            if patch.get("kind").is_some_and(Json::is_null) {
                return Err(Error::BadRequest(
                    "`kind` cannot be removed; change it instead".into(),
                ));
            }
            self.check_writable(actor, RecordKind::Interaction, patch.keys())?;
            let parsed = self
                .schema
                .parse_patch(RecordKind::Interaction, &patch)
                .map_err(|e| invalid(e, None))?;
            let holders = self.vault.interaction_holders(id)?;
            if holders.is_empty() {
                return Err(self.no_live_copy(id)?);
            }
            for h in &holders {
                trail.subject(h);
            }
            self.commit_audited(actor, "update.interaction", trail, |batch| {
                Ok(self
                    .vault
                    .update_interaction_with(id, &parsed, if_version, batch)?)
            })
        })
    }

    /// Marks a task done now, with an optional outcome. Returns the new version.
    pub fn complete_interaction(
        &self,
        actor: &Actor,
        id: &InteractionId,
        outcome: Option<String>,
        if_version: Option<u32>,
    ) -> Result<u32, Error> {
        let mut patch = Map::new();
        patch.insert("status".into(), Json::String("done".into()));
        patch.insert(
            "completed_at".into(),
            Json::String(domain::format_timestamp(
                time::OffsetDateTime::now_utc().unix_timestamp(),
            )),
        );
        if let Some(o) = outcome {
            patch.insert("outcome".into(), Json::String(o));
        }
        self.update_interaction(actor, id, patch, if_version)
    }
}

/// A row an activity import refused: its number, the column, a code (never the value).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusedActivity {
    /// Row number as a spreadsheet shows it.
    pub row: u64,
    /// The column or interaction field at fault, when one is.
    pub column: Option<String>,
    /// `unknown_contact` (none, or erased), `ambiguous_contact`, `no_contact`, `invalid_date`,
    /// `invalid_number`, `invalid_field`, or a CSV problem (`ragged_row`, `invalid_text`...).
    pub code: String,
}

/// What an activity import did (or, dry, would do).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActivityImport {
    /// civicrm or npsp.
    pub profile: &'static str,
    /// True when nothing was written.
    pub dry_run: bool,
    /// Data rows read.
    pub rows: u64,
    /// Interactions added (or that would be).
    pub added: u64,
    /// Rows whose activity id a participant already has (an import run again).
    pub already_present: u64,
    /// Rows whose activity type had no counterpart and became a note.
    pub kinds_defaulted: u64,
    /// Columns nothing reads.
    pub unmapped_columns: Vec<String>,
    /// Rows refused, with why.
    pub refused: Vec<RefusedActivity>,
}

/// Rows per write batch of an activity import.
const ACTIVITY_BATCH: usize = 1000;

impl Hub {
    /// Imports CiviCRM activities or NPSP tasks as interactions, linked to subjects by the
    /// external id their contacts were imported with. A contact id that matches no subject,
    /// or more than one, refuses the row (it is never guessed); an activity a participant
    /// already has (same activity id) is skipped, so a file can be imported again. Good rows
    /// are written in batches, each with its audit event; refused rows are reported by
    /// number and code.
    pub fn import_interactions(
        &self,
        actor: &Actor,
        input: impl std::io::Read,
        profile: Option<&str>,
        dry_run: bool,
    ) -> Result<ActivityImport, Error> {
        use importers::activities::{ActivityMapping, ActivityProfile};
        self.audited(actor, "import.interactions", |trail| {
            self.require(actor, "imports", Action::Import)?;
            self.require(actor, AccessGroup::Interactions.object(), Action::Write)?;
            let reader = importers::Reader::new(input, None)
                .map_err(|e| Error::BadRequest(format!("the file cannot be read: {e}")))?;
            let header = reader.header().to_vec();
            let profile = match profile {
                Some(p) => ActivityProfile::parse(p).ok_or_else(|| {
                    Error::BadRequest(format!("profile: \"{p}\" is not civicrm or npsp"))
                })?,
                None => ActivityProfile::detect(&header).ok_or_else(|| {
                    Error::BadRequest(
                        "profile: the columns are neither CiviCRM activities nor NPSP tasks; give --profile".into(),
                    )
                })?,
            };
            let mapping = ActivityMapping::new(profile, &header).map_err(Error::BadRequest)?;
            let ext_field = self
                .schema
                .field(RecordKind::Interaction, "external_id")
                .map(|d| d.id);
            let mut report = ActivityImport {
                profile: match profile {
                    ActivityProfile::CiviCrm => "civicrm",
                    ActivityProfile::Npsp => "npsp",
                },
                dry_run,
                rows: 0,
                added: 0,
                already_present: 0,
                kinds_defaulted: 0,
                unmapped_columns: mapping
                    .unmapped(&header)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                refused: Vec::new(),
            };
            let mut known: std::collections::HashMap<SubjectId, std::collections::HashSet<String>> =
                std::collections::HashMap::new();
            let mut pending: Vec<vault::NewInteractionCopy> = Vec::new();
            let refuse = |report: &mut ActivityImport, row: u64, column: Option<String>, code: &str| {
                report.refused.push(RefusedActivity {
                    row,
                    column,
                    code: code.to_string(),
                });
            };
            let flush = |pending: &mut Vec<vault::NewInteractionCopy>,
                         trail: &mut crate::trail::Trail|
             -> Result<(), Error> {
                if pending.is_empty() || dry_run {
                    pending.clear();
                    return Ok(());
                }
                trail.count = Some(pending.len() as u64);
                let items = std::mem::take(pending);
                self.commit_audited(actor, "import.interactions", trail, |mut batch| {
                    for (participants, _) in &items {
                        for p in participants {
                            crate::retention::touch(&mut batch, p);
                        }
                    }
                    Ok(self.vault.add_interactions_with(&items, batch)?)
                })?;
                Ok(())
            };
            for row in reader {
                report.rows += 1;
                let row = match row {
                    Ok(r) => r,
                    Err(e) => {
                        refuse(&mut report, e.row, e.column, &e.code);
                        continue;
                    }
                };
                let read = match mapping.read(&header, &row.cells) {
                    Ok(r) => r,
                    Err(p) => {
                        refuse(&mut report, row.number, Some(p.column), p.code);
                        continue;
                    }
                };
                let mut participants = Vec::new();
                let mut problem = None;
                for c in &read.contacts {
                    let Ok(term) = domain::normalise_external_id(c) else {
                        problem = Some("unknown_contact");
                        break;
                    };
                    let found = self.vault.lookup(domain::IndexKind::ExternalId, &term)?;
                    match found.as_slice() {
                        [one] => {
                            if !participants.contains(one) {
                                participants.push(*one);
                            }
                        }
                        [] => {
                            problem = Some("unknown_contact");
                            break;
                        }
                        _ => {
                            problem = Some("ambiguous_contact");
                            break;
                        }
                    }
                }
                if let Some(code) = problem {
                    refuse(&mut report, row.number, None, code);
                    continue;
                }
                if participants.len() > MAX_PARTICIPANTS {
                    refuse(&mut report, row.number, None, "too_many_contacts");
                    continue;
                }
                self.check_writable(actor, RecordKind::Interaction, read.fields.keys())?;
                let parsed = match self.schema.parse_object(RecordKind::Interaction, &read.fields) {
                    Ok(p) => p,
                    Err(domain::Error::Fields(errors)) => {
                        refuse(
                            &mut report,
                            row.number,
                            errors.first().map(|e| e.field.clone()),
                            "invalid_field",
                        );
                        continue;
                    }
                    Err(e) => return Err(Error::Policy(e.to_string())),
                };
                // Already there: any participant holds this activity id.
                if let (Some(f), Some(serde_json::Value::String(ext))) =
                    (ext_field, read.fields.get("external_id"))
                {
                    let ext = domain::normalise_external_id(ext).unwrap_or_else(|_| ext.clone());
                    let mut present = false;
                    for p in &participants {
                        if !known.contains_key(p) {
                            let ids = self
                                .vault
                                .list_interactions(p, &|x| x == f)?
                                .into_iter()
                                .filter_map(|i| {
                                    i.fields.into_iter().find(|(x, _)| *x == f).and_then(|(_, v)| {
                                        v.to_json().as_str().map(str::to_string)
                                    })
                                })
                                .collect();
                            known.insert(*p, ids);
                        }
                        present |= known[p].contains(&ext);
                    }
                    if present {
                        report.already_present += 1;
                        continue;
                    }
                    for p in &participants {
                        known.get_mut(p).expect("loaded above").insert(ext.clone());
                    }
                }
                if read.kind_defaulted {
                    report.kinds_defaulted += 1;
                }
                for p in &participants {
                    trail.subject(p);
                }
                pending.push((participants, parsed));
                report.added += 1;
                if pending.len() >= ACTIVITY_BATCH {
                    flush(&mut pending, trail)?;
                    trail.subjects.clear();
                }
            }
            flush(&mut pending, trail)?;
            trail.count = Some(report.added);
            Ok(report)
        })
    }
}
