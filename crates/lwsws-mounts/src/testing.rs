//! Test helpers shared by the unit tests of this crate (the integration
//! tests in `tests/` have their own copy in `tests/common/mod.rs`).

use lwsws_config::{CachePolicy, Mount, Origin};
use std::time::Duration;

/// A file mount on `/` with every key at its default.
pub fn mount() -> Mount {
    Mount {
        mountpoint: "/".into(),
        origin: Origin::File("/nonexistent".into()),
        default: None,
        cache: CachePolicy::default(),
        extra_mimetypes: Vec::new(),
        serve_any_type: false,
        basic_auth: None,
        cgi_env: Vec::new(),
        cgi_timeout: Duration::from_secs(300),
        pmo: Vec::new(),
        max_body_size: None,
        proxy_ca: None,
        proxy_timeout: Duration::from_secs(60),
        protocol: None,
    }
}
