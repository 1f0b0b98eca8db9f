//! Record matching: blocking keys, field-by-field comparison, Fellegi-Sunter scoring with
//! m/u probabilities estimated from the data, and clustering into three bands.
//!
//! Everything here works on [`MatchRecord`]s held in memory; callers decide where records
//! come from (an import file, decrypted vault subjects) and where blocking keys are stored
//! (the vault keeps them only as keyed hashes).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use domain::par_map;

/// The fields the matcher compares, normalised for comparison (lower case, letters and digits
/// only for names); an empty string is a missing value. Compact: one allocation per record
/// (a million of them are held during a large import).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchRecord {
    /// The text fields one after the other: given, family, email, phone, mobile, street,
    /// house number, street2, postcode, city, region, external id.
    text: Box<str>,
    /// Where each text field ends in `text`.
    ends: [u16; 12],
    /// Birth date as (year, month, day); 0 when missing.
    pub birth: (u16, u8, u8),
    /// Contact points this record holds that several distinct people use ([`SHARED_EMAIL`],
    /// [`SHARED_PHONE`], [`SHARED_MOBILE`]), set by [`mark_shared`]: agreeing on one is
    /// household evidence, not identity.
    pub shared: u8,
}

/// [`MatchRecord::shared`]: the email is used by several distinct people.
pub const SHARED_EMAIL: u8 = 1;
/// [`MatchRecord::shared`]: the phone is used by several distinct people.
pub const SHARED_PHONE: u8 = 2;
/// [`MatchRecord::shared`]: the mobile is used by several distinct people.
pub const SHARED_MOBILE: u8 = 4;
/// [`MatchRecord::shared`]: the address (house number and postcode, or house number, street
/// and town) is home to several distinct people.
pub const SHARED_ADDRESS: u8 = 8;
/// [`MatchRecord::shared`]: two different people of one name live at the address (a father
/// and son both John), so a name agreeing there does not tell them apart.
pub const NAMESAKES_AT_ADDRESS: u8 = 16;
/// [`MatchRecord::shared`]: few records carry this exact given and family name, so two of
/// them born on the same day are one person wherever they live (set by [`mark_shared`]).
pub const RARE_NAME: u8 = 32;
/// [`MatchRecord::shared`]: at this record's address, two records born on its birth date
/// carry given names that are not one name spelt alike (twins, or a nickname), so an
/// initial there could be either.
pub const TWO_NAMES_BORN_THERE: u8 = 64;

/// A birth date as (year, month, day).
type Birth = (u16, u8, u8);

/// Longest value kept per field for matching (longer text says nothing more about a person).
const MAX_FIELD: usize = 200;

fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    // Composed first: an accent typed as its own character would otherwise split a name.
    for c in domain::compose(s).chars() {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

macro_rules! accessors {
    ($($name:ident = $i:expr),* $(,)?) => {
        $(
            #[doc = concat!("The ", stringify!($name), " field (empty when missing).")]
            pub fn $name(&self) -> &str {
                self.part($i)
            }
        )*
    };
}

impl MatchRecord {
    accessors!(
        given = 0,
        family = 1,
        email = 2,
        phone = 3,
        mobile = 4,
        street = 5,
        house = 6,
        street2 = 7,
        postcode = 8,
        city = 9,
        region = 10,
        external_id = 11,
    );

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Builds a record from named values as the schema names them (`given_name`,
    /// `family_name`, `birth_date` as `YYYY-MM-DD`, `email`, `phone`, `mobile`, `street`,
    /// `street2`, `postal_code`, `city`, `region`, `external_id`, `organisation_name`); other
    /// names are ignored.
    pub fn from_named<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> MatchRecord {
        let mut parts: [String; 12] = Default::default();
        let mut birth = (0, 0, 0);
        let mut organisation = String::new();
        for (name, value) in fields {
            match name {
                "organisation_name" => organisation = fold(value),
                "given_name" => parts[0] = fold(value),
                "family_name" => parts[1] = fold(value),
                "birth_date" => {
                    let mut it = value.split('-').map(|p| p.parse::<u32>().unwrap_or(0));
                    let (y, m, d) = (
                        it.next().unwrap_or(0),
                        it.next().unwrap_or(0),
                        it.next().unwrap_or(0),
                    );
                    birth = (y as u16, m as u8, d as u8);
                }
                "email" => parts[2] = value.trim().to_lowercase(),
                "phone" => parts[3] = value.trim().to_string(),
                "mobile" => parts[4] = value.trim().to_string(),
                "street" => {
                    let f = fold(value);
                    let (house, rest) = split_house(&f);
                    parts[6] = house.to_string();
                    parts[5] = rest.to_string();
                }
                "street2" => parts[7] = fold(value),
                "postal_code" => {
                    parts[8] = value
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                        .to_lowercase()
                }
                "city" => parts[9] = fold(value),
                "region" => parts[10] = fold(value),
                "external_id" => parts[11] = value.trim().to_string(),
                _ => {}
            }
        }
        // An organisation is known by its name: compared as a family name, with a given
        // name no person has (folded names hold letters and digits only), so two records of
        // one organisation agree on both and an organisation never resembles a person.
        if parts[0].is_empty() && parts[1].is_empty() && !organisation.is_empty() {
            parts[0] = "(organisation)".to_string();
            parts[1] = organisation;
        }
        let mut text = String::with_capacity(parts.iter().map(|p| p.len().min(MAX_FIELD)).sum());
        let mut ends = [0u16; 12];
        for (i, p) in parts.iter().enumerate() {
            let mut cut = p.len().min(MAX_FIELD);
            while !p.is_char_boundary(cut) {
                cut -= 1;
            }
            text.push_str(&p[..cut]);
            ends[i] = text.len() as u16;
        }
        MatchRecord {
            text: text.into_boxed_str(),
            ends,
            birth,
            shared: 0,
        }
    }

    fn birth_str(&self) -> Option<String> {
        (self.birth.0 != 0)
            .then(|| format!("{:04}{:02}{:02}", self.birth.0, self.birth.1, self.birth.2))
    }

    /// The address as one key (house number and postcode, or house number, street and
    /// town), when the record has one.
    pub fn address_key(&self) -> Option<String> {
        if self.house().is_empty() {
            None
        } else if !self.postcode().is_empty() {
            Some(format!("{}|{}", self.house(), self.postcode()))
        } else if !self.street().is_empty() && !self.city().is_empty() {
            Some(format!(
                "{}|{}|{}",
                self.house(),
                self.street(),
                self.city()
            ))
        } else {
            None
        }
    }

    /// Blocking keys: two records are compared only when they share one. Each key starts
    /// with its kind, so keys of different kinds never collide.
    pub fn blocking_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(12);
        let mut push = |k: String| {
            if !keys.contains(&k) {
                keys.push(k)
            }
        };
        if !self.email().is_empty() {
            push(format!("e:{}", self.email()));
        }
        for p in [&self.phone(), &self.mobile()] {
            if !p.is_empty() {
                push(format!("p:{p}"));
            }
        }
        if !self.external_id().is_empty() {
            push(format!("x:{}", self.external_id()));
        }
        let birth = self.birth_str();
        let sg = soundex(self.given());
        let sf = soundex(self.family());
        // Name keys always carry something else (a birth year, a postcode, a town): a name
        // alone gathers many different people, and the estimation would learn "same name"
        // instead of "same person".
        let year = (self.birth.0 != 0).then(|| self.birth.0.to_string());
        let place = [self.postcode(), self.city()]
            .into_iter()
            .find(|p| !p.is_empty())
            .map(str::to_string);
        if !self.family().is_empty() {
            if let Some(y) = &year {
                push(format!("fy:{sf}{y}"));
            }
            if let Some(initial) = self.given().chars().next() {
                for extra in [&year, &place].into_iter().flatten() {
                    push(format!("gf:{initial}{}|{extra}", self.family()));
                }
            }
            if let Some(b) = &birth {
                push(format!("fb:{}{b}", self.family()));
            }
            if !self.given().is_empty() {
                let (a, b) = if self.given() <= self.family() {
                    (&self.given(), &self.family())
                } else {
                    (&self.family(), &self.given())
                };
                for extra in [&year, &place].into_iter().flatten() {
                    push(format!("ss:{sg}{sf}|{extra}"));
                    push(format!("nn:{a}|{b}|{extra}"));
                }
            }
        }
        if !self.given().is_empty() {
            if let Some(b) = &birth {
                push(format!("gb:{}{b}", self.given()));
            }
            if !self.postcode().is_empty() {
                push(format!("gp:{sg}{}", self.postcode()));
            }
        }
        if !self.postcode().is_empty() {
            if !self.house().is_empty() {
                push(format!("ph:{}|{}", self.postcode(), self.house()));
            }
            if let Some(b) = &birth {
                push(format!("bp:{b}{}", self.postcode()));
            }
        }
        if !self.street().is_empty() && !self.house().is_empty() {
            push(format!("st:{}|{}", self.street(), self.house()));
        }
        keys
    }
}

fn split_house(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return ("", s);
    }
    (&s[..end], s[end..].trim_start())
}

/// American Soundex of the first word (letters only): a letter and three digits.
pub fn soundex(s: &str) -> String {
    fn code(c: char) -> u8 {
        match c {
            'b' | 'f' | 'p' | 'v' => b'1',
            'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => b'2',
            'd' | 't' => b'3',
            'l' => b'4',
            'm' | 'n' => b'5',
            'r' => b'6',
            'h' | 'w' => b'h',
            _ => b'0',
        }
    }
    let mut letters = s
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase());
    let Some(first) = letters.next() else {
        return String::new();
    };
    let mut out = vec![first.to_ascii_uppercase() as u8];
    let mut last = code(first);
    for c in letters {
        let k = code(c);
        if k == b'h' {
            continue;
        }
        if k != b'0' && k != last {
            out.push(k);
            if out.len() == 4 {
                break;
            }
        }
        last = k;
    }
    while out.len() < 4 {
        out.push(b'0');
    }
    String::from_utf8(out).expect("ascii")
}

/// Common English given-name variants, each group one person's possible spellings.
const NICKNAMES: &[&[&str]] = &[
    &["robert", "rob", "bob", "bobby", "robbie", "bert"],
    &["william", "will", "bill", "billy", "willie", "liam"],
    &["richard", "rick", "dick", "rich", "ricky"],
    &[
        "elizabeth",
        "liz",
        "beth",
        "betty",
        "eliza",
        "lizzie",
        "libby",
        "bess",
    ],
    &["margaret", "maggie", "meg", "peggy", "marge", "madge"],
    &[
        "katherine",
        "catherine",
        "kate",
        "kathy",
        "cathy",
        "katie",
        "kat",
        "kathryn",
    ],
    &["james", "jim", "jimmy", "jamie"],
    &["john", "jack", "johnny", "jon"],
    &["jonathan", "jon", "jonny"],
    &["michael", "mike", "mick", "mikey"],
    &["thomas", "tom", "tommy"],
    &["christopher", "chris", "kit"],
    &["christine", "chris", "christina", "tina"],
    &["alexander", "alex", "sandy", "xander"],
    &["alexandra", "alex", "sandra", "lexi"],
    &["anthony", "tony", "ant"],
    &["andrew", "andy", "drew"],
    &["daniel", "dan", "danny"],
    &["david", "dave", "davey"],
    &["edward", "ed", "eddie", "ted", "ned"],
    &["joseph", "joe", "joey"],
    &["matthew", "matt"],
    &["nicholas", "nick", "nicky"],
    &["patricia", "pat", "patty", "trish"],
    &["patrick", "pat", "paddy"],
    &["peter", "pete"],
    &["samuel", "sam", "sammy"],
    &["samantha", "sam", "sammy"],
    &["stephen", "steven", "steve"],
    &["susan", "sue", "susie", "suzanne"],
    &["timothy", "tim", "timmy"],
    &["victoria", "vicky", "tori"],
    &["jennifer", "jen", "jenny"],
    &["rebecca", "becky", "becca"],
    &["deborah", "debbie", "deb"],
    &["benjamin", "ben", "benny"],
    &["charles", "charlie", "chuck"],
    &["frederick", "fred", "freddie"],
    &["henry", "harry", "hal"],
    &["lawrence", "larry", "laurie"],
    &["gregory", "greg"],
    &["jessica", "jess", "jessie"],
    &["zachary", "zach", "zac"],
    &["joshua", "josh"],
    &["isabella", "isabel", "bella", "izzy"],
    &["abigail", "abby", "gail"],
    &["dorothy", "dot", "dotty"],
    &["kenneth", "ken", "kenny"],
    &["oliver", "ollie", "olly"],
    &["peter", "pete"],
    &["susan", "sue"],
    &["eleanor", "ellie", "nell", "nora"],
];

fn nicknames(a: &str, b: &str) -> bool {
    NICKNAMES
        .iter()
        .any(|group| group.contains(&a) && group.contains(&b))
}

/// The fields compared, in the order of [`Params`] and of explanations.
pub const FIELDS: &[&str] = &[
    "given_name",
    "family_name",
    "birth_date",
    "email",
    "phone",
    "external_id",
    "street",
    "house_number",
    "street2",
    "postal_code",
    "city",
    "region",
];

/// Number of levels per field (level 0, missing, excluded): exact, close, related, different.
const LEVELS: usize = 4;

/// The words for each level, for explanations.
pub const LEVEL_NAMES: [&str; 5] = ["missing", "exact", "close", "similar", "different"];

/// Comparison vector of a pair: per field a level 0 (missing) ..= 4 (different).
pub type Gamma = [u8; 12];

fn jw(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b)
}

/// The two names with any spaces left out, when either holds one ("ja ck" typed for "jack").
fn joined<'a>(a: &'a str, b: &'a str) -> Option<(String, String)> {
    (a.contains(' ') || b.contains(' ')).then(|| (a.replace(' ', ""), b.replace(' ', "")))
}

fn name_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else if joined(a, b).is_some_and(|(x, y)| x == y) {
        2
    } else {
        let s = jw(a, b);
        if s >= 0.94 {
            2
        } else if s >= 0.85 || nicknames(a, b) || soundex(a) == soundex(b) {
            3
        } else {
            4
        }
    }
}

fn text_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else {
        let s = jw(a, b);
        if s >= 0.92 {
            2
        } else if s >= 0.8 {
            3
        } else {
            4
        }
    }
}

fn exact_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else {
        4
    }
}

/// Exact, one edit (Damerau), or different: for ids and postcodes.
fn code_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else if strsim::damerau_levenshtein(a, b) <= 1 {
        2
    } else {
        4
    }
}

fn digits_differ_by_one(a: u32, b: u32) -> bool {
    let (sa, sb) = (a.to_string(), b.to_string());
    sa.len() == sb.len() && strsim::damerau_levenshtein(&sa, &sb) <= 1
}

fn birth_level(a: (u16, u8, u8), b: (u16, u8, u8)) -> u8 {
    if a.0 == 0 || b.0 == 0 {
        return 0;
    }
    if a == b {
        return 1;
    }
    let same = [a.0 == b.0, a.1 == b.1, a.2 == b.2];
    let n_same = same.iter().filter(|s| **s).count();
    if a.0 == b.0 && a.1 == b.2 && a.2 == b.1 {
        return 2; // day and month swapped
    }
    if n_same == 2 {
        let close = if !same[0] {
            digits_differ_by_one(a.0 as u32, b.0 as u32)
        } else if !same[1] {
            digits_differ_by_one(a.1 as u32, b.1 as u32)
        } else {
            digits_differ_by_one(a.2 as u32, b.2 as u32)
        };
        return if close { 2 } else { 3 };
    }
    4
}

/// Level 3 of the email and phone fields: the two records agree on a contact point that
/// several distinct people use (a household's landline or shared address).
const SHARED_LEVEL: u8 = 3;

/// Level 2 of the phone field: one number in common and another that differs, as two people
/// of one household have (the landline, and a mobile each).
const PHONE_HOUSEHOLD: u8 = 2;

fn phone_level(a: &MatchRecord, b: &MatchRecord) -> u8 {
    let pa = [(a.phone(), SHARED_PHONE), (a.mobile(), SHARED_MOBILE)];
    let pb = [(b.phone(), SHARED_PHONE), (b.mobile(), SHARED_MOBILE)];
    let mut agree = false;
    let mut personal = false;
    for (x, fx) in pa.iter().filter(|p| !p.0.is_empty()) {
        for (y, fy) in pb.iter().filter(|p| !p.0.is_empty()) {
            if x == y {
                agree = true;
                personal |= a.shared & fx == 0 && b.shared & fy == 0;
            }
        }
    }
    // A column both records fill with numbers the other record does not hold at all: two
    // different mobiles, or two different landlines.
    let differs = |i: usize| {
        !pa[i].0.is_empty()
            && !pb[i].0.is_empty()
            && pa[i].0 != pb[i].0
            && pb.iter().all(|y| y.0 != pa[i].0)
            && pa.iter().all(|x| x.0 != pb[i].0)
    };
    let conflict = differs(0) || differs(1);
    // The same mobile, no one else's, and two landlines: a person who moved (or gave work
    // and home numbers) keeps a mobile; a household shares a landline, not a mobile.
    let own_mobile = !a.mobile().is_empty()
        && a.mobile() == b.mobile()
        && (a.shared | b.shared) & SHARED_MOBILE == 0;
    if own_mobile && !differs(1) {
        return 1;
    }
    match (agree, conflict) {
        // One number in common and another that differs (a landline in common, two
        // mobiles): the pattern of two people of one household.
        (true, true) => PHONE_HOUSEHOLD,
        (true, false) if personal => 1,
        (true, false) => SHARED_LEVEL,
        (false, true) => 4,
        // Numbers in different columns only (a landline against a mobile): nothing known.
        (false, false) => 0,
    }
}

fn email_level(a: &MatchRecord, b: &MatchRecord) -> u8 {
    match exact_level(a.email(), b.email()) {
        1 if (a.shared | b.shared) & SHARED_EMAIL != 0 => SHARED_LEVEL,
        level => level,
    }
}

/// True when two given names can be one person's: equal, an initial of the other, one the
/// start of the other (Chris, Christopher), nicknames of one name, one word of a double
/// name, or a typo apart (one edit; two in long names).
pub fn given_compatible(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() || a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.chars().count() == 1 {
        return long.starts_with(short);
    }
    if (short.len() >= 3 && long.starts_with(short)) || nicknames(a, b) {
        return true;
    }
    if let Some((x, y)) = joined(a, b) {
        // A space typed inside a name: the name without it, a typo apart at most.
        if strsim::damerau_levenshtein(&x, &y) <= 1 {
            return true;
        }
        let words_a: Vec<&str> = a.split(' ').collect();
        return b
            .split(' ')
            .any(|w| words_a.iter().any(|x| given_compatible(x, w)));
    }
    let edits = strsim::damerau_levenshtein(a, b);
    edits <= 1 || (edits == 2 && short.len() >= 6)
}

/// Given and family name swapped between two records (each an exact or close match of the
/// other's), as forms filled in the wrong boxes do.
fn transposed(a: &MatchRecord, b: &MatchRecord) -> bool {
    !a.given().is_empty()
        && !a.family().is_empty()
        && matches!(name_level(a.given(), b.family()), 1 | 2)
        && matches!(name_level(a.family(), b.given()), 1 | 2)
}

/// Why two records cannot be one person, if they cannot: their given names are not variants
/// of each other (`given_name`), or both have a full birth date and the dates differ by more
/// than a typo or a day/month swap (`birth_date`). Never when both carry the same external
/// id (one source record).
pub fn contradiction(a: &MatchRecord, b: &MatchRecord) -> Option<&'static str> {
    // One record of the source system, exported twice: whatever was edited in between, it
    // is one person.
    if !a.external_id().is_empty() && a.external_id() == b.external_id() {
        return None;
    }
    if !transposed(a, b) && !given_compatible(a.given(), b.given()) {
        return Some("given_name");
    }
    if birth_level(a.birth, b.birth) >= 3 {
        return Some("birth_date");
    }
    None
}

/// Marks the contact points that several distinct people use: an email or phone number held
/// by records that contradict each other (two given names, two birth dates), or by more
/// records than one person plausibly has. Agreement on such a value is household evidence:
/// [`compare`] gives it level 3 instead of 1, so it weighs what it is observed to weigh and
/// never counts as specific to one person.
pub fn mark_shared(records: &mut [MatchRecord]) {
    /// More records than this holding one contact point are several people.
    const MANY: usize = 8;
    #[derive(Clone, Copy)]
    enum Kind {
        Email,
        Number,
        Address,
    }
    let mut flags = vec![0u8; records.len()];
    // Emails, phone numbers, addresses: landlines and mobiles are one namespace (a number in
    // one record's phone column can stand in another's mobile column).
    for kind in [Kind::Email, Kind::Number, Kind::Address] {
        let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let values = match kind {
                Kind::Email => [r.email().to_string(), String::new()],
                Kind::Number => [r.phone().to_string(), r.mobile().to_string()],
                Kind::Address => [r.address_key().unwrap_or_default(), String::new()],
            };
            for (k, v) in values.iter().enumerate() {
                if v.is_empty() || (k == 1 && *v == values[0]) {
                    continue;
                }
                groups.entry(v.clone()).or_default().push(i as u32);
            }
        }
        for (value, members) in &groups {
            if members.len() < 2 {
                continue;
            }
            let shared = members.len() > MANY
                || members.iter().enumerate().any(|(x, i)| {
                    members[x + 1..].iter().any(|j| {
                        contradiction(&records[*i as usize], &records[*j as usize]).is_some()
                    })
                });
            if !shared {
                continue;
            }
            let namesakes = matches!(kind, Kind::Address)
                && members.iter().enumerate().any(|(x, i)| {
                    members[x + 1..].iter().any(|j| {
                        let (a, b) = (&records[*i as usize], &records[*j as usize]);
                        a.given() == b.given() && contradiction(a, b).is_some()
                    })
                });
            for i in members {
                if namesakes {
                    flags[*i as usize] |= NAMESAKES_AT_ADDRESS;
                }
                let r = &records[*i as usize];
                let f = &mut flags[*i as usize];
                match kind {
                    Kind::Number => {
                        if r.phone() == value {
                            *f |= SHARED_PHONE;
                        }
                        if r.mobile() == value {
                            *f |= SHARED_MOBILE;
                        }
                    }
                    Kind::Email => *f |= SHARED_EMAIL,
                    Kind::Address => *f |= SHARED_ADDRESS,
                }
            }
        }
    }
    // Full names few records carry: a name is rare when all pairs of its records together
    // expect fewer than RARE_NAME_COINCIDENCE chance birth-date agreements, given how often
    // two strangers in this file share a date (1 in about 25,000 for adults born over 70
    // years). A date is counted once per given name and once per family name born on it,
    // so a file's duplicates (one person, one date, several records) do not pass for
    // strangers sharing it.
    let mut births: HashMap<Birth, u32> = HashMap::new();
    let mut names: HashMap<(&str, &str), u32> = HashMap::new();
    let mut seen: HashSet<(&str, Birth)> = HashSet::new();
    for r in records.iter() {
        if r.birth.0 != 0 {
            let new_given = seen.insert((r.given(), r.birth));
            let new_family = seen.insert((r.family(), r.birth));
            if new_given && new_family {
                *births.entry(r.birth).or_default() += 1;
            }
        }
        if !r.given().is_empty() && !r.family().is_empty() {
            *names.entry((r.given(), r.family())).or_default() += 1;
        }
    }
    // The share of pairs of dated records that share a date (sum of c(c-1) over n(n-1)).
    let dated: f64 = births.values().map(|c| *c as f64).sum();
    let same: f64 = births.values().map(|c| *c as f64 * (*c as f64 - 1.0)).sum();
    let collision = if dated > 1.0 {
        same / (dated * (dated - 1.0))
    } else {
        1.0
    }
    // Few dated records say little about the spread: assume no better than 1 in 10,000.
    .max(1e-4);
    for (r, f) in records.iter().zip(flags.iter_mut()) {
        if names.get(&(r.given(), r.family())).is_some_and(|n| {
            let k = *n as f64;
            k * (k - 1.0) / 2.0 * collision <= RARE_NAME_COINCIDENCE
        }) {
            *f |= RARE_NAME;
        }
    }
    // Addresses where two people born on one day have names that are not one name spelt
    // two ways (John and Jack: twins, or one person under a nickname): an initial there may
    // be either.
    let mut born_at: HashMap<(String, Birth), Vec<u32>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let (Some(key), true) = (r.address_key(), r.birth.0 != 0) {
            if r.given().chars().count() > 1 {
                born_at.entry((key, r.birth)).or_default().push(i as u32);
            }
        }
    }
    for members in born_at.values().filter(|m| m.len() > 1) {
        let two_names = members.iter().enumerate().any(|(x, i)| {
            members[x + 1..]
                .iter()
                .any(|j| !spelt_alike(records[*i as usize].given(), records[*j as usize].given()))
        });
        if two_names {
            for i in members {
                flags[*i as usize] |= TWO_NAMES_BORN_THERE;
            }
        }
    }
    for (r, f) in records.iter_mut().zip(flags) {
        r.shared = f;
    }
}

/// The expected number of chance birth-date agreements among the records of one full name
/// at or under which the name is rare ([`RARE_NAME`]).
const RARE_NAME_COINCIDENCE: f64 = 0.002;

/// True when two given names are one name, spelt alike: equal, a typo apart inside the name
/// (Rebecca and Rebeca, Jon and John), or one a shortening of the other by two letters or
/// more (Sam, Samuel); spaces aside. Not nicknames, not initials, and not an edit at the end
/// of a name, where names change sex (Paul and Paula, Mark and Mary, Louis and Louise,
/// Oliver and Olivia) and a brother and sister, or twins, may be named so.
fn spelt_alike(x: &str, y: &str) -> bool {
    let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
    if short.chars().count() <= 1 {
        return x == y;
    }
    let (jx, jy) = joined(x, y).unwrap_or_else(|| (x.to_string(), y.to_string()));
    let edits = strsim::damerau_levenshtein(&jx, &jy);
    let ends_alike =
        jx.chars().next() == jy.chars().next() && jx.chars().last() == jy.chars().last();
    let shortening = short.len() >= 3 && long.starts_with(short) && long.len() >= short.len() + 2;
    // Two typos in a long name that keeps its first two letters and its last.
    let two_typos = edits == 2 && short.len() >= 6 && jx.get(..2) == jy.get(..2) && ends_alike;
    shortening || (edits <= 1 && ends_alike) || two_typos
}

/// True when two given names are one name with a typo well inside it: spelt alike, and the
/// same first letter and last two (Rebeca, Hnnah; not Frances and Francis). Enough to tell
/// a record from a housemate's without a birth date.
fn typo_inside(x: &str, y: &str) -> bool {
    let tail = |s: &str| s.chars().rev().take(2).collect::<String>();
    spelt_alike(x, y) && x.chars().count() > 2 && y.chars().count() > 2 && tail(x) == tail(y)
}

/// Compares two records field by field.
pub fn compare(a: &MatchRecord, b: &MatchRecord) -> Gamma {
    let mut given = name_level(a.given(), b.given());
    let mut family = name_level(a.family(), b.family());
    // Transposed names: given and family swapped between the two records.
    if given > 2 && family > 2 && transposed(a, b) {
        given = 2;
        family = 2;
    }
    let house = exact_level(a.house(), b.house());
    let mut phone = phone_level(a, b);
    // A landline both records give at one house is the house's phone, not a person's.
    let via_mobile = |x: &MatchRecord, y: &MatchRecord| {
        !x.mobile().is_empty() && (x.mobile() == y.mobile() || x.mobile() == y.phone())
    };
    if phone == 1
        && house == 1
        && !a.phone().is_empty()
        && a.phone() == b.phone()
        && !via_mobile(a, b)
        && !via_mobile(b, a)
    {
        phone = SHARED_LEVEL;
    }
    [
        given,
        family,
        birth_level(a.birth, b.birth),
        email_level(a, b),
        phone,
        code_level(a.external_id(), b.external_id()),
        text_level(a.street(), b.street()),
        match house {
            // The same house, home to several people: household evidence.
            1 if (a.shared | b.shared) & SHARED_ADDRESS != 0 => SHARED_LEVEL,
            level => level,
        },
        text_level(a.street2(), b.street2()),
        code_level(a.postcode(), b.postcode()),
        text_level(a.city(), b.city()),
        exact_level(a.region(), b.region()),
    ]
}

/// m and u probabilities per field and level, and the share of candidate pairs that match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Params {
    /// P(level | match), per field, levels 1..=4.
    pub m: Vec<[f64; LEVELS]>,
    /// P(level | non-match), per field, levels 1..=4.
    pub u: Vec<[f64; LEVELS]>,
    /// Prior probability that a candidate pair is a match.
    pub lambda: f64,
    /// EM iterations run.
    pub iterations: u32,
}

/// Prior u of an exact agreement per field among different people (in [`FIELDS`] order): how
/// often two strangers share a given name, a family name, a birth date, an email...
const PRIOR_U_EXACT: [f64; 12] = [
    0.01, 0.005, 0.0005, 0.00001, 0.00001, 0.00001, 0.002, 0.02, 0.01, 0.005, 0.02, 0.2,
];

/// At most this share of candidate pairs is taken to be matches: beyond it the estimation has
/// found a class of look-alikes, not of duplicates.
const MAX_LAMBDA: f64 = 0.5;

/// Weight of the priors, in pseudo-pairs: small files lean on them, large ones overrule them.
const PRIOR_U_PAIRS: f64 = 2_000.0;
const PRIOR_M_PAIRS: f64 = 20.0;

impl Default for Params {
    /// Prior values: the starting point of estimation, what small files lean on, and what
    /// explains a pair before any import has estimated them.
    fn default() -> Self {
        Params {
            m: vec![[0.90, 0.05, 0.03, 0.02]; FIELDS.len()],
            u: PRIOR_U_EXACT
                .iter()
                .map(|e| {
                    let close = (e * 2.0).min(0.05);
                    let similar = (e * 5.0).min(0.1);
                    [*e, close, similar, 1.0 - e - close - similar]
                })
                .collect(),
            lambda: 0.1,
            iterations: 0,
        }
    }
}

impl Params {
    /// The match weight (log2 m/u) of each field of a comparison vector; 0 where missing.
    pub fn weights(&self, g: &Gamma) -> [f64; 12] {
        let mut w = [0.0; 12];
        for (i, level) in g.iter().enumerate() {
            if *level > 0 {
                let l = *level as usize - 1;
                w[i] = (self.m[i][l] / self.u[i][l]).log2();
            }
        }
        w
    }

    /// Total match weight of a comparison vector. The address fields (street, house number,
    /// street2, postcode, town, region) describe one fact, where a person lives, which a
    /// whole household shares: their agreements count once, as the best of them (street
    /// with house number, or postcode with house number, or any one alone), not summed;
    /// their disagreements count in full.
    pub fn score(&self, g: &Gamma) -> f64 {
        let w = self.weights(g);
        let person: f64 = w[..6].iter().sum();
        let pos = |i: usize| w[i].max(0.0);
        let agree = (pos(6) + pos(7))
            .max(pos(9) + pos(7))
            .max(pos(8))
            .max(pos(10))
            .max(pos(11));
        let disagree: f64 = w[6..].iter().filter(|x| **x < 0.0).sum();
        person + agree + disagree
    }

    /// Posterior match probability of a comparison vector.
    pub fn probability(&self, g: &Gamma) -> f64 {
        let prior = (self.lambda / (1.0 - self.lambda)).log2();
        let w = self.score(g) + prior;
        1.0 / (1.0 + (-w).exp2())
    }
}

/// A small deterministic generator (SplitMix64) for sampling pairs reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Estimates u from random pairs (almost all non-matches), m from the candidate pairs that
/// seed rules take for matches (an email, an external id, or three of name, birth date and
/// postcode agreeing exactly), and lambda by EM with m and u held.
/// Takes the distinct comparison vectors of the candidate pairs with their counts.
pub fn estimate_patterns(records: &[MatchRecord], patterns: &[(Gamma, f64)]) -> Params {
    let mut p = Params::default();
    // u: level frequencies among random pairs, with a pseudo-count so no level is 0.
    let n = records.len();
    if n >= 2 {
        let samples = (n * 20).min(n * (n - 1) / 2).min(300_000);
        let mut counts: Vec<[f64; LEVELS]> =
            p.u.iter().map(|u| u.map(|x| x * PRIOR_U_PAIRS)).collect();
        let mut rng = Rng(0x5EED);
        for _ in 0..samples {
            let i = (rng.next() % n as u64) as usize;
            let j = (rng.next() % n as u64) as usize;
            if i == j {
                continue;
            }
            let g = compare(&records[i], &records[j]);
            for (f, level) in g.iter().enumerate() {
                if *level > 0 {
                    counts[f][*level as usize - 1] += 1.0;
                }
            }
        }
        for (f, c) in counts.iter().enumerate() {
            let total: f64 = c.iter().sum();
            p.u[f] = c.map(|x| x / total);
        }
    }
    // m: per field, from the candidate pairs that a seed rule not involving that field takes
    // for matches (two records agreeing exactly on an email, on an external id, or on three
    // of name, birth date and postcode are, with rare exceptions, one person). A field is
    // never judged by pairs chosen because they agree on it.
    let mut patterns: Vec<(Gamma, f64)> = patterns.to_vec();
    patterns.sort_by_key(|a| a.0);
    let total: f64 = patterns.iter().map(|(_, c)| c).sum();
    if total == 0.0 {
        return p;
    }
    let prior = Params::default();
    for f in 0..FIELDS.len() {
        let mut acc = prior.m[f].map(|x| x * PRIOR_M_PAIRS);
        for (g, count) in &patterns {
            if g[f] == 0 {
                continue;
            }
            let seeded = SEED_RULES
                .iter()
                .any(|rule| !rule.contains(&f) && rule.iter().all(|r| g[*r] == 1));
            if seeded {
                acc[g[f] as usize - 1] += count;
            }
        }
        let sum: f64 = acc.iter().sum();
        p.m[f] = acc.map(|x| (x / sum).max(1e-6));
    }
    // lambda: EM with m and u held, over distinct comparison vectors.
    for it in 0..100 {
        let matched: f64 = patterns
            .iter()
            .map(|(g, count)| p.probability(g) * count)
            .sum();
        let lambda = (matched / total).clamp(1e-6, MAX_LAMBDA);
        let change = (lambda - p.lambda).abs();
        p.lambda = lambda;
        p.iterations = it + 1;
        if change < 1e-7 {
            break;
        }
    }
    p
}

/// Seed rules: sets of fields (indices into [`FIELDS`]) whose exact agreement marks a pair as
/// a near-certain match when m is estimated.
const SEED_RULES: &[&[usize]] = &[
    &[3],          // email
    &[5],          // external id
    &[0, 1, 2],    // given + family + birth date
    &[1, 2, 9],    // family + birth date + postcode
    &[0, 2, 9],    // given + birth date + postcode
    &[0, 1, 9, 7], // given + family + postcode + house number
];

/// Band thresholds on the posterior match probability.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// At or above: merge without asking.
    pub auto_merge: f64,
    /// At or above (and below `auto_merge`): ask a person.
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            auto_merge: 0.99,
            review: 0.5,
        }
    }
}

/// A scored candidate pair (indices into the record list, `a < b`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// First record.
    pub a: u32,
    /// Second record.
    pub b: u32,
    /// Posterior match probability.
    pub probability: f64,
    /// True when the pair may not merge without a person: what agrees could be a household's
    /// or a namesake's as well as one person's ([`needs_review`]).
    pub needs_review: bool,
    /// True when the two share nothing of one person while their numbers or places differ
    /// ([`apart`]): two people, never put to review.
    pub apart: bool,
}

/// The street or postcode of a house agree: the postcode, or the street with a postcode one
/// typo apart, or the street in the same town when a postcode is missing. (A house number
/// and street name alone recur in many towns.)
fn same_place(g: &Gamma) -> bool {
    let street = matches!(g[6], 1 | 2);
    g[9] == 1 || (street && g[9] == 2) || (street && g[9] == 0 && g[10] == 1)
}

/// How many agreements in a comparison vector belong to one person rather than to a
/// household or a namesake: the full birth date, an email, phone or external id no one else
/// uses. (A birth date one digit away is not one: among thousands of John Smiths, two are
/// born a digit apart.)
fn personal_evidence(g: &Gamma) -> usize {
    [g[2] == 1, g[3] == 1, g[4] == 1, g[5] == 1]
        .iter()
        .filter(|x| **x)
        .count()
}

/// The one personal agreement is the birth date: no email, phone or external id of one
/// person in common. Among thousands of people of a common name, two share a birth date.
fn only_the_birth_date(g: &Gamma) -> bool {
    g[2] == 1 && personal_evidence(g) == 1
}

/// Two personal agreements and the given name exact or close: a link no look-alike makes.
fn strong(g: &Gamma) -> bool {
    personal_evidence(g) >= 2 && matches!(g[0], 1 | 2)
}

/// Addresses in different places: postcodes more than a typo apart, or, without postcodes,
/// different towns.
fn elsewhere(g: &Gamma) -> bool {
    g[9] == 4 || (g[9] == 0 && g[10] == 4)
}

/// True when two records may not sit in one cluster: they contradict each other
/// ([`contradiction`]), or they live in different places with different phone numbers and
/// nothing personal in common (two namesakes that a third, sparse record resembles both).
fn incoherent(a: &MatchRecord, b: &MatchRecord) -> bool {
    if contradiction(a, b).is_some() {
        return true;
    }
    let g = compare(a, b);
    g[4] == 4 && elsewhere(&g) && personal_evidence(&g) == 0
}

/// True when two records share nothing of one person (no birth date, email, phone or
/// external id of one person in common) while their numbers or their places differ:
/// namesakes elsewhere, or two people of one household. Never merged, and not put to a
/// person either: in the generated donor files 17,664 such review items held 22 of one person
/// (BENCHMARKS.md). They are handled as two people, like a contradiction.
pub fn apart(g: &Gamma) -> bool {
    personal_evidence(g) == 0 && (matches!(g[4], PHONE_HOUSEHOLD | 4) || elsewhere(g))
}

/// Why [`needs_review`] holds a pair back, as a code (`None` when it does not).
pub fn hold_reason(g: &Gamma) -> Option<&'static str> {
    if !needs_review(g) {
        return None;
    }
    Some(if matches!(g[4], PHONE_HOUSEHOLD | 4) {
        "different_phones"
    } else if elsewhere(g) {
        "different_places"
    } else if personal_evidence(g) == 1 && g[6] == 4 {
        "different_streets"
    } else if only_the_birth_date(g) && g[7] == 4 {
        "different_houses"
    } else if personal_evidence(g) == 0 {
        "only_household_evidence"
    } else if g[0] == 3 {
        "given_name_only_a_variant"
    } else {
        "names_differ"
    })
}

/// See [`Scored::needs_review`]. A pair may merge without a person only on evidence that
/// belongs to one person and not to a household or a namesake:
/// - two personal agreements (full birth date, an email, phone or external id no one else in
///   the file uses), one of them the birth date when the given names agree only as variants
///   (John and Jack may be father and son);
/// - or one, with given names exact or close, family names alike, and nothing in conflict
///   (two different mobiles or landlines; addresses in different places; two different
///   streets: among a million donors two John Smiths share a birth date, and a name-made
///   email such as jsmith@ a provider; and, when that agreement is the birth date, two
///   different house numbers: two John Smiths born on one day on one street of a city);
/// - or none, with given and family names agreeing closely, the same house (street or
///   postcode and house number) that no one else lives in, and nothing in conflict;
/// - or the same given name and birth date at one house (a married name, a typo).
///
/// Surname, address and landline are what a household shares, so on their own they never
/// merge two records.
pub fn needs_review(g: &Gamma) -> bool {
    let personal = personal_evidence(g);
    let conflicts = matches!(g[4], PHONE_HOUSEHOLD | 4) || elsewhere(g);
    let given_close = matches!(g[0], 1 | 2);
    let birth = g[2] == 1;
    let family_alike = (1..=3).contains(&g[1]);
    let same_house = g[7] == 1 && same_place(g);
    let ok = (personal >= 2 && (given_close || birth))
        || (personal == 1
            && !conflicts
            && g[6] != 4
            && !(only_the_birth_date(g) && g[7] == 4)
            && family_alike
            && given_close)
        || (personal == 0
            && !conflicts
            && given_close
            && matches!(g[1], 1 | 2)
            && same_house)
        || (!conflicts && g[0] == 1 && birth && matches!(g[7], 1 | SHARED_LEVEL) && same_place(g))
        // A family name and birth date with the given name missing, at a house no one else
        // is known to share.
        || (!conflicts && g[0] == 0 && matches!(g[1], 1 | 2) && birth && same_house);
    !ok
}

/// True when two records that [`needs_review`] holds back are one person all the same: the
/// same given (or the same with a typo inside it: Rebecca, Rebeca) and family name at the same
/// house, which several people share (a household
/// sharing one email, phone and address: only the name tells its members apart), with
/// nothing in conflict and no two people of that name known to live there.
pub fn same_name_at_home(g: &Gamma, a: &MatchRecord, b: &MatchRecord) -> bool {
    (g[0] == 1 || (matches!(g[0], 2 | 3) && typo_inside(a.given(), b.given())))
        && g[1] == 1
        && matches!(g[7], 1 | SHARED_LEVEL)
        && same_place(g)
        && !matches!(g[4], PHONE_HOUSEHOLD | 4)
        && (a.shared | b.shared) & NAMESAKES_AT_ADDRESS == 0
        && contradiction(a, b).is_none()
}

/// True when two records that [`needs_review`] holds back because their given names agree
/// only as variants (Jon and John, Rick and Richard, a typo, an initial) are one person all
/// the same, the family name alike and nothing in conflict:
/// - a typo or a shortening (Jon and John, Sam and Samuel; not a nickname, not a bare
///   initial) with the same full birth date at the same house: a father and son differ in
///   birth date, and twins are not given one name spelt two ways (they may be John and
///   Jack, so a nickname is not enough);
/// - or a mobile number no one else uses, with one more personal agreement (the birth date
///   or an email no one else uses): a household shares a landline and an email, not a
///   mobile.
///
/// No two people of one name may be known to live at the address.
pub fn variant_proven(g: &Gamma, a: &MatchRecord, b: &MatchRecord) -> bool {
    let (x, y) = (a.given(), b.given());
    let initial = x.chars().count() == 1 || y.chars().count() == 1;
    // An initial scores as a different name (J and John are far apart letter by letter).
    if !(matches!(g[0], 2 | 3) || (initial && g[0] == 4))
        || !matches!(g[1], 1 | 2)
        || matches!(g[4], PHONE_HOUSEHOLD | 4)
        || elsewhere(g)
        || (a.shared | b.shared) & NAMESAKES_AT_ADDRESS != 0
        || contradiction(a, b).is_some()
    {
        return false;
    }
    let same_house = matches!(g[7], 1 | SHARED_LEVEL) && same_place(g);
    // An initial stands for one name of the house's people born that day, unless two
    // names are (twins, or a nickname that might be a twin).
    let initial_known = initial && (a.shared | b.shared) & TWO_NAMES_BORN_THERE == 0;
    let at_home = (spelt_alike(x, y) || initial_known) && g[2] == 1 && same_house;
    let mobile = !a.mobile().is_empty()
        && a.mobile() == b.mobile()
        && (a.shared | b.shared) & SHARED_MOBILE == 0;
    let own_mobile = mobile && (g[2] == 1 || g[3] == 1);
    at_home || own_mobile
}

/// True when two records that [`needs_review`] holds back are one person all the same: the
/// same given and family name, a name few records in the file carry ([`RARE_NAME`]), and
/// the same full birth date, wherever each lives (a person who moved). Not when one number
/// is in common and another differs (two people of one household), nor when two people of
/// that name are known to live at the address.
pub fn rare_name_proven(g: &Gamma, a: &MatchRecord, b: &MatchRecord) -> bool {
    g[0] == 1
        && g[1] == 1
        && g[2] == 1
        && g[4] != PHONE_HOUSEHOLD
        && a.shared & b.shared & RARE_NAME != 0
        && (a.shared | b.shared) & NAMESAKES_AT_ADDRESS == 0
}

/// True when a pair that [`needs_review`] holds back is one person all the same, by any of
/// [`same_name_at_home`], [`variant_proven`], [`rare_name_proven`] or [`mover_proven`]: the
/// one test the import and `explain` both use.
pub fn proven_anyway(g: &Gamma, a: &MatchRecord, b: &MatchRecord) -> bool {
    same_name_at_home(g, a, b)
        || variant_proven(g, a, b)
        || rare_name_proven(g, a, b)
        || mover_proven(g, a, b)
}

/// True when two records that [`needs_review`] holds back are one person who moved: the
/// same given and family name, a name few records carry ([`RARE_NAME`]), and a mobile
/// number no other record uses, with no birth date against it (a household shares a
/// landline, not a mobile). Not for common names: mobile numbers are given out again, and
/// two John Smiths a number apart in time are two people.
pub fn mover_proven(g: &Gamma, a: &MatchRecord, b: &MatchRecord) -> bool {
    g[0] == 1
        && g[1] == 1
        && g[4] == 1
        && a.shared & b.shared & RARE_NAME != 0
        && !a.mobile().is_empty()
        && a.mobile() == b.mobile()
        && (a.shared | b.shared) & SHARED_MOBILE == 0
        && contradiction(a, b).is_none()
}

/// True when a comparison says the two records live at one house: the same house number,
/// and the same postcode (or street and town).
pub fn same_house(g: &Gamma) -> bool {
    matches!(g[7], 1 | SHARED_LEVEL) && same_place(g)
}

/// Candidate pairs: every pair of records sharing a blocking key, each once, `a < b`, packed
/// as `a << 32 | b` and sorted ([`pair_of`] unpacks one). Blocks larger than `max_block` are
/// skipped (a key that common says little). Pairs where both records are `existing` are left
/// out: the import does not merge the vault with itself.
pub fn candidate_pairs(records: &[MatchRecord], existing: &[bool], max_block: usize) -> Vec<u64> {
    // One u64 per (key, record): the key's hash in the high bits, the record's index in the
    // low ones, sorted: each run of one hash is a block. Flat rather than a map of lists: most
    // keys have one record, and a million records make ten million keys. Two keys whose
    // hashes agree in the high bits share a block; that only adds pairs to compare (about
    // two such coincidences among a million records' keys).
    let bits = (usize::BITS - records.len().max(2).leading_zeros()).max(1);
    let low = (1u64 << bits) - 1;
    let chunks: Vec<std::ops::Range<usize>> = (0..records.len())
        .step_by(16_384)
        .map(|s| s..(s + 16_384).min(records.len()))
        .collect();
    let parts: Vec<Vec<u64>> = par_map(&chunks, |range| {
        let mut out = Vec::with_capacity(range.len() * 10);
        for i in range.clone() {
            for k in records[i].blocking_keys() {
                out.push((key_hash(&k) & !low) | i as u64);
            }
        }
        out
    });
    let mut entries = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        entries.extend_from_slice(&part);
    }
    entries.sort_unstable();
    let mut pairs: Vec<u64> = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let block = entries[start] & !low;
        let mut end = start + 1;
        while end < entries.len() && entries[end] & !low == block {
            end += 1;
        }
        let members = &entries[start..end];
        start = end;
        if members.len() < 2 || members.len() > max_block {
            continue;
        }
        // Members are in index order, so i <= j.
        for (x, i) in members.iter().enumerate() {
            for j in &members[x + 1..] {
                let (i, j) = (i & low, j & low);
                if i == j || (existing[i as usize] && existing[j as usize]) {
                    continue;
                }
                pairs.push((i << 32) | j);
            }
        }
    }
    drop(entries);
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The two records of a pair from [`candidate_pairs`].
pub fn pair_of(p: u64) -> (u32, u32) {
    ((p >> 32) as u32, p as u32)
}

/// A 64-bit hash of a blocking key, for in-memory blocks.
fn key_hash(key: &str) -> u64 {
    // FNV-1a: fast, stable across runs (in-memory only; the vault stores keyed hashes).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Most records one cluster may gather in one import: a person is rarely entered more
/// often than this, and a larger cluster is a sign of a chain of look-alikes.
pub const MAX_CLUSTER: usize = 24;

/// Why an auto-merge pair did not merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both sides already hold a subject stored in the vault.
    TwoSubjects,
    /// A member of one side contradicts a member of the other (given name, birth date).
    Contradiction,
    /// The two records are the two people of one household row.
    CannotLink,
    /// The cluster would grow beyond [`MAX_CLUSTER`].
    TooLarge,
    /// One of the two records matches two clusters that contradict each other: which person
    /// it is, is for a person to say.
    Ambiguous,
}

/// Groups records: auto-merge pairs join clusters (best pairs first) only when the cluster
/// stays coherent: no member of one side may contradict a member of the other
/// ([`contradiction`]), two stored subjects never join, and a cluster stops at
/// [`MAX_CLUSTER`]. A record whose auto-merge pairs reach two clusters that could not join
/// is ambiguous: it merges with neither, and its pairs go to review. Returns each record's
/// cluster representative (the smallest index of its cluster, or its existing record when it
/// has one), the review pairs between different clusters (with why each auto-merge pair
/// among them was refused) and the pairs of two people alike.
pub fn cluster(
    records: &[MatchRecord],
    scored: &[Scored],
    existing: &[bool],
    cannot_link: &[(u32, u32)],
    together: &[(u32, u32)],
    thresholds: Thresholds,
) -> Clustered {
    let mut order: Vec<&Scored> = scored
        .iter()
        .filter(|s| s.probability >= thresholds.auto_merge && !s.needs_review)
        .collect();
    order.sort_by(|x, y| {
        y.probability
            .total_cmp(&x.probability)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });
    let n = records.len();
    let (reps, refused) = link(
        records,
        &order,
        existing,
        cannot_link,
        together,
        &HashSet::new(),
    );
    // A record is ambiguous when it was placed in a cluster of several while it also matches,
    // without contradicting it, a record of another cluster that could not join: it fits two
    // people who are not one, so where it went was a guess.
    let mut size: HashMap<u32, u32> = HashMap::new();
    for r in &reps {
        *size.entry(*r).or_default() += 1;
    }
    let placed = |x: u32| size[&reps[x as usize]] > 1;
    // A record tied into its cluster by a strong link (two personal agreements and the given
    // name) is that cluster's, whatever else it resembles.
    let strongly_placed = |x: u32| {
        order.iter().any(|s| {
            (s.a == x || s.b == x)
                && reps[s.a as usize] == reps[s.b as usize]
                && strong(&compare(&records[s.a as usize], &records[s.b as usize]))
        })
    };
    let ambiguous: HashSet<u32> = refused
        .iter()
        .filter(|(_, why)| matches!(why, Refusal::Contradiction | Refusal::TwoSubjects))
        .flat_map(|(s, _)| [(s.a, s.b), (s.b, s.a)])
        .filter(|(x, other)| {
            !existing[*x as usize]
                && placed(*x)
                && contradiction(&records[*x as usize], &records[*other as usize]).is_none()
                && !strongly_placed(*x)
        })
        .map(|(x, _)| x)
        .collect();
    let (reps, mut refused) = if ambiguous.is_empty() {
        (reps, refused)
    } else {
        let (reps, mut again) = link(records, &order, existing, cannot_link, together, &ambiguous);
        for (s, why) in again.iter_mut() {
            if ambiguous.contains(&s.a) || ambiguous.contains(&s.b) {
                *why = Refusal::Ambiguous;
            }
        }
        (reps, again)
    };
    refused.sort_by(|x, y| x.0.a.cmp(&y.0.a).then(x.0.b.cmp(&y.0.b)));
    let refusal = |s: &Scored| -> Option<Refusal> {
        refused
            .binary_search_by(|(r, _)| r.a.cmp(&s.a).then(r.b.cmp(&s.b)))
            .ok()
            .map(|i| refused[i].1)
    };
    // Pairs whose two records contradict each other are two people (the members of one
    // household look alike on everything but who they are), and so are pairs with nothing
    // personal in common whose numbers or places differ ([`apart`]): household links (kept
    // when they share a house), not review.
    let (households, review): (Vec<_>, Vec<_>) = scored
        .iter()
        .filter(|s| s.probability >= thresholds.review)
        .filter(|s| reps[s.a as usize] != reps[s.b as usize])
        .map(|s| (*s, refusal(s)))
        .partition(|(s, _)| {
            s.apart || contradiction(&records[s.a as usize], &records[s.b as usize]).is_some()
        });
    let mut review: Vec<(Scored, Option<Refusal>)> = review;
    review.sort_by(|x, y| x.0.a.cmp(&y.0.a).then(x.0.b.cmp(&y.0.b)));
    let mut households: Vec<Scored> = households.into_iter().map(|(s, _)| s).collect();
    households.sort_by(|x, y| x.a.cmp(&y.a).then(x.b.cmp(&y.b)));
    debug_assert_eq!(reps.len(), n);
    Clustered {
        reps,
        review,
        households,
    }
}

/// What [`cluster`] decides.
#[derive(Debug, Clone, Default)]
pub struct Clustered {
    /// Each record's cluster representative.
    pub reps: Vec<u32>,
    /// Review-band pairs between clusters, with why an auto-merge pair among them did not
    /// merge.
    pub review: Vec<(Scored, Option<Refusal>)>,
    /// Review-band pairs of records that contradict each other (two given names, two birth
    /// dates): two people who share a surname, an address or a contact point.
    pub households: Vec<Scored>,
}

/// One pass of [`cluster`]: links `order`'s pairs best first, leaving out the pairs of
/// `skip`'s records; returns the representatives and the pairs refused, with why.
fn link(
    records: &[MatchRecord],
    order: &[&Scored],
    existing: &[bool],
    cannot_link: &[(u32, u32)],
    together: &[(u32, u32)],
    skip: &HashSet<u32>,
) -> (Vec<u32>, Vec<(Scored, Refusal)>) {
    let n = records.len();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    // The existing record of each cluster root, if any.
    let mut anchor: Vec<Option<u32>> = (0..n).map(|i| existing[i].then_some(i as u32)).collect();
    // The members of each cluster of two or more, by root.
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let p = parent[parent[x as usize] as usize];
            parent[x as usize] = p;
            x = p;
        }
        x
    }
    let mut refused = Vec::new();
    // Records that must stay apart (the two people of one household row), per cluster root.
    let mut apart: HashMap<u32, Vec<u32>> = HashMap::new();
    for (x, y) in cannot_link {
        apart.entry(*x).or_default().push(*y);
        apart.entry(*y).or_default().push(*x);
    }
    // One stored subject's source records are one cluster before anything joins it.
    for (x, y) in together {
        let (rx, ry) = (find(&mut parent, *x), find(&mut parent, *y));
        if rx == ry {
            continue;
        }
        let (root, child) = if rx < ry { (rx, ry) } else { (ry, rx) };
        let mut joined = members.remove(&root).unwrap_or_else(|| vec![root]);
        joined.extend(members.remove(&child).unwrap_or_else(|| vec![child]));
        members.insert(root, joined);
        parent[child as usize] = root;
        anchor[root as usize] = anchor[root as usize].or(anchor[child as usize]);
    }
    for s in order {
        if skip.contains(&s.a) || skip.contains(&s.b) {
            refused.push((**s, Refusal::Ambiguous));
            continue;
        }
        let (ra, rb) = (find(&mut parent, s.a), find(&mut parent, s.b));
        if ra == rb {
            continue;
        }
        let why = if anchor[ra as usize].is_some() && anchor[rb as usize].is_some() {
            Some(Refusal::TwoSubjects)
        } else if apart
            .get(&ra)
            .is_some_and(|list| list.iter().any(|y| find(&mut parent, *y) == rb))
        {
            Some(Refusal::CannotLink)
        } else {
            let one = [ra];
            let two = [rb];
            let side_a = members.get(&ra).map(Vec::as_slice).unwrap_or(&one);
            let side_b = members.get(&rb).map(Vec::as_slice).unwrap_or(&two);
            if side_a.len() + side_b.len() > MAX_CLUSTER {
                Some(Refusal::TooLarge)
            } else if side_a.iter().any(|x| {
                side_b
                    .iter()
                    .any(|y| incoherent(&records[*x as usize], &records[*y as usize]))
            }) {
                Some(Refusal::Contradiction)
            } else {
                None
            }
        };
        if let Some(why) = why {
            refused.push((**s, why));
            continue;
        }
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        let mut joined = members.remove(&root).unwrap_or_else(|| vec![root]);
        joined.extend(members.remove(&child).unwrap_or_else(|| vec![child]));
        members.insert(root, joined);
        parent[child as usize] = root;
        anchor[root as usize] = anchor[root as usize].or(anchor[child as usize]);
        if let Some(list) = apart.remove(&child) {
            apart.entry(root).or_default().extend(list);
        }
    }
    let reps: Vec<u32> = (0..n as u32)
        .map(|i| {
            let r = find(&mut parent, i);
            anchor[r as usize].unwrap_or(r)
        })
        .collect();
    (reps, refused)
}

/// The whole matcher over a set of records: blocking, u sampling, EM, scoring, clustering.
pub struct Matched {
    /// Estimated parameters.
    pub params: Params,
    /// Each record's cluster representative.
    pub reps: Vec<u32>,
    /// Review-band pairs between clusters, with why an auto-merge pair among them did not
    /// merge.
    pub review: Vec<(Scored, Option<Refusal>)>,
    /// Review-band pairs of two people alike (see [`Clustered::households`]).
    pub households: Vec<Scored>,
    /// Candidate pairs compared.
    pub compared: usize,
}

/// Runs the matcher. `existing[i]` marks records already in the vault; `cannot_link` pairs
/// are never merged (the two people of one household row); `together` pairs of existing
/// records are one stored subject's source records, one cluster from the start, so a record
/// joins that subject only if it agrees with every record merged into it.
pub fn run(
    records: &mut [MatchRecord],
    existing: &[bool],
    cannot_link: &[(u32, u32)],
    together: &[(u32, u32)],
    thresholds: Thresholds,
) -> Matched {
    mark_shared(records);
    // How rare a name is was counted in this file; against a vault, only the subjects
    // loaded as candidates are here, and a name common in the vault would pass for rare.
    if existing.iter().any(|e| *e) {
        for r in records.iter_mut() {
            r.shared &= !RARE_NAME;
        }
    }
    let records: &[MatchRecord] = records;
    let pairs = candidate_pairs(records, existing, MAX_BLOCK);
    // Comparison vectors packed in 36 bits (3 per field), 8 bytes per pair.
    let packed: Vec<u64> = par_map(&pairs, |p| {
        let (a, b) = pair_of(*p);
        pack(&compare(&records[a as usize], &records[b as usize]))
    });
    let mut counts: HashMap<u64, f64> = HashMap::new();
    for g in &packed {
        *counts.entry(*g).or_default() += 1.0;
    }
    let patterns: Vec<(Gamma, f64)> = counts.iter().map(|(g, c)| (unpack(*g), *c)).collect();
    let params = estimate_patterns(records, &patterns);
    // Probability and verdicts per distinct vector; only pairs in the review band or above
    // are kept.
    let verdicts: HashMap<u64, (f64, bool, bool)> = counts
        .keys()
        .map(|g| {
            let gamma = unpack(*g);
            (
                *g,
                (
                    params.probability(&gamma),
                    needs_review(&gamma),
                    apart(&gamma),
                ),
            )
        })
        .collect();
    let scored: Vec<Scored> = pairs
        .iter()
        .zip(&packed)
        .filter_map(|(p, g)| {
            let (probability, mut needs_review, apart) = verdicts[g];
            let (a, b) = pair_of(*p);
            let keep = probability >= thresholds.review.min(thresholds.auto_merge);
            if keep && needs_review {
                let (g, x, y) = (unpack(*g), &records[a as usize], &records[b as usize]);
                needs_review = !proven_anyway(&g, x, y);
            }
            keep.then_some(Scored {
                a,
                b,
                probability,
                needs_review,
                apart,
            })
        })
        .collect();
    let c = cluster(
        records,
        &scored,
        existing,
        cannot_link,
        together,
        thresholds,
    );
    Matched {
        params,
        reps: c.reps,
        review: c.review,
        households: c.households,
        compared: packed.len(),
    }
}

/// Blocks larger than this are not compared pairwise.
pub const MAX_BLOCK: usize = 50;

fn pack(g: &Gamma) -> u64 {
    g.iter()
        .enumerate()
        .fold(0u64, |acc, (i, l)| acc | ((*l as u64) << (3 * i)))
}

fn unpack(p: u64) -> Gamma {
    let mut g = [0u8; 12];
    for (i, l) in g.iter_mut().enumerate() {
        *l = ((p >> (3 * i)) & 7) as u8;
    }
    g
}
