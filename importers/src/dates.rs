//! The order of a date column (day first or month first), worked out from the whole file.
//!
//! `03/04/1980` is 3 April in a UK export and 4 March in a US one. One value cannot say
//! which; a column can: a single `13/10/1965` shows a column is month-first wherever it
//! comes from. The order is decided per column, in this precedence: the importer's explicit
//! choice (`--date-order`), the file's own evidence, the profile's default (the source
//! system's habit), the schema's `date_order`. A column with evidence both ways holds two
//! conventions, and its ambiguous values are refused rather than guessed.

use domain::DateOrder;
use serde::Serialize;
use time::Date;

/// What one value says about its column's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The first number is above 12: only day-first reads it.
    DayFirst,
    /// The second number is above 12: only month-first reads it.
    MonthFirst,
    /// Both numbers are 12 or below and differ: either order reads it, differently.
    Ambiguous,
    /// The order does not matter (ISO dates, equal numbers) or the value is not a date.
    Neutral,
}

/// The two leading numbers and the year of a `NN/NN/YYYY` value (also with `-` or `.`).
fn day_month_year(input: &str) -> Option<(u8, u8, i32)> {
    let s = input.trim();
    let s = s.split(['T', ' ']).next().unwrap_or(s);
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    if parts.len() != 3
        || parts[2].len() != 4
        || parts[0].is_empty()
        || parts[1].is_empty()
        || parts[0].len() > 2
        || parts[1].len() > 2
        || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((
        parts[0].parse().ok()?,
        parts[1].parse().ok()?,
        parts[2].parse().ok()?,
    ))
}

/// What a value says about its column's order.
pub fn evidence(value: &str) -> Evidence {
    match day_month_year(value) {
        Some((a, b, _)) if a > 12 && (1..=12).contains(&b) => Evidence::DayFirst,
        Some((a, b, _)) if b > 12 && (1..=12).contains(&a) => Evidence::MonthFirst,
        Some((a, b, _)) if a != b && (1..=12).contains(&a) && (1..=12).contains(&b) => {
            Evidence::Ambiguous
        }
        _ => Evidence::Neutral,
    }
}

/// Reads a date in a column whose order is `order`: `NN/NN/YYYY` only in that order (a
/// value that reads only the other way is refused, not turned round); ISO and `YYYYMMDD`
/// values as they are.
pub fn read_in_order(value: &str, order: DateOrder) -> Result<Date, &'static str> {
    match day_month_year(value) {
        Some((a, b, y)) => {
            let (d, m) = match order {
                DateOrder::DayFirst => (a, b),
                DateOrder::MonthFirst => (b, a),
            };
            let month = time::Month::try_from(m).map_err(|_| match order {
                DateOrder::DayFirst => {
                    "the date cannot be read day-first, the order of this column; write it as YYYY-MM-DD"
                }
                DateOrder::MonthFirst => {
                    "the date cannot be read month-first, the order of this column; write it as YYYY-MM-DD"
                }
            })?;
            if !(1800..=2200).contains(&y) {
                return Err("the year is out of range (1800-2200)");
            }
            Date::from_calendar_date(y, month, d)
                .map_err(|_| "that day does not exist in that month")
        }
        None => domain::parse_date(value, order).map(|p| p.date),
    }
}

/// The name of an order, as the CLI option and reports write it.
pub fn order_name(order: DateOrder) -> &'static str {
    match order {
        DateOrder::DayFirst => "day-first",
        DateOrder::MonthFirst => "month-first",
    }
}

/// Parses `day-first` or `month-first` (also with `_`).
pub fn parse_order(s: &str) -> Option<DateOrder> {
    match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "day-first" | "dmy" => Some(DateOrder::DayFirst),
        "month-first" | "mdy" => Some(DateOrder::MonthFirst),
        _ => None,
    }
}

/// One date column's decision, for the import's record, `import inspect` and dry runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DateColumn {
    /// The column's header.
    pub column: String,
    /// Its position in the header.
    pub index: usize,
    /// `day-first`, `month-first`, or absent when undecided (ambiguous values are refused).
    pub order: Option<String>,
    /// What decided it: `option`, `file`, `profile`, `schema`; or, undecided, `mixed` (values
    /// that read only day-first and others only month-first), `none` (nothing to go by).
    pub decided_by: String,
    /// Values only day-first reads.
    pub day_first_values: u64,
    /// Values only month-first reads.
    pub month_first_values: u64,
    /// Values either order reads (differently).
    pub ambiguous_values: u64,
}

impl DateColumn {
    /// The decided order, if any.
    pub fn date_order(&self) -> Option<DateOrder> {
        self.order.as_deref().and_then(parse_order)
    }
}

/// Evidence gathered over a file's date columns.
#[derive(Debug, Clone)]
pub struct DateEvidence {
    columns: Vec<(usize, [u64; 3])>,
}

impl DateEvidence {
    /// Gathers evidence for the columns at `indices`.
    pub fn new(indices: impl IntoIterator<Item = usize>) -> DateEvidence {
        DateEvidence {
            columns: indices.into_iter().map(|i| (i, [0; 3])).collect(),
        }
    }

    /// Gathers evidence for the columns whose target is a date field of `schema`.
    pub fn for_targets(schema: &domain::Schema, targets: &[Option<crate::Target>]) -> DateEvidence {
        use crate::Target;
        use domain::RecordKind;
        DateEvidence::new(targets.iter().enumerate().filter_map(|(i, t)| {
            let (record, field) = match t {
                Some(Target::Field { field }) | Some(Target::Contact2 { field }) => {
                    (RecordKind::Subject, field)
                }
                Some(Target::Gift { field }) => (RecordKind::Gift, field),
                _ => return None,
            };
            schema
                .field(record, field)
                .is_some_and(|d| d.ty == domain::FieldType::Date)
                .then_some(i)
        }))
    }

    /// True when there is no date column.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Looks at one row's cells.
    pub fn observe(&mut self, cells: &[String]) {
        for (i, counts) in &mut self.columns {
            let Some(cell) = cells.get(*i) else { continue };
            match evidence(cell) {
                Evidence::DayFirst => counts[0] += 1,
                Evidence::MonthFirst => counts[1] += 1,
                Evidence::Ambiguous => counts[2] += 1,
                Evidence::Neutral => {}
            }
        }
    }

    /// Decides each column's order: `option` first, then the file's evidence, then the
    /// profile's default, then the schema's setting.
    pub fn decide(
        &self,
        header: &[String],
        option: Option<DateOrder>,
        profile: Option<DateOrder>,
        schema: Option<DateOrder>,
    ) -> Vec<DateColumn> {
        self.columns
            .iter()
            .map(|(i, [day, month, ambiguous])| {
                let (order, by) = if let Some(o) = option {
                    (Some(o), "option")
                } else if *day > 0 && *month > 0 {
                    (None, "mixed")
                } else if *day > 0 {
                    (Some(DateOrder::DayFirst), "file")
                } else if *month > 0 {
                    (Some(DateOrder::MonthFirst), "file")
                } else if let Some(o) = profile {
                    (Some(o), "profile")
                } else if let Some(o) = schema {
                    (Some(o), "schema")
                } else {
                    (None, "none")
                };
                DateColumn {
                    column: header.get(*i).cloned().unwrap_or_default(),
                    index: *i,
                    order: order.map(|o| order_name(o).to_string()),
                    decided_by: by.to_string(),
                    day_first_values: *day,
                    month_first_values: *month,
                    ambiguous_values: *ambiguous,
                }
            })
            .collect()
    }
}
