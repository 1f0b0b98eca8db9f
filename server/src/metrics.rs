//! Prometheus metrics: requests by route, method and status, a latency histogram per route,
//! and the vault's sizes. Counts only; nothing personal.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The server's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    pub(crate) fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics");
        let h = latency.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, stats: Option<&hub::keys::VaultStats>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP steward_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE steward_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "steward_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP steward_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE steward_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics").iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "steward_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "steward_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "steward_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "steward_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        if let Some(s) = stats {
            out.push_str("# HELP steward_vault_key_slots Data-key slots ever allocated (erased subjects included).\n");
            out.push_str("# TYPE steward_vault_key_slots gauge\n");
            let _ = writeln!(out, "steward_vault_key_slots {}", s.key_slots);
            out.push_str("# HELP steward_vault_store_bytes Bytes the store occupies on disk.\n");
            out.push_str("# TYPE steward_vault_store_bytes gauge\n");
            let _ = writeln!(out, "steward_vault_store_bytes {}", s.store_bytes);
            out.push_str("# HELP steward_vault_kek_version Current key-encryption key version.\n");
            out.push_str("# TYPE steward_vault_kek_version gauge\n");
            let _ = writeln!(out, "steward_vault_kek_version {}", s.kek_version);
        }
        out
    }
}
