//! [`ConfigDir`]: a temporary directory laid out like `/etc/lwsws` (`conf`,
//! `conf.d/…`) plus whatever else a test needs beside it (document roots, CGI
//! programs, certificates). It is deleted when the value is dropped.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A temporary configuration directory, passed to the server as `-c DIR`.
#[derive(Debug)]
pub struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    /// Creates an empty directory under the system temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lwsws-conf-")
            .tempdir()
            .expect("create temporary config dir");
        ConfigDir { dir }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `DIR/conf`, replacing any earlier content.
    pub fn write_conf(&self, text: &str) {
        self.write_file("conf", text);
    }

    /// Writes `DIR/conf.d/NAME`, creating `conf.d/` if needed.
    pub fn write_conf_d(&self, name: &str, text: &str) {
        assert!(
            !name.contains('/'),
            "conf.d file name {name:?} must not contain '/'"
        );
        self.write_file(&format!("conf.d/{name}"), text);
    }

    /// Writes `DIR/REL` (creating its parent directories) and returns its
    /// absolute path.
    pub fn write_file(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Creates `DIR/REL` and its parents and returns its absolute path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        path
    }

    fn join(&self, rel: &str) -> PathBuf {
        let rel = Path::new(rel);
        assert!(
            rel.is_relative(),
            "{} must be relative to the config dir",
            rel.display()
        );
        self.path().join(rel)
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_conf_conf_d_and_nested_files() {
        let dir = ConfigDir::new();
        dir.write_conf("{ \"global\": {} }\n");
        dir.write_conf_d("localhost", "{ \"vhosts\": [] }\n");
        let cgi = dir.write_file("cgi-bin/hello.sh", b"#!/bin/sh\n");
        let www = dir.mkdir("www/sub");

        assert_eq!(
            fs::read_to_string(dir.path().join("conf")).unwrap(),
            "{ \"global\": {} }\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("conf.d/localhost")).unwrap(),
            "{ \"vhosts\": [] }\n"
        );
        assert_eq!(cgi, dir.path().join("cgi-bin/hello.sh"));
        assert!(cgi.is_absolute());
        assert_eq!(fs::read(&cgi).unwrap(), b"#!/bin/sh\n");
        assert!(www.is_dir());
    }

    #[test]
    fn is_removed_on_drop() {
        let dir = ConfigDir::new();
        let path = dir.path().to_path_buf();
        dir.write_conf("{}");
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    #[should_panic(expected = "must be relative")]
    fn rejects_absolute_paths() {
        ConfigDir::new().write_file("/etc/passwd", "x");
    }
}
