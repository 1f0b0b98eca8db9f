//! Hub tests through a real sled store: source records, `match check`, split and its undo,
//! household proposals, the suppression objection's atomic write, a damaged audit log.

use serde_json::json;

use crate::tests::{hub, input};
use crate::{Hub, ImportOptions, Undone};

/// Imports `text` with the generic profile; the report's rows.
pub(crate) fn import(hub: &Hub, name: &str, text: &str) -> Vec<crate::RowReport> {
    let text = text.to_string();
    let source = move || -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::io::Cursor::new(text.clone().into_bytes())))
    };
    let options = ImportOptions {
        profile: importers::Profile::parse("generic"),
        name: name.into(),
        ..Default::default()
    };
    let admin = hub.local_actor();
    let (_, report) = hub.import(&admin, &source, &options, &|_| {}).unwrap();
    report.to_vec().unwrap()
}

const HEADER: &str = "First Name,Last Name,Email,Birth Date,Street Address,City,Postal Code\n";

#[test]
fn a_later_file_is_matched_against_every_record_merged_not_only_the_survivor() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    // One person twice: the second row has moved house, so the survivor's address is new.
    let first = import(
        &hub,
        "a.csv",
        &format!(
            "{HEADER}Ann,Lee,ann.lee@example.org,1970-03-02,1 Mill Lane,Leeds,LS1 4AB\n\
             Ann,Lee,ann.lee@example.org,1970-03-02,5 Oak Road,York,YO1 7HH\n\
             Bob,Tan,bob.tan@example.org,1981-05-06,9 Elm Street,Bath,BA1 1AA\n"
        ),
    );
    let ann = first[0].subject_id.unwrap();
    assert_eq!(first[1].subject_id, Some(ann), "{first:?}");
    let sources = hub.source_records(&admin, &ann).unwrap();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources[1].1.ends_with("#3"), "{sources:?}");
    // A reader sees the profile only, never the source records.
    let view = hub.get_subject(&admin, &ann).unwrap();
    assert_eq!(view.fields["city"], "York");
    assert_eq!(view.fields.len(), 6, "{:?}", view.fields.keys());
    // Another system still has her old address and no email: against the survivor she lives
    // elsewhere; against the record she came from first she is the same person at home.
    let second = import(
        &hub,
        "b.csv",
        &format!("{HEADER}Ann,Lee,,1970-03-02,1 Mill Lane,Leeds,LS1 4AB\n"),
    );
    assert_eq!(second[0].outcome, "merged", "{second:?}");
    assert_eq!(second[0].subject_id, Some(ann));
    assert_eq!(hub.source_records(&admin, &ann).unwrap().len(), 3);
    // Importing the same records again adds nothing.
    let again = import(
        &hub,
        "c.csv",
        &format!("{HEADER}Ann,Lee,,1970-03-02,1 Mill Lane,Leeds,LS1 4AB\n"),
    );
    assert_eq!(again[0].outcome, "unchanged", "{again:?}");
    assert!(hub.match_check(&admin).unwrap().findings.is_empty());
}

#[test]
fn a_wrong_merge_is_found_split_and_the_split_undone() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let john = hub
        .create_subject(
            &admin,
            input(
                json!({"given_name": "John", "family_name": "Green", "birth_date": "1950-01-02",
                "email": "j.green@example.org"}),
            ),
        )
        .unwrap();
    let joan = hub
        .create_subject(
            &admin,
            input(
                json!({"given_name": "Joan", "family_name": "Green", "birth_date": "1955-07-08",
                "phone": "+441632960001"}),
            ),
        )
        .unwrap();
    let given = consent::NewConsent {
        purpose: "newsletter-email".into(),
        event: "given".into(),
        source: "web-form".into(),
        ..Default::default()
    };
    hub.record_consent(&admin, &joan, given).unwrap();
    // Someone merges two different people.
    let merge = hub.merge_subjects(&admin, &john, &joan, None).unwrap();
    let check = hub.match_check(&admin).unwrap();
    assert_eq!(check.findings.len(), 1, "{check:?}");
    let f = &check.findings[0];
    assert_eq!(f.subject, john);
    assert_eq!(f.records, [1, 2]);
    assert_eq!(f.reason, "birth_date");
    assert_eq!(f.repair, "split");
    // Nothing personal in what the check reports.
    let text = serde_json::to_string(&check).unwrap();
    for v in ["Joan", "John", "Green", "1955", "j.green"] {
        assert!(!text.contains(v), "{v} in {text}");
    }
    // A record number outside the list is refused, naming the range.
    let err = hub.split_subject(&admin, &john, 3).unwrap_err().to_string();
    assert!(err.contains("between 1 and 2"), "{err}");
    let split = hub.split_subject(&admin, &john, 2).unwrap();
    let kept = hub.get_subject(&admin, &john).unwrap();
    assert_eq!(kept.fields["given_name"], "John");
    assert_eq!(kept.fields["birth_date"], "1950-01-02");
    assert!(
        !kept.fields.contains_key("phone"),
        "{:?}",
        kept.fields.keys()
    );
    let out = hub.get_subject(&admin, &split.split_off).unwrap();
    assert_eq!(out.fields["given_name"], "Joan");
    assert_eq!(out.fields["phone"], "+441632960001");
    assert!(!out.fields.contains_key("email"));
    assert!(hub.match_check(&admin).unwrap().findings.is_empty());
    // The split is audited with both subjects.
    let q = audit::Query {
        subject: Some(split.split_off.to_string()),
        action: Some("merge.split".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(hub.audit_query(&admin, &q).unwrap().0.len(), 1);
    // Joan's consent went with her record, and John's ledger no longer holds it.
    assert_eq!(split.consent_moved, 1);
    assert_eq!(
        hub.consent_history(&admin, &split.split_off).unwrap().len(),
        1
    );
    assert!(hub.consent_history(&admin, &john).unwrap().is_empty());
    // Undo: John's record as it was after the merge, the subject split off gone.
    let undone = hub.undo(&admin, &split.id).unwrap();
    assert!(matches!(undone, Undone::Split(_)));
    assert_eq!(hub.source_records(&admin, &john).unwrap().len(), 2);
    assert!(hub.get_subject(&admin, &split.split_off).is_err());
    assert!(hub.undo(&admin, &split.id).is_err(), "undone twice");
    // The merge itself can still be undone afterwards.
    hub.undo(&admin, &merge.id).unwrap();
    assert_eq!(
        hub.get_subject(&admin, &joan).unwrap().fields["given_name"],
        "Joan"
    );
}

#[test]
fn a_new_subject_on_the_suppression_list_gets_its_objection_in_the_same_write() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let gone = hub
        .create_subject(
            &admin,
            input(json!({"given_name": "Ann", "email": "gone@example.org"})),
        )
        .unwrap();
    hub.erase_subjects(&admin, &[gone]).unwrap();
    let before = hub.audit_log().len();
    let back = hub
        .create_subject(
            &admin,
            input(json!({"given_name": "Ann", "email": "Gone@example.org"})),
        )
        .unwrap();
    // One write: the subject, its objection and one audit event (not a second write with
    // an event of its own, which a crash between the two could lose).
    let events = hub
        .audit_log()
        .query(&audit::Query {
            after: Some(before - 1),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .0;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create.subject"]);
    let history = hub.consent_history(&admin, &back).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].event.as_str(), "objected");
    assert_eq!(history[0].source, "suppression-list");
}

#[test]
fn two_people_of_one_house_are_proposed_as_a_household_and_linked_never_merged() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let header = "First Name,Last Name,Email,Phone,Birth Date,Street,City,Postal Code\n";
    let report = import(
        &hub,
        "house.csv",
        &format!(
            "{header}Mary,Green,greens@example.org,0117 496 0001,1950-01-02,4 Elm Close,Bristol,BS6 9TZ\n\
             Peter,Green,greens@example.org,0117 496 0001,1948-05-06,4 Elm Close,Bristol,BS6 9TZ\n"
        ),
    );
    let (mary, peter) = (report[0].subject_id.unwrap(), report[1].subject_id.unwrap());
    assert_ne!(mary, peter, "{report:?}");
    let items = hub.review_list(&admin, false).unwrap();
    let item = items
        .iter()
        .find(|i| i.kind == "household")
        .unwrap_or_else(|| panic!("no household proposal: {items:?}"));
    assert!([item.a, item.b].contains(&mary) && [item.a, item.b].contains(&peter));
    // Accepting it as a merge is refused: they are two people.
    let err = hub.review_accept(&admin, &item.id).unwrap_err().to_string();
    assert!(err.contains("household"), "{err}");
    let linked = hub.review_link(&admin, &item.id).unwrap();
    assert_eq!(linked.status, "linked");
    let house = |id| hub.get_subject(&admin, &id).unwrap().fields["household"].clone();
    assert_eq!(house(mary), house(peter));
    assert_eq!(
        hub.get_subject(&admin, &mary).unwrap().fields["given_name"],
        "Mary"
    );
    assert!(hub.review_link(&admin, &item.id).is_err(), "linked twice");
}

#[test]
fn a_truncated_audit_log_can_still_be_verified() {
    let (tmp, hub) = hub();
    let admin = hub.local_actor();
    for i in 0..5 {
        hub.create_subject(&admin, input(json!({"given_name": format!("P{i}")})))
            .unwrap();
    }
    drop(hub);
    // Someone removes the last block of the log while Steward is stopped.
    let segments = vault::segments::list(&tmp.path().join("d").join(vault::layout::AUDIT)).unwrap();
    let active = segments.last().unwrap();
    let raw = active.read().unwrap().raw;
    let last_at = vault::segments::frames(&raw)
        .map(|f| f.unwrap().payload.len() + 8)
        .last()
        .unwrap();
    std::fs::write(&active.path, &raw[..raw.len() - last_at]).unwrap();
    let hub = Hub::open(
        &tmp.path().join("d"),
        &vault::Unlock::Identity(tmp.path().join("id.txt")),
    )
    .unwrap();
    let admin = hub.local_actor();
    // Appends are refused (the log is shorter than its head), yet verify answers, and says
    // what is wrong.
    assert!(hub
        .create_subject(&admin, input(json!({"given_name": "Q"})))
        .is_err());
    let v = hub.audit_verify(&admin, None).unwrap();
    assert!(!v.ok);
    assert_eq!(v.problem.unwrap().kind, "truncated");
}

#[test]
fn an_audit_filter_that_cannot_match_is_refused_naming_it() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let q = |from: Option<&str>, action: Option<&str>| audit::Query {
        from: from.map(str::to_string),
        action: action.map(str::to_string),
        limit: 10,
        ..Default::default()
    };
    let err = hub
        .audit_query(&admin, &q(Some("garbage"), None))
        .unwrap_err();
    assert!(err.to_string().starts_with("from:"), "{err}");
    let err = hub
        .audit_query(&admin, &q(None, Some("Read Subject!")))
        .unwrap_err();
    assert!(err.to_string().starts_with("action:"), "{err}");
    // Shaped like an action, but no event can carry it.
    for nonsense in ["nonsense", "read.nonsense", "subject.read"] {
        let err = hub
            .audit_query(&admin, &q(None, Some(nonsense)))
            .unwrap_err();
        assert!(err.to_string().starts_with("action:"), "{nonsense}: {err}");
        assert!(
            !err.to_string().contains(nonsense),
            "the value is not echoed: {err}"
        );
    }
    for known in [
        "read",
        "subject",
        "read.subject",
        "export.access-package",
        "merge",
    ] {
        assert!(
            hub.audit_query(&admin, &q(Some("2026-01-01"), Some(known)))
                .is_ok(),
            "{known}"
        );
    }
}
