//! The crates' dependencies keep to the layering ARCHITECTURE.md describes: only `vault`
//! touches sled and ring, only `vault` and `exporters` use age, only `server` speaks HTTP
//! with axum; and the adapters (`cli`, `server`) reach the other crates only through `hub`.
//! Read from `cargo metadata`, so a new dependency that breaks it fails here.

use serde_json::Value;

#[test]
fn storage_crypto_and_http_stay_in_their_crates() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    // Which workspace crate may depend on each guarded crate (normal and build
    // dependencies; tests and benchmarks may use anything).
    let allowed: &[(&str, &[&str])] = &[
        ("sled", &["vault"]),
        ("ring", &["vault"]),
        ("postgres", &["vault"]),
        ("age", &["vault", "exporters"]),
        ("axum", &["server"]),
        // Outgoing HTTP (webhooks) only from the hub's delivery worker.
        ("ureq", &["hub"]),
    ];
    let mut found = Vec::new();
    let mut checked = 0;
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        checked += 1;
        for dep in package["dependencies"].as_array().expect("dependencies") {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().expect("dependency name");
            for (guarded, owners) in allowed {
                if dep_name == *guarded && !owners.contains(&name) {
                    found.push(format!("{name} depends on {dep_name}"));
                }
            }
        }
    }
    assert!(checked >= 12, "only {checked} workspace crates read");
    assert!(found.is_empty(), "layering broken: {found:?}");

    // The adapters: of the workspace's own crates, `server` may use `hub` and `domain`, and
    // `cli` those and `server` (which it runs for `steward serve`).
    let members: Vec<&str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let adapters: &[(&str, &[&str])] = &[
        ("server", &["hub", "domain"]),
        ("cli", &["hub", "domain", "server"]),
    ];
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        let Some((_, may)) = adapters.iter().find(|(a, _)| *a == name) else {
            continue;
        };
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if dep["kind"].as_str() != Some("dev")
                && members.contains(&dep_name)
                && !may.contains(&dep_name)
            {
                found.push(format!(
                    "adapter {name} depends on {dep_name}, not through hub"
                ));
            }
        }
    }
    assert!(found.is_empty(), "layering broken: {found:?}");
}
