//! Merging two subjects, undoing a merge, the review queue, and explaining a match score.
//!
//! A merge keeps subject A and absorbs B: A's fields follow the survivorship rules, B's gifts
//! are copied to A, B's consent events are copied to A (each marked with where it came from,
//! so both evidence trails stay), and where either record was more restricted than the merged
//! ledger would be, a restricting event is added: the most restrictive consent wins. B's
//! records stay encrypted under B's key in the merged keyspace until the merge is undone.

use std::collections::BTreeMap;

use access_control::Action;
use consent::{decide, now, NewConsent};
use domain::SubjectId;
use importers::matching::{self, Params};
use serde::{Deserialize, Serialize};
use vault::{keyspaces as ks, Batch, Replace};

use crate::consent_ops::consent_error;
use crate::imports::ReviewItem;
use crate::{Actor, Error, Hub};

/// A merge, as the journal keeps it (ids and an encrypted snapshot only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeRecord {
    /// Its id.
    pub id: String,
    /// The subject kept.
    pub keep: SubjectId,
    /// The subject merged into it.
    pub gone: SubjectId,
    /// done or undone.
    pub status: String,
    /// Who merged.
    pub by: String,
    /// When.
    pub at: String,
    /// The review item it decided, if any.
    pub review: Option<String>,
    /// Consent events added to the kept subject (copies and restrictions).
    pub consent_events: u32,
    /// Gifts copied to the kept subject.
    pub gifts_copied: u32,
    #[serde(default)]
    keep_version_after: u32,
    #[serde(default)]
    keep_snapshot: Vec<u8>,
    #[serde(default)]
    added_gifts: Vec<domain::GiftId>,
    #[serde(default)]
    added_consent: Vec<u64>,
}

/// One field's part in a match score.
#[derive(Debug, Clone, Serialize)]
pub struct FieldContribution {
    /// The field compared.
    pub field: &'static str,
    /// missing, exact, close, similar or different.
    pub level: &'static str,
    /// Its match weight (log2 m/u); 0 when missing.
    pub weight: f64,
    /// m and u of that level.
    pub m: Option<f64>,
    /// u of that level.
    pub u: Option<f64>,
}

/// Why two subjects score as they do.
#[derive(Debug, Clone, Serialize)]
pub struct MatchExplanation {
    /// First subject.
    pub a: SubjectId,
    /// Second subject.
    pub b: SubjectId,
    /// The match weight: the fields' weights summed, the address fields' agreements
    /// counted once (the best of them), as the import scores.
    pub score: f64,
    /// Posterior match probability.
    pub probability: f64,
    /// auto-merge, review or new: the band of the probability alone.
    pub band: &'static str,
    /// What an import would do with the pair: `merge`, `review`, `two-people` (they
    /// contradict each other: never merged, not put to review) or `new`.
    pub decision: &'static str,
    /// Why not `merge`, as a code: `given_name` or `birth_date` (a contradiction),
    /// `different_phones` or `different_places` with nothing personal in common (also
    /// `two-people`), or why
    /// the evidence is not one person's (`only_household_evidence`, `different_phones`,
    /// `different_places`, `different_streets`, `different_houses`, `given_name_only_a_variant`,
    /// `names_differ`), or
    /// `below_threshold`.
    /// (Contact points several people share are only known within a file, so a pair
    /// explained here is judged as if no one else shared them.)
    pub reason: Option<&'static str>,
    /// Per field.
    pub fields: Vec<FieldContribution>,
    /// Where the m/u values come from.
    pub parameters: &'static str,
}

fn qkey(kind: &str, id: &str) -> Vec<u8> {
    format!("{kind}/{id}/").into_bytes()
}

fn restriction_of(reason: &str) -> Option<&'static str> {
    match reason {
        "restricted" => Some("restricted"),
        "objected" => Some("objected"),
        "consent_withdrawn" | "opted_out" | "consent_refused" => Some("withdrawn"),
        _ => None,
    }
}

impl Hub {
    fn match_params(&self) -> Result<(Params, &'static str), Error> {
        Ok(match self.vault.store().get(ks::META, b"match.params")? {
            Some(v) => match serde_json::from_slice(&v) {
                Ok(p) => (p, "estimated by the last import"),
                Err(_) => (Params::default(), "defaults"),
            },
            None => (
                Params::default(),
                "defaults (no import has estimated them yet)",
            ),
        })
    }

    /// The records merged into a subject (ids only), for its timeline; readable by the roles
    /// that may read identities.
    pub fn merged_into(&self, actor: &Actor, id: &SubjectId) -> Result<Vec<SubjectId>, Error> {
        self.audited(actor, "read.match", |trail| {
            trail.subject(id);
            self.require(actor, domain::AccessGroup::Identity.object(), Action::Read)?;
            Ok(self.vault.merged_into(id)?)
        })
    }

    /// Explains the match score of two subjects field by field (levels and weights, never
    /// values).
    pub fn explain_match(
        &self,
        actor: &Actor,
        a: &SubjectId,
        b: &SubjectId,
    ) -> Result<MatchExplanation, Error> {
        self.audited(actor, "read.match", |trail| {
            trail.subject(a);
            trail.subject(b);
            self.require(actor, "subject", Action::Merge)?;
            let ra = self.vault.read_subject(a, &|_| true)?;
            let rb = self.vault.read_subject(b, &|_| true)?;
            let (params, source) = self.match_params()?;
            let mut pair = [self.match_record(&ra.fields), self.match_record(&rb.fields)];
            // What the two say about each other (an initial where two names were born that
            // day...); counts over a whole file (how rare a name is) are not known here.
            matching::mark_shared(&mut pair);
            let [xa, xb] = pair;
            let g = matching::compare(&xa, &xb);
            let w = params.weights(&g);
            let probability = params.probability(&g);
            let t = matching::Thresholds::default();
            let contradiction = matching::contradiction(&xa, &xb);
            let held = matching::hold_reason(&g).filter(|_| !matching::proven_anyway(&g, &xa, &xb));
            let (decision, reason) = if probability < t.review {
                ("new", Some("below_threshold"))
            } else if let Some(why) = contradiction {
                ("two-people", Some(why))
            } else if matching::apart(&g) {
                // Nothing personal in common, numbers or places apart.
                ("two-people", matching::hold_reason(&g))
            } else if probability < t.auto_merge {
                ("review", Some("below_threshold"))
            } else if let Some(why) = held {
                ("review", Some(why))
            } else {
                ("merge", None)
            };
            Ok(MatchExplanation {
                a: *a,
                b: *b,
                score: params.score(&g),
                probability,
                band: if probability >= t.auto_merge {
                    "auto-merge"
                } else if probability >= t.review {
                    "review"
                } else {
                    "new"
                },
                decision,
                reason,
                fields: matching::FIELDS
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FieldContribution {
                        field: f,
                        level: matching::LEVEL_NAMES[g[i] as usize],
                        weight: w[i],
                        m: (g[i] > 0).then(|| params.m[i][g[i] as usize - 1]),
                        u: (g[i] > 0).then(|| params.u[i][g[i] as usize - 1]),
                    })
                    .collect(),
                parameters: source,
            })
        })
    }

    /// Stores the current blocking keys for every subject and drops keys no longer kept (after
    /// an upgrade that changed them); returns how many subjects were read.
    pub fn reindex_matching(&self, actor: &Actor) -> Result<u64, Error> {
        self.audited(actor, "match.reindex", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            let n = self.vault.reindex(2_000)?;
            trail.count = Some(n);
            Ok(n)
        })
    }

    /// Merges subject `gone` into `keep` (see the module documentation). Returns the merge's
    /// record; `steward merge undo ID` reverses it exactly.
    pub fn merge_subjects(
        &self,
        actor: &Actor,
        keep: &SubjectId,
        gone: &SubjectId,
        review: Option<String>,
    ) -> Result<MergeRecord, Error> {
        self.audited(actor, "merge", |trail| {
            trail.subject(keep);
            trail.subject(gone);
            self.require(actor, "subject", Action::Merge)?;
            if keep == gone {
                return Err(Error::BadRequest(
                    "a subject cannot be merged into itself".into(),
                ));
            }
            let ra = self.vault.read_with_sources(keep)?;
            let rb = self.vault.read_with_sources(gone)?;
            let snapshot = self.vault.raw_record(keep)?.ok_or(Error::NotFound(*keep))?;
            let profile_b: Vec<_> = rb
                .fields
                .iter()
                .filter(|(f, _)| *f != vault::sources::SOURCES)
                .cloned()
                .collect();
            let mut fields = self.survive(&ra.fields, &profile_b, &BTreeMap::new());
            // The kept subject's source records and the merged one's, each once.
            let mut before = ra.fields.clone();
            for s in crate::imports::sources_of(&rb.fields, &format!("subject:{gone}")) {
                let first = format!("subject:{keep}");
                crate::imports::add_source(&before, &mut fields, &first, &s.fields, s.label);
                if let Some(kept) = fields.iter().find(|(f, _)| *f == vault::sources::SOURCES) {
                    before.retain(|(f, _)| *f != vault::sources::SOURCES);
                    before.push(kept.clone());
                }
            }
            let gifts: Vec<Vec<(domain::FieldId, domain::Value)>> = self
                .vault
                .list_gifts(gone)?
                .into_iter()
                .map(|g| g.fields)
                .collect();
            // Consent: B's events copied, then a restriction wherever A or B alone was more
            // restricted than the two ledgers together.
            let ha = self.ledger.history(keep).map_err(consent_error)?;
            let hb = self.ledger.history(gone).map_err(consent_error)?;
            let mut extra = Batch::new();
            let mut seq = self.ledger.next_seq(keep).map_err(consent_error)?;
            let mut added = Vec::new();
            let mut together = ha.clone();
            for e in &hb {
                self.ledger.copy_into(e, keep, seq, &mut extra);
                let mut copy = e.clone();
                copy.subject = *keep;
                copy.seq = seq;
                together.push(copy);
                added.push(seq);
                seq += 1;
            }
            let id = domain::hex(&self.vault.new_subject_ids(1)?[0].as_bytes()[6..14]);
            let at = now();
            let marketing = |name: &str| {
                self.purposes()
                    .get(name)
                    .map(|p| p.marketing)
                    .unwrap_or(false)
            };
            for p in self.purposes().all() {
                let da = decide(p, &ha, false, &at, &marketing);
                let db = decide(p, &hb, false, &at, &marketing);
                let dt = decide(p, &together, false, &at, &marketing);
                if !dt.allowed {
                    continue;
                }
                let strictest = [&da, &db]
                    .into_iter()
                    .filter(|d| !d.allowed)
                    .find_map(|d| restriction_of(&d.reason));
                let Some(event) = strictest else { continue };
                let event = if event == "objected" && !p.opt_out {
                    "withdrawn"
                } else {
                    event
                };
                if event == "restricted" {
                    // A restriction covers every purpose; one event does.
                    if together.iter().any(|e| {
                        e.event == consent::EventKind::Restricted
                            && e.merged_from.is_none()
                            && e.source.starts_with("merge:")
                    }) {
                        continue;
                    }
                }
                let new = NewConsent {
                    purpose: p.name.clone(),
                    event: event.into(),
                    method: Some("merge".into()),
                    source: format!("merge:{id}"),
                    ..Default::default()
                };
                let ev = self
                    .ledger
                    .prepare_seq(
                        &self.purposes(),
                        keep,
                        &new,
                        &actor.principal.id.to_string(),
                        seq,
                        &mut extra,
                    )
                    .map_err(consent_error)?;
                together.push(ev);
                added.push(seq);
                seq += 1;
            }
            let record = MergeRecord {
                id: id.clone(),
                keep: *keep,
                gone: *gone,
                status: "done".into(),
                by: actor.principal.id.to_string(),
                at,
                review: review.clone(),
                consent_events: added.len() as u32,
                gifts_copied: gifts.len() as u32,
                keep_version_after: 0,
                keep_snapshot: snapshot,
                added_gifts: Vec::new(),
                added_consent: added,
            };
            if let Some(r) = &review {
                if let Some(mut item) = self.review_item(r)? {
                    item.merge = Some(id.clone());
                    self.decide(actor, &mut item, "accepted", &mut extra);
                }
            }
            // A's new record, the gifts and consent copied to it, B moved aside, the merge's
            // journal record and the audit event: one atomic batch, so a crash leaves either
            // no merge or a whole, undoable one.
            let done = std::cell::RefCell::new(None);
            let replaces = [Replace {
                id: *keep,
                fields,
                expected_version: Some(ra.version),
            }];
            let gifts_for = [(*keep, gifts)];
            // Whoever received either record is told that it changed (Art. 19): B's
            // recipients by B's reference, A's by A's.
            self.stage_notifications(&mut extra, keep, "subject.rectified", None, None)?;
            self.stage_notifications(&mut extra, gone, "subject.rectified", None, None)?;
            self.commit_audited(actor, "merge", trail, |audit| {
                extra.extend(audit);
                let journal = |written: &vault::Written| {
                    let mut r = record.clone();
                    r.keep_version_after = written.versions[0];
                    r.added_gifts = written.gift_ids.iter().flatten().copied().collect();
                    let mut b = Batch::new();
                    b.put(
                        ks::IMPORTS,
                        qkey("m", &id),
                        serde_json::to_vec(&r).expect("json"),
                    );
                    *done.borrow_mut() = Some(r);
                    b
                };
                let writes = vault::Writes {
                    creates: vault::Sealed::default(),
                    replaces: &replaces,
                    gifts: &gifts_for,
                    absorb: Some((*keep, *gone)),
                };
                self.vault.write_import(writes, extra, &journal)?;
                Ok(())
            })?;
            let record = done.into_inner().unwrap_or(record);
            Ok(record)
        })
    }

    /// A merge's record.
    pub fn merge_record(&self, id: &str) -> Result<MergeRecord, Error> {
        let v = self
            .vault
            .store()
            .get(ks::IMPORTS, &qkey("m", id))?
            .ok_or_else(|| Error::Missing(format!("merge {id}")))?;
        serde_json::from_slice(&v).map_err(|_| Error::Internal(format!("merge {id} is damaged")))
    }

    /// Undoes a merge: the kept subject gets its exact prior record back (and loses the copied
    /// gifts and consent events), the merged subject comes back as it was. Refused if the kept
    /// subject changed since.
    pub fn undo_merge(&self, actor: &Actor, id: &str) -> Result<MergeRecord, Error> {
        self.audited(actor, "merge.undo", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            let mut record = self.merge_record(id)?;
            trail.subject(record.keep);
            trail.subject(record.gone);
            if record.status == "undone" {
                return Err(Error::Conflict(format!("merge {id} is already undone")));
            }
            let mut batch = Batch::new();
            self.vault
                .delete_gifts(&record.keep, &record.added_gifts, &mut batch);
            for seq in &record.added_consent {
                batch.delete(ks::CONSENT, consent::Ledger::key(&record.keep, *seq));
            }
            self.vault.restore_raw(
                &record.keep,
                &record.keep_snapshot,
                Some(record.keep_version_after),
                batch,
            )?;
            record.status = "undone".into();
            let mut batch = Batch::new();
            let mut stored = record.clone();
            stored.keep_snapshot = Vec::new();
            batch.put(
                ks::IMPORTS,
                qkey("m", id),
                serde_json::to_vec(&stored).expect("json"),
            );
            if let Some(r) = &record.review {
                if let Some(mut item) = self.review_item(r)? {
                    item.status = "open".into();
                    item.merge = None;
                    batch.put(
                        ks::IMPORTS,
                        qkey("q", r),
                        serde_json::to_vec(&item).expect("json"),
                    );
                }
            }
            self.commit_audited(actor, "merge.undo", trail, |audit| {
                batch.extend(audit);
                self.vault.unabsorb(&record.keep, &record.gone, batch)?;
                Ok(())
            })?;
            Ok(stored)
        })
    }

    /// A review item still waiting for a decision (else `not_found` or `conflict`).
    fn open_review_item(&self, id: &str) -> Result<ReviewItem, Error> {
        let item = self
            .review_item(id)?
            .ok_or_else(|| Error::Missing(format!("review item {id}")))?;
        if item.status != "open" {
            return Err(Error::Conflict(format!(
                "review item {id} is already {}",
                item.status
            )));
        }
        Ok(item)
    }

    /// Marks `item` decided (`status`, by whom, when) and puts it into `batch`.
    fn decide(&self, actor: &Actor, item: &mut ReviewItem, status: &str, batch: &mut Batch) {
        item.status = status.into();
        item.decided_by = Some(actor.principal.id.to_string());
        item.decided_at = Some(now());
        batch.put(
            ks::IMPORTS,
            qkey("q", &item.id),
            serde_json::to_vec(&*item).expect("json"),
        );
    }

    fn review_item(&self, id: &str) -> Result<Option<ReviewItem>, Error> {
        Ok(match self.vault.store().get(ks::IMPORTS, &qkey("q", id))? {
            Some(v) => serde_json::from_slice(&v).ok(),
            None => None,
        })
    }

    /// The review queue (open items first, then decided ones when `all`).
    pub fn review_list(&self, actor: &Actor, all: bool) -> Result<Vec<ReviewItem>, Error> {
        self.audited(actor, "read.review", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            let mut out: Vec<ReviewItem> = Vec::new();
            for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"q/") {
                let (_, v) = entry?;
                if let Ok(item) = serde_json::from_slice::<ReviewItem>(&v) {
                    if all || item.status == "open" {
                        out.push(item);
                    }
                }
            }
            out.sort_by(|a, b| {
                b.probability
                    .total_cmp(&a.probability)
                    .then(a.id.cmp(&b.id))
            });
            trail.count = Some(out.len() as u64);
            Ok(out)
        })
    }

    /// Accepts a review item: merges its second subject into its first.
    pub fn review_accept(&self, actor: &Actor, id: &str) -> Result<MergeRecord, Error> {
        self.audited(actor, "merge", |_| {
            self.require(actor, "subject", Action::Merge)
        })?;
        let item = self.open_review_item(id)?;
        if item.kind == "household" {
            return Err(Error::BadRequest(format!(
                "review item {id} proposes a household, not a merge: link the two with `steward review link {id}` (POST /v1/reviews/{id} with decision \"link\"), or reject it"
            )));
        }
        self.merge_subjects(actor, &item.a, &item.b, Some(id.to_string()))
    }

    /// Accepts a household proposal: its members are linked into one household (the one
    /// some already belong to, or a new one), in one atomic batch with the item's decision
    /// and the audit event. Refused when they belong to different households.
    pub fn review_link(&self, actor: &Actor, id: &str) -> Result<ReviewItem, Error> {
        self.audited(actor, "household.link", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            let mut item = self.open_review_item(id)?;
            if item.kind != "household" {
                return Err(Error::BadRequest(format!(
                    "review item {id} asks whether two records are one person: accept (merge) or reject it"
                )));
            }
            let field = self
                .schema
                .field(domain::RecordKind::Subject, "household")
                .map(|d| d.id)
                .ok_or_else(|| {
                    Error::BadRequest("the schema has no `household` field to link with".into())
                })?;
            let members = if item.members.is_empty() {
                vec![item.a, item.b]
            } else {
                item.members.clone()
            };
            let mut current = Vec::with_capacity(members.len());
            for id in &members {
                trail.subject(*id);
                let r = self.vault.read_subject(id, &|_| true)?;
                let h = r.fields.iter().find_map(|(f, v)| match v {
                    domain::Value::Ref(h) if *f == field => Some(*h),
                    _ => None,
                });
                current.push((r, h));
            }
            let mut homes: Vec<SubjectId> = current.iter().filter_map(|c| c.1).collect();
            homes.sort();
            homes.dedup();
            if homes.len() > 1 {
                return Err(Error::Conflict(format!(
                    "these people already belong to {} different households ({}): change them by hand first",
                    homes.len(),
                    homes.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            let mut creates = vault::Sealed::default();
            let household = match homes.first() {
                Some(h) => *h,
                None => {
                    let h = self.vault.new_subject_ids(1)?[0];
                    creates = self.vault.seal_new(
                        &[vault::NewSubject {
                            kind: domain::SubjectKind::Household,
                            fields: Vec::new(),
                            gifts: Vec::new(),
                        }],
                        &[h],
                    )?;
                    h
                }
            };
            trail.subject(household);
            let mut replaces = Vec::new();
            for (r, h) in current {
                if h.is_some() {
                    continue;
                }
                let mut fields = r.fields;
                fields.retain(|(f, _)| *f != field);
                fields.push((field, domain::Value::Ref(household)));
                replaces.push(Replace {
                    id: r.id,
                    fields,
                    expected_version: Some(r.version),
                });
            }
            let mut extra = Batch::new();
            self.decide(actor, &mut item, "linked", &mut extra);
            self.commit_audited(actor, "household.link", trail, |audit| {
                extra.extend(audit);
                let writes = vault::Writes {
                    creates,
                    replaces: &replaces,
                    gifts: &[],
                    absorb: None,
                };
                self.vault.write_import(writes, extra, &|_| Batch::new())?;
                Ok(())
            })?;
            Ok(item)
        })
    }

    /// Rejects a review item: the two subjects are different people.
    pub fn review_reject(&self, actor: &Actor, id: &str) -> Result<ReviewItem, Error> {
        self.audited(actor, "review.reject", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            let mut item = self.open_review_item(id)?;
            trail.subject(item.a);
            trail.subject(item.b);
            let mut batch = Batch::new();
            self.decide(actor, &mut item, "rejected", &mut batch);
            batch.put(
                ks::IMPORTS,
                crate::imports::rejected_key(&item.a, &item.b),
                Vec::new(),
            );
            self.commit_audited(actor, "review.reject", trail, |audit| {
                batch.extend(audit);
                self.vault.apply_durably(batch)?;
                Ok(())
            })?;
            Ok(item)
        })
    }
}
