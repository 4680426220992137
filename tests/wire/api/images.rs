//! Images: listing (filters, pagination, "first N", the lazy Stream/Iterator), `use_image`,
//! lookups by uuid and by tag (the 302 is read, never followed), tag and untag.

use std::time::{Duration, UNIX_EPOCH};

use contree::{ImageKind, RetryPolicy, TimeFilter};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::support::Mock;

/// `n` images whose tags are `img-<first>`, `img-<first+1>`, …
fn page(first: usize, n: usize) -> Value {
    let images: Vec<Value> = (first..first + n)
        .map(|i| image_json(&format!("00000000-0000-4000-8000-{i:012}"), Some(&format!("img-{i}"))))
        .collect();
    json!({ "images": images })
}

/// Answers `GET /v1/images?offset=<offset>` with `body`.
fn mount_page(mock: &Mock, offset: usize, body: Value) {
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/images"))
            .and(query_param("offset", offset.to_string()))
            .respond_with(json_response(200, body)),
    );
}

fn list_queries(mock: &Mock) -> Vec<String> {
    mock.requests_to("GET", "/v1/images").iter().map(|r| r.url.query().unwrap_or_default().to_string()).collect()
}

fn tags(images: &[crate::flavor::Image]) -> Vec<String> {
    images.iter().map(|i| i.tag().unwrap_or("<none>").to_string()).collect()
}

fn expected_tags(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("img-{i}")).collect()
}

/// A plain listing asks for one page of the configured size from offset 0, and parses
/// every field of the images.
#[crate::maybe]
pub async fn list_without_filters_asks_for_the_first_page() {
    let mock = Mock::start();
    mount_page(&mock, 0, json!({"images": [image_json(IMG, Some("busybox:latest")), image_json(IMG2, None)]}));
    let client = client(&mock);
    let images = client.images().list().send().await.unwrap();
    assert_eq!(list_queries(&mock), ["limit=100&offset=0"]);
    assert_bearer(&mock.requests()[0]);
    assert_eq!(images.len(), 2);
    assert_eq!(images[0].uuid().unwrap().to_string(), IMG);
    assert_eq!(images[0].tag(), Some("busybox:latest"));
    assert_eq!(images[0].created_at(), Some("2025-01-01T12:00:00+00:00"));
    assert_eq!(images[1].uuid().unwrap().to_string(), IMG2);
    assert_eq!(images[1].tag(), None);
}

/// Every filter at once, with the exact query string (order and encoding included).
#[crate::maybe]
pub async fn list_sends_every_filter() {
    let mock = Mock::start();
    mount_page(&mock, 0, json!({"images": []}));
    let client = client(&mock);
    let uuid: uuid::Uuid = IMG.parse().unwrap();
    let images = client
        .images()
        .list()
        .tagged(true)
        .tag_prefix("ghcr.io/org")
        .kind(ImageKind::Imported)
        .uuid(uuid)
        .since(Duration::from_secs(3600))
        .until(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .send()
        .await
        .unwrap();
    assert!(images.is_empty());
    assert_eq!(
        list_queries(&mock),
        [format!("tagged=1&tag=ghcr.io%2Forg&kind=1&uuid={IMG}&since=3600s&until=1700000000&limit=100&offset=0")]
    );
}

/// Each filter alone: a tag prefix implies `tagged`; `tagged(false)` sends nothing; kinds;
/// server-syntax time filters (`TimeFilter`) are sent as given, URL-encoded.
#[crate::maybe]
pub async fn list_single_filters() {
    let mock = Mock::start();
    mount_page(&mock, 0, json!({"images": []}));
    let client = client(&mock);
    let images = client.images();
    images.list().tag_prefix("ubuntu").send().await.unwrap();
    images.list().tagged(false).send().await.unwrap();
    images.list().tagged(true).send().await.unwrap();
    images.list().kind(ImageKind::Instances).send().await.unwrap();
    images.list().since(TimeFilter::parse("1w").unwrap()).send().await.unwrap();
    images.list().until(TimeFilter::parse("2025-01-01T12:00:00+00:00").unwrap()).send().await.unwrap();
    images.list().since(UNIX_EPOCH + Duration::from_secs(1_735_732_800)).send().await.unwrap();
    images.list().until(Duration::from_secs(90)).page_size(7).send().await.unwrap();
    assert_eq!(
        list_queries(&mock),
        [
            "tagged=1&tag=ubuntu&limit=100&offset=0",
            "limit=100&offset=0",
            "tagged=1&limit=100&offset=0",
            "kind=0&limit=100&offset=0",
            "since=1w&limit=100&offset=0",
            "until=2025-01-01T12%3A00%3A00%2B00%3A00&limit=100&offset=0",
            "since=1735732800&limit=100&offset=0",
            "until=90s&limit=7&offset=0",
        ]
    );
}

/// Offset/limit pages until a page shorter than asked: 2 + 2 + 1.
#[crate::maybe]
pub async fn list_paginates_until_a_short_page() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 2));
    mount_page(&mock, 2, page(2, 2));
    mount_page(&mock, 4, page(4, 1));
    mount_page(&mock, 5, page(5, 2)); // must never be asked for
    let client = client(&mock);
    let images = client.images().list().tagged(true).page_size(2).send().await.unwrap();
    assert_eq!(tags(&images), expected_tags(0..5));
    assert_eq!(
        list_queries(&mock),
        ["tagged=1&limit=2&offset=0", "tagged=1&limit=2&offset=2", "tagged=1&limit=2&offset=4"]
    );

    // The lazy face walks the same pages.
    let lazy = crate::flavor::collect_images(client.images().list().tagged(true).page_size(2)).await.unwrap();
    assert_eq!(lazy, images);
    assert_eq!(list_queries(&mock).len(), 6);
}

/// A full page followed by an empty one ends the listing.
#[crate::maybe]
pub async fn list_stops_on_an_empty_page() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 2));
    mount_page(&mock, 2, json!({"images": []}));
    let client = client(&mock);
    let images = client.images().list().page_size(2).send().await.unwrap();
    assert_eq!(tags(&images), expected_tags(0..2));
    assert_eq!(list_queries(&mock), ["limit=2&offset=0", "limit=2&offset=2"]);
}

/// `limit(3)` with pages of 2: the second request asks for just the 1 image still wanted,
/// and nothing more is fetched.
#[crate::maybe]
pub async fn list_limit_takes_the_first_n_across_pages() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 2));
    mount_page(&mock, 2, page(2, 1));
    mount_page(&mock, 3, page(3, 2)); // must never be asked for
    let client = client(&mock);
    let images = client.images().list().page_size(2).limit(3).send().await.unwrap();
    assert_eq!(tags(&images), expected_tags(0..3));
    assert_eq!(list_queries(&mock), ["limit=2&offset=0", "limit=1&offset=2"]);

    let lazy = crate::flavor::collect_images(client.images().list().page_size(2).limit(3)).await.unwrap();
    assert_eq!(tags(&lazy), expected_tags(0..3));
    assert_eq!(list_queries(&mock)[2..], ["limit=2&offset=0", "limit=1&offset=2"]);
}

/// A server that ignores `limit` and answers more is cut to the first N.
#[crate::maybe]
pub async fn list_limit_truncates_an_oversized_page() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 5));
    let client = client(&mock);
    let images = client.images().list().limit(3).send().await.unwrap();
    assert_eq!(tags(&images), expected_tags(0..3));
    assert_eq!(list_queries(&mock), ["limit=3&offset=0"]);
}

/// "First 0" is an empty answer without a request.
#[crate::maybe]
pub async fn list_limit_zero_sends_nothing() {
    let mock = Mock::start();
    let client = client(&mock);
    let eager = client.images().list().limit(0).send().await.unwrap();
    let lazy = crate::flavor::collect_images(client.images().list().limit(0)).await.unwrap();
    assert!(eager.is_empty() && lazy.is_empty());
    assert_no_requests(&mock, "limit(0)");
}

/// The Stream/Iterator fetches a page only when its images are wanted.
#[crate::maybe]
pub async fn list_is_lazy() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 2));
    mount_page(&mock, 2, page(2, 2));
    mount_page(&mock, 4, page(4, 1));
    let client = client(&mock);

    let first: Vec<_> = crate::flavor::take_images(client.images().list().page_size(2), 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].as_ref().unwrap().tag(), Some("img-0"));
    assert_eq!(list_queries(&mock), ["limit=2&offset=0"]);

    let three: Vec<_> = crate::flavor::take_images(client.images().list().page_size(2), 3).await;
    let three: Vec<_> = three.into_iter().map(Result::unwrap).collect();
    assert_eq!(tags(&three), expected_tags(0..3));
    assert_eq!(list_queries(&mock)[1..], ["limit=2&offset=0", "limit=2&offset=2"]);
}

/// A failing page yields the images before it, then the error, then ends; `send()` fails.
#[crate::maybe]
pub async fn list_error_ends_the_listing() {
    let mock = Mock::start();
    mount_page(&mock, 0, page(0, 2));
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/images"))
            .and(query_param("offset", "2"))
            .respond_with(error_response(500, "database on fire")),
    );
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());

    let items = crate::flavor::take_images(client.images().list().page_size(2), 10).await;
    assert_eq!(items.len(), 3, "two images, the error, then the end");
    assert_eq!(items[1].as_ref().unwrap().tag(), Some("img-1"));
    let err = items[2].as_ref().unwrap_err();
    assert!(err.is_server(), "{err:?}");
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.message(), "database on fire");

    let err = client.images().list().page_size(2).send().await.unwrap_err();
    assert!(err.is_server(), "{err:?}");
    assert_eq!(list_queries(&mock), ["limit=2&offset=0", "limit=2&offset=2", "limit=2&offset=0", "limit=2&offset=2"]);
}

/// `use_image` sends nothing and normalizes OCI references to the tag the server resolves.
#[crate::maybe]
pub async fn use_image_sends_nothing_and_normalizes() {
    let mock = Mock::start();
    let client = client(&mock);
    let images = client.images();
    let cases = [
        ("ubuntu:latest", "ubuntu:latest"),
        ("docker://docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("busybox", "busybox"),
        ("docker://ghcr.io/linuxserver/code-server:latest", "ghcr.io/linuxserver/code-server:latest"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("myorg/app:v1", "myorg/app:v1"),
    ];
    for (reference, tag) in cases {
        let image = images.use_image(reference).unwrap();
        assert_eq!(image.tag(), Some(tag), "{reference}");
        assert_eq!(image.uuid(), None, "{reference}");
    }
    let by_str = images.use_image(IMG).unwrap();
    assert_eq!(by_str.uuid().unwrap().to_string(), IMG);
    assert_eq!(by_str.tag(), None);
    let uuid: uuid::Uuid = IMG2.parse().unwrap();
    assert_eq!(images.use_image(uuid).unwrap().uuid(), Some(uuid));
    assert_no_requests(&mock, "use_image");
}

/// `use_image_strict(uuid)` is `GET /v1/inspect/{uuid}/`.
#[crate::maybe]
pub async fn use_image_strict_by_uuid() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, Some("busybox:latest")))),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG2}/")))
            .respond_with(error_response(404, "image not found")),
    );
    let client = client(&mock);
    let image = client.images().use_image_strict(IMG).await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert_eq!(image.tag(), Some("busybox:latest"));
    assert_eq!(image.created_at(), Some("2025-01-01T12:00:00+00:00"));

    let err = client.images().use_image_strict(IMG2).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].url.path(), format!("/v1/inspect/{IMG}/"));
    assert_eq!(reqs[0].url.query(), None);
    assert_bearer(&reqs[0]);
}

/// `get_by_uuid` takes a `Uuid` or a string (any UUID spelling) and always asks the
/// canonical path.
#[crate::maybe]
pub async fn get_by_uuid_accepts_strings() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, None))),
    );
    let client = client(&mock);
    let images = client.images();
    let uuid: uuid::Uuid = IMG.parse().unwrap();
    images.get_by_uuid(uuid).await.unwrap();
    images.get_by_uuid(IMG).await.unwrap();
    images.get_by_uuid(IMG.to_uppercase()).await.unwrap();
    images.get_by_uuid(IMG.replace('-', "")).await.unwrap();
    assert_eq!(mock.requests_to("GET", &format!("/v1/inspect/{IMG}/")).len(), 4);
    assert_eq!(mock.requests().len(), 4);
}

/// `GET /v1/inspect/?tag=` answers 302 with a RELATIVE Location `<uuid>/`: it is read (not
/// followed) and the image is fetched from `/v1/inspect/<uuid>/`.
#[crate::maybe]
pub async fn get_by_tag_reads_a_relative_location() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/inspect/"))
            .and(query_param("tag", "ubuntu:latest"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{IMG}/"))),
    );
    // Tagless record: the looked-up tag is kept on the returned image.
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, None))),
    );
    let client = client(&mock);
    let image = client.images().get_by_tag("ubuntu:latest").await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert_eq!(image.tag(), Some("ubuntu:latest"));

    let strict = client.images().use_image_strict("docker://docker.io/library/ubuntu:latest").await.unwrap();
    assert_eq!(strict.uuid(), image.uuid());

    let seen: Vec<(String, Option<String>)> =
        mock.requests().iter().map(|r| (r.url.path().to_string(), r.url.query().map(str::to_string))).collect();
    let lookup = ("/v1/inspect/".to_string(), Some("tag=ubuntu%3Alatest".to_string()));
    let follow = (format!("/v1/inspect/{IMG}/"), None);
    assert_eq!(seen, [lookup.clone(), follow.clone(), lookup, follow]);
    mock.requests().iter().for_each(assert_bearer);
}

/// Absolute Locations (full URL, absolute path) work the same way.
#[crate::maybe]
pub async fn get_by_tag_reads_absolute_locations() {
    for kind in ["url", "path"] {
        let mock = Mock::start();
        let location = match kind {
            "url" => format!("{}/v1/inspect/{IMG2}/", mock.uri()),
            _ => format!("/v1/inspect/{IMG2}/"),
        };
        mock.mount(
            Rule::given(method("GET"))
                .and(path("/v1/inspect/"))
                .and(query_param("tag", "alpine:3"))
                .respond_with(ResponseTemplate::new(302).insert_header("location", location.as_str())),
        );
        mock.mount(
            Rule::given(method("GET"))
                .and(path(format!("/v1/inspect/{IMG2}/")))
                .respond_with(json_response(200, image_json(IMG2, Some("alpine:3")))),
        );
        let client = client(&mock);
        let image = client.images().get_by_tag("alpine:3").await.unwrap();
        assert_eq!(image.uuid().unwrap().to_string(), IMG2, "{location}");
        assert_eq!(image.tag(), Some("alpine:3"));
        let paths: Vec<String> = mock.requests().iter().map(|r| r.url.path().to_string()).collect();
        assert_eq!(paths, ["/v1/inspect/".to_string(), format!("/v1/inspect/{IMG2}/")], "{location}");
    }
}

/// An unknown tag is NotFound, with the lookup request in the error.
#[crate::maybe]
pub async fn get_by_tag_not_found() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path("/v1/inspect/")).respond_with(error_response(404, "tag not found")));
    let client = client(&mock);
    let err = client.images().get_by_tag("nope:1").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.message(), "tag not found");
    assert_eq!(err.method(), Some("GET"));
    assert_eq!(err.url(), Some(format!("{}/v1/inspect/?tag=nope%3A1", mock.uri()).as_str()));
    assert_eq!(mock.requests().len(), 1);
}

/// A redirect without `Location` is a Decode error, not a panic or a follow-up request.
#[crate::maybe]
pub async fn get_by_tag_redirect_without_location_is_a_decode_error() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path("/v1/inspect/")).respond_with(ResponseTemplate::new(302)));
    let client = client(&mock);
    let err = client.images().get_by_tag("busybox").await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert_eq!(mock.requests().len(), 1);
}

/// `tag` is `PATCH /v1/images/{uuid}/tag` with `{"tag": …}`.
#[crate::maybe]
pub async fn tag_sends_patch_with_the_tag() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("PATCH"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(json_response(200, image_json(IMG, Some("mine:v1")))),
    );
    let client = client(&mock);
    let image = client.images().tag(IMG, "mine:v1").await.unwrap();
    assert_eq!(image.uuid().unwrap().to_string(), IMG);
    assert_eq!(image.tag(), Some("mine:v1"));

    let reqs = mock.requests_to("PATCH", &format!("/v1/images/{IMG}/tag"));
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body_json::<Value>().unwrap(), json!({"tag": "mine:v1"}));
    assert_eq!(header(&reqs[0], "content-type").as_deref(), Some("application/json"));
    assert_eq!(reqs[0].url.query(), None);
    assert_bearer(&reqs[0]);
}

/// `untag(uuid, Some(tag))` is `DELETE …/tag?tag=…`; a 200 with an image (the public image
/// the tag reverts to) is returned.
#[crate::maybe]
pub async fn untag_one_tag_with_an_image_body() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(json_response(200, image_json(IMG2, Some("ubuntu:latest")))),
    );
    let client = client(&mock);
    let reverted = client.images().untag(IMG, Some("ubuntu:latest")).await.unwrap().expect("an image");
    assert_eq!(reverted.uuid().unwrap().to_string(), IMG2);
    assert_eq!(reverted.tag(), Some("ubuntu:latest"));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method.as_str(), "DELETE");
    assert_eq!(reqs[0].url.query(), Some("tag=ubuntu%3Alatest"));
    assert!(reqs[0].body.is_empty());
}

/// `untag(uuid, None)` removes every tag (no query); a 204 without a body gives `None`.
#[crate::maybe]
pub async fn untag_every_tag_with_no_content() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(ResponseTemplate::new(204)),
    );
    let client = client(&mock);
    let untagged = client.images().untag(IMG, None).await.unwrap();
    assert!(untagged.is_none());
    // A 200 with an empty body is "no image" too.
    let mock2 = Mock::start();
    mock2.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(ResponseTemplate::new(200)),
    );
    let untagged = super::client(&mock2).images().untag(IMG, Some("x")).await.unwrap();
    assert!(untagged.is_none());

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method.as_str(), "DELETE");
    assert_eq!(reqs[0].url.path(), format!("/v1/images/{IMG}/tag"));
    assert_eq!(reqs[0].url.query(), None);
    assert_bearer(&reqs[0]);
}
