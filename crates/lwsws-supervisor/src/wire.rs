//! The private channel between the supervisor and one worker: a
//! `SOCK_SEQPACKET` socketpair carrying JSON messages, with descriptors
//! (reopened log files) passed alongside as `SCM_RIGHTS`.
//!
//! A message larger than one datagram is sent as several chunks; the first
//! byte of each chunk says whether more follow. Both sides use the same
//! functions; the worker calls them when its event loop says the socket is
//! readable, the supervisor from its `poll` loop.

use lwsws_config::Listen;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The descriptor number of the control socket in a worker.
pub const CONTROL_FD: RawFd = 3;

/// Bytes of payload per datagram.
const CHUNK: usize = 32 * 1024;

/// Descriptors accepted with one datagram.
const MAX_FDS: usize = 64;

/// The first message to a worker: everything it needs to serve.
#[derive(Debug, Serialize, Deserialize)]
pub struct Start<C> {
    /// Counts up from 1 with every worker the supervisor starts.
    pub generation: u64,
    /// The supervisor's pid; the worker exits if its parent is another.
    pub supervisor: u32,
    /// The validated configuration (the worker never reads config files).
    pub config: C,
    /// Inherited listening sockets.
    pub listeners: Vec<InheritedListener>,
    /// Inherited access log files.
    pub logs: Vec<InheritedLog>,
    /// Whom to become before serving; `None` when the supervisor is not root.
    pub credentials: Option<Credentials>,
    /// Per vhost: certificate, key and client CA, read by the supervisor
    /// (keys may be root-only; the worker never opens them).
    pub tls: Vec<Option<lwsws_tls::Material>>,
    /// Reloads the supervisor has done so far (for metrics).
    #[serde(default)]
    pub reloads: u64,
}

/// A listening socket at descriptor `fd`, for the listener `listen`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InheritedListener {
    pub fd: RawFd,
    pub listen: Listen,
    pub kind: SocketKind,
}

/// Whether an inherited listening socket is TCP or Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketKind {
    Tcp,
    Unix,
}

/// An access log opened by the supervisor, at descriptor `fd`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InheritedLog {
    pub fd: RawFd,
    pub path: PathBuf,
}

/// The unprivileged identity of workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// For logs: `lwsws:lwsws`.
    pub name: String,
    /// `None`: only the group is configured; the uid stays.
    pub uid: Option<u32>,
    pub gid: u32,
    /// Supplementary groups (the user's, from the group database).
    pub groups: Vec<u32>,
}

/// What the supervisor tells a running worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// A newer generation serves: stop accepting and drain (SPEC §4).
    Drain,
    /// SIGTERM: close WebSockets with 1001, finish requests within `grace_ms`.
    Stop { grace_ms: u64 },
    /// Too many generations: close WebSockets with 1001 and exit now.
    Close,
    /// Second stop signal: kill CGI programs and exit at once.
    Abort,
    /// SIGUSR1: the access logs at these paths were reopened; the new
    /// descriptors come with the message, in the same order.
    ReopenLogs { paths: Vec<PathBuf> },
    /// ACME (SPEC §5.1): the challenge responses to serve from now on and
    /// every ACME vhost's status, both as the ACME process describes them
    /// (the supervisor passes them on without looking inside).
    Acme {
        challenges: serde_json::Value,
        status: serde_json::Value,
    },
}

/// What the supervisor tells the ACME process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToAcme<C> {
    /// The configuration to manage certificates for (at start and after
    /// every reload).
    Config(C),
    /// The last `Challenges` reached every worker.
    Deployed,
}

/// What the ACME process tells the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromAcme {
    /// The full set of challenge responses workers must serve now.
    Challenges(serde_json::Value),
    /// A vhost's new certificate is in `acme-dir`: reload to serve it.
    Issued { vhost: String },
    /// Every ACME vhost's status, for `lws-server-status`.
    Status(serde_json::Value),
}

/// What a worker tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// Serving: privileges dropped, listeners accepting.
    Ready { version: String, binary: String },
    /// Open connections, for systemd's `STATUS=`.
    Status { http: u64, websocket: u64 },
}

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the other side closed the channel")]
    Closed,
    #[error("control channel: {0}")]
    Io(#[from] Errno),
    #[error("control message is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("control message longer than {0} bytes")]
    TooLong(usize),
    #[error("control message descriptors were truncated")]
    Truncated,
}

/// Sends `msg` with `fds` attached to its first chunk.
pub fn send<T: Serialize>(fd: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> Result<(), WireError> {
    let json = serde_json::to_vec(msg)?;
    let mut chunks = json.chunks(CHUNK).peekable();
    let mut first = true;
    // An empty body still needs one datagram.
    let empty: &[u8] = &[];
    if chunks.peek().is_none() {
        return send_chunk(fd, empty, true, fds);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        send_chunk(fd, c, last, if first { fds } else { &[] })?;
        first = false;
    }
    Ok(())
}

fn send_chunk(fd: BorrowedFd<'_>, data: &[u8], last: bool, fds: &[RawFd]) -> Result<(), WireError> {
    let flag = [u8::from(last)];
    let iov = [IoSlice::new(&flag), IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(WireError::Closed),
            Err(e) => return Err(WireError::Io(e)),
        }
    }
}

/// Reassembles chunked messages; one per channel and direction.
#[derive(Debug)]
pub struct Receiver {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    max: usize,
}

impl Receiver {
    /// A receiver refusing messages longer than `max` bytes (the supervisor
    /// keeps this small: a worker is not trusted).
    pub fn new(max: usize) -> Receiver {
        Receiver {
            buf: Vec::new(),
            fds: Vec::new(),
            max,
        }
    }

    /// Reads until one whole message is in. `Ok(None)`: the socket is
    /// non-blocking and has nothing more now.
    pub fn recv<T: serde::de::DeserializeOwned>(
        &mut self,
        fd: BorrowedFd<'_>,
    ) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
        loop {
            let mut data = vec![0u8; CHUNK + 1];
            let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
            let (len, last, received) = {
                let mut iov = [IoSliceMut::new(&mut data)];
                let msg = match recvmsg::<()>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Ok(m) => m,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => return Ok(None),
                    Err(Errno::ECONNRESET) => return Err(WireError::Closed),
                    Err(e) => return Err(WireError::Io(e)),
                };
                let mut received = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        received.extend(list);
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC);
                let len = msg.bytes;
                // Own the descriptors before anything can return early.
                let owned = adopt(received);
                if truncated {
                    return Err(WireError::Truncated);
                }
                if len == 0 {
                    return Err(WireError::Closed);
                }
                (len, data[0] == 1, owned)
            };
            self.fds.extend(received);
            if self.buf.len() + len - 1 > self.max {
                self.buf.clear();
                self.fds.clear();
                return Err(WireError::TooLong(self.max));
            }
            self.buf.extend_from_slice(&data[1..len]);
            if last {
                let body = std::mem::take(&mut self.buf);
                let fds = std::mem::take(&mut self.fds);
                return Ok(Some((serde_json::from_slice(&body)?, fds)));
            }
        }
    }
}

/// Takes ownership of descriptors the kernel just installed for us.
#[allow(unsafe_code)]
fn adopt(fds: Vec<RawFd>) -> Vec<OwnedFd> {
    fds.into_iter()
        // SAFETY: SCM_RIGHTS installed these descriptors in this process for
        // this call alone; nothing else refers to them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Takes ownership of a descriptor inherited across `exec` as described by
/// the `Start` message, and makes it close-on-exec so CGI programs do not
/// inherit it.
#[allow(unsafe_code)]
pub fn inherited(fd: RawFd) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    // SAFETY: the supervisor put this descriptor here for us (the Start
    // message names it once); checking F_GETFD first rejects a number that
    // is not open, and nothing else in this process refers to it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD)?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: as above; from here on the OwnedFd is the only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every open descriptor from 3 up, except `keep`, close-on-exec:
/// whatever the supervisor was started with (a shell's or a launcher's
/// descriptors) must reach neither workers nor CGI programs (SPEC §4).
#[allow(unsafe_code)]
pub fn close_on_exec_all(keep: &[RawFd]) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        tracing::warn!("cannot list /proc/self/fd; inherited descriptors stay as they are");
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd > 2 && !keep.contains(&fd))
        .collect();
    for fd in fds {
        // SAFETY: only flags are changed; a number that closed since the
        // listing (the directory's own descriptor) makes fcntl fail with
        // EBADF, which is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap_or_else(|e| panic!("socketpair: {e}"))
    }

    #[test]
    fn large_message_arrives_whole_in_chunks() {
        let (a, b) = pair();
        let big: Vec<String> = (0..20_000).map(|i| format!("item {i}")).collect();
        let sender = std::thread::spawn({
            let big = big.clone();
            move || send(a.as_fd(), &big, &[]).map_err(|e| e.to_string())
        });
        let mut rx = Receiver::new(16 << 20);
        let got: Option<(Vec<String>, _)> =
            rx.recv(b.as_fd()).map_err(|e| e.to_string()).ok().flatten();
        assert_eq!(sender.join().ok(), Some(Ok(())));
        let (got, fds) = got.unwrap_or_else(|| panic!("no message"));
        assert_eq!(got, big);
        assert!(fds.is_empty());
    }

    #[test]
    fn descriptors_travel_with_the_message() {
        let (a, b) = pair();
        let file = tempfile_in_tmp();
        let msg = ToWorker::ReopenLogs {
            paths: vec![PathBuf::from("/x")],
        };
        send(a.as_fd(), &msg, &[file.as_raw_fd()]).unwrap_or_else(|e| panic!("{e}"));
        let mut rx = Receiver::new(1 << 16);
        let (got, fds): (ToWorker, Vec<OwnedFd>) = rx
            .recv(b.as_fd())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("nothing"));
        assert_eq!(got, msg);
        assert_eq!(fds.len(), 1);
        let st_ours = nix::sys::stat::fstat(&file).unwrap_or_else(|e| panic!("{e}"));
        let st_got = nix::sys::stat::fstat(&fds[0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st_ours.st_ino, st_got.st_ino);
        assert_ne!(fds[0].as_raw_fd(), file.as_raw_fd());
    }

    #[test]
    fn too_long_is_refused_and_closed_is_reported() {
        let (a, b) = pair();
        send(a.as_fd(), &"x".repeat(100), &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut rx = Receiver::new(10);
        assert!(matches!(
            rx.recv::<String>(b.as_fd()),
            Err(WireError::TooLong(10))
        ));
        drop(a);
        assert!(matches!(
            rx.recv::<String>(b.as_fd()),
            Err(WireError::Closed)
        ));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("lwsws-wire-{}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_file(&p);
        f
    }
}
