//! Checks that look beyond one value: files the configuration names, the
//! TLS settings of a vhost (its certificate, key and CA parse and fit, and
//! the OpenSSL-only keys map onto rustls), and rules across vhosts (one
//! listener cannot mix TLS and plaintext vhosts, a name cannot appear twice
//! on one listener, …).

use crate::error::Diags;
use crate::reader::Obj;
use crate::source::Loc;
use crate::types::{Listen, Origin, Tls, Vhost};
use lwsws_tls::{MaterialError, TlsError, Which};
use std::collections::HashSet;
use std::path::Path;

/// What a named file must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A regular file we can read.
    Readable,
    /// A directory.
    Dir,
    /// A regular file we may execute.
    Executable,
    /// Its directory exists (a file lwsws creates, like a log).
    ParentDir,
}

/// Reports `path` unless it is what `need` says. Returns whether it is.
pub(crate) fn check_path(d: &mut Diags, loc: Loc, key: &str, path: &Path, need: Need) -> bool {
    let shown = path.display();
    let problem = match need {
        Need::ParentDir => match path.parent() {
            Some(parent) if parent.is_dir() => None,
            Some(parent) => Some((
                format!("the directory {} does not exist", parent.display()),
                format!(
                    "create it (e.g. mkdir -p {}) or choose another path",
                    parent.display()
                ),
            )),
            None => None,
        },
        _ => match std::fs::metadata(path) {
            Err(e) => Some((
                format!("{shown}: {}", io_reason(&e)),
                match need {
                    Need::Dir => "create the directory or correct the path".to_string(),
                    _ => "correct the path or create the file".to_string(),
                },
            )),
            Ok(m) if need == Need::Dir && !m.is_dir() => Some((
                format!("{shown} is not a directory"),
                "name the directory to serve".to_string(),
            )),
            Ok(m) if need != Need::Dir && !m.is_file() => Some((
                format!("{shown} is not a regular file"),
                "name a file".to_string(),
            )),
            Ok(_) if need == Need::Readable => match std::fs::File::open(path) {
                Ok(_) => None,
                Err(e) => Some((
                    format!("{shown}: {}", io_reason(&e)),
                    "make it readable by the user lwsws starts as".to_string(),
                )),
            },
            Ok(_) if need == Need::Executable => {
                match nix::unistd::access(path, nix::unistd::AccessFlags::X_OK) {
                    Ok(()) => None,
                    Err(_) => Some((
                        format!("{shown} is not executable"),
                        format!("chmod +x {shown}"),
                    )),
                }
            }
            Ok(_) => None,
        },
    };
    match problem {
        Some((message, hint)) => {
            d.error(loc, key, message, Some(hint));
            false
        }
        None => true,
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// File-system checks of one mount (origin directory, CGI program, auth file).
pub(crate) fn mount_files(d: &mut Diags, origin_loc: Loc, origin: &Origin) {
    match origin {
        Origin::File(dir) => {
            check_path(d, origin_loc, "origin", dir, Need::Dir);
        }
        Origin::Cgi(program) => {
            check_path(d, origin_loc, "origin", program, Need::Executable);
        }
        _ => {}
    }
}

/// The OpenSSL-only TLS keys of a vhost, as read from its object.
pub(crate) struct TlsSettings<'a> {
    pub ciphers: Option<&'a str>,
    pub tls13_ciphers: Option<&'a str>,
    pub ecdh_curve: Option<&'a str>,
    pub ssl_option_set: u64,
    pub ssl_option_clear: u64,
    pub client_cert_required: bool,
    pub has_ca: bool,
}

const CIPHERS_HINT: &str = "TLS 1.2 suites rustls implements: ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-AES256-GCM-SHA384, ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-CHACHA20-POLY1305 (IANA names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 work too), and OpenSSL keywords such as HIGH or !aNULL";
const TLS13_CIPHERS_HINT: &str = "use TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256 and/or TLS_CHACHA20_POLY1305_SHA256, ':'-separated";
const CURVES_HINT: &str = "use X25519, P-256 (prime256v1) and/or P-384 (secp384r1), ':'-separated";

/// Checks `ciphers`, `tls13-ciphers`, `ecdh-curve`, `ssl-option-set/clear` and
/// `client-cert-required` of a TLS vhost. Returns whether they are all usable.
pub(crate) fn tls_settings(
    d: &mut Diags,
    warned: &mut HashSet<&'static str>,
    o: &Obj,
    s: &TlsSettings,
) -> bool {
    let mut ok = true;
    let mut parsed = |d: &mut Diags,
                      key: &str,
                      value: Option<&str>,
                      parse: fn(&str) -> Result<Vec<String>, String>,
                      hint: &str| {
        let Some(value) = value else { return };
        match parse(value) {
            Ok(warnings) => {
                for w in warnings {
                    d.warn(o.key_loc(key), key, w, None);
                }
            }
            Err(e) => {
                ok = false;
                d.error(o.key_loc(key), key, e, Some(hint.to_string()));
            }
        }
    };
    parsed(
        d,
        "ciphers",
        s.ciphers,
        |v| lwsws_tls::parse_ciphers_with_warnings(v).map(|(_, w)| w),
        CIPHERS_HINT,
    );
    parsed(
        d,
        "tls13-ciphers",
        s.tls13_ciphers,
        |v| lwsws_tls::parse_tls13_ciphers_with_warnings(v).map(|(_, w)| w),
        TLS13_CIPHERS_HINT,
    );
    parsed(
        d,
        "ecdh-curve",
        s.ecdh_curve,
        |v| lwsws_tls::parse_curves_with_warnings(v).map(|(_, w)| w),
        CURVES_HINT,
    );
    if let Err(e) = lwsws_tls::protocol_versions(s.ssl_option_set, s.ssl_option_clear) {
        ok = false;
        d.error(
            o.key_loc("ssl-option-set"),
            "ssl-option-set",
            e,
            Some(format!(
                "keep at most one of SSL_OP_NO_TLSv1_2 ({}) and SSL_OP_NO_TLSv1_3 ({})",
                lwsws_tls::SSL_OP_NO_TLSV1_2,
                lwsws_tls::SSL_OP_NO_TLSV1_3
            )),
        );
    }
    for (key, set, clear) in [
        ("ssl-option-set", s.ssl_option_set & !s.ssl_option_clear, 0),
        ("ssl-option-clear", 0, s.ssl_option_clear),
    ] {
        for name in lwsws_tls::ignored_options(set, clear) {
            if warned.insert(name) {
                d.warn(
                    o.key_loc(key),
                    key,
                    format!("{name} has no effect with rustls; ignored"),
                    Some("remove it from the value to silence this warning".into()),
                );
            }
        }
    }
    if s.client_cert_required && !s.has_ca {
        ok = false;
        d.error(
            o.key_loc("client-cert-required"),
            "client-cert-required",
            "client certificates cannot be verified without a CA bundle",
            Some(
                "add \"host-ssl-ca\" with the CA certificates that sign client certificates".into(),
            ),
        );
    }
    ok
}

/// Checks the certificate, key and CA files of a TLS vhost: readable, PEM,
/// a key that belongs to the certificate; then, if `settings_ok`, that the
/// whole builds a rustls configuration.
pub(crate) fn tls_files(
    d: &mut Diags,
    o: &Obj,
    tls: &Tls,
    ignore_missing: bool,
    settings_ok: bool,
) {
    let mut usable = true;
    for (k, p) in [("host-ssl-cert", &tls.cert), ("host-ssl-key", &tls.key)] {
        if ignore_missing && !p.exists() {
            d.warn(o.key_loc(k), k, format!("{} does not exist; a temporary self-signed certificate is served until a reload finds it", p.display()), None);
            usable = false;
        } else {
            usable &= check_path(d, o.key_loc(k), k, p, Need::Readable);
        }
    }
    if let Some(ca) = &tls.ca {
        usable &= check_path(
            d,
            o.key_loc("host-ssl-ca"),
            "host-ssl-ca",
            ca,
            Need::Readable,
        );
    }
    if !usable {
        return;
    }
    let material = match lwsws_tls::read_material(&tls.cert, &tls.key, tls.ca.as_deref()) {
        Ok(m) => m,
        Err(e) => return material_error(d, o, tls, &e),
    };
    let problems = lwsws_tls::material_problems(&material);
    for e in &problems {
        material_error(d, o, tls, e);
    }
    if !problems.is_empty() {
        return;
    }
    if !settings_ok {
        return;
    }
    let params = lwsws_tls::Params {
        material: &material,
        client_cert_required: tls.client_cert_required,
        ciphers: tls.ciphers.as_deref(),
        tls13_ciphers: tls.tls13_ciphers.as_deref(),
        ecdh_curve: tls.ecdh_curve.as_deref(),
        ssl_option_set: tls.ssl_option_set,
        ssl_option_clear: tls.ssl_option_clear,
        alpn: &[],
    };
    let suites_hint = "add a suite for the key's type: ECDHE-RSA-… for an RSA key, ECDHE-ECDSA-… for an ECDSA or Ed25519 key";
    match lwsws_tls::check_params(&params) {
        Ok(warnings) => {
            for w in warnings {
                d.warn(o.key_loc("ciphers"), "ciphers", w, Some(suites_hint.into()));
            }
        }
        Err(TlsError::Material(e)) => material_error(d, o, tls, &e),
        Err(e) => {
            let (key, message, hint) = match e {
                TlsError::Ciphers(m) => ("ciphers", m, Some(suites_hint.to_string())),
                TlsError::Tls13Ciphers(m) => ("tls13-ciphers", m, None),
                TlsError::Curves(m) => ("ecdh-curve", m, None),
                TlsError::Versions(m) => ("ssl-option-set", m, None),
                TlsError::ClientCertWithoutCa => ("client-cert-required", e.to_string(), None),
                TlsError::Verifier(m) => ("host-ssl-ca", m, None),
                other => ("host-ssl-cert", other.to_string(), None),
            };
            d.error(o.key_loc(key), key, message, hint);
        }
    }
}

/// Reports a problem of the key material at the key that names the file.
fn material_error(d: &mut Diags, o: &Obj, tls: &Tls, e: &MaterialError) {
    let (key, path) = match e.which() {
        Which::Cert => ("host-ssl-cert", tls.cert.as_path()),
        Which::Key => ("host-ssl-key", tls.key.as_path()),
        Which::Ca => ("host-ssl-ca", tls.ca.as_deref().unwrap_or(Path::new(""))),
    };
    let shown = path.display();
    let (message, hint) = match e {
        MaterialError::Io { source, .. } => (
            format!("{shown}: {}", io_reason(source)),
            "make it readable by the user lwsws starts as".to_string(),
        ),
        MaterialError::Cert { what } => (
            format!("{shown}: {what}"),
            "give the PEM certificate chain, the server's own certificate first".to_string(),
        ),
        MaterialError::Key { what } => (
            format!("{shown}: {what}"),
            "give the certificate's private key in PEM (PKCS#8, PKCS#1 or SEC1)".to_string(),
        ),
        MaterialError::EncryptedKey => (
            format!("{shown}: the key is encrypted, and encrypted keys are not supported"),
            format!(
                "decrypt it with openssl pkey -in {shown} -out {shown}.plain, keep that file private and name it here"
            ),
        ),
        MaterialError::Ca { what } => (
            format!("{shown}: {what}"),
            "give a PEM bundle of the CA certificates that sign client certificates".to_string(),
        ),
        MaterialError::Mismatch => (
            format!(
                "{shown} does not belong to the certificate {} (their public keys differ)",
                tls.cert.display()
            ),
            "name the key the certificate was issued for (openssl x509 -noout -pubkey -in CERT and openssl pkey -pubout -in KEY print the same key)".to_string(),
        ),
    };
    d.error(o.key_loc(key), key, message, Some(hint));
}

/// Rules across vhosts. `locs[i]` is where `vhosts[i]` is defined.
pub(crate) fn across_vhosts(d: &mut Diags, vhosts: &[Vhost], locs: &[Loc]) {
    for (i, v) in vhosts.iter().enumerate() {
        for (j, w) in vhosts[..i].iter().enumerate() {
            if !same_listener(&v.listen, &w.listen) {
                continue;
            }
            let first = d.sources.describe(locs[j]);
            if v.name == w.name {
                d.error(
                    locs[i],
                    "name",
                    format!(
                        "vhost \"{}\" is defined twice on {}; first at {first}",
                        v.name,
                        describe_listen(&v.listen)
                    ),
                    Some("remove one of them, or give them different names or ports".into()),
                );
            }
            let tls_v = v.tls.is_some() || v.acme.is_some();
            let tls_w = w.tls.is_some() || w.acme.is_some();
            if tls_v != tls_w {
                d.error(
                    locs[i],
                    "host-ssl-cert",
                    format!(
                        "vhost \"{}\" is {} but shares {} with vhost \"{}\" ({first}), which is {}",
                        v.name,
                        if tls_v { "TLS" } else { "plaintext" },
                        describe_listen(&v.listen),
                        w.name,
                        if tls_w { "TLS" } else { "plaintext" }
                    ),
                    Some("put TLS and plaintext vhosts on different ports (use allow-non-tls for plaintext on a TLS port)".into()),
                );
            }
            if v.proxy_protocol != w.proxy_protocol {
                d.error(
                    locs[i],
                    "proxy-protocol",
                    format!("vhosts \"{}\" and \"{}\" ({first}) share {} but disagree on \"proxy-protocol\"", v.name, w.name, describe_listen(&v.listen)),
                    Some("set the same \"proxy-protocol\" on every vhost of one port".into()),
                );
            }
            break;
        }
    }
}

/// Whether two vhosts share a listening socket.
pub fn same_listener(a: &Listen, b: &Listen) -> bool {
    match (a, b) {
        (
            Listen::Tcp {
                port: p,
                interface: i,
                family: f,
            },
            Listen::Tcp {
                port: q,
                interface: j,
                family: g,
            },
        ) => p == q && i == j && f == g,
        (Listen::Unix { path: p, .. }, Listen::Unix { path: q, .. }) => p == q,
        _ => false,
    }
}

/// `port 80`, `port 80 on eth0`, `unix socket /run/x.sock`.
pub fn describe_listen(l: &Listen) -> String {
    match l {
        Listen::Tcp {
            port,
            interface: None,
            ..
        } => format!("port {port}"),
        Listen::Tcp {
            port,
            interface: Some(crate::types::Interface::Addr(a)),
            ..
        } => format!("port {port} on {a}"),
        Listen::Tcp {
            port,
            interface: Some(crate::types::Interface::Name(n)),
            ..
        } => format!("port {port} on {n}"),
        Listen::Unix { path, .. } => format!("unix socket {}", path.display()),
    }
}
