//! [`Lwsws`]: a server under test. It runs `BIN -c DIR ARGS…` in a process
//! group of its own, with stdout and stderr captured in a log file, waits until
//! every listener it should open accepts connections ([`Ready`]), and on drop
//! kills the whole group (supervisor, workers, CGI programs) and reaps the
//! main process, so a failing test leaves nothing running. [`Launch`] is the
//! builder behind the `start*` shortcuts, for environment variables and
//! timeouts. One-shot runs are in `run.rs`.

use std::fs::{self, File};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use tempfile::TempDir;

use crate::run::{kill_group, pid_of, spawn};
use crate::{ConfigDir, POLL_INTERVAL, START_TIMEOUT, STOP_TIMEOUT, group_members};

/// Something the server must accept connections on before a test goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// A TCP connect to `127.0.0.1:PORT` succeeds.
    Tcp(u16),
    /// A TCP connect to `[::1]:PORT` succeeds.
    Tcp6(u16),
    /// A connect to the Unix socket at this path succeeds.
    Unix(PathBuf),
}

impl Ready {
    /// Tries one connection; the connection is closed again at once.
    fn accepts(&self) -> bool {
        // Loopback refuses at once when nothing listens; the timeout only
        // matters when a listener exists but its backlog is full.
        let timeout = Duration::from_secs(1);
        match self {
            Ready::Tcp(port) => {
                TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, *port)), timeout)
                    .is_ok()
            }
            Ready::Tcp6(port) => {
                TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, *port)), timeout)
                    .is_ok()
            }
            Ready::Unix(path) => UnixStream::connect(path).is_ok(),
        }
    }
}

/// How to start a server under test: the binary, its configuration directory,
/// extra arguments and environment, and what to wait for.
#[derive(Debug, Clone)]
pub struct Launch {
    bin: PathBuf,
    conf_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready: Vec<Ready>,
    start_timeout: Duration,
}

impl Launch {
    /// `bin -c conf_dir`, waiting for nothing, with [`START_TIMEOUT`].
    ///
    /// `conf_dir` is usually a [`ConfigDir`]'s path, but may be any
    /// directory, such as the repository's `etc/lwsws`.
    pub fn new(bin: &Path, conf_dir: &Path) -> Self {
        Launch {
            bin: bin.to_path_buf(),
            conf_dir: conf_dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            ready: Vec::new(),
            start_timeout: START_TIMEOUT,
        }
    }

    /// Appends arguments after `-c DIR`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Sets an environment variable of the server (on top of the test's own
    /// environment and `NO_COLOR=1`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a listener that must accept connections before `start` returns.
    pub fn wait_for(mut self, ready: Ready) -> Self {
        self.ready.push(ready);
        self
    }

    /// How long `start` waits for every [`Ready`] before it panics.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the server and waits until it is ready. Panics, with the
    /// server's log, if it exits first or is not ready in time (the process
    /// group is killed on the way out).
    pub fn start(self) -> Lwsws {
        let log_dir = tempfile::Builder::new()
            .prefix("lwsws-log-")
            .tempdir()
            .expect("create temporary log dir");
        let log_path = log_dir.path().join("lwsws.log");
        let log = File::create(&log_path).expect("create server log file");

        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&self.conf_dir)
            .args(&self.args)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // Both streams share one open file, so their lines interleave in
            // the order they were written.
            .stdout(log.try_clone().expect("dup server log file"))
            .stderr(log)
            // A group of its own: signals and the final SIGKILL reach every
            // process the server starts, and none of the test runner's.
            .process_group(0);

        let command = format!(
            "{} -c {} {}",
            self.bin.display(),
            self.conf_dir.display(),
            self.args.join(" ")
        );
        let mut server = Lwsws {
            child: spawn(&mut cmd),
            status: None,
            log_path,
            _log_dir: log_dir,
            command,
            bin: self.bin.clone(),
            conf_dir: self.conf_dir.clone(),
        };
        // From here on a panic drops `server`, which kills its group.
        server.wait_ready(&self.ready, self.start_timeout);
        crate::corpus::record(&self.conf_dir);
        server
    }
}

/// A running server under test. Dropping it kills its process group.
#[derive(Debug)]
pub struct Lwsws {
    /// The main process (the supervisor); its pid is also the process group id.
    child: Child,
    /// Its exit status once it has been reaped; after that `child` must not be
    /// waited for again and its pid may belong to someone else.
    status: Option<ExitStatus>,
    /// Where stdout and stderr go; inside `_log_dir`.
    log_path: PathBuf,
    /// Keeps the log file's directory alive as long as the server value.
    _log_dir: TempDir,
    /// The command line, for panic messages.
    command: String,
    /// The binary and its configuration directory, to record reloaded
    /// configurations in the corpus.
    bin: PathBuf,
    conf_dir: PathBuf,
}

impl Lwsws {
    /// Starts `bin -c CONF EXTRA_ARGS…` and waits until `127.0.0.1:PORT`
    /// accepts connections for every port in `ports`.
    pub fn start(bin: &Path, conf: &ConfigDir, extra_args: &[&str], ports: &[u16]) -> Lwsws {
        let ready: Vec<Ready> = ports.iter().map(|&port| Ready::Tcp(port)).collect();
        Self::start_with(bin, conf, extra_args, &ready)
    }

    /// Like [`Lwsws::start`], waiting for Unix sockets instead of ports.
    pub fn start_unix(
        bin: &Path,
        conf: &ConfigDir,
        extra_args: &[&str],
        socket_paths: &[&Path],
    ) -> Lwsws {
        let ready: Vec<Ready> = socket_paths
            .iter()
            .map(|path| Ready::Unix(path.to_path_buf()))
            .collect();
        Self::start_with(bin, conf, extra_args, &ready)
    }

    /// Like [`Lwsws::start`], waiting for any mix of listeners.
    pub fn start_with(bin: &Path, conf: &ConfigDir, extra_args: &[&str], ready: &[Ready]) -> Lwsws {
        ready
            .iter()
            .cloned()
            .fold(
                Launch::new(bin, conf.path()).args(extra_args),
                Launch::wait_for,
            )
            .start()
    }

    /// The main process's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The live processes of the server's process group (main process,
    /// workers, CGI programs…), zombies excluded.
    pub fn group_members(&self) -> Vec<u32> {
        group_members(self.pid())
    }

    /// The path of the file that captures stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What the server has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until the log contains `needle`; false if `timeout` passes first.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.log().contains(needle))
    }

    /// Sends `sig` to the main process only (as `systemctl reload` and
    /// `kill -HUP $MAINPID` do). Panics if it no longer exists.
    pub fn signal(&self, sig: Signal) {
        assert!(
            self.status.is_none(),
            "cannot send {sig} to `{}`: it has exited",
            self.command
        );
        kill(pid_of(&self.child), sig)
            .unwrap_or_else(|e| panic!("send {sig} to `{}`: {e}", self.command));
        // A reload reads the directory again: what lwsws would accept of it
        // belongs in the corpus.
        if sig == Signal::SIGHUP && crate::corpus::enabled() {
            crate::corpus::record_if_accepted(&self.bin, &self.conf_dir);
        }
    }

    /// Waits up to `timeout` for the main process to exit and returns its
    /// status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.try_status().is_some());
        self.status
    }

    /// Stops the server: SIGTERM to its process group, then after
    /// [`STOP_TIMEOUT`] SIGKILL. Returns the main process's exit status (at
    /// once if it has already exited).
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = killpg(pid_of(&self.child), Signal::SIGTERM);
        if let Some(status) = self.wait_exit(STOP_TIMEOUT) {
            return status;
        }
        kill_group(&self.child);
        let status = self.child.wait().expect("wait for killed server");
        self.status = Some(status);
        status
    }

    /// The exit status if the main process has exited (reaping it).
    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on server");
        }
        self.status
    }

    fn wait_ready(&mut self, ready: &[Ready], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&Ready> = ready.iter().collect();
        loop {
            // Exit first: a port that accepts while our server is dead belongs
            // to someone else.
            if let Some(status) = self.try_status() {
                self.fail_start(&format!("it exited with {status} before it was ready"));
            }
            pending.retain(|r| !r.accepts());
            if pending.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail_start(&format!(
                    "not ready after {timeout:?}: waiting for {pending:?}"
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn fail_start(&self, reason: &str) -> ! {
        panic!(
            "starting `{}` failed: {reason}\n--- log ({}) ---\n{}--- end of log ---",
            self.command,
            self.log_path.display(),
            self.log()
        );
    }
}

impl Drop for Lwsws {
    fn drop(&mut self) {
        // Once the main process is reaped and its group has no live member,
        // the group id may be handed to an unrelated process: leave it alone.
        if self.status.is_none() || !self.group_members().is_empty() {
            kill_group(&self.child);
        }
        if self.status.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// Calls `done` every [`POLL_INTERVAL`] until it returns true (true) or
/// `timeout` passes (false).
fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    //! The real binary is not needed here: small shell scripts stand in for it.
    //! Each is called as `SCRIPT -c DIR ARG…` like lwsws and uses `python3` for
    //! a listening socket.

    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::free_port;

    /// Logs its arguments, leaves a `sleep` behind in its group, and serves
    /// HTTP on the port given as its first extra argument.
    const FAKE_HTTP: &str = r#"#!/bin/sh
echo "fake-lwsws $*" >&2
sleep 1000 &
exec python3 -u -m http.server "$3" --bind 127.0.0.1
"#;

    /// Like `FAKE_HTTP`, but the shell stays as the main process with the
    /// server as its child, and logs SIGHUP.
    const FAKE_SUPERVISOR: &str = r#"#!/bin/sh
trap 'echo got-hup >&2' HUP
echo "env=$LWSWS_TEST_VALUE" >&2
python3 -u -m http.server "$3" --bind 127.0.0.1 &
while kill -0 $! 2>/dev/null; do wait $!; done
"#;

    /// Listens on the Unix socket given as its first extra argument.
    const FAKE_UNIX: &str = r#"#!/bin/sh
exec python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
time.sleep(1000)' "$3"
"#;

    /// Fails like a bad configuration.
    const FAKE_BAD_CONFIG: &str = r#"#!/bin/sh
echo "lwsws: conf:3:5: unknown key \"prot\" (did you mean \"port\"?)" >&2
exit 1
"#;

    fn script(conf: &ConfigDir, name: &str, text: &str) -> PathBuf {
        let path = conf.write_file(&format!("bin/{name}"), text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
        match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .unwrap_or_default(),
        }
    }

    const SETTLE: Duration = Duration::from_secs(5);

    #[test]
    fn start_waits_until_listening_and_stop_ends_the_group() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-http", FAKE_HTTP);
        let port = free_port();
        let mut server = Lwsws::start(&bin, &conf, &[&port.to_string()], &[port]);

        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let expected = format!("fake-lwsws -c {} {port}", conf.path().display());
        assert!(server.wait_for_log(&expected, SETTLE), "{}", server.log());
        let pgid = server.pid();
        assert!(group_members(pgid).len() >= 2, "python and sleep");

        let status = server.stop();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(poll_until(SETTLE, || group_members(pgid).is_empty()));
        // A second stop returns the same status without signalling anyone.
        assert_eq!(server.stop(), status);
    }

    #[test]
    fn drop_kills_the_whole_process_group() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-http", FAKE_HTTP);
        let port = free_port();
        let server = Lwsws::start(&bin, &conf, &[&port.to_string()], &[port]);
        let pgid = server.pid();
        let members = server.group_members();
        assert!(members.len() >= 2, "python and sleep: {members:?}");

        drop(server);
        assert!(
            poll_until(SETTLE, || group_members(pgid).is_empty()),
            "left running: {:?}",
            group_members(pgid)
        );
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }

    #[test]
    fn drop_kills_children_left_behind_by_an_exited_main_process() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-supervisor", FAKE_SUPERVISOR);
        let port = free_port();
        let mut server = Launch::new(&bin, conf.path())
            .args(&[&port.to_string()])
            .env("LWSWS_TEST_VALUE", "from-launch")
            .wait_for(Ready::Tcp(port))
            .start();
        assert!(server.wait_for_log("env=from-launch", SETTLE));

        server.signal(Signal::SIGHUP);
        assert!(server.wait_for_log("got-hup", SETTLE), "{}", server.log());

        // SIGTERM to the main process alone: its child keeps serving.
        server.signal(Signal::SIGTERM);
        let status = server.wait_exit(SETTLE).expect("main process exits");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        let pgid = server.pid();
        assert!(!group_members(pgid).is_empty());
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();

        drop(server);
        assert!(poll_until(SETTLE, || group_members(pgid).is_empty()));
    }

    #[test]
    fn start_unix_waits_for_the_socket() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-unix", FAKE_UNIX);
        let socket = conf.path().join("lwsws.sock");
        let server = Lwsws::start_unix(&bin, &conf, &[socket.to_str().unwrap()], &[&socket]);
        UnixStream::connect(&socket).unwrap();
        assert!(server.group_members().contains(&server.pid()));
    }

    #[test]
    fn start_panics_with_the_log_when_the_server_exits() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-bad-config", FAKE_BAD_CONFIG);
        let port = free_port();
        let payload = catch_unwind(AssertUnwindSafe(|| {
            Lwsws::start(&bin, &conf, &[], &[port]);
        }))
        .unwrap_err();
        let message = panic_message(payload);
        assert!(message.contains("exited with exit status: 1"), "{message}");
        assert!(message.contains("did you mean \"port\""), "{message}");
    }

    #[test]
    fn start_panics_and_cleans_up_when_not_ready_in_time() {
        let conf = ConfigDir::new();
        let bin = script(&conf, "fake-http", FAKE_HTTP);
        let (port, never) = (free_port(), free_port());
        let payload = catch_unwind(AssertUnwindSafe(|| {
            Launch::new(&bin, conf.path())
                .args(&[&port.to_string()])
                .wait_for(Ready::Tcp(never))
                .start_timeout(Duration::from_millis(300))
                .start();
        }))
        .unwrap_err();
        let message = panic_message(payload);
        assert!(message.contains("not ready after"), "{message}");
        assert!(message.contains(&format!("Tcp({never})")), "{message}");
        // The panic dropped the server: nothing listens on its port any more.
        assert!(poll_until(SETTLE, || TcpStream::connect((
            Ipv4Addr::LOCALHOST,
            port
        ))
        .is_err()));
    }
}
