//! `lws-mirror-protocol`: every message is sent to every connection of the
//! same vhost and mirror instance (`?mirror=NAME`, default one instance), in
//! order, the sender included.

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Incoming, Protocol, Session, VhostContext, VhostProtocol};
use crate::room::{Room, Rooms};
use std::sync::Arc;

pub struct Mirror;

impl Protocol for Mirror {
    fn name(&self) -> &'static str {
        "lws-mirror-protocol"
    }

    fn pvos(&self) -> &'static [&'static str] {
        &["tag-user"]
    }

    fn for_vhost(&self, ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        let tag_user = ctx
            .pvos
            .iter()
            .any(|(k, v)| k == "tag-user" && matches!(v.as_str(), "1" | "on" | "yes" | "true"));
        Arc::new(MirrorVhost {
            rooms: Rooms::default(),
            tag_user,
        })
    }
}

struct MirrorVhost {
    rooms: Rooms,
    tag_user: bool,
}

/// The mirror instance named by the query (`mirror=NAME`).
fn instance(query: Option<&str>) -> String {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("mirror="))
        .map(|v| {
            let d: Vec<u8> = percent_encoding::percent_decode_str(v).collect();
            String::from_utf8_lossy(&d).into_owned()
        })
        .unwrap_or_default()
}

impl VhostProtocol for MirrorVhost {
    fn connect(&self, conn: &Arc<ConnHandle>, info: &ConnectInfo) -> Option<Box<dyn Session>> {
        let name = instance(info.query.as_deref());
        let room = self.rooms.get(&name);
        room.join(conn);
        Some(Box::new(MirrorSession {
            room,
            tag: if self.tag_user {
                info.user.clone()
            } else {
                None
            },
        }))
    }
}

struct MirrorSession {
    room: Arc<Room>,
    /// `tag-user`: text messages are prefixed with `<user>: `.
    tag: Option<String>,
}

impl Session for MirrorSession {
    fn on_message(&mut self, _conn: &Arc<ConnHandle>, msg: Incoming) {
        let frame = match (&msg, &self.tag) {
            (Incoming::Text(b), Some(user)) => {
                let mut t = Vec::with_capacity(user.len() + 2 + b.len());
                t.extend_from_slice(user.as_bytes());
                t.extend_from_slice(b": ");
                t.extend_from_slice(b);
                crate::frame::frame(crate::OpCode::Text, &t)
            }
            (Incoming::Text(b), None) => crate::frame::frame(crate::OpCode::Text, b),
            (Incoming::Binary(b), _) => crate::frame::frame(crate::OpCode::Binary, b),
        };
        self.room.broadcast_frame(&frame);
    }

    fn on_close(&mut self, conn: &Arc<ConnHandle>) {
        self.room.leave(conn);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_from_query() {
        assert_eq!(super::instance(None), "");
        assert_eq!(super::instance(Some("mirror=a%20b&x=1")), "a b");
        assert_eq!(super::instance(Some("x=1&mirror=z")), "z");
    }
}
