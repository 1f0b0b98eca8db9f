//! A legacy export as the importer reads it: dialect and encoding sniffing, the preamble,
//! the header, every row; then profile detection and the profile's column mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sniffed = importers::sniff(data);
    let Ok(reader) = importers::Reader::new(std::io::Cursor::new(data), None) else {
        return;
    };
    assert_eq!(reader.dialect().delimiter, sniffed.delimiter);
    let header = reader.header().to_vec();
    let profile = importers::Profile::detect(&header);
    let targets = profile.map(&header);
    assert_eq!(targets.len(), header.len());
    let mut rows = 0u64;
    for row in reader {
        if let Ok(row) = row {
            assert!(row.number > rows, "row numbers go up");
            rows = row.number;
        }
    }
});
