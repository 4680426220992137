//! Bearer-token authentication for every route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The expected token, kept only as a digest so that comparing takes the same time whatever
/// the presented token is (length included), and so that the token itself is not kept in a
/// second place in memory.
#[derive(Clone)]
pub(crate) struct TokenCheck {
    digest: Arc<[u8; 32]>,
}

impl TokenCheck {
    pub fn new(token: &str) -> Self {
        TokenCheck { digest: Arc::new(Sha256::digest(token.as_bytes()).into()) }
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        let diff = d.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Rejects requests without the right bearer token with 401 `{error, status}`. The `Project`
/// header of IAM deployments is accepted and ignored.
pub(crate) async fn require_token(State(check): State<TokenCheck>, req: Request, next: Next) -> Response {
    let ok = req.headers().get(header::AUTHORIZATION).and_then(bearer).is_some_and(|t| check.matches(t));
    if !ok {
        let mut resp = ApiError::unauthorized().into_response();
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_compares() {
        let check = TokenCheck::new("s3cret");
        assert!(check.matches(b"s3cret"));
        assert!(!check.matches(b"s3cre"));
        assert!(!check.matches(b""));
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&HeaderValue::from_static("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer ")), None);
    }
}
