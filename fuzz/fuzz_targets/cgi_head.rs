//! The CGI response header parser (SPEC §3.4): `cgi::parse_head` on the
//! bytes a CGI program writes before its body.
//!
//! Invariants: never panics; a parsed head carries no hop-by-hop header
//! (Connection, Transfer-Encoding, …) and no `Status` header, and its status,
//! if any, is a valid code; the decision `serve` takes from it (internal
//! redirect, 302, or the program's status) can be made.
#![no_main]

use http::{StatusCode, header};
use libfuzzer_sys::fuzz_target;
use lwsws_mounts::cgi::parse_head;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
];

fuzz_target!(|data: &[u8]| {
    let Ok(head) = parse_head(data) else {
        return;
    };
    for name in HOP_BY_HOP {
        assert!(!head.headers.contains_key(*name), "{name} passed on");
    }
    assert!(!head.headers.contains_key("status"), "Status passed on");
    if let Some(s) = head.status {
        assert!((100..1000).contains(&s.as_u16()));
    }
    // What `cgi::serve` does with it.
    let location = head.headers.get(header::LOCATION);
    let status = match (head.status, location) {
        (None, Some(l)) if l.to_str().is_ok_and(|l| l.starts_with('/')) => None,
        (None, Some(_)) => Some(StatusCode::FOUND),
        (s, _) => Some(s.unwrap_or(StatusCode::OK)),
    };
    if let Some(status) = status {
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = head.headers;
    }
});
