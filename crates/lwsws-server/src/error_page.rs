//! The one place where an [`HttpError`] becomes a response: a small HTML
//! page naming the status, plus the headers the status needs.

use http::{HeaderValue, Response, header};
use lwsws_mounts::{Body, HttpError};

/// The HTML error page for `e`.
pub(crate) fn render(e: HttpError) -> Response<Body> {
    let status = e.status;
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let page = if status.is_redirection() || status == http::StatusCode::NOT_MODIFIED {
        String::new()
    } else {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1></body></html>\n"
        )
    };
    let mut resp = Response::new(if page.is_empty() {
        Body::empty()
    } else {
        Body::full(page.clone())
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in e.headers.iter() {
        h.insert(k.clone(), v.clone());
    }
    if !page.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
