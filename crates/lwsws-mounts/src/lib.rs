//! Request handlers, one module per mount kind (`file`, `redirect`, `cgi`,
//! `proxy`; callback arrives with the WebSocket issue), plus `auth` for
//! basic auth.
//!
//! A handler receives the request head, the mount it matched and the
//! remainder of the path past the mountpoint, and returns a response with a
//! [`Body`] or an [`HttpError`]. It knows nothing of listeners or
//! connections: `lwsws-server` calls it after the router chose the mount,
//! and turns an `HttpError` into an error page in one place.

pub mod auth;
pub mod body;
pub mod cgi;
pub mod error;
pub mod file;
pub mod proxy;
pub mod redirect;

pub use body::Body;
pub use error::HttpError;

#[cfg(test)]
mod testing;
