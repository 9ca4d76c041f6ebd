//! Helpers shared by the integration tests that drive processes (scenarios.rs, failure.rs).

use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Test helpers report failures as messages.
pub type Res<T> = Result<T, String>;

/// `kill -s SIG PID` (the tests hold no `unsafe`, so no kill(2) of their own).
pub fn send_signal(pid: i32, sig: &str) -> Res<()> {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -s {sig} {pid} failed ({status})"));
    }
    Ok(())
}

/// Wait for `child` at most `timeout`; `None` if it is still running.
pub fn wait_child_timeout(child: &mut Child, timeout: Duration) -> Res<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(Some(st)),
            Ok(None) if start.elapsed() > timeout => return Ok(None),
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait for pid {}: {e}", child.id())),
        }
    }
}
