use std::fmt;

use time::Date;
use zeroize::Zeroize;

use crate::error::{FieldError, FieldProblem};
use crate::id::SubjectId;
use crate::normalise::{
    normalise_email, normalise_external_id, normalise_name, normalise_phone, normalise_postcode,
    parse_date,
};
use crate::schema::{FieldDef, FieldType, Schema};

/// Longest text value accepted, in bytes (notes included).
const MAX_TEXT: usize = 64 * 1024;

/// Most labels a tags field holds: more is not a person's tags but a payload meant to cost
/// the server work.
pub const MAX_TAGS: usize = 1_000;

macro_rules! redacted_string {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `Debug` prints only the length; the string is wiped from memory on drop.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value, for the few places that must see it (encryption, output to its owner).
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}(<redacted, {} bytes>)",
                    stringify!($name),
                    self.0.len()
                )
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }
    };
}

redacted_string!(
    Text,
    "A piece of personal text (a name, an address line, a note)."
);
redacted_string!(Email, "A normalised email address.");
redacted_string!(Phone, "A phone number in E.164.");

impl Text {
    /// Accepts any non-empty text up to 64 KiB.
    pub fn parse(s: &str) -> Result<Text, &'static str> {
        let t = s.trim();
        if t.is_empty() {
            return Err("the text is empty");
        }
        if t.len() > MAX_TEXT {
            return Err("the text is longer than 64 KiB");
        }
        if t.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err("the text holds a control character (such as NUL)");
        }
        Ok(Text(t.to_string()))
    }
}

impl Email {
    /// Parses and normalises an email address.
    pub fn parse(s: &str) -> Result<Email, &'static str> {
        normalise_email(s).map(Email)
    }
}

impl Phone {
    /// Parses a phone number, reading national numbers in `region`.
    pub fn parse(s: &str, region: &str) -> Result<Phone, &'static str> {
        normalise_phone(s, region).map(Phone)
    }
}

/// An amount of money in minor units (pence, cents).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Money {
    /// Parses `12`, `12.5`, `12.50`, `-3.00`; at most two decimals.
    pub fn parse(s: &str) -> Result<Money, &'static str> {
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err("not an amount");
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err("an amount is digits with an optional point, as in 25.00");
        }
        if frac.len() > 2 {
            return Err("an amount has at most two decimals");
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| "the amount is too large")?
        };
        let frac_val: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| "not an amount")? * 10,
            _ => frac.parse().map_err(|_| "not an amount")?,
        };
        let minor = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac_val))
            .ok_or("the amount is too large")?;
        Ok(Money(if neg { -minor } else { minor }))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Money(<redacted>)")
    }
}

/// A typed field value. `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Text of any text-like type (names, address lines, codes, enum values).
    Text(Text),
    /// An email address.
    Email(Email),
    /// A phone number in E.164.
    Phone(Phone),
    /// A calendar date.
    Date(Date),
    /// Yes or no.
    Bool(bool),
    /// An amount in minor units.
    Money(Money),
    /// A set of labels.
    Tags(Vec<Text>),
    /// A link to another subject.
    Ref(SubjectId),
    /// A moment: seconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A whole number, zero or more.
    Count(u64),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Value::Text(_) => "Text",
            Value::Email(_) => "Email",
            Value::Phone(_) => "Phone",
            Value::Date(_) => "Date",
            Value::Bool(_) => "Bool",
            Value::Money(_) => "Money",
            Value::Tags(_) => "Tags",
            Value::Ref(_) => "Ref",
            Value::Timestamp(_) => "Timestamp",
            Value::Count(_) => "Count",
        };
        write!(f, "Value::{kind}(<redacted>)")
    }
}

const TAG_TEXT: u8 = 1;
const TAG_EMAIL: u8 = 2;
const TAG_PHONE: u8 = 3;
const TAG_DATE: u8 = 4;
const TAG_BOOL: u8 = 5;
const TAG_MONEY: u8 = 6;
const TAG_TAGS: u8 = 7;
const TAG_REF: u8 = 8;
const TAG_TIMESTAMP: u8 = 9;
const TAG_COUNT: u8 = 10;

/// Why stored bytes could not be decoded as a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored value is malformed")]
pub struct DecodeError;

impl Value {
    /// Appends the compact binary form: one type byte, then the payload.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Text(t) => {
                out.push(TAG_TEXT);
                out.extend_from_slice(t.0.as_bytes());
            }
            Value::Email(e) => {
                out.push(TAG_EMAIL);
                out.extend_from_slice(e.0.as_bytes());
            }
            Value::Phone(p) => {
                out.push(TAG_PHONE);
                out.extend_from_slice(p.0.as_bytes());
            }
            Value::Date(d) => {
                out.push(TAG_DATE);
                out.extend_from_slice(&d.to_julian_day().to_le_bytes());
            }
            Value::Bool(b) => {
                out.push(TAG_BOOL);
                out.push(u8::from(*b));
            }
            Value::Money(m) => {
                out.push(TAG_MONEY);
                out.extend_from_slice(&m.0.to_le_bytes());
            }
            Value::Tags(tags) => {
                out.push(TAG_TAGS);
                for t in tags {
                    let len = u16::try_from(t.0.len()).unwrap_or(u16::MAX);
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&t.0.as_bytes()[..len as usize]);
                }
            }
            Value::Ref(id) => {
                out.push(TAG_REF);
                out.extend_from_slice(id.as_bytes());
            }
            Value::Timestamp(t) => {
                out.push(TAG_TIMESTAMP);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Value::Count(n) => {
                out.push(TAG_COUNT);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }

    /// The binary form as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode_into(&mut out);
        out
    }

    /// Decodes the binary form.
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        let (&tag, body) = bytes.split_first().ok_or(DecodeError)?;
        let text = || {
            std::str::from_utf8(body)
                .map(str::to_string)
                .map_err(|_| DecodeError)
        };
        Ok(match tag {
            TAG_TEXT => Value::Text(Text(text()?)),
            TAG_EMAIL => Value::Email(Email(text()?)),
            TAG_PHONE => Value::Phone(Phone(text()?)),
            TAG_DATE => {
                let jd = i32::from_le_bytes(body.try_into().map_err(|_| DecodeError)?);
                Value::Date(Date::from_julian_day(jd).map_err(|_| DecodeError)?)
            }
            TAG_BOOL => Value::Bool(*body.first().ok_or(DecodeError)? != 0),
            TAG_MONEY => Value::Money(Money(i64::from_le_bytes(
                body.try_into().map_err(|_| DecodeError)?,
            ))),
            TAG_TAGS => {
                let mut tags = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let len = u16::from_le_bytes(
                        rest.get(..2)
                            .ok_or(DecodeError)?
                            .try_into()
                            .map_err(|_| DecodeError)?,
                    ) as usize;
                    let s = rest.get(2..2 + len).ok_or(DecodeError)?;
                    tags.push(Text(
                        std::str::from_utf8(s).map_err(|_| DecodeError)?.to_string(),
                    ));
                    rest = &rest[2 + len..];
                }
                Value::Tags(tags)
            }
            TAG_REF => Value::Ref(SubjectId::from_slice(body).ok_or(DecodeError)?),
            TAG_TIMESTAMP => Value::Timestamp(i64::from_le_bytes(
                body.try_into().map_err(|_| DecodeError)?,
            )),
            TAG_COUNT => Value::Count(u64::from_le_bytes(
                body.try_into().map_err(|_| DecodeError)?,
            )),
            _ => return Err(DecodeError),
        })
    }

    /// The JSON form shown to people and scripts.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Text(t) => J::String(t.0.clone()),
            Value::Email(e) => J::String(e.0.clone()),
            Value::Phone(p) => J::String(p.0.clone()),
            Value::Date(d) => J::String(format_date(*d)),
            Value::Bool(b) => J::Bool(*b),
            Value::Money(m) => J::String(m.to_string()),
            Value::Tags(tags) => J::Array(tags.iter().map(|t| J::String(t.0.clone())).collect()),
            Value::Ref(id) => J::String(id.to_string()),
            Value::Timestamp(t) => J::String(format_timestamp(*t)),
            Value::Count(n) => J::Number((*n).into()),
        }
    }

    /// The text used for a blind index, where the value has one: the normalised email, the
    /// E.164 phone, or the external id.
    pub fn index_term(&self) -> Option<&str> {
        match self {
            Value::Email(e) => Some(&e.0),
            Value::Phone(p) => Some(&p.0),
            Value::Text(t) => Some(&t.0),
            _ => None,
        }
    }

    /// The date, for date fields (and the UTC day of a timestamp).
    pub fn as_date(&self) -> Option<Date> {
        match self {
            Value::Date(d) => Some(*d),
            Value::Timestamp(t) => time::OffsetDateTime::from_unix_timestamp(*t)
                .ok()
                .map(|x| x.date()),
            _ => None,
        }
    }

    /// Parses a JSON value for the given field, applying the field type's normaliser
    /// (at most [`MAX_TAGS`] labels in a tags field).
    pub fn from_json(
        def: &FieldDef,
        json: &serde_json::Value,
        schema: &Schema,
    ) -> Result<Value, FieldError> {
        let name = def.name.as_str();
        if let FieldType::Tags = def.ty {
            let items: Vec<String> = match json {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong_type(name, "a list of text labels"))?,
                serde_json::Value::String(s) => {
                    s.split([',', ';', '|']).map(str::to_string).collect()
                }
                _ => return Err(wrong_type(name, "a list of text labels")),
            };
            if items.len() > MAX_TAGS {
                return Err(FieldError::invalid(
                    name,
                    format!("more than {MAX_TAGS} tags"),
                ));
            }
            let mut tags: Vec<Text> = Vec::with_capacity(items.len());
            for item in items {
                let t = item.trim();
                if t.is_empty() {
                    continue;
                }
                if t.len() > 200 {
                    return Err(FieldError::invalid(
                        name,
                        "a tag is longer than 200 characters",
                    ));
                }
                tags.push(Text(t.to_string()));
            }
            // Sorted, then each label once: n log n, whatever the number of tags.
            tags.sort();
            tags.dedup();
            return Ok(Value::Tags(tags));
        }
        if let FieldType::Bool = def.ty {
            return match json {
                serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
                serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
                    "false" | "no" | "n" | "0" => Ok(Value::Bool(false)),
                    _ => Err(wrong_type(name, "true or false")),
                },
                _ => Err(wrong_type(name, "true or false")),
            };
        }
        if let FieldType::Count = def.ty {
            let n = match json {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            return match n {
                Some(n) if n <= 1_000_000_000 => Ok(Value::Count(n)),
                _ => Err(wrong_type(name, "a whole number, zero or more")),
            };
        }
        let owned;
        let s: &str = match json {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n)
                if matches!(
                    def.ty,
                    FieldType::Money | FieldType::ExternalId | FieldType::Text
                ) =>
            {
                owned = n.to_string();
                &owned
            }
            _ => return Err(wrong_type(name, "text")),
        };
        if s.trim().is_empty() {
            return Err(FieldError::new(name, FieldProblem::Empty));
        }
        let invalid = |reason: &str| FieldError::invalid(name, reason);
        Ok(match &def.ty {
            FieldType::Text => Value::Text(Text::parse(s).map_err(invalid)?),
            FieldType::Name => {
                if s.chars().any(char::is_control) {
                    return Err(invalid(
                        "a name holds a control character (such as NUL or a line break)",
                    ));
                }
                let n = normalise_name(s);
                if n.len() > 200 {
                    return Err(invalid("a name is longer than 200 characters"));
                }
                Value::Text(Text(n))
            }
            FieldType::Email => Value::Email(Email::parse(s).map_err(invalid)?),
            FieldType::Phone => {
                Value::Phone(Phone::parse(s, &schema.default_region).map_err(invalid)?)
            }
            FieldType::Date => {
                let order = schema.date_order.unwrap_or(crate::DateOrder::DayFirst);
                let parsed = parse_date(s, order).map_err(invalid)?;
                if parsed.ambiguous && schema.date_order.is_none() {
                    return Err(FieldError::new(name, FieldProblem::AmbiguousDate));
                }
                Value::Date(parsed.date)
            }
            FieldType::Money => {
                let m = Money::parse(s).map_err(invalid)?;
                if m.0 < 0 {
                    return Err(invalid(
                        "an amount cannot be negative: a refund is recorded as the gift's status (refunded), not as a negative gift",
                    ));
                }
                Value::Money(m)
            }
            FieldType::Currency => {
                let c = s.trim().to_ascii_uppercase();
                if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid(
                        "a currency is a three-letter ISO 4217 code, as in GBP",
                    ));
                }
                Value::Text(Text(c))
            }
            FieldType::Country => {
                Value::Text(Text(country_code(s).ok_or_else(|| {
                    invalid("a country is a two-letter ISO 3166 code, as in GB")
                })?))
            }
            FieldType::Language => {
                let l = s.trim();
                let ok = (2..=35).contains(&l.len())
                    && l.split('-').all(|p| {
                        !p.is_empty()
                            && p.len() <= 8
                            && p.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                    && l.split('-')
                        .next()
                        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_alphabetic()));
                if !ok {
                    return Err(invalid("a language is a BCP 47 tag, as in en-GB"));
                }
                let mut parts = l.split('-');
                let mut out = parts.next().unwrap_or_default().to_ascii_lowercase();
                for p in parts {
                    out.push('-');
                    if p.len() == 2 {
                        out.push_str(&p.to_ascii_uppercase());
                    } else {
                        out.push_str(p);
                    }
                }
                Value::Text(Text(out))
            }
            FieldType::Postcode => {
                let region = schema.default_region.as_str();
                let country = if region == "GB" || region == "US" {
                    None
                } else {
                    Some(region)
                };
                Value::Text(Text(normalise_postcode(s, country).map_err(invalid)?))
            }
            FieldType::SubjectRef => Value::Ref(
                s.parse()
                    .map_err(|_| invalid("expected the id of another subject"))?,
            ),
            FieldType::Enum(values) => {
                let t = s.trim();
                let canonical = values
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(t))
                    .ok_or_else(|| invalid(&format!("expected one of: {}", values.join(", "))))?;
                Value::Text(Text(canonical.clone()))
            }
            FieldType::ExternalId => Value::Text(Text(normalise_external_id(s).map_err(invalid)?)),
            FieldType::Timestamp => Value::Timestamp(parse_timestamp(s).ok_or_else(|| {
                invalid("expected a date and time such as 2026-03-01T10:00:00Z, or a date such as 2026-03-01")
            })?),
            FieldType::Tags | FieldType::Bool | FieldType::Count => unreachable!("handled above"),
        })
    }
}

fn wrong_type(field: &str, expected: &str) -> FieldError {
    FieldError::new(
        field,
        FieldProblem::WrongType {
            expected: expected.to_string(),
        },
    )
}

/// Reads an RFC 3339 date and time (`2026-03-01T10:00:00Z`, `...+01:00`), or a date alone
/// (midnight UTC), as seconds since 1970 in UTC. Years 1900 to 2200 only.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let t = if s.len() == 10 {
        let d =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        d.midnight().assume_utc().unix_timestamp()
    } else {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()?
            .unix_timestamp()
    };
    // 1900-01-01 to 2200-01-01.
    (-2_208_988_800..=7_258_118_400).contains(&t).then_some(t)
}

/// Formats seconds since 1970 as RFC 3339 in UTC, to the second.
pub fn format_timestamp(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(x) => format!(
            "{}T{:02}:{:02}:{:02}Z",
            format_date(x.date()),
            x.hour(),
            x.minute(),
            x.second()
        ),
        Err(_) => t.to_string(),
    }
}

/// Formats a date as `YYYY-MM-DD`.
pub(crate) fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Reads an ISO 3166 alpha-2 code, or a few common English country names.
pub fn country_code(s: &str) -> Option<String> {
    let t = s.trim();
    if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
        let up = t.to_ascii_uppercase();
        // "UK" is not the ISO code, but it is what people write.
        return Some(if up == "UK" { "GB".into() } else { up });
    }
    let code = match t.to_ascii_lowercase().as_str() {
        "united kingdom" | "great britain" | "england" | "scotland" | "wales"
        | "northern ireland" => "GB",
        "ireland" | "republic of ireland" => "IE",
        "united states" | "united states of america" | "usa" => "US",
        "canada" => "CA",
        "australia" => "AU",
        "new zealand" => "NZ",
        "france" => "FR",
        "germany" => "DE",
        "spain" => "ES",
        "netherlands" => "NL",
        _ => return None,
    };
    Some(code.into())
}
