//! A real OCI registry for the import tests: Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1, with and without htpasswd auth, and images built
//! offline by the tests and pushed to it.
//!
//! Nothing is skipped: without `docker-registry` (or `htpasswd`, or a static busybox) the
//! tests fail with a message saying what to install. CI (`.ci/run`) installs them.
//!
//! Images are pushed over the distribution API by [`push_image`] (a few plain requests, so a
//! test controls every byte: media types, compression, hostile archives).

#![allow(dead_code, reason = "each suite uses part of it")]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The user and password of the registry with auth.
pub const USER: &str = "tester";
pub const PASSWORD: &str = "pa55-w0rd-never-logged";

pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The registry's storage root (blobs live under `docker/registry/v2/blobs`).
    pub storage: PathBuf,
    /// Basic-auth credentials when the registry wants them.
    pub creds: Option<(&'static str, &'static str)>,
    _dir: tempfile::TempDir,
}

/// The registry without auth, started once per test binary.
pub fn open_registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start(false))
}

/// The registry with htpasswd auth ([`USER`], [`PASSWORD`]), started once per test binary.
pub fn auth_registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| start(true))
}

fn need(program: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin", "/bin"]) {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed: the registry-import tests need Debian's `{package}` package \
         (apt-get install docker-registry apache2-utils busybox-static); CI's .ci/run installs it"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(auth: bool) -> Registry {
    let binary = need("docker-registry", "docker-registry");
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let auth_yaml = if auth {
        let htpasswd = need("htpasswd", "apache2-utils");
        let out = Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]).output().unwrap();
        assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, out.stdout).unwrap();
        format!("auth:\n  htpasswd:\n    realm: contree-test\n    path: {}\n", file.display())
    } else {
        String::new()
    };
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {addr}\n{auth_yaml}",
            storage.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let mut cmd = Command::new(binary);
    cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    // The registry dies with the test process: it is spawned by a thread that lives as long
    // as the process, and asks for SIGKILL when that thread ends.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|c| c.id()).map_err(|e| e.to_string())).unwrap();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv().unwrap().expect("start docker-registry");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {addr} within 20 s: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { addr, storage, creds: auth.then_some((USER, PASSWORD)), _dir: dir }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer: its media type and blob.
#[derive(Clone)]
pub struct Layer {
    pub media_type: String,
    pub blob: Vec<u8>,
}

/// One entry of a test archive.
pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// A name written as is (hostile archives).
    RawFile(&'a [u8], &'a [u8]),
}

/// A tar archive of `entries`.
pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::RawFile(name, data) => {
                h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip_layer(tar: &[u8]) -> Layer {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    Layer { media_type: GZIP.to_owned(), blob: gz.finish().unwrap() }
}

pub fn zstd_layer(tar: &[u8]) -> Layer {
    Layer {
        media_type: ZSTD.to_owned(),
        blob: ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest),
    }
}

/// The host's static busybox, as the files of a minimal image: `/bin/busybox` and the
/// applets the tests use as symlinks.
pub fn busybox_layer() -> Layer {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .map(PathBuf::from)
        .unwrap_or_else(|| need("busybox", "busybox-static"));
    let bytes = std::fs::read(&path).unwrap();
    // The image has no libc: a dynamically linked busybox could not run in it.
    assert!(
        !has_interpreter(&bytes),
        "{} is dynamically linked: install Debian's `busybox-static` package",
        path.display()
    );
    let mut entries = vec![Entry::Dir("bin/"), Entry::File("bin/busybox", &bytes, 0o755)];
    let applets = ["sh", "ls", "cat", "echo", "env", "pwd", "uname", "id", "mkdir", "rm", "true"];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        entries.push(Entry::Symlink(l, "busybox"));
    }
    entries.push(Entry::Dir("tmp/"));
    gzip_layer(&tar(&entries))
}

/// Whether a 64-bit ELF file asks for a dynamic loader (a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2, "busybox is not a 64-bit ELF file");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == 3)
    })
}

/// An image config with `env` (and a working dir the spec says imports ignore).
pub fn config(arch: &str, env: &[&str], workdir: Option<&str>) -> Value {
    json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": env, "WorkingDir": workdir.unwrap_or("")},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
}

/// The host's architecture in OCI terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pushes an image (its layers, config and manifest) as `repo:tag`; returns the manifest
/// digest.
pub fn push_image(reg: &Registry, repo: &str, tag: &str, layers: &[Layer], config: &Value) -> String {
    let manifest = image_manifest(reg, repo, layers, config);
    put_manifest(reg, repo, tag, MANIFEST, &manifest)
}

/// Pushes blobs and returns the manifest bytes (not pushed).
fn image_manifest(reg: &Registry, repo: &str, layers: &[Layer], config: &Value) -> Vec<u8> {
    let config = serde_json::to_vec(config).unwrap();
    put_blob(reg, repo, &config);
    let mut descs = Vec::new();
    for l in layers {
        put_blob(reg, repo, &l.blob);
        descs.push(json!({"mediaType": l.media_type, "digest": digest(&l.blob), "size": l.blob.len()}));
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap()
}

/// Pushes an image index of `(arch, layers, config)` images as `repo:tag`; returns the
/// index digest.
pub fn push_index(reg: &Registry, repo: &str, tag: &str, images: &[(&str, Vec<Layer>, Value)]) -> String {
    let mut manifests = Vec::new();
    for (arch, layers, config) in images {
        let m = image_manifest(reg, repo, layers, config);
        let d = put_manifest(reg, repo, &digest(&m), MANIFEST, &m);
        manifests.push(json!({
            "mediaType": MANIFEST, "digest": d, "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})).unwrap();
    put_manifest(reg, repo, tag, INDEX, &index)
}

/// Overwrites a stored blob with other bytes of the same length, so the registry serves
/// content that doesn't match its digest.
pub fn corrupt_blob(reg: &Registry, blob_digest: &str) {
    let hex = blob_digest.strip_prefix("sha256:").unwrap();
    let path = reg.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for b in bytes.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Runs a future on a runtime of its own, on a thread of its own (callable from async tests
/// and from blocking ones alike).
fn block<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f))
            .join()
            .unwrap()
    })
}

fn authed(reg: &Registry, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match reg.creds {
        Some((u, p)) => rb.basic_auth(u, Some(p)),
        None => rb,
    }
}

fn put_blob(reg: &Registry, repo: &str, blob: &[u8]) {
    let base = format!("http://{}", reg.addr);
    let d = digest(blob);
    block(async {
        let http = reqwest::Client::new();
        let r = authed(reg, http.post(format!("{base}/v2/{repo}/blobs/uploads/"))).send().await.unwrap();
        assert_eq!(r.status(), 202, "start upload: {}", r.text().await.unwrap_or_default());
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with("http") { loc } else { format!("{base}{loc}") };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = authed(reg, http.put(format!("{loc}{sep}digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "upload {d}: {}", r.text().await.unwrap_or_default());
    })
}

fn put_manifest(reg: &Registry, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
    let url = format!("http://{}/v2/{repo}/manifests/{reference}", reg.addr);
    block(async {
        let r = authed(reg, reqwest::Client::new().put(url))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "push manifest: {}", r.text().await.unwrap_or_default());
    });
    digest(body)
}
