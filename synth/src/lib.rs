//! Synthetic constituents: realistic-looking donors, members and volunteers, generated
//! deterministically from a seed, for the demo, the tests and the benchmarks.
//!
//! No real people: names are drawn from common-name lists and combined at random; emails use
//! the reserved `example.*` domains; phone numbers come from the ranges Ofcom sets aside for
//! drama (e.g. 020 7946 0xxx); postcodes have the right shape but random inward codes.
//!
//! It must never read the environment or the clock: the same seed gives the same people.

use serde_json::{json, Map, Value};

mod donors;
mod households;

/// The mapping file (TOML) that imports [`second_export`]'s columns with `--profile generic`.
pub const SECOND_MAPPING: &str = include_str!("../mappings/second_export.toml");
pub use donors::{donor_file, HEADER as DONOR_HEADER};
pub use households::{
    household_file, second_export, HouseholdStats, HOUSEHOLD_HEADER, SECOND_HEADER,
};

/// A small, fast, deterministic generator (SplitMix64). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One item of a list.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
    "Grace", "Freya", "Evie", "Florence", "Ella", "Poppy", "Willow", "Sienna", "Aisha", "Priya",
    "Niamh", "Siobhan", "Margaret", "Patricia", "Susan", "Janet", "Eileen", "Dorothy", "Noah",
    "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Archie", "Henry",
    "Theodore", "Freddie", "Jack", "Charlie", "Thomas", "William", "Alfie", "Samuel", "Joseph",
    "Rohan", "Kwame", "Tomasz", "Callum", "Ewan", "Rhys", "Dylan", "David", "Peter", "Michael",
    "Robert", "Graham", "Kenneth",
];

const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Thomas",
    "Clarke",
    "Jackson",
    "Wood",
    "Harris",
    "Edwards",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Hughes",
    "Moore",
    "Clark",
    "King",
    "Harrison",
    "Lewis",
    "Baker",
    "Lee",
    "Allen",
    "Morris",
    "Khan",
    "Scott",
    "Watson",
    "Davis",
    "Parker",
    "James",
    "Bennett",
    "Young",
    "Phillips",
    "Richardson",
    "Mitchell",
    "Campbell",
    "O'Brien",
    "MacDonald",
    "Kowalski",
    "Okafor",
    "Nguyen",
    "Singh",
    "Ahmed",
    "Murphy",
    "Kelly",
];

const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Park Avenue",
    "Kings Road",
    "Queens Road",
    "Mill Lane",
    "The Crescent",
    "School Lane",
    "New Road",
    "Grange Road",
    "Springfield Road",
    "Albert Road",
    "York Road",
    "Windsor Close",
    "Chestnut Grove",
    "Meadow View",
    "Orchard Way",
    "Beech Drive",
    "Elm Close",
    "Riverside",
];

/// Town, county, postcode area, and an Ofcom drama-range phone prefix (three random digits
/// follow).
const TOWNS: &[(&str, &str, &str, &str)] = &[
    ("London", "Greater London", "SE", "02079460"),
    ("London", "Greater London", "N", "02079460"),
    ("Leeds", "West Yorkshire", "LS", "01134960"),
    ("Sheffield", "South Yorkshire", "S", "01144960"),
    ("Leicester", "Leicestershire", "LE", "01164960"),
    ("Bristol", "Bristol", "BS", "01174960"),
    ("Reading", "Berkshire", "RG", "01184960"),
    ("Birmingham", "West Midlands", "B", "01214960"),
    ("Edinburgh", "City of Edinburgh", "EH", "01314960"),
    ("Glasgow", "Glasgow City", "G", "01414960"),
    ("Liverpool", "Merseyside", "L", "01514960"),
    ("Manchester", "Greater Manchester", "M", "01614960"),
    ("Cardiff", "Cardiff", "CF", "02920180"),
];

const TITLES: &[&str] = &["Mr", "Mrs", "Ms", "Miss", "Dr", "Revd", "Mx"];
const TAGS: &[&str] = &[
    "monthly donor",
    "major donor prospect",
    "volunteer",
    "event attendee",
    "legacy pledger",
    "newsletter",
    "trustee",
    "corporate contact",
    "lapsed",
    "community fundraiser",
];
const FUNDS: &[&str] = &[
    "General",
    "Emergency Appeal",
    "Education Fund",
    "Building Fund",
];
const CAMPAIGNS: &[&str] = &[
    "Spring Appeal",
    "Christmas Appeal",
    "Fun Run",
    "Giving Tuesday",
    "Legacy Week",
    "Raffle",
];
const METHODS: &[&str] = &[
    "card",
    "direct_debit",
    "cheque",
    "cash",
    "online",
    "standing_order",
];
const OCCUPATIONS: &[&str] = &[
    "Teacher",
    "Nurse",
    "Retired",
    "Engineer",
    "Accountant",
    "Student",
    "Shop manager",
    "Solicitor",
    "Civil servant",
    "Self-employed",
];
const RELIGIONS: &[&str] = &[
    "Christian",
    "Muslim",
    "Jewish",
    "Hindu",
    "Sikh",
    "Buddhist",
    "None",
];
const LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// One synthetic constituent, in the JSON form Steward's API takes.
#[derive(Debug, Clone)]
pub struct Constituent {
    /// `individual` for people (the generator makes people only).
    pub kind: &'static str,
    /// Field name → value.
    pub fields: Map<String, Value>,
    /// Gifts, each field name → value.
    pub gifts: Vec<Map<String, Value>>,
}

impl Constituent {
    /// The full JSON object (`kind`, the fields and `gifts`), as `POST /v1/subjects` takes it.
    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("kind".into(), json!(self.kind));
        if !self.gifts.is_empty() {
            m.insert(
                "gifts".into(),
                Value::Array(self.gifts.iter().cloned().map(Value::Object).collect()),
            );
        }
        Value::Object(m)
    }
}

/// Generates constituents from a seed.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    n: u64,
    /// Most gifts per constituent.
    pub max_gifts: u64,
}

impl Generator {
    /// A generator; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            n: 0,
            max_gifts: 6,
        }
    }

    fn postcode(&mut self, area: &str) -> String {
        let r = &mut self.rng;
        format!(
            "{area}{} {}{}{}",
            1 + r.below(20),
            r.below(10),
            LETTERS[r.below(LETTERS.len() as u64) as usize] as char,
            LETTERS[r.below(LETTERS.len() as u64) as usize] as char
        )
    }

    fn date(&mut self, from_year: u64, span_years: u64) -> String {
        let r = &mut self.rng;
        format!(
            "{:04}-{:02}-{:02}",
            from_year + r.below(span_years),
            1 + r.below(12),
            1 + r.below(28)
        )
    }

    /// The next constituent.
    pub fn next_constituent(&mut self) -> Constituent {
        self.n += 1;
        let n = self.n;
        let mut f = Map::new();
        let given = self.rng.pick(GIVEN);
        let family = self.rng.pick(FAMILY);
        let (town, county, area, phone_prefix) = TOWNS[self.rng.below(TOWNS.len() as u64) as usize];
        if self.rng.chance(0.7) {
            f.insert("title".into(), json!(self.rng.pick(TITLES)));
        }
        f.insert("given_name".into(), json!(given));
        if self.rng.chance(0.2) {
            f.insert("middle_name".into(), json!(self.rng.pick(GIVEN)));
        }
        f.insert("family_name".into(), json!(family));
        if self.rng.chance(0.8) {
            let d = self.date(1935, 70);
            f.insert("birth_date".into(), json!(d));
        }
        f.insert("external_id".into(), json!(format!("CRM-{n:07}")));
        let local: String = format!("{given}.{family}{n}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let domain = self
            .rng
            .pick(&["example.org", "example.com", "example.net"]);
        f.insert("email".into(), json!(format!("{local}@{domain}")));
        if self.rng.chance(0.85) {
            let tail = self.rng.below(1000);
            f.insert("phone".into(), json!(format!("{phone_prefix}{tail:03}")));
        }
        f.insert(
            "street".into(),
            json!(format!(
                "{} {}",
                1 + self.rng.below(180),
                self.rng.pick(STREETS)
            )),
        );
        if self.rng.chance(0.15) {
            f.insert(
                "street2".into(),
                json!(format!("Flat {}", 1 + self.rng.below(40))),
            );
        }
        f.insert("city".into(), json!(town));
        f.insert("region".into(), json!(county));
        let pc = self.postcode(area);
        f.insert("postal_code".into(), json!(pc));
        f.insert("country".into(), json!("GB"));
        f.insert(
            "preferred_language".into(),
            json!(if self.rng.chance(0.9) { "en-GB" } else { "cy" }),
        );
        if self.rng.chance(0.5) {
            f.insert("occupation".into(), json!(self.rng.pick(OCCUPATIONS)));
        }
        let mut tags = vec![self.rng.pick(TAGS)];
        if self.rng.chance(0.4) {
            tags.push(self.rng.pick(TAGS));
        }
        f.insert("tags".into(), json!(tags));
        if self.rng.chance(0.3) {
            f.insert(
                "notes".into(),
                json!(format!(
                    "Met at the {} in {}; prefers contact by post.",
                    self.rng.pick(CAMPAIGNS),
                    town
                )),
            );
        }
        let gift_aid = self.rng.chance(0.45);
        f.insert("gift_aid_declared".into(), json!(gift_aid));
        if gift_aid {
            let d = self.date(2015, 10);
            f.insert("gift_aid_declaration_date".into(), json!(d));
        }
        if self.rng.chance(0.1) {
            f.insert("religion".into(), json!(self.rng.pick(RELIGIONS)));
        }
        if self.rng.chance(0.03) {
            f.insert(
                "health_notes".into(),
                json!("Step-free access needed at events"),
            );
        }
        let n_gifts = self.rng.below(self.max_gifts + 1);
        let gifts = (0..n_gifts)
            .map(|_| {
                let mut g = Map::new();
                let pounds = [5, 10, 10, 20, 25, 50, 100, 250][self.rng.below(8) as usize];
                g.insert("amount".into(), json!(format!("{pounds}.00")));
                g.insert("currency".into(), json!("GBP"));
                let d = self.date(2016, 10);
                g.insert("date".into(), json!(d));
                g.insert("fund".into(), json!(self.rng.pick(FUNDS)));
                g.insert("campaign".into(), json!(self.rng.pick(CAMPAIGNS)));
                g.insert("payment_method".into(), json!(self.rng.pick(METHODS)));
                g.insert("gift_aid".into(), json!(gift_aid));
                g.insert("status".into(), json!("received"));
                g
            })
            .collect();
        Constituent {
            kind: "individual",
            fields: f,
            gifts,
        }
    }
}

impl Iterator for Generator {
    type Item = Constituent;
    fn next(&mut self) -> Option<Constituent> {
        Some(self.next_constituent())
    }
}

#[cfg(test)]
mod tests;
