//! Subject and gift use cases.

use std::collections::BTreeMap;

use domain::{
    normalise_email, normalise_external_id, normalise_phone, AccessGroup, FieldError, FieldId,
    GiftId, IndexKind, RecordKind, SubjectId, SubjectKind, RESERVED_NAMES,
};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use vault::NewSubject;

use crate::error::Error;
use crate::{Action, Actor, Hub};

/// Largest batch accepted by [`Hub::create_subjects`].
pub const MAX_BATCH: usize = 10_000;

/// Which blind index to look a subject up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Any email field.
    Email,
    /// Any phone field.
    Phone,
    /// The legacy CRM id.
    ExternalId,
    /// The family name (surname), by its search key: case, accents, spaces, hyphens and
    /// apostrophes set aside.
    FamilyName,
}

impl Lookup {
    fn index(self) -> IndexKind {
        match self {
            Lookup::Email => IndexKind::Email,
            Lookup::Phone => IndexKind::Phone,
            Lookup::ExternalId => IndexKind::ExternalId,
            Lookup::FamilyName => IndexKind::Name,
        }
    }

    fn group(self) -> AccessGroup {
        match self {
            Lookup::Email | Lookup::Phone => AccessGroup::Contact,
            Lookup::ExternalId | Lookup::FamilyName => AccessGroup::Identity,
        }
    }

    /// The parameter's name, as in `?email=`.
    pub fn param(self) -> &'static str {
        match self {
            Lookup::Email => "email",
            Lookup::Phone => "phone",
            Lookup::ExternalId => "external_id",
            Lookup::FamilyName => "family_name",
        }
    }
}

/// One person found by name: what a list of namesakes needs to tell them apart.
#[derive(Debug, Clone, Serialize)]
pub struct NameHit {
    /// The subject.
    pub id: SubjectId,
    /// Given and family name, as stored.
    pub name: String,
    /// Town, if the role may read contact details and one is stored.
    pub city: Option<String>,
}

/// Most people a name search returns.
pub const MAX_NAME_HITS: usize = 50;

/// A subject to create, as received: field names → JSON values.
#[derive(Debug, Clone)]
pub struct NewSubjectInput {
    /// Individual, household or organisation.
    pub kind: SubjectKind,
    /// Profile fields by name.
    pub fields: Map<String, Json>,
    /// Gifts, each fields by name.
    pub gifts: Vec<Map<String, Json>>,
}

impl NewSubjectInput {
    /// Reads `{"kind": ..., "gifts": [...], "<field>": <value>, ...}`.
    pub fn from_json(value: Json) -> Result<NewSubjectInput, Error> {
        let Json::Object(mut fields) = value else {
            return Err(Error::BadRequest(
                "expected a JSON object of field names and values".into(),
            ));
        };
        let kind = match fields.remove("kind") {
            None | Some(Json::Null) => SubjectKind::Individual,
            Some(Json::String(s)) => SubjectKind::parse(&s).ok_or_else(|| {
                Error::BadRequest("`kind` must be individual, household or organisation".into())
            })?,
            Some(_) => return Err(Error::BadRequest("`kind` must be a string".into())),
        };
        let gifts = match fields.remove("gifts") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items
                .into_iter()
                .map(|g| match g {
                    Json::Object(m) => Ok(m),
                    _ => Err(Error::BadRequest("each gift must be a JSON object".into())),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Error::BadRequest("`gifts` must be a list".into())),
        };
        for reserved in RESERVED_NAMES {
            if fields.contains_key(*reserved) {
                return Err(Error::BadRequest(format!(
                    "`{reserved}` cannot be set; it is managed by Steward"
                )));
            }
        }
        Ok(NewSubjectInput {
            kind,
            fields,
            gifts,
        })
    }
}

/// A subject as one principal may see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubjectView {
    /// Its id.
    pub id: SubjectId,
    /// Individual, household or organisation.
    pub kind: SubjectKind,
    /// Version, for optimistic concurrency (`If-Match`).
    pub version: u32,
    /// The fields the principal may read.
    pub fields: BTreeMap<String, Json>,
    /// Names of fields present but held back from this principal (never their values).
    pub withheld: Vec<String>,
    /// Special-category fields the principal may read but did not ask to reveal (the
    /// console's reads; never their values). Empty for API and CLI reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<String>,
}

/// The reasons a console user may give for revealing special-category fields: codes, so that
/// the audit event records why without free text that could hold a personal value.
pub const REVEAL_REASONS: &[(&str, &str)] = &[
    ("subject-request", "Answering a subject-rights request"),
    ("care", "Providing a service the person asked for"),
    ("safeguarding", "Safeguarding or vital interests"),
    (
        "correction",
        "Correcting the record at the person's request",
    ),
];

/// How a read treats the special-category fields a role may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special<'a> {
    /// Decrypted like every other readable field (API and CLI reads).
    Include,
    /// Left encrypted and named in [`SubjectView::hidden`] (a console page, until asked).
    Hide,
    /// Decrypted for one of [`REVEAL_REASONS`], which the audit event records.
    Reveal(&'a str),
}

/// A gift.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GiftView {
    /// Its id.
    pub id: GiftId,
    /// Its fields.
    pub fields: BTreeMap<String, Json>,
}

impl Hub {
    /// Refuses, naming them, every field the actor may not write.
    pub(crate) fn check_writable<'a>(
        &self,
        actor: &Actor,
        record: RecordKind,
        names: impl Iterator<Item = &'a String>,
    ) -> Result<(), Error> {
        let mut refused = Vec::new();
        let mut object = String::new();
        for name in names {
            // Unknown names are reported by validation, with the other input errors.
            let Some(def) = self.schema.field(record, name) else {
                continue;
            };
            if !self.allows_group(actor.principal.role, def.group, Action::Write) {
                if object.is_empty() {
                    object = def.group.object().to_string();
                }
                refused.push(name.clone());
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            refused.sort();
            refused.dedup();
            Err(Error::Forbidden {
                action: "write",
                object,
                fields: refused,
            })
        }
    }

    fn parse(
        &self,
        record: RecordKind,
        fields: &Map<String, Json>,
        item: Option<usize>,
    ) -> Result<Vec<(FieldId, domain::Value)>, Error> {
        self.schema
            .parse_object(record, fields)
            .map_err(|e| invalid(e, item))
    }

    /// Creates subjects in one atomic batch (all or none), with its audit event. Returns
    /// their ids in order.
    pub fn create_subjects(
        &self,
        actor: &Actor,
        inputs: Vec<NewSubjectInput>,
    ) -> Result<Vec<SubjectId>, Error> {
        self.audited(actor, "create.subject", |trail| {
            for input in &inputs {
                trail.fields(input.fields.keys());
            }
            if inputs.is_empty() {
                return Err(Error::BadRequest("the batch is empty".into()));
            }
            if inputs.len() > MAX_BATCH {
                return Err(Error::BadRequest(format!(
                    "a batch holds at most {MAX_BATCH} subjects; this one has {}",
                    inputs.len()
                )));
            }
            let batch = inputs.len() > 1;
            let mut items = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                self.check_writable(actor, RecordKind::Subject, input.fields.keys())?;
                for gift in &input.gifts {
                    self.check_writable(actor, RecordKind::Gift, gift.keys())?;
                }
                let item = batch.then_some(i);
                let fields = self.parse(RecordKind::Subject, &input.fields, item)?;
                if fields.is_empty() {
                    return Err(Error::BadRequest(format!(
                        "{}a subject needs at least one field",
                        item.map(|i| format!("item {i}: ")).unwrap_or_default()
                    )));
                }
                let gifts = input
                    .gifts
                    .iter()
                    .map(|g| self.parse(RecordKind::Gift, g, item))
                    .collect::<Result<Vec<_>, _>>()?;
                items.push(NewSubject {
                    kind: input.kind,
                    fields,
                    gifts,
                });
            }
            let ids = self.vault.new_subject_ids(items.len())?;
            for id in &ids {
                trail.subject(id);
            }
            // People who were erased at their request are not re-added to marketing: a new
            // record with their email or phone gets an objection to direct marketing, written
            // with the subjects (an import does the same).
            let mut objections = vault::Batch::new();
            self.stage_suppression(
                ids.iter()
                    .zip(&items)
                    .map(|(id, item)| (id, item.fields.as_slice())),
                &|k, t| Ok(self.vault.is_suppressed(k, t)?),
                &mut std::collections::HashMap::new(),
                &mut objections,
            )?;
            // No activity entry: a new subject's last activity is its creation, in its id.
            let ids = self.commit_audited(actor, "create.subject", trail, |mut batch| {
                batch.extend(objections);
                Ok(self.vault.create_subjects_with(&items, Some(&ids), batch)?)
            })?;
            Ok(ids)
        })
    }

    /// The email and phone terms among a subject's fields: what the suppression list holds.
    pub(crate) fn contact_terms<'f>(
        &self,
        fields: &'f [(FieldId, domain::Value)],
    ) -> impl Iterator<Item = (IndexKind, &'f str)> + 'f {
        let schema = self.schema.clone();
        fields.iter().filter_map(move |(f, v)| {
            match schema.field_by_id(RecordKind::Subject, *f).map(|d| d.index) {
                Some(k @ (IndexKind::Email | IndexKind::Phone)) => Some((k, v.index_term()?)),
                _ => None,
            }
        })
    }

    /// Creates one subject.
    pub fn create_subject(
        &self,
        actor: &Actor,
        input: NewSubjectInput,
    ) -> Result<SubjectId, Error> {
        Ok(self.create_subjects(actor, vec![input])?[0])
    }

    fn readable_groups(&self, actor: &Actor) -> Vec<AccessGroup> {
        [
            AccessGroup::Identity,
            AccessGroup::Contact,
            AccessGroup::Financial,
            AccessGroup::Special,
            AccessGroup::Profile,
        ]
        .into_iter()
        .filter(|g| self.allows_group(actor.principal.role, *g, Action::Read))
        .collect()
    }

    fn field_name(&self, record: RecordKind, f: FieldId) -> String {
        self.schema
            .field_by_id(record, f)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| format!("field_{}", f.0))
    }

    /// Reads a subject, decrypting only the fields the actor's role may read; the others are
    /// named in `withheld`. The read is audited before anything is returned.
    pub fn get_subject(&self, actor: &Actor, id: &SubjectId) -> Result<SubjectView, Error> {
        self.get_subject_for(actor, id, None)
    }

    /// Reads a subject for a processing purpose: only if the consent gate allows that purpose
    /// now (else `consent_required`), and only the purpose's fields (that the role may read).
    pub fn get_subject_for(
        &self,
        actor: &Actor,
        id: &SubjectId,
        purpose: Option<&str>,
    ) -> Result<SubjectView, Error> {
        self.read_subject(actor, id, purpose, Special::Include)
    }

    /// Reads a subject as [`Hub::get_subject`] does, with its special-category fields hidden
    /// or revealed for a reason (the console's page of a constituent).
    pub fn get_subject_revealing(
        &self,
        actor: &Actor,
        id: &SubjectId,
        special: Special<'_>,
    ) -> Result<SubjectView, Error> {
        self.read_subject(actor, id, None, special)
    }

    fn read_subject(
        &self,
        actor: &Actor,
        id: &SubjectId,
        purpose: Option<&str>,
        special: Special<'_>,
    ) -> Result<SubjectView, Error> {
        self.audited(actor, "read.subject", |trail| {
            trail.subject(id);
            trail.purpose = purpose.map(str::to_string);
            if let Special::Reveal(reason) = special {
                if !REVEAL_REASONS.iter().any(|(code, _)| *code == reason) {
                    return Err(Error::BadRequest(format!(
                        "reason: give one of {}",
                        REVEAL_REASONS
                            .iter()
                            .map(|(c, _)| *c)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                trail.note = Some(format!("reveal:{reason}"));
            }
            let groups = self.readable_groups(actor);
            if groups.is_empty() {
                return Err(Error::Forbidden {
                    action: "read",
                    object: "subject".into(),
                    fields: Vec::new(),
                });
            }
            let purpose_fields: Option<Vec<String>> = match purpose {
                None => None,
                Some(p) => {
                    let decision = self.gate(id, p)?;
                    if !decision.allowed {
                        return Err(Error::ConsentRequired {
                            purpose: p.to_string(),
                            reason: decision.reason,
                        });
                    }
                    Some(
                        self.purposes()
                            .get(p)
                            .map(|x| x.fields.clone())
                            .unwrap_or_default(),
                    )
                }
            };
            let schema = &self.schema;
            let hide_special = special == Special::Hide;
            let wanted = |f: FieldId| {
                schema.field_by_id(RecordKind::Subject, f).is_some_and(|d| {
                    groups.contains(&d.group)
                        && !(hide_special && d.group == AccessGroup::Special)
                        && purpose_fields
                            .as_ref()
                            .is_none_or(|pf| pf.contains(&d.name))
                })
            };
            let record = self.vault.read_subject(id, &wanted)?;
            let mut hidden = Vec::new();
            let fields: BTreeMap<String, Json> = record
                .fields
                .iter()
                .map(|(f, v)| (self.field_name(RecordKind::Subject, *f), v.to_json()))
                .collect();
            trail.fields(fields.keys());
            let mut withheld = Vec::new();
            for f in &record.other_fields {
                let readable_special = hide_special
                    && groups.contains(&AccessGroup::Special)
                    && schema
                        .field_by_id(RecordKind::Subject, *f)
                        .is_some_and(|d| d.group == AccessGroup::Special);
                let name = self.field_name(RecordKind::Subject, *f);
                if readable_special {
                    hidden.push(name);
                } else {
                    withheld.push(name);
                }
            }
            withheld.sort();
            hidden.sort();
            Ok(SubjectView {
                id: record.id,
                kind: record.kind,
                version: record.version,
                fields,
                withheld,
                hidden,
            })
        })
    }

    /// Applies a patch of field names → values (`null` removes the field). All or nothing:
    /// a forbidden or invalid field refuses the whole patch. Returns the new version.
    pub fn update_subject(
        &self,
        actor: &Actor,
        id: &SubjectId,
        patch: Map<String, Json>,
        if_version: Option<u32>,
    ) -> Result<u32, Error> {
        self.audited(actor, "update.subject", |trail| {
            trail.subject(id);
            trail.fields(patch.keys());
            if patch.is_empty() {
                return Err(Error::BadRequest("the patch names no field".into()));
            }
            for reserved in RESERVED_NAMES {
                if patch.contains_key(*reserved) {
                    return Err(Error::BadRequest(format!(
                        "`{reserved}` cannot be changed; it is managed by Steward"
                    )));
                }
            }
            self.check_writable(actor, RecordKind::Subject, patch.keys())?;
            let parsed = self
                .schema
                .parse_patch(RecordKind::Subject, &patch)
                .map_err(|e| invalid(e, None))?;
            let mut changed: Vec<String> = parsed
                .iter()
                .filter_map(|(f, _)| self.schema.field_by_id(RecordKind::Subject, *f))
                .map(|d| crate::recipients::group_name(d.group).to_string())
                .collect();
            changed.sort();
            changed.dedup();
            self.commit_audited(actor, "update.subject", trail, |mut batch| {
                crate::retention::touch(&mut batch, id);
                // Recipients of the changed groups are owed a notice of the rectification.
                self.stage_notifications(
                    &mut batch,
                    id,
                    "subject.rectified",
                    Some(&changed),
                    None,
                )?;
                Ok(self
                    .vault
                    .update_subject_with(id, &parsed, if_version, batch)?)
            })
        })
    }

    /// Erases a subject: its data key is destroyed, so every copy of its data (store, backups)
    /// becomes unreadable.
    pub fn erase_subject(
        &self,
        actor: &Actor,
        id: &SubjectId,
    ) -> Result<crate::ErasureCertificate, Error> {
        self.audited(actor, "erase.subject", |trail| {
            trail.subject(id);
            self.require(actor, "subject", Action::Erase)?;
            // Erasing again answers with the certificate kept the first time.
            if !self.vault.exists(id)? && self.vault.is_erased(id)? {
                if let Some(mut kept) = self.kept_certificate(id)? {
                    kept.already_erased = true;
                    return Ok(kept);
                }
            }
            let certificate = self.commit_audited(actor, "erase.subject", trail, |batch| self.erase_with_rules(id, batch))?;
            self.keep_certificate(&certificate)?;
            tracing::info!(subject = %id, principal = %actor.principal.id, held = certificate.held.is_some(), "subject erased");
            Ok(certificate)
        })
    }

    /// Finds subjects by exact email, phone or external id (normalised first).
    pub fn find(&self, actor: &Actor, lookup: Lookup, term: &str) -> Result<Vec<SubjectId>, Error> {
        self.audited(actor, "search.subject", |trail| {
            trail.fields([lookup.param()]);
            self.require(actor, lookup.group().object(), Action::Read)?;
            let normalised = match lookup {
                Lookup::Email => normalise_email(term),
                Lookup::Phone => normalise_phone(term, &self.schema.default_region),
                Lookup::ExternalId => normalise_external_id(term),
                Lookup::FamilyName => {
                    let key = domain::name_key(term);
                    if key.is_empty() {
                        Err("a name needs at least one letter")
                    } else {
                        Ok(key)
                    }
                }
            }
            .map_err(|reason| Error::Invalid {
                item: None,
                errors: vec![FieldError {
                    field: lookup.param().to_string(),
                    problem: domain::FieldProblem::Invalid {
                        reason: reason.to_string(),
                    },
                }],
            })?;
            let ids = self.vault.lookup(lookup.index(), &normalised)?;
            for id in &ids {
                trail.subject(id);
            }
            Ok(ids)
        })
    }

    /// Finds people by family name (and, if given, a given name or its first letters), and
    /// reads back only what tells namesakes apart: their name and, for roles that may read
    /// contact details, their town. One `search.subject` event names everyone returned; at
    /// most [`MAX_NAME_HITS`], with `true` when there were more.
    pub fn find_by_name(
        &self,
        actor: &Actor,
        family: &str,
        given: Option<&str>,
    ) -> Result<(Vec<NameHit>, bool), Error> {
        self.audited(actor, "search.subject", |trail| {
            trail.fields(["family_name"]);
            self.require(actor, AccessGroup::Identity.object(), Action::Read)?;
            let key = domain::name_key(family);
            if key.is_empty() {
                return Err(Error::Invalid {
                    item: None,
                    errors: vec![FieldError {
                        field: "family_name".into(),
                        problem: domain::FieldProblem::Invalid {
                            reason: "a name needs at least one letter".into(),
                        },
                    }],
                });
            }
            let given = given.map(domain::name_key).filter(|g| !g.is_empty());
            let ids = self.vault.lookup(IndexKind::Name, &key)?;
            self.name_hits(actor, trail, ids, given.as_deref())
        })
    }

    /// The members of a household (the subjects whose `household` field names it), as
    /// [`Hub::find_by_name`] shows people: name and, for roles that may read contact details,
    /// town. One `search.subject` event names the household and everyone returned.
    pub fn household_members(
        &self,
        actor: &Actor,
        household: &SubjectId,
    ) -> Result<(Vec<NameHit>, bool), Error> {
        self.audited(actor, "search.subject", |trail| {
            trail.subject(household);
            trail.fields(["household"]);
            self.require(actor, AccessGroup::Identity.object(), Action::Read)?;
            self.require(actor, AccessGroup::Profile.object(), Action::Read)?;
            let ids = self.vault.lookup(IndexKind::Ref, &household.to_string())?;
            self.name_hits(actor, trail, ids, None)
        })
    }

    /// Reads what tells people apart (name, and town for roles that may read contact
    /// details) for up to [`MAX_NAME_HITS`] of `ids`, skipping the erased and, with `given`,
    /// those whose given name's search key does not start with it.
    fn name_hits(
        &self,
        actor: &Actor,
        trail: &mut crate::trail::Trail,
        ids: Vec<SubjectId>,
        given: Option<&str>,
    ) -> Result<(Vec<NameHit>, bool), Error> {
        let contact = self.allows_group(actor.principal.role, AccessGroup::Contact, Action::Read);
        let field = |n: &str| self.schema.field(RecordKind::Subject, n).map(|d| d.id);
        let wanted: Vec<FieldId> = ["given_name", "family_name"]
            .into_iter()
            .chain(contact.then_some("city"))
            .filter_map(field)
            .collect();
        let mut hits = Vec::new();
        let mut more = false;
        for id in ids {
            let record = match self.vault.read_subject(&id, &|f| wanted.contains(&f)) {
                Ok(r) => r,
                Err(vault::Error::NotFound(_) | vault::Error::Erased(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let get = |n: &str| {
                field(n).and_then(|f| {
                    record
                        .fields
                        .iter()
                        .find(|(id, _)| *id == f)
                        .and_then(|(_, v)| v.to_json().as_str().map(str::to_string))
                })
            };
            let given_name = get("given_name").unwrap_or_default();
            if let Some(g) = given {
                if !domain::name_key(&given_name).starts_with(g) {
                    continue;
                }
            }
            if hits.len() == MAX_NAME_HITS {
                more = true;
                break;
            }
            let name = [given_name, get("family_name").unwrap_or_default()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            hits.push(NameHit {
                id,
                name,
                city: get("city"),
            });
        }
        trail.fields(["given_name", "family_name"]);
        if contact {
            trail.fields(["city"]);
        }
        for h in &hits {
            trail.subject(h.id);
        }
        Ok((hits, more))
    }

    /// Subject ids in creation order, after the cursor.
    pub fn list_subjects(
        &self,
        actor: &Actor,
        after: Option<&SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, Error> {
        self.audited(actor, "list.subject", |_| {
            self.require(actor, AccessGroup::Identity.object(), Action::Read)?;
            Ok(self.vault.list_subjects(after, limit.clamp(1, 1000))?)
        })
    }

    /// Adds gifts to a subject.
    pub fn add_gifts(
        &self,
        actor: &Actor,
        id: &SubjectId,
        gifts: Vec<Map<String, Json>>,
    ) -> Result<Vec<GiftId>, Error> {
        self.audited(actor, "create.gift", |trail| {
            trail.subject(id);
            for g in &gifts {
                trail.fields(g.keys());
            }
            self.require(actor, AccessGroup::Financial.object(), Action::Write)?;
            if gifts.is_empty() {
                return Err(Error::BadRequest("no gift given".into()));
            }
            // A gift is an amount given: one without is refused, not stored empty.
            if let Some(i) = gifts
                .iter()
                .position(|g| g.get("amount").is_none_or(Json::is_null))
            {
                return Err(Error::Invalid {
                    item: (gifts.len() > 1).then_some(i),
                    errors: vec![domain::FieldError {
                        field: "amount".into(),
                        problem: domain::FieldProblem::Empty,
                    }],
                });
            }
            let parsed = gifts
                .iter()
                .enumerate()
                .map(|(i, g)| self.parse(RecordKind::Gift, g, (gifts.len() > 1).then_some(i)))
                .collect::<Result<Vec<_>, _>>()?;
            self.commit_audited(actor, "create.gift", trail, |batch| {
                let mut batch = batch;
                crate::retention::touch(&mut batch, id);
                Ok(self.vault.add_gifts_with(id, &parsed, batch)?)
            })
        })
    }

    /// A subject's gifts.
    pub fn list_gifts(&self, actor: &Actor, id: &SubjectId) -> Result<Vec<GiftView>, Error> {
        self.audited(actor, "read.gift", |trail| {
            trail.subject(id);
            self.require(actor, AccessGroup::Financial.object(), Action::Read)?;
            let gifts = self.vault.list_gifts(id)?;
            let views: Vec<GiftView> = gifts
                .into_iter()
                .map(|g| GiftView {
                    id: g.id,
                    fields: g
                        .fields
                        .iter()
                        .map(|(f, v)| (self.field_name(RecordKind::Gift, *f), v.to_json()))
                        .collect(),
                })
                .collect();
            for v in &views {
                trail.fields(v.fields.keys());
            }
            Ok(views)
        })
    }
}

pub(crate) fn invalid(e: domain::Error, item: Option<usize>) -> Error {
    match e {
        domain::Error::Fields(errors) => Error::Invalid { item, errors },
        other => Error::Policy(other.to_string()),
    }
}
