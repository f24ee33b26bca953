//! [`free_port`]: TCP ports on 127.0.0.1 for servers under test. The kernel
//! picks a free ephemeral port; a process-wide set makes sure that parallel
//! tests in one test binary are never handed the same port twice, even after
//! the first test's server has closed it again.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Every port handed out by this process so far.
static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// Returns a TCP port that was free on 127.0.0.1 a moment ago and that this
/// process has not returned before.
///
/// The port is free only until someone binds it: start the server soon after.
pub fn free_port() -> u16 {
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
        let port = listener.local_addr().expect("local_addr of probe").port();
        drop(listener);
        // A test that panicked while holding the lock leaves the set intact.
        let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if set.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_repeats_and_is_bindable() {
        let ports: Vec<u16> = (0..64).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|&p| p != 0));
        let last = *ports.last().unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, last)).unwrap();
    }
}
