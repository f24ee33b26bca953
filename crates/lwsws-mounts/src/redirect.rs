//! Redirect mounts (`>https://host/path`): 301 to the origin plus the
//! remainder past the mountpoint and the query string (SPEC §3.3).

use crate::HttpError;
use http::{HeaderValue, StatusCode, header};

/// The 301 answer for a redirect mount with base URL `base`.
pub fn redirect(base: &str, remainder: &str, query: Option<&str>) -> HttpError {
    let mut target = base.trim_end_matches('/').to_string();
    target.push_str(if remainder.is_empty() { "/" } else { remainder });
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    match HeaderValue::from_str(&target) {
        Ok(v) => HttpError::new(StatusCode::MOVED_PERMANENTLY).with_header(header::LOCATION, v),
        Err(_) => HttpError::new(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(e: &HttpError) -> &str {
        e.headers[header::LOCATION].to_str().unwrap()
    }

    #[test]
    fn joins_like_proxy_mounts() {
        assert_eq!(location(&redirect("https://h/", "", None)), "https://h/");
        assert_eq!(
            location(&redirect("https://h", "/a/b", Some("x=1"))),
            "https://h/a/b?x=1"
        );
        assert_eq!(
            location(&redirect("https://h/app/", "/f", None)),
            "https://h/app/f"
        );
    }
}
