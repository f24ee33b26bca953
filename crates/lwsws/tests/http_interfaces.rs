//! An `interface` given by name that has no address when lwsws starts is
//! logged, and bound as soon as it appears. Needs root (it creates a veth
//! pair); without it the test says so and passes nothing off as tested.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, get};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::process::Command;
use std::time::{Duration, Instant};

/// A veth pair that exists for the life of the value.
struct Veth(String);

impl Veth {
    fn create(name: &str, addr: &str) -> Option<Veth> {
        let peer = format!("{name}p");
        let ok = Command::new("ip")
            .args(["link", "add", name, "type", "veth", "peer", "name", &peer])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let v = Veth(name.to_string());
        for args in [
            vec!["addr", "add", addr, "dev", name],
            vec!["link", "set", name, "up"],
        ] {
            assert!(
                Command::new("ip").args(&args).status().unwrap().success(),
                "ip {args:?}"
            );
        }
        Some(v)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[test]
fn named_interface_is_bound_when_it_appears() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED named_interface_is_bound_when_it_appears: needs root to create a network interface"
        );
        return;
    }
    let n = std::process::id() % 10000;
    let name = format!("lwt{n}");
    // A loopback-range address: traffic to it stays on this machine.
    let ip = format!("127.0.{}.{}", 100 + n % 100, 1 + n % 200);
    let port = free_port();
    // While the interface is missing nothing listens on the port, and a
    // parallel test's server could take it on a wildcard address (and then
    // answer our request). Holding 127.0.0.1:PORT keeps wildcard binds off
    // it; lwsws binds another loopback address, which does not clash.
    let _guard = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    std::fs::write(www.join("index.html"), "on the new interface\n").unwrap();
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{"vhosts": [{{"name": "a", "port": "{port}", "interface": "{name}",
                "mounts": [{{"mountpoint": "/", "origin": "file://{}", "default": "index.html"}}]}}]}}"#,
            www.display()
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[]);
    assert!(
        server.wait_for_log("it will be bound when it appears", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let Some(_veth) = Veth::create(&name, &format!("{ip}/32")) else {
        eprintln!(
            "SKIPPED named_interface_is_bound_when_it_appears: cannot create a veth interface here"
        );
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "never listened on {ip}:{port}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = get(&format!("http://{ip}:{port}/"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "on the new interface\n");
    assert!(
        server
            .log()
            .contains("a configured interface has an address now"),
        "{}",
        server.log()
    );
}
