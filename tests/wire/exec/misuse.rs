//! State machine misuse and bad input: typed errors, and nothing sent.

use contree::ImageState;

use super::fake::{self, OP, Reply};
use crate::flavor::{Stdin, UploadFileSpec};

#[crate::maybe]
pub async fn result_accessors_on_an_image_that_has_not_run_are_image_state_errors() {
    let (mock, client) = fake::setup();
    let image = fake::image(&client);
    assert_eq!(image.state(), ImageState::Pulled);
    let errors = [
        image.stdout().map(|_| ()).unwrap_err(),
        image.stderr().map(|_| ()).unwrap_err(),
        image.stdout_text().map(|_| ()).unwrap_err(),
        image.exit_code().map(|_| ()).unwrap_err(),
        image.exit_status().map(|_| ()).unwrap_err(),
        image.elapsed().map(|_| ()).unwrap_err(),
        image.truncated().map(|_| ()).unwrap_err(),
        image.resources().map(|_| ()).unwrap_err(),
        image.output().map(|_| ()).unwrap_err(),
        image.clone().check().map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        assert!(err.is_image_state(), "{err:?}");
        let (state, allowed) = err.image_state_info().expect("state info");
        assert_eq!(state, ImageState::Pulled);
        assert_eq!(allowed, [ImageState::Succeeded]);
    }
    // A session's starting image has no result either.
    assert!(image.session().image().exit_code().unwrap_err().is_image_state());
    assert!(mock.requests().is_empty());
}

#[crate::maybe]
pub async fn running_a_disposable_result_is_rejected() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok("x\n"));
    let result = fake::image(&client).run("true").wait().await.expect("run");
    assert_eq!((result.uuid(), result.tag()), (None, None), "a disposable run leaves no image");
    let sent = mock.requests().len();

    let err = result.run("ls").wait().await.unwrap_err();
    assert!(err.is_disposable_image_run(), "{err:?}");
    let errors = [
        result.shell("ls").wait().await.map(|_| ()).unwrap_err(),
        result.popen(["ls"]).await.map(|_| ()).unwrap_err(),
        result.session().run("ls").wait().await.map(|_| ()).unwrap_err(),
        result.ls("/").await.map(|_| ()).unwrap_err(),
        result.read("/etc/hosts").await.map(|_| ()).unwrap_err(),
        result.download("/etc/hosts", "unused").await.map(|_| ()).unwrap_err(),
        result.tag_as("kept").await.map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        assert!(err.is_disposable_image_run(), "{err:?}");
    }
    assert_eq!(mock.requests().len(), sent, "nothing is sent for a disposable result");
    // Its output stays readable.
    assert_eq!(result.stdout().unwrap(), b"x\n");
}

#[crate::maybe]
pub async fn bad_arguments_are_rejected_before_any_request() {
    let (mock, client) = fake::setup();
    fake::mount_run(&mock, OP, &Reply::ok(""));
    fake::FileStore::mount(&mock, &[]);
    let image = fake::image(&client);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("a.txt");
    std::fs::write(&local, "a").unwrap();
    let missing = dir.path().join("missing.txt");

    let cases = [
        ("empty program", image.run("").wait().await, "command"),
        ("blank program", image.run("   ").wait().await, "command"),
        ("empty shell", image.shell("").wait().await, "shell"),
        ("empty argv", image.run_argv(Vec::<String>::new()).wait().await, "argv"),
        (
            "duplicate destination",
            image.run("true").file("/app/a", local.clone()).file("/app/a", b"other".to_vec()).wait().await,
            "files",
        ),
        ("relative destination", image.run("true").file("app/a", local.clone()).wait().await, "files"),
        (
            "mode too large",
            image.run("true").file_spec(UploadFileSpec::new("/app/a", local.clone()).mode(0o17777)).wait().await,
            "files",
        ),
        ("missing local file", image.run("true").file("/app/a", missing.clone()).wait().await, "files"),
        ("directory as file", image.run("true").file("/app/a", dir.path().to_path_buf()).wait().await, "files"),
        ("env key with =", image.run("env").env("A=B", "1").wait().await, "env"),
        ("env key with NUL", image.run("env").env("A\0B", "1").wait().await, "env"),
        ("empty env key", image.run("env").env("", "1").wait().await, "env"),
        ("env value with NUL", image.run("env").env("A", "x\0y").wait().await, "env"),
        ("relative cwd", image.run("pwd").cwd("work").wait().await, "cwd"),
        ("missing stdin file", image.run("cat").stdin(Stdin::path(&missing)).wait().await, "stdin"),
        ("zero timeout", image.run("true").timeout(std::time::Duration::ZERO).wait().await, "timeout"),
        ("bad tag", image.run("true").disposable(false).tag("bad tag!").wait().await, "tag"),
        ("shell with arguments", image.shell("echo").arg("x").wait().await, "args"),
        ("shell with argument list", image.shell("echo").args(["x", "y"]).wait().await, "args"),
        ("preserve_env on a disposable run", image.run("true").preserve_env(true).wait().await, "preserve_env"),
        ("preserve_cwd on a disposable run", image.run("true").preserve_cwd(true).wait().await, "preserve_cwd"),
    ];
    for (what, outcome, argument) in cases {
        let err = outcome.expect_err(what);
        assert!(err.is_invalid_argument(), "{what}: {err:?}");
        assert_eq!(err.argument(), Some(argument), "{what}: {err}");
    }
    // popen checks the same way.
    let err = image.popen(Vec::<String>::new()).await.unwrap_err();
    assert_eq!(err.argument(), Some("argv"));
    let err = image.run("x").env("K=V", "1").spawn().await.unwrap_err();
    assert_eq!(err.argument(), Some("env"));
    // The values of rejected env entries never show in the error (they may be secrets).
    let err = image.run("env").env("TOKEN", "hunter2\0").wait().await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    assert!(
        mock.requests().is_empty(),
        "bad input sends nothing: {:?}",
        mock.requests().iter().map(|r| r.url.path().to_string()).collect::<Vec<_>>()
    );
}
