//! API URL building that keeps a base path prefix.
//!
//! Sharp edge: `Url::join("/v1/images")` on `https://host/sandboxes` drops `/sandboxes`. The
//! public endpoint lives under such a prefix, so every URL here is built by appending path
//! segments, never by joining.

use std::fmt;

use url::Url;

use crate::{Error, Result};

/// The base of every API URL: `{base}/v1`.
///
/// ```
/// use contree_core::ApiUrl;
/// let api = ApiUrl::parse("https://host/sandboxes/").unwrap();
/// assert_eq!(api.endpoint(&["images"]).as_str(), "https://host/sandboxes/v1/images");
/// assert_eq!(
///     api.endpoint(&["inspect", "a b", ""]).as_str(),
///     "https://host/sandboxes/v1/inspect/a%20b/"
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiUrl {
    base: Url,
}

impl ApiUrl {
    /// Parses a base URL (`http` or `https`, optional path prefix, optional trailing `/`).
    /// Credentials in the URL are rejected: tokens belong in the config, never in URLs.
    pub fn parse(base: &str) -> Result<Self> {
        let trimmed = base.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_argument("base_url", "must not be empty"));
        }
        let url = Url::parse(trimmed)
            .map_err(|e| Error::invalid_argument("base_url", format!("`{trimmed}` is not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::invalid_argument(
                "base_url",
                format!("scheme `{}` is not supported (use http or https)", url.scheme()),
            ));
        }
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(Error::invalid_argument("base_url", "must have a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid_argument("base_url", "must not contain credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::invalid_argument("base_url", "must not have a query or fragment"));
        }
        let mut base = url;
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&path);
        Ok(ApiUrl { base })
    }

    /// The base URL as configured, without a trailing slash.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `{base}/v1/{segments…}`, each segment percent-encoded. An empty last segment yields a
    /// trailing slash (needed by `/inspect/{uuid}/`).
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked: base URL has a host");
            path.pop_if_empty();
            path.push("v1");
            path.extend(segments);
        }
        url
    }

    /// Like [`ApiUrl::endpoint`], with query pairs appended (repeatable keys allowed).
    pub fn endpoint_with_query<'a>(
        &self,
        segments: &[&str],
        query: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Url {
        let mut url = self.endpoint(segments);
        let mut pairs = query.into_iter().peekable();
        if pairs.peek().is_some() {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, &v);
            }
        }
        url
    }

    /// Resolves a `Location` header (absolute, absolute-path, or relative) against `from`.
    pub fn resolve_location(from: &Url, location: &str) -> Result<Url> {
        from.join(location).map_err(|e| Error::decode(format!("bad Location header `{location}`"), e))
    }
}

impl fmt::Debug for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiUrl").field(&self.base()).finish()
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_path_prefix() {
        for base in ["https://host/sandboxes", "https://host/sandboxes/", " https://host/sandboxes// "] {
            let api = ApiUrl::parse(base).unwrap();
            assert_eq!(api.endpoint(&["v1x"]).as_str(), "https://host/sandboxes/v1/v1x", "{base}");
        }
        let api = ApiUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(api.endpoint(&["images"]).as_str(), "http://127.0.0.1:8080/v1/images");
        assert_eq!(api.endpoint(&["inspect", ""]).as_str(), "http://127.0.0.1:8080/v1/inspect/");
    }

    #[test]
    fn query_is_encoded_and_repeatable() {
        let api = ApiUrl::parse("https://h").unwrap();
        let url = api.endpoint_with_query(
            &["inspect", "u", "download"],
            [("path", "/etc/a b".to_string()), ("x", "1".into()), ("x", "2".into())],
        );
        assert_eq!(url.query(), Some("path=%2Fetc%2Fa+b&x=1&x=2"));
    }

    #[test]
    fn rejects_bad_bases_naming_the_argument() {
        for bad in ["", "ftp://h", "not a url", "https://user:pw@h/", "https://h/?q=1"] {
            let err = ApiUrl::parse(bad).unwrap_err();
            assert_eq!(err.argument(), Some("base_url"), "{bad}");
            assert!(!err.to_string().contains("pw"), "{bad}");
        }
    }

    #[test]
    fn relative_location_resolves_under_inspect() {
        let api = ApiUrl::parse("https://h/sandboxes").unwrap();
        let from = api.endpoint(&["inspect", ""]);
        let loc = ApiUrl::resolve_location(&from, "1234/").unwrap();
        assert_eq!(loc.as_str(), "https://h/sandboxes/v1/inspect/1234/");
    }
}
