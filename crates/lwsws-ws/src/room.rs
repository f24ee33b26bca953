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

/// Rooms by instance name, created on first use and dropped when empty.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    pub fn get(&self, instance: &str) -> Arc<Room> {
        match self.rooms.lock() {
            Ok(mut r) => r.entry(instance.to_string()).or_default().clone(),
            Err(_) => Arc::new(Room::default()),
        }
    }

    /// Forgets a room nobody is in any more.
    pub fn tidy(&self, instance: &str) {
        if let Ok(mut r) = self.rooms.lock()
            && r.get(instance).is_some_and(|room| room.is_empty())
        {
            r.remove(instance);
        }
    }
}
