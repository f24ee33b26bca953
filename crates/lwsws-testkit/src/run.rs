//! [`run`]: run the binary to completion (`--check`, `--print-config`,
//! `--schema`, `token`, usage errors) and collect its exit status and output,
//! with a time limit so a hung binary fails the test instead of the CI job.
//! Long-running servers are [`crate::Lwsws`]'s job.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::{POLL_INTERVAL, RUN_TIMEOUT};

/// Runs `bin ARGS…` with `NO_COLOR=1` and stdin from `/dev/null`, and returns
/// its status, stdout and stderr. Panics if it runs longer than
/// [`RUN_TIMEOUT`] (after killing its process group).
pub fn run(bin: &Path, args: &[&str]) -> Output {
    run_with_env(bin, args, &[])
}

/// [`run`] with extra environment variables (for example `LWSWS_DATA_DIR`).
pub fn run_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout kills whatever it started too.
        .process_group(0);
    let mut child = spawn(&mut cmd);
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let describe = || format!("{} {}", bin.display(), args.join(" "));

    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(&child);
            let _ = child.wait();
            panic!(
                "`{}` still running after {RUN_TIMEOUT:?}; killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                describe(),
                String::from_utf8_lossy(&join(stdout)),
                String::from_utf8_lossy(&join(stderr)),
            );
        }
        thread::sleep(POLL_INTERVAL);
    };

    // The pipes reach end-of-file when every holder has closed them: a
    // descendant that kept them open (a daemon that forgot to close its stdio)
    // would block the readers forever.
    while !(stdout.is_finished() && stderr.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "`{}` exited with {status}, but a process it started still holds its stdout or stderr",
            describe()
        );
        thread::sleep(POLL_INTERVAL);
    }
    if status.success()
        && let Some(dir) = crate::corpus::config_dir_of(args)
    {
        crate::corpus::record(Path::new(dir));
    }
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

/// Spawns `cmd`, retrying while the executable is busy: a test that has just
/// written a script may race with a `fork` in another test thread that still
/// holds the script's write descriptor until its `exec` (ETXTBSY).
pub(crate) fn spawn(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                thread::sleep(POLL_INTERVAL);
            }
            Err(e) => panic!("spawn {:?}: {e}", cmd.get_program()),
        }
    }
}

/// Sends SIGKILL to the process group led by `child` (ignoring a group that
/// is already gone).
pub(crate) fn kill_group(child: &Child) {
    let _ = killpg(pid_of(child), Signal::SIGKILL);
}

pub(crate) fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
}

fn read_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> JoinHandle<io::Result<Vec<u8>>> {
    let mut pipe = pipe.expect("piped stdio");
    thread::spawn(move || {
        let mut buf = Vec::new();
        pipe.read_to_end(&mut buf)?;
        Ok(buf)
    })
}

fn join(reader: JoinHandle<io::Result<Vec<u8>>>) -> Vec<u8> {
    reader
        .join()
        .expect("output reader thread panicked")
        .expect("read child output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_status_and_output_with_no_color() {
        let out = run(
            Path::new("/bin/sh"),
            &["-c", "echo out; echo \"NO_COLOR=$NO_COLOR\" >&2; exit 3"],
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "out\n");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), "NO_COLOR=1\n");
    }

    #[test]
    fn passes_extra_environment() {
        let out = run_with_env(
            Path::new("/bin/sh"),
            &["-c", "printf %s \"$LWSWS_DATA_DIR\""],
            &[("LWSWS_DATA_DIR", "/x/share")],
        );
        assert!(out.status.success());
        assert_eq!(out.stdout, b"/x/share");
    }
}
