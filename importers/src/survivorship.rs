//! Survivorship: which value of a field stays when two records of one person merge, by a
//! rule per field (the defaults below, or an import's own). Pure: fields in, fields out.

use std::collections::BTreeMap;

use domain::{FieldId, RecordKind, Schema, Value};

use crate::ADDRESS_FIELDS;

/// How a field's value survives when two records merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivorship {
    /// The more recent record wins (the import over the vault, a later row over an earlier).
    MostRecent,
    /// The longer, more complete value wins (an initial gives way to a full name).
    MostComplete,
    /// Source priority: the record already in Steward wins; the other fills gaps only.
    ExistingFirst,
    /// Multi-valued: union.
    Union,
}

/// The default rule of a field.
pub fn default_rule(field: &str) -> Survivorship {
    match field {
        "given_name" | "middle_name" | "family_name" | "preferred_name" | "organisation_name"
        | "suffix" | "title" => Survivorship::MostComplete,
        "tags" => Survivorship::Union,
        "email" | "email_secondary" | "phone" | "mobile" | "street" | "street2" | "city"
        | "region" | "postal_code" | "country" | "preferred_language" | "employer"
        | "occupation" => Survivorship::MostRecent,
        _ => Survivorship::ExistingFirst,
    }
}

/// A rule by its name in an import's options (`source_priority` is `existing_first`).
pub fn parse_rule(s: &str) -> Option<Survivorship> {
    Some(match s {
        "most_recent" => Survivorship::MostRecent,
        "most_complete" => Survivorship::MostComplete,
        "existing_first" | "source_priority" => Survivorship::ExistingFirst,
        "union" => Survivorship::Union,
        _ => return None,
    })
}

fn name_of(schema: &Schema, f: FieldId) -> &str {
    schema
        .field_by_id(RecordKind::Subject, f)
        .map(|d| d.name.as_str())
        .unwrap_or("")
}

/// Merges `incoming` into `base` by the survivorship rules; returns the fields after.
pub fn survive(
    schema: &Schema,
    base: &[(FieldId, Value)],
    incoming: &[(FieldId, Value)],
    rules: &BTreeMap<String, Survivorship>,
) -> Vec<(FieldId, Value)> {
    let mut out: Vec<(FieldId, Value)> = base.to_vec();
    // An address moves as a whole: parts of two addresses make no address. A less
    // complete one (a street alone) never replaces a more complete one; one at least as
    // complete replaces it unless the street's rule keeps what is stored.
    let is_address = |f: &FieldId| ADDRESS_FIELDS.contains(&name_of(schema, *f));
    let parts = |fields: &[(FieldId, Value)]| fields.iter().filter(|(f, _)| is_address(f)).count();
    let (stored, offered) = (parts(base), parts(incoming));
    let address_incoming = offered > 0;
    let keep_stored = stored > 0
        && (offered < stored
            || rules
                .get("street")
                .copied()
                .unwrap_or_else(|| default_rule("street"))
                == Survivorship::ExistingFirst);
    let incoming: Vec<&(FieldId, Value)> = if address_incoming && keep_stored {
        incoming.iter().filter(|(f, _)| !is_address(f)).collect()
    } else {
        if address_incoming {
            out.retain(|(f, _)| !is_address(f));
        }
        incoming.iter().collect()
    };
    for (f, v) in incoming {
        let name = name_of(schema, *f);
        let rule = rules
            .get(name)
            .copied()
            .unwrap_or_else(|| default_rule(name));
        let current = out.iter().position(|(g, _)| g == f);
        let Some(i) = current else {
            out.push((*f, v.clone()));
            continue;
        };
        let suspect =
            |v: &Value| matches!(v, Value::Email(e) if domain::email_domain_suspect(e.expose()));
        let replace = match rule {
            // A likely mistyped email does not push out one that looks right.
            Survivorship::MostRecent if suspect(v) && !suspect(&out[i].1) => false,
            Survivorship::MostRecent => true,
            Survivorship::ExistingFirst => false,
            Survivorship::MostComplete => {
                let old = out[i].1.index_term().unwrap_or_default();
                let n = v.index_term().unwrap_or_default();
                let o = old.trim_end_matches('.');
                n.len() > old.len() && n.to_lowercase().starts_with(&o.to_lowercase())
            }
            Survivorship::Union => {
                if let (Value::Tags(a), Value::Tags(b)) = (&out[i].1, v) {
                    let mut all = a.clone();
                    for t in b {
                        if !all.iter().any(|x| x.expose() == t.expose()) {
                            all.push(t.clone());
                        }
                    }
                    out[i].1 = Value::Tags(all);
                }
                false
            }
        };
        if replace {
            out[i].1 = v.clone();
        }
    }
    out.sort_by_key(|(f, _)| *f);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Text;

    fn schema() -> Schema {
        Schema::from_toml(include_str!("../../policies/schema.toml")).expect("default schema")
    }

    fn text(schema: &Schema, name: &str, v: &str) -> (FieldId, Value) {
        let id = schema.field(RecordKind::Subject, name).expect(name).id;
        (id, Value::Text(Text::parse(v).expect("text")))
    }

    fn get<'a>(schema: &Schema, fields: &'a [(FieldId, Value)], name: &str) -> Option<&'a str> {
        let id = schema.field(RecordKind::Subject, name).expect(name).id;
        fields.iter().find(|(f, _)| *f == id).map(|(_, v)| match v {
            Value::Text(t) => t.expose(),
            _ => "",
        })
    }

    #[test]
    fn an_initial_gives_way_to_the_full_name_and_an_address_moves_whole() {
        let s = schema();
        let base = vec![
            text(&s, "given_name", "J."),
            text(&s, "street", "1 High Street"),
            text(&s, "city", "Leeds"),
            text(&s, "postal_code", "LS1 1AA"),
        ];
        let incoming = vec![
            text(&s, "given_name", "Jane"),
            text(&s, "street", "9 Low Road"),
            text(&s, "city", "York"),
            text(&s, "postal_code", "YO1 7HH"),
        ];
        let after = survive(&s, &base, &incoming, &BTreeMap::new());
        assert_eq!(get(&s, &after, "given_name"), Some("Jane"));
        assert_eq!(get(&s, &after, "street"), Some("9 Low Road"));
        assert_eq!(get(&s, &after, "city"), Some("York"));

        // A street alone does not replace a whole address, nor mix into it.
        let partial = vec![text(&s, "street", "2 Side Lane")];
        let after = survive(&s, &base, &partial, &BTreeMap::new());
        assert_eq!(get(&s, &after, "street"), Some("1 High Street"));
        assert_eq!(get(&s, &after, "city"), Some("Leeds"));

        // A different name is not "more complete"; existing_first keeps what is stored.
        let other = vec![text(&s, "given_name", "Mary")];
        let after = survive(&s, &base, &other, &BTreeMap::new());
        assert_eq!(get(&s, &after, "given_name"), Some("J."));
        let keep = BTreeMap::from([("street".to_string(), Survivorship::ExistingFirst)]);
        let after = survive(&s, &base, &incoming, &keep);
        assert_eq!(get(&s, &after, "street"), Some("1 High Street"));
        assert_eq!(
            parse_rule("source_priority"),
            Some(Survivorship::ExistingFirst)
        );
        assert_eq!(parse_rule("newest"), None);
    }
}
