//! Stored record bytes as a read decodes them: header, field framing, value encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vault::fuzz::record(data);
});
