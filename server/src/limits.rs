//! Per-token rate limiting: a token bucket per principal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use access_control::PrincipalId;

/// Token buckets keyed by principal.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<PrincipalId, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` = 0 disables the limit.
    pub(crate) fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(per_second).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the principal's bucket; on refusal, the whole seconds to wait.
    pub(crate) fn check(&self, who: PrincipalId) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter");
        let (tokens, last) = buckets.entry(who).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}
