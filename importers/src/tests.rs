use std::path::PathBuf;

use super::*;

fn fixture(name: &str) -> std::fs::File {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", name]
        .iter()
        .collect();
    std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_all(name: &str) -> (Reader<std::fs::File>, Vec<Result<Row, RowError>>) {
    let mut r = Reader::new(fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let rows: Vec<_> = (&mut r).collect();
    (r, rows)
}

fn check(name: &str, delimiter: u8, encoding: Encoding, header: &[&str], rows: &[&[&str]]) {
    let (r, got) = read_all(name);
    assert_eq!(r.dialect().delimiter, delimiter, "{name}");
    assert_eq!(r.dialect().encoding, encoding, "{name}");
    assert_eq!(r.header(), header, "{name}");
    let cells: Vec<Vec<String>> = got.into_iter().map(|r| r.unwrap().cells).collect();
    assert_eq!(
        cells,
        rows.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "{name}"
    );
}

#[test]
fn every_dialect_of_real_exports_is_read() {
    check(
        "comma_utf8_bom.csv",
        b',',
        Encoding::Utf8,
        &["First Name", "Last Name", "Email"],
        &[
            &["Ann", "Lee", "ann@example.org"],
            &["Bo, Jr", "Tan", "bo@example.org"],
        ],
    );
    check(
        "civicrm_semicolon.csv",
        b';',
        Encoding::Utf8,
        &["Contact ID", "First Name", "Last Name", "Do Not Email"],
        &[&["1", "Ann", "Lee", "1"], &["2", "Bob", "Tan", "0"]],
    );
    check(
        "mailchimp_tab.tsv",
        b'\t',
        Encoding::Utf8,
        &["Email Address", "First Name", "Last Name", "OPTIN_TIME"],
        &[&["ann@example.org", "Ann", "Lee", "2020-01-02 10:00:00"]],
    );
    check(
        "bloomerang_pipe.csv",
        b'|',
        Encoding::Utf8,
        &[
            "Account Number",
            "First Name",
            "Last Name",
            "Communication Restrictions",
        ],
        &[
            &["1001", "Ann", "Lee", "DoNotMail"],
            &["1002", "Bob", "Tan", ""],
        ],
    );
    check(
        "donorperfect_windows1252.csv",
        b',',
        Encoding::Windows1252,
        &["donor_id", "first_name", "last_name", "city"],
        &[&["7", "Renée", "Dupré", "Orléans"]],
    );
    check(
        "quoted_newlines.csv",
        b',',
        Encoding::Utf8,
        &["id", "notes"],
        &[&["1", "first line\nsecond line"], &["2", "plain"]],
    );
}

#[test]
fn the_npsp_template_header_is_found_after_its_preamble() {
    let r = Reader::new(fixture("npsp_template.csv"), None).unwrap();
    assert_eq!(r.dialect().preamble_rows, 4);
    assert_eq!(r.header()[1], "Contact1 First Name");
    let rows: Vec<_> = r.collect();
    // Line 6 (the API names) is the first "data" row of a label-headed file.
    let first = rows[0].as_ref().unwrap();
    assert_eq!(first.number, 6);
    assert!(
        first.cells[1]
            .to_ascii_uppercase()
            .contains("CONTACT1_FIRSTNAME"),
        "{:?}",
        first.cells[1]
    );
}

#[test]
fn bad_rows_are_reported_with_their_number_and_the_good_rows_read() {
    let (_, rows) = read_all("fail_ragged.csv");
    let summary: Vec<Result<u64, (u64, String)>> = rows
        .into_iter()
        .map(|r| r.map(|r| r.number).map_err(|e| (e.row, e.code)))
        .collect();
    assert_eq!(
        summary,
        vec![
            Ok(2),
            Err((3, "ragged_row".into())),
            Ok(4),
            Err((5, "ragged_row".into()))
        ]
    );
    // An unbalanced quote costs its own row, not the rest of the file.
    let (_, rows) = read_all("fail_unbalanced_quotes.csv");
    let summary: Vec<Result<u64, (u64, String)>> = rows
        .into_iter()
        .map(|r| r.map(|r| r.number).map_err(|e| (e.row, e.code)))
        .collect();
    assert_eq!(summary, vec![Err((2, "unbalanced_quote".into())), Ok(3)]);
    let (_, rows) = read_all("fail_header_only.csv");
    assert!(rows.is_empty());
    let err = Reader::new(fixture("fail_empty.csv"), None).err().unwrap();
    assert_eq!(err.code, "no_header");
    let (r, rows) = read_all("fail_duplicated_header.csv");
    assert_eq!(r.duplicate_columns(), ["Email"]);
    assert_eq!(rows.len(), 1);
}

#[test]
fn a_ten_megabyte_field_is_an_error_for_its_row_only() {
    let mut text = String::from("id,notes\n1,\"");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    text.push_str("\"\n2,short\n");
    let rows: Vec<_> = Reader::new(text.as_bytes(), None).unwrap().collect();
    assert_eq!(rows.len(), 2);
    let e = rows[0].as_ref().unwrap_err();
    assert_eq!(
        (e.row, e.code.as_str(), e.column.as_deref()),
        (2, "field_too_long", Some("notes"))
    );
    assert!(!e.to_string().contains("xxx"));
    assert_eq!(rows[1].as_ref().unwrap().cells, ["2", "short"]);
}

fn targets(name: &str, profile: Option<Profile>) -> (Profile, Vec<Option<Target>>) {
    let r = Reader::new(fixture(name), None).unwrap();
    let p = profile.unwrap_or_else(|| Profile::detect(r.header()));
    (p, p.map(r.header()))
}

fn field(f: &str) -> Option<Target> {
    Some(Target::Field { field: f.into() })
}

#[test]
fn each_systems_export_is_recognised_and_mapped() {
    let (p, t) = targets("civicrm_semicolon.csv", None);
    assert_eq!(p, Profile::Civicrm);
    assert_eq!(t[0], field("external_id"));
    assert_eq!(
        t[3],
        Some(Target::Consent {
            purpose: "newsletter-email".into(),
            event: "withdrawn".into(),
            when: vec![
                "1".into(),
                "y".into(),
                "yes".into(),
                "true".into(),
                "x".into()
            ]
        })
    );
    let (p, t) = targets("mailchimp_tab.tsv", None);
    assert_eq!(p, Profile::Mailchimp);
    assert_eq!(t[0], field("email"));
    assert!(
        matches!(&t[3], Some(Target::Consent { event, when, .. }) if event == "given" && when.is_empty())
    );
    let (p, t) = targets("bloomerang_pipe.csv", None);
    assert_eq!(p, Profile::Bloomerang);
    assert_eq!(t[3], Some(Target::Restrictions));
    let (p, _) = targets("donorperfect_windows1252.csv", None);
    assert_eq!(p, Profile::Donorperfect);
    let (p, t) = targets("comma_utf8_bom.csv", None);
    assert_eq!(
        p,
        Profile::Civicrm,
        "First Name, Last Name and Email are CiviCRM's three"
    );
    assert_eq!(t[2], field("email"));
    let (_, t) = targets("comma_utf8_bom.csv", Some(Profile::Generic));
    assert_eq!(
        t,
        vec![field("given_name"), field("family_name"), field("email")]
    );
}

#[test]
fn both_npsp_header_rows_map_to_the_same_targets() {
    let r = Reader::new(fixture("npsp_template.csv"), None).unwrap();
    let labels = r.header().to_vec();
    let api_names: Vec<String> = r.into_iter().next().unwrap().unwrap().cells;
    assert_eq!(Profile::detect(&labels), Profile::Npsp);
    assert_eq!(Profile::detect(&api_names), Profile::Npsp);
    let by_label = Profile::Npsp.map(&labels);
    let by_api = Profile::Npsp.map(&api_names);
    for (i, (a, b)) in by_label.iter().zip(&by_api).enumerate() {
        if a.is_some() && b.is_some() {
            assert_eq!(a, b, "column {i}: {} vs {}", labels[i], api_names[i]);
        }
    }
    let mapped = |t: &[Option<Target>], f: &str| t.iter().any(|x| x == &field(f));
    for f in ["given_name", "family_name", "street", "postal_code"] {
        assert!(mapped(&by_label, f) && mapped(&by_api, f), "{f}");
    }
    assert!(by_label.iter().any(|x| x
        == &Some(Target::Contact2 {
            field: "given_name".into()
        })));
    assert!(by_label.iter().any(|x| x
        == &Some(Target::Gift {
            field: "amount".into()
        })));
}

#[test]
fn mapping_files_override_and_extend_a_profile() {
    let m = MappingFile::from_toml(
        r#"
[columns]
"Surname" = "family_name"
"Notes" = "ignore"
"Opted in" = { to = "consent", purpose = "newsletter-email", event = "given", when = ["Y"] }

[constants]
country = "GB"
"#,
    )
    .unwrap();
    let header: Vec<String> = ["Surname", "Notes", "Opted in", "Email"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let base = Profile::Generic.map(&header);
    let t = m.map(&header, &base);
    assert_eq!(t[0], field("family_name"));
    assert_eq!(t[1], Some(Target::Ignore));
    assert!(
        matches!(&t[2], Some(Target::Consent { purpose, .. }) if purpose == "newsletter-email")
    );
    assert_eq!(t[3], field("email"));
    assert_eq!(m.constants["country"], "GB");
    assert!(MappingFile::from_toml("[columns]\nx = { to = \"nowhere\" }").is_err());
    assert!(
        triggers(&["Y".into()], "y") && !triggers(&["Y".into()], "") && triggers(&[], "2020-01-01")
    );
    assert_eq!(
        restriction("Do Not Mail"),
        Some(("fundraising-post", "withdrawn"))
    );
    assert_eq!(restriction("whatever"), None);
}

#[test]
fn candidate_pairs_are_every_pair_sharing_a_key_once() {
    let rec = |email: &str, family: &str| {
        matching::MatchRecord::from_named([("email", email), ("family_name", family)])
    };
    // 0-1 share an email; 2 shares nothing; 3-4 share an email and both are stored; 5 shares
    // 3's email (so pairs with 3 and 4); 6..=8 share an email in a block too large to compare.
    let records = vec![
        rec("a@example.org", "Lee"),
        rec("a@example.org", "Lee"),
        rec("b@example.org", "Tan"),
        rec("c@example.org", "Roe"),
        rec("c@example.org", "Roe"),
        rec("c@example.org", "Roe"),
        rec("d@example.org", "Kay"),
        rec("d@example.org", "Kay"),
        rec("d@example.org", "Kay"),
    ];
    let existing = [false, false, false, true, true, false, false, false, false];
    let pairs: Vec<(u32, u32)> = matching::candidate_pairs(&records, &existing, 2)
        .into_iter()
        .map(matching::pair_of)
        .collect();
    // 3-4-5 is a block of three, over the limit of two as well: only 0-1 is left.
    assert_eq!(pairs, vec![(0, 1)]);
    let pairs: Vec<(u32, u32)> = matching::candidate_pairs(&records, &existing, 3)
        .into_iter()
        .map(matching::pair_of)
        .collect();
    assert_eq!(pairs, vec![(0, 1), (3, 5), (4, 5), (6, 7), (6, 8), (7, 8)]);
}

fn rec(fields: &[(&str, &str)]) -> matching::MatchRecord {
    matching::MatchRecord::from_named(fields.iter().copied())
}

#[test]
fn given_names_that_cannot_be_one_persons_contradict() {
    use matching::{contradiction, given_compatible};
    for (a, b) in [
        ("john", "jon"),
        ("robert", "bob"),
        ("j", "john"),
        ("chris", "christopher"),
        ("mary ann", "mary"),
        ("catherine", "katherine"),
    ] {
        assert!(given_compatible(a, b), "{a} / {b}");
    }
    for (a, b) in [("tom", "jo"), ("amelia", "catrin"), ("j", "mark")] {
        assert!(!given_compatible(a, b), "{a} / {b}");
    }
    let twin_a = rec(&[
        ("given_name", "Lucy"),
        ("family_name", "Reid"),
        ("birth_date", "1980-04-03"),
    ]);
    let twin_b = rec(&[
        ("given_name", "Tylah"),
        ("family_name", "Reid"),
        ("birth_date", "1980-04-03"),
    ]);
    assert_eq!(contradiction(&twin_a, &twin_b), Some("given_name"));
    let father = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1950-01-02"),
    ]);
    let son = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1980-07-09"),
    ]);
    assert_eq!(contradiction(&father, &son), Some("birth_date"));
    // A day/month swap and a one-digit typo are one birth date.
    let swapped = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1950-02-01"),
    ]);
    assert_eq!(contradiction(&father, &swapped), None);
    // Transposed names are one person.
    let transposed = rec(&[("given_name", "Smith"), ("family_name", "John")]);
    assert_eq!(contradiction(&father, &transposed), None);
}

#[test]
fn contact_points_of_several_people_are_marked_shared() {
    let household = [
        ("Amelia", "Wilson", "1978-01-01", "07700 900001"),
        ("Catrin", "Wilson", "1951-12-22", "07700 900002"),
    ];
    let mut records: Vec<_> = household
        .iter()
        .map(|(g, f, b, m)| {
            rec(&[
                ("given_name", g),
                ("family_name", f),
                ("birth_date", b),
                ("email", "thewilsons@example.org"),
                ("phone", "0141 496 0425"),
                ("mobile", m),
                ("street", "138 Park Avenue"),
                ("postal_code", "G11 4QD"),
            ])
        })
        .collect();
    // One person, twice: their own contact points are theirs.
    for _ in 0..2 {
        records.push(rec(&[
            ("given_name", "Jo"),
            ("family_name", "Bloggs"),
            ("email", "jo@example.org"),
            ("mobile", "07700 900009"),
        ]));
    }
    matching::mark_shared(&mut records);
    let both = matching::SHARED_EMAIL | matching::SHARED_PHONE | matching::SHARED_ADDRESS;
    assert_eq!(records[0].shared & both, both);
    assert_eq!(records[1].shared & both, both);
    assert_eq!(records[0].shared & matching::SHARED_MOBILE, 0);
    let contact = matching::SHARED_EMAIL
        | matching::SHARED_PHONE
        | matching::SHARED_MOBILE
        | matching::SHARED_ADDRESS;
    assert_eq!(records[2].shared & contact, 0);
    assert_eq!(records[3].shared & contact, 0);
    // The two household members agree on a shared email, landline and address: that is
    // household evidence, never enough to merge; the one person's two records merge.
    let g = matching::compare(&records[0], &records[1]);
    assert!(matching::needs_review(&g), "{g:?}");
    let g = matching::compare(&records[2], &records[3]);
    assert!(!matching::needs_review(&g), "{g:?}");
}

#[test]
fn clusters_never_hold_two_people_who_contradict() {
    // "J Smith" with John's email and Jane's phone resembles both; John and Jane are two
    // people. Whatever the scores, no cluster may hold John and Jane.
    let mut records = vec![
        rec(&[
            ("given_name", "John"),
            ("family_name", "Smith"),
            ("birth_date", "1970-05-06"),
            ("email", "john@example.org"),
            ("mobile", "07700 900101"),
            ("street", "5 Park Lane"),
            ("postal_code", "BS1 5TR"),
        ]),
        rec(&[
            ("given_name", "Jane"),
            ("family_name", "Smith"),
            ("birth_date", "1972-08-09"),
            ("email", "jane@example.org"),
            ("mobile", "07700 900202"),
            ("street", "5 Park Lane"),
            ("postal_code", "BS1 5TR"),
        ]),
        rec(&[
            ("given_name", "J"),
            ("family_name", "Smith"),
            ("email", "john@example.org"),
            ("mobile", "07700 900202"),
            ("street", "5 Park Lane"),
            ("postal_code", "BS1 5TR"),
        ]),
    ];
    let existing = vec![false; records.len()];
    let m = matching::run(
        &mut records,
        &existing,
        &[],
        &[],
        matching::Thresholds::default(),
    );
    assert_ne!(m.reps[0], m.reps[1], "John and Jane were merged");
}

#[test]
fn a_date_column_takes_its_order_from_its_own_values() {
    use dates::{read_in_order, DateEvidence};
    use domain::DateOrder;
    let header = vec!["Birthdate".to_string(), "Other".to_string()];
    let mut ev = DateEvidence::new([0]);
    for v in ["03/04/1980", "10/13/1965", "", "1990-01-02", "07/07/2000"] {
        ev.observe(&[v.to_string(), "x".into()]);
    }
    let d = ev.decide(&header, None, None, None);
    assert_eq!(d[0].order.as_deref(), Some("month-first"));
    assert_eq!(d[0].decided_by, "file");
    assert_eq!(
        (d[0].month_first_values, d[0].ambiguous_values),
        (1, 1),
        "{d:?}"
    );
    assert_eq!(
        read_in_order("03/04/1980", DateOrder::MonthFirst)
            .unwrap()
            .to_string(),
        "1980-03-04"
    );
    // A value that reads only the other way is refused, not turned round.
    assert!(read_in_order("13/10/1965", DateOrder::MonthFirst).is_err());
    assert_eq!(
        read_in_order("1965-10-13", DateOrder::MonthFirst)
            .unwrap()
            .to_string(),
        "1965-10-13"
    );
    // Both ways in one column: undecided, whatever the profile says.
    let mut mixed = DateEvidence::new([0]);
    for v in ["13/10/1965", "10/13/1965", "03/04/1980"] {
        mixed.observe(&[v.to_string()]);
    }
    let d = mixed.decide(&header, None, Some(DateOrder::MonthFirst), None);
    assert_eq!(
        (d[0].order.as_deref(), d[0].decided_by.as_str()),
        (None, "mixed")
    );
    // Nothing in the file: the profile's habit, then the schema; the option over all.
    let empty = DateEvidence::new([0]);
    let d = empty.decide(&header, None, Some(DateOrder::MonthFirst), None);
    assert_eq!(d[0].decided_by, "profile");
    let d = empty.decide(&header, None, None, Some(DateOrder::DayFirst));
    assert_eq!(
        (d[0].order.as_deref(), d[0].decided_by.as_str()),
        (Some("day-first"), "schema")
    );
    let d = mixed.decide(&header, Some(DateOrder::DayFirst), None, None);
    assert_eq!(d[0].decided_by, "option");
}

#[test]
fn one_bad_byte_in_a_utf8_file_is_that_rows_problem_only() {
    let mut bytes = b"first,last\n".to_vec();
    for i in 0..20 {
        bytes.extend_from_slice(format!("Jos\u{e9}{i},Zo\u{eb}\n").as_bytes());
    }
    bytes.extend_from_slice(b"Ren\xe9,Broken\n");
    bytes.extend_from_slice("Ana\u{ef}s,Last\n".as_bytes());
    let mut r = Reader::new(std::io::Cursor::new(bytes), None).unwrap();
    assert_eq!(r.dialect().encoding, Encoding::Utf8);
    let rows: Vec<_> = (&mut r).collect();
    assert_eq!(rows.len(), 22);
    assert_eq!(rows[0].as_ref().unwrap().cells[0], "Jos\u{e9}0");
    let bad = rows[20].as_ref().unwrap_err();
    assert_eq!((bad.row, bad.code.as_str()), (22, "invalid_text"));
    assert_eq!(rows[21].as_ref().unwrap().cells[0], "Ana\u{ef}s");
    // A file written in Windows-1252 throughout is still read as such.
    let cp1252 = b"first,last\nRen\xe9,Dupr\xe9\nJos\xe9,Zo\xeb\n".to_vec();
    let mut r = Reader::new(std::io::Cursor::new(cp1252), None).unwrap();
    assert_eq!(r.dialect().encoding, Encoding::Windows1252);
    assert_eq!(r.next().unwrap().unwrap().cells[1], "Dupr\u{e9}");
}

#[test]
fn an_unbalanced_quote_costs_its_own_row_only() {
    let mut text = String::from("first,last,email\n");
    for i in 1..=200 {
        if i == 30 {
            text.push_str("Name030,\"Family030,p030@example.org\n");
        } else {
            text.push_str(&format!("Name{i:03},Family{i:03},p{i:03}@example.org\n"));
        }
    }
    // A quoted cell with line breaks is still one row.
    text.push_str("Note,\"two\nlines\",n@example.org\n");
    let rows: Vec<_> = Reader::new(std::io::Cursor::new(text.into_bytes()), None)
        .unwrap()
        .collect();
    assert_eq!(rows.len(), 201);
    let bad = rows[29].as_ref().unwrap_err();
    assert_eq!((bad.row, bad.code.as_str()), (31, "unbalanced_quote"));
    let ok: Vec<&Row> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 200);
    assert_eq!(ok[29].cells, ["Name031", "Family031", "p031@example.org"]);
    assert_eq!(ok[29].number, 32);
    assert_eq!(ok[199].cells[1], "two\nlines");
}

#[test]
fn a_one_cell_address_splits_only_when_its_parts_can_be_told_apart() {
    let parts =
        crate::split_address("1701 Bristol Ave.  Barrington  Rhode Island  02806  USA").unwrap();
    assert_eq!(
        parts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["street", "city", "region", "postal_code", "country"]
    );
    assert_eq!(parts[2].1, "Rhode Island");
    let parts = crate::split_address("512 Means St.  Suite 400  Atlanta  GA  30318  USA").unwrap();
    assert_eq!(parts[1], ("street2", "Suite 400".to_string()));
    // Empty parts (a blank second line written as four spaces) are skipped.
    assert_eq!(
        crate::split_address("1 A St    Town  ST  1234  AU").map(|p| p.len()),
        Some(5)
    );
    assert_eq!(crate::split_address("1 High St"), None);
    assert_eq!(crate::split_address("a  b  c  d"), None);
    assert_eq!(crate::split_address("a  b  c  d  e  f  g"), None);
}

#[test]
fn every_column_of_the_npsp_template_has_a_target_under_either_header() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/npsp_template.csv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let labels = rows.iter().find(|r| r[0] == "Contact1 Salutation").unwrap();
    let api = rows
        .iter()
        .find(|r| r[0] == "NPSP__CONTACT1_SALUTATION__C")
        .unwrap();
    for header in [labels, api] {
        assert_eq!(Profile::detect(header), Profile::Npsp);
        let targets = Profile::Npsp.map(header);
        for (h, t) in header.iter().zip(&targets) {
            assert!(t.is_some(), "{h} has no target");
        }
        // Labels and API names mean the same.
        let gift = |f: &str| Some(Target::Gift { field: f.into() });
        assert!(targets.contains(&gift("campaign")), "{header:?}");
        assert!(targets.contains(&gift("transaction_id")), "{header:?}");
    }
    let same: Vec<bool> = Profile::Npsp
        .map(labels)
        .iter()
        .zip(Profile::Npsp.map(api))
        .map(|(a, b)| *a == b)
        .collect();
    assert!(same.iter().all(|x| *x), "{same:?}");
}

/// A small deterministic generator for the damage property (no dependency needed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn random_files_with_random_damage_account_for_every_row_and_garble_none() {
    // Rows one line each, then a stray quote or up to three other damages: a NUL, a byte
    // that is not UTF-8, a missing or extra delimiter, a CRLF; and perhaps a truncated end. Whatever
    // happens, the reader yields one item per non-blank line (an error names the row, it is
    // never folded into another), and every undamaged row comes back exactly as written.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let words = [
        "Ann",
        "Zoë",
        "José",
        "Lee",
        "Brontë",
        "O'Neil",
        "Smith Jr",
        "Ødegård",
    ];
    for case in 0..3000 {
        let n = 1 + rng.below(60);
        let cols = 2 + rng.below(5);
        let header: Vec<String> = (0..cols).map(|c| format!("Col{c}")).collect();
        let mut rows: Vec<Vec<String>> = (0..n)
            .map(|i| {
                (0..cols)
                    .map(|c| format!("{}{}", words[rng.below(words.len())], i * cols + c))
                    .collect()
            })
            .collect();
        let mut lines: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| format!("{}\n", r.join(",")).into_bytes())
            .collect();
        let mut damaged = vec![false; n];
        // A stray quote comes alone: with a delimiter missing from the next row as well, the
        // two rows read exactly as one valid row with a quoted line break, and no reader can
        // tell them apart.
        let quote = rng.below(6) == 0;
        for _ in 0..if quote { 1 } else { 1 + rng.below(3) } {
            let i = rng.below(n);
            let line = &mut lines[i];
            // Inside the row, not between its CR and LF (a lone CR is a line break).
            let end = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
            let at = rng.below(end);
            match if quote { 0 } else { 1 + rng.below(5) } {
                0 => line.insert(at, b'"'),
                1 => line.insert(at, 0),
                2 => line.insert(at, 0xff),
                3 => {
                    if let Some(p) = line.iter().position(|b| *b == b',') {
                        line.remove(p);
                    }
                }
                4 => line.insert(at, b','),
                _ => {
                    line.pop();
                    line.extend_from_slice(b"\r\n");
                    continue; // not damage: a CRLF line is a whole row
                }
            }
            damaged[i] = true;
        }
        if rng.below(4) == 0 {
            // The file ends mid-row.
            let last = lines.last_mut().unwrap();
            let keep = 1 + rng.below(last.len() - 1);
            last.truncate(keep);
            damaged[n - 1] = true;
        }
        let mut bytes = format!("{}\n", header.join(",")).into_bytes();
        for l in &lines {
            bytes.extend_from_slice(l);
        }
        let reader = Reader::new(std::io::Cursor::new(bytes.clone()), None).unwrap();
        let items: Vec<Result<Row, RowError>> = reader.collect();
        assert_eq!(
            items.len(),
            n,
            "case {case}: {n} rows written, {} read: {:?}",
            items.len(),
            String::from_utf8_lossy(&bytes)
        );
        for (i, item) in items.iter().enumerate() {
            let number = match item {
                Ok(r) => r.number,
                Err(e) => e.row,
            };
            assert_eq!(number, i as u64 + 2, "case {case}: rows in order");
            if !damaged[i] {
                let row = item.as_ref().unwrap_or_else(|e| {
                    panic!("case {case}: undamaged row {} refused: {e:?}", i + 2)
                });
                assert_eq!(row.cells, rows[i], "case {case}: row {} garbled", i + 2);
            } else if let Ok(row) = item {
                // A damaged row that still reads as a row has the header's width.
                assert_eq!(row.cells.len(), cols, "case {case}");
            }
        }
        rows.clear();
    }
}

#[test]
fn a_spelling_variant_at_home_with_the_birth_date_is_one_person_a_nickname_is_not() {
    let person = |given: &str, email: &str, mobile: &str| {
        rec(&[
            ("given_name", given),
            ("family_name", "Smith"),
            ("birth_date", "2005-01-27"),
            ("email", email),
            ("phone", "0117 496 0127"),
            ("mobile", mobile),
            ("street", "130 The Green"),
            ("city", "Bristol"),
            ("postal_code", "BS8 8HW"),
        ])
    };
    let proven = |a: &matching::MatchRecord, b: &matching::MatchRecord| {
        matching::variant_proven(&matching::compare(a, b), a, b)
    };
    // Jon and John, one birth date, one house: a typo.
    assert!(proven(&person("Jon", "", ""), &person("John", "", "")));
    // Samuel and Sam: a shortening.
    assert!(proven(&person("Sam", "", ""), &person("Samuel", "", "")));
    // John and Jack, one birth date, one house: twins may be named so.
    assert!(!proven(&person("Jack", "", ""), &person("John", "", "")));
    // A bare initial at home stands for the one person of that birth date there...
    assert!(proven(&person("J", "", ""), &person("John", "", "")));
    // ...but not where two names were born that day (twins John and Jack: which one?).
    let mut house = vec![
        person("J", "", ""),
        person("John", "", ""),
        person("Jack", "", ""),
    ];
    matching::mark_shared(&mut house);
    assert!(!proven(&house[0], &house[1]));
    assert!(!proven(&house[0], &house[2]));
    // A nickname with the same mobile and email, which a household does not share: one person.
    let m = "07700 900123";
    assert!(proven(
        &person("Jack", "js@example.org", m),
        &person("John", "js@example.org", m)
    ));
    // Two different mobiles: two people, whatever else they share.
    assert!(!proven(
        &person("Jon", "", "07700 900111"),
        &person("John", "", "07700 900222")
    ));
}

#[test]
fn a_person_who_moved_keeps_a_mobile_a_household_shares_a_landline() {
    let at = |given: &str, phone: &str, mobile: &str, street: &str, postcode: &str| {
        rec(&[
            ("given_name", given),
            ("family_name", "Khan"),
            ("birth_date", "1980-11-12"),
            ("phone", phone),
            ("mobile", mobile),
            ("street", street),
            ("postal_code", postcode),
        ])
    };
    // Moved house: a new landline, the same mobile. One person.
    let before = at(
        "Sara",
        "0117 496 0001",
        "07700 900555",
        "4 Elm Close",
        "BS6 9TZ",
    );
    let after = at(
        "Sara",
        "0161 496 0002",
        "07700 900555",
        "9 Mill Lane",
        "M6 0QJ",
    );
    assert!(!matching::needs_review(&matching::compare(&before, &after)));
    // One house: the same landline, two mobiles. Never merged on that.
    let sister = at(
        "Sara",
        "0117 496 0001",
        "07700 900666",
        "4 Elm Close",
        "BS6 9TZ",
    );
    let g = matching::compare(&before, &sister);
    assert!(matching::needs_review(&g));
    assert!(!matching::variant_proven(&g, &before, &sister));
}

#[test]
fn a_space_typed_inside_a_given_name_is_a_spelling_of_it() {
    assert!(matching::given_compatible("ja ck", "jack"));
    assert!(matching::given_compatible("cnono r", "connor"));
    // A double name is still two names, either of which may be used alone.
    assert!(matching::given_compatible("mary ann", "mary"));
    assert!(!matching::given_compatible("ja ck", "james"));
}

/// Records of one full name at different addresses, born on the given dates, with a
/// thousand other people (spread over 70 years of birth dates) so the file says how often
/// strangers share a birth date.
fn movers(name: (&str, &str), births: &[&str], mobile: &str) -> Vec<matching::MatchRecord> {
    let mut records: Vec<matching::MatchRecord> = births
        .iter()
        .enumerate()
        .map(|(i, birth)| {
            rec(&[
                ("given_name", name.0),
                ("family_name", name.1),
                ("birth_date", birth),
                ("mobile", mobile),
                (
                    "street",
                    ["10 High Street", "4 Mill Lane", "77 Kings Road"][i % 3],
                ),
                ("city", ["Leeds", "Bristol", "Cardiff"][i % 3]),
                ("postal_code", ["LS12 8ER", "BS3 1UL", "CF15 1YL"][i % 3]),
            ])
        })
        .collect();
    for i in 0..1000 {
        let birth = format!(
            "{}-{:02}-{:02}",
            1930 + i % 70,
            1 + (i * 7) % 12,
            1 + (i * 13) % 28
        );
        records.push(rec(&[
            ("given_name", &format!("given{i}")),
            ("family_name", &format!("family{}", i / 2)),
            ("birth_date", &birth),
        ]));
    }
    matching::mark_shared(&mut records);
    records
}

#[test]
fn a_rare_name_and_birth_date_are_one_person_wherever_they_live_a_common_name_is_not() {
    let rare = movers(("Kirra", "Menzies"), &["1994-09-15", "1994-09-15"], "");
    let g = matching::compare(&rare[0], &rare[1]);
    assert!(
        matching::needs_review(&g),
        "different streets hold the pair back"
    );
    assert!(matching::rare_name_proven(&g, &rare[0], &rare[1]));
    // Forty John Smiths: two born on one day may be two people.
    let mut births = vec!["1994-09-15"; 2];
    let others: Vec<String> = (0..38)
        .map(|i| format!("19{:02}-03-{:02}", 40 + i, 1 + i % 28))
        .collect();
    births.extend(others.iter().map(String::as_str));
    let common = movers(("John", "Smith"), &births, "");
    let g = matching::compare(&common[0], &common[1]);
    assert!(!matching::rare_name_proven(&g, &common[0], &common[1]));
}

#[test]
fn a_rare_name_with_its_own_mobile_moved_a_common_one_may_be_a_reused_number() {
    let rare = movers(("Kirra", "Menzies"), &["", ""], "07700 900123");
    let g = matching::compare(&rare[0], &rare[1]);
    assert!(matching::needs_review(&g));
    assert!(matching::mover_proven(&g, &rare[0], &rare[1]));
    let births = vec![""; 30];
    let common = movers(("John", "Smith"), &births, "07700 900123");
    let g = matching::compare(&common[0], &common[1]);
    assert!(!matching::mover_proven(&g, &common[0], &common[1]));
}

#[test]
fn names_that_change_sex_at_the_end_are_two_people_a_typo_inside_a_name_is_one() {
    let at_home = |given: &str, birth: &str| {
        rec(&[
            ("given_name", given),
            ("family_name", "Thomas"),
            ("birth_date", birth),
            ("phone", "01632 960903"),
            ("street", "82 Elm Close"),
            ("city", "Norwich"),
            ("postal_code", "NR18 3TA"),
        ])
    };
    let one = |a: &str, b: &str, birth: &str| {
        let mut house = vec![at_home(a, birth), at_home(b, birth)];
        matching::mark_shared(&mut house);
        let g = matching::compare(&house[0], &house[1]);
        matching::same_name_at_home(&g, &house[0], &house[1])
            || matching::variant_proven(&g, &house[0], &house[1])
    };
    // Without a birth date: a typo inside the name is one person...
    assert!(one("Rebecca", "Rebeca", ""));
    assert!(one("Hannah", "Hnnah", ""));
    // ...a brother and sister are not.
    for (a, b) in [
        ("Oliver", "Olivia"),
        ("Mark", "Mary"),
        ("Paul", "Paula"),
        ("Francis", "Frances"),
    ] {
        assert!(!one(a, b, ""), "{a} and {b}");
    }
    // Born the same day (twins): still two people.
    for (a, b) in [
        ("Oliver", "Olivia"),
        ("Louis", "Louise"),
        ("Daniel", "Daniela"),
    ] {
        assert!(!one(a, b, "2001-05-04"), "{a} and {b}");
    }
    // A shortening and a typo with the birth date, at home: one person.
    assert!(one("Sam", "Samuel", "2001-05-04"));
    assert!(one("Jon", "John", "2001-05-04"));
}

#[test]
fn a_rare_name_is_rare_in_a_file_not_against_a_vault_that_was_not_counted() {
    let mut records = movers(("Kirra", "Menzies"), &["1994-09-15", "1994-09-15"], "");
    let n = records.len();
    let t = matching::Thresholds::default();
    let within = matching::run(&mut records, &vec![false; n], &[], &[], t);
    assert_eq!(
        within.reps[0], within.reps[1],
        "one file: one person who moved"
    );
    // The first record a stored subject: the vault may hold many Kirra Menzies, unseen.
    let mut existing = vec![false; n];
    existing[0] = true;
    let against = matching::run(&mut records, &existing, &[], &[], t);
    assert_ne!(against.reps[0], against.reps[1]);
}

#[test]
fn a_name_typed_with_a_separate_accent_matches_the_same_name_composed() {
    let a = rec(&[("given_name", "Jos\u{e9}"), ("family_name", "Nu\u{f1}ez")]);
    let b = rec(&[
        ("given_name", "Jose\u{301}"),
        ("family_name", "Nun\u{303}ez"),
    ]);
    let g = matching::compare(&a, &b);
    assert_eq!((g[0], g[1]), (1, 1), "{g:?}");
}

#[test]
fn a_birth_date_alone_does_not_make_one_person_of_two_houses_on_one_street() {
    // Two John Smiths born on one day on The Crescent in Glasgow, at numbers 171 and 27
    // (one record without a postcode, so the places do not conflict outright).
    let a = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1956-08-06"),
        ("street", "171 The Crescent"),
        ("city", "Glasgow"),
    ]);
    let b = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1956-08-06"),
        ("street", "27 The Crescent"),
        ("city", "Glasgow"),
        ("postal_code", "G6 5HZ"),
    ]);
    let g = matching::compare(&a, &b);
    assert!(matching::needs_review(&g));
    assert_eq!(matching::hold_reason(&g), Some("different_houses"));
    assert!(!matching::proven_anyway(&g, &a, &b));
    // At the same number the birth date and name are one person (a postcode left out).
    let c = rec(&[
        ("given_name", "John"),
        ("family_name", "Smith"),
        ("birth_date", "1956-08-06"),
        ("street", "171 The Crescent"),
        ("city", "Glasgow"),
        ("postal_code", "G5 5AD"),
    ]);
    assert!(!matching::needs_review(&matching::compare(&a, &c)));
    // With a mobile of one person in common, a second house on the street is a move.
    let with_mobile = |r: &[(&str, &str)]| {
        let mut v = r.to_vec();
        v.push(("mobile", "07757 511367"));
        rec(&v)
    };
    let fields = |street: &'static str| {
        vec![
            ("given_name", "John"),
            ("family_name", "Smith"),
            ("street", street),
            ("city", "Glasgow"),
        ]
    };
    let g = matching::compare(
        &with_mobile(&fields("171 The Crescent")),
        &with_mobile(&fields("27 The Crescent")),
    );
    assert!(!matching::needs_review(&g));
}

#[test]
fn namesakes_elsewhere_with_other_numbers_and_nothing_personal_are_two_people_not_a_question() {
    let person = |mobile: &str, street: &str, city: &str, postcode: &str, birth: &str| {
        rec(&[
            ("given_name", "Oliver"),
            ("family_name", "Brown"),
            ("mobile", mobile),
            ("street", street),
            ("city", city),
            ("postal_code", postcode),
            ("birth_date", birth),
        ])
    };
    let a = person("07700 900111", "3 Mill Lane", "Leeds", "LS12 8ER", "");
    let b = person("07700 900222", "9 Kings Road", "Cardiff", "CF15 1YL", "");
    let g = matching::compare(&a, &b);
    assert!(matching::needs_review(&g));
    assert!(matching::apart(&g), "{g:?}");
    assert_eq!(matching::hold_reason(&g), Some("different_phones"));
    // One thing of one person in common (the birth date) and it is a question again.
    let a = person(
        "07700 900111",
        "3 Mill Lane",
        "Leeds",
        "LS12 8ER",
        "1970-04-02",
    );
    let b = person(
        "07700 900222",
        "9 Kings Road",
        "Cardiff",
        "CF15 1YL",
        "1970-04-02",
    );
    let g = matching::compare(&a, &b);
    assert!(matching::needs_review(&g));
    assert!(!matching::apart(&g), "{g:?}");
    // No numbers to compare and the same town: nothing says apart.
    let a = person("", "3 Mill Lane", "Leeds", "", "");
    let b = person("", "3 Mill Lane", "Leeds", "", "");
    assert!(!matching::apart(&matching::compare(&a, &b)));
}
