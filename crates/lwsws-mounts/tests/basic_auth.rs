//! Basic auth (SPEC §3.6): loading `basic-auth` files, checking
//! `Authorization: Basic …` (plain and bcrypt), and the 401 challenge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::HeaderValue;
use lwsws_mounts::auth::{AuthFileError, BasicAuth, challenge};
use std::path::Path;
use std::sync::Arc;

fn basic(user_pass: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(user_pass))).unwrap()
}

fn hash_2y(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn load(text: &str) -> Result<BasicAuth, AuthFileError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("users");
    std::fs::write(&p, text).unwrap();
    BasicAuth::load(&p)
}

fn users() -> BasicAuth {
    let text = format!(
        "# users\n\nalice:wonderland\r\nbob:{}\n  # indented comment\ncarol:{}\ndan:pa:ss\n",
        hash_2y("builder"),
        bcrypt::hash("s3cret", 4).unwrap(),
    );
    load(&text).unwrap()
}

#[test]
fn plain_password() {
    let a = users();
    assert_eq!(
        a.check(Some(&basic("alice:wonderland"))),
        Some("alice".into())
    );
    assert_eq!(a.check(Some(&basic("alice:wonderlan"))), None);
    assert_eq!(a.check(Some(&basic("alice:wonderland2"))), None);
    assert_eq!(a.check(Some(&basic("alice:"))), None);
    // A `:` in the password: split at the first one.
    assert_eq!(a.check(Some(&basic("dan:pa:ss"))), Some("dan".into()));
}

#[test]
fn bcrypt_passwords() {
    let a = users();
    assert!(a.has_hashes());
    assert_eq!(a.check(Some(&basic("bob:builder"))), Some("bob".into()));
    assert_eq!(a.check(Some(&basic("carol:s3cret"))), Some("carol".into()));
    assert_eq!(a.check(Some(&basic("bob:wrong"))), None);
    assert_eq!(a.check(Some(&basic("carol:builder"))), None);
    // Remembered after a success, and still exact.
    assert_eq!(a.check(Some(&basic("bob:builder"))), Some("bob".into()));
    assert_eq!(a.check(Some(&basic("bob:builder "))), None);
    assert_eq!(a.check(Some(&basic("bob:builde"))), None);
}

#[tokio::test]
async fn check_async_agrees() {
    let a = Arc::new(users());
    assert_eq!(
        a.check_async(Some(&basic("bob:builder"))).await,
        Some("bob".into())
    );
    assert_eq!(a.check_async(Some(&basic("bob:nope"))).await, None);
    assert_eq!(
        a.check_async(Some(&basic("alice:wonderland"))).await,
        Some("alice".into())
    );
    assert_eq!(a.check_async(None).await, None);
}

#[test]
fn wrong_or_unknown_user() {
    let a = users();
    assert_eq!(a.check(Some(&basic("mallory:wonderland"))), None);
    assert_eq!(a.check(Some(&basic("Alice:wonderland"))), None);
    assert_eq!(a.check(Some(&basic(":wonderland"))), None);
}

#[test]
fn missing_credentials() {
    assert_eq!(users().check(None), None);
}

#[test]
fn malformed_authorization_headers() {
    let a = users();
    for v in [
        "",
        "Basic",
        "Basic ",
        "Bearer YWxpY2U6d29uZGVybGFuZA==",
        "Basic !!!notbase64!!!",
        "Basic YWxpY2U=", // "alice", no colon
        "Digest username=\"alice\"",
        "BasicYWxpY2U6d29uZGVybGFuZA==",
    ] {
        let hv = HeaderValue::from_str(v).unwrap();
        assert_eq!(a.check(Some(&hv)), None, "{v:?}");
    }
    // Not UTF-8 user name.
    let raw = STANDARD.encode(b"\xffalice:wonderland");
    let hv = HeaderValue::from_str(&format!("Basic {raw}")).unwrap();
    assert_eq!(a.check(Some(&hv)), None);
    // Far too long.
    let long = format!("Basic {}", "A".repeat(10_000));
    assert_eq!(a.check(Some(&HeaderValue::from_str(&long).unwrap())), None);
}

#[test]
fn lenient_where_clients_differ() {
    let a = users();
    let token = STANDARD.encode("alice:wonderland");
    for v in [
        format!("basic {token}"),
        format!("BASIC {token}"),
        format!("Basic   {token}"),
        format!("Basic {}", STANDARD_NO_PAD.encode("alice:wonderland")),
    ] {
        let hv = HeaderValue::from_str(&v).unwrap();
        assert_eq!(a.check(Some(&hv)), Some("alice".into()), "{v}");
    }
}

#[test]
fn utf8_credentials() {
    let a = load("zoë:naïve\n").unwrap();
    assert_eq!(a.check(Some(&basic("zoë:naïve"))), Some("zoë".into()));
}

fn line_error(text: &str) -> (usize, String) {
    match load(text) {
        Err(AuthFileError::Line { line, problem, .. }) => (line, problem),
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn malformed_files_name_the_line() {
    let (line, problem) = line_error("# ok\nalice:x\nno colon here\n");
    assert_eq!(line, 3);
    assert!(problem.contains("user:password"), "{problem}");
    assert_eq!(line_error(":password\n").0, 1);
    assert_eq!(line_error("a:1\nbob:\n").0, 2);
    assert_eq!(line_error("a:1\nb:2\na:3\n").0, 3);
    assert!(line_error("a:1\nb:2\na:3\n").1.contains("line 1"));
    let (line, problem) = line_error("\n\nbob:$2y$10$tooshort\n");
    assert_eq!(line, 3);
    assert!(problem.contains("bcrypt"), "{problem}");
    let (_, problem) = line_error("bob:$apr1$abc$def\n");
    assert!(problem.contains("htpasswd -B"), "{problem}");
    assert_eq!(line_error("ok:1\nÿ").0, 2);
    // Not UTF-8.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("users");
    std::fs::write(&p, b"a:1\nb:\xff\n").unwrap();
    match BasicAuth::load(&p) {
        Err(e @ AuthFileError::Line { line: 2, .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{}:2: ", p.display())), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_never_show_passwords() {
    let (_, problem) = line_error("bob:\n");
    assert!(!problem.contains("hunter2"));
    let text = "alice:hunter2\nalice:hunter2\n";
    let err = load(text).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    let a = load("alice:hunter2\n").unwrap();
    assert!(!format!("{a:?}").contains("hunter2"));
}

#[test]
fn missing_file_is_an_error() {
    let e = BasicAuth::load(Path::new("/nonexistent/users")).unwrap_err();
    assert!(matches!(e, AuthFileError::Read { .. }));
    assert!(e.to_string().starts_with("/nonexistent/users: "), "{e}");
}

#[test]
fn empty_file_lets_nobody_in() {
    let a = load("# nobody yet\n").unwrap();
    assert_eq!(a.check(Some(&basic("alice:wonderland"))), None);
    assert!(!a.has_hashes());
}

#[test]
fn challenge_names_the_realm() {
    let e = challenge("example.com");
    assert_eq!(e.status, 401);
    assert_eq!(e.headers["www-authenticate"], "Basic realm=\"example.com\"");
    let e = challenge("we\"ird\\");
    assert_eq!(
        e.headers["www-authenticate"],
        "Basic realm=\"we\\\"ird\\\\\""
    );
    // Never a panic, whatever the name.
    let e = challenge("bad\r\nname ünïcode");
    assert_eq!(e.status, 401);
    assert!(e.headers.contains_key("www-authenticate"));
}
