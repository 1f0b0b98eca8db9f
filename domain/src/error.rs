use std::fmt;

/// Errors raised while loading the field catalogue or parsing input against it.
///
/// Messages carry field names, row numbers and codes, never the offending value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `schema.toml` could not be parsed as TOML of the expected shape.
    #[error("schema.toml is not valid: {0}")]
    SchemaSyntax(String),
    /// `schema.toml` parsed but breaks a rule (duplicate id or name, unknown type...).
    #[error("schema.toml: {0}")]
    SchemaRule(String),
    /// One or more fields of an input object were rejected.
    #[error("{}", display_field_errors(.0))]
    Fields(Vec<FieldError>),
}

fn display_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One rejected field of an input object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field's name as the caller spelled it.
    pub field: String,
    /// What was wrong with it.
    pub problem: FieldProblem,
}

/// Why a field was rejected; `code()` is stable for APIs and reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum FieldProblem {
    /// The schema has no field of that name.
    UnknownField,
    /// The JSON value has the wrong shape (a number where text belongs...).
    WrongType {
        /// What the field expects, in words.
        expected: String,
    },
    /// The value does not parse as the field's type.
    Invalid {
        /// Why, in words, without the value.
        reason: String,
    },
    /// A day/month date that reads both ways (e.g. 03/04/1980).
    AmbiguousDate,
    /// A value was required but missing or empty.
    Empty,
    /// The field exists but cannot be set this way (gift field on a subject...).
    NotWritable,
}

impl FieldProblem {
    /// A stable machine code for this problem.
    pub fn code(&self) -> &'static str {
        match self {
            FieldProblem::UnknownField => "unknown_field",
            FieldProblem::WrongType { .. } => "wrong_type",
            FieldProblem::Invalid { .. } => "invalid_value",
            FieldProblem::AmbiguousDate => "ambiguous_date",
            FieldProblem::Empty => "empty_value",
            FieldProblem::NotWritable => "not_writable",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            FieldProblem::UnknownField => write!(
                f,
                "unknown field `{}`: it is not in policies/schema.toml",
                self.field
            ),
            FieldProblem::WrongType { expected } => {
                write!(f, "field `{}`: expected {expected}", self.field)
            }
            FieldProblem::Invalid { reason } => write!(f, "field `{}`: {reason}", self.field),
            FieldProblem::AmbiguousDate => write!(
                f,
                "field `{}`: the date reads as day/month and as month/day; write it as YYYY-MM-DD, or set date_order in policies/schema.toml (an import also takes --date-order day-first|month-first)",
                self.field
            ),
            FieldProblem::Empty => write!(f, "field `{}`: the value is empty", self.field),
            FieldProblem::NotWritable => {
                write!(f, "field `{}` cannot be written here", self.field)
            }
        }
    }
}

impl FieldError {
    pub(crate) fn new(field: &str, problem: FieldProblem) -> Self {
        FieldError {
            field: field.to_string(),
            problem,
        }
    }

    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        FieldError::new(
            field,
            FieldProblem::Invalid {
                reason: reason.into(),
            },
        )
    }
}
