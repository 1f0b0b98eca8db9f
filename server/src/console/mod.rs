//! The web console: server-rendered HTML (maud, checked at compile time) over the same hub
//! calls as the API, for people who are not programmers.
//!
//! It decides nothing itself: every page is a hub call made as the signed-in principal, with
//! the hub's authorisation, consent gate and audit event. What it adds is the browser's side of
//! the door: password sign-in (argon2id, lockout in `access-control`), a session cookie
//! (HttpOnly, SameSite=Strict, Secure behind TLS), a CSRF token in every form, and headers
//! that forbid inline script, framing, caching and cross-site form posts (`Content-Security-Policy: default-src
//! 'self'`). htmx 2 is vendored and served from the binary; every page works without it.
//!
//! Forms that change something are POST, then a redirect (303). Searches for a person are
//! POST too, answered directly: a search term is a personal value and must not end up in a
//! URL (browser history, proxy logs). Filters of other lists (the audit log) are in the URL.
//!
//! Layout:
//! - this file: the routes, the session extractor, CSRF, headers, static files, the layout.
//! - `pages`: the screens (work queue, find, constituent, audit).

mod analytics;
mod edit;
mod imports;
mod pages;
mod policies;
mod requests;
mod review;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hub::{Actor, Channel, Role};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use crate::{AppState, RequestId};

const SESSION_COOKIE: &str = "steward_session";
const HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
const CSS: &str = include_str!("../../assets/console.css");
/// The path htmx is served at; the version in the name lets it be cached for good.
const HTMX_PATH: &str = "/static/htmx-2.0.11.min.js";
const CSS_PATH: &str = "/static/console.css";
/// How long a failed sign-in waits before it is answered (on top of argon2's own cost).
const FAILED_SIGN_IN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The console's routes, with their headers.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(sign_in_page))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/home", get(pages::home))
        .route("/find", get(pages::find_form).post(pages::find))
        .route("/subjects/{id}", get(pages::subject))
        .route("/subjects/{id}/reveal", post(pages::reveal))
        .route("/subjects/{id}/edit", get(edit::form).post(edit::save))
        .route("/audit", get(pages::audit))
        .route("/audit/export.csv", get(pages::audit_export))
        .route("/audit/verify", post(pages::audit_verify))
        .route("/audit/checkpoint", post(pages::audit_checkpoint))
        .route("/policies", get(policies::show))
        .route("/analytics", get(analytics::show))
        .route("/recipients", get(pages::recipients))
        .route("/policies/rules", post(policies::save_rules))
        .route("/policies/purposes", post(policies::save_purposes))
        .route("/subjects/{id}/consent", post(pages::record_consent))
        .route("/subjects/{id}/erase", post(pages::erase))
        .route("/imports", get(imports::list).post(imports::upload))
        .route("/imports/{id}", get(imports::show))
        .route("/imports/{id}/commit", post(imports::commit))
        .route("/imports/{id}/mapping", post(imports::save_mapping))
        .route("/imports/{id}/report.csv", get(imports::report))
        .route("/imports/{id}/undo", post(imports::undo))
        .route("/review", get(review::list))
        .route("/review/accept-safe", post(review::accept_safe))
        .route(
            "/review/{item}",
            get(review::show_item).post(review::decide),
        )
        .route("/requests", get(requests::list).post(requests::open))
        .route("/requests/{id}", get(requests::show))
        .route("/requests/{id}/step", post(requests::step))
        .route("/requests/{id}/package", post(requests::package))
        .route("/requests/{id}/erase", post(requests::erase))
        .route("/notifications/{id}/done", post(pages::notification_done))
        .route("/subjects/{id}/certificate", get(requests::certificate))
        .route(
            HTMX_PATH,
            get(|| async { static_file(HTMX, "text/javascript") }),
        )
        .route(
            CSS_PATH,
            get(|| async { static_file(CSS.as_bytes(), "text/css") }),
        )
        .layer(axum::middleware::from_fn(headers))
}

fn static_file(bytes: &'static [u8], kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
        .into_response()
}

/// The console's security headers: no inline script or style, no framing, no referrer, and
/// pages never cached (they hold personal data).
async fn headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = if cross_site_post(&req) {
        message_page(
            StatusCode::FORBIDDEN,
            None,
            "This form cannot be accepted",
            "It was sent from another site. Nothing was changed.",
        )
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with our
    // own form posts, which the cross-site check refuses. Nothing goes to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A POST whose `Origin` (which browsers send with every form post) is not this server: a
/// cross-site form, refused before anything reads it. This also covers the sign-in form,
/// which has no session and so no CSRF token (a forged sign-in into the attacker's account).
fn cross_site_post(req: &Request) -> bool {
    if req.method() != axum::http::Method::POST {
        return false;
    }
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// True when the request reached us over TLS (a proxy in front says so): cookies are then
/// marked Secure. A forged header only makes the cookie stricter.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut c = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("a session cookie is ASCII")
}

fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A signed-in console user: the actor its hub calls are made as, and its session.
pub(crate) struct Signed {
    pub(crate) actor: Actor,
    token: String,
    pub(crate) csrf: String,
    /// Whether the role may read the audit log (the hub's answer; for the navigation only).
    may_audit: bool,
    /// Whether the role may read subject-rights requests (likewise).
    pub(crate) may_requests: bool,
    /// Whether the role may decide review items (likewise).
    may_review: bool,
    /// Whether the role may import (likewise).
    may_import: bool,
    /// Whether the role may read analytics (likewise).
    may_analytics: bool,
    /// Whether the role may read the register of recipients (likewise).
    may_recipients: bool,
}

impl Signed {
    pub(crate) fn role(&self) -> Role {
        self.actor.principal.role
    }

    /// The refusal of a form whose CSRF token is not this session's; `None` when it is.
    pub(crate) fn csrf_refusal(&self, state: &AppState, given: &str) -> Option<Response> {
        if state.hub.check_csrf(&self.token, given) {
            None
        } else {
            Some(message_page(
                StatusCode::FORBIDDEN,
                Some(self),
                "This form cannot be accepted",
                "It did not come from this session's pages (it may be from another tab, an old \
                 page or another site). Nothing was changed. Go back, reload the page and try \
                 again.",
            ))
        }
    }
}

/// Where an unauthenticated request is sent: the sign-in page, remembering the path (never
/// the query string) to come back to.
fn to_sign_in(parts: &Parts, ended: bool) -> Response {
    let path = parts.uri.path();
    let mut target = String::from("/?");
    if ended {
        target.push_str("ended=1&");
    }
    target.push_str("next=");
    target.push_str(&percent_encode(path));
    let mut resp = if parts.headers.contains_key("hx-request") {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(
            "hx-redirect",
            HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/")),
        );
        r
    } else {
        Redirect::to(&target).into_response()
    };
    if ended {
        resp.headers_mut().insert(
            header::SET_COOKIE,
            session_cookie("", Some(0), over_tls(&parts.headers)),
        );
    }
    resp
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Err(to_sign_in(parts, false));
        };
        let hub = state.hub.clone();
        let t = token.clone();
        let session = match tokio::task::spawn_blocking(move || hub.session(&t)).await {
            Ok(Ok(s)) => s,
            _ => return Err(to_sign_in(parts, true)),
        };
        if let Err(retry_after) = state.limiter.check(session.principal.id) {
            return Err(message_page(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "Too many requests",
                &format!("Please wait {retry_after} seconds and try again."),
            ));
        }
        let may_audit = state
            .hub
            .allows(session.principal.role, "audit", hub::Action::Read);
        let may_requests = state
            .hub
            .allows(session.principal.role, "requests", hub::Action::Read);
        let may_review = state
            .hub
            .allows(session.principal.role, "subject", hub::Action::Merge);
        let may_import = state
            .hub
            .allows(session.principal.role, "imports", hub::Action::Import);
        let may_analytics =
            state
                .hub
                .allows(session.principal.role, "analytics", hub::Action::Read);
        let may_recipients =
            state
                .hub
                .allows(session.principal.role, "recipients", hub::Action::Read);
        Ok(Signed {
            may_import,
            may_analytics,
            may_recipients,
            may_audit,
            may_requests,
            may_review,
            actor: Actor {
                principal: session.principal,
                channel: Channel::Http(peer(parts)),
                request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            },
            token,
            csrf: session.csrf,
        })
    }
}

/// The page around every screen: the navigation a role may use, and sign-out.
pub(crate) fn layout(title: &str, user: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx may not add a <style> element (the CSP forbids inline style), and shows
                // refusals and errors (4xx, 5xx) like any page instead of ignoring them.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}"#;
                title { (title) " · Steward" }
                link rel="stylesheet" href=(CSS_PATH);
                script src=(HTMX_PATH) defer {}
            }
            body hx-boost="true" {
                a.skip href="#main" { "Skip to the main content" }
                header.top {
                    span.brand { "Steward" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/home" { "Work queue" } }
                                li { a href="/find" { "Find a constituent" } }
                                @if u.may_requests { li { a href="/requests" { "Requests" } } }
                                @if u.may_import { li { a href="/imports" { "Imports" } } }
                                @if u.may_review { li { a href="/review" { "Review" } } }
                                @if u.may_analytics { li { a href="/analytics" { "Analytics" } } }
                                @if u.may_recipients { li { a href="/recipients" { "Recipients" } } }
                                @if u.may_audit { li { a href="/audit" { "Audit log" } } }
                                li { a href="/policies" { "Policies" } }
                            }
                        }
                        form.signout method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(u.csrf);
                            span { "Signed in as " strong { (u.actor.principal.name) } " (" (u.role()) ")" }
                            " "
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn page(
    status: StatusCode,
    title: &str,
    user: Option<&Signed>,
    body: Markup,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        layout(title, user, body).into_string(),
    )
        .into_response()
}

pub(crate) fn message_page(
    status: StatusCode,
    user: Option<&Signed>,
    title: &str,
    text: &str,
) -> Response {
    page(
        status,
        title,
        user,
        html! { p.notice role="alert" { (text) } },
    )
}

/// A file to download: its type, its name, its bytes (the page is not shown).
pub(crate) fn download(
    kind: &'static str,
    name: &str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    let mut resp = (StatusCode::OK, body.into()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut()
        .insert(header::CONTENT_DISPOSITION, disposition);
    resp
}

/// The id in a path (a constituent's or a request's), or the page saying it is not one.
pub(crate) fn path_id(
    user: &Signed,
    raw: &str,
    what: &str,
) -> Result<domain::SubjectId, Box<Response>> {
    raw.trim().parse().map_err(|_| {
        Box::new(message_page(
            StatusCode::NOT_FOUND,
            Some(user),
            "Not found",
            &format!("That is not {what}'s id (26 letters and digits)."),
        ))
    })
}

/// A hub error as a page: what happened in words, the status of the API's mapping.
pub(crate) fn error_page(user: &Signed, e: &hub::Error) -> Response {
    let status = crate::error::status_of(e.kind());
    let title = match e.kind() {
        hub::ErrorKind::Forbidden => "Not open to your role",
        hub::ErrorKind::NotFound => "Not found",
        hub::ErrorKind::Erased => "Erased",
        hub::ErrorKind::Invalid | hub::ErrorKind::BadRequest => "Please check what you entered",
        _ => "Something went wrong",
    };
    if status.is_server_error() {
        tracing::error!(error = %e, code = e.code(), "console request failed");
        return message_page(
            status,
            Some(user),
            title,
            "Steward could not do this; the server log has the details.",
        );
    }
    message_page(status, Some(user), title, &sentence(&e.to_string()))
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
    ended: Option<String>,
}

/// A path to return to after sign-in: one of ours, never another site.
/// A path of ours to return to after sign-in: it starts with one `/`, and holds no
/// backslash, whitespace or control character (browsers drop tabs and newlines from URLs,
/// so "/\t/evil.example" would become "//evil.example", another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n != "/"
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/home".into(),
    }
}

fn sign_in_form(next: &str, notice: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice { p.notice role="alert" { (n) } }
        form.signin method="post" action="/sign-in" hx-boost="false" {
            input type="hidden" name="next" value=(next);
            p {
                label for="username" { "User name" }
                input #username name="username" type="text" autocomplete="username" required autofocus;
            }
            p {
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
            }
            p { button type="submit" { "Sign in" } }
        }
        p.help { "Your administrator gives you a user name and sets your password (steward users password NAME)." }
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    // Already signed in: straight to the work queue.
    if let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_string) {
        let hub = state.hub.clone();
        if let Ok(Ok(_)) = tokio::task::spawn_blocking(move || hub.session(&token)).await {
            return Redirect::to(&safe_next(q.next.as_deref())).into_response();
        }
    }
    let notice = q
        .ended
        .is_some()
        .then_some("Your session has ended. Please sign in again.");
    page(
        StatusCode::OK,
        "Sign in",
        None,
        sign_in_form(&safe_next(q.next.as_deref()), notice),
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    Form(form): Form<SignInForm>,
) -> Response {
    let source = addr.ip().to_string();
    let next = safe_next(form.next.as_deref());
    if let Some(retry_after) = state.auth_failures.blocked(&source) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Sign in",
            None,
            sign_in_form(
                &next,
                Some(&format!(
                    "Too many failed sign-ins from this address. Please wait {retry_after} seconds."
                )),
            ),
        );
    }
    let hub = state.hub.clone();
    let src = source.clone();
    let rid = request_id.map(|r| r.0 .0);
    let outcome = tokio::task::spawn_blocking(move || {
        hub.sign_in(&src, rid.as_deref(), form.username.trim(), &form.password)
    })
    .await;
    match outcome {
        Ok(Ok(signed)) => {
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&signed.token, None, over_tls(&headers)),
            );
            resp
        }
        Ok(Err(e)) if e.kind() == hub::ErrorKind::Unauthenticated => {
            if let Some(refused) = state.auth_failures.failed(&source) {
                crate::audit_refusals(&state.hub, source.clone(), refused).await;
            }
            tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
            page(
                StatusCode::UNAUTHORIZED,
                "Sign in",
                None,
                sign_in_form(&next, Some(&sentence(&e.to_string()))),
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "sign-in failed");
            message_page(
                crate::error::status_of(e.kind()),
                None,
                "Sign-in is not possible now",
                "Steward could not record the sign-in; the server log has the details.",
            )
        }
        Err(_) => message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Sign-in is not possible now",
            "The server log has the details.",
        ),
    }
}

/// An error message as a sentence: capital first letter, full stop.
pub(crate) fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = c
        .next()
        .map(|f| f.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(c.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    user: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(resp) = user.csrf_refusal(&state, &form.csrf) {
        return resp;
    }
    let hub = state.hub.clone();
    let actor = user.actor.clone();
    let token = user.token.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || hub.sign_out(&actor, &token)).await {
        return error_page(&user, &e);
    }
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", Some(0), over_tls(&headers)),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_a_path_of_this_site_is_returned_to_after_sign_in() {
        assert_eq!(safe_next(Some("/subjects/01ABC")), "/subjects/01ABC");
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/",
            "/ /x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/home", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/home");
    }
}
