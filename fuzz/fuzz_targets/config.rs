//! The configuration reader (SPEC §2): the comment stripper, then one file's
//! text parsed, converted and validated as `load` does with `DIR/conf`.
//!
//! Invariants: nothing panics (every problem is a returned error);
//! `blank_comments` keeps the length and every newline and only turns bytes
//! into spaces; a configuration that loads prints (`--print-config`) as a
//! file that loads again and prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwsws_config::fuzzing::{blank_comments, load_text};
use lwsws_config::{LoadOptions, print_config};
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory that exists for the configuration to name: `www/` with an
/// `index.html`, an `htpasswd`, and the data directory's
/// `lwsws/test-server/` and `lwsws/server-status/`.
fn fixture() -> &'static (PathBuf, LoadOptions) {
    static F: OnceLock<(PathBuf, LoadOptions)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lwsws-fuzz-config-{}", std::process::id()));
        for sub in ["www", "lwsws/test-server", "lwsws/server-status"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("www/index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("lwsws/test-server/index.html"), "<p>hi</p>").unwrap();
        std::fs::write(
            dir.join("htpasswd"),
            "user:$2y$05$abcdefghijklmnopqrstuu5wn6dhR5CNfvF8sXvNyvyiAe0Y3uLq6\n",
        )
        .unwrap();
        let opts = LoadOptions {
            data_dir: dir.clone(),
            protocols: lwsws_ws::Registry::builtin().specs(),
            plugins: None,
            as_root: false,
        };
        (dir, opts)
    })
}

/// `LWSWS_FUZZ_DEBUG=1`: print what each input loads to (for reading a
/// crash or checking what the seeds reach).
fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("LWSWS_FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(out) = blank_comments(text) {
        assert_eq!(out.len(), text.len(), "blank_comments changed the length");
        for (a, b) in text.bytes().zip(out.bytes()) {
            assert!(
                a == b || (b == b' ' && a != b'\n' && a != b'\r'),
                "blank_comments turned {a:#x} into {b:#x}"
            );
        }
    }

    let (dir, opts) = fixture();
    let loaded = load_text(dir, text, opts);
    if debug() {
        eprintln!("{loaded:#?}");
    }
    let Ok(loaded) = loaded else {
        return;
    };
    // What --print-config shows loads again, to the same configuration.
    let printed = print_config(&loaded.config);
    let again = serde_json::to_string_pretty(&printed).unwrap();
    match load_text(dir, &again, opts) {
        Ok(back) => assert_eq!(
            printed,
            print_config(&back.config),
            "the printed configuration loads differently"
        ),
        Err(e) => panic!("the printed configuration does not load: {e:?}\n{again}"),
    }
});
