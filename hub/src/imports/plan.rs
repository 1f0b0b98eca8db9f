//! The match and plan stages: blocking keys, candidates in the vault, scores, clusters, and
//! each row's outcome, stored before anything is written.

use super::*;

/// Groups household pairs into one proposal per set of subjects they connect: the group's
/// first pair (as the item's `a`, `b` and levels), its best probability, and its members in
/// id order.
pub(super) fn group_pairs(pairs: &[ReviewPair]) -> Vec<(ReviewPair, Vec<SubjectId>)> {
    let mut index: HashMap<SubjectId, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut slot = |id: SubjectId, parent: &mut Vec<usize>| -> usize {
        *index.entry(id).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    let mut known = Vec::new();
    for p in pairs {
        let (Some(a), Some(b)) = (p.0, p.1) else {
            continue;
        };
        if a == b {
            continue;
        }
        let (x, y) = (slot(a, &mut parent), slot(b, &mut parent));
        let (rx, ry) = (find(&mut parent, x), find(&mut parent, y));
        if rx != ry {
            parent[rx.max(ry)] = rx.min(ry);
        }
        known.push((*p, x));
    }
    let mut groups: BTreeMap<usize, (ReviewPair, BTreeSet<SubjectId>)> = BTreeMap::new();
    let ids: HashMap<usize, SubjectId> = index.iter().map(|(id, i)| (*i, *id)).collect();
    for (p, x) in known {
        let root = find(&mut parent, x);
        let entry = groups.entry(root).or_insert((p, BTreeSet::new()));
        if p.2 > entry.0 .2 {
            entry.0 .2 = p.2;
        }
        entry.1.insert(ids[&x]);
        if let Some(b) = p.1 {
            entry.1.insert(b);
        }
    }
    groups
        .into_values()
        .map(|(p, members)| (p, members.into_iter().collect()))
        .collect()
}

impl Hub {
    pub(super) fn plan_import(
        &self,
        actor: &Actor,
        source: Source<'_>,
        options: &ImportOptions,
        fingerprint: &str,
        progress: &dyn Fn(Progress),
    ) -> Result<(ImportRecord, Vec<RowReport>), Error> {
        let t0 = Instant::now();
        let f = source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        let mut reader = Reader::new(f, None).map_err(|e| {
            Error::BadRequest(format!("{}: {}", options.name, row_error_message(&e.code)))
        })?;
        let header = reader.header().to_vec();
        let profile = options.profile.unwrap_or_else(|| Profile::detect(&header));
        let mut targets = profile.map(&header);
        if let Some(m) = &options.mapping {
            targets = m.map(&header, &targets);
        }
        self.check_targets(&header, &targets)?;
        let date_columns =
            self.date_columns(source, &header, &targets, profile, options.date_order)?;
        let mut problems: Vec<Problem> = Vec::new();
        let mut problems_total = 0u64;
        let mut codes: Vec<String> = Vec::new();
        // Per row: (row number, Ok(index of its person record) or Err(code index)).
        let mut rows: Vec<(u64, Result<usize, u16>)> = Vec::new();
        let mut records: Vec<MatchRecord> = Vec::new();
        // Per record: (row position, is contact2).
        let mut owner: Vec<(usize, bool)> = Vec::new();
        let mut c2_of: HashMap<usize, usize> = HashMap::new();
        let mut counts = Counts::default();
        for dup in reader.duplicate_columns() {
            problems_total += 1;
            problems.push(Problem {
                row: 1 + reader.dialect().preamble_rows as u64,
                column: Some(dup.clone()),
                code: "duplicated_column".into(),
                message: "two columns have this name: the first one's value is used (text columns are joined)".into(),
                severity: "warning".into(),
            });
        }
        let code_index = |codes: &mut Vec<String>, code: &str| -> u16 {
            match codes.iter().position(|c| c == code) {
                Some(i) => i as u16 + 1,
                None => {
                    codes.push(code.to_string());
                    codes.len() as u16
                }
            }
        };
        // Rows are read in chunks; each chunk is parsed on every core, then taken in order.
        type Checked = Result<(u64, MatchRecord, Option<MatchRecord>, Vec<Problem>), Problem>;
        let check = |item: &Result<importers::Row, importers::RowError>| -> Checked {
            match item {
                Err(e) => Err(Problem {
                    row: e.row,
                    column: e.column.clone(),
                    code: e.code.to_string(),
                    message: row_error_message(&e.code),
                    severity: "error".into(),
                }),
                Ok(row) if profile.is_header_row(&row.cells) => Err(Problem {
                    row: row.number,
                    column: None,
                    code: "header_row".into(),
                    message: "a second header row (column names, not a person); skipped".into(),
                    severity: "error".into(),
                }),
                Ok(row) => self
                    .parse_row(
                        row.number,
                        &header,
                        &targets,
                        options.mapping.as_ref(),
                        &date_columns,
                        &row.cells,
                    )
                    .map(|p| {
                        (
                            p.row,
                            self.match_record(&p.person),
                            p.contact2.as_ref().map(|c| self.match_record(c)),
                            p.warnings,
                        )
                    }),
            }
        };
        let mut first_chunk = true;
        loop {
            let chunk: Vec<_> = reader.by_ref().take(16_384).collect();
            if chunk.is_empty() {
                break;
            }
            if std::mem::take(&mut first_chunk) {
                for p in self.phone_doubts(&header, &targets, options.mapping.as_ref(), &chunk) {
                    problems_total += 1;
                    problems.push(p);
                }
            }
            let before = counts.rows_read;
            counts.rows_read += chunk.len() as u64;
            if before / 50_000 != counts.rows_read / 50_000 {
                progress(Progress {
                    stage: "read",
                    done: counts.rows_read,
                    total: None,
                });
            }
            for checked in matching::par_map(&chunk, check) {
                match checked {
                    Err(p) => {
                        counts.errors += 1;
                        problems_total += 1;
                        let c = code_index(&mut codes, &p.code);
                        rows.push((p.row, Err(c)));
                        if problems.len() < MAX_PROBLEMS {
                            problems.push(p);
                        }
                    }
                    Ok((row, person, c2, warnings)) => {
                        if !warnings.is_empty() {
                            counts.warnings += 1;
                        }
                        for w in warnings {
                            problems_total += 1;
                            if problems.len() < MAX_PROBLEMS {
                                problems.push(w);
                            }
                        }
                        let pos = rows.len();
                        rows.push((row, Ok(records.len())));
                        records.push(person);
                        owner.push((pos, false));
                        if let Some(c2) = c2 {
                            c2_of.insert(pos, records.len());
                            records.push(c2);
                            owner.push((pos, true));
                        }
                    }
                }
            }
        }
        if counts.rows_read == 0 {
            problems_total += 1;
            problems.push(Problem {
                row: 1 + reader.dialect().preamble_rows as u64,
                column: None,
                code: "no_rows".into(),
                message: "the file has a header and no rows under it: nothing to import".into(),
                severity: "warning".into(),
            });
        }
        let read_s = t0.elapsed().as_secs_f64();
        progress(Progress {
            stage: "match",
            done: 0,
            total: Some(records.len() as u64),
        });
        // Vault subjects sharing a blocking key with a row.
        let t1 = Instant::now();
        let n_file = records.len();
        let mut existing_ids: Vec<SubjectId> = Vec::new();
        let mut existing_household: Vec<Option<SubjectId>> = Vec::new();
        // Per stored record (a subject's source records, or its profile): its subject.
        let mut existing_of: Vec<SubjectId> = Vec::new();
        let mut together: Vec<(u32, u32)> = Vec::new();
        if !self.vault.list_subjects(None, 1)?.is_empty() {
            let mut seen_keys = HashSet::new();
            let mut seen_ids = HashSet::new();
            for r in &records[..n_file] {
                for k in r.blocking_keys() {
                    if !seen_keys.insert(k.clone()) {
                        continue;
                    }
                    let Some(ids) = vault_candidates(&self.vault, &k)? else {
                        continue;
                    };
                    for id in ids {
                        if seen_ids.insert(id) {
                            existing_ids.push(id);
                        }
                    }
                }
            }
            let household_field = self
                .schema
                .field(RecordKind::Subject, "household")
                .map(|d| d.id);
            for id in &existing_ids {
                let rec = self.vault.read_with_sources(id)?;
                let household = rec.fields.iter().find_map(|(f, v)| match v {
                    Value::Ref(h) if Some(*f) == household_field => Some(*h),
                    _ => None,
                });
                let first = records.len() as u32;
                for view in stored_views(&self.schema, &rec.fields) {
                    if records.len() as u32 > first {
                        together.push((first, records.len() as u32));
                    }
                    records.push(view);
                    existing_of.push(*id);
                    existing_household.push(household);
                }
            }
        }
        let mut existing = vec![false; n_file];
        existing.resize(records.len(), true);
        let cannot_link: Vec<(u32, u32)> = c2_of
            .iter()
            .map(|(pos, j)| (rows[*pos].1.unwrap_or(0) as u32, *j as u32))
            .collect();
        let matched = matching::run(
            &mut records,
            &existing,
            &cannot_link,
            &together,
            options.thresholds,
        );
        let match_s = t1.elapsed().as_secs_f64();
        // Targets: existing subjects, or a new id per new cluster.
        let new_clusters: BTreeSet<u32> = (0..n_file as u32)
            .filter(|i| !existing[matched.reps[*i as usize] as usize])
            .map(|i| matched.reps[i as usize])
            .collect();
        let fresh = if options.dry_run {
            Vec::new()
        } else {
            self.vault.new_subject_ids(new_clusters.len())?
        };
        let cluster_id: HashMap<u32, Option<SubjectId>> = new_clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, fresh.get(i).copied()))
            .collect();
        let target_of = |i: usize| -> Option<SubjectId> {
            let rep = matched.reps[i];
            if existing[rep as usize] {
                Some(existing_of[rep as usize - n_file])
            } else {
                cluster_id.get(&rep).copied().flatten()
            }
        };
        let creates = |i: usize| -> bool {
            let rep = matched.reps[i] as usize;
            !existing[rep] && rep == i
        };
        // Review pairs: between the subjects two records end up in.
        let mut review_rows: HashMap<usize, Option<SubjectId>> = HashMap::new();
        let mut review_pairs: Vec<ReviewPair> = Vec::new();
        let mut pair_seen = HashSet::new();
        for (s, _) in &matched.review {
            let (a, b) = (s.a as usize, s.b as usize);
            let (ta, tb) = (target_of(a), target_of(b));
            if !pair_seen.insert((matched.reps[a], matched.reps[b])) {
                continue;
            }
            // The row of the later record is flagged (b > a; b is a file record).
            if b < n_file && !owner[b].1 {
                review_rows.entry(owner[b].0).or_insert(ta);
            }
            review_pairs.push((ta, tb, s.probability, s.a, s.b));
        }
        // Contact2 is matched within the household its Contact1 is in: a vault subject outside
        // that household is not merged into; the two are put side by side for review.
        let mut c2_apart: HashMap<usize, Option<SubjectId>> = HashMap::new();
        for (pos, j) in &c2_of {
            let Ok(i) = rows[*pos].1 else { continue };
            let (ri, rj) = (matched.reps[i] as usize, matched.reps[*j] as usize);
            let household_of = |r: usize| {
                if existing[r] {
                    existing_household[r - n_file]
                } else {
                    None
                }
            };
            let h1 = household_of(ri);
            if !existing[rj] || h1.is_none() || household_of(rj) == h1 {
                continue;
            }
            let fresh = if options.dry_run {
                None
            } else {
                Some(self.vault.new_subject_ids(1)?[0])
            };
            c2_apart.insert(*pos, fresh);
            let g = matching::compare(&records[*j], &records[rj]);
            review_pairs.push((
                Some(existing_of[rj - n_file]),
                fresh,
                matched.params.probability(&g),
                rj as u32,
                *j as u32,
            ));
        }
        // Two people alike who share a house: proposed as one household, never merged.
        let mut household_links: Vec<ReviewPair> = Vec::new();
        for s in &matched.households {
            let (a, b) = (s.a as usize, s.b as usize);
            if !matching::same_house(&matching::compare(&records[a], &records[b])) {
                continue;
            }
            let household_of = |r: usize| {
                let rep = matched.reps[r] as usize;
                if existing[rep] {
                    existing_household[rep - n_file]
                } else {
                    None
                }
            };
            let (ha, hb) = (household_of(a), household_of(b));
            if ha.is_some() && ha == hb {
                continue;
            }
            if !pair_seen.insert((matched.reps[a], matched.reps[b])) {
                continue;
            }
            household_links.push((target_of(a), target_of(b), s.probability, s.a, s.b));
        }
        // One proposal per house: the pairs that share one are grouped (a household of five
        // is one question, not ten).
        let household_groups = group_pairs(&household_links);
        let mut plan = Vec::with_capacity(rows.len());
        for (pos, (row, res)) in rows.iter().enumerate() {
            let p = match res {
                Err(code) => PlanRow {
                    row: *row,
                    outcome: O_ERROR,
                    target: None,
                    matched: None,
                    c2: None,
                    household: None,
                    code: *code,
                },
                Ok(i) => {
                    let target = target_of(*i);
                    let (mut outcome, mut matched_id) = if creates(*i) {
                        (O_NEW, None)
                    } else {
                        let rep = matched.reps[*i] as usize;
                        let m = if existing[rep] {
                            Some(existing_of[rep - n_file])
                        } else {
                            target
                        };
                        (O_MERGED, m)
                    };
                    if let Some(other) = review_rows.get(&pos) {
                        if outcome == O_NEW {
                            outcome = O_REVIEW;
                            matched_id = *other;
                        }
                    }
                    let c2 = c2_of.get(&pos).map(|j| match c2_apart.get(&pos) {
                        Some(fresh) => (*fresh, true),
                        None => (target_of(*j), creates(*j)),
                    });
                    PlanRow {
                        row: *row,
                        outcome,
                        target,
                        matched: matched_id,
                        c2: c2.and_then(|(t, c)| t.map(|t| (t, c))),
                        household: None,
                        code: 0,
                    }
                }
            };
            match p.outcome {
                O_NEW => counts.new += 1,
                O_MERGED => counts.merged += 1,
                O_REVIEW => counts.review += 1,
                _ => {}
            }
            plan.push(p);
        }
        // A household per NPSP row with two people (unless one already has one).
        let households = plan.iter().filter(|p| p.c2.is_some()).count();
        if !options.dry_run && households > 0 {
            let ids = self.vault.new_subject_ids(households)?;
            for (p, id) in plan.iter_mut().filter(|p| p.c2.is_some()).zip(ids) {
                p.household = Some(id);
            }
        }
        let id = match &options.id {
            Some(id) => id.clone(),
            None => self.new_import_id()?,
        };
        let record = ImportRecord {
            id: id.clone(),
            status: if options.dry_run {
                "dry_run"
            } else {
                "running"
            }
            .into(),
            file: options.name.clone(),
            profile: serde_json::to_value(profile)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            by: actor.principal.id.to_string(),
            started: consent::now(),
            finished: None,
            counts,
            compared_pairs: matched.compared as u64,
            vault_candidates: existing_ids.len() as u64,
            lambda: matched.params.lambda,
            em_iterations: matched.params.iterations,
            batches: plan.len().div_ceil(BATCH_ROWS) as u32,
            batches_done: 0,
            review_items: Vec::new(),
            review_count: 0,
            household_proposals: 0,
            household_pairs: matched.households.len() as u64,
            problems,
            problems_total,
            stages: vec![
                stage("read", read_s, rows.len()),
                stage("match", match_s, rows.len()),
            ],
            resumed: false,
            already_imported: false,
            fingerprint: fingerprint.to_string(),
            codes,
            unmapped_columns: header
                .iter()
                .zip(&targets)
                .filter(|(h, t)| t.is_none() && !h.is_empty())
                .map(|(h, _)| h.clone())
                .collect(),
            ignored_columns: header
                .iter()
                .zip(&targets)
                .filter(|(_, t)| matches!(t, Some(Target::Ignore)))
                .map(|(h, _)| h.clone())
                .collect(),
            header_targets: targets,
            date_columns,
            params: Some(matched.params.clone()),
        };
        if options.dry_run {
            let report = plan.iter().map(|p| self.row_report(&record, p)).collect();
            return Ok((record, report));
        }
        let (errors, read) = (record.counts.errors, record.counts.rows_read);
        if let Some(max) = options.max_error_share {
            if read > 0 && errors as f64 > max * read as f64 {
                return Err(Error::BadRequest(format!(
                    "{errors} of {read} rows ({:.0}%) would be refused, more than the {:.0}% allowed; nothing was written. See which rows and why with --dry-run --report R.csv, or import the others anyway with --accept-errors",
                    100.0 * errors as f64 / read as f64,
                    100.0 * max
                )));
            }
        }
        // The plan is durable before any subject is written.
        let mut batch = Batch::new();
        for (b, chunk) in plan.chunks(BATCH_ROWS).enumerate() {
            batch.put(
                ks::IMPORTS,
                key("p", &id, &(b as u32).to_be_bytes()),
                encode_plan(chunk, false),
            );
        }
        let mut record = record;
        // Pairs already waiting in the queue are not queued twice.
        let mut queued: HashSet<Vec<u8>> = HashSet::new();
        for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"q/") {
            let (_, v) = entry?;
            if let Ok(item) = serde_json::from_slice::<ReviewItem>(&v) {
                if item.status == "open" {
                    queued.insert(rejected_key(&item.a, &item.b));
                }
            }
        }
        let kinds = review_pairs
            .into_iter()
            .map(|p| (p, Vec::new()))
            .chain(household_groups);
        let mut items = Batch::new();
        let mut in_items = 0;
        for ((a, b, probability, ra, rb), members) in kinds {
            let kind = if members.is_empty() {
                "duplicate"
            } else {
                "household"
            };
            let (Some(a), Some(b)) = (a, b) else { continue };
            if a == b {
                continue;
            }
            // A pair a person already said are two people is not asked again.
            if !queued.insert(rejected_key(&a, &b))
                || self
                    .vault
                    .store()
                    .get(ks::IMPORTS, &rejected_key(&a, &b))?
                    .is_some()
            {
                continue;
            }
            let rid = domain::hex(&self.vault.new_subject_ids(1)?[0].as_bytes()[6..14]);
            let item = ReviewItem {
                id: rid.clone(),
                import: Some(id.clone()),
                a,
                b,
                probability,
                levels: matching::compare(&records[ra as usize], &records[rb as usize]).to_vec(),
                status: "open".into(),
                decided_by: None,
                decided_at: None,
                merge: None,
                kind: kind.into(),
                members,
            };
            items.put(
                ks::IMPORTS,
                key("q", &rid, b""),
                serde_json::to_vec(&item).expect("json"),
            );
            if kind == "household" {
                record.household_proposals += 1;
            } else {
                record.review_count += 1;
            }
            // Written a chunk at a time, ahead of the plan: a million-row file opens hundreds
            // of thousands. Were the import cut short before its record is written, a re-run
            // finds them open and does not queue them twice.
            in_items += 1;
            if in_items == ITEM_CHUNK {
                self.vault.apply_durably(std::mem::take(&mut items))?;
                in_items = 0;
            }
        }
        batch.extend(items);
        batch.put(
            ks::IMPORTS,
            key("i", &id, b""),
            serde_json::to_vec(&record).expect("json"),
        );
        batch.put(
            ks::IMPORTS,
            key("f", fingerprint, b""),
            serde_json::to_vec(&id).expect("json"),
        );
        batch.put(
            ks::META,
            b"match.params".to_vec(),
            serde_json::to_vec(&matched.params).expect("json"),
        );
        self.vault.apply_durably(batch)?;
        Ok((record, Vec::new()))
    }
}
