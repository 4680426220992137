//! Images: listing, lookup by tag or uuid, import from registries, tagging.

use std::time::Duration;

use contree_core::models::{
    EventPayload, Image as ImageModel, ImageImportRequest, ImageListResponse, OperationResponse,
};
use contree_core::progress::{ImportLine, Progress, ProgressKind};
use contree_core::{
    ApiUrl, Error, ImageKind, ImageRef, IntoImageRef, IntoUuid, OciReference, Result, Secret, TimeFilter, validate,
};
use reqwest::Method;
use uuid::Uuid;

use super::client::Client;
use super::events::{EventFollower, Followed};
use super::image::Image;
use super::paging::Paging;
use super::progress::Tracker;
use crate::transport;

crate::flavor::declare! {
    /// The images area of the API. Get it with `client.images()`.
    #[doc = crate::doc_examples::example!(images)]
    #[derive(Debug, Clone)]
    pub struct Images {
        client: Client,
    }
}

impl Images {
    pub(crate) fn new(client: Client) -> Self {
        Images { client }
    }

    /// Lists images. Set filters on the returned builder, then `send()` for a `Vec`, or
    /// iterate lazily page by page (a `Stream` in async, an `Iterator` in blocking).
    #[doc = crate::doc_examples::example!(images_list)]
    pub fn list(&self) -> ListImages {
        ListImages {
            client: self.client.clone(),
            error: None,
            tagged: false,
            tag_prefix: None,
            kind: None,
            uuid: None,
            since: None,
            until: None,
            limit: None,
            page_size: self.client.config().images_list_batch_size.clamp(1, 1000),
        }
    }

    /// An image by UUID or tag, without any request: a tag is resolved by the server when the
    /// image runs. OCI references are normalized (`docker://docker.io/library/ubuntu:latest`
    /// and `ubuntu:latest` name the same tag).
    #[doc = crate::doc_examples::example!(images)]
    pub fn use_image(&self, reference: impl IntoImageRef) -> Result<Image> {
        Ok(Image::from_ref(self.client.clone(), reference.into_image_ref()?))
    }

    /// Like [`use_image`](Self::use_image), but checks that the image exists (NotFound otherwise).
    #[crate::maybe]
    pub async fn use_image_strict(&self, reference: impl IntoImageRef) -> Result<Image> {
        match reference.into_image_ref()? {
            ImageRef::Uuid(u) => self.get_by_uuid(u).await,
            ImageRef::Tag(t) => self.get_by_tag(&t).await,
        }
    }

    /// The image with this UUID (`GET /inspect/{uuid}/`).
    #[crate::maybe]
    pub async fn get_by_uuid(&self, uuid: impl IntoUuid) -> Result<Image> {
        let uuid = uuid.into_uuid("uuid")?;
        let http = self.client.http();
        let m: ImageModel = http.json(&http.call(Method::GET, &["inspect", &uuid.to_string(), ""])).await?;
        Ok(Image::from_model(self.client.clone(), m))
    }

    /// The image holding this tag. Reads the 302 of `GET /inspect/?tag=` (never followed),
    /// then fetches the image.
    #[doc = crate::doc_examples::example!(images_get_by_tag)]
    #[crate::maybe]
    pub async fn get_by_tag(&self, tag: &str) -> Result<Image> {
        let uuid = self.resolve_tag(tag).await?;
        let mut image = self.get_by_uuid(uuid).await?;
        if image.tag.is_none() {
            image.tag = Some(tag.to_string());
        }
        Ok(image)
    }

    /// The UUID of the image holding `tag`, from the `Location` of `GET /inspect/?tag=`.
    #[crate::maybe]
    pub(crate) async fn resolve_tag(&self, tag: &str) -> Result<Uuid> {
        validate::tag("tag", tag)?;
        let http = self.client.http();
        let call = http.call_with_query(Method::GET, &["inspect", ""], [("tag", tag.to_string())]);
        let resp = http.send(&call).await?;
        let status = resp.status();
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        if status.is_redirection() {
            let location = location.ok_or_else(|| {
                Error::decode("tag lookup answered a redirect without Location", std::fmt::Error)
                    .with_request("GET", call.url.as_str())
            })?;
            let target = ApiUrl::resolve_location(&call.url, &location)?;
            let last = target.path_segments().and_then(|mut s| s.rfind(|seg| !seg.is_empty()).map(str::to_string));
            return last.and_then(|seg| Uuid::parse_str(&seg).ok()).ok_or_else(|| {
                Error::decode(format!("tag lookup redirected to `{location}`, which names no image"), std::fmt::Error)
                    .with_request("GET", call.url.as_str())
            });
        }
        // Some deployments answer the image directly instead of redirecting.
        let body = super::http::body_bytes(resp).await.map_err(|e| super::http::classify(e).1)?;
        let m: ImageModel = super::http::decode_json(&call, &body)?;
        Ok(m.uuid)
    }

    /// "Use it if present, else import it": the image holding the reference's tag, or an
    /// import of the reference. A UUID is only looked up.
    #[doc = crate::doc_examples::example!(images_oci)]
    pub fn oci(&self, reference: &str) -> ImportImage {
        ImportImage::new(self.client.clone(), reference, ImportMode::UseOrImport)
    }

    /// Imports an image from a registry (`POST /images/import`) and waits for it.
    #[doc = crate::doc_examples::example!(images_import)]
    pub fn import_from(&self, reference: &str) -> ImportImage {
        ImportImage::new(self.client.clone(), reference, ImportMode::Import)
    }

    /// Gives the image `tag`, moving it from any other image (`PATCH /images/{uuid}/tag`).
    #[doc = crate::doc_examples::example!(images_tag)]
    #[crate::maybe]
    pub async fn tag(&self, uuid: impl IntoUuid, tag: &str) -> Result<Image> {
        let uuid = uuid.into_uuid("uuid")?;
        validate::tag("tag", tag)?;
        let http = self.client.http();
        let call = http
            .call(Method::PATCH, &["images", &uuid.to_string(), "tag"])
            .json(&contree_core::models::TagRequest { tag: tag.to_string() })?;
        let m: ImageModel = http.json(&call).await?;
        Ok(Image::from_model(self.client.clone(), m))
    }

    /// Removes `tag` from the image, or every tag when `None` (`DELETE /images/{uuid}/tag`).
    /// Returns the image the server reports (a public image the tag reverts to), if any: the
    /// server may answer 200 with an image or 204 without a body.
    #[crate::maybe]
    pub async fn untag(&self, uuid: impl IntoUuid, tag: Option<&str>) -> Result<Option<Image>> {
        let uuid = uuid.into_uuid("uuid")?;
        let query: Vec<(&str, String)> = match tag {
            Some(t) => {
                validate::tag("tag", t)?;
                vec![("tag", t.to_string())]
            }
            None => Vec::new(),
        };
        let http = self.client.http();
        let call = http.call_with_query(Method::DELETE, &["images", &uuid.to_string(), "tag"], query);
        let resp = http.send(&call).await?;
        let body = super::http::body_bytes(resp).await.map_err(|e| super::http::classify(e).1)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let m: ImageModel = super::http::decode_json(&call, &body)?;
        Ok(Some(Image::from_model(self.client.clone(), m)))
    }
}

crate::flavor::declare! {
    /// Builder for an image listing. Ends in `send()`.
    #[doc = crate::doc_examples::example!(images_list)]
    #[derive(Debug, Clone)]
    pub struct ListImages {
        pub(crate) client: Client,
        error: Option<String>,
        tagged: bool,
        tag_prefix: Option<String>,
        kind: Option<ImageKind>,
        uuid: Option<Uuid>,
        since: Option<TimeFilter>,
        until: Option<TimeFilter>,
        pub(crate) limit: Option<usize>,
        page_size: u32,
    }
}

impl ListImages {
    /// Only images that have a tag.
    pub fn tagged(mut self, tagged: bool) -> Self {
        self.tagged = tagged;
        self
    }

    /// Only images whose tag starts with `prefix` (implies `tagged`).
    pub fn tag_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        if prefix.trim().is_empty() || prefix.contains('\0') {
            self.error.get_or_insert_with(|| "tag_prefix: must be non-empty text".into());
        }
        self.tag_prefix = Some(prefix);
        self
    }

    /// Only runs' results or only imports (the Python SDK's `ImageKind`).
    pub fn kind(mut self, kind: ImageKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only the image with this UUID.
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }

    /// Only images created after this (an age like `Duration::from_secs(3600)`, a
    /// `SystemTime`, or `TimeFilter::parse("1w")?`).
    pub fn since(mut self, since: impl Into<TimeFilter>) -> Self {
        self.since = Some(since.into());
        self
    }

    /// Only images created before this.
    pub fn until(mut self, until: impl Into<TimeFilter>) -> Self {
        self.until = Some(until.into());
        self
    }

    /// At most `n` images in total ("first N").
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// How many images one request asks for (1..=1000).
    pub fn page_size(mut self, n: u32) -> Self {
        if !(1..=1000).contains(&n) {
            self.error.get_or_insert_with(|| format!("page_size: {n} is outside 1..=1000"));
        }
        self.page_size = n;
        self
    }

    /// Fetches every matching image (or the first `limit`) into a `Vec`.
    #[crate::maybe]
    pub async fn send(self) -> Result<Vec<Image>> {
        let mut pager = self.pager()?;
        let mut out = Vec::new();
        while let Some(page) = pager.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }

    /// A page-by-page reader over the listing. The flavor crates wrap it in a `Stream` or an
    /// `Iterator`.
    pub(crate) fn pager(self) -> Result<ImagePager> {
        if let Some(e) = &self.error {
            let (arg, reason) = e.split_once(": ").unwrap_or(("list", e));
            let arg: &'static str = if arg == "tag_prefix" { "tag_prefix" } else { "page_size" };
            return Err(Error::invalid_argument(arg, reason));
        }
        let mut query: Vec<(&'static str, String)> = Vec::new();
        if self.tagged || self.tag_prefix.is_some() {
            query.push(("tagged", "1".into()));
        }
        if let Some(p) = &self.tag_prefix {
            query.push(("tag", p.clone()));
        }
        if let Some(k) = self.kind {
            query.push(("kind", k.as_query().into()));
        }
        if let Some(u) = self.uuid {
            query.push(("uuid", u.to_string()));
        }
        if let Some(s) = &self.since {
            query.push(("since", s.to_query()?));
        }
        if let Some(u) = &self.until {
            query.push(("until", u.to_query()?));
        }
        let paging = Paging::new(query, self.limit, self.page_size as usize);
        Ok(ImagePager { client: self.client, paging })
    }
}

/// Reads an image listing one page at a time.
pub(crate) struct ImagePager {
    client: Client,
    paging: Paging,
}

impl ImagePager {
    #[crate::maybe]
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<Image>>> {
        let Some((query, want)) = self.paging.next_request() else { return Ok(None) };
        let http = self.client.http();
        let page: ImageListResponse = http.json(&http.call_with_query(Method::GET, &["images"], query)).await?;
        self.paging.advance(page.images.len(), want);
        let images: Vec<Image> =
            page.images.into_iter().take(want).map(|m| Image::from_model(self.client.clone(), m)).collect();
        if images.is_empty() { Ok(None) } else { Ok(Some(images)) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportMode {
    UseOrImport,
    Import,
}

crate::flavor::declare! {
    /// Builder for an import (or "use or import"). Ends in `send()`.
    #[doc = crate::doc_examples::example!(images_oci)]
    #[derive(Clone)]
    pub struct ImportImage {
        client: Client,
        reference: String,
        mode: ImportMode,
        tag: Option<String>,
        username: Option<String>,
        password: Option<Secret>,
        timeout: Option<Duration>,
        progress: Option<Progress>,
    }
}

impl std::fmt::Debug for ImportImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>())
            .field("reference", &self.reference)
            .field("mode", &self.mode)
            .field("tag", &self.tag)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl ImportImage {
    fn new(client: Client, reference: &str, mode: ImportMode) -> Self {
        ImportImage {
            client,
            reference: reference.to_string(),
            mode,
            tag: None,
            username: None,
            password: None,
            timeout: None,
            progress: None,
        }
    }

    /// The tag to give the imported image (default: the reference's normalized tag).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Registry credentials, used for this import only. The password never appears in
    /// `Debug` output or errors.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(Secret::from(password.into()));
        self
    }

    /// How long to wait for the import (also sent as the server-side timeout, in seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Reports the import to `progress`: its steps as `phase` (the lines of the operation's
    /// events: `resolving …`, `manifest …`, `layer 1/2 …: downloaded N bytes`, …) and, when
    /// the events say, the layers' bytes the server downloaded out of their total. Without
    /// it the import is awaited by polling its status; with it, by following its events.
    #[doc = crate::doc_examples::example!(images_import_progress)]
    pub fn progress(mut self, progress: &Progress) -> Self {
        self.progress = Some(progress.clone());
        self
    }

    /// Looks up (for `oci`) and/or imports, waiting for the import to finish.
    #[crate::maybe]
    pub async fn send(self) -> Result<Image> {
        let mut tracker = Tracker::start(self.progress.as_ref(), ProgressKind::Import, None);
        let image = self.send_observed(&tracker).await?;
        tracker.succeed();
        Ok(image)
    }

    #[crate::maybe]
    async fn send_observed(self, tracker: &Tracker) -> Result<Image> {
        if let Some(t) = &self.tag {
            validate::tag("tag", t)?;
        }
        let images = self.client.images();
        if let Ok(uuid) = uuid::Uuid::parse_str(self.reference.trim()) {
            return match self.mode {
                ImportMode::UseOrImport => images.get_by_uuid(uuid).await,
                ImportMode::Import => Err(Error::invalid_argument("reference", "cannot import an image by UUID")),
            };
        }
        let oci = OciReference::parse(&self.reference)?;
        let tag = self.tag.clone().unwrap_or_else(|| oci.tag().to_string());
        validate::tag("tag", &tag)?;
        if self.mode == ImportMode::UseOrImport {
            tracker.phase("looking up the tag");
            match images.get_by_tag(&tag).await {
                Ok(found) => {
                    tracker.phase("already imported");
                    return Ok(found);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(contree_core::models::RegistryCredentials {
                username: Some(u.clone()),
                password: Some(p.expose().to_string()),
            }),
            (None, None) => None,
            _ => return Err(Error::invalid_argument("credentials", "give both username and password")),
        };
        let timeout = self.timeout.unwrap_or_else(|| self.client.config().import_timeout());
        let body = ImageImportRequest {
            registry: contree_core::models::ImageRegistry { url: oci.url(), credentials },
            tag: Some(tag.clone()),
            timeout: Some(timeout.as_secs().max(1)),
        };
        let span = super::trace::OpSpan::import(&body.registry.url);
        let imported = transport::instrumented!(
            span.span().clone(),
            import_and_wait(&self.client, &body, timeout, tracker.progress())
        )
        .await;
        span.end(&imported);
        let (op_id, op) = imported?;
        if let Some(progress) = tracker.progress()
            && let Some(total) = progress.watcher().total()
        {
            // Every layer is in place now, including those already present that the events
            // report without a size.
            progress.advance_to(total);
        }
        let result = op.result.unwrap_or_default();
        let uuid =
            result.image.ok_or_else(|| Error::operation_failed(op_id, "the import finished without an image uuid"))?;
        Ok(Image {
            client: self.client.clone(),
            uuid: Some(uuid),
            tag: result.tag.or(Some(tag)),
            created_at: None,
            state: contree_core::ImageState::Pulled,
            output: None,
        })
    }
}

/// Starts the import (`POST /images/import`) and waits for its operation, following its events
/// into `progress` when there is one; returns the operation id and its final record. Runs
/// inside the `contree.import` span.
#[crate::maybe]
async fn import_and_wait(
    client: &Client,
    body: &ImageImportRequest,
    timeout: Duration,
    progress: Option<&Progress>,
) -> Result<(String, OperationResponse)> {
    let http = client.http();
    let created: contree_core::models::ImageImportResponse =
        http.json(&http.call(Method::POST, &["images", "import"]).json(body)?).await?;
    let op_id = created.uuid.to_string();
    super::trace::record_operation_id(&op_id);
    let op = match progress {
        None => super::operation::wait(client, &op_id, timeout).await?,
        Some(progress) => {
            let deadline = std::time::Instant::now() + timeout;
            follow_import(client, &op_id, deadline, progress).await?;
            // The events are over; the status record holds the result (and may lag the
            // completion event by a moment).
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            super::operation::wait(client, &op_id, left.max(Duration::from_secs(5))).await?
        }
    };
    Ok((op_id, op))
}

/// Follows an import's events until its `completion` (or the terminal status, where the
/// events route is unavailable), turning each `stdout` line into `progress`'s phase and the
/// byte counts the lines carry into its total and bytes done.
#[crate::maybe]
async fn follow_import(client: &Client, op_id: &str, deadline: std::time::Instant, progress: &Progress) -> Result<()> {
    let mut events = EventFollower::new(client.clone(), op_id).deadline(Some(deadline));
    progress.set_phase("waiting for the import to start");
    while let Some(item) = events.next().await? {
        let Followed::Event(event) = item else { break };
        let EventPayload::Stdout(text) = event.payload() else { continue };
        let Ok(bytes) = text.to_bytes() else { continue };
        for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
            let said = ImportLine::parse(line);
            if let Some(total) = said.total {
                progress.set_total(Some(total));
            }
            if let Some(n) = said.downloaded {
                progress.advance(n);
            }
            progress.set_phase(line.trim());
        }
    }
    Ok(())
}
