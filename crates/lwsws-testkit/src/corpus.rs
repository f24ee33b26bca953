//! With `LWSWS_CONFIG_CORPUS=DIR` set, every configuration a test started
//! lwsws with (and lwsws accepted: it became ready) is copied to
//! `DIR/PID-N/` (`conf`, `conf.d-NAME`), so that `tests/run` can check that
//! the shipped JSON Schema accepts every configuration the parser accepts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Copies the configuration files of `conf_dir` into the corpus, if one is set.
pub(crate) fn record(conf_dir: &Path) {
    let Some(root) = std::env::var_os("LWSWS_CONFIG_CORPUS") else {
        return;
    };
    let dest = Path::new(&root).join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::create_dir_all(&dest).is_err() {
        return;
    }
    let _ = std::fs::copy(conf_dir.join("conf"), dest.join("conf"));
    if let Ok(entries) = std::fs::read_dir(conf_dir.join("conf.d")) {
        for e in entries.flatten() {
            if e.path().is_file() {
                let name = format!("conf.d-{}", e.file_name().to_string_lossy());
                let _ = std::fs::copy(e.path(), dest.join(name));
            }
        }
    }
}
