//! Recipients benchmark (issue 20): the cost of writing Art. 19 outbox entries on the erasure
//! path, side by side with erasures of subjects disclosed to nobody, and webhook deliveries per
//! second to a receiver on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hub::RecipientInput;

/// A receiver that answers 200 to every POST, one connection at a time, counting them.
fn receiver() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            c.fetch_add(1, Ordering::Relaxed);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, count)
}

fn pct(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn suite(n: usize) {
    let (_t1, plain) = crate::bench_hub();
    let (_t2, disclosed) = crate::bench_hub();
    let admin = disclosed.local_actor();
    let (url, received) = receiver();
    for (name, endpoint) in [
        ("mailhouse", Some(url.clone())),
        ("email-platform", Some(url.clone())),
        ("phone-agency", None),
    ] {
        disclosed
            .add_registered_recipient(
                &admin,
                name,
                RecipientInput {
                    endpoint,
                    allow_loopback: Some(true),
                    ..Default::default()
                },
            )
            .expect("register");
    }
    let a = crate::requests_bench::plain_subjects(&plain, n, 5);
    let b = crate::requests_bench::plain_subjects(&disclosed, n, 5);
    let t = Instant::now();
    for name in ["mailhouse", "email-platform", "phone-agency"] {
        let rows = disclosed
            .segment_for(&admin, "donor-stewardship", None, Some(name), &mut |r| {
                std::hint::black_box(r);
                Ok(())
            })
            .expect("export");
        assert_eq!(rows as usize, n, "every subject exported");
    }
    let export_secs = t.elapsed().as_secs_f64();
    // Erasures one at a time through the hub (audited, key shredded, synced), the two vaults
    // in alternating chunks of 500 so that the disk's moods fall on both alike.
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (ca, cb) in a.chunks(500).zip(b.chunks(500)) {
        for id in ca {
            let t = Instant::now();
            plain
                .erase_subject(&plain.local_actor(), id)
                .expect("erase");
            ta.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        for id in cb {
            let t = Instant::now();
            disclosed.erase_subject(&admin, id).expect("erase");
            tb.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let sum = |xs: &[f64]| xs.iter().sum::<f64>() / 1000.0;
    // Deliveries: the worker's runs until nothing is due.
    let t = Instant::now();
    let mut delivered = 0;
    loop {
        let r = disclosed.deliver_due(500).expect("deliver");
        delivered += r.delivered;
        assert_eq!(
            r.retrying + r.to_person,
            0,
            "every delivery succeeds on loopback"
        );
        if r.delivered == 0 {
            break;
        }
    }
    let deliver_secs = t.elapsed().as_secs_f64();
    let tasks = disclosed
        .notifications_pending(&admin, false)
        .expect("pending")
        .len();
    println!("| measurement | figure |");
    println!("|---|---|");
    println!("| subjects per vault | {n}; each exported to 3 recipients in the second vault ({export_secs:.1} s for the 3 exports) |");
    println!(
        "| erasure, disclosed to nobody: median / p99 | {:.2} ms / {:.2} ms ({:.0} erasures/s) |",
        pct(ta.clone(), 0.5),
        pct(ta.clone(), 0.99),
        n as f64 / sum(&ta)
    );
    println!("| erasure, disclosed to 3 recipients (3 outbox entries in the same batch): median / p99 | {:.2} ms / {:.2} ms ({:.0} erasures/s) |", pct(tb.clone(), 0.5), pct(tb.clone(), 0.99), n as f64 / sum(&tb));
    println!(
        "| ratio of medians (with / without) | {:.2} |",
        pct(tb.clone(), 0.5) / pct(ta.clone(), 0.5)
    );
    println!("| webhook deliveries to a loopback receiver (signed, audited, one connection each) | {delivered} in {deliver_secs:.1} s: {:.0} deliveries/s; receiver counted {} |", delivered as f64 / deliver_secs, received.load(Ordering::Relaxed));
    println!("| tasks for a person (the recipient without an endpoint) | {tasks} |");
}
