//! `git http-backend` behind a CGI mount (SPEC §3.4): a real `git` client
//! clones a repository of a few hundred commits through lwsws and pushes new
//! commits back, once with an ordinary body and once with
//! `http.postBuffer=1024`, which makes git send the push as a chunked body
//! (the CGI then gets no CONTENT_LENGTH and must read stdin to its end). The
//! server repository is checked with git afterwards. Meta-variables in
//! general are tested in `cgi_env.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";
/// Commits in the server repository before any push.
const COMMITS: usize = 300;

/// `git ARGS…` in `cwd`, isolated from any user or system configuration,
/// with a fixed identity; panics with git's stderr if it fails.
fn git(cwd: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.org")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// git's stdout, trimmed.
fn git_text(cwd: &Path, home: &Path, args: &[&str]) -> String {
    let out = git(cwd, home, args, &[]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A server whose `/git` mount runs git http-backend over `DIR/git`, which
/// holds `repo.git` with [`COMMITS`] commits on `main`, pushes allowed.
struct Site {
    dir: ConfigDir,
    port: u16,
    server: Lwsws,
    bare: PathBuf,
    home: PathBuf,
}

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        let home = dir.mkdir("home");
        let root = dir.mkdir("git");
        let bare = root.join("repo.git");
        git(
            &root,
            &home,
            &["init", "-q", "--bare", "-b", "main", "repo.git"],
            &[],
        );
        fast_import(&bare, &home, COMMITS);
        git(&bare, &home, &["config", "http.receivepack", "true"], &[]);

        let port = free_port();
        dir.write_conf("{ \"global\": {} }\n");
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "git.test", "port": "{port}", "mounts": [
                    {{ "mountpoint": "/git", "origin": "cgi://{HTTP_BACKEND}",
                       "cgi-env": [{{ "GIT_PROJECT_ROOT": "{}" }},
                                   {{ "GIT_HTTP_EXPORT_ALL": "1" }}] }}
                ] }}] }}"#,
                root.display()
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site {
            dir,
            port,
            server,
            bare,
            home,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/git/repo.git", self.port)
    }

    /// Clones the repository through the server into `DIR/NAME`.
    fn clone(&self, name: &str) -> PathBuf {
        git(
            self.dir.path(),
            &self.home,
            &["clone", "-q", &self.url(), name],
            &[],
        );
        self.dir.path().join(name)
    }

    /// `git rev-parse REV` in the server repository.
    fn server_rev(&self, rev: &str) -> String {
        git_text(&self.bare, &self.home, &["rev-parse", rev])
    }
}

/// Writes `n` commits on `refs/heads/main` with `git fast-import`, each
/// changing `counter.txt`.
fn fast_import(bare: &Path, home: &Path, n: usize) {
    let mut stream = String::new();
    for i in 1..=n {
        let message = format!("commit number {i}\n");
        let content = format!("counter {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{i}\ncommitter Test <t@example.org> {} +0000\n\
             data {}\n{message}",
            1_700_000_000 + i,
            message.len()
        ));
        if i > 1 {
            stream.push_str(&format!("from :{}\n", i - 1));
        }
        stream.push_str(&format!(
            "M 100644 inline counter.txt\ndata {}\n{content}\n",
            content.len()
        ));
    }
    let mut child = Command::new("git")
        .current_dir(bare)
        .args(["fast-import", "--quiet"])
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run git fast-import");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

/// Incompressible bytes, so that a pack carrying them stays as big.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

#[test]
fn clone_gets_every_commit() {
    let s = Site::start();
    let work = s.clone("work");
    assert_eq!(
        git_text(&work, &s.home, &["rev-list", "--count", "HEAD"]),
        COMMITS.to_string()
    );
    assert_eq!(
        git_text(&work, &s.home, &["rev-parse", "HEAD"]),
        s.server_rev("main")
    );
    assert_eq!(
        std::fs::read_to_string(work.join("counter.txt")).unwrap(),
        format!("counter {COMMITS}\n")
    );
    assert_eq!(
        git_text(&work, &s.home, &["log", "-1", "--format=%s", "HEAD~41"]),
        format!("commit number {}", COMMITS - 41)
    );
    // The history checks out as a whole.
    git(&work, &s.home, &["fsck", "--no-progress", "--strict"], &[]);
}

#[test]
fn push_of_new_commits_reaches_the_server_repository() {
    let s = Site::start();
    let work = s.clone("work");
    for i in 1..=5 {
        std::fs::write(work.join("pushed.txt"), format!("pushed {i}\n")).unwrap();
        git(&work, &s.home, &["add", "pushed.txt"], &[]);
        git(
            &work,
            &s.home,
            &["commit", "-q", "-m", &format!("pushed commit {i}")],
            &[],
        );
    }
    let head = git_text(&work, &s.home, &["rev-parse", "HEAD"]);
    assert_ne!(head, s.server_rev("main"));
    git(&work, &s.home, &["push", "-q", "origin", "main"], &[]);

    assert_eq!(s.server_rev("main"), head, "{}", s.server.log());
    assert_eq!(
        git_text(&s.bare, &s.home, &["rev-list", "--count", "main"]),
        (COMMITS + 5).to_string()
    );
    assert_eq!(
        git_text(&s.bare, &s.home, &["log", "-1", "--format=%s", "main"]),
        "pushed commit 5"
    );
    git(&s.bare, &s.home, &["fsck", "--no-progress"], &[]);
    // A second clone sees them too.
    let again = s.clone("again");
    assert_eq!(git_text(&again, &s.home, &["rev-parse", "HEAD"]), head);
}

#[test]
fn a_chunked_push_with_a_small_post_buffer_reaches_the_server_repository() {
    let s = Site::start();
    let work = s.clone("work");
    let data = noise(400 * 1024, 0x5eed);
    std::fs::write(work.join("big.bin"), &data).unwrap();
    git(&work, &s.home, &["add", "big.bin"], &[]);
    git(
        &work,
        &s.home,
        &["commit", "-q", "-m", "add 400 KiB of noise"],
        &[],
    );
    std::fs::write(work.join("counter.txt"), "after the noise\n").unwrap();
    git(
        &work,
        &s.home,
        &["commit", "-q", "-a", "-m", "one more"],
        &[],
    );
    let head = git_text(&work, &s.home, &["rev-parse", "HEAD"]);

    let trace = s.dir.path().join("curl-trace");
    let trace_arg = trace.to_str().unwrap();
    git(
        &work,
        &s.home,
        &["-c", "http.postBuffer=1024", "push", "-q", "origin", "main"],
        &[
            ("GIT_TRACE_CURL", trace_arg),
            ("GIT_TRACE_CURL_NO_DATA", "1"),
        ],
    );
    // The push really went out chunked (that is what this test is about).
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(
        trace
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "no chunked request in the curl trace:\n{trace}"
    );

    assert_eq!(s.server_rev("main"), head, "{}", s.server.log());
    assert_eq!(
        git_text(&s.bare, &s.home, &["rev-list", "--count", "main"]),
        (COMMITS + 2).to_string()
    );
    let blob = git(
        &s.bare,
        &s.home,
        &["cat-file", "blob", "main~1:big.bin"],
        &[],
    )
    .stdout;
    assert_eq!(blob.len(), data.len());
    assert!(blob == data, "big.bin differs on the server");
    git(&s.bare, &s.home, &["fsck", "--no-progress"], &[]);
}
