//! Registry imports against a real registry (Debian's `docker-registry` on 127.0.0.1) and
//! the embedded contree-local server, written once and run in both SDK flavors.
//!
//! Each scenario pushes its own repositories, so they run in parallel.

use crate::flavor::Client;
use crate::support::registry::{
    self as reg, Entry, Layer, auth_registry, busybox_layer, config, gzip_layer, host_arch, open_registry, push_image,
    push_index, tar, zstd_layer,
};

/// The list of scenarios, kept in one place for both flavors.
#[macro_export]
macro_rules! registry_scenarios {
    ($m:ident) => {
        $m!(
            busybox_from_a_registry_runs_on_its_own_root,
            layers_whiteouts_opaque_dirs_env_and_zstd,
            basic_auth_from_the_request_credentials,
            digest_references_and_the_same_digest_same_uuid,
            a_new_import_replaces_the_tag,
            image_indexes_give_the_host_platform,
            failures_end_the_import_with_a_clear_error,
            import_progress_reports_phases_and_layer_bytes
        );
    };
}

fn client() -> Client {
    crate::flavor::backend().0
}

fn suffix() -> &'static str {
    crate::flavor::NAME
}

#[crate::maybe]
pub async fn busybox_from_a_registry_runs_on_its_own_root() {
    let r = open_registry();
    let repo = format!("test/busybox-{}", suffix());
    push_image(r, &repo, "1", &[busybox_layer()], &config(host_arch(), &["PATH=/bin"], None));
    let c = client();
    let reference = format!("{}/{repo}:1", r.addr);
    let image = c.images().oci(&reference).send().await.expect("import");
    let uuid = image.uuid().expect("an image uuid");
    assert_eq!(image.tag(), Some(reference.as_str()));

    let out = image.shell("echo hello from busybox; ls /; ls /usr 2>&1; true").wait().await.expect("run");
    let text = out.stdout_text().unwrap();
    assert!(text.starts_with("hello from busybox\n"), "{text}");
    assert!(text.contains("bin"), "{text}");
    // The image is its own root: nothing of the host's /usr below it.
    assert!(text.contains("No such file or directory"), "{text}");

    // Like Docker, the import provides localhost and the DNS of a run's network.
    let out = image.run("cat").arg("/etc/hosts").arg("/etc/resolv.conf").wait().await.expect("run");
    let text = out.stdout_text().unwrap();
    assert!(text.contains("localhost") && text.contains("nameserver 10.0.2.3"), "{text}");

    // `oci` of a tag already there uses it; an explicit import of the unchanged image gives the
    // same uuid.
    let again = c.images().oci(&reference).send().await.expect("use");
    assert_eq!(again.uuid(), Some(uuid));
    let reimported = c.images().import_from(&reference).send().await.expect("re-import");
    assert_eq!(reimported.uuid(), Some(uuid));

    // A run's result stacks on the imported image.
    let made = image.shell("echo state > /tmp/state").disposable(false).wait().await.expect("run");
    let next = made.shell("cat /tmp/state").wait().await.expect("run on the result");
    assert_eq!(next.stdout_text().unwrap(), "state\n");
}

#[crate::maybe]
pub async fn layers_whiteouts_opaque_dirs_env_and_zstd() {
    let r = open_registry();
    let repo = format!("test/layers-{}", suffix());
    let lower = gzip_layer(&tar(&[
        Entry::Dir("etc/"),
        Entry::File("etc/gone", b"deleted above\n", 0o644),
        Entry::File("etc/kept", b"kept\n", 0o644),
        Entry::Dir("data/old/"),
        Entry::File("data/old/a", b"a", 0o644),
        Entry::File("data/old/b", b"b", 0o644),
        Entry::File("data/other", b"other\n", 0o600),
        // A link out of the image, written through by the next layer.
        Entry::Symlink("escape", "/tmp"),
    ]));
    let upper = zstd_layer(&tar(&[
        Entry::File("etc/.wh.gone", b"", 0o644),
        Entry::Dir("data/old/"),
        Entry::File("data/old/.wh..wh..opq", b"", 0o644),
        Entry::File("data/old/new", b"new\n", 0o644),
        Entry::File("escape/pwned", b"stays in the image\n", 0o644),
    ]));
    let cfg = config(host_arch(), &["PATH=/bin", "GREETING=hello from the image config"], Some("/data"));
    push_image(r, &repo, "2", &[busybox_layer(), lower, upper], &cfg);
    let c = client();
    let image = c.images().oci(&format!("{}/{repo}:2", r.addr)).send().await.expect("import");

    let out = image
        .shell("ls /etc; echo --; ls /data/old; echo --; cat /data/other; echo \"$GREETING\"; pwd")
        .wait()
        .await
        .expect("run");
    assert_eq!(
        out.stdout_text().unwrap(),
        "hosts\nkept\nresolv.conf\n--\nnew\n--\nother\nhello from the image config\n/\n",
        "whiteouts hide, opaque dirs replace, ENV applies with shell, WORKDIR is not imported (the spec)"
    );
    // The later layer's `escape/` is a directory of the image (as with Docker's overlay2),
    // never the host's /tmp.
    let out = image.shell("cat /escape/pwned; ls /tmp").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), "stays in the image\n");
    assert!(!std::path::Path::new("/tmp/pwned").exists());

    // Inspecting reads the same merged view, without running anything.
    let read = image.read("/data/old/new").await.expect("read");
    assert_eq!(&read[..], b"new\n");
    let listed = image.read("/etc/gone").await;
    assert!(listed.unwrap_err().is_not_found(), "a whiteout hides the file from inspect too");
    let entries = image.ls("/data/old").await.expect("ls");
    let names: Vec<String> = entries.iter().map(|e| e.name().to_owned()).collect();
    assert_eq!(names, ["new"]);

    // Without a shell the image's ENV is not inherited (the spec).
    let out = image.run("env").wait().await.expect("run env");
    assert!(!out.stdout_text().unwrap().contains("GREETING"), "{}", out.stdout_text().unwrap());
}

#[crate::maybe]
pub async fn basic_auth_from_the_request_credentials() {
    let r = auth_registry();
    let repo = format!("test/private-{}", suffix());
    push_image(r, &repo, "1", &[busybox_layer()], &config(host_arch(), &[], None));
    let c = client();
    let reference = format!("{}/{repo}:1", r.addr);

    let err = c.images().import_from(&reference).send().await.expect_err("anonymous pull of a private image");
    assert!(err.is_operation_failed(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    let err = c
        .images()
        .import_from(&reference)
        .credentials(reg::USER, "wrong-password")
        .send()
        .await
        .expect_err("wrong password");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("wrong-password"), "{err}");

    let image = c
        .images()
        .import_from(&reference)
        .credentials(reg::USER, reg::PASSWORD)
        .send()
        .await
        .expect("with credentials");
    let out = image.run("echo").arg("private").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), "private\n");
}

#[crate::maybe]
pub async fn digest_references_and_the_same_digest_same_uuid() {
    let r = open_registry();
    let repo = format!("test/pinned-{}", suffix());
    let digest = push_image(r, &repo, "v1", &[busybox_layer()], &config(host_arch(), &["PIN=1"], None));
    let c = client();
    let by_tag = c.images().import_from(&format!("{}/{repo}:v1", r.addr)).send().await.expect("by tag");
    let by_digest = c
        .images()
        .import_from(&format!("{}/{repo}@{digest}", r.addr))
        .tag(format!("pinned-{}", suffix()))
        .send()
        .await
        .expect("by digest");
    assert_eq!(by_tag.uuid(), by_digest.uuid(), "the same digest is the same image");
    let out = by_digest.shell("echo $PIN").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), "1\n");
}

#[crate::maybe]
pub async fn a_new_import_replaces_the_tag() {
    let r = open_registry();
    let repo = format!("test/moving-{}", suffix());
    let tag = format!("moving-{}:latest", suffix());
    push_image(r, &repo, "latest", &[busybox_layer()], &config(host_arch(), &["VERSION=1"], None));
    let c = client();
    let reference = format!("{}/{repo}:latest", r.addr);
    let first = c.images().import_from(&reference).tag(&tag).send().await.expect("first");
    push_image(r, &repo, "latest", &[busybox_layer()], &config(host_arch(), &["VERSION=2"], None));
    let second = c.images().import_from(&reference).tag(&tag).send().await.expect("second");
    assert_ne!(first.uuid(), second.uuid());
    let tagged = c.images().get_by_tag(&tag).await.expect("lookup");
    assert_eq!(tagged.uuid(), second.uuid(), "the tag moved to the new import");
    let out = tagged.shell("echo $VERSION").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), "2\n");
    // The old image stays reachable by uuid.
    let old = c.images().get_by_uuid(first.uuid().unwrap()).await.expect("old image");
    let out = old.shell("echo $VERSION").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), "1\n");
}

#[crate::maybe]
pub async fn image_indexes_give_the_host_platform() {
    let r = open_registry();
    let repo = format!("test/multi-{}", suffix());
    let arch_layer = |arch: &str| gzip_layer(&tar(&[Entry::File("arch", format!("{arch}\n").as_bytes(), 0o644)]));
    let other = if host_arch() == "arm64" { "amd64" } else { "arm64" };
    push_index(
        r,
        &repo,
        "1",
        &[
            (other, vec![busybox_layer(), arch_layer(other)], config(other, &[], None)),
            (host_arch(), vec![busybox_layer(), arch_layer(host_arch())], config(host_arch(), &[], None)),
        ],
    );
    let c = client();
    let image = c.images().oci(&format!("{}/{repo}:1", r.addr)).send().await.expect("import an index");
    let out = image.run("cat").arg("/arch").wait().await.expect("run");
    assert_eq!(out.stdout_text().unwrap(), format!("{}\n", host_arch()));
}

#[crate::maybe]
async fn import_fails(c: &Client, reference: String) -> contree::Error {
    c.images().import_from(&reference).tag("failed:import").send().await.expect_err(&reference)
}

#[crate::maybe]
pub async fn failures_end_the_import_with_a_clear_error() {
    let r = open_registry();
    let s = suffix();
    let c = client();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = import_fails(&c, format!("127.0.0.1:{port}/test/nothing:1")).await;
    assert!(err.is_operation_failed() && err.to_string().contains("unreachable"), "{err}");

    let err = import_fails(&c, format!("{}/test/never-pushed-{s}:1", r.addr)).await;
    assert!(err.to_string().contains("manifest unknown"), "{err}");

    let odd = Layer { media_type: "application/vnd.oci.image.layer.v1.tar+bzip2".to_owned(), blob: b"BZh9".to_vec() };
    push_image(r, &format!("test/odd-{s}"), "1", &[odd], &config(host_arch(), &[], None));
    let err = import_fails(&c, format!("{}/test/odd-{s}:1", r.addr)).await;
    assert!(err.to_string().contains("unsupported media type"), "{err}");

    let corrupt = gzip_layer(&tar(&[Entry::File("f", format!("corrupt-{s}").as_bytes(), 0o644)]));
    let corrupt_digest = reg::digest(&corrupt.blob);
    push_image(r, &format!("test/corrupt-{s}"), "1", &[corrupt], &config(host_arch(), &[], None));
    reg::corrupt_blob(r, &corrupt_digest);
    let err = import_fails(&c, format!("{}/test/corrupt-{s}:1", r.addr)).await;
    assert!(err.to_string().contains("digest mismatch"), "{err}");

    let hostile = gzip_layer(&tar(&[Entry::RawFile(format!("../../escaped-{s}").as_bytes(), b"x")]));
    push_image(r, &format!("test/hostile-{s}"), "1", &[hostile], &config(host_arch(), &[], None));
    let err = import_fails(&c, format!("{}/test/hostile-{s}:1", r.addr)).await;
    assert!(err.to_string().contains("leaves the layer"), "{err}");

    // Nothing of the failed imports got the tag.
    let lookup = c.images().get_by_tag("failed:import").await;
    assert!(lookup.unwrap_err().is_not_found());
}

#[crate::maybe]
pub async fn import_progress_reports_phases_and_layer_bytes() {
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, Option<u64>, Option<String>, bool, bool)>>>;
    let r = open_registry();
    let repo = format!("test/progress-{}", suffix());
    // Two layers of fresh content, so both are downloaded (a layer already present is
    // reported without a size).
    let unique = uuid::Uuid::new_v4().to_string();
    let first = gzip_layer(&tar(&[Entry::File("a", format!("first {unique}").as_bytes(), 0o644)]));
    let second = zstd_layer(&tar(&[Entry::File("b", format!("second {unique}").repeat(1000).as_bytes(), 0o644)]));
    let total = (first.blob.len() + second.blob.len()) as u64;
    push_image(r, &repo, "1", &[first.clone(), second], &config(host_arch(), &["PATH=/bin"], None));
    let reference = format!("{}/{repo}:1", r.addr);

    let seen = Seen::default();
    let progress = contree::Progress::callback({
        let seen = seen.clone();
        // The phase is copied here only to check it; a real callback would just display it.
        move |u| seen.lock().unwrap().push((u.done, u.total, u.phase.map(str::to_string), u.finished, u.failed))
    });
    let watch = progress.watcher();
    let c = client();
    let image = c.images().import_from(&reference).progress(&progress).send().await.expect("import");
    assert!(image.uuid().is_some());

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut last = 0;
    for (done, _, _, _, failed) in seen.iter() {
        assert!(*done >= last, "progress went down: {seen:?}");
        assert!(!failed);
        last = *done;
    }
    let phases: Vec<&str> = seen.iter().filter_map(|s| s.2.as_deref()).collect();
    assert!(phases.iter().any(|p| p.starts_with("resolving ")), "{phases:?}");
    assert!(phases.iter().any(|p| p.starts_with("manifest ")), "{phases:?}");
    assert!(phases.iter().any(|p| p.contains("downloaded")), "{phases:?}");
    // The first layer's bytes are reported on their own, from its event, before the end.
    assert!(
        seen.iter().any(|s| s.0 == first.blob.len() as u64 && s.1 == Some(total) && !s.3),
        "the first layer's bytes are counted from its event: {seen:?}"
    );
    let end = seen.last().unwrap();
    assert_eq!((end.0, end.1, end.3, end.4), (total, Some(total), true, false), "{seen:?}");
    let uuid = image.uuid().unwrap().to_string();
    assert_eq!(end.2.as_deref(), Some(format!("image {uuid}").as_str()), "the last phase names the image");
    let now = watch.snapshot();
    assert_eq!(
        (now.kind, now.done, now.total, now.finished),
        (contree::ProgressKind::Import, total, Some(total), true)
    );

    // The same image again downloads nothing: the progress says so and still ends complete.
    let (progress, watch) = contree::Progress::watch();
    c.images().import_from(&reference).progress(&progress).send().await.expect("import again");
    let now = watch.snapshot();
    assert!(now.phase.as_deref().is_some_and(|p| p.starts_with("unchanged")), "{now:?}");
    assert_eq!((now.done, now.total, now.finished, now.failed), (total, Some(total), true, false));

    // "Use or import" of a tag that exists makes no import at all.
    let (progress, watch) = contree::Progress::watch();
    c.images().oci(&reference).progress(&progress).send().await.expect("use");
    let now = watch.snapshot();
    assert_eq!((now.phase.as_deref(), now.finished, now.failed), (Some("already imported"), true, false));

    // A failed import ends the progress as failed, with the server's last step as the phase.
    let (progress, watch) = contree::Progress::watch();
    let missing = format!("{}/{repo}:missing", r.addr);
    c.images().import_from(&missing).progress(&progress).send().await.unwrap_err();
    let now = watch.snapshot();
    assert!(now.finished && now.failed, "{now:?}");
}
