//! What the reverse-proxy tests (`proxy_*.rs`) share: upstream servers run
//! from the Python scripts in `tests/fixtures/proxy/` (each in a process
//! group of its own, killed when its [`Upstream`] is dropped, even by a
//! panic), the echo upstream's answer ([`Echo`]), a server with proxy mounts
//! ([`start_proxy`]) and its memory ([`rss_kib`]).

use super::{Reply, bin, exchange, parse_responses};
use lwsws_testkit::{ConfigDir, Lwsws};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Debian's interpreter, which sees the Debian-packaged `websockets`
/// (`python3-websockets` in `tests/run`) whichever `python3` comes first on
/// PATH.
pub const PYTHON: &str = "/usr/bin/python3";

/// How long an upstream may take to say it listens: a liveness bound.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/fixtures/proxy/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proxy")
        .join(name)
}

/// A running upstream: `python3 tests/fixtures/proxy/SCRIPT ARGS…`, which
/// prints `READY <port>` once it listens.
pub struct Upstream {
    child: Child,
    /// The TCP port it listens on on 127.0.0.1 (0 for a Unix socket).
    pub port: u16,
    /// Its stdout, kept open so that the script never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// Its stderr (the scripts' request log and tracebacks).
    log: tempfile::NamedTempFile,
}

impl Upstream {
    /// Starts the script and waits until it listens. Panics, with its
    /// stderr, if it does not say so within [`READY_TIMEOUT`].
    pub fn start(script: &str, args: &[&str]) -> Upstream {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(PYTHON)
            .arg(fixture(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {PYTHON} {script}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        let (line, stdout) = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => ready,
            Err(_) => {
                let _ = killpg(pid(&child), Signal::SIGKILL);
                let _ = child.wait();
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("{script} {args:?} not ready after {READY_TIMEOUT:?}\n{text}");
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok());
        // From here on a panic drops the value, which kills the script.
        let upstream = Upstream {
            child,
            port: port.unwrap_or(0),
            _stdout: stdout,
            log,
        };
        assert!(
            port.is_some(),
            "{script} {args:?} did not start: {line:?}\n{}",
            upstream.log()
        );
        upstream
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether the script still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the script has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(pid(&self.child), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// Writes a vhost `proxy.test` on `port` whose mounts are `mounts` (JSON
/// objects separated by commas) and starts lwsws with it. `global` is the
/// body of the `global` object (may be empty).
pub fn start_proxy(dir: &ConfigDir, port: u16, global: &str, mounts: &str) -> Lwsws {
    dir.write_conf(&format!(r#"{{ "global": {{ {global} }} }}"#));
    dir.write_conf_d(
        "proxy",
        &format!(
            r#"{{ "vhosts": [{{ "name": "proxy.test", "port": "{port}", "mounts": [ {mounts} ] }}] }}"#
        ),
    );
    Lwsws::start(bin(), dir, &[], &[port])
}

/// Sends `request` (which should ask for `Connection: close`) on a new
/// connection and returns the one response it gets.
pub fn raw(port: u16, request: &[u8]) -> Reply {
    let mut replies = parse_responses(&exchange(port, request));
    assert_eq!(replies.len(), 1, "expected exactly one response");
    replies.remove(0)
}

/// What the `echo` upstream saw of a request.
#[derive(Debug)]
pub struct Echo {
    pub method: String,
    /// The request target as the upstream received it.
    pub target: String,
    /// In order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Echo {
    /// Parses the echo upstream's answer, relayed in `reply`.
    pub fn parse(reply: &Reply) -> Echo {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let v: serde_json::Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("echo answer is not JSON ({e}): {}", reply.text()));
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}"));
        Echo {
            method: s("method").to_owned(),
            target: s("target").to_owned(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_owned(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            // latin-1: one char per byte.
            body: s("body")
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap())
                .collect(),
        }
    }

    /// Every value of the header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of the header `name`, if it was sent; panics if it
    /// was sent more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
        all.first().copied()
    }
}

/// The summed resident set (KiB) of the server's live processes.
pub fn rss_kib(server: &Lwsws) -> u64 {
    let members = server.group_members();
    assert!(!members.is_empty(), "no live server process");
    members
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Runs `fixtures/proxy/ws_client.py URL ACTION` and returns the JSON it
/// printed, or its stderr if it failed. The client gives up by itself
/// after 30 s.
pub fn ws_client(url: &str, action: &str) -> Result<serde_json::Value, String> {
    let out = Command::new(PYTHON)
        .arg(fixture("ws_client.py"))
        .args([url, action])
        .stdin(Stdio::null())
        .output()
        .expect("run ws_client.py");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}
