//! Broadcast rooms: the connections of one (vhost, protocol, instance).
//! A message is encoded into one frame and its bytes shared by every member
//! (SPEC §9), queued in order on each member's outbox.

use crate::conn::ConnHandle;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// One room.
#[derive(Default)]
pub struct Room {
    members: Mutex<Vec<Weak<ConnHandle>>>,
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

    /// Queues one already-encoded frame on every member, in order.
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
}

/// Rooms by instance name, created on first use and forgotten when the
/// last member leaves, so that names clients make up do not pile up.
///
/// Joining and leaving hold the map's lock while they change a room's
/// members: otherwise a connection could look a room up, lose it to a
/// `leave` that found it empty and forgot it, and join it afterwards, alone
/// in a room that the next connection of that name would no longer find.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    /// Puts `conn` in the room `instance` (created if needed) and returns it.
    pub fn join(&self, instance: &str, conn: &Arc<ConnHandle>) -> Arc<Room> {
        let room = match self.rooms.lock() {
            Ok(mut r) => {
                let room = r.entry(instance.to_string()).or_default().clone();
                room.join(conn);
                return room;
            }
            Err(_) => Arc::new(Room::default()),
        };
        room.join(conn);
        room
    }

    /// Takes `conn` out of the room `instance`, and forgets the room if
    /// nobody is left in it.
    pub fn leave(&self, instance: &str, conn: &Arc<ConnHandle>) {
        if let Ok(mut r) = self.rooms.lock()
            && let Some(room) = r.get(instance)
        {
            room.leave(conn);
            if room.is_empty() {
                r.remove(instance);
            }
        }
    }

    /// The room `instance`, if it has members.
    pub fn get(&self, instance: &str) -> Option<Arc<Room>> {
        self.rooms.lock().ok()?.get(instance).cloned()
    }

    /// How many rooms have members.
    pub fn len(&self) -> usize {
        self.rooms.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
