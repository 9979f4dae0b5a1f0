//! Subprocesses of shell and dbt tasks: each in its own process group, so that a timeout or a
//! cancel stops everything it started (SIGTERM to the group, SIGKILL after a grace period).
//!
//! A task owns its process group: when its main process exits, whatever it left running in
//! the group is stopped too, so no stray process outlives its task or holds its output open.

use super::task_log::TaskLog;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};

/// A command line to run as a task attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables added to fhirflow's own environment.
    pub env: BTreeMap<String, String>,
}

/// How far a cancel has gone: the first Ctrl-C stops tasks gracefully, a second one at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CancelLevel {
    /// Not cancelled.
    None,
    /// SIGTERM, then SIGKILL after the grace period.
    Graceful,
    /// SIGKILL now.
    Immediate,
}

/// How a subprocess ended.
#[derive(Debug)]
pub enum ProcessEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal it did not send itself killed it.
    Signalled(i32),
    /// It ran past its timeout and was stopped.
    TimedOut(Duration),
    /// The run was cancelled and it was stopped.
    Cancelled,
    /// It could not be started.
    SpawnFailed(std::io::Error),
}

/// Sends `signal` to process group `pgid`; false when the group no longer exists.
fn signal_group(pgid: i32, signal: i32) -> bool {
    // SAFETY: killpg has no memory effects; a group that is gone gives ESRCH.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

/// Kills the group when dropped, so that even a panic or a dropped future leaves no process
/// behind.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// The longest line kept whole; a longer one (say, binary output) is cut into pieces this long,
/// so a task cannot make fhirflow hold its whole output in memory.
const MAX_LINE: u64 = 64 * 1024;

/// Reads lines (bytes up to `\n`, decoded leniently) from `stream` until EOF.
async fn forward_lines(stream: impl AsyncRead + Unpin, lines: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buffer.pop();
                }
                if lines.send(String::from_utf8_lossy(&buffer).into_owned()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `command`, writing its output to `log`, until it exits, `timeout` passes or the run is
/// cancelled. `on_spawn` gets the process id once it started.
pub async fn run(
    command: &CommandLine,
    timeout: Option<Duration>,
    grace: Duration,
    log: &mut TaskLog,
    mut cancel: watch::Receiver<CancelLevel>,
    on_spawn: impl FnOnce(u32),
) -> ProcessEnd {
    let mut child = match tokio::process::Command::new(&command.program)
        .args(&command.args)
        .current_dir(&command.cwd)
        .envs(&command.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: signals from the terminal reach fhirflow only, and one killpg
        // reaches everything the task started.
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return ProcessEnd::SpawnFailed(e),
    };
    let pid = child.id().unwrap_or(0);
    let pgid = i32::try_from(pid).unwrap_or(0);
    let mut guard = GroupGuard((pgid > 0).then_some(pgid));
    on_spawn(pid);
    let (sender, mut lines) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, sender.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, sender.clone()));
    }
    drop(sender);

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let sleep_until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);
    let mut lines_open = true;
    let mut cancel_open = true;
    let end = loop {
        tokio::select! {
            status = child.wait() => {
                break match status {
                    Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                        (Some(code), _) => ProcessEnd::Exited(code),
                        (None, Some(signal)) => ProcessEnd::Signalled(signal),
                        (None, None) => ProcessEnd::Exited(-1),
                    },
                    Err(e) => ProcessEnd::SpawnFailed(e),
                };
            }
            line = lines.recv(), if lines_open => match line {
                Some(line) => log.line(&line),
                None => lines_open = false,
            },
            () = &mut sleep_until_deadline => {
                log.note(&format!("timed out after {}; stopping its process group", show(timeout.unwrap_or_default())));
                stop_group(pgid, grace, &mut child, &mut lines, log, &mut cancel).await;
                break ProcessEnd::TimedOut(timeout.unwrap_or_default());
            }
            changed = cancel.changed(), if cancel_open => {
                if changed.is_err() {
                    // Nobody can cancel any more: wait for the rest.
                    cancel_open = false;
                    continue;
                }
                if *cancel.borrow() == CancelLevel::None {
                    continue;
                }
                log.note("cancelled; stopping its process group");
                stop_group(pgid, grace, &mut child, &mut lines, log, &mut cancel).await;
                break ProcessEnd::Cancelled;
            }
        }
    };
    // The main process is gone. Whatever it left in the group would outlive the task and keep
    // its output open: stop it, then read what is left.
    if matches!(end, ProcessEnd::Exited(_) | ProcessEnd::Signalled(_)) && signal_group(pgid, 0) {
        signal_group(pgid, libc::SIGTERM);
        drain(&mut lines, log, grace).await;
        signal_group(pgid, libc::SIGKILL);
    }
    drain(&mut lines, log, Duration::from_secs(1)).await;
    guard.0 = None;
    end
}

/// SIGTERM to the group, SIGKILL when the grace period ends or the cancel turns immediate;
/// output is still logged meanwhile.
async fn stop_group(
    pgid: i32,
    grace: Duration,
    child: &mut tokio::process::Child,
    lines: &mut mpsc::UnboundedReceiver<String>,
    log: &mut TaskLog,
    cancel: &mut watch::Receiver<CancelLevel>,
) {
    if *cancel.borrow() == CancelLevel::Immediate {
        signal_group(pgid, libc::SIGKILL);
    } else {
        signal_group(pgid, libc::SIGTERM);
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        let mut lines_open = true;
        let mut cancel_open = true;
        loop {
            tokio::select! {
                _ = child.wait() => {
                    // The main process is gone; the rest of the group gets what is left of the
                    // grace period to finish, judged by its output closing.
                    tokio::select! {
                        () = drain(lines, log, grace) => {}
                        () = &mut deadline => {}
                    }
                    break;
                }
                line = lines.recv(), if lines_open => match line {
                    Some(line) => log.line(&line),
                    None => lines_open = false,
                },
                () = &mut deadline => {
                    log.note(&format!("still running after {}; killing it", show(grace)));
                    break;
                }
                changed = cancel.changed(), if cancel_open => match changed {
                    Err(_) => cancel_open = false,
                    Ok(()) if *cancel.borrow() == CancelLevel::Immediate => break,
                    Ok(()) => {}
                },
            }
        }
        signal_group(pgid, libc::SIGKILL);
    }
    let _ = child.wait().await;
}

/// Logs output until every writer has closed it or `limit` passes.
async fn drain(lines: &mut mpsc::UnboundedReceiver<String>, log: &mut TaskLog, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        while let Some(line) = lines.recv().await {
            log.line(&line);
        }
    })
    .await;
}

/// A duration as people read it: `1.5s`, `2m`, `250ms`.
pub fn show(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        let secs = duration.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 { format!("{h}h{m:02}m{s:02}s") } else { format!("{m}m{s:02}s") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_bytes_decoded_leniently() {
        let mut input = vec![b'x'; MAX_LINE as usize + 10];
        input.extend_from_slice(b"\nok\r\n\xff\n");
        let (sender, mut receiver) = mpsc::unbounded_channel();
        forward_lines(&input[..], sender).await;
        let mut lines = Vec::new();
        while let Ok(line) = receiver.try_recv() {
            lines.push(line);
        }
        let lengths: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(lengths[..2], [MAX_LINE as usize, 10]);
        assert_eq!(lines[2..], ["ok", "\u{fffd}"]);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(show(Duration::from_millis(250)), "250ms");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_secs(125)), "2m05s");
        assert_eq!(show(Duration::from_secs(3725)), "1h02m05s");
    }
}
