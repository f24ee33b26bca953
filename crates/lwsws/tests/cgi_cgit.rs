//! Debian's `cgit` behind a CGI mount (SPEC §3.4), as an operator would
//! set it up: `/cgit` runs `/usr/lib/cgit/cgit.cgi` with `CGIT_CONFIG`
//! (given through `cgi-env`) naming a cgitrc in the test's directory, and
//! `/cgit-data` serves cgit's stylesheet and images from `/usr/share/cgit`
//! with a file mount. The repository index, a repository's summary and a
//! commit page render, and the stylesheet they link to is served. Git over
//! HTTP is tested in `cgi_git.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, bin, curl};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::path::Path;
use std::process::{Command, Stdio};

const CGIT: &str = "/usr/lib/cgit/cgit.cgi";
const CGIT_DATA: &str = "/usr/share/cgit";
/// The repository's name in cgit (`repo.url`) and its description.
const REPO: &str = "demo-repo";
const DESC: &str = "A repository for the lwsws cgit test";
/// Subjects of the repository's two commits, oldest first.
const SUBJECTS: [&str; 2] = [
    "Start the frobnicator project",
    "Teach the frobnicator to count sheep",
];

/// `git ARGS…` in `cwd`, away from any user configuration.
fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("HOME", cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Author")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada Author")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Site {
    port: u16,
    server: Lwsws,
    /// Commit ids, oldest first.
    commits: Vec<String>,
    _dir: ConfigDir,
}

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        let work = dir.mkdir("work");
        git(&work, &["init", "-q", "-b", "main"]);
        let mut commits = Vec::new();
        for (i, subject) in SUBJECTS.iter().enumerate() {
            std::fs::write(work.join("README"), format!("version {i}\n")).unwrap();
            git(&work, &["add", "README"]);
            git(&work, &["commit", "-q", "-m", subject]);
            commits.push(git(&work, &["rev-parse", "HEAD"]));
        }
        let bare = dir.path().join("repos/demo.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
        );
        let cgitrc = dir.write_file(
            "cgitrc",
            format!(
                "cache-size=0\n\
                 virtual-root=/cgit/\n\
                 css=/cgit-data/cgit.css\n\
                 logo=/cgit-data/cgit.png\n\
                 root-title=lwsws cgit test\n\
                 repo.url={REPO}\n\
                 repo.path={}\n\
                 repo.desc={DESC}\n",
                bare.display()
            ),
        );
        let port = free_port();
        dir.write_conf("{ \"global\": {} }\n");
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "cgit.test", "port": "{port}", "mounts": [
                    {{ "mountpoint": "/cgit", "origin": "cgi://{CGIT}",
                       "cgi-env": [{{ "CGIT_CONFIG": "{}" }}] }},
                    {{ "mountpoint": "/cgit-data", "origin": "file://{CGIT_DATA}" }}
                ] }}] }}"#,
                cgitrc.display()
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site {
            port,
            server,
            commits,
            _dir: dir,
        }
    }

    /// GET `path` and expect a 200 HTML page.
    fn page(&self, path: &str) -> String {
        let r = curl(&[&format!("http://127.0.0.1:{}{path}", self.port)]);
        self.expect_ok(path, &r);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            r.header("content-type")
        );
        r.text()
    }

    fn expect_ok(&self, path: &str, r: &Reply) {
        assert_eq!(
            r.status,
            200,
            "GET {path}: {}\n--- server log ---\n{}",
            r.text(),
            self.server.log()
        );
    }
}

#[test]
fn the_repository_index_lists_the_repository() {
    let s = Site::start();
    let html = s.page("/cgit/");
    assert!(html.contains("lwsws cgit test"), "{html}");
    assert!(html.contains(REPO), "{html}");
    assert!(html.contains(DESC), "{html}");
    // Links go through the virtual root, that is through lwsws.
    assert!(html.contains(&format!("href='/cgit/{REPO}/'")), "{html}");
}

#[test]
fn summary_and_commit_pages_render() {
    let s = Site::start();
    let html = s.page(&format!("/cgit/{REPO}/"));
    assert!(html.contains(REPO), "{html}");
    assert!(html.contains(SUBJECTS[1]), "{html}");

    for (commit, subject) in s.commits.iter().zip(SUBJECTS) {
        let html = s.page(&format!("/cgit/{REPO}/commit/?id={commit}"));
        assert!(html.contains(REPO), "{html}");
        assert!(html.contains(subject), "{subject} missing: {html}");
        assert!(html.contains(commit.as_str()), "{html}");
    }
    // The query picks the commit: the older one's page is not the newer's.
    let html = s.page(&format!("/cgit/{REPO}/commit/?id={}", s.commits[0]));
    assert!(!html.contains(SUBJECTS[1]), "{html}");
}

#[test]
fn the_stylesheet_the_pages_link_to_is_served() {
    let s = Site::start();
    let html = s.page("/cgit/");
    assert!(html.contains("/cgit-data/cgit.css"), "{html}");
    let url = format!("http://127.0.0.1:{}/cgit-data/cgit.css", s.port);
    let r = curl(&[&url]);
    s.expect_ok("/cgit-data/cgit.css", &r);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/css")),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(
        r.body,
        std::fs::read(Path::new(CGIT_DATA).join("cgit.css")).unwrap()
    );
}
