use std::sync::Arc;

use super::*;

fn principals() -> (tempfile::TempDir, Principals) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let id = tmp.path().join("id.txt");
    vault::Vault::init(&dir, &vault::SealTo::Identity(id.clone())).unwrap();
    let schema =
        Arc::new(domain::Schema::from_toml(include_str!("../../policies/schema.toml")).unwrap());
    let v = vault::Vault::open(&dir, &vault::Unlock::Identity(id), schema).unwrap();
    (tmp, Principals::new(Arc::new(v)))
}

#[test]
fn a_token_authenticates_until_revoked_and_is_never_stored() {
    let (tmp, p) = principals();
    let (vera, token) = p.add("vera", Role::Volunteer, vault::Batch::new()).unwrap();
    assert_eq!(token.len(), 4 + 64);
    assert_eq!(p.authenticate(&token).unwrap().id, vera.id);
    assert!(matches!(
        p.authenticate("stw_nope"),
        Err(Error::Unauthenticated)
    ));
    let mut wrong = token.clone();
    wrong.replace_range(10..11, if &token[10..11] == "a" { "b" } else { "a" });
    assert!(matches!(
        p.authenticate(&wrong),
        Err(Error::Unauthenticated)
    ));
    // Reissue: the old token stops working.
    let (_, token2) = p.reissue("vera", vault::Batch::new()).unwrap();
    assert!(matches!(
        p.authenticate(&token),
        Err(Error::Unauthenticated)
    ));
    assert!(p.authenticate(&token2).is_ok());
    p.revoke("vera", vault::Batch::new()).unwrap();
    assert!(matches!(
        p.authenticate(&token2),
        Err(Error::Unauthenticated)
    ));
    drop(p);
    // The token itself is nowhere in the data directory.
    for entry in walk(tmp.path().join("d")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(20).any(|w| w == &token2.as_bytes()[4..24]),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn names_are_unique_and_roles_checked() {
    let (_tmp, p) = principals();
    p.add("ada", Role::Admin, vault::Batch::new()).unwrap();
    assert!(matches!(
        p.add("ada", Role::Dpo, vault::Batch::new()),
        Err(Error::NameTaken(_))
    ));
    assert!(matches!(
        p.add("bad name!", Role::Dpo, vault::Batch::new()),
        Err(Error::BadName)
    ));
    assert!(matches!(
        "wizard".parse::<Role>(),
        Err(Error::UnknownRole(_))
    ));
    assert_eq!(
        p.set_role("ada", Role::Auditor, vault::Batch::new())
            .unwrap()
            .role,
        Role::Auditor
    );
    p.ensure_local_admin().unwrap();
    assert!(matches!(
        p.revoke(LOCAL_ADMIN, vault::Batch::new()),
        Err(Error::BuiltIn)
    ));
    assert_eq!(p.list().unwrap().len(), 2);
}

const MODEL: &str = include_str!("../../policies/model.conf");
const POLICY: &str = include_str!("../../policies/policy.csv");

#[test]
fn the_default_policy_denies_by_default_and_matches_the_charity_rules() {
    let p = Policy::load(MODEL, POLICY).unwrap();
    let groups = [
        "subject:identity",
        "subject:contact",
        "subject:financial",
        "subject:special",
        "subject:profile",
    ];
    for g in groups {
        assert!(p.allows(Role::Admin, g, Action::Read));
        assert!(
            !p.allows(Role::Auditor, g, Action::Read),
            "auditor reads {g}"
        );
        assert!(!p.allows(Role::Volunteer, g, Action::Write));
    }
    assert!(p.allows(Role::Volunteer, "subject:identity", Action::Read));
    assert!(p.allows(Role::Volunteer, "subject:contact", Action::Read));
    assert!(!p.allows(Role::Volunteer, "subject:financial", Action::Read));
    assert!(!p.allows(Role::Volunteer, "subject:special", Action::Read));
    assert!(p.allows(Role::Fundraiser, "subject:financial", Action::Write));
    assert!(!p.allows(Role::Fundraiser, "subject:special", Action::Read));
    assert!(p.allows(Role::DataManager, "imports", Action::Import));
    assert!(p.allows(Role::DataManager, "subject", Action::Merge));
    assert!(p.allows(Role::Dpo, "subject", Action::Erase));
    assert!(p.allows(Role::Dpo, "requests", Action::Write));
    assert!(p.allows(Role::Auditor, "audit", Action::Read));
    for role in Role::ALL {
        let only_admin = role == Role::Admin;
        assert_eq!(p.allows(role, "users", Action::Admin), only_admin, "{role}");
        assert_eq!(p.allows(role, "keys", Action::Admin), only_admin, "{role}");
    }
    assert!(!p.allows(Role::Admin, "no-such-object", Action::Read));
}

#[test]
fn rules_can_be_changed_as_data_and_bad_lines_are_named() {
    let p = Policy::load(MODEL, "p, volunteer, subject:financial, read\n").unwrap();
    assert!(p.allows(Role::Volunteer, "subject:financial", Action::Read));
    assert!(!p.allows(Role::Volunteer, "subject:identity", Action::Read));
    // Inheritance: a fundraiser gets the volunteer's rules.
    let p = Policy::load(
        MODEL,
        "p, volunteer, subject:contact, read\ng, fundraiser, volunteer\n",
    )
    .unwrap();
    assert!(p.allows(Role::Fundraiser, "subject:contact", Action::Read));
    let err = Policy::load(MODEL, "# c\n\np, wizard, subject:contact, read\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy.csv line 3: unknown role \"wizard\""
    );
    let err = Policy::load(MODEL, "p, admin, subject:phone, read\n").unwrap_err();
    assert!(err.to_string().contains("unknown object \"subject:phone\""));
    let err = Policy::load(MODEL, "p, admin, keys, fly\n").unwrap_err();
    assert!(err.to_string().contains("unknown action"));
    let err = Policy::load("[broken", "p, admin, keys, admin\n").unwrap_err();
    assert!(err.to_string().contains("casbin"));
}
