//! `--print-config`: the merged configuration as JSON with every default
//! filled in and secrets hidden; the original's all-strings style and the
//! typed style load to the same result; the output loads again as it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, stderr};
use lwsws_testkit::{ConfigDir, run_with_env};
use serde_json::Value;

fn print(dir: &ConfigDir, env: &[(&str, &str)]) -> Value {
    let out = run_with_env(
        bin(),
        &["--print-config", "-c", dir.path().to_str().unwrap()],
        env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn defaults_are_filled_in() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf_d("site", &common::vhost("Example.COM.", 8080, &w));
    let c = print(&dir, &[]);
    let g = &c["global"];
    assert_eq!(g["server-string"], "lwsws");
    assert_eq!(g["timeout-secs"], 5);
    assert_eq!(g["drain-timeout-secs"], 300);
    assert_eq!(g["max-connections"], 65536);
    assert_eq!(g["cgi-max-processes"], 256);
    assert_eq!(g["ws-broadcast-prefix"], "lwsws:");
    assert_eq!(g["acme-dir"], "/var/lib/lwsws/acme");
    assert_eq!(g["strict-host"], false);
    assert!(g["count-threads"].as_u64().unwrap() >= 1);
    let v = &c["vhosts"][0];
    assert_eq!(v["name"], "example.com");
    assert_eq!(v["port"], 8080);
    assert_eq!(v["keepalive-timeout"], 60);
    assert_eq!(v["ws-max-message-size"], 33554432);
    assert_eq!(v["ws-origin-check"], "same");
    assert_eq!(v["ws-deflate"], true);
    assert_eq!(v["ws-deflate-threshold"], 64);
    let m = &v["mounts"][0];
    assert_eq!(m["origin"], format!("file://{}", w.display()));
    assert_eq!(m["default"], "index.html");
    assert_eq!(m["cgi-timeout"], 300);
    assert_eq!(m["proxy-timeout-secs"], 60);
    assert_eq!(m["cache-max-age"], Value::Null);
}

#[test]
fn secrets_are_hidden() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf("{\"global\": {\"ws-broadcast\": \"redis://:s3cret-pass@127.0.0.1:6379/2\"}}");
    dir.write_conf_d("site", &common::vhost("a", 8080, &w));
    let out = run_with_env(
        bin(),
        &["--print-config", "-c", dir.path().to_str().unwrap()],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret-pass"), "{text}");
    let c: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        c["global"]["ws-broadcast"],
        "redis://:<redacted>@127.0.0.1:6379/2"
    );
}

#[test]
fn original_string_style_and_typed_style_agree() {
    let strings = ConfigDir::new();
    let typed = ConfigDir::new();
    let w = strings.mkdir("www");
    let w2 = typed.mkdir("www");
    // Both servers point at a directory of the same relative name.
    strings.write_conf(
        r#"# the original's style: every value a string
{
  "global": {
    "server-string": "myserver v1", # returned in http headers
    "count-threads": "2",
    "ws-pingpong-secs": "200",
    "init-ssl": "yes",
    "timeout-secs": "7",
    "reject-service-keywords": [{ "scumbot": "404 Not Found" }]
  }
}
"#,
    );
    strings.write_conf_d(
        "site",
        r#"{
  "vhosts": [{
    "name": "localhost",
    "port": "7681",
    "sts": "on",
    "keepalive_timeout": "30",
    "headers": [{ "X-Content-Type-Options": "nosniff" }],
    "mounts": [{
      "mountpoint": "/",
      "origin": "file://www",    # relative to the config directory
      "default": "index.html",
      "cache-max-age": "60",
      "cache-reuse": "1",
      "cache-revalidate": "0",
      "cache-intermediaries": "1",
      "extra-mimetypes": { ".zip": "application/zip" }
    }]
  }]
}
"#,
    );
    typed.write_conf(
        r#"{
  // the same, typed
  "global": {
    "server-string": "myserver v1",
    "count-threads": 2,
    "ws-pingpong-secs": 200,
    "init-ssl": true,
    "timeout-secs": 7,
    "reject-service-keywords": [{ "scumbot": "404 Not Found" }],
  },
}
"#,
    );
    typed.write_conf_d(
        "site",
        r#"{ /* typed values */
  "vhosts": [{
    "name": "localhost", "port": 7681, "sts": true, "keepalive-timeout": 30,
    "headers": [{ "X-Content-Type-Options": "nosniff" }],
    "mounts": [{ "mountpoint": "/", "origin": "file://www", "default": "index.html",
      "cache-max-age": 60, "cache-reuse": true, "cache-revalidate": false,
      "cache-intermediaries": true, "extra-mimetypes": { ".zip": "application/zip" } }],
  }],
}
"#,
    );
    let mut a = print(&strings, &[]);
    let mut b = print(&typed, &[]);
    // The two directories differ only in where they are.
    let fix = |v: &mut Value, dir: &std::path::Path| {
        let m = &mut v["vhosts"][0]["mounts"][0]["origin"];
        let s = m
            .as_str()
            .unwrap()
            .replace(&dir.display().to_string(), "DIR");
        *m = Value::String(s);
    };
    fix(&mut a, strings.path());
    fix(&mut b, typed.path());
    assert_eq!(a, b);
    assert_eq!(a["vhosts"][0]["mounts"][0]["origin"], "file://DIR/www");
    assert_eq!(
        a["global"]["reject-service-keywords"][0]["scumbot"],
        "404 Not Found"
    );
    assert_eq!(a["vhosts"][0]["keepalive-timeout"], 30);
    let _ = (w, w2);
}

#[test]
fn output_loads_again_unchanged() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf("{\"global\": {\"trusted-proxies\": \"10.0.0.0/8, ::1\", \"default-alpn\": \"h2,http/1.1\"}}");
    dir.write_conf_d("site", &common::vhost("a", 8080, &w));
    let first = print(&dir, &[]);
    let again = ConfigDir::new();
    again.write_conf(&serde_json::to_string_pretty(&first).unwrap());
    assert_eq!(print(&again, &[]), first);
}

#[test]
fn data_dir_substitution() {
    let dir = ConfigDir::new();
    let data = dir.mkdir("data");
    std::fs::create_dir_all(data.join("lwsws/site")).unwrap();
    dir.write_conf_d(
        "site",
        r#"{"vhosts": [{"name": "a", "port": 8080,
            "mounts": [{"mountpoint": "/", "origin": "file://_lws_ddir_/lwsws/site"}]}]}"#,
    );
    let c = print(&dir, &[("LWSWS_DATA_DIR", data.to_str().unwrap())]);
    assert_eq!(
        c["vhosts"][0]["mounts"][0]["origin"],
        format!("file://{}/lwsws/site", data.display())
    );
}
