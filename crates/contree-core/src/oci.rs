//! OCI image references, normalized exactly like the official Python SDK.
//!
//! Two strings come out of a reference:
//! - the **tag** that `use_image` looks up on the server (`ubuntu:latest`, `myorg/app:v1`,
//!   `ghcr.io/linuxserver/code-server:latest`): Docker Hub references drop the registry and
//!   the implicit `library/` namespace, other registries keep their host;
//! - the **URL** an import sends (`docker://docker.io/library/ubuntu:latest`).
//!
//! Sharp edges kept for compatibility:
//! - The first path component is a registry only if it contains a dot: `localhost:5000/x:1`
//!   is the Docker Hub repository `localhost:5000/x` (tag `1`).
//! - A bare name with a dot, like `ubuntu:22.04` or `my.app`, is a Docker Hub name, not a host.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

const DOCKER_IO: &str = "docker.io";
const DOCKER_SCHEME: &str = "docker";
const DOCKER_NAMESPACE: &str = "library";

/// A parsed OCI image reference.
///
/// ```
/// use contree_core::OciReference;
/// let r = OciReference::parse("ubuntu:latest").unwrap();
/// assert_eq!(r.tag(), "ubuntu:latest");
/// assert_eq!(r.url(), "docker://docker.io/library/ubuntu:latest");
/// assert_eq!(r.registry(), "docker.io");
/// assert_eq!(r.repository(), "library/ubuntu");
/// assert_eq!(r.reference(), Some("latest"));
///
/// let r: OciReference = "docker://ghcr.io/linuxserver/code-server:latest".parse().unwrap();
/// assert_eq!(r.tag(), "ghcr.io/linuxserver/code-server:latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciReference {
    /// Registry host (with port), e.g. `docker.io` or `ghcr.io`.
    host: String,
    /// Everything after the host: repository plus `:tag` or `@digest`.
    path: String,
    /// The name the server knows the image by after an import.
    tag: String,
}

impl OciReference {
    /// Parses a reference: `name`, `name:tag`, `name@sha256:…`, `host/path:tag`, optionally
    /// prefixed with `docker://`.
    ///
    /// Errors (kind InvalidArgument, argument `reference`): an empty reference or one starting
    /// with `:`, a scheme other than `docker`, whitespace/control characters, `?` or `#`, and
    /// references without a repository name or with empty path components.
    pub fn parse(reference: &str) -> Result<Self> {
        if reference.is_empty() || reference.starts_with(':') {
            return Err(invalid(reference, "is not a valid OCI reference"));
        }
        // The Python parser silently drops a query or fragment and keeps whitespace; such
        // input is a typo, so it is refused instead of importing something unexpected.
        if let Some(c) = reference.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#')) {
            return Err(invalid(reference, format!("contains the forbidden character {c:?}")));
        }

        let with_scheme;
        let full = if reference.contains("://") {
            reference
        } else {
            with_scheme = format!("{DOCKER_SCHEME}://{reference}");
            &with_scheme
        };

        // Python's urlsplit: the scheme is the text before the first ':' when it looks
        // like a scheme; otherwise there is none.
        let colon = full.find(':').unwrap_or(0);
        let scheme = &full[..colon];
        let is_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme || !scheme.eq_ignore_ascii_case(DOCKER_SCHEME) {
            return Err(Error::invalid_argument(
                "reference",
                format!("invalid scheme in `{reference}` (only docker:// is supported)"),
            ));
        }
        let rest = &full[colon + 1..];
        let (netloc, path) = match rest.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(slash) => (&after[..slash], &after[slash..]),
                None => (after, ""),
            },
            None => ("", rest),
        };
        // Without a path the whole "netloc" is the image name (`ubuntu:22.04` must not
        // become the host `ubuntu:22.04`). Python re-parses as `docker:///name`.
        let (netloc, path) = if path.is_empty() { ("", netloc) } else { (netloc, path) };

        let mut host = netloc.to_string();
        let mut path = path.trim_start_matches('/').to_string();
        if !host.contains('.') {
            path = posix_join(&host, &path);
            host.clear();
        }
        let mut path = path.trim_start_matches('/').to_string();
        if host.is_empty() {
            host = DOCKER_IO.to_string();
        }

        let tag = if host == DOCKER_IO {
            if !path.contains('/') {
                path = posix_join(DOCKER_NAMESPACE, &path);
            }
            path.strip_prefix("library/").unwrap_or(&path).to_string()
        } else {
            posix_join(&host, &path)
        };
        let tag = tag.trim_start_matches('/').to_string();

        if path.is_empty() || path.split('/').any(str::is_empty) {
            return Err(invalid(reference, "has no repository name or an empty path component"));
        }
        let parsed = OciReference { host, path, tag };
        if parsed.repository().rsplit('/').next().is_none_or(str::is_empty) {
            return Err(invalid(reference, "has no repository name"));
        }
        if parsed.reference() == Some("") {
            return Err(invalid(reference, "has an empty tag or digest"));
        }
        Ok(parsed)
    }

    /// The tag `use_image` looks up: `busybox`, `ubuntu:latest`, `myorg/app:v1`,
    /// `ghcr.io/org/app:1`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The import URL: `docker://<registry>/<repository>[:tag|@digest]`.
    pub fn url(&self) -> String {
        format!("{DOCKER_SCHEME}://{}/{}", self.host, self.path)
    }

    /// The registry host, with its port if any: `docker.io`, `ghcr.io`, `registry.local:5000`.
    pub fn registry(&self) -> &str {
        &self.host
    }

    /// The repository path without tag or digest: `library/ubuntu`, `linuxserver/code-server`.
    pub fn repository(&self) -> &str {
        let (repo, _) = self.split_reference();
        repo
    }

    /// The tag (`latest`) or digest (`sha256:…`) part, if the reference has one. Images
    /// without one are resolved by the registry (usually as `latest`).
    pub fn reference(&self) -> Option<&str> {
        let (_, reference) = self.split_reference();
        reference
    }

    /// Whether the reference pins a digest (`@sha256:…`) rather than a movable tag.
    pub fn is_digest(&self) -> bool {
        self.path.contains('@')
    }

    fn split_reference(&self) -> (&str, Option<&str>) {
        if let Some((repo, digest)) = self.path.split_once('@') {
            return (repo, Some(digest));
        }
        // A tag can only be in the last component: `localhost:5000/x` has no tag.
        let last_start = self.path.rfind('/').map_or(0, |i| i + 1);
        match self.path[last_start..].rfind(':') {
            Some(i) => (&self.path[..last_start + i], Some(&self.path[last_start + i + 1..])),
            None => (&self.path, None),
        }
    }
}

/// `posixpath.join(a, b)` for a relative `b`: `a/b`, or `b` when `a` is empty.
fn posix_join(a: &str, b: &str) -> String {
    if a.is_empty() || a.ends_with('/') { format!("{a}{b}") } else { format!("{a}/{b}") }
}

fn invalid(reference: &str, reason: impl fmt::Display) -> Error {
    Error::invalid_argument("reference", format!("`{reference}` {reason}"))
}

/// Writes the import URL ([`OciReference::url`]), which parses back to the same reference.
impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DOCKER_SCHEME}://{}/{}", self.host, self.path)
    }
}

impl FromStr for OciReference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        OciReference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(input: &str, tag: &str, url: &str) {
        let r = OciReference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.tag(), tag, "tag of {input}");
        assert_eq!(r.url(), url, "url of {input}");
        assert_eq!(r.to_string(), url);
    }

    #[test]
    fn python_sdk_examples() {
        check("ubuntu:latest", "ubuntu:latest", "docker://docker.io/library/ubuntu:latest");
        check("busybox", "busybox", "docker://docker.io/library/busybox");
        check("docker://docker.io/busybox:latest", "busybox:latest", "docker://docker.io/library/busybox:latest");
        check("myorg/app:v1", "myorg/app:v1", "docker://docker.io/myorg/app:v1");
        check(
            "docker://ghcr.io/linuxserver/code-server:latest",
            "ghcr.io/linuxserver/code-server:latest",
            "docker://ghcr.io/linuxserver/code-server:latest",
        );
        check("localhost:5000/x:1", "localhost:5000/x:1", "docker://docker.io/localhost:5000/x:1");
    }

    #[test]
    fn more_normalizations() {
        check("ubuntu:22.04", "ubuntu:22.04", "docker://docker.io/library/ubuntu:22.04");
        check("docker.io/library/ubuntu", "ubuntu", "docker://docker.io/library/ubuntu");
        check("docker://busybox", "busybox", "docker://docker.io/library/busybox");
        check("DOCKER://busybox", "busybox", "docker://docker.io/library/busybox");
        check("ghcr.io/org/app", "ghcr.io/org/app", "docker://ghcr.io/org/app");
        // Slashes right after the first component collapse, as in Python.
        check("a//b", "a/b", "docker://docker.io/a/b");
        check("my.app", "my.app", "docker://docker.io/library/my.app");
        check(
            "registry.example.com:5000/team/app:1.2",
            "registry.example.com:5000/team/app:1.2",
            "docker://registry.example.com:5000/team/app:1.2",
        );
        let digest = format!("alpine@sha256:{}", "a".repeat(64));
        check(&digest, &digest, &format!("docker://docker.io/library/{digest}"));
    }

    #[test]
    fn parts() {
        let r = OciReference::parse("localhost:5000/x:1").unwrap();
        assert_eq!((r.registry(), r.repository(), r.reference()), ("docker.io", "localhost:5000/x", Some("1")));
        let r = OciReference::parse("ghcr.io/a/b").unwrap();
        assert_eq!((r.registry(), r.repository(), r.reference()), ("ghcr.io", "a/b", None));
        let r = OciReference::parse("registry.local:5000/a/b:v2").unwrap();
        assert_eq!((r.registry(), r.repository(), r.reference()), ("registry.local:5000", "a/b", Some("v2")));
        let r = OciReference::parse("alpine@sha256:abcd").unwrap();
        assert_eq!((r.repository(), r.reference(), r.is_digest()), ("library/alpine", Some("sha256:abcd"), true));
        assert!(!OciReference::parse("alpine:3").unwrap().is_digest());
    }

    #[test]
    fn rejects_bad_references_naming_the_argument() {
        for bad in [
            "",
            ":latest",
            "http://docker.io/busybox",
            "oci://x/y",
            "foo/bar://x",
            "busybox ",
            "bus box",
            "busybox#x",
            "busybox?x",
            "docker://",
            "docker://ghcr.io/",
            "docker://docker.io/",
            "a/b//c",
            "ghcr.io/a/",
            "\n",
            "busybox:",
            "busybox@",
            "@sha256:abc",
            "docker.io/library/:x",
        ] {
            let err = OciReference::parse(bad).expect_err(bad);
            assert!(err.is_invalid_argument(), "{bad}");
            assert_eq!(err.argument(), Some("reference"), "{bad}");
        }
        let err = OciReference::parse("https://ghcr.io/a").unwrap_err();
        assert!(err.to_string().contains("invalid scheme"), "{err}");
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}"
    }

    fn name() -> impl Strategy<Value = String> {
        (
            prop::option::of(prop_oneof![Just("docker.io".to_string()), "[a-z]{1,8}\\.(io|com)(:[0-9]{2,5})?",]),
            prop::collection::vec(component(), 1..4),
            prop::option::of(prop_oneof![
                "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}".prop_map(|t| format!(":{t}")),
                "[a-f0-9]{64}".prop_map(|d| format!("@sha256:{d}")),
            ]),
            any::<bool>(),
        )
            .prop_map(|(host, parts, suffix, scheme)| {
                let mut s = String::new();
                if scheme {
                    s.push_str("docker://");
                }
                if let Some(h) = host {
                    s.push_str(&h);
                    s.push('/');
                }
                s.push_str(&parts.join("/"));
                s.push_str(&suffix.unwrap_or_default());
                s
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = OciReference::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_url_like_input(s in "[a-z:/.@#?A-Z0-9 _-]{0,24}") {
            let _ = OciReference::parse(&s);
        }

        #[test]
        fn url_reparses_to_the_same_reference(s in name()) {
            let r = OciReference::parse(&s).unwrap();
            let again = OciReference::parse(&r.url()).unwrap();
            prop_assert_eq!(again.tag(), r.tag());
            prop_assert_eq!(&again, &r);
        }
    }
}
