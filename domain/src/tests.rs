use super::*;

fn schema() -> Schema {
    Schema::from_toml(include_str!("../../policies/schema.toml")).expect("default schema loads")
}

#[test]
fn subject_id_round_trips_through_its_text_form() {
    for i in 0..200u64 {
        let mut r = [0u8; 10];
        r[..8].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
        let id = SubjectId::from_parts(1_700_000_000_000 + i, r);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<SubjectId>().unwrap(), id);
    }
    assert!("not-an-id".parse::<SubjectId>().is_err());
    assert!("ZZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<SubjectId>().is_err());
}

#[test]
fn ids_sort_by_creation_time() {
    let a = SubjectId::from_parts(1000, [0xff; 10]);
    let b = SubjectId::from_parts(1001, [0; 10]);
    assert!(a < b);
    assert!(a.to_string() < b.to_string());
}

#[test]
fn emails_are_normalised_or_rejected_with_a_reason() {
    assert_eq!(
        normalise_email("  Ann.Lee@Example.ORG ").unwrap(),
        "ann.lee@example.org"
    );
    for bad in [
        "",
        "no-at-sign",
        "a@b",
        "a@@b.org",
        "a b@c.org",
        "@example.org",
        "a@-x.org",
        "a..b@c.org",
    ] {
        let err = normalise_email(bad).unwrap_err();
        assert!(
            !bad.is_empty() && !err.contains(bad) || bad.is_empty(),
            "reason echoes input"
        );
    }
}

#[test]
fn invisible_characters_in_an_email_are_refused() {
    for bad in [
        "ann\u{200B}@example.org",
        "an\u{00AD}n@example.org",
        "\u{202E}ann@example.org",
        "ann@exam\u{FEFF}ple.org",
    ] {
        let err = crate::normalise_email(bad).unwrap_err();
        assert!(err.contains("invisible"), "{bad:?}: {err}");
    }
    assert_eq!(
        crate::normalise_email("Ann@Example.org").unwrap(),
        "ann@example.org"
    );
}

#[test]
fn near_misses_of_common_mail_domains_are_reported_not_fixed() {
    for typo in [
        "ann@gmial.com",
        "ann@gmail.co",
        "ann@gmaill.com",
        "ann@hotmial.co.uk",
        "ann@yaho.com",
        "ann@outlok.com",
        "ann@icloud.con",
    ] {
        assert!(email_domain_suspect(typo), "{typo} should be flagged");
    }
    for fine in [
        "ann@gmail.com",
        "ann@hotmail.co.uk",
        "ann@example.org",
        "ann@yahoo.fr",
        "ann@mac.com",
        "ann@charity.org.uk",
        "no-at-sign",
    ] {
        assert!(!email_domain_suspect(fine), "{fine} should pass");
    }
    // Normalising never rewrites the domain: the report is for a person to act on.
    assert_eq!(normalise_email(" Ann@GMIAL.com ").unwrap(), "ann@gmial.com");
}

#[test]
fn phones_become_e164_in_the_default_region() {
    assert_eq!(
        normalise_phone("020 7946 0018", "GB").unwrap(),
        "+442079460018"
    );
    assert_eq!(
        normalise_phone("0113 496 0999", "GB").unwrap(),
        "+441134960999"
    );
    assert_eq!(
        normalise_phone("+1 (202) 456-1111", "GB").unwrap(),
        "+12024561111"
    );
    assert_eq!(
        normalise_phone("(202) 456-1111", "US").unwrap(),
        "+12024561111"
    );
    assert!(normalise_phone("12", "GB").is_err());
    // Kept although the metadata does not list the range; reported by `phone_is_assigned`.
    assert_eq!(
        normalise_phone("+4420794600001", "GB").unwrap(),
        "+4420794600001"
    );
    assert!(!phone_is_assigned("+4420794600001"));
    assert!(phone_is_assigned("+442079460001"));
    assert!(normalise_phone("call me", "GB").is_err());
}

#[test]
fn dates_are_read_in_every_common_form() {
    let d = |s: &str, o| parse_date(s, o).map(|p| (p.date.to_string(), p.ambiguous));
    assert_eq!(
        d("1980-04-03", DateOrder::DayFirst).unwrap(),
        ("1980-04-03".into(), false)
    );
    assert_eq!(
        d("19800403", DateOrder::DayFirst).unwrap(),
        ("1980-04-03".into(), false)
    );
    assert_eq!(
        d("03/04/1980", DateOrder::DayFirst).unwrap(),
        ("1980-04-03".into(), true)
    );
    assert_eq!(
        d("03/04/1980", DateOrder::MonthFirst).unwrap(),
        ("1980-03-04".into(), true)
    );
    assert_eq!(
        d("31/12/1980", DateOrder::MonthFirst).unwrap(),
        ("1980-12-31".into(), false)
    );
    assert_eq!(
        d("04/04/1980", DateOrder::DayFirst).unwrap(),
        ("1980-04-04".into(), false)
    );
    assert!(d("1980-02-30", DateOrder::DayFirst).is_err());
    assert!(d("31/31/1980", DateOrder::DayFirst).is_err());
    assert!(d("yesterday", DateOrder::DayFirst).is_err());
}

#[test]
fn postcodes_and_names_are_tidied() {
    assert_eq!(normalise_postcode("sw1a1aa", None).unwrap(), "SW1A 1AA");
    assert_eq!(
        normalise_postcode(" ec1a  1bb ", Some("GB")).unwrap(),
        "EC1A 1BB"
    );
    assert!(normalise_postcode("12345", Some("GB")).is_err());
    assert_eq!(
        normalise_postcode("12345-6789", Some("US")).unwrap(),
        "12345-6789"
    );
    assert_eq!(normalise_name("  SMITH  "), "Smith");
    assert_eq!(normalise_name("mary-jane o'neil"), "Mary-Jane O'Neil");
    assert_eq!(normalise_name("McDonald"), "McDonald");
}

#[test]
fn every_field_type_round_trips_through_its_binary_form() {
    let schema = schema();
    let input = serde_json::json!({
        "title": "Dr", "given_name": "ada", "birth_date": "1815-12-10", "external_id": "CIVI-42",
        "email": "Ada@Example.org", "phone": "020 7946 0001", "postal_code": "nw1 2db",
        "country": "United Kingdom", "preferred_language": "EN-gb",
        "household": "01HZY3F5W0000000000000000A", "tags": ["major donor", "volunteer", "major donor"],
        "notes": "likes engines", "gift_aid_declared": "yes", "religion": "none stated"
    });
    let parsed = schema
        .parse_object(RecordKind::Subject, input.as_object().unwrap())
        .expect("valid input");
    assert_eq!(parsed.len(), input.as_object().unwrap().len());
    for (id, value) in &parsed {
        let back = Value::decode(&value.encode()).expect("decodes");
        assert_eq!(&back, value, "field {id}");
    }
    let json: std::collections::BTreeMap<String, serde_json::Value> = parsed
        .iter()
        .map(|(id, v)| {
            let def = schema.field_by_id(RecordKind::Subject, *id).unwrap();
            (def.name.clone(), v.to_json())
        })
        .collect();
    assert_eq!(json["email"], "ada@example.org");
    assert_eq!(json["phone"], "+442079460001");
    assert_eq!(json["postal_code"], "NW1 2DB");
    assert_eq!(json["country"], "GB");
    assert_eq!(json["preferred_language"], "en-GB");
    assert_eq!(
        json["tags"],
        serde_json::json!(["major donor", "volunteer"])
    );
    assert_eq!(json["gift_aid_declared"], true);
    assert_eq!(json["given_name"], "Ada");

    let gift = serde_json::json!({"amount": "25.5", "currency": "gbp", "date": "2024-03-01",
        "payment_method": "Direct_Debit", "gift_aid": true});
    let parsed = schema
        .parse_object(RecordKind::Gift, gift.as_object().unwrap())
        .unwrap();
    for (_, value) in &parsed {
        assert_eq!(&Value::decode(&value.encode()).unwrap(), value);
    }
    assert_eq!(parsed[0].1.to_json(), "25.50");
}

#[test]
fn bad_input_names_the_field_and_never_the_value() {
    let schema = schema();
    let input = serde_json::json!({
        "email": "secret-at-nowhere", "phone": "not a phone 4242", "birth_date": "03/04/1980",
        "shoe_size": "44", "given_name": 7
    });
    let err = schema
        .parse_object(RecordKind::Subject, input.as_object().unwrap())
        .unwrap_err();
    let Error::Fields(errors) = &err else {
        panic!("expected field errors")
    };
    let mut codes: Vec<(String, &str)> = errors
        .iter()
        .map(|e| (e.field.clone(), e.problem.code()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            ("birth_date".into(), "ambiguous_date"),
            ("email".into(), "invalid_value"),
            ("given_name".into(), "wrong_type"),
            ("phone".into(), "invalid_value"),
            ("shoe_size".into(), "unknown_field"),
        ]
    );
    let text = err.to_string();
    assert!(text.contains("shoe_size") && text.contains("email"));
    assert!(!text.contains("secret-at-nowhere") && !text.contains("4242"));
}

#[test]
fn control_characters_and_negative_gifts_are_refused() {
    let schema = schema();
    let refused = |record: RecordKind, input: serde_json::Value, field: &str| {
        let err = schema
            .parse_object(record, input.as_object().unwrap())
            .unwrap_err();
        let Error::Fields(errors) = &err else {
            panic!("expected field errors")
        };
        assert_eq!(errors[0].field, field, "{err}");
        assert_eq!(errors[0].problem.code(), "invalid_value", "{err}");
    };
    refused(
        RecordKind::Subject,
        serde_json::json!({"given_name": "Ann\u{0}"}),
        "given_name",
    );
    refused(
        RecordKind::Subject,
        serde_json::json!({"family_name": "Lee\u{7}"}),
        "family_name",
    );
    refused(
        RecordKind::Gift,
        serde_json::json!({"amount": "-5.00"}),
        "amount",
    );
    // A gift of nothing is not a negative one.
    assert!(schema
        .parse_object(
            RecordKind::Gift,
            serde_json::json!({"amount": "0.00"}).as_object().unwrap()
        )
        .is_ok());
}

#[test]
fn debug_output_redacts_personal_values() {
    let v = Value::Email(Email::parse("canary@example.org").unwrap());
    assert!(!format!("{v:?}").contains("canary"));
    let t = Text::parse("Canary Name").unwrap();
    assert!(!format!("{t:?}").contains("Canary"));
}

#[test]
fn schema_rules_are_enforced() {
    let dup = "version = 1\n[[field]]\nid = 1\nname = \"a\"\ntype = \"text\"\ncategory = \"x\"\ngroup = \"identity\"\n[[field]]\nid = 1\nname = \"b\"\ntype = \"text\"\ncategory = \"x\"\ngroup = \"identity\"\n";
    assert!(Schema::from_toml(dup)
        .unwrap_err()
        .to_string()
        .contains("id 1 appears twice"));
    let special = "version = 1\n[[field]]\nid = 1\nname = \"a\"\ntype = \"text\"\ncategory = \"x\"\ngroup = \"contact\"\nspecial = true\n";
    assert!(Schema::from_toml(special)
        .unwrap_err()
        .to_string()
        .contains("special"));
    let ty = "version = 1\n[[field]]\nid = 1\nname = \"a\"\ntype = \"blob\"\ncategory = \"x\"\ngroup = \"contact\"\n";
    assert!(Schema::from_toml(ty)
        .unwrap_err()
        .to_string()
        .contains("unknown type"));
    let s = schema();
    assert!(s.fields(RecordKind::Subject).any(|f| f.special));
    for name in [
        "given_name",
        "family_name",
        "email",
        "phone",
        "birth_date",
        "street",
        "city",
        "postal_code",
        "country",
        "notes",
    ] {
        assert!(s.field(RecordKind::Subject, name).is_some(), "{name}");
    }
}

mod deadlines {
    use crate::deadline::*;
    use time::macros::date;

    fn uk() -> Calendar {
        Calendar::england_wales(2020..=2035, &[])
    }

    #[test]
    fn one_calendar_month_clamps_to_month_end_and_skips_weekends_and_bank_holidays() {
        let cases = [
            (date!(2028 - 01 - 31), 0, 0, date!(2028 - 02 - 29)), // leap year, a Tuesday
            (date!(2027 - 01 - 31), 0, 0, date!(2027 - 03 - 01)), // 28 Feb 2027 is a Sunday
            (date!(2026 - 01 - 31), 0, 0, date!(2026 - 03 - 02)), // 28 Feb 2026 is a Saturday
            (date!(2026 - 03 - 15), 0, 0, date!(2026 - 04 - 15)),
            (date!(2026 - 03 - 03), 0, 0, date!(2026 - 04 - 07)), // 3 Apr Good Friday, 6 Apr Easter Monday
            (date!(2026 - 11 - 25), 0, 0, date!(2026 - 12 - 29)), // 25 Dec Fri, 26 Sat → 28 Mon substitute
            (date!(2026 - 04 - 30), 0, 0, date!(2026 - 06 - 01)), // 30 May Sat, 31 Sun → Mon 1 Jun
            (date!(2026 - 01 - 31), 2, 0, date!(2026 - 04 - 30)), // extended by two months
            (date!(2028 - 01 - 31), 0, 10, date!(2028 - 03 - 10)), // paused ten days
            (date!(2027 - 12 - 01), 0, 0, date!(2028 - 01 - 04)), // 1 Jan 2028 Sat → 3 Jan substitute
        ];
        for (received, ext, paused, expected) in cases {
            assert_eq!(
                gdpr_due(received, ext, paused, &uk()),
                expected,
                "received {received}, +{ext} months, paused {paused}"
            );
        }
    }

    #[test]
    fn bank_holidays_follow_the_standing_rules() {
        assert_eq!(
            england_wales_bank_holidays(2026),
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 04 - 03),
                date!(2026 - 04 - 06),
                date!(2026 - 05 - 04),
                date!(2026 - 05 - 25),
                date!(2026 - 08 - 31),
                date!(2026 - 12 - 25),
                date!(2026 - 12 - 28),
            ]
        );
        // Christmas on a Sunday: Boxing Day Monday, Christmas substitute Tuesday.
        let h2022 = england_wales_bank_holidays(2022);
        assert!(h2022.contains(&date!(2022 - 12 - 26)) && h2022.contains(&date!(2022 - 12 - 27)));
        assert!(
            england_wales_bank_holidays(2019).contains(&date!(2019 - 04 - 19)),
            "Good Friday 2019"
        );
    }

    #[test]
    fn us_state_clocks_count_business_days_and_calendar_days() {
        let cal = Calendar::weekends_only(&[]);
        let (ack, due) = us_state_due(date!(2026 - 11 - 20), false, 0, &cal); // a Friday
        assert_eq!(ack, date!(2026 - 12 - 04));
        assert_eq!(due, date!(2027 - 01 - 04));
        let (_, extended) = us_state_due(date!(2026 - 11 - 20), true, 0, &cal);
        assert_eq!(extended, date!(2027 - 02 - 18));
        assert_eq!(add_months(date!(2024 - 02 - 29), 12), date!(2025 - 02 - 28));
    }
}

#[test]
fn a_tags_field_holds_at_most_max_tags_labels_each_once() {
    let schema = schema();
    let tags = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("tag {}", i % (n / 2 + 1))).collect();
        serde_json::json!({ "tags": list })
    };
    let parsed = schema
        .parse_object(RecordKind::Subject, tags(MAX_TAGS).as_object().unwrap())
        .expect("as many as allowed");
    match &parsed[0].1 {
        Value::Tags(t) => assert_eq!(t.len(), MAX_TAGS / 2 + 1, "each label once"),
        other => panic!("{other:?}"),
    }
    let err = schema
        .parse_object(RecordKind::Subject, tags(MAX_TAGS + 1).as_object().unwrap())
        .expect_err("one too many");
    assert!(format!("{err:?}").contains("tags"), "{err:?}");
}

#[test]
fn composed_and_decomposed_accents_are_one_email_and_one_name() {
    let composed = "jos\u{e9}@example.org";
    let decomposed = "jose\u{301}@example.org";
    assert_ne!(composed, decomposed);
    assert_eq!(
        normalise_email(composed).unwrap(),
        normalise_email(decomposed).unwrap()
    );
    assert_eq!(normalise_name("Jose\u{301}"), normalise_name("Jos\u{e9}"));
}

#[test]
fn a_domain_in_its_own_letters_is_one_address_with_its_ascii_form() {
    // RFC 3492's own kind of example: bücher is bcher-kva, münchen mnchen-3ya.
    assert_eq!(
        normalise_email("anna@b\u{fc}cher.example").unwrap(),
        "anna@xn--bcher-kva.example"
    );
    assert_eq!(
        normalise_email("Anna@M\u{fc}nchen.example").unwrap(),
        normalise_email("anna@xn--mnchen-3ya.example").unwrap()
    );
    // Decomposed ü is the same domain.
    assert_eq!(
        normalise_email("anna@bu\u{308}cher.example").unwrap(),
        "anna@xn--bcher-kva.example"
    );
    // UTS 46 mapping: full-width letters and an ideographic full stop are the plain ones,
    // so a look-alike typed on another keyboard is the same address (and on the
    // suppression list the same person).
    assert_eq!(
        normalise_email("anna@\u{ff45}xample\u{3002}org").unwrap(),
        "anna@example.org"
    );
    assert_eq!(
        normalise_email("anna@B\u{dc}CHER.example").unwrap(),
        "anna@xn--bcher-kva.example"
    );
    // What UTS 46 disallows is refused, naming the domain.
    for bad in [
        "anna@exa\u{2488}mple.org", // a digit with a full stop in one character
        "anna@\u{5d0}\u{5d1}1a.example", // right-to-left label breaking the bidi rule
        "anna@xn--a.example",       // Punycode that does not decode
    ] {
        let err = normalise_email(bad).unwrap_err();
        assert!(err.contains("domain"), "{bad}: {err}");
    }
}

#[test]
fn a_name_key_sets_aside_case_accents_spaces_and_punctuation() {
    for (a, b) in [
        ("O'Neil", "oneil"),
        ("o neil", "oneil"),
        ("ONEIL", "oneil"),
        ("Zoë", "zoe"),
        ("Smith-Jones", "smithjones"),
        ("van der Berg", "vanderberg"),
        ("Müller", "muller"),
    ] {
        assert_eq!(crate::name_key(a), b, "{a}");
    }
    assert_eq!(crate::name_key("'- "), "");
}
