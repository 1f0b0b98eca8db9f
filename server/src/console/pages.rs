//! The console's screens. Each is one or more hub calls made as the signed-in user; what a
//! role may not see is not fetched (the hub refuses it) and is said in words.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use domain::{AccessGroup, RecordKind};
use hub::audit_log::Outcome;
use hub::{Action, Lookup, Special, REVEAL_REASONS};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{error_page, page, Signed};
use crate::AppState;

/// Runs a hub call off the executor as the signed-in user.
pub(crate) async fn call<T, F>(state: &AppState, f: F) -> Result<T, hub::Error>
where
    F: FnOnce(&hub::Hub) -> Result<T, hub::Error> + Send + 'static,
    T: Send + 'static,
{
    let hub = state.hub.clone();
    tokio::task::spawn_blocking(move || f(&hub))
        .await
        .unwrap_or_else(|e| Err(hub::Error::Internal(e.to_string())))
}

/// Whether the hub would let the user's role do this: used only to choose which parts of a
/// page to ask the hub for; the hub decides again on every call.
fn may(state: &AppState, user: &Signed, object: &str, action: Action) -> bool {
    state.hub.allows(user.role(), object, action)
}

/// A field's name in words: `given_name` → "Given name".
pub(crate) fn label(name: &str) -> String {
    super::sentence(&name.replace('_', " "))
        .trim_end_matches('.')
        .to_string()
}

pub(crate) fn show(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        Json::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub(crate) fn days_between(from: &str, to: &str) -> Option<i64> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    let a = time::Date::parse(from.get(..10)?, &f).ok()?;
    let b = time::Date::parse(to.get(..10)?, &f).ok()?;
    Some((b - a).whole_days())
}

pub(crate) fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Screen 1, the work queue: each role sees its own part.
pub(crate) async fn home(State(state): State<AppState>, user: Signed) -> Response {
    let mut sections = Vec::new();
    if may(&state, &user, "requests", Action::Read) {
        let actor = user.actor.clone();
        match call(&state, move |h| h.list_requests(&actor, None)).await {
            Ok(list) => {
                let today = today();
                sections.push(html! {
                    section aria-labelledby="requests" {
                        h2 #requests { "Subject-rights requests" }
                        @if list.is_empty() {
                            p { "No open requests." }
                        } @else {
                            table {
                                caption { "Open requests, the soonest due first" }
                                thead { tr { th scope="col" { "Due" } th scope="col" { "Days left" } th scope="col" { "Type" } th scope="col" { "Law" } th scope="col" { "State" } th scope="col" { "Request" } } }
                                tbody {
                                    @for r in &list {
                                        @let left = days_between(&today, &r.due);
                                        tr.overdue[left.is_some_and(|d| d < 0)] {
                                            td { (r.due) }
                                            td { @match left { Some(d) if d < 0 => { strong { "overdue by " (-d) " day(s)" } } Some(d) => { (d) } None => { "?" } } }
                                            td { (r.kind) }
                                            td { (r.jurisdiction) }
                                            td { (r.state) }
                                            td { a href={"/requests/" (r.id)} { "Open " code { (r.id) } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => return error_page(&user, &e),
        }
    }
    if may(&state, &user, "subject", Action::Merge) {
        let actor = user.actor.clone();
        let items = match call(&state, move |h| h.review_list(&actor, false)).await {
            Ok(items) => items,
            Err(e) => return error_page(&user, &e),
        };
        {
            sections.push(html! {
                section aria-labelledby="review" {
                    h2 #review { "Possible duplicates waiting for review" }
                    p { (items.len()) " pair(s) waiting. " a href="/review" { "Review them" } }
                }
            });
        }
    }
    if may(&state, &user, "consent", Action::Read) {
        let actor = user.actor.clone();
        let today = time::OffsetDateTime::now_utc().date();
        let next_month = if today.month() == time::Month::December {
            (today.year() + 1, 1u8)
        } else {
            (today.year(), u8::from(today.month()) + 1)
        };
        let from = format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            u8::from(today.month()),
            today.day()
        );
        let to = format!("{:04}-{:02}-01", next_month.0, next_month.1);
        let expiring =
            match call(&state, move |h| h.consents_expiring(&actor, &from, &to, 50)).await {
                Ok(x) => x,
                Err(e) => return error_page(&user, &e),
            };
        sections.push(html! {
            section aria-labelledby="expiring" {
                h2 #expiring { "Consents expiring this month" }
                @if expiring.is_empty() {
                    p { "None." }
                } @else {
                    table {
                        caption { "Consents in force that end before the month is out (the first 50): ask again before they do" }
                        thead { tr { th scope="col" { "Expires (UTC)" } th scope="col" { "Purpose" } th scope="col" { "Constituent" } } }
                        tbody {
                            @for c in &expiring {
                                tr { td { (c.expires) } td { (c.purpose) } td { a href={"/subjects/" (c.subject)} { code { (c.subject) } } } }
                            }
                        }
                    }
                }
            }
        });
    }
    if may(&state, &user, "subject", Action::Erase) {
        let actor = user.actor.clone();
        let until = time::OffsetDateTime::now_utc().date() + time::Duration::days(31);
        let until = format!(
            "{:04}-{:02}-{:02}",
            until.year(),
            u8::from(until.month()),
            until.day()
        );
        let due = match call(&state, move |h| h.holds_due(&actor, &until)).await {
            Ok(d) => d,
            Err(e) => return error_page(&user, &e),
        };
        sections.push(html! {
            section aria-labelledby="holds" {
                h2 #holds { "Legal holds ending within a month" }
                @if due.is_empty() {
                    p { "None." }
                } @else {
                    table {
                        caption { "What the retention sweep will shred when each hold ends" }
                        thead { tr { th scope="col" { "Ends" } th scope="col" { "Hold" } th scope="col" { "Why" } th scope="col" { "Keeps" } th scope="col" { "Erased constituent" } } }
                        tbody {
                            @for (id, info) in &due {
                                tr {
                                    td { (info.until) } td { (info.hold) } td { (info.reason) }
                                    td { (info.fields.join(", ")) @if info.gifts > 0 { "; " (info.gifts) " gift(s)" } }
                                    td { code { (id) } }
                                }
                            }
                        }
                    }
                }
            }
        });
    }
    if may(&state, &user, "imports", Action::Read) {
        let actor = user.actor.clone();
        // Reading the server's jobs is the hub's decision too: the call is audited.
        if let Err(e) = call(&state, move |h| h.authorize_import_read(&actor)).await {
            return error_page(&user, &e);
        }
        let running = state.jobs.running();
        sections.push(html! {
            section aria-labelledby="imports" {
                h2 #imports { "Imports in progress" }
                @if running.is_empty() {
                    p { "None. " a href="/imports" { "Import a file" } }
                } @else {
                    ul {
                        @for (id, j) in &running {
                            li { a href={"/imports/" (id)} { code { (id) } } ": " (j.stage) ", " (j.done) " row(s)" @if let Some(t) = j.total { " of " (t) } }
                        }
                    }
                }
            }
        });
    }
    if may(&state, &user, "recipients", Action::Write) {
        let actor = user.actor.clone();
        let tasks = match call(&state, move |h| h.notifications_pending(&actor, false)).await {
            Ok(t) => t,
            Err(e) => return error_page(&user, &e),
        };
        sections.push(html! {
            section aria-labelledby="notify" {
                h2 #notify { "Recipients to tell by hand (Art. 19)" }
                @if tasks.is_empty() {
                    p { "None." }
                } @else {
                    table {
                        caption { "Organisations that received a person's data and must be told of a change: they have no webhook, or every delivery failed" }
                        thead { tr { th scope="col" { "Since (UTC)" } th scope="col" { "Recipient" } th scope="col" { "Change" } th scope="col" { "Their reference" } th scope="col" { "State" } th scope="col" { "Done" } } }
                        tbody {
                            @for n in &tasks {
                                tr {
                                    td { (n.created) } td { (n.recipient) } td { (n.event) " (" (n.groups.join(", ")) ")" }
                                    td { code { (n.reference) } }
                                    td { (super::requests::notification_state(&n.state)) }
                                    td {
                                        form method="post" action={"/notifications/" (n.id) "/done"} {
                                            input type="hidden" name="csrf" value=(user.csrf);
                                            label for={"note-" (n.id)} { "How they were told" }
                                            input id={"note-" (n.id)} name="note" type="text" maxlength="500" required;
                                            " "
                                            button type="submit" { "Mark done" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    }
    if sections.is_empty() {
        sections.push(html! {
            p { "Nothing waits for your role here. Use " a href="/find" { "Find a constituent" } " to look someone up." }
        });
    }
    page(
        StatusCode::OK,
        "Work queue",
        Some(&user),
        html! { @for s in &sections { (s) } },
    )
}

fn find_body(user: &Signed, by: &str, results: Option<Markup>) -> Markup {
    let ways = [
        ("family_name", "Family name"),
        ("email", "Email address"),
        ("phone", "Phone number"),
        ("external_id", "ID in the old system"),
    ];
    html! {
        form method="post" action="/find" {
            input type="hidden" name="csrf" value=(user.csrf);
            fieldset {
                legend { "Find by" }
                @for (value, text) in ways {
                    label.inline {
                        input type="radio" name="by" value=(value) checked[by == value];
                        " " (text)
                    }
                }
            }
            p {
                label for="term" { "Search for" }
                input #term name="term" type="search" autocomplete="off" required;
            }
            p {
                label for="given" { "Given name or its first letters (family name searches only; optional)" }
                input #given name="given" type="search" autocomplete="off";
            }
            p { button type="submit" { "Find" } }
        }
        @if let Some(r) = results { (r) }
    }
}

/// Screen 2, find a constituent: the form.
pub(crate) async fn find_form(user: Signed) -> Response {
    page(
        StatusCode::OK,
        "Find a constituent",
        Some(&user),
        find_body(&user, "family_name", None),
    )
}

#[derive(Deserialize)]
pub(crate) struct FindForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    term: String,
    #[serde(default)]
    given: String,
}

/// Screen 2, the results (POST: the term is a personal value and stays out of URLs).
pub(crate) async fn find(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<FindForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    if form.by == "family_name" {
        let actor = user.actor.clone();
        let (family, given) = (form.term, form.given);
        let found = call(&state, move |h| {
            let given = Some(given.trim()).filter(|g| !g.is_empty());
            h.find_by_name(&actor, &family, given)
        })
        .await;
        let results = match found {
            Ok((hits, _)) if hits.is_empty() => {
                html! { p role="status" { "No constituent has that name." } }
            }
            Ok((hits, more)) => html! {
                h2 { "Found " (hits.len()) @if more { " (the first " (hits.len()) "; add a given name to narrow it)" } }
                table.results {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Town" } th scope="col" { "Record" } } }
                    tbody {
                        @for h in &hits {
                            tr {
                                td { (h.name) }
                                td { (h.city.clone().unwrap_or_default()) }
                                td { a href={"/subjects/" (h.id)} { "Open " code { (h.id) } } }
                            }
                        }
                    }
                }
            },
            Err(e) if matches!(e.kind(), hub::ErrorKind::Invalid) => {
                html! { p.notice role="alert" { (super::sentence(&e.to_string())) } }
            }
            Err(e) => return error_page(&user, &e),
        };
        return page(
            StatusCode::OK,
            "Find a constituent",
            Some(&user),
            find_body(&user, "family_name", Some(results)),
        );
    }
    let lookup = match form.by.as_str() {
        "phone" => Lookup::Phone,
        "external_id" => Lookup::ExternalId,
        _ => Lookup::Email,
    };
    let actor = user.actor.clone();
    let term = form.term;
    let found = call(&state, move |h| h.find(&actor, lookup, &term)).await;
    let results = match found {
        Ok(ids) if ids.is_empty() => {
            html! { p role="status" { "No constituent has that " (lookup.param().replace('_', " ")) "." } }
        }
        Ok(ids) => html! {
            h2 { "Found " (ids.len()) }
            ul.results { @for id in &ids { li { a href={"/subjects/" (id)} { "Constituent " code { (id) } } } } }
        },
        Err(e) if matches!(e.kind(), hub::ErrorKind::Invalid) => {
            html! { p.notice role="alert" { (super::sentence(&e.to_string())) } }
        }
        Err(e) => return error_page(&user, &e),
    };
    page(
        StatusCode::OK,
        "Find a constituent",
        Some(&user),
        find_body(&user, lookup.param(), Some(results)),
    )
}

fn display_name(fields: &std::collections::BTreeMap<String, Json>) -> Option<String> {
    let part = |k: &str| fields.get(k).map(show).filter(|s| !s.is_empty());
    let name = [part("given_name"), part("family_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty())
        .then_some(name)
        .or_else(|| part("organisation_name"))
}

async fn subject_page(
    state: AppState,
    user: Signed,
    raw_id: String,
    special: Special<'static>,
) -> Response {
    let id = match super::path_id(&user, &raw_id, "a constituent") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    let view = match call(&state, move |h| {
        h.get_subject_revealing(&actor, &id, special)
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return error_page(&user, &e),
    };
    let schema = state.hub.schema().clone();
    let financial = may(&state, &user, AccessGroup::Financial.object(), Action::Read);
    let gifts = if financial {
        let actor = user.actor.clone();
        match call(&state, move |h| h.list_gifts(&actor, &id)).await {
            Ok(g) => Some(g),
            Err(e) => return error_page(&user, &e),
        }
    } else {
        None
    };
    let consent = if may(&state, &user, "consent", Action::Read) {
        let actor = user.actor.clone();
        call(&state, move |h| h.consent_state(&actor, &id, None))
            .await
            .ok()
    } else {
        None
    };
    let history = if may(&state, &user, "consent", Action::Read) {
        let actor = user.actor.clone();
        call(&state, move |h| h.consent_history(&actor, &id))
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let requests: Vec<hub::SubjectRequest> = if may(&state, &user, "requests", Action::Read) {
        let actor = user.actor.clone();
        call(&state, move |h| h.list_requests(&actor, None))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.subject == id)
            .collect()
    } else {
        Vec::new()
    };
    // Who has read it comes from the audit log, a search of its own (a link, so that the
    // page does not wait on a scan of the log).
    let readers = may(&state, &user, "audit", Action::Read);
    // The timeline: gifts, consent events, requests and interactions, newest first; each kind only if the
    // role may see it (what was not fetched above is not here).
    let mut timeline: Vec<(String, String)> = Vec::new();
    for g in gifts.iter().flatten() {
        let date = g.fields.get("date").map(show).unwrap_or_default();
        let amount = g.fields.get("amount").map(show).unwrap_or_default();
        let currency = g.fields.get("currency").map(show).unwrap_or_default();
        timeline.push((date, format!("Gift of {currency} {amount}")));
    }
    for e in &history {
        timeline.push((
            e.time.get(..10).unwrap_or(&e.time).to_string(),
            format!("Consent {} for {}", e.event.as_str(), e.purpose),
        ));
    }
    for r in &requests {
        timeline.push((
            r.received.clone(),
            format!(
                "{} request received ({}), now {}",
                r.kind, r.jurisdiction, r.state
            ),
        ));
    }
    if may(
        &state,
        &user,
        AccessGroup::Interactions.object(),
        Action::Read,
    ) {
        let actor = user.actor.clone();
        match call(&state, move |h| h.list_interactions(&actor, &id, None)).await {
            Ok(list) => {
                for i in list {
                    let at = i.fields.get("occurred_at").map(show).unwrap_or_default();
                    let mut what = i.fields.get("kind").map(show).unwrap_or_default();
                    if let Some(d) = i.fields.get("direction") {
                        what = format!("{what} ({})", show(d));
                    }
                    if let Some(s) = i.fields.get("summary") {
                        what = format!("{what}: {}", show(s));
                    }
                    let mut chars = what.chars();
                    let mut what: String = match chars.next() {
                        Some(first) => first.to_uppercase().chain(chars).collect(),
                        None => what.clone(),
                    };
                    if i.participants.len() > 1 {
                        what.push_str(&format!(" (with {} others)", i.participants.len() - 1));
                    }
                    timeline.push((at.get(..10).unwrap_or(&at).to_string(), what));
                }
            }
            Err(e) => return error_page(&user, &e),
        }
    }
    timeline.sort_by(|a, b| b.0.cmp(&a.0));
    let purposes = state.hub.purposes().names();
    let may_consent = may(&state, &user, "consent", Action::Write);
    let may_erase = may(&state, &user, "subject", Action::Erase);
    let may_edit = [
        AccessGroup::Identity,
        AccessGroup::Contact,
        AccessGroup::Profile,
        AccessGroup::Financial,
    ]
    .iter()
    .any(|g| may(&state, &user, g.object(), Action::Write));
    let members = if view.kind == domain::SubjectKind::Household
        && may(&state, &user, AccessGroup::Profile.object(), Action::Read)
    {
        let actor = user.actor.clone();
        match call(&state, move |h| h.household_members(&actor, &id)).await {
            Ok(m) => Some(m),
            Err(e) => return error_page(&user, &e),
        }
    } else {
        None
    };
    let merged = {
        let actor = user.actor.clone();
        call(&state, move |h| h.merged_into(&actor, &id))
            .await
            .unwrap_or_default()
    };
    let refs: Vec<&str> = schema
        .fields(RecordKind::Subject)
        .filter(|f| matches!(f.ty, domain::FieldType::SubjectRef))
        .map(|f| f.name.as_str())
        .collect();
    let title = display_name(&view.fields).unwrap_or_else(|| "Constituent".into());
    let body = html! {
        p.meta { "Record " code { (view.id) } " · " (format!("{:?}", view.kind).to_lowercase()) " · version " (view.version) }
        @if may_edit { p { a href={"/subjects/" (view.id) "/edit"} { "Edit details" } } }
        section aria-labelledby="details" {
            h2 #details { "Details" }
            table.fields {
                tbody {
                    @for (name, value) in &view.fields {
                        tr {
                            th scope="row" { (label(name)) }
                            td {
                                // A reference to another record (household, employer): a link.
                                @if refs.contains(&name.as_str()) {
                                    a href={"/subjects/" (show(value))} { "Record " code { (show(value)) } }
                                } @else {
                                    (show(value))
                                }
                            }
                        }
                    }
                    @for name in &view.hidden {
                        tr { th scope="row" { (label(name)) } td.hidden { "special category, hidden until revealed" } }
                    }
                    @for name in &view.withheld {
                        tr { th scope="row" { (label(name)) } td.withheld { "not visible to your role" } }
                    }
                }
            }
            @if !view.hidden.is_empty() {
                form.reveal method="post" action={"/subjects/" (view.id) "/reveal"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        label for="reason" { "Reveal the special-category fields because" }
                        select #reason name="reason" required {
                            @for (code, text) in REVEAL_REASONS { option value=(code) { (text) } }
                        }
                        " "
                        button type="submit" { "Reveal" }
                    }
                    p.help { "The reveal and its reason are recorded in the audit log." }
                }
            }
        }
        section aria-labelledby="gifts" {
            h2 #gifts { "Gifts" }
            @match &gifts {
                None => { p.withheld { "Gifts are not visible to your role." } }
                Some(g) if g.is_empty() => { p { "No gifts recorded." } }
                Some(g) => {
                    @let columns: Vec<&str> = schema.fields(RecordKind::Gift).map(|f| f.name.as_str()).filter(|n| g.iter().any(|x| x.fields.contains_key(*n))).collect();
                    table {
                        thead { tr { @for c in &columns { th scope="col" { (label(c)) } } } }
                        tbody {
                            @for gift in g {
                                tr { @for c in &columns { td { (gift.fields.get(*c).map(show).unwrap_or_default()) } } }
                            }
                        }
                    }
                    @for (currency, total) in totals(g) {
                        p.total { "Total " (currency) " " (total) }
                    }
                }
            }
        }
        section aria-labelledby="consent" {
            h2 #consent { "Consent and lawful basis" }
            @match &consent {
                None => { p.withheld { "Consent is not visible to your role." } }
                Some(c) => {
                    table {
                        thead { tr { th scope="col" { "Purpose" } th scope="col" { "May process" } th scope="col" { "Why" } th scope="col" { "Deciding event" } } }
                        tbody {
                            @for (purpose, d) in &c.purposes {
                                tr {
                                    td { (purpose) }
                                    td { @if d.allowed { "yes" } @else { strong { "no" } } }
                                    td { (d.reason.replace('_', " ")) }
                                    td { @if let Some(e) = &d.deciding_event { (e.event.as_str()) " on " (e.time.get(..10).unwrap_or(&e.time)) } @else { "none" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let may_open = may(&state, &user, "requests", Action::Write);
    let body = html! {
        (body)
        @if let Some((people, more)) = &members {
            section aria-labelledby="members" {
                h2 #members { "Members of this household" }
                @if people.is_empty() {
                    p { "No one is linked to this household." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Town" } th scope="col" { "Record" } } }
                        tbody {
                            @for m in people {
                                tr { td { (m.name) } td { (m.city.clone().unwrap_or_default()) } td { a href={"/subjects/" (m.id)} { "Open " code { (m.id) } } } }
                            }
                        }
                    }
                    @if *more { p { "(the first " (people.len()) ")" } }
                }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            @if !merged.is_empty() {
                p {
                    "Merged into this record: "
                    @for (i, m) in merged.iter().enumerate() { @if i > 0 { ", " } code { (m) } }
                    " (each merge can be undone)."
                }
            }
            @if timeline.is_empty() {
                p { "Nothing your role may see has happened yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "What" } } }
                    tbody { @for (date, what) in &timeline { tr { td { (date) } td { (what) } } } }
                }
            }
        }
        @if readers {
            p { a href={"/audit?subject=" (view.id) "&action=read.subject"} { "Who has read this record (the audit log)" } }
        }
        @if may_consent {
            section aria-labelledby="record-consent" {
                h2 #record-consent { "Record a consent event" }
                form.inline method="post" action={"/subjects/" (view.id) "/consent"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        label for="purpose" { "Purpose" }
                        select #purpose name="purpose" { @for p in &purposes { option value=(p) { (p) } } }
                    }
                    p {
                        label for="event" { "What happened" }
                        select #event name="event" {
                            @for e in ["given", "withdrawn", "refused", "objected", "restricted", "unrestricted", "renewed"] { option value=(e) { (e) } }
                        }
                    }
                    p {
                        label for="source" { "Where it was said (a reference: form, call log, letter)" }
                        input #source name="source" type="text" maxlength="200" required;
                    }
                    p { button type="submit" { "Record it" } }
                }
            }
        }
        @if may_erase {
            section aria-labelledby="erase" {
                h2 #erase { "Erase this constituent" }
                form.erase method="post" action={"/subjects/" (view.id) "/erase"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        input #confirm name="confirm" type="checkbox" value="yes" required;
                        " "
                        label.inline for="confirm" { "I understand that erasure destroys this person's key and cannot be undone" }
                    }
                    p { button type="submit" { "Erase" } }
                    p.help { "To answer an erasure request, open the request instead: its history then records the erasure." }
                }
            }
        }
        @if may_open {
            section aria-labelledby="rights" {
                h2 #rights { "Open a subject-rights request" }
                (super::requests::open_form(&user, &view.id))
            }
        }
    };
    page(StatusCode::OK, &title, Some(&user), body)
}

/// Sums gift amounts per currency, in minor units so that no float rounding shows.
fn totals(gifts: &[hub::GiftView]) -> Vec<(String, String)> {
    let mut sums: std::collections::BTreeMap<String, i128> = Default::default();
    for g in gifts {
        let Some(amount) = g.fields.get("amount").map(show) else {
            continue;
        };
        let currency = g.fields.get("currency").map(show).unwrap_or_default();
        let (units, cents) = amount.split_once('.').unwrap_or((&amount, "0"));
        let cents = format!("{cents:0<2}");
        let (Ok(u), Ok(c)) = (
            units.parse::<i128>(),
            cents.get(..2).unwrap_or("00").parse::<i128>(),
        ) else {
            continue;
        };
        let minor = if units.starts_with('-') {
            u * 100 - c
        } else {
            u * 100 + c
        };
        *sums.entry(currency).or_default() += minor;
    }
    sums.into_iter()
        .map(|(c, m)| (c, format!("{}.{:02}", m / 100, (m % 100).abs())))
        .collect()
}

/// Screen 3, a constituent, special-category fields hidden.
pub(crate) async fn subject(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
) -> Response {
    subject_page(state, user, id, Special::Hide).await
}

#[derive(Deserialize)]
pub(crate) struct RevealForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Screen 3 with the special-category fields revealed for a reason (audited with it).
pub(crate) async fn reveal(
    State(state): State<AppState>,
    user: Signed,
    Path(id): Path<String>,
    Form(form): Form<RevealForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let Some((code, _)) = REVEAL_REASONS.iter().find(|(c, _)| *c == form.reason) else {
        return super::message_page(
            StatusCode::BAD_REQUEST,
            Some(&user),
            "Please check what you entered",
            "Choose one of the reasons in the list.",
        );
    };
    subject_page(state, user, id, Special::Reveal(code)).await
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct AuditFilter {
    subject: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
}

impl AuditFilter {
    fn query(&self, after: Option<u64>, limit: usize) -> hub::audit_log::Query {
        hub::audit_log::Query {
            subject: blank(&self.subject),
            actor: blank(&self.actor),
            action: blank(&self.action),
            outcome: match blank(&self.outcome).as_deref() {
                Some("ok") => Some(Outcome::Ok),
                Some("denied") => Some(Outcome::Denied),
                Some("error") => Some(Outcome::Error),
                _ => None,
            },
            from: blank(&self.from),
            to: blank(&self.to),
            after,
            limit,
        }
    }

    /// The filters as a URL query (each followed by `&`), for links to more of the same.
    fn url_query(&self) -> String {
        let mut q = String::new();
        for (k, v) in [
            ("subject", &self.subject),
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = blank(v) {
                q.push_str(&format!("{k}={}&", super::percent_encode(&v)));
            }
        }
        q
    }
}

fn blank(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Screen 7, the audit log: a query whose filters are in the URL, a page at a time.
pub(crate) async fn audit(
    State(state): State<AppState>,
    user: Signed,
    Query(f): Query<AuditFilter>,
) -> Response {
    let actor = user.actor.clone();
    let latest = match call(&state, move |h| h.latest_checkpoint(&actor)).await {
        Ok(c) => c,
        Err(e) => return error_page(&user, &e),
    };
    let actor = user.actor.clone();
    let query = f.query(f.after, 50);
    let result = call(&state, move |h| h.audit_query(&actor, &query)).await;
    let mut problem = None;
    let (events, next) = match result {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.kind(),
                hub::ErrorKind::BadRequest | hub::ErrorKind::Invalid
            ) =>
        {
            problem = Some(super::sentence(&e.to_string()));
            (Vec::new(), None)
        }
        Err(e) => return error_page(&user, &e),
    };
    let value = |s: &Option<String>| blank(s).unwrap_or_default();
    let filters = f.url_query();
    let next_link = next.map(|n| format!("/audit?{filters}after={n}"));
    let export_link = format!("/audit/export.csv?{filters}");
    let body = html! {
        form.filters method="get" action="/audit" {
            @for (name, text, hint) in [("subject", "Subject id", ""), ("actor", "Who (user name)", ""), ("action", "Action", "e.g. read, read.subject, create.session"), ("from", "From", "YYYY-MM-DD"), ("to", "Before", "YYYY-MM-DD")] {
                p {
                    label for=(name) { (text) }
                    input id=(name) name=(name) type="text" value=(match name { "subject" => value(&f.subject), "actor" => value(&f.actor), "action" => value(&f.action), "from" => value(&f.from), _ => value(&f.to) }) placeholder=(hint);
                }
            }
            p {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    @for o in ["", "ok", "denied", "error"] {
                        option value=(o) selected[value(&f.outcome) == o] { @if o.is_empty() { "any" } @else { (o) } }
                    }
                }
            }
            p { button type="submit" { "Search the log" } }
        }
        @if let Some(p) = &problem { p.notice role="alert" { (p) } }
        section aria-labelledby="chain" {
            h2 #chain { "The chain" }
            @match &latest {
                Some(c) => p { "Latest signed checkpoint: " (c.size) " events, at " (c.time) ", head " code { (c.head.get(..16).unwrap_or(&c.head)) "…" } }
                None => p { "No checkpoint has been signed yet." }
            }
            form.inline method="post" action="/audit/verify" {
                input type="hidden" name="csrf" value=(user.csrf);
                button type="submit" { "Verify the whole log" }
                " "
                button.secondary type="submit" formaction="/audit/checkpoint" { "Sign a checkpoint to keep elsewhere" }
            }
        }
        h2 { "Events" }
        @if events.is_empty() {
            p role="status" { "No events match." }
        } @else {
            p { a href=(export_link) { "Export every matching event (CSV)" } }
            table.audit {
                caption { "Audit events, oldest first" }
                thead { tr { th scope="col" { "#" } th scope="col" { "Time (UTC)" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Outcome" } th scope="col" { "Subjects" } th scope="col" { "Fields" } th scope="col" { "Source" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (e.seq) }
                            td { (e.time) }
                            td { (e.actor_name) " (" (e.role) ")" }
                            td { (e.action) @if let Some(p) = &e.purpose { " for " (p) } }
                            td { (e.outcome.as_str()) @if let Some(r) = &e.reason { " (" (r) ")" } }
                            td { (e.subjects.join(", ")) }
                            td { (e.fields.join(", ")) }
                            td { (e.source) }
                        }
                    }
                }
            }
            @if let Some(link) = &next_link { p { a href=(link) { "Next page" } } }
        }
    };
    page(StatusCode::OK, "Audit log", Some(&user), body)
}

#[derive(Deserialize)]
pub(crate) struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    source: String,
}

/// Records a consent event for the constituent, then shows the page again.
pub(crate) async fn record_consent(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<ConsentForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let id = match super::path_id(&user, &raw, "a constituent") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    let new = hub::NewConsent {
        purpose: form.purpose,
        event: form.event,
        source: form.source.trim().to_string(),
        method: Some("console".into()),
        ..Default::default()
    };
    match call(&state, move |h| h.record_consent(&actor, &id, new)).await {
        Ok(_) => Redirect::to(&format!("/subjects/{id}")).into_response(),
        Err(e) => error_page(&user, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// Erases the constituent (after the box was ticked), then shows the certificate.
pub(crate) async fn erase(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<EraseForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    if form.confirm != "yes" {
        return super::message_page(
            StatusCode::BAD_REQUEST,
            Some(&user),
            "Please check what you entered",
            "Tick the box to confirm the erasure. Nothing was erased.",
        );
    }
    let id = match super::path_id(&user, &raw, "a constituent") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    match call(&state, move |h| h.erase_subject(&actor, &id)).await {
        Ok(_) => Redirect::to(&format!("/subjects/{id}/certificate")).into_response(),
        Err(e) => error_page(&user, &e),
    }
}

/// Every event matching the filters, as CSV (the CLI's `audit export` columns).
pub(crate) async fn audit_export(
    State(state): State<AppState>,
    user: Signed,
    Query(f): Query<AuditFilter>,
) -> Response {
    let actor = user.actor.clone();
    let csv = call(&state, move |h| {
        let mut out = hub::files::audit_csv_header();
        out.push('\n');
        let mut after = None;
        loop {
            let (events, next) = h.audit_query(&actor, &f.query(after, 10_000))?;
            for e in &events {
                let v = serde_json::to_value(e).map_err(|e| hub::Error::Internal(e.to_string()))?;
                out.push_str(&hub::files::audit_csv_line(&v));
                out.push('\n');
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(out)
    })
    .await;
    match csv {
        Ok(text) => super::download("text/csv; charset=utf-8", "audit-events.csv", text),
        Err(e) => error_page(&user, &e),
    }
}

/// Verifies the whole chain and says how it stands.
pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    match call(&state, move |h| h.audit_verify(&actor, None)).await {
        Ok(v) => {
            let body = html! {
                @if v.ok {
                    p role="status" { strong { "The log verifies." } " " (v.events) " events, " (v.checkpoints) " signed checkpoint(s); " (v.unsigned_tail) " event(s) after the last checkpoint." }
                } @else {
                    p.notice role="alert" {
                        strong { "The log does not verify." }
                        @if let Some(p) = &v.problem { " First bad event: " (p.seq) " (" (p.kind.replace('_', " ")) "): " (p.detail) }
                    }
                }
                p { "Head of the chain: " code { (v.head) } }
                p { a href="/audit" { "Back to the audit log" } }
            };
            page(StatusCode::OK, "Audit log verification", Some(&user), body)
        }
        Err(e) => error_page(&user, &e),
    }
}

/// Signs a checkpoint of the log as it is now, as a JSON file to keep off this machine.
pub(crate) async fn audit_checkpoint(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    match call(&state, move |h| h.export_checkpoint(&actor)).await {
        Ok(c) => super::download(
            "application/json",
            "audit-checkpoint.json",
            serde_json::to_string_pretty(&c).unwrap_or_default(),
        ),
        Err(e) => error_page(&user, &e),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct DoneForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// Marks a notification done (a person told the recipient), then shows the work queue.
pub(crate) async fn notification_done(
    State(state): State<AppState>,
    user: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::Form(form): axum::Form<DoneForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    match call(&state, move |h| {
        h.complete_notification(&actor, &id, &form.note)
    })
    .await
    {
        Ok(_) => axum::response::Redirect::to("/home").into_response(),
        Err(e) => error_page(&user, &e),
    }
}

/// The register of recipients: who receives data, for what, where, and how they are told of
/// changes (registration itself is at the command line or over the API).
pub(crate) async fn recipients(State(state): State<AppState>, user: Signed) -> Response {
    let actor = user.actor.clone();
    let list = match call(&state, move |h| h.list_registered_recipients(&actor)).await {
        Ok(l) => l,
        Err(e) => return error_page(&user, &e),
    };
    let any = |v: &[String], words: &str| {
        if v.is_empty() {
            words.to_string()
        } else {
            v.join(", ")
        }
    };
    let body = html! {
        p.help { "Organisations that receive constituents' data. Exports to each are limited to the purposes and field groups listed here, and each is told of every rectification, erasure, restriction, objection or withdrawal that concerns what it received: by a signed webhook, or by a person (the work queue lists those)." }
        @if list.is_empty() {
            p { "No recipient is registered. Register one with " code { "steward recipients add NAME" } " or " code { "POST /v1/recipients" } "." }
        } @else {
            table {
                caption { "Registered recipients" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Purposes" } th scope="col" { "Field groups" } th scope="col" { "Basis and contract" } th scope="col" { "Country" } th scope="col" { "Told by" } th scope="col" { "State" } } }
                tbody {
                    @for r in &list {
                        tr {
                            td { (r.name) } td { (r.role) }
                            td { (any(&r.purposes, "any purpose")) }
                            td { (any(&r.groups, "those of the purpose")) }
                            td { (r.legal_basis.clone().unwrap_or_else(|| "-".into())) @if let Some(c) = &r.contract { br; "contract " (c) } }
                            td { (r.country.clone().unwrap_or_else(|| "-".into())) @if r.transfer_outside_uk_eea { br; strong { "outside the UK/EEA: a restricted transfer" } } }
                            td { @match &r.endpoint { Some(e) => { "webhook " code { (e) } } None => { "a person (no webhook)" } } }
                            td { @match &r.disabled { Some(d) => { "disabled: " (d.reason) } None => { "active" } } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Recipients", Some(&user), body)
}
