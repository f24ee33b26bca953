//! Parsed files → typed [`Config`] values, key by key.
//!
//! Each object kind (global, vhost, mount, acme) has its list of known keys
//! and one function that reads it. Problems are collected in [`Diags`]; a
//! value that fails keeps its default so reading can go on and find the next
//! problem. Cross-object rules and file-system checks live in `validate.rs`.

use crate::ProtocolSpec;
use crate::error::{Diags, did_you_mean};
use crate::jsonc::{Node, NodeKind, Prop};
use crate::reader::{self, Obj};
use crate::source::Loc;
use crate::types::*;
use crate::validate::{self, Need};
use http::{HeaderName, HeaderValue, StatusCode};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const TOP_KEYS: &[&str] = &["global", "vhosts"];

pub(crate) const GLOBAL_KEYS: &[&str] = &[
    "username",
    "groupname",
    "uid",
    "gid",
    "count-threads",
    "server-string",
    "ws-pingpong-secs",
    "init-ssl",
    "reject-service-keywords",
    "timeout-secs",
    "plugin-dir",
    "drain-timeout-secs",
    "strict-host",
    "max-connections",
    "ws-broadcast-prefix",
    "cgi-max-processes",
    "trusted-proxies",
    "ws-broadcast",
    "acme-dir",
    "rlimit-nofile",
    "default-alpn",
    "ip-limit-wsi",
    "ip-limit-ah",
];

pub(crate) const VHOST_KEYS: &[&str] = &[
    "name",
    "port",
    "interface",
    "unix-socket",
    "unix-socket-perms",
    "noipv6",
    "ipv6only",
    "host-ssl-cert",
    "host-ssl-key",
    "host-ssl-ca",
    "client-cert-required",
    "acme",
    "sts",
    "allow-non-tls",
    "redirect-http",
    "allow-http-on-https",
    "ciphers",
    "tls13-ciphers",
    "ecdh-curve",
    "ssl-option-set",
    "ssl-option-clear",
    "enable-client-ssl",
    "client-ssl-key",
    "client-ssl-cert",
    "client-ssl-ca",
    "client-ssl-ciphers",
    "keeplive-timeout",
    "keepalive-timeout",
    "keepalive_timeout",
    "access-log",
    "headers",
    "mounts",
    "ws-protocols",
    "ws-origin-check",
    "ws-trusted-origins",
    "ws-max-message-size",
    "ws-allow-reserved-status-codes",
    "ws-deflate",
    "ws-deflate-threshold",
    "apply-listen-accept",
    "listen-accept-role",
    "listen-accept-protocol",
    "fallback-listen-accept",
    "proxy-protocol",
    "strict-host-check",
    "error-document-404",
    "ignore-missing-cert",
    "alpn",
    "onlyraw",
    "disable-no-protocol-ws-upgrades",
    "fo-listen-queue",
    "h2-half-closed-long-poll",
    "ssl-client-option-set",
    "ssl-client-option-clear",
    "client-tls13-ciphers",
];

/// Keys of the original that lwsws accepts but that change nothing here.
const VHOST_NO_EFFECT: &[&str] = &[
    "enable-client-ssl",
    "client-ssl-key",
    "client-ssl-cert",
    "client-ssl-ca",
    "client-ssl-ciphers",
    "fo-listen-queue",
    "h2-half-closed-long-poll",
    "ssl-client-option-set",
    "ssl-client-option-clear",
    "client-tls13-ciphers",
];

pub(crate) const MOUNT_KEYS: &[&str] = &[
    "mountpoint",
    "origin",
    "default",
    "cache-max-age",
    "cache-reuse",
    "cache-revalidate",
    "cache-intermediaries",
    "extra-mimetypes",
    "basic-auth",
    "cgi-env",
    "cgi-timeout",
    "pmo",
    "max-body-size",
    "proxy-ca",
    "proxy-timeout-secs",
    "protocol",
    "auth-mask",
    "interpret",
];

const MOUNT_NO_EFFECT: &[&str] = &["auth-mask", "interpret"];

pub(crate) const ACME_KEYS: &[&str] = &["directory", "email", "challenge", "directory-ca"];

/// Pvos every protocol knows (SPEC §2.1, §3.6, §6.5).
pub(crate) const COMMON_PVOS: &[&str] = &[
    "default",
    "raw",
    "status",
    "basic-auth",
    "auth-hmac-key-file",
    "auth-first-message",
];

/// Shared state of one conversion.
pub(crate) struct Ctx<'s> {
    pub d: Diags<'s>,
    /// Relative paths are resolved against this directory.
    pub base: PathBuf,
    /// Builtin protocols, then those `plugin-dir` libraries offer.
    pub protocols: Vec<ProtocolSpec>,
    /// Checks plugin libraries (`plugin` pvo, `plugin-dir`).
    pub plugins: Option<crate::PluginHooks>,
    /// Protocols found in `plugin-dir`s: name → library.
    plugin_files: std::collections::HashMap<String, PathBuf>,
    /// Started as root: configured users and groups must exist.
    pub as_root: bool,
    /// Keys already warned about as having no effect (one warning per load).
    warned: HashSet<&'static str>,
    /// `acme-dir`, where ACME vhosts' certificates live (set once the
    /// global section is read, before any vhost).
    pub acme_dir: PathBuf,
    /// `trusted-proxies` names at least one network (set with `acme_dir`).
    pub has_trusted_proxies: bool,
}

impl<'s> Ctx<'s> {
    pub fn new(d: Diags<'s>, base: PathBuf, protocols: Vec<ProtocolSpec>, as_root: bool) -> Self {
        Ctx {
            d,
            base,
            protocols,
            plugins: None,
            plugin_files: std::collections::HashMap::new(),
            as_root,
            warned: HashSet::new(),
            acme_dir: PathBuf::from("/var/lib/lwsws/acme"),
            has_trusted_proxies: false,
        }
    }

    pub fn into_diags(self) -> Diags<'s> {
        self.d
    }
}

/// Warns once per load that an accepted key of the original does nothing.
fn no_effect(d: &mut Diags, warned: &mut HashSet<&'static str>, loc: Loc, key: &'static str) {
    if warned.insert(key) {
        d.warn(
            loc,
            key,
            "accepted for compatibility with the original lwsws, but has no effect here",
            Some("remove it to silence this warning".into()),
        );
    }
}

/// Merges the `"global"` objects of every file: a later file wins (with a
/// warning naming both places); `plugin-dir` accumulates.
pub(crate) fn merge_globals<'a>(cx: &mut Ctx, globals: &[&'a Node]) -> Vec<&'a Prop> {
    let mut merged: Vec<&'a Prop> = Vec::new();
    for g in globals {
        let NodeKind::Object(props) = &g.kind else {
            cx.d.error(
                g.loc,
                "global",
                format!("expected an object {{…}}, found {}", g.type_name()),
                None,
            );
            continue;
        };
        // Keys repeated inside one file are reported by Obj::get later;
        // here only keys set again by a later file are merged.
        let earlier: Vec<&'a Prop> = merged.clone();
        for p in props {
            if p.key == "plugin-dir" {
                merged.push(p);
                continue;
            }
            if let Some(old) = earlier
                .iter()
                .find(|o| o.key == p.key && o.key_loc.file != p.key_loc.file)
            {
                cx.d.warn(
                    p.key_loc,
                    &p.key,
                    format!(
                        "global key set again; this value replaces the one at {}",
                        cx.d.sources.describe(old.key_loc)
                    ),
                    Some("set each global key in one file only".into()),
                );
                merged.retain(|o| !(o.key == p.key && o.key_loc.file != p.key_loc.file));
            }
            merged.push(p);
        }
    }
    merged
}

pub(crate) fn global(cx: &mut Ctx, props: Vec<&Prop>, loc: Loc) -> Global {
    let mut o = Obj::from_props(props, loc, "global", GLOBAL_KEYS);
    let d = &mut cx.d;
    let mut g = Global {
        user: None,
        group: None,
        count_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        server_string: "lwsws".into(),
        ws_pingpong: None,
        init_ssl: false,
        reject_service_keywords: Vec::new(),
        timeout: Duration::from_secs(5),
        plugin_dirs: Vec::new(),
        drain_timeout: Duration::from_secs(300),
        strict_host: false,
        max_connections: 65536,
        ws_broadcast_prefix: "lwsws:".into(),
        cgi_max_processes: 256,
        trusted_proxies: Vec::new(),
        ws_broadcast: None,
        acme_dir: PathBuf::from("/var/lib/lwsws/acme"),
        rlimit_nofile: None,
        default_alpn: None,
        ip_limit_wsi: None,
        ip_limit_ah: None,
    };

    g.user = account(d, &mut o, "username", "uid", AccountKind::User, cx.as_root);
    g.group = account(
        d,
        &mut o,
        "groupname",
        "gid",
        AccountKind::Group,
        cx.as_root,
    );
    if let Some(n) = o.get(d, "count-threads") {
        g.count_threads =
            reader::number(d, "count-threads", n, 1, 1024).map_or(g.count_threads, |v| v as usize);
    }
    if let Some(n) = o.get(d, "server-string")
        && let Some(s) = reader::string(d, "server-string", n)
    {
        if HeaderValue::from_str(&s).is_ok() {
            g.server_string = s;
        } else {
            d.error(
                n.loc,
                "server-string",
                "is not a valid header value",
                Some("use printable ASCII only".into()),
            );
        }
    }
    if let Some(n) = o.get(d, "ws-pingpong-secs") {
        g.ws_pingpong = reader::seconds(d, "ws-pingpong-secs", n, 0).filter(|s| !s.is_zero());
    }
    if let Some(n) = o.get(d, "init-ssl") {
        g.init_ssl = reader::boolean(d, "init-ssl", n).unwrap_or(false);
    }
    if let Some(n) = o.get(d, "reject-service-keywords") {
        for p in reader::pairs(d, "reject-service-keywords", n) {
            match parse_status_line(&p.value) {
                Some((status, reason)) => g.reject_service_keywords.push(RejectKeyword {
                    keyword: p.name,
                    status,
                    reason,
                }),
                None => d.error(
                    p.value_loc,
                    "reject-service-keywords",
                    format!("\"{}\" is not a status line", p.value),
                    Some("write a status code and reason, like \"404 Not Found\"".into()),
                ),
            }
        }
    }
    if let Some(n) = o.get(d, "timeout-secs") {
        g.timeout = reader::seconds(d, "timeout-secs", n, 1).unwrap_or(g.timeout);
    }
    for n in o.get_all("plugin-dir") {
        if let Some(p) = reader::path(d, "plugin-dir", n, &cx.base) {
            validate::check_path(d, n.loc, "plugin-dir", &p, Need::Dir);
            if let Some(hooks) = cx.plugins
                && p.is_dir()
            {
                let scan = (hooks.scan)(&p);
                for (file, why) in scan.errors {
                    d.error(
                        n.loc,
                        "plugin-dir",
                        format!("cannot load plugin {}: {why}", file.display()),
                        Some("fix or remove the library".into()),
                    );
                }
                for sp in scan.protocols {
                    if let Some(other) = cx.plugin_files.get(&sp.name) {
                        d.error(
                            n.loc,
                            "plugin-dir",
                            format!(
                                "protocol \"{}\" is offered by two plugins: {} and {}",
                                sp.name,
                                other.display(),
                                sp.library.display()
                            ),
                            Some("remove one of the libraries".into()),
                        );
                        continue;
                    }
                    if cx.protocols.iter().any(|s| s.name == sp.name) {
                        d.error(
                            n.loc,
                            "plugin-dir",
                            format!(
                                "plugin {} offers protocol \"{}\", which is built in",
                                sp.library.display(),
                                sp.name
                            ),
                            Some("rename the plugin's protocol".into()),
                        );
                        continue;
                    }
                    cx.protocols.push(ProtocolSpec {
                        name: sp.name.clone(),
                        pvos: vec!["*".into()],
                    });
                    cx.plugin_files.insert(sp.name, sp.library);
                }
            }
            g.plugin_dirs.push(p);
        }
    }
    if let Some(n) = o.get(d, "drain-timeout-secs") {
        g.drain_timeout = reader::seconds(d, "drain-timeout-secs", n, 0).unwrap_or(g.drain_timeout);
    }
    if let Some(n) = o.get(d, "strict-host") {
        g.strict_host = reader::boolean(d, "strict-host", n).unwrap_or(false);
    }
    if let Some(n) = o.get(d, "max-connections") {
        g.max_connections = reader::number(d, "max-connections", n, 1, 10_000_000)
            .map_or(g.max_connections, |v| v as usize);
    }
    if let Some(n) = o.get(d, "ws-broadcast-prefix") {
        g.ws_broadcast_prefix =
            reader::string(d, "ws-broadcast-prefix", n).unwrap_or(g.ws_broadcast_prefix);
    }
    if let Some(n) = o.get(d, "cgi-max-processes") {
        g.cgi_max_processes = reader::number(d, "cgi-max-processes", n, 1, 1_000_000)
            .map_or(g.cgi_max_processes, |v| v as usize);
    }
    if let Some(n) = o.get(d, "trusted-proxies") {
        for (s, loc) in reader::string_list(d, "trusted-proxies", n) {
            match parse_cidr(&s) {
                Some(net) => g.trusted_proxies.push(net),
                None => d.error(
                    loc,
                    "trusted-proxies",
                    format!("\"{s}\" is not an IP address or CIDR"),
                    Some(
                        "write addresses like \"10.0.0.0/8\", \"192.0.2.1\" or \"2001:db8::/32\""
                            .into(),
                    ),
                ),
            }
        }
    }
    if let Some(n) = o.get(d, "ws-broadcast") {
        g.ws_broadcast =
            reader::nonempty(d, "ws-broadcast", n).and_then(|s| redis_url(d, n.loc, &s));
    }
    if let Some(n) = o.get(d, "acme-dir") {
        g.acme_dir = reader::path(d, "acme-dir", n, &cx.base).unwrap_or(g.acme_dir);
    }
    if let Some(n) = o.get(d, "rlimit-nofile") {
        g.rlimit_nofile = reader::number(d, "rlimit-nofile", n, 64, u32::MAX as u64);
    }
    if let Some(n) = o.get(d, "default-alpn") {
        g.default_alpn = Some(alpn_list(d, "default-alpn", n));
    }
    if let Some(n) = o.get(d, "ip-limit-wsi") {
        g.ip_limit_wsi = reader::number(d, "ip-limit-wsi", n, 0, u32::MAX as u64)
            .filter(|v| *v > 0)
            .map(|v| v as u32);
    }
    if let Some(n) = o.get(d, "ip-limit-ah") {
        g.ip_limit_ah = reader::number(d, "ip-limit-ah", n, 0, u32::MAX as u64)
            .filter(|v| *v > 0)
            .map(|v| v as u32);
    }
    o.finish(d);
    g
}

#[derive(Clone, Copy)]
enum AccountKind {
    User,
    Group,
}

/// `username`/`uid` (or `groupname`/`gid`). A name that does not exist on this
/// machine keeps `id: None`; `validate.rs` decides whether that is an error.
fn account(
    d: &mut Diags,
    o: &mut Obj,
    name_key: &str,
    id_key: &str,
    kind: AccountKind,
    as_root: bool,
) -> Option<Account> {
    let by_name = o
        .get(d, name_key)
        .and_then(|n| reader::nonempty(d, name_key, n).map(|s| (s, n.loc)));
    let by_id = o
        .get(d, id_key)
        .and_then(|n| reader::number(d, id_key, n, 0, u32::MAX as u64 - 1));
    match (by_name, by_id) {
        (Some((name, loc)), id) => {
            let looked_up = match kind {
                AccountKind::User => nix::unistd::User::from_name(&name)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw()),
                AccountKind::Group => nix::unistd::Group::from_name(&name)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw()),
            };
            if let (Some(id), Some(found)) = (id, looked_up)
                && id as u32 != found
            {
                d.error(
                    o.key_loc(id_key),
                    id_key,
                    format!("{id} does not match {name_key} \"{name}\" (id {found})"),
                    Some(format!("set only one of \"{name_key}\" and \"{id_key}\"")),
                );
            }
            if looked_up.is_none() {
                let what = match kind {
                    AccountKind::User => "user",
                    AccountKind::Group => "group",
                };
                let msg = format!("no {what} \"{name}\" exists on this machine");
                if as_root {
                    d.error(
                        loc,
                        name_key,
                        msg,
                        Some(format!(
                            "create the {what} (e.g. adduser --system {name}) or correct the name"
                        )),
                    );
                } else {
                    d.warn(
                        loc,
                        name_key,
                        format!("{msg}; ignored, since lwsws is not started as root"),
                        None,
                    );
                }
            }
            Some(Account {
                name: Some(name),
                id: looked_up,
            })
        }
        (None, Some(id)) => Some(Account {
            name: None,
            id: Some(id as u32),
        }),
        (None, None) => None,
    }
}

/// `"404 Not Found"` → (404, "Not Found").
fn parse_status_line(s: &str) -> Option<(StatusCode, String)> {
    let s = s.trim();
    let (code, reason) = s.split_once(' ').unwrap_or((s, ""));
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())?;
    if !(100..=599).contains(&status.as_u16()) {
        return None;
    }
    let reason = if reason.trim().is_empty() {
        status.canonical_reason().unwrap_or("").to_string()
    } else {
        reason.trim().to_string()
    };
    Some((status, reason))
}

fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn redis_url(d: &mut Diags, loc: Loc, s: &str) -> Option<RedisUrl> {
    const HINT: &str =
        "write redis://HOST:PORT[/DB], rediss://HOST:PORT[/DB] or redis+unix:///PATH";
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            d.error(
                loc,
                "ws-broadcast",
                format!("\"{s}\" is not a valid URL: {e}"),
                Some(HINT.into()),
            );
            return None;
        }
    };
    let ok = match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                d.error(
                    loc,
                    "ws-broadcast",
                    "the URL has no host",
                    Some(HINT.into()),
                );
                return None;
            }
            let db = url.path().trim_start_matches('/');
            if !db.is_empty() && db.parse::<u32>().is_err() {
                d.error(
                    loc,
                    "ws-broadcast",
                    format!("\"{db}\" is not a database number"),
                    Some(HINT.into()),
                );
                return None;
            }
            true
        }
        "redis+unix" => {
            if url.path().is_empty() || url.path() == "/" {
                d.error(
                    loc,
                    "ws-broadcast",
                    "the URL names no socket path",
                    Some(HINT.into()),
                );
                return None;
            }
            // What the Redis client will open: a local path, no host.
            if url.to_file_path().is_err() {
                d.error(
                    loc,
                    "ws-broadcast",
                    format!(
                        "\"{}\" is not a local socket path (a host part is not allowed)",
                        url.host_str().unwrap_or_default()
                    ),
                    Some("write three slashes before an absolute path: redis+unix:///run/redis/redis.sock".into()),
                );
                return None;
            }
            true
        }
        _ => false,
    };
    // Options in the query (protocol=, db= …) and fragments are not part of
    // the documented forms; refuse them here rather than at run time.
    if ok && (url.query().is_some() || url.fragment().is_some()) {
        d.error(
            loc,
            "ws-broadcast",
            "the URL has a query or fragment (\"?…\" / \"#…\"), which lwsws does not use",
            Some(HINT.into()),
        );
        return None;
    }
    if !ok {
        d.error(
            loc,
            "ws-broadcast",
            format!("unsupported scheme \"{}\"", url.scheme()),
            Some(HINT.into()),
        );
        return None;
    }
    Some(RedisUrl { url })
}

fn alpn_list(d: &mut Diags, key: &str, n: &Node) -> Vec<Alpn> {
    let mut out = Vec::new();
    for (s, loc) in reader::string_list(d, key, n) {
        match s.as_str() {
            "h2" => out.push(Alpn::H2),
            "http/1.1" => out.push(Alpn::Http11),
            _ => d.error(
                loc,
                key,
                format!("unknown ALPN protocol \"{s}\""),
                Some("use \"h2\" and/or \"http/1.1\"".into()),
            ),
        }
    }
    out
}

/// One entry of `"vhosts"`.
pub(crate) fn vhost(cx: &mut Ctx, node: &Node) -> Option<Vhost> {
    let mut o = Obj::from_node(&mut cx.d, node, "vhosts", "vhost", VHOST_KEYS)?;
    let base = cx.base.clone();
    let has_trusted_proxies = cx.has_trusted_proxies;
    let d = &mut cx.d;

    let name = match o.get(d, "name") {
        Some(n) => reader::nonempty(d, "name", n).map(|s| normalise_host(&s)),
        None => {
            d.error(
                node.loc,
                "name",
                "every vhost needs a name",
                Some("add \"name\": \"example.com\"".into()),
            );
            None
        }
    };
    let unix = o
        .get(d, "unix-socket")
        .and_then(|n| reader::boolean(d, "unix-socket", n))
        .unwrap_or(false);
    let interface = o
        .get(d, "interface")
        .and_then(|n| reader::nonempty(d, "interface", n).map(|s| (s, n.loc)));
    let port_node = o.get(d, "port");
    let noipv6 = o
        .get(d, "noipv6")
        .and_then(|n| reader::boolean(d, "noipv6", n))
        .unwrap_or(false);
    let ipv6only = o
        .get(d, "ipv6only")
        .and_then(|n| reader::boolean(d, "ipv6only", n));
    let perms = o.get(d, "unix-socket-perms").and_then(|n| {
        let s = reader::nonempty(d, "unix-socket-perms", n)?;
        match s.split_once(':') {
            Some((u, g)) if !u.is_empty() && !g.is_empty() => Some((u.to_string(), g.to_string())),
            _ => {
                d.error(
                    n.loc,
                    "unix-socket-perms",
                    format!("\"{s}\" is not user:group"),
                    Some("write \"user:group\", e.g. \"www-data:www-data\"".into()),
                );
                None
            }
        }
    });

    let listen = if unix {
        if let Some(p) = &port_node
            && reader::number(d, "port", p, 0, 65535).is_some_and(|v| v != 0)
        {
            d.warn(
                p.loc,
                "port",
                "ignored for a Unix-socket vhost",
                Some("remove \"port\"".into()),
            );
        }
        match interface {
            Some((path, _)) => Some(Listen::Unix {
                path: reader::resolve(&base, &path),
                owner: perms,
            }),
            None => {
                d.error(
                    o.key_loc("unix-socket"),
                    "interface",
                    "a Unix-socket vhost needs the socket path in \"interface\"",
                    Some("add \"interface\": \"/run/lwsws/site.sock\"".into()),
                );
                None
            }
        }
    } else {
        if perms.is_some() {
            d.warn(
                o.key_loc("unix-socket-perms"),
                "unix-socket-perms",
                "only applies with \"unix-socket\": \"1\"",
                None,
            );
        }
        let port = match port_node {
            Some(n) => reader::number(d, "port", n, 1, 65535).map(|v| v as u16),
            // A misspelt "port" gets its own error, with the suggestion.
            None if o.misspelt("port") => None,
            None => {
                d.error(
                    node.loc,
                    "port",
                    "every vhost needs a port",
                    Some(
                        "add \"port\": \"80\", or \"unix-socket\": \"1\" with a socket path in \"interface\""
                            .into(),
                    ),
                );
                None
            }
        };
        let family = if noipv6 || ipv6only == Some(false) {
            IpFamily::V4Only
        } else if ipv6only == Some(true) {
            IpFamily::V6Only
        } else {
            IpFamily::Both
        };
        let interface = interface.map(|(s, _)| match s.parse::<IpAddr>() {
            Ok(a) => Interface::Addr(a),
            Err(_) => Interface::Name(s),
        });
        if let (Some(Interface::Addr(a)), IpFamily::V6Only) = (&interface, family)
            && a.is_ipv4()
        {
            d.error(
                o.key_loc("ipv6only"),
                "ipv6only",
                "an IPv4 interface address cannot be IPv6-only",
                None,
            );
        }
        port.map(|port| Listen::Tcp {
            port,
            interface,
            family,
        })
    };

    let defined_at = d.sources.describe_line(node.loc);
    let mut v = Vhost::new(
        name.clone().unwrap_or_default(),
        listen.clone().unwrap_or(Listen::Tcp {
            port: 0,
            interface: None,
            family: IpFamily::Both,
        }),
    );
    v.defined_at = defined_at;

    // TLS
    let cert = o
        .get(d, "host-ssl-cert")
        .and_then(|n| reader::path(d, "host-ssl-cert", n, &base));
    let key = o
        .get(d, "host-ssl-key")
        .and_then(|n| reader::path(d, "host-ssl-key", n, &base));
    let ca = o
        .get(d, "host-ssl-ca")
        .and_then(|n| reader::path(d, "host-ssl-ca", n, &base));
    let client_cert_required = flag(d, &mut o, "client-cert-required");
    let ciphers = o
        .get(d, "ciphers")
        .and_then(|n| reader::string(d, "ciphers", n));
    let tls13_ciphers = o
        .get(d, "tls13-ciphers")
        .and_then(|n| reader::string(d, "tls13-ciphers", n));
    let ecdh_curve = o
        .get(d, "ecdh-curve")
        .and_then(|n| reader::string(d, "ecdh-curve", n));
    let ssl_option_set = ssl_options(d, &mut o, "ssl-option-set");
    let ssl_option_clear = ssl_options(d, &mut o, "ssl-option-clear");
    let acme = o.get(d, "acme").and_then(|n| acme(d, n, &base));
    let tls_settings_ok = if (cert.is_some() && key.is_some()) || acme.is_some() {
        let settings = validate::TlsSettings {
            ciphers: ciphers.as_deref(),
            tls13_ciphers: tls13_ciphers.as_deref(),
            ecdh_curve: ecdh_curve.as_deref(),
            ssl_option_set,
            ssl_option_clear,
            client_cert_required,
            has_ca: ca.is_some(),
        };
        validate::tls_settings(d, &mut cx.warned, &o, &settings)
    } else {
        true
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            v.tls = Some(Tls {
                cert,
                key,
                ca,
                client_cert_required,
                ciphers,
                tls13_ciphers,
                ecdh_curve,
                ssl_option_set,
                ssl_option_clear,
            });
        }
        (Some(_), None) => d.error(
            o.key_loc("host-ssl-cert"),
            "host-ssl-key",
            "a certificate without a key",
            Some("add \"host-ssl-key\" with the certificate's private key".into()),
        ),
        (None, Some(_)) => d.error(
            o.key_loc("host-ssl-key"),
            "host-ssl-cert",
            "a key without a certificate",
            Some("add \"host-ssl-cert\" with the certificate chain".into()),
        ),
        // An ACME vhost is a TLS vhost whose files live in acme-dir; until
        // they exist a temporary self-signed certificate is served (§5.1).
        (None, None) if acme.is_some() => {
            let dir = cx.acme_dir.join(v.name.to_ascii_lowercase());
            v.tls = Some(Tls {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
                ca,
                client_cert_required,
                ciphers,
                tls13_ciphers,
                ecdh_curve,
                ssl_option_set,
                ssl_option_clear,
            });
        }
        (None, None) => {
            for k in [
                "host-ssl-ca",
                "client-cert-required",
                "ciphers",
                "tls13-ciphers",
                "ecdh-curve",
            ] {
                if o.key_loc(k) != o.loc {
                    d.warn(
                        o.key_loc(k),
                        k,
                        "has no effect on a vhost without TLS",
                        Some("add \"host-ssl-cert\" and \"host-ssl-key\", or remove it".into()),
                    );
                }
            }
        }
    }
    if acme.is_some() && o.key_loc("host-ssl-cert") != o.loc {
        d.error(o.key_loc("acme"), "acme", "a vhost cannot have both \"acme\" and \"host-ssl-cert\"", Some("remove \"host-ssl-cert\"/\"host-ssl-key\" to let ACME manage the certificate, or remove \"acme\"".into()));
    }
    if acme.is_some() && matches!(listen, Some(Listen::Unix { .. })) {
        d.error(o.key_loc("acme"), "acme", "ACME needs a TCP vhost", None);
    }
    if acme.is_some() && v.name.starts_with("*.") {
        d.error(o.key_loc("acme"), "acme", "a wildcard name cannot be validated by http-01 or tls-alpn-01", Some("name the vhost after one host, or use host-ssl-cert with a certificate obtained by DNS-01".into()));
    }
    v.acme = acme;

    v.sts = flag(d, &mut o, "sts");
    v.allow_non_tls = flag(d, &mut o, "allow-non-tls");
    v.redirect_http = flag(d, &mut o, "redirect-http");
    v.allow_http_on_https = flag(d, &mut o, "allow-http-on-https");
    if v.redirect_http && v.allow_http_on_https {
        d.error(
            o.key_loc("redirect-http"),
            "redirect-http",
            "cannot be on together with \"allow-http-on-https\"",
            Some("choose one way to treat plaintext on the TLS port".into()),
        );
    }
    if (v.redirect_http || v.allow_http_on_https) && !v.allow_non_tls {
        let k = if v.redirect_http {
            "redirect-http"
        } else {
            "allow-http-on-https"
        };
        d.warn(
            o.key_loc(k),
            k,
            "has no effect without \"allow-non-tls\": \"1\"",
            None,
        );
    }
    if let Some((k, n)) = o.get_alias(
        d,
        &["keeplive-timeout", "keepalive-timeout", "keepalive_timeout"],
    ) {
        v.keepalive_timeout = reader::seconds(d, k, n, 1).unwrap_or(v.keepalive_timeout);
    }
    v.access_log = o
        .get(d, "access-log")
        .and_then(|n| reader::path(d, "access-log", n, &base));
    if let Some(n) = o.get(d, "headers") {
        for p in reader::pairs(d, "headers", n) {
            match (
                HeaderName::from_bytes(p.name.as_bytes()),
                HeaderValue::from_str(&p.value),
            ) {
                (Ok(name), Ok(value)) => v.headers.push((name, value)),
                (Err(_), _) => d.error(
                    p.name_loc,
                    "headers",
                    format!("\"{}\" is not a valid header name", p.name),
                    Some("use letters, digits and '-'".into()),
                ),
                (_, Err(_)) => d.error(
                    p.value_loc,
                    "headers",
                    format!("the value of \"{}\" is not a valid header value", p.name),
                    Some("use printable characters without line breaks".into()),
                ),
            }
        }
    }

    // WebSocket
    if let Some(n) = o.get(d, "ws-origin-check") {
        match reader::string(d, "ws-origin-check", n)
            .as_deref()
            .map(str::trim)
        {
            Some("same") => v.ws_origin_check = OriginCheck::Same,
            Some("trusted") => v.ws_origin_check = OriginCheck::Trusted,
            Some("off") => v.ws_origin_check = OriginCheck::Off,
            Some(other) => d.error(
                n.loc,
                "ws-origin-check",
                format!("\"{other}\" is not an origin check mode"),
                Some("use \"same\", \"trusted\" or \"off\"".into()),
            ),
            None => {}
        }
    }
    if let Some(n) = o.get(d, "ws-trusted-origins") {
        for (s, loc) in reader::string_list(d, "ws-trusted-origins", n) {
            match url::Url::parse(&s) {
                Ok(u) if u.has_host() => {
                    v.ws_trusted_origins.push(u.origin().ascii_serialization())
                }
                _ => d.error(
                    loc,
                    "ws-trusted-origins",
                    format!("\"{s}\" is not an origin"),
                    Some(
                        "write origins as scheme://host[:port], e.g. \"https://example.com\""
                            .into(),
                    ),
                ),
            }
        }
    }
    if v.ws_origin_check == OriginCheck::Trusted && v.ws_trusted_origins.is_empty() {
        d.error(
            o.key_loc("ws-origin-check"),
            "ws-trusted-origins",
            "\"trusted\" origin check with no trusted origins refuses every browser",
            Some("list the allowed origins in \"ws-trusted-origins\"".into()),
        );
    }
    if let Some(n) = o.get(d, "ws-max-message-size") {
        v.ws_max_message_size = reader::number(d, "ws-max-message-size", n, 125, 1 << 40)
            .unwrap_or(v.ws_max_message_size);
    }
    v.ws_allow_reserved_status_codes = flag(d, &mut o, "ws-allow-reserved-status-codes");
    if let Some(n) = o.get(d, "ws-deflate") {
        v.ws_deflate = reader::boolean(d, "ws-deflate", n).unwrap_or(true);
    }
    if let Some(n) = o.get(d, "ws-deflate-threshold") {
        v.ws_deflate_threshold =
            reader::number(d, "ws-deflate-threshold", n, 0, u32::MAX as u64).unwrap_or(64);
    }

    // Raw vhosts
    let apply_listen_accept = flag(d, &mut o, "apply-listen-accept");
    let onlyraw = flag(d, &mut o, "onlyraw");
    v.listen_accept.apply = apply_listen_accept | onlyraw;
    v.listen_accept.fallback = flag(d, &mut o, "fallback-listen-accept");
    let role_node = o.get(d, "listen-accept-role");
    v.listen_accept.role = role_node
        .and_then(|n| reader::nonempty(d, "listen-accept-role", n).map(|s| s.trim().to_string()));
    let raw_protocol_node = o.get(d, "listen-accept-protocol");
    v.listen_accept.protocol = raw_protocol_node.and_then(|n| {
        reader::nonempty(d, "listen-accept-protocol", n).map(|s| s.trim().to_string())
    });
    let raw_key_loc = o.key_loc(if v.listen_accept.apply {
        if apply_listen_accept {
            "apply-listen-accept"
        } else {
            "onlyraw"
        }
    } else {
        "fallback-listen-accept"
    });
    if let (Some(role), Some(n)) = (&v.listen_accept.role, role_node)
        && !RAW_ROLES.contains(&role.as_str())
    {
        d.error(
            n.loc,
            "listen-accept-role",
            format!("unknown role \"{role}\""),
            did_you_mean(role, RAW_ROLES)
                .or_else(|| Some(format!("available roles: {}", RAW_ROLES.join(", ")))),
        );
    }
    if (v.listen_accept.apply || v.listen_accept.fallback) && v.listen_accept.role.is_none() {
        let k = if v.listen_accept.apply {
            "apply-listen-accept"
        } else {
            "fallback-listen-accept"
        };
        d.error(
            o.key_loc(k),
            "listen-accept-role",
            "a raw vhost needs a role",
            Some("add \"listen-accept-role\": \"raw-proxy\"".into()),
        );
    }
    if v.listen_accept.fallback && !v.allow_non_tls && (v.tls.is_some() || v.acme.is_some()) {
        d.warn(
            o.key_loc("fallback-listen-accept"),
            "fallback-listen-accept",
            "has no effect without \"allow-non-tls\": \"1\"",
            None,
        );
    }

    v.proxy_protocol = flag(d, &mut o, "proxy-protocol");
    // On a Unix socket the socket's permissions decide who may send the
    // header; on TCP only trusted-proxies may, so an empty list refuses all.
    if v.proxy_protocol && !has_trusted_proxies && matches!(listen, Some(Listen::Tcp { .. })) {
        d.error(
            o.key_loc("proxy-protocol"),
            "proxy-protocol",
            "is on for a TCP listener, but \"trusted-proxies\" is empty: every connection would be refused",
            Some("add the load balancer's address to \"trusted-proxies\" in the global section, e.g. \"trusted-proxies\": [\"10.0.0.2/32\"]".into()),
        );
    }
    v.strict_host_check = flag(d, &mut o, "strict-host-check");
    if let Some(n) = o.get(d, "error-document-404")
        && let Some(s) = reader::nonempty(d, "error-document-404", n)
    {
        if s.starts_with('/') {
            v.error_document_404 = Some(s);
        } else {
            d.error(
                n.loc,
                "error-document-404",
                format!("\"{s}\" is not a URL path"),
                Some("write a path on this vhost, like \"/404.html\"".into()),
            );
        }
    }
    v.ignore_missing_cert = flag(d, &mut o, "ignore-missing-cert");
    if let Some(n) = o.get(d, "alpn") {
        v.alpn = Some(alpn_list(d, "alpn", n));
    }
    v.disable_no_protocol_ws_upgrades = flag(d, &mut o, "disable-no-protocol-ws-upgrades");

    for k in VHOST_NO_EFFECT {
        if let Some(n) = o.get(d, k) {
            let _ = n;
            no_effect(d, &mut cx.warned, o.key_loc(k), k);
        }
    }
    // ACME vhosts' files are checked when read (the supervisor serves a
    // temporary certificate until they exist).
    if let Some(tls) = v.tls.as_ref().filter(|_| v.acme.is_none()) {
        validate::tls_files(d, &o, tls, v.ignore_missing_cert, tls_settings_ok);
    }
    if let Some(ca) = v.acme.as_ref().and_then(|a| a.directory_ca.as_ref()) {
        validate::check_path(d, o.key_loc("acme"), "directory-ca", ca, Need::Readable);
    }
    if let Some(log) = &v.access_log {
        validate::check_path(
            d,
            o.key_loc("access-log"),
            "access-log",
            log,
            Need::ParentDir,
        );
    }

    let mounts_node = o.get(d, "mounts");
    let protocols_node = o.get(d, "ws-protocols");
    o.finish(d);

    if let Some(n) = protocols_node {
        v.ws_protocols = ws_protocols(cx, n);
    }
    if v.listen_accept.apply || v.listen_accept.fallback {
        raw_protocol(cx, &mut v, raw_key_loc, raw_protocol_node, protocols_node);
    }
    if let Some(n) = mounts_node {
        match &n.kind {
            NodeKind::Array(items) => {
                let mut seen: Vec<(String, Loc)> = Vec::new();
                for item in items {
                    if let Some(m) = mount(cx, item) {
                        // "/foo" and "/foo/" route alike, so they clash.
                        let key = m.mountpoint.trim_end_matches('/').to_string();
                        let loc = mountpoint_loc(item);
                        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                            let first = cx.d.sources.describe(*first);
                            cx.d.error(
                                loc,
                                "mountpoint",
                                format!("\"{}\" is mounted twice in this vhost; first at {first}", m.mountpoint),
                                Some("remove one of the two mounts or change its mountpoint".into()),
                            );
                            continue;
                        }
                        seen.push((key, loc));
                        if let Origin::Callback(name) = &m.origin
                            && !v.ws_protocols.iter().any(|e| &e.name == name)
                        {
                            cx.d.error(
                                mount_origin_loc(item),
                                "origin",
                                format!("callback://{name} names a protocol this vhost does not enable"),
                                Some(format!("add {{\"{name}\": {{}}}} to the vhost's \"ws-protocols\"")),
                            );
                        }
                        v.mounts.push(m);
                    }
                }
            }
            _ => cx.d.error(n.loc, "mounts", format!("expected a list of mounts, found {}", n.type_name()), Some("write \"mounts\": [{ \"mountpoint\": \"/\", \"origin\": \"file:///var/www\" }]".into())),
        }
    }

    if name.is_none() || listen.is_none() {
        return None;
    }
    Some(v)
}

/// Roles a raw vhost can have (`listen-accept-role`).
const RAW_ROLES: &[&str] = &["raw-proxy"];

/// Raw protocols: names a vhost's `listen-accept-protocol` may give.
pub(crate) const RAW_PROTOCOLS: &[&str] = &["raw-proxy"];

/// Settles a raw vhost's protocol (§7): `listen-accept-protocol`, else the
/// `ws-protocols` entry marked `"raw": "1"`, else an enabled `raw-proxy`
/// entry; it must be enabled on the vhost, be a raw protocol, and have a
/// valid `onward`.
fn raw_protocol(
    cx: &mut Ctx,
    v: &mut Vhost,
    key_loc: Loc,
    protocol_node: Option<&Node>,
    protocols_node: Option<&Node>,
) {
    let d = &mut cx.d;
    let at = protocol_node.map_or(key_loc, |n| n.loc);
    let name = match &v.listen_accept.protocol {
        Some(p) => p.clone(),
        None => {
            let found = v.ws_protocols.iter().find(|e| e.raw).or_else(|| {
                v.ws_protocols
                    .iter()
                    .find(|e| RAW_PROTOCOLS.contains(&e.name.as_str()))
            });
            match found {
                Some(e) => e.name.clone(),
                None => {
                    d.error(
                        key_loc,
                        "listen-accept-protocol",
                        "a raw vhost needs a raw protocol",
                        Some("add \"listen-accept-protocol\": \"raw-proxy\" and \"ws-protocols\": [{\"raw-proxy\": {\"onward\": \"ipv4:127.0.0.1:22\"}}]".into()),
                    );
                    return;
                }
            }
        }
    };
    let Some(entry) = v.ws_protocols.iter().find(|e| e.name == name) else {
        let enabled: Vec<&str> = v.ws_protocols.iter().map(|e| e.name.as_str()).collect();
        let hint = did_you_mean(&name, &enabled).or_else(|| {
            Some(if RAW_PROTOCOLS.contains(&name.as_str()) {
                format!("add {{\"{name}\": {{\"onward\": \"ipv4:127.0.0.1:22\"}}}} to the vhost's \"ws-protocols\"")
            } else {
                format!("available raw protocols: {}", RAW_PROTOCOLS.join(", "))
            })
        });
        d.error(
            at,
            "listen-accept-protocol",
            format!("\"{name}\" is not a protocol this vhost enables in \"ws-protocols\""),
            hint,
        );
        return;
    };
    if !RAW_PROTOCOLS.contains(&name.as_str()) {
        d.error(
            at,
            "listen-accept-protocol",
            format!("\"{name}\" is a WebSocket protocol, not a raw protocol"),
            Some(format!(
                "available raw protocols: {}",
                RAW_PROTOCOLS.join(", ")
            )),
        );
        return;
    }
    match entry.pvo("onward") {
        // A bad value was reported where it is written.
        Some(s) => v.listen_accept.onward = Onward::parse(s, &cx.base).ok(),
        None => d.error(
            protocols_node.map_or(at, |n| n.loc),
            "onward",
            format!("protocol \"{name}\" has no \"onward\" address"),
            Some(format!(
                "write {{\"{name}\": {{\"onward\": \"ipv4:127.0.0.1:22\"}}}}"
            )),
        ),
    }
    v.listen_accept.protocol = Some(name);
}

/// Where a mount's `origin` value is, for messages about it.
fn mount_origin_loc(mount: &Node) -> Loc {
    match &mount.kind {
        NodeKind::Object(props) => props
            .iter()
            .find(|p| p.key == "origin")
            .map_or(mount.loc, |p| p.value.loc),
        _ => mount.loc,
    }
}

/// Where a mount's `mountpoint` value is, for messages about it.
fn mountpoint_loc(mount: &Node) -> Loc {
    match &mount.kind {
        NodeKind::Object(props) => props
            .iter()
            .find(|p| p.key == "mountpoint")
            .map_or(mount.loc, |p| p.value.loc),
        _ => mount.loc,
    }
}

fn flag(d: &mut Diags, o: &mut Obj, key: &str) -> bool {
    o.get(d, key)
        .and_then(|n| reader::boolean(d, key, n))
        .unwrap_or(false)
}

/// `ssl-option-set` / `-clear`: decimal or 0x-hex numbers, OR'ed over repeats.
fn ssl_options(d: &mut Diags, o: &mut Obj, key: &str) -> u64 {
    let mut bits = 0;
    for n in o.get_all(key) {
        let Some(s) = reader::string(d, key, n) else {
            continue;
        };
        let s = s.trim();
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse::<u64>(),
        };
        match parsed {
            Ok(v) => bits |= v,
            Err(_) => d.error(
                n.loc,
                key,
                format!("\"{s}\" is not a number"),
                Some(
                    "write the SSL_OP_* value in decimal, e.g. \"268435456\" for SSL_OP_NO_TLSv1_1"
                        .into(),
                ),
            ),
        }
    }
    bits
}

fn acme(d: &mut Diags, n: &Node, base: &Path) -> Option<Acme> {
    let mut o = Obj::from_node(d, n, "acme", "acme", ACME_KEYS)?;
    let directory = match o.get(d, "directory") {
        Some(dn) => reader::nonempty(d, "directory", dn).and_then(|s| match url::Url::parse(&s) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Some(u),
            _ => {
                d.error(dn.loc, "directory", format!("\"{s}\" is not an http(s) URL"), Some("give the ACME directory URL, e.g. \"https://acme-v02.api.letsencrypt.org/directory\"".into()));
                None
            }
        }),
        None => {
            d.error(n.loc, "directory", "\"acme\" needs the ACME directory URL", Some("add \"directory\": \"https://acme-v02.api.letsencrypt.org/directory\"".into()));
            None
        }
    };
    let email = o
        .get(d, "email")
        .and_then(|e| reader::nonempty(d, "email", e));
    let challenge = match o.get(d, "challenge") {
        None => AcmeChallenge::Http01,
        Some(c) => match reader::string(d, "challenge", c).as_deref() {
            Some("http-01") => AcmeChallenge::Http01,
            Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
            Some(other) => {
                d.error(
                    c.loc,
                    "challenge",
                    format!("unknown challenge \"{other}\""),
                    Some("use \"http-01\" or \"tls-alpn-01\"".into()),
                );
                AcmeChallenge::Http01
            }
            None => AcmeChallenge::Http01,
        },
    };
    let directory_ca = o
        .get(d, "directory-ca")
        .and_then(|c| reader::path(d, "directory-ca", c, base));
    o.finish(d);
    Some(Acme {
        directory: directory?,
        email,
        challenge,
        directory_ca,
    })
}

/// Warnings about a readable `auth-hmac-key-file`: its bytes are the key as
/// they are, so a trailing newline (an editor's or `echo`'s) is part of it.
fn token_key_warnings(d: &mut Diags<'_>, loc: Loc, path: &std::path::Path) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    if bytes.ends_with(b"\n") {
        d.warn(
            loc,
            "auth-hmac-key-file",
            format!(
                "{} ends in a newline, which is part of the key",
                path.display()
            ),
            Some(
                "sign tokens with the same bytes (lwsws token --key-file reads the file as it is), \
                 or write the key without a newline, e.g. with printf"
                    .into(),
            ),
        );
    } else if bytes.is_empty() {
        d.warn(
            loc,
            "auth-hmac-key-file",
            format!("{} is empty: anyone can sign tokens", path.display()),
            Some("put at least 32 random bytes in it, e.g. head -c 32 /dev/urandom".into()),
        );
    }
}

/// `"ws-protocols": [{"name": {"pvo": "value"}}, …]`.
fn ws_protocols(cx: &mut Ctx, n: &Node) -> Vec<ProtocolEntry> {
    let d = &mut cx.d;
    let NodeKind::Array(items) = &n.kind else {
        d.error(
            n.loc,
            "ws-protocols",
            format!("expected a list of objects, found {}", n.type_name()),
            Some(
                "write \"ws-protocols\": [{ \"protocol-name\": { \"option\": \"value\" } }]".into(),
            ),
        );
        return Vec::new();
    };
    let names: Vec<&str> = cx.protocols.iter().map(|p| p.name.as_str()).collect();
    let mut out: Vec<ProtocolEntry> = Vec::new();
    for item in items {
        let NodeKind::Object(props) = &item.kind else {
            d.error(
                item.loc,
                "ws-protocols",
                format!("expected an object, found {}", item.type_name()),
                None,
            );
            continue;
        };
        for p in props {
            let spec = cx.protocols.iter().find(|s| s.name == p.key);
            // An entry with a `plugin` pvo defines its own protocol.
            let is_plugin =
                matches!(&p.value.kind, NodeKind::Object(o) if o.iter().any(|q| q.key == "plugin"));
            if spec.is_none() && !is_plugin {
                let hint = did_you_mean(&p.key, &names).or_else(|| {
                    Some(if names.is_empty() {
                        "no WebSocket protocols are available in this build".to_string()
                    } else {
                        format!("available protocols: {}", names.join(", "))
                    })
                });
                d.error(
                    p.key_loc,
                    "ws-protocols",
                    format!("unknown protocol \"{}\"", p.key),
                    hint,
                );
            }
            if let Some(first) = out.iter().find(|e| e.name == p.key) {
                let _ = first;
                d.error(
                    p.key_loc,
                    "ws-protocols",
                    format!("protocol \"{}\" is enabled twice on this vhost", p.key),
                    Some("merge its options into one entry".into()),
                );
                continue;
            }
            let NodeKind::Object(pvo_props) = &p.value.kind else {
                d.error(
                    p.value.loc,
                    "ws-protocols",
                    format!(
                        "the options of \"{}\" must be an object, found {}",
                        p.key,
                        p.value.type_name()
                    ),
                    Some(format!("write \"{}\": {{}} when it has no options", p.key)),
                );
                continue;
            };
            let mut pairs = Vec::new();
            reader::object_pairs(d, "ws-protocols", pvo_props, &mut pairs);
            let mut entry = ProtocolEntry {
                name: p.key.clone(),
                default: false,
                raw: false,
                pvos: Vec::new(),
            };
            let mut plugin: Option<(PathBuf, Loc)> = None;
            let mut init: Option<(String, Loc)> = None;
            for pair in pairs {
                match pair.name.as_str() {
                    "plugin" => {
                        let resolved = reader::resolve(&cx.base, &pair.value);
                        plugin = Some((resolved.clone(), pair.value_loc));
                        entry
                            .pvos
                            .push((pair.name, resolved.to_string_lossy().into_owned()));
                        continue;
                    }
                    "init" => {
                        init = Some((pair.value.clone(), pair.value_loc));
                        entry.pvos.push((pair.name, pair.value));
                        continue;
                    }
                    "default" | "raw" => {
                        let node = Node {
                            loc: pair.value_loc,
                            kind: NodeKind::Str(pair.value.clone()),
                        };
                        let on = reader::boolean(d, &pair.name, &node).unwrap_or(false);
                        if pair.name == "default" {
                            entry.default = on
                        } else {
                            entry.raw = on
                        }
                        continue;
                    }
                    // Files shown by the status protocol: relative to the
                    // configuration directory, and allowed to be missing.
                    "filespath" | "filepath" => {
                        let resolved = reader::resolve(&cx.base, &pair.value);
                        entry
                            .pvos
                            .push((pair.name, resolved.to_string_lossy().into_owned()));
                        continue;
                    }
                    "basic-auth" | "auth-hmac-key-file" => {
                        let resolved = reader::resolve(&cx.base, &pair.value);
                        validate::check_path(
                            d,
                            pair.value_loc,
                            &pair.name,
                            &resolved,
                            Need::Readable,
                        );
                        if pair.name == "auth-hmac-key-file" {
                            token_key_warnings(d, pair.value_loc, &resolved);
                        }
                        entry
                            .pvos
                            .push((pair.name, resolved.to_string_lossy().into_owned()));
                        continue;
                    }
                    _ => {}
                }
                if pair.name == "onward" && RAW_PROTOCOLS.contains(&p.key.as_str()) {
                    match Onward::parse(&pair.value, &cx.base) {
                        Ok(o) => entry.pvos.push((pair.name, o.to_string())),
                        Err((message, hint)) => {
                            d.error(pair.value_loc, "onward", message, Some(hint))
                        }
                    }
                    continue;
                }
                if let Some(spec) = spec
                    && !is_plugin
                    && !COMMON_PVOS.contains(&pair.name.as_str())
                    && !spec.pvos.contains(&pair.name)
                    && !spec.pvos.iter().any(|p| p == "*")
                {
                    let known: Vec<&str> = spec
                        .pvos
                        .iter()
                        .map(String::as_str)
                        .chain(COMMON_PVOS.iter().copied())
                        .collect();
                    d.warn(
                        pair.name_loc,
                        &pair.name,
                        format!("option not known to protocol \"{}\"; it is ignored", p.key),
                        did_you_mean(&pair.name, &known),
                    );
                }
                entry.pvos.push((pair.name, pair.value));
            }
            if entry.pvos.iter().any(|(k, _)| k == "auth-first-message")
                && !entry.pvos.iter().any(|(k, _)| k == "auth-hmac-key-file")
            {
                d.warn(
                    p.key_loc,
                    "auth-first-message",
                    format!(
                        "\"auth-first-message\" of \"{}\" has no effect without \"auth-hmac-key-file\"",
                        p.key
                    ),
                    Some("add \"auth-hmac-key-file\": \"/path/to/key\"".into()),
                );
            }
            match (&plugin, &init) {
                (Some(_), None) => d.error(
                    p.key_loc,
                    "init",
                    format!("plugin protocol \"{}\" has no \"init\" pvo", p.key),
                    Some("add \"init\": \"NAME_init\", the plugin's init function".into()),
                ),
                (None, Some((_, loc))) => d.error(
                    *loc,
                    "init",
                    "\"init\" without \"plugin\"",
                    Some("add \"plugin\": \"/path/to/library.so\"".into()),
                ),
                (Some((path, loc)), Some((symbol, sloc))) => match cx.plugins {
                    None => d.error(
                        *loc,
                        "plugin",
                        "WebSocket plugins are not available in this build",
                        None,
                    ),
                    Some(hooks) => {
                        if let Err(why) = (hooks.probe)(path, symbol) {
                            let at = if path.is_file() { *sloc } else { *loc };
                            let key = if path.is_file() { "init" } else { "plugin" };
                            d.error(
                                at,
                                key,
                                format!("cannot load plugin {}: {why}", path.display()),
                                Some("check the library path and its init symbol".into()),
                            );
                        }
                    }
                },
                (None, None) => {}
            }
            out.push(entry);
        }
    }
    let defaults: Vec<&ProtocolEntry> = out.iter().filter(|e| e.default).collect();
    if defaults.len() > 1 {
        d.error(
            n.loc,
            "ws-protocols",
            format!(
                "more than one protocol is marked \"default\": {}",
                defaults
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("mark one protocol \"default\": \"1\"".into()),
        );
    }
    out
}

/// One entry of a vhost's `"mounts"`.
fn mount(cx: &mut Ctx, node: &Node) -> Option<Mount> {
    let mut o = Obj::from_node(&mut cx.d, node, "mounts", "mount", MOUNT_KEYS)?;
    let base = cx.base.clone();
    let d = &mut cx.d;

    let mountpoint = match o.get(d, "mountpoint") {
        Some(n) => reader::nonempty(d, "mountpoint", n).and_then(|s| {
            if s.starts_with('/') {
                Some(s)
            } else {
                d.error(
                    n.loc,
                    "mountpoint",
                    format!("\"{s}\" does not start with /"),
                    Some(format!("write \"/{s}\"")),
                );
                None
            }
        }),
        None => {
            d.error(
                node.loc,
                "mountpoint",
                "every mount needs a mountpoint",
                Some("add \"mountpoint\": \"/\"".into()),
            );
            None
        }
    };
    let origin = match o.get(d, "origin") {
        Some(n) => reader::nonempty(d, "origin", n).and_then(|s| origin(d, n.loc, &s, &base)),
        None => {
            d.error(
                node.loc,
                "origin",
                "every mount needs an origin",
                Some("add e.g. \"origin\": \"file:///var/www/html\"".into()),
            );
            None
        }
    };
    let mut m = Mount::new(
        mountpoint.clone().unwrap_or_default(),
        origin.clone().unwrap_or(Origin::Callback(String::new())),
    );
    m.default = o
        .get(d, "default")
        .and_then(|n| reader::nonempty(d, "default", n))
        .map(|s| s.trim_start_matches('/').to_string())
        .filter(|s| !s.is_empty());
    if let Some(n) = o.get(d, "cache-max-age") {
        m.cache.max_age = reader::number(d, "cache-max-age", n, 0, u32::MAX as u64);
        m.cache.reuse = true;
    }
    if let Some(n) = o.get(d, "cache-reuse") {
        m.cache.reuse = reader::boolean(d, "cache-reuse", n).unwrap_or(false);
    }
    m.cache.revalidate = flag(d, &mut o, "cache-revalidate");
    m.cache.intermediaries = flag(d, &mut o, "cache-intermediaries");
    if let Some(n) = o.get(d, "extra-mimetypes") {
        match &n.kind {
            NodeKind::Object(props) => {
                let mut pairs = Vec::new();
                reader::object_pairs(d, "extra-mimetypes", props, &mut pairs);
                for p in pairs {
                    if p.name == "*" {
                        m.serve_any_type = true;
                        continue;
                    }
                    let ext = p.name.trim_start_matches('.').to_ascii_lowercase();
                    if ext.is_empty() || ext.contains('/') {
                        d.error(
                            p.name_loc,
                            "extra-mimetypes",
                            format!("\"{}\" is not a file suffix", p.name),
                            Some("write suffixes like \".zip\"".into()),
                        );
                    } else if !valid_mime(&p.value) {
                        d.error(
                            p.value_loc,
                            "extra-mimetypes",
                            format!("\"{}\" is not a MIME type", p.value),
                            Some("write type/subtype, like \"application/zip\"".into()),
                        );
                    } else {
                        m.extra_mimetypes.push((ext, p.value));
                    }
                }
            }
            _ => d.error(
                n.loc,
                "extra-mimetypes",
                format!("expected an object, found {}", n.type_name()),
                Some("write \"extra-mimetypes\": { \".zip\": \"application/zip\" }".into()),
            ),
        }
    }
    m.basic_auth = o
        .get(d, "basic-auth")
        .and_then(|n| reader::path(d, "basic-auth", n, &base));
    if let Some(n) = o.get(d, "cgi-env") {
        for p in reader::pairs(d, "cgi-env", n) {
            if p.name.is_empty()
                || p.name.contains('=')
                || p.name.contains('\0')
                || p.value.contains('\0')
            {
                d.error(
                    p.name_loc,
                    "cgi-env",
                    format!("\"{}\" is not a valid environment variable", p.name),
                    Some("use a name without '=' or NUL".into()),
                );
            } else {
                m.cgi_env.push((p.name, p.value));
            }
        }
    }
    if let Some(n) = o.get(d, "cgi-timeout") {
        m.cgi_timeout = reader::seconds(d, "cgi-timeout", n, 1).unwrap_or(m.cgi_timeout);
    }
    if let Some(n) = o.get(d, "pmo") {
        m.pmo = reader::pairs(d, "pmo", n)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
    }
    if let Some(n) = o.get(d, "max-body-size") {
        m.max_body_size = reader::number(d, "max-body-size", n, 0, u64::MAX);
    }
    m.proxy_ca = o
        .get(d, "proxy-ca")
        .and_then(|n| reader::path(d, "proxy-ca", n, &base));
    if let Some(n) = o.get(d, "proxy-timeout-secs") {
        m.proxy_timeout = reader::seconds(d, "proxy-timeout-secs", n, 1).unwrap_or(m.proxy_timeout);
    }
    m.protocol = o
        .get(d, "protocol")
        .and_then(|n| reader::nonempty(d, "protocol", n));
    for k in MOUNT_NO_EFFECT {
        if o.get(d, k).is_some() {
            no_effect(d, &mut cx.warned, o.key_loc(k), k);
        }
    }
    if let Some(origin) = &origin {
        validate::mount_files(d, o.key_loc("origin"), origin);
    }
    if let Some(p) = &m.basic_auth {
        validate::check_path(d, o.key_loc("basic-auth"), "basic-auth", p, Need::Readable);
    }
    if let Some(p) = &m.proxy_ca {
        validate::check_path(d, o.key_loc("proxy-ca"), "proxy-ca", p, Need::Readable);
    }

    // Keys that only mean something for some origins.
    if let Some(origin) = &origin {
        let only = |k: &str, ok: bool, d: &mut Diags, o: &Obj| {
            if !ok && o.key_loc(k) != o.loc {
                d.warn(o.key_loc(k), k, "has no effect on this kind of mount", None);
            }
        };
        let is_file = matches!(origin, Origin::File(_));
        let is_cgi = matches!(origin, Origin::Cgi(_));
        let is_proxy = matches!(origin, Origin::Proxy(_));
        only("default", is_file || is_cgi, d, &o);
        only("cgi-env", is_cgi, d, &o);
        only("cgi-timeout", is_cgi, d, &o);
        only(
            "proxy-ca",
            is_proxy && matches!(origin, Origin::Proxy(p) if p.tls),
            d,
            &o,
        );
        only("proxy-timeout-secs", is_proxy, d, &o);
        only("extra-mimetypes", is_file, d, &o);
        only("pmo", matches!(origin, Origin::Callback(_)), d, &o);
    }
    o.finish(d);
    if mountpoint.is_none() || origin.is_none() {
        return None;
    }
    Some(m)
}

fn valid_mime(s: &str) -> bool {
    match s.split_once('/') {
        Some((t, st)) => {
            !t.is_empty()
                && !st.is_empty()
                && HeaderValue::from_str(s).is_ok()
                && !s.contains(char::is_whitespace)
                || (s.contains(';') && HeaderValue::from_str(s).is_ok())
        }
        None => false,
    }
}

/// Parses a mount origin (SPEC §3.1).
fn origin(d: &mut Diags, loc: Loc, s: &str, base: &Path) -> Option<Origin> {
    const HINT: &str = "use file://DIR, cgi://PROGRAM, http://HOST[:PORT][/PATH], https://…, >https://URL (redirect) or callback://PROTOCOL";
    if let Some(rest) = s.strip_prefix("file://") {
        if rest.is_empty() {
            d.error(
                loc,
                "origin",
                "file:// needs a directory",
                Some("write file:///var/www/html".into()),
            );
            return None;
        }
        return Some(Origin::File(reader::resolve(base, rest)));
    }
    if let Some(rest) = s.strip_prefix("cgi://") {
        if rest.is_empty() {
            d.error(
                loc,
                "origin",
                "cgi:// needs a program",
                Some("write cgi:///usr/lib/cgi-bin/program".into()),
            );
            return None;
        }
        return Some(Origin::Cgi(reader::resolve(base, rest)));
    }
    if let Some(rest) = s.strip_prefix("callback://") {
        let name = rest.trim_end_matches('/');
        if name.is_empty() {
            d.error(
                loc,
                "origin",
                "callback:// needs a protocol name",
                Some("write callback://lws-openmetrics".into()),
            );
            return None;
        }
        return Some(Origin::Callback(name.to_string()));
    }
    if s.starts_with("gzip://") {
        d.error(
            loc,
            "origin",
            "serving from zip archives is not supported",
            Some("unpack it and use file://".into()),
        );
        return None;
    }
    if let Some(target) = s.strip_prefix('>') {
        return match url::Url::parse(target) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.has_host() => {
                Some(Origin::Redirect(target.to_string()))
            }
            _ => {
                d.error(
                    loc,
                    "origin",
                    format!("\"{target}\" is not an http(s) URL to redirect to"),
                    Some("write \">https://example.com/path\"".into()),
                );
                None
            }
        };
    }
    let tls = if s.starts_with("https://") {
        true
    } else if s.starts_with("http://") {
        false
    } else {
        if let Some(rest) = s.strip_prefix('^') {
            d.error(
                loc,
                "origin",
                format!("\"{s}\": redirects are written with '>'"),
                Some(format!("write \">{rest}\"")),
            );
        } else {
            d.error(
                loc,
                "origin",
                format!("unsupported origin \"{s}\""),
                Some(HINT.into()),
            );
        }
        return None;
    };
    let rest = &s[if tls { 8 } else { 7 }..];
    // http://unix:/path/to.sock:/prefix
    if let Some(unix) = rest.strip_prefix("unix:") {
        let (sock, prefix) = match unix.find(":/") {
            Some(i) => (&unix[..i], &unix[i + 1..]),
            None => (unix, ""),
        };
        if !sock.starts_with('/') {
            d.error(
                loc,
                "origin",
                format!("\"{sock}\" is not an absolute socket path"),
                Some("write http://unix:/run/app.sock:/prefix".into()),
            );
            return None;
        }
        return Some(Origin::Proxy(ProxyOrigin {
            tls,
            target: ProxyTarget::Unix(PathBuf::from(sock)),
            path: prefix.trim_end_matches('/').to_string(),
        }));
    }
    match url::Url::parse(s) {
        Ok(u) if u.has_host() => {
            if u.username() != "" || u.password().is_some() {
                d.error(
                    loc,
                    "origin",
                    "credentials in a proxy origin are not supported",
                    Some("remove user:password@ from the URL".into()),
                );
                return None;
            }
            if u.query().is_some() || u.fragment().is_some() {
                d.error(
                    loc,
                    "origin",
                    "a proxy origin cannot have a query or fragment",
                    None,
                );
                return None;
            }
            let host = match u.host() {
                Some(url::Host::Ipv6(a)) => a.to_string(),
                Some(h) => h.to_string(),
                None => String::new(),
            };
            let port = u
                .port_or_known_default()
                .unwrap_or(if tls { 443 } else { 80 });
            Some(Origin::Proxy(ProxyOrigin {
                tls,
                target: ProxyTarget::Tcp { host, port },
                path: u.path().trim_end_matches('/').to_string(),
            }))
        }
        Ok(_) => {
            d.error(
                loc,
                "origin",
                format!("\"{s}\" has no host"),
                Some(HINT.into()),
            );
            None
        }
        Err(e) => {
            d.error(
                loc,
                "origin",
                format!("\"{s}\" is not a valid URL: {e}"),
                Some(HINT.into()),
            );
            None
        }
    }
}

/// A Host header (or SNI) split into host and port: `host`, `host:port`,
/// `[v6]`, `[v6]:port`; a bare IPv6 address has no port. The host keeps
/// its case; see [`normalise_host`].
pub fn split_host_port(h: &str) -> (&str, Option<u16>) {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (h, None),
    }
}

/// Host names compare case-insensitively, without a trailing dot.
pub fn normalise_host(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("Example.com"), ("Example.com", None));
        assert_eq!(
            split_host_port("example.com:8080"),
            ("example.com", Some(8080))
        );
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port(" a.b: "), ("a.b", None));
    }
}
