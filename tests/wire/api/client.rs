//! The client: headers, base URL prefix, `new`/`builder`/`from_env`, `whoami`, gzip, and
//! secrets kept out of every rendering.

use std::io::Write;

use contree::{ContreeConfig, RetryPolicy};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::flavor::Client;
use crate::support::{Mock, TOKEN};

const TOKEN_UUID: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";

fn whoami_body() -> Value {
    json!({
        "token_uuid": TOKEN_UUID,
        // 2100-01-01: far enough not to trigger the expiry warning.
        "token_expiration": 4_102_444_800i64,
        "permissions": {"spawn": true, "list": true, "cancel": false},
        "limits": {"instance_max_timeout": 3600},
        "operations_stat": {},
        "unknown_field": [1, 2, 3],
    })
}

fn mount_whoami(mock: &Mock, at: &str) {
    mock.mount(Rule::given(method("GET")).and(path(at)).respond_with(json_response(200, whoami_body())));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// The builder's client sends the bearer token, the project, a User-Agent naming the crate
/// and its version, and accepts gzip; `whoami` parses and is cached.
#[crate::maybe]
pub async fn builder_sends_auth_user_agent_and_gzip() {
    let mock = Mock::start();
    mount_whoami(&mock, "/v1/whoami");
    let client = Client::builder()
        .base_url(mock.uri())
        .token(TOKEN)
        .project("proj-1")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(client.cached_whoami().is_none());

    let me = client.whoami().await.unwrap();
    assert_eq!(me.token_uuid, TOKEN_UUID);
    assert_eq!(me.token_expiration, Some(4_102_444_800));
    assert!(me.has_permission("spawn") && me.has_permission("list"));
    assert!(!me.has_permission("cancel") && !me.has_permission("import"));
    assert_eq!(me.limit("instance_max_timeout"), Some(3600));
    assert_eq!(client.cached_whoami(), Some(me));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.url.path()), ("GET", "/v1/whoami"));
    assert_bearer(r);
    assert_eq!(header(r, "project").as_deref(), Some("proj-1"));
    let ua = header(r, "user-agent").expect("user-agent");
    assert!(ua.contains("contree"), "{ua}");
    assert!(ua.contains(env!("CARGO_PKG_VERSION")), "{ua}");
    let accept = header(r, "accept-encoding").expect("accept-encoding");
    assert!(accept.split(',').any(|e| e.trim() == "gzip"), "{accept}");
}

/// Without a project no `Project` header is sent.
#[crate::maybe]
pub async fn project_header_only_when_a_project_is_set() {
    let mock = Mock::start();
    mount_whoami(&mock, "/v1/whoami");
    let client = Client::builder().base_url(mock.uri()).token(TOKEN).build().unwrap();
    client.whoami().await.unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_bearer(&reqs[0]);
    assert_eq!(header(&reqs[0], "project"), None);
}

/// `new(ContreeConfig)`: IAM sends the project; JWT (self-hosted) never does, even if set.
#[crate::maybe]
pub async fn new_from_config_sends_the_config_headers() {
    let mock = Mock::start();
    mount_whoami(&mock, "/v1/whoami");

    let iam = Client::new(ContreeConfig::default().with_base_url(mock.uri()).with_token(TOKEN).with_project("p-iam"))
        .unwrap();
    iam.whoami().await.unwrap();
    let jwt = Client::new(ContreeConfig {
        auth_kind: contree::core::AuthKind::Jwt,
        ..ContreeConfig::default().with_base_url(mock.uri()).with_token(TOKEN).with_project("p-jwt")
    })
    .unwrap();
    jwt.whoami().await.unwrap();

    let reqs = mock.requests_to("GET", "/v1/whoami");
    assert_eq!(reqs.len(), 2);
    reqs.iter().for_each(assert_bearer);
    assert_eq!(header(&reqs[0], "project").as_deref(), Some("p-iam"));
    assert_eq!(header(&reqs[1], "project"), None);
    assert_eq!(iam.config().project.as_deref(), Some("p-iam"));
}

/// A base URL with a path prefix keeps it for every endpoint, including the follow-up of a
/// relative tag redirect.
#[crate::maybe]
pub async fn base_url_path_prefix_is_kept() {
    let mock = Mock::start();
    mount_whoami(&mock, "/sandboxes/v1/whoami");
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/sandboxes/v1/images"))
            // Only the first page exists: a client that asked for more would fail, not spin.
            .and(query_param("offset", "0"))
            .respond_with(json_response(200, json!({"images": [image_json(IMG, Some("busybox"))]}))),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/sandboxes/v1/inspect/"))
            .and(query_param("tag", "busybox"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{IMG}/"))),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/sandboxes/v1/inspect/{IMG}/")))
            .respond_with(json_response(200, image_json(IMG, Some("busybox")))),
    );

    let client = Client::builder().base_url(format!("{}/sandboxes/", mock.uri())).token(TOKEN).build().unwrap();
    assert_eq!(client.base_url(), format!("{}/sandboxes", mock.uri()));
    client.whoami().await.unwrap();
    let listed = client.images().list().send().await.unwrap();
    assert_eq!(listed.len(), 1);
    let image = client.images().get_by_tag("busybox").await.unwrap();
    assert_eq!(image.uuid().map(|u| u.to_string()).as_deref(), Some(IMG));

    let paths: Vec<String> = mock.requests().iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/sandboxes/v1/whoami".to_string(),
            "/sandboxes/v1/images".to_string(),
            "/sandboxes/v1/inspect/".to_string(),
            format!("/sandboxes/v1/inspect/{IMG}/"),
        ]
    );
}

/// `from_env()` with `CONTREE_TOKEN`/`CONTREE_URL`/`CONTREE_PROJECT`, and with the Nebius
/// spellings `NEBIUS_API_KEY`/`NEBIUS_PROJECT_ID` plus `CONTREE_BASE_URL` (each run in a
/// child process).
#[crate::maybe]
pub async fn from_env_uses_environment_variables() {
    if let Some(mode @ ("env" | "nebius")) = child_mode().as_deref() {
        let client = Client::from_env().expect("from_env");
        let project = if mode == "env" { "proj-env" } else { "proj-nebius" };
        assert_eq!(client.config().project.as_deref(), Some(project));
        assert_eq!(client.config().profile, None);
        let me = client.whoami().await.expect("whoami");
        assert_eq!(me.token_uuid, TOKEN_UUID);
        return;
    }
    let mock = Mock::start();
    mount_whoami(&mock, "/sandboxes/v1/whoami");
    let home = tempfile::tempdir().unwrap();
    let home_var = ("CONTREE_HOME", home.path().display().to_string());
    run_child(
        "from_env_uses_environment_variables",
        "env",
        &[
            ("CONTREE_TOKEN", TOKEN.to_string()),
            ("CONTREE_URL", format!("{}/sandboxes", mock.uri())),
            ("CONTREE_PROJECT", "proj-env".to_string()),
            home_var.clone(),
        ],
    );
    run_child(
        "from_env_uses_environment_variables",
        "nebius",
        &[
            ("NEBIUS_API_KEY", TOKEN.to_string()),
            ("CONTREE_BASE_URL", format!("{}/sandboxes/", mock.uri())),
            ("NEBIUS_PROJECT_ID", "proj-nebius".to_string()),
            home_var,
        ],
    );
    let reqs = mock.requests_to("GET", "/sandboxes/v1/whoami");
    assert_eq!(reqs.len(), 2, "{:?}", mock.requests());
    reqs.iter().for_each(assert_bearer);
    assert_eq!(header(&reqs[0], "project").as_deref(), Some("proj-env"));
    assert_eq!(header(&reqs[1], "project").as_deref(), Some("proj-nebius"));
}

/// `from_env()` with nothing in the environment but a `contree auth` profile in
/// `$CONTREE_HOME/auth.ini` (run in a child process).
#[crate::maybe]
pub async fn from_env_uses_the_active_profile() {
    if child_mode().as_deref() == Some("profile") {
        let client = Client::from_env().expect("from_env");
        assert_eq!(client.config().profile.as_deref(), Some("work"));
        assert_eq!(client.config().project.as_deref(), Some("proj-profile"));
        client.whoami().await.expect("whoami");
        return;
    }
    let mock = Mock::start();
    mount_whoami(&mock, "/sandboxes/v1/whoami");
    let home = tempfile::tempdir().unwrap();
    let auth_ini = format!(
        "[DEFAULT]\nprofile = work\n\n\
         [profile:default]\ntoken = wrong-token\nurl = http://127.0.0.1:9/\ntype = jwt\n\n\
         [profile:work]\ntoken = {TOKEN}\nurl = {}/sandboxes\ntype = iam\nproject = proj-profile\n",
        mock.uri()
    );
    std::fs::write(home.path().join("auth.ini"), auth_ini).unwrap();
    run_child("from_env_uses_the_active_profile", "profile", &[("CONTREE_HOME", home.path().display().to_string())]);
    let reqs = mock.requests_to("GET", "/sandboxes/v1/whoami");
    assert_eq!(reqs.len(), 1, "{:?}", mock.requests());
    assert_bearer(&reqs[0]);
    assert_eq!(header(&reqs[0], "project").as_deref(), Some("proj-profile"));
}

/// `Content-Encoding: gzip` bodies are decoded: JSON answers, listings and error bodies.
#[crate::maybe]
pub async fn gzip_responses_are_decoded() {
    let mock = Mock::start();
    let gz = |status: u16, body: Value| {
        ResponseTemplate::new(status)
            .insert_header("content-encoding", "gzip")
            .set_body_raw(gzip(body.to_string().as_bytes()), "application/json")
    };
    mock.mount(Rule::given(method("GET")).and(path("/v1/whoami")).respond_with(gz(200, whoami_body())));
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/images"))
            // Only the first page exists: a client that asked for more would fail, not spin.
            .and(query_param("offset", "0"))
            .respond_with(gz(200, json!({"images": [image_json(IMG, Some("a")), image_json(IMG2, None)]}))),
    );
    mock.mount(
        Rule::given(method("GET"))
            .and(path(format!("/v1/inspect/{IMG2}/")))
            .respond_with(gz(404, json!({"error": "image not found (gzipped)", "status": 404}))),
    );
    let client = client_with(&mock, |c| c.retry = RetryPolicy::none());

    let me = client.whoami().await.unwrap();
    assert_eq!(me.token_uuid, TOKEN_UUID);
    let images = client.images().list().send().await.unwrap();
    let tags: Vec<Option<&str>> = images.iter().map(|i| i.tag()).collect();
    assert_eq!(tags, [Some("a"), None]);
    let err = client.images().get_by_uuid(IMG2).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.message(), "image not found (gzipped)");
}

/// The token (and a registry password) never show in `Debug`/`Display` of clients, builders,
/// configs, areas, listings or errors.
#[crate::maybe]
pub async fn debug_and_display_never_show_secrets() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path("/v1/whoami")).respond_with(error_response(401, "bad token")));
    let builder = Client::builder().base_url(mock.uri()).token(TOKEN).project("p").retry(RetryPolicy::none());
    assert_no_secret(&format!("{builder:?}"), TOKEN);
    let client = builder.build().unwrap();

    let renderings = [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{:?}", client.config()),
        format!("{:#?}", client.config()),
        client.config().to_string(),
        format!("{:?}", client.images()),
        format!("{:?}", client.files()),
        format!("{:?}", client.images().list().tagged(true)),
        format!("{:?}", client.images().use_image("busybox").unwrap()),
    ];
    for text in &renderings {
        assert_no_secret(text, TOKEN);
    }
    // Debug shows the flavor's public names, never the driver's neutral ones.
    let names = crate::flavor::PUBLIC_NAMES;
    assert!(renderings[0].starts_with(&format!("{} {{", names[0])), "{}", renderings[0]);
    assert!(renderings[5].starts_with(names[1]), "{}", renderings[5]);
    assert!(renderings[8].starts_with(&format!("{} {{", names[2])), "{}", renderings[8]);
    assert!(format!("{:?}", client.operations()).starts_with(names[3]));
    let import = client.images().import_from("private.example/app:1").credentials("bob", "hunter2-pass");
    let shown = format!("{import:?}");
    assert_no_secret(&shown, "hunter2-pass");
    assert_no_secret(&shown, TOKEN);

    let err = client.whoami().await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert_no_secret(&format!("{err:?}"), TOKEN);
    assert_no_secret(&err.to_string(), TOKEN);

    let refused =
        Client::builder().base_url(refused_base_url()).token(TOKEN).retry(RetryPolicy::none()).build().unwrap();
    let err = refused.whoami().await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    assert_no_secret(&format!("{err:?}"), TOKEN);
    assert_no_secret(&err.to_string(), TOKEN);
}
