//! The command line of SPEC §1: flags, log levels, exit statuses, and
//! `--check` on the shipped example configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, check, repo, stderr, stdout};
use lwsws_testkit::{ConfigDir, run, run_with_env};

#[test]
fn help_and_version() {
    let out = run(bin(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for flag in [
        "-c, --config-dir",
        "-d <LEVEL>",
        "-D, --daemon",
        "--check",
        "--print-config",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let out = run(bin(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("lwsws {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--bogus"][..],
        &["-d", "loud"],
        &["-c"],
        &["--check", "--print-config"],
    ] {
        let out = run(bin(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn shipped_example_config_checks_ok() {
    let dir = repo().join("etc/lwsws");
    let out = run(bin(), &["--check", "-c", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "configuration ok");
}

#[test]
fn log_levels_filter_info_lines() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf_d("site", &common::vhost("a", 8001, &w));
    dir.write_conf_d("site~", "editor backup");
    let path = dir.path().to_str().unwrap();
    let info = "skipping configuration file by its name";
    for (level, shown) in [
        ("15", true),
        ("8", true),
        ("info", true),
        ("debug", true),
        ("7", true),
        ("3", false),
        ("1", false),
        ("warn", false),
        ("error", false),
    ] {
        let out = run(bin(), &["-d", level, "--check", "-c", path]);
        assert_eq!(out.status.code(), Some(0), "-d {level}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).contains(info),
            shown,
            "-d {level}:\n{}",
            stderr(&out)
        );
    }
    // No colour codes when stderr is not a terminal.
    let out = run(bin(), &["-d", "15", "--check", "-c", path]);
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}

#[test]
fn bind_failure_exits_3() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf_d("site", &common::vhost("a", port, &w));
    // Both the check and the start see the same configuration…
    assert_eq!(check(&dir).status.code(), Some(0));
    // …but the port is taken, so starting fails with status 3.
    let out = run_with_env(bin(), &["-c", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on port {port}")),
        "{}",
        stderr(&out)
    );
}
