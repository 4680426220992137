//! Doc examples of the shared driver's types and methods, in this flavor's words.
//!
//! The driver writes `#[doc = crate::doc_examples::example!(key)]`; each flavor answers with
//! its own code. This file is the source: `.ci/doc-examples` generates the blocking twin
//! (`crates/contree-blocking/src/doc_examples.rs`: no `.await`, the `Sync` names) and checks
//! in CI that the two agree. Every example is a doctest (`no_run`: it needs a server); hidden
//! lines give it a client (`client`) and the built-in image of contree-local (`base`).

/// Wraps an example body into a doctest with the hidden prelude.
macro_rules! wrap {
    ($body:literal) => {
        concat!(
            "\n\n# Example\n\n```no_run\n",
            "# use contree_async as contree;\n",
            "# #[allow(unused_imports)] use contree::*;\n",
            "# async fn demo() -> contree::Result<()> {\n",
            "# let client = Contree::from_env()?;\n",
            "# let base = client.images().use_image(\"contree-local/base:latest\")?;\n",
            $body,
            "# Ok(()) }\n```\n"
        )
    };
}
pub(crate) use wrap;

/// The example for `key`. See the module doc.
macro_rules! example {
    (client) => {
        $crate::doc_examples::wrap!(
            r#"// CONTREE_TOKEN / CONTREE_URL, or the profile written by `contree auth`:
let client = Contree::from_env()?;
let me = client.whoami().await?;
println!("token {}", me.token_uuid);
"#
        )
    };
    (builder) => {
        $crate::doc_examples::wrap!(
            r#"let client = Contree::builder()
    .base_url("http://127.0.0.1:8080")
    .token("my-token")
    .operation_timeout(std::time::Duration::from_secs(600))
    .build()?;
"#
        )
    };
    (builder_http2) => {
        $crate::doc_examples::wrap!(
            r#"// contree-local speaks HTTP/2 over plain TCP: one connection carries every run.
let client = Contree::builder()
    .base_url("http://127.0.0.1:8080")
    .token("my-token")
    .http_version(HttpVersion::Http2PriorKnowledge)
    .build()?;
"#
        )
    };
    (images) => {
        $crate::doc_examples::wrap!(
            r#"let images = client.images();
let base = images.use_image("contree-local/base:latest")?; // no request: a name
let tagged = images.list().tagged(true).limit(10).send().await?;
println!("{} tagged images", tagged.len());
"#
        )
    };
    (images_list) => {
        $crate::doc_examples::wrap!(
            r#"let recent = client
    .images()
    .list()
    .tag_prefix("app/")
    .since(std::time::Duration::from_secs(3600))
    .limit(20)
    .send()
    .await?;
for image in &recent {
    println!("{:?} {:?}", image.uuid(), image.tag());
}
"#
        )
    };
    (images_get_by_tag) => {
        $crate::doc_examples::wrap!(
            r#"match client.images().get_by_tag("app:v1").await {
    Ok(image) => println!("app:v1 is {:?}", image.uuid()),
    Err(e) if e.is_not_found() => println!("no image is tagged app:v1"),
    Err(e) => return Err(e),
}
"#
        )
    };
    (images_oci) => {
        $crate::doc_examples::wrap!(
            r#"// The image tagged ubuntu:24.04 if there is one, else an import from the registry.
let ubuntu = client.images().oci("ubuntu:24.04").timeout(std::time::Duration::from_secs(600)).send().await?;
println!("{:?}", ubuntu.uuid());
"#
        )
    };
    (images_import) => {
        $crate::doc_examples::wrap!(
            r#"let image = client
    .images()
    .import_from("registry.example.com/team/app:1.4")
    .credentials("robot", std::env::var("REGISTRY_PASSWORD").unwrap_or_default())
    .tag("app:1.4")
    .send()
    .await?;
println!("imported {:?}", image.uuid());
"#
        )
    };
    (images_tag) => {
        $crate::doc_examples::wrap!(
            r#"let built = base.shell("echo v1 > /VERSION").disposable(false).wait().await?;
let tagged = client.images().tag(built.uuid().expect("a kept image"), "app:v1").await?;
assert_eq!(tagged.tag(), Some("app:v1"));
"#
        )
    };
    (image) => {
        $crate::doc_examples::wrap!(
            r#"let base = client.images().use_image("contree-local/base:latest")?;
let hello = base.run("echo").arg("hello").wait().await?;
assert_eq!(hello.stdout_text()?, "hello\n");
// A non-disposable run keeps its filesystem as a new image: a branch point.
let project = base.shell("mkdir /project").disposable(false).wait().await?;
assert!(project.uuid().is_some());
"#
        )
    };
    (image_run) => {
        $crate::doc_examples::wrap!(
            r#"let done = base.run("ls").args(["-l", "/"]).cwd("/tmp").env("LANG", "C").wait().await?;
println!("exit {} after {:?}", done.exit_code()?, done.elapsed()?);
"#
        )
    };
    (image_shell) => {
        $crate::doc_examples::wrap!(
            r#"let done = base.shell("echo $((6 * 7))").wait().await?;
assert_eq!(done.stdout_text()?, "42\n");
"#
        )
    };
    (image_check) => {
        $crate::doc_examples::wrap!(
            r#"let failed = base.shell("echo oops >&2; exit 3").wait().await?;
assert_eq!(failed.exit_code()?, 3); // a result, not an error
let err = failed.check().unwrap_err();
assert_eq!(err.exit_code(), Some(3));
eprintln!("error: {err}");
"#
        )
    };
    (image_popen) => {
        $crate::doc_examples::wrap!(
            r#"let mut process = base.popen(["sh", "-c", "echo one; sleep 1; echo two"]).await?;
let mut lines = process.stdout_lines().expect("taken once");
while let Some(line) = lines.next_line().await? {
    println!("live: {line}");
}
println!("{}", process.wait().await?);
"#
        )
    };
    (image_session) => {
        $crate::doc_examples::wrap!(
            r#"let mut session = base.session();
session.shell("echo 1 > /counter").wait().await?;
session.shell("echo 2 >> /counter").wait().await?;
let counter = session.image().read("/counter").await?;
assert_eq!(&counter[..], b"1\n2\n");
"#
        )
    };
    (image_grep) => {
        $crate::doc_examples::wrap!(
            r#"let found = base
    .grep("^root:")
    .pattern("^daemon:") // OR-ed with the first
    .path("/etc")
    .glob("passwd")
    .after(1)
    .send()
    .await?;
for row in found.matches.iter().filter(|m| m.is_match()) {
    print!("{}:{}: {}", row.path, row.line_number, row.line_text);
}
if found.truncated {
    println!("(a limit stopped the search early)");
}
// Bad input never reaches the server.
let err = base.grep("").send().await.unwrap_err();
assert_eq!(err.argument(), Some("pattern"));
"#
        )
    };
    (image_ls) => {
        $crate::doc_examples::wrap!(
            r#"for entry in base.ls("/etc").await? {
    if entry.is_dir {
        println!("{}/", entry.path());
    } else {
        println!("{} ({} bytes)", entry.path(), entry.size);
    }
}
"#
        )
    };
    (dir_entry) => {
        $crate::doc_examples::wrap!(
            r#"let entries = base.ls("/etc").await?;
if let Some(hostname) = entries.iter().find(|e| e.name() == "hostname") {
    let text = hostname.read().await?;
    let saved = hostname.download_here().await?; // ./hostname
    println!("{} bytes, saved to {}", text.len(), saved.display());
}
"#
        )
    };
    (image_read) => {
        $crate::doc_examples::wrap!(
            r#"let passwd = base.read("/etc/passwd").await?;
println!("{}", String::from_utf8_lossy(&passwd));
"#
        )
    };
    (image_download) => {
        $crate::doc_examples::wrap!(
            r#"let local = base.download("/etc/passwd", "passwd.copy").await?;
let here = base.download_here("/etc/hostname").await?; // ./hostname
println!("{} and {}", local.display(), here.display());
"#
        )
    };
    (image_archive) => {
        $crate::doc_examples::wrap!(
            r#"let archive = base.archive("/etc").await?;
let saved = archive.save("etc.tar").await?;
println!("{}", saved.display());
"#
        )
    };
    (image_apply_files) => {
        $crate::doc_examples::wrap!(
            r#"use contree::UploadFileSpec;
let app = base
    .apply_files([
        UploadFileSpec::new("/app/run.sh", b"echo ok\n".to_vec()).mode(0o755),
        UploadFileSpec::from(("/app/config.toml", b"debug = true\n".to_vec())),
        UploadFileSpec::from(std::path::Path::new("notes.txt")), // lands at /notes.txt
    ])
    .await?;
assert_eq!(app.run("/app/run.sh").wait().await?.stdout_text()?, "ok\n");
"#
        )
    };
    (image_tag_as) => {
        $crate::doc_examples::wrap!(
            r#"let built = base.shell("echo v1 > /VERSION").disposable(false).wait().await?;
let tagged = built.tag_as("app:v1").await?;
assert_eq!(tagged.tag(), Some("app:v1"));
"#
        )
    };
    (prepared_run) => {
        $crate::doc_examples::wrap!(
            r#"let prepared = base.shell("echo $RANDOM").env("LANG", "C");
// Each execution is a new operation from the same image: a branch. Clone to execute again.
let a = prepared.clone().wait().await?;
let b = prepared.wait().await?;
println!("{} / {}", a.stdout_text()?, b.stdout_text()?);
"#
        )
    };
    (prepared_wait) => {
        $crate::doc_examples::wrap!(
            r#"let result = base.run("uname").arg("-a").timeout(std::time::Duration::from_secs(30)).wait().await?;
print!("{}", result.stdout_text()?);
"#
        )
    };
    (prepared_spawn) => {
        $crate::doc_examples::wrap!(
            r#"use contree::Stdin;
let mut process = base.run("cat").stdin(Stdin::piped()).spawn().await?;
let (stdout, _stderr) = process.communicate("hello\n").await?;
assert_eq!(&stdout[..], b"hello\n");
"#
        )
    };
    (run_events) => {
        $crate::doc_examples::wrap!(
            r#"use contree::RunEvent;
let mut events = base.shell("echo out; echo err >&2").events();
while let Some(event) = events.next_event().await? {
    match event {
        RunEvent::Stdout(b) => print!("out: {}", String::from_utf8_lossy(&b)),
        RunEvent::Stderr(b) => eprint!("err: {}", String::from_utf8_lossy(&b)),
        RunEvent::Exit(status) => println!("{status}"),
        RunEvent::Finished(image) => println!("result {:?}", image.uuid()),
        _ => {}
    }
}
"#
        )
    };
    (stdin) => {
        $crate::doc_examples::wrap!(
            r#"use contree::Stdin;
let counted = base.run("wc").arg("-l").stdin("a\nb\n");
assert_eq!(counted.stdin_config().as_bytes(), Some(&b"a\nb\n"[..]));
let from_file = base.run("wc").arg("-c").stdin(Stdin::path("input.bin"));
let piped = base.run("cat").stdin(Stdin::piped()); // for write_stdin after spawn()
assert!(piped.stdin_config().is_piped());
println!("{}", from_file.wait().await?.stdout_text()?);
"#
        )
    };
    (output_target) => {
        $crate::doc_examples::wrap!(
            r#"use contree::OutputTarget;
let done = base
    .shell("echo report; echo noise >&2")
    .stdout(OutputTarget::path("report.txt"))
    .stderr(OutputTarget::discard())
    .wait()
    .await?;
assert_eq!(done.stdout_text()?, "report\n"); // also kept on the result
"#
        )
    };
    (session) => {
        $crate::doc_examples::wrap!(
            r#"let mut session = base.session();
session.shell("mkdir -p /work && echo a > /work/a").wait().await?;
let listing = session.run("ls").arg("/work").wait().await?;
assert_eq!(listing.stdout_text()?, "a\n");
// A disposable run leaves the session where it is.
session.shell("rm -rf /work").disposable(true).wait().await?;
println!("{} images in the history", session.history().len());
"#
        )
    };
    (session_popen) => {
        $crate::doc_examples::wrap!(
            r#"let mut session = base.session();
let mut build = session.popen(["sh", "-c", "echo building; touch /built"]).await?;
build.wait().await?; // the session moves to the result
drop(build);
assert!(session.image().exists("/built").await?);
"#
        )
    };
    (session_tag_as) => {
        $crate::doc_examples::wrap!(
            r#"let mut session = base.session();
session.shell("echo v2 > /VERSION").wait().await?;
session.tag_as("app:v2").await?;
assert_eq!(session.image().tag(), Some("app:v2"));
"#
        )
    };
    (process) => {
        $crate::doc_examples::wrap!(
            r#"let mut process = base.popen_shell("for i in 1 2 3; do echo $i; sleep 1; done").await?;
let mut stdout = process.stdout().expect("taken once");
while let Some(chunk) = stdout.chunk().await {
    print!("{}", String::from_utf8_lossy(&chunk));
}
let status = process.wait().await?;
assert!(status.success());
"#
        )
    };
    (process_stdin) => {
        $crate::doc_examples::wrap!(
            r#"use contree::Stdin;
let mut process = base.run("sh").arg("-c").arg("while read x; do echo $((x * x)); done").stdin(Stdin::piped()).spawn().await?;
for x in 1..=3 {
    process.write_stdin(format!("{x}\n")).await?;
}
process.close_stdin().await?;
assert_eq!(process.try_wait()?, None); // maybe still running
let result = process.wait_with_output().await?;
assert_eq!(result.stdout_text()?, "1\n4\n9\n");
"#
        )
    };
    (process_exec) => {
        $crate::doc_examples::wrap!(
            r#"use contree::Stdin;
// A long-running main command, and processes started next to it while it runs.
let mut server = base.popen(["sleep", "600"]).await?;
let mut probe = server.exec(["hostname"]).spawn().await?;
println!("{}", probe.wait().await?); // exit status: 0
let mut repl = server.exec(["sh"]).stdin(Stdin::piped()).spawn().await?;
repl.write_stdin("echo $((6 * 7))\n").await?;
repl.close_stdin().await?;
assert_eq!(repl.wait_with_output().await?.stdout_text(), "42\n");
server.kill().await?;
"#
        )
    };
    (process_kill) => {
        $crate::doc_examples::wrap!(
            r#"let mut sleeper = base.popen(["sleep", "600"]).await?;
sleeper.kill().await?;
println!("{}", sleeper.wait().await?); // killed by a signal
"#
        )
    };
    (files) => {
        $crate::doc_examples::wrap!(
            r#"let stored = client.files().upload(b"hello".to_vec()).await?; // skipped if already there
assert!(client.files().exists(&stored.sha256).await?);
let done = base.run("cat").arg("/hello.txt").file("/hello.txt", stored).wait().await?;
assert_eq!(done.stdout_text()?, "hello");
"#
        )
    };
    (operations) => {
        $crate::doc_examples::wrap!(
            r#"use contree::models::OperationStatus;
let running = client.operations().list().status(OperationStatus::Executing).limit(20).send().await?;
for op in &running {
    println!("cancelling {} ({:?})", op.uuid, op.kind);
    client.operations().cancel(op.uuid).await?;
}
"#
        )
    };
    (operations_get) => {
        $crate::doc_examples::wrap!(
            r#"let op = client.operations().get("87654321-9abc-baba-deda-0123456789ab").await?;
println!("{} {}", op.uuid, op.status);
"#
        )
    };
}
pub(crate) use example;
