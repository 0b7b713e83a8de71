//! The `exec` action: a command run without a shell (unless configured), in its own process
//! group, killed with all its children at the timeout, its output captured up to a bound.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How long output may keep flowing after the command itself exited (from children it
/// left running in the background) before its process group is killed.
const LINGER: Duration = Duration::from_secs(2);

/// What a finished (or killed) command left.
#[derive(Debug)]
pub struct Ran {
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    pub elapsed: Duration,
}

/// Lines of each output stream shown on the alert's timeline.
pub const TIMELINE_LINES: usize = 10;
/// Bytes of each output stream shown on the alert's timeline.
pub const TIMELINE_BYTES: usize = 1024;

#[derive(Debug, Default)]
pub struct Captured {
    pub text: String,
    /// Bytes produced in all, including those not kept.
    pub total: usize,
}

impl Ran {
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.status == Some(0)
    }

    /// One line for the timeline and the action's outcome.
    pub fn summary(&self) -> String {
        let ms = self.elapsed.as_millis();
        match (self.timed_out, self.status, self.signal) {
            (true, _, _) => format!("timed out after {ms} ms; its process group was killed"),
            (false, Some(code), _) => format!("exited with status {code} after {ms} ms"),
            (false, None, Some(signal)) => format!("killed by signal {signal} after {ms} ms"),
            (false, None, None) => format!("ended without a status after {ms} ms"),
        }
    }

    /// The first lines of what the command wrote, for the alert's timeline: at most
    /// `TIMELINE_LINES` lines and `TIMELINE_BYTES` bytes of each stream, marked where cut
    /// (the whole captured output is on the attempt). `None` when it wrote nothing.
    pub fn excerpt(output: &Value) -> Option<String> {
        let mut parts = Vec::new();
        for stream in ["stdout", "stderr"] {
            let text = output[stream].as_str().unwrap_or_default().trim_end();
            if text.is_empty() {
                continue;
            }
            let total = output[format!("{stream}_bytes")]
                .as_u64()
                .unwrap_or(text.len() as u64);
            let mut kept = text
                .lines()
                .take(TIMELINE_LINES)
                .collect::<Vec<_>>()
                .join("\n");
            let cut = kept.len() > TIMELINE_BYTES
                || text.lines().count() > TIMELINE_LINES
                || total > text.len() as u64 + 1;
            kept.truncate(kept.floor_char_boundary(TIMELINE_BYTES));
            parts.push(format!(
                "{stream}:\n{kept}{}",
                if cut {
                    format!("\n[... {total} bytes in all; the attempt keeps what was captured]")
                } else {
                    String::new()
                }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    pub fn output(&self, argv: &[String]) -> Value {
        json!({
            "argv": argv,
            "exit_status": self.status,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "elapsed_ms": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "stdout": self.stdout.text,
            "stdout_bytes": self.stdout.total,
            "stderr": self.stderr.text,
            "stderr_bytes": self.stderr.total,
        })
    }
}

/// The search path a command gets unless its `env` names one: vakt's own environment (its
/// credentials, say) is never passed on.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `argv` (program first) in a cleared environment holding only `env` (and a default
/// `PATH`), waits at most `timeout`, keeps up to `keep` bytes of each stream.
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&str>,
    timeout: Duration,
    keep: usize,
) -> Result<Ran, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let started = std::time::Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_task = tokio::spawn(capture(stdout, keep));
    let err_task = tokio::spawn(capture(stderr, keep));
    let pgid = pid.and_then(|p| i32::try_from(p).ok());
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            // The leader is alive (not yet reaped), so the group id is still this group's.
            if let Some(pgid) = pgid {
                kill_group(pgid);
            }
            (child.wait().await.ok(), true)
        }
    };
    // A child it left behind may still hold the pipes open. While one does, the group
    // exists (so its id cannot have been reused): give it a moment, then end the group.
    let mut outputs = Box::pin(async { (out_task.await, err_task.await) });
    let (stdout, stderr) = match tokio::time::timeout(LINGER, &mut outputs).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pgid) = pgid {
                kill_group(pgid);
            }
            outputs.await
        }
    };
    let stdout = stdout.unwrap_or_default();
    let stderr = stderr.unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Ok(Ran {
        status: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

/// SIGKILL to every process in the group (the child is its leader).
fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; an unknown or finished group yields ESRCH.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

async fn capture<R: AsyncRead + Unpin>(stream: Option<R>, keep: usize) -> Captured {
    let Some(mut stream) = stream else {
        return Captured::default();
    };
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
    Captured {
        text: String::from_utf8_lossy(&kept).into_owned(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_excerpt_keeps_the_first_lines_of_each_stream() {
        let many: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let output = json!({"stdout": many, "stdout_bytes": many.len(), "stderr": "oops\n", "stderr_bytes": 5});
        let excerpt = Ran::excerpt(&output).expect("an excerpt");
        assert!(
            excerpt.starts_with("stdout:\nline 1\nline 2\n"),
            "{excerpt}"
        );
        assert!(excerpt.contains("line 10\n[... "), "{excerpt}");
        assert!(!excerpt.contains("line 11"), "{excerpt}");
        assert!(excerpt.ends_with("stderr:\noops"), "{excerpt}");
        let long = "x".repeat(5000);
        let excerpt = Ran::excerpt(&json!({"stdout": long, "stdout_bytes": 9000})).expect("one");
        assert!(excerpt.len() < TIMELINE_BYTES + 100, "{}", excerpt.len());
        assert!(excerpt.contains("9000 bytes in all"), "{excerpt}");
        assert_eq!(Ran::excerpt(&json!({"stdout": "", "stderr": ""})), None);
    }

    #[tokio::test]
    async fn output_is_captured_and_capped() {
        let argv = ["sh", "-c", "printf 'hello world'; echo oops >&2; exit 3"].map(String::from);
        let ran = run(&argv, &BTreeMap::new(), None, Duration::from_secs(5), 5)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ran.status, Some(3));
        assert_eq!(ran.stdout.text, "hello");
        assert_eq!(ran.stdout.total, 11);
        assert_eq!(ran.stderr.text, "oops\n");
        assert!(!ran.succeeded());
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_not_a_panic() {
        let argv = ["/nonexistent/vakt-test".to_owned()];
        let error = run(&argv, &BTreeMap::new(), None, Duration::from_secs(1), 10)
            .await
            .err();
        assert!(error.is_some_and(|e| e.contains("cannot start")));
    }
}
