//! A donor file that is hard to deduplicate on purpose, with its truth: what real donor bases
//! hold and FEBRL does not.
//!
//! - Households of 1 to 5 people sharing a surname, a street address, usually a landline and
//!   sometimes one email address; a few share a mobile too.
//! - Twins: two members of one household with the same birth date and different given names.
//! - Namesakes: unrelated people with the same given and family name (common names are drawn
//!   far more often than rare ones, and some people copy another's name on purpose).
//! - Emails built from names at a few common providers, so two unrelated J. Greens at one
//!   provider can hold the same address.
//! - Duplicate rows of one person with nicknames, initials, typos, blank fields, another
//!   email (or the same one mistyped), another phone format, day and month swapped, and some
//!   who moved house in between.
//! - [`second_export`]: the same people as another system exports them: other column names,
//!   US dates (month first), a subset of the fields.
//!
//! The truth (`row,entity,household`) goes to its own writer; every row's entity is one
//! person, and two rows of different entities in one household, or with the same name, are
//! the hard negatives a matcher must never merge.

use std::io::Write;

use crate::donors::{cell, typo};
use crate::{Rng, LETTERS};

/// The header of the first file (the generic profile maps every column).
pub const HOUSEHOLD_HEADER: &str =
    "First Name,Last Name,Email,Phone,Mobile,Street,Town,County,Postcode,Birth Date";

/// The header of [`second_export`] (Salesforce-style API names, mapped by a mapping file).
pub const SECOND_HEADER: &str =
    "FirstName,LastName,Email,HomePhone,MobilePhone,MailingStreet,MailingCity,MailingPostalCode,Birthdate";

const GIVEN: &[&str] = &[
    "John",
    "David",
    "Michael",
    "James",
    "Robert",
    "Peter",
    "Paul",
    "Mark",
    "Andrew",
    "Richard",
    "Sarah",
    "Emma",
    "Claire",
    "Susan",
    "Margaret",
    "Elizabeth",
    "Jennifer",
    "Karen",
    "Helen",
    "Mary",
    "Thomas",
    "William",
    "Daniel",
    "Matthew",
    "Christopher",
    "Stephen",
    "Anthony",
    "Joseph",
    "Samuel",
    "Benjamin",
    "Rebecca",
    "Katherine",
    "Laura",
    "Rachel",
    "Jessica",
    "Rosie",
    "Olivia",
    "Amelia",
    "Isla",
    "Grace",
    "Ella",
    "Sophie",
    "Lucy",
    "Hannah",
    "Chloe",
    "George",
    "Harry",
    "Oliver",
    "Jack",
    "Charlie",
    "Alfie",
    "Freddie",
    "Leo",
    "Arthur",
    "Noah",
    "Priya",
    "Aisha",
    "Niamh",
    "Siobhan",
    "Kwame",
    "Tomasz",
    "Rohan",
    "Callum",
    "Ewan",
    "Rhys",
    "Dylan",
    "Graham",
    "Kenneth",
    "Dorothy",
    "Eileen",
    "Janet",
    "Patricia",
    "Brian",
    "Keith",
    "Gareth",
    "Owen",
    "Megan",
    "Bethan",
    "Ffion",
    "Catrin",
    "Mohammed",
    "Yusuf",
    "Fatima",
    "Zara",
    "Imogen",
    "Harriet",
    "Florence",
    "Evie",
    "Poppy",
    "Martha",
    "Alice",
    "Edward",
    "Henry",
    "Hugo",
    "Felix",
    "Toby",
    "Isaac",
    "Nathan",
    "Adam",
    "Ryan",
    "Liam",
    "Sean",
];

const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Nguyen",
    "Kowalski",
    "Okafor",
    "O'Brien",
    "MacDonald",
    "Fitzgerald",
    "Ahmed",
    "Graham",
    "Pearson",
    "Fletcher",
    "Gibson",
    "Howard",
    "Andrews",
    "Kennedy",
    "Spencer",
    "Reynolds",
];

/// Streets beyond the ones the subject generator uses (`crate::STREETS`, drawn first).
const MORE_STREETS: &[&str] = &[
    "Church Street",
    "London Road",
    "Park Road",
    "The Green",
    "North Street",
    "West Street",
];

/// The `i`th street of the two lists, one after the other.
fn street(i: usize) -> &'static str {
    crate::STREETS
        .get(i)
        .copied()
        .unwrap_or_else(|| MORE_STREETS[i - crate::STREETS.len()])
}

/// How many streets there are.
const N_STREETS: usize = crate::STREETS.len() + MORE_STREETS.len();

/// Town, county, postcode area, and an Ofcom drama-range landline prefix.
const TOWNS: &[(&str, &str, &str, &str)] = &[
    ("London", "Greater London", "SE", "020 7946 0"),
    ("London", "Greater London", "N", "020 7946 0"),
    ("Leeds", "West Yorkshire", "LS", "0113 496 0"),
    ("Sheffield", "South Yorkshire", "S", "0114 496 0"),
    ("Bristol", "Bristol", "BS", "0117 496 0"),
    ("Birmingham", "West Midlands", "B", "0121 496 0"),
    ("Glasgow", "Glasgow City", "G", "0141 496 0"),
    ("Manchester", "Greater Manchester", "M", "0161 496 0"),
    ("Cardiff", "Cardiff", "CF", "029 2018 0"),
    ("Norwich", "Norfolk", "NR", "01632 960"),
];

const PROVIDERS: &[&str] = &[
    "mail.example.com",
    "post.example.net",
    "inbox.example.org",
    "example.co.uk",
];

const NICK: &[(&str, &str)] = &[
    ("William", "Bill"),
    ("Robert", "Bob"),
    ("Margaret", "Peggy"),
    ("Elizabeth", "Liz"),
    ("Katherine", "Kate"),
    ("Thomas", "Tom"),
    ("Samuel", "Sam"),
    ("Joseph", "Joe"),
    ("Michael", "Mike"),
    ("Peter", "Pete"),
    ("Kenneth", "Ken"),
    ("David", "Dave"),
    ("Henry", "Harry"),
    ("James", "Jim"),
    ("Richard", "Rick"),
    ("Andrew", "Andy"),
    ("Daniel", "Dan"),
    ("Christopher", "Chris"),
    ("Jennifer", "Jen"),
    ("Rebecca", "Becky"),
    ("Susan", "Sue"),
    ("Benjamin", "Ben"),
    ("Matthew", "Matt"),
    ("Stephen", "Steve"),
    ("Edward", "Ted"),
    ("Patricia", "Pat"),
    ("Anthony", "Tony"),
];

/// One person as the first system holds them.
#[derive(Debug, Clone)]
struct Person {
    given: String,
    family: String,
    email: String,
    phone: String,
    mobile: String,
    street: String,
    town: &'static str,
    county: &'static str,
    postcode: String,
    /// `YYYY-MM-DD`, or empty.
    birth: String,
    household: usize,
}

/// Counts of what the generator made, for the caller's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HouseholdStats {
    /// Distinct people (entities).
    pub people: usize,
    /// Households with two or more people.
    pub shared_households: usize,
    /// People given another unrelated person's full name.
    pub namesakes: usize,
    /// Pairs of twins.
    pub twins: usize,
}

/// A name drawn with a skew: the first entries of a list come up far more often than the
/// last, as common names do.
fn skewed<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    list[((u * u * u) * list.len() as f64) as usize % list.len()]
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// An email built from a name, as people pick them at the big providers.
fn name_email(rng: &mut Rng, given: &str, family: &str) -> String {
    let (g, f) = (ascii_lower(given), ascii_lower(family));
    let initial = &g[..1];
    let local = match rng.below(6) {
        0 => format!("{g}.{f}"),
        1 => format!("{initial}{f}"),
        2 => format!("{g}{f}"),
        3 => format!("{f}{initial}"),
        4 => format!("{initial}.{f}"),
        _ => format!("{g}.{f}{}", 10 + rng.below(90)),
    };
    format!(
        "{local}@{}",
        PROVIDERS[rng.below(PROVIDERS.len() as u64) as usize]
    )
}

struct World {
    rng: Rng,
    people: Vec<Person>,
    households: usize,
    stats: HouseholdStats,
    /// People of the current household not yet written.
    queue: Vec<usize>,
}

impl World {
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

    fn birth(&mut self, from: u64, span: u64) -> String {
        let r = &mut self.rng;
        format!(
            "{:04}-{:02}-{:02}",
            from + r.below(span),
            1 + r.below(12),
            1 + r.below(28)
        )
    }

    fn mobile(&mut self) -> String {
        // 077xx xxxxxx: a hundred million numbers, so that strangers share one about as
        // rarely as in life (a narrower range made one number in three shared by strangers
        // at a million rows); households that share a mobile do so on purpose below.
        let n = self.rng.below(100_000_000);
        format!("077{:02} {:06}", n / 1_000_000, n % 1_000_000)
    }

    /// A new household of 1 to 5 people; their indices go to the queue.
    fn new_household(&mut self) {
        let h = self.households;
        self.households += 1;
        let size = match self.rng.below(100) {
            0..=44 => 1,
            45..=74 => 2,
            75..=86 => 3,
            87..=95 => 4,
            _ => 5,
        };
        if size > 1 {
            self.stats.shared_households += 1;
        }
        let family = skewed(&mut self.rng, FAMILY).to_string();
        let (town, county, area, prefix) = TOWNS[self.rng.below(TOWNS.len() as u64) as usize];
        let street = format!(
            "{} {}",
            1 + self.rng.below(200),
            street(self.rng.below(N_STREETS as u64) as usize)
        );
        let postcode = self.postcode(area);
        let landline = if self.rng.chance(0.6) {
            format!("{prefix}{:03}", self.rng.below(1000))
        } else {
            String::new()
        };
        let mut given_used: Vec<String> = Vec::new();
        let mut shared_email = String::new();
        let mut shared_mobile = String::new();
        let twins = size >= 3 && self.rng.chance(0.15);
        let mut twin_birth = String::new();
        for k in 0..size {
            let mut given = skewed(&mut self.rng, GIVEN).to_string();
            while given_used.contains(&given) {
                given = GIVEN[self.rng.below(GIVEN.len() as u64) as usize].to_string();
            }
            given_used.push(given.clone());
            let mut family = family.clone();
            let namesake = k == 0 && !self.people.is_empty() && self.rng.chance(0.05);
            if namesake {
                // Another, unrelated person's full name.
                let other = self.rng.below(self.people.len() as u64) as usize;
                given = self.people[other].given.clone();
                family = self.people[other].family.clone();
                self.stats.namesakes += 1;
            }
            let adult = k < 2;
            let mut birth = if adult {
                self.birth(1940, 60)
            } else {
                self.birth(2000, 20)
            };
            if twins && k >= 2 {
                if twin_birth.is_empty() {
                    twin_birth = birth.clone();
                } else if k == 3 {
                    birth = twin_birth.clone();
                    self.stats.twins += 1;
                }
            }
            if !self.rng.chance(0.85) {
                birth.clear();
            }
            let mut email = if self.rng.chance(0.75) {
                name_email(&mut self.rng, &given, &family)
            } else {
                String::new()
            };
            if size > 1 {
                if k == 0 && self.rng.chance(0.35) {
                    // One address for the family, often the first adult's name-based one.
                    shared_email = if email.is_empty() || self.rng.chance(0.5) {
                        format!(
                            "the{}s{}@{}",
                            ascii_lower(&family),
                            self.rng.below(100),
                            PROVIDERS[self.rng.below(PROVIDERS.len() as u64) as usize]
                        )
                    } else {
                        email.clone()
                    };
                }
                if !shared_email.is_empty() && (k == 0 || self.rng.chance(0.6)) {
                    email = shared_email.clone();
                }
            }
            let mut mobile = if self.rng.chance(0.8) {
                self.mobile()
            } else {
                String::new()
            };
            if k == 0 {
                shared_mobile = mobile.clone();
            } else if !shared_mobile.is_empty() && self.rng.chance(0.08) {
                mobile = shared_mobile.clone();
            }
            self.queue.push(self.people.len());
            self.people.push(Person {
                given,
                family,
                email,
                phone: landline.clone(),
                mobile,
                street: street.clone(),
                town,
                county,
                postcode: postcode.clone(),
                birth,
                household: h,
            });
        }
        // Written in a shuffled order, not member by member.
        let n = self.queue.len();
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            self.queue.swap(i, j);
        }
    }

    fn next_new(&mut self) -> usize {
        if self.queue.is_empty() {
            self.new_household();
        }
        self.queue.pop().expect("a household has a person")
    }

    /// The same person entered again, differently.
    fn variant(&mut self, e: usize) -> Person {
        let mut p = self.people[e].clone();
        let r = &mut self.rng;
        match r.below(100) {
            0..=9 => {
                if let Some((_, nick)) = NICK.iter().find(|(full, _)| *full == p.given) {
                    p.given = nick.to_string();
                } else {
                    p.given = typo(r, &p.given);
                }
            }
            10..=14 => p.given = p.given[..1].to_string(),
            15..=22 => p.given = typo(r, &p.given),
            _ => {}
        }
        if r.chance(0.06) {
            p.family = typo(r, &p.family);
        }
        match r.below(100) {
            0..=9 => p.email = p.email.to_uppercase(),
            10..=19 => p.email.clear(),
            20..=29 if !p.email.is_empty() => {
                // The same local part at another provider.
                let local = p.email.split('@').next().unwrap_or("").to_string();
                p.email = format!(
                    "{local}@{}",
                    PROVIDERS[r.below(PROVIDERS.len() as u64) as usize]
                );
            }
            30..=37 if !p.email.is_empty() => {
                // The name mistyped in one system.
                let (local, domain) = p.email.split_once('@').unwrap_or(("", ""));
                p.email = format!("{}@{domain}", typo(r, local));
            }
            38..=44 => p.email = name_email(r, &p.given, &p.family),
            _ => {}
        }
        if r.chance(0.25) {
            p.phone.clear();
        }
        if r.chance(0.2) {
            p.mobile.clear();
        } else if r.chance(0.2) && !p.mobile.is_empty() {
            p.mobile = format!("+44 {}", &p.mobile[1..]);
        }
        if r.chance(0.08) {
            // Moved house.
            let (town, county, area, prefix) = TOWNS[r.below(TOWNS.len() as u64) as usize];
            p.street = format!(
                "{} {}",
                1 + r.below(200),
                street(r.below(N_STREETS as u64) as usize)
            );
            p.town = town;
            p.county = county;
            p.phone = if p.phone.is_empty() {
                String::new()
            } else {
                format!("{prefix}{:03}", r.below(1000))
            };
            p.postcode = self.postcode(area);
        } else {
            let r = &mut self.rng;
            if r.chance(0.1) {
                p.street = p.street.replace(" Road", " Rd").replace(" Street", " St");
            } else if r.chance(0.05) {
                p.street.clear();
            }
            if r.chance(0.08) {
                p.postcode.clear();
            } else if r.chance(0.1) {
                p.postcode = p.postcode.replace(' ', "").to_lowercase();
            }
        }
        let r = &mut self.rng;
        match r.below(100) {
            0..=7 => p.birth.clear(),
            8..=10 if p.birth.len() == 10 && p.birth[8..].parse::<u32>().is_ok_and(|d| d <= 12) => {
                p.birth = format!("{}{}-{}", &p.birth[..5], &p.birth[8..], &p.birth[5..7]);
            }
            _ => {}
        }
        p
    }
}

/// Writes `n` data rows (after [`HOUSEHOLD_HEADER`]) to `out` and `row,entity,household` lines
/// to `truth`; about `dup_share` of the rows repeat an earlier person. The same seed gives the
/// same file.
pub fn household_file(
    n: usize,
    dup_share: f64,
    seed: u64,
    out: &mut dyn Write,
    truth: &mut dyn Write,
) -> std::io::Result<HouseholdStats> {
    let mut world = World {
        rng: Rng::new(seed ^ 0x4853_4844),
        people: Vec::with_capacity(n),
        households: 0,
        stats: HouseholdStats::default(),
        queue: Vec::new(),
    };
    writeln!(out, "{HOUSEHOLD_HEADER}")?;
    writeln!(truth, "row,entity,household")?;
    let mut written: Vec<bool> = Vec::new();
    for row in 0..n {
        let dup = row > 10 && world.rng.chance(dup_share);
        let (e, p) = if dup {
            // An earlier person already written once.
            let mut e = world.rng.below(world.people.len() as u64) as usize;
            while e >= written.len() || !written[e] {
                e = world.rng.below(world.people.len() as u64) as usize;
            }
            (e, world.variant(e))
        } else {
            let e = world.next_new();
            (e, world.people[e].clone())
        };
        if written.len() < world.people.len() {
            written.resize(world.people.len(), false);
        }
        written[e] = true;
        let line = [
            &p.given,
            &p.family,
            &p.email,
            &p.phone,
            &p.mobile,
            &p.street,
            p.town,
            p.county,
            &p.postcode,
            &p.birth,
        ]
        .map(cell);
        writeln!(out, "{}", line.join(","))?;
        writeln!(truth, "{},{e},{}", row + 2, p.household)?;
    }
    world.stats.people = written.iter().filter(|w| **w).count();
    Ok(world.stats)
}

/// The same people exported by a second system: reads a file and truth written by
/// [`household_file`] and writes about `share` of its rows again under [`SECOND_HEADER`],
/// with dates as MM/DD/YYYY, no county, a landline in two rows of five and names in capitals
/// in one of ten; `truth` gets `row,entity,household` for the new file.
pub fn second_export(
    first: &str,
    first_truth: &str,
    share: f64,
    seed: u64,
    out: &mut dyn Write,
    truth: &mut dyn Write,
) -> std::io::Result<usize> {
    let mut rng = Rng::new(seed ^ 0x2_0D0C);
    writeln!(out, "{SECOND_HEADER}")?;
    writeln!(truth, "row,entity,household")?;
    let mut written = 0;
    for (line, t) in first.lines().skip(1).zip(first_truth.lines().skip(1)) {
        if !rng.chance(share) {
            continue;
        }
        // The first file quotes no cell that the generator writes (no commas in values).
        let c: Vec<&str> = line.split(',').collect();
        let (mut given, mut family) = (c[0].to_string(), c[1].to_string());
        if rng.chance(0.1) {
            given = given.to_uppercase();
            family = family.to_uppercase();
        }
        let birth = match c[9].split('-').collect::<Vec<_>>()[..] {
            [y, m, d] => format!("{m}/{d}/{y}"),
            _ => String::new(),
        };
        let phone = if rng.chance(0.4) { c[3] } else { "" };
        let email = if rng.chance(0.85) { c[2] } else { "" };
        let row = [
            given.as_str(),
            family.as_str(),
            email,
            phone,
            c[4],
            c[5],
            c[6],
            c[8],
            birth.as_str(),
        ];
        writeln!(out, "{}", row.join(","))?;
        let (_, rest) = t.split_once(',').unwrap_or(("", ""));
        written += 1;
        writeln!(truth, "{},{rest}", written + 1)?;
    }
    Ok(written)
}
