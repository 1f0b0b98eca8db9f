use super::*;
use serde_json::json;

fn hub() -> (tempfile::TempDir, Hub) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let id = tmp.path().join("id.txt");
    Hub::init(
        &dir,
        &SealTo::Identity(id.clone()),
        &PolicyFiles::defaults(),
    )
    .unwrap();
    let hub = Hub::open(&dir, &Unlock::Identity(id)).unwrap();
    (tmp, hub)
}

fn input(v: serde_json::Value) -> NewSubjectInput {
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
