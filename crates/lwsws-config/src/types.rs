//! The validated configuration: what every other crate reads.
//!
//! These types are built by `convert.rs` from the files and checked by
//! `validate.rs`; once a [`Config`] exists its values are well-formed: ports
//! are `u16`, durations `Duration`, paths absolute, origins one of the mount
//! kinds with their parts parsed. Nothing downstream sees raw JSON.

use http::{HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole merged configuration of one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub global: Global,
    /// Vhosts of every file, in file order.
    pub vhosts: Vec<Vhost>,
}

/// Server-wide settings (`"global"` of every file, later files win).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Global {
    /// Workers switch to this user (`username`, or `uid`).
    pub user: Option<Account>,
    /// Workers switch to this group (`groupname`, or `gid`).
    pub group: Option<Account>,
    pub count_threads: usize,
    pub server_string: String,
    /// `ws-pingpong-secs`; `None` is off.
    pub ws_pingpong: Option<Duration>,
    pub init_ssl: bool,
    pub reject_service_keywords: Vec<RejectKeyword>,
    pub timeout: Duration,
    #[serde(with = "crate::serde_http::path_list")]
    pub plugin_dirs: Vec<PathBuf>,
    pub drain_timeout: Duration,
    pub strict_host: bool,
    pub max_connections: usize,
    pub ws_broadcast_prefix: String,
    pub cgi_max_processes: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub ws_broadcast: Option<RedisUrl>,
    #[serde(with = "crate::serde_http::path")]
    pub acme_dir: PathBuf,
    pub rlimit_nofile: Option<u64>,
    pub default_alpn: Option<Vec<Alpn>>,
    pub ip_limit_wsi: Option<u32>,
    pub ip_limit_ah: Option<u32>,
}

/// A user or group, by name (resolved when it exists here) or by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The name as configured, if given by name.
    pub name: Option<String>,
    /// The numeric id, when known (always for `uid`/`gid`; for a name, when
    /// the account exists on this machine).
    pub id: Option<u32>,
}

/// `reject-service-keywords` entry: a User-Agent substring and the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectKeyword {
    pub keyword: String,
    #[serde(with = "crate::serde_http::status_code")]
    pub status: StatusCode,
    /// The reason phrase as configured (`"404 Not Found"` → `Not Found`).
    pub reason: String,
}

/// `ws-broadcast`: where broadcast rooms are shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisUrl {
    /// The URL as configured; may hold a password, so never log or print it.
    pub url: url::Url,
}

impl RedisUrl {
    /// The URL with any password replaced, for logs and `--print-config`.
    pub fn redacted(&self) -> String {
        let shown = self.url.to_string();
        match self.url.password() {
            Some(pw) => shown.replacen(&format!(":{pw}@"), ":<redacted>@", 1),
            None => shown,
        }
    }
}

/// An ALPN protocol lwsws can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alpn {
    H2,
    Http11,
}

impl Alpn {
    pub fn as_str(self) -> &'static str {
        match self {
            Alpn::H2 => "h2",
            Alpn::Http11 => "http/1.1",
        }
    }
}

/// One virtual host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vhost {
    /// Lower-case host name without trailing dot; may start with `*.`.
    pub name: String,
    /// Where it listens.
    pub listen: Listen,
    /// `file:line` where the vhost is defined, for logs.
    pub defined_at: String,
    pub tls: Option<Tls>,
    pub acme: Option<Acme>,
    pub sts: bool,
    pub allow_non_tls: bool,
    pub redirect_http: bool,
    pub allow_http_on_https: bool,
    pub keepalive_timeout: Duration,
    #[serde(with = "crate::serde_http::opt_path")]
    pub access_log: Option<PathBuf>,
    /// Added to every HTTP response of the vhost, in file order.
    #[serde(with = "crate::serde_http::header_list")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub mounts: Vec<Mount>,
    pub ws_protocols: Vec<ProtocolEntry>,
    pub ws_origin_check: OriginCheck,
    pub ws_trusted_origins: Vec<String>,
    pub ws_max_message_size: u64,
    pub ws_allow_reserved_status_codes: bool,
    pub ws_deflate: bool,
    pub ws_deflate_threshold: u64,
    pub listen_accept: ListenAccept,
    pub proxy_protocol: bool,
    /// `strict-host-check`: `strict-host` for this vhost alone.
    pub strict_host_check: bool,
    pub error_document_404: Option<String>,
    pub ignore_missing_cert: bool,
    pub alpn: Option<Vec<Alpn>>,
    pub disable_no_protocol_ws_upgrades: bool,
}

impl Vhost {
    /// A vhost with every key at its default (SPEC §2.3), as a file that
    /// names only `name` and `port` would give.
    pub fn new(name: impl Into<String>, listen: Listen) -> Vhost {
        Vhost {
            name: name.into(),
            listen,
            defined_at: String::new(),
            tls: None,
            acme: None,
            sts: false,
            allow_non_tls: false,
            redirect_http: false,
            allow_http_on_https: false,
            keepalive_timeout: Duration::from_secs(60),
            access_log: None,
            headers: Vec::new(),
            mounts: Vec::new(),
            ws_protocols: Vec::new(),
            ws_origin_check: OriginCheck::Same,
            ws_trusted_origins: Vec::new(),
            ws_max_message_size: 33_554_432,
            ws_allow_reserved_status_codes: false,
            ws_deflate: true,
            ws_deflate_threshold: 64,
            listen_accept: ListenAccept::default(),
            proxy_protocol: false,
            strict_host_check: false,
            error_document_404: None,
            ignore_missing_cert: false,
            alpn: None,
            disable_no_protocol_ws_upgrades: false,
        }
    }
}

/// A vhost's listening address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Listen {
    Tcp {
        port: u16,
        interface: Option<Interface>,
        family: IpFamily,
    },
    Unix {
        #[serde(with = "crate::serde_http::path")]
        path: PathBuf,
        /// `unix-socket-perms` `user:group` owning the socket (mode is 0600).
        owner: Option<(String, String)>,
    },
}

/// `interface`: an address or a network interface's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interface {
    Addr(IpAddr),
    Name(String),
}

/// Which IP families a TCP listener uses (`noipv6`, `ipv6only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    /// IPv4 and IPv6 (the default).
    Both,
    /// `noipv6` on, or `ipv6only` off.
    V4Only,
    /// `ipv6only` on.
    V6Only,
}

/// TLS settings of a vhost that has `host-ssl-cert` and `host-ssl-key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tls {
    #[serde(with = "crate::serde_http::path")]
    pub cert: PathBuf,
    #[serde(with = "crate::serde_http::path")]
    pub key: PathBuf,
    /// `host-ssl-ca`: CAs that sign acceptable client certificates.
    #[serde(with = "crate::serde_http::opt_path")]
    pub ca: Option<PathBuf>,
    pub client_cert_required: bool,
    pub ciphers: Option<String>,
    pub tls13_ciphers: Option<String>,
    pub ecdh_curve: Option<String>,
    /// OpenSSL `SSL_OP_*` bits, OR'ed over every `ssl-option-set`.
    pub ssl_option_set: u64,
    pub ssl_option_clear: u64,
}

/// `acme`: lwsws obtains the vhost's certificate itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acme {
    pub directory: url::Url,
    pub email: Option<String>,
    pub challenge: AcmeChallenge,
    #[serde(with = "crate::serde_http::opt_path")]
    pub directory_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

/// `ws-origin-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OriginCheck {
    Same,
    Trusted,
    Off,
}

/// Raw vhost settings (§7): `apply-listen-accept`, `fallback-listen-accept`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListenAccept {
    /// Every connection goes to the raw protocol (`apply-listen-accept`, or `onlyraw`).
    pub apply: bool,
    /// Non-TLS, non-HTTP connections go to the raw protocol.
    pub fallback: bool,
    pub role: Option<String>,
    pub protocol: Option<String>,
    /// Where the raw protocol forwards (the `onward` pvo of the
    /// `ws-protocols` entry the vhost's raw protocol names); `Some` exactly
    /// when `apply` or `fallback` is on and the configuration is valid.
    pub onward: Option<Onward>,
}

/// The `onward` pvo of the `raw-proxy` protocol: where its bytes go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Onward {
    /// `ipv4:HOST:PORT` / `ipv6:[ADDR]:PORT`: a host name or address,
    /// resolved within that family when connecting.
    Tcp { host: String, port: u16, ipv6: bool },
    /// `unix:PATH` (relative paths resolved against the configuration directory).
    Unix(#[serde(with = "crate::serde_http::path")] PathBuf),
}

impl Onward {
    /// Parses `ipv4:HOST:PORT`, `ipv6:[ADDR]:PORT`, `ipv6:ADDR:PORT` or
    /// `unix:PATH`; relative Unix paths are resolved against `base`.
    /// The error is a message and a hint.
    pub fn parse(s: &str, base: &std::path::Path) -> Result<Onward, (String, String)> {
        let hint = || {
            "write \"ipv4:HOST:PORT\", \"ipv6:[ADDRESS]:PORT\" or \"unix:/PATH\", e.g. \"ipv4:127.0.0.1:22\"".to_string()
        };
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(("\"unix:\" names no socket path".into(), hint()));
            }
            return Ok(Onward::Unix(crate::reader::resolve(base, path)));
        }
        let (ipv6, rest) = if let Some(r) = s.strip_prefix("ipv4:") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("ipv6:") {
            (true, r)
        } else {
            return Err((format!("\"{s}\" is not an onward address"), hint()));
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err((format!("\"{s}\" has no port"), hint()));
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err((format!("\"{port}\" in \"{s}\" is not a port"), hint())),
        };
        let host = if ipv6 {
            let bare = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if !bare.contains(':') && bare.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err((
                    format!("{bare} in \"{s}\" is an IPv4 address"),
                    format!("write \"ipv4:{bare}:{port}\""),
                ));
            }
            bare
        } else {
            if host.contains(':') || host.starts_with('[') {
                return Err((
                    format!("\"{host}\" in \"{s}\" is not an IPv4 host"),
                    format!(
                        "write \"ipv6:[{}]:{port}\" for an IPv6 address",
                        host.trim_matches(['[', ']'])
                    ),
                ));
            }
            host
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err((format!("\"{s}\" names no valid host"), hint()));
        }
        if ipv6 && host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err((
                format!("\"{host}\" in \"{s}\" is not an IPv6 address"),
                hint(),
            ));
        }
        Ok(Onward::Tcp {
            host: host.to_string(),
            port,
            ipv6,
        })
    }
}

impl std::fmt::Display for Onward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Onward::Tcp {
                host,
                port,
                ipv6: false,
            } => write!(f, "ipv4:{host}:{port}"),
            Onward::Tcp {
                host,
                port,
                ipv6: true,
            } if host.contains(':') => write!(f, "ipv6:[{host}]:{port}"),
            Onward::Tcp { host, port, .. } => write!(f, "ipv6:{host}:{port}"),
            Onward::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One `ws-protocols` entry: a protocol enabled on the vhost with its options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtocolEntry {
    pub name: String,
    /// `"default": "1"`: chosen when the client names no protocol.
    pub default: bool,
    /// `"raw": "1"`: the vhost's raw protocol.
    pub raw: bool,
    /// Every other pvo, in file order (`filespath` may repeat).
    pub pvos: Vec<(String, String)>,
}

impl ProtocolEntry {
    /// The first value of a pvo.
    pub fn pvo(&self, name: &str) -> Option<&str> {
        self.pvos
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One mount of a vhost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    /// URL path prefix, starting with `/`.
    pub mountpoint: String,
    pub origin: Origin,
    /// `default`: index file for a directory request.
    pub default: Option<String>,
    pub cache: CachePolicy,
    /// Extra suffix → MIME type pairs (suffix lower-case, without the dot).
    pub extra_mimetypes: Vec<(String, String)>,
    /// `extra-mimetypes` had `"*": ""`: any file may be served.
    pub serve_any_type: bool,
    #[serde(with = "crate::serde_http::opt_path")]
    pub basic_auth: Option<PathBuf>,
    pub cgi_env: Vec<(String, String)>,
    pub cgi_timeout: Duration,
    pub pmo: Vec<(String, String)>,
    pub max_body_size: Option<u64>,
    #[serde(with = "crate::serde_http::opt_path")]
    pub proxy_ca: Option<PathBuf>,
    pub proxy_timeout: Duration,
    /// `protocol`: WebSocket protocol for upgrades here when the client names none.
    pub protocol: Option<String>,
}

impl Mount {
    /// A mount with every key at its default (SPEC §3.1).
    pub fn new(mountpoint: impl Into<String>, origin: Origin) -> Mount {
        Mount {
            mountpoint: mountpoint.into(),
            origin,
            default: None,
            cache: CachePolicy::default(),
            extra_mimetypes: Vec::new(),
            serve_any_type: false,
            basic_auth: None,
            cgi_env: Vec::new(),
            cgi_timeout: Duration::from_secs(300),
            pmo: Vec::new(),
            max_body_size: None,
            proxy_ca: None,
            proxy_timeout: Duration::from_secs(60),
            protocol: None,
        }
    }
}

/// What a mount serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// `file://DIR`: files under an absolute directory.
    File(#[serde(with = "crate::serde_http::path")] PathBuf),
    /// `cgi://PROGRAM`: an absolute path to a program.
    Cgi(#[serde(with = "crate::serde_http::path")] PathBuf),
    /// `http://…` / `https://…`: a reverse proxy.
    Proxy(ProxyOrigin),
    /// `>http://…` / `>https://…`: a 301 redirect to this base URL.
    Redirect(String),
    /// `callback://NAME`: HTTP served by a protocol.
    Callback(String),
}

/// A reverse-proxy upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyOrigin {
    pub tls: bool,
    pub target: ProxyTarget,
    /// Path prefix on the upstream, without a trailing `/` (may be empty).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProxyTarget {
    Tcp { host: String, port: u16 },
    Unix(#[serde(with = "crate::serde_http::path")] PathBuf),
}

/// Cache-Control of a file mount (`cache-*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CachePolicy {
    pub max_age: Option<u64>,
    pub reuse: bool,
    pub revalidate: bool,
    pub intermediaries: bool,
}

impl CachePolicy {
    /// The `Cache-Control` header value this policy sends.
    pub fn header_value(&self) -> String {
        match self.max_age {
            None => "no-store".to_string(),
            Some(_) if !self.reuse => "no-store".to_string(),
            Some(age) => {
                let mut v = format!(
                    "{}, max-age={age}",
                    if self.intermediaries {
                        "public"
                    } else {
                        "private"
                    }
                );
                if self.revalidate {
                    v.push_str(", must-revalidate");
                }
                v
            }
        }
    }
}
