//! Normalisers: each takes what a person or a legacy export wrote and returns the canonical
//! form, or a reason (never echoing the value) why it cannot be read.

use time::{Date, Month};

/// How to read `NN/NN/YYYY` when both numbers could be the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    /// 03/04/1980 is 3 April (UK, most of the world).
    DayFirst,
    /// 03/04/1980 is 4 March (US).
    MonthFirst,
}

/// A parsed date, with a flag when the input could be read two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedDate {
    /// The date under the configured reading.
    pub date: Date,
    /// True when day and month could be swapped and still make a different, valid date.
    pub ambiguous: bool,
}

/// True for the characters that print as nothing or reorder text (Unicode format
/// characters): in an address they make one address look like another, or slip past a
/// suppression list.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
    )
}

/// The text composed (Unicode NFC): a letter and its accent typed as two characters become
/// the one character, so that two spellings that look alike compare alike.
pub fn compose(input: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    if input.is_ascii() {
        // ASCII is composed already: no copy on the common path (every field the matcher
        // folds comes through here).
        std::borrow::Cow::Borrowed(input)
    } else {
        std::borrow::Cow::Owned(input.nfc().collect())
    }
}

/// Lower-cases and checks an email address. The whole address is lower-cased: mail systems
/// treat local parts case-insensitively in practice, and matching needs one form. Composed
/// (NFC) first, so that an accented letter typed as one character or as a letter and an
/// accent is one address, in the blind index and on the suppression list alike.
pub fn normalise_email(input: &str) -> Result<String, &'static str> {
    let s = compose(input.trim().trim_start_matches("mailto:")).to_lowercase();
    if s.is_empty() {
        return Err("the email address is empty");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an email address cannot contain spaces");
    }
    if s.chars().any(invisible) {
        return Err(
            "an email address cannot contain invisible characters (zero-width spaces, soft hyphens, direction marks)",
        );
    }
    let (local, domain) = match s.split_once('@') {
        Some((l, d)) if !d.contains('@') => (l, d),
        _ => return Err("an email address needs exactly one @"),
    };
    // A domain in its own letters is stored in its ASCII form, the form mail systems use, so
    // that both spellings are one address: UTS 46 processing (its mapping, so full-width
    // letters and ideographic full stops are the plain ones; NFC; the validity and bidi
    // rules), then Punycode with xn--, by the `idna` crate.
    // An ASCII domain is its own form, unless it carries Punycode, which must decode to a
    // valid name.
    let ascii = if domain.is_ascii() && !domain.contains("xn--") {
        domain.to_string()
    } else {
        idna::domain_to_ascii_strict(domain)
            .map_err(|_| "the domain after @ is not a valid international domain name")?
    };
    let s = format!("{local}@{ascii}");
    let domain = ascii.as_str();
    if local.is_empty() || local.len() > 64 {
        return Err("the part before @ is empty or longer than 64 characters");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before @ has a misplaced dot");
    }
    if domain.len() > 253 || !domain.contains('.') {
        return Err("the domain after @ needs a dot, as in example.org");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        if label.is_empty()
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err("the domain after @ is not a valid host name");
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if tld.chars().count() < 2 || tld.chars().all(|c| c.is_ascii_digit()) {
        return Err("the domain after @ has no valid top-level part");
    }
    Ok(s)
}

/// Mail domains common enough among supporters that a near miss of one is more likely a typing
/// slip than a real domain (`gmial.com`, `hotmail.co`, `yahooo.com`).
const COMMON_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "outlook.com",
    "live.com",
    "live.co.uk",
    "yahoo.com",
    "yahoo.co.uk",
    "icloud.com",
    "me.com",
    "aol.com",
    "btinternet.com",
    "sky.com",
    "virginmedia.com",
    "protonmail.com",
    "proton.me",
    "comcast.net",
    "gmx.de",
    "web.de",
    "orange.fr",
    "free.fr",
];

/// True when the domain of an already normalised email address is one edit (insertion,
/// deletion, substitution or swap of neighbours) away from a common mail provider's domain
/// without being one. Such addresses are reported for a person to check, never corrected:
/// `gmai.com` could be real, and a silent fix would send mail to someone else.
pub fn email_domain_suspect(normalised: &str) -> bool {
    let Some((_, domain)) = normalised.rsplit_once('@') else {
        return false;
    };
    if COMMON_MAIL_DOMAINS.contains(&domain) {
        return false;
    }
    COMMON_MAIL_DOMAINS
        .iter()
        .any(|known| within_one_edit(domain.as_bytes(), known.as_bytes()))
}

/// Optimal string alignment distance ≤ 1 between two byte strings, in one pass.
fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        let rest_a = &short[prefix..];
        let rest_b = &long[prefix..];
        rest_a.is_empty()
            || rest_a[1..] == rest_b[1..]
            || (rest_a.len() >= 2
                && rest_a[0] == rest_b[1]
                && rest_a[1] == rest_b[0]
                && rest_a[2..] == rest_b[2..])
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

/// Parses a phone number and returns it in E.164 (`+447700900123`). Numbers without a
/// country code are read in `default_region` (ISO 3166 alpha-2).
///
/// The check is deliberately about shape (a known country code and 4 to 14 national digits),
/// not about whether libphonenumber's metadata lists the number range as assigned: a CRM
/// must keep a supporter's number even when the metadata is older than the range. Use
/// [`phone_is_assigned`] to report numbers outside the known ranges.
pub fn normalise_phone(input: &str, default_region: &str) -> Result<String, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the phone number is empty");
    }
    if s.chars().any(|c| c.is_alphabetic()) && !s.to_ascii_lowercase().contains("ext") {
        return Err("not a phone number");
    }
    let region: Option<phonenumber::country::Id> = default_region.parse().ok();
    let number = phonenumber::parse(region, s).map_err(|_| "not a phone number")?;
    let national = number.national().value().to_string();
    if !(4..=14).contains(&national.len()) {
        return Err("a phone number has 4 to 14 digits after the country code");
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    if e164.len() > 16 {
        return Err("longer than the 15 digits E.164 allows");
    }
    Ok(e164)
}

/// An E.164 number (`+447700900123`) as people write it, in international format with its
/// groups (`+44 7700 900123`); `None` when `s` is not an E.164 number. Spreadsheets read the
/// grouped form as text, where they turn the bare one into a number and drop its `+`.
pub fn phone_display(s: &str) -> Option<String> {
    let digits = s.strip_prefix('+')?;
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return None;
    }
    let number = phonenumber::parse(None, s).ok()?;
    let shown = number
        .format()
        .mode(phonenumber::Mode::International)
        .to_string()
        // Groups apart by spaces only (NANP writes +1 202-555-0143): a hyphen is a minus
        // to a spreadsheet.
        .replace('-', " ");
    // Only digits, spaces and the leading plus: nothing a spreadsheet could run.
    let plain = shown.strip_prefix('+').is_some_and(|rest| {
        rest.bytes().all(|b| b.is_ascii_digit() || b == b' ') && rest.contains(' ')
    });
    plain.then_some(shown)
}

/// True when libphonenumber's metadata lists the number's range as valid for its country.
pub fn phone_is_assigned(e164: &str) -> bool {
    phonenumber::parse(None, e164)
        .map(|n| phonenumber::is_valid(&n))
        .unwrap_or(false)
}

/// Reads a date written as `YYYY-MM-DD`, `YYYYMMDD`, `DD/MM/YYYY` or `MM/DD/YYYY` (also with
/// `-` or `.` separators), reporting when day and month could be swapped.
pub fn parse_date(input: &str, order: DateOrder) -> Result<ParsedDate, &'static str> {
    let s = input.trim();
    let s = s.split(['T', ' ']).next().unwrap_or(s);
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let y: i32 = s[..4].parse().map_err(|_| "not a date")?;
        let m: u8 = s[4..6].parse().map_err(|_| "not a date")?;
        let d: u8 = s[6..].parse().map_err(|_| "not a date")?;
        return ymd(y, m, d).map(|date| ParsedDate {
            date,
            ambiguous: false,
        });
    }
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a date: write it as YYYY-MM-DD");
    }
    if parts[0].len() == 4 {
        let y: i32 = parts[0].parse().map_err(|_| "not a date")?;
        let m: u8 = parts[1].parse().map_err(|_| "not a date")?;
        let d: u8 = parts[2].parse().map_err(|_| "not a date")?;
        return ymd(y, m, d).map(|date| ParsedDate {
            date,
            ambiguous: false,
        });
    }
    if parts[2].len() != 4 || parts[0].len() > 2 || parts[1].len() > 2 {
        return Err("not a date: write it as YYYY-MM-DD");
    }
    let a: u8 = parts[0].parse().map_err(|_| "not a date")?;
    let b: u8 = parts[1].parse().map_err(|_| "not a date")?;
    let y: i32 = parts[2].parse().map_err(|_| "not a date")?;
    let (d, m, alt) = match order {
        DateOrder::DayFirst => (a, b, ymd(y, a, b)),
        DateOrder::MonthFirst => (b, a, ymd(y, b, a)),
    };
    match ymd(y, m, d) {
        Ok(date) => Ok(ParsedDate {
            date,
            ambiguous: a != b && alt.is_ok(),
        }),
        // Only the other reading is a real date (e.g. 12/31/1980 in a day-first file).
        Err(_) => alt.map(|date| ParsedDate {
            date,
            ambiguous: false,
        }),
    }
}

fn ymd(y: i32, m: u8, d: u8) -> Result<Date, &'static str> {
    if !(1800..=2200).contains(&y) {
        return Err("the year is out of range (1800-2200)");
    }
    let month = Month::try_from(m).map_err(|_| "the month is not between 1 and 12")?;
    Date::from_calendar_date(y, month, d).map_err(|_| "that day does not exist in that month")
}

/// Normalises a postal code: upper case, single spaces; UK postcodes are checked and get the
/// space before the inward code; US ZIP codes are checked.
pub fn normalise_postcode(input: &str, country: Option<&str>) -> Result<String, &'static str> {
    let upper: String = input.trim().to_uppercase();
    let compact: String = upper.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the postcode is empty");
    }
    if compact.len() > 12
        || !compact
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err("a postcode has letters, digits and at most one hyphen");
    }
    match country {
        Some("GB") => uk_postcode(&compact).ok_or("not a UK postcode (as in SW1A 1AA)"),
        Some("US") => {
            let ok = match compact.len() {
                5 => compact.bytes().all(|b| b.is_ascii_digit()),
                10 => {
                    compact.as_bytes()[5] == b'-'
                        && compact
                            .bytes()
                            .enumerate()
                            .all(|(i, b)| i == 5 || b.is_ascii_digit())
                }
                _ => false,
            };
            if ok {
                Ok(compact)
            } else {
                Err("not a US ZIP code (12345 or 12345-6789)")
            }
        }
        _ => Ok(uk_postcode(&compact)
            .unwrap_or_else(|| upper.split_whitespace().collect::<Vec<_>>().join(" "))),
    }
}

fn uk_postcode(compact: &str) -> Option<String> {
    let b = compact.as_bytes();
    if !(5..=7).contains(&b.len()) {
        return None;
    }
    let (outward, inward) = compact.split_at(b.len() - 3);
    let ib = inward.as_bytes();
    let inward_ok =
        ib[0].is_ascii_digit() && ib[1].is_ascii_alphabetic() && ib[2].is_ascii_alphabetic();
    let ob = outward.as_bytes();
    let outward_ok = ob[0].is_ascii_alphabetic()
        && ob.iter().all(|c| c.is_ascii_alphanumeric())
        && ob.iter().any(|c| c.is_ascii_digit());
    (inward_ok && outward_ok).then(|| format!("{outward} {inward}"))
}

/// Tidies a personal name: composes it (NFC: "é" typed as e and an accent is "é"), trims,
/// collapses inner whitespace, and fixes the case of names
/// typed all in capitals or all in lower case ("SMITH" → "Smith", "o'neil" → "O'Neil").
/// Mixed-case names are kept as written ("McDonald", "van der Berg").
pub fn normalise_name(input: &str) -> String {
    let collapsed = compose(input)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let has_upper = collapsed.chars().any(char::is_uppercase);
    let has_lower = collapsed.chars().any(char::is_lowercase);
    if has_upper && has_lower {
        return collapsed;
    }
    let mut out = String::with_capacity(collapsed.len());
    let mut start = true;
    for c in collapsed.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = matches!(c, ' ' | '-' | '\'' | '’');
    }
    out
}

/// A name's search key: letters and digits only, lower case, accents removed ("O'Neil",
/// "o neil" and "ONEIL" are one key; "Zoë" and "Zoe" too). Empty when nothing is left.
pub fn name_key(input: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    input
        .nfd()
        .filter(|c| !is_combining_mark(*c) && c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Trims an identifier from another system; its case is kept, as some systems are
/// case-sensitive.
pub fn normalise_external_id(input: &str) -> Result<String, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the id is empty");
    }
    if s.len() > 200 {
        return Err("the id is longer than 200 characters");
    }
    Ok(s.to_string())
}
