//! Screen 8, policies: the purposes with their lawful basis and fields, and each role's
//! permissions as the hub decides them (the decision table of `policies/policy.csv`). An
//! administrator may change the purposes and the access rules here (checked, then in force at
//! once); the field catalogue and retention change in the data directory (then a restart).

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hub::{Action, Role, OBJECTS};
use maud::html;
use serde::Deserialize;

use super::pages::call;
use super::{error_page, page, Signed};
use crate::AppState;

/// The purposes and the decision table; for an admin, the access rules to edit.
pub(crate) async fn show(State(state): State<AppState>, user: Signed) -> Response {
    let purposes = state.hub.purposes().all().to_vec();
    let texts = if state.hub.allows(user.role(), "users", Action::Admin) {
        let actor = user.actor.clone();
        match call(&state, move |h| {
            Ok((h.access_rules(&actor)?, h.purposes_text(&actor)?))
        })
        .await
        {
            Ok(t) => Some(t),
            Err(e) => return error_page(&user, &e),
        }
    } else {
        None
    };
    let body = html! {
        p.help { "Policies live in the data directory's policies/ folder; an administrator changes them there and reloads the server. This page shows what the server decides with now." }
        section aria-labelledby="purposes" {
            h2 #purposes { "Purposes of processing" }
            table {
                thead { tr { th scope="col" { "Purpose" } th scope="col" { "Lawful basis" } th scope="col" { "Channel" } th scope="col" { "Marketing" } th scope="col" { "Fields it may use" } th scope="col" { "Retention" } } }
                tbody {
                    @for p in &purposes {
                        tr {
                            th scope="row" { (p.name) br; span.help { (p.description) } }
                            td { (serde_json::to_value(p.basis).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()) }
                            td { (p.channel.clone().unwrap_or_default()) }
                            td { @if p.marketing { "yes" } @else { "no" } }
                            td { (p.fields.join(", ")) }
                            td { (p.retention) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="roles" {
            h2 #roles { "What each role may do" }
            table.decisions {
                caption { "Allowed actions per role and object (everything else is refused)" }
                thead { tr { th scope="col" { "Object" } @for r in Role::ALL { th scope="col" { (r) } } } }
                tbody {
                    @for o in OBJECTS {
                        tr {
                            th scope="row" { (o) }
                            @for r in Role::ALL {
                                @let allowed: Vec<String> = Action::ALL.iter().filter(|a| state.hub.allows(r, o, **a)).map(|a| a.to_string()).collect();
                                td { @if allowed.is_empty() { span.help { "none" } } @else { (allowed.join(", ")) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some((rules, purposes_toml)) = &texts {
            section aria-labelledby="edit-purposes" {
                h2 #edit-purposes { "Change the purposes (administrators)" }
                form.purposes method="post" action="/policies/purposes" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        label for="purposes-text" { "policies/purposes.toml: each purpose's lawful basis, fields, channel and retention" }
                        textarea #purposes-text name="purposes" rows="24" cols="70" spellcheck="false" { (purposes_toml) }
                    }
                    p { button type="submit" { "Check and put in force" } }
                    p.help { "Checked against the field catalogue first; an invalid file changes nothing. The consent gate uses the new purposes from the next request. Consent already recorded keeps the purpose names it was given under." }
                }
            }
            section aria-labelledby="edit-rules" {
                h2 #edit-rules { "Change the access rules (administrators)" }
                form.rules method="post" action="/policies/rules" {
                    input type="hidden" name="csrf" value=(user.csrf);
                    p {
                        label for="rules" { "policies/policy.csv: one rule a line, p, ROLE, OBJECT, ACTION (everything not allowed is refused)" }
                        textarea #rules name="rules" rows="24" cols="70" spellcheck="false" { (rules) }
                    }
                    p { button type="submit" { "Check and put in force" } }
                    p.help { "The rules are checked first: a line that does not parse changes nothing and is named. The field catalogue and retention are changed in their files, then the server restarted." }
                }
            }
        }
    };
    page(StatusCode::OK, "Policies", Some(&user), body)
}

#[derive(Deserialize)]
pub(crate) struct RulesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rules: String,
}

/// Checks and puts new access rules in force, then shows the decision table they give.
pub(crate) async fn save_rules(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<RulesForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    // Browsers send text areas with CRLF line ends; the file keeps LF.
    let text = form.rules.replace("\r\n", "\n");
    match call(&state, move |h| h.put_access_rules(&actor, &text)).await {
        Ok(_) => Redirect::to("/policies").into_response(),
        Err(e) => error_page(&user, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct PurposesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purposes: String,
}

/// Checks and puts new purposes in force, then shows them.
pub(crate) async fn save_purposes(
    State(state): State<AppState>,
    user: Signed,
    Form(form): Form<PurposesForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let actor = user.actor.clone();
    let text = form.purposes.replace("\r\n", "\n");
    match call(&state, move |h| h.put_purposes(&actor, &text)).await {
        Ok(_) => Redirect::to("/policies").into_response(),
        Err(e) => error_page(&user, &e),
    }
}
