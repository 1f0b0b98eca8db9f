//! The write stage: the plan applied in durable batches, each with its journal entries,
//! undo snapshots and audit event, one batch written while the next is prepared.

use super::*;

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_stage(
        &self,
        actor: &Actor,
        source: Source<'_>,
        options: &ImportOptions,
        mut record: ImportRecord,
        resumed: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<(ImportRecord, ImportReport<'_>), Error> {
        let t0 = Instant::now();
        let rules: BTreeMap<String, Survivorship> = options
            .mapping
            .as_ref()
            .map(|m| {
                m.survivorship
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), parse_rule(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        let f = source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        let mut reader = Reader::new(f, None).map_err(|e| {
            Error::BadRequest(format!("{}: {}", options.name, row_error_message(&e.code)))
        })?;
        let header = reader.header().to_vec();
        let targets = record.header_targets.clone();
        let mut written_rows = 0u64;
        let total = record.counts.rows_read;
        let created = self.planned_creations(&record)?;
        // Each batch's final outcomes (a merge that changed nothing is `unchanged`), counted
        // as the batch is prepared or, for one written before a resume, as its plan is read.
        let mut outcomes = Counts::outcomes_of(&record);
        // Read once: an erasure made while this import runs is not seen by it, as it would
        // not be by a batch already prepared.
        let suppressed = self.vault.suppression_list()?;
        // One batch is written (audited, applied) by a writer thread while this one reads,
        // parses and prepares the next: sled applies a batch on one core, and the preparation
        // would otherwise wait for it. The batch in flight lands before the next is handed
        // over, so batches land in order, at most one behind; the next batch reads the
        // subjects the one in flight writes from its overlay, not from the store. One writer
        // for the whole stage: memory a thread allocated is best freed while it lives.
        std::thread::scope(|scope| -> Result<(), Error> {
            let (jobs, job_rx) = std::sync::mpsc::sync_channel::<Prepared>(1);
            let (done_tx, landings) = std::sync::mpsc::channel::<Result<(), Error>>();
            scope.spawn(move || {
                for job in job_rx {
                    let result = self.commit_batch(actor, job);
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
            let mut overlay = Overlay::default();
            // The batch in flight: its number and rows.
            let mut in_flight: Option<(u32, u64)> = None;
            let landed = |(b, rows): (u32, u64), written_rows: &mut u64| -> Result<(), Error> {
                landings
                    .recv()
                    .map_err(|_| Error::Internal("the import's writer thread stopped".into()))??;
                *written_rows += rows;
                progress(Progress {
                    stage: "write",
                    done: ((b + 1) as u64 * BATCH_ROWS as u64).min(total),
                    total: Some(total),
                });
                Ok(())
            };
            // Plan chunks are read while no batch is being applied (sled holds reads back
            // until an applied batch is in), each one batch ahead.
            let mut next_chunk = if record.batches > 0 {
                Some(self.plan_chunk(&record.id, 0)?)
            } else {
                None
            };
            for b in 0..record.batches {
                let (done, mut plan) = next_chunk.take().expect("read one batch ahead");
                if done && b + 1 < record.batches {
                    next_chunk = Some(self.plan_chunk(&record.id, b + 1)?);
                }
                // Rows of this batch, read again (the plan keeps no values).
                let last_row = plan.last().map(|p| p.row).unwrap_or(0);
                let mut rows = Vec::with_capacity(plan.len());
                for item in reader.by_ref() {
                    match item {
                        Ok(row) => {
                            let n = row.number;
                            rows.push(row);
                            if n >= last_row {
                                break;
                            }
                        }
                        Err(e) if e.row >= last_row => break,
                        Err(_) => {}
                    }
                }
                // A batch marked done in its own atomic write is skipped on a re-run.
                if done {
                    outcomes.tally(&plan);
                    continue;
                }
                // On this thread only: the other core is sled's, applying the batch before.
                let parsed: HashMap<u64, Parsed> = rows
                    .iter()
                    .filter_map(|row| {
                        self.parse_row(
                            row.number,
                            &header,
                            &targets,
                            options.mapping.as_ref(),
                            &record.date_columns,
                            &row.cells,
                        )
                        .ok()
                    })
                    .map(|p| (p.row, p))
                    .collect();
                // The batch in flight lands before this one reads the store (its rows about
                // stored subjects, after those about new ones): sled holds reads back while
                // it applies a batch, so a read would wait for the landing anyway, pinned
                // inside sled.
                let (import_id, batches) = (record.id.clone(), record.batches);
                let mut land = || -> Result<(), Error> {
                    if let Some(flight) = in_flight.take() {
                        landed(flight, &mut written_rows)?;
                    }
                    if b + 1 < batches {
                        next_chunk = Some(self.plan_chunk(&import_id, b + 1)?);
                    }
                    Ok(())
                };
                let (prepared, next) = self.prepare_batch(
                    actor,
                    &mut record,
                    b,
                    &mut plan,
                    &parsed,
                    &rules,
                    options,
                    &created,
                    &suppressed,
                    &overlay,
                    &mut land,
                )?;
                overlay = next;
                outcomes.tally(&plan);
                let rows = plan.len() as u64;
                jobs.send(prepared)
                    .map_err(|_| Error::Internal("the import's writer thread stopped".into()))?;
                in_flight = Some((b, rows));
            }
            if let Some(flight) = in_flight.take() {
                landed(flight, &mut written_rows)?;
            }
            Ok(())
        })?;
        drop(created);
        let write_s = t0.elapsed().as_secs_f64();
        record
            .stages
            .push(stage("write", write_s, written_rows as usize));
        record.status = "completed".into();
        record.finished = Some(consent::now());
        record.resumed = resumed;
        record.counts = outcomes;
        self.vault.apply_durably({
            let mut batch = Batch::new();
            batch.put(
                ks::IMPORTS,
                key("i", &record.id, b""),
                serde_json::to_vec(&record).expect("json"),
            );
            batch
        })?;
        Ok((record.clone(), self.stored_report(record)))
    }

    /// True when this import already recorded this consent event for a stored subject (an
    /// earlier batch's row of the same person).
    pub(super) fn imported_already(
        &self,
        subject: &SubjectId,
        import: &str,
        purpose: &str,
        event: &str,
        at: &Option<String>,
    ) -> Result<bool, Error> {
        let prefix = format!("import:{import}#");
        let at = at.as_deref().and_then(consent::normalise_time);
        Ok(self
            .ledger
            .history(subject)
            .map_err(crate::consent_ops::consent_error)?
            .iter()
            .any(|e| {
                e.purpose == purpose
                    && e.event.as_str() == event
                    && match &at {
                        Some(t) => &e.time == t,
                        None => e.source.starts_with(&prefix),
                    }
            }))
    }

    /// Works out one batch's writes: new subjects, changed ones, gifts, consent events,
    /// households, undo snapshots, the batch's outcomes. Subjects the batch in flight writes
    /// are read from its `overlay`; the returned overlay is this batch's, for the next one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn prepare_batch(
        &self,
        actor: &Actor,
        record: &mut ImportRecord,
        b: u32,
        plan: &mut [PlanRow],
        parsed: &HashMap<u64, Parsed>,
        rules: &BTreeMap<String, Survivorship>,
        options: &ImportOptions,
        created: &HashSet<SubjectId>,
        suppressed: &vault::SuppressionList,
        overlay: &Overlay,
        before_reads: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(Prepared, Overlay), Error> {
        let import = record.id.clone();
        let file = &options.name;
        // New subjects of this batch, by id: (kind, fields, gifts).
        let mut news: BTreeMap<SubjectId, NewSubject> = BTreeMap::new();
        let mut news_order: Vec<SubjectId> = Vec::new();
        // Subjects stored before this batch that it changes: their fields now.
        let mut olds: BTreeMap<SubjectId, (Vec<(FieldId, Value)>, bool)> = BTreeMap::new();
        let mut old_gifts: BTreeMap<SubjectId, Vec<Vec<(FieldId, Value)>>> = BTreeMap::new();
        let mut consents: Vec<(SubjectId, NewConsent)> = Vec::new();
        let mut consent_keys: HashSet<ConsentKey> = HashSet::new();
        let jurisdiction = options
            .mapping
            .as_ref()
            .and_then(|m| m.jurisdiction.clone());
        let mut households: Vec<(SubjectId, Vec<SubjectId>)> = Vec::new();
        let mut gift_cache: HashMap<SubjectId, Vec<Vec<(FieldId, Value)>>> = HashMap::new();
        let household_field = self
            .schema
            .field(RecordKind::Subject, "household")
            .map(|d| d.id);
        // Two passes over the rows: first those about subjects this batch creates, which need
        // nothing from the store; then, after the new subjects are sealed, those about stored
        // subjects. The batch before may still be being applied, and sled holds reads back
        // until it is: reading last lets the work before overlap it. A batch with NPSP
        // households (a row with two people) is done in the second pass only.
        let has_households = plan.iter().any(|p| p.c2.is_some());
        let mut handled = vec![false; plan.len()];
        let mut in_batch: HashSet<SubjectId> = HashSet::new();
        let mut sealed: Option<vault::Sealed> = None;
        // The row each new subject of this batch was created from.
        let mut first_label: HashMap<SubjectId, String> = HashMap::new();
        for pass in 0..2 {
            if pass == 1 {
                before_reads()?;
            }
            let mut apply = |this: &Hub,
                             target: SubjectId,
                             creates: bool,
                             fields: &[(FieldId, Value)],
                             gift: Option<&Vec<(FieldId, Value)>>,
                             label: String|
             -> Result<bool, Error> {
                // A resumed run skips written batches, so a planned creation is always new here.
                if creates && !news.contains_key(&target) {
                    first_label.insert(target, label);
                    news.insert(
                        target,
                        NewSubject {
                            kind: SubjectKind::Individual,
                            fields: fields.to_vec(),
                            gifts: gift.cloned().into_iter().collect(),
                        },
                    );
                    news_order.push(target);
                    return Ok(true);
                }
                let gift = gift.cloned();
                if let Some(n) = news.get_mut(&target) {
                    let mut after = this.survive(&n.fields, fields, rules);
                    let first = first_label.get(&target).map_or("stored", String::as_str);
                    add_source(&n.fields, &mut after, first, fields, label);
                    n.fields = after;
                    // The same gift twice (two exports of one donation) is one gift.
                    if let Some(g) = gift {
                        if !n.gifts.contains(&g) {
                            n.gifts.push(g);
                        }
                    }
                    return Ok(true);
                }
                if let std::collections::btree_map::Entry::Vacant(e) = olds.entry(target) {
                    let current = match overlay.fields.get(&target) {
                        Some(fields) => fields.clone(),
                        None => this.vault.read_with_sources(&target)?.fields,
                    };
                    e.insert((current, false));
                }
                let entry = olds.get_mut(&target).expect("present");
                let mut after = this.survive(&entry.0, fields, rules);
                add_source(&entry.0, &mut after, "stored", fields, label);
                let mut changed = after != entry.0;
                if changed {
                    entry.0 = after;
                    entry.1 = true;
                }
                if let Some(g) = gift {
                    if let std::collections::hash_map::Entry::Vacant(e) = gift_cache.entry(target) {
                        let stored = match overlay.gifts.get(&target) {
                            Some(known) => known.clone(),
                            None => this
                                .vault
                                .list_gifts(&target)?
                                .into_iter()
                                .map(|r| {
                                    let mut f = r.fields;
                                    f.sort_by_key(|(id, _)| *id);
                                    f
                                })
                                .collect(),
                        };
                        e.insert(stored);
                    }
                    let known = gift_cache.get_mut(&target).expect("cached");
                    if !known.contains(&g) {
                        known.push(g.clone());
                        old_gifts.entry(target).or_default().push(g);
                        changed = true;
                    }
                }
                Ok(changed)
            };
            for (i, p) in plan.iter_mut().enumerate() {
                if handled[i] {
                    continue;
                }
                let (Some(row), Some(target)) = (parsed.get(&p.row), p.target) else {
                    handled[i] = true;
                    continue;
                };
                let creates = matches!(p.outcome, O_NEW | O_REVIEW);
                if pass == 0 {
                    if has_households || !(creates || in_batch.contains(&target)) {
                        continue;
                    }
                    in_batch.insert(target);
                }
                handled[i] = true;
                let label = format!("import:{import}#{}", p.row);
                let mut changed = apply(
                    self,
                    target,
                    creates,
                    &row.person,
                    row.gift.as_ref(),
                    label.clone(),
                )?;
                if let Some((c2, c2_creates)) = p.c2 {
                    if let Some(fields) = &row.contact2 {
                        apply(self, c2, c2_creates, fields, None, format!("{label}/2"))?;
                    }
                    if let (Some(h), Some(_)) = (p.household, household_field) {
                        households.push((h, vec![target, c2]));
                    }
                }
                for (purpose, event, at) in &row.consents {
                    // The same event from this import is recorded once per subject (two
                    // merged rows of one person often carry the same opt-in).
                    let same = (target, purpose.clone(), event.clone(), at.clone());
                    // (Kept for the next batch even when skipped: the batch that recorded
                    // it may still be in flight then.)
                    if !consent_keys.insert(same.clone())
                        || overlay.consents.contains(&same)
                        || (!creates
                            && self.imported_already(&target, &import, purpose, event, at)?)
                    {
                        continue;
                    }
                    consents.push((
                        target,
                        NewConsent {
                            purpose: purpose.clone(),
                            event: event.clone(),
                            at: at.clone(),
                            jurisdiction: jurisdiction.clone(),
                            method: Some("import".into()),
                            source: format!("import:{import}#{}", p.row),
                            ..Default::default()
                        },
                    ));
                    changed = true;
                }
                if p.outcome == O_MERGED && !changed {
                    p.outcome = O_UNCHANGED;
                }
            }
            if pass == 0 && !has_households {
                sealed = Some(self.seal_news(&news, &news_order)?);
            }
        }
        // Households: a household subject linked from both people.
        if let Some(hf) = household_field {
            for (h, members) in &households {
                if overlay.fields.contains_key(h) || self.vault.raw_record(h)?.is_some() {
                    continue;
                }
                // A member already in a household brings the other one into it.
                let current = members.iter().find_map(|m| {
                    let fields = news
                        .get(m)
                        .map(|n| &n.fields)
                        .or(olds.get(m).map(|o| &o.0))?;
                    fields.iter().find_map(|(f, v)| match v {
                        Value::Ref(r) if *f == hf => Some(*r),
                        _ => None,
                    })
                });
                let h = &current.unwrap_or(*h);
                if current.is_none() {
                    news.insert(
                        *h,
                        NewSubject {
                            kind: SubjectKind::Household,
                            fields: Vec::new(),
                            gifts: Vec::new(),
                        },
                    );
                    news_order.push(*h);
                }
                for m in members {
                    if let Some(n) = news.get_mut(m) {
                        n.fields.retain(|(f, _)| *f != hf);
                        n.fields.push((hf, Value::Ref(*h)));
                    } else if let Some(o) = olds.get_mut(m) {
                        if !o.0.iter().any(|(f, _)| *f == hf) {
                            o.0.push((hf, Value::Ref(*h)));
                            o.1 = true;
                        }
                    }
                }
            }
        }
        // The journal: snapshots of subjects stored before the import, the first time this
        // import touches them.
        let mut extra = Batch::new();
        let replaces: Vec<Replace> = olds
            .iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(id, (fields, _))| Replace {
                id: *id,
                fields: fields.clone(),
                expected_version: None,
            })
            .collect();
        let mut touched: Vec<SubjectId> = news_order.clone();
        for id in olds.keys().chain(old_gifts.keys()) {
            if !touched.contains(id) {
                touched.push(*id);
            }
            // A subject the batch in flight touched has its snapshot in that batch.
            let snap = key("s", &import, id.as_bytes());
            if !overlay.fields.contains_key(id)
                && !created.contains(id)
                && self.vault.store().get(ks::IMPORTS, &snap)?.is_none()
            {
                if let Some(raw) = self.vault.raw_record(id)? {
                    extra.put(ks::IMPORTS, snap, raw);
                }
            }
        }
        // Consent events, counted on per subject.
        let mut seqs: HashMap<SubjectId, u64> = HashMap::new();
        for (subject, new) in &consents {
            let seq = match seqs.get(subject).or(overlay.seqs.get(subject)) {
                Some(s) => *s,
                None if news.contains_key(subject) => 0,
                None => self
                    .ledger
                    .next_seq(subject)
                    .map_err(crate::consent_ops::consent_error)?,
            };
            seqs.insert(*subject, seq + 1);
            self.ledger
                .prepare_seq(
                    &self.purposes(),
                    subject,
                    new,
                    &actor.principal.id.to_string(),
                    seq,
                    &mut extra,
                )
                .map_err(|e| Error::BadRequest(format!("{file}: {e}")))?;
            if !news.contains_key(subject) {
                extra.put(
                    ks::IMPORTS,
                    key("c", &import, &consent::Ledger::key(subject, seq)),
                    Vec::new(),
                );
            }
        }
        // Recipients of an existing subject's data are told of what the import changed
        // (Art. 19), in this batch: which fields changed is not worked out here, so each is
        // told of every group it received (a notice too many, never one too few).
        for r in &replaces {
            self.stage_notifications(&mut extra, &r.id, "subject.rectified", None, None)?;
        }
        for (subject, new) in consents.iter().filter(|(s, _)| !news.contains_key(s)) {
            self.stage_consent_notifications(&mut extra, subject, &new.event, &new.purpose)?;
        }
        // People erased at their request are not re-added to marketing.
        self.stage_suppression(
            news.iter().map(|(id, n)| (id, n.fields.as_slice())),
            &|k, t| Ok(self.vault.listed(suppressed, k, t)),
            &mut seqs,
            &mut extra,
        )?;
        extra.put(
            ks::IMPORTS,
            key("p", &import, &b.to_be_bytes()),
            encode_plan(plan, true),
        );
        record.batches_done = b + 1;
        extra.put(
            ks::IMPORTS,
            key("i", &import, b""),
            serde_json::to_vec(&*record).expect("json"),
        );
        let creates = match sealed {
            Some(sealed) => sealed,
            None => self.seal_news(&news, &news_order)?,
        };
        // What the next batch must read from here rather than from the store (this batch's
        // subjects move there: nothing below needs them).
        let mut next = Overlay {
            seqs,
            consents: consent_keys,
            gifts: gift_cache,
            ..Default::default()
        };
        for (id, n) in news {
            next.gifts.insert(id, n.gifts);
            next.fields.insert(id, n.fields);
        }
        // (A subject given a gift is among `olds` too: its fields are read first.)
        for (id, (fields, _)) in olds {
            next.fields.insert(id, fields);
        }
        let gifts: Vec<_> = old_gifts.into_iter().collect();
        let mut trail = crate::trail::Trail::default();
        for id in &touched {
            trail.subject(id);
        }
        trail.count = Some(plan.len() as u64);
        let prepared = Prepared {
            import,
            extra,
            creates,
            replaces,
            gifts,
            trail,
        };
        Ok((prepared, next))
    }

    /// Seals a batch's new subjects (in the order they were first met).
    pub(super) fn seal_news(
        &self,
        news: &BTreeMap<SubjectId, NewSubject>,
        order: &[SubjectId],
    ) -> Result<vault::Sealed, Error> {
        let creates: Vec<NewSubject> = order.iter().map(|id| news[id].clone()).collect();
        Ok(self.vault.seal_new(&creates, order)?)
    }

    /// Writes a prepared batch (its new subjects already sealed) with its journal and audit
    /// event, in one atomic, durable batch.
    pub(super) fn commit_batch(&self, actor: &Actor, prepared: Prepared) -> Result<(), Error> {
        let Prepared {
            import,
            extra,
            creates,
            replaces,
            gifts,
            mut trail,
        } = prepared;
        self.commit_audited(actor, "import.rows", &mut trail, |audit| {
            let mut extra = extra;
            extra.extend(audit);
            // The journal needs the new versions and gift ids: the vault hands them over
            // before it applies, so they land in the same atomic batch.
            let journal = |written: &vault::Written| {
                let mut journal = Batch::new();
                for ((subject, _), ids) in gifts.iter().zip(&written.gift_ids) {
                    for g in ids {
                        let mut k = subject.as_bytes().to_vec();
                        k.extend_from_slice(g.as_bytes());
                        journal.put(ks::IMPORTS, key("g", &import, &k), Vec::new());
                    }
                }
                for (r, v) in replaces.iter().zip(&written.versions) {
                    journal.put(
                        ks::IMPORTS,
                        key("v", &import, r.id.as_bytes()),
                        v.to_le_bytes().to_vec(),
                    );
                }
                journal
            };
            let writes = vault::Writes {
                creates,
                replaces: &replaces,
                gifts: &gifts,
                absorb: None,
            };
            self.vault.write_import(writes, extra, &journal)?;
            Ok(())
        })
    }
}
