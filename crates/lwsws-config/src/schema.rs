//! The configuration language as data: every key the parser accepts, with
//! the shape of its value, its default and a one-line description. From it
//! `lwsws --schema` prints a JSON Schema (draft 2020-12) for editors and CI;
//! a test keeps the table equal to the parser's key lists, so a key cannot
//! be added to one and forgotten in the other.

use serde_json::{Map, Value, json};

/// The shape of a key's value in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string (numbers and booleans are taken as their text).
    Text,
    /// A number, or a string holding one.
    Number,
    /// On/off: `"1"`, `"on"`, `"yes"`, `"true"`, `true`, … or their opposites.
    Flag,
    /// A list of strings, or one string of comma-separated items.
    List,
    /// A list of objects of name/value pairs: `[{"name": "value"}, …]`.
    Pairs,
    /// `{".ext": "type", …}`.
    Mimetypes,
    /// The `acme` object.
    Acme,
    /// The list of mounts.
    Mounts,
    /// The list of protocols: `[{"name": {"pvo": "value", …}}, …]`.
    Protocols,
}

/// One key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub shape: Shape,
    /// As the documentation states it; `None` when there is none.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn k(
    name: &'static str,
    shape: Shape,
    default: Option<&'static str>,
    doc: &'static str,
) -> Key {
    Key {
        name,
        shape,
        default,
        doc,
    }
}

use Shape::*;

/// Keys of the `global` object.
pub const GLOBAL: &[Key] = &[
    k(
        "username",
        Text,
        None,
        "User the workers switch to (and its supplementary groups).",
    ),
    k("groupname", Text, None, "Group the workers switch to."),
    k("uid", Number, None, "Numeric form of username."),
    k("gid", Number, None, "Numeric form of groupname."),
    k(
        "count-threads",
        Number,
        None,
        "Worker threads serving requests (default: the number of CPUs).",
    ),
    k(
        "server-string",
        Text,
        Some("lwsws"),
        "Value of the Server: header.",
    ),
    k(
        "ws-pingpong-secs",
        Number,
        Some("0"),
        "Ping WebSocket connections idle this long; close them if nothing comes within as long again (0: off).",
    ),
    k(
        "init-ssl",
        Flag,
        Some("off"),
        "Accepted for compatibility; TLS is always available.",
    ),
    k(
        "reject-service-keywords",
        Pairs,
        None,
        "[{\"keyword\": \"404 Not Found\"}]: a User-Agent containing the keyword gets that status line.",
    ),
    k(
        "timeout-secs",
        Number,
        Some("5"),
        "Time for a TLS handshake, an upstream connect, and a complete request head.",
    ),
    k(
        "plugin-dir",
        List,
        None,
        "Directory scanned for WebSocket protocol plugins; may appear in several files.",
    ),
    k(
        "drain-timeout-secs",
        Number,
        Some("300"),
        "Longest time an old generation keeps serving after a reload or stop.",
    ),
    k(
        "strict-host",
        Flag,
        Some("off"),
        "A request whose Host (or SNI) names no vhost on its listener gets 421.",
    ),
    k(
        "max-connections",
        Number,
        Some("65536"),
        "Connections per worker; beyond it new ones wait in the backlog.",
    ),
    k(
        "ws-broadcast-prefix",
        Text,
        Some("lwsws:"),
        "Prefix of the Redis channel names of broadcast rooms.",
    ),
    k(
        "cgi-max-processes",
        Number,
        Some("256"),
        "CGI programs running at once per worker; beyond it 503.",
    ),
    k(
        "trusted-proxies",
        List,
        None,
        "CIDRs whose X-Forwarded-For / -Proto (and PROXY headers) give the client address.",
    ),
    k(
        "ws-broadcast",
        Text,
        None,
        "redis://HOST:PORT[/DB], rediss://… or redis+unix:///PATH: broadcast rooms shared by every instance using it.",
    ),
    k(
        "acme-dir",
        Text,
        Some("/var/lib/lwsws/acme"),
        "Where ACME accounts, keys and certificates are kept (root only).",
    ),
    k(
        "rlimit-nofile",
        Number,
        None,
        "RLIMIT_NOFILE the supervisor sets before starting workers.",
    ),
    k(
        "default-alpn",
        List,
        Some("h2, http/1.1"),
        "Default ALPN list of TLS vhosts.",
    ),
    k(
        "ip-limit-wsi",
        Number,
        Some("0"),
        "Most connections at once from one client address (0: no limit).",
    ),
    k(
        "ip-limit-ah",
        Number,
        Some("0"),
        "Most requests in progress at once from one client address (beyond: 503; 0: no limit).",
    ),
];

/// Keys of a vhost object.
pub const VHOST: &[Key] = &[
    k(
        "name",
        Text,
        None,
        "Host name matched against SNI and Host (required); *.example.com matches one label.",
    ),
    k(
        "port",
        Number,
        None,
        "TCP port (required unless unix-socket).",
    ),
    k(
        "interface",
        Text,
        None,
        "IP address or interface name; with unix-socket, the socket path (default: all addresses).",
    ),
    k(
        "unix-socket",
        Flag,
        Some("off"),
        "Listen on the Unix socket named by interface.",
    ),
    k(
        "unix-socket-perms",
        Text,
        None,
        "user:group owning the Unix socket (mode 0600).",
    ),
    k("noipv6", Flag, Some("off"), "No IPv6."),
    k(
        "ipv6only",
        Flag,
        None,
        "on: IPv6 only; off: IPv4 only (default: both, unless noipv6).",
    ),
    k(
        "host-ssl-cert",
        Text,
        None,
        "PEM certificate chain: the vhost speaks TLS.",
    ),
    k(
        "host-ssl-key",
        Text,
        None,
        "PEM private key of host-ssl-cert.",
    ),
    k(
        "host-ssl-ca",
        Text,
        None,
        "PEM CA bundle verifying client certificates.",
    ),
    k(
        "client-cert-required",
        Flag,
        Some("off"),
        "Refuse TLS clients without a certificate signed by host-ssl-ca.",
    ),
    k(
        "acme",
        Acme,
        None,
        "Obtain and renew the certificate from an ACME directory instead of host-ssl-cert/-key.",
    ),
    k("sts", Flag, Some("off"), "Send Strict-Transport-Security."),
    k(
        "allow-non-tls",
        Flag,
        Some("off"),
        "On a TLS port, let plaintext connections in.",
    ),
    k(
        "redirect-http",
        Flag,
        Some("off"),
        "… and answer them with 301 to https.",
    ),
    k(
        "allow-http-on-https",
        Flag,
        Some("off"),
        "… and serve them as plain HTTP.",
    ),
    k(
        "ciphers",
        Text,
        None,
        "TLS 1.2 cipher list (OpenSSL or IANA names).",
    ),
    k("tls13-ciphers", Text, None, "TLS 1.3 cipher suites."),
    k(
        "ecdh-curve",
        Text,
        None,
        "Key exchange groups, e.g. X25519:prime256v1.",
    ),
    k(
        "ssl-option-set",
        Number,
        Some("0"),
        "OpenSSL SSL_OP_* bits to set (version and ticket bits apply); may repeat.",
    ),
    k(
        "ssl-option-clear",
        Number,
        Some("0"),
        "OpenSSL SSL_OP_* bits to clear; may repeat.",
    ),
    k("enable-client-ssl", Flag, None, "Accepted; no effect."),
    k("client-ssl-key", Text, None, "Accepted; no effect."),
    k("client-ssl-cert", Text, None, "Accepted; no effect."),
    k("client-ssl-ca", Text, None, "Accepted; no effect."),
    k("client-ssl-ciphers", Text, None, "Accepted; no effect."),
    k(
        "keeplive-timeout",
        Number,
        Some("60"),
        "Idle keep-alive timeout in seconds (the original's spelling).",
    ),
    k(
        "keepalive-timeout",
        Number,
        Some("60"),
        "Idle keep-alive timeout in seconds.",
    ),
    k(
        "keepalive_timeout",
        Number,
        Some("60"),
        "Idle keep-alive timeout in seconds (the spelling the original's parser reads).",
    ),
    k(
        "access-log",
        Text,
        None,
        "Path of an Apache combined format access log.",
    ),
    k(
        "headers",
        Pairs,
        None,
        "[{\"Name\": \"value\"}] added to every HTTP response.",
    ),
    k("mounts", Mounts, None, "What URL paths serve."),
    k(
        "ws-protocols",
        Protocols,
        None,
        "WebSocket protocols offered, with their options.",
    ),
    k(
        "ws-origin-check",
        Text,
        Some("same"),
        "same, trusted or off.",
    ),
    k(
        "ws-trusted-origins",
        List,
        None,
        "Origins allowed with ws-origin-check trusted.",
    ),
    k(
        "ws-max-message-size",
        Number,
        Some("33554432"),
        "Largest WebSocket message accepted.",
    ),
    k(
        "ws-allow-reserved-status-codes",
        Flag,
        Some("off"),
        "Accept the reserved close codes 1004 and 1016-2999.",
    ),
    k(
        "ws-deflate",
        Flag,
        Some("on"),
        "Negotiate permessage-deflate when offered.",
    ),
    k(
        "ws-deflate-threshold",
        Number,
        Some("64"),
        "Messages shorter than this are sent uncompressed.",
    ),
    k(
        "apply-listen-accept",
        Flag,
        Some("off"),
        "Bind every connection to the raw protocol listen-accept-protocol.",
    ),
    k(
        "listen-accept-role",
        Text,
        None,
        "Role of the raw protocol (raw-proxy).",
    ),
    k(
        "listen-accept-protocol",
        Text,
        None,
        "Raw protocol of the vhost.",
    ),
    k(
        "fallback-listen-accept",
        Flag,
        Some("off"),
        "Connections that are neither TLS nor HTTP go to the raw protocol.",
    ),
    k(
        "proxy-protocol",
        Flag,
        Some("off"),
        "Connections start with a PROXY protocol header (from trusted-proxies only).",
    ),
    k(
        "strict-host-check",
        Flag,
        Some("off"),
        "strict-host for this vhost alone.",
    ),
    k(
        "error-document-404",
        Text,
        None,
        "URL path whose content is served, with 404, for every 404.",
    ),
    k(
        "ignore-missing-cert",
        Flag,
        Some("off"),
        "A missing certificate or key serves a temporary self-signed certificate.",
    ),
    k(
        "alpn",
        List,
        None,
        "ALPN list of this vhost (e.g. \"http/1.1\" turns h2 off).",
    ),
    k(
        "onlyraw",
        Flag,
        Some("off"),
        "The listener serves only the raw protocol.",
    ),
    k(
        "disable-no-protocol-ws-upgrades",
        Flag,
        Some("off"),
        "An upgrade without Sec-WebSocket-Protocol gets 400.",
    ),
    k("fo-listen-queue", Number, None, "Accepted; no effect."),
    k(
        "h2-half-closed-long-poll",
        Flag,
        None,
        "Accepted; no effect.",
    ),
    k(
        "ssl-client-option-set",
        Number,
        None,
        "Accepted; no effect.",
    ),
    k(
        "ssl-client-option-clear",
        Number,
        None,
        "Accepted; no effect.",
    ),
    k("client-tls13-ciphers", Text, None, "Accepted; no effect."),
];

/// Keys of a mount object.
pub const MOUNT: &[Key] = &[
    k("mountpoint", Text, None, "URL path prefix (required)."),
    k(
        "origin",
        Text,
        None,
        "file://DIR, cgi://PROGRAM, http(s)://… (proxy), >http(s)://… (redirect) or callback://PROTOCOL (required).",
    ),
    k("default", Text, None, "Index file served for a directory."),
    k(
        "cache-max-age",
        Number,
        None,
        "Cache-Control max-age (none given: no-store).",
    ),
    k("cache-reuse", Flag, Some("off"), "0: no-store."),
    k(
        "cache-revalidate",
        Flag,
        Some("off"),
        "Add must-revalidate.",
    ),
    k(
        "cache-intermediaries",
        Flag,
        Some("off"),
        "public instead of private.",
    ),
    k(
        "extra-mimetypes",
        Mimetypes,
        None,
        "{\".ext\": \"type\"}; \"*\": \"\" serves any file.",
    ),
    k(
        "basic-auth",
        Text,
        None,
        "File of user:password lines (plain or bcrypt).",
    ),
    k(
        "cgi-env",
        Pairs,
        None,
        "[{\"NAME\": \"value\"}] extra CGI variables.",
    ),
    k(
        "cgi-timeout",
        Number,
        Some("300"),
        "Seconds a CGI program may run.",
    ),
    k(
        "pmo",
        Pairs,
        None,
        "[{\"name\": \"value\"}] options for a callback:// protocol.",
    ),
    k(
        "max-body-size",
        Number,
        None,
        "Largest request body (413 beyond; default: no limit).",
    ),
    k(
        "proxy-ca",
        Text,
        None,
        "PEM CA bundle for an https:// proxy origin.",
    ),
    k(
        "proxy-timeout-secs",
        Number,
        Some("60"),
        "Longest wait for an upstream's head, and gap in its body (504).",
    ),
    k(
        "protocol",
        Text,
        None,
        "WebSocket protocol for upgrades here when the client names none.",
    ),
    k("auth-mask", Number, None, "Accepted; no effect."),
    k("interpret", Pairs, None, "Accepted; no effect."),
];

/// Keys of the `acme` object.
pub const ACME: &[Key] = &[
    k("directory", Text, None, "ACME directory URL (required)."),
    k("email", Text, None, "Contact address of the account."),
    k(
        "challenge",
        Text,
        Some("http-01"),
        "http-01 or tls-alpn-01.",
    ),
    k(
        "directory-ca",
        Text,
        None,
        "PEM roots of a private ACME CA.",
    ),
];

fn value(shape: Shape) -> Value {
    let scalar = json!({"type": ["string", "number", "boolean"]});
    match shape {
        Text | Flag => scalar,
        Number => json!({"type": ["string", "number"]}),
        List => json!({"type": ["string", "array"], "items": {"type": "string"}}),
        Pairs => json!({
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
        }),
        Mimetypes => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        Acme => json!({"$ref": "#/$defs/acme"}),
        Mounts => json!({"type": "array", "items": {"$ref": "#/$defs/mount"}}),
        Protocols => json!({
            "type": "array",
            "items": {
                "type": "object",
                "description": "Protocol name: its per-vhost options (pvos).",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": {
                        "type": ["string", "number", "boolean", "array"],
                        "items": {"type": ["string", "number", "boolean"]}
                    }
                }
            }
        }),
    }
}

/// `shape`'s value, or `null`: the parser takes `null` as "not set" for
/// every key (so `--print-config` output loads again unchanged).
fn nullable(shape: Shape) -> Value {
    let mut v = value(shape);
    match v.get_mut("type") {
        Some(Value::Array(types)) => types.push(Value::String("null".into())),
        Some(t) => *t = json!([t.clone(), "null"]),
        None => v = json!({"anyOf": [v, {"type": "null"}]}),
    }
    v
}

fn object(keys: &[Key], required: &[&str]) -> Value {
    let mut props = Map::new();
    for key in keys {
        // A required key must have a value; any other may be null.
        let mut v = if required.contains(&key.name) {
            value(key.shape)
        } else {
            nullable(key.shape)
        };
        if let Value::Object(m) = &mut v {
            m.insert("description".into(), Value::String(key.doc.into()));
            if let Some(d) = key.default {
                m.insert("default".into(), Value::String(d.into()));
            }
        }
        props.insert(key.name.into(), v);
    }
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false
    })
}

/// The JSON Schema of one configuration file (`conf` or a `conf.d/` file).
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lwsws.example/lwsws.schema.json",
        "title": "lwsws configuration file",
        "description": "One file of /etc/lwsws: conf (global settings) or conf.d/* (vhosts). JSON with comments and trailing commas; strip those before validating.",
        "type": "object",
        "properties": {
            "global": {"$ref": "#/$defs/global"},
            "vhosts": {"type": "array", "items": {"$ref": "#/$defs/vhost"}}
        },
        "additionalProperties": false,
        "$defs": {
            "global": object(GLOBAL, &[]),
            "vhost": object(VHOST, &["name"]),
            "mount": object(MOUNT, &["mountpoint", "origin"]),
            "acme": object(ACME, &["directory"])
        }
    })
}

/// The schema as `lwsws --schema` prints it (pretty, newline at the end).
pub fn render() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{ACME_KEYS, GLOBAL_KEYS, MOUNT_KEYS, VHOST_KEYS};

    fn names(keys: &[Key]) -> Vec<&'static str> {
        keys.iter().map(|k| k.name).collect()
    }

    /// The schema knows exactly the keys the parser knows.
    #[test]
    fn the_table_matches_the_parser() {
        fn sorted(v: &[&'static str]) -> Vec<&'static str> {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        }
        assert_eq!(sorted(&names(GLOBAL)), sorted(GLOBAL_KEYS));
        assert_eq!(sorted(&names(VHOST)), sorted(VHOST_KEYS));
        assert_eq!(sorted(&names(MOUNT)), sorted(MOUNT_KEYS));
        assert_eq!(sorted(&names(ACME)), sorted(ACME_KEYS));
    }

    /// `share/lwsws/lwsws.schema.json` is what `lwsws --schema` prints;
    /// regenerate it with `lwsws --schema > share/lwsws/lwsws.schema.json`.
    #[test]
    fn the_shipped_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../share/lwsws/lwsws.schema.json");
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == render(),
            "{} is out of date: run `lwsws --schema > share/lwsws/lwsws.schema.json`",
            path.display()
        );
    }

    #[test]
    fn every_key_has_a_description() {
        for k in GLOBAL.iter().chain(VHOST).chain(MOUNT).chain(ACME) {
            assert!(k.doc.ends_with('.'), "{}", k.name);
        }
    }
}
