//! First-message authentication (SPEC §6.5, pvo `auth-first-message`): the
//! upgrade succeeds without a token, and the first message must be a text
//! message holding a valid token, within `timeout-secs`; otherwise the
//! connection closes with 1008. Nothing reaches the protocol before that:
//! its session is only created, with the token's user, once the token is
//! accepted.

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Incoming, Session, VhostProtocol};
use crate::stats::{AuthCount, Stats};
use crate::token::TokenKey;
use std::sync::Arc;
use std::time::Duration;

/// Reason of the close when no token came in time.
pub const TIMEOUT_REASON: &str = "authentication timeout";

/// A session waiting for its token, then the protocol's session.
pub struct FirstMessage {
    protocol: Arc<dyn VhostProtocol>,
    /// What the protocol's `connect` will see (with the user filled in).
    info: Option<ConnectInfo>,
    key: Arc<TokenKey>,
    stats: Arc<Stats>,
    inner: Option<Box<dyn Session>>,
    /// Counts this connection as authenticated while it lives.
    counted: Option<AuthCount>,
    /// Closes the connection with 1008 when no token came in time.
    timer: Option<tokio::task::AbortHandle>,
    /// A token was refused: everything after is ignored.
    refused: bool,
}

impl FirstMessage {
    /// Waits for a token on `conn` for at most `timeout`; must be called
    /// within a Tokio runtime (the timer is a task).
    pub fn new(
        conn: &Arc<ConnHandle>,
        protocol: Arc<dyn VhostProtocol>,
        info: ConnectInfo,
        key: Arc<TokenKey>,
        stats: Arc<Stats>,
        timeout: Duration,
    ) -> FirstMessage {
        let c = conn.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::info!(conn = c.id, "WebSocket token not received in time");
            c.close(crate::close::code::POLICY_VIOLATION, TIMEOUT_REASON);
        })
        .abort_handle();
        FirstMessage {
            protocol,
            info: Some(info),
            key,
            stats,
            inner: None,
            counted: None,
            timer: Some(timer),
            refused: false,
        }
    }

    fn stop_timer(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }

    fn refuse(&mut self, conn: &Arc<ConnHandle>, reason: &str) {
        self.refused = true;
        self.stop_timer();
        tracing::info!(conn = conn.id, reason, "WebSocket token refused");
        conn.close(crate::close::code::POLICY_VIOLATION, reason);
    }

    /// Whether the token was accepted (the protocol's session runs).
    pub fn authenticated(&self) -> bool {
        self.inner.is_some()
    }
}

impl Session for FirstMessage {
    fn on_message(&mut self, conn: &Arc<ConnHandle>, msg: Incoming) {
        if let Some(inner) = &mut self.inner {
            inner.on_message(conn, msg);
            return;
        }
        if self.refused || conn.is_closing() {
            return;
        }
        let text = match &msg {
            Incoming::Text(b) => std::str::from_utf8(b).unwrap_or_default().trim(),
            Incoming::Binary(_) => {
                self.refuse(conn, "expected a token in a text message");
                return;
            }
        };
        let user = match self.key.verify(text) {
            Ok(u) => u,
            Err(e) => {
                self.refuse(conn, &e.to_string());
                return;
            }
        };
        self.stop_timer();
        let Some(mut info) = self.info.take() else {
            return;
        };
        info.user = Some(user.clone());
        // Counted before the session starts, so what it reports includes it.
        self.counted = Some(AuthCount::new(self.stats.clone(), &user));
        // A protocol running foreign code (plugins) may block in `connect`:
        // the runtime is told, so that other tasks move to other threads.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let session = if self.protocol.connect_blocks() && multi_thread {
            tokio::task::block_in_place(|| self.protocol.connect(conn, &info))
        } else {
            self.protocol.connect(conn, &info)
        };
        match session {
            Some(s) => {
                tracing::debug!(conn = conn.id, user = %user, "WebSocket token accepted");
                self.inner = Some(s);
            }
            None => {
                self.counted = None;
                self.refuse(conn, "refused by the protocol");
            }
        }
    }

    fn tick(&self) -> Option<Duration> {
        self.protocol.session_tick()
    }

    fn on_tick(&mut self, conn: &Arc<ConnHandle>) {
        if let Some(inner) = &mut self.inner {
            inner.on_tick(conn);
        }
    }

    fn on_close(&mut self, conn: &Arc<ConnHandle>) {
        self.stop_timer();
        if let Some(inner) = &mut self.inner {
            inner.on_close(conn);
        }
        self.counted = None;
    }
}

impl Drop for FirstMessage {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::echo::Echo;
    use crate::protocol::{Protocol, VhostContext};

    fn setup() -> (Arc<ConnHandle>, FirstMessage, Arc<Stats>) {
        setup_with(Duration::from_secs(60))
    }

    fn setup_with(timeout: Duration) -> (Arc<ConnHandle>, FirstMessage, Arc<Stats>) {
        let stats = Arc::new(Stats::new(Vec::new()));
        let echo = Echo.for_vhost(VhostContext {
            vhost: "v",
            pvos: &[],
            stats: stats.clone(),
            broadcast: crate::room::Hub::local(),
        });
        let conn = ConnHandle::new(None);
        let fm = FirstMessage::new(
            &conn,
            echo,
            ConnectInfo::default(),
            Arc::new(TokenKey::new(b"k")),
            stats.clone(),
            timeout,
        );
        (conn, fm, stats)
    }

    #[tokio::test]
    async fn a_valid_token_starts_the_protocol() {
        let (conn, mut fm, stats) = setup();
        let t = TokenKey::new(b"k").sign_for("ann", 60).unwrap();
        fm.on_message(&conn, Incoming::Text(t.into()));
        assert!(fm.authenticated());
        assert!(!conn.is_closing());
        assert_eq!(stats.authenticated().0, 1);
        fm.on_message(&conn, Incoming::Text("hi".into()));
        fm.on_close(&conn);
        assert_eq!(stats.authenticated().0, 0);
    }

    #[tokio::test]
    async fn a_bad_token_or_binary_closes() {
        let (conn, mut fm, _) = setup();
        let t = TokenKey::new(b"other").sign_for("ann", 60).unwrap();
        fm.on_message(&conn, Incoming::Text(t.into()));
        assert!(!fm.authenticated());
        assert!(conn.is_closing());
        let (conn, mut fm, _) = setup();
        fm.on_message(&conn, Incoming::Binary("x".into()));
        assert!(!fm.authenticated());
        assert!(conn.is_closing());
    }

    #[tokio::test]
    async fn the_protocol_ticks_once_authenticated() {
        use crate::builtin::dumb_increment::DumbIncrement;
        let stats = Arc::new(Stats::new(Vec::new()));
        let counter = DumbIncrement.for_vhost(VhostContext {
            vhost: "v",
            pvos: &[],
            stats: stats.clone(),
            broadcast: crate::room::Hub::local(),
        });
        let conn = ConnHandle::new(None);
        let key = Arc::new(TokenKey::new(b"k"));
        let mut fm = FirstMessage::new(
            &conn,
            counter,
            ConnectInfo::default(),
            key.clone(),
            stats,
            Duration::from_secs(60),
        );
        // The driver asks once, before the session exists.
        assert_eq!(fm.tick(), Some(Duration::from_millis(50)));
        fm.on_tick(&conn);
        fm.on_message(
            &conn,
            Incoming::Text(key.sign_for("ann", 60).unwrap().into()),
        );
        assert!(fm.authenticated());
        fm.on_tick(&conn);
        assert!(!conn.is_closing());
    }

    #[tokio::test]
    async fn no_token_in_time_closes() {
        let (conn, _fm, _) = setup_with(Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(conn.is_closing());
        // A token in time stops the timer.
        let (conn, mut fm, _) = setup_with(Duration::from_millis(20));
        let t = TokenKey::new(b"k").sign_for("ann", 60).unwrap();
        fm.on_message(&conn, Incoming::Text(t.into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!conn.is_closing());
    }
}
