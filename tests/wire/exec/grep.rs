//! Searching an image's files: `GET /inspect/{uuid}/grep` on the wire.

use std::time::Duration;

use contree::models::{GrepCase, GrepMatchType};
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use super::fake::{self, IMAGE};
use crate::flavor::Client;

fn grep_path() -> String {
    format!("/v1/inspect/{IMAGE}/grep")
}

/// The query pairs of a recorded request, decoded, in order.
fn pairs(request: &wiremock::Request) -> Vec<(String, String)> {
    request.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every option goes out under the spec's name, repeated ones as repeated keys, and the
/// answer comes back typed.
#[crate::maybe]
pub async fn grep_sends_every_option_and_reads_typed_rows() {
    let (mock, client) = fake::setup();
    mock.mount(wiremock::Mock::given(method("GET")).and(path(grep_path())).respond_with(
        ResponseTemplate::new(200).set_body_json(json!({
            "path": "/etc",
            "patterns": ["^root", "daemon"],
            "matches": [
                {"path": "/etc/passwd", "line_number": 1, "absolute_offset": 0,
                 "line_text": "root:x:0:0:root:/root:/bin/sh\n", "line_bytes": 30,
                 "submatches": [{"text": "root", "start": 0, "end": 4}], "type": "match"},
                {"path": "/etc/passwd", "line_number": 2, "absolute_offset": 30,
                 "line_text": "daemon:x:1:1::/:/bin/false\n", "line_bytes": 27,
                 "submatches": [], "type": "context"}
            ],
            "truncated": true
        })),
    ));
    let image = fake::image(&client);
    let found = image
        .grep("^root")
        .pattern("daemon")
        .path("/etc")
        .paths(["/usr/share/a b", "/opt"])
        .glob("*.conf")
        .glob("!*.bak")
        .max_count(3)
        .max_total(50)
        .case(GrepCase::Smart)
        .before(2)
        .after(1)
        .send()
        .await
        .expect("grep");
    assert_eq!(found.path, "/etc");
    assert_eq!(found.patterns, ["^root", "daemon"]);
    assert!(found.truncated);
    assert_eq!(found.matches.len(), 2);
    let first = &found.matches[0];
    assert!(first.is_match());
    assert_eq!((first.line_number, first.absolute_offset, first.line_bytes), (1, 0, 30));
    assert_eq!(first.submatches[0].text, "root");
    assert_eq!((first.submatches[0].start, first.submatches[0].end), (0, 4));
    assert_eq!(found.matches[1].match_type, GrepMatchType::Context);
    assert!(found.matches[1].submatches.is_empty());

    let calls = mock.requests_to("GET", &grep_path());
    assert_eq!(calls.len(), 1);
    assert_eq!(
        pairs(&calls[0]),
        owned(&[
            ("pattern", "^root"),
            ("pattern", "daemon"),
            ("path", "/etc"),
            ("path", "/usr/share/a b"),
            ("path", "/opt"),
            ("glob", "*.conf"),
            ("glob", "!*.bak"),
            ("max_count", "3"),
            ("max_total", "50"),
            ("case", "smart"),
            ("before", "2"),
            ("after", "1"),
        ])
    );

    // Nothing set: only the pattern goes out, so the server's defaults apply.
    image.grep("x").ignore_case().send().await.expect("grep");
    image.grep("x").context(3).send().await.expect("grep");
    let calls = mock.requests_to("GET", &grep_path());
    assert_eq!(pairs(&calls[1]), owned(&[("pattern", "x"), ("case", "insensitive")]));
    assert_eq!(pairs(&calls[2]), owned(&[("pattern", "x"), ("before", "3"), ("after", "3")]));
}

/// Bad input is an InvalidArgument naming the argument, and nothing is sent.
#[crate::maybe]
pub async fn grep_bad_arguments_are_rejected_before_any_request() {
    let (mock, client) = fake::setup();
    let image = fake::image(&client);
    let too_long = "a".repeat(1025);
    let cases = [
        ("pattern", image.grep("")),
        ("pattern", image.grep("ok").pattern("")),
        ("pattern", image.grep(too_long.as_str())),
        ("pattern", (0..16).fold(image.grep("p"), |g, i| g.pattern(format!("p{i}")))),
        ("path", image.grep("x").path("etc")),
        ("path", image.grep("x").path("/a\0b")),
        ("path", image.grep("x").paths((0..17).map(|i| format!("/p{i}")))),
        ("glob", image.grep("x").glob("!")),
        ("glob", image.grep("x").glob("")),
        ("max_count", image.grep("x").max_count(0)),
        ("max_total", image.grep("x").max_total(10_001)),
        ("before", image.grep("x").before(51)),
        ("after", image.grep("x").after(51)),
        ("context", image.grep("x").context(51)),
        ("timeout", image.grep("x").timeout(Duration::ZERO)),
        // The first problem is the one reported.
        ("pattern", image.grep("").path("relative")),
    ];
    for (argument, builder) in cases {
        let err = builder.send().await.unwrap_err();
        assert!(err.is_invalid_argument(), "{argument}: {err:?}");
        assert_eq!(err.argument(), Some(argument), "{err}");
    }
    // The limits themselves are accepted.
    let edge = image.grep("x").max_count(10_000).max_total(1).before(50).after(0).context(50);
    assert!(format!("{edge:?}").contains("GrepImage"));
    assert!(mock.requests().is_empty(), "nothing was sent");
}

/// Server answers map to typed errors; a search may take longer than `transport_timeout`.
#[crate::maybe]
pub async fn grep_errors_and_waiting_for_the_answer() {
    let (mock, _) = fake::setup();
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(grep_path()))
            .and(wiremock::matchers::query_param("path", "/nope"))
            .respond_with(
                ResponseTemplate::new(404).set_body_json(json!({"error": "`/nope` does not exist", "status": 404})),
            ),
    );
    mock.mount(
        wiremock::Mock::given(method("GET"))
            .and(path(grep_path()))
            .and(wiremock::matchers::query_param("pattern", "a("))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_json(json!({"error": "`pattern` `a(` is not a valid regex", "status": 400})),
            ),
    );
    mock.mount(
        wiremock::Mock::given(method("GET")).and(path(grep_path())).respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(700))
                .set_body_json(json!({"path": "/", "patterns": ["slow"], "matches": [], "truncated": false})),
        ),
    );
    // A client whose small requests time out after 200 ms.
    let mut config = fake::config(&mock.uri());
    config.transport_timeout = Duration::from_millis(200);
    let client = Client::new(config).expect("client");
    let image = fake::image(&client);

    let err = image.grep("x").path("/nope").send().await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = image.grep("a(").send().await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    assert!(err.to_string().contains("not a valid regex"), "{err}");

    // The search itself waits past `transport_timeout`…
    let found = image.grep("slow").send().await.expect("a slow search is waited for");
    assert!(found.matches.is_empty() && !found.truncated);
    // …up to its own timeout when one is set.
    let err = image.grep("slow").timeout(Duration::from_millis(100)).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}
