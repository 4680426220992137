//! The escape suite: attacks a run's code can try against the host, each run inside a real
//! sandbox through the HTTP API, each asserting that the attack fails.
//!
//! By default every probe targets an embedded server (`LocalServer::start`) with a known token
//! and a data dir made by the server inside a world-traversable parent (so that only the data
//! dir's own modes keep host users out). To probe another server, set:
//!
//! ```text
//! CONTREE_ESCAPE_URL=http://127.0.0.1:8080       # the server's base URL
//! CONTREE_ESCAPE_TOKEN_FILE=/path/to/token        # its token (the token probe searches for it)
//! CONTREE_ESCAPE_DATA_DIR=/var/lib/contree-local  # optional: its data dir, for the host-side probes
//! cargo test -p contree-local --test escape
//! ```
//!
//! A probe prints `ESCAPED …` when an attack step succeeds and `PROBE-DONE` at its end (so a
//! probe that never ran cannot pass). Every run has a timeout and every test an outer one; all
//! loops are bounded. Linux and root only, like the server. Syscall numbers are for x86_64 and
//! aarch64 (the suite is compiled only there).
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use contree_local::{BASE_IMAGE_TAG, LocalConfig, LocalServer};

mod support;
use serde_json::{Value, json};

/// Outer bound of every test.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// The `timeout` of every probe run, in seconds.
const RUN_TIMEOUT_SECS: u64 = 60;
/// The unprivileged host account the host-side probes act as.
const NOBODY: u32 = 65534;

/// Syscall numbers the probes pass to perl's `syscall`.
struct Sys {
    ptrace: u32,
    add_key: u32,
    keyctl: u32,
}

#[cfg(target_arch = "x86_64")]
const SYS: Sys = Sys { ptrace: 101, add_key: 248, keyctl: 250 };
#[cfg(target_arch = "aarch64")]
const SYS: Sys = Sys { ptrace: 117, add_key: 217, keyctl: 219 };

// ---------------------------------------------------------------------------------------------
// The server under test

/// The server the probes attack.
struct Target {
    base: String,
    token: String,
    data_dir: Option<PathBuf>,
    _embedded: Option<Embedded>,
    _binary: Option<Binary>,
}

/// A `contree-local` binary, killed when dropped.
struct Binary {
    child: std::process::Child,
    _data: tempfile::TempDir,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An embedded server.
struct Embedded {
    _server: LocalServer,
}

/// The directory holding the embedded server's data dir. The server lives in a static, which
/// is never dropped, so the directory (with the layers runs made: setuid files, devices) is
/// removed at process exit instead.
static EMBEDDED_PARENT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_embedded_parent() {
    if let Some(p) = EMBEDDED_PARENT.get() {
        let _ = std::fs::remove_dir_all(p);
    }
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var("CONTREE_ESCAPE_URL") {
        Ok(url) => external(url),
        Err(_) => std::thread::spawn(embedded).join().expect("server thread"),
    })
}

fn external(url: String) -> Target {
    let file =
        std::env::var("CONTREE_ESCAPE_TOKEN_FILE").expect("CONTREE_ESCAPE_TOKEN_FILE names the server's token file");
    let token = std::fs::read_to_string(&file).expect("read CONTREE_ESCAPE_TOKEN_FILE").trim().to_owned();
    let data_dir = std::env::var_os("CONTREE_ESCAPE_DATA_DIR").map(PathBuf::from);
    Target { base: url.trim_end_matches('/').to_owned(), token, data_dir, _embedded: None, _binary: None }
}

fn embedded() -> Target {
    // A token no other place has, kept by the server like any token.
    let token = format!("escape-{}", uuid::Uuid::new_v4().simple());
    // The parent is traversable by every host user, as a home or /var/lib would be: the data
    // dir's own permissions must be what keeps them out.
    let parent = tempfile::Builder::new().prefix("contree-escape-").tempdir().unwrap().keep();
    std::fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    EMBEDDED_PARENT.set(parent.clone()).unwrap();
    // SAFETY: registers a plain function with no preconditions.
    unsafe { libc::atexit(remove_embedded_parent) };
    let server = LocalServer::start_blocking(
        LocalConfig::default().with_token(token.clone()).with_data_dir(parent.join("data")),
    )
    .expect("the local server starts (needs Linux and root)");
    Target {
        base: server.base_url().to_owned(),
        token,
        data_dir: Some(server.data_dir().to_path_buf()),
        _embedded: Some(Embedded { _server: server }),
        _binary: None,
    }
}

/// Runs a test body under [`TEST_TIMEOUT`].
async fn bounded<F: std::future::Future<Output = ()>>(name: &str, f: F) {
    if tokio::time::timeout(TEST_TIMEOUT, f).await.is_err() {
        panic!("{name}: did not finish within {TEST_TIMEOUT:?}");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap()
}

fn url(path: &str) -> String {
    format!("{}/v1{path}", target().base)
}

/// What a probe run ended with.
#[derive(Debug)]
struct Outcome {
    status: String,
    error: String,
    exit_code: Option<i64>,
    stdout: String,
    stderr: String,
    result_image: Option<String>,
}

impl Outcome {
    /// The lines of stdout that report a successful attack step.
    fn escapes(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.starts_with("ESCAPED")).collect()
    }

    /// Panics unless the probe ran to its end.
    fn assert_ran(&self, attack: &str) {
        assert!(
            self.status == "SUCCESS" && self.exit_code == Some(0) && self.stdout.contains("PROBE-DONE"),
            "{attack}: the probe did not run to its end: {self:#?}"
        );
    }

    /// Panics if any attack step succeeded.
    fn assert_no_escape(&self, attack: &str) {
        let escapes = self.escapes();
        assert!(
            escapes.is_empty(),
            "{attack}: the attack succeeded inside the sandbox: {escapes:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn stream_text(v: &Value) -> String {
    let Some(s) = v["value"].as_str() else { return String::new() };
    match v["encoding"].as_str().unwrap_or("ascii") {
        "base64" => {
            use base64::Engine;
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).into_owned()
        }
        _ => s.to_owned(),
    }
}

/// Spawns a run on the base image (with a timeout) and waits for its end.
async fn probe(body: Value) -> Outcome {
    probe_on(target(), body).await
}

/// [`probe`] against a given server.
async fn probe_on(t: &Target, body: Value) -> Outcome {
    match try_probe_on(t, body).await {
        Ok(out) => out,
        Err((status, v)) => panic!("the spawn was refused with HTTP {status}: {v}"),
    }
}

/// [`probe_on`], returning a refused spawn's status and body instead of panicking.
async fn try_probe_on(t: &Target, mut body: Value) -> Result<Outcome, (u16, Value)> {
    body["image"] = json!(format!("tag:{BASE_IMAGE_TAG}"));
    body["timeout"] = json!(RUN_TIMEOUT_SECS);
    let url = |path: &str| format!("{}/v1{path}", t.base);
    let r = http().post(url("/instances")).bearer_auth(&t.token).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    if status != 201 {
        return Err((status, v));
    }
    let op = v["uuid"].as_str().unwrap().to_owned();
    Ok(wait_op(t, &op).await)
}

/// Polls an operation until it ends (bounded) and returns what it ended with.
async fn wait_op(t: &Target, op: &str) -> Outcome {
    let url = |path: &str| format!("{}/v1{path}", t.base);
    let deadline = Instant::now() + Duration::from_secs(RUN_TIMEOUT_SECS + 30);
    loop {
        let v: Value = http()
            .get(url(&format!("/operations/{op}")))
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = v["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "SUCCESS" | "FAILED" | "CANCELLED") {
            let result = &v["metadata"]["result"];
            let out = Outcome {
                status,
                error: v["error"].as_str().unwrap_or_default().to_owned(),
                exit_code: result["state"]["exit_code"].as_i64(),
                stdout: stream_text(&result["stdout"]),
                stderr: stream_text(&result["stderr"]),
                result_image: v["result_image_uuid"].as_str().map(str::to_owned),
            };
            // Shown with --nocapture, and for failing tests.
            eprintln!("probe {op}: {out:#?}");
            return out;
        }
        assert!(Instant::now() < deadline, "run {op} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A shell probe.
async fn sh(script: &str) -> Outcome {
    probe(json!({"command": script, "shell": true})).await
}

/// A perl probe (`perl -e script args…`): perl is in every Debian base system.
async fn perl(script: &str, args: &[String]) -> Outcome {
    let mut argv = vec!["-e".to_owned(), script.to_owned()];
    argv.extend(args.iter().cloned());
    probe(json!({"command": "perl", "args": argv})).await
}

// ---------------------------------------------------------------------------------------------
// Finding 1: the server's token inside the sandbox

/// Searches every other process' cmdline, environ and readable memory for the needle, which
/// arrives on stdin as the hex of its reversed bytes (so no other process' buffer holds it
/// verbatim). The probe's own memory is searched first as a control: the needle is there, so a
/// search that cannot find anything fails the test.
const TOKEN_SEARCH: &str = r#"
my $hex = <STDIN>; chomp $hex;
my $needle = reverse pack("H*", $hex);
my $L = length $needle;
my $t0 = time; my $bytes = 0; my $cap = 4 << 30;
sub scan_file { my ($p) = @_; open(my $f, '<:raw', $p) or return -1; local $/; my $c = <$f>; close $f;
  return defined $c && index($c, $needle) >= 0 ? 1 : 0; }
sub scan_mem { my ($pid) = @_;
  open(my $m, '<', "/proc/$pid/maps") or return -1;
  my @r; while (<$m>) { push @r, [hex $1, hex $2] if /^([0-9a-f]+)-([0-9a-f]+) r/ } close $m;
  open(my $fh, '<:raw', "/proc/$pid/mem") or return -1;
  my $read = 0;
  for my $r (@r) { my ($s, $e) = @$r; my $tail = '';
    for (my $o = $s; $o < $e; $o += 1 << 20) {
      return 2 if $bytes > $cap || time - $t0 > 40;
      my $n = $e - $o < (1 << 20) ? $e - $o : (1 << 20);
      sysseek($fh, $o, 0) or last;
      my $got = sysread($fh, my $buf, $n); last unless $got;
      $bytes += $got; $read += $got;
      return 1 if index($tail . $buf, $needle) >= 0;
      $tail = length($buf) >= $L ? substr($buf, 1 - $L) : $buf;
    } }
  return $read ? 0 : -1; }
print "CONTROL self-mem=", scan_mem("self"), "\n";
opendir(my $d, "/proc") or die "no /proc: $!";
my @pids = sort { $a <=> $b } grep { /^\d+$/ && $_ != $$ } readdir $d;
for my $pid (@pids) {
  my %r;
  for my $w ("cmdline", "environ") { $r{$w} = scan_file("/proc/$pid/$w"); print "ESCAPED token in /proc/$pid/$w\n" if $r{$w} == 1; }
  my $r = scan_mem($pid);
  print "ESCAPED token in the memory of pid $pid (/proc/$pid/mem)\n" if $r == 1;
  # -1: unreadable, 0: read, no token, 2: search budget spent.
  print "SCANNED pid $pid cmdline=$r{cmdline} environ=$r{environ} mem=$r\n";
}
print "TOTAL bytes=$bytes seconds=", time - $t0, "\n";
print "PROBE-DONE\n";
"#;

/// Starts the `contree-local` binary with its token in `CONTREE_LOCAL_TOKEN`, the way a user
/// would, and waits for its URL (bounded).
/// With `via_file`, the token goes in a 0600 file given with `--token-file` instead.
fn start_binary(token: &str, via_file: bool) -> Target {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contree-local"));
    cmd.args(["--bind", "127.0.0.1:0", "--data-dir"]).arg(data.path().join("data"));
    if via_file {
        let file = data.path().join("token");
        std::fs::write(&file, token).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        cmd.arg("--token-file").arg(file).env_remove("CONTREE_LOCAL_TOKEN");
    } else {
        cmd.env("CONTREE_LOCAL_TOKEN", token);
    }
    let (child, base) = support::spawn_and_read_url(&mut cmd, Duration::from_secs(60));
    let binary = Binary { child, _data: data };
    Target { base, token: token.to_owned(), data_dir: None, _embedded: None, _binary: Some(binary) }
}

/// Runs [`TOKEN_SEARCH`] on `t` and asserts that the token was found nowhere.
async fn assert_token_not_found(t: &Target, attack: &str) {
    let hex: String = t.token.bytes().rev().map(|b| format!("{b:02x}")).collect();
    let out =
        probe_on(t, json!({"command": "perl", "args": ["-e", TOKEN_SEARCH], "stdin": {"value": format!("{hex}\n")}}))
            .await;
    out.assert_ran(attack);
    assert!(
        out.stdout.contains("CONTROL self-mem=1"),
        "{attack}: the search could not even find the token in its own memory: {out:#?}"
    );
    assert!(out.stdout.contains("SCANNED pid 1 "), "{attack}: init (pid 1) was not searched: {out:#?}");
    out.assert_no_escape(attack);
}

#[tokio::test]
async fn the_token_of_the_binary_is_in_no_process_of_a_sandbox() {
    bounded("token search, binary", async {
        for via_file in [false, true] {
            let token = format!("escape-bin-{}", uuid::Uuid::new_v4().simple());
            let t = tokio::task::spawn_blocking(move || start_binary(&token, via_file)).await.unwrap();
            let how = if via_file { "--token-file" } else { "CONTREE_LOCAL_TOKEN" };
            let attack = format!("search /proc/*/{{cmdline,environ,mem}} for the token of a binary started with {how}");
            assert_token_not_found(&t, &attack).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_token_is_in_no_process_memory_cmdline_or_environ() {
    bounded("token search", async {
        let attack = "search /proc/*/{cmdline,environ,mem} for the server's token";
        assert_token_not_found(target(), attack).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Finding 2: spawn files written into /proc, /sys, /dev

#[tokio::test]
async fn files_cannot_target_proc_sys_or_dev() {
    bounded("files into /proc", async {
        let t = target();
        let r = http().post(url("/files")).bearer_auth(&t.token).body("escape-probe\n").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let file: Value = r.json().await.unwrap();
        let mut accepted = Vec::new();
        for dest in [
            "/proc/1/comm",
            "/proc/sys/kernel/hostname",
            "/proc/self/attr/current",
            "/proc/escape-probe",
            "/sys/kernel/escape-probe",
            "/dev/escape-probe",
            "/dev/shm/escape-probe",
        ] {
            let body = json!({"command": "cat /proc/1/comm", "shell": true, "image": format!("tag:{BASE_IMAGE_TAG}"),
                              "timeout": RUN_TIMEOUT_SECS, "files": {dest: {"uuid": file["uuid"]}}});
            let r = http().post(url("/instances")).bearer_auth(&t.token).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status == 400 {
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(msg.contains("files"), "the 400 for {dest} does not name the field `files`: {v}");
            } else {
                // The attack went through: report what the run saw (a write into /proc/1/comm
                // shows up as init's name).
                let op = v["uuid"].as_str().unwrap_or_default().to_owned();
                let out = wait_op(t, &op).await;
                accepted.push(format!(
                    "{dest}: HTTP {status}; the run ended {} ({}), /proc/1/comm: {:?}",
                    out.status,
                    out.error,
                    out.stdout.trim()
                ));
            }
        }
        assert!(
            accepted.is_empty(),
            "spawn `files` destinations under /proc, /sys or /dev were accepted: {accepted:#?}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Finding 3: host-root binaries planted through a run, and the data dir on the host

/// Runs `program args` on the host as `nobody` (no supplementary groups), bounded in time:
/// `Err` when it cannot even be started, else its exit status and stdout.
fn run_as_nobody(program: &Path, args: &[&str]) -> std::io::Result<(bool, String)> {
    let mut child = Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} as nobody did not end", program.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    Ok((status.success(), out))
}

/// The layer dir under `data_dir/layers` holding `name` at its root (bounded scan).
fn find_in_layers(data_dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(data_dir.join("layers"))
        .ok()?
        .take(100_000)
        .filter_map(Result::ok)
        .map(|e| e.path().join(name))
        .find(|p| p.symlink_metadata().is_ok())
}

fn data_dir_or_skip(probe: &str) -> Option<&'static Path> {
    let d = target().data_dir.as_deref();
    if d.is_none() {
        eprintln!("SKIPPED {probe}: CONTREE_ESCAPE_DATA_DIR is not set, so the host side cannot be checked");
    }
    d
}

#[tokio::test]
async fn setuid_and_file_capability_binaries_from_a_run_give_host_users_nothing() {
    bounded("setuid from a layer", async {
        let name = format!("escape-{}", uuid::Uuid::new_v4().simple());
        let out = sh(&format!(
            "cp /usr/bin/id /{name}-suid && chmod 4755 /{name}-suid && ls -l /{name}-suid && \
             cp /usr/bin/cat /{name}-cap && chmod 755 /{name}-cap && \
             {{ /usr/sbin/setcap cap_dac_read_search+ep /{name}-cap && /usr/sbin/getcap /{name}-cap || echo setcap failed: $?; }}; \
             echo PROBE-DONE"
        ))
        .await;
        let attack = "plant a setuid-root / cap_dac_read_search binary in a layer and run it on the host as nobody";
        out.assert_ran(attack);
        assert!(out.result_image.is_some(), "{attack}: the run made no layer: {out:#?}");
        let Some(data_dir) = data_dir_or_skip(attack) else { return };
        let suid = find_in_layers(data_dir, &format!("{name}-suid")).expect("the planted file is in a layer");
        let cap = find_in_layers(data_dir, &format!("{name}-cap")).expect("the planted file is in a layer");
        let meta = suid.symlink_metadata().unwrap();
        let mut problems = Vec::new();
        if meta.uid() == 0 {
            problems.push(format!("{} is owned by host root (mode {:o})", suid.display(), meta.mode() & 0o7777));
        }
        match run_as_nobody(&suid, &["-u"]) {
            Err(e) => eprintln!("nobody cannot run the setuid file: {e}"),
            Ok((_, out)) if out.trim() == "0" => {
                problems.push(format!("nobody ran {} and got euid 0", suid.display()));
            }
            Ok((_, out)) => eprintln!("nobody ran the setuid file, euid {}", out.trim()),
        }
        match run_as_nobody(&cap, &["/etc/shadow"]) {
            Err(e) => eprintln!("nobody cannot run the file-capability binary: {e}"),
            Ok((true, out)) if !out.is_empty() => {
                problems.push(format!("nobody ran {} and read /etc/shadow ({} bytes)", cap.display(), out.len()));
            }
            Ok(_) => eprintln!("nobody ran the file-capability binary without gaining the capability"),
        }
        assert!(problems.is_empty(), "{attack}: {problems:#?}");
    })
    .await;
}

#[tokio::test]
async fn host_users_cannot_read_the_data_dir_the_database_or_layers() {
    bounded("data dir permissions", async {
        let attack = "read the data dir, the database or a layer as an unprivileged host user";
        let t = target();
        let r = http().post(url("/files")).bearer_auth(&t.token).body("a blob\n").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let name = format!("escape-{}", uuid::Uuid::new_v4().simple());
        let out =
            sh(&format!("printf '#!/bin/sh\\necho ran\\n' > /{name} && chmod 755 /{name} && echo PROBE-DONE")).await;
        out.assert_ran(attack);
        let Some(data_dir) = data_dir_or_skip(attack) else { return };
        let mode = |p: &Path| p.symlink_metadata().map(|m| m.mode() & 0o7777).unwrap_or(0);
        let mut problems = Vec::new();
        for (p, want) in [
            (data_dir.to_path_buf(), 0o700),
            (data_dir.join("layers"), 0o700),
            (data_dir.join("blobs"), 0o700),
            (data_dir.join("runs"), 0o700),
            (data_dir.join("base"), 0o700),
            (data_dir.join("db.sqlite"), 0o600),
            (data_dir.join("db.sqlite-wal"), 0o600),
            (data_dir.join("db.sqlite-shm"), 0o600),
        ] {
            if mode(&p) != want {
                problems.push(format!("{} has mode {:o}, not {want:o}", p.display(), mode(&p)));
            }
        }
        for blob in std::fs::read_dir(data_dir.join("blobs")).unwrap().take(10_000).filter_map(Result::ok) {
            if mode(&blob.path()) & 0o077 != 0 {
                problems.push(format!("blob {} has mode {:o}", blob.path().display(), mode(&blob.path())));
            }
        }
        let parent = data_dir.parent().unwrap();
        match run_as_nobody(Path::new("/usr/bin/ls"), &[parent.to_str().unwrap()]) {
            Ok((true, _)) => {}
            // Only the embedded target promises a traversable parent; elsewhere it is a note.
            _ if target()._embedded.is_none() => {
                eprintln!("note: nobody cannot list {}, so the checks below prove less", parent.display())
            }
            other => {
                panic!("nobody must be able to list {} for this test to mean anything: {other:?}", parent.display())
            }
        }
        if let Ok((true, _)) = run_as_nobody(Path::new("/usr/bin/ls"), &[data_dir.to_str().unwrap()]) {
            problems.push("nobody can list the data dir".into());
        }
        let db = data_dir.join("db.sqlite");
        if let Ok((true, _)) = run_as_nobody(Path::new("/usr/bin/head"), &["-c", "16", db.to_str().unwrap()]) {
            problems.push("nobody can read the database".into());
        }
        let planted = find_in_layers(data_dir, &name).expect("the run's file is in a layer");
        if let Ok((_, out)) = run_as_nobody(&planted, &[])
            && out.contains("ran")
        {
            problems.push(format!("nobody can execute {}", planted.display()));
        }
        assert!(problems.is_empty(), "{attack}: {problems:#?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Finding 4: the kernel from inside

#[tokio::test]
async fn unshare_of_a_user_namespace_fails() {
    bounded("unshare -U", async {
        let out = sh("command -v unshare >/dev/null || { echo 'SKIPPED: no unshare in the base image'; echo PROBE-DONE; exit 0; }; \
             unshare -U true 2>&1 && echo 'ESCAPED unshare -U created a user namespace'; \
             unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo ESCAPED tmpfs mounted in an unshare -Urm namespace' 2>&1; \
             echo PROBE-DONE")
            .await;
        let attack = "unshare -U / unshare -Ur and mount a tmpfs there";
        out.assert_ran(attack);
        assert!(!out.stdout.contains("SKIPPED"), "{attack}: {}", out.stdout);
        out.assert_no_escape(attack);
    })
    .await;
}

#[tokio::test]
async fn mount_fails() {
    bounded("mount", async {
        let out = sh("mount -t tmpfs none /mnt 2>&1 && echo 'ESCAPED mounted a tmpfs'; \
             mount --bind /usr /mnt 2>&1 && echo 'ESCAPED bind-mounted /usr'; \
             echo PROBE-DONE")
        .await;
        let attack = "mount a tmpfs / a bind mount inside the sandbox";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
    })
    .await;
}

#[tokio::test]
async fn keyctl_and_add_key_fail() {
    bounded("keyctl", async {
        let script = format!(
            r#"
            $! = 0;
            # syscall() wants modifiable strings.
            my ($type, $desc, $payload) = ("user", "escape-probe", "x");
            my $id = syscall({add_key}, $type, $desc, $payload, 1, -3);
            if ($id >= 0) {{ print "ESCAPED add_key made key $id in the session keyring\n"; syscall({keyctl}, 3, $id); }}
            else {{ print "add_key errno=", $!+0, "\n"; }}
            for my $k ([-3, "session"], [-4, "user"], [-5, "user-session"]) {{
              $! = 0;
              my $r = syscall({keyctl}, 0, $k->[0], 0);
              if ($r >= 0) {{ print "ESCAPED keyctl reads the $k->[1] keyring (id $r)\n"; }}
              else {{ print "keyctl($k->[1]) errno=", $!+0, "\n"; }}
            }}
            print "PROBE-DONE\n";
            "#,
            add_key = SYS.add_key,
            keyctl = SYS.keyctl
        );
        let out = perl(&script, &[]).await;
        let attack = "add_key / keyctl on the session, user and user-session keyrings";
        out.assert_ran(attack);
        if !out.escapes().is_empty() {
            // Evidence for the report: the host's own ids of the same keyrings.
            let host: Vec<String> = [-3i64, -4, -5]
                .iter()
                // SAFETY: KEYCTL_GET_KEYRING_ID with a special keyring id and no creation.
                .map(|k| unsafe { libc::syscall(libc::SYS_keyctl, 0, *k, 0) }.to_string())
                .collect();
            eprintln!("the test process' (host root's) session/user/user-session keyring ids: {host:?}");
        }
        out.assert_no_escape(attack);
        for line in out.stdout.lines().filter(|l| l.contains("errno=")) {
            let errno: i32 = line.rsplit('=').next().unwrap().parse().unwrap();
            assert!(
                errno == libc::EPERM || errno == libc::ENOSYS,
                "{attack}: expected EPERM or ENOSYS from the filter, got: {line}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn ptrace_of_init_fails() {
    bounded("ptrace", async {
        // PTRACE_SEIZE (0x4206) attaches without stopping init, so a success cannot hang the run.
        let script = format!(
            r#"
            $! = 0;
            my $r = syscall({ptrace}, 0x4206, 1, 0, 0);
            if ($r == 0) {{ print "ESCAPED ptrace attached to init (pid 1)\n"; }} else {{ print "ptrace errno=", $!+0, "\n"; }}
            print "PROBE-DONE\n";
            "#,
            ptrace = SYS.ptrace
        );
        let out = perl(&script, &[]).await;
        let attack = "ptrace(PTRACE_SEIZE) the sandbox's init";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
    })
    .await;
}

/// runc's CVE-2019-5736: a run that can open the program of the sandbox's init for writing
/// could replace what every later sandbox starts from. Tries every way in (the link in
/// `/proc/1/exe`, init's mapped files, the command's own view of its parent), for writing and
/// for appending; reading the link's target is reported but is no escape.
const INIT_PROGRAM_PROBE: &str = r#"
use Fcntl;
my @paths = ("/proc/1/exe");
if (opendir(my $d, "/proc/1/map_files")) { push @paths, map { "/proc/1/map_files/$_" } grep { !/^\./ } readdir($d); closedir $d; }
else { print "map_files of init: $!\n"; }
for my $p (@paths) {
  for my $mode ([O_WRONLY, "write"], [O_RDWR, "read-write"], [O_WRONLY | O_APPEND, "append"]) {
    if (sysopen(my $f, $p, $mode->[0])) {
      my $w = syswrite($f, "x", 1);
      print "ESCAPED $p opened for $mode->[1]", (defined $w ? " and written" : " (write failed: $!)"), "\n";
      close $f;
    } else { print "cannot open $p for $mode->[1]: $!\n"; }
  }
}
my $t = readlink("/proc/1/exe");
print "init's program: ", (defined $t ? $t : "unreadable ($!)"), "\n";
print "PROBE-DONE\n";
"#;

#[tokio::test]
async fn the_program_of_init_cannot_be_reopened_for_writing() {
    bounded("init program", async {
        let out = perl(INIT_PROGRAM_PROBE, &[]).await;
        let attack = "open the sandbox init's program for writing (runc CVE-2019-5736)";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
    })
    .await;
}

#[tokio::test]
async fn mknod_of_a_device_fails() {
    bounded("mknod", async {
        let out = sh("mknod /tmp/escape-mem c 1 1 2>&1 && echo 'ESCAPED mknod made /dev/mem as /tmp/escape-mem'; \
             mknod /dev/escape-null c 1 3 2>&1 && echo 'ESCAPED mknod made a char device in /dev'; \
             mknod /tmp/escape-blk b 7 0 2>&1 && echo 'ESCAPED mknod made a block device (loop0)'; \
             echo PROBE-DONE")
        .await;
        let attack = "mknod a character or block device";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
    })
    .await;
}

/// Opens (never writes) the files Docker masks: a file still reachable, rather than absent or
/// replaced by `/dev/null`, is an escape. Opening `/proc/sysrq-trigger` or a sysctl for writing
/// has no effect by itself.
const PROC_MASK_PROBE: &str = r#"
use Fcntl;
sub devnull { my @s = stat($_[0]); return @s && ($s[2] & 0170000) == 0020000 && $s[6] == ((1 << 8) | 3); }
for my $p (qw(/proc/mtrr /proc/sysrq-trigger /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /proc/sys/vm/drop_caches)) {
  if (!-e $p) { print "absent $p\n"; next; }
  if (devnull($p)) { print "masked $p\n"; next; }
  if (sysopen(my $f, $p, O_WRONLY)) { print "ESCAPED $p can be opened for writing\n"; close $f; }
  else { print "not writable $p: $!\n"; }
}
for my $p (qw(/proc/kcore /proc/keys /proc/timer_list /proc/sched_debug)) {
  if (!-e $p) { print "absent $p\n"; next; }
  if (devnull($p)) { print "masked $p\n"; next; }
  if (sysopen(my $f, $p, O_RDONLY)) {
    my $n = sysread($f, my $buf, 64);
    if ($n) { print "ESCAPED $p is readable\n"; } else { print "empty $p\n"; }
    close $f;
  } else { print "not readable $p: $!\n"; }
}
print "PROBE-DONE\n";
"#;

#[tokio::test]
async fn masked_proc_files_are_neither_writable_nor_readable() {
    bounded("/proc masks", async {
        let out = perl(PROC_MASK_PROBE, &[]).await;
        let attack =
            "open /proc/mtrr, /proc/sysrq-trigger, /proc/sys/* for writing; read /proc/kcore, keys, timer_list";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Finding 5: the host's network from inside

/// Connections waiting in a listener's accept queue: the kernel completes a handshake
/// without `accept`, so any connection a run made is there (bounded drain).
fn queued_connections(listener: &TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    (0..1000).take_while(|_| listener.accept().is_ok()).count()
}

const NET_PROBE: &str = r#"
use IO::Socket::INET;
my ($listener, $api) = @ARGV;
for my $p ([$listener, "the host-only listener"], [$api, "the server's API port"]) {
  my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $p->[0], Proto => "tcp", Timeout => 3);
  if ($s) { print "ESCAPED connected to $p->[1] on 127.0.0.1:$p->[0]\n"; close $s; }
  else { print "connect to $p->[1]: $!\n"; }
}
my $hex = sprintf(":%04X", $listener);
for my $f ("/proc/net/tcp", "/proc/net/tcp6") {
  open(my $fh, '<', $f) or next;
  while (<$fh>) { my @c = split; print "ESCAPED $f shows the host listener: $_" if $c[1] =~ /\Q$hex\E$/ && $c[3] eq "0A"; }
}
print "PROBE-DONE\n";
"#;

async fn host_loopback_probe(networking: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let api_port = target().base.rsplit(':').next().unwrap().trim_end_matches('/').to_owned();
    let attack =
        format!("reach a host-only 127.0.0.1 listener with networking {}", if networking { "on" } else { "off" });
    let names_helper = |msg: &str| msg.contains("slirp4netns") || msg.contains("pasta");
    let out = match try_probe_on(
        target(),
        json!({"command": "perl", "args": ["-e", NET_PROBE, port.to_string(), api_port],
               "networking": {"enabled": networking}}),
    )
    .await
    {
        Ok(out) => out,
        // No user-mode network helper on this host: the run gets no network at all.
        Err((status, v)) if networking && names_helper(&v.to_string()) => {
            eprintln!("{attack}: the spawn was refused with HTTP {status}: {v}");
            return;
        }
        Err((status, v)) => panic!("{attack}: the spawn was refused with HTTP {status}: {v}"),
    };
    if networking && out.status == "FAILED" && names_helper(&out.error) {
        eprintln!("{attack}: the run was refused: {}", out.error);
        return;
    }
    out.assert_ran(&attack);
    out.assert_no_escape(&attack);
    let seen = queued_connections(&listener);
    assert_eq!(seen, 0, "{attack}: the host-only listener received {seen} connection(s) from the run");
}

#[tokio::test]
async fn host_loopback_is_unreachable_without_networking() {
    bounded("loopback, networking off", host_loopback_probe(false)).await;
}

#[tokio::test]
async fn host_loopback_is_unreachable_with_networking() {
    bounded("loopback, networking on", host_loopback_probe(true)).await;
}

/// What a process started in a running instance (`POST …/subprocesses`) is confined by: it
/// must share every namespace, the cgroup, the id mapping, the capabilities and the seccomp
/// filter of the run's main process, hold no descriptor of the host, and see neither host
/// processes nor host files. Compared inside the sandbox against the main process (found by
/// its command line), and against the host's own namespaces here.
const SUBPROCESS_PROBE: &str = r#"
main=""
for d in /proc/[0-9]*; do
  [ "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" = "sleep 171 " ] && main=${d#/proc/}
done
[ -n "$main" ] || { echo "no main process found"; exit 3; }
for f in Seccomp Seccomp_filters NoNewPrivs CapInh CapPrm CapEff CapBnd CapAmb; do
  a=$(grep "^$f:" /proc/self/status); b=$(grep "^$f:" /proc/$main/status)
  [ "$a" = "$b" ] || echo "ESCAPED $f differs from the main process: '$a' vs '$b'"
  echo "$a"
done
for ns in user mnt pid net uts ipc cgroup; do
  a=$(readlink /proc/self/ns/$ns); b=$(readlink /proc/$main/ns/$ns)
  [ "$a" = "$b" ] || echo "ESCAPED namespace $ns differs from the main process: $a vs $b"
  echo "NS $a"
done
[ "$(cat /proc/self/cgroup)" = "$(cat /proc/$main/cgroup)" ] || echo "ESCAPED cgroup differs from the main process"
[ "$(cat /proc/self/uid_map)" = "$(cat /proc/$main/uid_map)" ] || echo "ESCAPED uid_map differs from the main process"
echo "UIDMAP $(cat /proc/self/uid_map)"
for fd in /proc/$$/fd/*; do
  t=$(readlink $fd)
  case "$t" in pipe:*|/dev/null|/proc/*) ;; *) echo "ESCAPED holds fd ${fd##*/} -> $t";; esac
done
n=$(ls -d /proc/[0-9]* | wc -l)
[ "$n" -lt 30 ] || echo "ESCAPED sees $n processes"
[ "$HOST_PID" -gt 30 ] && [ -e /proc/$HOST_PID ] && echo "ESCAPED sees the host's pid $HOST_PID"
[ -e "$HOST_DIR/Cargo.toml" ] && echo "ESCAPED sees the host's $HOST_DIR"
[ -e /proc/1/root/$HOST_DIR ] && echo "ESCAPED reaches the host's files through init"
unshare -U true 2>/dev/null && echo "ESCAPED unshare -U"
mount -t tmpfs none /mnt 2>/dev/null && echo "ESCAPED mounted a tmpfs"
echo PROBE-DONE
"#;

#[tokio::test]
async fn a_subprocess_is_confined_like_the_run_it_joins() {
    bounded("subprocess", async {
        let t = target();
        let url = |path: &str| format!("{}/v1{path}", t.base);
        let body = json!({"command": "sleep", "args": ["171"], "image": format!("tag:{BASE_IMAGE_TAG}"),
                          "timeout": RUN_TIMEOUT_SECS});
        let r = http().post(url("/instances")).bearer_auth(&t.token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let op = r.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_owned();
        let exec = json!({"command": SUBPROCESS_PROBE, "shell": true,
                          "env": {"HOST_PID": std::process::id().to_string(), "HOST_DIR": env!("CARGO_MANIFEST_DIR")}});
        let deadline = Instant::now() + Duration::from_secs(30);
        let spid = loop {
            let r = http()
                .post(url(&format!("/operations/{op}/subprocesses")))
                .bearer_auth(&t.token)
                .json(&exec)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status == 425 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            assert_eq!(status, 201, "{v}");
            break v["spid"].as_u64().unwrap();
        };
        let result = loop {
            let v: Value = http()
                .get(url(&format!("/operations/{op}/subprocesses/{spid}")))
                .bearer_auth(&t.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["state"]["exit_code"] != -1 || v["state"]["signal"] != -1 {
                break v;
            }
            assert!(Instant::now() < deadline, "the probe did not end: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = http().delete(url(&format!("/operations/{op}/subprocesses/1"))).bearer_auth(&t.token).send().await;
        let out = Outcome {
            status: "SUCCESS".into(),
            error: String::new(),
            exit_code: result["state"]["exit_code"].as_i64(),
            stdout: stream_text(&result["stdout"]),
            stderr: stream_text(&result["stderr"]),
            result_image: None,
        };
        eprintln!("subprocess probe: {out:#?}");
        let attack = "a process started in a running instance (POST …/subprocesses)";
        out.assert_ran(attack);
        out.assert_no_escape(attack);
        assert!(out.stdout.contains("Seccomp:\t2"), "{attack}: not under a seccomp filter: {}", out.stdout);
        // Its namespaces are the sandbox's, not the host's.
        for ns in ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"] {
            let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let host = host.to_string_lossy();
            assert!(!out.stdout.contains(&format!("NS {host}")), "{attack}: shares the host's {ns} namespace {host}");
            assert!(out.stdout.contains(&format!("NS {ns}:[")), "{attack}: no {ns} namespace reported");
        }
        let map = out.stdout.lines().find_map(|l| l.strip_prefix("UIDMAP ")).expect("uid_map line");
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields[0], "0", "{attack}: {map}");
        assert_ne!(fields[1], "0", "{attack}: root inside is root outside: {map}");
    })
    .await;
}
