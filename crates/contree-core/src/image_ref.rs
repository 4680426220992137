//! Ways to name an image and to filter image listings, checked before any request.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::{Error, OciReference, Result, validate};

/// How a user names an image: by UUID, or by a tag (an OCI-style reference is normalized to
/// the tag the Python SDK would look up).
///
/// ```
/// use contree_core::ImageRef;
/// let by_tag = ImageRef::parse("ubuntu:latest").unwrap();
/// assert_eq!(by_tag, ImageRef::Tag("ubuntu:latest".into()));
/// let by_uuid = ImageRef::parse("12345678-9abc-baba-deda-0123456789ab").unwrap();
/// assert!(matches!(by_uuid, ImageRef::Uuid(_)));
/// assert!(ImageRef::parse("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A specific image.
    Uuid(Uuid),
    /// Whatever image currently holds this tag.
    Tag(String),
}

impl ImageRef {
    /// Parses a UUID string, a tag, or an OCI reference (`docker://ghcr.io/x/y:1`, `busybox`).
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(Error::invalid_argument("reference", "must not be empty"));
        }
        if let Ok(uuid) = Uuid::parse_str(reference) {
            return Ok(ImageRef::Uuid(uuid));
        }
        let oci = OciReference::parse(reference)?;
        let tag = oci.tag().to_string();
        validate::tag("reference", &tag)?;
        Ok(ImageRef::Tag(tag))
    }

    /// The spawn `image` field: the UUID, or `tag:<tag>`.
    pub fn to_image_source(&self) -> String {
        match self {
            ImageRef::Uuid(u) => u.to_string(),
            ImageRef::Tag(t) => format!("tag:{t}"),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Uuid(u) => write!(f, "{u}"),
            ImageRef::Tag(t) => f.write_str(t),
        }
    }
}

impl From<Uuid> for ImageRef {
    fn from(u: Uuid) -> Self {
        ImageRef::Uuid(u)
    }
}

/// Something that can be turned into an [`ImageRef`], failing with a typed error.
pub trait IntoImageRef {
    /// Performs the conversion.
    fn into_image_ref(self) -> Result<ImageRef>;
}

impl IntoImageRef for ImageRef {
    fn into_image_ref(self) -> Result<ImageRef> {
        Ok(self)
    }
}
impl IntoImageRef for Uuid {
    fn into_image_ref(self) -> Result<ImageRef> {
        Ok(ImageRef::Uuid(self))
    }
}
impl IntoImageRef for &str {
    fn into_image_ref(self) -> Result<ImageRef> {
        ImageRef::parse(self)
    }
}
impl IntoImageRef for String {
    fn into_image_ref(self) -> Result<ImageRef> {
        ImageRef::parse(&self)
    }
}
impl IntoImageRef for &String {
    fn into_image_ref(self) -> Result<ImageRef> {
        ImageRef::parse(self)
    }
}

/// Which images to list, as the Python SDK's `ImageKind` (sent as `kind=0|1`; servers that
/// do not know the filter ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Images produced by runs.
    Instances,
    /// Images imported from registries.
    Imported,
}

impl ImageKind {
    /// The query value.
    pub fn as_query(self) -> &'static str {
        match self {
            ImageKind::Instances => "0",
            ImageKind::Imported => "1",
        }
    }
}

/// A `since`/`until` filter: an age, a point in time, or a server-syntax string.
///
/// ```
/// use std::time::Duration;
/// use contree_core::TimeFilter;
/// assert_eq!(TimeFilter::from(Duration::from_secs(600)).to_query().unwrap(), "600s");
/// assert_eq!(TimeFilter::parse("15m").unwrap().to_query().unwrap(), "15m");
/// assert!(TimeFilter::parse("yesterday").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFilter {
    /// This long ago.
    Ago(Duration),
    /// This point in time (sent as a Unix timestamp).
    At(SystemTime),
    /// A server-syntax value: Unix timestamp, interval (`15m`, `2h`, `1w`) or ISO-8601.
    Raw(String),
}

impl TimeFilter {
    /// Checks a server-syntax value.
    pub fn parse(value: &str) -> Result<TimeFilter> {
        validate::time_filter("since/until", value)?;
        Ok(TimeFilter::Raw(value.to_string()))
    }

    /// The query value.
    pub fn to_query(&self) -> Result<String> {
        match self {
            TimeFilter::Ago(d) => Ok(format!("{}s", d.as_secs())),
            TimeFilter::At(t) => t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs().to_string())
                .map_err(|_| Error::invalid_argument("since/until", "time is before 1970")),
            TimeFilter::Raw(s) => Ok(s.clone()),
        }
    }
}

impl From<Duration> for TimeFilter {
    fn from(d: Duration) -> Self {
        TimeFilter::Ago(d)
    }
}

impl From<SystemTime> for TimeFilter {
    fn from(t: SystemTime) -> Self {
        TimeFilter::At(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_the_python_sdk() {
        assert_eq!(ImageRef::parse("busybox").unwrap().to_image_source(), "tag:busybox");
        assert_eq!(
            ImageRef::parse("docker://ghcr.io/linuxserver/code-server:latest").unwrap(),
            ImageRef::Tag("ghcr.io/linuxserver/code-server:latest".into())
        );
        let u = "12345678-9abc-baba-deda-0123456789ab";
        assert_eq!(ImageRef::parse(u).unwrap().to_image_source(), u);
    }

    #[test]
    fn bad_references_name_the_argument() {
        for bad in ["", "   ", ":latest", "ftp://x/y"] {
            assert_eq!(ImageRef::parse(bad).unwrap_err().argument(), Some("reference"), "{bad:?}");
        }
    }

    #[test]
    fn time_filters_render_for_the_query() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(TimeFilter::from(t).to_query().unwrap(), "1700000000");
        assert_eq!(
            TimeFilter::parse("2025-01-01T12:00:00+00:00").unwrap().to_query().unwrap(),
            "2025-01-01T12:00:00+00:00"
        );
    }
}
