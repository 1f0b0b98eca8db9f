//! Screen 4, subject-rights requests: the list with its legal clocks, one request with its
//! steps, the access package (always encrypted with a passphrase the page suggests, to be
//! sent to the person by another channel), the erasure and its certificate.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use domain::SubjectId;
use hub::{JURISDICTIONS, REQUEST_TYPES};
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::{call, days_between, today};
use super::{error_page, message_page, page, Signed};
use crate::AppState;

fn clock(due: &str) -> Markup {
    match days_between(&today(), due) {
        Some(d) if d < 0 => html! { strong.overdue { "overdue by " (-d) " day(s)" } },
        Some(0) => html! { strong { "due today" } },
        Some(d) => html! { (d) " day(s) left" },
        None => html! { "?" },
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ListFilter {
    within: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    law: Option<String>,
}

/// The open requests, soonest due first; `?within=N` keeps those due within N days.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: Signed,
    Query(f): Query<ListFilter>,
) -> Response {
    let actor = user.actor.clone();
    let within = f.within;
    let list = match call(&state, move |h| h.list_requests(&actor, within)).await {
        Ok(l) => l,
        Err(e) => return error_page(&user, &e),
    };
    let kind = f.kind.clone().filter(|k| !k.is_empty());
    let law = f.law.clone().filter(|l| !l.is_empty());
    let list: Vec<_> = list
        .into_iter()
        .filter(|r| kind.as_ref().is_none_or(|k| &r.kind == k))
        .filter(|r| law.as_ref().is_none_or(|l| &r.jurisdiction == l))
        .collect();
    let body = html! {
        form.filters method="get" action="/requests" {
            p {
                label for="within" { "Due within (days)" }
                input #within name="within" type="number" min="0" value=(f.within.map(|w| w.to_string()).unwrap_or_default());
            }
            p {
                label for="type" { "Type" }
                select #type name="type" {
                    option value="" { "any" }
                    @for t in REQUEST_TYPES { option value=(t) selected[kind.as_deref() == Some(t)] { (t) } }
                }
            }
            p {
                label for="law" { "Law" }
                select #law name="law" {
                    option value="" { "any" }
                    @for j in JURISDICTIONS { option value=(j) selected[law.as_deref() == Some(j)] { (j) } }
                }
            }
            p { button type="submit" { "Show" } }
        }
        @if list.is_empty() {
            p role="status" { "No open requests." }
        } @else {
            table {
                caption { "Open requests, the soonest due first" }
                thead { tr { th scope="col" { "Due" } th scope="col" { "Clock" } th scope="col" { "Type" } th scope="col" { "Law" } th scope="col" { "State" } th scope="col" { "Request" } } }
                tbody {
                    @for r in &list {
                        tr {
                            td { (r.due) }
                            td { (clock(&r.due)) }
                            td { (r.kind) }
                            td { (r.jurisdiction) }
                            td { (r.state) }
                            td { a href={"/requests/" (r.id)} { "Open " code { (r.id) } } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Subject-rights requests", Some(&user), body)
}

/// The form that opens a request for a constituent (shown on the constituent's page).
pub(crate) fn open_form(user: &Signed, subject: &SubjectId) -> Markup {
    html! {
        form.open-request method="post" action="/requests" {
            input type="hidden" name="csrf" value=(user.csrf);
            input type="hidden" name="subject" value=(subject);
            p {
                label for="kind" { "Request type" }
                select #kind name="kind" { @for t in REQUEST_TYPES { option value=(t) { (t) } } }
            }
            p {
                label for="jurisdiction" { "Law" }
                select #jurisdiction name="jurisdiction" { @for j in JURISDICTIONS { option value=(j) selected[j == "uk-gdpr"] { (j) } } }
            }
            p {
                label for="received" { "Received on (blank: today)" }
                input #received name="received" type="date";
            }
            p { button type="submit" { "Open the request" } }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct OpenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    jurisdiction: String,
    #[serde(default)]
    received: String,
}

/// Opens a request, then shows it.
pub(crate) async fn open(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<OpenForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let subject = match super::path_id(&user, &form.subject, "a constituent") {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    let received = Some(form.received.trim().to_string()).filter(|r| !r.is_empty());
    match call(&state, move |h| {
        h.open_request(
            &actor,
            &subject,
            &form.kind,
            &form.jurisdiction,
            received.as_deref(),
        )
    })
    .await
    {
        Ok(r) => Redirect::to(&format!("/requests/{}", r.id)).into_response(),
        Err(e) => error_page(&user, &e),
    }
}

/// The steps a person may take from each state, with whether they need a reason.
fn steps_from(state: &str, extended: bool) -> Vec<(&'static str, &'static str, bool)> {
    let mut out = Vec::new();
    match state {
        "received" => {
            out.push(("verify", "Identity verified", false));
            out.push((
                "pause",
                "Pause the clock (waiting for identity or clarification)",
                true,
            ));
        }
        "paused" => {
            out.push(("resume", "Resume the clock", false));
            out.push(("verify", "Identity verified", false));
        }
        "identity-verified" => out.push(("start", "Start work", false)),
        "extended" => out.push(("start", "Start work", false)),
        "in-progress" => out.push(("complete", "Mark completed", false)),
        _ => {}
    }
    if !extended && matches!(state, "received" | "identity-verified" | "in-progress") {
        out.push(("extend", "Extend by the law's further period", true));
    }
    if !matches!(state, "completed" | "refused") {
        out.push(("refuse", "Refuse", true));
    }
    out
}

/// One request: its clock, history, next steps, and its fulfilment.
pub(crate) async fn show(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
) -> Response {
    let id = match super::path_id(&user, &raw, "a request") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    let r = match call(&state, move |h| h.get_request(&actor, &id)).await {
        Ok(r) => r,
        Err(e) => return error_page(&user, &e),
    };
    let closed = matches!(r.state.as_str(), "completed" | "refused");
    let passphrase = hub::keys::new_passphrase().unwrap_or_default();
    let body = html! {
        table.fields {
            tbody {
                tr { th scope="row" { "Constituent" } td { a href={"/subjects/" (r.subject)} { code { (r.subject) } } } }
                tr { th scope="row" { "Type" } td { (r.kind) } }
                tr { th scope="row" { "Law" } td { (r.jurisdiction) } }
                tr { th scope="row" { "Received" } td { (r.received) } }
                tr { th scope="row" { "Due" } td { (r.due) " · " @if closed { "closed" } @else { (clock(&r.due)) } } }
                @if let Some(a) = &r.acknowledge_by { tr { th scope="row" { "Acknowledge by" } td { (a) } } }
                tr { th scope="row" { "State" } td { (r.state) @if r.extended { " (extended)" } } }
                @if r.paused_days > 0 || r.paused_since.is_some() {
                    tr { th scope="row" { "Clock stopped" } td { (r.paused_days) " day(s)" @if let Some(s) = &r.paused_since { ", stopped since " (s) } } }
                }
            }
        }
        h2 { "History" }
        table {
            thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Step" } th scope="col" { "State" } th scope="col" { "By" } th scope="col" { "Reason" } th scope="col" { "Produced" } } }
            tbody {
                @for s in &r.history {
                    tr {
                        td { (s.at) } td { (s.action) } td { (s.state) }
                        td { @if s.by == user.actor.principal.id.to_string() { "you" } @else { code { (s.by) } } }
                        td { (s.reason.clone().unwrap_or_default()) }
                        td { (s.produced.join(", ")) }
                    }
                }
            }
        }
        @if !closed {
            h2 { "Next steps" }
            @for (step, text, reason) in steps_from(&r.state, r.extended) {
                form.step method="post" action={"/requests/" (r.id) "/step"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="step" value=(step);
                    @if reason {
                        label for={"reason-" (step)} { "Reason (a short reference, no personal details)" }
                        input id={"reason-" (step)} name="reason" type="text" maxlength="300" required;
                        " "
                    }
                    button type="submit" { (text) }
                }
            }
            @if r.kind == "access" || r.kind == "portability" {
                h2 { "Access package" }
                form.package method="post" action={"/requests/" (r.id) "/package"} hx-boost="false" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        label for="passphrase" { "Passphrase that protects the package" }
                        input #passphrase name="passphrase" type="text" value=(passphrase) minlength="12" autocomplete="off" required;
                    }
                    p.help { "Note the passphrase and give it to the person by another channel (a phone call, a text), never with the file. The download is an age-encrypted zip; the person opens it with age or any age-compatible tool." }
                    p { button type="submit" { "Download the access package" } }
                }
            }
            @if r.kind == "erasure" {
                h2 { "Erasure" }
                form.erase method="post" action={"/requests/" (r.id) "/erase"} {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p.help { "Erasing destroys the person's key: their data cannot be read again by anyone. Legal holds keep only what they name." }
                    p { button type="submit" { "Erase this constituent now" } }
                }
            }
        }
        @if !r.notifications.is_empty() {
            h2 { "Recipients told (Art. 19)" }
            table {
                caption { "Each organisation that received this person's data, and whether it has been told of the change" }
                thead { tr { th scope="col" { "Recipient" } th scope="col" { "Change" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Finished (UTC)" } } }
                tbody {
                    @for n in &r.notifications {
                        tr {
                            td { (n.recipient) } td { (n.event) }
                            td { (notification_state(&n.state)) }
                            td { (n.attempt_count) }
                            td { (n.finished.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        @if r.kind == "erasure" && r.state == "completed" {
            p { a href={"/subjects/" (r.subject) "/certificate"} { "The erasure certificate" } }
        }
    };
    page(
        StatusCode::OK,
        &format!("Request: {}", r.kind),
        Some(&user),
        body,
    )
}

#[derive(Deserialize)]
pub(crate) struct StepForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    reason: String,
}

/// Moves a request along, then shows it again.
pub(crate) async fn step(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<StepForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let id = match super::path_id(&user, &raw, "a request") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    let reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    match call(&state, move |h| {
        h.advance_request(&actor, &id, &form.step, reason.as_deref())
    })
    .await
    {
        Ok(_) => Redirect::to(&format!("/requests/{id}")).into_response(),
        Err(e) => error_page(&user, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct PackageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    passphrase: String,
}

/// The access package as an age-encrypted zip download, recorded in the request's history.
pub(crate) async fn package(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<PackageForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let id = match super::path_id(&user, &raw, "a request") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let passphrase = form.passphrase.trim().to_string();
    if passphrase.chars().count() < 12 {
        return message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&user),
            "Please check what you entered",
            "The passphrase must be at least 12 characters long. Nothing was released.",
        );
    }
    let actor = user.actor.clone();
    let made = call(&state, move |h| {
        let package = h.access_package(&actor, &id, None)?;
        let files = hub::files::package_files(&package);
        let mut zip = Vec::new();
        hub::files::write_zip(&mut zip, &files).map_err(|e| hub::Error::Internal(e.to_string()))?;
        let sealed = hub::files::age_encrypt_passphrase(&passphrase, &zip)
            .map_err(|e| hub::Error::Internal(e.to_string()))?;
        let name = "access-package.zip.age".to_string();
        h.record_fulfilment(&actor, &id, &[(name, sealed.clone())], None)?;
        Ok(sealed)
    })
    .await;
    match made {
        Ok(bytes) => super::download("application/octet-stream", "access-package.zip.age", bytes),
        Err(e) => error_page(&user, &e),
    }
}

/// Fulfils an erasure request, then shows its certificate.
pub(crate) async fn erase(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<super::CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let id = match super::path_id(&user, &raw, "a request") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    match call(&state, move |h| h.fulfil_erasure(&actor, &id, None)).await {
        Ok((r, _)) => Redirect::to(&format!("/subjects/{}/certificate", r.subject)).into_response(),
        Err(e) => error_page(&user, &e),
    }
}

/// An erased constituent's certificate, as a document.
pub(crate) async fn certificate(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
) -> Response {
    let id = match super::path_id(&user, &raw, "a request") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let actor = user.actor.clone();
    match call(&state, move |h| h.erasure_certificate(&actor, &id)).await {
        Ok(c) => page(
            StatusCode::OK,
            "Erasure certificate",
            Some(&user),
            html! { pre.certificate { (c.text()) } },
        ),
        Err(e) => error_page(&user, &e),
    }
}

/// A notification's state in words.
pub(crate) fn notification_state(state: &str) -> &'static str {
    match state {
        "delivered" => "delivered (the recipient's endpoint confirmed it)",
        "pending" => "pending (being sent)",
        "failed" => "failed: a person must tell the recipient",
        "task" => "to do: a person must tell the recipient",
        "done" => "done by a person",
        _ => "unknown",
    }
}
