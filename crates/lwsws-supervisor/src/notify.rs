//! systemd's notification protocol (`Type=notify`), sent only when
//! `NOTIFY_SOCKET` is set; a failure to send is logged and ignored.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// The serving generation is ready (first start, or a reload finished).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A reload begins; systemd wants the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::debug!(error = %e, "cannot read the monotonic clock"),
    }
}

/// Stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `STATUS=`: generation and connection counts.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}
