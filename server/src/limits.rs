//! Rate limiting: a token bucket per principal, and failed authentications per source.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hub::PrincipalId;

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

/// Failed authentications per source address in fixed windows: the first `per_window` in a
/// window are answered 401 and audited one by one; after that the source is answered 429
/// without its token being looked at, and what was refused is audited once per source and
/// window ([`AuthFailures::take_ended`]). An anonymous client can then neither guess tokens
/// quickly nor fill the disk with audit events.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    per_window: u32,
    window: Duration,
    sources: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
    refused: u64,
}

impl Window {
    fn starting(start: Instant) -> Window {
        Window {
            start,
            failures: 0,
            refused: 0,
        }
    }
}

/// Most sources tracked at once; beyond it, windows that have ended are dropped first.
const MAX_SOURCES: usize = 100_000;

impl AuthFailures {
    /// `per_window` = 0 turns the limit off.
    pub(crate) fn new(per_window: u32, window: Duration) -> AuthFailures {
        AuthFailures {
            per_window,
            window,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Before a token is checked: the seconds to wait when the source has used up its
    /// failures in this window (the request is counted as refused), else `None`.
    pub(crate) fn blocked(&self, source: &str) -> Option<u64> {
        if self.per_window == 0 {
            return None;
        }
        let now = Instant::now();
        let mut sources = self.sources.lock().expect("auth failures");
        let w = sources.get_mut(source)?;
        let elapsed = now.duration_since(w.start);
        if elapsed >= self.window || w.failures < self.per_window {
            return None;
        }
        w.refused += 1;
        Some((self.window - elapsed).as_secs().max(1))
    }

    /// Counts a failed authentication from the source. Returns the refusals of its previous
    /// window when this failure opened a new one, to be audited as one event.
    pub(crate) fn failed(&self, source: &str) -> Option<u64> {
        if self.per_window == 0 {
            return None;
        }
        let now = Instant::now();
        let mut sources = self.sources.lock().expect("auth failures");
        if sources.len() >= MAX_SOURCES && !sources.contains_key(source) {
            let window = self.window;
            sources.retain(|_, w| now.duration_since(w.start) < window);
        }
        let w = sources
            .entry(source.to_string())
            .or_insert(Window::starting(now));
        let mut ended = None;
        if now.duration_since(w.start) >= self.window {
            ended = (w.refused > 0).then_some(w.refused);
            *w = Window::starting(now);
        }
        w.failures += 1;
        ended
    }

    /// Windows that have ended (with `all`, every window, as at shutdown), with the requests
    /// each refused (sources that refused none are forgotten without a word): one summary
    /// event each.
    pub(crate) fn take_ended(&self, all: bool) -> Vec<(String, u64)> {
        let now = Instant::now();
        let mut sources = self.sources.lock().expect("auth failures");
        let mut ended = Vec::new();
        sources.retain(|source, w| {
            if !all && now.duration_since(w.start) < self.window {
                return true;
            }
            if w.refused > 0 {
                ended.push((source.clone(), w.refused));
            }
            false
        });
        ended
    }
}
