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
    let (vera, token) = p.add("vera", Role::Volunteer).unwrap();
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
    let (_, token2) = p.reissue("vera").unwrap();
    assert!(matches!(
        p.authenticate(&token),
        Err(Error::Unauthenticated)
    ));
    assert!(p.authenticate(&token2).is_ok());
    p.revoke("vera").unwrap();
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
    p.add("ada", Role::Admin).unwrap();
    assert!(matches!(p.add("ada", Role::Dpo), Err(Error::NameTaken(_))));
    assert!(matches!(p.add("bad name!", Role::Dpo), Err(Error::BadName)));
    assert!(matches!(
        "wizard".parse::<Role>(),
        Err(Error::UnknownRole(_))
    ));
    assert_eq!(
        p.set_role("ada", Role::Auditor).unwrap().role,
        Role::Auditor
    );
    p.ensure_local_admin().unwrap();
    assert!(matches!(p.revoke(LOCAL_ADMIN), Err(Error::BuiltIn)));
    assert_eq!(p.list().unwrap().len(), 2);
}
