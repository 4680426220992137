//! An image: an immutable value naming one filesystem state, by uuid and/or tag.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contree_core::models::{DirectoryList, FileItem, Image as ImageModel, InstanceResources};
use contree_core::{Error, ExitStatus, ImageRef, ImageState, ProcessFailure, Result, RunOutput, validate};
use reqwest::Method;
use uuid::Uuid;

use super::client::Client;
use super::process::Process;
use super::run::{FileSource, PreparedRun, RunSpec};
use super::session::Session;
use crate::transport::{self, Response};

/// An image. Cheap to clone; running it never changes it.
#[derive(Clone)]
pub struct Image {
    pub(crate) client: Client,
    pub(crate) uuid: Option<Uuid>,
    pub(crate) tag: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) state: ImageState,
    pub(crate) output: Option<Arc<RunOutput>>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Image");
        d.field("uuid", &self.uuid).field("tag", &self.tag).field("state", &self.state);
        if let Some(out) = &self.output {
            d.field("exit_status", &out.status).field("stdout_bytes", &out.stdout.len());
        }
        d.finish()
    }
}

impl PartialEq for Image {
    /// Two values are equal when they name the same image the same way, whatever the client.
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid && self.tag == other.tag && self.state == other.state
    }
}

impl Image {
    pub(crate) fn from_ref(client: Client, r: ImageRef) -> Image {
        let (uuid, tag) = match r {
            ImageRef::Uuid(u) => (Some(u), None),
            ImageRef::Tag(t) => (None, Some(t)),
        };
        Image { client, uuid, tag, created_at: None, state: ImageState::Pulled, output: None }
    }

    pub(crate) fn from_model(client: Client, m: ImageModel) -> Image {
        Image {
            client,
            uuid: Some(m.uuid),
            tag: m.tag,
            created_at: m.created_at,
            state: ImageState::Pulled,
            output: None,
        }
    }

    /// The image's UUID; `None` for an image named only by tag (resolved by the server at
    /// run time) and for the result of a disposable run.
    pub fn uuid(&self) -> Option<Uuid> {
        self.uuid
    }

    /// The image's tag, when known.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// When the image was created (ISO-8601, as the server sent it), when known.
    pub fn created_at(&self) -> Option<&str> {
        self.created_at.as_deref()
    }

    /// Where this value stands in its life.
    pub fn state(&self) -> ImageState {
        self.state
    }

    /// The client this image talks through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How the spawn body names this image: the UUID, else `tag:<tag>`.
    pub(crate) fn image_source(&self) -> Result<String> {
        match (&self.uuid, &self.tag) {
            (Some(u), _) => Ok(u.to_string()),
            (None, Some(t)) => Ok(format!("tag:{t}")),
            (None, None) => Err(Error::disposable_image_run()),
        }
    }

    /// The UUID, resolving a tag-only image through `GET /inspect/?tag=`.
    #[crate::maybe]
    pub(crate) async fn resolved_uuid(&self) -> Result<Uuid> {
        match (&self.uuid, &self.tag) {
            (Some(u), _) => Ok(*u),
            (None, Some(t)) => Ok(self.client.images().resolve_tag(t).await?),
            (None, None) => Err(Error::disposable_image_run()),
        }
    }

    /// Gives this image `tag` (moving it from any other image) and returns the tagged image.
    #[crate::maybe]
    pub async fn tag_as(&self, tag: &str) -> Result<Image> {
        validate::tag("tag", tag)?;
        let uuid = self.resolved_uuid().await?;
        let tagged = self.client.images().tag(uuid, tag).await?;
        Ok(Image { tag: tagged.tag, uuid: Some(uuid), ..self.clone() })
    }

    /// Removes this image's tags and returns the untagged image.
    #[crate::maybe]
    pub async fn untag(&self) -> Result<Image> {
        let uuid = self.resolved_uuid().await?;
        self.client.images().untag(uuid, self.tag.as_deref()).await?;
        Ok(Image { tag: None, uuid: Some(uuid), ..self.clone() })
    }

    /// Fetches the image's record (`GET /inspect/{uuid}/`), checking that it exists.
    #[crate::maybe]
    pub async fn refresh(&self) -> Result<Image> {
        let uuid = self.resolved_uuid().await?;
        let http = self.client.http();
        let m: ImageModel = http.json(&http.call(Method::GET, &["inspect", &uuid.to_string(), ""])).await?;
        Ok(Image::from_model(self.client.clone(), m))
    }

    /// Prepares a run of `program` (add arguments with `.arg`/`.args`). Nothing is sent until
    /// it is executed; the image itself never changes.
    pub fn run(&self, program: impl Into<String>) -> PreparedRun {
        PreparedRun {
            image: self.clone(),
            spec: RunSpec::program(&program.into(), false, true),
            target: Default::default(),
        }
    }

    /// Prepares a run of `argv[0]` with the rest as arguments.
    pub fn run_argv<I, S>(&self, argv: I) -> PreparedRun
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PreparedRun { image: self.clone(), spec: RunSpec::argv(argv, true), target: Default::default() }
    }

    /// Prepares a shell command (`sh -c`, with the image's preserved env).
    pub fn shell(&self, command: impl Into<String>) -> PreparedRun {
        PreparedRun {
            image: self.clone(),
            spec: RunSpec::program(&command.into(), true, true),
            target: Default::default(),
        }
    }

    /// Starts `argv` at once and returns a live process handle (popen). For options, use
    /// `image.run(..)…spawn()`.
    #[crate::maybe]
    pub async fn popen<I, S>(&self, argv: I) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.run_argv(argv).spawn().await
    }

    /// Starts a shell command at once and returns a live process handle.
    #[crate::maybe]
    pub async fn popen_shell(&self, command: impl Into<String>) -> Result<Process> {
        self.shell(command).spawn().await
    }

    /// A session starting at this image.
    pub fn session(&self) -> Session {
        let mut start = self.clone();
        start.output = None;
        start.state = ImageState::Pulled;
        Session::new(start)
    }

    /// The result of the run that produced this image. An ImageState error unless the image
    /// is in state SUCCEEDED.
    pub fn output(&self) -> Result<&RunOutput> {
        match (&self.output, self.state) {
            (Some(out), ImageState::Succeeded) => Ok(out),
            _ => Err(Error::image_state("read the result of", self.state, &[ImageState::Succeeded])),
        }
    }

    /// Captured standard output.
    pub fn stdout(&self) -> Result<&[u8]> {
        Ok(&self.output()?.stdout)
    }

    /// Captured standard error.
    pub fn stderr(&self) -> Result<&[u8]> {
        Ok(&self.output()?.stderr)
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> Result<String> {
        Ok(self.output()?.stdout_text())
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> Result<String> {
        Ok(self.output()?.stderr_text())
    }

    /// The exit code (`-1` when the command was killed by a signal).
    pub fn exit_code(&self) -> Result<i32> {
        Ok(self.output()?.status.code_or_minus_one())
    }

    /// How the command ended.
    pub fn exit_status(&self) -> Result<ExitStatus> {
        Ok(self.output()?.status)
    }

    /// Wall-clock time of the command.
    pub fn elapsed(&self) -> Result<Duration> {
        Ok(self.output()?.elapsed)
    }

    /// Whether stdout or stderr was cut at `truncate_output_at`.
    pub fn truncated(&self) -> Result<bool> {
        Ok(self.output()?.truncated)
    }

    /// rusage and cost of the run.
    pub fn resources(&self) -> Result<&InstanceResources> {
        Ok(&self.output()?.resources)
    }

    /// Turns a non-zero exit into a ProcessFailed error carrying the command and output.
    pub fn check(self) -> Result<Image> {
        let out = self.output()?;
        if out.status.success() {
            return Ok(self);
        }
        Err(Error::process_failed(ProcessFailure {
            command: out.command.clone(),
            exit_code: out.status.code_or_minus_one(),
            stdout: out.stdout.to_vec(),
            stderr: out.stderr.to_vec(),
        })
        .with_operation(out.operation_id.to_string()))
    }

    /// Lists a directory of the image (`GET /inspect/{uuid}/list`).
    #[crate::maybe]
    pub async fn ls(&self, path: &str) -> Result<Vec<FileItem>> {
        validate::absolute_path("path", path)?;
        let uuid = self.resolved_uuid().await?.to_string();
        let http = self.client.http();
        let call = http.call_with_query(Method::GET, &["inspect", &uuid, "list"], [("path", path.to_string())]);
        let listing: DirectoryList = http.json(&call).await?;
        Ok(listing.files)
    }

    /// Reads a file of the image into memory (`GET /inspect/{uuid}/download`).
    #[crate::maybe]
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        let mut resp = self.open_download(path, "download").await?;
        // Read chunk by chunk so a stalled body fails after `body_idle_timeout`.
        let idle = self.client.http().idle_limit();
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = transport::next_chunk(&mut resp, idle).await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Whether `path` is a regular file of the image (`HEAD …/download`).
    #[crate::maybe]
    pub async fn exists(&self, path: &str) -> Result<bool> {
        validate::absolute_path("path", path)?;
        let uuid = self.resolved_uuid().await?.to_string();
        let http = self.client.http();
        let call = http.call_with_query(Method::HEAD, &["inspect", &uuid, "download"], [("path", path.to_string())]);
        match http.unit(&call).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() || e.kind() == contree_core::ErrorKind::UnprocessableEntity => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams a file of the image to `local`, atomically: the bytes land in a temp file next
    /// to it, which is renamed into place only when complete. Returns the local path.
    #[crate::maybe]
    pub async fn download(&self, path: &str, local: impl AsRef<Path>) -> Result<PathBuf> {
        let local = local.as_ref().to_path_buf();
        let resp = self.open_download(path, "download").await?;
        save_stream(resp, &local, self.client.http().idle_limit()).await?;
        Ok(local)
    }

    /// Opens a PAX tar archive of a file or directory of the image (`GET …/archive`).
    #[crate::maybe]
    pub async fn archive(&self, path: &str) -> Result<Archive> {
        let resp = self.open_download(path, "archive").await?;
        Ok(Archive { resp, idle: self.client.http().idle_limit() })
    }

    #[crate::maybe]
    async fn open_download(&self, path: &str, what: &str) -> Result<Response> {
        validate::absolute_path("path", path)?;
        let uuid = self.resolved_uuid().await?.to_string();
        let http = self.client.http();
        let mut call = http.call_with_query(Method::GET, &["inspect", &uuid, what], [("path", path.to_string())]);
        call.timeout = http.streaming();
        http.send(&call).await
    }

    /// Bakes files into a new image (a `true` run with the files, kept as an image).
    #[crate::maybe]
    pub async fn apply_files<I, D, S>(&self, files: I) -> Result<Image>
    where
        I: IntoIterator<Item = (D, S)>,
        D: Into<String>,
        S: Into<FileSource>,
    {
        let prepared = self.run("true").files_map(files).disposable(false);
        if prepared.spec.files.is_empty() {
            return Err(Error::invalid_argument("files", "no files given"));
        }
        prepared.wait().await
    }
}

/// A streamed tar archive of part of an image.
pub struct Archive {
    resp: Response,
    idle: Duration,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").finish_non_exhaustive()
    }
}

impl Archive {
    /// The next chunk of the tar stream, or `None` at the end.
    #[crate::maybe]
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        transport::next_chunk(&mut self.resp, self.idle).await
    }

    /// Saves the whole archive to `local`, atomically.
    #[crate::maybe]
    pub async fn save(self, local: impl AsRef<Path>) -> Result<PathBuf> {
        let local = local.as_ref().to_path_buf();
        save_stream(self.resp, &local, self.idle).await?;
        Ok(local)
    }
}

/// Streams a body into a temp file beside `local`, then renames it into place.
#[crate::maybe]
async fn save_stream(mut resp: Response, local: &Path, idle: Duration) -> Result<()> {
    let mut sink = transport::AtomicFile::create(local).await?;
    while let Some(chunk) = transport::next_chunk(&mut resp, idle).await? {
        sink.write(&chunk).await?;
    }
    sink.commit().await
}
