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
    let (vera, token) = p
        .add("vera", Role::Volunteer, None, vault::Batch::new())
        .unwrap();
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
    p.add("ada", Role::Admin, None, vault::Batch::new())
        .unwrap();
    assert!(matches!(
        p.add("ada", Role::Dpo, None, vault::Batch::new()),
        Err(Error::NameTaken(_))
    ));
    assert!(matches!(
        p.add("bad name!", Role::Dpo, None, vault::Batch::new()),
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

fn sign_in(p: &Principals, name: &str, password: &str, now: u64) -> Result<String, Error> {
    let (found, outcome) = p.check_password(name, password, now).unwrap();
    let mut batch = vault::Batch::new();
    let result = match (found, outcome) {
        (Some(mut who), Ok(())) => {
            p.record_sign_in(&mut who, &mut batch);
            Ok(p.start_session(&who, now, &mut batch).unwrap())
        }
        (Some(mut who), Err(Error::BadCredentials)) => {
            p.record_failed_sign_in(&mut who, now, &mut batch);
            Err(Error::BadCredentials)
        }
        (_, Err(e)) => Err(e),
        (None, Ok(())) => unreachable!("an unknown name never signs in"),
    };
    p.vault().apply_durably(batch).unwrap();
    result
}

#[test]
fn a_console_password_signs_in_and_five_failures_lock_the_account() {
    let (tmp, p) = principals();
    const PW: &str = "correct horse battery staple";
    assert!(matches!(
        p.add(
            "short",
            Role::Volunteer,
            Some("too short"),
            vault::Batch::new()
        ),
        Err(Error::WeakPassword)
    ));
    assert!(
        p.by_name("short").is_err(),
        "a refused password adds no user"
    );
    p.add("vera", Role::Volunteer, Some(PW), vault::Batch::new())
        .unwrap();
    p.add("tok", Role::Volunteer, None, vault::Batch::new())
        .unwrap();
    let t0 = access_control_now();
    assert!(sign_in(&p, "vera", PW, t0).is_ok());
    assert!(matches!(
        sign_in(&p, "nobody", PW, t0),
        Err(Error::BadCredentials)
    ));
    assert!(
        matches!(sign_in(&p, "tok", PW, t0), Err(Error::BadCredentials)),
        "no password set"
    );
    assert!(matches!(
        sign_in(&p, LOCAL_ADMIN, PW, t0),
        Err(Error::BadCredentials)
    ));
    for _ in 0..MAX_FAILED_SIGN_INS {
        assert!(matches!(
            sign_in(&p, "vera", "wrong", t0),
            Err(Error::BadCredentials)
        ));
    }
    // Locked: even the right password is refused, with the minutes left.
    assert!(matches!(
        sign_in(&p, "vera", PW, t0 + 60),
        Err(Error::Locked { minutes: 14 })
    ));
    assert!(sign_in(&p, "vera", PW, t0 + LOCKOUT_SECONDS + 1).is_ok());
    // Setting a password lifts a lock.
    for _ in 0..MAX_FAILED_SIGN_INS {
        let _ = sign_in(&p, "vera", "wrong", t0);
    }
    p.set_password("vera", "another long passphrase", vault::Batch::new())
        .unwrap();
    assert!(sign_in(
        &p,
        "vera",
        "another long passphrase",
        access_control_now() + 2
    )
    .is_ok());
    // Neither the password nor its hash is in what the principal shows.
    let shown = serde_json::to_string(&p.by_name("vera").unwrap()).unwrap();
    assert!(!shown.contains("argon2"), "{shown}");
    drop(p);
    let _ = tmp;
}

fn access_control_now() -> u64 {
    crate::now()
}

#[test]
fn a_session_ends_when_idle_too_long_at_its_absolute_limit_and_on_password_change() {
    let (_tmp, p) = principals();
    const PW: &str = "correct horse battery staple";
    p.add("vera", Role::Volunteer, Some(PW), vault::Batch::new())
        .unwrap();
    let t0 = access_control_now() + 5;
    let token = sign_in(&p, "vera", PW, t0).unwrap();
    let s = p.session(&token, t0 + 10).unwrap();
    assert_eq!(s.principal.name, "vera");
    assert!(p.check_csrf(&token, &s.csrf));
    assert!(!p.check_csrf(&token, &"0".repeat(64)));
    assert!(!p.check_csrf(&token, "not hex"));
    let other = sign_in(&p, "vera", PW, t0).unwrap();
    assert!(
        !p.check_csrf(&other, &s.csrf),
        "a CSRF token belongs to one session"
    );
    // Kept alive by use, until the absolute limit.
    let mut t = t0;
    while t + SESSION_IDLE_SECONDS / 2 < t0 + SESSION_ABSOLUTE_SECONDS {
        t += SESSION_IDLE_SECONDS / 2;
        assert!(p.session(&token, t).is_ok(), "in use at +{}", t - t0);
    }
    assert!(matches!(
        p.session(&token, t0 + SESSION_ABSOLUTE_SECONDS),
        Err(Error::Unauthenticated)
    ));
    // Idle: the other session was not used.
    assert!(matches!(
        p.session(&other, t0 + SESSION_IDLE_SECONDS),
        Err(Error::Unauthenticated)
    ));
    // Sign-out ends it; a changed password ends every earlier session.
    let t1 = access_control_now();
    let a = sign_in(&p, "vera", PW, t1).unwrap();
    let b = sign_in(&p, "vera", PW, t1).unwrap();
    let mut batch = vault::Batch::new();
    p.end_session(&a, &mut batch);
    p.vault().apply_durably(batch).unwrap();
    assert!(p.session(&a, t1 + 1).is_err());
    assert!(p.session(&b, t1 + 1).is_ok());
    p.set_password("vera", "another long passphrase", vault::Batch::new())
        .unwrap();
    assert!(p.session(&b, t1 + 1).is_err());
    // Revocation ends sessions too.
    let t2 = access_control_now() + 2;
    let c = sign_in(&p, "vera", "another long passphrase", t2).unwrap();
    assert!(p.session(&c, t2 + 1).is_ok());
    p.revoke("vera", vault::Batch::new()).unwrap();
    assert!(p.session(&c, t2 + 2).is_err());
    assert!(matches!(
        p.session("stw_s_short", t0),
        Err(Error::Unauthenticated)
    ));
}
