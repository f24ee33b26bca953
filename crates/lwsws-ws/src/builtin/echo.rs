//! `echo`: every message comes back unchanged, with its type (used for
//! conformance testing with Autobahn).

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Incoming, Protocol, Session, VhostContext, VhostProtocol};
use std::sync::Arc;

pub struct Echo;

impl Protocol for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn for_vhost(&self, _ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        Arc::new(Echo)
    }
}

impl VhostProtocol for Echo {
    fn connect(&self, _conn: &Arc<ConnHandle>, _info: &ConnectInfo) -> Option<Box<dyn Session>> {
        Some(Box::new(EchoSession))
    }
}

struct EchoSession;

impl Session for EchoSession {
    fn on_message(&mut self, conn: &Arc<ConnHandle>, msg: Incoming) {
        match &msg {
            Incoming::Text(b) => conn.send_frame(crate::frame::frame(crate::OpCode::Text, b)),
            Incoming::Binary(b) => conn.send_frame(crate::frame::frame(crate::OpCode::Binary, b)),
        }
    }
}
