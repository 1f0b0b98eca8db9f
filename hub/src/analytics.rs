//! Donor analytics over gifts: retention and gains and losses as the Fundraising
//! Effectiveness Project (FEP) defines them, LYBUNT and SYBUNT, RFM quintiles, average gift,
//! revenue per donor and lifetime value.
//!
//! Analytics runs under the `analytics` purpose: subjects the consent gate does not allow
//! for it (an objection, a restriction) are left out, and how many is reported. Roles that
//! may not read gifts (`subject:financial`) get aggregates with small cells suppressed: any
//! count under [`MIN_CELL`] people, one more cell of each total that would let a suppressed
//! one be worked out, and money cells where one donor gave more than half. Every run is
//! audited with its parameters, the purpose and the number of donors counted.
//!
//! The figures are computed by [`fep`] and friends, pure functions over [`Donor`] histories,
//! so that a test can check them against a separately written straightforward version.

use std::collections::{BTreeMap, HashMap};

use domain::{AccessGroup, FieldId, RecordKind, Value};
use serde::Serialize;
use time::Date;

use crate::consent_ops::consent_error;
use crate::error::Error;
use crate::{Action, Actor, Hub};

/// The purpose analytics runs under.
pub const ANALYTICS_PURPOSE: &str = "analytics";

/// Smallest number of people a suppressed aggregate shows in a cell.
pub const MIN_CELL: u64 = 10;

/// A span of days, `start` included, `end` excluded. Shown as `{"from", "to"}`, both days
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub start: Date,
    /// Day after the last.
    pub end: Date,
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let day = |d: Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("from", &day(self.start))?;
        m.serialize_entry("to", &day(self.end.previous_day().unwrap_or(self.end)))?;
        m.end()
    }
}

impl Period {
    /// A calendar year.
    pub fn year(y: i32) -> Result<Period, Error> {
        if !(1900..=2200).contains(&y) {
            return Err(Error::BadRequest(format!(
                "year: {y} is outside 1900 to 2200"
            )));
        }
        let d = |y: i32| {
            Date::from_calendar_date(y, time::Month::January, 1)
                .map_err(|_| Error::BadRequest(format!("year: {y} is out of range")))
        };
        Ok(Period {
            start: d(y)?,
            end: d(y + 1)?,
        })
    }

    /// The period of the same length just before this one (for a year, the year before).
    pub fn previous(&self) -> Period {
        if self.start.day() == 1
            && self.start.month() == time::Month::January
            && self.end.day() == 1
            && self.end.month() == time::Month::January
        {
            let years = self.end.year() - self.start.year();
            if let Ok(start) =
                Date::from_calendar_date(self.start.year() - years, time::Month::January, 1)
            {
                return Period {
                    start,
                    end: self.start,
                };
            }
        }
        let len = self.end - self.start;
        Period {
            start: self.start - len,
            end: self.start,
        }
    }

    fn contains(&self, d: Date) -> bool {
        d >= self.start && d < self.end
    }
}

/// One donor's gifts that count (received, in the analysed currency, matching the filter):
/// day and amount in minor units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Donor {
    /// (date, amount in minor units), any order.
    pub gifts: Vec<(Date, i64)>,
}

/// A count of people and an amount, possibly suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cell {
    /// People (`null` when suppressed).
    pub donors: Option<u64>,
    /// Money in the analysed currency, as a decimal string (`null` when suppressed).
    #[serde(serialize_with = "money_opt")]
    pub amount: Option<i64>,
    /// The largest single donor's share of `amount` in per mille (for the dominance rule;
    /// not shown).
    #[serde(skip)]
    top: i64,
}

fn money_opt<S: serde::Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(m) => s.serialize_str(&domain::Money(*m).to_string()),
        None => s.serialize_none(),
    }
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            donors: Some(0),
            amount: Some(0),
            top: 0,
        }
    }
}

impl Cell {
    fn add(&mut self, amount: i64) {
        *self.donors.get_or_insert(0) += 1;
        *self.amount.get_or_insert(0) += amount;
        self.top = self.top.max(amount);
    }
    fn n(&self) -> u64 {
        self.donors.unwrap_or(0)
    }
}

/// A retention rate: of `base` donors, `retained` gave again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// retained / base, 0 to 1 (`null` when there is no base or a count is suppressed).
    pub rate: Option<f64>,
    /// Donors of the previous period who gave again.
    pub retained: Option<u64>,
    /// Donors of the previous period.
    pub base: Option<u64>,
}

impl Rate {
    fn new(retained: u64, base: u64) -> Rate {
        Rate {
            rate: (base > 0).then(|| retained as f64 / base as f64),
            retained: Some(retained),
            base: Some(base),
        }
    }
}

/// Stewardship: the previous period's donors who were contacted (an outbound interaction from
/// the start of that period to the end of this one) against those who were not, and how many
/// of each gave again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stewardship {
    /// The period analysed.
    pub period: Period,
    /// The period whose donors are followed.
    pub previous: Period,
    /// Donors of the previous period contacted, and of them, retained.
    pub contacted: Rate,
    /// Donors of the previous period not contacted, and of them, retained.
    pub not_contacted: Rate,
    /// Outbound interactions with those donors in the window.
    pub outbound_interactions: Option<u64>,
    /// Cells withheld for the role (under 10 people, or one that would give another away).
    pub suppressed: Vec<String>,
}

/// The stewardship table of `donors`; `contacted[i]` says whether donor `i` was contacted,
/// `outbound` counts the interactions.
pub fn stewardship(
    donors: &[Donor],
    contacted: &[bool],
    outbound: u64,
    period: Period,
) -> Stewardship {
    let previous = period.previous();
    let (mut c, mut cr, mut n, mut nr) = (0u64, 0u64, 0u64, 0u64);
    for (d, was) in donors.iter().zip(contacted) {
        if !d.gifts.iter().any(|(day, _)| previous.contains(*day)) {
            continue;
        }
        let again = d.gifts.iter().any(|(day, _)| period.contains(*day));
        if *was {
            c += 1;
            cr += u64::from(again);
        } else {
            n += 1;
            nr += u64::from(again);
        }
    }
    Stewardship {
        period,
        previous,
        contacted: Rate::new(cr, c),
        not_contacted: Rate::new(nr, n),
        outbound_interactions: Some(outbound),
        suppressed: Vec::new(),
    }
}

/// Withholds, for broad roles, a group under [`MIN_CELL`] people or a count of those retained
/// or lapsed in it under [`MIN_CELL`]; the other group goes too when one does (the total of
/// donors, known from the FEP table, would give it away).
pub fn suppress_stewardship(s: &mut Stewardship) {
    let small = |r: &Rate| {
        let (base, kept) = (r.base.unwrap_or(0), r.retained.unwrap_or(0));
        (1..MIN_CELL).contains(&base)
            || (1..MIN_CELL).contains(&kept)
            || (1..MIN_CELL).contains(&(base - kept))
    };
    if small(&s.contacted) || small(&s.not_contacted) {
        for (name, r) in [
            ("contacted", &mut s.contacted),
            ("not_contacted", &mut s.not_contacted),
        ] {
            *r = Rate {
                rate: None,
                retained: None,
                base: None,
            };
            s.suppressed.push(name.into());
        }
        s.outbound_interactions = None;
        s.suppressed.push("outbound_interactions".into());
    }
}

/// The FEP table of one period against the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fep {
    /// The period analysed.
    pub period: Period,
    /// The period compared with.
    pub previous: Period,
    /// Overall retention: donors of the previous period who gave in this one.
    pub overall: Rate,
    /// New-donor retention: first-time donors of the previous period who gave again.
    pub new: Rate,
    /// Repeat-donor retention: the previous period's donors who had given before it.
    pub repeat: Rate,
    /// Donors of this period giving for the first time, and what they gave.
    pub new_donors: Cell,
    /// Donors of this period who had given before, but not in the previous period.
    pub recaptured: Cell,
    /// Donors of both periods who gave more (amount: the increase).
    pub upgraded: Cell,
    /// Donors of both periods who gave the same.
    pub same: Cell,
    /// Donors of both periods who gave less (amount: the decrease).
    pub downgraded: Cell,
    /// First-time donors of the previous period who did not give (amount: what they gave then).
    pub lapsed_new: Cell,
    /// Repeat donors of the previous period who did not give (amount: what they gave then).
    pub lapsed_repeat: Cell,
    /// Donors this period, and what they gave.
    pub donors: Cell,
    /// Donors in the previous period, and what they gave.
    pub previous_donors: Cell,
    /// Donors gained (new + recaptured) per donor lost (lapsed new + lapsed repeat).
    pub donor_gain_loss_ratio: Option<f64>,
    /// Money gained (new + recaptured + upgrades) per unit lost (lapsed + downgrades).
    pub money_gain_loss_ratio: Option<f64>,
    /// Cells held back by small-cell suppression, by name.
    pub suppressed: Vec<String>,
}

/// Per-donor classification of one period against the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    New,
    Recaptured,
    Upgraded,
    Same,
    Downgraded,
    LapsedNew,
    LapsedRepeat,
    None,
}

struct Sums {
    cur: i64,
    cur_n: u32,
    prev: i64,
    prev_n: u32,
    before_prev: bool,
}

fn sums(d: &Donor, p: &Period, q: &Period) -> Sums {
    let mut s = Sums {
        cur: 0,
        cur_n: 0,
        prev: 0,
        prev_n: 0,
        before_prev: false,
    };
    for (day, amount) in &d.gifts {
        if p.contains(*day) {
            s.cur += amount;
            s.cur_n += 1;
        } else if q.contains(*day) {
            s.prev += amount;
            s.prev_n += 1;
        } else if *day < q.start {
            s.before_prev = true;
        }
    }
    s
}

fn classify(s: &Sums) -> Class {
    match (s.cur_n > 0, s.prev_n > 0, s.before_prev) {
        (true, false, false) => Class::New,
        (true, false, true) => Class::Recaptured,
        (true, true, _) if s.cur > s.prev => Class::Upgraded,
        (true, true, _) if s.cur == s.prev => Class::Same,
        (true, true, _) => Class::Downgraded,
        (false, true, false) => Class::LapsedNew,
        (false, true, true) => Class::LapsedRepeat,
        (false, false, _) => Class::None,
    }
}

fn ratio(gain: i64, loss: i64) -> Option<f64> {
    (loss > 0).then(|| gain as f64 / loss as f64)
}

/// The FEP table of `period` against the period before it.
pub fn fep(donors: &[Donor], period: Period) -> Fep {
    let q = period.previous();
    let mut t = Fep {
        period,
        previous: q,
        overall: Rate::new(0, 0),
        new: Rate::new(0, 0),
        repeat: Rate::new(0, 0),
        new_donors: Cell::default(),
        recaptured: Cell::default(),
        upgraded: Cell::default(),
        same: Cell::default(),
        downgraded: Cell::default(),
        lapsed_new: Cell::default(),
        lapsed_repeat: Cell::default(),
        donors: Cell::default(),
        previous_donors: Cell::default(),
        donor_gain_loss_ratio: None,
        money_gain_loss_ratio: None,
        suppressed: Vec::new(),
    };
    let (mut retained_new, mut retained_repeat) = (0u64, 0u64);
    for d in donors {
        let s = sums(d, &period, &q);
        if s.cur_n > 0 {
            t.donors.add(s.cur);
        }
        if s.prev_n > 0 {
            t.previous_donors.add(s.prev);
        }
        match classify(&s) {
            Class::New => t.new_donors.add(s.cur),
            Class::Recaptured => t.recaptured.add(s.cur),
            Class::Upgraded => t.upgraded.add(s.cur - s.prev),
            Class::Same => t.same.add(0),
            Class::Downgraded => t.downgraded.add(s.prev - s.cur),
            Class::LapsedNew => t.lapsed_new.add(s.prev),
            Class::LapsedRepeat => t.lapsed_repeat.add(s.prev),
            Class::None => {}
        }
        if s.cur_n > 0 && s.prev_n > 0 {
            if s.before_prev {
                retained_repeat += 1;
            } else {
                retained_new += 1;
            }
        }
    }
    let lapsed_new = t.lapsed_new.n();
    let lapsed_repeat = t.lapsed_repeat.n();
    t.new = Rate::new(retained_new, retained_new + lapsed_new);
    t.repeat = Rate::new(retained_repeat, retained_repeat + lapsed_repeat);
    t.overall = Rate::new(retained_new + retained_repeat, t.previous_donors.n());
    let amt = |c: &Cell| c.amount.unwrap_or(0);
    t.donor_gain_loss_ratio = ratio(
        (t.new_donors.n() + t.recaptured.n()) as i64,
        (lapsed_new + lapsed_repeat) as i64,
    );
    t.money_gain_loss_ratio = ratio(
        amt(&t.new_donors) + amt(&t.recaptured) + amt(&t.upgraded),
        amt(&t.lapsed_new) + amt(&t.lapsed_repeat) + amt(&t.downgraded),
    );
    t
}

/// Applies small-cell suppression to a FEP table (for roles that may not read gifts).
pub fn suppress_fep(t: &mut Fep) {
    // The totals that tie cells together: if one member is held back, so is another.
    const GROUPS: &[&[&str]] = &[
        &["new_donors", "recaptured", "upgraded", "same", "downgraded"],
        &[
            "upgraded",
            "same",
            "downgraded",
            "lapsed_new",
            "lapsed_repeat",
        ],
    ];
    let mut cells: BTreeMap<&'static str, Cell> = BTreeMap::new();
    for (name, c) in [
        ("new_donors", t.new_donors),
        ("recaptured", t.recaptured),
        ("upgraded", t.upgraded),
        ("same", t.same),
        ("downgraded", t.downgraded),
        ("lapsed_new", t.lapsed_new),
        ("lapsed_repeat", t.lapsed_repeat),
        ("donors", t.donors),
        ("previous_donors", t.previous_donors),
    ] {
        cells.insert(name, c);
    }
    let mut count_held: Vec<&'static str> = cells
        .iter()
        .filter(|(_, c)| (1..MIN_CELL).contains(&c.n()))
        .map(|(n, _)| *n)
        .collect();
    // Complementary suppression, repeated until no total has exactly one hidden member.
    loop {
        let mut changed = false;
        for group in GROUPS {
            let hidden = group.iter().filter(|n| count_held.contains(n)).count();
            if hidden == 1 {
                if let Some(next) = group
                    .iter()
                    .filter(|n| !count_held.contains(n) && cells[**n].n() > 0)
                    .min_by_key(|n| cells[**n].n())
                {
                    count_held.push(next);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut held: Vec<String> = Vec::new();
    for (name, cell) in cells.iter_mut() {
        let count_hidden = count_held.contains(name);
        let dominated = cell.amount.is_some_and(|a| a > 0 && cell.top * 2 > a);
        if count_hidden {
            cell.donors = None;
            held.push((*name).to_string());
        }
        if count_hidden || dominated {
            cell.amount = None;
            if !count_hidden {
                held.push(format!("{name}.amount"));
            }
        }
    }
    t.new_donors = cells["new_donors"];
    t.recaptured = cells["recaptured"];
    t.upgraded = cells["upgraded"];
    t.same = cells["same"];
    t.downgraded = cells["downgraded"];
    t.lapsed_new = cells["lapsed_new"];
    t.lapsed_repeat = cells["lapsed_repeat"];
    t.donors = cells["donors"];
    t.previous_donors = cells["previous_donors"];
    let mut hide_rate = |r: &mut Rate, n: &str, base_hidden: bool| {
        if base_hidden || (1..MIN_CELL).contains(&r.retained.unwrap_or(0)) {
            *r = Rate {
                rate: None,
                retained: None,
                base: None,
            };
            held.push(format!("retention.{n}"));
        }
    };
    let base_small = |r: &Rate| (1..MIN_CELL).contains(&r.base.unwrap_or(0));
    let (o, nw, rp) = (
        base_small(&t.overall),
        base_small(&t.new),
        base_small(&t.repeat),
    );
    hide_rate(&mut t.overall, "overall", o);
    hide_rate(&mut t.new, "new", nw);
    hide_rate(&mut t.repeat, "repeat", rp);
    if !held.is_empty() {
        t.donor_gain_loss_ratio = None;
        t.money_gain_loss_ratio = None;
    }
    held.sort();
    held.dedup();
    t.suppressed = held;
}

/// Lapsed donors: LYBUNT (gave in the previous period, not in this one) and SYBUNT (gave in
/// the `lookback` periods before the previous one, but neither then nor now).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lapsed {
    /// The period analysed.
    pub period: Period,
    /// Periods looked back for SYBUNT.
    pub lookback: u32,
    /// LYBUNT donors and what they gave in the previous period.
    pub lybunt: Cell,
    /// SYBUNT donors and what they gave in the look-back periods.
    pub sybunt: Cell,
    /// Cells held back by small-cell suppression.
    pub suppressed: Vec<String>,
    /// Subject ids (only for roles that may read gifts, and only when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lybunt_ids: Option<Vec<String>>,
    /// Subject ids (as `lybunt_ids`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sybunt_ids: Option<Vec<String>>,
}

/// LYBUNT and SYBUNT counts, with the positions (in `donors`) of the people in each.
pub fn lapsed(donors: &[Donor], period: Period, lookback: u32) -> (Lapsed, Vec<usize>, Vec<usize>) {
    let q = period.previous();
    let mut from = q;
    for _ in 0..lookback {
        from = from.previous();
    }
    let window = Period {
        start: from.start,
        end: q.start,
    };
    let mut out = Lapsed {
        period,
        lookback,
        lybunt: Cell::default(),
        sybunt: Cell::default(),
        suppressed: Vec::new(),
        lybunt_ids: None,
        sybunt_ids: None,
    };
    let (mut ly, mut sy) = (Vec::new(), Vec::new());
    for (i, d) in donors.iter().enumerate() {
        let s = sums(d, &period, &q);
        if s.cur_n > 0 {
            continue;
        }
        if s.prev_n > 0 {
            out.lybunt.add(s.prev);
            ly.push(i);
            continue;
        }
        let then: i64 = d
            .gifts
            .iter()
            .filter(|(day, _)| window.contains(*day))
            .map(|(_, a)| a)
            .sum();
        if d.gifts.iter().any(|(day, _)| window.contains(*day)) {
            out.sybunt.add(then);
            sy.push(i);
        }
    }
    (out, ly, sy)
}

/// Recency, frequency and money scores by quintile (5 is best) over the donors who gave in
/// the `years` before the end of `period`: how many donors have each score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rfm {
    /// Donors scored.
    pub donors: u64,
    /// Donors per recency score 1..5.
    pub recency: [u64; 5],
    /// Donors per frequency score 1..5.
    pub frequency: [u64; 5],
    /// Donors per money score 1..5.
    pub monetary: [u64; 5],
    /// Average gift over all time, in the analysed currency.
    #[serde(serialize_with = "money_opt")]
    pub average_gift: Option<i64>,
    /// Revenue in the period per donor of the period.
    #[serde(serialize_with = "money_opt")]
    pub revenue_per_donor: Option<i64>,
    /// Historical lifetime value: all giving per donor ever.
    #[serde(serialize_with = "money_opt")]
    pub lifetime_value: Option<i64>,
    /// Retention-based estimate: revenue per donor × 1 / (1 − overall retention).
    #[serde(serialize_with = "money_opt")]
    pub lifetime_value_estimate: Option<i64>,
    /// Cells held back by small-cell suppression.
    pub suppressed: Vec<String>,
}

/// Quintile score (1..=5) of each value: ties get the same score.
fn quintiles(values: &[i64]) -> Vec<u8> {
    let mut sorted: Vec<i64> = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len().max(1);
    values
        .iter()
        .map(|v| {
            let below = sorted.partition_point(|x| x < v);
            (1 + below * 5 / n).min(5) as u8
        })
        .collect()
}

/// RFM scores and the money figures of `period`.
pub fn rfm(donors: &[Donor], period: Period, overall_retention: Option<f64>) -> Rfm {
    let mut rec = Vec::new();
    let mut freq = Vec::new();
    let mut mon = Vec::new();
    let (mut gifts_n, mut gifts_sum, mut ever_donors) = (0i64, 0i64, 0i64);
    let (mut cur_sum, mut cur_donors) = (0i64, 0i64);
    for d in donors {
        let upto: Vec<&(Date, i64)> = d
            .gifts
            .iter()
            .filter(|(day, _)| *day < period.end)
            .collect();
        if upto.is_empty() {
            continue;
        }
        ever_donors += 1;
        gifts_n += upto.len() as i64;
        let total: i64 = upto.iter().map(|(_, a)| a).sum();
        gifts_sum += total;
        let cur: i64 = upto
            .iter()
            .filter(|(day, _)| period.contains(*day))
            .map(|(_, a)| a)
            .sum();
        if upto.iter().any(|(day, _)| period.contains(*day)) {
            cur_sum += cur;
            cur_donors += 1;
        }
        let last = upto.iter().map(|(day, _)| *day).max().expect("not empty");
        rec.push(-(period.end - last).whole_days());
        freq.push(upto.len() as i64);
        mon.push(total);
    }
    let mut out = Rfm {
        donors: rec.len() as u64,
        recency: [0; 5],
        frequency: [0; 5],
        monetary: [0; 5],
        average_gift: (gifts_n > 0).then(|| gifts_sum / gifts_n),
        revenue_per_donor: (cur_donors > 0).then(|| cur_sum / cur_donors),
        lifetime_value: (ever_donors > 0).then(|| gifts_sum / ever_donors),
        lifetime_value_estimate: None,
        suppressed: Vec::new(),
    };
    for (scores, into) in [
        (quintiles(&rec), &mut out.recency),
        (quintiles(&freq), &mut out.frequency),
        (quintiles(&mon), &mut out.monetary),
    ] {
        for s in scores {
            into[usize::from(s - 1)] += 1;
        }
    }
    if let (Some(r), Some(rpd)) = (overall_retention, out.revenue_per_donor) {
        if r < 1.0 {
            out.lifetime_value_estimate = Some((rpd as f64 / (1.0 - r)).round() as i64);
        }
    }
    out
}

/// What to analyse.
#[derive(Debug, Clone, Default)]
pub struct AnalyticsQuery {
    /// A calendar year (or give `from` and `to`).
    pub year: Option<i32>,
    /// First day of the period (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Last day of the period, included.
    pub to: Option<String>,
    /// Only gifts to this fund.
    pub fund: Option<String>,
    /// Only gifts of this campaign.
    pub campaign: Option<String>,
    /// Only gifts of this appeal.
    pub appeal: Option<String>,
    /// Look-back in periods for SYBUNT (default 4).
    pub lookback: Option<u32>,
    /// List the LYBUNT and SYBUNT subjects' ids (roles that may read gifts only).
    pub list: bool,
    /// For a private FEP release over HTTP: the epsilon to spend.
    pub epsilon: Option<f64>,
}

/// The gifts analytics read, and what it left out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coverage {
    /// The purpose analytics ran under.
    pub purpose: &'static str,
    /// Donors counted.
    pub donors: u64,
    /// Donors left out because the purpose may not process them (objection, restriction).
    pub excluded: u64,
    /// The currency the money figures are in (the most common one).
    pub currency: Option<String>,
    /// Gifts left out for being in another currency.
    pub other_currency_gifts: u64,
    /// Gifts left out for not being received (pledged, refunded, failed) or undated.
    pub not_counted_gifts: u64,
    /// True when small cells were suppressed for this role.
    pub suppression: bool,
}

/// An analytics answer: the figures and what they cover.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report<T: Serialize> {
    /// The figures.
    #[serde(flatten)]
    pub figures: T,
    /// What was counted.
    pub coverage: Coverage,
}

impl AnalyticsQuery {
    fn period(&self) -> Result<Period, Error> {
        if self.lookback.is_some_and(|l| l == 0 || l > 20) {
            return Err(Error::BadRequest("lookback: give 1 to 20 periods".into()));
        }
        if self.epsilon.is_some_and(|e| !(e > 0.0 && e <= 1.0)) {
            return Err(Error::BadRequest(
                "epsilon: give a number above 0 and at most 1".into(),
            ));
        }
        match (self.year, &self.from, &self.to) {
            (Some(y), None, None) => Period::year(y),
            (None, Some(f), Some(t)) => {
                let parse = |name: &str, s: &str| {
                    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                        .map_err(|_| {
                            Error::BadRequest(format!("{name}: expected a date such as 2025-04-06"))
                        })
                };
                let start = parse("from", f)?;
                let last = parse("to", t)?;
                if last < start {
                    return Err(Error::BadRequest(
                        "to: the period ends before it starts".into(),
                    ));
                }
                if !(1900..=2200).contains(&start.year()) || !(1900..=2200).contains(&last.year()) {
                    return Err(Error::BadRequest(
                        "from, to: a period lies between 1900 and 2200".into(),
                    ));
                }
                if (last - start).whole_days() > 20 * 366 {
                    return Err(Error::BadRequest(
                        "to: a period is at most 20 years long".into(),
                    ));
                }
                Ok(Period {
                    start,
                    end: last
                        .next_day()
                        .ok_or_else(|| Error::BadRequest("to: out of range".into()))?,
                })
            }
            _ => Err(Error::BadRequest(
                "give a year, or a period with both from and to".into(),
            )),
        }
    }

    #[cfg(test)]
    pub(crate) fn period_for_test(&self) -> Result<Period, Error> {
        self.period()
    }

    fn describe(&self, what: &str) -> String {
        let mut s = format!("analytics:{what}");
        if let Some(y) = self.year {
            s.push_str(&format!(" year={y}"));
        }
        // Query parameters are free text, and the audit log never holds a value someone
        // typed: dates only when they are dates, and which filters were used, not their text.
        let date = |d: &str| {
            let ok = d.len() == 10
                && d.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            if ok {
                d.to_string()
            } else {
                "invalid".to_string()
            }
        };
        if let (Some(f), Some(t)) = (&self.from, &self.to) {
            s.push_str(&format!(" from={} to={}", date(f), date(t)));
        }
        for (k, v) in [
            ("fund", &self.fund),
            ("campaign", &self.campaign),
            ("appeal", &self.appeal),
        ] {
            if v.is_some() {
                s.push_str(&format!(" {k}=given"));
            }
        }
        if let Some(l) = self.lookback {
            s.push_str(&format!(" lookback={l}"));
        }
        if self.list {
            s.push_str(" list");
        }
        s
    }
}

impl Hub {
    /// Reads every eligible donor's counted gifts. Returns them with their subject ids and
    /// the coverage.
    fn donors(
        &self,
        query: &AnalyticsQuery,
    ) -> Result<(Vec<Donor>, Vec<domain::SubjectId>, Coverage), Error> {
        let p = self.purpose(ANALYTICS_PURPOSE)?;
        let field = |n: &str| {
            self.schema
                .field(RecordKind::Gift, n)
                .map(|d| d.id)
                .ok_or_else(|| {
                    Error::Policy(format!(
                        "schema.toml: analytics needs the gift field \"{n}\""
                    ))
                })
        };
        let (amount, currency, date) = (field("amount")?, field("currency")?, field("date")?);
        let optional = |n: &str| self.schema.field(RecordKind::Gift, n).map(|d| d.id);
        let status = optional("status");
        // A filter on a field the catalogue lacks is refused by `field`, naming it.
        let mut filters: Vec<(FieldId, String)> = Vec::new();
        for (name, value) in [
            ("fund", &query.fund),
            ("campaign", &query.campaign),
            ("appeal", &query.appeal),
        ] {
            if let Some(v) = value {
                filters.push((field(name)?, v.clone()));
            }
        }
        let wanted: Vec<FieldId> = [Some(amount), Some(currency), Some(date), status]
            .into_iter()
            .flatten()
            .chain(filters.iter().map(|(f, _)| *f))
            .collect();
        let now = consent::now();
        let marketing = |name: &str| {
            self.purposes()
                .get(name)
                .map(|p| p.marketing)
                .unwrap_or(false)
        };
        let mut ledger = self.ledger.scan().peekable();
        // Each donor's counted gifts: day, amount, currency.
        type Counted = Vec<(Date, i64, String)>;
        let mut raw: Vec<(domain::SubjectId, Counted)> = Vec::new();
        let mut excluded = 0u64;
        let mut not_counted = 0u64;
        let mut currencies: HashMap<String, u64> = HashMap::new();
        let mut ledger_error: Option<Error> = None;
        self.vault.scan_gifts(&|f| wanted.contains(&f), &mut |id, gifts| {
            while let Some(Ok((s, _))) = ledger.peek() {
                if *s >= id {
                    break;
                }
                ledger.next();
            }
            let events: Vec<consent::GateEvent> = match ledger.peek() {
                Some(Ok((s, ev))) if *s == id => ev.clone(),
                Some(Err(_)) => {
                    if let Some(Err(e)) = ledger.next() {
                        ledger_error = Some(consent_error(e));
                    }
                    return Ok(());
                }
                _ => Vec::new(),
            };
            if !consent::verdict(&p, &events, false, &now, &marketing).0 {
                excluded += 1;
                return Ok(());
            }
            let mut counted = Vec::with_capacity(gifts.len());
            for g in gifts {
                let get = |f: FieldId| g.fields.iter().find(|(x, _)| *x == f).map(|(_, v)| v);
                if filters.iter().any(|(f, want)| {
                    !matches!(get(*f), Some(Value::Text(t)) if t.expose().eq_ignore_ascii_case(want))
                }) {
                    continue;
                }
                let received = status
                    .and_then(get)
                    .is_none_or(|v| matches!(v, Value::Text(t) if t.expose() == "received"));
                let (Some(Value::Money(m)), Some(day)) = (get(amount), get(date).and_then(Value::as_date)) else {
                    not_counted += 1;
                    continue;
                };
                if !received {
                    not_counted += 1;
                    continue;
                }
                let cur = match get(currency) {
                    Some(Value::Text(t)) => t.expose().to_string(),
                    _ => String::new(),
                };
                *currencies.entry(cur.clone()).or_insert(0) += 1;
                counted.push((day, m.0, cur));
            }
            if !counted.is_empty() {
                raw.push((id, counted));
            }
            Ok(())
        })?;
        if let Some(e) = ledger_error {
            return Err(e);
        }
        // Money figures in the most common currency (ties: the first in order); gifts without
        // a currency count as in it.
        let main = currencies
            .iter()
            .filter(|(c, _)| !c.is_empty())
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(c, _)| c.clone());
        let mut other = 0u64;
        let mut donors = Vec::with_capacity(raw.len());
        let mut ids = Vec::with_capacity(raw.len());
        for (id, gifts) in raw {
            let mut d = Donor::default();
            for (day, m, c) in gifts {
                if c.is_empty() || Some(&c) == main.as_ref() {
                    d.gifts.push((day, m));
                } else {
                    other += 1;
                }
            }
            if !d.gifts.is_empty() {
                donors.push(d);
                ids.push(id);
            }
        }
        let coverage = Coverage {
            purpose: ANALYTICS_PURPOSE,
            donors: donors.len() as u64,
            excluded,
            currency: main,
            other_currency_gifts: other,
            not_counted_gifts: not_counted,
            suppression: false,
        };
        Ok((donors, ids, coverage))
    }

    /// Runs one analysis under the audit event `read.analytics`.
    fn analyse<T: Serialize>(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
        what: &str,
        compute: impl FnOnce(&[Donor], &[domain::SubjectId], Period, bool) -> Result<T, Error>,
    ) -> Result<Report<T>, Error> {
        self.audited(actor, "read.analytics", |trail| {
            trail.purpose = Some(ANALYTICS_PURPOSE.into());
            trail.note = Some(query.describe(what));
            self.require(actor, "analytics", Action::Read)?;
            let period = query.period()?;
            let exact =
                self.allows_group(actor.principal.role, AccessGroup::Financial, Action::Read);
            if query.list && !exact {
                return Err(Error::Forbidden {
                    action: "read",
                    object: AccessGroup::Financial.object().into(),
                    fields: Vec::new(),
                });
            }
            let (donors, ids, mut coverage) = self.donors(query)?;
            coverage.suppression = !exact;
            trail.count = Some(coverage.donors);
            let figures = compute(&donors, &ids, period, !exact)?;
            Ok(Report { figures, coverage })
        })
    }

    /// FEP retention and gains and losses for a period against the one before.
    pub fn analytics_fep(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
    ) -> Result<Report<Fep>, Error> {
        self.analyse(actor, query, "fep", |donors, _, period, suppress| {
            let mut t = fep(donors, period);
            if suppress {
                suppress_fep(&mut t);
            }
            Ok(t)
        })
    }

    /// LYBUNT and SYBUNT; with `list`, the subjects' ids too (roles that may read gifts).
    pub fn analytics_lapsed(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
    ) -> Result<Report<Lapsed>, Error> {
        self.analyse(actor, query, "lapsed", |donors, ids, period, suppress| {
            let (mut l, ly, sy) = lapsed(donors, period, query.lookback.unwrap_or(4));
            if query.list {
                l.lybunt_ids = Some(ly.iter().map(|i| ids[*i].to_string()).collect());
                l.sybunt_ids = Some(sy.iter().map(|i| ids[*i].to_string()).collect());
            }
            if suppress {
                for (name, cell) in [("lybunt", &mut l.lybunt), ("sybunt", &mut l.sybunt)] {
                    if (1..MIN_CELL).contains(&cell.n()) {
                        *cell = Cell {
                            donors: None,
                            amount: None,
                            top: 0,
                        };
                        l.suppressed.push(name.into());
                    } else if cell.amount.is_some_and(|a| a > 0 && cell.top * 2 > a) {
                        cell.amount = None;
                        l.suppressed.push(format!("{name}.amount"));
                    }
                }
            }
            Ok(l)
        })
    }

    /// RFM quintiles, average gift, revenue per donor and lifetime value.
    pub fn analytics_rfm(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
    ) -> Result<Report<Rfm>, Error> {
        self.analyse(actor, query, "rfm", |donors, _, period, suppress| {
            let retention = fep(donors, period).overall.rate;
            let mut r = rfm(donors, period, retention);
            if suppress {
                if r.donors < MIN_CELL * 5 {
                    r.recency = [0; 5];
                    r.frequency = [0; 5];
                    r.monetary = [0; 5];
                    r.suppressed.push("scores".into());
                }
                if r.donors < MIN_CELL {
                    r.average_gift = None;
                    r.revenue_per_donor = None;
                    r.lifetime_value = None;
                    r.lifetime_value_estimate = None;
                    r.suppressed.push("money".into());
                }
            }
            Ok(r)
        })
    }
}

impl Hub {
    /// Retention of the previous period's donors who were contacted (an outbound interaction,
    /// under the analytics purpose, which must list interactions) against those who were not.
    pub fn analytics_stewardship(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
    ) -> Result<Report<Stewardship>, Error> {
        self.analyse(actor, query, "stewardship", |donors, ids, period, suppress| {
            if !self.purpose(ANALYTICS_PURPOSE)?.interactions {
                return Err(Error::ConsentRequired {
                    purpose: ANALYTICS_PURPOSE.into(),
                    reason: "purpose_excludes_interactions".into(),
                });
            }
            let field = |n: &str| {
                self.schema
                    .field(RecordKind::Interaction, n)
                    .map(|d| d.id)
                    .ok_or_else(|| Error::Policy(format!("schema.toml: stewardship needs the interaction field \"{n}\"")))
            };
            let (direction, occurred) = (field("direction")?, field("occurred_at")?);
            let previous = period.previous();
            let (from, to) = (day_seconds(previous.start), day_seconds(period.end));
            let index: HashMap<domain::SubjectId, usize> =
                ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            let mut contacted = vec![false; donors.len()];
            let mut outbound = 0u64;
            let mut seen = std::collections::HashSet::new();
            self.vault.scan_interactions(&|f| f == direction || f == occurred, &mut |subject, items| {
                let Some(&i) = index.get(&subject) else {
                    return Ok(());
                };
                for it in items {
                    let get = |f: FieldId| it.fields.iter().find(|(x, _)| *x == f).map(|(_, v)| v);
                    let out = matches!(get(direction), Some(Value::Text(t)) if t.expose() == "outbound");
                    let when = match get(occurred) {
                        Some(Value::Timestamp(t)) => Some(*t),
                        _ => None,
                    };
                    if out && when.is_some_and(|t| t >= from && t < to) {
                        contacted[i] = true;
                        // One interaction with two donors counts once.
                        if seen.insert(it.id) {
                            outbound += 1;
                        }
                    }
                }
                Ok(())
            })?;
            let mut s = stewardship(donors, &contacted, outbound, period);
            if suppress {
                suppress_stewardship(&mut s);
            }
            Ok(s)
        })
    }
}

/// Seconds since 1970 at the start of a day (UTC).
fn day_seconds(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp()
}

impl Hub {
    /// The FEP table of each year from `first` to the query's year (at most 20), from one
    /// read of the gifts: retention over the years.
    pub fn analytics_series(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
        first: i32,
    ) -> Result<Report<Vec<Fep>>, Error> {
        let last = query
            .year
            .ok_or_else(|| Error::BadRequest("year: a series needs the last year".into()))?;
        if first > last || last - first >= 20 {
            return Err(Error::BadRequest(
                "from_year: a series covers 1 to 20 years ending with the year".into(),
            ));
        }
        self.analyse(actor, query, "series", |donors, _, _, suppress| {
            (first..=last)
                .map(|y| {
                    let mut t = fep(donors, Period::year(y)?);
                    if suppress {
                        suppress_fep(&mut t);
                    }
                    Ok(t)
                })
                .collect()
        })
    }
}

/// The classes of a private release: each donor is in one at most.
const PRIVATE_CLASSES: [&str; 10] = [
    "new_donors",
    "recaptured",
    "upgraded_new",
    "upgraded_repeat",
    "same_new",
    "same_repeat",
    "downgraded_new",
    "downgraded_repeat",
    "lapsed_new",
    "lapsed_repeat",
];

/// Where the epsilon already spent on private releases is kept (the store's meta keyspace).
const DP_SPENT: &[u8] = b"analytics.dp.spent";

/// A differentially private release of the FEP table's donor counts.
///
/// Each donor falls in exactly one of ten classes of a period against the one before (new,
/// recaptured; upgraded, same and downgraded, each split by whether the donor was new in the
/// previous period; lapsed new, lapsed repeat) or in none, so adding or removing one donor
/// changes the vector of the ten counts by 1 in one place: its L1 sensitivity is 1. Adding to each count independent two-sided geometric noise with
/// α = e^(−ε) (P(k) ∝ α^|k|) is then ε-differentially private for that vector (the geometric
/// mechanism, the discrete Laplace mechanism for sensitivity 1). Everything shown is worked
/// out from the noisy counts alone (clamping at zero, the totals, the retention rates), which
/// is post-processing and keeps the guarantee. Money is not released: one gift is unbounded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivateFep {
    /// The period analysed.
    pub period: Period,
    /// The epsilon this release spent.
    pub epsilon: f64,
    /// What is left of the data directory's budget after it.
    pub budget_left: f64,
    /// Noisy donor counts per class (clamped at zero).
    pub counts: BTreeMap<&'static str, u64>,
    /// Overall retention from the noisy counts.
    pub overall: Option<f64>,
    /// New-donor retention from the noisy counts.
    pub new: Option<f64>,
    /// Repeat-donor retention from the noisy counts.
    pub repeat: Option<f64>,
    /// Donors gained per donor lost, from the noisy counts.
    pub donor_gain_loss_ratio: Option<f64>,
}

/// A sample of the two-sided geometric distribution with α = e^(−ε), from `uniform`, a
/// source of independent uniform numbers in (0, 1).
pub fn two_sided_geometric(epsilon: f64, uniform: &mut dyn FnMut() -> f64) -> i64 {
    // The difference of two geometric variables on {0, 1, ...} with P(k) = (1−α)α^k has
    // P(d) = (1−α)/(1+α) · α^|d|.
    let ln_alpha = -epsilon;
    let mut geometric = || (uniform().ln() / ln_alpha).floor() as i64;
    geometric() - geometric()
}

/// A uniform number in (0, 1) from the system's secure random source.
fn secure_uniform() -> f64 {
    let mut b = [0u8; 8];
    assert!(
        vault::crypto::fill_random(&mut b),
        "the system's random source failed"
    );
    // 53 random bits, shifted off zero.
    ((u64::from_le_bytes(b) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

impl Hub {
    /// A differentially private release of the FEP table's donor counts, spending `epsilon`
    /// of the `analytics` purpose's `privacy_budget` (refused once spent, and for an epsilon
    /// outside (0, 1]). The spend is stored with the run's audit event, in one batch.
    pub fn analytics_fep_private(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
        epsilon: f64,
    ) -> Result<PrivateFep, Error> {
        self.audited(actor, "read.analytics", |trail| {
            trail.purpose = Some(ANALYTICS_PURPOSE.into());
            trail.note = Some(format!("{} epsilon={epsilon}", query.describe("fep-private")));
            self.require(actor, "analytics", Action::Read)?;
            if !(epsilon > 0.0 && epsilon <= 1.0) {
                return Err(Error::BadRequest(
                    "epsilon: give a number above 0 and at most 1".into(),
                ));
            }
            let budget = self
                .purpose(ANALYTICS_PURPOSE)?
                .privacy_budget
                .ok_or_else(|| {
                    Error::Policy(
                        "purposes.toml: the analytics purpose has no privacy_budget, so no private release may be made".into(),
                    )
                })?;
            let period = query.period()?;
            let _one = self.dp_lock.lock().expect("dp lock");
            let spent = match self.vault.store().get(vault::keyspaces::META, DP_SPENT)? {
                Some(v) => f64::from_le_bytes(v.as_slice().try_into().unwrap_or([0; 8])),
                None => 0.0,
            };
            if spent + epsilon > budget + 1e-12 {
                return Err(Error::Conflict(format!(
                    "the privacy budget is spent: {spent:.3} of {budget:.3} used, this release asks {epsilon}"
                )));
            }
            let (donors, _, coverage) = self.donors(query)?;
            trail.count = Some(coverage.donors);
            // Ten classes, each donor in one at most: the seven of the FEP table with the
            // retained ones split by whether they were new in the previous period.
            let q = period.previous();
            let mut exact: BTreeMap<&'static str, i64> = BTreeMap::new();
            for name in PRIVATE_CLASSES {
                exact.insert(name, 0);
            }
            for d in &donors {
                let s = sums(d, &period, &q);
                let repeat = s.before_prev;
                let name = match (classify(&s), repeat) {
                    (Class::New, _) => "new_donors",
                    (Class::Recaptured, _) => "recaptured",
                    (Class::Upgraded, false) => "upgraded_new",
                    (Class::Upgraded, true) => "upgraded_repeat",
                    (Class::Same, false) => "same_new",
                    (Class::Same, true) => "same_repeat",
                    (Class::Downgraded, false) => "downgraded_new",
                    (Class::Downgraded, true) => "downgraded_repeat",
                    (Class::LapsedNew, _) => "lapsed_new",
                    (Class::LapsedRepeat, _) => "lapsed_repeat",
                    (Class::None, _) => continue,
                };
                *exact.get_mut(name).expect("every class") += 1;
            }
            let mut uniform = secure_uniform;
            let counts: BTreeMap<&'static str, u64> = exact
                .into_iter()
                .map(|(name, n)| {
                    (name, (n + two_sided_geometric(epsilon, &mut uniform)).max(0) as u64)
                })
                .collect();
            let c = |n: &str| counts[n];
            let retained_new = c("upgraded_new") + c("same_new") + c("downgraded_new");
            let retained_repeat = c("upgraded_repeat") + c("same_repeat") + c("downgraded_repeat");
            let rate = |kept: u64, lost: u64| (kept + lost > 0).then(|| kept as f64 / (kept + lost) as f64);
            let lost = c("lapsed_new") + c("lapsed_repeat");
            let release = PrivateFep {
                period,
                epsilon,
                budget_left: budget - spent - epsilon,
                overall: rate(retained_new + retained_repeat, lost),
                new: rate(retained_new, c("lapsed_new")),
                repeat: rate(retained_repeat, c("lapsed_repeat")),
                donor_gain_loss_ratio: (lost > 0)
                    .then(|| (c("new_donors") + c("recaptured")) as f64 / lost as f64),
                counts,
            };
            self.commit_audited(actor, "read.analytics", trail, |mut batch| {
                batch.put(
                    vault::keyspaces::META,
                    DP_SPENT.to_vec(),
                    (spent + epsilon).to_le_bytes().to_vec(),
                );
                Ok(self.vault.apply_durably(batch)?)
            })?;
            Ok(release)
        })
    }
}
