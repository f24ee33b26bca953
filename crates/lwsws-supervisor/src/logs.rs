//! Access log files, opened by the supervisor (so root-owned log
//! directories work) and handed to workers as descriptors.

use lwsws_config::Config;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// One open descriptor per distinct `access-log` path.
#[derive(Debug, Default)]
pub struct Logs {
    pub files: Vec<(PathBuf, Arc<File>)>,
}

/// A log file that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open access log {}: {source}", path.display())]
pub struct LogError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Logs {
    /// Opens every `access-log` of `config`, sharing the descriptors of
    /// `previous` for paths it already has open.
    pub fn open(config: &Config, previous: Option<&Logs>) -> Result<Logs, LogError> {
        let mut out = Logs::default();
        for path in config.vhosts.iter().filter_map(|v| v.access_log.as_ref()) {
            if out.files.iter().any(|(p, _)| p == path) {
                continue;
            }
            let kept = previous.and_then(|p| p.files.iter().find(|(q, _)| q == path));
            let file = match kept {
                Some((_, f)) => f.clone(),
                None => Arc::new(open_one(path)?),
            };
            out.files.push((path.clone(), file));
        }
        Ok(out)
    }

    /// Opens every path again (after logrotate moved the files away).
    /// Paths that fail keep their old descriptor; the error is logged.
    pub fn reopen(&mut self) -> Vec<(PathBuf, Arc<File>)> {
        let mut fresh = Vec::new();
        for (path, file) in &mut self.files {
            match open_one(path) {
                Ok(f) => {
                    *file = Arc::new(f);
                    fresh.push((path.clone(), file.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot reopen the access log"),
            }
        }
        fresh
    }
}

/// Creating, appending, mode 0640 (readable by the adm-style log group).
fn open_one(path: &std::path::Path) -> Result<File, LogError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError {
            path: path.to_path_buf(),
            source,
        })
}
