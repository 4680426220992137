//! The `metadata` of an instance operation: the spawn request as the server understood it.
//!
//! The spec makes it `allOf InstanceSpawnRequest` plus `result`, and the official Python SDK
//! (contree-sdk 0.3.6, cattrs) refuses a record that lacks any of them: it declares `args`,
//! `env`, `files`, `stdin`, `timeout`, `result`… as required fields. So every spawn field is
//! echoed with its default filled in, and `result` is `null` until there is one. The clients'
//! own request models keep sending only what the user set; filling in is the server's job.

use std::collections::BTreeMap;

use contree_core::codec::Encoding;
use contree_core::models::InstanceSpawnRequest;
use contree_core::validate;
use serde_json::{Map, Value, json};

use super::plan::{DEFAULT_HOSTNAME, DEFAULT_TRUNCATE_AT, RunPlan, mask_env};
use crate::layer_quota::DEFAULT_MAX_LAYER_BYTES;

/// The metadata recorded for a spawn that passed validation: every field of the spec's
/// `InstanceSpawnRequest`, the image resolved to its UUID, defaults and server-chosen values
/// (timeout, networking) filled in, secret-named env values masked, and `result: null`.
pub(crate) fn spawn_metadata(req: &InstanceSpawnRequest, plan: &RunPlan) -> Value {
    let stdin = match &req.stdin {
        None => default_stdin(),
        Some(s) => json!({
            "value": s.value,
            "encoding": s.encoding.unwrap_or_default().as_str(),
            "close": s.closes(),
        }),
    };
    let files: Map<String, Value> = req
        .files
        .iter()
        .map(|(dest, f)| {
            // Validated already (a bad mode is a 400 before anything is recorded).
            let mode = f.mode_bits().ok().flatten().unwrap_or(DEFAULT_FILE_MODE);
            let spec = json!({
                "uuid": f.uuid,
                "uid": f.uid.unwrap_or(0),
                "gid": f.gid.unwrap_or(0),
                "mode": validate::format_mode(mode),
            });
            (dest.clone(), spec)
        })
        .collect();
    json!({
        "command": req.command,
        "image": plan.source.uuid,
        "args": req.args,
        "shell": plan.shell,
        "env": mask_env(&req.env),
        "preserve_env": plan.preserved_env.is_some(),
        "preserve_cwd": plan.preserved_cwd.is_some(),
        "cwd": req.cwd.clone().unwrap_or_default(),
        "uid": plan.uid,
        "gid": plan.gid,
        "hostname": plan.hostname,
        "disposable": plan.disposable,
        // `null` only when the server runs commands without a time limit (no default
        // timeout configured and none asked for).
        "timeout": plan.timeout.map(|t| t.as_secs()),
        "truncate_output_at": plan.truncate_at,
        "stdin": stdin,
        "files": files,
        "resources_limits": {"max_layer_bytes": plan.max_layer_bytes},
        "networking": {"enabled": plan.network},
        "result": null,
    })
}

/// The mode of a placed file whose request gives none.
pub(crate) const DEFAULT_FILE_MODE: u32 = 0o644;

fn default_stdin() -> Value {
    json!({"value": "", "encoding": Encoding::Ascii.as_str(), "close": true})
}

/// Fills in what an instance record's metadata lacks, for records written before every
/// field was echoed (an older data dir): the spec's defaults, and `result: null`. Fields
/// present are left as they are.
pub(crate) fn complete(metadata: &mut Value) {
    let Value::Object(m) = metadata else { return };
    let defaults: BTreeMap<&str, Value> = BTreeMap::from([
        ("args", json!([])),
        ("shell", json!(false)),
        ("env", json!({})),
        ("preserve_env", json!(false)),
        ("preserve_cwd", json!(false)),
        ("cwd", json!("")),
        ("uid", json!(0)),
        ("gid", json!(0)),
        ("hostname", json!(DEFAULT_HOSTNAME)),
        ("disposable", json!(false)),
        ("timeout", Value::Null),
        ("truncate_output_at", json!(DEFAULT_TRUNCATE_AT)),
        ("stdin", default_stdin()),
        ("files", json!({})),
        ("resources_limits", json!({"max_layer_bytes": DEFAULT_MAX_LAYER_BYTES})),
        ("result", Value::Null),
    ]);
    for (key, default) in defaults {
        let slot = m.entry(key.to_owned()).or_insert(Value::Null);
        // `null` stays `null` only where the spec allows it.
        if slot.is_null() && !default.is_null() {
            *slot = default;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contree_core::models::{ClosableStreamRepr, FileSpec, ImageSource};
    use std::time::Duration;
    use uuid::Uuid;

    fn plan(source: Uuid) -> RunPlan {
        RunPlan {
            source: crate::store::ImageRecord::new(source, None, None),
            exec_command: "/bin/true".to_owned(),
            exec_args: Vec::new(),
            shell: false,
            env: BTreeMap::new(),
            preserved_env: None,
            preserved_cwd: None,
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: false,
            files: Vec::new(),
            stdin: Vec::new(),
            keep_stdin_open: false,
            timeout: Some(Duration::from_secs(3600)),
            truncate_at: DEFAULT_TRUNCATE_AT,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            disposable: false,
        }
    }

    #[test]
    fn a_minimal_request_is_echoed_with_every_field() {
        let image = Uuid::new_v4();
        let req = InstanceSpawnRequest::new("/bin/true", ImageSource::Uuid(image));
        let meta = spawn_metadata(&req, &plan(image));
        assert_eq!(
            meta,
            json!({
                "command": "/bin/true", "image": image, "args": [], "shell": false, "env": {},
                "preserve_env": false, "preserve_cwd": false, "cwd": "", "uid": 0, "gid": 0,
                "hostname": "linuxkit", "disposable": false, "timeout": 3600,
                "truncate_output_at": 1048576,
                "stdin": {"value": "", "encoding": "ascii", "close": true},
                "files": {}, "resources_limits": {"max_layer_bytes": 12884901888u64},
                "networking": {"enabled": false}, "result": null,
            })
        );
    }

    #[test]
    fn given_values_are_echoed_normalised_and_secrets_masked() {
        let image = Uuid::new_v4();
        let file = Uuid::new_v4();
        let req = InstanceSpawnRequest::new("/bin/echo", ImageSource::Uuid(image))
            .arg("hi")
            .env("API_TOKEN", "s3cret")
            .env("K", "v")
            .cwd("/srv")
            .stdin(ClosableStreamRepr::from_bytes(b"in").keep_open())
            .file("/etc/x", FileSpec { uuid: file, uid: Some(5), gid: None, mode: Some("755".to_owned()) })
            .max_layer_bytes(1 << 20);
        let mut p = plan(image);
        p.max_layer_bytes = 1 << 20;
        p.preserved_cwd = Some("/srv".to_owned());
        let meta = spawn_metadata(&req, &p);
        assert_eq!(meta["args"], json!(["hi"]));
        assert_eq!(meta["env"], json!({"API_TOKEN": "<MASKED>", "K": "v"}));
        assert_eq!(meta["cwd"], "/srv");
        assert_eq!(meta["preserve_cwd"], true);
        assert_eq!(meta["stdin"], json!({"value": "in", "encoding": "ascii", "close": false}));
        assert_eq!(meta["files"], json!({"/etc/x": {"uuid": file, "uid": 5, "gid": 0, "mode": "0755"}}));
        assert_eq!(meta["resources_limits"], json!({"max_layer_bytes": 1048576}));
        assert!(meta["result"].is_null() && meta.as_object().unwrap().contains_key("result"));
    }

    #[test]
    fn older_records_are_completed_without_touching_what_they_have() {
        let mut meta = json!({"command": "echo hi", "image": "x", "shell": true, "env": null, "timeout": 5});
        complete(&mut meta);
        assert_eq!(meta["args"], json!([]));
        assert_eq!(meta["env"], json!({}));
        assert_eq!(meta["files"], json!({}));
        assert_eq!(meta["shell"], true);
        assert_eq!(meta["timeout"], 5);
        assert_eq!(meta["stdin"]["value"], "");
        let m = meta.as_object().unwrap();
        assert!(m.contains_key("result") && m["result"].is_null());
        // A record with a result keeps it.
        let mut done = json!({"result": {"state": {"exit_code": 3}}});
        complete(&mut done);
        assert_eq!(done["result"]["state"]["exit_code"], 3);
    }
}
