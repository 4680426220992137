//! End-to-end scenarios against a real Contree backend: the embedded `contree-local` server
//! (sandboxed runs on overlayfs and namespaces). Written once, run in both SDK flavors.
//!
//! Each scenario gets `crate::flavor::backend()`: a client plus the built-in base image.

use std::time::Duration;

use crate::flavor::{Client, Image, OutputTarget, Stdin};

use contree::ExitStatus;

/// The list of scenarios, kept in one place for both flavors.
#[macro_export]
macro_rules! e2e_scenarios {
    ($m:ident) => {
        $m!(
            echo_captures_stdout_and_exit_code,
            nonzero_exit_is_a_result_and_check_makes_it_an_error,
            stdin_env_cwd_and_hostname_reach_the_command,
            preserve_cwd_sets_the_working_directory_of_later_runs,
            files_are_placed_with_their_mode,
            branches_from_one_image_stay_isolated,
            rerunning_a_noop_keeps_the_image_uuid,
            session_chains_runs_and_keeps_state,
            output_is_truncated_at_the_cap,
            timeout_kills_the_command,
            popen_streams_output_and_takes_stdin,
            popen_kill_ends_the_process,
            inspect_lists_reads_and_downloads,
            path_escapes_read_nothing,
            tags_move_between_images,
            session_popen_text_mode_tag_as_and_operations,
            grep_finds_lines_in_a_result_image,
            exec_starts_more_processes_in_a_running_instance,
            upload_reports_progress_up_to_the_file_size,
            download_and_archive_report_progress
        );
    };
}

fn base() -> (Client, Image) {
    crate::flavor::backend()
}

#[crate::maybe]
pub async fn echo_captures_stdout_and_exit_code() {
    let (_c, base) = base();
    let done = base.run("echo").arg("hello sandbox").wait().await.expect("run");
    assert_eq!(done.stdout_text().unwrap(), "hello sandbox\n");
    assert_eq!(done.exit_code().unwrap(), 0);
    assert!(done.exit_status().unwrap().success());
    assert!(done.uuid().is_none(), "image runs are disposable by default");
    // The source image is untouched by the run.
    assert!(base.output().is_err());
}

#[crate::maybe]
pub async fn nonzero_exit_is_a_result_and_check_makes_it_an_error() {
    let (_c, base) = base();
    let done = base.shell("echo oops >&2; exit 3").wait().await.expect("run");
    assert_eq!(done.exit_code().unwrap(), 3);
    assert_eq!(done.stderr_text().unwrap(), "oops\n");
    let err = done.check().unwrap_err();
    assert!(err.is_process_failed(), "{err}");
    assert_eq!(err.exit_code(), Some(3));
    assert_eq!(err.process_failure().unwrap().stderr, b"oops\n");
}

#[crate::maybe]
pub async fn stdin_env_cwd_and_hostname_reach_the_command() {
    let (_c, base) = base();
    let done = base
        .shell("cat; echo \"$GREETING\"; pwd; hostname")
        .stdin("from stdin\n")
        .env("GREETING", "hi there")
        .cwd("/tmp/work")
        .hostname("branch-a")
        .wait()
        .await
        .expect("run");
    assert_eq!(done.stdout_text().unwrap(), "from stdin\nhi there\n/tmp/work\nbranch-a\n");
    let binary: Vec<u8> = (0u8..=255).collect();
    let done = base.run("cat").stdin(binary.clone()).wait().await.expect("binary stdin");
    assert_eq!(done.stdout().unwrap(), &binary[..]);
}

#[crate::maybe]
pub async fn preserve_cwd_sets_the_working_directory_of_later_runs() {
    let (_c, base) = base();
    let saved = base.run("true").cwd("/srv/app").preserve_cwd(true).disposable(false).wait().await.expect("save");
    assert!(saved.uuid().is_some());
    let done = saved.run("pwd").wait().await.expect("pwd");
    assert_eq!(done.stdout_text().unwrap(), "/srv/app\n");
    let done = saved.run("pwd").cwd("/tmp").wait().await.expect("an explicit cwd wins");
    assert_eq!(done.stdout_text().unwrap(), "/tmp\n");
    let mut session = saved.session();
    session.shell("echo x > here.txt").wait().await.expect("session run");
    let done = session.run("cat").arg("/srv/app/here.txt").wait().await.expect("cat");
    assert_eq!(done.stdout_text().unwrap(), "x\n", "session runs start there too");
}

#[crate::maybe]
pub async fn files_are_placed_with_their_mode() {
    let (_c, base) = base();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho script ran\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let done = base
        .shell("/opt/hello.sh; stat -c '%a %u' /opt/hello.sh /data.bin; cat /data.bin")
        .file("/opt/hello.sh", script.as_path())
        .file_spec(crate::flavor::UploadFileSpec::new("/data.bin", b"payload".to_vec()).mode(0o600).owner(7, 7))
        .wait()
        .await
        .expect("run");
    assert_eq!(done.stdout_text().unwrap(), "script ran\n755 0\n600 7\npayload");
}

#[crate::maybe]
pub async fn branches_from_one_image_stay_isolated() {
    let (_c, base) = base();
    let root = base.shell("echo root > /state").disposable(false).wait().await.expect("root");
    let root_uuid = root.uuid().expect("non-disposable run has an image");
    let a = root.shell("echo a >> /state").disposable(false).wait().await.expect("a");
    let b = root.shell("echo b >> /state").disposable(false).wait().await.expect("b");
    assert_ne!(a.uuid(), b.uuid());
    assert_ne!(a.uuid(), Some(root_uuid));
    let (in_a, in_b, in_root) =
        (a.read("/state").await.unwrap(), b.read("/state").await.unwrap(), root.read("/state").await.unwrap());
    assert_eq!(&in_a[..], b"root\na\n");
    assert_eq!(&in_b[..], b"root\nb\n");
    assert_eq!(&in_root[..], b"root\n");
}

#[crate::maybe]
pub async fn rerunning_a_noop_keeps_the_image_uuid() {
    let (_c, base) = base();
    let start = base.shell("echo x > /f").disposable(false).wait().await.expect("start");
    let again = start.run("cat").arg("/f").disposable(false).wait().await.expect("noop");
    assert_eq!(again.uuid(), start.uuid(), "an unchanged filesystem keeps the source uuid");
    assert_eq!(again.stdout_text().unwrap(), "x\n");
}

#[crate::maybe]
pub async fn session_chains_runs_and_keeps_state() {
    let (_c, base) = base();
    let mut session = base.session();
    session.shell("echo one > /log").wait().await.expect("1");
    session.shell("echo two >> /log").wait().await.expect("2");
    // A disposable run sees the state but leaves the session where it was.
    let peek = session.shell("echo three >> /log; cat /log").disposable(true).wait().await.expect("3");
    assert_eq!(peek.stdout_text().unwrap(), "one\ntwo\nthree\n");
    let last = session.run("cat").arg("/log").wait().await.expect("4");
    assert_eq!(last.stdout_text().unwrap(), "one\ntwo\n");
    // A failing operation (bad cwd is fine; use a missing program) leaves the session usable.
    let before = session.image().uuid();
    let _ = session.run("/definitely/not/here").wait().await;
    assert_eq!(session.image().uuid(), before);
    assert_eq!(session.history().len(), 3, "start + two state-changing runs");
}

#[crate::maybe]
pub async fn output_is_truncated_at_the_cap() {
    let (_c, base) = base();
    let done = base.shell("head -c 5000 /dev/zero | tr '\\0' a").truncate_output_at(100).wait().await.expect("run");
    assert_eq!(done.stdout().unwrap().len(), 100);
    assert!(done.truncated().unwrap());
}

#[crate::maybe]
pub async fn timeout_kills_the_command() {
    let (_c, base) = base();
    let started = std::time::Instant::now();
    let done = base.shell("sleep 30; echo never").timeout(Duration::from_secs(1)).wait().await.expect("run");
    let status: ExitStatus = done.exit_status().unwrap();
    assert!(status.timed_out, "{status:?}");
    assert!(!status.success());
    assert!(!done.stdout_text().unwrap().contains("never"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[crate::maybe]
pub async fn popen_streams_output_and_takes_stdin() {
    let (_c, base) = base();
    let mut proc = base
        .run("sh")
        .arg("-c")
        .arg("echo ready; read line; echo got:$line")
        .stdin(Stdin::piped())
        .spawn()
        .await
        .expect("spawn");
    let mut out = proc.stdout().expect("stdout reader");
    let first = out.chunk().await.expect("first chunk");
    assert_eq!(first, &b"ready\n"[..]);
    proc.write_stdin(&b"ping\n"[..]).await.expect("write stdin");
    proc.close_stdin().await.expect("close stdin");
    let status = proc.wait().await.expect("wait");
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    while let Some(chunk) = out.chunk().await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"got:ping\n");
}

#[crate::maybe]
pub async fn popen_kill_ends_the_process() {
    let (_c, base) = base();
    let mut proc = base.popen_shell("echo started; sleep 60").await.expect("spawn");
    let mut out = proc.stdout().expect("stdout reader");
    let first = out.chunk().await.expect("started");
    assert_eq!(first, &b"started\n"[..]);
    assert!(proc.try_wait().expect("try_wait").is_none());
    proc.kill().await.expect("kill");
    let status = proc.wait().await.expect("wait");
    assert_eq!(status.signal, Some(9), "{status:?}");
}

#[crate::maybe]
pub async fn inspect_lists_reads_and_downloads() {
    let (_c, base) = base();
    let img = base.shell("mkdir -p /srv/d && printf 'abc' > /srv/d/f.txt").disposable(false).wait().await.expect("run");
    let entries = img.ls("/srv/d").await.expect("ls");
    let names: Vec<&str> = entries.iter().map(|f| f.name()).collect();
    assert_eq!(names, vec!["f.txt"]);
    // Entries know where they are: read and list without rebuilding paths.
    assert_eq!(entries[0].path(), "/srv/d/f.txt");
    let read = entries[0].read().await.expect("entry read");
    assert_eq!(&read[..], b"abc");
    let srv = img.ls("/srv/").await.expect("ls /srv/");
    let d = srv.iter().find(|e| e.name() == "d").expect("d in /srv");
    assert!(d.is_dir);
    let inner: Vec<String> = d.ls().await.expect("entry ls").iter().map(|e| e.path().to_string()).collect();
    assert_eq!(inner, vec!["/srv/d/f.txt".to_string()]);
    let content = img.read("/srv/d/f.txt").await.unwrap();
    assert_eq!(&content[..], b"abc");
    let dir = tempfile::tempdir().unwrap();
    let local = img.download("/srv/d/f.txt", dir.path().join("f.txt")).await.expect("download");
    assert_eq!(std::fs::read(local).unwrap(), b"abc");
    let missing = img.read("/srv/d/missing").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let out = dir.path().join("d.tar");
    img.archive("/srv/d").await.expect("archive").save(&out).await.expect("save");
    let tar = std::fs::read(&out).unwrap();
    assert!(tar.windows(5).any(|w| w == b"f.txt"), "archive names the file");
}

#[crate::maybe]
pub async fn path_escapes_read_nothing() {
    let (_c, base) = base();
    let secret = format!("host-secret-{}", uuid::Uuid::new_v4());
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("marker");
    std::fs::write(&marker, &secret).unwrap();
    let marker = marker.to_str().unwrap().to_string();
    let img = base
        .shell(format!(
            "ln -s / /rootlink; ln -s ../../../../../../{m} /up; ln -s {m} /abs",
            m = marker.trim_start_matches('/')
        ))
        .disposable(false)
        .wait()
        .await
        .expect("make links");
    let attempts = [
        format!("/../../../../../..{marker}"),
        format!("/rootlink/../..{marker}"),
        "/up".to_string(),
        "/abs".to_string(),
        format!("/rootlink{marker}"),
    ];
    for path in attempts {
        match img.read(&path).await {
            Ok(bytes) => assert!(!String::from_utf8_lossy(&bytes).contains(&secret), "{path} leaked the host file"),
            Err(e) => assert!(e.status().is_some_and(|s| (400..500).contains(&s)), "{path}: {e}"),
        }
    }
    // The sandbox itself cannot see the host file either.
    let done = img.shell(format!("cat {marker} 2>/dev/null || echo absent")).wait().await.expect("run");
    assert_eq!(done.stdout_text().unwrap(), "absent\n");
}

#[crate::maybe]
pub async fn tags_move_between_images() {
    let (client, base) = base();
    let tag = format!("e2e/tag-{}:v1", uuid::Uuid::new_v4().simple());
    let a = base.shell("echo a > /who").disposable(false).tag(&tag).wait().await.expect("a");
    assert_eq!(a.tag(), Some(tag.as_str()));
    let found = client.images().get_by_tag(&tag).await.expect("lookup");
    assert_eq!(found.uuid(), a.uuid());
    let b = base.shell("echo b > /who").disposable(false).wait().await.expect("b");
    let b = b.tag_as(&tag).await.expect("tag b");
    let found = client.images().get_by_tag(&tag).await.expect("lookup");
    assert_eq!(found.uuid(), b.uuid(), "assigning a tag moves it");
    let by_tag = client.images().use_image(tag.as_str()).expect("use");
    let done = by_tag.run("cat").arg("/who").wait().await.expect("run by tag");
    assert_eq!(done.stdout_text().unwrap(), "b\n");
    let _ = OutputTarget::bytes();
}

/// Python parity on a real server: a session's popen moves the session when it finishes, text
/// mode yields checked lines, `apply_files` takes file specs, `tag_as` moves the session, and
/// the operations API lists and reads what ran.
#[crate::maybe]
pub async fn session_popen_text_mode_tag_as_and_operations() {
    let (client, base) = base();
    let mut session = base.session();
    let mut process = session.popen_shell("printf 'one\\ntwo\\n' > /lines; cat /lines").await.expect("popen");
    let mut lines = process.stdout_lines().expect("stdout lines");
    let mut got = Vec::new();
    while let Some(line) = lines.next_line().await.expect("a UTF-8 line") {
        got.push(line);
    }
    assert_eq!(got, ["one", "two"]);
    let status = process.wait().await.expect("wait");
    assert!(status.success());
    drop(process);
    let moved = session.image().read("/lines").await.expect("the session moved to the process's result");
    assert_eq!(&moved[..], b"one\ntwo\n");

    let spec = contree::UploadFileSpec::new("/etc/parity.conf", b"k=v\n".to_vec()).mode(0o600);
    session.apply_files([spec]).await.expect("apply_files with a spec");
    let mode = session.run("stat").args(["-c", "%a", "/etc/parity.conf"]).wait().await.expect("stat");
    assert_eq!(mode.stdout_text().unwrap(), "600\n");

    let tag = format!("e2e-parity-{}", std::process::id());
    session.tag_as(&tag).await.expect("tag_as");
    assert_eq!(session.image().tag(), Some(tag.as_str()));
    let found = client.images().get_by_tag(&tag).await.expect("lookup");
    assert_eq!(found.uuid(), session.image().uuid());

    let ops = client.operations().list().limit(5).send().await.expect("list operations");
    assert!(!ops.is_empty(), "the runs above are operations");
    let op = client.operations().get(ops[0].uuid).await.expect("get an operation");
    assert_eq!(op.uuid, ops[0].uuid);
    assert!(op.status.is_terminal() || op.status.is_active(), "{:?}", op.status);
}

/// `image.grep(…)` against a real server: layers (a file deleted by a later run is not
/// found), globs, case, context, limits, and bad input refused before any request.
#[crate::maybe]
pub async fn grep_finds_lines_in_a_result_image() {
    let (_c, base) = base();
    let first = base
        .shell(
            "mkdir -p /srv/app/conf && printf 'port = 80\\nname = web\\n' > /srv/app/conf/web.conf \
             && printf 'PORT=90\\n' > /srv/app/env && printf 'port = 1\\n' > /srv/app/old.conf",
        )
        .disposable(false)
        .wait()
        .await
        .expect("setup");
    let img = first.shell("rm /srv/app/old.conf").disposable(false).wait().await.expect("delete");

    let found = img.grep("port").path("/srv/app").send().await.expect("grep");
    let files: Vec<&str> = found.matches.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(files, ["/srv/app/conf/web.conf"], "the deleted file is gone, case is exact");
    assert!(!found.truncated);
    let row = &found.matches[0];
    assert!(row.is_match());
    assert_eq!((row.line_number, row.line_text.as_str()), (1, "port = 80\n"));
    assert_eq!((row.submatches[0].start, row.submatches[0].end), (0, 4));
    // The image below the deletion still has it.
    let below = first.grep("port").path("/srv/app").glob("*.conf").send().await.expect("grep");
    let files: Vec<&str> = below.matches.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(files, ["/srv/app/conf/web.conf", "/srv/app/old.conf"]);

    let smart = img.grep("port").path("/srv/app").case(contree::models::GrepCase::Smart).send().await.expect("grep");
    assert_eq!(smart.matches.len(), 2, "smart case: a lower-case pattern ignores case");
    let ctx = img.grep("^port").path("/srv/app/conf/web.conf").after(1).send().await.expect("grep");
    let kinds: Vec<bool> = ctx.matches.iter().map(|m| m.is_context()).collect();
    assert_eq!(kinds, [false, true]);
    assert_eq!(ctx.matches[1].line_text, "name = web\n");
    let capped = img.grep("=").path("/srv/app").ignore_case().max_total(1).send().await.expect("grep");
    assert_eq!(capped.matches.len(), 1);
    assert!(capped.truncated);

    let missing = img.grep("x").path("/srv/nope").send().await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let bad = img.grep("a(").path("/srv/app").send().await.unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad}");
    let early = img.grep("").send().await.unwrap_err();
    assert_eq!(early.argument(), Some("pattern"));
}

/// `exec` on a live process: more processes in the same running sandbox, each with its own
/// live handle, ended with the instance at the latest.
#[crate::maybe]
pub async fn exec_starts_more_processes_in_a_running_instance() {
    let (_c, base) = base();
    let mut main = base.popen_shell("echo state > /tmp/state; echo ready; sleep 60").await.expect("popen");
    let mut out = main.stdout().expect("stdout reader");
    let ready = out.chunk().await.expect("ready");
    assert_eq!(ready, &b"ready\n"[..]);

    // It sees the main command's filesystem; its output is its own, live.
    let mut cat = main.exec(["cat", "/tmp/state"]).spawn().await.expect("exec");
    assert!(cat.spid() >= 2, "{cat:?}");
    assert_eq!(cat.id(), main.id());
    let mut lines = cat.stdout_lines().expect("lines");
    let line = lines.next_line().await.expect("line");
    assert_eq!(line.as_deref(), Some("state"));
    let status = cat.wait().await.expect("wait");
    assert!(status.success());

    // Piped stdin, env, cwd and uid; the whole output at the end.
    let sh = main
        .exec(["sh", "-c", "read x; echo $x-$FOO-$(pwd)-$(id -u); echo err >&2"])
        .env("FOO", "bar")
        .cwd("/tmp")
        .uid(1000)
        .stdin(Stdin::piped())
        .spawn()
        .await
        .expect("exec sh");
    sh.write_stdin(&b"hi\n"[..]).await.expect("write stdin");
    sh.close_stdin().await.expect("close stdin");
    let output = sh.wait_with_output().await.expect("output");
    assert_eq!(output.stdout_text(), "hi-bar-/tmp-1000\n");
    assert_eq!(output.stderr_text(), "err\n");
    assert!(output.status.success());

    // The shell form, and check() making a non-zero exit an error.
    let mut failing = main.exec_shell("echo no >&2; exit 3").spawn().await.expect("exec shell").check(true);
    let err = failing.wait().await.unwrap_err();
    assert!(err.is_process_failed(), "{err}");
    assert_eq!(err.exit_code(), Some(3));

    // communicate, and kill by its own handle (the main command runs on).
    let mut upper = main.exec(["tr", "a-z", "A-Z"]).stdin(Stdin::piped()).spawn().await.expect("exec tr");
    let (stdout, _) = upper.communicate(&b"shout"[..]).await.expect("communicate");
    assert_eq!(stdout, &b"SHOUT"[..]);
    let mut sleeper = main.exec(["sleep", "60"]).spawn().await.expect("exec sleep");
    assert!(sleeper.try_wait().expect("try_wait").is_none());
    sleeper.kill().await.expect("kill");
    let status = sleeper.wait().await.expect("wait");
    assert_eq!(status.signal, Some(9));
    assert!(main.try_wait().expect("try_wait").is_none(), "the main command still runs");

    // Bad arguments fail before any request; a missing cwd is the server's 400.
    let err = main.exec(Vec::<String>::new()).spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("argv"), "{err}");
    let err = main.exec(["true"]).cwd("relative").spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("cwd"), "{err}");
    let err = main.exec(["true"]).cwd("/no/such/dir").spawn().await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // The main command's end ends the others; a finished instance takes no more.
    let mut late = main.exec(["sleep", "60"]).spawn().await.expect("exec late");
    main.kill().await.expect("kill main");
    let status = main.wait().await.expect("wait main");
    assert_eq!(status.signal, Some(9));
    let status = late.wait().await.expect("wait late");
    assert_eq!(status.signal, Some(9));
    let err = main.exec(["true"]).spawn().await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

/// What a progress callback saw: `(done, total, finished, failed)` per update.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, Option<u64>, bool, bool)>>>;

/// A progress whose callback records every update, and its watch handle.
fn recorded_progress() -> (contree::Progress, contree::ProgressWatch, Seen) {
    let seen = Seen::default();
    let progress = contree::Progress::callback({
        let seen = seen.clone();
        move |u| seen.lock().unwrap().push((u.done, u.total, u.finished, u.failed))
    });
    let watch = progress.watcher();
    (progress, watch, seen)
}

/// The bytes done never go down, reach `total` exactly, with `total` known from the first
/// chunk on, and pass through at least `min_steps` values strictly between 0 and `total`.
fn assert_rises_to(seen: &Seen, total: u64, min_steps: usize) {
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "no progress reported");
    let mut last = 0;
    for &(done, t, _, failed) in seen.iter() {
        assert!(done >= last, "progress went down: {last} then {done} in {seen:?}");
        assert!(done <= total, "progress passed the total: {done} > {total}");
        assert!(!failed, "reported as failed");
        if done > 0 {
            assert_eq!(t, Some(total), "the total is known while bytes move");
        }
        last = done;
    }
    let (done, t, finished, failed) = *seen.last().unwrap();
    assert_eq!((done, t, finished, failed), (total, Some(total), true, false), "ends at the total, finished");
    let between = seen.iter().filter(|(d, ..)| *d > 0 && *d < total).count();
    assert!(between >= min_steps, "only {between} intermediate updates for {total} bytes");
}

#[crate::maybe]
pub async fn upload_reports_progress_up_to_the_file_size() {
    let (client, _base) = base();
    // 6 MiB of fresh content, so the server does not have it and the bytes really go.
    let size: usize = 6 * 1024 * 1024;
    let seed = uuid::Uuid::new_v4();
    let content: Vec<u8> = (0..size).map(|i| seed.as_bytes()[i % 16] ^ (i / 16) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &content).unwrap();

    let (progress, watch, seen) = recorded_progress();
    let stored = client.files().upload_with_progress(path.as_path(), &progress).await.expect("upload");
    assert_eq!(stored.size, size as i64);
    assert_rises_to(&seen, size as u64, 3);
    let now = watch.snapshot();
    assert_eq!((now.done, now.total, now.finished, now.failed), (size as u64, Some(size as u64), true, false));
    assert_eq!(now.kind, contree::ProgressKind::Upload);
    assert_eq!(now.phase.as_deref(), Some("uploading"));

    // The same content again ends at the total. A file this large is hashed while it is
    // posted, so whether the lookup (phase "already on the server") or the POST finishes
    // first is a race; the skip itself is checked below with a file hashed before sending.
    let again = client.files().upload_with_progress(path.as_path(), &progress).await.expect("upload again");
    assert_eq!(again.sha256, stored.sha256);
    let now = watch.snapshot();
    assert_eq!((now.done, now.total, now.finished, now.failed), (size as u64, Some(size as u64), true, false));

    // A file under the pipelining threshold is hashed first: the same content again is
    // skipped without a POST, and counted as done; the progress starts afresh.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, &content[..1024 * 1024]).unwrap();
    client.files().upload(small.as_path()).await.expect("small upload");
    let (progress, watch, _seen) = recorded_progress();
    client.files().upload_with_progress(small.as_path(), &progress).await.expect("small upload again");
    let now = watch.snapshot();
    assert_eq!((now.done, now.total, now.finished), (1024 * 1024, Some(1024 * 1024), true));
    assert_eq!(now.phase.as_deref(), Some("already on the server"));

    // Bytes in memory are counted too.
    let (progress, watch, seen) = recorded_progress();
    let mut other = content.clone();
    other[0] ^= 0xff;
    client.files().upload_with_progress(other, &progress).await.expect("upload bytes");
    assert_rises_to(&seen, size as u64, 3);
    assert!(watch.is_finished());

    // A failed upload (no such file) is refused before any request, and reports nothing.
    let (progress, watch, _seen) = recorded_progress();
    let missing = dir.path().join("missing");
    let err = client.files().upload_with_progress(missing.as_path(), &progress).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    assert!(watch.snapshot().failed, "an upload that ended in an error is reported as failed");
}

#[crate::maybe]
pub async fn download_and_archive_report_progress() {
    let (_client, base) = base();
    let size: u64 = 5 * 1024 * 1024 + 123;
    let img = base
        .shell(format!("mkdir -p /srv/big && head -c {size} /dev/urandom > /srv/big/blob"))
        .disposable(false)
        .wait()
        .await
        .expect("make a big file");
    let dir = tempfile::tempdir().unwrap();

    let (progress, watch, seen) = recorded_progress();
    let local =
        img.download_with_progress("/srv/big/blob", dir.path().join("blob"), &progress).await.expect("download");
    assert_eq!(std::fs::metadata(&local).unwrap().len(), size);
    assert_rises_to(&seen, size, 2);
    let now = watch.snapshot();
    assert_eq!((now.kind, now.done, now.finished, now.failed), (contree::ProgressKind::Download, size, true, false));

    // An archive has no Content-Length here: bytes are counted, the total stays unknown
    // unless the server sends one, and the count ends at the saved size.
    let (progress, watch, seen) = recorded_progress();
    let out = dir.path().join("big.tar");
    img.archive("/srv/big").await.expect("archive").progress(&progress).save(&out).await.expect("save");
    let saved = std::fs::metadata(&out).unwrap().len();
    assert!(saved > size, "the tar holds the file");
    let now = watch.snapshot();
    assert_eq!((now.kind, now.done, now.finished, now.failed), (contree::ProgressKind::Archive, saved, true, false));
    let rising = seen.lock().unwrap().windows(2).all(|w| w[0].0 <= w[1].0);
    assert!(rising, "archive progress never goes down");
    if let Some(total) = now.total {
        assert_eq!(total, saved);
    }

    // A download that fails ends the progress as failed.
    let (progress, watch, _seen) = recorded_progress();
    let err = img.download_with_progress("/srv/big/missing", dir.path().join("m"), &progress).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(watch.snapshot().failed);
}
