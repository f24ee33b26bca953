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

// ---- Added for the HTTP engine tests (`http_*.rs`) ----

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The longest a raw socket read may block before a test gives up: a
/// liveness bound, not a timing expectation.
pub const IO_DEADLINE: Duration = Duration::from_secs(20);

/// `curl -sS ARGS…` with the response head and body captured separately
/// (redirects are not followed, statuses are kept as they are). Panics if
/// curl itself fails (connection refused, reset, malformed response).
pub fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read(&head).unwrap();
    // Interim responses (100 Continue) come first: keep the last head.
    let head = String::from_utf8_lossy(&head).into_owned();
    let last = head
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or_else(|| panic!("curl {args:?}: no response head in {head:?}"))
        .to_owned();
    let (status, headers) = parse_head(&last);
    Reply {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

/// Parses `HTTP/1.1 200 OK\r\nName: value\r\n…` (without the blank line).
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    (status, headers)
}

/// A TCP connection to `127.0.0.1:port` whose reads give up after
/// [`IO_DEADLINE`].
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s
}

/// Sends `request` as it is on a new connection and returns every byte the
/// server sends until it closes the connection. Panics if the server keeps
/// the connection open longer than [`IO_DEADLINE`] without sending anything.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = connect(port);
    s.write_all(request).unwrap();
    read_to_close(&mut s)
}

/// Reads until the peer closes the connection (EOF or reset).
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "connection not closed by the server ({e}); received so far: {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads one HTTP/1 response from `r`. `head_only` is true for the answer to
/// a HEAD request, which has no body whatever its headers say. A body
/// without Content-Length or chunked framing runs to the end of the stream.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> Reply {
    let mut head = String::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "connection closed inside a response head: {head:?}");
        if line == b"\r\n" {
            break;
        }
        head.push_str(&String::from_utf8_lossy(&line));
    }
    let (status, headers) = parse_head(head.trim_end());
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 304 || status == 204 || (100..200).contains(&status) {
        return reply;
    }
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let hex = size.trim().split(';').next().unwrap_or_default();
            let n = usize::from_str_radix(hex, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size:?}"));
            if n == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t).unwrap();
                    if t == "\r\n" || t.is_empty() {
                        return reply;
                    }
                }
            }
            let start = reply.body.len();
            reply.body.resize(start + n, 0);
            r.read_exact(&mut reply.body[start..]).unwrap();
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).unwrap();
            assert_eq!(&crlf, b"\r\n", "chunk not followed by CRLF");
        }
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().unwrap();
        reply.body.resize(len, 0);
        r.read_exact(&mut reply.body).unwrap();
    } else {
        r.read_to_end(&mut reply.body).unwrap();
    }
    reply
}

/// Every response in `bytes` (what a connection carried until it closed),
/// for requests that were not HEAD.
pub fn parse_responses(bytes: &[u8]) -> Vec<Reply> {
    let mut r = std::io::BufReader::new(bytes);
    let mut out = Vec::new();
    while !r.fill_buf().unwrap().is_empty() {
        out.push(read_response(&mut r, false));
    }
    out
}

// ---- Added for the CGI tests (`cgi_*.rs`) ----

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

/// Copies the CGI fixture `tests/fixtures/cgi/NAME` to `DIR/REL` and makes
/// it executable (0755). Returns the copy's absolute path.
pub fn install_cgi(dir: &ConfigDir, rel: &str, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cgi")
        .join(name);
    let text = std::fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let path = dir.write_file(rel, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Calls `done` every 20 ms until it returns true (true) or `timeout`
/// passes (false). For liveness bounds, never for timing expectations.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(state, ppid, pgrp)` of a process from `/proc/PID/stat`, or `None` if
/// there is no such process.
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Whether `pid` is a process that still runs code (exists, not a zombie).
pub fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

/// The zombie processes whose parent is `ppid`: children it has not reaped.
pub fn zombie_children(ppid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(s, p, _)| s == 'Z' && p == ppid))
        .collect()
}

/// The children of `ppid` that still run (not zombies).
pub fn live_children(ppid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(s, p, _)| s != 'Z' && s != 'X' && p == ppid))
        .collect()
}

/// A `kB` field (`VmRSS`, `VmHWM`, …) of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Process groups of CGI programs a test made lwsws start. CGI programs run
/// in groups of their own, so killing the server's group does not reach
/// them: whatever is still alive when this value is dropped is killed, so a
/// failing test leaves nothing running.
#[derive(Default)]
pub struct GroupReaper {
    pgids: std::sync::Mutex<Vec<u32>>,
}

impl GroupReaper {
    pub fn add(&self, pgid: u32) {
        self.pgids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
    }
}

impl Drop for GroupReaper {
    fn drop(&mut self) {
        let pgids = self.pgids.get_mut().unwrap_or_else(|e| e.into_inner());
        for &pgid in pgids.iter() {
            // A group with no live member may have had its id handed on.
            if !lwsws_testkit::group_members(pgid).is_empty()
                && let Ok(pgid) = i32::try_from(pgid)
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

// ---- Added for the reverse-proxy tests (`proxy_*.rs`) ----

pub mod proxy;

// ---- Added for the WebSocket tests (`ws_*.rs`) ----

pub mod ws;

/// The chat plugin's library, built by cargo into the target directory
/// this test runs from (works with CARGO_TARGET_DIR and either profile).
pub fn chat_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // TARGET/PROFILE/deps/ws_plugins-HASH
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let so = profile_dir.join("liblwsws_plugin_chat.so");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "lwsws-plugin-chat"])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target_dir);
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build -p lwsws-plugin-chat");
    assert!(
        out.status.success() || so.is_file(),
        "cargo build -p lwsws-plugin-chat failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.is_file(), "no {}", so.display());
    so
}
