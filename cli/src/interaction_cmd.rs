//! `steward interaction ...`, `steward analytics ...` and `steward subject timeline`.

use hub::{AnalyticsQuery, InteractionView, NewInteraction};
use serde_json::{json, Value};

use crate::args::{AnalyticsArgs, AnalyticsCmd, Global, InteractionCmd};
use crate::commands::read_stdin_json;
use crate::output::Output;
use crate::{actor_for, open_hub, parse_id, usage};

fn parse_interaction_id(raw: &str) -> anyhow::Result<domain::InteractionId> {
    raw.parse().map_err(|_| {
        usage(
            "bad_id",
            "expected an interaction id (26 characters, as printed when it was added)",
        )
    })
}

fn line(i: &InteractionView) -> String {
    let f = |k: &str| match i.fields.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    };
    format!(
        "{}  {}  {} {}  {}",
        i.id,
        f("occurred_at"),
        f("kind"),
        f("direction"),
        f("summary")
    )
}

pub(crate) fn interaction(g: &Global, cmd: InteractionCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        InteractionCmd::Add { subjects } => {
            let ids = subjects
                .iter()
                .map(|s| parse_id(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut input = NewInteraction::from_json(read_stdin_json()?, None)?;
            for id in ids.into_iter().rev() {
                if !input.participants.contains(&id) {
                    input.participants.insert(0, id);
                }
            }
            let hub = open_hub(g)?;
            let id = hub.add_interaction(&actor_for(&hub, g)?, input)?;
            out.emit(&json!({"id": id}), || id.to_string());
        }
        InteractionCmd::List { subject, purpose } => {
            let id = parse_id(&subject)?;
            let hub = open_hub(g)?;
            let items = hub.list_interactions(&actor_for(&hub, g)?, &id, purpose.as_deref())?;
            out.emit(&json!({"items": items}), || {
                if items.is_empty() {
                    "no interactions".into()
                } else {
                    items.iter().map(line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        InteractionCmd::Show { id } => {
            let id = parse_interaction_id(&id)?;
            let hub = open_hub(g)?;
            let view = hub.get_interaction(&actor_for(&hub, g)?, &id)?;
            out.emit(&json!(view), || {
                let mut s = format!("{} (version {})", view.id, view.version);
                s.push_str(&format!(
                    "\n  {:<18} {}",
                    "participants",
                    view.participants
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                for (k, v) in &view.fields {
                    let shown = match v {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    s.push_str(&format!("\n  {k:<18} {shown}"));
                }
                if !view.withheld.is_empty() {
                    s.push_str(&format!("\n  withheld: {}", view.withheld.join(", ")));
                }
                s
            });
        }
        InteractionCmd::Update { id, if_version } => {
            let id = parse_interaction_id(&id)?;
            let Value::Object(patch) = read_stdin_json()? else {
                return Err(usage("bad_json", "expected a JSON object of fields"));
            };
            let hub = open_hub(g)?;
            let version = hub.update_interaction(&actor_for(&hub, g)?, &id, patch, if_version)?;
            out.emit(&json!({"id": id, "version": version}), || {
                format!("{id} updated (version {version})")
            });
        }
        InteractionCmd::Import {
            file,
            profile,
            dry_run,
        } => {
            let f = std::fs::File::open(&file)
                .map_err(|e| usage("not_found", format!("{}: {e}", file.display())))?;
            let hub = open_hub(g)?;
            let r =
                hub.import_interactions(&actor_for(&hub, g)?, f, profile.as_deref(), dry_run)?;
            out.emit(&json!(r), || {
                let mut s = format!(
                    "{} rows ({} profile): {} interactions {}, {} already present, {} refused",
                    r.rows,
                    r.profile,
                    r.added,
                    if r.dry_run {
                        "would be added (dry run)"
                    } else {
                        "added"
                    },
                    r.already_present,
                    r.refused.len()
                );
                if r.kinds_defaulted > 0 {
                    s.push_str(&format!(
                        "\n{} activities of a type Steward has no kind for were added as notes",
                        r.kinds_defaulted
                    ));
                }
                if !r.unmapped_columns.is_empty() {
                    s.push_str(&format!(
                        "\ncolumns not read: {}",
                        r.unmapped_columns.join(", ")
                    ));
                }
                for x in r.refused.iter().take(20) {
                    s.push_str(&format!(
                        "\n  row {}: {}{}",
                        x.row,
                        x.code,
                        x.column
                            .as_deref()
                            .map(|c| format!(" (column {c})"))
                            .unwrap_or_default()
                    ));
                }
                s
            });
            if !r.refused.is_empty() {
                return Err(crate::Quiet(crate::exit::ROWS_REFUSED).into());
            }
        }
        InteractionCmd::Complete {
            id,
            outcome,
            if_version,
        } => {
            let id = parse_interaction_id(&id)?;
            let hub = open_hub(g)?;
            let version =
                hub.complete_interaction(&actor_for(&hub, g)?, &id, outcome, if_version)?;
            out.emit(
                &json!({"id": id, "version": version, "status": "done"}),
                || format!("{id} done (version {version})"),
            );
        }
    }
    Ok(())
}

fn query(a: AnalyticsArgs) -> AnalyticsQuery {
    AnalyticsQuery {
        year: a.year,
        from: a.from,
        to: a.to,
        fund: a.fund,
        campaign: a.campaign,
        appeal: a.appeal,
        ..AnalyticsQuery::default()
    }
}

fn pct(v: &Value) -> String {
    match v.get("rate").and_then(Value::as_f64) {
        Some(r) => format!("{:.1}% ({} of {})", r * 100.0, v["retained"], v["base"]),
        None if v.get("base").is_some_and(Value::is_null) => "suppressed (small numbers)".into(),
        None => "no donors to retain".into(),
    }
}

fn coverage_line(v: &Value) -> String {
    let c = &v["coverage"];
    format!(
        "{} donors counted under the {} purpose; {} left out (objection or restriction){}",
        c["donors"],
        c["purpose"].as_str().unwrap_or("analytics"),
        c["excluded"],
        if c["suppression"] == true {
            "; cells under 10 people suppressed"
        } else {
            ""
        }
    )
}

pub(crate) fn analytics(g: &Global, cmd: AnalyticsCmd, out: Output) -> anyhow::Result<()> {
    let hub = open_hub(g)?;
    let actor = actor_for(&hub, g)?;
    match cmd {
        AnalyticsCmd::Retention(a) => {
            let r = hub.analytics_fep(&actor, &query(a))?;
            let v = json!(r);
            out.emit(&v, || {
                format!(
                    "Retention {} to {} against the period before:\n  overall  {}\n  new      {}\n  repeat   {}\n{}",
                    v["period"]["from"].as_str().unwrap_or(""),
                    v["period"]["to"].as_str().unwrap_or(""),
                    pct(&v["overall"]),
                    pct(&v["new"]),
                    pct(&v["repeat"]),
                    coverage_line(&v)
                )
            });
        }
        AnalyticsCmd::Fep {
            args,
            epsilon: Some(epsilon),
        } => {
            let r = hub.analytics_fep_private(&actor, &query(args), epsilon)?;
            let v = json!(r);
            out.emit(&v, || {
                let mut s = format!(
                    "Differentially private donor counts (epsilon {epsilon}; {:.3} of the budget left):\n",
                    r.budget_left
                );
                for (k, n) in &r.counts {
                    s.push_str(&format!("  {k:<18} {n:>8}\n"));
                }
                let pct = |x: Option<f64>| x.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
                s.push_str(&format!(
                    "  retention: overall {}, new {}, repeat {}",
                    pct(r.overall),
                    pct(r.new),
                    pct(r.repeat)
                ));
                s
            });
        }
        AnalyticsCmd::Fep {
            args: a,
            epsilon: None,
        } => {
            let r = hub.analytics_fep(&actor, &query(a))?;
            let v = json!(r);
            out.emit(&v, || {
                let cell = |k: &str| {
                    let c = &v[k];
                    format!(
                        "  {:<16} {:>8} donors  {:>14}",
                        k,
                        c["donors"].as_u64().map_or("-".into(), |n| n.to_string()),
                        c["amount"].as_str().unwrap_or("-")
                    )
                };
                let mut s = format!(
                    "FEP {} to {}:\n",
                    v["period"]["from"].as_str().unwrap_or(""),
                    v["period"]["to"].as_str().unwrap_or("")
                );
                for k in [
                    "new_donors",
                    "recaptured",
                    "upgraded",
                    "same",
                    "downgraded",
                    "lapsed_new",
                    "lapsed_repeat",
                    "donors",
                    "previous_donors",
                ] {
                    s.push_str(&cell(k));
                    s.push('\n');
                }
                s.push_str(&format!(
                    "  gain/loss ratio: donors {}, money {}\n  retention: overall {}, new {}, repeat {}\n{}",
                    v["donor_gain_loss_ratio"],
                    v["money_gain_loss_ratio"],
                    pct(&v["overall"]),
                    pct(&v["new"]),
                    pct(&v["repeat"]),
                    coverage_line(&v)
                ));
                s
            });
        }
        AnalyticsCmd::Lapsed {
            args,
            lookback,
            list,
        } => {
            let mut q = query(args);
            q.lookback = Some(lookback);
            q.list = list;
            let r = hub.analytics_lapsed(&actor, &q)?;
            let v = json!(r);
            out.emit(&v, || {
                format!(
                    "LYBUNT {} donors ({}), SYBUNT {} donors ({}), looking back {} periods\n{}",
                    v["lybunt"]["donors"],
                    v["lybunt"]["amount"].as_str().unwrap_or("-"),
                    v["sybunt"]["donors"],
                    v["sybunt"]["amount"].as_str().unwrap_or("-"),
                    lookback,
                    coverage_line(&v)
                )
            });
        }
        AnalyticsCmd::Stewardship(a) => {
            let r = hub.analytics_stewardship(&actor, &query(a))?;
            let v = json!(r);
            out.emit(&v, || {
                format!(
                    "Donors of {} to {}, and whether they gave again by {}:\n  contacted      {}\n  not contacted  {}\n  outbound interactions with them: {}\n{}",
                    v["previous"]["from"].as_str().unwrap_or(""),
                    v["previous"]["to"].as_str().unwrap_or(""),
                    v["period"]["to"].as_str().unwrap_or(""),
                    pct(&v["contacted"]),
                    pct(&v["not_contacted"]),
                    v["outbound_interactions"].as_u64().map_or("suppressed".into(), |n| n.to_string()),
                    coverage_line(&v)
                )
            });
        }
        AnalyticsCmd::Rfm(a) => {
            let r = hub.analytics_rfm(&actor, &query(a))?;
            let v = json!(r);
            out.emit(&v, || {
                format!(
                    "{} donors scored; recency {}, frequency {}, money {} (donors per score 1..5)\n  average gift {}, revenue per donor {}, lifetime value {} (estimate {})\n{}",
                    v["donors"],
                    v["recency"],
                    v["frequency"],
                    v["monetary"],
                    v["average_gift"].as_str().unwrap_or("-"),
                    v["revenue_per_donor"].as_str().unwrap_or("-"),
                    v["lifetime_value"].as_str().unwrap_or("-"),
                    v["lifetime_value_estimate"].as_str().unwrap_or("-"),
                    coverage_line(&v)
                )
            });
        }
    }
    Ok(())
}

pub(crate) fn timeline(g: &Global, id: &str, out: Output) -> anyhow::Result<()> {
    let id = parse_id(id)?;
    let hub = open_hub(g)?;
    let t = hub.timeline(&actor_for(&hub, g)?, &id)?;
    out.emit(&json!(t), || {
        let mut s: Vec<String> = t
            .items
            .iter()
            .map(|i| format!("{}  {:<11} {}", i.at, i.kind, i.title))
            .collect();
        if s.is_empty() {
            s.push("nothing yet".into());
        }
        if !t.omitted.is_empty() {
            s.push(format!(
                "(not shown to your role: {})",
                t.omitted.join(", ")
            ));
        }
        s.join("\n")
    });
    Ok(())
}
