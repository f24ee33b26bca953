//! What a handler answers when it does not serve: a status plus the headers
//! that status needs (`Allow` for 405, `Location` for 301, …). The server
//! renders every `HttpError` as the same small HTML page.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// A refusal or failure, as the client will see it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}")]
pub struct HttpError {
    pub status: StatusCode,
    /// Headers that belong to this status (`Allow`, `Location`, `WWW-Authenticate`, …).
    pub headers: HeaderMap,
}

impl HttpError {
    pub fn new(status: StatusCode) -> Self {
        HttpError {
            status,
            headers: HeaderMap::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

impl From<StatusCode> for HttpError {
    fn from(status: StatusCode) -> Self {
        HttpError::new(status)
    }
}

impl From<std::io::Error> for HttpError {
    /// File-system errors: missing → 404, forbidden → 403, anything else → 500.
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        HttpError::new(match e.kind() {
            NotFound | NotADirectory => StatusCode::NOT_FOUND,
            PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
}
