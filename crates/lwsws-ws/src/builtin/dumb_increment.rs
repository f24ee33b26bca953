//! `dumb-increment-protocol`: sends an increasing counter as text every
//! 50 ms; `reset\n` sets it to 0; `closeme\n` closes with 1001 "seeya".

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Incoming, Protocol, Session, VhostContext, VhostProtocol};
use std::sync::Arc;
use std::time::Duration;

const PERIOD: Duration = Duration::from_millis(50);

pub struct DumbIncrement;

impl Protocol for DumbIncrement {
    fn name(&self) -> &'static str {
        "dumb-increment-protocol"
    }

    fn pvos(&self) -> &'static [&'static str] {
        &["options"]
    }

    fn for_vhost(&self, _ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        Arc::new(DumbIncrement)
    }
}

impl VhostProtocol for DumbIncrement {
    fn connect(&self, _conn: &Arc<ConnHandle>, _info: &ConnectInfo) -> Option<Box<dyn Session>> {
        Some(Box::new(Counter { number: 0 }))
    }

    fn session_tick(&self) -> Option<Duration> {
        Some(PERIOD)
    }
}

struct Counter {
    number: u64,
}

impl Session for Counter {
    fn on_message(&mut self, conn: &Arc<ConnHandle>, msg: Incoming) {
        let b = msg.bytes();
        if b.starts_with(b"reset\n") {
            self.number = 0;
        }
        if b.starts_with(b"closeme\n") {
            conn.close(crate::close::code::GOING_AWAY, "seeya");
        }
    }

    fn tick(&self) -> Option<Duration> {
        Some(PERIOD)
    }

    fn on_tick(&mut self, conn: &Arc<ConnHandle>) {
        conn.send_text(&self.number.to_string());
        self.number += 1;
    }
}
