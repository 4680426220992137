//! Bad input is an InvalidArgument error naming the argument, raised before any request:
//! every scenario asserts the mock saw nothing.

use contree::{ContreeConfig, Error};
use wiremock::matchers::any;
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::flavor::Client;
use crate::support::{Mock, TOKEN};

/// A mock that would answer anything, so only the SDK's own checks can fail a call.
fn permissive_mock() -> Mock {
    let mock = Mock::start();
    mock.mount(Rule::given(any()).respond_with(ResponseTemplate::new(200)));
    mock
}

fn assert_invalid<T: std::fmt::Debug>(result: contree::Result<T>, argument: &str, what: &str) -> Error {
    let err = result.expect_err(what);
    assert!(err.is_invalid_argument(), "{what}: {err:?}");
    assert_eq!(err.argument(), Some(argument), "{what}: {err:?}");
    assert!(err.to_string().contains(argument), "{what}: {err}");
    assert_eq!(err.status(), None, "{what}");
    err
}

/// Empty and malformed tags, wherever a tag is taken.
#[crate::maybe]
pub async fn bad_tags_fail_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    let images = client.images();
    for bad in ["", "bad tag", "-leading", "a::b", "trailing/"] {
        assert_invalid(images.get_by_tag(bad).await, "tag", &format!("get_by_tag({bad:?})"));
        assert_invalid(images.tag(IMG, bad).await, "tag", &format!("tag({bad:?})"));
        assert_invalid(images.untag(IMG, Some(bad)).await, "tag", &format!("untag({bad:?})"));
        assert_invalid(images.oci("busybox").tag(bad).send().await, "tag", &format!("oci().tag({bad:?})"));
        assert_invalid(images.import_from("busybox").tag(bad).send().await, "tag", &format!("import().tag({bad:?})"));
    }
    assert_invalid(images.list().tag_prefix("").send().await, "tag_prefix", "tag_prefix(\"\")");
    assert_invalid(
        crate::flavor::collect_images(images.list().tag_prefix("  ")).await,
        "tag_prefix",
        "lazy tag_prefix",
    );
    assert_no_requests(&mock, "bad tags");
}

/// Malformed UUIDs.
#[crate::maybe]
pub async fn bad_uuids_fail_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    let images = client.images();
    for bad in ["", "not-a-uuid", "12345678-9abc-baba-deda-0123456789a", "12345678-9abc-baba-deda-0123456789abc"] {
        assert_invalid(images.get_by_uuid(bad).await, "uuid", &format!("get_by_uuid({bad:?})"));
        assert_invalid(images.tag(bad, "ok").await, "uuid", &format!("tag on {bad:?}"));
        assert_invalid(images.untag(bad, None).await, "uuid", &format!("untag on {bad:?}"));
    }
    assert_no_requests(&mock, "bad uuids");
}

/// A local file that does not exist (or is a directory) is rejected before hashing or any
/// lookup.
#[crate::maybe]
pub async fn missing_local_file_fails_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist.bin");
    let err = assert_invalid(client.files().upload(missing.clone()).await, "source", "missing file");
    assert!(err.to_string().contains("does-not-exist.bin"), "{err}");
    assert_invalid(client.files().upload(dir.path()).await, "source", "a directory");
    assert_no_requests(&mock, "missing local file");
}

/// SHA-256 ids must be 64 hex digits.
#[crate::maybe]
pub async fn bad_sha256_fails_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    let files = client.files();
    let too_long = format!("{}0", sha256_hex(b"x"));
    let not_hex = "g".repeat(64);
    for bad in ["", "abc", too_long.as_str(), not_hex.as_str(), "../../etc/passwd"] {
        assert_invalid(files.get(bad).await, "sha256", &format!("get({bad:?})"));
        assert_invalid(files.exists(bad).await, "sha256", &format!("exists({bad:?})"));
    }
    assert_no_requests(&mock, "bad sha256");
}

/// Page sizes outside 1..=1000.
#[crate::maybe]
pub async fn bad_page_sizes_fail_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    for bad in [0u32, 1001] {
        assert_invalid(client.images().list().page_size(bad).send().await, "page_size", &format!("page_size({bad})"));
        assert_invalid(
            crate::flavor::collect_images(client.images().list().page_size(bad)).await,
            "page_size",
            &format!("lazy page_size({bad})"),
        );
        let lazy = crate::flavor::take_images(client.images().list().page_size(bad), 5).await;
        assert_eq!(lazy.len(), 1, "the error ends the listing");
        assert_invalid(client.files().list(bad, 0).await, "limit", &format!("files.list({bad})"));
    }
    assert_no_requests(&mock, "bad page sizes");
}

/// Empty or malformed image references, and configurations that cannot work, fail without
/// sending anything.
#[crate::maybe]
pub async fn bad_references_and_config_fail_before_any_request() {
    let mock = permissive_mock();
    let client = client(&mock);
    let images = client.images();
    for bad in ["", "   ", ":latest", "ftp://x/y"] {
        assert_invalid(images.use_image(bad), "reference", &format!("use_image({bad:?})"));
        assert_invalid(images.use_image_strict(bad).await, "reference", &format!("use_image_strict({bad:?})"));
        assert_invalid(images.oci(bad).send().await, "reference", &format!("oci({bad:?})"));
        assert_invalid(images.import_from(bad).send().await, "reference", &format!("import_from({bad:?})"));
    }

    // No token: a Config error naming how to configure one, not a 401.
    let err = Client::builder().base_url(mock.uri()).build().expect_err("no token");
    assert!(err.is_config(), "{err:?}");
    assert!(err.to_string().contains("CONTREE_TOKEN"), "{err}");
    // A bad base URL names `base_url` and never echoes the token.
    for bad in ["", "ftp://host", "not a url", "http://user:pw@host/"] {
        let err = Client::builder().base_url(bad).token(TOKEN).build().expect_err(bad);
        assert_eq!(err.argument(), Some("base_url"), "{bad:?}: {err:?}");
        assert_no_secret(&format!("{err:?}"), TOKEN);
    }
    // A token that cannot be a header value is rejected without echoing it.
    let err = Client::new(ContreeConfig::default().with_base_url(mock.uri()).with_token("line1\nline2-s3cr3t"))
        .expect_err("newline in token");
    assert_no_secret(&format!("{err:?}"), "s3cr3t");
    assert_no_requests(&mock, "bad references and config");
}
