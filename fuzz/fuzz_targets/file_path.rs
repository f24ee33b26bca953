//! URL path normalisation and the file mount's path resolution (SPEC §3.2):
//! `resolve_remainder`, then `file::serve` and `file::serve_cached` on a
//! fixture origin directory that holds symlinks out of it.
//!
//! Input: the first line is the remainder (the request path past the
//! mountpoint); a first line starting with `HEAD ` makes it a HEAD request;
//! each further line `name: value` is a request header (Range,
//! Accept-Encoding, If-None-Match, …).
//!
//! Invariants: a resolved path is relative, made of plain names only (no
//! `..`, `.`, root or NUL; no dotfile but a first `.well-known`), so it never
//! escapes the root; whatever is served is the content of a file inside the
//! root (never the file outside it, never a dotfile), and the cache answers
//! exactly as the uncached path does.
#![no_main]

use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use lwsws_config::{Mount, Origin};
use lwsws_mounts::file::{self, FileCache, resolve_remainder};
use lwsws_mounts::{Body, HttpError};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

const SECRET: &[u8] = b"SECRET-OUTSIDE-THE-ROOT";
const DOTFILE: &[u8] = b"HIDDEN-DOTFILE-CONTENT";

/// Files inside the root and their contents (all distinct).
const INSIDE: &[(&str, &[u8])] = &[
    ("index.html", b"<p>index page</p>"),
    ("a/b.txt", b"bee file"),
    ("a/index.html", b"<p>a index</p>"),
    ("app.js", b"plain javascript"),
    ("app.js.gz", b"GZIPPED-JAVASCRIPT"),
    ("app.js.br", b"BROTLI-JAVASCRIPT"),
    ("sp ace%.txt", b"space percent"),
    (".well-known/acme-challenge/t", b"acme token"),
];

struct Fixture {
    root: PathBuf,
    mount: Mount,
    cache: FileCache,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lwsws-fuzz-file-{}", std::process::id()));
        let root = dir.join("root");
        let old = SystemTime::now() - Duration::from_secs(3600);
        let write = |p: &Path, content: &[u8]| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            // Old enough for the cache to keep it.
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(old).unwrap();
        };
        for (rel, content) in INSIDE {
            write(&root.join(rel), content);
        }
        write(&root.join(".hidden"), DOTFILE);
        write(&dir.join("secret.txt"), SECRET);
        let link = |name: &str, target: &str| {
            let _ = std::fs::remove_file(root.join(name));
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link("escape", "../secret.txt");
        link("escape.txt", "../secret.txt");
        link("updir", "..");
        link("abs.txt", &dir.join("secret.txt").display().to_string());
        link("inside.txt", "a/b.txt");
        let mut mount = Mount::new("/", Origin::File(root.clone()));
        mount.default = Some("index.html".into());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        Fixture {
            root,
            mount,
            cache: FileCache::default(),
            rt,
        }
    })
}

/// Status and body of an answer (an error has an empty body).
async fn answer(r: Result<http::Response<Body>, HttpError>) -> (StatusCode, Vec<u8>) {
    match r {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes().to_vec();
            (parts.status, body)
        }
        Err(e) => (e.status, Vec::new()),
    }
}

fn check_resolved(root: &Path, remainder: &str) {
    let Ok(rel) = resolve_remainder(remainder) else {
        return;
    };
    assert!(rel.is_relative(), "{remainder:?} resolved to {rel:?}");
    for (i, c) in rel.components().enumerate() {
        let Component::Normal(name) = c else {
            panic!("{remainder:?} resolved to {rel:?} with the component {c:?}");
        };
        let name = name.as_bytes();
        assert!(!name.contains(&0), "NUL in {rel:?}");
        assert!(
            !name.starts_with(b".") || (i == 0 && name == b".well-known"),
            "{remainder:?} resolved to the dotfile path {rel:?}"
        );
    }
    // The lexical half of "never escapes the root".
    let joined = root.join(&rel);
    assert!(joined.starts_with(root), "{joined:?} is not under {root:?}");
    assert!(
        !joined.components().any(|c| c == Component::ParentDir),
        "{joined:?} holds .."
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, remainder) = match first.strip_prefix("HEAD ") {
        Some(r) => (Method::HEAD, r),
        None => (Method::GET, first),
    };

    check_resolved(&f.root, remainder);

    let uri = http::Uri::try_from(remainder).unwrap_or_else(|_| http::Uri::from_static("/"));
    let mut parts = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            parts.headers.append(n, v);
        }
    }

    let (plain, cached) = f.rt.block_on(async {
        let plain = answer(file::serve(&parts, &f.mount, &f.root, remainder).await).await;
        let cached =
            answer(file::serve_cached(&parts, &f.mount, &f.root, remainder, &f.cache).await).await;
        (plain, cached)
    });
    assert_eq!(plain, cached, "serve and serve_cached differ for {text:?}");

    let (status, body) = plain;
    if status.is_success() && !body.is_empty() {
        assert!(
            INSIDE
                .iter()
                .any(|(_, c)| c.windows(body.len()).any(|w| w == body.as_slice())),
            "{text:?} answered {status} with bytes of no file inside the root: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    if status.is_success() && method == Method::GET && resolve_remainder(remainder).is_err() {
        panic!("{remainder:?} was refused by resolve_remainder but served {status}");
    }
});
