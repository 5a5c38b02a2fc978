//! Token buckets per caller (an API key, or a client network without one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept per generation. The limiter keeps two: a bucket untouched for a whole
/// generation (this many new buckets) is forgotten, i.e. starts full again next time.
pub const GENERATION: usize = 100_000;

/// Token buckets per caller: `rate` requests per minute, bursts up to a tenth of a minute's
/// worth (at least 10). Memory is bounded (two generations of buckets) and every check costs
/// O(1) amortized: when the current generation fills, the previous one is dropped whole, and
/// a bucket still in use moves to the current one when it is next touched.
pub struct RateLimiter {
    state: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<String, Bucket>,
    previous: HashMap<String, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter { state: Mutex::new(Generations::default()) }
    }

    /// Takes one request from `who`'s bucket: `Err(seconds to wait)` when it is empty.
    pub fn check(&self, who: &str, per_minute: u32) -> Result<(), u64> {
        self.take(who, per_minute, true)
    }

    /// Whether `who`'s bucket has a request left, taking nothing.
    pub fn peek(&self, who: &str, per_minute: u32) -> Result<(), u64> {
        self.take(who, per_minute, false)
    }

    fn take(&self, who: &str, per_minute: u32, spend: bool) -> Result<(), u64> {
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let rate = f64::from(per_minute.max(1)) / 60.0;
        let burst = (f64::from(per_minute) / 10.0).max(10.0);
        let now = Instant::now();
        let bucket = state.bucket(who).unwrap_or(Bucket { tokens: burst, at: now });
        let tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        if tokens < 1.0 {
            state.put(who, Bucket { tokens, at: now });
            return Err(((1.0 - tokens) / rate).ceil().max(1.0) as u64);
        }
        if spend {
            state.put(who, Bucket { tokens: tokens - 1.0, at: now });
        }
        Ok(())
    }

    /// Buckets held now (both generations).
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.current.len() + s.previous.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    fn bucket(&mut self, who: &str) -> Option<Bucket> {
        if let Some(bucket) = self.current.get(who) {
            return Some(*bucket);
        }
        self.previous.remove(who)
    }

    fn put(&mut self, who: &str, bucket: Bucket) {
        if !self.current.contains_key(who) && self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(who.to_string(), bucket);
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of a client without a key: its IPv4 address, or its IPv6 /64 (one subscriber's
/// network: a host picks any address in it, so per-address buckets would be unlimited).
pub fn client_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}
