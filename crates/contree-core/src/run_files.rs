//! Files placed into a sandbox before a command starts, and UUID arguments: values that are the
//! same in both flavors.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use uuid::Uuid;

use crate::models::FileResponse;
use crate::{Error, Result, validate};

/// The file as the server stores it, after an upload.
pub type UploadedFile = FileResponse;

/// Where a file placed into the sandbox comes from.
///
/// ```
/// use contree_core::FileSource;
/// let from_disk: FileSource = std::path::Path::new("run.sh").into();
/// let in_memory: FileSource = b"mode=demo\n".to_vec().into();
/// assert!(matches!(from_disk, FileSource::Local(_)));
/// assert!(matches!(in_memory, FileSource::Bytes(_)));
/// ```
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A local file (uploaded with dedup; its executable bit is kept when no mode is given).
    Local(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
    /// A file already on the server.
    Uploaded(FileResponse),
}

impl From<&Path> for FileSource {
    fn from(p: &Path) -> Self {
        FileSource::Local(p.to_path_buf())
    }
}
impl From<PathBuf> for FileSource {
    fn from(p: PathBuf) -> Self {
        FileSource::Local(p)
    }
}
impl From<&PathBuf> for FileSource {
    fn from(p: &PathBuf) -> Self {
        FileSource::Local(p.clone())
    }
}
impl From<&str> for FileSource {
    /// A local path (as in the Python SDK, a string source names a file).
    fn from(p: &str) -> Self {
        FileSource::Local(PathBuf::from(p))
    }
}
impl From<Vec<u8>> for FileSource {
    fn from(b: Vec<u8>) -> Self {
        FileSource::Bytes(Bytes::from(b))
    }
}
impl From<Bytes> for FileSource {
    fn from(b: Bytes) -> Self {
        FileSource::Bytes(b)
    }
}
impl From<&'static [u8]> for FileSource {
    fn from(b: &'static [u8]) -> Self {
        FileSource::Bytes(Bytes::from_static(b))
    }
}
impl From<FileResponse> for FileSource {
    fn from(f: FileResponse) -> Self {
        FileSource::Uploaded(f)
    }
}

/// A file to place in the sandbox before the command starts, with its ownership and mode (the
/// Python SDK's `UploadFileSpec`).
///
/// ```
/// use contree_core::UploadFileSpec;
/// let spec = UploadFileSpec::new("/app/run.sh", std::path::Path::new("run.sh")).mode(0o755).owner(1000, 1000);
/// assert_eq!(spec.path, "/app/run.sh");
/// assert_eq!(spec.mode, Some(0o755));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadFileSpec {
    /// Absolute destination in the sandbox.
    pub path: String,
    /// The content.
    pub source: FileSource,
    /// Permission bits; `None` keeps a local file's executable bit (0755 or 0644).
    pub mode: Option<u32>,
    /// Owner uid (default 0).
    pub uid: u32,
    /// Owner gid (default 0).
    pub gid: u32,
}

impl UploadFileSpec {
    /// A file at `path` with content from `source`.
    pub fn new(path: impl Into<String>, source: impl Into<FileSource>) -> Self {
        UploadFileSpec { path: path.into(), source: source.into(), mode: None, uid: 0, gid: 0 }
    }

    /// A local file placed as the Python SDK places a plain path: at `/<file name>`. A path
    /// with no file name is an InvalidArgument error naming `arg`.
    pub fn from_local_path(arg: &'static str, local: impl Into<PathBuf>) -> Result<Self> {
        let local: PathBuf = local.into();
        match local.file_name().and_then(|n| n.to_str()) {
            Some(name) => Ok(UploadFileSpec::new(format!("/{name}"), FileSource::Local(local.clone()))),
            None => Err(Error::invalid_argument(arg, format!("{} has no file name", local.display()))),
        }
    }

    /// Permission bits (e.g. `0o755`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Owner.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

impl<D: Into<String>, S: Into<FileSource>> From<(D, S)> for UploadFileSpec {
    /// A destination and a source, as in a map of files.
    fn from((dest, source): (D, S)) -> Self {
        UploadFileSpec::new(dest, source)
    }
}

impl From<PathBuf> for UploadFileSpec {
    /// A plain local path lands at `/<file name>` (the Python SDK's rule). A path with no file
    /// name gets an empty destination, which the run rejects as an invalid `files` argument.
    fn from(local: PathBuf) -> Self {
        let dest = local.file_name().and_then(|n| n.to_str()).map(|n| format!("/{n}")).unwrap_or_default();
        UploadFileSpec::new(dest, FileSource::Local(local))
    }
}

impl From<&Path> for UploadFileSpec {
    /// See `From<PathBuf>`.
    fn from(local: &Path) -> Self {
        UploadFileSpec::from(local.to_path_buf())
    }
}

impl From<&PathBuf> for UploadFileSpec {
    /// See `From<PathBuf>`.
    fn from(local: &PathBuf) -> Self {
        UploadFileSpec::from(local.clone())
    }
}

impl From<&str> for UploadFileSpec {
    /// A local path (see `From<PathBuf>`), as a plain string is in the Python SDK.
    fn from(local: &str) -> Self {
        UploadFileSpec::from(PathBuf::from(local))
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A UUID argument given as a `Uuid` or as text. Sealed: the SDK decides what counts.
///
/// ```
/// use contree_core::IntoUuid;
/// let id = "6e1f0c2a-5b7d-4c1e-9a3f-0c0ffee0ba5e".into_uuid("uuid").unwrap();
/// assert_eq!(id.into_uuid("uuid").unwrap(), id);
/// assert_eq!("nope".into_uuid("uuid").unwrap_err().argument(), Some("uuid"));
/// ```
pub trait IntoUuid: sealed::Sealed {
    /// Parses, naming `arg` in the error.
    fn into_uuid(self, arg: &'static str) -> Result<Uuid>;
}
impl sealed::Sealed for Uuid {}
impl IntoUuid for Uuid {
    fn into_uuid(self, _: &'static str) -> Result<Uuid> {
        Ok(self)
    }
}
impl sealed::Sealed for &Uuid {}
impl IntoUuid for &Uuid {
    fn into_uuid(self, _: &'static str) -> Result<Uuid> {
        Ok(*self)
    }
}
impl sealed::Sealed for &str {}
impl IntoUuid for &str {
    fn into_uuid(self, arg: &'static str) -> Result<Uuid> {
        validate::uuid(arg, self)
    }
}
impl sealed::Sealed for String {}
impl IntoUuid for String {
    fn into_uuid(self, arg: &'static str) -> Result<Uuid> {
        validate::uuid(arg, &self)
    }
}
impl sealed::Sealed for &String {}
impl IntoUuid for &String {
    fn into_uuid(self, arg: &'static str) -> Result<Uuid> {
        validate::uuid(arg, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_land_at_their_file_name() {
        let spec = UploadFileSpec::from(Path::new("/tmp/dir/run.sh"));
        assert_eq!(spec.path, "/run.sh");
        assert!(matches!(&spec.source, FileSource::Local(p) if p == Path::new("/tmp/dir/run.sh")));
        assert_eq!(UploadFileSpec::from("data.txt").path, "/data.txt");
        assert_eq!(UploadFileSpec::from(PathBuf::from("/")).path, "", "no file name: no destination");
        let err = UploadFileSpec::from_local_path("files", "/").unwrap_err();
        assert_eq!(err.argument(), Some("files"));
    }

    #[test]
    fn pairs_keep_their_destination() {
        let spec = UploadFileSpec::from(("/etc/app.conf", b"x".to_vec()));
        assert_eq!(spec.path, "/etc/app.conf");
        assert!(matches!(spec.source, FileSource::Bytes(_)));
        assert_eq!(spec.mode, None);
    }
}
