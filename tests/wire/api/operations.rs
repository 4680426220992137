//! Operations: listing (filters, pagination, "first N", the lazy Stream/Iterator), get one,
//! cancel one, an unknown status from a newer server, and bad input before any request.

use contree::models::{OperationKind, OperationStatus};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock as Rule, ResponseTemplate};

use super::*;
use crate::support::Mock;

fn summary(i: usize, status: &str) -> Value {
    json!({
        "uuid": format!("00000000-0000-4000-8000-{i:012}"),
        "kind": "instance",
        "status": status,
        "error": null,
        "created_at": "2025-01-01T12:00:00+00:00",
        "duration": 1.5,
    })
}

fn mount_ops_page(mock: &Mock, offset: usize, items: Vec<Value>) {
    mock.mount(
        Rule::given(method("GET"))
            .and(path("/v1/operations"))
            .and(query_param("offset", offset.to_string()))
            .respond_with(json_response(200, Value::Array(items))),
    );
}

fn op_queries(mock: &Mock) -> Vec<String> {
    mock.requests_to("GET", "/v1/operations").iter().map(|r| r.url.query().unwrap_or_default().to_string()).collect()
}

/// Filters go into the query; pages are fetched until a short one; the lazy face yields the
/// same operations.
#[crate::maybe]
pub async fn operations_list_sends_filters_and_paginates() {
    let mock = Mock::start();
    mount_ops_page(&mock, 0, vec![summary(0, "SUCCESS"), summary(1, "SUCCESS")]);
    mount_ops_page(&mock, 2, vec![summary(2, "SUCCESS")]);
    let client = client(&mock);
    let list = client.operations().list().status(OperationStatus::Success).kind(OperationKind::Instance).page_size(2);
    let ops = list.clone().send().await.unwrap();
    assert_eq!(
        op_queries(&mock),
        ["status=SUCCESS&kind=instance&limit=2&offset=0", "status=SUCCESS&kind=instance&limit=2&offset=2"]
    );
    let ids: Vec<String> = ops.iter().map(|o| o.uuid.to_string()).collect();
    assert_eq!(
        ids,
        [
            "00000000-0000-4000-8000-000000000000",
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002"
        ]
    );
    assert!(ops.iter().all(|o| o.status == OperationStatus::Success && o.kind == Some(OperationKind::Instance)));

    let lazily = crate::flavor::collect_operations(list).await.unwrap();
    assert_eq!(lazily, ops);
    assert_eq!(op_queries(&mock).len(), 4, "the lazy listing fetched the same two pages");
}

/// `limit(n)` stops after the first `n` operations, asking only for what it needs.
#[crate::maybe]
pub async fn operations_list_limit_takes_the_first_n() {
    let mock = Mock::start();
    mount_ops_page(&mock, 0, vec![summary(0, "EXECUTING"), summary(1, "PENDING"), summary(2, "FAILED")]);
    let client = client(&mock);
    let ops = client.operations().list().limit(2).send().await.unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(op_queries(&mock), ["limit=2&offset=0"]);
    assert_eq!(ops[0].status, OperationStatus::Executing);
    assert_eq!(ops[1].status, OperationStatus::Pending);
}

/// A status this SDK does not know (a newer server) parses as `Unknown` instead of failing
/// the listing; so does an unknown kind (kept as `Other`).
#[crate::maybe]
pub async fn operations_unknown_status_and_kind_parse() {
    let mock = Mock::start();
    let mut odd = summary(0, "SUSPENDED");
    odd["kind"] = json!("snapshot");
    mount_ops_page(&mock, 0, vec![odd, summary(1, "CANCELLED")]);
    let client = client(&mock);
    let ops = client.operations().list().send().await.unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].status, OperationStatus::Unknown);
    assert_eq!(ops[0].kind, Some(OperationKind::Other("snapshot".into())));
    assert_eq!(ops[1].status, OperationStatus::Cancelled);
}

/// `get` fetches one record; `cancel` sends DELETE, and cancelling a finished operation
/// (409) is not an error, while a missing one is NotFound.
#[crate::maybe]
pub async fn operations_get_and_cancel() {
    let mock = Mock::start();
    mock.mount(Rule::given(method("GET")).and(path(format!("/v1/operations/{OP}"))).respond_with(json_response(
        200,
        json!({"uuid": OP, "kind": "image_import", "status": "EXECUTING", "error": null, "metadata": null}),
    )));
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/operations/{OP}")))
            .respond_with(ResponseTemplate::new(204)),
    );
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/operations/{IMG}")))
            .respond_with(error_response(409, "finished")),
    );
    mock.mount(
        Rule::given(method("DELETE"))
            .and(path(format!("/v1/operations/{IMG2}")))
            .respond_with(error_response(404, "no such operation")),
    );
    let client = client(&mock);
    let ops = client.operations();
    let op = ops.get(OP).await.unwrap();
    assert_eq!(op.uuid.to_string(), OP);
    assert_eq!(op.status, OperationStatus::Executing);
    ops.cancel(OP).await.unwrap();
    ops.cancel(IMG).await.expect("cancelling a finished operation is not an error");
    let err = ops.cancel(IMG2).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(mock.requests_to("DELETE", &format!("/v1/operations/{OP}")).len(), 1);
    assert_eq!(mock.requests_to("GET", &format!("/v1/operations/{OP}")).len(), 1);
}

/// Bad arguments are InvalidArgument errors naming the argument, and nothing is sent.
#[crate::maybe]
pub async fn operations_bad_input_fails_before_any_request() {
    let mock = Mock::start();
    let client = client(&mock);
    let ops = client.operations();
    // (Each call is bound first: the blocking build strips `.await` outside macros only.)
    let e = ops.get("not-a-uuid").await.unwrap_err();
    assert_eq!(e.argument(), Some("id"));
    let e = ops.cancel("").await.unwrap_err();
    assert_eq!(e.argument(), Some("id"));
    let e = ops.list().page_size(0).send().await.unwrap_err();
    assert_eq!(e.argument(), Some("page_size"));
    let e = ops.list().page_size(1001).send().await.unwrap_err();
    assert_eq!(e.argument(), Some("page_size"));
    let e = ops.list().status(OperationStatus::Unknown).send().await.unwrap_err();
    assert_eq!(e.argument(), Some("status"));
    let e = ops.list().kind(OperationKind::Other("snapshot".into())).send().await.unwrap_err();
    assert_eq!(e.argument(), Some("kind"));
    let lazily = crate::flavor::collect_operations(ops.list().page_size(0)).await.unwrap_err();
    assert_eq!(lazily.argument(), Some("page_size"));
    assert_no_requests(&mock, "bad operation arguments");
}
