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

#[test]
fn non_admin_roles_are_denied_by_default_until_policies_grant_more() {
    let (_tmp, hub) = hub();
    let admin = hub.local_actor();
    let (vera, token) = hub
        .add_user(&admin, "vera", access_control::Role::Volunteer)
        .unwrap();
    assert_eq!(hub.authenticate(&token).unwrap().id, vera.id);
    let actor = Actor {
        principal: vera,
        channel: Channel::Http("127.0.0.1".into()),
        request_id: None,
    };
    let id = hub
        .create_subject(&admin, input(json!({"given_name": "X"})))
        .unwrap();
    assert_eq!(
        hub.get_subject(&actor, &id).unwrap_err().code(),
        "forbidden"
    );
    assert_eq!(
        hub.erase_subject(&actor, &id).unwrap_err().code(),
        "forbidden"
    );
    assert!(hub.get_subject(&admin, &id).is_ok());
}
