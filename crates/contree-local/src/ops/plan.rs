//! Turning a spawn request into a validated run plan (every bad field is a 400 naming it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use contree_core::models::{ImageSource, InstanceSpawnRequest};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::config::MAX_TRUNCATE_OUTPUT_AT;
use crate::layer_quota::DEFAULT_MAX_LAYER_BYTES;
use crate::sandbox::PlacedFile;
use crate::store::ImageRecord;

use super::Ops;

/// `PATH` of a run whose env doesn't set one (the spec's default).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `truncate_output_at` when the request has none (1 MiB).
pub(crate) const DEFAULT_TRUNCATE_AT: u64 = 1024 * 1024;
/// The spec's default hostname.
pub(crate) const DEFAULT_HOSTNAME: &str = "linuxkit";

/// Environment keys whose values are masked in events and echoed metadata.
const SECRET_SUFFIXES: [&str; 6] = ["token", "secret", "password", "api_key", "credentials", "authorization"];

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct RunPlan {
    pub source: ImageRecord,
    /// What the process executes (after wrapping a shell command in `<shell> -c`).
    pub exec_command: String,
    pub exec_args: Vec<String>,
    pub shell: bool,
    pub env: BTreeMap<String, String>,
    /// The env to store in the result image (`preserve_env`), if any.
    pub preserved_env: Option<BTreeMap<String, String>>,
    /// The working directory to store in the result image (`preserve_cwd`), if any.
    pub preserved_cwd: Option<String>,
    /// Where the command starts: the request's `cwd`, else the image's, else `/`.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub network: bool,
    pub files: Vec<PlacedFile>,
    pub stdin: Vec<u8>,
    pub keep_stdin_open: bool,
    pub timeout: Option<Duration>,
    pub truncate_at: u64,
    /// The cap on the run's layer (enforced only when the server has a layer quota).
    pub max_layer_bytes: u64,
    pub disposable: bool,
}

/// Validates `req`, resolves its image and files, and returns the plan plus the metadata echo
/// (every spawn field, the image resolved and defaults filled in: [`super::echo`]).
pub(crate) fn plan_instance(ops: &Ops, req: InstanceSpawnRequest) -> Result<(RunPlan, Value), ApiError> {
    let source = resolve_image(ops, &req.image)?;

    if req.command.is_empty() {
        return Err(ApiError::bad_request("`command` must not be empty"));
    }
    no_nul("command", &req.command)?;
    for a in &req.args {
        no_nul("args", a)?;
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::bad_request(format!("`env` key `{k}` is not a valid variable name")));
        }
        no_nul("env", v)?;
    }
    let cwd = req.cwd.clone().unwrap_or_default();
    if !cwd.is_empty() && !cwd.starts_with('/') {
        return Err(ApiError::bad_request("`cwd` must be an absolute path or empty"));
    }
    no_nul("cwd", &cwd)?;
    let hostname = req.hostname.clone().unwrap_or_else(|| DEFAULT_HOSTNAME.to_owned());
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::bad_request("`hostname` must be 1 to 64 characters of letters, digits, `-` and `.`"));
    }
    let truncate_at = req.truncate_output_at.unwrap_or(DEFAULT_TRUNCATE_AT);
    if truncate_at > MAX_TRUNCATE_OUTPUT_AT {
        return Err(ApiError::bad_request(format!("`truncate_output_at` must be at most {MAX_TRUNCATE_OUTPUT_AT}")));
    }
    let timeout = match req.timeout {
        None => ops.limits.default_timeout,
        Some(0) => return Err(ApiError::bad_request("`timeout` must be at least 1 second")),
        Some(secs) if Duration::from_secs(secs) > ops.limits.max_timeout => {
            return Err(ApiError::bad_request(format!(
                "`timeout` must be at most {} seconds",
                ops.limits.max_timeout.as_secs()
            )));
        }
        Some(secs) => Some(Duration::from_secs(secs)),
    };
    let requested_layer_bytes = req.resources_limits.as_ref().and_then(|l| l.max_layer_bytes);
    if requested_layer_bytes == Some(0) {
        return Err(ApiError::bad_request("`resources_limits.max_layer_bytes` must be at least 1"));
    }
    // Accepting the cap and ignoring it would let a run fill the host's disk while the client
    // believes it is bounded: where the data dir has no quotas, a request that asks for it is
    // refused (the server's start-up log says the spec's default is not enforced).
    if ops.layer_quota.is_none()
        && let Some(bytes) = requested_layer_bytes
    {
        return Err(ApiError::bad_request(format!(
            "`resources_limits.max_layer_bytes` ({bytes}) cannot be enforced by contree-local here: its data dir is not \
             on btrfs with quotas; omit it (layers are then bounded only by the data dir's free space)"
        )));
    }
    let max_layer_bytes = requested_layer_bytes.unwrap_or(DEFAULT_MAX_LAYER_BYTES);
    let (stdin, keep_stdin_open) = match &req.stdin {
        None => (Vec::new(), false),
        Some(s) => (
            s.to_bytes().map_err(|e| ApiError::bad_request(format!("`stdin` could not be decoded: {e}")))?,
            !s.closes(),
        ),
    };
    let files = place_files(ops, &req)?;

    let shell = req.shell.unwrap_or(false);
    if shell && !req.args.is_empty() {
        // The spec ignores them; a run that silently drops its arguments would do something
        // other than what the caller wrote.
        return Err(ApiError::bad_request(
            "`args` must be empty when `shell` is true: the shell expression in `command` carries the arguments",
        ));
    }
    // Under `shell`, the image's env is inherited (request values win); otherwise only the
    // request's env applies. `preserve_env` stores the merged env in the result image, where
    // an empty value removes a variable.
    let mut merged = source.env.clone();
    for (k, v) in &req.env {
        if v.is_empty() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    let mut env = if shell { merged.clone() } else { req.env.clone() };
    env.entry("PATH".to_owned()).or_insert_with(|| DEFAULT_PATH.to_owned());
    let preserved_env = req.preserve_env.unwrap_or(false).then_some(merged);
    let (exec_command, exec_args) = if shell {
        let sh = env.get("SHELL").filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "/bin/sh".to_owned());
        (sh, vec!["-c".to_owned(), req.command.clone()])
    } else {
        (req.command.clone(), req.args.clone())
    };
    let disposable = req.disposable.unwrap_or(false);
    // Both save something into the result image, which a disposable run does not keep.
    for (field, asked) in [("preserve_env", req.preserve_env), ("preserve_cwd", req.preserve_cwd)] {
        if disposable && asked == Some(true) {
            return Err(ApiError::bad_request(format!(
                "`{field}` needs `disposable: false`: a disposable run keeps no result image to save it in"
            )));
        }
    }
    // An empty `cwd` is the image's working directory (saved by an earlier `preserve_cwd`).
    let run_cwd = if cwd.is_empty() { source.workdir.clone().unwrap_or_else(|| "/".to_owned()) } else { cwd.clone() };
    let preserved_cwd = req.preserve_cwd.unwrap_or(false).then(|| normalise_dir(&run_cwd));
    let network = network_choice(
        req.networking.and_then(|n| n.enabled),
        ops.limits.networking,
        ops.limits.networking_by_default,
    )?;
    let uid = in_id_range(ops, "uid", req.uid.unwrap_or(0))?;
    let gid = in_id_range(ops, "gid", req.gid.unwrap_or(0))?;
    for (dest, f) in &req.files {
        in_id_range(ops, &format!("files.{dest}.uid"), f.uid.unwrap_or(0))?;
        in_id_range(ops, &format!("files.{dest}.gid"), f.gid.unwrap_or(0))?;
    }

    let plan = RunPlan {
        exec_command,
        exec_args,
        shell,
        env,
        preserved_env,
        preserved_cwd,
        cwd: run_cwd,
        uid,
        gid,
        hostname,
        network,
        files,
        stdin,
        keep_stdin_open,
        timeout,
        truncate_at,
        max_layer_bytes,
        disposable,
        source,
    };
    let meta = super::echo::spawn_metadata(&req, &plan);
    Ok((plan, meta))
}

/// A directory path as saved in an image: without trailing slashes (`/` stays `/`), so that
/// `/app` and `/app/` are the same working directory.
fn normalise_dir(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() }
}

/// Finds the image a request names (`<uuid>` or `tag:<tag>`); unknown images are 404.
pub(crate) fn resolve_image(ops: &Ops, source: &ImageSource) -> Result<ImageRecord, ApiError> {
    let found = match source {
        ImageSource::Uuid(u) => ops.store.get_image(*u).map_err(super::store_error)?,
        ImageSource::Tag(t) => ops.store.find_by_tag(t).map_err(super::store_error)?,
    };
    found.ok_or_else(|| ApiError::not_found(format!("image `{source}` not found")))
}

/// Whether a run gets a network: what the request asks (`networking.enabled`), else the
/// spec's default, on, unless the server has networking turned off. Asking for a network
/// from such a server is a 400 rather than a run that silently has none.
fn network_choice(requested: Option<bool>, server_allows: bool, by_default: bool) -> Result<bool, ApiError> {
    match requested {
        Some(true) if !server_allows => Err(ApiError::bad_request(
            "`networking.enabled` is true, but this server has networking turned off \
             (`--no-networking` / `LocalConfig::with_networking(false)`); omit it or set it to false",
        )),
        Some(asked) => Ok(asked),
        None => Ok(server_allows && by_default),
    }
}

/// Directories the sandbox mounts itself (kernel interfaces and devices): a placed file there
/// would land in (or be hidden by) the run's own `/proc`, `/sys` or `/dev`.
const SANDBOX_OWNED_DIRS: [&str; 3] = ["proc", "sys", "dev"];

/// Checks a `files` destination and returns it lexically normalised (no `.`, no `//`):
/// absolute, not a directory, no `..` (which could climb out of where it seems to point),
/// and not under `/proc`, `/sys` or `/dev`.
fn file_dest(dest: &str) -> Result<String, ApiError> {
    no_nul("files", dest)?;
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") || dest.ends_with('/') {
        return Err(ApiError::bad_request(format!("`files` key `{dest}` must be an absolute file path without `..`")));
    }
    let parts: Vec<&str> = dest.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let Some(first) = parts.first() else {
        return Err(ApiError::bad_request(format!("`files` key `{dest}` must name a file, not `/`")));
    };
    if SANDBOX_OWNED_DIRS.contains(first) {
        return Err(ApiError::bad_request(format!(
            "`files` key `{dest}` is under /{first}: /proc, /sys and /dev belong to the sandbox and cannot receive files"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Sandboxes have ids `0..count` of the server's id range (their user namespace maps no
/// others), so larger ids are refused up front instead of failing inside the run.
fn in_id_range(ops: &Ops, field: &str, id: u32) -> Result<u32, ApiError> {
    if id < ops.ids.count() {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` {id} is outside the sandbox's id range: ids run from 0 to {}",
            ops.ids.count() - 1
        )))
    }
}

fn place_files(ops: &Ops, req: &InstanceSpawnRequest) -> Result<Vec<PlacedFile>, ApiError> {
    let mut out = Vec::with_capacity(req.files.len());
    for (dest, spec) in &req.files {
        let normalised = file_dest(dest)?;
        let mode = spec
            .mode_bits()
            .map_err(|e| ApiError::bad_request(format!("`files.{dest}.mode`: {}", e.message())))?
            .unwrap_or(super::echo::DEFAULT_FILE_MODE);
        let file = ops
            .store
            .get_file_by_uuid(spec.uuid)
            .map_err(super::store_error)?
            .ok_or_else(|| ApiError::bad_request(format!("`files.{dest}`: file {} was not uploaded", spec.uuid)))?;
        let source: PathBuf = ops.store.blob_path(&file.sha256).map_err(super::store_error)?;
        out.push(PlacedFile { dest: normalised, source, mode, uid: spec.uid.unwrap_or(0), gid: spec.gid.unwrap_or(0) });
    }
    Ok(out)
}

fn no_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!("`{field}` must not contain NUL bytes")));
    }
    Ok(())
}

/// Whether an env key names a secret (by its suffix, case-insensitively).
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| k.ends_with(s))
}

/// A copy of `env` with secret values replaced by `<MASKED>`.
pub(crate) fn mask_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter().map(|(k, v)| (k.clone(), if is_secret_key(k) { "<MASKED>".to_owned() } else { v.clone() })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_by_suffix() {
        let mut env = BTreeMap::new();
        env.insert("GITHUB_TOKEN".to_owned(), "ghp_x".to_owned());
        env.insert("db_password".to_owned(), "pw".to_owned());
        env.insert("PATH".to_owned(), "/bin".to_owned());
        let m = mask_env(&env);
        assert_eq!(m["GITHUB_TOKEN"], "<MASKED>");
        assert_eq!(m["db_password"], "<MASKED>");
        assert_eq!(m["PATH"], "/bin");
    }

    #[test]
    fn files_under_proc_sys_dev_are_refused_however_spelled() {
        for dest in [
            "/proc",
            "/proc/sys/kernel/core_pattern",
            "/./proc/x",
            "//proc/x",
            "/././/sys/kernel/x",
            "/dev",
            "/dev/shm/x",
            "/sys/fs/cgroup/x",
            "/./dev/./null",
        ] {
            let err = file_dest(dest).unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{dest}");
            let msg = err.message();
            assert!(msg.contains("`files`") && msg.contains(dest), "{dest}: {msg}");
            assert!(msg.contains("/proc, /sys and /dev"), "{dest}: {msg}");
        }
        // `..` is refused before any normalisation, so it cannot climb into /proc either.
        for dest in ["/a/../proc/x", "/../proc/x", "/etc/../../dev/x", "/etc/.."] {
            let msg = file_dest(dest).unwrap_err().message().to_owned();
            assert!(msg.contains("`files`") && msg.contains(dest) && msg.contains("`..`"), "{dest}: {msg}");
        }
        for dest in ["/", "//", "/./", "/.", "/./.", "relative", "", "/etc/", "/a\0b"] {
            let msg = file_dest(dest).unwrap_err().message().to_owned();
            assert!(msg.contains("`files`"), "{dest}: {msg}");
        }
    }

    #[test]
    fn other_file_destinations_are_normalised() {
        assert_eq!(file_dest("/etc/app.conf").unwrap(), "/etc/app.conf");
        assert_eq!(file_dest("/./etc//app.conf").unwrap(), "/etc/app.conf");
        // Only the top-level directories are the sandbox's: these are ordinary paths.
        assert_eq!(file_dest("/procfs/x").unwrap(), "/procfs/x");
        assert_eq!(file_dest("/home/proc").unwrap(), "/home/proc");
        assert_eq!(file_dest("/devices").unwrap(), "/devices");
        assert_eq!(file_dest("/srv/sys/x").unwrap(), "/srv/sys/x");
    }

    #[test]
    fn networking_defaults_on_and_the_server_switch_refuses_explicit_requests() {
        assert!(network_choice(None, true, true).unwrap(), "the spec's default is on");
        assert!(network_choice(Some(true), true, true).unwrap());
        assert!(!network_choice(Some(false), true, true).unwrap());
        assert!(!network_choice(None, false, false).unwrap(), "a server without networking runs offline");
        assert!(!network_choice(Some(false), false, false).unwrap());
        // No network helper installed: silence means offline, asking still asks (and the run
        // will fail saying what to install).
        assert!(!network_choice(None, true, false).unwrap());
        assert!(network_choice(Some(true), true, false).unwrap());
        let err = network_choice(Some(true), false, false).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message().contains("`networking.enabled`"), "{}", err.message());
        assert!(err.message().contains("networking turned off"), "{}", err.message());
    }
}
