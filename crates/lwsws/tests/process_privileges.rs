//! Privileges and descriptors of the process model (SPEC §4, issue 6): the
//! supervisor, started as root with `username`/`groupname` = `lwsws`, binds
//! a privileged port and opens the access log in a root-only directory; its
//! worker runs as `lwsws` (real, effective, saved and filesystem ids and the
//! supplementary groups, read from `/proc/PID/status`), so neither a file it
//! serves nor a CGI program it starts can read a root-only file; the worker
//! holds only its stdio, control socket, listeners and logs, and a CGI
//! program only its stdio; the worker dies with its supervisor, and a killed
//! worker is replaced.
//!
//! Every test needs root (it is the supervisor's job to be root) and the
//! user `lwsws` (`tests/run` creates it); without root they skip with a
//! visible message. The non-root start (no drop, a warning) cannot be
//! observed from a root test process and is not tested here.
//!
//! The supervisor is `crates/lwsws-supervisor` (`privileges.rs`, `spawn.rs`),
//! the worker `crates/lwsws/src/worker.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, alive, bin, get, live_children, wait_until};
use lwsws_testkit::{ConfigDir, Launch, Lwsws, Ready};
use nix::sys::signal::Signal;
use nix::unistd::{Group, User};
use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The unprivileged account the workers switch to.
const USER: &str = "lwsws";

/// What the root-only files hold; no response may contain it.
const SECRET: &str = "root-only-secret-7f3a9c";

/// How long a worker may take to report ready: a liveness bound.
const READY: Duration = Duration::from_secs(20);

/// How soon a worker must be gone after its supervisor, and a replacement
/// must serve after a worker was killed (issue 6: "a second or two").
const PROMPTLY: Duration = Duration::from_secs(5);

/// How long an access-log line may take to appear: a liveness bound.
const LOG_DEADLINE: Duration = Duration::from_secs(10);

/// True when running as root; otherwise prints the visible skip message.
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (the supervisor drops privileges only when started as root)"
    );
    false
}

/// The account `lwsws` and its group; panics if it is missing (as root it
/// must exist: `tests/run` creates it).
fn account() -> (User, Group) {
    let user = User::from_name(USER)
        .unwrap()
        .unwrap_or_else(|| panic!("user {USER:?} does not exist; tests/run creates it"));
    let group = Group::from_name(USER)
        .unwrap()
        .unwrap_or_else(|| panic!("group {USER:?} does not exist; tests/run creates it"));
    (user, group)
}

/// Ports below 1024 handed out by this test process.
static PRIVILEGED_HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// A free privileged port (900..1000) on the loopback addresses, not handed
/// out before by this process. Free only until someone binds it.
fn privileged_port() -> u16 {
    let handed_out = PRIVILEGED_HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
    for port in 900..1000u16 {
        if set.contains(&port) {
            continue;
        }
        // The server binds `[::]:PORT` (dual stack) when only a port is given.
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        let v6 = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        };
        if v4 && v6 {
            set.insert(port);
            return port;
        }
    }
    panic!("no free port in 900..1000");
}

/// Sets `path`'s mode.
fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Writes a root-owned (we are root) file with `mode`.
fn write_mode(dir: &ConfigDir, rel: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.write_file(rel, text);
    chmod(&path, mode);
    path
}

/// Test server: one vhost on a privileged port with an access log in a
/// root-only directory, a document root holding a readable page and a
/// root-only file, and CGI programs at `/cgi/cat`, `/cgi/fds`.
struct Site {
    /// The configuration directory (0755 so that `lwsws` reaches the
    /// document root and the programs inside it).
    dir: ConfigDir,
    /// Holds the root-only (0700) log directory; outside `dir` so that the
    /// descriptor checks can tell a log from a configuration file.
    logs: tempfile::TempDir,
    port: u16,
    server: Lwsws,
    /// A 0600 root:root file outside the document root.
    secret: PathBuf,
}

/// `PROGRAM` for the CGI mount `/cgi/cat`: tries to read `SECRET_FILE`.
const CAT: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
id
echo '--- cat ---'
cat \"$SECRET_FILE\" 2>&1
echo \"--- exit $? ---\"
";

/// `PROGRAM` for the CGI mount `/cgi/fds`: lists its descriptors. `ls`
/// opens one more itself, for `/proc/self/fd`, i.e. `/proc/LS_PID/fd`.
/// With `READ_FD` set (by `cgi-env`) it then reads from that descriptor.
const FDS: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
ls -l /proc/self/fd
if [ -n \"$READ_FD\" ]; then
  echo '--- read ---'
  eval \"cat <&$READ_FD\" 2>&1
fi
";

impl Site {
    /// Builds the site; `wrapper` (if any) replaces the binary on the
    /// command line (a script that ends with `exec lwsws "$@"`).
    fn start_with(wrapper: Option<&dyn Fn(&ConfigDir) -> PathBuf>, cgi_env: &str) -> Site {
        let (user, group) = account();
        let dir = ConfigDir::new();
        // tempfile makes it 0700: the worker must reach the files below it.
        chmod(dir.path(), 0o755);
        let www = dir.mkdir("www");
        chmod(&www, 0o755);
        write_mode(&dir, "www/index.html", "hello from lwsws\n", 0o644);
        write_mode(&dir, "www/secret.txt", SECRET, 0o600);
        let secret = write_mode(&dir, "private/secret.txt", SECRET, 0o600);
        chmod(&dir.path().join("private"), 0o755);
        let cgi_bin = dir.mkdir("cgi-bin");
        chmod(&cgi_bin, 0o755);
        let cat = write_mode(&dir, "cgi-bin/cat.sh", CAT, 0o755);
        let fds = write_mode(&dir, "cgi-bin/fds.sh", FDS, 0o755);

        let logs = tempfile::Builder::new()
            .prefix("lwsws-rootlogs-")
            .tempdir()
            .unwrap();
        chmod(logs.path(), 0o700);
        let meta = std::fs::metadata(logs.path()).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (0, 0o700),
            "log dir root-only"
        );
        let access_log = logs.path().join("access.log");

        dir.write_conf(&format!(
            r#"{{ "global": {{ "username": "{}", "groupname": "{}" }} }}"#,
            user.name, group.name
        ));
        let program = match wrapper {
            Some(make) => make(&dir),
            None => bin().to_path_buf(),
        };
        // A port found free may be taken by another process before the
        // supervisor binds it: then try the next one.
        let mut attempt = 0;
        let (port, server) = loop {
            attempt += 1;
            let port = privileged_port();
            dir.write_conf_d(
                "site",
                &format!(
                    r#"{{ "vhosts": [{{ "name": "priv.test", "port": "{port}",
                        "access-log": "{}",
                        "mounts": [
                            {{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }},
                            {{ "mountpoint": "/cgi/cat", "origin": "cgi://{}",
                               "cgi-env": [{{ "SECRET_FILE": "{}" }}] }},
                            {{ "mountpoint": "/cgi/fds", "origin": "cgi://{}"{cgi_env} }}
                        ] }}] }}"#,
                    access_log.display(),
                    www.display(),
                    cat.display(),
                    secret.display(),
                    fds.display(),
                ),
            );
            let launch = Launch::new(&program, dir.path()).wait_for(Ready::Tcp(port));
            match std::panic::catch_unwind(move || launch.start()) {
                Ok(server) => break (port, server),
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .unwrap_or_default();
                    if attempt < 5 && message.contains("Address already in use") {
                        continue;
                    }
                    std::panic::resume_unwind(payload);
                }
            }
        };
        let site = Site {
            dir,
            logs,
            port,
            server,
            secret,
        };
        // The port accepts as soon as the supervisor has bound it; the
        // worker drops its privileges before it reports ready.
        site.wait_ready_workers(1);
        site
    }

    fn start() -> Site {
        Site::start_with(None, "")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn access_log(&self) -> PathBuf {
        self.logs.path().join("access.log")
    }

    /// Waits until `n` workers have reported ready (over the server's life).
    fn wait_ready_workers(&self, n: usize) -> Vec<u32> {
        let ok = wait_until(READY, || ready_pids(&self.server.log()).len() >= n);
        assert!(
            ok,
            "{n} worker(s) never ready\n--- server log ---\n{}",
            self.server.log()
        );
        ready_pids(&self.server.log())
    }

    /// The one worker: the supervisor's child started as `lwsws … worker`.
    fn worker(&self) -> u32 {
        let sup = self.server.pid();
        let mut workers = Vec::new();
        let found = wait_until(READY, || {
            workers = live_children(sup)
                .into_iter()
                .filter(|&p| is_worker(p))
                .collect();
            workers.len() == 1
        });
        assert!(
            found,
            "supervisor {sup}: expected one worker child, found {workers:?}\n--- server log ---\n{}",
            self.server.log()
        );
        workers[0]
    }

    fn log(&self) -> String {
        self.server.log()
    }
}

/// The pids of every `worker ready … pid=P` line of the supervisor's log.
fn ready_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("worker ready"))
        .filter_map(|l| {
            let rest = &l[l.find(" pid=")? + 5..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `pid` runs `lwsws … worker`.
fn is_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).any(|arg| arg == b"worker"))
        .unwrap_or(false)
}

/// A line of `/proc/PID/status` split into its numbers (`Uid:`, `Gid:`,
/// `Groups:`).
fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field}: line in /proc/{pid}/status:\n{status}"));
    line.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The text of a `/proc/PID/status` field (`CapEff`, …).
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field}: line in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// `(fd, target)` for each descriptor of `pid` (targets as `readlink`
/// gives them: a path, `socket:[N]`, `pipe:[N]`, `anon_inode:[…]`).
fn descriptors(pid: &str) -> Vec<(u32, String)> {
    let dir = format!("/proc/{pid}/fd");
    let mut out: Vec<(u32, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(Result::ok)
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    out.sort();
    out
}

/// Descriptors above 2 that this test process holds without close-on-exec:
/// inherited from whoever started the tests (a shell, cargo), and so handed
/// on to every server a test starts, at the same number and to the same
/// file. The Rust standard library opens everything close-on-exec, so
/// nothing a test opens is among them. The tests that count descriptors
/// leave these aside; `launcher_descriptors_reach_neither_worker_nor_cgi`
/// checks that the server does not pass such descriptors on.
fn inherited_by_this_process() -> BTreeSet<(u32, String)> {
    const O_CLOEXEC: u32 = 0o2_000_000;
    descriptors("self")
        .into_iter()
        .filter(|(fd, _)| *fd > 2)
        .filter(|(fd, _)| {
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .is_some_and(|flags| flags & O_CLOEXEC == 0)
        })
        .collect()
}

/// Parses `ls -l /proc/self/fd` output into `(fd, target)` pairs.
fn parse_ls_fds(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.trim().to_owned()))
        })
        .collect()
}

/// The descriptors a CGI program had beyond 0, 1 and 2, without the one
/// `ls` opened for its listing (`/proc/LS_PID/fd`).
fn cgi_extra_fds(reply: &Reply) -> Vec<(u32, String)> {
    let text = reply.text();
    let listing = text.split("--- read ---").next().unwrap_or_default();
    let fds = parse_ls_fds(listing);
    assert!(
        fds.iter().any(|(fd, _)| *fd == 1),
        "no descriptor listing in the CGI's answer: {text:?}"
    );
    fds.into_iter()
        .filter(|(fd, _)| *fd > 2)
        .filter(|(_, target)| {
            let ls_own = target
                .strip_prefix("/proc/")
                .and_then(|t| t.strip_suffix("/fd"))
                .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()));
            !ls_own
        })
        .collect()
}

#[test]
fn worker_takes_the_configured_uid_gid_and_groups_and_the_supervisor_stays_root() {
    if !root_or_skip("worker_takes_the_configured_uid_gid_and_groups_and_the_supervisor_stays_root")
    {
        return;
    }
    let (user, group) = account();
    let site = Site::start();
    let worker = site.worker();
    let sup = site.server.pid();
    assert!(
        ready_pids(&site.log()).contains(&worker),
        "the worker child {worker} is the one that reported ready\n{}",
        site.log()
    );

    let uid = user.uid.as_raw();
    let gid = group.gid.as_raw();
    // Real, effective, saved, filesystem.
    assert_eq!(status_ids(worker, "Uid"), vec![uid; 4], "worker Uid");
    assert_eq!(status_ids(worker, "Gid"), vec![gid; 4], "worker Gid");
    let name = CString::new(user.name.clone()).unwrap();
    let expected: BTreeSet<u32> = nix::unistd::getgrouplist(&name, group.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    let actual: BTreeSet<u32> = status_ids(worker, "Groups").into_iter().collect();
    assert_eq!(
        actual, expected,
        "worker supplementary groups (Groups:) vs getgrouplist({USER})"
    );
    assert!(!actual.contains(&0), "worker keeps group root: {actual:?}");
    // Switching every uid away from 0 clears the capabilities: no way back.
    for caps in ["CapPrm", "CapEff"] {
        assert_eq!(
            status_field(worker, caps),
            "0000000000000000",
            "worker {caps}"
        );
    }

    assert_eq!(status_ids(sup, "Uid"), vec![0; 4], "supervisor Uid");
    assert!(
        site.log()
            .contains(&format!("workers will drop privileges user={USER}:{USER}")),
        "{}",
        site.log()
    );
}

#[test]
fn serves_on_a_privileged_port_and_logs_into_a_root_only_directory() {
    if !root_or_skip("serves_on_a_privileged_port_and_logs_into_a_root_only_directory") {
        return;
    }
    let site = Site::start();
    assert!(site.port < 1024);
    // The worker runs unprivileged, yet serves the port root bound.
    let worker = site.worker();
    assert_ne!(status_ids(worker, "Uid")[1], 0, "worker's effective uid");

    let r = get(&site.url("/index.html?marker=priv-port-1"), &[]);
    assert_eq!(r.status, 200, "{}", site.log());
    assert_eq!(r.text(), "hello from lwsws\n");

    let log = site.access_log();
    let logged = wait_until(LOG_DEADLINE, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("GET /index.html?marker=priv-port-1 HTTP/1.1\" 200 "))
    });
    assert!(
        logged,
        "no access-log line in {}: {:?}\n--- server log ---\n{}",
        log.display(),
        std::fs::read_to_string(&log),
        site.log()
    );
    let meta = std::fs::metadata(site.logs.path()).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
}

#[test]
fn a_cgi_program_cannot_read_a_root_only_file() {
    if !root_or_skip("a_cgi_program_cannot_read_a_root_only_file") {
        return;
    }
    let (user, _) = account();
    let site = Site::start();
    let meta = std::fs::metadata(&site.secret).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o600));

    let r = get(&site.url("/cgi/cat"), &[]);
    let text = r.text();
    assert_eq!(r.status, 200, "{text}\n--- server log ---\n{}", site.log());
    // It ran, as lwsws, and cat failed.
    assert!(
        text.contains(&format!("uid={}(", user.uid.as_raw())),
        "CGI's id: {text:?}"
    );
    assert!(text.contains("--- cat ---"), "{text:?}");
    assert!(!text.contains("--- exit 0 ---"), "cat succeeded: {text:?}");
    assert!(!text.contains(SECRET), "the CGI read the secret: {text:?}");
}

#[test]
fn a_file_mount_does_not_serve_a_root_only_file() {
    if !root_or_skip("a_file_mount_does_not_serve_a_root_only_file") {
        return;
    }
    let site = Site::start();
    let secret = site.dir.path().join("www/secret.txt");
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o600));

    // The mount itself works...
    let ok = get(&site.url("/index.html"), &[]);
    assert_eq!(ok.status, 200, "{}", site.log());
    // ...but the worker cannot open the root-only file in it.
    let r = get(&site.url("/secret.txt"), &[]);
    assert!(
        !r.text().contains(SECRET),
        "served the root-only file: {} {:?}",
        r.status,
        r.text()
    );
    assert!(
        r.status == 403 || r.status == 404,
        "GET of a root-only file: expected 403 or 404, got {} {:?}\n--- server log ---\n{}",
        r.status,
        r.text(),
        site.log()
    );
}

#[test]
fn the_worker_holds_only_stdio_control_listeners_and_logs() {
    if !root_or_skip("the_worker_holds_only_stdio_control_listeners_and_logs") {
        return;
    }
    let site = Site::start();
    let worker = site.worker();
    // One request first, so that the log has been written to and any lazily
    // opened descriptor exists.
    assert_eq!(get(&site.url("/"), &[]).status, 200);
    let conf = site.dir.path().canonicalize().unwrap();
    let log = site.access_log();
    let inherited = inherited_by_this_process();
    let fds = descriptors(&worker.to_string());
    let mut has_control_or_listener = false;
    for (fd, target) in &fds {
        assert!(
            !Path::new(target).starts_with(&conf),
            "worker fd {fd} points into the configuration directory: {target}\nall: {fds:?}"
        );
        if *fd <= 2 || inherited.contains(&(*fd, target.clone())) {
            continue;
        }
        has_control_or_listener |= target.starts_with("socket:");
        // Sockets: control, listeners, the runtime's own; anonymous inodes:
        // epoll, eventfd; files: the access log only.
        let allowed = target.starts_with("socket:")
            || target.starts_with("anon_inode:")
            || Path::new(target) == log;
        assert!(
            allowed,
            "worker fd {fd} -> {target} is none of stdio, control socket, listener, log \
             or the runtime's own\nall: {fds:?}\ninherited by the test process: {inherited:?}"
        );
    }
    assert!(has_control_or_listener, "no socket at all? {fds:?}");
    assert!(
        fds.iter().any(|(_, t)| Path::new(t) == log),
        "the worker holds no descriptor for the access log: {fds:?}"
    );
}

#[test]
fn a_cgi_program_inherits_only_stdio() {
    if !root_or_skip("a_cgi_program_inherits_only_stdio") {
        return;
    }
    let site = Site::start();
    let r = get(&site.url("/cgi/fds"), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), site.log());
    let inherited = inherited_by_this_process();
    let extra: Vec<_> = cgi_extra_fds(&r)
        .into_iter()
        .filter(|e| !inherited.contains(e))
        .collect();
    assert!(
        extra.is_empty(),
        "the CGI program inherited descriptors beyond 0, 1, 2: {extra:?}\nlisting:\n{}",
        r.text()
    );
}

/// A descriptor the supervisor itself was started with (here: a wrapper
/// script opens the root-only secret as descriptor N without close-on-exec,
/// then execs lwsws, as a careless init script or a shell with open
/// redirections would) must reach neither the unprivileged worker nor a
/// CGI program: through it they could read a root-only file.
#[test]
fn launcher_descriptors_reach_neither_worker_nor_cgi() {
    if !root_or_skip("launcher_descriptors_reach_neither_worker_nor_cgi") {
        return;
    }
    // A descriptor number that is not already taken by an inherited one.
    let taken: BTreeSet<u32> = inherited_by_this_process()
        .into_iter()
        .map(|(fd, _)| fd)
        .collect();
    let n = (5..=9)
        .rev()
        .find(|fd| !taken.contains(fd))
        .expect("a free descriptor number in 5..=9");
    let wrapper = move |dir: &ConfigDir| -> PathBuf {
        let secret = dir.path().join("private/secret.txt");
        write_mode(
            dir,
            "bin/wrapper.sh",
            &format!(
                "#!/bin/sh\nexec {n}<\"{}\"\nexec \"{}\" \"$@\"\n",
                secret.display(),
                bin().display()
            ),
            0o700,
        )
    };
    let site = Site::start_with(
        Some(&wrapper),
        &format!(r#", "cgi-env": [{{ "READ_FD": "{n}" }}]"#),
    );
    let secret = site.secret.to_string_lossy().into_owned();
    // The supervisor does hold it (so the test does what it says).
    let sup_fds = descriptors(&site.server.pid().to_string());
    assert!(
        sup_fds.iter().any(|(fd, t)| *fd == n && *t == secret),
        "the wrapper's descriptor {n} is not in the supervisor: {sup_fds:?}"
    );

    let worker = site.worker();
    let worker_fds = descriptors(&worker.to_string());
    let r = get(&site.url("/cgi/fds"), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), site.log());
    let text = r.text();
    let cgi_fds = cgi_extra_fds(&r);

    let worker_leak: Vec<_> = worker_fds.iter().filter(|(_, t)| *t == secret).collect();
    let cgi_leak: Vec<_> = cgi_fds.iter().filter(|(_, t)| *t == secret).collect();
    assert!(
        worker_leak.is_empty() && cgi_leak.is_empty() && !text.contains(SECRET),
        "a root-only file the supervisor was started with open stays open: worker (uid {}) {worker_leak:?}, \
         CGI {cgi_leak:?}; what the CGI read from descriptor {n}:\n{}",
        status_ids(worker, "Uid")[0],
        text.split("--- read ---").nth(1).unwrap_or_default()
    );
}

#[test]
fn kill_9_of_the_supervisor_takes_the_worker_down() {
    if !root_or_skip("kill_9_of_the_supervisor_takes_the_worker_down") {
        return;
    }
    let mut site = Site::start();
    let worker = site.worker();
    assert!(alive(worker));
    site.server.signal(Signal::SIGKILL);
    site.server
        .wait_exit(PROMPTLY)
        .expect("supervisor killed with SIGKILL");
    let gone = wait_until(PROMPTLY, || !alive(worker));
    assert!(
        gone,
        "worker {worker} still running {PROMPTLY:?} after its supervisor was killed\n{}",
        site.log()
    );
}

#[test]
fn kill_9_of_the_worker_starts_a_new_one_that_serves() {
    if !root_or_skip("kill_9_of_the_worker_starts_a_new_one_that_serves") {
        return;
    }
    let (user, _) = account();
    let site = Site::start();
    let old = site.worker();
    assert_eq!(get(&site.url("/"), &[]).status, 200);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    let replaced = wait_until(PROMPTLY, || {
        ready_pids(&site.log()).iter().any(|&p| p != old)
    });
    assert!(
        replaced,
        "no new worker ready within {PROMPTLY:?} after kill -9 of {old}\n--- server log ---\n{}",
        site.log()
    );
    assert!(!alive(old), "the killed worker {old} still runs");
    let new = site.worker();
    assert_ne!(new, old);
    assert!(ready_pids(&site.log()).contains(&new), "{}", site.log());
    assert!(
        site.log().contains("worker died unexpectedly"),
        "{}",
        site.log()
    );
    // The replacement is as unprivileged as the first.
    assert_eq!(
        status_ids(new, "Uid"),
        vec![user.uid.as_raw(); 4],
        "new worker Uid"
    );
    for i in 0..5 {
        let r = get(&site.url(&format!("/index.html?after-restart={i}")), &[]);
        assert_eq!(r.status, 200, "{}", site.log());
        assert_eq!(r.text(), "hello from lwsws\n");
    }
    assert!(site.server.group_members().contains(&new));
}
