//! The analytics functions against a separately written, straightforward version over random
//! gift histories, and suppression rules on small tables.

use std::collections::{BTreeMap, BTreeSet};

use time::{Date, Month};

use crate::analytics::*;

/// The FEP table written the obvious way: per-year sets of donors and per-year totals.
struct Naive {
    new: u64,
    recaptured: u64,
    upgraded: u64,
    same: u64,
    downgraded: u64,
    lapsed_new: u64,
    lapsed_repeat: u64,
    money_new: i64,
    money_recaptured: i64,
    money_up: i64,
    money_down: i64,
    money_lapsed_new: i64,
    money_lapsed_repeat: i64,
    overall: (u64, u64),
    new_rate: (u64, u64),
    repeat_rate: (u64, u64),
    lybunt: u64,
    sybunt: u64,
}

fn naive(histories: &[Vec<(i32, i64)>], year: i32, lookback: i32) -> Naive {
    let mut n = Naive {
        new: 0,
        recaptured: 0,
        upgraded: 0,
        same: 0,
        downgraded: 0,
        lapsed_new: 0,
        lapsed_repeat: 0,
        money_new: 0,
        money_recaptured: 0,
        money_up: 0,
        money_down: 0,
        money_lapsed_new: 0,
        money_lapsed_repeat: 0,
        overall: (0, 0),
        new_rate: (0, 0),
        repeat_rate: (0, 0),
        lybunt: 0,
        sybunt: 0,
    };
    for h in histories {
        let mut by_year: BTreeMap<i32, i64> = BTreeMap::new();
        for (y, a) in h {
            *by_year.entry(*y).or_default() += a;
        }
        let years: BTreeSet<i32> = by_year.keys().copied().collect();
        let this = years.contains(&year);
        let last = years.contains(&(year - 1));
        let earlier = years.iter().any(|y| *y < year - 1);
        let t = by_year.get(&year).copied().unwrap_or(0);
        let l = by_year.get(&(year - 1)).copied().unwrap_or(0);
        if this && !last && !earlier {
            n.new += 1;
            n.money_new += t;
        }
        if this && !last && earlier {
            n.recaptured += 1;
            n.money_recaptured += t;
        }
        if this && last {
            if t > l {
                n.upgraded += 1;
                n.money_up += t - l;
            } else if t == l {
                n.same += 1;
            } else {
                n.downgraded += 1;
                n.money_down += l - t;
            }
        }
        if !this && last && !earlier {
            n.lapsed_new += 1;
            n.money_lapsed_new += l;
        }
        if !this && last && earlier {
            n.lapsed_repeat += 1;
            n.money_lapsed_repeat += l;
        }
        if last {
            n.overall.1 += 1;
            if this {
                n.overall.0 += 1;
            }
            if earlier {
                n.repeat_rate.1 += 1;
                n.repeat_rate.0 += u64::from(this);
            } else {
                n.new_rate.1 += 1;
                n.new_rate.0 += u64::from(this);
            }
        }
        if !this && last {
            n.lybunt += 1;
        }
        if !this
            && !last
            && years
                .iter()
                .any(|y| *y >= year - 1 - lookback && *y < year - 1)
        {
            n.sybunt += 1;
        }
    }
    n
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn day(y: i32, m: u8, d: u8) -> Date {
    Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap()
}

#[test]
fn fep_and_lapsed_agree_with_a_straightforward_version_over_random_histories() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..200 {
        let people = 1 + rng.below(60) as usize;
        let mut histories: Vec<Vec<(i32, i64)>> = Vec::new();
        let mut donors = Vec::new();
        for _ in 0..people {
            let gifts = rng.below(7);
            let mut h = Vec::new();
            let mut d = Donor::default();
            for _ in 0..gifts {
                let y = 2016 + rng.below(10) as i32;
                // Amounts often equal, so "same" happens.
                let a = [500, 1000, 2500, 1000, 12345][rng.below(5) as usize];
                let m = 1 + rng.below(12) as u8;
                let dd = 1 + rng.below(28) as u8;
                h.push((y, a));
                d.gifts.push((day(y, m, dd), a));
            }
            histories.push(h);
            donors.push(d);
        }
        let year = 2018 + rng.below(8) as i32;
        let lookback = 1 + rng.below(4) as u32;
        let want = naive(&histories, year, lookback as i32);
        let got = fep(&donors, Period::year(year).unwrap());
        let ctx = format!("round {round}, year {year}");
        let c = |cell: &Cell| (cell.donors.unwrap(), cell.amount.unwrap());
        assert_eq!(c(&got.new_donors), (want.new, want.money_new), "{ctx}");
        assert_eq!(
            c(&got.recaptured),
            (want.recaptured, want.money_recaptured),
            "{ctx}"
        );
        assert_eq!(c(&got.upgraded), (want.upgraded, want.money_up), "{ctx}");
        assert_eq!(got.same.donors.unwrap(), want.same, "{ctx}");
        assert_eq!(
            c(&got.downgraded),
            (want.downgraded, want.money_down),
            "{ctx}"
        );
        assert_eq!(
            c(&got.lapsed_new),
            (want.lapsed_new, want.money_lapsed_new),
            "{ctx}"
        );
        assert_eq!(
            c(&got.lapsed_repeat),
            (want.lapsed_repeat, want.money_lapsed_repeat),
            "{ctx}"
        );
        let r = |rate: &Rate| (rate.retained.unwrap(), rate.base.unwrap());
        assert_eq!(r(&got.overall), want.overall, "{ctx}");
        assert_eq!(r(&got.new), want.new_rate, "{ctx}");
        assert_eq!(r(&got.repeat), want.repeat_rate, "{ctx}");
        let (l, ly, sy) = lapsed(&donors, Period::year(year).unwrap(), lookback);
        assert_eq!(l.lybunt.donors.unwrap(), want.lybunt, "{ctx}");
        assert_eq!(
            l.sybunt.donors.unwrap(),
            want.sybunt,
            "{ctx} lookback {lookback}"
        );
        assert_eq!(ly.len() as u64, want.lybunt);
        assert_eq!(sy.len() as u64, want.sybunt);
    }
}

#[test]
fn a_period_is_compared_with_the_one_of_the_same_length_before_it() {
    let y = Period::year(2025).unwrap();
    assert_eq!(y.previous(), Period::year(2024).unwrap());
    let q = Period {
        start: day(2025, 4, 6),
        end: day(2025, 7, 6),
    };
    let p = q.previous();
    assert_eq!(p.end, q.start);
    assert_eq!(p.end - p.start, q.end - q.start);
}

#[test]
fn suppression_hides_small_cells_their_complements_and_dominated_money() {
    // 12 new donors (one gives most of the money), 4 recaptured, 15 upgraded.
    let mut donors = Vec::new();
    for i in 0..12 {
        donors.push(Donor {
            gifts: vec![(day(2025, 3, 1), if i == 0 { 1_000_000 } else { 100 })],
        });
    }
    for _ in 0..4 {
        donors.push(Donor {
            gifts: vec![(day(2020, 3, 1), 100), (day(2025, 3, 1), 100)],
        });
    }
    for _ in 0..15 {
        donors.push(Donor {
            gifts: vec![(day(2024, 3, 1), 100), (day(2025, 3, 1), 200)],
        });
    }
    let mut t = fep(&donors, Period::year(2025).unwrap());
    assert_eq!(t.recaptured.donors, Some(4));
    suppress_fep(&mut t);
    assert_eq!(t.recaptured.donors, None);
    // Its total's other members: the smallest shown one goes too.
    assert_eq!(t.new_donors.donors, None);
    assert_eq!(t.upgraded.donors, Some(15));
    // One upgrade each of 100: not dominated; the donors total is dominated by one gift.
    assert!(t.upgraded.amount.is_some());
    assert_eq!(t.donors.amount, None);
    assert!(
        t.suppressed.contains(&"donors.amount".to_string()),
        "{:?}",
        t.suppressed
    );
    // Zero cells are shown: nobody is in them.
    assert_eq!(t.lapsed_new.donors, Some(0));
    assert_eq!(t.donor_gain_loss_ratio, None);
}

#[test]
fn rfm_scores_every_donor_once_per_measure() {
    let donors: Vec<Donor> = (0..50)
        .map(|i| Donor {
            gifts: (0..=(i % 5))
                .map(|k| (day(2020 + k, 1 + (i % 12) as u8, 1), 100 * (i as i64 + 1)))
                .collect(),
        })
        .collect();
    let r = rfm(&donors, Period::year(2024).unwrap(), Some(0.5));
    assert_eq!(r.donors, 50);
    for scores in [r.recency, r.frequency, r.monetary] {
        assert_eq!(scores.iter().sum::<u64>(), 50);
    }
    // Frequency: 1 to 5 gifts, ten donors each: one score each (ties share a score).
    assert_eq!(r.frequency, [10, 10, 10, 10, 10]);
    assert_eq!(
        r.lifetime_value_estimate,
        r.revenue_per_donor.map(|v| v * 2)
    );
}

#[test]
fn the_two_sided_geometric_noise_has_the_spread_its_epsilon_gives() {
    // Var = 2α / (1 − α)² with α = e^(−ε); mean 0.
    let mut rng = Rng(0x0dd5_eed5_0000_0001);
    let mut uniform = || ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    for epsilon in [0.5f64, 1.0] {
        let n = 200_000;
        let samples: Vec<i64> = (0..n)
            .map(|_| two_sided_geometric(epsilon, &mut uniform))
            .collect();
        let mean = samples.iter().sum::<i64>() as f64 / n as f64;
        let var = samples
            .iter()
            .map(|x| (*x as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let a = (-epsilon).exp();
        let want = 2.0 * a / (1.0 - a).powi(2);
        assert!(mean.abs() < 0.05, "epsilon {epsilon}: mean {mean}");
        assert!(
            (var / want - 1.0).abs() < 0.05,
            "epsilon {epsilon}: var {var}, want {want}"
        );
        // P(0) = (1 − α)/(1 + α).
        let zeros = samples.iter().filter(|x| **x == 0).count() as f64 / n as f64;
        assert!((zeros - (1.0 - a) / (1.0 + a)).abs() < 0.01, "{zeros}");
    }
}

#[test]
fn periods_and_look_backs_out_of_range_are_refused_not_computed() {
    assert!(Period::year(i32::MAX).is_err());
    assert!(Period::year(1899).is_err());
    let q = |year: Option<i32>, from: Option<&str>, to: Option<&str>, lookback: Option<u32>| {
        AnalyticsQuery {
            year,
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            lookback,
            ..Default::default()
        }
    };
    for bad in [
        q(Some(2025), None, None, Some(u32::MAX)),
        q(Some(2025), None, None, Some(0)),
        q(None, Some("1000-01-01"), Some("2025-01-01"), None),
        q(None, Some("1900-01-01"), Some("2200-12-31"), None),
        q(None, Some("2025-01-01"), None, None),
        q(Some(2025), Some("2025-01-01"), Some("2025-12-31"), None),
    ] {
        assert!(bad.period_for_test().is_err(), "{bad:?}");
    }
    assert!(q(Some(2025), None, None, Some(20))
        .period_for_test()
        .is_ok());
}

#[test]
fn stewardship_splits_last_years_donors_by_contact_and_suppresses_small_groups() {
    let day = |y: i32, m: Month| Date::from_calendar_date(y, m, 1).unwrap();
    let period = Period::year(2025).unwrap();
    let d = |dates: &[Date]| Donor {
        gifts: dates.iter().map(|x| (*x, 1000)).collect(),
    };
    let mut donors = Vec::new();
    let mut contacted = Vec::new();
    // 30 contacted (20 retained), 40 not (10 retained), 5 who gave only this year (not
    // followed), 5 who gave two years ago only (not followed).
    for i in 0..30 {
        donors.push(if i < 20 {
            d(&[day(2024, Month::May), day(2025, Month::May)])
        } else {
            d(&[day(2024, Month::May)])
        });
        contacted.push(true);
    }
    for i in 0..40 {
        donors.push(if i < 10 {
            d(&[day(2024, Month::May), day(2025, Month::May)])
        } else {
            d(&[day(2024, Month::May)])
        });
        contacted.push(false);
    }
    for _ in 0..5 {
        donors.push(d(&[day(2025, Month::June)]));
        contacted.push(true);
    }
    for _ in 0..5 {
        donors.push(d(&[day(2023, Month::June)]));
        contacted.push(true);
    }
    let mut s = stewardship(&donors, &contacted, 33, period);
    assert_eq!(
        (s.contacted.base, s.contacted.retained),
        (Some(30), Some(20))
    );
    assert_eq!(
        (s.not_contacted.base, s.not_contacted.retained),
        (Some(40), Some(10))
    );
    suppress_stewardship(&mut s);
    assert!(s.suppressed.is_empty(), "every cell has ten or more: {s:?}");
    // Nine lapsed among the contacted: that group and the other (the FEP total would give it
    // away) are withheld.
    contacted[20] = false;
    let mut s = stewardship(&donors, &contacted, 33, period);
    assert_eq!(s.contacted.base, Some(29));
    suppress_stewardship(&mut s);
    assert_eq!(
        s.suppressed,
        vec!["contacted", "not_contacted", "outbound_interactions"]
    );
    assert!(s.contacted.rate.is_none() && s.not_contacted.base.is_none());
    // No donors last year: rates are empty, nothing to suppress.
    let mut s = stewardship(&[], &[], 0, period);
    assert_eq!(s.contacted.rate, None);
    suppress_stewardship(&mut s);
    assert!(s.suppressed.is_empty());
}
