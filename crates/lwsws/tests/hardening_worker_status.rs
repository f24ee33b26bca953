//! What `/proc/PID/status` says about a worker: the configured user and
//! group in every Uid/Gid slot (real, effective, saved, filesystem), no
//! supplementary group but the configured user's, no capability (`CapPrm`,
//! `CapEff`, `CapInh`, `CapAmb` all zero) and `NoNewPrivs: 1`.
//!
//! `worker_status_as_the_unit_starts_it` starts the supervisor as the
//! shipped unit (`systemd/lwsws.service`) does, as far as a test can without
//! systemd: with the unit's `CapabilityBoundingSet=` and `NoNewPrivileges=`
//! (util-linux's setpriv), and with supplementary groups of its own (0 and
//! 4) that its workers must not keep. It also shows that the unit's
//! capabilities are enough: the supervisor binds a port below 1024, hands a
//! Unix socket to `unix-socket-perms`, starts a worker that drops to
//! `nobody:nogroup`, and reloads (a worker re-executed from disk). A CGI
//! program, too, holds no capability and cannot gain privileges.
//!
//! `worker_sets_no_new_privs_itself` starts the supervisor bare (an init
//! script, a shell): the worker must still end up with `NoNewPrivs: 1`, so
//! that no CGI program gains privileges through a setuid or
//! file-capability executable, which only the worker itself can ensure.
//!
//! Both need root (the supervisor drops privileges only when started as
//! root) and skip with a visible message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, get, live_children, read_response, repo, wait_until};
use lwsws_testkit::{ConfigDir, Launch, Lwsws, Ready};
use nix::sys::signal::Signal;
use nix::unistd::{Group, User};
use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The account the workers switch to; it exists on every Debian system.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

/// Supplementary groups the supervisor is given (root, adm) in the
/// unit-like start; no worker may keep them.
const SUPERVISOR_GROUPS: [u32; 2] = [0, 4];

/// How long a worker may take to report ready, and an old one to leave
/// after a reload: liveness bounds.
const READY: Duration = Duration::from_secs(20);

/// Capability numbers (linux/capability.h), for the names the unit uses.
const CAPS: [(&str, u32); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

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

/// The configured account: `(uid, gid, the groups the worker should have)`,
/// the latter as the supervisor computes them (the user's groups from the
/// group database, with the configured group).
fn account() -> (u32, u32, BTreeSet<u32>) {
    let user = User::from_name(USER)
        .unwrap()
        .unwrap_or_else(|| panic!("user {USER:?} does not exist"));
    let group = Group::from_name(GROUP)
        .unwrap()
        .unwrap_or_else(|| panic!("group {GROUP:?} does not exist"));
    let name = CString::new(USER).unwrap();
    let groups = nix::unistd::getgrouplist(&name, group.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    (user.uid.as_raw(), group.gid.as_raw(), groups)
}

/// The unit's `CapabilityBoundingSet=` names.
fn unit_caps() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("systemd/lwsws.service")).unwrap();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has a CapabilityBoundingSet= line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// The `CapEff` mask of a capability set.
fn cap_mask(caps: &[String]) -> u64 {
    caps.iter()
        .map(|c| {
            let bit = CAPS
                .iter()
                .find(|(name, _)| name == c)
                .unwrap_or_else(|| panic!("unknown capability {c:?} in the unit"))
                .1;
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}

/// `/proc/PID/status` (`PID` may be `self`).
fn status(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
}

/// The text of the `field:` line of a status text.
fn field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field}: line in\n{status}"))
        .trim()
}

/// The numbers of a `Uid:`, `Gid:` or `Groups:` line.
fn ids(status: &str, name: &str) -> Vec<u32> {
    field(status, name)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Checks everything but NoNewPrivs: the configured ids in every slot, the
/// configured groups only, no capability. `who` names the process.
fn assert_unprivileged(who: &str, st: &str) {
    let (uid, gid, groups) = account();
    assert_eq!(
        ids(st, "Uid"),
        vec![uid; 4],
        "{who}: Uid (real, effective, saved, fs)\n{st}"
    );
    assert_eq!(
        ids(st, "Gid"),
        vec![gid; 4],
        "{who}: Gid (real, effective, saved, fs)\n{st}"
    );
    let actual: BTreeSet<u32> = ids(st, "Groups").into_iter().collect();
    assert_eq!(
        actual, groups,
        "{who}: Groups, expected getgrouplist({USER}, {GROUP})\n{st}"
    );
    assert!(actual.contains(&gid), "{who}: Groups lacks {GROUP}\n{st}");
    for g in SUPERVISOR_GROUPS {
        assert!(
            !actual.contains(&g) || groups.contains(&g),
            "{who} kept the supervisor's group {g}: {actual:?}"
        );
    }
    for caps in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(field(st, caps), "0000000000000000", "{who}: {caps}\n{st}");
    }
}

/// Ports below 1024 handed out by this test process.
static PRIVILEGED_HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// A free port in 1000..1024 (`process_privileges.rs` takes 900..1000), not
/// handed out before by this process. Free only until someone binds it.
fn privileged_port() -> u16 {
    let handed_out = PRIVILEGED_HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
    for port in 1000..1024u16 {
        if set.contains(&port) {
            continue;
        }
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
    panic!("no free port in 1000..1024");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A CGI program that shows its own status.
const STATUS_CGI: &str = "#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
cat /proc/self/status
";

/// A server with one vhost on a privileged port (a page, and `/status`: a
/// CGI program printing its `/proc/self/status`) and one on a Unix socket
/// owned by `nobody:nogroup` (`unix-socket-perms`).
struct Site {
    /// Kept for the server's life: its files are removed on drop.
    _dir: ConfigDir,
    port: u16,
    socket: PathBuf,
    server: Lwsws,
}

impl Site {
    /// Starts it; with `as_unit`, through `setpriv` with the unit's
    /// capability bounding set, no_new_privs and the supervisor groups.
    fn start(as_unit: bool) -> Site {
        let dir = ConfigDir::new();
        // tempfile makes it 0700: nobody must reach the files below it.
        chmod(dir.path(), 0o755);
        let www = dir.mkdir("www");
        chmod(&www, 0o755);
        let page = dir.write_file("www/index.html", "hello from lwsws\n");
        chmod(&page, 0o644);
        let cgi = dir.write_file("cgi-bin/status.sh", STATUS_CGI);
        chmod(&dir.path().join("cgi-bin"), 0o755);
        chmod(&cgi, 0o755);
        let run = dir.mkdir("run");
        chmod(&run, 0o755);
        let socket = run.join("lwsws.sock");
        let program = if as_unit {
            let caps: Vec<String> = unit_caps()
                .iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect();
            let groups: Vec<String> = SUPERVISOR_GROUPS.iter().map(u32::to_string).collect();
            let wrapper = dir.write_file(
                "bin/as-unit.sh",
                format!(
                    "#!/bin/sh\nexec setpriv --no-new-privs --bounding-set -all,{} --groups {} -- \"{}\" \"$@\"\n",
                    caps.join(","),
                    groups.join(","),
                    bin().display()
                ),
            );
            chmod(&wrapper, 0o700);
            wrapper
        } else {
            bin().to_path_buf()
        };
        dir.write_conf(&format!(
            r#"{{ "global": {{ "username": "{USER}", "groupname": "{GROUP}" }} }}"#
        ));
        let mut attempt = 0;
        let (port, server) = loop {
            attempt += 1;
            let port = privileged_port();
            dir.write_conf_d(
                "site",
                &format!(
                    r#"{{ "vhosts": [
                        {{ "name": "status.test", "port": "{port}", "mounts": [
                            {{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }},
                            {{ "mountpoint": "/status", "origin": "cgi://{}" }} ] }},
                        {{ "name": "unix.test", "unix-socket": "1", "interface": "{}",
                           "unix-socket-perms": "{USER}:{GROUP}", "mounts": [
                            {{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }} ] }}
                    ] }}"#,
                    www.display(),
                    cgi.display(),
                    socket.display(),
                    www.display(),
                ),
            );
            let launch = Launch::new(&program, dir.path())
                .wait_for(Ready::Tcp(port))
                .wait_for(Ready::Unix(socket.clone()));
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
            _dir: dir,
            port,
            socket,
            server,
        };
        site.wait_ready_workers(1);
        site
    }

    fn log(&self) -> String {
        self.server.log()
    }

    /// Waits until `n` workers have reported ready (over the server's life).
    fn wait_ready_workers(&self, n: usize) -> Vec<u32> {
        let ok = wait_until(READY, || ready_pids(&self.log()).len() >= n);
        assert!(
            ok,
            "{n} worker(s) never ready\n--- server log ---\n{}",
            self.log()
        );
        ready_pids(&self.log())
    }

    /// The one running worker: the supervisor's child started as
    /// `lwsws … worker`.
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
            self.log()
        );
        workers[0]
    }

    /// GET / over the Unix socket.
    fn get_unix(&self) -> common::Reply {
        let mut s = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.socket.display()));
        s.set_read_timeout(Some(common::IO_DEADLINE)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: unix.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_response(&mut BufReader::new(s), false)
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

fn setpriv_or_skip(test: &str) -> bool {
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    eprintln!("SKIPPED {test}: setpriv (util-linux) is not installed");
    false
}

#[test]
fn worker_status_as_the_unit_starts_it() {
    let test = "worker_status_as_the_unit_starts_it";
    if !root_or_skip(test) || !setpriv_or_skip(test) {
        return;
    }
    let mut site = Site::start(true);
    let sup = site.server.pid();

    // The test does what it says: the supervisor runs as the unit starts
    // it (root, the unit's capabilities only, no_new_privs, extra groups).
    let st = status(&sup.to_string());
    let mask = cap_mask(&unit_caps());
    assert_eq!(ids(&st, "Uid"), vec![0; 4], "supervisor Uid\n{st}");
    assert_eq!(
        u64::from_str_radix(field(&st, "CapEff"), 16).unwrap(),
        mask,
        "supervisor CapEff is not the unit's CapabilityBoundingSet {:?}\n{st}",
        unit_caps()
    );
    assert_eq!(field(&st, "NoNewPrivs"), "1", "supervisor NoNewPrivs\n{st}");
    let sup_groups: BTreeSet<u32> = ids(&st, "Groups").into_iter().collect();
    assert_eq!(
        sup_groups,
        BTreeSet::from(SUPERVISOR_GROUPS),
        "supervisor Groups"
    );

    // What the unit's capabilities must allow: a port below 1024, a Unix
    // socket handed to its owner, a worker that switched user.
    assert!(site.port < 1024);
    let r = get(&format!("http://127.0.0.1:{}/", site.port), &[]);
    assert_eq!(r.status, 200, "{}", site.log());
    assert_eq!(r.text(), "hello from lwsws\n");
    let (uid, gid, _) = account();
    let meta = std::fs::symlink_metadata(&site.socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o600),
        "unix-socket-perms: the socket's owner and mode"
    );
    let r = site.get_unix();
    assert_eq!(r.status, 200, "over the Unix socket\n{}", site.log());

    let worker = site.worker();
    assert!(
        ready_pids(&site.log()).contains(&worker),
        "the worker child {worker} is the one that reported ready\n{}",
        site.log()
    );
    let st = status(&worker.to_string());
    assert_unprivileged("worker", &st);
    assert_eq!(field(&st, "NoNewPrivs"), "1", "worker NoNewPrivs\n{st}");

    // A CGI program: the same, and it cannot gain privileges either.
    let r = get(&format!("http://127.0.0.1:{}/status", site.port), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), site.log());
    let cgi = r.text();
    assert_unprivileged("CGI program", &cgi);
    assert_eq!(
        field(&cgi, "NoNewPrivs"),
        "1",
        "CGI program NoNewPrivs\n{cgi}"
    );

    // A reload under the same restrictions: the new worker is re-executed
    // from disk, is as unprivileged, and the old one leaves.
    site.server.signal(Signal::SIGHUP);
    let pids = site.wait_ready_workers(2);
    let new = *pids.last().unwrap();
    assert_ne!(new, worker);
    let gone = wait_until(READY, || !common::alive(worker));
    assert!(
        gone,
        "the old worker {worker} still runs after the reload\n{}",
        site.log()
    );
    let st = status(&new.to_string());
    assert_unprivileged("worker after a reload", &st);
    assert_eq!(
        field(&st, "NoNewPrivs"),
        "1",
        "worker NoNewPrivs after a reload\n{st}"
    );
    let r = get(&format!("http://127.0.0.1:{}/", site.port), &[]);
    assert_eq!(r.status, 200, "{}", site.log());

    let code = site.server.stop();
    assert!(code.success(), "stop: {code:?}\n{}", site.log());
}

#[test]
fn worker_sets_no_new_privs_itself() {
    if !root_or_skip("worker_sets_no_new_privs_itself") {
        return;
    }
    // Whatever this process has, its children inherit: then the worker's
    // flag would say nothing about the worker.
    let own = status("self");
    if field(&own, "NoNewPrivs") == "1" {
        eprintln!(
            "SKIPPED worker_sets_no_new_privs_itself: the test process already has \
             NoNewPrivs: 1, which every process it starts inherits"
        );
        return;
    }
    let site = Site::start(false);
    let worker = site.worker();
    let st = status(&worker.to_string());
    assert_unprivileged("worker", &st);
    assert_eq!(
        field(&st, "NoNewPrivs"),
        "1",
        "a worker started without systemd's NoNewPrivileges=true has NoNewPrivs: 0: \
         the worker does not call prctl(PR_SET_NO_NEW_PRIVS, 1) after dropping \
         privileges (crates/lwsws/src/worker.rs, prepare(), after privileges::drop_to), \
         so a CGI program it starts can gain privileges through a setuid or \
         file-capability executable (sudo, ping) when lwsws runs outside the \
         shipped unit\n{st}"
    );
}
