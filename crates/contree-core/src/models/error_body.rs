//! The JSON body of every 4xx/5xx answer. Spec `Error`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An API error body: `{"error": str | object | [object], "status"?: int, "traceback"?: [str]}`.
///
/// ```
/// use contree_core::models::ErrorBody;
/// let body = ErrorBody::from_bytes_lenient(br#"{"error": "operation is not cancellable", "status": 409}"#);
/// assert_eq!(body.message(), "operation is not cancellable");
/// assert_eq!(body.status, Some(409));
///
/// // A proxy's HTML page is kept as text.
/// assert_eq!(ErrorBody::from_bytes_lenient(b"<h1>Bad Gateway</h1>").message(), "<h1>Bad Gateway</h1>");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Error message, or structured validation errors (an object or an array of objects).
    pub error: Value,
    /// The HTTP status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Server-side traceback lines (debug deployments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<Vec<String>>,
}

/// Raw bodies longer than this are cut in [`ErrorBody::from_bytes_lenient`]: error pages from
/// proxies can be large and the message ends up in logs.
const MAX_RAW_MESSAGE: usize = 2048;

impl ErrorBody {
    /// A body with a plain-text message and a status, as a server sends it.
    pub fn new(message: impl Into<String>, status: u16) -> Self {
        ErrorBody { error: Value::String(message.into()), status: Some(status), traceback: None }
    }

    /// Parses an error response body. A body that is not JSON or lacks `error` (a proxy page,
    /// another framework's shape) becomes a body whose `error` is the text itself, trimmed and
    /// cut to a bounded length. Never fails.
    pub fn from_bytes_lenient(body: &[u8]) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return parsed;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = match text.char_indices().nth(MAX_RAW_MESSAGE) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        ErrorBody { error: Value::String(message), status: None, traceback: None }
    }

    /// The error as one line of text: the string itself, or compact JSON for structured
    /// errors; empty for `null`.
    pub fn message(&self) -> String {
        match &self.error {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// Whether `error` is structured (an object or array) rather than a message.
    pub fn is_structured(&self) -> bool {
        matches!(self.error, Value::Object(_) | Value::Array(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_string_error_with_status() {
        let e: ErrorBody =
            serde_json::from_value(json!({"status": 410, "error": "operation finished; events not yet durable"}))
                .unwrap();
        assert_eq!(e.message(), "operation finished; events not yet durable");
        assert_eq!(e.status, Some(410));
        assert!(!e.is_structured());
    }

    #[test]
    fn structured_errors_render_as_json() {
        let e: ErrorBody = serde_json::from_value(json!({
            "error": [{"loc": ["body", "command"], "msg": "field required"}],
            "traceback": ["line 1", "line 2"], "extra": 1
        }))
        .unwrap();
        assert!(e.is_structured());
        assert_eq!(e.status, None);
        assert_eq!(e.traceback.as_ref().unwrap().len(), 2);
        let msg = e.message();
        assert!(msg.contains("field required"), "{msg}");
        let obj: ErrorBody = serde_json::from_value(json!({"error": {"tag": "invalid"}})).unwrap();
        assert_eq!(obj.message(), r#"{"tag":"invalid"}"#);
    }

    #[test]
    fn lenient_parsing_falls_back_to_text() {
        assert_eq!(ErrorBody::from_bytes_lenient(b"  upstream timeout \n").message(), "upstream timeout");
        // JSON without `error` is kept as text too, so nothing is lost.
        assert_eq!(ErrorBody::from_bytes_lenient(br#"{"detail":"x"}"#).message(), r#"{"detail":"x"}"#);
        assert_eq!(ErrorBody::from_bytes_lenient(b"").message(), "");
        assert_eq!(ErrorBody::from_bytes_lenient(&[0xff, b'a']).message(), "\u{fffd}a");
        let long = "x".repeat(10_000);
        let cut = ErrorBody::from_bytes_lenient(long.as_bytes()).message();
        assert_eq!(cut.chars().count(), MAX_RAW_MESSAGE + 1);
    }

    #[test]
    fn server_side_constructor() {
        assert_eq!(
            serde_json::to_value(ErrorBody::new("no route", 404)).unwrap(),
            json!({"error": "no route", "status": 404})
        );
    }
}
