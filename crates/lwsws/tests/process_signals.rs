//! Signals to the supervisor (SPEC §4, issue 6): SIGTERM lets requests in
//! flight finish and closes WebSockets with 1001, a second SIGTERM exits at
//! once, `NOTIFY_SOCKET` gets the systemd notifications (and only the
//! supervisor sees it), SIGUSR1 reopens access logs after a rotation, `-D`
//! detaches and still stops cleanly, and a worker that dies while the
//! supervisor stops is not replaced.
//!
//! The supervisor is `crates/lwsws-supervisor/src/supervise.rs`, the worker
//! `crates/lwsws/src/worker.rs`. Slow requests are CGI shell scripts written
//! by each test; they record that they started in a state directory, so the
//! tests know a request is in flight without sleeping for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ws::Ws;
use common::{GroupReaper, alive, bin, connect, live_children, parse_responses, wait_until};
use lwsws_testkit::{ConfigDir, Launch, Lwsws, Ready, free_port, group_members};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A liveness bound for things that happen "soon" (a log line, a process
/// going away, a datagram arriving): never a performance expectation.
const SOON: Duration = Duration::from_secs(15);

/// SPEC §4: requests in flight finish within 10 s, then the exit; the bound
/// the tests allow from SIGTERM to the supervisor's exit.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Lines of the slow CGI program's body.
const SLOW_LINES: usize = 2000;

/// Writes an executable shell script at `DIR/cgi-bin/NAME`. It records its
/// start as `STATE/$QUERY_STRING.pid` (its pid, which is also its process
/// group), then runs `body`.
fn write_cgi(dir: &ConfigDir, name: &str, state: &Path, body: &str) -> PathBuf {
    let text = format!(
        "#!/bin/sh\n\
         echo $$ >\"{state}/$QUERY_STRING.tmp\"\n\
         mv \"{state}/$QUERY_STRING.tmp\" \"{state}/$QUERY_STRING.pid\"\n\
         {body}\n",
        state = state.display()
    );
    let path = dir.write_file(&format!("cgi-bin/{name}"), text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Sleeps 2 s, then answers 200 with [`SLOW_LINES`] lines naming the query.
const SLOW_BODY: &str = "sleep 2\n\
    printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
    i=0\n\
    while [ $i -lt 2000 ]; do echo \"$QUERY_STRING line $i\"; i=$((i+1)); done";

/// What [`SLOW_BODY`] answers for `query`.
fn slow_expected(query: &str) -> String {
    (0..SLOW_LINES)
        .map(|i| format!("{query} line {i}\n"))
        .collect()
}

/// A server on a fresh port: `/` files, `/slow` and `/stuck` (answers
/// after 60 s) CGI programs,
/// the echo WebSocket protocol, an access log, and `global` as the body of
/// the global section.
struct Site {
    dir: ConfigDir,
    port: u16,
    state: PathBuf,
    access_log: PathBuf,
    /// Kills the CGI programs' groups if the server did not.
    reaper: GroupReaper,
}

impl Site {
    fn new(global: &str) -> Site {
        let dir = ConfigDir::new();
        let port = free_port();
        let state = dir.mkdir("state");
        let www = dir.mkdir("www");
        std::fs::write(www.join("index.html"), "hello\n").unwrap();
        let logs = dir.mkdir("logs");
        let access_log = logs.join("access.log");
        let slow = write_cgi(&dir, "slow", &state, SLOW_BODY);
        let stuck = write_cgi(
            &dir,
            "stuck",
            &state,
            "sleep 60\nprintf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'",
        );
        dir.write_conf(&format!("{{ \"global\": {{ {global} }} }}\n"));
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                     "access-log": "{log}",
                     "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
                     "mounts": [
                       {{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }},
                       {{ "mountpoint": "/slow", "origin": "cgi://{slow}" }},
                       {{ "mountpoint": "/stuck", "origin": "cgi://{stuck}" }} ] }}] }}"#,
                log = access_log.display(),
                www = www.display(),
                slow = slow.display(),
                stuck = stuck.display(),
            ),
        );
        Site {
            dir,
            port,
            state,
            access_log,
            reaper: GroupReaper::default(),
        }
    }

    fn start(&self) -> Lwsws {
        Lwsws::start(bin(), &self.dir, &[], &[self.port])
    }

    /// Waits until the program for `query` has started; returns its pid
    /// (its process group, handed to the reaper).
    fn started(&self, query: &str, server: &Lwsws) -> u32 {
        let file = self.state.join(format!("{query}.pid"));
        assert!(
            wait_until(SOON, || file.exists()),
            "the CGI program for {query} did not start\n--- server log ---\n{}",
            server.log()
        );
        let pid: u32 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.reaper.add(pid);
        pid
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The pid of the worker of `generation`, from the supervisor's
/// `worker ready generation=N pid=P` line.
fn worker_pid(server: &Lwsws, generation: u64) -> u32 {
    let needle = format!("worker ready generation={generation} pid=");
    assert!(
        server.wait_for_log(&needle, SOON),
        "no `{needle}` in the log\n{}",
        server.log()
    );
    let log = server.log();
    let at = log.find(&needle).unwrap() + needle.len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// GET `path` on a new connection with `Connection: close`, in a thread;
/// the thread returns everything the server sent until it closed.
fn get_in_background(port: u16, path: &str) -> thread::JoinHandle<Vec<u8>> {
    let mut s = connect(port);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Asserts that the processes in `pids` are gone (zombies count as gone).
fn assert_gone(what: &str, pids: &[u32], log: &dyn Fn() -> String) {
    assert!(
        wait_until(SOON, || pids.iter().all(|&p| !alive(p))),
        "{what} still running: {:?}\n--- server log ---\n{}",
        pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>(),
        log()
    );
}

#[test]
fn sigterm_finishes_slow_requests_closes_websockets_with_1001_and_exits_0() {
    let site = Site::new("");
    let mut server = site.start();
    let worker = worker_pid(&server, 1);
    let mut ws = Ws::connect(site.port, "/", None);
    ws.send_text("before the stop");
    assert_eq!(ws.recv_text(), "before the stop");

    let queries = ["a", "b", "c"];
    let requests: Vec<_> = queries
        .iter()
        .map(|q| get_in_background(site.port, &format!("/slow?{q}")))
        .collect();
    for q in queries {
        site.started(q, &server);
    }

    server.signal(Signal::SIGTERM);
    let t0 = Instant::now();

    // The WebSocket is told the server is going away; the client answers.
    let close = ws.recv_close();
    assert_eq!(
        close.as_ref().map(|(c, _)| *c),
        Some(1001),
        "{close:?}\n{}",
        server.log()
    );
    ws.send_close(1001, "");
    assert!(ws.ends_within(SOON), "WebSocket left open after the close");

    // Every request in flight gets its whole answer.
    for (q, r) in queries.iter().zip(requests) {
        let bytes = r.join().unwrap();
        let replies = parse_responses(&bytes);
        assert_eq!(
            replies.len(),
            1,
            "/slow?{q}: {:?}\n--- server log ---\n{}",
            String::from_utf8_lossy(&bytes),
            server.log()
        );
        assert_eq!(replies[0].status, 200, "/slow?{q}\n{}", server.log());
        assert!(
            replies[0].text() == slow_expected(q),
            "/slow?{q}: body of {} bytes is not the program's {} bytes\n{}",
            replies[0].body.len(),
            slow_expected(q).len(),
            server.log()
        );
    }

    let left = STOP_WITHIN.saturating_sub(t0.elapsed());
    let status = server.wait_exit(left).unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM\n{}",
            t0.elapsed(),
            server.log()
        )
    });
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    assert_gone("the worker", &[worker], &|| server.log());
    assert!(
        group_members(server.pid()).is_empty(),
        "processes of lwsws's group left: {:?}",
        group_members(server.pid())
    );
    let log = server.log();
    assert!(
        log.contains("stopping: finishing requests in flight"),
        "{log}"
    );
    assert!(log.contains("lwsws stopped"), "{log}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let site = Site::new("");
    let mut server = site.start();
    let worker = worker_pid(&server, 1);
    let request = get_in_background(site.port, "/stuck?stuck");
    let cgi = site.started("stuck", &server);

    server.signal(Signal::SIGTERM);
    assert!(
        server.wait_for_log("stopping: finishing requests in flight", SOON),
        "{}",
        server.log()
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "exited after one SIGTERM with a request in flight for 60 s\n{}",
        server.log()
    );
    server.signal(Signal::SIGTERM);
    let t1 = Instant::now();
    // At once: well before the 10 s a first stop would give the request.
    let status = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "still running {:?} after the second SIGTERM\n{}",
            t1.elapsed(),
            server.log()
        )
    });
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("second stop signal"), "{log}");
    assert_gone("the worker", &[worker], &|| server.log());
    // The request was cut, not answered.
    let bytes = request.join().unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("late"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    // The worker was told to abort, which kills its CGI programs first.
    assert!(
        wait_until(Duration::from_secs(5), || !alive(cgi)),
        "the CGI program (pid {cgi}) outlives lwsws\n{}",
        server.log()
    );
}

#[test]
fn a_request_still_running_at_the_stop_deadline_is_cut_and_its_program_killed() {
    // The grace period is min(10 s, drain-timeout-secs): 2 s here.
    let site = Site::new(r#""drain-timeout-secs": 2"#);
    let mut server = site.start();
    let worker = worker_pid(&server, 1);
    let request = get_in_background(site.port, "/stuck?stuck");
    let cgi = site.started("stuck", &server);

    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(STOP_WITHIN)
        .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    assert_gone("the worker", &[worker], &|| server.log());
    let bytes = request.join().unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("late"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    // The process tree exits: the CGI program (and the `sleep` it runs, in
    // its process group) must not outlive lwsws.
    assert!(
        wait_until(SOON, || group_members(cgi).is_empty()),
        "the CGI program's group {cgi} still runs {:?} after lwsws exited\n--- server log ---\n{}",
        group_members(cgi),
        server.log()
    );
}

/// `MONOTONIC_USEC` as systemd wants it: CLOCK_MONOTONIC in microseconds.
/// std's `Instant` is CLOCK_MONOTONIC on Linux and shows its `timespec` in
/// its `Debug` form; `None` if that form ever changes.
fn monotonic_usec_now() -> Option<u64> {
    let shown = format!("{:?}", Instant::now());
    let field = |name: &str| -> Option<u64> {
        let at = shown.find(name)? + name.len();
        shown[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Some(field("tv_sec:")? * 1_000_000 + field("tv_nsec:")? / 1000)
}

/// The receiving end of `NOTIFY_SOCKET`: every datagram so far, in order.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
    got: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Notify {
    fn bind() -> Notify {
        let dir = tempfile::Builder::new()
            .prefix("lwsws-notify-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Notify {
            socket,
            path,
            got: Vec::new(),
            _dir: dir,
        }
    }

    /// Receives until a datagram satisfies `want` (returned) or [`SOON`]
    /// passes (panics, showing what came and the server log).
    fn until(&mut self, what: &str, server: &Lwsws, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SOON;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} datagram; received {:?}\n--- server log ---\n{}",
                self.got,
                server.log()
            );
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.got.push(text.clone());
                    if want(&text) {
                        return text;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }
}

/// The `KEY=value` lines of a notification datagram.
fn has_line(datagram: &str, line: &str) -> bool {
    datagram.lines().any(|l| l == line)
}

/// The environment of process `pid`, as `KEY=value` strings.
fn environ(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    bytes
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn systemd_notifications_under_a_real_notify_socket() {
    let site = Site::new("");
    let mut notify = Notify::bind();
    let mut server = Launch::new(bin(), site.dir.path())
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .wait_for(Ready::Tcp(site.port))
        .start();

    notify.until("READY=1", &server, |d| has_line(d, "READY=1"));
    let worker = worker_pid(&server, 1);
    assert!(
        environ(server.pid())
            .iter()
            .any(|e| e.starts_with("NOTIFY_SOCKET=")),
        "the supervisor was started without NOTIFY_SOCKET?"
    );
    let leaked: Vec<String> = environ(worker)
        .into_iter()
        .filter(|e| e.starts_with("NOTIFY_SOCKET="))
        .collect();
    assert!(leaked.is_empty(), "the worker got {leaked:?}");
    assert_eq!(common::get(&site.url("/"), &[]).status, 200);

    // Reload: RELOADING=1 with the monotonic clock, then READY=1 again.
    let before = monotonic_usec_now();
    server.signal(Signal::SIGHUP);
    let reloading = notify.until("RELOADING=1", &server, |d| has_line(d, "RELOADING=1"));
    let after = monotonic_usec_now();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC=<digits> with RELOADING=1: {reloading:?}"))
        .parse()
        .unwrap();
    match (before, after) {
        (Some(b), Some(a)) => assert!(
            b <= usec && usec <= a,
            "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC between {b} and {a}"
        ),
        _ => eprintln!("NOTE: cannot read CLOCK_MONOTONIC here; MONOTONIC_USEC range not checked"),
    }
    notify.until("READY=1 after the reload", &server, |d| {
        has_line(d, "READY=1")
    });
    assert!(
        server.wait_for_log("worker ready generation=2", SOON),
        "{}",
        server.log()
    );
    // STATUS= comes when the counts change; by now generation 2 serves.
    notify.until("STATUS= naming generation 2", &server, |d| {
        d.lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("generation 2"))
    });
    assert!(
        notify
            .got
            .iter()
            .flat_map(|d| d.lines())
            .filter(|l| l.starts_with("STATUS="))
            .all(|l| l.contains("generation") || l == "STATUS=starting"),
        "{:?}",
        notify.got
    );
    assert_eq!(common::get(&site.url("/"), &[]).status, 200);

    server.signal(Signal::SIGTERM);
    notify.until("STOPPING=1", &server, |d| has_line(d, "STOPPING=1"));
    let status = server
        .wait_exit(STOP_WITHIN)
        .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
}

/// The lines of the access log at `path` (none if it does not exist).
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sigusr1_reopens_access_logs_after_a_rotation() {
    let site = Site::new("");
    // At debug level the worker logs when it has taken the new files.
    let server = Lwsws::start(bin(), &site.dir, &["-d", "debug"], &[site.port]);
    let log = site.access_log.clone();
    let rotated = PathBuf::from(format!("{}.1", log.display()));

    assert_eq!(common::get(&site.url("/?first"), &[]).status, 200);
    assert!(
        wait_until(SOON, || log_lines(&log)
            .iter()
            .any(|l| l.contains("/?first"))),
        "no line for the first request in {}: {:?}\n{}",
        log.display(),
        log_lines(&log),
        server.log()
    );

    // What logrotate does without copytruncate: rename, then postrotate.
    std::fs::rename(&log, &rotated).unwrap();
    server.signal(Signal::SIGUSR1);
    assert!(
        server.wait_for_log("SIGUSR1: access logs reopened", SOON),
        "{}",
        server.log()
    );
    // The supervisor logs that line before the worker has the new files: a
    // request answered in between would still go to the old one.
    assert!(
        server.wait_for_log("DEBUG access logs reopened generation=1", SOON),
        "the worker never took the reopened files\n{}",
        server.log()
    );
    assert!(log.exists(), "{} not created again", log.display());

    assert_eq!(common::get(&site.url("/?second"), &[]).status, 200);
    assert!(
        wait_until(SOON, || log_lines(&log)
            .iter()
            .any(|l| l.contains("/?second"))),
        "no line for the second request in the new {}: {:?}; in {}: {:?}\n{}",
        log.display(),
        log_lines(&log),
        rotated.display(),
        log_lines(&rotated),
        server.log()
    );
    let old = log_lines(&rotated);
    assert!(old.iter().any(|l| l.contains("/?first")), "{old:?}");
    assert!(!old.iter().any(|l| l.contains("/?second")), "{old:?}");
    let new = log_lines(&log);
    assert!(!new.iter().any(|l| l.contains("/?first")), "{new:?}");
}

/// Kills the given processes on drop, so a failed daemon test leaves
/// nothing running.
#[derive(Default)]
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// The `\0`-separated command line of `pid`.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Live processes whose command line holds `-D` and `conf`.
fn daemons(conf: &Path) -> Vec<u32> {
    let conf = conf.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let args = cmdline(pid);
            args.iter().any(|a| a == "-D") && args.iter().any(|a| a == conf) && alive(pid)
        })
        .collect()
}

fn refuses(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
}

#[test]
fn daemon_mode_detaches_serves_and_stops_on_sigterm() {
    let site = Site::new("");
    let stderr_dir = tempfile::tempdir().unwrap();
    let stderr_path = stderr_dir.path().join("stderr.log");
    let stderr_file = std::fs::File::create(&stderr_path).unwrap();
    let read_log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut guard = KillOnDrop::default();

    let mut child = Command::new(bin())
        .arg("-D")
        .arg("-c")
        .arg(site.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let launcher = child.id();
    let returned = wait_until(SOON, || child.try_wait().unwrap().is_some());
    if !returned {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Whatever happens next, the detached processes are found and killed.
    let found = wait_until(SOON, || !daemons(site.dir.path()).is_empty());
    let supervisors = daemons(site.dir.path());
    guard.0.extend(&supervisors);
    for &d in &supervisors {
        guard.0.extend(live_children(d));
    }
    assert!(returned, "lwsws -D did not return\n{}", read_log());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}\n{}", read_log());
    assert!(found, "no detached lwsws -D process\n{}", read_log());
    assert_eq!(supervisors.len(), 1, "{supervisors:?}");
    let daemon = supervisors[0];
    assert_ne!(daemon, launcher, "the command did not fork");
    let (_, ppid, pgrp) = common::proc_stat(daemon).unwrap();
    assert_ne!(ppid, std::process::id(), "the daemon is still our child");
    assert_ne!(pgrp, launcher, "the daemon stayed in the launcher's group");

    // It serves (through its worker), and logs to the stderr it was given.
    let served = wait_until(SOON, || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, site.port)).is_ok()
            && common::get(&site.url("/"), &[]).status == 200
    });
    assert!(served, "the daemon does not serve\n{}", read_log());
    assert!(
        wait_until(SOON, || read_log().contains("worker ready generation=1")),
        "{}",
        read_log()
    );
    let workers = live_children(daemon);
    guard.0.extend(&workers);
    assert_eq!(workers.len(), 1, "workers of the daemon: {workers:?}");

    kill(Pid::from_raw(daemon as i32), Signal::SIGTERM).unwrap();
    assert!(
        wait_until(STOP_WITHIN, || refuses(site.port)),
        "port {} still accepts after SIGTERM\n{}",
        site.port,
        read_log()
    );
    let everyone: Vec<u32> = std::iter::once(daemon).chain(workers).collect();
    assert_gone("the daemon and its worker", &everyone, &read_log);
    assert!(
        wait_until(SOON, || read_log().contains("lwsws stopped")),
        "{}",
        read_log()
    );
}

#[test]
fn a_worker_killed_while_stopping_is_not_restarted() {
    let site = Site::new("");
    let mut server = site.start();
    let worker = worker_pid(&server, 1);
    assert_eq!(common::get(&site.url("/"), &[]).status, 200);
    // A request in flight keeps the stopping worker alive (for up to 10 s),
    // so the SIGKILL below, not a normal exit, is what ends it.
    let request = get_in_background(site.port, "/stuck?stuck");
    site.started("stuck", &server);

    server.signal(Signal::SIGTERM);
    kill(Pid::from_raw(worker as i32), Signal::SIGKILL).unwrap();
    let status = server
        .wait_exit(STOP_WITHIN)
        .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    assert_gone("the worker", &[worker], &|| server.log());
    assert!(
        group_members(server.pid()).is_empty(),
        "processes of lwsws's group left: {:?}\n{}",
        group_members(server.pid()),
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("worker stopped generation=1") && log.contains(r#"how="signal SIGKILL""#),
        "{log}"
    );
    assert!(!log.contains("worker starting generation=2"), "{log}");
    assert!(!log.contains("starting a new worker"), "{log}");
    assert!(!log.contains("worker died unexpectedly"), "{log}");
    assert!(log.contains("lwsws stopped"), "{log}");
    // The cut request ends with the worker.
    request.join().unwrap();
}
