//! Running external programs with a deadline, sending signals, polling for a condition.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often conditions and child processes are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The `redis-server` binary: `$RATE_GUARD_REDIS_SERVER`, else `redis-server` from `PATH`.
pub(crate) fn server_bin() -> OsString {
    std::env::var_os("RATE_GUARD_REDIS_SERVER").unwrap_or_else(|| "redis-server".into())
}

/// The `redis-cli` binary: `$RATE_GUARD_REDIS_CLI`, else `redis-cli` from `PATH`.
pub(crate) fn cli_bin() -> OsString {
    std::env::var_os("RATE_GUARD_REDIS_CLI").unwrap_or_else(|| "redis-cli".into())
}

/// Runs `command` to completion, killing it after `timeout`. A non-zero exit is an error that
/// carries the program's stderr.
pub(crate) fn run(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_error(&program, &error))?;
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{program} did not finish within {timeout:?}"),
            ));
        }
        thread::sleep(POLL_INTERVAL);
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        )))
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Explains a failed spawn; a missing binary is the usual cause.
pub(crate) fn spawn_error(program: &str, error: &io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{program} not found: install Redis or point RATE_GUARD_REDIS_SERVER / RATE_GUARD_REDIS_CLI at it"),
        )
    } else {
        io::Error::new(error.kind(), format!("cannot run {program}: {error}"))
    }
}

/// Sends `signal` (a name such as `STOP`) to `pid` with `kill(1)`: the workspace forbids
/// `unsafe`, and a signal crate is not worth a dependency for two calls.
pub(crate) fn signal(pid: u32, signal: &str) -> io::Result<()> {
    run(
        Command::new("kill").args(["-s", signal, &pid.to_string()]),
        Duration::from_secs(5),
    )
    .map(drop)
}

/// Kills `child` with SIGKILL (which also ends a stopped process) and reaps it.
pub(crate) fn kill(child: &mut Child) -> io::Result<()> {
    match child.kill() {
        Ok(()) => child.wait().map(drop),
        // Already exited: only the reaping is left.
        Err(_) if child.try_wait()?.is_some() => Ok(()),
        Err(error) => Err(error),
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("<cannot read {}: {error}>", path.display()),
    }
}

/// Polls `check` until it succeeds. `check` explains why it is not satisfied yet by returning an
/// error; after `timeout` the last explanation goes into a `TimedOut` error about `what`. An error
/// made by [`give_up`] ends the wait at once.
pub(crate) fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let reason = match check() {
            Ok(()) => return Ok(()),
            Err(reason)
                if reason
                    .get_ref()
                    .is_some_and(<dyn std::error::Error + Send + Sync>::is::<GiveUp>) =>
            {
                return Err(reason);
            }
            Err(reason) => reason,
        };
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?} waiting for {what}; last state: {reason}"),
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The error a `wait_until` check returns while its condition does not hold.
pub(crate) fn not_yet(reason: impl Into<String>) -> io::Error {
    io::Error::other(reason.into())
}

/// Marks an error that no amount of waiting will fix, such as the awaited process having exited.
pub(crate) fn give_up(reason: impl Into<String>) -> io::Error {
    io::Error::other(GiveUp(reason.into()))
}

#[derive(Debug)]
struct GiveUp(String);

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GiveUp {}
