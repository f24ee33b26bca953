//! Router tests on configurations built in memory.

use super::*;
use lwsws_config::{Global, IpFamily, Mount, Origin};
use std::time::Duration;

fn mount(mp: &str) -> Mount {
    Mount::new(mp, Origin::Callback("x".into()))
}

fn vhost(name: &str, port: u16, mounts: &[&str]) -> Vhost {
    let mut v = Vhost::new(
        name,
        Listen::Tcp {
            port,
            interface: None,
            family: IpFamily::Both,
        },
    );
    v.mounts = mounts.iter().map(|m| mount(m)).collect();
    v
}

fn config(vhosts: Vec<Vhost>, strict: bool) -> Config {
    Config {
        global: Global {
            user: None,
            group: None,
            count_threads: 1,
            server_string: "lwsws".into(),
            ws_pingpong: None,
            init_ssl: false,
            reject_service_keywords: vec![],
            timeout: Duration::from_secs(5),
            plugin_dirs: vec![],
            drain_timeout: Duration::from_secs(5),
            strict_host: strict,
            max_connections: 10,
            ws_broadcast_prefix: String::new(),
            cgi_max_processes: 1,
            trusted_proxies: vec![],
            ws_broadcast: None,
            acme_dir: "/".into(),
            rlimit_nofile: None,
            default_alpn: None,
            ip_limit_wsi: None,
            ip_limit_ah: None,
        },
        vhosts,
    }
}

#[test]
fn groups_vhosts_by_listener() {
    let r = Router::new(&config(
        vec![
            vhost("a", 80, &[]),
            vhost("b", 81, &[]),
            vhost("c", 80, &[]),
        ],
        false,
    ));
    assert_eq!(r.listeners().len(), 2);
    assert_eq!(r.listeners()[0].vhosts, vec![0, 2]);
    assert_eq!(r.listeners()[1].vhosts, vec![1]);
}

#[test]
fn host_matching_rules() {
    let r = Router::new(&config(
        vec![
            vhost("first.test", 80, &[]),
            vhost("b.test", 80, &[]),
            vhost("*.wild.test", 80, &[]),
        ],
        false,
    ));
    assert_eq!(r.select_vhost(0, Some("b.test"), None), Ok(1));
    assert_eq!(r.select_vhost(0, Some("B.Test:8080"), None), Ok(1));
    assert_eq!(r.select_vhost(0, Some("b.test."), None), Ok(1));
    assert_eq!(r.select_vhost(0, Some("x.wild.test"), None), Ok(2));
    // one label only
    assert_eq!(r.select_vhost(0, Some("a.b.wild.test"), None), Ok(0));
    assert_eq!(r.select_vhost(0, Some("wild.test"), None), Ok(0));
    // unknown and missing hosts fall back to the first vhost
    assert_eq!(r.select_vhost(0, Some("nope"), None), Ok(0));
    assert_eq!(r.select_vhost(0, None, None), Ok(0));
    assert_eq!(host_only("[::1]:80"), "::1");
    assert_eq!(host_only("::1"), "::1");
}

#[test]
fn strict_host_gives_misdirected() {
    let r = Router::new(&config(
        vec![vhost("a", 80, &[]), vhost("b", 80, &[])],
        true,
    ));
    assert_eq!(
        r.select_vhost(0, Some("zzz"), None),
        Err(NoVhost::Misdirected)
    );
    assert_eq!(r.select_vhost(0, Some("b"), None), Ok(1));
    let mut v = vhost("a", 80, &[]);
    v.strict_host_check = true;
    let r = Router::new(&config(vec![v, vhost("b", 80, &[])], false));
    assert_eq!(
        r.select_vhost(0, Some("zzz"), None),
        Err(NoVhost::Misdirected)
    );
}

#[test]
fn sni_and_host_must_agree() {
    let r = Router::new(&config(
        vec![vhost("a", 443, &[]), vhost("b", 443, &[])],
        false,
    ));
    assert_eq!(r.select_sni(0, Some("b")), Some(1));
    assert_eq!(r.select_sni(0, Some("unknown")), Some(0));
    assert_eq!(r.select_sni(0, None), Some(0));
    assert_eq!(
        r.select_vhost(0, Some("a"), Some(1)),
        Err(NoVhost::Misdirected)
    );
    assert_eq!(r.select_vhost(0, Some("b"), Some(1)), Ok(1));
    assert_eq!(r.select_vhost(0, Some("other"), Some(1)), Ok(1));
}

#[test]
fn longest_mount_on_segment_boundary() {
    let r = Router::new(&config(
        vec![vhost("a", 80, &["/", "/foo", "/foo/bar/"])],
        false,
    ));
    assert_eq!(r.select_mount(0, "/foo"), Some((1, "")));
    assert_eq!(r.select_mount(0, "/foo/"), Some((1, "/")));
    assert_eq!(r.select_mount(0, "/foo/x"), Some((1, "/x")));
    assert_eq!(r.select_mount(0, "/foobar"), Some((0, "/foobar")));
    assert_eq!(r.select_mount(0, "/foo/bar"), Some((2, "")));
    assert_eq!(r.select_mount(0, "/foo/bar/baz"), Some((2, "/baz")));
    let r = Router::new(&config(vec![vhost("a", 80, &["/only"])], false));
    assert_eq!(r.select_mount(0, "/"), None);
    assert_eq!(r.select_mount(0, "/onlyx"), None);
}
