//! Fuzzing on stable Rust: the parsers that read what servers, files and users send.
//!
//! Each target is a proptest property fed with arbitrary bytes and with structure-aware input
//! (tokens of the format, so the parser gets past its first byte), checking that nothing
//! panics and that the parser's contracts hold (chunking does not change SSE frames, the
//! codec round-trips, a parsed reference re-parses to itself, a model that parses
//! serializes to JSON that parses again, a profile file never leaks its token into an error).
//!
//! Each target runs one batch of `CONTREE_FUZZ_CASES` inputs (default 256, so the ordinary
//! test run stays quick), or, with `CONTREE_FUZZ_SECONDS=N`, fresh batches until it has spent
//! N seconds; `.ci/fuzz` runs such a time-bounded pass. Each target prints how many inputs it
//! executed (`--nocapture`). A crash found here is kept as a
//! regression test beside the parser's unit tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use contree_core::codec::{self, Encoding};
use contree_core::models::*;
use contree_core::sse::SseParser;
use contree_core::{ContreeConfig, ImageRef, OciReference, TimeFilter};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Inputs per batch: `CONTREE_FUZZ_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("CONTREE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// With `CONTREE_FUZZ_SECONDS`, each target runs fresh batches (new random seeds) until it
/// has spent that long; without it, one batch.
fn budget() -> Option<Duration> {
    std::env::var("CONTREE_FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs_f64)
}

/// Runs `property` on batches of `cases()` inputs of `strategy` (see [`budget`]), reports the
/// count and time, and fails with the (shrunk) input on a panic or a broken contract.
fn fuzz<S: Strategy>(target: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let runs = AtomicU64::new(0);
    let started = Instant::now();
    let mut result = Ok(());
    loop {
        let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
        // A random seed per batch (proptest seeds `TestRunner::new` from the OS).
        let mut runner = TestRunner::new(config);
        result = result.and(runner.run(&strategy, |input| {
            runs.fetch_add(1, Ordering::Relaxed);
            property(input)
        }));
        if result.is_err() || budget().is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    println!(
        "FUZZ | {target} | {} inputs | {:.1}s | {}",
        runs.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        if result.is_ok() { "0 crashes" } else { "FAILED" }
    );
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

/// Arbitrary bytes, up to `max` long.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Text made of the given tokens and arbitrary characters: reaches deeper than random bytes.
fn tokens(alphabet: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(alphabet).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[0-9]{1,20}",
    ];
    proptest::collection::vec(piece, 0..max).prop_map(|v| v.concat())
}

const SSE_TOKENS: &[&str] = &[
    "data:",
    "data: ",
    "id:",
    "id: ",
    "event:",
    "event: ",
    "retry: ",
    ":",
    ": keepalive",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    " ",
    "{",
    "}",
    "\"",
    "sse_error",
    "stdout",
    "completion",
    "é",
    "\u{FFFD}",
    "\0",
    "18446744073709551616",
    "-1",
];

/// One dispatched frame (`id`, `event`, `data`), or the kind of the parser's error.
type Dispatched = Result<(Option<u64>, Option<String>, String), String>;

/// The frames (or errors) of `input` pushed in pieces cut at `cuts`, with a small frame cap.
fn sse_frames(input: &[u8], cuts: &[usize], cap: usize) -> Vec<Dispatched> {
    let mut parser = SseParser::with_max_frame(cap);
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.push(input.len());
    for p in points {
        parser.push(&input[at..p]);
        at = p;
        while let Some(frame) = parser.next_frame() {
            out.push(frame.map(|f| (f.id, f.event, f.data)).map_err(|e| format!("{:?}", e.kind())));
        }
    }
    out
}

#[test]
fn fuzz_sse_parser_arbitrary_bytes_in_arbitrary_chunks() {
    fuzz(
        "sse: arbitrary bytes, arbitrary chunking",
        (bytes(4096), proptest::collection::vec(any::<usize>(), 0..16)),
        |(input, cuts)| {
            let whole = sse_frames(&input, &[], 64);
            let chunked = sse_frames(&input, &cuts, 64);
            prop_assert_eq!(whole, chunked, "chunk boundaries changed the frames");
            Ok(())
        },
    );
}

#[test]
fn fuzz_sse_parser_structured() {
    fuzz(
        "sse: structured, arbitrary chunking",
        (tokens(SSE_TOKENS, 200), proptest::collection::vec(any::<usize>(), 0..16), 1usize..512),
        |(text, cuts, cap)| {
            let whole = sse_frames(text.as_bytes(), &[], cap);
            let chunked = sse_frames(text.as_bytes(), &cuts, cap);
            prop_assert_eq!(&whole, &chunked, "chunk boundaries changed the frames");
            for frame in whole.iter().flatten() {
                prop_assert!(frame.2.len() <= cap, "a frame over the cap was dispatched: {} > {cap}", frame.2.len());
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_stream_value_codec() {
    fuzz("codec: round trip of arbitrary bytes", bytes(4096), |input| {
        let (text, encoding) = codec::encode(&input);
        prop_assert_eq!(codec::decode(&text, encoding).expect("what encode writes, decode reads"), input);
        Ok(())
    });
    fuzz(
        "codec: decode arbitrary text in every encoding",
        (any::<String>(), tokens(&["=", "==", "A", "/", "+", " ", "\n", "QQ", "-", "_"], 64), any::<String>()),
        |(value, b64ish, wire)| {
            for v in [&value, &b64ish] {
                let ascii = codec::decode(v, Encoding::Ascii).expect("ascii never fails");
                prop_assert_eq!(ascii, v.as_bytes());
                if let Err(e) = codec::decode(v, Encoding::Base64) {
                    prop_assert!(e.is_decode(), "{e}");
                }
                let _ = codec::decode(v, Encoding::from_wire(&wire));
            }
            Ok(())
        },
    );
    fuzz("codec: stream representations from arbitrary JSON", json_value(), |value| {
        if let Ok(repr) = serde_json::from_value::<StreamRepr>(value.clone()) {
            let _ = repr.to_bytes();
        }
        if let Ok(repr) = serde_json::from_value::<ClosableStreamRepr>(value) {
            let _ = repr.to_bytes();
        }
        Ok(())
    });
}

const OCI_TOKENS: &[&str] = &[
    "docker://",
    "oci://",
    "http://",
    "/",
    ":",
    "@",
    "sha256:",
    "latest",
    "library",
    "ubuntu",
    "ghcr.io",
    "localhost",
    ":5000",
    ".",
    "-",
    "_",
    "__",
    "..",
    "a",
    "Z",
    "0",
    "tag:",
    "?",
    "#",
    " ",
    "\t",
    "é",
    "00000000-0000-4000-8000-000000000000",
];

#[test]
fn fuzz_oci_references() {
    fuzz("oci: references, arbitrary and structured", prop_oneof![any::<String>(), tokens(OCI_TOKENS, 24)], |text| {
        if let Ok(r) = OciReference::parse(&text) {
            // What the parser produced, it reads back identically.
            let again = OciReference::parse(&r.url()).expect("a parsed reference's URL parses");
            prop_assert_eq!(&again, &r, "url() {} did not re-parse to the same reference", r.url());
            prop_assert!(!r.tag().is_empty() && !r.registry().is_empty() && !r.repository().is_empty());
        }
        match ImageRef::parse(&text) {
            Ok(ImageRef::Tag(tag)) => prop_assert!(!tag.is_empty()),
            Ok(ImageRef::Uuid(_)) => {}
            Err(e) => prop_assert!(e.is_invalid_argument(), "{e}"),
        }
        let _ = ImageSource::parse(&text);
        let _ = TimeFilter::parse(&text).map(|f| f.to_query());
        let _ = contree_core::ApiUrl::parse(&text);
        let _ = contree_core::retry::parse_retry_after(&text, SystemTime::now());
        Ok(())
    });
}

const INI_TOKENS: &[&str] = &[
    "[",
    "]",
    "[DEFAULT]",
    "[profile:default]",
    "[profile:",
    "profile",
    "token",
    "url",
    "type",
    "project",
    "=",
    ":",
    " = ",
    "\n",
    "\r\n",
    "\n  ",
    "\t",
    ";",
    "#",
    " ;",
    " #",
    "iam",
    "jwt",
    "http://h",
    "https://",
    "%",
    "%(x)s",
    "é",
    "\0",
];

#[test]
fn fuzz_ini_profiles() {
    let home = tempfile::tempdir().expect("temp dir");
    let dir = home.path().to_path_buf();
    fuzz(
        "ini: auth.ini and cli.ini, arbitrary and structured",
        (
            prop_oneof![any::<String>(), tokens(INI_TOKENS, 64)],
            prop_oneof![Just(String::new()), tokens(INI_TOKENS, 32)],
        ),
        |(auth, cli)| {
            // A planted token: whatever else the file holds, it never shows in an error.
            let secret = "tok-FUZZ-s3cr3t-4242";
            let auth = format!("{auth}\ntoken = {secret}\n");
            std::fs::write(dir.join("auth.ini"), &auth).expect("write auth.ini");
            std::fs::write(dir.join("cli.ini"), &cli).expect("write cli.ini");
            let vars: HashMap<&str, String> = HashMap::from([("CONTREE_HOME", dir.display().to_string())]);
            let env = |name: &str| vars.get(name).cloned();
            for profile in [None, Some("default")] {
                match ContreeConfig::resolve(&env, profile) {
                    Ok(config) => {
                        let debug = format!("{config:?}");
                        prop_assert!(!debug.contains(secret), "the token leaked: {}", debug);
                        let shown = config.to_string();
                        prop_assert!(!shown.contains(secret), "the token leaked: {}", shown);
                    }
                    Err(e) => {
                        prop_assert!(e.is_config() || e.is_invalid_argument(), "{:?}", e);
                        let shown = format!("{e} {e:?}");
                        prop_assert!(!shown.contains(secret), "the token leaked: {}", shown);
                    }
                }
            }
            let _ = ContreeConfig::has_credentials(&env);
            Ok(())
        },
    );
}

/// Field names of the models, so generated objects look like what the server sends.
const FIELDS: &[&str] = &[
    "uuid",
    "id",
    "ts",
    "type",
    "spid",
    "data",
    "value",
    "encoding",
    "truncated",
    "close",
    "status",
    "error",
    "kind",
    "created_at",
    "duration",
    "image_uuid",
    "result_image_uuid",
    "metadata",
    "result",
    "command",
    "args",
    "image",
    "resources",
    "state",
    "exit_code",
    "pid",
    "signal",
    "timed_out",
    "stdout",
    "stderr",
    "tag",
    "tags",
    "images",
    "files",
    "sha256",
    "size",
    "path",
    "mode",
    "uid",
    "gid",
    "owner",
    "name",
    "is_dir",
    "is_symlink",
    "target",
    "duration_ms",
    "code",
    "elapsed_time",
    "max_rss",
    "user_cpu_time",
    "cost",
    "token_uuid",
    "permissions",
    "limits",
    "token_expiration",
    "registry",
    "url",
    "username",
    "password",
    "timeout",
    "env",
    "cwd",
    "shell",
    "hostname",
    "networking",
    "interfaces",
    "stdin",
    "disposable",
    "truncate_output_at",
    "operations",
    "next",
    "matches",
    "started_at",
    "stopped_at",
    "reason",
    "runtime_path",
    "verbose",
    "init_pid",
    "cpu",
    "memory",
    "total",
];

const STRINGS: &[&str] = &[
    "",
    "SUCCESS",
    "FAILED",
    "CANCELLED",
    "EXECUTING",
    "PENDING",
    "ASSIGNED",
    "instance",
    "image_import",
    "ascii",
    "base64",
    "utf-8",
    "stdout",
    "stderr",
    "exit",
    "completion",
    "spawn",
    "init",
    "shutdown",
    "truncated",
    "stdin",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.123456789Z",
    "not a date",
    "00000000-0000-4000-8000-000000000000",
    "tag:x",
    "aGkK",
    "aGk",
    "!!",
    "é",
    "1e400",
    "-0",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Every model, parsed from `text`: no panic; what parses serializes and parses again.
fn every_model(text: &[u8]) -> Result<(), TestCaseError> {
    macro_rules! each {
        ($($t:ty),* $(,)?) => {$(
            if let Ok(model) = serde_json::from_slice::<$t>(text) {
                let json = serde_json::to_vec(&model).expect(concat!(stringify!($t), " serializes"));
                let again = serde_json::from_slice::<$t>(&json);
                prop_assert!(again.is_ok(), "{} does not re-parse its own JSON {}: {:?}", stringify!($t), String::from_utf8_lossy(&json), again.err());
            }
        )*};
    }
    each!(
        ClosableStreamRepr,
        DirectoryList,
        ErrorBody,
        EventDataCompletion,
        EventDataExit,
        EventDataInit,
        EventDataNetwork,
        EventDataShutdown,
        EventDataSizeCap,
        EventDataSpawn,
        EventDataTruncated,
        EventResources,
        ExecSpec,
        FileInfo,
        FileItem,
        FileResponse,
        FileSpec,
        FilesListResponse,
        GrepMatch,
        GrepResult,
        GrepSubmatch,
        Image,
        ImageImportMetadata,
        ImageImportRequest,
        ImageImportResponse,
        ImageListResponse,
        ImageRegistry,
        InstanceNetworking,
        InstanceResources,
        InstanceResourcesLimits,
        InstanceResult,
        InstanceSpawnRequest,
        InstanceSpawnResponse,
        InstanceState,
        NameOrId,
        NetworkConfigured,
        NetworkInterface,
        OperationEvent,
        OperationInstanceMetadata,
        OperationResponse,
        OperationResult,
        OperationSummary,
        RegistryCredentials,
        StreamRepr,
        SubprocessCreated,
        TagRequest,
        WhoAmIResponse,
    );
    // What the clients do with two of them next.
    if let Ok(event) = serde_json::from_slice::<OperationEvent>(text) {
        match event.payload() {
            EventPayload::Stdout(s) | EventPayload::Stderr(s) => {
                let _ = s.to_bytes();
            }
            _ => {}
        }
    }
    if let Ok(op) = serde_json::from_slice::<OperationResponse>(text) {
        let _ = contree_core::RunOutput::from_operation(&op, vec!["cmd".into()]);
    }
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(text) {
        let _ = body.message();
    }
    Ok(())
}

#[test]
fn fuzz_json_models_arbitrary_bytes() {
    fuzz("json: every model, arbitrary bytes", bytes(2048), |input| every_model(&input));
}

#[test]
fn fuzz_json_models_structured() {
    fuzz("json: every model, generated JSON", json_value(), |value| {
        every_model(&serde_json::to_vec(&value).expect("a Value serializes"))
    });
}

/// Valid documents the server sends, one per shape that matters, to mutate from.
const SEEDS: &[&str] = &[
    r#"{"uuid":"22222222-2222-4222-8222-222222222222","kind":"instance","status":"SUCCESS","error":null,"created_at":"2026-01-01T00:00:00Z","duration":0.75,"image_uuid":"11111111-1111-4111-8111-111111111111","result_image_uuid":"33333333-3333-4333-8333-333333333333","metadata":{"command":"cmd","image":"11111111-1111-4111-8111-111111111111","result":{"resources":{"elapsed_time":0.25,"max_rss":2048,"user_cpu_time":0.125,"cost":0.5},"state":{"exit_code":0,"pid":7,"signal":-1,"timed_out":false},"stdout":{"value":"aGkK","encoding":"base64","truncated":false},"stderr":{"value":"oops\n","encoding":"ascii"}}},"result":{"image":"33333333-3333-4333-8333-333333333333","tag":null}}"#,
    r#"{"id":3,"ts":"2026-01-01T00:00:00.000Z","type":"stdout","spid":1,"data":{"value":"b25lCg==","encoding":"base64"}}"#,
    r#"{"id":4,"ts":"2026-01-01T00:00:00.000Z","type":"exit","spid":1,"data":{"pid":7,"code":3,"signal":-1,"timed_out":false,"duration_ms":250,"resources":{}}}"#,
    r#"{"id":5,"ts":"2026-01-01T00:00:00.000Z","type":"completion","data":{"status":"FAILED","duration_ms":750,"result_image_uuid":null,"error":"server restarted"}}"#,
    r#"{"id":1,"ts":"2026-01-01T00:00:00.000Z","type":"init","spid":0,"data":{"started_at":"t","runtime_path":"/r","verbose":false,"init_pid":1}}"#,
    r#"{"id":2,"ts":"2026-01-01T00:00:00.000Z","type":"spawn","spid":1,"data":{"pid":7,"command":"x","args":["a"],"shell":false,"cwd":"/","uid":0,"gid":0,"timeout":5,"truncate_at":10}}"#,
    r#"{"images":[{"uuid":"11111111-1111-4111-8111-111111111111","tag":"ubuntu:latest","created_at":"2026-01-01T00:00:00Z"}]}"#,
    r#"{"uuid":"44444444-4444-4444-8444-444444444444","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#,
    r#"{"error":"image not found","status":404}"#,
    r#"{"detail":[{"loc":["body","command"],"msg":"field required","type":"value_error.missing"}]}"#,
];

/// Replaces the node reached by `path` (each step picks a child, modulo the count) with
/// `with`, or removes it from its object when `remove` is set.
fn mutate(value: &mut Value, path: &[usize], with: Value, remove: bool) {
    let Some((&step, rest)) = path.split_first() else {
        *value = with;
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().expect("a key");
            if rest.is_empty() && remove {
                map.remove(&key);
            } else if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, with, remove);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, with, remove)
        }
        other => *other = with,
    }
}

#[test]
fn fuzz_json_models_mutated_from_valid_documents() {
    // The seeds are valid: mutations start from what parses.
    assert!(serde_json::from_str::<OperationResponse>(SEEDS[0]).is_ok());
    for seed in &SEEDS[1..6] {
        assert!(serde_json::from_str::<OperationEvent>(seed).is_ok(), "{seed}");
    }
    assert!(serde_json::from_str::<ImageListResponse>(SEEDS[6]).is_ok());
    assert!(serde_json::from_str::<FileResponse>(SEEDS[7]).is_ok());
    fuzz(
        "json: every model, mutated valid documents",
        (
            0..SEEDS.len(),
            proptest::collection::vec(
                (proptest::collection::vec(any::<usize>(), 0..6), json_value(), any::<bool>()),
                1..4,
            ),
            any::<bool>(),
        ),
        |(seed, mutations, truncate)| {
            let mut doc: Value = serde_json::from_str(SEEDS[seed]).expect("seed");
            for (path, with, remove) in mutations {
                mutate(&mut doc, &path, with, remove);
            }
            let mut text = serde_json::to_vec(&doc).expect("a Value serializes");
            if truncate {
                text.truncate(text.len() / 2);
            }
            every_model(&text)
        },
    );
}
