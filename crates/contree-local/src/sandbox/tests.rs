//! Sandbox tests. They need root (namespaces, overlayfs), like the sandbox itself.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;
use crate::images::base::{BaseImage, ensure_base};

/// One data dir and base image for the whole test binary (building /etc once).
static FIXTURE: OnceLock<(PathBuf, BaseImage)> = OnceLock::new();

fn fixture() -> &'static (PathBuf, BaseImage) {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("contree-sandbox-test-").tempdir().unwrap().keep();
        // A static is never dropped: remove the data dir when the test binary exits.
        extern "C" fn remove_fixture() {
            if let Some((dir, _)) = FIXTURE.get() {
                let _ = fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(remove_fixture) };
        check_support(&dir, &IdRange::default()).expect("these tests need root and overlayfs");
        let base = ensure_base(&dir).unwrap();
        (dir, base)
    })
}

fn data_dir() -> &'static Path {
    &fixture().0
}

fn new_run_dir() -> PathBuf {
    data_dir().join("runs").join(uuid::Uuid::new_v4().to_string())
}

fn sh(cmd: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(fixture().1.clone(), new_run_dir(), cmd);
    spec.shell = true;
    spec
}

struct Output {
    stdout: String,
    stderr: String,
    exit: ExitInfo,
}

fn collect(sb: &RunningSandbox) -> Output {
    let events = sb.take_events().unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut exit = None;
    for ev in events {
        assert!(exit.is_none(), "no event may follow Exited");
        match ev {
            SandboxEvent::Stdout(b) => stdout.extend(b),
            SandboxEvent::Stderr(b) => stderr.extend(b),
            SandboxEvent::Exited(e) => exit = Some(e),
        }
    }
    Output {
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
        exit: exit.expect("an Exited event"),
    }
}

/// Runs to completion; returns the output and the upper state.
fn run(spec: SandboxSpec) -> (Output, UpperState) {
    let run_dir = spec.run_dir.clone();
    let sb = spawn(spec).unwrap();
    let out = collect(&sb);
    let upper = finish(&run_dir).unwrap();
    (out, upper)
}

fn run_ok(spec: SandboxSpec) -> (String, UpperState) {
    let (out, upper) = run(spec);
    assert_eq!(out.exit.exit_code, 0, "stderr: {}", out.stderr);
    (out.stdout, upper)
}

fn adopt(upper: UpperState) -> PathBuf {
    let UpperState::Changed(dir) = upper else { panic!("expected a change") };
    let layer = data_dir().join("layers").join(uuid::Uuid::new_v4().to_string());
    fs::create_dir_all(layer.parent().unwrap()).unwrap();
    fs::rename(&dir, &layer).unwrap();
    discard(dir.parent().unwrap()).unwrap();
    layer
}

#[test]
fn check_support_passes_here() {
    check_support(data_dir(), &IdRange::default()).unwrap();
}

#[test]
fn true_exits_zero_and_changes_nothing() {
    let spec = sh("true");
    let run_dir = spec.run_dir.clone();
    let (out, upper) = run_ok(spec);
    assert_eq!(out, "");
    assert_eq!(upper, UpperState::Unchanged);
    assert!(!run_dir.exists(), "an unchanged run leaves no run dir");
}

#[test]
fn hostname_is_applied() {
    let mut spec = sh("hostname; cat /proc/sys/kernel/hostname");
    spec.hostname = "box-42".into();
    assert_eq!(run_ok(spec).0, "box-42\nbox-42\n");
}

#[test]
fn env_cwd_uid_and_gid_are_applied() {
    let mut spec = sh("id -u; id -g; id -G; pwd; echo \"$FOO|$PATH\"; stat -c '%u:%g %a' .");
    spec.env = vec![("FOO".into(), "bar baz".into())];
    spec.cwd = "/home/u/../u/work".into();
    spec.uid = 1234;
    spec.gid = 2345;
    let (out, upper) = run_ok(spec);
    assert_eq!(out, format!("1234\n2345\n2345\n/home/u/work\nbar baz|{DEFAULT_PATH}\n1234:2345 755\n"));
    // Creating the cwd is a change of the filesystem.
    let layer = adopt(upper);
    assert!(layer.join("home/u/work").is_dir());
}

#[test]
fn non_shell_commands_are_looked_up_in_path() {
    let mut spec = SandboxSpec::new(fixture().1.clone(), new_run_dir(), "printf");
    spec.args = vec!["%s-%s".into(), "a b".into(), "c".into()];
    assert_eq!(run_ok(spec).0, "a b-c");
}

#[test]
fn missing_command_exits_127_like_a_shell() {
    let spec = SandboxSpec::new(fixture().1.clone(), new_run_dir(), "no-such-command-xyz");
    let run_dir = spec.run_dir.clone();
    let (out, _) = run(spec);
    assert_eq!(out.exit.exit_code, 127);
    assert!(out.stderr.contains("no-such-command-xyz: command not found"), "{}", out.stderr);
    let _ = discard(&run_dir);
}

#[test]
fn files_are_placed_with_mode_and_owner_before_the_command() {
    let src = data_dir().join("blob-files-test");
    fs::write(&src, b"#!/bin/sh\necho placed\n").unwrap();
    let mut spec = sh("stat -c '%a %u:%g' /opt/tool/run.sh /opt/tool; /opt/tool/run.sh");
    spec.files = vec![PlacedFile { dest: "/opt/tool/run.sh".into(), source: src, mode: 0o750, uid: 7, gid: 8 }];
    let (out, upper) = run_ok(spec);
    assert_eq!(out, "750 7:8\n755 0:0\nplaced\n");
    let layer = adopt(upper);
    let meta = fs::metadata(layer.join("opt/tool/run.sh")).unwrap();
    // On the host the owner is shifted into the sandbox's id range.
    let ids = IdRange::default();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o750, ids.base() + 7, ids.base() + 8));
}

#[test]
fn stdin_is_fed_then_closed() {
    let mut spec = sh("cat; echo '|eof'");
    spec.stdin = b"hello stdin".to_vec();
    assert_eq!(run_ok(spec).0, "hello stdin|eof\n");
}

#[test]
fn stdin_can_stay_open_for_later_writes() {
    let mut spec = sh("read a; echo \"got $a\"; cat");
    spec.stdin = b"first\n".to_vec();
    spec.keep_stdin_open = true;
    let run_dir = spec.run_dir.clone();
    let sb = spawn(spec).unwrap();
    let events = sb.take_events().unwrap();
    // The command answers the first line while stdin is still open.
    assert_eq!(events.recv_timeout(Duration::from_secs(10)).unwrap(), SandboxEvent::Stdout(b"got first\n".to_vec()));
    sb.write_stdin(b"second ", false).unwrap();
    sb.write_stdin(b"third", true).unwrap();
    assert!(sb.write_stdin(b"late", false).is_err(), "stdin is closed");
    let mut rest = Vec::new();
    for ev in events {
        match ev {
            SandboxEvent::Stdout(b) => rest.extend(b),
            SandboxEvent::Exited(e) => assert_eq!(e.exit_code, 0),
            SandboxEvent::Stderr(b) => panic!("stderr: {}", String::from_utf8_lossy(&b)),
        }
    }
    assert_eq!(rest, b"second third");
    assert_eq!(finish(&run_dir).unwrap(), UpperState::Unchanged);
}

#[test]
fn a_large_stdin_does_not_block_spawn() {
    let mut spec = sh("sleep 2; wc -c");
    spec.stdin = vec![b'x'; 1 << 20];
    let t = Instant::now();
    let sb = spawn(spec).unwrap();
    assert!(t.elapsed() < Duration::from_millis(1500), "spawn must not wait for the command to read stdin");
    assert_eq!(collect(&sb).stdout.trim(), "1048576");
}

#[test]
fn stdout_and_stderr_are_captured_separately_and_completely() {
    let (out, _) = run(sh("head -c 3000000 /dev/zero | tr '\\0' a; echo oops >&2; exit 3"));
    assert_eq!(out.exit.exit_code, 3);
    assert_eq!(out.exit.signal, -1);
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.bytes().all(|b| b == b'a'));
    assert_eq!(out.stderr, "oops\n");
}

#[test]
fn writes_yield_a_changed_upper_and_layers_stack() {
    // Run 1 writes a file and a file under /usr.
    let (_, upper) =
        run_ok(sh("echo one > /data.txt && mkdir -p /usr/local/share/ct && echo u > /usr/local/share/ct/f"));
    let layer1 = adopt(upper);
    assert_eq!(fs::read_to_string(layer1.join("data.txt")).unwrap(), "one\n");
    assert_eq!(fs::read_to_string(layer1.join("usr/local/share/ct/f")).unwrap(), "u\n");
    assert!(!Path::new("/usr/local/share/ct").exists(), "the host's /usr is never written");

    // Run 2 on top sees both, deletes one, appends to the other.
    let mut spec = sh("cat /data.txt /usr/local/share/ct/f && rm /data.txt && echo two > /usr/local/share/ct/f");
    spec.lower_layers = vec![layer1.clone(), fixture().1.skeleton.clone()];
    let (out, upper) = run_ok(spec);
    assert_eq!(out, "one\nu\n");
    let layer2 = adopt(upper);

    // Run 3 on [layer2, layer1] sees the deletion (a whiteout) and the new content.
    let mut spec = sh("test ! -e /data.txt && cat /usr/local/share/ct/f");
    spec.lower_layers = vec![layer2, layer1];
    let (out, upper) = run_ok(spec);
    assert_eq!(out, "two\n");
    assert_eq!(upper, UpperState::Unchanged);
}

#[test]
fn reads_leave_the_filesystem_unchanged() {
    let mut spec = sh("ls -la / /etc /usr/bin >/dev/null && cat /etc/passwd >/dev/null && cd /tmp && echo $(pwd)");
    spec.cwd = "/root".into();
    let (out, upper) = run_ok(spec);
    assert_eq!(out, "/tmp\n");
    assert_eq!(upper, UpperState::Unchanged);
}

#[test]
fn creating_and_removing_a_new_file_is_no_change_but_touching_a_dir_is() {
    let (_, upper) = run_ok(sh("echo x > /new && rm /new"));
    assert_eq!(upper, UpperState::Unchanged);
    let (_, upper) = run_ok(sh("echo x > /tmp/new && rm /tmp/new"));
    let layer = adopt(upper);
    assert!(layer.join("tmp").is_dir(), "/tmp was copied up");
}

#[test]
fn network_is_loopback_only_unless_enabled() {
    let (out, _) = run_ok(sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    assert_eq!(out, "lo\n");
    // lo is up: a TCP connection over 127.0.0.1 works.
    let py = "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); \
              c=socket.create_connection(s.getsockname()); a,_=s.accept(); c.send(b'ping'); print(a.recv(4).decode())";
    let mut spec = SandboxSpec::new(fixture().1.clone(), new_run_dir(), "python3");
    spec.args = vec!["-c".into(), py.into()];
    assert_eq!(run_ok(spec).0, "ping\n");
    // With networking: its own namespace behind slirp4netns (lo and tap0), never the host's.
    let mut spec = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort");
    spec.network = true;
    assert_eq!(run_ok(spec).0, "lo\ntap0\n");
}

#[test]
fn host_private_paths_and_the_data_dir_are_invisible() {
    let data = data_dir().display().to_string();
    let cmd = format!(
        "ls -A /root | wc -l; ls -A /home | wc -l; test -e /work && echo work; test -e '{data}' && echo data; \
         test -e /etc/shadow && echo shadow; ls /proc | grep -c '^[0-9]'; cat /proc/1/environ 2>/dev/null | wc -c; \
         ls /proc/1/root/ 2>/dev/null | wc -l; echo end"
    );
    let (out, _) = run_ok(sh(&cmd));
    // /root and /home empty, no /work, no data dir, no shadow; only init, sh, and the pipeline
    // processes are visible; init's memory and environment (a copy of the server's) are not.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0", "{out}");
    assert!(lines[2].parse::<u32>().unwrap() <= 5, "few processes: {out}");
    assert_eq!(lines[3], "0", "init's environ must be unreadable: {out}");
    assert_eq!(lines[4], "0", "init's root must be unreadable: {out}");
    assert_eq!(lines[5], "end", "{out}");
}

#[test]
fn root_in_the_sandbox_cannot_mount_or_reach_the_host() {
    let (out, _) = run_ok(sh("mount -t tmpfs x /mnt 2>/dev/null && echo mounted; \
         grep CapBnd /proc/self/status; \
         echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo sysctl-written; \
         mknod /tmp/disk b 8 0 2>/dev/null && echo mknod; echo end"));
    assert!(!out.contains("mounted"), "{out}");
    assert!(!out.contains("sysctl-written"), "{out}");
    assert!(!out.contains("mknod"), "{out}");
    let bnd = out.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    let caps = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(caps & (1 << 21), 0, "no CAP_SYS_ADMIN");
    assert_eq!(caps & (1 << 27), 0, "no CAP_MKNOD");
    assert_ne!(caps & 1, 0, "CAP_CHOWN is kept");
}

#[test]
fn timeout_kills_the_whole_tree_and_reports_timed_out() {
    let mut spec = sh("sleep 100 & sleep 100; echo never");
    spec.timeout = Some(Duration::from_millis(300));
    let t = Instant::now();
    let (out, _) = run(spec);
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(out.exit.timed_out);
    assert_eq!(out.exit.exit_code, -1);
    assert_eq!(out.exit.signal, libc::SIGKILL);
    assert!(out.exit.duration >= Duration::from_millis(300));
    assert_eq!(out.stdout, "");
}

#[test]
fn kill_with_a_signal_reaches_the_command() {
    let spec = sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    let sb = spawn(spec).unwrap();
    let events = sb.take_events().unwrap();
    assert_eq!(events.recv_timeout(Duration::from_secs(10)).unwrap(), SandboxEvent::Stdout(b"ready\n".to_vec()));
    sb.kill(libc::SIGTERM).unwrap();
    let mut out = Vec::new();
    let mut exit = None;
    for ev in events {
        match ev {
            SandboxEvent::Stdout(b) => out.extend(b),
            SandboxEvent::Exited(e) => exit = Some(e),
            SandboxEvent::Stderr(_) => {}
        }
    }
    assert_eq!(out, b"got-term\n");
    let exit = exit.unwrap();
    assert_eq!((exit.exit_code, exit.signal, exit.timed_out), (7, -1, false));
    // The sandbox is gone: kill is a no-op, wait returns the same info.
    sb.kill(libc::SIGKILL).unwrap();
    assert_eq!(sb.wait(), exit);
    assert!(sb.kill(0).is_err() && sb.kill(65).is_err());
}

#[test]
fn sigkill_ends_the_run_with_the_signal() {
    let sb = spawn(sh("sleep 100")).unwrap();
    sb.kill(libc::SIGKILL).unwrap();
    let out = collect(&sb);
    assert_eq!((out.exit.exit_code, out.exit.signal, out.exit.timed_out), (-1, libc::SIGKILL, false));
}

#[test]
fn background_processes_die_with_the_command() {
    let t = Instant::now();
    let (out, _) = run_ok(sh("sleep 100 & echo started"));
    assert_eq!(out, "started\n");
    assert!(t.elapsed() < Duration::from_secs(5), "the leftover sleep must not keep the run alive");
}

#[test]
fn dropping_the_handle_kills_the_sandbox() {
    let sb = spawn(sh("sleep 100")).unwrap();
    let events = sb.take_events().unwrap();
    let t = Instant::now();
    drop(sb);
    let last = events.iter().last().unwrap();
    assert!(matches!(last, SandboxEvent::Exited(ExitInfo { signal: libc::SIGKILL, .. })), "{last:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn rusage_is_recorded() {
    let (out, _) = run(sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"));
    let r = out.exit.rusage;
    assert!(r.max_rss_kb > 0 && r.max_rss_kb < 512 * 1024, "{r:?}");
    assert!(r.user_time_us + r.sys_time_us > 0, "{r:?}");
    assert!(r.minor_faults > 0, "{r:?}");
}

#[test]
fn spawn_with_sink_delivers_events_in_order() {
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = sh("echo a; echo b >&2; echo c");
    let run_dir = spec.run_dir.clone();
    let sb = spawn_with_sink(spec, move |ev| tx.send(ev).unwrap()).unwrap();
    assert!(sb.take_events().is_none());
    let info = sb.wait();
    let events: Vec<SandboxEvent> = rx.try_iter().collect();
    assert_eq!(events.last(), Some(&SandboxEvent::Exited(info)));
    let stdout: Vec<u8> = events
        .iter()
        .filter_map(|e| if let SandboxEvent::Stdout(b) = e { Some(b.clone()) } else { None })
        .flatten()
        .collect();
    assert_eq!(stdout, b"a\nc\n");
    finish(&run_dir).unwrap();
}

#[test]
fn concurrent_runs_from_many_threads() {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut spec = sh("echo $N; cat");
                spec.env = vec![("N".into(), i.to_string())];
                spec.stdin = format!("in{i}").into_bytes();
                run_ok(spec).0
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("{i}\nin{i}"));
    }
}

#[test]
fn many_layers_use_the_new_mount_api() {
    // Long layer paths push the option string past a page: each layer is added with
    // `lowerdir+`.
    let root = data_dir().join("layers-many").join("x".repeat(100));
    let mut layers = Vec::new();
    for i in 0..60 {
        let l = root.join(format!("layer-{i:03}-{}", "y".repeat(40)));
        fs::create_dir_all(l.join("stack")).unwrap();
        fs::write(l.join("stack").join(format!("f{i}")), i.to_string()).unwrap();
        fs::set_permissions(&l, fs::Permissions::from_mode(0o755)).unwrap();
        layers.push(l);
    }
    layers.reverse();
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096);
    let mut spec = sh("ls /stack | wc -l; cat /stack/f0 /stack/f59");
    spec.lower_layers = layers;
    assert_eq!(run_ok(spec).0, "60\n059");
}

#[test]
fn setup_failures_are_errors_and_clean_up() {
    // A file cannot replace a directory.
    let src = data_dir().join("blob-setup-test");
    fs::write(&src, b"x").unwrap();
    let mut spec = sh("true");
    spec.files = vec![PlacedFile { dest: "/etc".into(), source: src, mode: 0o644, uid: 0, gid: 0 }];
    let run_dir = spec.run_dir.clone();
    match spawn(spec) {
        Err(SandboxError::Setup { stage, source }) => {
            assert_eq!(stage, "placing file /etc");
            assert_eq!(source.raw_os_error(), Some(libc::EISDIR));
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert!(!run_dir.exists());

    // A working directory the user may not enter.
    let mut spec = sh("true");
    spec.cwd = "/root".into();
    spec.uid = 1000;
    let err = spawn(spec).unwrap_err();
    assert!(err.to_string().contains("entering the working directory /root as uid 1000"), "{err}");
}

#[test]
fn invalid_specs_name_the_argument() {
    type Edit = Box<dyn Fn(&mut SandboxSpec)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("cwd", Box::new(|s| s.cwd = "relative".into())),
        ("command", Box::new(|s| s.command = String::new())),
        ("command", Box::new(|s| s.command = "a\0b".into())),
        ("env", Box::new(|s| s.env = vec![("A=B".into(), "c".into())])),
        ("hostname", Box::new(|s| s.hostname = "h".repeat(65))),
        ("timeout", Box::new(|s| s.timeout = Some(Duration::ZERO))),
        (
            "files",
            Box::new(|s| {
                s.files =
                    vec![PlacedFile { dest: "rel".into(), source: "/dev/null".into(), mode: 0o644, uid: 0, gid: 0 }]
            }),
        ),
        (
            "files",
            Box::new(|s| {
                s.files =
                    vec![PlacedFile { dest: "/x".into(), source: "/dev/null".into(), mode: 0o10000, uid: 0, gid: 0 }]
            }),
        ),
        ("lower_layers", Box::new(|s| s.lower_layers = vec!["/tmp/a,b".into()])),
        ("lower_layers", Box::new(|s| s.lower_layers = vec!["/l".into(); crate::images::MAX_LAYERS + 1])),
    ];
    for (arg, edit) in cases {
        let mut spec = sh("true");
        edit(&mut spec);
        let run_dir = spec.run_dir.clone();
        match spawn(spec) {
            Err(SandboxError::InvalidArgument { argument, .. }) => assert_eq!(argument, arg),
            other => panic!("{arg}: expected InvalidArgument, got {other:?}"),
        }
        assert!(!run_dir.exists(), "{arg}: the run dir is cleaned up");
    }
}

#[test]
fn a_reused_run_dir_is_rejected() {
    let spec = sh("echo x > /f");
    let run_dir = spec.run_dir.clone();
    let sb = spawn(spec).unwrap();
    sb.wait();
    let mut again = sh("true");
    again.run_dir = run_dir.clone();
    assert!(matches!(spawn(again), Err(SandboxError::InvalidArgument { argument: "run_dir", .. })));
    discard(&run_dir).unwrap();
}

#[test]
fn devices_and_proc_are_usable() {
    let (out, _) = run_ok(sh(
        "echo hi > /dev/null && head -c 4 /dev/urandom | wc -c && ls /dev/pts >/dev/null && test -d /dev/shm && echo $$ && readlink /proc/self/exe",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4");
    assert_eq!(lines[1], "2", "the command is PID 2 of its namespace");
}

/// Median spawn + wait + finish of `true` (not a timed assertion; run with
/// `cargo test -p contree-local --lib sandbox::tests::bench_true -- --ignored --nocapture`).
#[test]
#[ignore]
fn bench_true() {
    let base = fixture().1.clone();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let run_dir = new_run_dir();
        let t = Instant::now();
        let sb = spawn(SandboxSpec::new(base.clone(), run_dir.clone(), "true")).unwrap();
        let info = sb.wait();
        let upper = finish(&run_dir).unwrap();
        samples.push(t.elapsed());
        assert_eq!(info.exit_code, 0);
        assert_eq!(upper, UpperState::Unchanged);
    }
    samples.sort();
    println!(
        "spawn+wait+finish of `true` over {} runs: p50 {:?}, p90 {:?}, min {:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10],
        samples[0],
        samples[samples.len() - 1]
    );
}

/// The run's cgroups on this host, for real (v1 on the hybrid layout, v2 where delegated):
/// init and the command are inside before anything runs, the limits are the configured
/// ones, the run's cgroup is gone once it has exited, and the subtree with the last handle.
#[test]
fn runs_join_their_own_cgroup_with_its_limits_and_it_is_removed() {
    use cgroup::{CgroupHost, CgroupLimits, Cgroups, Controller};
    let host = CgroupHost::detect().unwrap();
    for c in [Controller::Memory, Controller::Pids] {
        assert!(host.unavailable(c).is_none(), "this host has the {} controller: {:?}", c.name(), host.unavailable(c));
    }
    let limits = CgroupLimits { memory_bytes: Some(300 << 20), pids: Some(100), cpus: Some(0.5) };
    let cg = Cgroups::create(&host, limits).unwrap();
    let mut spec = sh("cat /proc/self/cgroup");
    spec.cgroups = Some(cg.clone());
    let (out, _) = run(spec);
    assert_eq!(out.exit.exit_code, 0, "{}", out.stderr);
    assert!(!out.exit.oom_killed);
    // Inside the cgroup namespace the run's own cgroup shows relative to where init was
    // when it unshared: below the server's subtree, in the run's cgroup.
    let memory_line = out.stdout.lines().find(|l| l.contains(":memory:") || l.starts_with("0::")).unwrap();
    assert!(memory_line.contains("/contree-local-") && memory_line.contains("/run-0"), "{}", out.stdout);

    // The values, read from the kernel while a run sleeps.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut spec = sh("sleep 30");
    spec.cgroups = Some(cg.clone());
    let sb = spawn(spec).unwrap();
    let proc_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    assert_ne!(proc_cg, own, "init left the server's cgroups");
    if host.layout(Controller::Memory) == Some("v1") {
        let rel = proc_cg.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned())).unwrap();
        let dir = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
        assert_eq!(fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap().trim(), (300u64 << 20).to_string());
        let rel = proc_cg.lines().find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_owned())).unwrap();
        let pids = Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'));
        assert_eq!(fs::read_to_string(pids.join("pids.max")).unwrap().trim(), "100");
        sb.kill(libc::SIGKILL).unwrap();
        let _ = collect(&sb);
        assert!(!dir.exists(), "the run's cgroup is removed when it has ended");
        let subtree = dir.parent().unwrap().to_path_buf();
        assert!(subtree.exists());
        drop(cg);
        assert!(!subtree.exists(), "the server's subtree is removed with its last handle");
    } else {
        sb.kill(libc::SIGKILL).unwrap();
        let _ = collect(&sb);
    }
}

/// A run past its memory limit is OOM-killed, says so, and the next run is fine.
#[test]
fn memory_limit_oom_kills_and_says_so() {
    use cgroup::{CgroupHost, CgroupLimits, Cgroups};
    let host = CgroupHost::detect().unwrap();
    let cg = Cgroups::create(&host, CgroupLimits { memory_bytes: Some(64 << 20), ..Default::default() }).unwrap();
    let mut spec = sh("exec perl -e '$x = \"a\" x (1 << 30); print \"survived\\n\"'");
    spec.cgroups = Some(cg.clone());
    spec.timeout = Some(Duration::from_secs(60));
    let (out, _) = run(spec);
    assert!(out.exit.oom_killed, "{:?} {}", out.exit, out.stderr);
    assert_eq!(out.exit.signal, libc::SIGKILL);
    assert!(!out.stdout.contains("survived"));
    let mut spec = sh("echo fine");
    spec.cgroups = Some(cg);
    let (out, _) = run(spec);
    assert_eq!((out.exit.exit_code, out.exit.oom_killed, out.stdout.as_str()), (0, false, "fine\n"));
}

/// Collects a subprocess's events from a channel sink.
fn collect_rx(rx: std::sync::mpsc::Receiver<SandboxEvent>) -> Output {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut exit = None;
    for ev in rx.iter() {
        assert!(exit.is_none(), "no event may follow Exited");
        match ev {
            SandboxEvent::Stdout(b) => stdout.extend(b),
            SandboxEvent::Stderr(b) => stderr.extend(b),
            SandboxEvent::Exited(e) => exit = Some(e),
        }
    }
    Output {
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
        exit: exit.expect("an Exited event"),
    }
}

#[test]
fn extra_processes_run_inside_the_sandbox_and_die_with_it() {
    let mut spec = sh("echo main > /tmp/mark; exec sleep 60");
    spec.hostname = "inner".into();
    let run_dir = spec.run_dir.clone();
    let sb = spawn(spec).unwrap();
    let events = sb.take_events().unwrap();

    // Its stdin, env, cwd, credentials; the main process's files and hostname.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut x = SubprocessSpec::new("/bin/sh");
        x.args = vec!["-c".into(), "cat /tmp/mark; hostname; echo $V; id -u; id -g; pwd; cat".into()];
        x.env = vec![("V".into(), "v".into())];
        x.cwd = "/tmp".into();
        x.uid = 7;
        x.gid = 8;
        x.stdin = b"in".to_vec();
        let p = sb.exec(2, x, move |ev| drop(tx.send(ev))).unwrap();
        assert_eq!(p.spid(), 2);
        assert!(p.pid() > 1, "{}", p.pid());
        let out = collect_rx(rx);
        assert_eq!(p.wait(), out.exit);
        if out.stdout.starts_with("main") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(out.exit.exit_code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "main\ninner\nv\n7\n8\n/tmp\nin");

    // Refused before anything starts: ids outside the range; a missing cwd is a setup error.
    let mut x = SubprocessSpec::new("true");
    x.uid = IdRange::default().count();
    assert!(matches!(sb.exec(3, x, |_| {}), Err(SandboxError::InvalidArgument { argument: "uid", .. })));
    let mut x = SubprocessSpec::new("true");
    x.cwd = "/no/such".into();
    match sb.exec(4, x, |_| {}) {
        Err(SandboxError::Setup { stage, source }) => {
            assert!(stage.contains("/no/such"), "{stage}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected a setup error, got {other:?}"),
    }

    // Signalled by spid, with stdin kept open until then.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut x = SubprocessSpec::new("cat");
    x.keep_stdin_open = true;
    let cat = sb.exec(5, x, move |ev| drop(tx.send(ev))).unwrap();
    cat.write_stdin(b"abc", false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, SandboxEvent::Stdout(b"abc".to_vec()));
    assert!(Instant::now() < deadline);
    assert!(cat.try_wait().is_none());
    cat.kill(libc::SIGTERM).unwrap();
    let out = collect_rx(rx);
    assert_eq!((out.exit.signal, out.exit.exit_code), (libc::SIGTERM, -1));
    assert!(cat.write_stdin(b"late", true).is_err());
    cat.kill(libc::SIGKILL).unwrap(); // a no-op once it exited

    // A process still running when the sandbox ends is killed with it, and nothing starts
    // in an ended sandbox.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut x = SubprocessSpec::new("sleep");
    x.args = vec!["60".into()];
    let sleeper = sb.exec(7, x, move |ev| drop(tx.send(ev))).unwrap();
    sb.kill(libc::SIGKILL).unwrap();
    for _ in events.iter() {}
    let out = collect_rx(rx);
    assert_eq!(out.exit.signal, libc::SIGKILL);
    assert_eq!(sleeper.wait().signal, libc::SIGKILL);
    assert!(matches!(sb.exec(8, SubprocessSpec::new("true"), |_| {}), Err(SandboxError::Ended)));
    discard(&run_dir).ok();
}
