//! Requests benchmarks (issue 7): the access package of a subject with many gifts and audit
//! events, and erasure throughput.

use std::time::Instant;

use hub::NewSubjectInput;
use serde_json::json;

pub(crate) fn suite(erasures: usize) {
    let (_tmp, hub) = crate::bench_hub();
    let admin = hub.local_actor();
    // One subject with 1,000 gifts and 500 audit events about it.
    let gifts: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"amount": format!("{}.00", 5 + i % 50), "currency": "GBP", "date": format!("20{:02}-0{}-1{}", 15 + i % 10, 1 + i % 9, i % 10), "campaign": "Appeal", "gift_aid": i % 2 == 0}))
        .collect();
    let input = NewSubjectInput::from_json(json!({"given_name": "Major", "family_name": "Donor", "email": "major@example.org", "gifts": gifts})).expect("input");
    let id = hub.create_subject(&admin, input).expect("create");
    for _ in 0..500 {
        hub.get_subject(&admin, &id).expect("read");
    }
    let request = hub
        .open_request(&admin, &id, "access", "uk-gdpr", None)
        .expect("request");
    for step in ["verify", "start"] {
        hub.advance_request(&admin, &request.id, step, None)
            .expect("verified and started before it is fulfilled");
    }
    let mut times = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let package = hub
            .access_package(&admin, &request.id, None)
            .expect("package");
        let mut tar = Vec::new();
        exporters::write_package_tar(&package, &mut tar).expect("tar");
        std::hint::black_box(tar);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    // Erasures: subjects created in batches, then erased one by one through the hub (each
    // one audited, its key shredded and synced).
    let ids = plain_subjects(&hub, erasures, 3);
    let t = Instant::now();
    for id in &ids[..ids.len() / 2] {
        hub.erase_subject(&admin, id).expect("erase");
    }
    let one_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in ids[ids.len() / 2..].chunks(1000) {
        hub.erase_subjects(&admin, chunk).expect("erase");
    }
    let batch_secs = t.elapsed().as_secs_f64();
    let half = ids.len() / 2;
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| access package, 1,000 gifts and 500+ audit events (median of 11) | {:.1} ms (min {:.1}, max {:.1}) |", times[5], times[0], times[10]);
    println!("| erasures through the hub, one at a time | {:.0} subjects/s ({half} in {one_secs:.2} s) |", half as f64 / one_secs);
    println!("| erasures through the hub, batches of 1,000 | {:.0} subjects/s ({} in {batch_secs:.2} s) |", (ids.len() - half) as f64 / batch_secs, ids.len() - half);
}

/// `n` synthetic subjects without gifts or Gift Aid (so no legal hold applies to their
/// erasure), created through the hub in calls of 1,000.
pub(crate) fn plain_subjects(hub: &hub::Hub, n: usize, seed: u64) -> Vec<domain::SubjectId> {
    let admin = hub.local_actor();
    let mut generator = synth::Generator::new(seed);
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let batch = (&mut generator)
            .take(1000.min(n - ids.len()))
            .map(|c| {
                let mut v = c.to_json();
                v.as_object_mut().expect("object").remove("gifts");
                v.as_object_mut()
                    .expect("object")
                    .insert("gift_aid_declared".into(), json!(false));
                NewSubjectInput::from_json(v).expect("input")
            })
            .collect();
        ids.extend(hub.create_subjects(&admin, batch).expect("create"));
    }
    ids
}
