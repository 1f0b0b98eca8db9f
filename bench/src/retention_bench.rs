//! Retention sweep benchmark (issue 7): the lapsed-supporter pass over N subjects.

use std::time::Instant;

use vault::keyspaces as ks;

pub(crate) fn suite(n: usize) {
    let (_tmp, hub) = crate::bench_hub();
    let schema = hub.schema().clone();
    let vault = hub.vault().clone();
    let mut generator = synth::Generator::new(21);
    let mut rng = synth::Rng::new(22);
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = 1000.min(n - done);
        let items = crate::make_batch(&schema, &mut generator, k);
        let ids = vault.create_subjects(&items).expect("create");
        // Last activity spread over the past 12 years (days since 1970), as a charity's
        // supporter base is.
        let mut batch = vault::Batch::new();
        for id in &ids {
            let day = 20_800u32 - rng.below(12 * 365) as u32;
            batch.put(
                ks::ACTIVITY,
                id.as_bytes().to_vec(),
                day.to_le_bytes().to_vec(),
            );
        }
        vault.store().apply(batch).expect("activity");
        done += k;
    }
    vault.flush().expect("flush");
    let load = t.elapsed().as_secs_f64();
    let admin = hub.local_actor();
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..3 {
        let t = Instant::now();
        report = Some(
            hub.retention_run(&admin, true, Some("2026-12-01"))
                .expect("sweep"),
        );
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let r = report.expect("ran");
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| subjects | {n} (loaded in {load:.1} s) |");
    println!("| retention sweep, dry run (median of 3) | {:.2} s, {:.0} subjects/s; {} checked, {} lapsed for review |", times[1], n as f64 / times[1], r.subjects_checked, r.lapsed);
}
