//! Request parsing shared by the routes: query parameters, JSON bodies and path ids, each
//! failing with a 400 that names what was wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeDelta, OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use super::error::ApiError;

/// Default and bounds of `limit` on the list routes.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The raw query pairs of a request, in order (repeated keys kept).
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        Ok(Query(q.0))
    }
}

impl Query {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable `name` (`?pattern=a&pattern=b`), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// An HTTP-flag boolean: `?x` and `?x=1` enable, `?x=0` and absence disable.
    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            None => false,
            Some(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"),
        }
    }

    /// An integer parameter, or 400.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("`{name}` must be an integer, got `{v}`"))),
        }
    }

    /// `limit` (default 100, 1..=1000).
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.int("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
            Some(_) => Err(ApiError::bad_request("limit must be between 1 and 1000")),
        }
    }

    /// `offset` (default 0, ≥ 0).
    pub fn offset(&self) -> Result<usize, ApiError> {
        match self.int("offset")? {
            None => Ok(0),
            Some(n) if n >= 0 => Ok(n as usize),
            Some(_) => Err(ApiError::bad_request("offset must be 0 or more")),
        }
    }

    /// A `since`/`until` time filter, or 400.
    pub fn time(&self, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => parse_time(v, OffsetDateTime::now_utc(), local_to_utc).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{name}` must be a Unix timestamp, an ISO-8601 date-time or an interval such as 15m, got `{v}`"
                ))
            }),
        }
    }
}

#[cfg(test)]
impl Query {
    /// A query from its raw text (`a=1&b=2`), for other modules' tests.
    pub fn parse_for_tests(raw: &str) -> Query {
        let uri: axum::http::Uri = format!("/x?{raw}").parse().expect("a valid query");
        Query(axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).expect("a valid query").0)
    }
}

/// Parses the spec's time filter syntaxes: a Unix timestamp, an ISO-8601 date-time, or an
/// interval `<N>s|m|h|d|w` meaning that long before `now`.
///
/// A date-time without an offset is a wall-clock time of the server's time zone, turned into
/// an instant by `local`: the official Python SDK sends `datetime.now().isoformat()` (naive,
/// local) as the default `until` of a listing, and a local server shares its clients' zone.
/// Read as UTC, that `until` would hide everything made in the last hours west of Greenwich.
pub(crate) fn parse_time(
    raw: &str,
    now: OffsetDateTime,
    local: impl Fn(PrimitiveDateTime) -> Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    let v = raw.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        return OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok();
    }
    if let Some(unit) = v.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = v[..v.len() - 1].parse::<u32>()
    {
        let secs: i64 = match unit.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        return now.checked_sub(TimeDelta::seconds(i64::from(n) * secs));
    }
    // `+` in a query string may have been decoded to a space.
    let iso = v.replace(' ', "+");
    if let Ok(t) = OffsetDateTime::parse(&iso, &Rfc3339) {
        return Some(t);
    }
    // Python's `datetime.isoformat()` of a naive value: no offset, optional fraction.
    let fmt = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(v, fmt) {
        return local(t);
    }
    // An offset without seconds or with `+HH:MM` after a naive-looking value.
    let fmt = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory]:[offset_minute]"
    );
    OffsetDateTime::parse(&iso, fmt).ok()
}

/// The instant a wall-clock time of the server's time zone (`TZ`, else `/etc/localtime`)
/// stands for, daylight saving time included (`mktime` decides it). `None` when the time
/// cannot be represented.
pub(crate) fn local_to_utc(t: PrimitiveDateTime) -> Option<OffsetDateTime> {
    // SAFETY: `tm` is plain data, fully initialised here; `mktime` only reads and normalises
    // it (glibc's is thread-safe: it takes the time zone lock).
    let secs = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = t.year() - 1900;
        tm.tm_mon = i32::from(u8::from(t.month())) - 1;
        tm.tm_mday = i32::from(t.day());
        tm.tm_hour = i32::from(t.hour());
        tm.tm_min = i32::from(t.minute());
        tm.tm_sec = i32::from(t.second());
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    // -1 is also 1969-12-31T23:59:59Z, which no filter needs.
    if secs == -1 {
        return None;
    }
    let whole = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    whole.checked_add(TimeDelta::nanoseconds(i64::from(t.nanosecond())))
}

/// A JSON request body, parsed whatever its `Content-Type`; bad JSON or a missing field is a
/// 400 naming the problem.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("a JSON request body is required"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}

/// Parses a UUID path segment (`what` names it in the 400).
pub(crate) fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw.trim()).map_err(|_| ApiError::bad_request(format!("`{raw}` is not a valid {what} UUID")))
}

/// Formats a time as RFC 3339 (what every timestamp in a body looks like).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn q(s: &str) -> Query {
        Query(
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&format!("/x?{s}").parse().unwrap()).unwrap().0,
        )
    }

    #[test]
    fn flags() {
        assert!(q("follow").flag("follow"));
        assert!(q("follow=1").flag("follow"));
        assert!(!q("follow=0").flag("follow"));
        assert!(!q("").flag("follow"));
    }

    #[test]
    fn limits_and_offsets() {
        assert_eq!(q("").limit().unwrap(), 100);
        assert_eq!(q("limit=1000").limit().unwrap(), 1000);
        for bad in ["limit=0", "limit=1001", "limit=x", "limit=-1"] {
            assert_eq!(q(bad).limit().unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(q("offset=5").offset().unwrap(), 5);
        assert!(q("offset=-5").offset().is_err());
    }

    /// A fixed zone for the tests (the server's own is whatever the machine says).
    fn plus_two(t: PrimitiveDateTime) -> Option<OffsetDateTime> {
        Some(t.assume_offset(time::macros::offset!(+2)))
    }

    #[test]
    fn time_filters() {
        let now = datetime!(2025-01-02 00:00:00 UTC);
        let parse_time = |raw: &str, now| parse_time(raw, now, plus_two);
        assert_eq!(parse_time("1735689600", now), Some(datetime!(2025-01-01 00:00:00 UTC)));
        assert_eq!(parse_time("15m", now), Some(datetime!(2025-01-01 23:45:00 UTC)));
        assert_eq!(parse_time("1w", now), Some(datetime!(2024-12-26 00:00:00 UTC)));
        assert_eq!(parse_time("2025-01-01T12:00:00+00:00", now), Some(datetime!(2025-01-01 12:00:00 UTC)));
        assert_eq!(parse_time("2025-01-01T12:00:00 00:00", now), Some(datetime!(2025-01-01 12:00:00 UTC)));
        assert_eq!(parse_time("2025-01-01T12:00:00Z", now), Some(datetime!(2025-01-01 12:00:00 UTC)));
        // Naive: the server's wall clock (here +02:00), as Python's `datetime.now().isoformat()`.
        assert_eq!(parse_time("2025-01-01T12:00:00.5", now), Some(datetime!(2025-01-01 10:00:00.5 UTC)));
        assert_eq!(parse_time("2025-01-01T12:00:00", now), Some(datetime!(2025-01-01 10:00:00 UTC)));
        for bad in ["yesterday", "15x", "", "2025-13-01T00:00:00Z", "NaN"] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
        assert_eq!(q("since=nope").time("since").unwrap_err().status(), 400);
    }

    #[test]
    fn naive_times_are_read_on_the_servers_wall_clock() {
        // Whatever the machine's zone, the instant found must show the same wall-clock time
        // there (checked with the C library's own conversion back).
        for t in [datetime!(2025-01-15 12:34:56.25), datetime!(2025-07-15 03:00:00), datetime!(2000-02-29 23:59:59)] {
            let instant = local_to_utc(t).unwrap();
            let secs = instant.unix_timestamp() as libc::time_t;
            // SAFETY: plain data out of a reentrant libc call.
            let tm = unsafe {
                let mut tm: libc::tm = std::mem::zeroed();
                assert!(!libc::localtime_r(&secs, &mut tm).is_null());
                tm
            };
            assert_eq!(
                (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
                (
                    t.year(),
                    i32::from(u8::from(t.month())),
                    i32::from(t.day()),
                    i32::from(t.hour()),
                    i32::from(t.minute()),
                    i32::from(t.second())
                ),
                "{t}"
            );
            assert_eq!(instant.nanosecond(), t.nanosecond());
        }
        // The query path uses it: a naive `until` right now (local) lies within a second of now.
        let local_now = OffsetDateTime::now_utc().to_offset(local_offset_now());
        let naive = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            local_now.year(),
            u8::from(local_now.month()),
            local_now.day(),
            local_now.hour(),
            local_now.minute(),
            local_now.second()
        );
        let until = q(&format!("until={naive}")).time("until").unwrap().unwrap();
        assert!((OffsetDateTime::now_utc() - until).abs() < time::Duration::seconds(2), "{naive} → {until}");
    }

    /// The machine's current UTC offset, from the C library.
    fn local_offset_now() -> time::UtcOffset {
        let secs = OffsetDateTime::now_utc().unix_timestamp() as libc::time_t;
        // SAFETY: as above.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&secs, &mut tm);
            tm
        };
        time::UtcOffset::from_whole_seconds(tm.tm_gmtoff as i32).unwrap()
    }
}
