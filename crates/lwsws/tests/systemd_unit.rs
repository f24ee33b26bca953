//! The shipped systemd unit passes `systemd-analyze verify` (with the
//! binary path pointed at the one under test) and keeps the settings the
//! process model relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, repo};
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(repo().join("systemd/lwsws.service")).unwrap()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED unit_passes_systemd_analyze_verify: systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lwsws.service");
    let text = unit().replace("/usr/bin/lwsws", bin().to_str().unwrap());
    assert!(text.contains(bin().to_str().unwrap()));
    std::fs::write(&path, text).unwrap();
    // `Documentation=man:lwsws(8)` must name a page man finds: the one in
    // share/man, as the package installs it.
    let man8 = dir.path().join("man/man8");
    std::fs::create_dir_all(&man8).unwrap();
    std::fs::copy(repo().join("share/man/lwsws.8"), man8.join("lwsws.8")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
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
