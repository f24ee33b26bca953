//! With `LWSWS_CONFIG_CORPUS=DIR` set, every configuration lwsws accepted
//! during a test — a server became ready with it, `--check` or
//! `--print-config` exited 0 on it, or a reload signalled with it passes
//! `--check` — is copied to `DIR/PID-N/` (`conf`, `conf.d-NAME`), so that
//! `tests/run` can check that the shipped JSON Schema accepts every
//! configuration the parser accepts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Whether a corpus is being collected.
pub(crate) fn enabled() -> bool {
    std::env::var_os("LWSWS_CONFIG_CORPUS").is_some()
}

/// The directory of `-c DIR` / `--config-dir DIR` in a successful run's
/// arguments, when the run read a configuration (`--check`, `--print-config`).
pub(crate) fn config_dir_of<'a>(args: &[&'a str]) -> Option<&'a str> {
    if !args
        .iter()
        .any(|a| matches!(*a, "--check" | "--print-config"))
    {
        return None;
    }
    args.windows(2)
        .find(|w| matches!(w[0], "-c" | "--config-dir"))
        .map(|w| w[1])
}

/// Runs `bin --check -c conf_dir` and records the directory if it passes;
/// never fails (the binary may be missing or broken on purpose).
pub(crate) fn record_if_accepted(bin: &Path, conf_dir: &Path) {
    let passed = std::process::Command::new(bin)
        .arg("--check")
        .arg("-c")
        .arg(conf_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if passed {
        record(conf_dir);
    }
}

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
            if e.path().is_file() && !lwsws_config::skipped_name(&e.file_name().to_string_lossy()) {
                let name = format!("conf.d-{}", e.file_name().to_string_lossy());
                let _ = std::fs::copy(e.path(), dest.join(name));
            }
        }
    }
}
