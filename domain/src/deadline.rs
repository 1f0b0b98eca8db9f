//! Legal clocks for subject-rights requests: calendar months, working days, public holidays.
//!
//! GDPR / UK GDPR: one calendar month from the day of receipt — the same date in the next
//! month, or that month's last day where it has none (31 January → 28/29 February) — and a
//! deadline on a Saturday, Sunday or public holiday moves to the next working day; extendable
//! by two further months. US state laws (CCPA-style): confirm within 10 business days, answer
//! within 45 calendar days, extendable by 45.

use time::{Date, Duration, Month, Weekday};

/// Adds calendar months, clamping to the last day of the target month.
pub fn add_months(date: Date, months: u32) -> Date {
    let total = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).expect("1..=12");
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, date.day().min(last)).expect("a valid day")
}

fn easter_sunday(year: i32) -> Date {
    // The anonymous Gregorian computus.
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::from_calendar_date(
        year,
        Month::try_from(month as u8).expect("March or April"),
        day as u8,
    )
    .expect("a valid date")
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn first_weekday_on_or_after(d: Date, w: Weekday) -> Date {
    let mut x = d;
    while x.weekday() != w {
        x = x.next_day().expect("in range");
    }
    x
}

fn last_weekday_of(year: i32, month: Month, w: Weekday) -> Date {
    let mut x = Date::from_calendar_date(year, month, time::util::days_in_month(month, year))
        .expect("valid");
    while x.weekday() != w {
        x = x.previous_day().expect("in range");
    }
    x
}

/// England and Wales bank holidays of a year, by the standing rules (substitute days for
/// New Year, Christmas and Boxing Day falling at a weekend). One-off holidays proclaimed for a
/// single year are added through configuration.
pub fn england_wales_bank_holidays(year: i32) -> Vec<Date> {
    let ymd = |m: Month, d: u8| Date::from_calendar_date(year, m, d).expect("valid");
    let mut out = Vec::new();
    let new_year = ymd(Month::January, 1);
    out.push(match new_year.weekday() {
        Weekday::Saturday => new_year + Duration::days(2),
        Weekday::Sunday => new_year + Duration::days(1),
        _ => new_year,
    });
    let easter = easter_sunday(year);
    out.push(easter - Duration::days(2));
    out.push(easter + Duration::days(1));
    out.push(first_weekday_on_or_after(
        ymd(Month::May, 1),
        Weekday::Monday,
    ));
    out.push(last_weekday_of(year, Month::May, Weekday::Monday));
    out.push(last_weekday_of(year, Month::August, Weekday::Monday));
    let christmas = ymd(Month::December, 25);
    let (c, b) = match christmas.weekday() {
        Weekday::Friday => (christmas, christmas + Duration::days(3)),
        Weekday::Saturday => (christmas + Duration::days(2), christmas + Duration::days(3)),
        Weekday::Sunday => (christmas + Duration::days(2), christmas + Duration::days(1)),
        _ => (christmas, christmas + Duration::days(1)),
    };
    out.push(c);
    out.push(b);
    out.sort();
    out
}

/// A calendar of non-working days: weekends plus listed holidays.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    holidays: Vec<Date>,
}

impl Calendar {
    /// England and Wales bank holidays for the given years, plus `extra` dates.
    pub fn england_wales(years: std::ops::RangeInclusive<i32>, extra: &[Date]) -> Calendar {
        let mut holidays: Vec<Date> = years.flat_map(england_wales_bank_holidays).collect();
        holidays.extend_from_slice(extra);
        holidays.sort();
        holidays.dedup();
        Calendar { holidays }
    }

    /// Weekends only (and `extra` dates).
    pub fn weekends_only(extra: &[Date]) -> Calendar {
        Calendar {
            holidays: extra.to_vec(),
        }
    }

    /// True on a Saturday, a Sunday or a listed holiday.
    pub fn is_non_working(&self, d: Date) -> bool {
        is_weekend(d) || self.holidays.binary_search(&d).is_ok()
    }

    /// `d`, or the next working day after it.
    pub fn next_working_day(&self, d: Date) -> Date {
        let mut x = d;
        while self.is_non_working(x) {
            x = x.next_day().expect("in range");
        }
        x
    }

    /// The date `n` working days after `d`.
    pub fn add_working_days(&self, d: Date, n: u32) -> Date {
        let mut x = d;
        let mut left = n;
        while left > 0 {
            x = x.next_day().expect("in range");
            if !self.is_non_working(x) {
                left -= 1;
            }
        }
        x
    }
}

/// GDPR / UK GDPR answer deadline: `1 + extension_months` calendar months from receipt, plus
/// the days the clock was paused, moved to the next working day.
pub fn gdpr_due(
    received: Date,
    extension_months: u32,
    paused_days: u32,
    calendar: &Calendar,
) -> Date {
    let raw = add_months(received, 1 + extension_months) + Duration::days(i64::from(paused_days));
    calendar.next_working_day(raw)
}

/// US state laws: (acknowledge by, answer by) — 10 business days; 45 calendar days (+45 when
/// extended), plus paused days.
pub fn us_state_due(
    received: Date,
    extended: bool,
    paused_days: u32,
    calendar: &Calendar,
) -> (Date, Date) {
    let ack = calendar.add_working_days(received, 10);
    let days = if extended { 90 } else { 45 } + i64::from(paused_days);
    (ack, received + Duration::days(days))
}
