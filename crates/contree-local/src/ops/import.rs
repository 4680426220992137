//! `POST /images/import`: an image from an OCI registry, or the built-in base image.
//!
//! A registry import runs as an operation of its own (a tokio task): the manifest and config
//! through `oci-client` ([`crate::images::registry`]), then each layer downloaded to a file
//! next to the run dirs, checked against its digest, and unpacked by a blocking task into a
//! layer directory ([`crate::images::unpack`]). Layers are stored once per digest
//! (`layers/oci-<digest>`), so images sharing a base layer share its directory, and the image
//! is a root of its own: its layers alone, topped by a small layer holding the mount points
//! the sandbox needs (`/proc`, `/dev`) and Docker's `/etc/hosts` and `/etc/resolv.conf`. Its UUID is derived from the manifest digest, so an
//! unchanged remote image is imported once and keeps its UUID; only the tag moves.
//!
//! Progress goes into the operation's log as `stdout` events (one line each, no `spid`: no
//! process runs). Every failure ends the operation FAILED with `error` saying what failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contree_core::OciReference;
use contree_core::models::{
    EventPayload, ImageImportMetadata, ImageImportRequest, ImageSource, OperationKind, OperationStatus, StreamRepr,
};
use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::images::base::BASE_IMAGE_TAG;
use crate::images::registry;
use crate::images::unpack::{self, Budget, Compression};
use crate::store::{ImageRecord, OperationRecord};

use super::live::LiveOp;
use super::{Ops, Outcome, stopped_outcome, store_error};

/// The default import timeout, seconds (the spec's).
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// The most files (entries) one imported image may hold.
const MAX_ENTRIES: u64 = 2_000_000;

/// Whether an import reference names the built-in base image (`contree-local/base[:latest]`,
/// with or without a `docker://` scheme or a Docker Hub host).
pub(crate) fn names_base_image(url: &str) -> bool {
    let mut r = url.trim();
    for scheme in ["docker://", "oci://"] {
        if let Some(rest) = r.strip_prefix(scheme) {
            r = rest;
        }
    }
    for host in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = r.strip_prefix(host) {
            r = rest;
        }
    }
    let base = BASE_IMAGE_TAG.strip_suffix(":latest").unwrap_or(BASE_IMAGE_TAG);
    r == BASE_IMAGE_TAG || r == base
}

/// What a registry import needs, validated.
struct Source {
    reference: OciReference,
    /// Never logged nor echoed (the metadata masks the password).
    auth: RegistryAuth,
    tag: Option<String>,
    timeout: Duration,
}

/// Creates an import operation: the base image completes at once, a registry import runs in
/// the background. Bad requests are 400 before anything is recorded.
pub(crate) fn import(ops: &Arc<Ops>, req: ImageImportRequest) -> Result<Uuid, ApiError> {
    if req.registry.url.trim().is_empty() {
        return Err(ApiError::bad_request("`registry.url` must not be empty"));
    }
    if let Some(tag) = &req.tag
        && !ImageSource::is_valid_tag(tag)
    {
        return Err(ApiError::bad_request(format!("`tag` `{tag}` is not a valid image tag")));
    }
    if req.timeout == Some(0) {
        return Err(ApiError::bad_request("`timeout` must be at least 1 second"));
    }
    let max_timeout = ops.limits.max_timeout.as_secs();
    if let Some(t) = req.timeout
        && t > max_timeout
    {
        return Err(ApiError::bad_request(format!(
            "`timeout` {t} s is above this server's images_import_max_timeout of {max_timeout} s"
        )));
    }
    let base = names_base_image(&req.registry.url);
    let source = if base {
        None
    } else {
        let reference = OciReference::parse(req.registry.url.trim())
            .map_err(|e| ApiError::bad_request(format!("`registry.url`: {}", e.message())))?;
        let (user, password) = match &req.registry.credentials {
            Some(c) => (c.username.as_deref().filter(|u| !u.is_empty()), c.password.as_deref()),
            None => (None, None),
        };
        if user.is_some() != password.is_some() {
            return Err(ApiError::bad_request(
                "`registry.credentials` needs both `username` and `password` (or neither)",
            ));
        }
        let secs = req.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS).min(max_timeout);
        Some(Source {
            reference,
            auth: registry::auth(user, password),
            tag: req.tag.clone(),
            timeout: Duration::from_secs(secs),
        })
    };
    let mut registry = req.registry.clone();
    if let Some(c) = &mut registry.credentials
        && c.password.is_some()
    {
        c.password = Some("<MASKED>".to_owned());
    }
    let meta = ImageImportMetadata {
        registry: Some(registry),
        tag: req.tag.clone(),
        timeout: Some(req.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS)),
    };
    let uuid = Uuid::new_v4();
    let record =
        OperationRecord::new(uuid, OperationKind::ImageImport, serde_json::to_value(&meta).unwrap_or(Value::Null));
    ops.store.insert_operation(&record).map_err(store_error)?;
    let live = LiveOp::new(uuid, OperationKind::ImageImport, false, 0);
    ops.register(live.clone())?;
    let Some(source) = source else {
        live.lock().started = Some(std::time::Instant::now());
        let outcome = match import_base(ops, uuid, req.tag.as_deref()) {
            Ok(image) => Outcome { result_tag: image.tag, ..Outcome::success(Some(image.uuid)) },
            Err(e) => Outcome::failed(e),
        };
        ops.finish(&live, record, outcome);
        return Ok(uuid);
    };
    let ops = ops.clone();
    let span = live.span.clone();
    tokio::runtime::Handle::current()
        .spawn(tracing::Instrument::instrument(run_registry_import(ops, live, record, source), span));
    Ok(uuid)
}

/// Runs a registry import to its end (success, failure, timeout, cancel or shutdown).
async fn run_registry_import(ops: Arc<Ops>, live: Arc<LiveOp>, record: OperationRecord, source: Source) {
    // At most images_import_max_concurrency imports run at once; the others wait PENDING.
    let permit = tokio::select! {
        p = ops.imports.slots.clone().acquire_owned() => p.ok(),
        _ = live.stop_notify.notified() => None,
    };
    let Some(_permit) = permit else {
        let outcome = stopped_outcome(live.stop_reason());
        let _ = tokio::task::spawn_blocking(move || ops.finish(&live, record, outcome)).await;
        return;
    };
    live.lock().started = Some(std::time::Instant::now());
    live.set_status(OperationStatus::Executing);
    let mut executing = record.clone();
    executing.status = OperationStatus::Executing;
    executing.started_at = Some(crate::store::now());
    {
        let ops = ops.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = ops.store.update_operation(&executing) {
                tracing::warn!(operation = %executing.uuid, error = %e, "could not record EXECUTING");
            }
        })
        .await;
    }
    let url = source.reference.url();
    let staging = ops.data_dir.join("runs").join(format!("import-{}", live.uuid));
    let abandoned = Arc::new(AtomicBool::new(false));
    let work = pull(&ops, &live, &source, &staging, abandoned.clone());
    let outcome = tokio::select! {
        r = tokio::time::timeout(source.timeout, work) => match r {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => Outcome::failed(format!("cannot import `{url}`: {why}")),
            Err(_) => Outcome::failed(format!(
                "the import of `{url}` timed out after {} s (the request's `timeout`)",
                source.timeout.as_secs()
            )),
        },
        _ = live.stop_notify.notified() => stopped_outcome(live.stop_reason()),
    };
    // A layer still being unpacked stops at its next entry.
    abandoned.store(true, Ordering::SeqCst);
    if let Outcome { error: Some(e), .. } = &outcome {
        progress(&live, &format!("failed: {e}"));
    }
    let ops2 = ops.clone();
    let _ = tokio::task::spawn_blocking(move || {
        remove_staging(&staging);
        // Two imports of the same new image may finish together: the second one finds the
        // first one's image and only moves the tag, instead of failing on the duplicate.
        let _recording = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = reuse_if_recorded(&ops2, outcome);
        ops2.finish(&live, record, outcome);
    })
    .await;
}

/// Held while an import checks for its image and records it (see [`run_registry_import`]).
static RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `outcome` without its new image when an image with that uuid was recorded meanwhile (the
/// tag then moves to it).
fn reuse_if_recorded(ops: &Ops, mut outcome: Outcome) -> Outcome {
    let Some(image) = &outcome.new_image else { return outcome };
    match ops.store.get_image(image.uuid) {
        Ok(Some(_)) => {
            let uuid = image.uuid;
            if let Some(tag) = outcome.result_tag.clone()
                && let Err(e) = ops.store.set_tag(uuid, &tag)
            {
                return Outcome::failed(format!("cannot tag the imported image: {e}"));
            }
            outcome.new_image = None;
            outcome
        }
        Ok(None) => outcome,
        Err(e) => Outcome::failed(format!("cannot record the imported image: {e}")),
    }
}

fn remove_staging(staging: &Path) {
    if let Err(e) = std::fs::remove_dir_all(staging)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %staging.display(), error = %e, "could not remove an import's scratch directory");
    }
}

/// One line of progress in the operation's log.
fn progress(live: &LiveOp, line: &str) {
    let mut text = line.to_owned();
    text.push('\n');
    live.push(None, &EventPayload::Stdout(StreamRepr::from_bytes(text.as_bytes())));
}

/// The UUID of the image a manifest digest names: the same digest, the same image.
fn image_uuid(manifest_digest: &str) -> Uuid {
    let hash = Sha256::new().chain_update(b"contree-local registry image\n").chain_update(manifest_digest).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The hex of a `sha256:` digest, or why it can't be used.
fn sha256_hex(digest: &str) -> Result<&str, String> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        Some(("sha256", _)) => Err(format!("`{digest}` is not a valid sha256 digest")),
        _ => Err(format!("unsupported digest algorithm in `{digest}` (only sha256 is supported)")),
    }
}

/// The layer directory id of a layer blob.
fn layer_id(hex: &str) -> String {
    // Layer ids are at most 64 characters: 60 hex digits are plenty to tell layers apart.
    format!("oci-{}", &hex[..60])
}

/// The `ENV` of an image config (`KEY=VALUE` strings), as an image env.
fn config_env(config: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let v: Value = serde_json::from_str(config).map_err(|e| format!("the image config is not valid JSON: {e}"))?;
    let mut env = std::collections::BTreeMap::new();
    if let Some(list) = v.pointer("/config/Env").and_then(Value::as_array) {
        for item in list {
            let Some(kv) = item.as_str() else { continue };
            if let Some((k, val)) = kv.split_once('=')
                && !k.is_empty()
                && !k.contains('\0')
                && !val.contains('\0')
            {
                env.insert(k.to_owned(), val.to_owned());
            }
        }
    }
    Ok(env)
}

/// Pulls the image and returns the outcome to record; `Err` is the reason of a failure.
async fn pull(
    ops: &Arc<Ops>,
    live: &Arc<LiveOp>,
    source: &Source,
    staging: &Path,
    abandoned: Arc<AtomicBool>,
) -> Result<Outcome, String> {
    let r = &source.reference;
    let client = registry::client(r.registry(), &ops.imports.insecure_registries);
    let reference = registry::reference(r);
    progress(live, &format!("resolving {}", r.url()));
    let what = format!("image `{}`", r.url().trim_start_matches("docker://"));
    let (manifest, digest, config) =
        client.pull_manifest_and_config(&reference, &source.auth).await.map_err(|e| registry::describe(&e, &what))?;
    let total: i64 = manifest.layers.iter().map(|l| l.size.max(0)).sum();
    progress(live, &format!("manifest {digest}: {} layer(s), {total} bytes compressed", manifest.layers.len()));

    let uuid = image_uuid(&digest);
    let store = ops.store.clone();
    let tag = source.tag.clone();
    let existing = tokio::task::spawn_blocking(move || -> Result<Option<ImageRecord>, String> {
        let Some(image) = store.get_image(uuid).map_err(|e| e.to_string())? else { return Ok(None) };
        match tag {
            Some(t) => store.set_tag(uuid, &t).map(Some).map_err(|e| e.to_string()),
            None => Ok(Some(image)),
        }
    })
    .await
    .map_err(|e| format!("the import crashed: {e}"))??;
    if let Some(image) = existing {
        progress(live, &format!("unchanged: already imported as image {uuid}"));
        return Ok(Outcome { result_tag: image.tag, ..Outcome::success(Some(uuid)) });
    }

    if manifest.layers.is_empty() {
        return Err("the image has no layers".to_owned());
    }
    // One directory per layer plus the mount points, below at most MAX_LAYERS.
    if manifest.layers.len() + 1 > crate::images::MAX_LAYERS {
        return Err(format!(
            "the image has {} layers; at most {} can be stacked",
            manifest.layers.len(),
            crate::images::MAX_LAYERS - 1
        ));
    }
    let mut plan = Vec::with_capacity(manifest.layers.len());
    for (i, layer) in manifest.layers.iter().enumerate() {
        let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
            format!("unsupported media type `{}` for layer {} ({})", layer.media_type, i + 1, layer.digest)
        })?;
        let hex = sha256_hex(&layer.digest)?;
        plan.push((layer.clone(), compression, hex.to_owned()));
    }
    let max = ops.imports.max_bytes;
    if u64::try_from(total).unwrap_or(u64::MAX) > max {
        return Err(format!("the image's layers weigh {total} bytes, more than the import limit of {max} bytes"));
    }
    let env = config_env(&config)?;

    tokio::fs::create_dir_all(staging).await.map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let root_layer = {
        let (store, ids, staging) = (ops.store.clone(), ops.ids, staging.to_path_buf());
        tokio::task::spawn_blocking(move || mount_points_layer(&store, ids, &staging))
            .await
            .map_err(|e| format!("the import crashed: {e}"))??
    };
    let mut budget = Budget::new(max, MAX_ENTRIES);
    let n = plan.len();
    let mut ids = Vec::with_capacity(n);
    for (i, (layer, compression, hex)) in plan.into_iter().enumerate() {
        let id = layer_id(&hex);
        let label = format!("layer {}/{n} {}", i + 1, layer.digest);
        if ops.store.layer_path(&id).map_err(|e| e.to_string())?.is_dir() {
            progress(live, &format!("{label}: already present"));
            ids.push(id);
            continue;
        }
        let blob = staging.join(format!("blob-{i}"));
        let got = download(&client, &reference, &layer, &hex, &blob, budget.bytes).await?;
        progress(live, &format!("{label}: downloaded {got} bytes"));
        let (store, ids_range, staging2, stop) = (ops.store.clone(), ops.ids, staging.to_path_buf(), abandoned.clone());
        let id2 = id.clone();
        let (b, unpacked) = tokio::task::spawn_blocking(move || {
            let r = unpack_into_store(&store, ids_range, &staging2, &blob, compression, &id2, budget, &stop);
            let _ = std::fs::remove_file(&blob);
            r
        })
        .await
        .map_err(|e| format!("the import crashed: {e}"))?
        .map_err(|e| format!("{label}: {e}"))?;
        budget = b;
        let skipped = if unpacked.skipped_devices > 0 {
            format!(", {} device node(s) skipped", unpacked.skipped_devices)
        } else {
            String::new()
        };
        progress(
            live,
            &format!(
                "{label}: unpacked {} entries, {} bytes, {} whiteout(s){skipped}",
                unpacked.entries, unpacked.bytes, unpacked.whiteouts
            ),
        );
        ids.push(id);
    }
    // The manifest lists layers bottom first; a stack is topmost first.
    ids.reverse();
    let mut image = ImageRecord::new(uuid, None, Some(root_layer)).with_operation(live.uuid).with_env(env);
    image.lower_layers = ids;
    image.own_root = true;
    image.tag = source.tag.clone();
    progress(live, &format!("image {uuid}"));
    Ok(Outcome { result_tag: source.tag.clone(), new_image: Some(image), ..Outcome::success(Some(uuid)) })
}

/// Downloads one layer blob to `dest`, checking its size and sha256 digest. Returns its size.
async fn download(
    client: &oci_client::Client,
    reference: &oci_client::Reference,
    layer: &OciDescriptor,
    hex: &str,
    dest: &Path,
    budget: u64,
) -> Result<u64, String> {
    let what = format!("layer {}", layer.digest);
    let mut stream = client.pull_blob_stream(reference, layer).await.map_err(|e| registry::describe(&e, &what))?;
    let mut file = tokio::fs::File::create(dest).await.map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let declared = u64::try_from(layer.size).ok().filter(|s| *s > 0);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // oci-client checks the digest too, at the end of the stream.
            Err(e) if e.to_string().contains("Invalid digest") => break,
            Err(e) => return Err(format!("downloading {what} failed: {e}")),
        };
        got += chunk.len() as u64;
        if declared.is_some_and(|d| got > d) {
            return Err(format!("{what} is larger than the {} bytes its manifest says", layer.size));
        }
        if got > budget {
            return Err(format!("{what} is larger than what the import may still take ({budget} bytes)"));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    file.flush().await.map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    let actual = hex::encode(hasher.finalize());
    if actual != hex {
        return Err(format!("layer digest mismatch: {what} arrived as sha256:{actual}"));
    }
    Ok(got)
}

/// Unpacks a downloaded blob into `staging/layer-<id>` and moves it into the store as layer
/// `id` (unless another import got there first: then that one is kept).
#[allow(clippy::too_many_arguments)]
fn unpack_into_store(
    store: &crate::store::Store,
    ids: crate::sandbox::IdRange,
    staging: &Path,
    blob: &Path,
    compression: Compression,
    id: &str,
    mut budget: Budget,
    stop: &AtomicBool,
) -> Result<(Budget, unpack::Unpacked), String> {
    let dir = staging.join(format!("layer-{id}"));
    new_layer_dir(&dir, ids)?;
    let file = std::fs::File::open(blob).map_err(|e| format!("cannot open {}: {e}", blob.display()))?;
    let reader = StopReader { inner: file, stop };
    let unpacked = unpack::unpack_layer(reader, compression, &dir, ids, &mut budget)?;
    adopt(store, &dir, id)?;
    Ok((budget, unpacked))
}

/// A reader that fails once the import was abandoned (timeout, cancel), so that a blocking
/// unpack stops soon.
struct StopReader<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: std::io::Read> std::io::Read for StopReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the import was stopped"));
        }
        self.inner.read(buf)
    }
}

/// An empty layer directory owned by the sandbox's root.
fn new_layer_dir(dir: &Path, ids: crate::sandbox::IdRange) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o755).create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::os::unix::fs::chown(dir, Some(ids.base()), Some(ids.base()))
        .map_err(|e| format!("cannot chown {}: {e}", dir.display()))
}

/// Moves a finished layer directory into the store as `id`; when the id is already there
/// (the same layer, unpacked by a concurrent import) the existing one is kept.
fn adopt(store: &crate::store::Store, dir: &Path, id: &str) -> Result<(), String> {
    let dest: PathBuf = store.layer_path(id).map_err(|e| e.to_string())?;
    match std::fs::rename(dir, &dest) {
        Ok(()) => {}
        Err(e) if dest.is_dir() => {
            tracing::debug!(layer = id, error = %e, "layer already present; keeping the existing one");
            let _ = std::fs::remove_dir_all(dir);
            return Ok(());
        }
        Err(e) => return Err(format!("cannot move the layer into {}: {e}", dest.display())),
    }
    std::fs::File::open(store.layers_dir())
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", store.layers_dir().display()))
}

/// The layer on top of every imported image: the mount points a sandbox needs (`/proc`,
/// `/dev`), so that no run has to create them in its own layer, and, as Docker provides them,
/// an `/etc/hosts` for localhost and an `/etc/resolv.conf` naming the DNS of a run's network
/// (slirp4netns' `10.0.2.3`). One per id range.
fn mount_points_layer(
    store: &crate::store::Store,
    ids: crate::sandbox::IdRange,
    staging: &Path,
) -> Result<String, String> {
    let id = format!("oci-root-{}", ids.base());
    if store.layer_path(&id).map_err(|e| e.to_string())?.is_dir() {
        return Ok(id);
    }
    let dir = staging.join("mount-points");
    new_layer_dir(&dir, ids)?;
    for name in ["proc", "dev", "etc"] {
        new_layer_dir(&dir.join(name), ids)?;
    }
    for (name, content) in [
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ("etc/resolv.conf", "nameserver 10.0.2.3\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::os::unix::fs::chown(&path, Some(ids.base()), Some(ids.base()))
            .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    adopt(store, &dir, &id)?;
    Ok(id)
}

/// "Imports" the base image: the base itself, or — when another tag is asked for — an image
/// sharing its filesystem under that tag (so the base keeps its own tag).
fn import_base(ops: &Ops, op: Uuid, tag: Option<&str>) -> Result<ImageRecord, String> {
    let base = ops
        .store
        .get_image(ops.base.uuid)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the built-in base image is missing from the store".to_owned())?;
    let Some(tag) = tag.filter(|t| *t != BASE_IMAGE_TAG) else {
        return Ok(base);
    };
    if let Some(existing) = ops.store.find_by_tag(tag).map_err(|e| e.to_string())?
        && existing.parent == Some(base.uuid)
        && existing.layer.is_none()
    {
        return Ok(existing);
    }
    let alias = ImageRecord::new(Uuid::new_v4(), Some(base.uuid), None).with_operation(op).with_env(base.env.clone());
    ops.store.insert_image(&alias).map_err(|e| e.to_string())?;
    ops.store.set_tag(alias.uuid, tag).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_base_image_reference() {
        for ok in [
            BASE_IMAGE_TAG.to_owned(),
            format!("docker://{BASE_IMAGE_TAG}"),
            format!("docker://docker.io/{BASE_IMAGE_TAG}"),
            BASE_IMAGE_TAG.trim_end_matches(":latest").to_owned(),
        ] {
            assert!(names_base_image(&ok), "{ok}");
        }
        for bad in ["docker://docker.io/library/ubuntu:latest", "busybox", ""] {
            assert!(!names_base_image(bad), "{bad}");
        }
    }

    #[test]
    fn the_same_digest_is_the_same_image() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(image_uuid(&a), image_uuid(&a));
        assert_ne!(image_uuid(&a), image_uuid(&b));
    }

    #[test]
    fn digests_and_env_are_checked() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")).unwrap(), hex);
        assert_eq!(layer_id(&hex).len(), 64);
        assert!(sha256_hex("sha512:abc").unwrap_err().contains("unsupported digest algorithm"));
        assert!(sha256_hex("sha256:../../etc").is_err());
        let env = config_env(r#"{"config":{"Env":["PATH=/bin:/usr/bin","GREETING=a=b","=x","BAD"]}}"#).unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env["GREETING"], "a=b");
        assert!(config_env("{}").unwrap().is_empty());
        assert!(config_env("nope").is_err());
    }
}
