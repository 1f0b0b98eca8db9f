//! A donor file for import tests and benchmarks: constituents as a legacy CRM would export
//! them, with a share of rows that are the same person again, entered differently (another
//! case in the email, a new email, a nickname, a typo, a missing phone, day and month
//! swapped, "Road" as "Rd"...). The truth — which rows are one person — goes to a separate
//! writer, never into the file.

use std::io::Write;

use crate::{Generator, Rng};

/// The header of the file (the generic profile maps every column).
pub const HEADER: &str = "First Name,Last Name,Email,Phone,Street,Town,County,Postcode,Birth Date";

const NICK: &[(&str, &str)] = &[
    ("William", "Bill"),
    ("Robert", "Bob"),
    ("Margaret", "Peggy"),
    ("Patricia", "Pat"),
    ("Thomas", "Tom"),
    ("Samuel", "Sam"),
    ("Joseph", "Joe"),
    ("Michael", "Mike"),
    ("Peter", "Pete"),
    ("Kenneth", "Ken"),
    ("David", "Dave"),
    ("Henry", "Harry"),
    ("Isabella", "Bella"),
    ("Dorothy", "Dot"),
    ("Susan", "Sue"),
    ("Oliver", "Ollie"),
];

pub(crate) fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 4 {
        return s.to_string();
    }
    let i = 1 + rng.below(c.len() as u64 - 2) as usize;
    match rng.below(3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => c.insert(i, c[i]),
    }
    c.into_iter().collect()
}

pub(crate) fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `n` data rows (after the header) to `out` and `row,entity` lines to `truth`;
/// `dup_share` of the rows repeat an earlier person. Returns the number of distinct people.
pub fn donor_file(
    n: usize,
    dup_share: f64,
    seed: u64,
    out: &mut dyn Write,
    truth: &mut dyn Write,
) -> std::io::Result<usize> {
    let mut gen = Generator::new(seed);
    let mut rng = Rng::new(seed ^ 0xD0_D0);
    let mut people: Vec<[String; 9]> = Vec::with_capacity(n);
    writeln!(out, "{HEADER}")?;
    writeln!(truth, "row,entity")?;
    for row in 0..n {
        let (entity, fields) = if !people.is_empty() && rng.chance(dup_share) {
            let e = rng.below(people.len() as u64) as usize;
            let mut f = people[e].clone();
            // Email: same, other case, a new address, or none.
            match rng.below(10) {
                0..=3 => f[2] = f[2].to_uppercase(),
                4 | 5 => f[2] = f[2].replacen('@', &format!("{}@", rng.below(100)), 1),
                6 => f[2].clear(),
                _ => {}
            }
            if rng.chance(0.3) {
                f[3].clear();
            }
            if rng.chance(0.15) {
                if let Some((_, nick)) = NICK.iter().find(|(full, _)| *full == f[0]) {
                    f[0] = nick.to_string();
                } else {
                    f[0] = typo(&mut rng, &f[0]);
                }
            } else if rng.chance(0.1) {
                f[0] = typo(&mut rng, &f[0]);
            }
            if rng.chance(0.1) {
                f[1] = typo(&mut rng, &f[1]);
            }
            if rng.chance(0.1) {
                f[4] = f[4].replace(" Road", " Rd").replace(" Street", " St");
            } else if rng.chance(0.05) {
                f[4].clear();
            }
            match rng.below(20) {
                0 | 1 => f[8].clear(),
                2 if f[8].len() == 10 && f[8][8..].parse::<u32>().is_ok_and(|d| d <= 12) => {
                    f[8] = format!("{}{}-{}", &f[8][..5], &f[8][8..], &f[8][5..7]);
                }
                _ => {}
            }
            match rng.below(10) {
                0 => f[7].clear(),
                1 => f[7] = f[7].replace(' ', "").to_lowercase(),
                _ => {}
            }
            (e, f)
        } else {
            let c = gen.next_constituent();
            let get = |k: &str| {
                c.fields
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let f = [
                get("given_name"),
                get("family_name"),
                get("email"),
                get("phone"),
                get("street"),
                get("city"),
                get("region"),
                get("postal_code"),
                get("birth_date"),
            ];
            people.push(f.clone());
            (people.len() - 1, f)
        };
        let line: Vec<String> = fields.iter().map(|s| cell(s)).collect();
        writeln!(out, "{}", line.join(","))?;
        writeln!(truth, "{},{entity}", row + 2)?;
    }
    Ok(people.len())
}
