//! When to resend a failed request, and after how long — as pure functions.
//!
//! The transports (async and blocking) call [`RetryPolicy::decide`] after every failed
//! attempt and sleep for the returned delay. Nothing here sleeps or reads the clock, so the
//! rules are unit-tested without a network.
//!
//! The rules follow the official client's replay contract:
//! - a request that never reached the server ([`Failure::Connect`]) may always be resent;
//! - an idempotent request (GET, HEAD, DELETE, PUT) is resent after a transport failure and on
//!   410, 425, 429 and any 5xx;
//! - a non-idempotent request (POST, PATCH: spawns, imports, uploads, tagging) is resent
//!   **only** on 425 and 429, which the server promises to answer before doing anything.
//!   Resending it after a 5xx or a dropped connection could start a second operation;
//! - client-side timeouts and every other 4xx are final.
//!
//! A server's `Retry-After` replaces the ladder delay (capped, never shortened by jitter).

use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind};

/// How many times to try a request and how long to wait in between.
///
/// ```
/// use std::time::Duration;
/// use contree_core::retry::{Failure, RetryDecision, RetryPolicy};
///
/// let policy = RetryPolicy::default();
/// // A GET that hit a 503 after the first attempt: wait about 100 ms (± jitter).
/// let failure = Failure::Status { status: 503, retry_after: None };
/// match policy.decide(1, true, &failure, 0.5) {
///     RetryDecision::RetryAfter(d) => assert_eq!(d, Duration::from_millis(100)),
///     RetryDecision::GiveUp => unreachable!(),
/// }
/// // The same failure on a POST is final: the server may have started the work.
/// assert_eq!(policy.decide(1, false, &failure, 0.5), RetryDecision::GiveUp);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included. `1` (or `0`) means no retries.
    pub max_attempts: u32,
    /// Delay before retry `n` is `delays[n - 1]`; the last entry repeats. Empty means no wait.
    pub delays: Vec<Duration>,
    /// Relative jitter applied to ladder delays: `0.2` spreads a delay over ±20 %. Spreading
    /// keeps many clients that failed together from retrying in lockstep.
    pub jitter: f64,
    /// Upper bound for a server-sent `Retry-After`, so a misconfigured proxy cannot park the
    /// client for hours.
    pub retry_after_cap: Duration,
}

/// The official client's delay ladder: 0.1, 0.2, 0.5, 1, 2, 5 s, then 5 s forever.
const LADDER_MS: [u64; 6] = [100, 200, 500, 1_000, 2_000, 5_000];

impl Default for RetryPolicy {
    /// Four attempts on the official ladder, ±20 % jitter, `Retry-After` capped at 30 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            delays: LADDER_MS.iter().map(|&ms| Duration::from_millis(ms)).collect(),
            jitter: 0.2,
            retry_after_cap: Duration::from_secs(30),
        }
    }
}

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with a non-2xx status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The parsed `Retry-After` header, if any (see [`parse_retry_after`]).
        retry_after: Option<Duration>,
    },
    /// The connection was never established, so the server cannot have seen the request.
    Connect,
    /// The connection broke after the request may have been sent.
    Transport,
    /// The client gave up waiting for an answer. The server may still be working on it.
    Timeout,
}

impl Failure {
    /// Classifies an SDK error, or `None` when the error is not about an HTTP attempt
    /// (a bad argument, a decode failure, …) and so is never retried.
    ///
    /// ```
    /// use contree_core::Error;
    /// use contree_core::retry::Failure;
    /// let e = Error::from_status(429, "slow down", None);
    /// assert_eq!(Failure::from_error(&e), Some(Failure::Status { status: 429, retry_after: None }));
    /// assert_eq!(Failure::from_error(&Error::config("x")), None);
    /// ```
    pub fn from_error(error: &Error) -> Option<Failure> {
        match error.kind() {
            ErrorKind::Transport if error.request_may_have_been_sent() => Some(Failure::Transport),
            ErrorKind::Transport => Some(Failure::Connect),
            ErrorKind::Timeout => Some(Failure::Timeout),
            _ => error.status().map(|status| Failure::Status { status, retry_after: error.retry_after() }),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then send the request again.
    RetryAfter(Duration),
    /// Report the failure to the caller.
    GiveUp,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Decides whether to resend a request.
    ///
    /// `attempts_made` counts the attempts already sent (1 after the first failure).
    /// `idempotent` is [`is_idempotent_method`] of the request's method. `jitter_sample` is a
    /// uniform random number in `[0, 1)` (see [`RetryPolicy::jitter_sample`]); passing it in
    /// keeps this function deterministic for tests. `0.5` means "no jitter".
    pub fn decide(&self, attempts_made: u32, idempotent: bool, failure: &Failure, jitter_sample: f64) -> RetryDecision {
        if attempts_made >= self.max_attempts.max(1) {
            return RetryDecision::GiveUp;
        }
        if !is_retryable(idempotent, failure) {
            return RetryDecision::GiveUp;
        }
        if let Failure::Status { retry_after: Some(server_delay), .. } = failure {
            return RetryDecision::RetryAfter((*server_delay).min(self.retry_after_cap));
        }
        RetryDecision::RetryAfter(self.ladder_delay(attempts_made, jitter_sample))
    }

    /// The jittered ladder delay before retry number `attempts_made`.
    fn ladder_delay(&self, attempts_made: u32, jitter_sample: f64) -> Duration {
        let Some(last) = self.delays.last() else {
            return Duration::ZERO;
        };
        let index = attempts_made.saturating_sub(1) as usize;
        let base = self.delays.get(index).unwrap_or(last);
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        let sample = if jitter_sample.is_finite() { jitter_sample.clamp(0.0, 1.0) } else { 0.5 };
        // Maps the sample from [0, 1) onto [1 - jitter, 1 + jitter).
        let factor = 1.0 + jitter * (2.0 * sample - 1.0);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(*base)
    }

    /// A uniform random number in `[0, 1)` for [`RetryPolicy::decide`].
    pub fn jitter_sample() -> f64 {
        rand::random::<f64>()
    }
}

fn is_retryable(idempotent: bool, failure: &Failure) -> bool {
    match failure {
        Failure::Connect => true,
        Failure::Timeout => false,
        Failure::Transport => idempotent,
        // 425 and 429 are answered before the request is processed, so even a spawn is safe
        // to resend.
        Failure::Status { status: 425 | 429, .. } => true,
        Failure::Status { status, .. } => idempotent && (*status == 410 || (500..=599).contains(status)),
    }
}

/// Whether a request with this method may be sent twice without a different effect.
///
/// ```
/// use contree_core::retry::is_idempotent_method;
/// assert!(is_idempotent_method("GET"));
/// assert!(is_idempotent_method("delete"));
/// assert!(!is_idempotent_method("POST"));
/// assert!(!is_idempotent_method("PATCH"));
/// ```
pub fn is_idempotent_method(method: &str) -> bool {
    ["GET", "HEAD", "DELETE", "PUT", "OPTIONS", "TRACE"].iter().any(|m| m.eq_ignore_ascii_case(method.trim()))
}

/// Parses a `Retry-After` header: delta-seconds (fractions accepted, negatives clamp to 0)
/// or an HTTP-date, measured from `now` (past dates give 0). Garbage, `inf` and `nan` give
/// `None`, so the caller falls back to its own delay.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use contree_core::retry::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_767);
/// assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    // Only numeric-looking text goes to the float parser: it would also accept "inf"/"nan"
    // spelled out, which must be rejected like any other garbage.
    let numeric = value.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if numeric {
        let secs: f64 = value.parse().ok()?;
        if !secs.is_finite() {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn status(status: u16) -> Failure {
        Failure::Status { status, retry_after: None }
    }

    fn no_jitter() -> RetryPolicy {
        RetryPolicy { jitter: 0.0, max_attempts: 100, ..RetryPolicy::default() }
    }

    fn retries(policy: &RetryPolicy, idempotent: bool, failure: &Failure) -> bool {
        matches!(policy.decide(1, idempotent, failure, 0.5), RetryDecision::RetryAfter(_))
    }

    #[test]
    fn connect_failures_retry_for_every_method() {
        let p = RetryPolicy::default();
        assert!(retries(&p, true, &Failure::Connect));
        assert!(retries(&p, false, &Failure::Connect));
    }

    #[test]
    fn transport_failures_retry_only_idempotent_requests() {
        let p = RetryPolicy::default();
        assert!(retries(&p, true, &Failure::Transport));
        assert!(!retries(&p, false, &Failure::Transport));
    }

    #[test]
    fn timeouts_never_retry() {
        let p = RetryPolicy::default();
        assert!(!retries(&p, true, &Failure::Timeout));
        assert!(!retries(&p, false, &Failure::Timeout));
    }

    #[test]
    fn idempotent_requests_retry_on_transient_statuses() {
        let p = RetryPolicy::default();
        for s in [410, 425, 429, 500, 502, 503, 504, 599] {
            assert!(retries(&p, true, &status(s)), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 408, 409, 422, 499, 600, 200, 302] {
            assert!(!retries(&p, true, &status(s)), "{s}");
        }
    }

    #[test]
    fn non_idempotent_requests_retry_only_on_425_and_429() {
        let p = RetryPolicy::default();
        assert!(retries(&p, false, &status(425)));
        assert!(retries(&p, false, &status(429)));
        for s in [400, 404, 409, 410, 500, 502, 503, 504] {
            assert!(!retries(&p, false, &status(s)), "{s}");
        }
    }

    #[test]
    fn gives_up_when_attempts_are_exhausted() {
        let p = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let f = status(503);
        assert!(matches!(p.decide(1, true, &f, 0.5), RetryDecision::RetryAfter(_)));
        assert!(matches!(p.decide(2, true, &f, 0.5), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(3, true, &f, 0.5), RetryDecision::GiveUp);
        assert_eq!(p.decide(4, true, &f, 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn none_never_retries_and_zero_attempts_means_one() {
        assert_eq!(RetryPolicy::none().decide(1, true, &Failure::Connect, 0.5), RetryDecision::GiveUp);
        let zero = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
        assert_eq!(zero.decide(1, true, &Failure::Connect, 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn ladder_is_followed_and_its_last_step_repeats() {
        let p = no_jitter();
        let expected = [100, 200, 500, 1_000, 2_000, 5_000, 5_000, 5_000];
        for (i, ms) in expected.iter().enumerate() {
            let attempt = i as u32 + 1;
            assert_eq!(
                p.decide(attempt, true, &Failure::Connect, 0.9),
                RetryDecision::RetryAfter(Duration::from_millis(*ms)),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn empty_ladder_retries_immediately() {
        let p = RetryPolicy { delays: vec![], ..no_jitter() };
        assert_eq!(p.decide(1, true, &Failure::Connect, 0.5), RetryDecision::RetryAfter(Duration::ZERO));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy { jitter: 0.2, max_attempts: 10, ..RetryPolicy::default() };
        let base = Duration::from_secs(1);
        let at = |sample: f64| match p.decide(4, true, &Failure::Connect, sample) {
            RetryDecision::RetryAfter(d) => d,
            RetryDecision::GiveUp => panic!("should retry"),
        };
        assert_eq!(at(0.5), base);
        assert_eq!(at(0.0), Duration::from_millis(800));
        let high = at(0.999_999);
        assert!(high < Duration::from_millis(1200) && high > Duration::from_millis(1199), "{high:?}");
        for i in 0..100 {
            let d = at(f64::from(i) / 100.0);
            assert!(d >= Duration::from_millis(800) && d < Duration::from_millis(1200), "{d:?}");
        }
        // Out-of-range samples are clamped rather than producing negative or huge delays.
        assert_eq!(at(-5.0), Duration::from_millis(800));
        assert_eq!(at(f64::NAN), base);
        for _ in 0..100 {
            let d = at(RetryPolicy::jitter_sample());
            assert!(d >= Duration::from_millis(800) && d < Duration::from_millis(1200), "{d:?}");
        }
    }

    #[test]
    fn retry_after_overrides_the_ladder_without_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        let with = |secs: u64| Failure::Status { status: 429, retry_after: Some(Duration::from_secs(secs)) };
        for sample in [0.0, 0.5, 0.99] {
            assert_eq!(p.decide(1, false, &with(7), sample), RetryDecision::RetryAfter(Duration::from_secs(7)));
        }
        assert_eq!(p.decide(1, false, &with(3600), 0.0), RetryDecision::RetryAfter(Duration::from_secs(30)));
        assert_eq!(p.decide(1, false, &with(0), 0.0), RetryDecision::RetryAfter(Duration::ZERO));
        // Retry-After does not make a non-retryable status retryable.
        let not_retryable = Failure::Status { status: 503, retry_after: Some(Duration::from_secs(1)) };
        assert_eq!(p.decide(1, false, &not_retryable, 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn methods_are_classified() {
        for m in ["GET", "HEAD", "DELETE", "PUT", "get", "Head", "OPTIONS"] {
            assert!(is_idempotent_method(m), "{m}");
        }
        for m in ["POST", "PATCH", "post", "CONNECT", "", "GETX"] {
            assert!(!is_idempotent_method(m), "{m}");
        }
    }

    #[test]
    fn failure_is_derived_from_errors() {
        let connect = Error::transport(false, "refused");
        let broken = Error::transport(true, "reset");
        let timeout = Error::timeout("slow");
        let status = Error::from_status(503, "down", Some(Duration::from_secs(2)));
        assert_eq!(Failure::from_error(&connect), Some(Failure::Connect));
        assert_eq!(Failure::from_error(&broken), Some(Failure::Transport));
        assert_eq!(Failure::from_error(&timeout), Some(Failure::Timeout));
        assert_eq!(
            Failure::from_error(&status),
            Some(Failure::Status { status: 503, retry_after: Some(Duration::from_secs(2)) })
        );
        assert_eq!(Failure::from_error(&Error::invalid_argument("x", "y")), None);
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-3", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1e400", now), None);
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::MAX));
    }

    #[test]
    fn retry_after_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(10)));
        // Dates in the past mean "now".
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        // The obsolete RFC 850 form is accepted too, as HTTP requires.
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(Duration::from_secs(10)));
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for bad in ["", "  ", "inf", "-inf", "nan", "NaN", "infinity", "soon", "1s", "e", "--1", "Sun, 99 Nov"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
