//! `--print-config`: a [`Config`] rendered back as one configuration file.
//!
//! The output uses the file's own key names with every default filled in,
//! typed values (numbers, booleans) and `null` for "not set", so it documents
//! what the server will do and loads again as it is. Secrets (a Redis
//! password, pvos named like passwords) are replaced by `<redacted>`.

use crate::types::*;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The merged configuration as a JSON value, secrets redacted.
pub fn print_config(c: &Config) -> Value {
    json!({
        "global": global(&c.global),
        "vhosts": c.vhosts.iter().map(vhost).collect::<Vec<_>>(),
    })
}

fn path(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

fn opt_path(p: Option<&std::path::PathBuf>) -> Value {
    p.map_or(Value::Null, |p| path(p))
}

fn pairs(list: &[(String, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in list {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Array(if m.is_empty() {
        vec![]
    } else {
        vec![Value::Object(m)]
    })
}

fn alpn(list: Option<&Vec<Alpn>>) -> Value {
    list.map_or(Value::Null, |l| {
        json!(l.iter().map(|a| a.as_str()).collect::<Vec<_>>())
    })
}

fn global(g: &Global) -> Value {
    let name = |a: &Option<Account>| a.as_ref().and_then(|a| a.name.clone());
    let id = |a: &Option<Account>| a.as_ref().and_then(|a| a.id);
    let reject: Map<String, Value> = g
        .reject_service_keywords
        .iter()
        .map(|r| {
            (
                r.keyword.clone(),
                Value::String(format!("{} {}", r.status.as_u16(), r.reason)),
            )
        })
        .collect();
    json!({
        "username": name(&g.user),
        "groupname": name(&g.group),
        "uid": id(&g.user),
        "gid": id(&g.group),
        "count-threads": g.count_threads,
        "server-string": g.server_string,
        "ws-pingpong-secs": g.ws_pingpong.map_or(0, |d| d.as_secs()),
        "init-ssl": g.init_ssl,
        "reject-service-keywords": if reject.is_empty() { json!([]) } else { json!([reject]) },
        "timeout-secs": g.timeout.as_secs(),
        "plugin-dir": g.plugin_dirs.iter().map(|p| path(p)).collect::<Vec<_>>(),
        "drain-timeout-secs": g.drain_timeout.as_secs(),
        "strict-host": g.strict_host,
        "max-connections": g.max_connections,
        "ws-broadcast-prefix": g.ws_broadcast_prefix,
        "cgi-max-processes": g.cgi_max_processes,
        "trusted-proxies": g.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "ws-broadcast": g.ws_broadcast.as_ref().map(RedisUrl::redacted),
        "acme-dir": path(&g.acme_dir),
        "rlimit-nofile": g.rlimit_nofile,
        "default-alpn": alpn(g.default_alpn.as_ref()),
        "ip-limit-wsi": g.ip_limit_wsi.unwrap_or(0),
        "ip-limit-ah": g.ip_limit_ah.unwrap_or(0),
    })
}

fn vhost(v: &Vhost) -> Value {
    let (port, interface, unix, perms, noipv6, ipv6only) = match &v.listen {
        Listen::Tcp {
            port,
            interface,
            family,
        } => (
            json!(port),
            match interface {
                Some(Interface::Addr(a)) => json!(a.to_string()),
                Some(Interface::Name(n)) => json!(n),
                None => Value::Null,
            },
            false,
            Value::Null,
            *family == IpFamily::V4Only,
            if *family == IpFamily::V6Only {
                json!(true)
            } else {
                Value::Null
            },
        ),
        Listen::Unix { path: p, owner } => (
            Value::Null,
            path(p),
            true,
            owner
                .as_ref()
                .map_or(Value::Null, |(u, g)| json!(format!("{u}:{g}"))),
            false,
            Value::Null,
        ),
    };
    let tls = v.tls.as_ref();
    let headers: Map<String, Value> = v
        .headers
        .iter()
        .map(|(k, val)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(val.as_bytes()).into_owned()),
            )
        })
        .collect();
    json!({
        "name": v.name,
        "port": port,
        "interface": interface,
        "unix-socket": unix,
        "unix-socket-perms": perms,
        "noipv6": noipv6,
        "ipv6only": ipv6only,
        "host-ssl-cert": opt_path(tls.map(|t| &t.cert)),
        "host-ssl-key": opt_path(tls.map(|t| &t.key)),
        "host-ssl-ca": opt_path(tls.and_then(|t| t.ca.as_ref())),
        "client-cert-required": tls.is_some_and(|t| t.client_cert_required),
        "acme": v.acme.as_ref().map(|a| json!({
            "directory": a.directory.as_str(),
            "email": a.email,
            "challenge": match a.challenge { AcmeChallenge::Http01 => "http-01", AcmeChallenge::TlsAlpn01 => "tls-alpn-01" },
            "directory-ca": opt_path(a.directory_ca.as_ref()),
        })),
        "sts": v.sts,
        "allow-non-tls": v.allow_non_tls,
        "redirect-http": v.redirect_http,
        "allow-http-on-https": v.allow_http_on_https,
        "ciphers": tls.and_then(|t| t.ciphers.clone()),
        "tls13-ciphers": tls.and_then(|t| t.tls13_ciphers.clone()),
        "ecdh-curve": tls.and_then(|t| t.ecdh_curve.clone()),
        "ssl-option-set": tls.map_or(0, |t| t.ssl_option_set),
        "ssl-option-clear": tls.map_or(0, |t| t.ssl_option_clear),
        "keepalive-timeout": v.keepalive_timeout.as_secs(),
        "access-log": opt_path(v.access_log.as_ref()),
        "headers": if headers.is_empty() { json!([]) } else { json!([headers]) },
        "mounts": v.mounts.iter().map(mount).collect::<Vec<_>>(),
        "ws-protocols": v.ws_protocols.iter().map(protocol).collect::<Vec<_>>(),
        "ws-origin-check": match v.ws_origin_check { OriginCheck::Same => "same", OriginCheck::Trusted => "trusted", OriginCheck::Off => "off" },
        "ws-trusted-origins": v.ws_trusted_origins,
        "ws-max-message-size": v.ws_max_message_size,
        "ws-allow-reserved-status-codes": v.ws_allow_reserved_status_codes,
        "ws-deflate": v.ws_deflate,
        "ws-deflate-threshold": v.ws_deflate_threshold,
        "apply-listen-accept": v.listen_accept.apply,
        "listen-accept-role": v.listen_accept.role,
        "listen-accept-protocol": v.listen_accept.protocol,
        "fallback-listen-accept": v.listen_accept.fallback,
        "proxy-protocol": v.proxy_protocol,
        "strict-host-check": v.strict_host_check,
        "error-document-404": v.error_document_404,
        "ignore-missing-cert": v.ignore_missing_cert,
        "alpn": alpn(v.alpn.as_ref()),
        "disable-no-protocol-ws-upgrades": v.disable_no_protocol_ws_upgrades,
    })
}

/// A pvo whose name suggests a secret is not printed.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|s| n.contains(s))
}

fn protocol(p: &ProtocolEntry) -> Value {
    let mut pvos = Map::new();
    for (k, v) in &p.pvos {
        let v = if secret_name(k) {
            "<redacted>".to_string()
        } else {
            v.clone()
        };
        match pvos.get_mut(k) {
            Some(Value::Array(list)) => list.push(Value::String(v)),
            Some(existing) => *existing = json!([existing.clone(), v]),
            None => {
                pvos.insert(k.clone(), Value::String(v));
            }
        }
    }
    if p.default {
        pvos.insert("default".into(), json!("1"));
    }
    if p.raw {
        pvos.insert("raw".into(), json!("1"));
    }
    let mut m = Map::new();
    m.insert(p.name.clone(), Value::Object(pvos));
    Value::Object(m)
}

/// The origin written as in a configuration file.
pub fn origin_string(o: &Origin) -> String {
    match o {
        Origin::File(p) => format!("file://{}", p.display()),
        Origin::Cgi(p) => format!("cgi://{}", p.display()),
        Origin::Redirect(u) => format!(">{u}"),
        Origin::Callback(n) => format!("callback://{n}"),
        Origin::Proxy(p) => {
            let scheme = if p.tls { "https" } else { "http" };
            match &p.target {
                ProxyTarget::Tcp { host, port } if host.contains(':') => {
                    format!("{scheme}://[{host}]:{port}{}", p.path)
                }
                ProxyTarget::Tcp { host, port } => format!("{scheme}://{host}:{port}{}", p.path),
                ProxyTarget::Unix(sock) => format!(
                    "{scheme}://unix:{}:{}",
                    sock.display(),
                    if p.path.is_empty() { "/" } else { &p.path }
                ),
            }
        }
    }
}

fn mount(m: &Mount) -> Value {
    let mut mimes = Map::new();
    for (ext, ty) in &m.extra_mimetypes {
        mimes.insert(format!(".{ext}"), json!(ty));
    }
    if m.serve_any_type {
        mimes.insert("*".into(), json!(""));
    }
    json!({
        "mountpoint": m.mountpoint,
        "origin": origin_string(&m.origin),
        "default": m.default,
        "cache-max-age": m.cache.max_age,
        "cache-reuse": m.cache.reuse,
        "cache-revalidate": m.cache.revalidate,
        "cache-intermediaries": m.cache.intermediaries,
        "extra-mimetypes": mimes,
        "basic-auth": opt_path(m.basic_auth.as_ref()),
        "cgi-env": pairs(&m.cgi_env),
        "cgi-timeout": m.cgi_timeout.as_secs(),
        "pmo": pairs(&m.pmo),
        "max-body-size": m.max_body_size,
        "proxy-ca": opt_path(m.proxy_ca.as_ref()),
        "proxy-timeout-secs": m.proxy_timeout.as_secs(),
        "protocol": m.protocol,
    })
}
