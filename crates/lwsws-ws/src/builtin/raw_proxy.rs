//! `raw-proxy`: the raw protocol of raw vhosts (SPEC §7). Its bytes are
//! forwarded by the server (`lwsws-server`'s `raw.rs`) to the `onward`
//! address; it is listed here so that `ws-protocols` may enable it with its
//! pvo, and it refuses WebSocket connections.

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Protocol, Session, VhostContext, VhostProtocol};
use std::sync::Arc;

pub struct RawProxy;

impl Protocol for RawProxy {
    fn name(&self) -> &'static str {
        "raw-proxy"
    }

    fn pvos(&self) -> &'static [&'static str] {
        &["onward"]
    }

    fn for_vhost(&self, _ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        Arc::new(RawProxy)
    }
}

impl VhostProtocol for RawProxy {
    /// Not a WebSocket protocol: an upgrade naming it is refused.
    fn connect(&self, _conn: &Arc<ConnHandle>, _info: &ConnectInfo) -> Option<Box<dyn Session>> {
        None
    }
}
