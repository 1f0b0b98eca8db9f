//! Records of processing activities (GDPR Art. 30), built from the policy files.

use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::error::Error;
use crate::policies::PolicyFiles;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Party {
    name: String,
    #[serde(default)]
    address: String,
    contact: String,
}

/// organisation.toml. Unknown keys are refused: a list written after `[dpo]` belongs to that
/// table in TOML, and would otherwise vanish from the records of processing without a word.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Organisation {
    #[serde(default = "default_jurisdiction")]
    jurisdiction: String,
    controller: Party,
    dpo: Party,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    transfers: Vec<String>,
    #[serde(default)]
    security: Vec<String>,
}

fn default_jurisdiction() -> String {
    "uk-gdpr".into()
}

/// What the documents Steward writes say of the organisation (from organisation.toml).
#[derive(Debug, Clone, Default)]
pub(crate) struct OrgFacts {
    /// The organisation's jurisdiction (uk-gdpr when absent).
    pub(crate) jurisdiction: String,
    /// The controller: name, address and contact, as one line.
    pub(crate) controller: String,
    /// Recipients or categories of recipients, for every subject.
    pub(crate) recipients: Vec<String>,
    /// Retention classes: name → (description, rule), from retention.toml.
    pub(crate) retention: std::collections::BTreeMap<String, (String, String)>,
}

/// A data category code (`user.contact.email`) in words a data subject reads.
pub(crate) fn category_in_words(code: &str) -> String {
    let known = match code {
        "user.name" | "user.name.first" | "user.name.last" => "your name",
        "user.unique_id" => "reference numbers other systems gave you",
        "user.demographic.date_of_birth" => "your date of birth",
        "user.contact.email" => "your email addresses",
        "user.contact.phone_number" => "your phone numbers",
        "user.contact.address"
        | "user.contact.address.street"
        | "user.contact.address.city"
        | "user.contact.address.postal_code"
        | "user.contact.address.state"
        | "user.contact.address.country" => "your postal address",
        "user.financial" => "your donations and Gift Aid declarations",
        "user.special.health" => "information about your health (special category)",
        "user.special.religious_belief" => "your religious beliefs (special category)",
        "user.content" => "notes our staff wrote",
        "user.behavior" => "groups and tags you belong to",
        "user.job_title" => "your job title",
        "user.workplace" => "your employer",
        "user.social" => "your household",
        "user.preferences" | "user.demographic.language" => "your preferences",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let words = code.trim_start_matches("user.").replace(['.', '_'], " ");
    format!("your {words}")
}

/// Reads organisation.toml for [`OrgFacts`].
pub(crate) fn org_facts(files: &PolicyFiles) -> Result<OrgFacts, Error> {
    let org: Organisation = toml::from_str(files.text_of("organisation.toml"))
        .map_err(|e| Error::Policy(format!("organisation.toml: {e}")))?;
    let c = &org.controller;
    let controller = [c.name.as_str(), c.address.as_str(), c.contact.as_str()]
        .iter()
        .filter(|x| !x.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let retention: Retention = toml::from_str(files.text_of("retention.toml"))
        .map_err(|e| Error::Policy(format!("retention.toml: {e}")))?;
    Ok(OrgFacts {
        jurisdiction: jurisdiction_of(&org)?,
        controller,
        recipients: org.recipients,
        retention: retention
            .classes
            .into_iter()
            .map(|c| (c.name, (c.description, c.rule)))
            .collect(),
    })
}

fn jurisdiction_of(org: &Organisation) -> Result<String, Error> {
    if org.jurisdiction.is_empty()
        || !org
            .jurisdiction
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Policy(
            "organisation.toml: `jurisdiction` is a short code of letters, digits and hyphens, such as uk-gdpr".into(),
        ));
    }
    Ok(org.jurisdiction.clone())
}

#[derive(Deserialize)]
struct RetentionClass {
    name: String,
    description: String,
    rule: String,
}

#[derive(Deserialize)]
struct Retention {
    #[serde(rename = "class")]
    classes: Vec<RetentionClass>,
}

/// The records of processing as JSON (and Markdown, from the same data).
pub fn ropa(files: &PolicyFiles) -> Result<(Json, String), Error> {
    let schema = files.schema()?;
    let purposes = files.purposes(&schema)?;
    let org: Organisation = toml::from_str(files.text_of("organisation.toml"))
        .map_err(|e| Error::Policy(format!("organisation.toml: {e}")))?;
    let retention: Retention = toml::from_str(files.text_of("retention.toml"))
        .map_err(|e| Error::Policy(format!("retention.toml: {e}")))?;
    let category = |field: &str| {
        schema
            .field(domain::RecordKind::Subject, field)
            .map(|d| (d.category.clone(), d.special))
    };
    let purposes_json: Vec<Json> = purposes
        .all()
        .iter()
        .map(|p| {
            let mut cats: Vec<String> = p.fields.iter().filter_map(|f| category(f).map(|c| c.0)).collect();
            cats.sort();
            cats.dedup();
            let special: Vec<&String> = p.fields.iter().filter(|f| category(f).is_some_and(|c| c.1)).collect();
            json!({"name": p.name, "description": p.description, "lawful_basis": p.basis, "channel": p.channel,
                   "direct_marketing": p.marketing, "profiling": p.profiling, "data_categories": cats,
                   "special_category_fields": special, "retention": p.retention})
        })
        .collect();
    let mut data_categories: Vec<(String, bool)> = schema
        .fields(domain::RecordKind::Subject)
        .chain(schema.fields(domain::RecordKind::Gift))
        .map(|d| (d.category.clone(), d.special))
        .collect();
    data_categories.sort();
    data_categories.dedup();
    let classes: Vec<Json> = retention
        .classes
        .iter()
        .map(|c| json!({"class": c.name, "description": c.description, "rule": c.rule}))
        .collect();
    let doc = json!({
        "controller": {"name": org.controller.name, "address": org.controller.address, "contact": org.controller.contact},
        "dpo": {"name": org.dpo.name, "contact": org.dpo.contact},
        "purposes": purposes_json,
        "categories_of_subjects": org.subjects,
        "categories_of_data": data_categories.iter().map(|(c, s)| json!({"category": c, "special": s})).collect::<Vec<_>>(),
        "recipients": org.recipients,
        "transfers": org.transfers,
        "retention": classes,
        "security_measures": org.security,
    });
    let mut md = String::from("# Records of processing activities (GDPR Art. 30)\n\n");
    md.push_str(&format!(
        "**Controller:** {} — {} — {}  \n**Data protection officer:** {} — {}\n\n",
        org.controller.name,
        org.controller.address,
        org.controller.contact,
        org.dpo.name,
        org.dpo.contact
    ));
    md.push_str("## Purposes\n\n| purpose | lawful basis | data categories | retention |\n|---|---|---|---|\n");
    for p in doc["purposes"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} — {} | {} | {} | {} |\n",
            p["name"].as_str().unwrap_or_default(),
            p["description"].as_str().unwrap_or_default(),
            p["lawful_basis"].as_str().unwrap_or_default(),
            p["data_categories"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            p["retention"].as_str().unwrap_or_default()
        ));
    }
    let list = |title: &str, items: &[String]| {
        let mut s = format!("\n## {title}\n\n");
        for i in items {
            s.push_str(&format!("- {i}\n"));
        }
        s
    };
    md.push_str(&list("Categories of data subjects", &org.subjects));
    md.push_str(&list(
        "Categories of personal data",
        &data_categories
            .iter()
            .map(|(c, s)| {
                if *s {
                    format!("{c} (special category, Art. 9)")
                } else {
                    c.clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    md.push_str(&list("Recipients", &org.recipients));
    md.push_str(&list("Transfers to third countries", &org.transfers));
    md.push_str(&list(
        "Erasure time limits",
        &retention
            .classes
            .iter()
            .map(|c| format!("{} ({}): {}", c.description, c.name, c.rule))
            .collect::<Vec<_>>(),
    ));
    md.push_str(&list("Security measures", &org.security));
    Ok((doc, md))
}
