//! Consent benchmark (issue 5): a purpose segment over N subjects with a realistic mix of
//! consent histories, against a plain scan of the same subjects without the gate.

use std::time::Instant;

use domain::{FieldId, RecordKind};

pub(crate) fn suite(n: usize) {
    let (_tmp, hub) = crate::bench_hub();
    let schema = hub.schema().clone();
    let vault = hub.vault().clone();
    let ledger = consent::Ledger::new(vault.store().clone());
    let mut generator = synth::Generator::new(11);
    let mut rng = synth::Rng::new(12);
    let t = Instant::now();
    let (mut given, mut withdrawn, mut objected, mut restricted) = (0, 0, 0, 0);
    let mut done = 0;
    while done < n {
        let k = 1000.min(n - done);
        let items = crate::make_batch(&schema, &mut generator, k);
        let ids = vault.create_subjects(&items).expect("create");
        for id in &ids {
            let rec = |purpose: &str, event: &str, expires: Option<&str>| {
                let new = consent::NewConsent {
                    purpose: purpose.into(),
                    event: event.into(),
                    source: "bench".into(),
                    method: Some("form".into()),
                    expires: expires.map(str::to_string),
                    ..Default::default()
                };
                // Each event is applied before the next is prepared: the ledger numbers a
                // subject's events from what is already stored.
                let mut b = vault::Batch::new();
                ledger
                    .prepare(&hub.purposes(), id, &new, "bench", &mut b)
                    .expect("event");
                vault.store().apply(b).expect("apply");
            };
            if rng.chance(0.55) {
                given += 1;
                let expired = rng.chance(0.05);
                rec("newsletter-email", "given", expired.then_some("2020-01-01"));
                if rng.chance(0.15) {
                    withdrawn += 1;
                    rec("newsletter-email", "withdrawn", None);
                }
            }
            if rng.chance(0.05) {
                objected += 1;
                rec("fundraising-post", "objected", None);
            }
            if rng.chance(0.01) {
                restricted += 1;
                rec("gift-aid-claim", "restricted", None);
            }
        }
        done += k;
    }
    vault.flush().expect("flush");
    let load_secs = t.elapsed().as_secs_f64();
    let admin = hub.local_actor();
    let purpose = hub
        .purposes()
        .get("newsletter-email")
        .expect("purpose")
        .clone();
    let fields: Vec<FieldId> = purpose
        .fields
        .iter()
        .filter_map(|f| schema.field(RecordKind::Subject, f).map(|d| d.id))
        .collect();
    let mut scan_times = Vec::new();
    let mut gate_times = Vec::new();
    let mut allowed = 0;
    for _ in 0..3 {
        // The plain scan: every subject, the purpose's fields decrypted, no gate.
        let t = Instant::now();
        let mut after = None;
        let mut scanned = 0u64;
        loop {
            let page = vault.list_subjects(after.as_ref(), 1000).expect("list");
            for id in &page {
                std::hint::black_box(
                    vault
                        .read_subject(id, &|f| fields.contains(&f))
                        .expect("read"),
                );
                scanned += 1;
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(*last),
                _ => break,
            }
        }
        assert_eq!(scanned as usize, n);
        scan_times.push(t.elapsed().as_secs_f64());
        // The segment: the hub's gate over the ledger, then the allowed subjects' fields.
        let t = Instant::now();
        allowed = hub
            .segment(&admin, "newsletter-email", None, &mut |row| {
                std::hint::black_box(row);
                Ok(())
            })
            .expect("segment");
        gate_times.push(t.elapsed().as_secs_f64());
    }
    scan_times.sort_by(f64::total_cmp);
    gate_times.sort_by(f64::total_cmp);
    let (scan, gate) = (scan_times[1], gate_times[1]);
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| subjects | {n} (loaded in {load_secs:.1} s) |");
    println!("| consent mix | {given} given newsletter-email (5% of them with a past expiry), {withdrawn} withdrawn later, {objected} objected to fundraising-post, {restricted} restricted |");
    println!("| plain scan, purpose fields decrypted for every subject (median of 3) | {scan:.2} s, {:.0} subjects/s |", n as f64 / scan);
    println!("| segment newsletter-email through the gate (median of 3) | {gate:.2} s, {:.0} subjects checked/s, {allowed} allowed |", n as f64 / gate);
    println!("| gate ÷ scan | {:.2} |", gate / scan);
}
