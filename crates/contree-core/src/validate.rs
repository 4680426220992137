//! Argument checks run before any request is sent.
//!
//! Each check returns [`Error::invalid_argument`] naming the caller's argument, so a typo is
//! reported locally with a clear message instead of as a server 400 (or, worse, as a request
//! that does something else). The rules mirror the OpenAPI spec's patterns and ranges.
//!
//! Values that may be secret (environment values) are never echoed in the error.
//!
//! ```
//! use contree_core::validate;
//! assert!(validate::tag("tag", "busybox:latest").is_ok());
//! let err = validate::tag("tag", "bad tag").unwrap_err();
//! assert_eq!(err.argument(), Some("tag"));
//! ```

use uuid::Uuid;

use crate::{Error, Result};

/// An image tag as the spec allows it:
/// `^[A-Za-z0-9][A-Za-z0-9_-]*(?:[:/.][A-Za-z0-9_-]+)*$` — word runs joined by single
/// `:`, `/` or `.` separators (`busybox:latest`, `ghcr.io/org/app:1.2`).
pub fn tag(arg: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_argument(arg, "must not be empty"));
    }
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let parts_ok = value.split([':', '/', '.']).all(|p| !p.is_empty() && p.chars().all(word_char));
    let starts_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !parts_ok || !starts_ok {
        return Err(Error::invalid_argument(
            arg,
            format!(
                "`{value}` is not a valid tag (letters, digits, `_` and `-`, joined by single `:`, `/` or `.`, starting with a letter or digit)"
            ),
        ));
    }
    Ok(())
}

/// A UUID (hyphenated, simple, braced or `urn:uuid:` form).
///
/// ```
/// use contree_core::validate;
/// let id = validate::uuid("image", "12345678-9abc-baba-deda-0123456789ab").unwrap();
/// assert_eq!(id.to_string(), "12345678-9abc-baba-deda-0123456789ab");
/// assert!(validate::uuid("image", "ubuntu").is_err());
/// ```
pub fn uuid(arg: &'static str, value: &str) -> Result<Uuid> {
    Uuid::parse_str(value).map_err(|_| Error::invalid_argument(arg, format!("`{value}` is not a UUID")))
}

/// A SHA-256 content id: 64 hexadecimal digits.
pub fn sha256(arg: &'static str, value: &str) -> Result<()> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_argument(
            arg,
            format!("`{value}` is not a SHA-256 hex digest (64 hexadecimal digits)"),
        ));
    }
    Ok(())
}

/// An absolute path inside an image: starts with `/`, contains no NUL byte.
pub fn absolute_path(arg: &'static str, value: &str) -> Result<()> {
    if !value.starts_with('/') {
        return Err(Error::invalid_argument(arg, format!("`{value}` is not an absolute path (must start with `/`)")));
    }
    if value.contains('\0') {
        return Err(Error::invalid_argument(arg, "must not contain a NUL byte"));
    }
    Ok(())
}

/// An environment variable name: non-empty, without `=` or NUL.
pub fn env_key(arg: &'static str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument(arg, "environment variable name must not be empty"));
    }
    if key.contains('\0') {
        return Err(Error::invalid_argument(arg, "environment variable name must not contain a NUL byte"));
    }
    if key.contains('=') {
        return Err(Error::invalid_argument(arg, format!("environment variable name `{key}` must not contain `=`")));
    }
    Ok(())
}

/// An environment variable value: no NUL byte. The value is not echoed: it may be a secret.
pub fn env_value(arg: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid_argument(arg, "environment variable value must not contain a NUL byte"));
    }
    Ok(())
}

/// A file mode: permission and special bits only (at most `0o7777`).
pub fn file_mode(arg: &'static str, mode: u32) -> Result<()> {
    if mode > 0o7777 {
        return Err(Error::invalid_argument(arg, format!("mode {mode:o} (octal) is larger than 7777")));
    }
    Ok(())
}

/// Formats a mode the way the API writes it: four octal digits.
///
/// ```
/// assert_eq!(contree_core::validate::format_mode(0o644), "0644");
/// assert_eq!(contree_core::validate::format_mode(0o4755), "4755");
/// ```
pub fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// A page size: 1 to 1000, the server's bounds.
pub fn page_limit(arg: &'static str, limit: u32) -> Result<()> {
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid_argument(arg, format!("{limit} is out of range (1..=1000)")));
    }
    Ok(())
}

/// A `since`/`until` filter: a Unix timestamp (`1735732800`, fractions allowed), an interval
/// meaning "that long ago" (`600s`, `15m`, `2h`, `3d`, `1w`), or an ISO-8601 date or
/// date-time (`2025-01-01`, `2025-01-01T12:00:00`, `2025-01-01T12:00:00.5+00:00`, `…Z`).
///
/// ```
/// use contree_core::validate::time_filter;
/// for ok in ["1735732800", "15m", "1w", "2025-01-01T12:00:00+00:00"] {
///     assert!(time_filter("since", ok).is_ok(), "{ok}");
/// }
/// assert!(time_filter("since", "yesterday").is_err());
/// ```
pub fn time_filter(arg: &'static str, value: &str) -> Result<()> {
    if is_unix_timestamp(value) || is_interval(value) || is_iso8601(value) {
        return Ok(());
    }
    Err(Error::invalid_argument(
        arg,
        format!(
            "`{value}` is not a time filter (a Unix timestamp, an interval like `600s`/`15m`/`2h`/`3d`/`1w`, or an ISO-8601 date-time)"
        ),
    ))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_unix_timestamp(s: &str) -> bool {
    match s.split_once('.') {
        Some((int, frac)) => all_digits(int) && all_digits(frac),
        None => all_digits(s),
    }
}

fn is_interval(s: &str) -> bool {
    s.strip_suffix(['s', 'm', 'h', 'd', 'w']).is_some_and(all_digits)
}

/// Parses `N` digits as a number within `range`.
fn number(s: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    if !all_digits(s) {
        return None;
    }
    s.parse().ok().filter(|n| range.contains(n))
}

fn is_iso8601(s: &str) -> bool {
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    is_date(date) && time.is_none_or(is_time_with_offset)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month)) = (number(&s[0..4], 0..=9999), number(&s[5..7], 1..=12)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    number(&s[8..10], 1..=days).is_some()
}

fn is_time_with_offset(s: &str) -> bool {
    let (time, offset) = if let Some(t) = s.strip_suffix(['Z', 'z']) {
        (t, None)
    } else if let Some(i) = s.rfind(['+', '-']) {
        (&s[..i], Some(&s[i + 1..]))
    } else {
        (s, None)
    };
    is_time(time) && offset.is_none_or(is_offset)
}

fn is_time(s: &str) -> bool {
    let (hms, frac) = match s.split_once(['.', ',']) {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let fields_ok = match parts.as_slice() {
        [h, m] => number(h, 0..=23).is_some() && number(m, 0..=59).is_some() && frac.is_none(),
        [h, m, sec] => number(h, 0..=23).is_some() && number(m, 0..=59).is_some() && number(sec, 0..=60).is_some(),
        _ => false,
    };
    let two_digits = parts.iter().all(|p| p.len() == 2);
    fields_ok && two_digits && frac.is_none_or(|f| all_digits(f) && f.len() <= 9)
}

fn is_offset(s: &str) -> bool {
    let (h, m) = match s.len() {
        2 => (s, "00"),
        4 if all_digits(s) => (&s[..2], &s[2..]),
        5 if s.as_bytes()[2] == b':' => (&s[..2], &s[3..]),
        _ => return false,
    };
    h.len() == 2 && m.len() == 2 && number(h, 0..=23).is_some() && number(m, 0..=59).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(result: Result<impl std::fmt::Debug>, arg: &str) {
        let err = result.expect_err("should be rejected");
        assert!(err.is_invalid_argument());
        assert_eq!(err.argument(), Some(arg));
    }

    #[test]
    fn tags() {
        for ok in ["a", "busybox", "busybox:latest", "ghcr.io/org/app:1.2", "my_tag-1", "A/b.c:d", "0"] {
            tag("tag", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "-a", "_a", ":a", "a:", "a::b", "a b", "a/", "a..b", "tag:x@y", "ü", "a\0"] {
            rejected(tag("tag", bad), "tag");
        }
    }

    #[test]
    fn uuids() {
        let id = uuid("image", "12345678-9ABC-baba-deda-0123456789ab").unwrap();
        assert_eq!(id.to_string(), "12345678-9abc-baba-deda-0123456789ab");
        assert!(uuid("image", "123456789abcbabadeda0123456789ab").is_ok());
        for bad in ["", "ubuntu", "12345678-9abc-baba-deda-0123456789a", "12345678-9abc-baba-deda-0123456789abc"] {
            rejected(uuid("image", bad), "image");
        }
    }

    #[test]
    fn sha256s() {
        assert!(sha256("sha256", &"a".repeat(64)).is_ok());
        assert!(sha256("sha256", &"AbCdEf0123456789".repeat(4)).is_ok());
        for bad in ["".to_string(), "a".repeat(63), "a".repeat(65), "g".repeat(64), format!("{}é", "a".repeat(62))] {
            rejected(sha256("sha256", &bad), "sha256");
        }
    }

    #[test]
    fn absolute_paths() {
        for ok in ["/", "/etc/passwd", "/a b/c", "/dir/"] {
            assert!(absolute_path("path", ok).is_ok(), "{ok}");
        }
        for bad in ["", "etc", "./a", "~/a", "/a\0b"] {
            rejected(absolute_path("path", bad), "path");
        }
    }

    #[test]
    fn env_keys_and_values() {
        assert!(env_key("env", "PATH").is_ok());
        assert!(env_key("env", "lower_case.1").is_ok());
        for bad in ["", "A=B", "A\0"] {
            rejected(env_key("env", bad), "env");
        }
        assert!(env_value("env", "").is_ok());
        assert!(env_value("env", "a=b c\n").is_ok());
        let err = env_value("env", "hunter2\0").unwrap_err();
        assert_eq!(err.argument(), Some("env"));
        assert!(!err.to_string().contains("hunter2"), "secret leaked: {err}");
    }

    #[test]
    fn modes() {
        assert!(file_mode("mode", 0).is_ok());
        assert!(file_mode("mode", 0o644).is_ok());
        assert!(file_mode("mode", 0o7777).is_ok());
        rejected(file_mode("mode", 0o10000), "mode");
        rejected(file_mode("mode", u32::MAX), "mode");
        assert_eq!(format_mode(0o644), "0644");
        assert_eq!(format_mode(0o600), "0600");
        assert_eq!(format_mode(0o7), "0007");
        assert_eq!(format_mode(0), "0000");
        assert_eq!(format_mode(0o7777), "7777");
    }

    #[test]
    fn page_limits() {
        assert!(page_limit("limit", 1).is_ok());
        assert!(page_limit("limit", 1000).is_ok());
        rejected(page_limit("limit", 0), "limit");
        rejected(page_limit("limit", 1001), "limit");
    }

    #[test]
    fn time_filters() {
        for ok in [
            "0",
            "1735732800",
            "1735732800.25",
            "600s",
            "15m",
            "2h",
            "3d",
            "1w",
            "0s",
            "2025-01-01",
            "2025-01-01T12:00",
            "2025-01-01T12:00:00",
            "2025-01-01 12:00:00",
            "2025-01-01T12:00:00+00:00",
            "2025-01-01T12:00:00-05:30",
            "2025-01-01T12:00:00+0530",
            "2025-01-01T12:00:00+05",
            "2025-01-01T12:00:00Z",
            "2025-01-01T12:00:00.123456",
            "2026-06-08T20:00:00.123456789Z",
            "2024-02-29T00:00:00",
        ] {
            assert!(time_filter("since", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "yesterday",
            "-5",
            "1.",
            ".5",
            "15x",
            "m",
            "1.5h",
            "2025-13-01",
            "2025-02-30",
            "2023-02-29",
            "2025-1-1",
            "2025-01-01T",
            "2025-01-01T25:00",
            "2025-01-01T12:60",
            "2025-01-01T12:00:00+24:00",
            "2025-01-01T12:00:00.1234567890",
            "2025-01-01T12:00.5",
            "2025-01-01T1:00:00",
            "2025-01-01T12:00:00+5",
            "2025-01-01T12:00:00ZZ",
        ] {
            assert!(time_filter("since", bad).is_err(), "{bad:?} accepted");
            rejected(time_filter("since", bad), "since");
        }
    }
}
