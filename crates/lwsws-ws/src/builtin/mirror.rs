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
            rooms: Arc::new(ctx.broadcast.rooms(ctx.vhost, self.name())),
            tag_user,
        })
    }
}

struct MirrorVhost {
    /// The vhost's instances; shared with every session, which leaves its
    /// room through it.
    rooms: Arc<Rooms>,
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
        let room = self.rooms.join(&name, conn);
        Some(Box::new(MirrorSession {
            rooms: self.rooms.clone(),
            instance: name,
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
    rooms: Arc<Rooms>,
    instance: String,
    room: Arc<Room>,
    /// `tag-user`: text messages are prefixed with `<user>: `.
    tag: Option<String>,
}

impl Session for MirrorSession {
    fn on_message(&mut self, _conn: &Arc<ConnHandle>, msg: Incoming) {
        match (&msg, &self.tag) {
            (Incoming::Text(b), Some(user)) => {
                let mut t = Vec::with_capacity(user.len() + 2 + b.len());
                t.extend_from_slice(user.as_bytes());
                t.extend_from_slice(b": ");
                t.extend_from_slice(b);
                self.room.send(crate::OpCode::Text, &t);
            }
            (Incoming::Text(b), None) => self.room.send(crate::OpCode::Text, b),
            (Incoming::Binary(b), _) => self.room.send(crate::OpCode::Binary, b),
        }
    }

    fn on_close(&mut self, conn: &Arc<ConnHandle>) {
        self.rooms.leave(&self.instance, conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost() -> MirrorVhost {
        MirrorVhost {
            rooms: Arc::new(crate::room::Hub::local().rooms("v", "lws-mirror-protocol")),
            tag_user: false,
        }
    }

    fn connect(v: &MirrorVhost, query: &str) -> (Arc<ConnHandle>, Box<dyn Session>) {
        let conn = ConnHandle::new(None);
        let info = ConnectInfo {
            query: Some(query.to_string()),
            ..ConnectInfo::default()
        };
        let session = v.connect(&conn, &info).unwrap();
        (conn, session)
    }

    #[test]
    fn rooms_are_forgotten_when_their_last_member_leaves() {
        let v = vhost();
        let mut open: Vec<_> = (0..100)
            .map(|i| connect(&v, &format!("mirror=room{i}")))
            .collect();
        let (a, mut sa) = connect(&v, "mirror=shared");
        let (b, mut sb) = connect(&v, "mirror=shared");
        assert_eq!(v.rooms.hub().len(), 101);
        for (conn, session) in &mut open {
            session.on_close(conn);
        }
        assert_eq!(v.rooms.hub().len(), 1);
        sa.on_close(&a);
        assert_eq!(v.rooms.hub().len(), 1, "b is still in it");
        // Someone joining a room whose last member is leaving gets the
        // members who come after, not a forgotten room.
        sb.on_close(&b);
        assert!(v.rooms.hub().is_empty());
        let (_c, _sc) = connect(&v, "mirror=shared");
        let (_d, _sd) = connect(&v, "mirror=shared");
        let e = ConnHandle::new(None);
        assert_eq!(v.rooms.join("shared", &e).len(), 3, "c, d and e together");
        assert_eq!(v.rooms.hub().len(), 1);
    }

    #[test]
    fn instance_from_query() {
        assert_eq!(super::instance(None), "");
        assert_eq!(super::instance(Some("mirror=a%20b&x=1")), "a b");
        assert_eq!(super::instance(Some("x=1&mirror=z")), "z");
    }
}
