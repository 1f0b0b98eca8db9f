//! Editing a constituent: a form with the fields the role may write (special-category fields
//! are changed through the API), sent back as a patch of what changed, with the version read
//! (`If-Match`): someone else's change in between is refused, not overwritten.

use std::collections::BTreeMap;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use domain::{AccessGroup, FieldType, RecordKind};
use hub::{Action, Special};
use maud::html;
use serde_json::{Map, Value as Json};

use super::pages::{call, label, show};
use super::{error_page, message_page, page, Signed};
use crate::AppState;

/// The subject fields the role may write, in the catalogue's order.
fn writable(state: &AppState, user: &Signed) -> Vec<(String, FieldType)> {
    state
        .hub
        .schema()
        .fields(RecordKind::Subject)
        .filter(|f| {
            f.group != AccessGroup::Special
                && state
                    .hub
                    .allows(user.role(), f.group.object(), Action::Write)
        })
        .map(|f| (f.name.clone(), f.ty.clone()))
        .collect()
}

/// The edit form.
pub(crate) async fn form(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
) -> Response {
    let id = match super::path_id(&user, &raw, "a constituent") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let fields = writable(&state, &user);
    if fields.is_empty() {
        return message_page(
            StatusCode::FORBIDDEN,
            Some(&user),
            "Not open to your role",
            "Your role may not change a constituent's details.",
        );
    }
    let actor = user.actor.clone();
    let view = match call(&state, move |h| {
        h.get_subject_revealing(&actor, &id, Special::Hide)
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return error_page(&user, &e),
    };
    let body = html! {
        form.edit method="post" action={"/subjects/" (id) "/edit"} {
            input type="hidden" name="csrf" value=(user.csrf);
            input type="hidden" name="_version" value=(view.version);
            @for (name, ty) in &fields {
                @let current = view.fields.get(name).map(show).unwrap_or_default();
                @let id_attr = format!("f-{name}");
                p {
                    label for=(id_attr) { (label(name)) }
                    @match ty {
                        FieldType::Bool => {
                            select id=(id_attr) name=(name) {
                                option value="" selected[current.is_empty()] { "not recorded" }
                                option value="true" selected[current == "true"] { "yes" }
                                option value="false" selected[current == "false"] { "no" }
                            }
                        }
                        FieldType::Enum(options) => {
                            select id=(id_attr) name=(name) {
                                option value="" selected[current.is_empty()] { "not recorded" }
                                @for o in options { option value=(o) selected[&current == o] { (o) } }
                            }
                        }
                        FieldType::Date => { input id=(id_attr) name=(name) type="date" value=(current); }
                        FieldType::Email => { input id=(id_attr) name=(name) type="email" value=(current) autocomplete="off"; }
                        FieldType::Phone => { input id=(id_attr) name=(name) type="tel" value=(current) autocomplete="off"; }
                        _ => { input id=(id_attr) name=(name) type="text" value=(current) autocomplete="off"; }
                    }
                }
            }
            p.help { "Empty a field to remove it. Only what you change is written; the audit log records which fields changed." }
            p { button type="submit" { "Save" } " " a href={"/subjects/" (id)} { "Cancel" } }
        }
    };
    page(StatusCode::OK, "Edit constituent", Some(&user), body)
}

/// Saves what changed, then shows the constituent.
pub(crate) async fn save(
    State(state): State<AppState>,
    user: Signed,
    Path(raw): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if let Some(resp) =
        user.csrf_refusal(&state, form.get("csrf").map(String::as_str).unwrap_or(""))
    {
        return resp;
    }
    let id = match super::path_id(&user, &raw, "a constituent") {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let Some(version) = form.get("_version").and_then(|v| v.parse::<u32>().ok()) else {
        return message_page(
            StatusCode::BAD_REQUEST,
            Some(&user),
            "Please check what you entered",
            "The form is incomplete; reload the page and try again.",
        );
    };
    let fields = writable(&state, &user);
    let actor = user.actor.clone();
    let saved = call(&state, move |h| {
        let current = h.get_subject_revealing(&actor, &id, Special::Hide)?;
        let mut patch = Map::new();
        for (name, ty) in &fields {
            let Some(given) = form.get(name).map(|v| v.trim().to_string()) else {
                continue;
            };
            let now = current.fields.get(name).map(show).unwrap_or_default();
            if given == now {
                continue;
            }
            let value = if given.is_empty() {
                Json::Null
            } else {
                match ty {
                    FieldType::Bool => Json::Bool(given == "true"),
                    FieldType::Tags => Json::Array(
                        given
                            .split(',')
                            .map(|t| t.trim())
                            .filter(|t| !t.is_empty())
                            .map(|t| Json::String(t.to_string()))
                            .collect(),
                    ),
                    _ => Json::String(given),
                }
            };
            patch.insert(name.clone(), value);
        }
        if patch.is_empty() {
            return Ok(None);
        }
        h.update_subject(&actor, &id, patch, Some(version))
            .map(Some)
    })
    .await;
    match saved {
        Ok(_) => Redirect::to(&format!("/subjects/{id}")).into_response(),
        Err(e) if e.kind() == hub::ErrorKind::Conflict => message_page(
            StatusCode::CONFLICT,
            Some(&user),
            "Changed meanwhile",
            "Someone changed this constituent after you opened the form. Nothing was saved: open it again to see their change, then make yours.",
        ),
        Err(e) => error_page(&user, &e),
    }
}
