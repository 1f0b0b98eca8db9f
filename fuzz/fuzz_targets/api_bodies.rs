//! The JSON bodies of the API's write routes, through the hub as the server hands them on:
//! a new subject, a batch, a patch, a consent event. Whatever the body, the hub answers with
//! a result (never a panic), and what it accepted reads back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

struct Fixture {
    _tmp: tempfile::TempDir,
    hub: hub::Hub,
    subject: domain::SubjectId,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("data");
        let identity = tmp.path().join("identity.txt");
        hub::Hub::init(
            &dir,
            &hub::keys::SealTo::Identity(identity.clone()),
            &hub::PolicyFiles::defaults(),
        )
        .expect("init");
        let hub = hub::Hub::open(&dir, &hub::keys::Unlock::Identity(identity)).expect("open");
        let actor = hub.local_actor();
        let first = hub::NewSubjectInput::from_json(serde_json::json!({
            "kind": "person", "given_name": "Fuzz", "family_name": "Target"
        }))
        .expect("a valid subject");
        let subject = hub.create_subject(&actor, first).expect("created");
        Fixture {
            _tmp: tmp,
            hub,
            subject,
        }
    })
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let f = fixture();
    let actor = f.hub.local_actor();

    if let Ok(input) = hub::NewSubjectInput::from_json(body.clone()) {
        if let Ok(id) = f.hub.create_subject(&actor, input) {
            f.hub
                .get_subject(&actor, &id)
                .expect("a created subject reads back");
        }
    }
    if let Value::Array(items) = &body {
        let batch: Result<Vec<_>, _> = items
            .iter()
            .cloned()
            .map(hub::NewSubjectInput::from_json)
            .collect();
        if let Ok(batch) = batch {
            if let Ok(ids) = f.hub.create_subjects(&actor, batch) {
                for id in ids {
                    f.hub
                        .get_subject(&actor, &id)
                        .expect("a created subject reads back");
                }
            }
        }
    }
    if let Value::Object(map) = &body {
        if f.hub
            .update_subject(&actor, &f.subject, map.clone(), None)
            .is_ok()
        {
            f.hub
                .get_subject(&actor, &f.subject)
                .expect("an updated subject reads back");
        }
        let consent = hub::NewConsent {
            purpose: text(map, "purpose").unwrap_or_default(),
            event: text(map, "event").unwrap_or_default(),
            source: text(map, "source").unwrap_or_default(),
            at: text(map, "at"),
            method: text(map, "method"),
            jurisdiction: text(map, "jurisdiction"),
            notice_version: text(map, "notice_version"),
            evidence: text(map, "evidence"),
            contact_point: text(map, "contact_point"),
            ..Default::default()
        };
        let _ = f.hub.record_consent(&actor, &f.subject, consent);
    }
});
