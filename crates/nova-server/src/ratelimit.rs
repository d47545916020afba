//! Request rates per API key, by GCRA (the generic cell rate algorithm: a "theoretical arrival time" per
//! key, pushed forward by one emission interval per request; a request is refused while that time lies
//! more than the burst ahead of now).
//!
//! In memory by default (`governor`, a keyed limiter per rate in use), or in Redis when the server is
//! given a Redis URL, so that several API processes share one budget per key: the same algorithm as a Lua
//! script, atomic in Redis and timed by Redis's own clock, so the processes' clocks need not agree. If
//! Redis cannot be reached, requests pass (and the failure is logged): a rate limit protects the service,
//! and refusing everything would be the outage it protects against.
//!
//! Every `/v1` answer carries `RateLimit-Limit` (the burst), `RateLimit-Remaining` and `RateLimit-Reset`
//! (seconds until the budget is full again), after draft-ietf-httpapi-ratelimit-headers; a refused request
//! is `429` with `Retry-After`. Requests are counted per key; a server without keys counts its loopback
//! clients together, as the default tenant.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// A request rate: `count` requests per `period`, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl RateLimit {
    /// 50 requests a second, in bursts of up to 100.
    pub const DEFAULT: RateLimit = RateLimit { count: 50, period: Duration::from_secs(1), burst: 100 };

    /// The time one request uses up of the budget.
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            60 => "min",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit},burst={}", self.count, self.burst)
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `N/s`, `N/min` or `N/h`, optionally followed by `,burst=M` (default: `N`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a rate: expected N/s, N/min or N/h, optionally with ,burst=M");
        let mut parts = text.split(',').map(str::trim);
        let (count, unit) = parts.next().and_then(|rate| rate.split_once('/')).ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let mut burst = count;
        for part in parts {
            let value = part.strip_prefix("burst=").ok_or_else(bad)?;
            burst = value.trim().parse().map_err(|_| bad())?;
        }
        if count == 0 || burst == 0 || count > 1_000_000 || burst > 1_000_000 {
            return Err(format!("`{text}`: the rate and the burst must be between 1 and 1000000"));
        }
        Ok(RateLimit { count, period, burst })
    }
}

/// What a limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst: the most requests the key can make at once.
    pub limit: u32,
    /// Requests the key can still make at once.
    pub remaining: u32,
    /// Until the budget is full again.
    pub reset: Duration,
    /// When refused: until the next request would pass.
    pub retry_after: Duration,
}

/// Where the budgets live.
#[derive(Clone)]
pub enum Limiter {
    /// No limits.
    Off,
    /// In this process.
    Memory(Arc<MemoryLimiter>),
    /// In Redis, shared by every process that uses it.
    Redis(Arc<RedisLimiter>),
}

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(Arc::new(MemoryLimiter::default()))
    }

    /// A limiter on the Redis server at `url` (`redis://HOST:PORT/DB`); fails if Redis cannot be reached.
    pub async fn redis(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Limiter::Redis(Arc::new(RedisLimiter::connect(url, "nova:rate:").await?)))
    }

    /// Counts one request of `key` against `rate`; `None` when there are no limits.
    pub async fn check(&self, key: &str, rate: RateLimit) -> Option<Decision> {
        match self {
            Limiter::Off => None,
            Limiter::Memory(memory) => Some(memory.check(key, rate)),
            Limiter::Redis(redis) => match redis.check(key, rate).await {
                Ok(decision) => Some(decision),
                Err(e) => {
                    tracing::warn!(error = %e, "the rate limit store (Redis) failed: the request passes unlimited");
                    None
                }
            },
        }
    }

    /// Forgets the in-memory budgets that are full again (they hold no information); Redis expires its own.
    pub fn forget_idle(&self) {
        if let Limiter::Memory(memory) = self {
            memory.forget_idle();
        }
    }
}

type KeyedLimiter =
    governor::RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The in-memory limiter: one keyed `governor` limiter per rate in use (the default and each tenant's own).
#[derive(Default)]
pub struct MemoryLimiter {
    by_rate: Mutex<HashMap<RateLimit, Arc<KeyedLimiter>>>,
}

impl MemoryLimiter {
    fn check(&self, key: &str, rate: RateLimit) -> Decision {
        let limiter = self.limiter(rate);
        let interval = rate.interval();
        let key = key.to_string();
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = rate.burst.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: rate.burst,
                    remaining,
                    reset: interval * used,
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(limiter.clock().now());
                Decision { allowed: false, limit: rate.burst, remaining: 0, reset: interval * rate.burst, retry_after }
            }
        }
    }

    fn limiter(&self, rate: RateLimit) -> Arc<KeyedLimiter> {
        let mut by_rate = self.by_rate.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        by_rate
            .entry(rate)
            .or_insert_with(|| {
                let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
                let quota = governor::Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
                    .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                Arc::new(governor::RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>())
            })
            .clone()
    }

    fn forget_idle(&self) {
        let by_rate = self.by_rate.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for limiter in by_rate.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// GCRA in Redis. KEYS[1]: the key's theoretical arrival time (microseconds on Redis's clock). ARGV[1]: the
/// emission interval, ARGV[2]: the burst. Returns {allowed, remaining, reset_us, retry_after_us}.
const GCRA_SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
";

/// The Redis-backed limiter: one reconnecting connection, one script.
pub struct RedisLimiter {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://`, or `rediss://` for TLS with the system's roots); budgets are stored under
    /// `prefix` followed by the key. A connection attempt gives up after 2 s and is tried 3 times; a command
    /// waits at most 1 s, so a stalled Redis costs a request a second (it then passes unlimited), not a hang.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        // The manager retries its first connection without end on some errors (a refused certificate): one
        // connection of its own first says what is wrong, at once.
        client.get_multiplexed_async_connection().await?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(1));
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(Self { connection, script: redis::Script::new(GCRA_SCRIPT), prefix: prefix.to_string() })
    }

    pub async fn check(&self, key: &str, rate: RateLimit) -> Result<Decision, redis::RedisError> {
        let interval_us = u64::try_from(rate.interval().as_micros()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection.clone();
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(interval_us)
            .arg(rate.burst)
            .invoke_async(&mut connection)
            .await?;
        let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: rate.burst,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: micros(reset_us),
            retry_after: micros(retry_us),
        })
    }
}

/// The middleware; runs after [`crate::auth::authenticate`].
pub async fn limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(default) = app.config.rate_limit else { return next.run(req).await };
    let (key, rate) = match req.extensions().get::<Caller>() {
        Some(caller) => {
            let key = match caller.key() {
                Some(key) => key.to_string(),
                None => caller.tenant().to_string(),
            };
            (key, tenant_rate(caller).unwrap_or(default))
        }
        None => return ApiError::Internal("identifying the caller".into()).into_response(),
    };
    let Some(decision) = app.limiter.check(&key, rate).await else { return next.run(req).await };
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        let retry_after_secs = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::TooManyRequests { retry_after_secs }.into_response()
    };
    add_headers(response.headers_mut(), &decision);
    response
}

/// The tenant's own rate, if it has one that reads; a bad one is logged and the default applies.
fn tenant_rate(caller: &Caller) -> Option<RateLimit> {
    let text = caller.rate_limit()?;
    text.parse()
        .map_err(|e: String| tracing::warn!(tenant = %caller.tenant(), error = %e, "ignoring the tenant's rate limit"))
        .ok()
}

fn add_headers(headers: &mut HeaderMap, decision: &Decision) {
    let reset = decision.reset.as_secs_f64().ceil() as u64;
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_from_their_text() {
        let check = |text: &str, count, secs, burst| {
            assert_eq!(text.parse::<RateLimit>(), Ok(RateLimit { count, period: Duration::from_secs(secs), burst }))
        };
        check("50/s,burst=100", 50, 1, 100);
        check("10/s", 10, 1, 10);
        check(" 600/min , burst=20", 600, 60, 20);
        check("1000/h", 1000, 3600, 1000);
        for bad in ["", "50", "50/d", "x/s", "0/s", "5/s,burst=0", "5/s,bust=3", "5/s,burst=-1"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        assert_eq!(RateLimit::DEFAULT.to_string(), "50/s,burst=100");
        assert_eq!(RateLimit::DEFAULT.to_string().parse::<RateLimit>(), Ok(RateLimit::DEFAULT));
    }

    #[test]
    fn the_memory_limiter_allows_the_burst_then_refuses() {
        let limiter = MemoryLimiter::default();
        let rate = RateLimit { count: 1, period: Duration::from_secs(3600), burst: 3 };
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check("k", rate)).map(|d| d.remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check("k", rate);
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::from_secs(3500), "{refused:?}");
        assert!(limiter.check("other", rate).allowed, "budgets are per key");
    }
}
