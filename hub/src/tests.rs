use super::*;
use serde_json::json;

/// A data directory with the default policies, not yet opened: the temporary folder that
/// holds it, the directory and its identity file.
fn initialised() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let id = tmp.path().join("id.txt");
    Hub::init(
        &dir,
        &SealTo::Identity(id.clone()),
        &PolicyFiles::defaults(),
    )
    .unwrap();
    (tmp, dir, id)
}

pub(crate) fn hub() -> (tempfile::TempDir, Hub) {
    let (tmp, dir, id) = initialised();
    let hub = Hub::open(&dir, &Unlock::Identity(id)).unwrap();
    (tmp, hub)
}

pub(crate) fn input(v: serde_json::Value) -> NewSubjectInput {
    NewSubjectInput::from_json(v).unwrap()
}

#[test]
fn create_read_update_find_erase() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub
        .create_subject(
            &admin,
            input(json!({"given_name": "ann", "email": "Ann@Example.org", "gifts": [{"amount": "5"}]})),
        )
        .unwrap();
    let view = hub.get_subject(&admin, &id).unwrap();
    assert_eq!(view.fields["given_name"], "Ann");
    assert_eq!(view.fields["email"], "ann@example.org");
    assert!(view.withheld.is_empty());
    assert_eq!(
        hub.find(&admin, Lookup::Email, " ANN@example.org ")
            .unwrap(),
        vec![id]
    );
    let v2 = hub
        .update_subject(
            &admin,
            &id,
            json!({"email": null, "city": "Leeds"})
                .as_object()
                .unwrap()
                .clone(),
            Some(1),
        )
        .unwrap();
    assert_eq!(v2, 2);
    let view = hub.get_subject(&admin, &id).unwrap();
    assert!(!view.fields.contains_key("email"));
    assert!(hub
        .find(&admin, Lookup::Email, "ann@example.org")
        .unwrap()
        .is_empty());
    assert_eq!(
        hub.list_gifts(&admin, &id).unwrap()[0].fields["amount"],
        "5.00"
    );
    hub.erase_subject(&admin, &id).unwrap();
    assert!(matches!(
        hub.get_subject(&admin, &id),
        Err(Error::Erased(_))
    ));
}

#[test]
fn a_bad_batch_item_refuses_the_whole_batch_and_names_the_item_and_field() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let err = hub
        .create_subjects(
            &admin,
            vec![
                input(json!({"given_name": "Ok"})),
                input(json!({"given_name": "Bad", "email": "nope"})),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    let msg = err.to_string();
    assert!(msg.contains("item 1") && msg.contains("email"), "{msg}");
    assert!(!msg.contains("nope"));
    assert!(
        hub.list_subjects(&admin, None, 10).unwrap().is_empty(),
        "nothing was written"
    );
}

fn as_role(hub: &Hub, name: &str, role: access_control::Role) -> Actor {
    let admin = hub.local_actor();
    let (principal, token) = hub.add_user(&admin, name, role).unwrap();
    assert_eq!(hub.authenticate(&token).unwrap().id, principal.id);
    Actor {
        principal,
        channel: Channel::Http("127.0.0.1".into()),
        request_id: None,
    }
}

#[test]
fn roles_see_only_their_field_groups_and_forbidden_writes_change_nothing() {
    use access_control::Role;
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub
        .create_subject(
            &admin,
            input(
                json!({"given_name": "Vic", "email": "vic@example.org", "notes": "n",
                         "religion": "r", "gift_aid_declared": true}),
            ),
        )
        .unwrap();
    let vera = as_role(&hub, "vera", Role::Volunteer);
    let view = hub.get_subject(&vera, &id).unwrap();
    assert_eq!(
        view.fields.keys().collect::<Vec<_>>(),
        ["email", "given_name"]
    );
    assert_eq!(view.withheld, ["gift_aid_declared", "notes", "religion"]);
    let fred = as_role(&hub, "fred", Role::Fundraiser);
    let view = hub.get_subject(&fred, &id).unwrap();
    assert_eq!(view.withheld, ["religion"]);
    // A fundraiser's write naming a special-category field is refused whole.
    let err = hub
        .update_subject(
            &fred,
            &id,
            json!({"given_name": "Changed", "religion": "x"})
                .as_object()
                .unwrap()
                .clone(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { fields, .. } if fields == &["religion".to_string()]),
        "{err}"
    );
    assert_eq!(
        hub.get_subject(&admin, &id).unwrap().fields["given_name"],
        "Vic"
    );
    assert_eq!(hub.get_subject(&admin, &id).unwrap().version, 1);
    // An auditor reads no personal data; a volunteer cannot erase.
    let olga = as_role(&hub, "olga", Role::Auditor);
    assert_eq!(hub.get_subject(&olga, &id).unwrap_err().code(), "forbidden");
    assert_eq!(
        hub.erase_subject(&vera, &id).unwrap_err().code(),
        "forbidden"
    );
    assert_eq!(
        hub.add_user(&fred, "x", Role::Admin).unwrap_err().code(),
        "forbidden"
    );
    let dpo = as_role(&hub, "dana", Role::Dpo);
    assert!(hub.get_subject(&dpo, &id).unwrap().withheld.is_empty());
    hub.erase_subject(&dpo, &id).unwrap();
}

#[test]
fn a_batch_holds_at_most_ten_thousand_subjects() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let too_many: Vec<NewSubjectInput> = (0..MAX_BATCH + 1)
        .map(|_| input(json!({"given_name": "X"})))
        .collect();
    let err = hub.create_subjects(&admin, too_many).unwrap_err();
    assert_eq!(err.code(), "bad_request");
    assert!(err.to_string().contains("at most 10000"), "{err}");
    assert!(hub.list_subjects(&admin, None, 10).unwrap().is_empty());
}

#[test]
fn with_the_audit_store_failing_reads_return_nothing() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub
        .create_subject(&admin, input(json!({"given_name": "Ann"})))
        .unwrap();
    hub.audit_log()
        .segments()
        .set_mode(vault::segments::AppendMode::Fail);
    let err = hub.get_subject(&admin, &id).unwrap_err();
    assert_eq!(err.code(), "audit_failure", "{err}");
    assert_eq!(
        hub.find(&admin, Lookup::Email, "ann@example.org")
            .unwrap_err()
            .code(),
        "audit_failure"
    );
    hub.audit_log()
        .segments()
        .set_mode(vault::segments::AppendMode::Write);
    let view = hub.get_subject(&admin, &id).unwrap();
    assert_eq!(view.fields["given_name"], "Ann");
    assert!(hub.audit_verify(&admin, None).unwrap().ok);
}

#[test]
fn a_write_and_its_event_are_stored_together_or_not_at_all() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub
        .create_subject(&admin, input(json!({"given_name": "Ann"})))
        .unwrap();
    let before = hub.audit_log().len();
    // The vault refuses the write (stale version) inside the batch: no `ok` event is kept,
    // an `error` event records the attempt instead.
    let patch = json!({"given_name": "Changed"})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(
        hub.update_subject(&admin, &id, patch.clone(), Some(9))
            .unwrap_err()
            .code(),
        "conflict"
    );
    let events = hub
        .audit_log()
        .query(&audit::Query {
            after: Some(before - 1),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .0;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].action.as_str(), events[0].outcome),
        ("update.subject", audit::Outcome::Error)
    );
    assert_eq!(events[0].reason.as_deref(), Some("conflict"));
    // A successful write leaves exactly one `ok` event, in the same batch.
    hub.update_subject(&admin, &id, patch, Some(1)).unwrap();
    let events = hub
        .audit_log()
        .query(&audit::Query {
            after: Some(before),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .0;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, audit::Outcome::Ok);
    assert!(hub.audit_log().verify(None).unwrap().ok);
}

#[test]
fn every_operation_leaves_an_event_and_auditors_can_answer_their_questions() {
    use access_control::Role;
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let fred = as_role(&hub, "fred", Role::Fundraiser);
    let olga = as_role(&hub, "olga", Role::Auditor);
    let a = hub
        .create_subject(&admin, input(json!({"given_name": "Ann", "religion": "r"})))
        .unwrap();
    let b = hub
        .create_subject(&admin, input(json!({"given_name": "Bob"})))
        .unwrap();
    hub.get_subject(&fred, &a).unwrap();
    hub.get_subject(&fred, &a).unwrap();
    hub.get_subject(&fred, &b).unwrap();
    let _ = hub.update_subject(
        &fred,
        &a,
        json!({"religion": "x"}).as_object().unwrap().clone(),
        None,
    );
    assert_eq!(hub.get_subject(&olga, &a).unwrap_err().code(), "forbidden");
    // Who read Ann's record?
    let q = audit::Query {
        subject: Some(a.to_string()),
        action: Some("read".into()),
        limit: 100,
        ..Default::default()
    };
    let (events, _) = hub.audit_query(&olga, &q).unwrap();
    let readers: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.actor_name.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        readers,
        [("fred", "ok"), ("fred", "ok"), ("olga", "denied")]
    );
    // Field names are recorded, values never.
    assert_eq!(events[0].fields, ["given_name"]);
    let (denied, _) = hub
        .audit_query(
            &olga,
            &audit::Query {
                actor: Some("fred".into()),
                outcome: Some(audit::Outcome::Denied),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (denied[0].action.as_str(), denied[0].fields.clone()),
        ("update.subject", vec!["religion".to_string()])
    );
    assert_eq!(denied[0].reason.as_deref(), Some("forbidden"));
    // A fundraiser may not read the log; the auditor may verify it.
    assert_eq!(hub.audit_query(&fred, &q).unwrap_err().code(), "forbidden");
    let v = hub.audit_verify(&olga, None).unwrap();
    assert!(v.ok, "{v:?}");
    let all = hub
        .audit_log()
        .query(&audit::Query {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .0;
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("Ann") && !text.contains("Bob"),
        "values in the audit log: {text}"
    );
    // The erased subject's id stays; the log still verifies.
    hub.erase_subject(&admin, &a).unwrap();
    assert!(hub.audit_verify(&olga, None).unwrap().ok);
}

fn consent(hub: &Hub, id: &domain::SubjectId, purpose: &str, event: &str) {
    let new = consent::NewConsent {
        purpose: purpose.into(),
        event: event.into(),
        source: "test-form".into(),
        ..Default::default()
    };
    hub.record_consent(&hub.local_actor(), id, new).unwrap();
}

#[test]
fn segments_hold_only_allowed_subjects_and_only_the_purposes_fields() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let mk = |n: &str| {
        hub.create_subject(&admin, input(json!({"given_name": n, "email": format!("{n}@example.org"), "notes": "x", "birth_date": "1970-01-01"}))).unwrap()
    };
    let (a, b, c, d, e) = (mk("a"), mk("b"), mk("c"), mk("d"), mk("e"));
    for s in [&a, &b, &c, &d] {
        consent(&hub, s, "newsletter-email", "given");
    }
    consent(&hub, &b, "newsletter-email", "withdrawn");
    consent(&hub, &c, "fundraising-post", "objected");
    consent(&hub, &d, "gift-aid-claim", "restricted");
    let mut rows = Vec::new();
    let n = hub
        .segment(&admin, "newsletter-email", None, &mut |r| {
            rows.push(r);
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(rows[0].id, a);
    assert_eq!(
        rows[0].fields.keys().collect::<Vec<_>>(),
        ["email", "given_name"]
    );
    // Legitimate interests: everyone but the objector and the restricted one.
    let mut ids = Vec::new();
    hub.segment(&admin, "fundraising-post", None, &mut |r| {
        ids.push(r.id);
        Ok(())
    })
    .unwrap();
    // (Ids made in the same millisecond order by their random part, so compare as sets.)
    let mut expected = vec![a, b, e];
    expected.sort();
    assert_eq!(ids, expected);
    // The explanation names the deciding event; the export is audited with its count.
    let x = hub
        .consent_explain(&admin, &c, "newsletter-email", None)
        .unwrap();
    assert_eq!(x.decision.reason, "objected");
    assert_eq!(
        x.decision.deciding_event.unwrap().purpose,
        "fundraising-post"
    );
    let (events, _) = hub
        .audit_query(
            &admin,
            &audit::Query {
                action: Some("export.segment".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(events[0].purpose.as_deref(), Some("newsletter-email"));
    assert_eq!(events[0].count, Some(1));
    assert_eq!(
        events[0].fields,
        [
            "email",
            "family_name",
            "given_name",
            "preferred_language",
            "title"
        ]
    );
    // A volunteer may not export segments.
    let vera = as_role(&hub, "vera", access_control::Role::Volunteer);
    assert_eq!(
        hub.segment(&vera, "newsletter-email", None, &mut |_| Ok(()))
            .unwrap_err()
            .code(),
        "forbidden"
    );
}

#[test]
fn a_purpose_scoped_read_goes_through_the_gate_and_returns_only_the_purposes_fields() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub.create_subject(&admin, input(json!({"given_name": "Ann", "email": "ann@example.org", "notes": "n", "city": "Leeds"}))).unwrap();
    let err = hub
        .get_subject_for(&admin, &id, Some("newsletter-email"))
        .unwrap_err();
    assert_eq!(err.code(), "consent_required");
    assert!(err.to_string().contains("no_consent"), "{err}");
    consent(&hub, &id, "newsletter-email", "given");
    let view = hub
        .get_subject_for(&admin, &id, Some("newsletter-email"))
        .unwrap();
    assert_eq!(
        view.fields.keys().collect::<Vec<_>>(),
        ["email", "given_name"]
    );
    consent(&hub, &id, "newsletter-email", "withdrawn");
    assert_eq!(
        hub.get_subject_for(&admin, &id, Some("newsletter-email"))
            .unwrap_err()
            .code(),
        "consent_required"
    );
    // Legitimate interests: readable for post until the subject objects.
    assert_eq!(
        hub.get_subject_for(&admin, &id, Some("fundraising-post"))
            .unwrap()
            .fields
            .keys()
            .collect::<Vec<_>>(),
        ["city", "given_name"]
    );
    consent(&hub, &id, "fundraising-post", "objected");
    assert_eq!(
        hub.get_subject_for(&admin, &id, Some("fundraising-post"))
            .unwrap_err()
            .code(),
        "consent_required"
    );
    let (events, _) = hub
        .audit_query(
            &admin,
            &audit::Query {
                subject: Some(id.to_string()),
                action: Some("read.subject".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(events.iter().all(|e| e.purpose.is_some()));
}

#[test]
fn a_batch_erasure_erases_all_keeps_holds_and_leaves_one_event() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let a = hub
        .create_subject(
            &admin,
            input(json!({"given_name": "A", "email": "a@example.org"})),
        )
        .unwrap();
    let b = hub
        .create_subject(&admin, input(json!({"given_name": "B"})))
        .unwrap();
    let c = hub
        .create_subject(&admin, input(json!({"given_name": "C", "gift_aid_declared": true, "gifts": [{"amount": "10", "date": "2024-05-01", "gift_aid": true}]})))
        .unwrap();
    let before = hub.audit_log().len();
    let certs = hub.erase_subjects(&admin, &[a, b, c]).unwrap();
    assert_eq!(certs.len(), 3);
    assert_eq!(certs.iter().filter(|c| c.held.is_some()).count(), 1);
    for id in [a, b, c] {
        assert_eq!(hub.get_subject(&admin, &id).unwrap_err().code(), "erased");
    }
    assert!(hub.held_data(&admin, &c).unwrap().is_some());
    assert!(hub
        .is_suppressed(domain::IndexKind::Email, "a@example.org")
        .unwrap());
    let erase_events: Vec<_> = hub
        .audit_log()
        .query(&audit::Query {
            after: Some(before - 1),
            action: Some("erase.subject".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .0;
    assert_eq!(erase_events.len(), 1);
    assert_eq!(erase_events[0].count, Some(3));
    assert!(hub.audit_log().verify(None).unwrap().ok);
}

/// A store that holds back every write of subject records, so that an import's next batch
/// is surely worked out while the one before is still in flight.
struct SlowSubjectWrites {
    inner: std::sync::Arc<dyn vault::Store>,
    delay: std::time::Duration,
}

impl vault::Store for SlowSubjectWrites {
    fn get(&self, ks: vault::Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, vault::StoreError> {
        self.inner.get(ks, key)
    }
    fn scan_prefix(&self, ks: vault::Keyspace, prefix: &[u8]) -> vault::EntryIter<'_> {
        self.inner.scan_prefix(ks, prefix)
    }
    fn scan_from(&self, ks: vault::Keyspace, start: &[u8]) -> vault::EntryIter<'_> {
        self.inner.scan_from(ks, start)
    }
    fn last_with_prefix(
        &self,
        ks: vault::Keyspace,
        prefix: &[u8],
    ) -> Result<Option<vault::Entry>, vault::StoreError> {
        self.inner.last_with_prefix(ks, prefix)
    }
    fn apply(&self, batch: vault::Batch) -> Result<(), vault::StoreError> {
        if batch
            .ops()
            .iter()
            .any(|(ks, _, _)| *ks == vault::keyspaces::SUBJECTS)
        {
            std::thread::sleep(self.delay);
        }
        self.inner.apply(batch)
    }
    fn flush(&self) -> Result<(), vault::StoreError> {
        self.inner.flush()
    }
    fn size_on_disk(&self) -> Result<u64, vault::StoreError> {
        self.inner.size_on_disk()
    }
}

#[test]
fn a_batch_prepared_while_the_one_before_is_written_sees_what_that_one_writes() {
    // Each write of subjects is held back, so batch n+1 is surely worked out while batch n
    // is in flight: its rows merge into subjects batch n creates, repeat batch n's gifts and
    // consent events (recorded once) and add consent events after batch n's. Read from the
    // store, those subjects would not exist yet; the overlay of the batch in flight has them.
    let (_tmp, dir, identity) = initialised();
    let sled = vault::SledStore::open(
        &dir.join(vault::layout::STORE),
        &vault::SledOptions::default(),
    )
    .unwrap();
    let slow = SlowSubjectWrites {
        inner: std::sync::Arc::new(sled),
        delay: std::time::Duration::from_millis(300),
    };
    let hub = Hub::open_on(
        &dir,
        &Unlock::Identity(identity),
        audit::AuditConfig::default(),
        std::sync::Arc::new(slow),
    )
    .unwrap();
    let admin = hub.local_actor();
    let people = imports::BATCH_ROWS;
    let row = |i: usize, tx: &str, flags: &str| {
        let family: String = (0..3)
            .map(|k| (b'a' + (i / 26usize.pow(k) % 26) as u8) as char)
            .collect();
        format!("p{i}@example.org,Ann,Fam{family},{flags},10.00,2024-01-01,{tx}\n")
    };
    let mut text = String::from(
        "Email,First Name,Last Name,Do Not Email,Do Not Phone,Total Amount,Date Received,Transaction ID\n",
    );
    for _ in 0..2 {
        for i in 0..people {
            text += &row(i, &format!("TX-A{i}"), "1,0");
        }
    }
    for i in 0..50 {
        text += &row(i, &format!("TX-B{i}"), "1,1");
    }
    let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::io::Cursor::new(text.clone().into_bytes())))
    };
    let options = ImportOptions {
        profile: importers::Profile::parse("civicrm"),
        name: "contributions.csv".into(),
        ..Default::default()
    };
    let (record, report) = hub.import(&admin, &source, &options, &|_| {}).unwrap();
    let report = report.to_vec().unwrap();
    assert_eq!(record.batches, 3);
    assert_eq!(record.counts.errors, 0, "{:?}", record.counts);
    let subject_of = |n: usize| report[n].subject_id.unwrap();
    for i in [0, 1, 49, 50, people - 1] {
        let id = subject_of(i);
        assert_eq!(subject_of(people + i), id, "person {i} is one subject");
        let gifts = hub.list_gifts(&admin, &id).unwrap();
        assert_eq!(gifts.len(), if i < 50 { 2 } else { 1 }, "person {i}");
        let events = hub.consent_history(&admin, &id).unwrap();
        // The repeated "Do Not Email" is one event; "Do Not Phone" comes after it.
        assert_eq!(events.len(), if i < 50 { 2 } else { 1 }, "person {i}");
    }
}

#[test]
fn an_import_objects_to_marketing_for_people_erased_at_their_request() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let gone = hub
        .create_subject(
            &admin,
            input(json!({"given_name": "Ann", "email": "gone@example.org"})),
        )
        .unwrap();
    hub.erase_subjects(&admin, &[gone]).unwrap();
    let text = "Email,First Name,Last Name\ngone@example.org,Ann,Lee\nstays@example.org,Bo,Tan\n";
    let report = crate::repair_tests::import(&hub, "people.csv", text);
    let events = |n: usize| {
        hub.consent_history(&admin, &report[n].subject_id.unwrap())
            .unwrap()
    };
    let back = events(0);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].event.as_str(), "objected");
    assert_eq!(back[0].source, "suppression-list");
    assert!(events(1).is_empty());
}

#[test]
fn a_subject_never_changed_since_its_creation_lapses_from_the_day_in_its_id() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    // Created on 2015-03-01 (as an import of that day would have), with no activity entry.
    let ms = 1_425_168_000_000u64;
    let old: Vec<domain::SubjectId> = (1..=3u8)
        .map(|i| domain::SubjectId::from_parts(ms, [i; 10]))
        .collect();
    let items: Vec<vault::NewSubject> = old
        .iter()
        .map(|_| vault::NewSubject {
            kind: domain::SubjectKind::Individual,
            fields: Vec::new(),
            gifts: Vec::new(),
        })
        .collect();
    hub.vault()
        .create_subjects_with(&items, Some(&old), vault::Batch::new())
        .unwrap();
    let [untouched, updated, erased] = [old[0], old[1], old[2]];
    // One changed since (today's activity entry), one erased, one created today.
    hub.update_subject(
        &admin,
        &updated,
        json!({"city": "Leeds"}).as_object().unwrap().clone(),
        None,
    )
    .unwrap();
    hub.erase_subject(&admin, &erased).unwrap();
    let new = hub
        .create_subject(&admin, input(json!({"given_name": "New"})))
        .unwrap();
    // Supporters lapse after six years without activity (the default retention.toml).
    let r = hub.retention_run(&admin, true, Some("2027-01-01")).unwrap();
    assert_eq!(r.subjects_checked, 3, "the erased subject is not checked");
    assert_eq!(r.lapsed_sample, vec![untouched]);
    // Far enough on, today's creation and today's change lapse too.
    let r = hub.retention_run(&admin, true, Some("2040-01-01")).unwrap();
    let mut all = vec![untouched, updated, new];
    all.sort();
    assert_eq!(r.lapsed_sample, all);
}

#[test]
fn what_is_not_there_is_missing_and_what_cannot_be_done_is_a_conflict() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let id = hub
        .create_subject(&admin, input(json!({"given_name": "Ann"})))
        .unwrap();
    // A request id that was never issued is a missing thing, not a malformed call.
    let err = hub.get_request(&admin, &id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // A subject made from one record has nothing to split off.
    let err = hub.split_subject(&admin, &id, 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // A gift is an amount given: one without, or with a null amount, is refused by field.
    for gift in [json!({"fund": "General"}), json!({"amount": null})] {
        let err = hub
            .add_gifts(&admin, &id, vec![gift.as_object().unwrap().clone()])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains("amount"), "{err}");
    }
    assert!(hub.list_gifts(&admin, &id).unwrap().is_empty());
}

#[test]
fn a_ledger_written_before_the_expiry_index_gets_it_when_opened() {
    let (_tmp, dir, identity) = initialised();
    let unlock = Unlock::Identity(identity);
    let id = {
        let hub = Hub::open(&dir, &unlock).unwrap();
        let actor = hub.local_actor();
        let id = hub
            .create_subject(&actor, input(json!({"given_name": "Ann"})))
            .unwrap();
        hub.record_consent(
            &actor,
            &id,
            NewConsent {
                purpose: "newsletter-email".into(),
                event: "given".into(),
                source: "form-7".into(),
                expires: Some("2099-01-15T00:00:00Z".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            hub.consents_expiring(&actor, "2099-01-01", "2099-02-01", 10)
                .unwrap()
                .len(),
            1
        );
        // As a ledger written by an earlier version: no index, no flag.
        let store = hub.vault().store().clone();
        let mut b = vault::Batch::new();
        for entry in store.scan_prefix(vault::keyspaces::CONSENT_EXPIRY, &[]) {
            b.delete(vault::keyspaces::CONSENT_EXPIRY, entry.unwrap().0);
        }
        b.delete(vault::keyspaces::META, b"consent-expiry-indexed".to_vec());
        hub.vault().apply_durably(b).unwrap();
        assert!(hub
            .consents_expiring(&actor, "2099-01-01", "2099-02-01", 10)
            .unwrap()
            .is_empty());
        id
    };
    let hub = Hub::open(&dir, &unlock).unwrap();
    let found = hub
        .consents_expiring(&hub.local_actor(), "2099-01-01", "2099-02-01", 10)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].subject, id);
    assert_eq!(found[0].expires, "2099-01-15T00:00:00.000000Z");
}
