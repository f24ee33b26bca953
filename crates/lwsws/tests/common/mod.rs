//! Helpers shared by the process-level tests: the binary's path, running
//! `--check`, and a small HTTP client that reports statuses as they are
//! (no redirects followed, 4xx/5xx not turned into errors).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use lwsws_testkit::{ConfigDir, run};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The `lwsws` binary cargo built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lwsws"))
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `lwsws --check -c DIR`.
pub fn check(dir: &ConfigDir) -> Output {
    run(bin(), &["--check", "-c", dir.path().to_str().unwrap()])
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A minimal vhost on `port` serving `dir` at `/`.
pub fn vhost(name: &str, port: u16, dir: &Path) -> String {
    format!(
        r#"{{ "vhosts": [{{ "name": "{name}", "port": "{port}",
            "mounts": [{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}] }}] }}"#,
        dir.display()
    )
}

/// An HTTP response as the tests look at it.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `url` with extra request headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.body_mut().read_to_vec().unwrap();
    Reply {
        status,
        headers,
        body,
    }
}
