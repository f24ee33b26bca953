//! [`group_members`]: the live processes of a process group, read from
//! `/proc`. Tests use it to check that a server's workers and helpers go away
//! with it. Zombies are not counted: an orphan that was killed may wait a while
//! for a reaper (in a container PID 1 may never reap it), but it runs no code
//! and holds no socket.

use std::fs;

/// The pids of the processes whose process group is `pgid` and that have not
/// exited (zombies excluded), in no particular order.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            // The process may exit between read_dir and this read: skip it.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| live_pgrp(&stat))
                == Some(pgid)
        })
        .collect()
}

/// The process group of a `/proc/PID/stat` line, or `None` for a zombie, a
/// dead process or an unreadable line.
///
/// The line is `pid (comm) state ppid pgrp …`; `comm` may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn live_pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let _ppid = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        assert_eq!(live_pgrp("42 (lwsws) S 1 42 42 0 -1 4194560"), Some(42));
        assert_eq!(live_pgrp("43 (a) b) (c) R 42 42 42 0"), Some(42));
        assert_eq!(live_pgrp("44 (sleep) Z 1 42 42 0"), None);
        assert_eq!(live_pgrp("garbage"), None);
    }

    #[test]
    fn finds_this_process_in_its_group() {
        let me = std::process::id();
        let stat = fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let pgrp = live_pgrp(&stat).unwrap();
        assert!(group_members(pgrp).contains(&me));
    }
}
