//! A backup file as `steward backup restore` reads it, unsealed with the format vectors'
//! test identity (the seed corpus holds their backup, so mutations reach past the header).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let identity =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/v1/identity.txt");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path().join("restored");
    let unlock = vault::Unlock::Identity(identity);
    if vault::Vault::restore(&mut std::io::Cursor::new(data), &dir, &unlock).is_err() {
        // A refused backup leaves nothing that could be opened as a data directory.
        assert!(
            !dir.join(vault::layout::SEAL).exists(),
            "a failed restore left a sealed key ring behind"
        );
    }
});
