//! Reading one row: mapping, parsing by the schema, date and phone doubts, and how a
//! matched row's fields survive a merge.

use super::*;

/// A time as legacy exports write it (`2023-01-05 09:00:00`, taken as UTC; RFC 3339; a
/// date), in the ledger's form.
pub(super) fn legacy_time(s: &str) -> Option<String> {
    consent::normalise_time(s)
        .or_else(|| consent::normalise_time(&format!("{}Z", s.trim().replace(' ', "T"))))
}

pub(super) fn row_error_message(code: &str) -> String {
    match code {
        "ragged_row" => "the row has a different number of cells than the header".into(),
        "invalid_text" => "a cell is not text: a byte that is not valid in the file's encoding, or a control character such as NUL (a damaged or binary file); the row is not imported".into(),
        "malformed_csv" => "the row's quoting is broken (an unbalanced quote)".into(),
        "field_too_long" => "a cell is longer than 1 MiB".into(),
        "unbalanced_quote" => "a quote in this row is never closed: the row is not imported (the rows after it are read as they are); close or remove the quote".into(),
        "no_header" => "the file is empty: there is no header row".into(),
        other => other.replace('_', " "),
    }
}

impl Hub {
    pub(super) fn name_of(&self, record: RecordKind, f: FieldId) -> &str {
        self.schema
            .field_by_id(record, f)
            .map(|d| d.name.as_str())
            .unwrap_or("")
    }

    /// The matcher's view of a subject's fields.
    pub(crate) fn match_record(&self, fields: &[(FieldId, Value)]) -> MatchRecord {
        match_record_of(&self.schema, fields)
    }

    /// Merges `incoming` into `base` by the survivorship rules; returns the fields after.
    pub(crate) fn survive(
        &self,
        base: &[(FieldId, Value)],
        incoming: &[(FieldId, Value)],
        rules: &BTreeMap<String, Survivorship>,
    ) -> Vec<(FieldId, Value)> {
        importers::survivorship::survive(&self.schema, base, incoming, rules)
    }

    /// Phone columns whose numbers, read in the default region for want of a country, are
    /// mostly not in use there but would be elsewhere: a warning per column, from the file's
    /// first rows ([`importers::phones::column_doubt`]).
    pub(super) fn phone_doubts(
        &self,
        header: &[String],
        targets: &[Option<Target>],
        mapping: Option<&MappingFile>,
        rows: &[Result<importers::Row, importers::RowError>],
    ) -> Vec<Problem> {
        if mapping.is_some_and(|m| m.constants.contains_key("country")) {
            return Vec::new();
        }
        let country = targets
            .iter()
            .position(|t| matches!(t, Some(Target::Field { field }) if field == "country"));
        let region = &self.schema.default_region;
        let mut out = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let (Some(Target::Field { field }) | Some(Target::Contact2 { field })) = t else {
                continue;
            };
            let is_phone = self
                .schema
                .field(RecordKind::Subject, field)
                .is_some_and(|d| d.ty == domain::FieldType::Phone);
            if !is_phone {
                continue;
            }
            let cells = rows.iter().flatten().filter_map(|r| {
                let has_country = country
                    .and_then(|c| r.cells.get(c))
                    .is_some_and(|c| domain::country_code(c).is_some());
                let cell = r.cells.get(i)?;
                (!has_country).then_some((r.number, cell.as_str()))
            });
            let Some(d) = importers::phones::column_doubt(cells, region) else {
                continue;
            };
            out.push(Problem {
                row: d.first_row,
                column: header.get(i).cloned(),
                code: "phone_region_unsure".into(),
                message: format!(
                    "{} of the first {} numbers in this column are not in use in {region} (the schema's default_region, used for rows without a country) but would be in {}: give the rows a country (a column, or the mapping's [constants] country)",
                    d.doubtful,
                    d.checked,
                    d.regions.join(", ")
                ),
                severity: "warning".into(),
            });
        }
        out
    }

    pub(super) fn parse_row(
        &self,
        row: u64,
        header: &[String],
        targets: &[Option<Target>],
        mapping: Option<&MappingFile>,
        dates: &[importers::dates::DateColumn],
        cells: &[String],
    ) -> Result<Parsed, Problem> {
        let empty = BTreeMap::new();
        let constants = mapping.map(|m| &m.constants).unwrap_or(&empty);
        let lenient: &[String] = mapping.map(|m| m.drop_invalid.as_slice()).unwrap_or(&[]);
        let mut warnings = Vec::new();
        let problem = |column: Option<String>, code: &str, message: String| Problem {
            row,
            column,
            code: code.to_string(),
            message,
            severity: "error".into(),
        };
        let mut person = Map::new();
        let mut c2 = Map::new();
        let mut gift = Map::new();
        let mut columns: HashMap<(u8, String), String> = HashMap::new();
        let mut consents = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let value = cell.trim();
            let Some(Some(t)) = targets.get(i) else {
                continue;
            };
            let column = header.get(i).cloned().unwrap_or_default();
            let (map, which, field) = match t {
                Target::Field { field } => (&mut person, 0u8, field),
                Target::Contact2 { field } => (&mut c2, 1, field),
                Target::Gift { field } => (&mut gift, 2, field),
                Target::Consent {
                    purpose,
                    event,
                    when,
                } => {
                    if importers::triggers(when, value) {
                        // A column whose cell is the event's time (Mailchimp's OPTIN_TIME).
                        let at = if when.is_empty() {
                            Some(legacy_time(value).ok_or_else(|| {
                                problem(
                                    Some(column),
                                    "invalid_value",
                                    "the consent time is not a date and time".into(),
                                )
                            })?)
                        } else {
                            None
                        };
                        consents.push((purpose.clone(), event.clone(), at));
                    }
                    continue;
                }
                Target::Restrictions => {
                    for word in value.split([',', ';', '|']) {
                        if let Some((p, e)) = importers::restriction(word) {
                            consents.push((p.to_string(), e.to_string(), None));
                        }
                    }
                    continue;
                }
                Target::Address => {
                    if value.is_empty() {
                        continue;
                    }
                    match importers::split_address(value) {
                        Some(parts) => {
                            for (name, part) in parts {
                                if !person.contains_key(name) {
                                    person.insert(name.to_string(), Json::String(part));
                                    columns.insert((0, name.to_string()), column.clone());
                                }
                            }
                        }
                        None => {
                            warnings.push(Problem {
                                row,
                                column: Some(column.clone()),
                                code: "address_not_split".into(),
                                message: "the address does not have its parts separated by two spaces (street, city, region, postcode, country); kept whole as the street".into(),
                                severity: "warning".into(),
                            });
                            person
                                .entry("street".to_string())
                                .or_insert_with(|| Json::String(value.to_string()));
                            columns.insert((0, "street".into()), column.clone());
                        }
                    }
                    continue;
                }
                Target::Ignore => continue,
            };
            if value.is_empty() {
                continue;
            }
            let mut cleaned = importers::legacy_value(which == 2, field, value);
            // A date in a column whose order was worked out is read in that order, and goes
            // on as an ISO date; one that reads only the other way is refused.
            if let Some(order) = dates
                .iter()
                .find(|d| d.index == i)
                .and_then(|d| d.date_order())
            {
                match importers::dates::read_in_order(&cleaned, order) {
                    Ok(date) => cleaned = date.to_string(),
                    Err(reason) => {
                        return Err(problem(
                            Some(column),
                            "invalid_value",
                            format!("{field}: {reason}"),
                        ))
                    }
                }
            }
            let value = cleaned.as_str();
            let record = if which == 2 {
                RecordKind::Gift
            } else {
                RecordKind::Subject
            };
            match map.get_mut(field.as_str()) {
                // Two columns into one field: text is joined (house number + street, two tag
                // columns); anything else keeps the first column's value.
                Some(Json::String(s)) => match self.schema.field(record, field).map(|d| &d.ty) {
                    Some(domain::FieldType::Tags) => {
                        s.push(',');
                        s.push_str(value);
                    }
                    Some(domain::FieldType::Text) => {
                        s.push(' ');
                        s.push_str(value);
                    }
                    _ => {}
                },
                _ => {
                    map.insert(field.clone(), Json::String(value.to_string()));
                    columns.insert((which, field.clone()), column);
                }
            }
        }
        if person.is_empty() && c2.is_empty() && gift.is_empty() && consents.is_empty() {
            return Err(problem(
                None,
                "empty_row",
                "the row has no value in any mapped column".into(),
            ));
        }
        for (k, v) in constants {
            person
                .entry(k.clone())
                .or_insert_with(|| Json::String(v.clone()));
        }
        // The row's country (a column or a mapping constant) decides the region its phone
        // numbers are read in: an Australian 04xx mobile is +61, whatever the default region.
        // (Without one they are read in the default region; `phone_doubts` says when that
        // looks wrong for a column.)
        let localise_phones = |map: &mut Map<String, Json>| {
            let country = map
                .get("country")
                .and_then(Json::as_str)
                .and_then(domain::country_code);
            for (name, v) in map.iter_mut() {
                let is_phone = self
                    .schema
                    .field(RecordKind::Subject, name)
                    .is_some_and(|d| d.ty == domain::FieldType::Phone);
                let (true, Json::String(s)) = (is_phone, v) else {
                    continue;
                };
                let reading = importers::phones::read_phone(
                    s,
                    country.as_deref(),
                    &self.schema.default_region,
                );
                if let (Some(region), true) = (reading.region, reading.from_row) {
                    if let Ok(e164) = domain::normalise_phone(s, &region) {
                        *s = e164;
                    }
                }
            }
        };
        localise_phones(&mut person);
        // Fields the mapping file lets go when invalid: dropped with a warning, the row stays.
        let mut drop_invalid = |record: RecordKind, which: u8, map: &mut Map<String, Json>| {
            if lenient.is_empty() {
                return;
            }
            if let Err(domain::Error::Fields(errs)) = self.schema.parse_object(record, map) {
                if errs.iter().all(|e| lenient.contains(&e.field)) {
                    for e in errs {
                        map.remove(&e.field);
                        warnings.push(Problem {
                            row,
                            column: columns.get(&(which, e.field.clone())).cloned(),
                            code: e.problem.code().to_string(),
                            message: format!(
                                "{}: not imported (the mapping file's drop_invalid lets the row in without it)",
                                e.field
                            ),
                            severity: "warning".into(),
                        });
                    }
                }
            }
        };
        drop_invalid(RecordKind::Subject, 0, &mut person);
        if !c2.is_empty() {
            drop_invalid(RecordKind::Subject, 1, &mut c2);
        }
        let parse = |record: RecordKind, which: u8, map: &Map<String, Json>| {
            self.schema.parse_object(record, map).map_err(|e| match e {
                domain::Error::Fields(errs) => {
                    let first = &errs[0];
                    let column = columns
                        .get(&(which, first.field.clone()))
                        .cloned()
                        .unwrap_or_else(|| first.field.clone());
                    let message = match &first.problem {
                        domain::FieldProblem::Invalid { reason } => {
                            format!("{}: {reason}", first.field)
                        }
                        domain::FieldProblem::AmbiguousDate => format!(
                            "{}: the date reads both day-first and month-first, and nothing decides this column's order; import with --date-order day-first or month-first, or write it as YYYY-MM-DD",
                            first.field
                        ),
                        other => format!("{}: {}", first.field, other.code()),
                    };
                    problem(Some(column), first.problem.code(), message)
                }
                other => problem(None, "invalid_value", other.to_string()),
            })
        };
        let mut c2_fields = None;
        if !c2.is_empty() {
            for name in SHARED_ADDRESS {
                if let Some(v) = person.get(*name) {
                    c2.entry(name.to_string()).or_insert_with(|| v.clone());
                }
            }
            localise_phones(&mut c2);
            c2_fields = Some(parse(RecordKind::Subject, 1, &c2)?);
        }
        let person = parse(RecordKind::Subject, 0, &person)?;
        let gift = if gift.is_empty() {
            None
        } else {
            Some(parse(RecordKind::Gift, 2, &gift)?)
        };
        let has_identity = |fields: &[(FieldId, Value)]| {
            fields.iter().any(|(f, _)| {
                matches!(
                    self.name_of(RecordKind::Subject, *f),
                    "given_name"
                        | "family_name"
                        | "organisation_name"
                        | "email"
                        | "phone"
                        | "mobile"
                        | "external_id"
                )
            })
        };
        if !has_identity(&person) {
            return Err(problem(
                None,
                "no_identity",
                "the row has no name, email, phone or id to know the person by".into(),
            ));
        }
        for (f, v) in &person {
            if let Value::Email(e) = v {
                if domain::email_domain_suspect(e.expose()) {
                    warnings.push(Problem {
                        row,
                        column: columns
                            .get(&(0, self.name_of(RecordKind::Subject, *f).to_string()))
                            .cloned(),
                        code: "email_domain_typo".into(),
                        message: "the email's domain is one letter away from a common mail domain; imported as written, check it".into(),
                        severity: "warning".into(),
                    });
                }
            }
        }
        Ok(Parsed {
            row,
            person,
            contact2: c2_fields.filter(|f| has_identity(f)),
            gift,
            consents,
            warnings,
        })
    }

    /// Works out the order of each date column from the whole file (one pass reading the
    /// file again), the `--date-order` option, the profile's habit and the schema.
    pub(super) fn date_columns(
        &self,
        source: Source<'_>,
        header: &[String],
        targets: &[Option<Target>],
        profile: Profile,
        option: Option<domain::DateOrder>,
    ) -> Result<Vec<importers::dates::DateColumn>, Error> {
        let mut evidence = importers::dates::DateEvidence::for_targets(&self.schema, targets);
        if evidence.is_empty() {
            return Ok(Vec::new());
        }
        if option.is_none() {
            let f =
                source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
            let reader = Reader::new(f, None).map_err(|e| {
                Error::BadRequest(format!("the file: {}", row_error_message(&e.code)))
            })?;
            for row in reader.flatten() {
                evidence.observe(&row.cells);
            }
        }
        Ok(evidence.decide(header, option, profile.date_order(), self.schema.date_order))
    }

    pub(super) fn check_targets(
        &self,
        header: &[String],
        targets: &[Option<Target>],
    ) -> Result<(), Error> {
        for (h, t) in header.iter().zip(targets) {
            let (record, field) = match t {
                Some(Target::Field { field }) | Some(Target::Contact2 { field }) => {
                    (RecordKind::Subject, field)
                }
                Some(Target::Gift { field }) => (RecordKind::Gift, field),
                Some(Target::Consent { purpose, event, .. }) => {
                    self.purposes().get(purpose).map_err(|_| {
                        Error::BadRequest(format!(
                            "column \"{h}\" maps to purpose \"{purpose}\", which policies/purposes.toml does not define"
                        ))
                    })?;
                    if consent::EventKind::parse(event).is_none() {
                        return Err(Error::BadRequest(format!(
                            "column \"{h}\" maps to consent event \"{event}\", which is not an event kind"
                        )));
                    }
                    continue;
                }
                _ => continue,
            };
            if self.schema.field(record, field).is_none() {
                return Err(Error::BadRequest(format!(
                    "column \"{h}\" maps to field \"{field}\", which the schema does not have"
                )));
            }
        }
        Ok(())
    }
}
