//! An image: an immutable value naming one filesystem state, by uuid and/or tag.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contree_core::models::{DirectoryList, FileItem, Image as ImageModel, InstanceResources};
use contree_core::progress::{Progress, ProgressKind};
use contree_core::{
    Error, ExitStatus, ImageRef, ImageState, ProcessFailure, Result, RunOutput, UploadFileSpec, validate,
};
use reqwest::Method;
use uuid::Uuid;

use super::client::Client;
use super::process::Process;
use super::progress::Tracker;
use super::run::{PreparedRun, RunSpec};
use super::session::Session;
use crate::transport::{self, Response};

crate::flavor::declare! {
    /// An image. Cheap to clone; running it never changes it.
    #[doc = crate::doc_examples::example!(image)]
    #[derive(Clone)]
    pub struct Image {
        pub(crate) client: Client,
        pub(crate) uuid: Option<Uuid>,
        pub(crate) tag: Option<String>,
        pub(crate) created_at: Option<String>,
        pub(crate) state: ImageState,
        pub(crate) output: Option<Arc<RunOutput>>,
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct(super::short_type_name::<Self>());
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
    #[doc = crate::doc_examples::example!(image_tag_as)]
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
    #[doc = crate::doc_examples::example!(image_run)]
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
    #[doc = crate::doc_examples::example!(image_shell)]
    pub fn shell(&self, command: impl Into<String>) -> PreparedRun {
        PreparedRun {
            image: self.clone(),
            spec: RunSpec::program(&command.into(), true, true),
            target: Default::default(),
        }
    }

    /// Starts `argv` at once and returns a live process handle (popen). For options, use
    /// `image.run(..)…spawn()`.
    #[doc = crate::doc_examples::example!(image_popen)]
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
    #[doc = crate::doc_examples::example!(image_session)]
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
    #[doc = crate::doc_examples::example!(image_check)]
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

    /// Lists a directory of the image (`GET /inspect/{uuid}/list`). Each entry knows its full
    /// path, so it can be read, downloaded or listed in turn.
    #[doc = crate::doc_examples::example!(image_ls)]
    #[crate::maybe]
    pub async fn ls(&self, path: &str) -> Result<Vec<DirEntry>> {
        validate::absolute_path("path", path)?;
        let uuid = self.resolved_uuid().await?.to_string();
        let http = self.client.http();
        let call = http.call_with_query(Method::GET, &["inspect", &uuid, "list"], [("path", path.to_string())]);
        let listing: DirectoryList = http.json(&call).await?;
        let dir = path.trim_end_matches('/');
        Ok(listing
            .files
            .into_iter()
            .map(|item| DirEntry { full_path: format!("{dir}/{}", item.path), item, image: self.clone() })
            .collect())
    }

    /// Reads a file of the image into memory (`GET /inspect/{uuid}/download`).
    #[doc = crate::doc_examples::example!(image_read)]
    #[crate::maybe]
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        let mut resp = self.open_download(path, "download", false).await?;
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
    #[doc = crate::doc_examples::example!(image_download)]
    #[crate::maybe]
    pub async fn download(&self, path: &str, local: impl AsRef<Path>) -> Result<PathBuf> {
        self.download_observed(path, local.as_ref(), None).await
    }

    /// [`download`](Self::download), reporting the bytes received to `progress`, out of the
    /// response's `Content-Length` when the server sends one. The download asks for the file
    /// uncompressed (`Accept-Encoding: identity`), so that the bytes counted are the file's
    /// and its size is known (a compressed body has no `Content-Length`).
    #[doc = crate::doc_examples::example!(image_download_progress)]
    #[crate::maybe]
    pub async fn download_with_progress(
        &self,
        path: &str,
        local: impl AsRef<Path>,
        progress: &Progress,
    ) -> Result<PathBuf> {
        self.download_observed(path, local.as_ref(), Some(progress)).await
    }

    #[crate::maybe]
    async fn download_observed(&self, path: &str, local: &Path, progress: Option<&Progress>) -> Result<PathBuf> {
        let mut tracker = Tracker::start(progress, ProgressKind::Download, None);
        // Uncompressed, so that the bytes counted are the file's and its size is known from
        // Content-Length (a compressed body has neither).
        let resp = self.open_download(path, "download", progress.is_some()).await?;
        tracker.set_total(resp.content_length());
        save_stream(resp, local, self.client.http().idle_limit(), &tracker).await?;
        tracker.succeed();
        Ok(local.to_path_buf())
    }

    /// Streams a file of the image to `./<file name>` (the Python SDK's default), atomically.
    /// Returns the local path.
    #[doc = crate::doc_examples::example!(image_download)]
    #[crate::maybe]
    pub async fn download_here(&self, path: &str) -> Result<PathBuf> {
        let local = local_name(path)?;
        self.download(path, local).await
    }

    /// Opens a PAX tar archive of a file or directory of the image (`GET …/archive`).
    #[doc = crate::doc_examples::example!(image_archive)]
    #[crate::maybe]
    pub async fn archive(&self, path: &str) -> Result<Archive> {
        let resp = self.open_download(path, "archive", false).await?;
        Ok(Archive { resp, idle: self.client.http().idle_limit(), tracker: None })
    }

    #[crate::maybe]
    async fn open_download(&self, path: &str, what: &str, uncompressed: bool) -> Result<Response> {
        validate::absolute_path("path", path)?;
        let uuid = self.resolved_uuid().await?.to_string();
        let http = self.client.http();
        let mut call = http.call_with_query(Method::GET, &["inspect", &uuid, what], [("path", path.to_string())]);
        if uncompressed {
            call = call.header("accept-encoding", reqwest::header::HeaderValue::from_static("identity"));
        }
        call.timeout = http.streaming();
        http.send(&call).await
    }

    /// Bakes files into a new image (a `true` run with the files, kept as an image). Each
    /// item is a `(destination, source)` pair, an [`UploadFileSpec`](contree_core::UploadFileSpec)
    /// (mode, owner), or a plain local path, which lands at `/<file name>` as in the Python SDK.
    #[doc = crate::doc_examples::example!(image_apply_files)]
    #[crate::maybe]
    pub async fn apply_files<I>(&self, files: I) -> Result<Image>
    where
        I: IntoIterator,
        I::Item: Into<UploadFileSpec>,
    {
        let mut prepared = self.run("true").disposable(false);
        for f in files {
            prepared = prepared.file_spec(f.into());
        }
        if prepared.spec.files.is_empty() {
            return Err(Error::invalid_argument("files", "no files given"));
        }
        prepared.wait().await
    }
}

crate::flavor::declare! {
    /// A streamed tar archive of part of an image.
    #[doc = crate::doc_examples::example!(image_archive)]
    pub struct Archive {
        resp: Response,
        idle: Duration,
        tracker: Option<Tracker>,
    }
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>()).finish_non_exhaustive()
    }
}

impl Archive {
    /// Reports the archive's bytes, as they are read by [`chunk`](Self::chunk) or
    /// [`save`](Self::save), to `progress`, out of the response's `Content-Length` when the
    /// server sends one (a tar stream is usually sent without).
    #[doc = crate::doc_examples::example!(archive_progress)]
    pub fn progress(mut self, progress: &Progress) -> Self {
        self.tracker = Some(Tracker::start(Some(progress), ProgressKind::Archive, self.resp.content_length()));
        self
    }

    /// The next chunk of the tar stream, or `None` at the end.
    #[crate::maybe]
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let chunk = transport::next_chunk(&mut self.resp, self.idle).await;
        if let Some(tracker) = &mut self.tracker {
            match &chunk {
                Ok(Some(bytes)) => tracker.advance(bytes.len()),
                Ok(None) => tracker.succeed(),
                // Dropping the tracker reports the failure.
                Err(_) => self.tracker = None,
            }
        }
        chunk
    }

    /// Saves the whole archive to `local`, atomically.
    #[crate::maybe]
    pub async fn save(self, local: impl AsRef<Path>) -> Result<PathBuf> {
        let local = local.as_ref().to_path_buf();
        let mut tracker = self.tracker.unwrap_or_else(|| Tracker::start(None, ProgressKind::Archive, None));
        save_stream(self.resp, &local, self.idle, &tracker).await?;
        tracker.succeed();
        Ok(local)
    }
}

/// `./<file name>` for an image path, as the Python SDK's `download` default.
fn local_name(path: &str) -> Result<PathBuf> {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(PathBuf::from(".").join(name)),
        _ => Err(Error::invalid_argument("path", format!("`{path}` names no file"))),
    }
}

crate::flavor::declare! {
    /// One entry of a directory listing (an image's `ls`): the server's record plus
    /// where it is, so it can be read, downloaded or listed without rebuilding paths. Derefs
    /// to the record ([`FileItem`]: size, mode, owner, `is_dir`, …).
    #[doc = crate::doc_examples::example!(dir_entry)]
    #[derive(Clone)]
    pub struct DirEntry {
        item: FileItem,
        full_path: String,
        image: Image,
    }
}

impl std::fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>())
            .field("path", &self.full_path)
            .field("is_dir", &self.item.is_dir)
            .field("size", &self.item.size)
            .finish()
    }
}

impl std::ops::Deref for DirEntry {
    type Target = FileItem;
    fn deref(&self) -> &FileItem {
        &self.item
    }
}

impl DirEntry {
    /// The entry's name in its directory.
    pub fn name(&self) -> &str {
        &self.item.path
    }

    /// The entry's absolute path in the image.
    pub fn path(&self) -> &str {
        &self.full_path
    }

    /// The server's record.
    pub fn item(&self) -> &FileItem {
        &self.item
    }

    /// The image the entry belongs to.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Reads the file into memory.
    #[crate::maybe]
    pub async fn read(&self) -> Result<Bytes> {
        self.image.read(&self.full_path).await
    }

    /// Streams the file to `local` (atomically).
    #[crate::maybe]
    pub async fn download(&self, local: impl AsRef<Path>) -> Result<PathBuf> {
        self.image.download(&self.full_path, local).await
    }

    /// Streams the file to `./<name>`.
    #[crate::maybe]
    pub async fn download_here(&self) -> Result<PathBuf> {
        self.image.download_here(&self.full_path).await
    }

    /// Lists the directory this entry is (an error from the server if it is not one).
    #[crate::maybe]
    pub async fn ls(&self) -> Result<Vec<DirEntry>> {
        self.image.ls(&self.full_path).await
    }
}

/// Streams a body into a temp file beside `local`, then renames it into place.
#[crate::maybe]
async fn save_stream(mut resp: Response, local: &Path, idle: Duration, tracker: &Tracker) -> Result<()> {
    let mut sink = transport::AtomicFile::create(local).await?;
    while let Some(chunk) = transport::next_chunk(&mut resp, idle).await? {
        sink.write(&chunk).await?;
        tracker.advance(chunk.len());
    }
    sink.commit().await
}
