//! Broadcast rooms (SPEC §6.6): the connections of one (vhost name,
//! protocol, instance), here and — through a [`Backend`] — in every other
//! lwsws instance and generation sharing `ws-broadcast`.
//!
//! A message is encoded into one frame and its bytes shared by every local
//! member (SPEC §9), queued in order on each member's outbox; the backend
//! gets the payload once to pass on. Local members are served first and
//! never wait for the backend, so a room keeps working when Redis does not.
//!
//! The [`Hub`] owns every room of a worker, keyed by channel name, so two
//! vhost entries of the same name (one per port) share their rooms, as they
//! would across instances. It tells its backend when a room gets its first
//! member and loses its last one (subscribe / unsubscribe), and takes the
//! messages the backend brings in ([`Hub::deliver`]).

use crate::OpCode;
use crate::conn::ConnHandle;
use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// The state a backend reports in `lws-server-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// In-process rooms only (no `ws-broadcast`).
    Local,
    /// Linked to the shared broker.
    Connected,
    /// The link is down and being re-established; rooms are local meanwhile.
    Reconnecting,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Local => "local",
            BackendState::Connected => "connected",
            BackendState::Reconnecting => "reconnecting",
        }
    }
}

/// Where rooms' messages go beyond this worker. Every method is called from
/// connection tasks (some with the hub's lock held) and must return at once:
/// nothing here may wait on the network.
pub trait Backend: Send + Sync {
    /// The rooms with local members changed ([`Hub::channels`] has the
    /// current set): subscribe to and unsubscribe from channels to match.
    fn rooms_changed(&self) {}
    /// A message sent in the room `channel` here, already delivered to the
    /// local members, for the other instances.
    fn publish(&self, _channel: &str, _kind: OpCode, _payload: &[u8]) {}
    fn state(&self) -> BackendState {
        BackendState::Local
    }
}

/// The in-process backend: rooms live in this worker only.
pub struct Local;

impl Backend for Local {}

/// Characters escaped in the parts of a channel name, so that
/// `vhost/protocol/instance` splits one way only.
const CHANNEL_PART: &AsciiSet = &CONTROLS.add(b'%').add(b'/');

/// The channel name of a room: `PREFIX` `vhost/protocol/instance`, each part
/// percent-encoded (`%` and `/` and control characters), the vhost name in
/// lower case since names match case-insensitively.
pub fn channel_name(prefix: &str, vhost: &str, protocol: &str, instance: &str) -> String {
    format!(
        "{prefix}{}/{}/{}",
        utf8_percent_encode(&vhost.to_ascii_lowercase(), CHANNEL_PART),
        utf8_percent_encode(protocol, CHANNEL_PART),
        utf8_percent_encode(instance, CHANNEL_PART)
    )
}

/// One room.
#[derive(Default)]
pub struct Room {
    members: Mutex<Vec<Weak<ConnHandle>>>,
    /// Its channel and the backend to publish on, for a broadcast room;
    /// `None` for a room private to one protocol (status updates).
    link: Option<(Arc<str>, Arc<dyn Backend>)>,
}

impl Room {
    pub fn join(&self, conn: &Arc<ConnHandle>) {
        if let Ok(mut m) = self.members.lock() {
            m.push(Arc::downgrade(conn));
        }
    }

    pub fn leave(&self, conn: &Arc<ConnHandle>) {
        if let Ok(mut m) = self.members.lock() {
            m.retain(|w| w.upgrade().is_some_and(|c| !Arc::ptr_eq(&c, conn)));
        }
    }

    pub fn len(&self) -> usize {
        self.members.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues one already-encoded frame on every local member, in order.
    pub fn broadcast_frame(&self, frame: &Bytes) {
        let Ok(members) = self.members.lock() else {
            return;
        };
        for m in members.iter() {
            if let Some(c) = m.upgrade() {
                c.send_frame(frame.clone());
            }
        }
    }

    /// Sends a message to every member everywhere: the local ones now, the
    /// others through the backend.
    pub fn send(&self, kind: OpCode, payload: &[u8]) {
        self.broadcast_frame(&crate::frame::frame(kind, payload));
        if let Some((channel, backend)) = &self.link {
            backend.publish(channel, kind, payload);
        }
    }
}

/// Every broadcast room of a worker, created on first use and forgotten when
/// the last local member leaves, so that names clients make up do not pile
/// up (and the backend unsubscribes).
///
/// Joining and leaving hold the map's lock while they change a room's
/// members: otherwise a connection could look a room up, lose it to a
/// `leave` that found it empty and forgot it, and join it afterwards, alone
/// in a room that the next connection of that name would no longer find.
pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    backend: Arc<dyn Backend>,
    /// `ws-broadcast-prefix`.
    prefix: String,
}

impl Hub {
    /// A hub whose rooms live in this worker only.
    pub fn local() -> Arc<Hub> {
        Hub::new("", |_| Arc::new(Local))
    }

    /// A hub with the backend `make` builds; the backend gets a weak
    /// reference back, to [`deliver`](Hub::deliver) what it receives.
    pub fn new(prefix: &str, make: impl FnOnce(Weak<Hub>) -> Arc<dyn Backend>) -> Arc<Hub> {
        Arc::new_cyclic(|weak| Hub {
            rooms: Mutex::default(),
            backend: make(weak.clone()),
            prefix: prefix.to_string(),
        })
    }

    /// The rooms of one vhost name and protocol.
    pub fn rooms(self: &Arc<Self>, vhost: &str, protocol: &str) -> Rooms {
        Rooms {
            hub: self.clone(),
            vhost: vhost.to_string(),
            protocol: protocol.to_string(),
        }
    }

    pub fn state(&self) -> BackendState {
        self.backend.state()
    }

    /// How many rooms have local members.
    pub fn len(&self) -> usize {
        self.rooms.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The channels of the rooms with local members.
    pub fn channels(&self) -> Vec<Arc<str>> {
        self.rooms
            .lock()
            .map_or_else(|_| Vec::new(), |r| r.keys().cloned().collect())
    }

    /// A message from another instance: to every local member of its room.
    pub fn deliver(&self, channel: &str, kind: OpCode, payload: &[u8]) {
        let room = self.rooms.lock().ok().and_then(|r| r.get(channel).cloned());
        if let Some(room) = room {
            room.broadcast_frame(&crate::frame::frame(kind, payload));
        }
    }

    fn join(&self, channel: String, conn: &Arc<ConnHandle>) -> Arc<Room> {
        let Ok(mut rooms) = self.rooms.lock() else {
            // A poisoned map: a room of one, so the connection still works.
            let room = Arc::new(Room::default());
            room.join(conn);
            return room;
        };
        let channel: Arc<str> = channel.into();
        let mut created = false;
        let room = rooms
            .entry(channel.clone())
            .or_insert_with(|| {
                created = true;
                Arc::new(Room {
                    members: Mutex::default(),
                    link: Some((channel, self.backend.clone())),
                })
            })
            .clone();
        room.join(conn);
        if created {
            self.backend.rooms_changed();
        }
        room
    }

    fn leave(&self, channel: &str, conn: &Arc<ConnHandle>) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(room) = rooms.get(channel)
        {
            room.leave(conn);
            if room.is_empty() {
                rooms.remove(channel);
                self.backend.rooms_changed();
            }
        }
    }

    fn send(&self, channel: &str, kind: OpCode, payload: &[u8]) {
        let room = self.rooms.lock().ok().and_then(|r| r.get(channel).cloned());
        match room {
            Some(room) => room.send(kind, payload),
            // No local member: the other instances may still have some.
            None => self.backend.publish(channel, kind, payload),
        }
    }
}

/// The rooms of one vhost name and protocol, by instance name.
pub struct Rooms {
    hub: Arc<Hub>,
    vhost: String,
    protocol: String,
}

impl Rooms {
    fn channel(&self, instance: &str) -> String {
        channel_name(&self.hub.prefix, &self.vhost, &self.protocol, instance)
    }

    /// Puts `conn` in the room `instance` (created if needed) and returns it.
    pub fn join(&self, instance: &str, conn: &Arc<ConnHandle>) -> Arc<Room> {
        self.hub.join(self.channel(instance), conn)
    }

    /// Takes `conn` out of the room `instance`, and forgets the room if
    /// nobody is left in it.
    pub fn leave(&self, instance: &str, conn: &Arc<ConnHandle>) {
        self.hub.leave(&self.channel(instance), conn);
    }

    /// Sends a message to the room `instance`, whether or not this worker
    /// has members in it.
    pub fn send(&self, instance: &str, kind: OpCode, payload: &[u8]) {
        self.hub.send(&self.channel(instance), kind, payload);
    }

    /// The room `instance`, if it has local members.
    pub fn get(&self, instance: &str) -> Option<Arc<Room>> {
        let channel = self.channel(instance);
        self.hub.rooms.lock().ok()?.get(channel.as_str()).cloned()
    }

    /// The hub all rooms live in.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn channel_names_split_one_way() {
        assert_eq!(
            channel_name("lwsws:", "Example.COM", "lws-mirror-protocol", "a/b%c"),
            "lwsws:example.com/lws-mirror-protocol/a%2Fb%25c"
        );
        assert_ne!(
            channel_name("p:", "a", "b/c", ""),
            channel_name("p:", "a", "b", "c")
        );
    }

    /// Records what the hub tells its backend.
    #[derive(Default)]
    struct Recorder {
        changes: AtomicUsize,
        published: Mutex<Vec<(String, OpCode, Vec<u8>)>>,
    }

    impl Backend for Recorder {
        fn rooms_changed(&self) {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        fn publish(&self, channel: &str, kind: OpCode, payload: &[u8]) {
            if let Ok(mut p) = self.published.lock() {
                p.push((channel.to_string(), kind, payload.to_vec()));
            }
        }
    }

    #[test]
    fn the_backend_hears_of_first_and_last_members_and_every_message() {
        let rec = Arc::new(Recorder::default());
        let r2 = rec.clone();
        let hub = Hub::new("t:", move |_| r2);
        let rooms = hub.rooms("v", "p");
        let (a, b) = (ConnHandle::new(None), ConnHandle::new(None));
        rooms.join("x", &a);
        rooms.join("x", &b);
        assert_eq!(rec.changes.load(Ordering::SeqCst), 1);
        assert_eq!(hub.channels(), vec![Arc::<str>::from("t:v/p/x")]);
        rooms.send("x", OpCode::Text, b"hi");
        // A room with no member here still publishes, for the others.
        rooms.send("y", OpCode::Binary, b"\x00");
        rooms.leave("x", &a);
        assert_eq!(rec.changes.load(Ordering::SeqCst), 1);
        rooms.leave("x", &b);
        assert_eq!(rec.changes.load(Ordering::SeqCst), 2);
        assert!(hub.is_empty());
        let p = rec.published.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(
            p,
            vec![
                ("t:v/p/x".to_string(), OpCode::Text, b"hi".to_vec()),
                ("t:v/p/y".to_string(), OpCode::Binary, b"\x00".to_vec()),
            ]
        );
    }

    #[test]
    fn vhost_entries_of_one_name_share_rooms() {
        let hub = Hub::local();
        let (a, b) = (ConnHandle::new(None), ConnHandle::new(None));
        hub.rooms("Site", "p").join("x", &a);
        let room = hub.rooms("site", "p").join("x", &b);
        assert_eq!(room.len(), 2);
        assert_eq!(hub.len(), 1);
    }
}
