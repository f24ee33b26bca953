//! The shipped systemd unit passes `systemd-analyze verify` (with the
//! binary path pointed at the one under test), keeps the settings the
//! process model relies on, is sandboxed to an overall exposure of at most
//! 3.0 by `systemd-analyze security --offline=true`, and its system call
//! filter lets through every call the supervisor, its workers and CGI
//! programs make. (That a worker started as the unit starts it holds no
//! capability and cannot gain privileges is `hardening_worker_status.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, repo};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

fn unit() -> String {
    std::fs::read_to_string(repo().join("systemd/lwsws.service")).unwrap()
}

/// The unit's settings, comments left out.
fn unit_lines() -> Vec<String> {
    unit()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every value of `key=` in the unit, in order.
fn values(key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit_lines()
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// True if `systemd-analyze` runs; otherwise prints the visible skip message.
fn systemd_analyze_or_skip(test: &str) -> bool {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED {test}: systemd-analyze is not installed");
        return false;
    };
    assert!(probe.status.success());
    true
}

/// The unit as installed, in a temporary directory, with the binary path
/// pointed at the one under test; and, for `Documentation=man:lwsws(8)`,
/// the page in `DIR/man`, as the package installs it (pass it as MANPATH).
struct UnitUnderTest {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl UnitUnderTest {
    fn new() -> UnitUnderTest {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lwsws.service");
        let text = unit().replace("/usr/bin/lwsws", bin().to_str().unwrap());
        assert!(text.contains(bin().to_str().unwrap()));
        std::fs::write(&path, text).unwrap();
        let man8 = dir.path().join("man/man8");
        std::fs::create_dir_all(&man8).unwrap();
        std::fs::copy(repo().join("share/man/lwsws.8"), man8.join("lwsws.8")).unwrap();
        UnitUnderTest { dir, path }
    }

    /// `systemd-analyze ARGS… UNIT`.
    fn analyze(&self, args: &[&str]) -> Output {
        Command::new("systemd-analyze")
            .args(args)
            .arg(&self.path)
            .env("MANPATH", self.dir.path().join("man"))
            .output()
            .unwrap()
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !systemd_analyze_or_skip("unit_passes_systemd_analyze_verify") {
        return;
    }
    let unit = UnitUnderTest::new();
    let out = unit.analyze(&["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stdout}\n{stderr}"
    );
    // Any remark about our unit (unknown keys, bad values) counts as a failure.
    assert!(
        !stderr.contains("lwsws.service") && !stdout.contains("lwsws.service"),
        "systemd-analyze remarks:\n{stdout}\n{stderr}"
    );
}

#[test]
fn unit_keeps_what_the_process_model_needs() {
    let text = unit();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for want in [
        "Type=notify",
        "ExecStartPre=/usr/bin/lwsws --check -c /etc/lwsws",
        "ExecReload=/usr/bin/lwsws --check -c /etc/lwsws",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
        "NoNewPrivileges=true",
        "LogsDirectory=lwsws",
        "StateDirectory=lwsws",
    ] {
        assert!(lines.contains(&want), "unit lacks {want:?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("LimitNOFILE=")));
    // The supervisor must stay root: no User= or DynamicUser=.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("User=") || l.starts_with("DynamicUser="))
    );
    let caps = lines
        .iter()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a capability bounding set");
    for cap in [
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
    ] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap} missing");
    }
}

/// The sandbox the issue asks for, and nothing that would break the
/// process model (a root supervisor whose workers become a real user, serve
/// the network and run CGI programs).
#[test]
fn unit_is_sandboxed_as_far_as_the_process_model_allows() {
    let lines = unit_lines();
    for want in [
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "PrivateDevices=true",
        "PrivateMounts=true",
        "ProtectProc=invisible",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectKernelLogs=true",
        "ProtectControlGroups=true",
        "ProtectClock=true",
        "ProtectHostname=true",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "RestrictSUIDSGID=true",
        "LockPersonality=true",
        "NoNewPrivileges=true",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        // A filtered call fails (a CGI program can cope) instead of killing.
        "SystemCallErrorNumber=EPERM",
        // With ProtectSystem=strict, the writable places lwsws needs.
        "LogsDirectory=lwsws",
        "StateDirectory=lwsws",
        "RuntimeDirectory=lwsws",
    ] {
        assert!(lines.iter().any(|l| l == want), "unit lacks {want:?}");
    }

    // Capabilities: at most what binding, dropping privileges, handing
    // Unix sockets to their owner, signalling workers and reading files
    // whatever their owner need; at least the first four and CHOWN.
    let caps = values("CapabilityBoundingSet");
    assert_eq!(caps.len(), 1, "one CapabilityBoundingSet= line: {caps:?}");
    let caps: BTreeSet<&str> = caps[0].split_whitespace().collect();
    let allowed = BTreeSet::from([
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
    ]);
    let extra: Vec<_> = caps.difference(&allowed).collect();
    assert!(
        extra.is_empty(),
        "capabilities beyond the needed: {extra:?}"
    );
    for cap in [
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_CHOWN",
        "CAP_KILL",
    ] {
        assert!(caps.contains(cap), "{cap} missing");
    }
    let ambient = values("AmbientCapabilities");
    assert!(
        ambient.iter().all(|v| v.trim().is_empty()),
        "ambient capabilities would reach workers and CGI programs: {ambient:?}"
    );

    // Address families: exactly Internet, Unix and netlink.
    let families = values("RestrictAddressFamilies");
    assert_eq!(families.len(), 1, "{families:?}");
    let families: BTreeSet<&str> = families[0].split_whitespace().collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]),
        "RestrictAddressFamilies="
    );

    // Settings that would break the process model.
    for (key, why) in [
        ("PrivateUsers", "workers switch to a real user of the host"),
        ("PrivateNetwork", "lwsws serves the network"),
        ("IPAddressDeny", "clients and upstreams may be anywhere"),
        ("IPAddressAllow", "clients and upstreams may be anywhere"),
        ("RootDirectory", "sites and CGI programs live on the host"),
        ("RootImage", "sites and CGI programs live on the host"),
    ] {
        let v = values(key);
        assert!(
            v.iter()
                .all(|v| matches!(v.as_str(), "" | "false" | "no" | "0")),
            "{key}={v:?}: {why}"
        );
    }
}

/// The names `systemd-analyze syscall-filter` lists for `set`, nested sets
/// expanded.
fn syscall_set(set: &str) -> BTreeSet<String> {
    fn expand(set: &str, seen: &mut BTreeSet<String>, out: &mut BTreeSet<String>) {
        if !seen.insert(set.to_owned()) {
            return;
        }
        let o = Command::new("systemd-analyze")
            .args(["syscall-filter", set])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "systemd-analyze syscall-filter {set}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        // The first line names the set; then its comment, then members.
        for name in text
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if name.starts_with('@') {
                expand(name, seen, out);
            } else {
                out.insert(name.to_owned());
            }
        }
    }
    if !set.starts_with('@') {
        return BTreeSet::from([set.to_owned()]);
    }
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    expand(set, &mut seen, &mut out);
    out
}

/// The system calls the unit's `SystemCallFilter=` lines let through: an
/// allow list (the first line without `~`) minus what `~` lines deny.
fn allowed_syscalls() -> BTreeSet<String> {
    let mut allowed: Option<BTreeSet<String>> = None;
    let mut denied = BTreeSet::new();
    for line in values("SystemCallFilter") {
        if let Some(deny) = line.strip_prefix('~') {
            for set in deny.split_whitespace() {
                denied.extend(syscall_set(set));
            }
        } else {
            let a = allowed.get_or_insert_with(BTreeSet::new);
            for set in line.split_whitespace() {
                a.extend(syscall_set(set));
            }
        }
    }
    let allowed = allowed.expect("SystemCallFilter= with an allow list");
    allowed.difference(&denied).cloned().collect()
}

/// What the supervisor, the workers and CGI programs need from the kernel
/// (from an strace of a server with file, CGI — sh, git http-backend,
/// cgit — and proxy mounts, a Unix-socket listener, plugins, WebSockets,
/// Redis broadcast, an ACME process, reload, log reopening and stop): the
/// filter must let each through.
#[test]
fn unit_allows_the_system_calls_the_process_model_needs() {
    if !systemd_analyze_or_skip("unit_allows_the_system_calls_the_process_model_needs") {
        return;
    }
    let allowed = allowed_syscalls();
    let needed = [
        // Dropping privileges (workers), unix-socket-perms (supervisor).
        "setgroups",
        "setresgid",
        "setresuid",
        "setuid",
        "chown",
        "chmod",
        "prctl",
        // Processes: workers re-executed from disk, CGI programs in
        // process groups of their own, signals, reaping.
        "execve",
        "clone",
        "clone3",
        "vfork",
        "wait4",
        "kill",
        "setpgid",
        "setsid",
        "pidfd_open",
        "signalfd4",
        "rt_sigaction",
        "rt_sigprocmask",
        // Sockets: listeners, upstreams, the control socketpair
        // (SOCK_SEQPACKET, SCM_RIGHTS), sd_notify, netlink, DNS.
        "socket",
        "socketpair",
        "bind",
        "listen",
        "accept4",
        "connect",
        "sendmsg",
        "recvmsg",
        "sendmmsg",
        "recvfrom",
        "sendto",
        "getsockopt",
        "setsockopt",
        "shutdown",
        // Event loop, memory, files, plugins (dlopen).
        "epoll_create1",
        "epoll_ctl",
        "epoll_wait",
        "eventfd2",
        "futex",
        "mmap",
        "mprotect",
        "munmap",
        "madvise",
        "openat",
        "statx",
        "newfstatat",
        "getdents64",
        "pipe2",
        "dup2",
        "fcntl",
        "ioctl",
        "sendfile",
        "getrandom",
        "sched_getaffinity",
        "prlimit64",
        "close_range",
        // CGI programs: nice (setpriority), ps (NUMA memory policy).
        "setpriority",
        "get_mempolicy",
        "set_mempolicy",
    ];
    let missing: Vec<_> = needed.iter().filter(|s| !allowed.contains(**s)).collect();
    assert!(
        missing.is_empty(),
        "SystemCallFilter= {:?} denies calls lwsws or its CGI programs make: {missing:?}",
        values("SystemCallFilter")
    );
    // And it does filter: none of what @system-service leaves out.
    for gone in [
        "mount",
        "reboot",
        "init_module",
        "ptrace",
        "swapon",
        "settimeofday",
    ] {
        assert!(!allowed.contains(gone), "{gone} is allowed");
    }
}

/// `systemd-analyze security --offline=true` rates the unit at most 3.0
/// (`--threshold=30`, on its 0–100 scale, makes it fail beyond that too).
#[test]
fn unit_exposure_is_at_most_3_0() {
    if !systemd_analyze_or_skip("unit_exposure_is_at_most_3_0") {
        return;
    }
    let unit = UnitUnderTest::new();
    let out = unit.analyze(&["security", "--offline=true", "--threshold=30"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // systemd 250 and later (Debian 12 has 252) know both options.
    assert!(
        !stderr.contains("unrecognized option") && !stderr.contains("Unknown option"),
        "this systemd-analyze lacks --offline or --threshold:\n{stderr}"
    );
    const PREFIX: &str = "Overall exposure level for lwsws.service: ";
    let level: f64 = stdout
        .lines()
        .find_map(|l| l.split_once(PREFIX).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {PREFIX:?} line:\n{stdout}\n{stderr}"));
    let exposed: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        level <= 3.0,
        "overall exposure {level} > 3.0; exposed:\n{}",
        exposed.join("\n")
    );
    assert!(
        out.status.success(),
        "systemd-analyze security --threshold=30 failed (exposure {level}):\n{stdout}\n{stderr}"
    );
}
