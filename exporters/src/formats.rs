//! The CSV forms of what Steward exports line by line: a purpose's segment and the audit log.
//! Each line is built from the JSON object the same export writes as JSONL, so the two forms
//! carry the same values; cells go through [`csv_cell`].

use serde_json::Value;

use crate::csv_cell;

/// The audit log's CSV columns, in order: the keys of an audit event's JSON form.
pub const AUDIT_CSV_COLUMNS: [&str; 13] = [
    "seq",
    "time",
    "actor",
    "actor_name",
    "role",
    "action",
    "subjects",
    "fields",
    "purpose",
    "request_id",
    "outcome",
    "reason",
    "source",
];

/// One CSV line (no line break) of `columns` read from a JSON object: a missing key or null
/// is an empty cell, a list is its items joined by `list_separator`, a number as written.
pub fn csv_line(object: &Value, columns: &[&str], list_separator: &str) -> String {
    columns
        .iter()
        .map(|c| csv_cell(&cell_text(object.get(c), list_separator)))
        .collect::<Vec<_>>()
        .join(",")
}

fn cell_text(value: Option<&Value>, list_separator: &str) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(list_separator),
        Some(other) => other.to_string(),
    }
}

/// The header line of the audit log's CSV export.
pub fn audit_csv_header() -> String {
    AUDIT_CSV_COLUMNS.join(",")
}

/// One audit event (its JSON form) as a CSV line; a list of subjects or fields is
/// space-separated in its cell.
pub fn audit_csv_line(event: &Value) -> String {
    csv_line(event, &AUDIT_CSV_COLUMNS, " ")
}

/// The header line of a segment's CSV export: `id`, then the purpose's fields.
pub fn segment_csv_header(fields: &[String]) -> String {
    let mut columns = vec!["id".to_string()];
    columns.extend(fields.iter().map(|f| csv_cell(f)));
    columns.join(",")
}

/// One segment row (its JSON form: `id` and the fields it has) as a CSV line; a list (tags)
/// is `; `-separated in its cell.
pub fn segment_csv_line(row: &Value, fields: &[String]) -> String {
    let mut columns = vec!["id"];
    columns.extend(fields.iter().map(String::as_str));
    csv_line(row, &columns, "; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_line_follows_the_columns_and_neutralises_cells() {
        let event = json!({
            "seq": 7, "time": "2026-12-02T10:00:00Z", "actor": "p1", "actor_name": "ana",
            "role": "admin", "action": "read.subject", "subjects": ["A", "B"],
            "fields": [], "purpose": null, "outcome": "ok", "source": "=cmd()"
        });
        assert_eq!(
            audit_csv_line(&event),
            "7,2026-12-02T10:00:00Z,p1,ana,admin,read.subject,A B,,,,ok,,'=cmd()"
        );
        assert_eq!(audit_csv_header().split(',').count(), 13);
    }

    #[test]
    fn segment_line_has_the_id_then_each_field_in_order() {
        let fields = vec![
            "email".to_string(),
            "tags".to_string(),
            "given_name".to_string(),
        ];
        let row = json!({"id": "01X", "given_name": "Ana, Maria", "tags": ["major", "-x"]});
        assert_eq!(segment_csv_header(&fields), "id,email,tags,given_name");
        assert_eq!(
            segment_csv_line(&row, &fields),
            // The second tag starts a cell where a spreadsheet splits on semicolons.
            "01X,,\"major; '-x\",\"Ana, Maria\""
        );
    }
}
