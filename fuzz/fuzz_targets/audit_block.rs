//! A stored block of audit events as a query or `audit verify` decodes it; the same bytes as
//! an audit segment file (sealed: checksum, LZ4; active: frames); and an exported
//! checkpoint as `audit verify --against` and `backup restore --checkpoint` read it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    audit::fuzz::block(data);
    vault::fuzz::segment(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = audit::Checkpoint::from_json(text);
        let _ = serde_json::from_str::<hub::ExportedCheckpoint>(text);
    }
});
