//! Byte payloads inside JSON: process output (`StreamRepr`) and stdin (`ClosableStreamRepr`).
//! Spec schemas `StreamRepr` and `ClosableStreamRepr`; the encoding rule is in [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::codec::{self, Encoding};
use crate::error::Result;

/// Captured bytes of a stream (stdout, stderr, or a stream event chunk). Spec `StreamRepr`.
///
/// ```
/// use contree_core::models::StreamRepr;
/// let out = StreamRepr::from_bytes(b"hi\n");
/// assert_eq!(out.to_bytes().unwrap(), b"hi\n");
/// let parsed: StreamRepr = serde_json::from_str(r#"{"value":"aGkK","encoding":"base64"}"#).unwrap();
/// assert_eq!(parsed.to_bytes().unwrap(), b"hi\n");
/// assert!(!parsed.is_truncated());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamRepr {
    /// Content of the stream, as text or base64 according to `encoding`.
    #[serde(default)]
    pub value: String,
    /// Encoding of the content (missing or unknown → ascii, see [`crate::codec`]).
    #[serde(default)]
    pub encoding: Encoding,
    /// Whether the output was truncated at `truncate_output_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

impl StreamRepr {
    /// Encodes `bytes` with the shared rule (ascii if printable, else base64); `truncated`
    /// stays unset.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (value, encoding) = codec::encode(bytes);
        StreamRepr { value, encoding, truncated: None }
    }

    /// Sets the `truncated` flag.
    pub fn with_truncated(mut self, truncated: bool) -> Self {
        self.truncated = Some(truncated);
        self
    }

    /// Decodes the payload. Fails with a decode error on invalid base64.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        codec::decode(&self.value, self.encoding)
    }

    /// Whether the server cut the stream (a missing flag means no).
    pub fn is_truncated(&self) -> bool {
        self.truncated.unwrap_or(false)
    }
}

/// Bytes to write to a process's stdin, and whether to close it after. Spec
/// `ClosableStreamRepr`.
///
/// Delivery to the process is never truncated. `close` defaults to `true` on the server
/// (EOF after `value`); `false` keeps the pipe open for
/// `POST /operations/{id}/subprocesses/{spid}/stdin`.
///
/// ```
/// use contree_core::models::ClosableStreamRepr;
/// let stdin = ClosableStreamRepr::from_bytes(b"data\n").keep_open();
/// assert_eq!(
///     serde_json::to_value(&stdin).unwrap(),
///     serde_json::json!({"value": "data\n", "encoding": "ascii", "close": false})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClosableStreamRepr {
    /// Content to write to stdin (may be empty for a close-only request).
    #[serde(default)]
    pub value: String,
    /// Encoding of the content; unset means ascii.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `true` (server default) closes stdin after writing; `false` keeps the pipe open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<bool>,
}

impl ClosableStreamRepr {
    /// Encodes `bytes` with the shared rule; the encoding is always sent explicitly and
    /// `close` is left to the server default (close).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (value, encoding) = codec::encode(bytes);
        ClosableStreamRepr { value, encoding: Some(encoding), close: None }
    }

    /// A request that writes nothing and closes the pipe (EOF).
    pub fn close_only() -> Self {
        ClosableStreamRepr { value: String::new(), encoding: None, close: Some(true) }
    }

    /// Keeps the pipe open after writing (`close: false`).
    pub fn keep_open(mut self) -> Self {
        self.close = Some(false);
        self
    }

    /// Sets the `close` flag explicitly.
    pub fn with_close(mut self, close: bool) -> Self {
        self.close = Some(close);
        self
    }

    /// Decodes the payload (an unset encoding is ascii). Fails on invalid base64.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        codec::decode(&self.value, self.encoding.unwrap_or_default())
    }

    /// Whether the pipe is closed after this write (unset means the server default, `true`).
    pub fn closes(&self) -> bool {
        self.close.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_repr_parses_spec_example_and_ignores_unknown_fields() {
        let s: StreamRepr = serde_json::from_value(json!({
            "value": "Y29tbWFuZCBvdXRwdXQK", "encoding": "base64", "truncated": false, "extra": 1
        }))
        .unwrap();
        assert_eq!(s.to_bytes().unwrap(), b"command output\n");
        assert_eq!(s.truncated, Some(false));
    }

    #[test]
    fn stream_repr_tolerates_missing_fields() {
        let s: StreamRepr = serde_json::from_value(json!({"value": "x"})).unwrap();
        assert_eq!(s.encoding, Encoding::Ascii);
        assert_eq!(s.truncated, None);
        let empty: StreamRepr = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty.to_bytes().unwrap(), b"");
    }

    #[test]
    fn stream_repr_serialization_omits_unset_truncated() {
        let v = serde_json::to_value(StreamRepr::from_bytes(&[0, 1])).unwrap();
        assert_eq!(v, json!({"value": "AAE=", "encoding": "base64"}));
        let v = serde_json::to_value(StreamRepr::from_bytes(b"ok").with_truncated(true)).unwrap();
        assert_eq!(v, json!({"value": "ok", "encoding": "ascii", "truncated": true}));
    }

    #[test]
    fn bad_base64_is_decode_error() {
        let s = StreamRepr { value: "%%%".into(), encoding: Encoding::Base64, truncated: None };
        assert!(s.to_bytes().unwrap_err().is_decode());
    }

    #[test]
    fn closable_defaults() {
        let c: ClosableStreamRepr = serde_json::from_value(json!({"value": "aGVsbG8K"})).unwrap();
        assert_eq!(c.encoding, None);
        assert!(c.closes());
        // No encoding means ascii: the value is taken as text.
        assert_eq!(c.to_bytes().unwrap(), b"aGVsbG8K");
        let c: ClosableStreamRepr =
            serde_json::from_value(json!({"value": "aGVsbG8K", "encoding": "base64", "close": false})).unwrap();
        assert_eq!(c.to_bytes().unwrap(), b"hello\n");
        assert!(!c.closes());
    }

    #[test]
    fn closable_serialization() {
        assert_eq!(
            serde_json::to_value(ClosableStreamRepr::close_only()).unwrap(),
            json!({"value": "", "close": true})
        );
        assert_eq!(
            serde_json::to_value(ClosableStreamRepr::from_bytes(&[0xff])).unwrap(),
            json!({"value": "/w==", "encoding": "base64"})
        );
    }

    proptest::proptest! {
        #[test]
        fn json_roundtrip_preserves_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let json = serde_json::to_string(&StreamRepr::from_bytes(&bytes)).unwrap();
            let back: StreamRepr = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back.to_bytes().unwrap(), bytes.clone());
            let json = serde_json::to_string(&ClosableStreamRepr::from_bytes(&bytes)).unwrap();
            let back: ClosableStreamRepr = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        }
    }
}
