//! Screen 6, the review queue: a possible duplicate side by side, field by field, with the
//! match explanation (each field's weight as a meter), and the decision: the same person
//! (merge), the same household (link), or two people (reject). Bulk acceptance takes only
//! duplicate proposals at or above [`SAFE`] and shows how many before anything happens.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::pages::{call, label, show};
use super::{error_page, message_page, page, Signed};
use crate::AppState;

/// The probability at or above which a duplicate proposal may be accepted in bulk.
const SAFE: f64 = 0.99;

/// The open items, most likely first.
pub(crate) async fn list(State(state): State<AppState>, user: Signed) -> Response {
    let actor = user.actor.clone();
    let items = match call(&state, move |h| h.review_list(&actor, false)).await {
        Ok(i) => i,
        Err(e) => return error_page(&user, &e),
    };
    let safe = items
        .iter()
        .filter(|i| i.kind == "duplicate" && i.probability >= SAFE)
        .count();
    let body = html! {
        @if items.is_empty() {
            p role="status" { "Nothing waits for review." }
        } @else {
            @if safe > 0 {
                form method="post" action="/review/accept-safe" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    input type="hidden" name="expected" value=(safe);
                    p {
                        (safe) " proposal(s) of one person twice have a match probability of "
                        (format!("{:.0}", SAFE * 100.0)) "% or more. "
                        button type="submit" { "Accept these " (safe) }
                    }
                }
            }
            table {
                caption { "Open review items, most likely first" }
                thead { tr { th scope="col" { "Probability" } th scope="col" { "Proposal" } th scope="col" { "Records" } th scope="col" { "Item" } } }
                tbody {
                    @for i in &items {
                        tr {
                            td { (format!("{:.1}%", i.probability * 100.0)) }
                            td { @if i.kind == "household" { "same household" } @else { "same person" } }
                            td { code { (i.a) } " and " code { (i.b) } }
                            td { a href={"/review/" (i.id)} { "Compare " code { (i.id) } } }
                        }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        "Review possible duplicates",
        Some(&user),
        body,
    )
}

/// One item: both records side by side and the explanation.
pub(crate) async fn show_item(
    State(state): State<AppState>,
    user: Signed,
    Path(item_id): Path<String>,
) -> Response {
    let actor = user.actor.clone();
    let id = item_id.clone();
    let found = call(&state, move |h| {
        let items = h.review_list(&actor, true)?;
        let item = items
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| hub::Error::Missing(format!("review item {id}")))?;
        let a = h.get_subject(&actor, &item.a)?;
        let b = h.get_subject(&actor, &item.b)?;
        let why = h.explain_match(&actor, &item.a, &item.b)?;
        Ok((item, a, b, why))
    })
    .await;
    let (item, a, b, why) = match found {
        Ok(x) => x,
        Err(e) => return error_page(&user, &e),
    };
    let mut names: Vec<&String> = a.fields.keys().chain(b.fields.keys()).collect();
    names.sort();
    names.dedup();
    let body = html! {
        p.meta {
            "Proposal: " strong { @if item.kind == "household" { "the same household" } @else { "the same person" } }
            " · match probability " (format!("{:.1}%", why.probability * 100.0))
            " · status " (item.status)
        }
        table.compare {
            caption { "The two records, field by field" }
            thead { tr { th scope="col" { "Field" } th scope="col" { "Record A (kept)" } th scope="col" { "Record B" } } }
            tbody {
                @for n in &names {
                    @let va = a.fields.get(*n).map(show).unwrap_or_default();
                    @let vb = b.fields.get(*n).map(show).unwrap_or_default();
                    tr.differs[va != vb && !va.is_empty() && !vb.is_empty()] {
                        th scope="row" { (label(n)) }
                        td { (va) }
                        td { (vb) }
                    }
                }
            }
        }
        h2 { "Why Steward proposes it" }
        p {
            "An import would: " strong { (why.decision.replace('-', " ")) }
            @if let Some(r) = why.reason { " (" (r.replace('_', " ")) ")" }
        }
        table.weights {
            caption { "Evidence per field: positive weights say one person, negative say two" }
            thead { tr { th scope="col" { "Field" } th scope="col" { "Comparison" } th scope="col" { "Weight" } } }
            tbody {
                @for f in &why.fields {
                    tr {
                        th scope="row" { (label(f.field)) }
                        td { (f.level.replace('_', " ")) }
                        td {
                            meter min="-12" max="12" low="-0.5" high="0.5" optimum="12" value=(format!("{:.2}", f.weight))
                                aria-label={ (label(f.field)) " weight " (format!("{:+.1}", f.weight)) } {}
                            " " (format!("{:+.1}", f.weight))
                        }
                    }
                }
            }
        }
        @if item.status == "open" {
            h2 { "Decision" }
            form.decide method="post" action={"/review/" (item.id)} {
                input type="hidden" name="csrf" value=(user.csrf);
                @if item.kind == "household" {
                    button type="submit" name="decision" value="link" { "Same household: link them" }
                } @else {
                    button type="submit" name="decision" value="accept" { "Same person: merge B into A" }
                }
                " "
                button.secondary type="submit" name="decision" value="reject" { "Two different people" }
            }
            p.help { "A merge can be undone (steward merge undo); a rejected pair is not proposed again." }
        }
    };
    page(StatusCode::OK, "Compare two records", Some(&user), body)
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
}

/// Records a decision, then goes back to the queue.
pub(crate) async fn decide(
    State(state): State<AppState>,
    user: Signed,
    Path(item_id): Path<String>,
    Form(form): Form<Decision>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    let done = match form.decision.as_str() {
        "accept" => {
            call(&state, move |h| {
                h.review_accept(&actor, &item_id).map(|_| ())
            })
            .await
        }
        "link" => call(&state, move |h| h.review_link(&actor, &item_id).map(|_| ())).await,
        "reject" => {
            call(&state, move |h| {
                h.review_reject(&actor, &item_id).map(|_| ())
            })
            .await
        }
        _ => {
            return message_page(
                StatusCode::BAD_REQUEST,
                Some(&user),
                "Please check what you entered",
                "Choose one of the decisions on the page.",
            )
        }
    };
    match done {
        Ok(()) => Redirect::to("/review").into_response(),
        Err(e) => error_page(&user, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct Bulk {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    expected: usize,
}

/// Accepts every open duplicate proposal at or above [`SAFE`], if there are still as many
/// as the page showed (otherwise nothing is done and the queue is shown again).
pub(crate) async fn accept_safe(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<Bulk>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    let expected = form.expected;
    let done = call(&state, move |h| {
        let safe: Vec<_> = h
            .review_list(&actor, false)?
            .into_iter()
            .filter(|i| i.kind == "duplicate" && i.probability >= SAFE)
            .collect();
        if safe.len() != expected {
            return Ok(None);
        }
        for item in &safe {
            h.review_accept(&actor, &item.id)?;
        }
        Ok(Some(safe.len()))
    })
    .await;
    match done {
        Ok(Some(n)) => message_page(
            StatusCode::OK,
            Some(&user),
            "Accepted",
            &format!("{n} proposal(s) merged. Each merge can be undone."),
        ),
        Ok(None) => Redirect::to("/review").into_response(),
        Err(e) => error_page(&user, &e),
    }
}
