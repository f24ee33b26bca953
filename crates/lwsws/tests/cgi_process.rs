//! CGI programs as processes (SPEC §3.4, §2.2 `cgi-max-processes`): a
//! program past `cgi-timeout`, or whose client goes away, is killed with its
//! whole process group; broken, silent, missing and non-executable programs
//! give 502; many programs run at once, and one too many gets 503 with
//! `Retry-After: 1`; 200 MiB flow each way through a server whose memory
//! stays small; no child is left unreaped. The fixtures are shell scripts in
//! `tests/fixtures/cgi/` that record their process ids in a state directory
//! (`CGI_TEST_DIR`, given through `cgi-env`) and wait for files the test
//! creates, so nothing here sleeps to wait for readiness. What the programs
//! see is tested in `cgi_env.rs`; the handler is
//! `crates/lwsws-mounts/src/cgi.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    GroupReaper, alive, bin, connect, get, install_cgi, live_children, proc_status_kib,
    read_response, wait_until, zombie_children,
};
use lwsws_testkit::{ConfigDir, Lwsws, free_port, group_members};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long a killed program and its group may take to disappear.
const GONE: Duration = Duration::from_secs(10);
/// How long a test waits for a program to have started (a liveness bound).
const STARTED: Duration = Duration::from_secs(30);
/// 200 MiB.
const BIG: usize = 200 * 1024 * 1024;
/// The most memory (VmHWM, peak resident set) the server may use while it
/// moves [`BIG`] bytes.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// A server whose mounts run fixture scripts, with a state directory the
/// scripts write their pids into.
struct Site {
    dir: ConfigDir,
    port: u16,
    server: Lwsws,
    /// `CGI_TEST_DIR` of every mount.
    state: PathBuf,
    /// Kills the programs' groups if the server did not (a failed test).
    reaper: GroupReaper,
}

/// A CGI mount: mountpoint, fixture script, extra keys (ending in a comma).
struct CgiMount<'a>(&'a str, &'a str, &'a str);

impl Site {
    /// One vhost on a fresh port; `global` is the body of the global section.
    fn start(global: &str, mounts: &[CgiMount<'_>]) -> Site {
        let dir = ConfigDir::new();
        let state = dir.mkdir("state");
        let mounts: Vec<String> = mounts
            .iter()
            .map(|CgiMount(mountpoint, fixture, extra)| {
                let program = install_cgi(&dir, &format!("cgi-bin/{fixture}"), fixture);
                format!(
                    r#"{{ "mountpoint": "{mountpoint}", "origin": "cgi://{}", {extra}
                          "cgi-env": [{{ "CGI_TEST_DIR": "{}" }}] }}"#,
                    program.display(),
                    state.display()
                )
            })
            .collect();
        let port = free_port();
        dir.write_conf(&format!("{{ \"global\": {{ {global} }} }}\n"));
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "cgi.test", "port": "{port}",
                      "mounts": [ {} ] }}] }}"#,
                mounts.join(",\n")
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site {
            dir,
            port,
            server,
            state,
            reaper: GroupReaper::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for the pids a fixture wrote to `state/NAME.pids` (its process
    /// group first) and hands the group to the reaper.
    fn pids(&self, name: &str) -> Vec<u32> {
        let file = self.state.join(format!("{name}.pids"));
        assert!(
            wait_until(STARTED, || file.exists()),
            "the program for {name} did not start\n--- server log ---\n{}",
            self.server.log()
        );
        let pids: Vec<u32> = std::fs::read_to_string(&file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        self.reaper.add(pids[0]);
        pids
    }

    /// Asserts that the process group `pids[0]` and every process in `pids`
    /// are gone (zombies count as gone) within [`GONE`].
    fn assert_gone(&self, pids: &[u32]) {
        let pgid = pids[0];
        let gone = wait_until(GONE, || {
            group_members(pgid).is_empty() && pids.iter().all(|&p| !alive(p))
        });
        assert!(
            gone,
            "still running after {GONE:?}: group {pgid} = {:?}, listed {:?}\n--- server log ---\n{}",
            group_members(pgid),
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>(),
            self.server.log()
        );
    }

    /// Asserts that the server reaps its children: no zombie child of it
    /// remains (a just-exited one gets [`GONE`] to be reaped).
    fn assert_no_zombies(&self) {
        let zombies = || -> Vec<u32> {
            self.server_pids()
                .into_iter()
                .flat_map(zombie_children)
                .collect()
        };
        assert!(
            wait_until(GONE, || zombies().is_empty()),
            "zombie children of lwsws: {:?}",
            zombies()
        );
    }

    /// The server's own processes: its process group (the main process
    /// and any worker it forks). CGI programs are not in it: each runs in
    /// a group of its own.
    fn server_pids(&self) -> Vec<u32> {
        let pids = self.server.group_members();
        assert!(pids.contains(&self.server.pid()), "lwsws is gone");
        pids
    }

    /// The status of a GET of `path` (query included), answered in full.
    fn status(&self, path: &str) -> u16 {
        get(&self.url(path), &[]).status
    }

    /// The largest peak resident set (VmHWM) among the server's own
    /// processes so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        self.server_pids()
            .into_iter()
            .filter_map(|pid| proc_status_kib(pid, "VmHWM"))
            .max()
            .expect("VmHWM of lwsws")
    }
}

/// Sends a GET for `path` with `Connection: close` on a new connection.
fn send_get(port: u16, path: &str) -> std::net::TcpStream {
    let mut s = connect(port);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: cgi.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

#[test]
fn a_program_past_cgi_timeout_is_killed_with_its_group() {
    let s = Site::start("", &[CgiMount("/slow", "slow.sh", r#""cgi-timeout": 2,"#)]);
    let stream = send_get(s.port, "/slow?timeout");
    // The answer comes (the read gives up after common::IO_DEADLINE): the
    // program never wrote a header, so it is an error status.
    let r = read_response(&mut BufReader::new(stream), false);
    assert!(
        r.status == 502 || r.status == 504,
        "status {} after cgi-timeout\n--- server log ---\n{}",
        r.status,
        s.server.log()
    );
    // The script and its child ignore SIGTERM: only a SIGKILL to the group
    // ends them both.
    let pids = s.pids("timeout");
    s.assert_gone(&pids);
    s.assert_no_zombies();
}

#[test]
fn a_client_that_goes_away_mid_response_stops_the_program() {
    let s = Site::start("", &[CgiMount("/stream", "stream.sh", "")]);
    let stream = send_get(s.port, "/stream?mid");
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The body is flowing: a chunk of ticks arrives.
    let mut some = [0u8; 64];
    let n = reader.read(&mut some).unwrap();
    assert!(n > 0);
    let pids = s.pids("mid");
    assert!(pids.iter().all(|&p| alive(p)));
    drop(reader);
    // SIGPIPE is ignored by the script: only the server can stop it.
    s.assert_gone(&pids);
    s.assert_no_zombies();
}

#[test]
fn a_client_that_goes_away_before_the_headers_stops_the_program() {
    // cgi-timeout stays at its default (300 s): only the client's leaving
    // can end the program within the test's bound.
    let s = Site::start("", &[CgiMount("/think", "silent-wait.sh", "")]);
    let stream = send_get(s.port, "/think?early");
    let pids = s.pids("early");
    assert!(pids.iter().all(|&p| alive(p)));
    drop(stream);
    s.assert_gone(&pids);
    s.assert_no_zombies();
}

/// Reads a response head from `r` and returns it.
fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let n = r.read_line(&mut head).unwrap();
        assert!(n > 0, "closed inside the head: {head:?}");
    }
    head
}

#[test]
fn cgi_timeout_also_ends_a_response_held_open_by_a_leftover_child() {
    let s = Site::start(
        "",
        &[CgiMount("/orphan", "orphan.sh", r#""cgi-timeout": 2,"#)],
    );
    let stream = send_get(s.port, "/orphan?held");
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let pids = s.pids("held");
    // The script has exited; its child keeps the response open until the
    // server cuts it (the read gives up after common::IO_DEADLINE).
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the response was not ended after cgi-timeout: {read:?}\n--- server log ---\n{}",
        s.server.log()
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("started"), "{rest:?}");
    // Cut, and recognisably so: no last chunk as if it were complete.
    assert!(!rest.ends_with("0\r\n\r\n"), "{rest:?}");
    s.assert_gone(&pids);
    s.assert_no_zombies();
}

#[test]
fn a_client_that_goes_away_stops_a_leftover_child_too() {
    let s = Site::start("", &[CgiMount("/orphan", "orphan.sh", "")]);
    let stream = send_get(s.port, "/orphan?left");
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let pids = s.pids("left");
    // The script itself has exited (or is about to); its child has not.
    assert!(alive(pids[1]));
    drop(reader);
    s.assert_gone(&pids);
    s.assert_no_zombies();
}

#[test]
fn garbage_headers_are_a_502_and_stderr_goes_to_the_error_log() {
    let s = Site::start("", &[CgiMount("/garbage", "garbage.sh", "")]);
    for kind in [
        "no-colon",
        "space-in-name",
        "status-word",
        "status-range",
        "binary",
        "unfinished",
        "endless",
    ] {
        let status = s.status(&format!("/garbage?{kind}"));
        assert_eq!(
            status,
            502,
            "garbage kind {kind}\n--- server log ---\n{}",
            s.server.log()
        );
    }
    // stderr lines reach the log, with the mount they came from.
    let marker = "garbage-fixture-stderr no-colon";
    assert!(s.server.wait_for_log(marker, GONE), "{}", s.server.log());
    let log = s.server.log();
    let line = log.lines().find(|l| l.contains(marker)).unwrap();
    assert!(line.contains("/garbage"), "no mount in {line:?}");
    s.assert_no_zombies();
}

#[test]
fn a_program_that_exits_without_output_is_a_502() {
    let s = Site::start("", &[CgiMount("/silent", "silent.sh", "")]);
    assert_eq!(s.status("/silent"), 502, "{}", s.server.log());
    assert_eq!(s.status("/silent?fail"), 502, "{}", s.server.log());
    assert!(
        s.server.wait_for_log("silent-fixture: giving up", GONE),
        "{}",
        s.server.log()
    );
    s.assert_no_zombies();
}

#[test]
fn a_missing_or_non_executable_program_is_a_502() {
    let s = Site::start(
        "",
        &[
            CgiMount("/gone", "silent.sh", ""),
            CgiMount("/noexec", "garbage.sh", ""),
            CgiMount("/fine", "gate.sh", ""),
        ],
    );
    // Both are fine at start (a missing program is a config error).
    std::fs::remove_file(s.dir.path().join("cgi-bin/silent.sh")).unwrap();
    let noexec = s.dir.path().join("cgi-bin/garbage.sh");
    std::fs::set_permissions(&noexec, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert_eq!(s.status("/gone"), 502, "{}", s.server.log());
    assert_eq!(s.status("/noexec?no-colon"), 502, "{}", s.server.log());
    // The server goes on serving.
    std::fs::write(s.state.join("go"), "").unwrap();
    let r = get(&s.url("/fine?after"), &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "reply after\n"));
    s.assert_no_zombies();
}

#[test]
fn a_hundred_concurrent_requests_all_complete() {
    const N: usize = 100;
    let s = Site::start(
        "\"cgi-max-processes\": 150",
        &[CgiMount("/gate", "gate.sh", "")],
    );
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let url = s.url(&format!("/gate?n{i}"));
            std::thread::spawn(move || get(&url, &[]))
        })
        .collect();
    // Every program runs at once: each waits for `go` before it answers.
    let all_started = wait_until(STARTED * 2, || {
        (0..N).all(|i| s.state.join(format!("n{i}.pids")).exists())
    });
    for i in 0..N {
        if s.state.join(format!("n{i}.pids")).exists() {
            s.pids(&format!("n{i}"));
        }
    }
    assert!(
        all_started,
        "not all {N} programs ran at once\n{}",
        s.server.log()
    );
    std::fs::write(s.state.join("go"), "").unwrap();
    for (i, client) in clients.into_iter().enumerate() {
        let r = client.join().unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), format!("reply n{i}\n"));
    }
    s.assert_no_zombies();
}

#[test]
fn beyond_cgi_max_processes_is_a_503_with_retry_after() {
    let s = Site::start(
        "\"cgi-max-processes\": 1",
        &[CgiMount("/gate", "gate.sh", "")],
    );
    let first = {
        let url = s.url("/gate?first");
        std::thread::spawn(move || get(&url, &[]))
    };
    s.pids("first");
    let r = get(&s.url("/gate?second"), &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        !s.state.join("second.pids").exists(),
        "the second program ran anyway"
    );
    std::fs::write(s.state.join("go"), "").unwrap();
    let r = first.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "reply first\n"));
    // Once the first program is done, its slot is free again.
    let mut last = 0;
    let freed = wait_until(GONE, || {
        last = s.status("/gate?third");
        last == 200
    });
    assert!(freed, "still {last} after the first program ended");
    s.assert_no_zombies();
}

#[test]
fn a_200_mib_response_streams_with_small_server_memory() {
    let s = Site::start("", &[CgiMount("/zeros", "zeros.sh", "")]);
    // A client slower than the program: a server that does not hold the
    // program back would have to buffer the difference.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "300",
            "--limit-rate",
            "50M",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(s.url("/zeros"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 {BIG}"),
        "{}",
        s.server.log()
    );
    let peak = s.peak_rss_kib();
    assert!(
        peak < RSS_LIMIT_KIB,
        "lwsws peak RSS {peak} KiB for a {BIG}-byte response"
    );
    s.assert_no_zombies();
}

#[test]
fn a_200_mib_upload_streams_to_stdin_with_small_server_memory() {
    let s = Site::start("", &[CgiMount("/count", "count.sh", "")]);
    let mut stream = connect(s.port);
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /count HTTP/1.1\r\nHost: cgi.test\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {BIG}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..BIG / block.len() {
        stream.write_all(&block).unwrap();
    }
    let r = read_response(&mut BufReader::new(stream), false);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.server.log());
    assert_eq!(r.text().trim(), BIG.to_string());
    let peak = s.peak_rss_kib();
    assert!(
        peak < RSS_LIMIT_KIB,
        "lwsws peak RSS {peak} KiB for a {BIG}-byte upload"
    );
    s.assert_no_zombies();
}

#[test]
fn no_child_is_left_behind_after_many_short_programs() {
    let s = Site::start(
        "",
        &[
            CgiMount("/silent", "silent.sh", ""),
            CgiMount("/garbage", "garbage.sh", ""),
            CgiMount("/gate", "gate.sh", ""),
        ],
    );
    std::fs::write(s.state.join("go"), "").unwrap();
    for i in 0..20 {
        assert_eq!(s.status("/silent"), 502);
        assert_eq!(s.status("/garbage?unfinished"), 502);
        let r = get(&s.url(&format!("/gate?g{i}")), &[]);
        assert_eq!(r.text(), format!("reply g{i}\n"));
    }
    s.assert_no_zombies();
    // Children of the server outside its own group are CGI programs.
    let pgid = s.server.pid();
    let programs = || -> Vec<u32> {
        s.server_pids()
            .into_iter()
            .flat_map(live_children)
            .filter(|&c| common::proc_stat(c).is_some_and(|(_, _, g)| g != pgid))
            .collect()
    };
    assert!(
        wait_until(GONE, || programs().is_empty()),
        "CGI programs still running: {:?}",
        programs()
    );
}
