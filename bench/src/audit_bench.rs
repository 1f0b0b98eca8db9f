//! Audit benchmarks (issue 4): append throughput with group commit, verification throughput,
//! and the cost of auditing on the subject-read path.

use std::sync::Arc;
use std::time::Instant;

use domain::{AccessGroup, FieldId, RecordKind};
use hub::{Hub, NewSubjectInput};
use vault::Unlock;

fn event(i: u64) -> audit::NewEvent {
    audit::NewEvent {
        actor: "01M8AAAAAAAAAAAAAAAAAAAAAA".into(),
        actor_name: "fundraiser-1".into(),
        role: "fundraiser".into(),
        action: "read.subject".into(),
        subjects: vec![format!("01M8{:022}", i % 100_000)],
        fields: vec![
            "email".into(),
            "family_name".into(),
            "given_name".into(),
            "phone".into(),
        ],
        purpose: None,
        request_id: Some(format!("req-{i:x}")),
        outcome: audit::Outcome::Ok,
        reason: None,
        source: "127.0.0.1".into(),
        count: None,
    }
}

pub(crate) fn suite(n: u64, threads: usize, subjects: usize, reads: usize) {
    let (_tmp, hub) = crate::bench_hub();
    let log = hub.audit_log().clone();

    // 1. Appends from `threads` threads, as concurrent hub operations make them.
    let per_thread = n / threads as u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads as u64 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    log.append(event(k * per_thread + i)).expect("append");
                }
            });
        }
    });
    let append_secs = t.elapsed().as_secs_f64();
    let total = log.len();
    log.close().expect("close");
    let audit_dir = hub.vault().dir().join(vault::layout::AUDIT);
    let mut blocks = 0usize;
    let mut on_disk = 0u64;
    for s in vault::segments::list(&audit_dir).expect("segments") {
        on_disk += std::fs::metadata(&s.path).expect("size").len();
        blocks += vault::segments::frames(&s.read().expect("read").raw).count();
    }
    hub.vault().flush().expect("flush");

    // 2. Full verification.
    let t = Instant::now();
    let v = log.verify(None).expect("verify");
    let verify_secs = t.elapsed().as_secs_f64();
    assert!(v.ok && v.events == total, "{v:?}");

    // 3. Subject reads through the hub (authorise, read, decrypt, audit) against the same
    // work without the audit append, side by side.
    let admin = hub.local_actor();
    let mut generator = synth::Generator::new(7);
    let mut ids = Vec::with_capacity(subjects);
    while ids.len() < subjects {
        let batch = (&mut generator)
            .take(1000.min(subjects - ids.len()))
            .map(|c| {
                let mut v = c.to_json();
                v.as_object_mut().expect("object").remove("gifts");
                NewSubjectInput::from_json(v).expect("input")
            })
            .collect();
        ids.extend(hub.create_subjects(&admin, batch).expect("create"));
    }
    let (fundraiser, _) = hub
        .add_user(&admin, "bench-fundraiser", access_control::Role::Fundraiser)
        .expect("user");
    let actor = hub::Actor {
        principal: fundraiser,
        channel: hub::Channel::Http("127.0.0.1".into()),
        request_id: Some("bench".into()),
    };
    let order: Vec<_> = (0..reads).map(|i| ids[(i * 7919) % ids.len()]).collect();
    let schema = hub.schema().clone();
    let policy = hub.policy();
    let role = actor.principal.role;
    let plain = |chunk: &[domain::SubjectId]| {
        for id in chunk {
            let groups: Vec<AccessGroup> = [
                AccessGroup::Identity,
                AccessGroup::Contact,
                AccessGroup::Financial,
                AccessGroup::Special,
                AccessGroup::Profile,
            ]
            .into_iter()
            .filter(|g| policy.allows(role, g.object(), access_control::Action::Read))
            .collect();
            let wanted = |f: FieldId| {
                schema
                    .field_by_id(RecordKind::Subject, f)
                    .is_some_and(|d| groups.contains(&d.group))
            };
            let r = hub.vault().read_subject(id, &wanted).expect("read");
            let json: std::collections::BTreeMap<String, serde_json::Value> = r
                .fields
                .iter()
                .map(|(f, v)| {
                    (
                        schema
                            .field_by_id(RecordKind::Subject, *f)
                            .map(|d| d.name.clone())
                            .unwrap_or_default(),
                        v.to_json(),
                    )
                })
                .collect();
            std::hint::black_box(json);
        }
    };
    let audited = |chunk: &[domain::SubjectId]| {
        for id in chunk {
            std::hint::black_box(hub.get_subject(&actor, id).expect("read"));
        }
    };
    let time2 = |f: &(dyn Fn(&[domain::SubjectId]) + Sync)| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in order.chunks(order.len().div_ceil(2)) {
                s.spawn(move || f(chunk));
            }
        });
        reads as f64 / t.elapsed().as_secs_f64()
    };
    // Alternate, and keep the median of three of each.
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..3 {
        without.push(time2(&plain));
        with.push(time2(&audited));
    }
    without.sort_by(f64::total_cmp);
    with.sort_by(f64::total_cmp);
    let (w, wo) = (with[1], without[1]);
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| appends ({threads} threads, group commit) | {:.0} events/s ({total} events in {append_secs:.2} s, {:.1} events per block) |", total as f64 / append_secs, total as f64 / blocks as f64);
    println!(
        "| audit segment files | {on_disk} bytes, {:.1} bytes per event |",
        on_disk as f64 / total as f64
    );
    println!(
        "| full verification | {:.0} events/s ({} events, {} checkpoints, {verify_secs:.2} s) |",
        v.events as f64 / verify_secs,
        v.events,
        v.checkpoints
    );
    println!(
        "| subject reads without the audit append (2 threads, median of 3) | {wo:.0} reads/s |"
    );
    println!(
        "| subject reads through the hub, audited (2 threads, median of 3) | {w:.0} reads/s |"
    );
    println!(
        "| cost of auditing on reads | {:.1}% |",
        (1.0 - w / wo) * 100.0
    );
}

/// Appends `n` events (8 threads), closes the log, and verifies it in a fresh process that
/// reports its speed and its peak memory: verification must stay in bounded memory however
/// long the log is.
pub(crate) fn scale(n: u64) {
    let (tmp, hub) = crate::bench_hub();
    let log = hub.audit_log().clone();
    let threads = 8u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..n / threads {
                    log.append(event(k * (n / threads) + i)).expect("append");
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let total = log.len();
    drop(log);
    drop(hub);
    let audit_dir = tmp.path().join("d").join(vault::layout::AUDIT);
    let on_disk: u64 = vault::segments::list(&audit_dir)
        .expect("segments")
        .iter()
        .map(|s| std::fs::metadata(&s.path).expect("size").len())
        .sum();
    println!("| measurement | figure |");
    println!("|---|---|");
    println!(
        "| appends (8 threads) | {:.0} events/s ({total} events in {secs:.1} s) |",
        total as f64 / secs
    );
    println!(
        "| audit segment files | {on_disk} bytes, {:.1} bytes per event |",
        on_disk as f64 / total as f64
    );
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["audit-verify", "--data"])
        .arg(tmp.path().join("d"))
        .arg("--identity")
        .arg(tmp.path().join("id.txt"))
        .output()
        .expect("verify process");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// Opens a data directory and verifies its audit log; prints events/s and peak RSS.
pub(crate) fn verify_only(data: &str, identity: &str) {
    let hub = Hub::open(
        std::path::Path::new(data),
        &Unlock::Identity(identity.into()),
    )
    .expect("open");
    let t = Instant::now();
    let v = hub.audit_log().verify(None).expect("verify");
    let secs = t.elapsed().as_secs_f64();
    assert!(v.ok, "{v:?}");
    println!(
        "| verification in a fresh process | {:.0} events/s ({} events, {} checkpoints, {secs:.2} s) |",
        v.events as f64 / secs,
        v.events,
        v.checkpoints
    );
    println!(
        "| its peak memory (VmHWM, opening the directory included) | {:.0} MiB |",
        crate::peak_rss_mib()
    );
}

/// A store that accepts every write and keeps nothing: the audit log's writes cost nothing.
struct Discard;

impl vault::Store for Discard {
    fn get(&self, _: vault::Keyspace, _: &[u8]) -> Result<Option<Vec<u8>>, vault::StoreError> {
        Ok(None)
    }
    fn scan_prefix(&self, _: vault::Keyspace, _: &[u8]) -> vault::EntryIter<'_> {
        Box::new(std::iter::empty())
    }
    fn scan_from(&self, _: vault::Keyspace, _: &[u8]) -> vault::EntryIter<'_> {
        Box::new(std::iter::empty())
    }
    fn last_with_prefix(
        &self,
        _: vault::Keyspace,
        _: &[u8],
    ) -> Result<Option<vault::Entry>, vault::StoreError> {
        Ok(None)
    }
    fn apply(&self, _: vault::Batch) -> Result<(), vault::StoreError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), vault::StoreError> {
        Ok(())
    }
    fn size_on_disk(&self) -> Result<u64, vault::StoreError> {
        Ok(0)
    }
}

/// Serves the real router; with `discard_audit` the audit log still builds, hashes and
/// group-commits every event, but its store write is thrown away.
pub(crate) fn serve(data: &str, identity: &str, addr: &str, discard_audit: bool) {
    let hub = Arc::new(
        Hub::open(
            std::path::Path::new(data),
            &Unlock::Identity(identity.into()),
        )
        .expect("open"),
    );
    if discard_audit {
        hub.audit_log().set_store(Arc::new(Discard));
        hub.audit_log()
            .segments()
            .set_mode(vault::segments::AppendMode::Discard);
    }
    let config = server::ServerConfig {
        rate_per_second: 0,
        ..server::ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("http://{}", listener.local_addr().expect("addr"));
        let router = server::router(server::AppState::new(hub, &config), &config);
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let term = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            }
        };
        server::serve(listener, router, async move {
            tokio::select! { _ = stop => {}, _ = term => {} }
        })
        .await
        .expect("serve");
    });
}
