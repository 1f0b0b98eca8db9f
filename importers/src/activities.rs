//! Activities from other CRMs as Steward interactions: CiviCRM's activity export and
//! Salesforce NPSP's task export. A pure reader: it maps a file's columns to interaction
//! fields, translates each system's vocabulary (activity types, statuses, date forms) and
//! names the legacy contact ids each row links to. Linking those ids to subjects, and
//! writing, is the hub's.

use serde_json::{Map, Value};

/// Which system's export this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityProfile {
    /// CiviCRM: Activity ID, Activity Type, Subject, Activity Date, Details, Duration,
    /// Activity Status, Target Contact ID (or Contact ID / With Contact).
    CiviCrm,
    /// Salesforce NPSP tasks: Id, WhoId, Subject, Type or TaskSubtype, ActivityDate,
    /// CreatedDate, Description, Status, CallDurationInSeconds.
    Npsp,
}

impl ActivityProfile {
    /// Parses `civicrm` or `npsp`.
    pub fn parse(s: &str) -> Option<ActivityProfile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "civicrm" | "civicrm-activities" => Some(ActivityProfile::CiviCrm),
            "npsp" | "npsp-tasks" | "salesforce" => Some(ActivityProfile::Npsp),
            _ => None,
        }
    }

    /// Guesses the profile from a header.
    pub fn detect(header: &[String]) -> Option<ActivityProfile> {
        let has = |n: &str| header.iter().any(|h| h.trim().eq_ignore_ascii_case(n));
        if has("Activity Type") || has("Activity ID") {
            Some(ActivityProfile::CiviCrm)
        } else if has("WhoId") || has("TaskSubtype") {
            Some(ActivityProfile::Npsp)
        } else {
            None
        }
    }
}

/// What a column feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Field(&'static str),
    Kind,
    Status,
    Occurred,
    Minutes,
    Seconds,
    Contact,
}

fn columns(profile: ActivityProfile) -> &'static [(&'static str, Feed)] {
    match profile {
        ActivityProfile::CiviCrm => &[
            ("activity id", Feed::Field("external_id")),
            ("activity type", Feed::Kind),
            ("subject", Feed::Field("summary")),
            ("activity date", Feed::Occurred),
            ("activity date time", Feed::Occurred),
            ("details", Feed::Field("details")),
            ("duration", Feed::Minutes),
            ("activity status", Feed::Status),
            ("target contact id", Feed::Contact),
            ("contact id", Feed::Contact),
            ("with contact", Feed::Contact),
            ("campaign", Feed::Field("campaign")),
        ],
        ActivityProfile::Npsp => &[
            ("id", Feed::Field("external_id")),
            ("whoid", Feed::Contact),
            ("subject", Feed::Field("summary")),
            ("type", Feed::Kind),
            ("tasksubtype", Feed::Kind),
            ("createddate", Feed::Occurred),
            ("activitydate", Feed::Field("follow_up_due")),
            ("description", Feed::Field("details")),
            ("status", Feed::Status),
            ("calldurationinseconds", Feed::Seconds),
        ],
    }
}

/// A file's columns mapped for a profile.
#[derive(Debug, Clone)]
pub struct ActivityMapping {
    profile: ActivityProfile,
    feeds: Vec<Option<Feed>>,
}

/// One row read: the interaction's fields (names of `[[interaction_field]]`) and the legacy
/// ids of the contacts it involved.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    /// Interaction fields by name.
    pub fields: Map<String, Value>,
    /// External ids of the participants, as in the source system.
    pub contacts: Vec<String>,
    /// True when the source's activity type had no counterpart and became a note.
    pub kind_defaulted: bool,
}

/// Why a row cannot be read (a code and the column; never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityProblem {
    /// The column at fault.
    pub column: String,
    /// `no_contact`, `invalid_date`, `invalid_number`.
    pub code: &'static str,
}

impl ActivityMapping {
    /// Maps a header. Refused when no column names a contact: nothing could be linked.
    pub fn new(profile: ActivityProfile, header: &[String]) -> Result<ActivityMapping, String> {
        let feeds: Vec<Option<Feed>> = header
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                columns(profile)
                    .iter()
                    .find(|(name, _)| *name == h)
                    .map(|(_, f)| *f)
            })
            .collect();
        if !feeds.contains(&Some(Feed::Contact)) {
            return Err(format!(
                "no column names the contact each activity is with (expected {})",
                match profile {
                    ActivityProfile::CiviCrm =>
                        "\"Target Contact ID\", \"Contact ID\" or \"With Contact\"",
                    ActivityProfile::Npsp => "\"WhoId\"",
                }
            ));
        }
        Ok(ActivityMapping { profile, feeds })
    }

    /// The columns nothing reads (shown to the person importing, never their values).
    pub fn unmapped<'h>(&self, header: &'h [String]) -> Vec<&'h str> {
        header
            .iter()
            .zip(&self.feeds)
            .filter(|(_, f)| f.is_none())
            .map(|(h, _)| h.as_str())
            .collect()
    }

    /// Reads one row's cells.
    pub fn read(
        &self,
        header: &[String],
        cells: &[String],
    ) -> Result<ActivityRow, ActivityProblem> {
        let mut row = ActivityRow {
            fields: Map::new(),
            contacts: Vec::new(),
            kind_defaulted: false,
        };
        let mut kind_seen = false;
        for ((cell, feed), column) in cells.iter().zip(&self.feeds).zip(header) {
            let Some(feed) = feed else { continue };
            let v = cell.trim();
            if v.is_empty() {
                continue;
            }
            let problem = |code| ActivityProblem {
                column: column.clone(),
                code,
            };
            match feed {
                Feed::Field(name) => {
                    let value = if *name == "follow_up_due" {
                        Value::String(v.get(..10).unwrap_or(v).to_string())
                    } else {
                        Value::String(v.to_string())
                    };
                    row.fields.insert((*name).into(), value);
                }
                Feed::Kind => {
                    // NPSP has Type and TaskSubtype: the first that says something wins.
                    if kind_seen && row.fields.get("kind").is_some_and(|k| k != "note") {
                        continue;
                    }
                    let (kind, known) = kind_of(v);
                    row.fields.insert("kind".into(), Value::String(kind.into()));
                    row.kind_defaulted = !known;
                    kind_seen = true;
                }
                Feed::Status => {
                    row.fields
                        .insert("status".into(), Value::String(status_of(v).into()));
                }
                Feed::Occurred => {
                    let t = timestamp_of(v).ok_or_else(|| problem("invalid_date"))?;
                    row.fields.insert("occurred_at".into(), Value::String(t));
                }
                Feed::Minutes | Feed::Seconds => {
                    let n: f64 = v.parse().map_err(|_| problem("invalid_number"))?;
                    if !(0.0..1e9).contains(&n) {
                        return Err(problem("invalid_number"));
                    }
                    let minutes = if *feed == Feed::Seconds { n / 60.0 } else { n };
                    row.fields.insert(
                        "duration_minutes".into(),
                        Value::from(minutes.round() as u64),
                    );
                }
                Feed::Contact => {
                    for id in v.split([';', ',']) {
                        let id = id.trim();
                        if !id.is_empty() && !row.contacts.iter().any(|c| c == id) {
                            row.contacts.push(id.to_string());
                        }
                    }
                }
            }
        }
        if row.contacts.is_empty() {
            let column = header
                .iter()
                .zip(&self.feeds)
                .find(|(_, f)| **f == Some(Feed::Contact))
                .map(|(h, _)| h.clone())
                .unwrap_or_default();
            return Err(ActivityProblem {
                column,
                code: "no_contact",
            });
        }
        if !row.fields.contains_key("kind") {
            row.fields.insert(
                "kind".into(),
                Value::String(
                    match self.profile {
                        ActivityProfile::Npsp => "task",
                        ActivityProfile::CiviCrm => "note",
                    }
                    .into(),
                ),
            );
        }
        if row.fields.get("kind").is_some_and(|k| k == "task") && !row.fields.contains_key("status")
        {
            row.fields
                .insert("status".into(), Value::String("open".into()));
        }
        Ok(row)
    }
}

/// Steward's kind for another system's activity type; false when it had none (a note).
fn kind_of(source: &str) -> (&'static str, bool) {
    let s = source.to_ascii_lowercase();
    let has = |w: &str| s.contains(w);
    if has("call") || has("phone") {
        ("call", true)
    } else if has("email") || has("e-mail") || has("mass mail") {
        ("email", true)
    } else if has("meeting") || has("visit") {
        ("meeting", true)
    } else if has("letter") || has("pdf") || has("mail") {
        ("letter", true)
    } else if has("event") || has("participant") {
        ("event", true)
    } else if s == "task" || has("follow up") || has("follow-up") {
        ("task", true)
    } else if has("note") {
        ("note", true)
    } else {
        ("note", false)
    }
}

fn status_of(source: &str) -> &'static str {
    match source.trim().to_ascii_lowercase().as_str() {
        "completed" | "complete" | "done" | "closed" => "done",
        "cancelled" | "canceled" | "deferred" | "not required" | "unreachable" => "cancelled",
        _ => "open",
    }
}

/// RFC 3339 for `2024-03-01 10:00:00`, `2024-03-01T10:00:00.000+0000`, `2024-03-01`
/// (times without an offset are taken as UTC).
fn timestamp_of(s: &str) -> Option<String> {
    let s = s.trim();
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let ok_date = date.len() == 10
        && date.as_bytes()[4] == b'-'
        && date.as_bytes()[7] == b'-'
        && date
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !ok_date {
        return None;
    }
    let Some(t) = time else {
        return Some(date.to_string());
    };
    // Split off an offset: Z, +hh:mm, +hhmm.
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, "Z".to_string())
    } else if let Some(pos) = t.rfind(['+', '-']) {
        let off = &t[pos..];
        let off = if off.len() == 5 {
            format!("{}:{}", &off[..3], &off[3..])
        } else {
            off.to_string()
        };
        (&t[..pos], off)
    } else {
        (t, "Z".to_string())
    };
    let clock = clock.split('.').next().unwrap_or(clock);
    let clock = if clock.len() == 5 {
        format!("{clock}:00")
    } else {
        clock.to_string()
    };
    let out = format!("{date}T{clock}{offset}");
    domain::parse_timestamp(&out).map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_civicrm_activity_becomes_an_interaction_linked_by_contact_id() {
        let header = h(&[
            "Activity ID",
            "Activity Type",
            "Subject",
            "Activity Date",
            "Duration",
            "Activity Status",
            "Target Contact ID",
            "Priority",
        ]);
        assert_eq!(
            ActivityProfile::detect(&header),
            Some(ActivityProfile::CiviCrm)
        );
        let m = ActivityMapping::new(ActivityProfile::CiviCrm, &header).unwrap();
        assert_eq!(m.unmapped(&header), ["Priority"]);
        let row = m
            .read(
                &header,
                &h(&[
                    "77",
                    "Phone Call",
                    "Thank you",
                    "2024-03-01 10:15:00",
                    "12",
                    "Completed",
                    "123; 124",
                    "Normal",
                ]),
            )
            .unwrap();
        assert_eq!(row.fields["kind"], "call");
        assert_eq!(row.fields["occurred_at"], "2024-03-01T10:15:00Z");
        assert_eq!(row.fields["duration_minutes"], 12);
        assert_eq!(row.fields["status"], "done");
        assert_eq!(row.fields["external_id"], "77");
        assert_eq!(row.contacts, ["123", "124"]);
        let odd = m
            .read(
                &header,
                &h(&["78", "Tell a Friend", "", "2024-03-02", "", "", "125", ""]),
            )
            .unwrap();
        assert_eq!(odd.fields["kind"], "note");
        assert!(odd.kind_defaulted);
        let bad = m.read(
            &header,
            &h(&["79", "Meeting", "", "03/02/2024", "", "", "125", ""]),
        );
        assert_eq!(bad.unwrap_err().code, "invalid_date");
        let none = m.read(
            &header,
            &h(&["80", "Meeting", "", "2024-03-02", "", "", "", ""]),
        );
        assert_eq!(none.unwrap_err().code, "no_contact");
    }

    #[test]
    fn an_npsp_task_keeps_its_due_date_status_and_salesforce_time() {
        let header = h(&[
            "Id",
            "WhoId",
            "Subject",
            "Type",
            "TaskSubtype",
            "ActivityDate",
            "CreatedDate",
            "Status",
            "CallDurationInSeconds",
        ]);
        assert_eq!(
            ActivityProfile::detect(&header),
            Some(ActivityProfile::Npsp)
        );
        let m = ActivityMapping::new(ActivityProfile::Npsp, &header).unwrap();
        let row = m
            .read(
                &header,
                &h(&[
                    "00T1",
                    "0031",
                    "Follow up",
                    "",
                    "Task",
                    "2024-04-01",
                    "2024-03-01T09:30:00.000+0000",
                    "Not Started",
                    "",
                ]),
            )
            .unwrap();
        assert_eq!(row.fields["kind"], "task");
        assert_eq!(row.fields["status"], "open");
        assert_eq!(row.fields["follow_up_due"], "2024-04-01");
        assert_eq!(row.fields["occurred_at"], "2024-03-01T09:30:00+00:00");
        let call = m
            .read(
                &header,
                &h(&[
                    "00T2",
                    "0031",
                    "Called",
                    "Call",
                    "Call",
                    "",
                    "2024-03-01",
                    "Completed",
                    "150",
                ]),
            )
            .unwrap();
        assert_eq!(call.fields["kind"], "call");
        assert_eq!(call.fields["duration_minutes"], 3);
        assert!(ActivityMapping::new(ActivityProfile::Npsp, &h(&["Id", "Subject"])).is_err());
    }
}
