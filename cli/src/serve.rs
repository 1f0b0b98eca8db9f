//! Running the server: `serve` and `demo`.

use std::net::SocketAddr;
use std::sync::Arc;

use hub::keys::{SealTo, Unlock};
use hub::{Hub, NewSubjectInput, PolicyFiles};
use serde_json::json;

use crate::args::{DemoArgs, Global, ServeArgs};
use crate::commands::default_identity_path;
use crate::output::Output;

const DEMO_SEED: u64 = 2024;
const DEMO_ADMIN: &str = "demo-admin";

/// Resolves when the process gets Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Reloads the policy files on SIGHUP; a bad edit is logged and the old rules stay.
fn spawn_policy_reloader(hub: Arc<Hub>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let hub = hub.clone();
            match tokio::task::spawn_blocking(move || hub.reload_policies()).await {
                Ok(Ok(rules)) => tracing::info!(rules, "policy files reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "policy reload refused; the previous rules stay in force")
                }
                Err(e) => tracing::error!(error = %e, "policy reload failed"),
            }
        }
    });
}

/// Runs the retention sweep a minute after start and then once a day, as the local admin.
fn spawn_retention_schedule(hub: Arc<Hub>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(24 * 3600),
        );
        loop {
            tick.tick().await;
            let hub = hub.clone();
            match tokio::task::spawn_blocking(move || {
                hub.retention_run(&hub.local_actor(), false, None)
            })
            .await
            {
                Ok(Ok(r)) => tracing::info!(
                    holds_ended = r.holds_ended.len(),
                    requests_purged = r.requests_purged,
                    "retention sweep"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                Err(e) => tracing::error!(error = %e, "retention sweep failed"),
            }
        }
    });
}

/// The Art. 19 delivery worker: sends due webhook notifications every second (at once again
/// while a run finds a full batch), so a restart picks up whatever was pending.
fn spawn_delivery_worker(hub: Arc<Hub>) {
    const BATCH: usize = 200;
    tokio::spawn(async move {
        loop {
            let h = hub.clone();
            let full = match tokio::task::spawn_blocking(move || h.deliver_due(BATCH)).await {
                Ok(Ok(r)) => {
                    let n = r.delivered + r.retrying + r.to_person;
                    if n > 0 {
                        tracing::info!(
                            delivered = r.delivered,
                            retrying = r.retrying,
                            to_person = r.to_person,
                            "notifications sent"
                        );
                    }
                    n as usize >= BATCH
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "notification delivery failed");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "notification delivery failed");
                    false
                }
            };
            if !full {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Serves `hub` on `addr` until a shutdown signal; `ready` is called with the bound address.
fn run_server(
    hub: Hub,
    addr: SocketAddr,
    config: server::ServerConfig,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let hub = Arc::new(hub);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e} (is another server using that port? try --addr 127.0.0.1:0)"))?;
        let local = listener.local_addr()?;
        hub.set_owner_note(&format!(
            "a running Steward server at http://{local} (pid {})",
            std::process::id()
        ))?;
        ready(local);
        spawn_policy_reloader(hub.clone());
        spawn_retention_schedule(hub.clone());
        spawn_delivery_worker(hub.clone());
        let state = server::AppState::new(hub.clone(), &config);
        server::spawn_auth_summaries(&state);
        let router = server::router(state.clone(), &config);
        let result = server::serve(listener, router, shutdown_signal()).await;
        state.audit_auth_windows(true).await;
        hub.clear_owner_note();
        result?;
        Ok(())
    })
}

pub(crate) fn serve(g: &Global, args: &ServeArgs, out: Output) -> anyhow::Result<()> {
    let dir = crate::data_dir(g)?;
    let hub = Hub::open_with(&dir, &crate::unlock_for(&dir, g)?, args.limits.audit())?;
    let dir = hub.data_dir();
    run_server(hub, args.addr, args.limits.config(), |local| {
        out.emit(
            &json!({"url": format!("http://{local}"), "data": dir}),
            || {
                format!(
                    "Steward is serving {} at http://{local} (Ctrl-C to stop)",
                    dir.display()
                )
            },
        );
    })
}

/// Written in the demo directory once its constituents are all loaded: from then on the demo
/// only reuses them (an erased constituent is not replaced by a new one).
const DEMO_LOADED: &str = "demo.loaded";

pub(crate) fn demo(g: &Global, args: &DemoArgs, out: Output) -> anyhow::Result<()> {
    let dir = g.data.clone().unwrap_or_else(|| "steward-demo".into());
    // The address first: a taken port must not cost a data load and a new token.
    if !args.no_serve {
        std::net::TcpListener::bind(args.addr).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (is another server using that port? try --addr 127.0.0.1:0); nothing was changed",
                args.addr
            )
        })?;
    }
    let initialised = dir.join(hub::keys::layout::SEAL).exists();
    let unlock = match (&g.identity, &g.passphrase_file) {
        (_, Some(p)) => {
            Unlock::Passphrase(hub::keys::read_passphrase_file(p).map_err(hub::Error::from)?)
        }
        (Some(i), None) => Unlock::Identity(i.clone()),
        (None, None) if initialised => crate::unlock_for(&dir, g)?,
        (None, None) => Unlock::Identity(default_identity_path(&dir)),
    };
    if !initialised {
        let seal_to = match &unlock {
            Unlock::Identity(p) => SealTo::Identity(p.clone()),
            Unlock::Passphrase(s) => SealTo::Passphrase(s.clone()),
        };
        let policies = if std::path::Path::new("policies/schema.toml").exists() {
            PolicyFiles::load(std::path::Path::new("policies"))?
        } else {
            PolicyFiles::defaults()
        };
        Hub::init(&dir, &seal_to, &policies)?;
        if let Unlock::Identity(p) = &unlock {
            out.note(&format!(
                "Created demo data directory {} (identity file {} beside it: fine for a demo; in production keep the identity elsewhere)",
                dir.display(),
                p.display()
            ));
        }
    } else {
        out.note(&format!("Reusing demo data directory {}", dir.display()));
    }
    let hub = Hub::open(&dir, &unlock)?;
    let actor = hub.local_actor();
    let existing = count_subjects(&hub)?;
    // A load cut short carries on; a finished one is never topped up.
    if existing < args.size && !dir.join(DEMO_LOADED).exists() {
        out.note(&format!(
            "Loading {} synthetic constituents (seed {DEMO_SEED}) with gifts and consent histories...",
            args.size - existing
        ));
        let mut generator = hub::sample::Generator::new(DEMO_SEED).skip(existing);
        let mut loaded = existing;
        while loaded < args.size {
            let n = (args.size - loaded).min(500);
            let batch = (&mut generator)
                .take(n)
                .map(|c| NewSubjectInput::from_json(c.to_json()))
                .collect::<Result<Vec<_>, _>>()?;
            let ids = hub.create_subjects(&actor, batch)?;
            for (k, id) in ids.iter().enumerate() {
                seed_consent(&hub, &actor, id, loaded + k)?;
            }
            loaded += n;
        }
        // A few subject-rights requests, so that a DPO's work queue shows the legal clock: one
        // overdue, one under way, one received today.
        let first = hub.list_subjects(&actor, None, 3)?;
        for (id, (kind, days_ago)) in
            first
                .iter()
                .zip([("access", 40), ("erasure", 12), ("access", 0)])
        {
            hub.open_request(
                &actor,
                id,
                kind,
                "uk-gdpr",
                Some(&day_before_today(days_ago)),
            )?;
        }
        // A mailing house without a webhook that received the stewardship mailing list: the
        // register has an entry, and erasing or correcting one of them gives the DPO a task.
        hub.add_registered_recipient(
            &actor,
            "Demo Mailing House Ltd",
            hub::RecipientInput {
                role: Some("processor".into()),
                purposes: Some(vec!["donor-stewardship".into()]),
                groups: Some(vec!["identity".into(), "contact".into()]),
                legal_basis: Some("Art. 28 processing contract".into()),
                contract: Some("DPA-DEMO-1".into()),
                country: Some("GB".into()),
                ..Default::default()
            },
        )?;
        hub.segment_for(
            &actor,
            "donor-stewardship",
            None,
            Some("Demo Mailing House Ltd"),
            &mut |_| Ok(()),
        )?;
        std::fs::write(
            dir.join(DEMO_LOADED),
            format!("{} constituents loaded (seed {DEMO_SEED})\n", args.size),
        )?;
    }
    let subjects = count_subjects(&hub)?;
    let (_, token) = match hub.reissue_token(&actor, DEMO_ADMIN) {
        Ok(t) => t,
        Err(e) if e.kind() == hub::ErrorKind::NotFound => {
            hub.add_user(&actor, DEMO_ADMIN, hub::Role::Admin)?
        }
        Err(e) => return Err(e.into()),
    };
    let sign_ins = demo_sign_ins(&hub, &actor)?;
    let sign_in_lines = sign_ins
        .iter()
        .map(|(user, role, password)| format!("    {user:<20} {:<13} {password}", role.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    let sign_in_json: Vec<_> = sign_ins
        .iter()
        .map(|(user, role, password)| json!({"user": user, "role": role, "password": password}))
        .collect();
    if args.no_serve {
        out.emit(
            &json!({"data": dir, "subjects": subjects, "token": token, "sign_ins": sign_in_json}),
            || {
                format!(
                    "Demo data ready in {} ({subjects} subjects). Admin token: {token}",
                    dir.display()
                )
            },
        );
        return Ok(());
    }
    run_server(hub, args.addr, args.limits.config(), |local| {
        out.emit(
            &json!({"url": format!("http://{local}"), "console": format!("http://{local}/"),
                    "data": dir, "subjects": subjects, "token": token, "sign_ins": sign_in_json}),
            || {
                format!(
                    "\nSteward demo: {subjects} synthetic constituents in {}\n\
                     \n  Console:      open http://{local}/ in a browser and sign in as one of\n\
                     \n{sign_in_lines}\n\
                     \n  (demo passwords, new at every start: a role each, to see what each may see)\n\
                     \n  API:          http://{local}/v1 (OpenAPI at /openapi.json)\n  Admin token:  {token}\n\
                     \nTry:\n  curl -H 'Authorization: Bearer {token}' 'http://{local}/v1/subjects?limit=3'\n\
                     \nCtrl-C stops the server; run the demo again to reuse the same data (with a new token).",
                    dir.display()
                )
            },
        );
    })
}

/// The date `days` days before today (UTC), as YYYY-MM-DD.
fn day_before_today(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian, by 400-year eras).
    let z = (now - days.min(now)) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// One console sign-in per role for the demo, each with a fresh random password (set again at
/// every start, like the admin token): (user, role, password).
fn demo_sign_ins(
    hub: &Hub,
    actor: &hub::Actor,
) -> anyhow::Result<Vec<(String, hub::Role, String)>> {
    let mut out = Vec::new();
    for role in hub::Role::ALL {
        let user = format!("demo-{role}");
        let mut bytes = [0u8; 12];
        if !hub::keys::fill_random(&mut bytes) {
            anyhow::bail!("the system random generator failed");
        }
        // Four groups of four letters and digits (no look-alikes): easy to type, about 60 bits.
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
        let password = bytes
            .chunks(3)
            .map(|c| {
                c.iter()
                    .flat_map(|b| [b % 31, (b / 31) % 31])
                    .take(4)
                    .map(|i| ALPHABET[usize::from(i)] as char)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("-");
        match hub.set_password(actor, &user, &password) {
            Ok(_) => {}
            Err(e) if e.kind() == hub::ErrorKind::NotFound => {
                hub.add_user_with_password(actor, &user, role, Some(&password))?;
            }
            Err(e) => return Err(e.into()),
        }
        out.push((user, role, password));
    }
    Ok(out)
}

/// A realistic consent history for the demo's constituent number `n`: most gave email
/// consent at sign-up, some withdrew it later, some objected to post, a few gave phone
/// consent; the rest have none (fundraising post then rests on legitimate interests).
fn seed_consent(
    hub: &Hub,
    actor: &hub::Actor,
    id: &domain::SubjectId,
    n: usize,
) -> anyhow::Result<()> {
    let year = 2019 + (n % 6);
    let month = 1 + (n % 12);
    let at = |day: usize| Some(format!("{year}-{month:02}-{day:02}T10:00:00Z"));
    let event =
        |purpose: &str, event: &str, day: usize, source: &str, method: &str| hub::NewConsent {
            purpose: purpose.into(),
            event: event.into(),
            at: at(day),
            method: Some(method.into()),
            source: source.into(),
            notice_version: Some("privacy-notice-v3".into()),
            contact_point: (purpose == "newsletter-email").then(|| "email".into()),
            ..Default::default()
        };
    let mut events = Vec::new();
    match n % 10 {
        0..=5 => events.push(event(
            "newsletter-email",
            "given",
            3,
            "website-signup",
            "form",
        )),
        6 => {
            events.push(event(
                "newsletter-email",
                "given",
                3,
                "website-signup",
                "form",
            ));
            events.push(event(
                "newsletter-email",
                "withdrawn",
                20,
                "unsubscribe-link",
                "email-link",
            ));
        }
        7 => events.push(event(
            "fundraising-post",
            "objected",
            11,
            "phone-call",
            "phone",
        )),
        _ => {}
    }
    if n.is_multiple_of(5) {
        events.push(event(
            "fundraising-phone",
            "given",
            5,
            "event-sign-up-sheet",
            "paper",
        ));
    }
    for e in events {
        hub.record_consent(actor, id, e)?;
    }
    Ok(())
}

fn count_subjects(hub: &Hub) -> anyhow::Result<usize> {
    let actor = hub.local_actor();
    let mut n = 0;
    let mut after = None;
    loop {
        let page = hub.list_subjects(&actor, after.as_ref(), 1000)?;
        n += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(*last),
            _ => return Ok(n),
        }
    }
}
