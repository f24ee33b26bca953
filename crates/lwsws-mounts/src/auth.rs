//! Basic auth (SPEC §3.6, RFC 7617): the `basic-auth` file of a mount,
//! loaded once per configuration generation (so a reload re-reads it), and
//! the check of a request's `Authorization: Basic …` against it.
//!
//! The file holds `user:password` lines: the password in plain text or as a
//! bcrypt hash (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes). Blank lines
//! and `#` comments are skipped; anything else that does not parse is an
//! error naming the file and line, so a typo cannot lock everyone out (or
//! let anyone in) silently. Plain passwords are compared in constant time.
//!
//! bcrypt is slow by design (tens of milliseconds per check at cost 10), and
//! browsers resend the credentials with every request; so after a hash
//! verified, the password is remembered for that user, and the next
//! request with the same password is compared in constant time against it
//! instead. Passwords are never logged. The server calls this before any
//! handler (STYLE.md: auth in one place, before routing to a handler).

use crate::HttpError;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Standard base64, with or without padding (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest `Authorization` value worth decoding.
const MAX_CREDENTIALS: usize = 4096;

/// The users of one `basic-auth` file.
pub struct BasicAuth {
    /// The file, for messages.
    path: PathBuf,
    users: HashMap<String, User>,
}

struct User {
    secret: Secret,
    /// The last password that matched the bcrypt hash of this user, so the
    /// next check is a constant-time compare instead of a bcrypt run.
    /// Shared by every request checking this user; `None` for plain text.
    verified: Mutex<Option<Vec<u8>>>,
}

enum Secret {
    Plain(Vec<u8>),
    Bcrypt(String),
}

/// A `basic-auth` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{}: cannot read the basic-auth file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong and how to fix it (never the password itself).
        problem: String,
    },
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

impl BasicAuth {
    /// Reads and checks a `basic-auth` file.
    pub fn load(path: &Path) -> Result<BasicAuth, AuthFileError> {
        let text = std::fs::read(path).map_err(|source| AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the contents of a `basic-auth` file; `path` names it in errors.
    pub fn parse(path: &Path, text: &[u8]) -> Result<BasicAuth, AuthFileError> {
        let mut users: HashMap<String, User> = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            let err = |problem: String| AuthFileError::Line {
                path: path.to_path_buf(),
                line: line_no,
                problem,
            };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let Ok(line) = std::str::from_utf8(raw) else {
                return Err(err("not valid UTF-8".into()));
            };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(err("expected `user:password` (no `:` on this line)".into()));
            };
            if user.is_empty() {
                return Err(err("empty user name before `:`".into()));
            }
            if password.is_empty() {
                return Err(err(format!(
                    "empty password for user `{user}`; give a password or a bcrypt hash (htpasswd -B)"
                )));
            }
            let secret = parse_secret(password).map_err(&err)?;
            if let Some(first) = first_line.get(user) {
                return Err(err(format!(
                    "user `{user}` appears again (first on line {first}); keep one line per user"
                )));
            }
            first_line.insert(user.to_string(), line_no);
            users.insert(
                user.to_string(),
                User {
                    secret,
                    verified: Mutex::new(None),
                },
            );
        }
        Ok(BasicAuth {
            path: path.to_path_buf(),
            users,
        })
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user name, when `authorization` holds valid `Basic` credentials.
    ///
    /// May run bcrypt (tens of milliseconds) the first time a password is
    /// checked: from async code prefer [`BasicAuth::check_async`].
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Option<String> {
        let (name, password) = credentials(authorization?)?;
        let user = self.users.get(&name)?;
        match user.quick_check(&password) {
            Some(true) => Some(name),
            Some(false) => None,
            None => user.bcrypt_check(password).then_some(name),
        }
    }

    /// Like [`BasicAuth::check`], but a bcrypt verification runs on the
    /// blocking pool instead of the calling task's thread.
    pub async fn check_async(
        self: &Arc<Self>,
        authorization: Option<&HeaderValue>,
    ) -> Option<String> {
        let (name, password) = credentials(authorization?)?;
        let user = self.users.get(&name)?;
        match user.quick_check(&password) {
            Some(true) => Some(name),
            Some(false) => None,
            None => {
                let this = Arc::clone(self);
                tokio::task::spawn_blocking(move || {
                    let ok = this
                        .users
                        .get(&name)
                        .is_some_and(|u| u.bcrypt_check(password));
                    ok.then_some(name)
                })
                .await
                .ok()
                .flatten()
            }
        }
    }

    /// Whether checks may need bcrypt (some user has a hash).
    pub fn has_hashes(&self) -> bool {
        self.users
            .values()
            .any(|u| matches!(u.secret, Secret::Bcrypt(_)))
    }
}

impl User {
    /// The answer without bcrypt: `Some(true)` / `Some(false)` for a plain
    /// password, `Some(true)` for a bcrypt user's remembered password, and
    /// `None` when bcrypt must decide.
    fn quick_check(&self, password: &[u8]) -> Option<bool> {
        match &self.secret {
            Secret::Plain(p) => Some(p.ct_eq(password).into()),
            Secret::Bcrypt(_) => {
                let remembered = self.verified.lock().ok()?;
                let hit = remembered
                    .as_ref()
                    .is_some_and(|r| bool::from(r.ct_eq(password)));
                hit.then_some(true)
            }
        }
    }

    /// Runs bcrypt; remembers the password when it matches.
    fn bcrypt_check(&self, password: Vec<u8>) -> bool {
        let Secret::Bcrypt(hash) = &self.secret else {
            return false;
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false);
        if ok && let Ok(mut remembered) = self.verified.lock() {
            *remembered = Some(password);
        }
        ok
    }
}

/// A password field: a bcrypt hash, another hash scheme (refused, so its
/// text is not taken for a plain password), or plain text.
fn parse_secret(password: &str) -> Result<Secret, String> {
    let b = password.as_bytes();
    if b.len() >= 4 && b.starts_with(b"$2") && b[3] == b'$' {
        if !matches!(b[2], b'a' | b'b' | b'y') {
            return Err(format!(
                "unsupported bcrypt variant `{}`; make hashes with `htpasswd -B`",
                password.get(..4).unwrap_or("$2?$")
            ));
        }
        let parts: bcrypt::HashParts = password
            .parse()
            .map_err(|e| format!("malformed bcrypt hash ({e}); make hashes with `htpasswd -B`"))?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err("bcrypt cost outside 4..31; make hashes with `htpasswd -B`".into());
        }
        return Ok(Secret::Bcrypt(password.to_string()));
    }
    for scheme in ["$apr1$", "$1$", "$5$", "$6$", "$y$", "{SHA}"] {
        if password.starts_with(scheme) {
            return Err(format!(
                "`{scheme}` hashes are not supported; make bcrypt hashes with `htpasswd -B`"
            ));
        }
    }
    Ok(Secret::Plain(b.to_vec()))
}

/// The user name and password of a `Basic` Authorization value.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = value.as_bytes();
    if v.len() > MAX_CREDENTIALS {
        return None;
    }
    let sp = v.iter().position(|&b| b == b' ')?;
    if !v[..sp].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = v[sp..].trim_ascii();
    let decoded = BASE64.decode(token).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let name = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((name, decoded[colon + 1..].to_vec()))
}

/// 401 asking for credentials for `realm` (the vhost name).
pub fn challenge(realm: &str) -> HttpError {
    let realm: String = realm
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let v = format!("Basic realm=\"{realm}\"");
    let v = HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"lwsws\""));
    HttpError::new(StatusCode::UNAUTHORIZED).with_header(header::WWW_AUTHENTICATE, v)
}
