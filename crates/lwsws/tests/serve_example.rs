//! The shipped example configuration serves the shipped test page (what the
//! README's first command does), here on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, get, repo};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};

#[test]
fn example_config_serves_the_test_page() {
    let port = free_port();
    let dir = ConfigDir::new();
    let example = repo().join("etc/lwsws");
    dir.write_conf(&std::fs::read_to_string(example.join("conf")).unwrap());
    let site = std::fs::read_to_string(example.join("conf.d/localhost")).unwrap();
    assert!(site.contains("\"port\": \"7681\""));
    dir.write_conf_d(
        "localhost",
        &site.replace("\"port\": \"7681\"", &format!("\"port\": \"{port}\"")),
    );

    let mut server = Lwsws::start(bin(), &dir, &[], &[port]);
    let r = get(&format!("http://127.0.0.1:{port}/"), &[]);
    assert_eq!(r.status, 200, "{}", server.log());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("server"), Some("lwsws"));
    let page = std::fs::read(repo().join("share/lwsws/test-server/index.html")).unwrap();
    assert_eq!(r.body, page);
    let r = get(&format!("http://127.0.0.1:{port}/no-such-file.html"), &[]);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("404 Not Found"));
    assert!(server.stop().success(), "{}", server.log());
}
