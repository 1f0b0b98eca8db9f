//! Importing, from the outside: so far `steward import inspect`.

use serde_json::Value;

use crate::support::*;

fn data(name: &str) -> String {
    format!(
        "{}/../importers/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn inspect(args: &[&str]) -> (Value, String) {
    let out = std::process::Command::new(binary())
        .args(["import", "inspect"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn inspect_shows_dialect_profile_and_mapping_but_never_a_value() {
    let (v, text) = inspect(&[&data("npsp_template.csv")]);
    assert_eq!(v["profile"], "npsp");
    assert_eq!(v["preamble_rows"], 4);
    let cols = v["columns"].as_array().unwrap();
    assert!(cols
        .iter()
        .any(|c| c["column"] == "Contact1 First Name" && c["target"] == "given_name"));
    assert!(cols
        .iter()
        .any(|c| c["column"] == "Contact2 First Name" && c["target"] == "contact2.given_name"));
    assert!(
        !text.contains("NPSP__CONTACT1_FIRSTNAME__C"),
        "a cell value was echoed"
    );

    let mapping = format!(
        "{}/../importers/mappings/febrl.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (v, text) = inspect(&[
        &data("febrl_sample.csv"),
        "--profile",
        "generic",
        "--mapping",
        &mapping,
        "--rows",
        "20",
    ]);
    assert_eq!(v["profile"], "generic");
    assert_eq!(v["constants"]["country"], "AU");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows
        .iter()
        .all(|r| r["fields"]["family_name"] == "ok" || r["fields"].get("family_name").is_none()));
    // The first data row of the sample: no value of it appears in the output.
    let sample = std::fs::read_to_string(data("febrl_sample.csv")).unwrap();
    let first: Vec<&str> = sample.lines().nth(1).unwrap().split(',').collect();
    for cell in first.iter().filter(|c| c.len() > 4) {
        assert!(!text.contains(cell), "value {cell:?} echoed");
    }
    // Windows-1252 is detected.
    let (v, _) = inspect(&[&data("donorperfect_windows1252.csv")]);
    assert_eq!(
        (v["encoding"].as_str(), v["profile"].as_str()),
        (Some("windows1252"), Some("donorperfect"))
    );
}

#[test]
fn inspect_reports_likely_email_domain_typos_without_fixing_or_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emails.csv");
    std::fs::write(
        &file,
        "Email Address,First Name,Last Name\n\
         ann@gmail.com,Ann,Lee\n\
         bob@gmial.com,Bob,Ray\n\
         cy@hotmail.co,Cy,Fox\n\
         di@charity.org.uk,Di,Hall\n",
    )
    .unwrap();
    let (v, text) = inspect(&[file.to_str().unwrap(), "--profile", "mailchimp"]);
    let verdicts: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fields"]["email"].as_str().unwrap_or("(missing)"))
        .collect();
    assert_eq!(
        verdicts,
        ["ok", "email_domain_typo", "email_domain_typo", "ok"]
    );
    for value in ["gmial", "hotmail.co", "bob@", "Bob"] {
        assert!(!text.contains(value), "value {value:?} echoed");
    }
}
