//! Test helpers shared by the unit tests of this crate (the integration
//! tests in `tests/` have their own copy in `tests/common/mod.rs`).

use lwsws_config::{Mount, Origin};

/// A file mount on `/` with every key at its default.
pub fn mount() -> Mount {
    Mount::new("/", Origin::File("/nonexistent".into()))
}
