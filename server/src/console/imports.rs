//! Screen 5, imports: upload a file (choose the system it came from, or let Steward detect
//! it; a saved mapping; the date order), check it first with a dry run (counts, what was
//! decided about each date column, unmapped columns, the problems of each row by row number,
//! never values), commit what was checked, follow its progress, download the report as CSV,
//! and undo it. The import itself is the API's: the same job runner and the same hub call.

use axum::body::Bytes;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hub::import::{Profile, Thresholds};
use hub::ImportOptions;
use maud::{html, Markup};
use serde_json::Value as Json;

use super::pages::call;
use super::{error_page, message_page, page, Signed};
use crate::routes::imports::spawn_import;
use crate::AppState;

const PROFILES: [(&str, &str); 7] = [
    ("", "Detect from the column names"),
    ("generic", "A spreadsheet (generic)"),
    ("civicrm", "CiviCRM"),
    ("npsp", "Salesforce NPSP"),
    ("mailchimp", "Mailchimp"),
    ("bloomerang", "Bloomerang"),
    ("donorperfect", "DonorPerfect"),
];

fn upload_form(user: &Signed, mappings: &[String]) -> Markup {
    html! {
        form.upload method="post" action="/imports" enctype="multipart/form-data" hx-boost="false" {
            input type="hidden" name="csrf" value=(user.csrf);
            p {
                label for="file" { "File (CSV, any delimiter, UTF-8 or Windows-1252)" }
                input #file name="file" type="file" accept=".csv,.txt,text/csv" required;
            }
            p {
                label for="profile" { "Where it comes from" }
                select #profile name="profile" { @for (v, t) in PROFILES { option value=(v) { (t) } } }
            }
            p {
                label for="mapping" { "Saved column mapping" }
                select #mapping name="mapping" {
                    option value="" { "none" }
                    @for m in mappings { option value=(m) { (m) } }
                }
            }
            p {
                label for="date_order" { "Dates like 03/04/1980" }
                select #date_order name="date_order" {
                    option value="" { "work out each column's order from the file" }
                    option value="day-first" { "day first (3 April)" }
                    option value="month-first" { "month first (4 March)" }
                }
            }
            p {
                button type="submit" name="mode" value="dry-run" { "Check it (dry run, writes nothing)" }
                " "
                button.secondary type="submit" name="mode" value="import" { "Import now" }
            }
        }
    }
}

/// The upload form and the imports so far.
pub(crate) async fn list(State(state): State<AppState>, user: Signed) -> Response {
    let actor = user.actor.clone();
    let found = call(&state, move |h| {
        let list = h.list_imports(&actor)?;
        let mappings = h.list_mappings(&actor).unwrap_or_default();
        Ok((list, mappings))
    })
    .await;
    let (list, mappings) = match found {
        Ok(x) => x,
        Err(e) => return error_page(&user, &e),
    };
    let body = html! {
        section aria-labelledby="new" {
            h2 #new { "Import a file" }
            (upload_form(&user, &mappings))
        }
        section aria-labelledby="done" {
            h2 #done { "Imports" }
            @if list.is_empty() {
                p { "No imports yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Started (UTC)" } th scope="col" { "From" } th scope="col" { "Status" } th scope="col" { "Rows" } th scope="col" { "New" } th scope="col" { "Merged" } th scope="col" { "Review" } th scope="col" { "Refused" } th scope="col" { "Import" } } }
                    tbody {
                        @for r in &list {
                            tr {
                                td { (r.started) } td { (r.profile) } td { (r.status) }
                                td { (r.counts.rows_read) } td { (r.counts.new) } td { (r.counts.merged) }
                                td { (r.counts.review) } td { (r.counts.errors) }
                                td { a href={"/imports/" (r.id)} { "Open " code { (r.id) } } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Imports", Some(&user), body)
}

fn bad(user: &Signed, text: &str) -> Response {
    message_page(
        StatusCode::BAD_REQUEST,
        Some(user),
        "Please check what you entered",
        text,
    )
}

/// Takes the upload and starts the import (or its dry run); then shows its page.
pub(crate) async fn upload(
    State(state): State<AppState>,
    user: Signed,
    mut form: Multipart,
) -> Response {
    let (mut csrf, mut profile, mut mapping, mut date_order, mut mode) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return bad(
                    &user,
                    &format!("The upload could not be read ({}).", e.body_text()),
                )
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload.csv").to_string();
            match field.bytes().await {
                Ok(b) => file = Some((file_name, b)),
                Err(e) => {
                    return bad(
                        &user,
                        &format!("The file could not be read ({}).", e.body_text()),
                    )
                }
            }
            continue;
        }
        let value = field.text().await.unwrap_or_default();
        match name.as_str() {
            "csrf" => csrf = value,
            "profile" => profile = value,
            "mapping" => mapping = value,
            "date_order" => date_order = value,
            "mode" => mode = value,
            _ => {}
        }
    }
    if let Some(resp) = user.csrf_refusal(&state, &csrf) {
        return resp;
    }
    let Some((file_name, bytes)) = file.filter(|(_, b)| !b.iter().all(u8::is_ascii_whitespace))
    else {
        return bad(&user, "The file is empty: choose the CSV file to import.");
    };
    let profile = match profile.as_str() {
        "" => None,
        p => match Profile::parse(p) {
            Some(p) => Some(p),
            None => return bad(&user, "Choose where the file comes from in the list."),
        },
    };
    let date_order = match date_order.as_str() {
        "" => None,
        o => match hub::import::parse_order(o) {
            Some(o) => Some(o),
            None => return bad(&user, "Choose a date order from the list."),
        },
    };
    // The record keeps a short file name, never a path or an address.
    let name: String = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("upload.csv")
        .chars()
        .filter(|c| *c != '@')
        .take(200)
        .collect();
    let actor = user.actor.clone();
    let mapping_name = mapping.clone();
    let prepared = call(&state, move |h| {
        h.authorize_import(&actor)?;
        let mapping = if mapping_name.is_empty() {
            (None, String::new())
        } else {
            let (file, text) = h.load_mapping(&mapping_name)?;
            (Some(file), text)
        };
        Ok((h.new_import_id()?, mapping))
    })
    .await;
    let (id, (mapping, mapping_text)) = match prepared {
        Ok(x) => x,
        Err(e) => return error_page(&user, &e),
    };
    let options = ImportOptions {
        profile,
        mapping,
        mapping_text,
        dry_run: mode != "import",
        thresholds: Thresholds {
            auto_merge: 0.99,
            review: 0.5,
        },
        name,
        id: Some(id.clone()),
        date_order,
        max_error_share: Some(0.5),
    };
    spawn_import(&state, user.actor.clone(), options, bytes);
    Redirect::to(&format!("/imports/{id}")).into_response()
}

fn count(v: &Json, k: &str) -> u64 {
    // The record's counts are flattened into it.
    v[k].as_u64().unwrap_or(0)
}

fn summary_table(v: &Json) -> Markup {
    html! {
        table.fields {
            tbody {
                tr { th scope="row" { "Rows read" } td { (count(v, "rows_read")) } }
                tr { th scope="row" { "New constituents" } td { (count(v, "new")) } }
                tr { th scope="row" { "Merged into a constituent" } td { (count(v, "merged")) } }
                tr { th scope="row" { "Put to review" } td { (count(v, "review")) } }
                tr { th scope="row" { "Unchanged" } td { (count(v, "unchanged")) } }
                tr { th scope="row" { "Refused" } td { (count(v, "errors")) } }
                tr { th scope="row" { "Warnings" } td { (count(v, "warnings")) } }
                tr { th scope="row" { "Profile" } td { (v["profile"].as_str().unwrap_or("")) } }
            }
        }
        @if let Some(cols) = v["date_columns"].as_array().filter(|c| !c.is_empty()) {
            h2 { "Dates" }
            ul { @for c in cols { li { (c["column"].as_str().unwrap_or("?")) ": " (c["order"].as_str().map(|o| o.replace('-', " ")).unwrap_or_else(|| "no value where the order matters".into())) " (" (c["decided_by"].as_str().or(c["evidence"].as_str()).unwrap_or("")) ")" } } }
        }
        @if let Some(cols) = v["unmapped_columns"].as_array().filter(|c| !c.is_empty()) {
            p.notice { "Columns no profile or mapping reads (not imported): "
                (cols.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
        }
        @if let Some(problems) = v["problems"].as_array().filter(|p| !p.is_empty()) {
            h2 { "Problems" }
            table {
                caption { "The first problems by row (the report lists every row)" }
                thead { tr { th scope="col" { "Row" } th scope="col" { "Column" } th scope="col" { "Problem" } th scope="col" { "Severity" } } }
                tbody {
                    @for p in problems {
                        tr {
                            td { (p["row"].as_u64().unwrap_or(0)) }
                            td { (p["column"].as_str().unwrap_or("")) }
                            td { (p["message"].as_str().unwrap_or("")) " (" (p["code"].as_str().unwrap_or("")) ")" }
                            td { (p["severity"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// An import: its progress, its dry run, or its result.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
) -> Response {
    let actor = user.actor.clone();
    if let Err(e) = call(&state, move |h| h.authorize_import_read(&actor)).await {
        return error_page(&user, &e);
    }
    let job = state.jobs.get(&id);
    if let Some(j) = &job {
        if j.status == "running" {
            let body = html! {
                div.progress hx-get={"/imports/" (id)} hx-trigger="every 1s" hx-select="main" hx-target="main" hx-swap="outerHTML" {
                    p role="status" {
                        "Working: " (j.stage) ", " (j.done) " row(s)"
                        @if let Some(t) = j.total { " of " (t) }
                        "."
                    }
                    p { a href={"/imports/" (id)} { "Refresh" } }
                }
            };
            return page(StatusCode::OK, "Import in progress", Some(&user), body);
        }
        if j.status == "failed" {
            let why = j
                .error
                .as_ref()
                .and_then(|e| e["message"].as_str())
                .unwrap_or("unknown");
            return message_page(
                StatusCode::OK,
                Some(&user),
                "The import did not run",
                &format!(
                    "{}. Nothing was written.",
                    super::sentence(why).trim_end_matches('.')
                ),
            );
        }
        if let Some(dry) = &j.dry_run {
            let unmapped: Vec<String> = dry["summary"]["unmapped_columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let used_mapping = j.upload.as_ref().is_some_and(|(_, o)| o.mapping.is_some());
            let body = html! {
                p.meta { "A dry run: nothing was written. This is what importing the file would do." }
                (summary_table(&dry["summary"]))
                @if !unmapped.is_empty() && !used_mapping {
                    (mapping_form(&state, &user, &id, &unmapped))
                }
                form method="post" action={"/imports/" (id) "/commit"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p { button type="submit" { "Import this file now" } }
                }
            };
            return page(StatusCode::OK, "Import checked", Some(&user), body);
        }
    }
    let real = job.and_then(|j| j.import_id).unwrap_or(id);
    let actor = user.actor.clone();
    let record = match call(&state, move |h| h.import_record(&actor, &real)).await {
        Ok(r) => r,
        Err(e) => return error_page(&user, &e),
    };
    let v = serde_json::to_value(&record).unwrap_or_default();
    let body = html! {
        p.meta { "Import " code { (record.id) } " of " (record.file) " · " (record.status)
            @if record.already_imported { " · this file was imported before: nothing was done" } }
        (summary_table(&v))
        p { a href={"/imports/" (record.id) "/report.csv"} { "Download the report (CSV, a line per row)" } }
        @if record.status == "completed" {
            form method="post" action={"/imports/" (record.id) "/undo"} {
                input type="hidden" name="csrf" value=(user.csrf);
                p { button.secondary type="submit" { "Undo this import" } }
                p.help { "Undo removes the constituents it added and takes its merges back out." }
            }
        }
    };
    page(StatusCode::OK, "Import", Some(&user), body)
}

/// A form that gives each unmapped column a home (a subject field, a gift field, or left
/// out), saved as a mapping file the next imports can use too.
fn mapping_form(state: &AppState, user: &Signed, id: &str, columns: &[String]) -> Markup {
    let schema = state.hub.schema();
    let subject: Vec<String> = schema
        .fields(domain::RecordKind::Subject)
        .map(|f| f.name.clone())
        .collect();
    let gift: Vec<String> = schema
        .fields(domain::RecordKind::Gift)
        .map(|f| format!("gift:{}", f.name))
        .collect();
    html! {
        h2 { "Map the columns Steward did not recognise" }
        form.mapping method="post" action={"/imports/" (id) "/mapping"} {
            input type="hidden" name="csrf" value=(user.csrf);
            table {
                thead { tr { th scope="col" { "Column of the file" } th scope="col" { "Goes to" } } }
                tbody {
                    @for (i, c) in columns.iter().enumerate() {
                        tr {
                            th scope="row" { label for={"col-" (i)} { (c) } input type="hidden" name={"name-" (i)} value=(c); }
                            td {
                                select id={"col-" (i)} name={"col-" (i)} {
                                    option value="ignore" { "leave it out" }
                                    optgroup label="Constituent" { @for f in &subject { option value=(f) { (f) } } }
                                    optgroup label="Gift" { @for f in &gift { option value=(f) { (f) } } }
                                }
                            }
                        }
                    }
                }
            }
            p {
                label for="mapping-name" { "Save the mapping as (letters, digits, - and _)" }
                input #mapping-name name="mapping_name" type="text" pattern="[A-Za-z0-9_-]{1,64}" required;
            }
            p { button type="submit" { "Save the mapping and check the file again" } }
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Saves the mapping made on a dry run's page, then checks the same file again with it.
pub(crate) async fn save_mapping(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
    Form(form): Form<std::collections::BTreeMap<String, String>>,
) -> Response {
    if let Some(resp) =
        user.csrf_refusal(&state, form.get("csrf").map(String::as_str).unwrap_or(""))
    {
        return resp;
    }
    let Some((bytes, mut options)) = state.jobs.get(&id).and_then(|j| j.upload) else {
        return bad(&user, "That dry run is no longer held by this server (it was restarted): upload the file again.");
    };
    let mut text =
        String::from("# Made in the console from a dry run's unmapped columns.\n[columns]\n");
    let mut i = 0;
    while let (Some(column), Some(target)) = (
        form.get(&format!("name-{i}")),
        form.get(&format!("col-{i}")),
    ) {
        text.push_str(&format!(
            "{} = {}\n",
            toml_string(column),
            toml_string(target)
        ));
        i += 1;
    }
    let name = form.get("mapping_name").cloned().unwrap_or_default();
    let actor = user.actor.clone();
    let stored = call(&state, move |h| {
        h.put_mapping(&actor, &name, &text)?;
        let (file, text) = h.load_mapping(&name)?;
        h.authorize_import(&actor)?;
        Ok((h.new_import_id()?, file, text))
    })
    .await;
    let (new_id, file, text) = match stored {
        Ok(x) => x,
        Err(e) => return error_page(&user, &e),
    };
    options.mapping = Some(file);
    options.mapping_text = text;
    options.dry_run = true;
    options.id = Some(new_id.clone());
    spawn_import(&state, user.actor.clone(), options, bytes);
    Redirect::to(&format!("/imports/{new_id}")).into_response()
}

/// Imports the file a dry run checked, with the same options.
pub(crate) async fn commit(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let Some((bytes, mut options)) = state.jobs.get(&id).and_then(|j| j.upload) else {
        return bad(&user, "That dry run is no longer held by this server (it was restarted): upload the file again.");
    };
    let actor = user.actor.clone();
    let new_id = match call(&state, move |h| {
        h.authorize_import(&actor)?;
        h.new_import_id()
    })
    .await
    {
        Ok(i) => i,
        Err(e) => return error_page(&user, &e),
    };
    options.dry_run = false;
    options.id = Some(new_id.clone());
    spawn_import(&state, user.actor.clone(), options, bytes);
    Redirect::to(&format!("/imports/{new_id}")).into_response()
}

/// The report as CSV.
pub(crate) async fn report(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
) -> Response {
    let real = state.jobs.get(&id).and_then(|j| j.import_id).unwrap_or(id);
    let actor = user.actor.clone();
    let name = real.clone();
    let csv = call(&state, move |h| {
        let mut out = String::from(hub::REPORT_CSV_HEADER);
        out.push('\n');
        for row in h.import_report(&actor, &real)?.rows() {
            out.push_str(&row?.csv_line());
            out.push('\n');
        }
        Ok(out)
    })
    .await;
    match csv {
        Ok(text) => super::download(
            "text/csv; charset=utf-8",
            &format!("import-{name}-report.csv"),
            text,
        ),
        Err(e) => error_page(&user, &e),
    }
}

/// Undoes an import, then shows it.
pub(crate) async fn undo(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    let target = id.clone();
    match call(&state, move |h| h.undo_import(&actor, &target)).await {
        Ok(r) => Redirect::to(&format!("/imports/{}", r.id)).into_response(),
        Err(e) => error_page(&user, &e),
    }
}
