//! The `api` wire suite: the client, images, files, error mapping and the retry policy,
//! against wiremock. Written once as async code (`#[crate::maybe]`) and compiled by
//! `tests/wire_api_async.rs` and `tests/wire_api_blocking.rs`.
//!
//! Every scenario asserts what went over the wire (method, path, exact query, headers,
//! bodies, request counts) and what the caller got back (values, error kinds and fields).

use std::process::Command;
use std::time::Duration;

use contree::{ContreeConfig, RetryPolicy};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::flavor::Client;
use crate::support::{Mock, TOKEN};

mod bad_input;
mod client;
mod errors;
mod files;
mod images;
mod imports;
mod operations;
mod retry;

pub use bad_input::*;
pub use client::*;
pub use errors::*;
pub use files::*;
pub use images::*;
pub use imports::*;
pub use operations::*;
pub use retry::*;

/// The one list of scenarios. Each entry file passes its own test-generating macro, so a
/// scenario cannot run in one flavor only.
macro_rules! api_scenarios {
    ($m:ident) => {
        $m!(
            // client
            builder_sends_auth_user_agent_and_gzip,
            project_header_only_when_a_project_is_set,
            new_from_config_sends_the_config_headers,
            base_url_path_prefix_is_kept,
            from_env_uses_environment_variables,
            from_env_uses_the_active_profile,
            gzip_responses_are_decoded,
            debug_and_display_never_show_secrets,
            // images
            list_without_filters_asks_for_the_first_page,
            list_sends_every_filter,
            list_single_filters,
            list_paginates_until_a_short_page,
            list_stops_on_an_empty_page,
            list_limit_takes_the_first_n_across_pages,
            list_limit_truncates_an_oversized_page,
            list_limit_zero_sends_nothing,
            list_is_lazy,
            list_error_ends_the_listing,
            use_image_sends_nothing_and_normalizes,
            use_image_strict_by_uuid,
            get_by_uuid_accepts_strings,
            get_by_tag_reads_a_relative_location,
            get_by_tag_reads_absolute_locations,
            get_by_tag_not_found,
            get_by_tag_redirect_without_location_is_a_decode_error,
            tag_sends_patch_with_the_tag,
            untag_one_tag_with_an_image_body,
            untag_every_tag_with_no_content,
            // imports
            oci_found_by_tag_does_not_import,
            oci_imports_when_the_tag_is_missing,
            oci_with_a_uuid_only_looks_it_up,
            import_from_posts_without_lookup_and_default_timeout,
            import_credentials_are_sent_but_never_shown,
            import_from_uuid_is_invalid_before_any_request,
            import_failed_is_operation_failed,
            import_cancelled_is_operation_cancelled,
            import_deadline_cancels_and_times_out,
            import_progress_follows_the_events_or_polls,
            // files
            upload_bytes_posts_only_after_a_404,
            upload_path_streams_the_exact_file,
            upload_reader_streams_the_exact_bytes,
            upload_skips_the_post_when_the_server_has_the_file,
            upload_detects_a_sha256_mismatch,
            files_get_exists_and_list,
            upload_large_path_posts_while_hashing,
            upload_large_path_detects_a_sha256_mismatch,
            upload_large_path_abandons_the_post_when_the_server_has_it,
            // errors
            status_errors_map_to_kinds,
            error_messages_from_non_json_and_structured_bodies,
            non_get_errors_name_their_method,
            rate_limit_reads_retry_after,
            undecodable_success_is_a_decode_error,
            connection_refused_is_transport_not_sent,
            client_timeout_is_timeout_kind,
            // retry
            get_is_retried_after_503,
            get_gives_up_after_max_attempts,
            delete_is_retried_after_503,
            post_is_not_replayed_after_a_server_error,
            upload_progress_counts_a_replayed_body_once,
            post_is_replayed_after_429_and_425,
            file_upload_replay_resends_the_whole_file,
            large_file_upload_replay_resends_the_whole_file,
            retry_after_is_honoured,
            retry_after_is_capped,
            retry_policy_none_disables_retries,
            // operations
            operations_list_sends_filters_and_paginates,
            operations_list_limit_takes_the_first_n,
            operations_unknown_status_and_kind_parse,
            operations_get_and_cancel,
            operations_bad_input_fails_before_any_request,
            // bad input
            bad_tags_fail_before_any_request,
            bad_uuids_fail_before_any_request,
            missing_local_file_fails_before_any_request,
            bad_sha256_fails_before_any_request,
            bad_page_sizes_fail_before_any_request,
            bad_references_and_config_fail_before_any_request,
        );
    };
}

/// An image UUID used throughout.
pub const IMG: &str = "12345678-9abc-baba-deda-0123456789ab";
/// A second image UUID.
pub const IMG2: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";
/// An operation UUID.
pub const OP: &str = "87654321-9abc-baba-deda-0123456789ab";
/// A stored file UUID.
pub const FILE: &str = "a9165a5d-5c86-4bd8-8ee4-ae46c19cf45d";

/// Retries with 1 ms waits and no jitter, so retry scenarios stay fast.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        delays: vec![Duration::from_millis(1)],
        jitter: 0.0,
        retry_after_cap: Duration::from_secs(30),
    }
}

/// The configuration of most scenarios: the mock as base URL, the test token, fast retries
/// and fast operation polling.
pub fn config(base: &str) -> ContreeConfig {
    let mut c = ContreeConfig::default().with_base_url(base).with_token(TOKEN);
    c.retry = fast_retry(4);
    c.operation_poll_min = Duration::from_millis(1);
    c.operation_poll_max = Duration::from_millis(5);
    c.operation_timeout = Duration::from_secs(60);
    c.transport_timeout = Duration::from_secs(10);
    c.connect_timeout = Duration::from_secs(5);
    c
}

/// A client for `mock` with [`config`].
pub fn client(mock: &Mock) -> Client {
    Client::new(config(&mock.uri())).expect("client")
}

/// A client for `mock` with [`config`] adjusted by `f`.
pub fn client_with(mock: &Mock, f: impl FnOnce(&mut ContreeConfig)) -> Client {
    let mut c = config(&mock.uri());
    f(&mut c);
    Client::new(c).expect("client")
}

/// A JSON answer.
pub fn json_response(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// The server's error shape: `{"error": message, "status": status}`.
pub fn error_response(status: u16, message: &str) -> ResponseTemplate {
    json_response(status, json!({ "error": message, "status": status }))
}

/// An `Image` as the server sends it.
pub fn image_json(uuid: &str, tag: Option<&str>) -> Value {
    json!({
        "uuid": uuid,
        "tag": tag,
        "created_at": "2025-01-01T12:00:00+00:00",
        "operation_uuid": null,
    })
}

/// A header's value as text.
pub fn header(r: &wiremock::Request, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().expect("ascii header").to_string())
}

/// Asserts the mock saw nothing at all.
pub fn assert_no_requests(mock: &Mock, what: &str) {
    let seen: Vec<String> = mock.requests().iter().map(|r| format!("{} {}", r.method, r.url)).collect();
    assert!(seen.is_empty(), "{what}: expected no request, got {seen:?}");
}

/// Asserts the request carries the test token as a bearer token.
pub fn assert_bearer(r: &wiremock::Request) {
    assert_eq!(
        header(r, "authorization").as_deref(),
        Some(format!("Bearer {TOKEN}").as_str()),
        "{} {}",
        r.method,
        r.url
    );
}

/// Asserts `text` (a Debug or Display rendering) holds no secret.
pub fn assert_no_secret(text: &str, secret: &str) {
    assert!(!text.contains(secret), "secret leaked into: {text}");
}

/// The SHA-256 of `bytes`, lowercase hex, computed independently of the SDK.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Binary content that is not valid UTF-8 and spans several hashing chunks.
pub fn binary_content(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 256) as u8).collect()
}

/// A port on which nothing listens (bound, then released).
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The environment variables `from_env` reads, cleared in child processes so the developer's
/// own configuration cannot leak into a scenario.
const CONFIG_VARS: [&str; 11] = [
    "CONTREE_TOKEN",
    "NEBIUS_API_KEY",
    "CONTREE_URL",
    "CONTREE_BASE_URL",
    "CONTREE_PROJECT",
    "NEBIUS_PROJECT_ID",
    "NEBIUS_AI_PROJECT",
    "CONTREE_PROFILE",
    "CONTREE_HOME",
    "XDG_CONFIG_HOME",
    "HOME",
];

/// Set in a child process to the scenario's mode; see [`run_child`].
pub const CHILD_VAR: &str = "CONTREE_WIRE_API_CHILD";

/// Reruns test `test` of this binary in a child process with a controlled environment.
///
/// Why a child: `from_env` reads the process environment, and changing it in a threaded test
/// binary races with every other test (and is `unsafe` in edition 2024). The child sees
/// `CHILD_VAR=mode` and runs the client side of the scenario; the parent asserts on the mock.
pub fn run_child(test: &str, mode: &str, vars: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    cmd.env(CHILD_VAR, mode);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child `{test}` ({mode}) failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child `{test}` ran no test:\n{stdout}\n{stderr}");
}

/// The mode this process runs in as a child of [`run_child`], if it is one.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}
