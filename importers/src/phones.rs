//! Which region a phone number written without a country code is read in: the row's country
//! when it has one, else the schema's default region; and whether that reading is in doubt.

/// The regions checked when a number read in the default region is not one in use there:
/// where Steward's users and their supporters most often live.
const LIKELY_REGIONS: &[&str] = &[
    "GB", "IE", "US", "CA", "AU", "NZ", "ZA", "FR", "DE", "ES", "NL", "IN",
];

/// How one phone cell is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneReading {
    /// The region the number is read in (`None` when it carries its own country code).
    pub region: Option<String>,
    /// True when the region is the row's country; false when it is the default region.
    pub from_row: bool,
    /// When read in the default region the number is not one in use there but would be in
    /// these regions: the reading is in doubt.
    pub doubt: Vec<&'static str>,
}

/// How `cell` is read, given the row's country (already an ISO code) and the default region
/// (`doubt` is left empty: see [`read_phone_checked`]).
pub fn read_phone(cell: &str, row_country: Option<&str>, default_region: &str) -> PhoneReading {
    let t = cell.trim_start();
    if t.starts_with('+') || t.starts_with("00") {
        return PhoneReading {
            region: None,
            from_row: false,
            doubt: Vec::new(),
        };
    }
    if let Some(c) = row_country {
        return PhoneReading {
            region: Some(c.to_string()),
            from_row: true,
            doubt: Vec::new(),
        };
    }
    PhoneReading {
        region: Some(default_region.to_string()),
        from_row: false,
        doubt: Vec::new(),
    }
}

/// [`read_phone`], and for a number read in the default region, where else it would be a
/// number in use when it is not one there (parses it in a dozen regions: for samples and
/// single rows, not for every row of a file).
pub fn read_phone_checked(
    cell: &str,
    row_country: Option<&str>,
    default_region: &str,
) -> PhoneReading {
    let mut reading = read_phone(cell, row_country, default_region);
    if reading.region.is_none() || reading.from_row {
        return reading;
    }
    let t = cell.trim();
    let in_use = |region: &str| {
        domain::normalise_phone(t, region)
            .map(|e| domain::phone_is_assigned(&e))
            .unwrap_or(false)
    };
    if !in_use(default_region) {
        reading.doubt = LIKELY_REGIONS
            .iter()
            .copied()
            .filter(|r| *r != default_region && in_use(r))
            .collect();
    }
    reading
}

/// How many numbers of a column are checked for [`column_doubt`].
pub const SAMPLE: usize = 200;

/// Of those not in use in the default region, how many are tried in other regions.
pub const ELSEWHERE: usize = 16;

/// What the numbers of one phone column, read in the default region, look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDoubt {
    /// Numbers checked (without a country code or a row country).
    pub checked: usize,
    /// Of which not in use in the default region but in use elsewhere (estimated from the
    /// first [`ELSEWHERE`] not in use there).
    pub doubtful: usize,
    /// The first doubtful one's row.
    pub first_row: u64,
    /// Where they would be in use, most often first.
    pub regions: Vec<&'static str>,
}

/// Checks up to [`SAMPLE`] cells of a phone column (row number, cell) that the import reads
/// in `default_region`; `Some` when at least a tenth of them are numbers not in use there
/// but in use in another region: the file probably needs a country.
pub fn column_doubt<'a>(
    cells: impl Iterator<Item = (u64, &'a str)>,
    default_region: &str,
) -> Option<ColumnDoubt> {
    // In use where the import reads it: cheap. Only when a tenth or more are not is a
    // number tried in other regions (dear: a dozen parses each), and then only for the
    // first ELSEWHERE of them, which is enough to say where the column's numbers are from.
    let mut checked = 0;
    let mut not_here: Vec<(u64, &str)> = Vec::new();
    for (row, cell) in cells.filter(|(_, c)| !c.trim().is_empty()).take(SAMPLE) {
        checked += 1;
        let t = cell.trim();
        if read_phone(t, None, default_region).region.is_none() {
            continue;
        }
        let here = domain::normalise_phone(t, default_region)
            .map(|e| domain::phone_is_assigned(&e))
            .unwrap_or(false);
        if !here {
            not_here.push((row, cell));
        }
    }
    if not_here.is_empty() || not_here.len() * 10 < checked {
        return None;
    }
    let mut first_row = 0;
    let mut elsewhere = 0;
    let tried = not_here.len().min(ELSEWHERE);
    let mut tally: Vec<(&'static str, usize)> = Vec::new();
    for (row, cell) in &not_here[..tried] {
        let reading = read_phone_checked(cell, None, default_region);
        if reading.doubt.is_empty() {
            continue;
        }
        elsewhere += 1;
        if first_row == 0 {
            first_row = *row;
        }
        for r in reading.doubt {
            match tally.iter_mut().find(|(x, _)| *x == r) {
                Some(t) => t.1 += 1,
                None => tally.push((r, 1)),
            }
        }
    }
    // The share in use elsewhere among those tried, applied to all not in use here.
    let doubtful = (not_here.len() * elsewhere).div_ceil(tried);
    if elsewhere == 0 || doubtful * 10 < checked {
        return None;
    }
    tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Some(ColumnDoubt {
        checked,
        doubtful,
        first_row,
        regions: tally.into_iter().take(4).map(|(r, _)| r).collect(),
    })
}
