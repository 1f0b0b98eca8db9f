//! A mapping file (TOML) as an import reads it, applied over each profile's own mapping of a
//! header.
#![no_main]

use libfuzzer_sys::fuzz_target;

const HEADER: &[&str] = &[
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Birthdate",
    "Street",
    "Postcode",
    "Total Amount",
    "Date Received",
    "Do Not Email",
    "Contact1 Firstname",
    "Contact2 Email",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mapping) = importers::MappingFile::from_toml(text) else {
        return;
    };
    let header: Vec<String> = HEADER.iter().map(|s| s.to_string()).collect();
    for name in [
        "generic",
        "civicrm",
        "npsp",
        "mailchimp",
        "bloomerang",
        "donorperfect",
    ] {
        let Some(profile) = importers::Profile::parse(name) else {
            continue;
        };
        let base = profile.map(&header);
        let mapped = mapping.map(&header, &base);
        assert_eq!(mapped.len(), header.len());
    }
});
