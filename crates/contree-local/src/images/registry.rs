//! The registry side of imports, through `oci-client` (the OCI distribution protocol:
//! anonymous pulls, the bearer-token flow of Docker Hub and GHCR, basic auth, image indexes).
//!
//! This module only speaks to registries: which client, which reference, which platform of
//! an index, and what a failure means in words. [`crate::ops::import`] drives an import and
//! [`super::unpack`] turns its layers into layer directories.

use std::net::IpAddr;
use std::time::Duration;

use contree_core::OciReference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::ImageIndexEntry;
use oci_client::secrets::RegistryAuth;

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may stay silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The `User-Agent` of the server's registry requests.
const USER_AGENT: &str = concat!("contree-local/", env!("CARGO_PKG_VERSION"));

/// Whether `registry` (`host` or `host:port`) is on this machine's loopback.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        // `[::1]:5000`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client for one import: plain HTTP only for a loopback registry or one the server was
/// told to trust so; the platform picked from an index is the host's, else `linux/amd64`.
pub(crate) fn client(registry: &str, insecure: &[String]) -> oci_client::Client {
    let plain_http = is_loopback(registry) || insecure.iter().any(|r| r.eq_ignore_ascii_case(registry));
    let protocol =
        if plain_http { ClientProtocol::HttpsExcept(vec![registry.to_owned()]) } else { ClientProtocol::Https };
    oci_client::Client::new(ClientConfig {
        protocol,
        platform_resolver: Some(Box::new(pick_platform)),
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    })
}

/// The manifest of an image index to pull: the host's platform, else `linux/amd64`.
fn pick_platform(manifests: &[ImageIndexEntry]) -> Option<String> {
    oci_client::client::current_platform_resolver(manifests)
        .or_else(|| oci_client::client::linux_amd64_resolver(manifests))
}

/// The `oci-client` reference of a parsed import URL (tag `latest` when it names none).
pub(crate) fn reference(r: &OciReference) -> oci_client::Reference {
    let registry = r.registry().to_owned();
    let repository = r.repository().to_owned();
    match r.reference() {
        Some(d) if r.is_digest() => oci_client::Reference::with_digest(registry, repository, d.to_owned()),
        Some(t) => oci_client::Reference::with_tag(registry, repository, t.to_owned()),
        None => oci_client::Reference::with_tag(registry, repository, "latest".to_owned()),
    }
}

/// The registry credentials of a request: basic auth, or anonymous.
pub(crate) fn auth(username: Option<&str>, password: Option<&str>) -> RegistryAuth {
    match (username, password) {
        (Some(u), Some(p)) if !u.is_empty() => RegistryAuth::Basic(u.to_owned(), p.to_owned()),
        _ => RegistryAuth::Anonymous,
    }
}

/// A failure of the registry side, in words for the operation's `error`. Never contains
/// credentials: `oci-client` sends them in headers, and its errors carry URLs and the
/// registry's own messages only.
pub(crate) fn describe(e: &OciDistributionError, what: &str) -> String {
    use OciDistributionError as E;
    match e {
        E::RequestError(re) => {
            if re.is_timeout() {
                format!("the registry did not answer in time while fetching {what}: {}", chain(re))
            } else if re.is_connect() {
                format!("the registry is unreachable: {}", chain(re))
            } else {
                format!("the request for {what} failed: {}", chain(re))
            }
        }
        E::UnauthorizedError { url } => {
            format!("the registry refused access to {what} (401 Unauthorized, {url}): check the credentials")
        }
        E::AuthenticationFailure(reason) => {
            format!("authentication with the registry failed (401/403): {}", reason.trim())
        }
        E::ImageManifestNotFoundError(m) => format!("manifest unknown: {m}"),
        E::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let text = envelope.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
            if codes.iter().any(|c| {
                matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound)
            }) {
                format!("manifest unknown: the registry has no {what} ({text})")
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized)) {
                format!("the registry refused access to {what} (401 Unauthorized: {text}): check the credentials")
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                format!("the registry denied access to {what} (403 Forbidden: {text})")
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::BlobUnknown)) {
                format!("the registry has no blob for {what} ({text})")
            } else {
                format!("the registry answered an error for {what} ({url}): {text}")
            }
        }
        E::ServerError { code: 401, url, .. } => {
            format!("the registry refused access to {what} (401 Unauthorized, {url}): check the credentials")
        }
        E::ServerError { code: 403, url, .. } => format!("the registry denied access to {what} (403 Forbidden, {url})"),
        E::ServerError { code: 404, url, .. } => format!("manifest unknown: the registry has no {what} ({url})"),
        E::ServerError { code, url, message } => {
            format!("the registry answered {code} for {what} ({url}): {}", message.trim())
        }
        E::UnsupportedMediaTypeError(t) | E::IncompatibleLayerMediaTypeError(t) => {
            format!("unsupported media type `{t}` for {what}")
        }
        E::ImageIndexParsingNoPlatformResolverError => {
            format!("{what} is an image index without a linux/amd64 image nor one for this host's platform")
        }
        E::DigestError(d) => format!("digest mismatch for {what}: {d}"),
        E::UnsupportedSchemaVersionError(v) => {
            format!("unsupported media type: {what} has manifest schema version {v} (only version 2 is supported)")
        }
        other => format!("cannot fetch {what}: {other}"),
    }
}

/// An error and its sources, `a: b: c` (reqwest's own `Display` is terse).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_plain_http_by_default() {
        for yes in ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "LOCALHOST", "[::1]:5000"] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in ["docker.io", "ghcr.io", "10.0.0.1:5000", "registry.local:5000", "[2001:db8::1]:5000", ""] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn references_keep_tags_and_digests() {
        let r = reference(&OciReference::parse("127.0.0.1:5000/test/busybox:1").unwrap());
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("127.0.0.1:5000", "test/busybox", Some("1"), None)
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = reference(&OciReference::parse(&format!("127.0.0.1:5000/test/busybox@{d}")).unwrap());
        assert_eq!((r.tag(), r.digest()), (None, Some(d.as_str())));
        let r = reference(&OciReference::parse("busybox").unwrap());
        assert_eq!((r.registry(), r.repository(), r.tag()), ("docker.io", "library/busybox", Some("latest")));
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let a = auth(Some("user"), Some("s3cret-pw"));
        assert!(!format!("{a:?}").contains("s3cret-pw"));
        assert_eq!(auth(None, None), RegistryAuth::Anonymous);
    }
}
