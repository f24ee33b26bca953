//! A throwaway `redis-server` for the `ws-broadcast` tests (SPEC §6.6): one
//! per test, on a loopback port of its own, with its own working directory
//! and no persistence. [`RedisServer::stop`] kills it (an outage as the
//! server sees it: the connection drops); [`RedisServer::start`] on the same
//! port brings it back. Dropping the value kills the process, so a failing
//! test leaves nothing running.
//!
//! `redis-server` must be installed (CI installs the Debian package): a
//! missing binary fails the test, it does not skip it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started `redis-server` may take to answer PING: a liveness
/// bound.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The `redis-server` binary: `/usr/bin/redis-server` or the first one on
/// `PATH`. Panics with a clear message if there is none.
pub fn redis_server_bin() -> PathBuf {
    let usual = Path::new("/usr/bin/redis-server");
    if usual.is_file() {
        return usual.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found (neither /usr/bin/redis-server nor on PATH): \
                 the ws-broadcast tests need it; install the `redis-server` package"
            )
        })
}

/// A running (or stopped) `redis-server` on `127.0.0.1:port`.
pub struct RedisServer {
    port: u16,
    /// Working directory and log file; kept across restarts.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on `127.0.0.1:port` and waits until it answers
    /// PING.
    pub fn start(port: u16) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("lwsws-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut r = RedisServer {
            port,
            dir,
            child: None,
        };
        r.restart();
        r
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+unix:///DIR/redis.sock`: the same server on its Unix socket.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.socket_path().display())
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Runs one command (its words sent as a RESP array) on a new TCP
    /// connection and returns the reply's bytes as text.
    pub fn command(&self, words: &[&str]) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .unwrap_or_else(|e| panic!("connect to redis-server on {}: {e}", self.port));
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = format!("*{}\r\n", words.len());
        for w in words {
            req.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        // Replies here are small: read until the server pauses.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    s.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                }
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub fn subscribers(&self, channel: &str) -> u64 {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]);
        // *2 $LEN channel :N
        reply
            .lines()
            .find_map(|l| l.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB NUMSUB {channel}: {reply:?}"))
    }

    /// What the server logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and reaps it; its clients' connections
    /// drop at once. Nothing happens if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`Self::stop`]) and
    /// waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("open redis log");
        let child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(self.socket_path())
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup redis log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", redis_server_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "redis-server on port {} exited with {status} at start:\n{}",
                    self.port,
                    self.log()
                );
            }
            if self.answers_ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} does not answer PING after {START_TIMEOUT:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `PING` on a new connection gets `+PONG`.
    pub fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
