//! The JSON Schema of the configuration (`lwsws --schema`, shipped as
//! `share/lwsws/lwsws.schema.json`) against real files, with Python's
//! `jsonschema` (Debian python3-jsonschema) as an editor or CI would use it.
//! `tests/run` also validates every configuration the test suite started
//! lwsws with (`LWSWS_CONFIG_CORPUS`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, repo, stdout};
use lwsws_testkit::{ConfigDir, run};
use std::process::Command;

fn schema_path() -> std::path::PathBuf {
    repo().join("share/lwsws/lwsws.schema.json")
}

/// Runs tests/validate_configs.py on `paths`: (exit code, output).
fn validate(paths: &[&std::path::Path]) -> (Option<i32>, String) {
    let out = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/validate_configs.py"))
        .arg(schema_path())
        .args(paths)
        .output()
        .expect("run python3 (apt-get install -y python3 python3-jsonschema)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'jsonschema'"),
        "python3-jsonschema is missing (apt-get install -y python3-jsonschema)"
    );
    (out.status.code(), text)
}

#[test]
fn the_shipped_schema_is_what_lwsws_prints() {
    let out = run(bin(), &["--schema"]);
    assert_eq!(out.status.code(), Some(0));
    let shipped = std::fs::read_to_string(schema_path()).unwrap();
    assert!(
        stdout(&out) == shipped,
        "share/lwsws/lwsws.schema.json is stale: run `lwsws --schema > share/lwsws/lwsws.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // Descriptions and defaults come with the keys, aliases included.
    let vhost = &schema["$defs"]["vhost"]["properties"];
    for alias in ["keeplive-timeout", "keepalive-timeout", "keepalive_timeout"] {
        assert_eq!(vhost[alias]["default"], "60", "{alias}");
    }
    assert_eq!(
        schema["$defs"]["global"]["properties"]["timeout-secs"]["default"],
        "5"
    );
    assert!(
        vhost["ws-origin-check"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[test]
fn the_example_configuration_validates() {
    let etc = repo().join("etc/lwsws");
    let (code, text) = validate(&[&etc]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid against"), "{text}");
}

#[test]
fn a_misspelt_key_fails_schema_validation_as_it_fails_the_parser() {
    let conf = ConfigDir::new();
    let www = conf.mkdir("www");
    conf.write_conf("{ \"global\": { \"timeout-secs\": \"5\" } }\n");
    let good = format!(
        "# a comment\n{{ \"vhosts\": [ {{ \"name\": \"localhost\", \"port\": \"7681\",\n  \"mounts\": [ {{ \"mountpoint\": \"/\", \"origin\": \"file://{}\", }} ], }} ] }}\n",
        www.display()
    );
    conf.write_conf_d("site", &good);
    let (code, text) = validate(&[conf.path()]);
    assert_eq!(code, Some(0), "the good file must pass: {text}");
    let out = run(bin(), &["--check", "-c", conf.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));

    conf.write_conf_d("site", &good.replace("\"mountpoint\"", "\"mountpont\""));
    let (code, text) = validate(&[conf.path()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("'mountpont' was unexpected"), "{text}");
    let out = run(bin(), &["--check", "-c", conf.path().to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "lwsws refuses it too");

    // A value of the wrong shape fails too.
    conf.write_conf_d("site", &good.replace("\"7681\"", "[\"7681\"]"));
    let (code, text) = validate(&[conf.path()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("/vhosts/0/port"), "{text}");
}

/// A schema default written as lwsws prints the value (`--print-config`):
/// flags as on/off, numbers and strings as their text; `None` for "not
/// set" (null, an empty list or object).
fn as_default(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.is_empty() => None,
        serde_json::Value::Object(o) if o.is_empty() => None,
        other => Some(other.to_string()),
    }
}

#[test]
fn every_default_in_the_schema_is_what_lwsws_fills_in() {
    // The smallest configuration: every key but the required ones left out,
    // so `--print-config` shows what lwsws uses in their place.
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    dir.write_conf(r#"{ "global": {} }"#);
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "x", "port": "7999",
                 "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
            www.display()
        ),
    );
    let out = run(
        bin(),
        &["--print-config", "-c", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    // Defaults lwsws resolves when it starts rather than in the file's
    // model, so `--print-config` shows them as not set.
    let resolved_at_start = ["default-alpn"];
    let sections = [
        ("global", &printed["global"]),
        ("vhost", &printed["vhosts"][0]),
        ("mount", &printed["vhosts"][0]["mounts"][0]),
    ];
    let mut wrong = Vec::new();
    let mut compared = 0;
    for (section, values) in sections {
        let properties = schema["$defs"][section]["properties"].as_object().unwrap();
        for (key, value) in values.as_object().unwrap() {
            // Required keys, and lists of objects that have no default.
            if matches!(
                key.as_str(),
                "name" | "port" | "mountpoint" | "origin" | "mounts"
            ) {
                continue;
            }
            let Some(property) = properties.get(key) else {
                wrong.push(format!("{section}.{key}: printed but not in the schema"));
                continue;
            };
            let stated = property["default"].as_str();
            if key == "count-threads" {
                // The number of CPUs: the description says so.
                assert!(stated.is_none());
                let cpus = std::thread::available_parallelism().unwrap().get();
                assert_eq!(value.as_u64(), Some(cpus as u64), "count-threads");
                assert!(property["description"].as_str().unwrap().contains("CPUs"));
                continue;
            }
            compared += 1;
            match (stated, as_default(value)) {
                (Some(s), Some(v)) if s == v => {}
                (None, None) => {}
                (Some(_), None) if resolved_at_start.contains(&key.as_str()) => {}
                (s, v) => wrong.push(format!(
                    "{section}.{key}: schema default {s:?}, lwsws uses {v:?}"
                )),
            }
        }
    }
    assert!(compared > 60, "only {compared} keys compared");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
