//! Record matching: blocking keys, field-by-field comparison, Fellegi-Sunter scoring with
//! m/u probabilities estimated from the data, and clustering into three bands.
//!
//! Everything here works on [`MatchRecord`]s held in memory; callers decide where records
//! come from (an import file, decrypted vault subjects) and where blocking keys are stored
//! (the vault keeps them only as keyed hashes).

use std::collections::HashMap;

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
}

/// Longest value kept per field for matching (longer text says nothing more about a person).
const MAX_FIELD: usize = 200;

fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
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
    /// `street2`, `postal_code`, `city`, `region`, `external_id`); other names are ignored.
    pub fn from_named<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> MatchRecord {
        let mut parts: [String; 12] = Default::default();
        let mut birth = (0, 0, 0);
        for (name, value) in fields {
            match name {
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
        }
    }

    fn birth_str(&self) -> Option<String> {
        (self.birth.0 != 0)
            .then(|| format!("{:04}{:02}{:02}", self.birth.0, self.birth.1, self.birth.2))
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

fn name_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
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

fn phone_level(a: &MatchRecord, b: &MatchRecord) -> u8 {
    let pa = [&a.phone(), &a.mobile()];
    let pb = [&b.phone(), &b.mobile()];
    if pa.iter().all(|p| p.is_empty()) || pb.iter().all(|p| p.is_empty()) {
        return 0;
    }
    for x in pa.iter().filter(|p| !p.is_empty()) {
        for y in pb.iter().filter(|p| !p.is_empty()) {
            if x == y {
                return 1;
            }
        }
    }
    4
}

/// Compares two records field by field.
pub fn compare(a: &MatchRecord, b: &MatchRecord) -> Gamma {
    let mut given = name_level(a.given(), b.given());
    let mut family = name_level(a.family(), b.family());
    // Transposed names: given and family swapped between the two records.
    if given > 2
        && family > 2
        && !a.given().is_empty()
        && a.given() == b.family()
        && a.family() == b.given()
    {
        given = 2;
        family = 2;
    }
    [
        given,
        family,
        birth_level(a.birth, b.birth),
        exact_level(a.email(), b.email()),
        phone_level(a, b),
        code_level(a.external_id(), b.external_id()),
        text_level(a.street(), b.street()),
        exact_level(a.house(), b.house()),
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

    /// Total match weight of a comparison vector.
    pub fn score(&self, g: &Gamma) -> f64 {
        self.weights(g).iter().sum()
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
    /// True when the pair may not merge without a person: their given names differ outright,
    /// their birth dates do not agree (or one is missing) and no unique identifier (email,
    /// phone, external id) agrees (two people of one household share a surname and an
    /// address; that does not make them one person); or nothing specific to one person
    /// agrees at all.
    pub needs_review: bool,
}

/// See [`Scored::needs_review`].
pub fn needs_review(g: &Gamma) -> bool {
    let given_differs = g[0] == 4 && g[1] != 4;
    let birth_agrees = matches!(g[2], 1 | 2);
    let unique_agrees = g[3] == 1 || g[4] == 1 || g[5] == 1;
    // Something specific to one person must agree: an email, phone or id, the full birth
    // date, the postcode, or the street and house number. Names and a town are shared by
    // too many people in a large file.
    let specific = unique_agrees || g[2] == 1 || g[9] == 1 || (g[6] == 1 && g[7] == 1);
    (given_differs && !birth_agrees && !unique_agrees) || !specific
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

/// Groups records: auto-merge pairs join clusters (best pairs first), never two clusters
/// that each hold an existing subject. Returns each record's cluster representative (the
/// smallest index of its cluster, or its existing record when it has one) and the
/// review-band pairs between different clusters.
pub fn cluster(
    n: usize,
    scored: &[Scored],
    existing: &[bool],
    cannot_link: &[(u32, u32)],
    thresholds: Thresholds,
) -> (Vec<u32>, Vec<Scored>) {
    let mut parent: Vec<u32> = (0..n as u32).collect();
    // The existing record of each cluster root, if any.
    let mut anchor: Vec<Option<u32>> = (0..n).map(|i| existing[i].then_some(i as u32)).collect();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let p = parent[parent[x as usize] as usize];
            parent[x as usize] = p;
            x = p;
        }
        x
    }
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
    let mut refused = Vec::new();
    // Records that must stay apart (the two people of one household row), per cluster root.
    let mut apart: HashMap<u32, Vec<u32>> = HashMap::new();
    for (x, y) in cannot_link {
        apart.entry(*x).or_default().push(*y);
        apart.entry(*y).or_default().push(*x);
    }
    for s in order {
        let (ra, rb) = (find(&mut parent, s.a), find(&mut parent, s.b));
        if ra == rb {
            continue;
        }
        if anchor[ra as usize].is_some() && anchor[rb as usize].is_some() {
            refused.push(*s);
            continue;
        }
        let conflict = apart
            .get(&ra)
            .is_some_and(|list| list.iter().any(|y| find(&mut parent, *y) == rb));
        if conflict {
            refused.push(*s);
            continue;
        }
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
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
    let mut review: Vec<Scored> = scored
        .iter()
        .filter(|s| {
            s.probability >= thresholds.review
                && (s.probability < thresholds.auto_merge || s.needs_review)
        })
        .chain(refused.iter())
        .filter(|s| reps[s.a as usize] != reps[s.b as usize])
        .copied()
        .collect();
    review.sort_by(|x, y| x.a.cmp(&y.a).then(x.b.cmp(&y.b)));
    (reps, review)
}

/// The whole matcher over a set of records: blocking, u sampling, EM, scoring, clustering.
pub struct Matched {
    /// Estimated parameters.
    pub params: Params,
    /// Each record's cluster representative.
    pub reps: Vec<u32>,
    /// Review-band pairs between clusters.
    pub review: Vec<Scored>,
    /// Candidate pairs compared.
    pub compared: usize,
}

/// Runs the matcher. `existing[i]` marks records already in the vault; `cannot_link` pairs
/// are never merged (the two people of one household row).
pub fn run(
    records: &[MatchRecord],
    existing: &[bool],
    cannot_link: &[(u32, u32)],
    thresholds: Thresholds,
) -> Matched {
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
    // Probability per distinct vector; only pairs in the review band or above are kept.
    let verdicts: HashMap<u64, (f64, bool)> = counts
        .keys()
        .map(|g| {
            let gamma = unpack(*g);
            (*g, (params.probability(&gamma), needs_review(&gamma)))
        })
        .collect();
    let scored: Vec<Scored> = pairs
        .iter()
        .zip(&packed)
        .filter_map(|(p, g)| {
            let (probability, needs_review) = verdicts[g];
            let (a, b) = pair_of(*p);
            (probability >= thresholds.review.min(thresholds.auto_merge)).then_some(Scored {
                a,
                b,
                probability,
                needs_review,
            })
        })
        .collect();
    let (reps, review) = cluster(records.len(), &scored, existing, cannot_link, thresholds);
    Matched {
        params,
        reps,
        review,
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
