use std::sync::Arc;

use domain::{Schema, SubjectId};

use super::*;

fn schema() -> Schema {
    Schema::from_toml(include_str!("../../policies/schema.toml")).unwrap()
}

fn purposes() -> Purposes {
    Purposes::from_toml(include_str!("../../policies/purposes.toml"), &schema()).unwrap()
}

const KINDS: [EventKind; 8] = [
    EventKind::Given,
    EventKind::Refused,
    EventKind::Withdrawn,
    EventKind::Expired,
    EventKind::Objected,
    EventKind::Renewed,
    EventKind::Restricted,
    EventKind::Unrestricted,
];

fn ev(seq: u64, purpose: &str, kind: EventKind, t: u32, expires: Option<u32>) -> ConsentEvent {
    let ts = |n: u32| format!("2030-01-01T00:{:02}:{:02}.000000Z", n / 60, n % 60);
    ConsentEvent {
        seq,
        subject: SubjectId::from_parts(1, [1; 10]),
        purpose: purpose.into(),
        event: kind,
        time: ts(t),
        recorded_at: ts(t),
        lawful_basis: Basis::Consent,
        jurisdiction: "uk-gdpr".into(),
        collection_method: "form".into(),
        source: "test".into(),
        notice_version: None,
        notice_hash: None,
        recorded_by: "x".into(),
        evidence: None,
        expires: expires.map(ts),
        contact_point: None,
        pecr_basis: None,
        pecr_conditions: vec![],
        merged_from: None,
    }
}

/// The reference: walk the events in time order and keep a few flags. Written separately from
/// the gate, in the plainest way, to check it.
fn reference(
    p: &Purpose,
    all: &Purposes,
    events: &[ConsentEvent],
    at: &str,
) -> (bool, &'static str) {
    let mut sorted: Vec<&ConsentEvent> = events.iter().filter(|e| e.time.as_str() <= at).collect();
    sorted.sort_by(|a, b| (a.time.as_str(), a.seq).cmp(&(b.time.as_str(), b.seq)));
    let mut restricted = false;
    let mut objected = false;
    let mut consent: Option<&ConsentEvent> = None;
    for e in sorted {
        let is_marketing = all.get(&e.purpose).map(|x| x.marketing).unwrap_or(false);
        match e.event {
            EventKind::Restricted => restricted = true,
            EventKind::Unrestricted => restricted = false,
            EventKind::Objected => {
                if e.purpose == p.name || (p.marketing && is_marketing) {
                    objected = true;
                }
            }
            EventKind::Given | EventKind::Renewed => {
                if e.purpose == p.name {
                    objected = false;
                    consent = Some(e);
                }
            }
            EventKind::Refused | EventKind::Withdrawn | EventKind::Expired => {
                if e.purpose == p.name {
                    consent = Some(e);
                }
            }
        }
    }
    if restricted {
        return (false, "restricted");
    }
    if objected {
        return (false, "objected");
    }
    match p.basis {
        Basis::Consent => match consent {
            None => (false, "no_consent"),
            Some(e) if e.event == EventKind::Given || e.event == EventKind::Renewed => {
                match &e.expires {
                    Some(x) if at >= x.as_str() => (false, "consent_expired"),
                    _ => (true, "consent_given"),
                }
            }
            Some(e) if e.event == EventKind::Refused => (false, "consent_refused"),
            Some(e) if e.event == EventKind::Expired => (false, "consent_expired"),
            Some(_) => (false, "consent_withdrawn"),
        },
        Basis::LegitimateInterests => match consent {
            Some(e)
                if (e.event == EventKind::Withdrawn || e.event == EventKind::Refused)
                    && p.opt_out =>
            {
                (false, "opted_out")
            }
            _ => (true, "legitimate_interests"),
        },
        Basis::Contract => (true, "contract"),
        Basis::LegalObligation => (true, "legal_obligation"),
        Basis::VitalInterests => (true, "vital_interests"),
        Basis::PublicTask => (true, "public_task"),
    }
}

#[test]
fn the_gate_agrees_with_a_plain_reference_fold_on_random_histories() {
    let all = purposes();
    let names = [
        "newsletter-email",
        "fundraising-post",
        "gift-aid-claim",
        "wealth-screening",
        "donor-stewardship",
        "volunteer-coordination",
    ];
    let mut rng: u64 = 0x2545F4914F6CDD1D
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let marketing = |name: &str| all.get(name).map(|p| p.marketing).unwrap_or(false);
    for case in 0..3000 {
        let n = next(12) as usize;
        let events: Vec<ConsentEvent> = (0..n)
            .map(|i| {
                let t = next(40) as u32;
                let expires = (next(4) == 0).then(|| t + next(20) as u32);
                ev(
                    i as u64,
                    names[next(names.len() as u64) as usize],
                    KINDS[next(8) as usize],
                    t,
                    expires,
                )
            })
            .collect();
        for name in names {
            let p = all.get(name).unwrap();
            for q in [0u32, 5, 10, 20, 30, 45, 59] {
                let at = format!("2030-01-01T00:00:{q:02}.000000Z");
                let d = decide(p, &events, false, &at, &marketing);
                let (allowed, reason) = reference(p, &all, &events, &at);
                assert_eq!(
                    (d.allowed, d.reason.as_str()),
                    (allowed, reason),
                    "case {case}, purpose {name}, at {q}, events {events:#?}"
                );
            }
            assert!(!decide(p, &events, true, "2030-02-01T00:00:00.000000Z", &marketing).allowed);
        }
    }
}

#[test]
fn objection_to_marketing_is_absolute_restriction_blocks_all_and_expiry_stops_counting() {
    let all = purposes();
    let marketing = |name: &str| all.get(name).map(|p| p.marketing).unwrap_or(false);
    let news = all.get("newsletter-email").unwrap();
    let post = all.get("fundraising-post").unwrap();
    let gift_aid = all.get("gift-aid-claim").unwrap();
    let at = "2030-01-01T00:00:50.000000Z";
    let given = ev(0, "newsletter-email", EventKind::Given, 1, Some(30));
    assert!(
        decide(
            news,
            std::slice::from_ref(&given),
            false,
            "2030-01-01T00:00:29.999999Z",
            &marketing
        )
        .allowed
    );
    let d = decide(
        news,
        std::slice::from_ref(&given),
        false,
        "2030-01-01T00:00:30.000000Z",
        &marketing,
    );
    assert_eq!((d.allowed, d.reason.as_str()), (false, "consent_expired"));
    // An objection on post covers email marketing too, but not a legal obligation.
    let events = vec![
        ev(0, "newsletter-email", EventKind::Given, 1, None),
        ev(1, "fundraising-post", EventKind::Objected, 2, None),
    ];
    let d = decide(news, &events, false, at, &marketing);
    assert_eq!((d.allowed, d.reason.as_str()), (false, "objected"));
    assert_eq!(
        d.deciding_event.unwrap().seq,
        1,
        "explain names the deciding event"
    );
    assert!(!decide(post, &events, false, at, &marketing).allowed);
    assert!(decide(gift_aid, &events, false, at, &marketing).allowed);
    // A restriction blocks every purpose, legal obligations included, until lifted.
    let mut events = vec![
        ev(0, "newsletter-email", EventKind::Given, 1, None),
        ev(1, "gift-aid-claim", EventKind::Restricted, 2, None),
    ];
    for p in all.all() {
        assert!(
            !decide(p, &events, false, at, &marketing).allowed,
            "{}",
            p.name
        );
    }
    events.push(ev(2, "gift-aid-claim", EventKind::Unrestricted, 3, None));
    assert!(decide(news, &events, false, at, &marketing).allowed);
}

#[test]
fn purposes_are_checked_against_the_schema() {
    let s = schema();
    let bad = include_str!("../../policies/purposes.toml")
        .replace("\"preferred_language\"]", "\"shoe_size\"]");
    let err = Purposes::from_toml(&bad, &s).unwrap_err();
    assert!(
        err.to_string().contains("unknown field \"shoe_size\""),
        "{err}"
    );
    assert_eq!(purposes().all().len(), 10);
}

#[test]
fn events_round_trip_history_is_kept_and_no_content_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let id = tmp.path().join("id.txt");
    vault::Vault::init(&dir, &vault::SealTo::Identity(id.clone())).unwrap();
    let v = vault::Vault::open(&dir, &vault::Unlock::Identity(id), Arc::new(schema())).unwrap();
    let ledger = Ledger::new(v.store().clone());
    let all = purposes();
    let subject = SubjectId::from_parts(5, [5; 10]);
    let record = |new: NewConsent| {
        let mut b = vault::Batch::new();
        let e = ledger.prepare(&all, &subject, &new, "actor", &mut b)?;
        v.store().apply(b).unwrap();
        Ok::<_, Error>(e)
    };
    let given = record(NewConsent {
        purpose: "newsletter-email".into(),
        event: "given".into(),
        at: Some("2030-03-01T10:00:00+01:00".into()),
        source: "signup-form-2030".into(),
        method: Some("form".into()),
        notice_version: Some("v3".into()),
        notice_hash: Some("sha256:ab12".into()),
        evidence: Some("doc:7781".into()),
        expires: Some("2032-03-01".into()),
        contact_point: Some("email".into()),
        pecr_basis: Some("charitable_soft_opt_in".into()),
        pecr_conditions: CHARITABLE_SOFT_OPT_IN
            .iter()
            .map(|s| s.to_string())
            .collect(),
        jurisdiction: Some("uk-gdpr".into()),
    })
    .unwrap();
    assert_eq!(given.time, "2030-03-01T09:00:00.000000Z");
    let withdrawn = record(NewConsent {
        purpose: "newsletter-email".into(),
        event: "withdrawn".into(),
        source: "unsubscribe-link".into(),
        ..Default::default()
    })
    .unwrap();
    let history = ledger.history(&subject).unwrap();
    assert_eq!(history, vec![given.clone(), withdrawn]);
    let scanned: Vec<_> = ledger.scan().map(|r| r.unwrap()).collect();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].1.len(), 2);
    // The gate reads the light form of the events the same way as the full one.
    let marketing = |name: &str| all.get(name).map(|p| p.marketing).unwrap_or(false);
    for p in all.all() {
        for at in [
            "2030-03-01T08:00:00.000000Z",
            "2030-03-02T00:00:00.000000Z",
            "2099-01-01T00:00:00.000000Z",
        ] {
            let full = decide(p, &history, false, at, &marketing);
            let (allowed, reason, _) = verdict(p, &scanned[0].1, false, at, &marketing);
            assert_eq!(
                (full.allowed, full.reason.as_str()),
                (allowed, reason),
                "{} at {at}",
                p.name
            );
        }
    }
    // Content is refused: an email as evidence, an incomplete soft opt-in, an objection to a
    // legal obligation, an unknown purpose.
    for bad in [
        NewConsent {
            purpose: "newsletter-email".into(),
            event: "given".into(),
            source: "form".into(),
            evidence: Some("from ann@example.org".into()),
            ..Default::default()
        },
        NewConsent {
            purpose: "newsletter-email".into(),
            event: "given".into(),
            source: "form".into(),
            pecr_basis: Some("charitable_soft_opt_in".into()),
            ..Default::default()
        },
        NewConsent {
            purpose: "gift-aid-claim".into(),
            event: "objected".into(),
            source: "letter".into(),
            ..Default::default()
        },
        NewConsent {
            purpose: "nope".into(),
            event: "given".into(),
            source: "form".into(),
            ..Default::default()
        },
        NewConsent {
            purpose: "newsletter-email".into(),
            event: "maybe".into(),
            source: "form".into(),
            ..Default::default()
        },
    ] {
        assert!(record(bad).is_err());
    }
    // Notes about the person in the free-text slots are refused, naming the slot: the
    // ledger outlives the person's key.
    for (source, evidence, slot) in [
        ("Oakhurst phoned", None, "source"),
        ("phone", Some("+442079460999"), "evidence"),
        ("phone", Some("call:07700-900-123"), "evidence"),
        ("phone", Some("Thaddeus Oakhurst"), "evidence"),
    ] {
        let err = record(NewConsent {
            purpose: "newsletter-email".into(),
            event: "given".into(),
            source: source.into(),
            evidence: evidence.map(str::to_string),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with(slot), "{slot}: {err}");
    }
    // References pass, hex ids with long digit runs inside them too.
    for evidence in ["doc:7781", "import:0a123456789b#12", "2024-05-01"] {
        record(NewConsent {
            purpose: "newsletter-email".into(),
            event: "given".into(),
            source: "web-form:2024-spring".into(),
            evidence: Some(evidence.into()),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(
        ledger.history(&subject).unwrap().len(),
        5,
        "nothing half-written"
    );
}
