//! Interactions and analytics benchmark (issue 19): the FEP table and LYBUNT/SYBUNT over N
//! subjects with about five gifts each, interaction adds in batches, and the timeline of a
//! subject with 1,000 items. Peak RSS is the whole process's (loading included).

use std::time::Instant;

use domain::{RecordKind, Value};
use serde_json::json;

pub(crate) fn suite(n: usize, interactions: usize) {
    let (_tmp, hub) = crate::bench_hub();
    let schema = hub.schema().clone();
    let vault = hub.vault().clone();
    let mut generator = synth::Generator::new(31);
    let mut rng = synth::Rng::new(32);
    let gift = |rng: &mut synth::Rng| {
        let y = 2016 + rng.below(10);
        let m = 1 + rng.below(12);
        let d = 1 + rng.below(28);
        let amount = [500, 1000, 2500, 5000, 10000][rng.below(5) as usize];
        schema
            .parse_object(
                RecordKind::Gift,
                json!({"amount": format!("{}.00", amount / 100), "currency": "GBP",
                       "date": format!("{y}-{m:02}-{d:02}")})
                .as_object()
                .expect("object"),
            )
            .expect("valid gift")
    };
    let t = Instant::now();
    let mut done = 0;
    let mut gifts_total = 0usize;
    let mut last_ids = Vec::new();
    while done < n {
        let k = 1000.min(n - done);
        let mut items = crate::make_batch(&schema, &mut generator, k);
        for item in &mut items {
            // 0 to 10 gifts, five on average.
            let g = rng.below(11) as usize;
            item.gifts = (0..g).map(|_| gift(&mut rng)).collect();
            gifts_total += g;
        }
        last_ids = vault.create_subjects(&items).expect("create");
        done += k;
    }
    vault.flush().expect("flush");
    let load = t.elapsed().as_secs_f64();
    let admin = hub.local_actor();
    let query = hub::AnalyticsQuery {
        year: Some(2025),
        ..Default::default()
    };
    let mut fep_times = Vec::new();
    let mut lapsed_times = Vec::new();
    let mut donors = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = hub.analytics_fep(&admin, &query).expect("fep");
        fep_times.push(t.elapsed().as_secs_f64());
        donors = r.coverage.donors;
        let t = Instant::now();
        hub.analytics_lapsed(&admin, &query).expect("lapsed");
        lapsed_times.push(t.elapsed().as_secs_f64());
    }
    let rss = crate::peak_rss_mib();
    // The gift scan alone (decryption of the fields analytics reads), for the breakdown.
    let mut scan_times = Vec::new();
    let fields: Vec<domain::FieldId> = ["amount", "currency", "date", "status"]
        .iter()
        .filter_map(|n| schema.field(RecordKind::Gift, n).map(|d| d.id))
        .collect();
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0usize;
        vault
            .scan_gifts(&|f| fields.contains(&f), &mut |_, g| {
                n += g.len();
                Ok(())
            })
            .expect("scan");
        scan_times.push(t.elapsed().as_secs_f64());
        assert!(n > 0);
    }
    // Interactions, added 1,000 per call on the subjects of the last batch.
    let t = Instant::now();
    let mut added = 0;
    while added < interactions {
        let k = 1000.min(interactions - added);
        let inputs: Vec<hub::NewInteraction> = (0..k)
            .map(|i| {
                let subject = last_ids[(added + i) % last_ids.len()];
                hub::NewInteraction::from_json(
                    json!({"kind": "call", "direction": "outbound",
                           "occurred_at": "2025-03-01T10:00:00Z", "summary": "Thank-you call"}),
                    Some(subject),
                )
                .expect("input")
            })
            .collect();
        hub.add_interactions(&admin, inputs).expect("add");
        added += k;
    }
    let add_rate = interactions as f64 / t.elapsed().as_secs_f64();
    // A subject with 500 gifts and 500 interactions.
    let busy = last_ids[0];
    let gifts: Vec<Vec<(domain::FieldId, Value)>> = (0..500).map(|_| gift(&mut rng)).collect();
    vault.add_gifts(&busy, &gifts).expect("gifts");
    let inputs: Vec<hub::NewInteraction> = (0..500)
        .map(|i| {
            hub::NewInteraction::from_json(
                json!({"kind": "email", "occurred_at": format!("2024-{:02}-01T09:00:00Z", 1 + i % 12)}),
                Some(busy),
            )
            .expect("input")
        })
        .collect();
    hub.add_interactions(&admin, inputs).expect("add");
    let mut timeline_times = Vec::new();
    let mut items = 0;
    for _ in 0..21 {
        let t = Instant::now();
        items = hub.timeline(&admin, &busy).expect("timeline").items.len();
        timeline_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| subjects, gifts | {n}, {gifts_total} (loaded in {load:.1} s) |");
    println!(
        "| FEP table, year 2025 (median of 3) | {:.2} s over {donors} donors |",
        crate::median(fep_times)
    );
    println!(
        "| LYBUNT/SYBUNT, year 2025 (median of 3) | {:.2} s |",
        crate::median(lapsed_times)
    );
    println!(
        "| of which the gift scan and decryption alone (median of 3) | {:.2} s |",
        crate::median(scan_times)
    );
    println!("| peak RSS after the analytics runs (loading included) | {rss:.0} MiB |");
    println!("| interaction add, batches of 1,000 | {add_rate:.0}/s ({interactions} added) |");
    println!(
        "| timeline of a subject with {items} items (median of 21) | {:.1} ms |",
        crate::median(timeline_times)
    );
}
