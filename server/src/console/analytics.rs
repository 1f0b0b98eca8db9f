//! Donor analytics: the FEP table of a year and retention over the years as an SVG chart
//! drawn on the server (no script), from the hub's analytics under the `analytics` purpose.
//! Roles that may not read gifts see the small cells suppressed, as the hub returns them.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hub::{Cell, Fep, Rate};
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::call;
use super::{error_page, page, Signed};
use crate::AppState;

#[derive(Deserialize)]
pub(crate) struct YearQuery {
    year: Option<i32>,
}

const YEARS: i32 = 6;

fn count(c: &Cell) -> String {
    c.donors.map_or("suppressed".into(), |n| n.to_string())
}

fn money(c: &Cell) -> String {
    c.amount
        .map_or("suppressed".into(), |m| domain::Money(m).to_string())
}

fn rate(r: &Rate) -> String {
    match (r.rate, r.base) {
        (Some(x), _) => format!("{:.1}%", x * 100.0),
        (None, None) => "suppressed".into(),
        (None, Some(_)) => "no donors to retain".into(),
    }
}

/// One series of the chart: its name, colour and rate.
type Series = (&'static str, &'static str, fn(&Fep) -> &Rate);

/// Bars of overall, new and repeat retention per year.
fn chart(series: &[Fep]) -> Markup {
    let bar_w = 14;
    let gap = 18;
    let group_w = bar_w * 3 + gap;
    let h = 160;
    let width = 40 + group_w * series.len() as i32;
    let kinds: [Series; 3] = [
        ("overall", "#1f5f8b", |f| &f.overall),
        ("new", "#8b5a1f", |f| &f.new),
        ("repeat", "#2e7d32", |f| &f.repeat),
    ];
    html! {
        svg role="img" aria-labelledby="chart-title" width=(width) height=(h + 40)
            viewBox=(format!("0 0 {width} {}", h + 40)) xmlns="http://www.w3.org/2000/svg" {
            title #chart-title { "Donor retention by year: overall, new-donor and repeat-donor (see the table below)" }
            line x1="35" y1=(h) x2=(width) y2=(h) stroke="#444" {}
            @for pct in [0, 50, 100] {
                text x="0" y=(h - pct * h / 100 + 4) font-size="11" { (pct) "%" }
            }
            @for (i, f) in series.iter().enumerate() {
                @let x0 = 40 + group_w * i as i32;
                @for (k, (name, colour, get)) in kinds.iter().enumerate() {
                    @let r = get(f);
                    @if let Some(v) = r.rate {
                        @let bh = (v * h as f64).round() as i32;
                        rect x=(x0 + bar_w * k as i32) y=(h - bh) width=(bar_w - 2) height=(bh) fill=(colour) {
                            title { (f.period.start.year()) " " (name) ": " (format!("{:.1}%", v * 100.0)) }
                        }
                    }
                }
                text x=(x0) y=(h + 16) font-size="11" { (f.period.start.year()) }
            }
            @for (k, (name, colour, _)) in kinds.iter().enumerate() {
                rect x=(40 + 80 * k as i32) y=(h + 26) width="10" height="10" fill=(colour) {}
                text x=(54 + 80 * k as i32) y=(h + 35) font-size="11" { (name) }
            }
        }
    }
}

pub(crate) async fn show(
    State(state): State<AppState>,
    user: Signed,
    Query(q): Query<YearQuery>,
) -> Response {
    let this_year = time::OffsetDateTime::now_utc().year();
    let year = q.year.unwrap_or(this_year - 1).clamp(1900 + YEARS, 2200);
    let actor = user.actor.clone();
    let query = hub::AnalyticsQuery {
        year: Some(year),
        ..Default::default()
    };
    let report = match call(&state, move |h| {
        h.analytics_series(&actor, &query, year - YEARS + 1)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return error_page(&user, &e),
    };
    // Stewardship: a second read (its own audit event), shown below the trend.
    let actor = user.actor.clone();
    let query = hub::AnalyticsQuery {
        year: Some(year),
        ..Default::default()
    };
    let stewardship = match call(&state, move |h| h.analytics_stewardship(&actor, &query)).await {
        Ok(r) => Some(r.figures),
        // A purpose that does not list interactions: the section says so instead.
        Err(hub::Error::ConsentRequired { .. }) => None,
        Err(e) => return error_page(&user, &e),
    };
    let series = &report.figures;
    let Some(t) = series.last() else {
        return error_page(&user, &hub::Error::Internal("empty series".into()));
    };
    let c = &report.coverage;
    let rows: [(&str, &str, &Cell); 9] = [
        ("New donors", "gave for the first time", &t.new_donors),
        ("Recaptured", "gave before, not last year", &t.recaptured),
        (
            "Upgraded",
            "gave more than last year (amount: the increase)",
            &t.upgraded,
        ),
        ("Same", "gave the same as last year", &t.same),
        (
            "Downgraded",
            "gave less than last year (amount: the decrease)",
            &t.downgraded,
        ),
        (
            "Lapsed new",
            "first gave last year, not this year (amount: last year's)",
            &t.lapsed_new,
        ),
        (
            "Lapsed repeat",
            "gave last year and before, not this year",
            &t.lapsed_repeat,
        ),
        ("Donors this year", "", &t.donors),
        ("Donors last year", "", &t.previous_donors),
    ];
    let body = html! {
        form method="get" action="/analytics" {
            label for="year" { "Year" }
            " "
            input #year type="number" name="year" min="1900" max="2200" value=(year);
            " "
            button type="submit" { "Show" }
        }
        p.help {
            (c.donors) " donors counted under the " (c.purpose) " purpose; "
            (c.excluded) " left out because they objected or asked for restriction."
            @if let Some(cur) = &c.currency { " Money in " (cur) "." }
            @if c.suppression { " Cells under " (hub::MIN_CELL) " people, and cells that would let them be worked out, are suppressed for your role." }
        }
        section aria-labelledby="fep" {
            h2 #fep { "Gains and losses, " (year) " against " (year - 1) " (Fundraising Effectiveness Project)" }
            table {
                thead { tr { th scope="col" { "Group" } th scope="col" { "Donors" } th scope="col" { "Amount" } } }
                tbody {
                    @for (name, help, cell) in rows {
                        tr {
                            th scope="row" { (name) @if !help.is_empty() { br; span.help { (help) } } }
                            td { (count(cell)) }
                            td { (money(cell)) }
                        }
                    }
                }
            }
            p {
                "Retention: overall " (rate(&t.overall)) ", new donors " (rate(&t.new)) ", repeat donors " (rate(&t.repeat)) ". "
                "Gain/loss ratio: donors " (t.donor_gain_loss_ratio.map_or("-".into(), |r| format!("{r:.2}")))
                ", money " (t.money_gain_loss_ratio.map_or("-".into(), |r| format!("{r:.2}"))) "."
            }
        }
        section aria-labelledby="trend" {
            h2 #trend { "Retention over the years" }
            (chart(series))
            table {
                caption { "Retention by year (the chart's figures)" }
                thead { tr { th scope="col" { "Year" } th scope="col" { "Overall" } th scope="col" { "New donors" } th scope="col" { "Repeat donors" } } }
                tbody {
                    @for f in series {
                        tr { th scope="row" { (f.period.start.year()) } td { (rate(&f.overall)) } td { (rate(&f.new)) } td { (rate(&f.repeat)) } }
                    }
                }
            }
        }
        section aria-labelledby="stewardship" {
            h2 #stewardship { "Stewardship: did contact keep donors?" }
            @match &stewardship {
                Some(st) => {
                    table {
                        caption { (year - 1) "'s donors, by whether they were contacted (an outbound call, email, letter or meeting from the start of " (year - 1) " to the end of " (year) "), and how many gave again in " (year) }
                        thead { tr { th scope="col" { "Donors of " (year - 1) } th scope="col" { "Donors" } th scope="col" { "Gave again" } th scope="col" { "Retention" } } }
                        tbody {
                            @for (name, r) in [("Contacted", &st.contacted), ("Not contacted", &st.not_contacted)] {
                                tr {
                                    th scope="row" { (name) }
                                    td { (r.base.map_or("suppressed".into(), |n| n.to_string())) }
                                    td { (r.retained.map_or("suppressed".into(), |n| n.to_string())) }
                                    td { (rate(r)) }
                                }
                            }
                        }
                    }
                }
                None => { p { "The analytics purpose does not list interactions (purposes.toml), so contact is not counted." } }
            }
        }
    };
    page(StatusCode::OK, "Donor analytics", Some(&user), body)
}
