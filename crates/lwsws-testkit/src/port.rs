//! [`free_port`]: TCP ports on 127.0.0.1 for servers under test.
//!
//! Ports come from outside the kernel's ephemeral range
//! (`ip_local_port_range`): a port the kernel hands out for a listener can
//! meanwhile become the source port of someone's outgoing connection (a
//! proxy test's upstream connection, a load test's ten thousand clients),
//! and the server then fails to bind it. A process-wide set makes sure that
//! parallel tests in one test binary are never handed the same port twice,
//! even after the first test's server has closed it again; a random choice
//! keeps test binaries running side by side apart.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Every port handed out by this process so far.
static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();

/// Returns a TCP port that was free on 127.0.0.1 (and `[::]`) a moment ago
/// and that this process has not returned before.
///
/// The port is free only until someone binds it: start the server soon after.
pub fn free_port() -> u16 {
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    let (lo, hi) = outside_ephemeral();
    let random = RandomState::new();
    for attempt in 0u64.. {
        let port = if hi > lo {
            lo + (random.hash_one(attempt) % u64::from(hi - lo)) as u16
        } else {
            kernel_pick()
        };
        if !bindable(port) {
            continue;
        }
        // A test that panicked while holding the lock leaves the set intact.
        let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if set.insert(port) {
            return port;
        }
    }
    unreachable!("the loop above only ends by returning")
}

/// Ports below the ephemeral range (from 10000), or above it; an empty
/// range when the ephemeral range leaves no room (then the kernel picks).
fn outside_ephemeral() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        });
    match range {
        Some((low, _)) if low > 12_000 => (10_000, low),
        Some((_, high)) if high < 63_000 => (high + 1, u16::MAX),
        Some(_) => (0, 0),
        // Linux's default range.
        None => (10_000, 32_768),
    }
}

/// A port the kernel picks (from the ephemeral range).
fn kernel_pick() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
    listener.local_addr().expect("local_addr of probe").port()
}

/// Whether nothing holds `port` on 127.0.0.1 or on `[::]` (servers under
/// test may listen on every address); no IPv6 at all does not count.
fn bindable(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable,
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
