//! Error mapping: every status to its kind with `status()`, the server's message (JSON,
//! structured or raw bodies), method and URL in `Display`, `Retry-After`, decode failures,
//! connection refused and client timeouts.

use std::time::Duration;

use contree::{ErrorKind, RetryPolicy};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::flavor::Client;
use crate::support::{Mock, TOKEN};

/// 400/401/403/404/409/410/422/425/429/5xx each map to their kind, keeping the status, the
/// server's `{error}` message, the method and the URL (without retries, so one request each).
#[crate::maybe]
pub async fn status_errors_map_to_kinds() {
    let cases = [
        (400, ErrorKind::BadRequest),
        (401, ErrorKind::Unauthorized),
        (403, ErrorKind::Forbidden),
        (404, ErrorKind::NotFound),
        (409, ErrorKind::Conflict),
        (410, ErrorKind::Gone),
        (422, ErrorKind::UnprocessableEntity),
        (425, ErrorKind::TooEarly),
        (429, ErrorKind::RateLimited),
        (500, ErrorKind::Server),
        (502, ErrorKind::Server),
        (503, ErrorKind::Server),
        (504, ErrorKind::Server),
        (418, ErrorKind::UnexpectedStatus),
    ];
    for (status, kind) in cases {
        let mock = Mock::start();
        let message = format!("server says {status}");
        mock.mount(
            Rule::given(method("GET"))
                .and(path(format!("/v1/inspect/{IMG}/")))
                .respond_with(error_response(status, &message)),
        );
        let client = client_with(&mock, |c| c.retry = RetryPolicy::none());
        let err = client.images().get_by_uuid(IMG).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{status}: {err:?}");
        assert_eq!(err.status(), Some(status));
        assert!(err.is_status());
        assert_eq!(err.message(), message);
        assert_eq!(err.method(), Some("GET"));
        let url = format!("{}/v1/inspect/{IMG}/", mock.uri());
        assert_eq!(err.url(), Some(url.as_str()));
        let shown = err.to_string();
        assert!(shown.contains(&format!("HTTP {status}")), "{shown}");
        assert!(shown.contains(&message), "{shown}");
        assert!(shown.contains(&format!("GET {url}")), "{shown}");
        assert_no_secret(&shown, TOKEN);
        assert_no_secret(&format!("{err:?}"), TOKEN);
        let predicate = match kind {
            ErrorKind::Unauthorized => err.is_unauthorized(),
            ErrorKind::Forbidden => err.is_forbidden(),
            ErrorKind::NotFound => err.is_not_found(),
            ErrorKind::Conflict => err.is_conflict(),
            ErrorKind::Gone => err.is_gone(),
            ErrorKind::TooEarly => err.is_too_early(),
            ErrorKind::RateLimited => err.is_rate_limited(),
            ErrorKind::Server => err.is_server(),
            _ => true,
        };
        assert!(predicate, "{status}: the is_*() predicate disagrees with {kind:?}");
        assert!(!err.is_transport() && !err.is_timeout() && !err.is_invalid_argument());
        assert_eq!(mock.requests().len(), 1, "{status}: retried with RetryPolicy::none()");
    }
}

/// Messages come from non-JSON bodies (text, HTML), structured `error` values, and the
/// status's reason when the body is empty.
#[crate::maybe]
pub async fn error_messages_from_non_json_and_structured_bodies() {
    let mock = Mock::start();
    let routes = [
        (
            "/v1/inspect/00000000-0000-4000-8000-000000000001/",
            ResponseTemplate::new(502).set_body_string("<h1>Bad Gateway</h1>\n"),
        ),
        ("/v1/inspect/00000000-0000-4000-8000-000000000002/", ResponseTemplate::new(503)),
        (
            "/v1/inspect/00000000-0000-4000-8000-000000000003/",
            json_response(400, json!({"error": {"tag": ["not a valid tag"]}, "status": 400})),
        ),
        (
            "/v1/inspect/00000000-0000-4000-8000-000000000004/",
            ResponseTemplate::new(404).set_body_string("no such image"),
        ),
    ];
    for (p, response) in routes {
        mock.mount(Rule::given(method("GET")).and(path(p)).respond_with(response));
    }
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());
    let images = client.images();

    let err = images.get_by_uuid("00000000-0000-4000-8000-000000000001").await.unwrap_err();
    assert!(err.is_server() && err.status() == Some(502), "{err:?}");
    assert_eq!(err.message(), "<h1>Bad Gateway</h1>");

    let err = images.get_by_uuid("00000000-0000-4000-8000-000000000002").await.unwrap_err();
    assert!(err.is_server() && err.status() == Some(503), "{err:?}");
    assert_eq!(err.message(), "Service Unavailable");

    let err = images.get_by_uuid("00000000-0000-4000-8000-000000000003").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err:?}");
    let structured: serde_json::Value = serde_json::from_str(err.message()).expect("structured error as JSON text");
    assert_eq!(structured, json!({"tag": ["not a valid tag"]}));

    let err = images.get_by_uuid("00000000-0000-4000-8000-000000000004").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.message(), "no such image");
}

/// POST, PATCH, DELETE and HEAD errors name their own method.
#[crate::maybe]
pub async fn non_get_errors_name_their_method() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("POST"))
            .and(path("/v1/images/import"))
            .respond_with(error_response(403, "no import permission")),
    );
    mock.mount(
        Rule::given(method("PATCH"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(error_response(409, "tag is frozen")),
    );
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/images/{IMG}/tag")))
            .respond_with(error_response(404, "no such tag")),
    );
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());

    let err = client.images().import_from("busybox").send().await.unwrap_err();
    assert!(err.is_forbidden(), "{err:?}");
    assert_eq!(err.message(), "no import permission");
    assert!(err.to_string().contains(&format!("POST {}/v1/images/import", mock.uri())), "{err}");

    let err = client.images().tag(IMG, "frozen").await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(err.to_string().contains(&format!("PATCH {}/v1/images/{IMG}/tag", mock.uri())), "{err}");

    let err = client.images().untag(IMG, Some("gone")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.method(), Some("DELETE"));
    assert_eq!(err.url(), Some(format!("{}/v1/images/{IMG}/tag?tag=gone", mock.uri()).as_str()));
}

/// A 429's `Retry-After` (seconds or HTTP-date) is read into `retry_after()`.
#[crate::maybe]
pub async fn rate_limit_reads_retry_after() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/whoami"))
            .respond_with(error_response(429, "slow down").insert_header("retry-after", "7")),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/images"))
            .respond_with(error_response(429, "later").insert_header("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")),
    );
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());
    let err = client.whoami().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(err.message(), "slow down");

    let err = client.images().list().send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err:?}");
    let wait = err.retry_after().expect("an HTTP-date Retry-After is read too");
    assert!(wait > Duration::from_secs(365 * 24 * 3600), "{wait:?}");
    assert_eq!(mock.requests().len(), 2);
}

/// A 2xx whose body is not the expected JSON is a Decode error naming the endpoint.
#[crate::maybe]
pub async fn undecodable_success_is_a_decode_error() {
    let mock = Mock::start();
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/whoami"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{not json")),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/images"))
            .respond_with(json_response(200, json!({"images": [{"tag": "no uuid"}]}))),
    );
    let client = client(&mock);
    let err = client.whoami().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert!(err.to_string().contains("/v1/whoami"), "{err}");
    let err = client.images().list().send().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert_eq!(mock.requests().len(), 2, "decode errors are not retried");
}

/// Nothing listening: Transport, and the request certainly never reached a server — for a
/// GET and for an upload's POST alike, with or without retries.
#[crate::maybe]
pub async fn connection_refused_is_transport_not_sent() {
    let base = refused_base_url();
    for retry in [RetryPolicy::none(), fast_retry(3)] {
        let client = Client::builder().base_url(base.clone()).token(TOKEN).retry(retry).build().unwrap();
        let err = client.whoami().await.unwrap_err();
        assert!(err.is_transport(), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Transport);
        assert!(!err.request_may_have_been_sent(), "{err:?}");
        assert_eq!(err.status(), None);
        assert_eq!(err.method(), Some("GET"));
        assert_eq!(err.url(), Some(format!("{base}/v1/whoami").as_str()));
        // One line: what failed, against which URL, and why.
        assert_eq!(err.to_string(), format!("cannot connect to {base}/v1/whoami: connection refused"));
        assert_no_secret(&format!("{err:?}"), TOKEN);

        let err = client.files().upload(b"bytes".to_vec()).await.unwrap_err();
        assert!(err.is_transport(), "{err:?}");
        assert!(!err.request_may_have_been_sent(), "{err:?}");
    }
}

/// A server slower than the client's transport timeout gives a Timeout error (not retried:
/// the server may still be working on it).
#[crate::maybe]
pub async fn client_timeout_is_timeout_kind() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path("/v1/whoami")).respond_with(
        ResponseTemplate::new(200).set_body_json(json!({"token_uuid": "x"})).set_delay(Duration::from_secs(5)),
    ));
    let client = client_with(&mock, |c| c.transport_timeout = Duration::from_millis(200));
    let err = client.whoami().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.request_may_have_been_sent());
    assert_eq!(err.method(), Some("GET"));
    assert_eq!(mock.requests().len(), 1, "timeouts are not retried");
}
