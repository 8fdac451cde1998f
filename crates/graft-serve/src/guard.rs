//! Who may predict, and how often: optional API keys (`Authorization: Bearer KEY` or
//! `X-API-Key: KEY`) and a rate limit per key (per client address when keys are off).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::Quota;
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Past this many tracked clients, those back at a full allowance are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct Guard {
    keys: Vec<String>,
    limiter: Option<RateLimiter>,
}

impl Guard {
    pub fn new(keys: Vec<String>, per_minute: Option<u32>) -> Self {
        Guard {
            keys: keys.into_iter().filter(|k| !k.is_empty()).collect(),
            limiter: per_minute.and_then(NonZeroU32::new).map(RateLimiter::new),
        }
    }

    pub fn auth_required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Admit a request or say why not.
    pub fn admit(&self, headers: &HeaderMap, client: IpAddr, now: Instant) -> Result<(), ApiError> {
        let who = if self.keys.is_empty() {
            Client::Addr(client)
        } else {
            let given = presented_key(headers).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_api_key",
                    "this server needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                )
            })?;
            let index = self
                .keys
                .iter()
                .position(|k| bool::from(k.as_bytes().ct_eq(given.as_bytes())))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_api_key",
                        "the API key is not valid for this server",
                    )
                })?;
            Client::Key(index)
        };
        if let Some(l) = &self.limiter {
            l.take(who, now).map_err(|wait| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests per minute; retry in {wait} s",
                        l.per_minute
                    ),
                )
                .retry_after(wait)
            })?;
        }
        Ok(())
    }
}

/// What the audit trail keeps of the request's API key (its hash), when one was sent.
pub(crate) fn presented_key_hash(headers: &HeaderMap) -> Option<String> {
    presented_key(headers)
        .filter(|k| !k.is_empty())
        .map(crate::audit::key_hash)
}

pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Whom a rate limit counts: an API key (by its index, the key itself is not kept twice) or,
/// with keys off, a client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Key(usize),
    Addr(IpAddr),
}

/// governor asks its clock for the time, but `admit` is handed it (tests move time forward):
/// this clock reports the latest instant handed in, in nanoseconds since the guard was made.
/// A concurrent admission may read a slightly later instant than its own, never an earlier one.
#[derive(Debug)]
struct HandedClock {
    origin: Instant,
    latest: AtomicU64,
}

impl HandedClock {
    fn advance_to(&self, now: Instant) {
        let since = now.saturating_duration_since(self.origin);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        self.latest.fetch_max(nanos, Ordering::AcqRel);
    }
}

impl Clock for HandedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.latest.load(Ordering::Acquire))
    }
}

/// N requests a minute: a burst of N, one more every 60/N s (GCRA, equivalent to a bucket of N
/// tokens refilled continuously).
#[derive(Debug)]
struct RateLimiter {
    per_minute: NonZeroU32,
    limiter: governor::RateLimiter<
        Client,
        HashMapStateStore<Client>,
        HandedClock,
        NoOpMiddleware<Nanos>,
    >,
}

impl RateLimiter {
    fn new(per_minute: NonZeroU32) -> Self {
        let clock = HandedClock {
            origin: Instant::now(),
            latest: AtomicU64::new(0),
        };
        RateLimiter {
            per_minute,
            limiter: governor::RateLimiter::hashmap_with_clock(
                Quota::per_minute(per_minute),
                clock,
            ),
        }
    }

    /// Take one request's allowance for `who`, or the whole seconds until there is one.
    fn take(&self, who: Client, now: Instant) -> Result<(), u64> {
        self.limiter.clock().advance_to(now);
        // Bounds memory against many clients; a client forgotten here would be admitted anyway.
        if self.limiter.len() >= MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&who).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            whole_seconds(wait)
        })
    }
}

/// Retry-After is in whole seconds: round up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn keys_are_checked_in_both_header_forms() {
        let g = Guard::new(vec!["s3cret".into(), "other".into()], None);
        let now = Instant::now();
        assert!(g.auth_required());
        assert_eq!(
            g.admit(&headers(&[]), IP, now).expect_err("no key").code,
            "missing_api_key"
        );
        assert_eq!(
            g.admit(&headers(&[("x-api-key", "s3cre")]), IP, now)
                .expect_err("wrong key")
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert!(g
            .admit(&headers(&[("x-api-key", "s3cret")]), IP, now)
            .is_ok());
        assert!(g
            .admit(&headers(&[("authorization", "Bearer other")]), IP, now)
            .is_ok());
        assert!(g
            .admit(&headers(&[("authorization", "Basic other")]), IP, now)
            .is_err());
        let open = Guard::new(vec![String::new()], None);
        assert!(!open.auth_required());
        assert!(open.admit(&headers(&[]), IP, now).is_ok());
    }

    #[test]
    fn the_bucket_empties_refills_and_is_per_client() {
        let g = Guard::new(vec![], Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(g.admit(&headers(&[]), IP, t0).is_ok());
        }
        let e = g
            .admit(&headers(&[]), IP, t0)
            .expect_err("4th in the same instant");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(20), "3/min refills one token per 20 s");
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        assert!(g.admit(&headers(&[]), other, t0).is_ok(), "another client");
        assert!(g
            .admit(&headers(&[]), IP, t0 + Duration::from_secs(21))
            .is_ok());
        assert!(g
            .admit(&headers(&[]), IP, t0 + Duration::from_secs(21))
            .is_err());
    }
}
