use serde::{Deserialize, Serialize};

use crate::Error;

/// The lawful basis of a purpose (GDPR Art. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Consent: processing only while consent is given and not expired.
    Consent,
    /// Performance of a contract.
    Contract,
    /// A legal obligation (e.g. Gift Aid records).
    LegalObligation,
    /// Vital interests.
    VitalInterests,
    /// A public task.
    PublicTask,
    /// Legitimate interests: processing unless the subject objects.
    LegitimateInterests,
}

impl Basis {
    /// The basis in the words of GDPR Art. 6, for letters to data subjects.
    pub fn in_words(self) -> &'static str {
        match self {
            Basis::Consent => "your consent",
            Basis::Contract => "a contract with you",
            Basis::LegalObligation => "a legal obligation",
            Basis::VitalInterests => "protecting someone's vital interests",
            Basis::PublicTask => "a task in the public interest",
            Basis::LegitimateInterests => "our legitimate interests",
        }
    }
}

/// One processing purpose.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Its name, e.g. `newsletter-email`.
    pub name: String,
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// Lawful basis.
    pub basis: Basis,
    /// email, sms, phone or post, when the purpose contacts people.
    #[serde(default)]
    pub channel: Option<String>,
    /// Direct marketing: an objection to direct marketing covers it.
    #[serde(default)]
    pub marketing: bool,
    /// Profiling (e.g. wealth screening).
    #[serde(default)]
    pub profiling: bool,
    /// Uses pseudonymised fields only.
    #[serde(default)]
    pub pseudonymised: bool,
    /// Whether the subject may object or withdraw.
    #[serde(default)]
    pub opt_out: bool,
    /// The fields the purpose may use.
    pub fields: Vec<String>,
    /// Whether the purpose may use interactions (calls, meetings, notes) and, for
    /// `analytics`, count them.
    #[serde(default)]
    pub interactions: bool,
    /// For `analytics`: the total epsilon of differentially private releases the data
    /// directory may make (each release spends its own; none once spent). Unset: none.
    #[serde(default)]
    pub privacy_budget: Option<f64>,
    /// Retention period or criteria, in words.
    #[serde(default)]
    pub retention: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurposes {
    version: u32,
    #[serde(rename = "purpose")]
    purposes: Vec<Purpose>,
}

/// The purposes of `policies/purposes.toml`.
#[derive(Debug, Clone)]
pub struct Purposes {
    list: Vec<Purpose>,
}

impl Purposes {
    /// Parses and validates purposes against the field catalogue.
    pub fn from_toml(text: &str, schema: &domain::Schema) -> Result<Purposes, Error> {
        let raw: RawPurposes = toml::from_str(text).map_err(|e| Error::Purposes(e.to_string()))?;
        if raw.version != 1 {
            return Err(Error::Purposes(format!(
                "version {} is not supported",
                raw.version
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &raw.purposes {
            if !seen.insert(p.name.clone()) {
                return Err(Error::Purposes(format!(
                    "purpose \"{}\" appears twice",
                    p.name
                )));
            }
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(Error::Purposes(format!(
                    "purpose \"{}\": names are lower-case letters, digits and hyphens",
                    p.name
                )));
            }
            if let Some(c) = &p.channel {
                if !["email", "sms", "phone", "post"].contains(&c.as_str()) {
                    return Err(Error::Purposes(format!(
                        "purpose \"{}\": channel \"{c}\" is not email, sms, phone or post",
                        p.name
                    )));
                }
            }
            if p.fields.is_empty() {
                return Err(Error::Purposes(format!(
                    "purpose \"{}\" names no field",
                    p.name
                )));
            }
            for f in &p.fields {
                if schema.field(domain::RecordKind::Subject, f).is_none() {
                    return Err(Error::Purposes(format!(
                        "purpose \"{}\" names the unknown field \"{f}\"",
                        p.name
                    )));
                }
            }
            if p.basis == Basis::Consent && !p.opt_out {
                return Err(Error::Purposes(format!("purpose \"{}\" rests on consent, which can always be withdrawn: set opt_out = true", p.name)));
            }
        }
        Ok(Purposes { list: raw.purposes })
    }

    /// Looks a purpose up.
    pub fn get(&self, name: &str) -> Result<&Purpose, Error> {
        self.list.iter().find(|p| p.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.list.iter().map(|p| p.name.as_str()).collect();
            Error::UnknownPurpose(name.to_string(), known.join(", "))
        })
    }

    /// Every purpose's name, in file order.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|p| p.name.clone()).collect()
    }

    /// Every purpose, in file order.
    pub fn all(&self) -> &[Purpose] {
        &self.list
    }
}
