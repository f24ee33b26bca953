//! The ACME client of lwsws (RFC 8555, SPEC §5.1): gets and renews the
//! certificate of every vhost with `acme`, keeping account keys, certificate
//! keys and certificates under `acme-dir` (directories 0700, keys 0600, one
//! subdirectory per vhost name). It runs in its own process (see
//! `LIFECYCLE.md` beside this file), never in a serving worker.
//!
//! A [`Manager`] runs one task per vhost: read the certificate on disk, wait
//! until two thirds of its lifetime have passed (with jitter), order a new
//! one, and on failure retry with exponential back-off, leaving the working
//! certificate in place. It talks to its process's supervisor link only
//! through [`Event`]s: the challenge responses the workers must serve (and an
//! acknowledgement once they do), a vhost's new certificate, and the status
//! shown by `lws-server-status`.

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use lwsws_config::{Acme, AcmeChallenge};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// A challenge response the workers serve while an order is validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    /// `GET /.well-known/acme-challenge/TOKEN` for `name` answers the key
    /// authorization (on the plain-HTTP listener).
    Http01 {
        name: String,
        token: String,
        key_authorization: String,
    },
    /// A TLS handshake for `name` offering ALPN `acme-tls/1` gets this
    /// self-signed certificate carrying the acmeIdentifier extension.
    TlsAlpn01 {
        name: String,
        cert_pem: String,
        key_pem: String,
    },
}

/// A vhost's certificate as `lws-server-status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub vhost: String,
    /// `pending` (no certificate from the CA yet: a temporary self-signed one
    /// is served), `valid`, or `renewing`.
    pub state: String,
    /// Unix seconds.
    pub not_after: Option<i64>,
    /// Unix seconds of the next order attempt.
    pub next_attempt: Option<i64>,
    pub last_error: Option<String>,
}

/// What the manager asks of the rest of lwsws.
#[derive(Debug)]
pub enum Event {
    /// The full set of challenge responses to serve from now on; `deployed`
    /// is answered once every worker has them.
    Challenges {
        set: Vec<Challenge>,
        deployed: oneshot::Sender<()>,
    },
    /// A vhost's new certificate is on disk: take it into service (reload).
    Issued { vhost: String },
    /// Every vhost's status, after any change.
    Status(Vec<Status>),
}

/// Where a vhost's files live.
pub fn vhost_dir(acme_dir: &Path, vhost: &str) -> PathBuf {
    acme_dir.join(vhost.to_ascii_lowercase())
}

/// The certificate chain file of a vhost (what the supervisor loads).
pub fn cert_path(acme_dir: &Path, vhost: &str) -> PathBuf {
    vhost_dir(acme_dir, vhost).join("cert.pem")
}

/// The certificate key file of a vhost.
pub fn key_path(acme_dir: &Path, vhost: &str) -> PathBuf {
    vhost_dir(acme_dir, vhost).join("key.pem")
}

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Order(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The smallest and largest waits after a failed order.
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// A certificate is looked at again at least this often.
const RECHECK: Duration = Duration::from_secs(12 * 3600);
/// How long an order may take to be validated and issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);
/// Extra time after the workers report a challenge deployed, for stragglers.
const SETTLE: Duration = Duration::from_millis(200);

/// Orders and renews the certificates of the vhosts with `acme`.
pub struct Manager {
    acme_dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    statuses: Mutex<BTreeMap<String, Status>>,
    /// Challenges in progress, by vhost (the workers get the union).
    pending: Mutex<BTreeMap<String, Vec<Challenge>>>,
    rng: SystemRandom,
}

impl Manager {
    pub fn new(acme_dir: PathBuf, events: mpsc::UnboundedSender<Event>) -> Arc<Manager> {
        Arc::new(Manager {
            acme_dir,
            events,
            statuses: Mutex::default(),
            pending: Mutex::default(),
            rng: SystemRandom::new(),
        })
    }

    /// Runs one vhost's certificate for ever.
    pub async fn run(self: Arc<Self>, vhost: String, acme: Acme) {
        if let Err(e) = private_dir(&self.acme_dir)
            .and_then(|()| private_dir(&vhost_dir(&self.acme_dir, &vhost)))
        {
            tracing::error!(vhost = %vhost, "acme: {e}");
        }
        let mut failures: u32 = 0;
        // The certificate whose renewal time was drawn and logged, and that time.
        let mut scheduled: Option<((i64, i64), i64)> = None;
        loop {
            let current = read_validity(&cert_path(&self.acme_dir, &vhost));
            let now = unix_now();
            let due = match current {
                Some(validity) => match scheduled {
                    Some((v, due)) if v == validity => due,
                    _ => {
                        let (from, until) = validity;
                        let due = renewal_due(from, until, self.jitter(until - from));
                        scheduled = Some((validity, due));
                        tracing::info!(
                            vhost = %vhost,
                            not_after = until,
                            renew_at = due,
                            "acme: certificate valid until {until}; renewal due at {due} (in {} s)",
                            (due - now).max(0)
                        );
                        due
                    }
                },
                None => now,
            };
            if due > now {
                self.set_status(&vhost, "valid", current.map(|c| c.1), Some(due), None);
                let wait = Duration::from_secs((due - now) as u64).min(RECHECK);
                tokio::time::sleep(wait).await;
                continue;
            }
            let state = if current.is_some() {
                "renewing"
            } else {
                "pending"
            };
            self.set_status(&vhost, state, current.map(|c| c.1), Some(now), None);
            tracing::info!(vhost = %vhost, directory = %acme.directory, "acme: ordering a certificate");
            let result = self.order(&vhost, &acme).await;
            self.clear_challenges(&vhost).await;
            match result {
                Ok(()) => {
                    failures = 0;
                    let validity = read_validity(&cert_path(&self.acme_dir, &vhost));
                    tracing::info!(
                        vhost = %vhost,
                        not_after = validity.map_or(0, |v| v.1),
                        "acme: certificate issued; taking it into service"
                    );
                    let _ = self.events.send(Event::Issued {
                        vhost: vhost.clone(),
                    });
                }
                Err(e) => {
                    let e = chain(&e);
                    let wait = RETRY_MIN
                        .saturating_mul(1u32 << failures.min(10))
                        .min(RETRY_MAX);
                    failures = failures.saturating_add(1);
                    let next = unix_now() + wait.as_secs() as i64;
                    tracing::error!(
                        vhost = %vhost,
                        attempt = failures,
                        next_attempt_in_secs = wait.as_secs(),
                        "acme: order failed: {e}; the current certificate stays in service; next attempt in {} s",
                        wait.as_secs()
                    );
                    self.set_status(
                        &vhost,
                        state,
                        current.map(|c| c.1),
                        Some(next),
                        Some(e.to_string()),
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Up to a thirtieth of a lifetime (see [`renewal_due`]).
    fn jitter(&self, lifetime: i64) -> i64 {
        let mut b = [0u8; 4];
        if self.rng.fill(&mut b).is_err() || lifetime < 30 {
            return 0;
        }
        i64::from(u32::from_le_bytes(b)) % (lifetime / 30)
    }

    fn set_status(
        &self,
        vhost: &str,
        state: &str,
        not_after: Option<i64>,
        next_attempt: Option<i64>,
        last_error: Option<String>,
    ) {
        let Ok(mut s) = self.statuses.lock() else {
            return;
        };
        let keep_error = last_error.is_none() && state != "valid";
        let previous = s.get(vhost).and_then(|p| p.last_error.clone());
        s.insert(
            vhost.to_string(),
            Status {
                vhost: vhost.to_string(),
                state: state.to_string(),
                not_after,
                next_attempt,
                last_error: if keep_error { previous } else { last_error },
            },
        );
        let _ = self
            .events
            .send(Event::Status(s.values().cloned().collect()));
    }

    /// Publishes a vhost's challenge responses and waits until the workers
    /// serve them.
    async fn deploy(&self, vhost: &str, set: Vec<Challenge>) {
        let all = match self.pending.lock() {
            Ok(mut p) => {
                if set.is_empty() {
                    p.remove(vhost);
                } else {
                    p.insert(vhost.to_string(), set);
                }
                p.values().flatten().cloned().collect()
            }
            Err(_) => set,
        };
        let (tx, rx) = oneshot::channel();
        if self
            .events
            .send(Event::Challenges {
                set: all,
                deployed: tx,
            })
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        tokio::time::sleep(SETTLE).await;
    }

    async fn clear_challenges(&self, vhost: &str) {
        let had = self
            .pending
            .lock()
            .map(|p| p.contains_key(vhost))
            .unwrap_or(false);
        if had {
            self.deploy(vhost, Vec::new()).await;
        }
    }

    /// One order, from account to certificate on disk.
    async fn order(&self, vhost: &str, acme: &Acme) -> Result<(), Error> {
        let account = self.account(vhost, acme).await?;
        let ids = [Identifier::Dns(vhost.to_ascii_lowercase())];
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        let kind = match acme.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut set = Vec::new();
        let mut ready = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a?;
                match a.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(Error::Order(format!("authorization is {other:?}"))),
                }
                let name = a.identifier().to_string();
                let Some(ch) = a.challenge(kind.clone()) else {
                    return Err(Error::Order(format!(
                        "the CA offers no {kind:?} challenge for {name}"
                    )));
                };
                let ka = ch.key_authorization();
                set.push(match kind {
                    ChallengeType::TlsAlpn01 => {
                        let (cert_pem, key_pem) = alpn_certificate(&name, ka.digest().as_ref())?;
                        Challenge::TlsAlpn01 {
                            name,
                            cert_pem,
                            key_pem,
                        }
                    }
                    _ => Challenge::Http01 {
                        name,
                        token: ch.token.clone(),
                        key_authorization: ka.as_str().to_string(),
                    },
                });
                ready.push(ch.url.clone());
            }
        }
        if !set.is_empty() {
            self.deploy(vhost, set).await;
        }
        // Tell the CA to validate now that the responses are served.
        {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a?;
                if let Some(mut ch) = a.challenge(kind.clone())
                    && ready.contains(&ch.url)
                {
                    ch.set_ready().await?;
                }
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            return Err(Error::Order(format!(
                "the order is {status:?}: {}",
                order_problem(&mut order).await
            )));
        }
        let key_pem = order.finalize().await?;
        let chain = order.poll_certificate(&retry).await?;
        let dir = vhost_dir(&self.acme_dir, vhost);
        // The key first: a certificate is never on disk without its key.
        write_private(&dir.join("key.pem"), key_pem.as_bytes())?;
        write_private(&dir.join("cert.pem"), chain.as_bytes())?;
        Ok(())
    }

    /// The vhost's ACME account, created (and saved, 0600) on first use.
    async fn account(&self, vhost: &str, acme: &Acme) -> Result<Account, Error> {
        let builder = match &acme.directory_ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        };
        let path = vhost_dir(&self.acme_dir, vhost).join("account.json");
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&bytes)
        {
            return Ok(builder.from_credentials(creds).await?);
        }
        let contact = acme.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, creds) = builder
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                acme.directory.to_string(),
                None,
            )
            .await?;
        let json = serde_json::to_vec(&creds).map_err(|e| Error::Order(e.to_string()))?;
        write_private(&path, &json)?;
        tracing::info!(vhost = %vhost, "acme: account created");
        Ok(account)
    }
}

/// What the CA said about a failed order's authorizations.
async fn order_problem(order: &mut instant_acme::Order) -> String {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        match a {
            Ok(a) => {
                for c in &a.challenges {
                    if let Some(e) = &c.error {
                        out.push(e.to_string());
                    }
                }
            }
            Err(e) => out.push(e.to_string()),
        }
    }
    if out.is_empty() {
        "no reason given".to_string()
    } else {
        out.join("; ")
    }
}

/// The TLS-ALPN-01 certificate (RFC 8737): self-signed for `name`, with the
/// critical acmeIdentifier extension holding the key authorization's digest.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<(String, String), Error> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Order(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| Error::Order(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Order(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates `dir` (0700) if needed and makes sure nobody else can enter it.
fn private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes a file 0600 through a temporary name and a rename, so that a
/// reader sees the old contents or the new, never a mix.
fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The validity (not before, not after; Unix seconds) of the first
/// certificate in a PEM file, if there is one that parses.
pub fn read_validity(path: &Path) -> Option<(i64, i64)> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// An error with its causes ("client error (Connect): tcp connect error:
/// Connection refused"), as operators need it in the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// When a certificate valid from `from` until `until` (Unix seconds) is
/// renewed: once two thirds of its lifetime have passed, `jitter` seconds
/// earlier so that certificates issued together are not renewed together.
pub fn renewal_due(from: i64, until: i64, jitter: i64) -> i64 {
    from + (until - from) * 2 / 3 - jitter
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_in_0700_directories() {
        let t = std::env::temp_dir().join(format!("lwsws-acme-test-{}", std::process::id()));
        let f = t.join("site").join("key.pem");
        write_private(&f, b"secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&t.join("site")), 0o700);
        write_private(&f, b"newer").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"newer");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn alpn_certificates_carry_the_acme_identifier() {
        let (cert, key) = alpn_certificate("a.test", &[7; 32]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let c = pem.parse_x509().unwrap();
        let ext = c
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        assert!(ext.value.ends_with(&[7; 32]));
    }

    #[test]
    fn renewal_comes_after_two_thirds_of_the_lifetime_less_the_jitter() {
        // A 90-day certificate: day 60, up to three days earlier.
        let day = 86_400;
        let from = 1_700_000_000;
        assert_eq!(renewal_due(from, from + 90 * day, 0), from + 60 * day);
        assert_eq!(renewal_due(from, from + 90 * day, 3 * day), from + 57 * day);
        let (tx, _rx) = mpsc::unbounded_channel();
        let m = Manager::new(std::env::temp_dir(), tx);
        let lifetime = 90 * day;
        let draws: Vec<i64> = (0..200).map(|_| m.jitter(lifetime)).collect();
        assert!(draws.iter().all(|&j| (0..lifetime / 30).contains(&j)));
        // Drawn, not fixed: 200 draws from three days' worth of seconds differ.
        assert!(draws.iter().any(|&j| j != draws[0]));
        // Too short a lifetime to spread: no jitter, never a negative one.
        assert_eq!(m.jitter(29), 0);
    }
}
