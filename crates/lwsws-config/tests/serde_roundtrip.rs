//! The supervisor hands the validated `Config` to its workers as JSON: a
//! realistic configuration must come back exactly as it went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lwsws_config::{Config, LoadOptions, Origin, ProtocolSpec, ProxyTarget};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn options(data_dir: &Path) -> LoadOptions {
    let spec = |name: &str, pvos: &[&str]| ProtocolSpec {
        name: name.to_string(),
        pvos: pvos.iter().map(|s| s.to_string()).collect(),
    };
    LoadOptions {
        data_dir: data_dir.to_path_buf(),
        protocols: vec![
            spec("dumb-increment-protocol", &[]),
            spec("lws-mirror-protocol", &[]),
            spec(
                "lws-server-status",
                &["update-ms", "hide-vhosts", "filespath"],
            ),
            spec("lws-openmetrics", &[]),
        ],
        as_root: false,
        plugins: None,
    }
}

/// A server certificate and key for "secure.example", and a CA certificate
/// (TLS vhosts must name real PEM files: the loader checks they fit).
fn tls_files() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["secure.example".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (cert.pem(), key.serialize_pem(), ca.pem())
}

/// Writes a configuration directory in the style of etc/lwsws, with most
/// kinds of value the types hold.
fn config_dir(root: &Path) -> std::path::PathBuf {
    let conf = root.join("etc");
    let www = root.join("www");
    std::fs::create_dir_all(www.join("status")).unwrap();
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let cgi = root.join("cgi-bin/app.cgi");
    write(&cgi, "#!/bin/sh\necho\n");
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cert, key, ca) = tls_files();
    write(&root.join("tls/cert.pem"), &cert);
    write(&root.join("tls/key.pem"), &key);
    write(&root.join("tls/ca.pem"), &ca);
    write(&root.join("auth/htpasswd"), "user:$2y$05$abc\n");
    let r = root.display();

    write(
        &conf.join("conf"),
        &format!(
            r#"# global settings
{{
    "global": {{
        "username": "root",
        "server-string": "lwsws-test",
        "timeout-secs": "7",
        "ws-pingpong-secs": "30",
        "drain-timeout-secs": "3",
        "count-threads": "2",
        "max-connections": "500",
        "cgi-max-processes": "8",
        "plugin-dir": "{r}/plugins",
        "reject-service-keywords": [{{
            "scumbot": "404 Not Found",
            "badbot": "403 Go Away",
            "teapot": "418"
        }}],
        "trusted-proxies": ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"],
        "ws-broadcast": "redis://:s3cret@127.0.0.1:6379/2",
        "ws-broadcast-prefix": "test:",
        "acme-dir": "{r}/acme",
        "rlimit-nofile": "4096",
        "default-alpn": ["h2", "http/1.1"],
        "ip-limit-wsi": "20",
        "ip-limit-ah": "10",
        "strict-host": "1"
    }}
}}
"#
        ),
    );

    write(
        &conf.join("conf.d/localhost"),
        &format!(
            r#"{{
    "vhosts": [{{
        "name": "localhost",
        "port": "7681",
        "interface": "127.0.0.1",
        "access-log": "{r}/logs/access.log",
        "keepalive-timeout": "15",
        "headers": [{{
            "X-Frame-Options": "DENY",
            "content-security-policy": "default-src 'self'; img-src *",
            "x-note": "caf\u00e9 au lait",
            "x-empty": ""
        }}],
        "ws-protocols": [{{
            "dumb-increment-protocol": {{ "default": "1" }},
            "lws-server-status": {{
                "update-ms": "2000",
                "hide-vhosts": "1",
                "filespath": "{r}/www/status/a",
                "filespath": "/proc/loadavg"
            }},
            "lws-openmetrics": {{}}
        }}],
        "ws-origin-check": "trusted",
        "ws-trusted-origins": ["https://example.com", "http://localhost:7681"],
        "ws-max-message-size": "65536",
        "ws-deflate": "0",
        "mounts": [{{
            "mountpoint": "/",
            "origin": "file://_lws_ddir_",
            "default": "index.html",
            "cache-max-age": "3600",
            "cache-revalidate": "1",
            "cache-intermediaries": "1",
            "extra-mimetypes": {{ ".zip": "application/zip", ".md": "text/markdown; charset=utf-8" }},
            "basic-auth": "{r}/auth/htpasswd"
        }}, {{
            "mountpoint": "/cgi-bin/app",
            "origin": "cgi://{r}/cgi-bin/app.cgi",
            "cgi-env": [{{ "APP_MODE": "test", "EMPTY": "" }}],
            "cgi-timeout": "20"
        }}, {{
            "mountpoint": "/old",
            "origin": ">https://example.com/new/"
        }}, {{
            "mountpoint": "/api",
            "origin": "http://127.0.0.1:8080/backend/",
            "proxy-timeout-secs": "9",
            "max-body-size": "1048576"
        }}, {{
            "mountpoint": "/secure-api",
            "origin": "https://[::1]:8443",
            "proxy-ca": "{r}/tls/ca.pem"
        }}, {{
            "mountpoint": "/sock",
            "origin": "http://unix:/run/app.sock:/prefix/"
        }}, {{
            "mountpoint": "/metrics",
            "origin": "callback://lws-openmetrics",
            "pmo": [{{ "scope": "all", "format": "text" }}]
        }}, {{
            "mountpoint": "/ws",
            "origin": "file://{r}/www",
            "protocol": "dumb-increment-protocol"
        }}]
    }}, {{
        "name": "secure.example",
        "port": "7443",
        "interface": "lo",
        "ipv6only": "1",
        "host-ssl-cert": "{r}/tls/cert.pem",
        "host-ssl-key": "{r}/tls/key.pem",
        "host-ssl-ca": "{r}/tls/ca.pem",
        "client-cert-required": "1",
        "ciphers": "ECDHE-RSA-AES128-GCM-SHA256",
        "tls13-ciphers": "TLS_AES_128_GCM_SHA256",
        "ssl-option-set": "4",
        "sts": "1",
        "alpn": ["http/1.1"],
        "headers": [{{ "x-secure": "yes" }}],
        "mounts": [{{
            "mountpoint": "/",
            "origin": "file://{r}/www"
        }}]
    }}, {{
        "name": "acme.example",
        "port": "8443",
        "noipv6": "1",
        "acme": {{
            "directory": "https://acme-staging-v02.api.letsencrypt.org/directory",
            "email": "admin@example.com",
            "challenge": "tls-alpn-01",
            "directory-ca": "{r}/tls/ca.pem"
        }},
        "mounts": [{{
            "mountpoint": "/",
            "origin": "file://{r}/www"
        }}]
    }}, {{
        "name": "sock.local",
        "unix-socket": "1",
        "interface": "{r}/run/site.sock",
        "mounts": [{{
            "mountpoint": "/",
            "origin": "file://{r}/www"
        }}]
    }}]
}}
"#
        ),
    );
    std::fs::create_dir_all(root.join("run")).unwrap();
    conf
}

#[test]
fn config_round_trips_through_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = config_dir(tmp.path());
    let loaded = match lwsws_config::load(&dir, &options(&tmp.path().join("www"))) {
        Ok(l) => l,
        Err(e) => panic!("configuration did not load: {e:?}"),
    };
    let config = loaded.config;

    // The configuration holds what this test means to carry across.
    assert_eq!(config.vhosts.len(), 4);
    assert!(config.vhosts[2].acme.is_some());
    let v = &config.vhosts[0];
    assert_eq!(v.headers.len(), 4);
    assert!(v.headers.iter().any(|(_, val)| val.to_str().is_err()));
    for kind in ["file", "cgi", "redirect", "proxy", "unix-proxy", "callback"] {
        assert!(
            v.mounts.iter().any(|m| match (&m.origin, kind) {
                (Origin::File(_), "file") => true,
                (Origin::Cgi(_), "cgi") => true,
                (Origin::Redirect(_), "redirect") => true,
                (Origin::Proxy(p), "proxy") => matches!(p.target, ProxyTarget::Tcp { .. }),
                (Origin::Proxy(p), "unix-proxy") => matches!(p.target, ProxyTarget::Unix(_)),
                (Origin::Callback(_), "callback") => true,
                _ => false,
            }),
            "no {kind} mount"
        );
    }
    assert!(v.ws_protocols.iter().any(|p| p.pvos.len() >= 3));
    assert_eq!(config.global.reject_service_keywords.len(), 3);
    assert!(config.global.ws_broadcast.is_some());
    assert!(config.vhosts[1].tls.is_some());

    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    let again = serde_json::to_string(&back).unwrap();
    assert_eq!(json, again);
    assert_eq!(
        lwsws_config::print_config(&config),
        lwsws_config::print_config(&back)
    );

    // Values whose equality the JSON alone would not show.
    for (a, b) in config.vhosts.iter().zip(&back.vhosts) {
        assert_eq!(a.listen, b.listen);
        assert_eq!(a.headers, b.headers);
        for (ma, mb) in a.mounts.iter().zip(&b.mounts) {
            assert_eq!(ma.origin, mb.origin);
            assert_eq!(ma.cache, mb.cache);
        }
    }
    assert_eq!(config.global.ws_broadcast, back.global.ws_broadcast);
    assert_eq!(config.global.trusted_proxies, back.global.trusted_proxies);
    assert_eq!(
        config.global.reject_service_keywords[1].status,
        back.global.reject_service_keywords[1].status
    );
}

#[test]
fn corrupt_json_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = config_dir(tmp.path());
    let config = lwsws_config::load(&dir, &options(&tmp.path().join("www")))
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    let json = serde_json::to_string(&config).unwrap();
    for (from, to) in [
        ("\"x-frame-options\"", "\"x frame options\""),
        ("\"DENY\"", "\"DE\\nNY\""),
        ("\"status\":404", "\"status\":1000"),
    ] {
        assert!(json.contains(from), "{from} not in {json}");
        let bad = json.replacen(from, to, 1);
        assert!(serde_json::from_str::<Config>(&bad).is_err(), "{to}");
    }
}
