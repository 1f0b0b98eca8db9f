use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::error::{Error, FieldError, FieldProblem};
use crate::normalise::DateOrder;
use crate::value::Value;

/// The stable numeric id of a field. Stored records carry ids, not names, so they stay small
/// and a field can be renamed in `schema.toml` without touching stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u16);

/// Which kind of record a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A constituent's profile.
    Subject,
    /// One gift of a constituent.
    Gift,
    /// One interaction (call, email, meeting, letter, event, note, task) with constituents.
    Interaction,
}

/// What a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A person.
    #[default]
    Individual,
    /// A household (joint mailings, joint gifts).
    Household,
    /// A company, trust or other body.
    Organisation,
}

impl SubjectKind {
    /// The one-byte code stored in clear in a record header (the kind is not personal data).
    pub fn code(self) -> u8 {
        match self {
            SubjectKind::Individual => 1,
            SubjectKind::Household => 2,
            SubjectKind::Organisation => 3,
        }
    }

    /// The kind for a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SubjectKind::Individual),
            2 => Some(SubjectKind::Household),
            3 => Some(SubjectKind::Organisation),
            _ => None,
        }
    }

    /// Parses the JSON/CLI spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "individual" | "person" => Some(SubjectKind::Individual),
            "household" => Some(SubjectKind::Household),
            "organisation" | "organization" => Some(SubjectKind::Organisation),
            _ => None,
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Individual => "individual",
            SubjectKind::Household => "household",
            SubjectKind::Organisation => "organisation",
        }
    }
}

/// The type of a field's value; decides parsing, normalisation and encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// Free text.
    Text,
    /// A personal name: whitespace collapsed, case kept unless all upper or all lower.
    Name,
    /// An email address, lower-cased.
    Email,
    /// A phone number, stored in E.164.
    Phone,
    /// A calendar date.
    Date,
    /// Yes or no.
    Bool,
    /// A decimal amount, stored in minor units (two decimals).
    Money,
    /// An ISO 4217 currency code.
    Currency,
    /// An ISO 3166-1 alpha-2 country code.
    Country,
    /// A BCP 47 language tag.
    Language,
    /// A postal code, normalised per country where known.
    Postcode,
    /// A link to another subject (household, employer).
    SubjectRef,
    /// A set of short labels.
    Tags,
    /// One of a fixed list of values.
    Enum(Vec<String>),
    /// An identifier from another system (legacy CRM id).
    ExternalId,
    /// A moment in time (RFC 3339, stored as seconds since 1970 in UTC).
    Timestamp,
    /// A whole number, zero or more (a duration in minutes).
    Count,
}

impl FieldType {
    fn parse(name: &str, values: Option<Vec<String>>) -> Result<Self, String> {
        Ok(match name {
            "text" => FieldType::Text,
            "name" => FieldType::Name,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "date" => FieldType::Date,
            "bool" => FieldType::Bool,
            "money" => FieldType::Money,
            "currency" => FieldType::Currency,
            "country" => FieldType::Country,
            "language" => FieldType::Language,
            "postcode" => FieldType::Postcode,
            "subject_ref" => FieldType::SubjectRef,
            "tags" => FieldType::Tags,
            "external_id" => FieldType::ExternalId,
            "timestamp" => FieldType::Timestamp,
            "count" => FieldType::Count,
            "enum" => match values {
                Some(v) if !v.is_empty() => FieldType::Enum(v),
                _ => return Err("type \"enum\" needs a non-empty `values` list".into()),
            },
            other => return Err(format!("unknown type \"{other}\"")),
        })
    }

    /// The type's name as written in `schema.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Name => "name",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Date => "date",
            FieldType::Bool => "bool",
            FieldType::Money => "money",
            FieldType::Currency => "currency",
            FieldType::Country => "country",
            FieldType::Language => "language",
            FieldType::Postcode => "postcode",
            FieldType::SubjectRef => "subject_ref",
            FieldType::Tags => "tags",
            FieldType::Enum(_) => "enum",
            FieldType::ExternalId => "external_id",
            FieldType::Timestamp => "timestamp",
            FieldType::Count => "count",
        }
    }
}

/// Which blind index, if any, a field feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Not indexed.
    None,
    /// Exact lookup on the normalised email.
    Email,
    /// Exact lookup on the E.164 phone number.
    Phone,
    /// Exact lookup on the external id.
    ExternalId,
    /// Exact lookup on a name's search key ([`crate::name_key`]: case, accents, spaces,
    /// hyphens and apostrophes set aside), for finding a person by surname.
    Name,
    /// Exact lookup on the id a reference field holds (the members of a household).
    Ref,
}

impl IndexKind {
    /// The lookup's name, as in `subject find --email`.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::None => "none",
            IndexKind::Email => "email",
            IndexKind::Phone => "phone",
            IndexKind::ExternalId => "external_id",
            IndexKind::Name => "name",
            IndexKind::Ref => "ref",
        }
    }
}

/// The access-control group of a field: casbin objects are `subject:<group>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessGroup {
    /// Names, title, birth date, kind of subject.
    Identity,
    /// Emails, phones, postal address.
    Contact,
    /// Gifts, Gift Aid, payment details.
    Financial,
    /// Special-category data (GDPR Art. 9).
    Special,
    /// Preferences, tags, notes and relationships.
    Profile,
    /// That an interaction happened: its kind, direction, channel, time, task status.
    Interactions,
    /// What an interaction was about: summary, outcome, duration, campaign, staff member.
    InteractionNotes,
}

impl AccessGroup {
    /// The casbin object name for this group.
    pub fn object(self) -> &'static str {
        match self {
            AccessGroup::Identity => "subject:identity",
            AccessGroup::Contact => "subject:contact",
            AccessGroup::Financial => "subject:financial",
            AccessGroup::Special => "subject:special",
            AccessGroup::Profile => "subject:profile",
            AccessGroup::Interactions => "subject:interactions",
            AccessGroup::InteractionNotes => "subject:interaction_notes",
        }
    }

    /// Every group, in a stable order.
    pub const ALL: [AccessGroup; 7] = [
        AccessGroup::Identity,
        AccessGroup::Contact,
        AccessGroup::Financial,
        AccessGroup::Special,
        AccessGroup::Profile,
        AccessGroup::Interactions,
        AccessGroup::InteractionNotes,
    ];
}

/// One field of the catalogue.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Stable numeric id, stored in records.
    pub id: FieldId,
    /// The name used in APIs, imports and exports.
    pub name: String,
    /// Value type.
    pub ty: FieldType,
    /// Fideslang-style data category, e.g. `user.contact.email`.
    pub category: String,
    /// Access-control group.
    pub group: AccessGroup,
    /// GDPR Art. 9 special-category data.
    pub special: bool,
    /// Blind index fed by this field.
    pub index: IndexKind,
    /// Retention class from `retention.toml`.
    pub retention: String,
    /// Which record the field belongs to.
    pub record: RecordKind,
    /// A sentence for people reading the catalogue.
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    version: u32,
    #[serde(default = "default_region")]
    default_region: String,
    #[serde(default)]
    date_order: Option<String>,
    #[serde(default, rename = "field")]
    fields: Vec<RawField>,
    #[serde(default, rename = "gift_field")]
    gift_fields: Vec<RawField>,
    #[serde(default, rename = "interaction_field")]
    interaction_fields: Vec<RawField>,
}

fn default_region() -> String {
    "GB".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    id: u16,
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    values: Option<Vec<String>>,
    category: String,
    group: AccessGroup,
    #[serde(default)]
    special: bool,
    #[serde(default = "no_index")]
    index: IndexKind,
    #[serde(default = "default_retention")]
    retention: String,
    #[serde(default)]
    description: String,
}

fn no_index() -> IndexKind {
    IndexKind::None
}

fn default_retention() -> String {
    "supporter".into()
}

/// The field catalogue from `policies/schema.toml`.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Catalogue format version.
    pub version: u32,
    /// ISO 3166 region used to read phone numbers written without a country code.
    pub default_region: String,
    /// How to read `NN/NN/YYYY` dates when both readings are possible; unset, such a date
    /// is refused unless an import worked out its column's order.
    pub date_order: Option<DateOrder>,
    fields: Vec<FieldDef>,
    by_name: HashMap<(RecordKind, String), usize>,
    by_id: HashMap<(RecordKind, FieldId), usize>,
}

impl Schema {
    /// Parses and validates a catalogue.
    pub fn from_toml(text: &str) -> Result<Schema, Error> {
        let raw: RawSchema =
            toml::from_str(text).map_err(|e| Error::SchemaSyntax(e.to_string()))?;
        if phonenumber::country::Id::from_str_ok(&raw.default_region).is_none() {
            return Err(Error::SchemaRule(format!(
                "default_region \"{}\" is not an ISO 3166 region code",
                raw.default_region
            )));
        }
        let date_order = match raw.date_order.as_deref() {
            None => None,
            Some("day_first") => Some(DateOrder::DayFirst),
            Some("month_first") => Some(DateOrder::MonthFirst),
            Some(other) => {
                return Err(Error::SchemaRule(format!(
                    "date_order \"{other}\" must be day_first or month_first"
                )))
            }
        };
        let mut schema = Schema {
            version: raw.version,
            default_region: raw.default_region,
            date_order,
            fields: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
        };
        for (record, list) in [
            (RecordKind::Subject, raw.fields),
            (RecordKind::Gift, raw.gift_fields),
            (RecordKind::Interaction, raw.interaction_fields),
        ] {
            for f in list {
                let ty = FieldType::parse(&f.ty, f.values)
                    .map_err(|e| Error::SchemaRule(format!("field \"{}\": {e}", f.name)))?;
                if f.id == 0 {
                    return Err(Error::SchemaRule(format!(
                        "field \"{}\": id 0 is reserved",
                        f.name
                    )));
                }
                let reserved = if record == RecordKind::Interaction {
                    INTERACTION_RESERVED.contains(&f.name.as_str())
                } else {
                    RESERVED_NAMES.contains(&f.name.as_str())
                };
                if reserved {
                    return Err(Error::SchemaRule(format!(
                        "field \"{}\": the name is reserved for the record envelope",
                        f.name
                    )));
                }
                if !valid_name(&f.name) {
                    return Err(Error::SchemaRule(format!(
                        "field \"{}\": names are lower-case letters, digits and underscores",
                        f.name
                    )));
                }
                if f.index != IndexKind::None && record != RecordKind::Subject {
                    return Err(Error::SchemaRule(format!(
                        "{} field \"{}\" cannot feed a blind index",
                        if record == RecordKind::Gift {
                            "gift"
                        } else {
                            "interaction"
                        },
                        f.name
                    )));
                }
                let def = FieldDef {
                    id: FieldId(f.id),
                    name: f.name,
                    ty,
                    category: f.category,
                    group: f.group,
                    special: f.special,
                    index: f.index,
                    retention: f.retention,
                    record,
                    description: f.description,
                };
                if def.special && def.group != AccessGroup::Special {
                    return Err(Error::SchemaRule(format!(
                        "field \"{}\" is special-category data and must be in group \"special\"",
                        def.name
                    )));
                }
                let idx = schema.fields.len();
                if schema
                    .by_name
                    .insert((record, def.name.clone()), idx)
                    .is_some()
                {
                    return Err(Error::SchemaRule(format!(
                        "field name \"{}\" appears twice",
                        def.name
                    )));
                }
                if schema.by_id.insert((record, def.id), idx).is_some() {
                    return Err(Error::SchemaRule(format!(
                        "field id {} appears twice",
                        def.id.0
                    )));
                }
                schema.fields.push(def);
            }
        }
        Ok(schema)
    }

    /// All fields of one record kind, in catalogue order.
    pub fn fields(&self, record: RecordKind) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(move |f| f.record == record)
    }

    /// Looks a field up by name.
    pub fn field(&self, record: RecordKind, name: &str) -> Option<&FieldDef> {
        self.by_name
            .get(&(record, name.to_string()))
            .map(|&i| &self.fields[i])
    }

    /// Looks a field up by its stored id.
    pub fn field_by_id(&self, record: RecordKind, id: FieldId) -> Option<&FieldDef> {
        self.by_id.get(&(record, id)).map(|&i| &self.fields[i])
    }

    /// Fields of subjects that feed the given blind index.
    pub fn indexed_fields(&self, kind: IndexKind) -> impl Iterator<Item = &FieldDef> {
        self.fields(RecordKind::Subject)
            .filter(move |f| f.index == kind && kind != IndexKind::None)
    }

    /// Parses a JSON object (field name → value) into typed values, collecting every
    /// problem rather than stopping at the first. `null` values are skipped.
    pub fn parse_object(
        &self,
        record: RecordKind,
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<(FieldId, Value)>, Error> {
        let patch = self.parse_patch(record, object)?;
        Ok(patch
            .into_iter()
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect())
    }

    /// Like [`Schema::parse_object`], but `null` means "remove this field" and comes back as
    /// `None`.
    pub fn parse_patch(
        &self,
        record: RecordKind,
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<(FieldId, Option<Value>)>, Error> {
        let mut out = Vec::with_capacity(object.len());
        let mut errors = Vec::new();
        for (name, json) in object {
            let Some(def) = self.field(record, name) else {
                errors.push(FieldError::new(name, FieldProblem::UnknownField));
                continue;
            };
            if json.is_null() {
                out.push((def.id, None));
                continue;
            }
            match Value::from_json(def, json, self) {
                Ok(v) => out.push((def.id, Some(v))),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            out.sort_by_key(|(id, _)| *id);
            Ok(out)
        } else {
            Err(Error::Fields(errors))
        }
    }
}

/// Names used by the record envelope (`{"id", "kind", "gifts", ...}`), never field names.
pub const RESERVED_NAMES: &[&str] = &[
    "id",
    "kind",
    "version",
    "fields",
    "withheld",
    "gifts",
    "participants",
];

/// Names an interaction's envelope uses (`{"id", "participants", ...}`), never field names.
pub const INTERACTION_RESERVED: &[&str] = &["id", "version", "participants", "subjects"];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

trait FromStrOk: Sized {
    fn from_str_ok(s: &str) -> Option<Self>;
}

impl FromStrOk for phonenumber::country::Id {
    fn from_str_ok(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}
