//! `lwsws --check` on broken configurations: every class of error names the
//! file, line, column and key, suggests a fix, and all errors of one load
//! are reported together with exit status 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{check, stderr, stdout};
use lwsws_testkit::ConfigDir;

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

/// The stderr line for `file:line:col:`; panics with all of stderr if absent.
fn line_at<'a>(err: &'a str, file: &str, (line, col): (usize, usize)) -> &'a str {
    let place = format!("{file}:{line}:{col}: ");
    err.lines()
        .find(|l| l.contains(&place))
        .unwrap_or_else(|| panic!("no diagnostic at {place}\nstderr:\n{err}"))
}

fn failed(dir: &ConfigDir) -> String {
    let out = check(dir);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stderr:\n{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("configuration ok"));
    stderr(&out)
}

fn www(dir: &ConfigDir) -> String {
    let d = dir.mkdir("www");
    d.display().to_string()
}

#[test]
fn syntax_error_line_is_not_shifted_by_comments() {
    let dir = ConfigDir::new();
    // Lines 1-6 are comments of every kind, including a multi-line block
    // comment; the comma missing after the first vhost is expected right
    // after its closing brace: line 9, column 45.
    let text = "# hash comment\n// slash comment\n/* block\n   comment\n   spanning\n   lines */\n{ # trailing comment\n  \"vhosts\": [\n    {\"name\": \"a\", \"port\": \"1\" /* inline */ }\n    {\"name\": \"b\"}\n  ]\n}\n";
    dir.write_conf_d("site", text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, (9, 45));
    assert!(l.contains("syntax error") && l.contains("comma"), "{l}");
    assert!(l.contains("add a \",\" before this value"), "{l}");
}

#[test]
fn syntax_errors_say_what_to_do() {
    for (text, hint) in [
        (
            r#"{"vhosts": [{"name": "a",, "port": "1"}]}"#,
            "(a doubled \",\"?)",
        ),
        (
            r#"{"vhosts": [{"name" "a", "port": "1"}]}"#,
            "add \":\" between the key and its value",
        ),
        (
            r#"{"vhosts": [{"name": "a", "port": "1"}]"#,
            "close the object with \"}\"",
        ),
        (
            r#"{"vhosts": [{name: "a", "port": "1"}]}"#,
            "put the key in double quotes",
        ),
    ] {
        let dir = ConfigDir::new();
        dir.write_conf_d("site", text);
        let err = failed(&dir);
        assert!(
            err.lines()
                .any(|l| l.contains("syntax error") && l.contains(hint)),
            "{text}: expected a syntax error with the hint {hint:?}; stderr:\n{err}"
        );
    }
}

#[test]
fn a_misspelt_port_gets_one_error_with_the_suggestion() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{"vhosts": [{{"name": "a", "prot": "8080",
  "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}}]}}"#
        ),
    );
    let err = failed(&dir);
    assert!(
        err.lines()
            .any(|l| l.contains("\"prot\"") && l.contains("did you mean \"port\"?")),
        "{err}"
    );
    assert!(!err.contains("every vhost needs a port"), "{err}");
}

#[test]
fn value_error_after_block_comment_keeps_its_line() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text = format!(
        "/*\n * A long comment block\n * above the vhosts.\n */\n{{\"vhosts\": [{{\n  \"name\": \"a\",\n  \"port\": \"70000\",\n  \"mounts\": [{{\"mountpoint\": \"/\", \"origin\": \"file://{w}\"}}]\n}}]}}\n"
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    // The value "70000" starts on line 7, column 11.
    let l = line_at(&err, &file, (7, 11));
    assert!(l.contains("\"port\""), "{l}");
    assert!(l.contains("out of range"), "{l}");
    assert!(l.contains("(use a whole number from 1 to 65535)"), "{l}");
}

#[test]
fn unknown_keys_get_did_you_mean_and_all_errors_are_reported() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text = format!(
        r#"{{
  "global": {{ "server-strng": "x" }},
  "vhosts": [{{
    "name": "a",
    "port": "abc",
    "mounts": [{{ "mountpiont": "/", "origin": "file://{w}" }}],
    "sts": "maybe"
  }}]
}}"#
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, pos(&text, "\"server-strng\""));
    assert!(
        l.contains("unknown global key") && l.contains("did you mean \"server-string\"?"),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"mountpiont\""));
    assert!(
        l.contains("unknown mount key") && l.contains("did you mean \"mountpoint\"?"),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"abc\""));
    assert!(
        l.contains("\"port\"") && l.contains("not a whole number"),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"maybe\""));
    assert!(l.contains("\"sts\"") && l.contains("not a boolean"), "{l}");
    // The mount without a mountpoint is reported too.
    assert!(err.contains("every mount needs a mountpoint"), "{err}");
    assert!(err.contains("error(s) in the configuration"), "{err}");
}

#[test]
fn repeated_key_names_both_lines() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text = format!(
        "{{\"vhosts\": [{{\n \"name\": \"a\",\n \"port\": \"80\",\n \"port\": \"81\",\n \"mounts\": [{{\"mountpoint\": \"/\", \"origin\": \"file://{w}\"}}]}}]}}"
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, (4, 2));
    assert!(
        l.contains("set twice") && l.contains(&format!("{file}:3:2")),
        "{l}"
    );
}

#[test]
fn duplicate_vhost_and_mixed_tls_on_one_port() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let cert = dir.write_file("c.pem", "cert");
    let key = dir.write_file("k.pem", "key");
    let text = format!(
        r#"{{"vhosts": [
  {{"name": "a", "port": "8001", "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}},
  {{"name": "A.", "port": "8001", "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}},
  {{"name": "b", "port": "8001", "host-ssl-cert": "{c}", "host-ssl-key": "{k}",
    "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}}
]}}"#,
        c = cert.display(),
        k = key.display()
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, (3, 3));
    assert!(
        l.contains("\"name\"") && l.contains("defined twice") && l.contains(&format!("{file}:2:3")),
        "{l}"
    );
    let l = line_at(&err, &file, (4, 3));
    assert!(
        l.contains("is TLS but shares port 8001") && l.contains("plaintext"),
        "{l}"
    );
}

#[test]
fn mountpoints_must_start_with_slash_and_be_unique() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text = format!(
        r#"{{"vhosts": [{{"name": "a", "port": "8001", "mounts": [
  {{"mountpoint": "docs", "origin": "file://{w}"}},
  {{"mountpoint": "/x", "origin": "file://{w}"}},
  {{"mountpoint": "/x/", "origin": "file://{w}"}}
]}}]}}"#
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, pos(&text, "\"docs\""));
    assert!(
        l.contains("\"mountpoint\"")
            && l.contains("does not start with /")
            && l.contains("write \"/docs\""),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"/x/\""));
    assert!(
        l.contains("mounted twice") && l.contains(&format!("{file}:3:")),
        "{l}"
    );
}

#[test]
fn files_named_by_the_config_must_be_usable() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let script = dir.write_file("not-exec.cgi", "#!/bin/sh\necho\n");
    let text = format!(
        r#"{{"vhosts": [{{"name": "a", "port": "8001",
  "host-ssl-cert": "missing-cert.pem",
  "host-ssl-key": "/nonexistent/key.pem",
  "host-ssl-ca": "missing-ca.pem",
  "access-log": "/nonexistent-dir/access.log",
  "mounts": [
    {{"mountpoint": "/", "origin": "file://{w}/missing", "basic-auth": "missing.passwd"}},
    {{"mountpoint": "/cgi", "origin": "cgi://{s}"}},
    {{"mountpoint": "/cgi2", "origin": "cgi:///nonexistent/prog"}}
  ]}}]}}"#,
        s = script.display()
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let cases = [
        ("\"host-ssl-cert\"", "missing-cert.pem: no such file"),
        ("\"host-ssl-key\"", "/nonexistent/key.pem: no such file"),
        ("\"host-ssl-ca\"", "missing-ca.pem: no such file"),
        (
            "\"access-log\"",
            "the directory /nonexistent-dir does not exist",
        ),
        ("\"basic-auth\"", "missing.passwd: no such file"),
    ];
    for (key, msg) in cases {
        let l = line_at(&err, &file, pos(&text, key));
        assert!(l.contains(key) && l.contains(msg), "{key}: {l}");
    }
    // relative paths are taken from the configuration directory
    assert!(
        err.contains(&format!("{}/missing-cert.pem", dir.path().display())),
        "{err}"
    );
    let origin_lines: Vec<&str> = err.lines().filter(|l| l.contains("\"origin\"")).collect();
    assert!(
        origin_lines
            .iter()
            .any(|l| l.contains(&format!("{w}/missing: no such file"))),
        "{err}"
    );
    assert!(
        origin_lines
            .iter()
            .any(|l| l.contains("not-exec.cgi is not executable") && l.contains("chmod +x")),
        "{err}"
    );
    assert!(
        origin_lines
            .iter()
            .any(|l| l.contains("/nonexistent/prog: no such file")),
        "{err}"
    );
}

#[test]
fn unknown_protocols_and_bad_origins() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text = format!(
        r#"{{"vhosts": [{{"name": "a", "port": "8001",
  "ws-protocols": [{{"no-such-protocol": {{"status": "ok"}}}}],
  "mounts": [
    {{"mountpoint": "/", "origin": "file://{w}"}},
    {{"mountpoint": "/z", "origin": "gzip:///x.zip"}},
    {{"mountpoint": "/r", "origin": "^https://example.com"}},
    {{"mountpoint": "/f", "origin": "ftp://example.com"}}
  ]}}]}}"#
    );
    dir.write_conf_d("site", &text);
    let err = failed(&dir);
    let file = format!("{}/conf.d/site", dir.path().display());
    let l = line_at(&err, &file, pos(&text, "\"no-such-protocol\""));
    assert!(
        l.contains("\"ws-protocols\"") && l.contains("unknown protocol \"no-such-protocol\""),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"gzip://"));
    assert!(
        l.contains("zip archives is not supported") && l.contains("unpack it and use file://"),
        "{l}"
    );
    let l = line_at(&err, &file, pos(&text, "\"^https"));
    assert!(l.contains("write \">https://example.com\""), "{l}");
    let l = line_at(&err, &file, pos(&text, "\"ftp://"));
    assert!(l.contains("unsupported origin"), "{l}");
}

#[test]
fn bad_ports() {
    for bad in ["\"0\"", "\"65536\"", "\"-1\"", "\"http\"", "[80]"] {
        let dir = ConfigDir::new();
        let w = www(&dir);
        let text = format!(
            r#"{{"vhosts": [{{"name": "a", "port": {bad}, "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}}]}}"#
        );
        dir.write_conf_d("site", &text);
        let err = failed(&dir);
        let file = format!("{}/conf.d/site", dir.path().display());
        let l = line_at(&err, &file, pos(&text, bad));
        assert!(l.contains("\"port\""), "{bad}: {l}");
    }
}

#[test]
fn unknown_user_and_group() {
    let dir = ConfigDir::new();
    let w = www(&dir);
    let text =
        "{\"global\": {\"username\": \"no-such-user-xyz\", \"groupname\": \"no-such-group-xyz\"}}";
    dir.write_conf(text);
    dir.write_conf_d("site", &common::vhost("a", 8001, std::path::Path::new(&w)));
    let out = check(&dir);
    let err = stderr(&out);
    let file = format!("{}/conf", dir.path().display());
    let u = line_at(&err, &file, pos(text, "\"no-such-user-xyz\""));
    let g = line_at(&err, &file, pos(text, "\"no-such-group-xyz\""));
    assert!(
        u.contains("\"username\"") && u.contains("no user \"no-such-user-xyz\""),
        "{u}"
    );
    assert!(
        g.contains("\"groupname\"") && g.contains("no group \"no-such-group-xyz\""),
        "{g}"
    );
    if nix::unistd::geteuid().is_root() {
        // Root would have to switch to them: an error.
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(u.contains("adduser --system"), "{u}");
    } else {
        // Not root: lwsws cannot switch users anyway, so only a warning.
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(u.contains("warning:"), "{u}");
    }
}

#[test]
fn no_configuration_at_all() {
    let dir = ConfigDir::new();
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no configuration found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn skipped_names_in_conf_d_are_not_read() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf_d("site", &common::vhost("a", 8001, &w));
    for name in [
        ".hidden",
        "site~",
        "site.swp",
        "site.bak",
        "site.dpkg-old",
        "site.dpkg-new",
        "site.dpkg-dist",
        "site.rpmnew",
        "site.rpmsave",
    ] {
        dir.write_conf_d(name, "this is { not json");
    }
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "configuration ok");
}

#[test]
fn later_global_wins_with_a_warning_naming_both() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    let first = "{\"global\": {\"server-string\": \"one\"}}";
    let second = "{\n\"global\": {\"server-string\": \"two\",}, # trailing comma\n}";
    dir.write_conf(first);
    dir.write_conf_d("b-site", &common::vhost("a", 8001, &w));
    dir.write_conf_d("a-override", second);
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let l = line_at(
        &err,
        &format!("{}/conf.d/a-override", dir.path().display()),
        pos(second, "\"server-string\""),
    );
    let (fl, fc) = pos(first, "\"server-string\"");
    assert!(
        l.contains("warning:") && l.contains(&format!("{}/conf:{fl}:{fc}", dir.path().display())),
        "{l}"
    );
}

#[test]
fn openssl_only_keys_warn_once() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    let text = format!(
        r#"{{"vhosts": [
  {{"name": "a", "port": "8001", "fo-listen-queue": "5", "enable-client-ssl": "1",
    "mounts": [{{"mountpoint": "/", "origin": "file://{w}", "auth-mask": "0"}}]}},
  {{"name": "b", "port": "8001", "fo-listen-queue": "5",
    "mounts": [{{"mountpoint": "/", "origin": "file://{w}"}}]}}
]}}"#,
        w = w.display()
    );
    dir.write_conf_d("site", &text);
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("\"fo-listen-queue\": accepted").count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.matches("\"enable-client-ssl\": accepted").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("\"auth-mask\": accepted").count(), 1, "{err}");
}
