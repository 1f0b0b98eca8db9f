//! Screen 8, policies: the purposes with their lawful basis and fields, and each role's
//! permissions as the hub decides them (the decision table of `policies/policy.csv`). Read
//! only: policies change in the data directory's files (then `SIGHUP` or a restart).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use hub::{Action, Role, OBJECTS};
use maud::html;

use super::{page, Signed};
use crate::AppState;

/// The purposes and the decision table.
pub(crate) async fn show(State(state): State<AppState>, user: Signed) -> Response {
    let purposes = state.hub.purposes().all().to_vec();
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
    };
    page(StatusCode::OK, "Policies", Some(&user), body)
}
