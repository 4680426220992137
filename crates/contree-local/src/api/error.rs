//! Error responses: every failure is a JSON `{"error": "...", "status": N}` body with the
//! status code the spec gives for it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contree_core::models::ErrorBody;

/// A failed request, ready to be sent.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// Answer with `Connection: close`, so the client's idle keep-alive connection doesn't
    /// hold one of the server's descriptors while it waits to retry.
    close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after: None, close: false }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the `Authorization: Bearer <token>` header is missing or the token is invalid",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::GONE, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// An unexpected server-side failure. The detail is logged; the client gets it too, since
    /// this is a local development server and the detail never holds a secret.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Closes the connection after this answer (see the `close` field).
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.message, self.status.as_u16());
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<contree_core::Error> for ApiError {
    fn from(e: contree_core::Error) -> Self {
        use contree_core::ErrorKind as K;
        let status = match e.kind() {
            K::BadRequest | K::InvalidArgument | K::Decode => StatusCode::BAD_REQUEST,
            K::NotFound => StatusCode::NOT_FOUND,
            K::Conflict => StatusCode::CONFLICT,
            K::Gone => StatusCode::GONE,
            K::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return ApiError::internal(e.to_string());
        }
        ApiError::new(status, e.to_string())
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format!("I/O error: {e}"))
    }
}

/// The 404 answer for routes that don't exist, in the same JSON shape.
pub(crate) async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_has_error_and_status() {
        let resp = ApiError::conflict("operation is not cancellable").retry_after(3).into_response();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert!(resp.headers().get(header::CONNECTION).is_none());
        let closing = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy").close_connection().into_response();
        assert_eq!(closing.headers()[header::CONNECTION], "close");
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"error": "operation is not cancellable", "status": 409}));
    }

    #[test]
    fn core_errors_map_to_spec_statuses() {
        let e: ApiError = contree_core::Error::invalid_argument("limit", "must be 1..1000").into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("limit"));
        let e: ApiError = contree_core::Error::from_status(404, "nope", None).into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
