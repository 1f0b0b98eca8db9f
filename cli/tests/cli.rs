//! Checks of the command line itself. (Its presence also makes `cargo test` build the
//! `steward` binary that the workspace's end-to-end tests in `tests/` run.)

use std::process::Command;

fn steward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_steward"))
}

#[test]
fn version_and_help_exit_zero() {
    let out = steward().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("steward "));
    let out = steward().arg("--help").output().unwrap();
    assert!(out.status.success());
    for cmd in [
        "init", "serve", "demo", "subject", "users", "keys", "backup",
    ] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(cmd),
            "{cmd} missing from help"
        );
    }
}

#[test]
fn usage_errors_exit_two_and_a_missing_data_dir_is_named() {
    let out = steward().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = steward()
        .args(["subject", "show", "01M822MXWA053813Q00TW23TP9"])
        .env_remove("STEWARD_DATA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data DIR"));
}
