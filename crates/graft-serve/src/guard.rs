//! Who may predict, and how often: optional API keys (`Authorization: Bearer KEY` or
//! `X-API-Key: KEY`) and a token bucket per key (per client address when keys are off).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};

use crate::ApiError;

/// Past this many tracked clients, full (idle) buckets are forgotten.
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
            limiter: per_minute.filter(|&n| n > 0).map(RateLimiter::new),
        }
    }

    pub fn auth_required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Admit a request or say why not.
    pub fn admit(&self, headers: &HeaderMap, client: IpAddr, now: Instant) -> Result<(), ApiError> {
        let who = if self.keys.is_empty() {
            format!("ip:{client}")
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
                .position(|k| same(k.as_bytes(), given.as_bytes()))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_api_key",
                        "the API key is not valid for this server",
                    )
                })?;
            format!("key:{index}")
        };
        if let Some(l) = &self.limiter {
            l.take(&who, now).map_err(|wait| {
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

fn presented_key(headers: &HeaderMap) -> Option<&str> {
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

/// Comparison whose time does not depend on where the inputs first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug)]
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `who`, or the whole seconds until one is available. A bucket holds at
    /// most a minute's allowance and refills continuously.
    fn take(&self, who: &str, now: Instant) -> Result<(), u64> {
        let cap = f64::from(self.per_minute);
        let rate = cap / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(who) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < cap
            });
        }
        let b = buckets.entry(who.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
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
