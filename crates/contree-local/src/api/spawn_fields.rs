//! The fields a spawn request (`POST /instances`) may carry, checked before it is parsed.
//!
//! A field the server does not know would be dropped by the parser and the run would go on
//! without it: a client that asked for a limit or an option would believe it got it. So any
//! field outside the spec's `InstanceSpawnRequest`, at any depth, is a 400 naming it.

use serde_json::{Map, Value};

use super::error::ApiError;

/// The top-level fields of the spec's `InstanceSpawnRequest`.
const SPAWN_FIELDS: &[&str] = &[
    "command",
    "image",
    "args",
    "shell",
    "env",
    "preserve_env",
    "preserve_cwd",
    "cwd",
    "uid",
    "gid",
    "hostname",
    "disposable",
    "timeout",
    "truncate_output_at",
    "stdin",
    "files",
    "resources_limits",
    "networking",
];

/// `stdin` (`ClosableStreamRepr`). `truncated` is not in it, but the official Python SDK
/// sends its `StreamRepr` shape (`"truncated": false`) for stdin; see [`check_stdin`].
const STDIN_FIELDS: &[&str] = &["value", "encoding", "close", "truncated"];
/// One entry of `files`.
const FILE_FIELDS: &[&str] = &["uuid", "uid", "gid", "mode"];
/// `resources_limits` (`InstanceResourcesLimits`).
const LIMITS_FIELDS: &[&str] = &["max_layer_bytes"];
/// `networking` (`InstanceNetworking`).
const NETWORKING_FIELDS: &[&str] = &["enabled"];

/// Refuses a spawn body with a field the server would not honour. Values of known fields
/// are left to the parser and the planner, which check them (and name them) too.
pub(crate) fn check(body: &Value) -> Result<(), ApiError> {
    let Value::Object(top) = body else {
        return Err(ApiError::bad_request("invalid request body: the spawn request must be a JSON object"));
    };
    only_known(top, "", SPAWN_FIELDS)?;
    if let Some(Value::Object(stdin)) = top.get("stdin") {
        only_known(stdin, "stdin.", STDIN_FIELDS)?;
        check_stdin(stdin)?;
    }
    if let Some(Value::Object(files)) = top.get("files") {
        for (dest, spec) in files {
            if let Value::Object(spec) = spec {
                only_known(spec, &format!("files.{dest}."), FILE_FIELDS)?;
            }
        }
    }
    if let Some(Value::Object(limits)) = top.get("resources_limits") {
        only_known(limits, "resources_limits.", LIMITS_FIELDS)?;
    }
    if let Some(Value::Object(net)) = top.get("networking") {
        only_known(net, "networking.", NETWORKING_FIELDS)?;
    }
    Ok(())
}

fn only_known(object: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(ApiError::bad_request(format!(
            "unknown field `{prefix}{unknown}` in the spawn request: contree-local does not implement it and will \
             not run without it; the fields here are {}",
            known.iter().map(|k| format!("`{prefix}{k}`")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `stdin.encoding` must be one the server decodes (anything else would be taken as ascii),
/// and `stdin.truncated` may only say the value is whole: a stdin cut short cannot be
/// delivered as the caller meant it.
fn check_stdin(stdin: &Map<String, Value>) -> Result<(), ApiError> {
    match stdin.get("encoding") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if e == "ascii" || e == "base64" => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`stdin.encoding` must be \"ascii\" or \"base64\", got {other}"
            )));
        }
    }
    match stdin.get("truncated") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(ApiError::bad_request(
            "`stdin.truncated` is true: a truncated stdin cannot be delivered whole; send all of it",
        )),
        Some(other) => Err(ApiError::bad_request(format!("`stdin.truncated` must be a boolean, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: Value) -> String {
        let err = check(&body).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{body}");
        err.message().to_owned()
    }

    #[test]
    fn every_spec_field_passes() {
        let body = json!({
            "command": "echo", "image": "tag:x", "args": [], "shell": false, "env": {"A": "b", "C": null},
            "preserve_env": false, "preserve_cwd": false, "cwd": "", "uid": 0, "gid": 0,
            "hostname": "h", "disposable": true, "timeout": 5, "truncate_output_at": 10,
            "stdin": {"value": "", "encoding": "ascii", "close": true, "truncated": false},
            "files": {"/a": {"uuid": "u", "uid": 0, "gid": 0, "mode": "0644"}},
            "resources_limits": {"max_layer_bytes": 1}, "networking": {"enabled": false},
        });
        check(&body).unwrap();
        // Nulls and absent objects are the parser's business.
        check(&json!({"command": "x", "image": "y", "stdin": null, "files": null, "networking": null})).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused_by_their_full_name() {
        let m = refused(json!({"command": "x", "image": "y", "memory": 5}));
        assert!(m.contains("`memory`") && m.contains("`preserve_cwd`"), "{m}");
        let m = refused(json!({"command": "x", "image": "y", "stdin": {"value": "", "eof": true}}));
        assert!(m.contains("`stdin.eof`") && m.contains("`stdin.close`"), "{m}");
        let m = refused(json!({"command": "x", "image": "y", "files": {"/a": {"uuid": "u", "owner": "root"}}}));
        assert!(m.contains("`files./a.owner`"), "{m}");
        let m = refused(json!({"command": "x", "image": "y", "resources_limits": {"max_cpus": 2}}));
        assert!(m.contains("`resources_limits.max_cpus`"), "{m}");
        let m = refused(json!({"command": "x", "image": "y", "networking": {"enabled": true, "ports": [80]}}));
        assert!(m.contains("`networking.ports`"), "{m}");
        let m = refused(json!(["command"]));
        assert!(m.contains("JSON object"), "{m}");
    }

    #[test]
    fn stdin_must_be_whole_and_in_a_known_encoding() {
        let m = refused(json!({"command": "x", "image": "y", "stdin": {"value": "a", "truncated": true}}));
        assert!(m.contains("`stdin.truncated`"), "{m}");
        let m = refused(json!({"command": "x", "image": "y", "stdin": {"value": "a", "encoding": "utf-16"}}));
        assert!(m.contains("`stdin.encoding`") && m.contains("utf-16"), "{m}");
        check(&json!({"command": "x", "image": "y", "stdin": {"value": "YQ==", "encoding": "base64"}})).unwrap();
    }
}
