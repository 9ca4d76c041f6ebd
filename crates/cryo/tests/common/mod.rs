//! Helpers shared by the integration tests: those that drive processes (scenarios.rs,
//! failure.rs, cgroup.rs, crit_core_dump.rs) here, those that run `cryo crit` and Debian's
//! crit (crit.rs, crit_fixtures.rs) in [`crit`].
//!
//! Every test binary compiles all of this (`mod common;`) and uses only some of it, hence
//! `dead_code` is allowed here.
#![allow(dead_code)]

pub mod crit;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Test helpers report failures as messages.
pub type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------------
// The environment

/// Whether the environment variable `name` is set to something other than "" or "0".
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `CRYO_TEST_STRICT`: nothing may be skipped.
pub fn strict() -> bool {
    env_flag("CRYO_TEST_STRICT")
}

/// Report a skip; under `CRYO_TEST_STRICT=1` it is a failure.
pub fn skipped(what: &str, reason: &str) {
    if strict() {
        panic!("{what}: skipped under CRYO_TEST_STRICT=1: {reason}");
    }
    eprintln!("SKIP {what}: {reason}");
}

/// The binary under test: `CRYO_BIN` if set, else this crate's `cryo`.
pub fn cryo_bin() -> PathBuf {
    std::env::var_os("CRYO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cryo")))
}

/// `tests/scenarios`: the scenario programs, `scenario.h` and `support/`.
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Tests that start processes run one at a time: they reuse PIDs and want the CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lock of [`SERIAL`] (also after a test panicked with it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Building

/// `gcc -O1 -g -Wall -pthread -I tests/scenarios -o OUT SRC -lrt`.
pub fn gcc(src: &Path, out: &Path) -> Res<()> {
    let output = Command::new("gcc")
        .args(["-O1", "-g", "-Wall", "-pthread", "-I"])
        .arg(sources_dir())
        .arg("-o")
        .arg(out)
        .arg(src)
        .arg("-lrt")
        .output()
        .map_err(|e| format!("run gcc: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "gcc {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// `WORK/bin`, created if missing, with `spawn` and `reaper` of `tests/scenarios/support/` built
/// into it; the caller builds its programs there too.
pub fn bin_dir_with_support(work_root: &Path) -> Res<PathBuf> {
    let bin = work_root.join("bin");
    fs::create_dir_all(&bin).map_err(|e| format!("create {}: {e}", bin.display()))?;
    let support = sources_dir().join("support");
    gcc(&support.join("reaper.c"), &bin.join("reaper"))?;
    gcc(&support.join("spawn.c"), &bin.join("spawn"))?;
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// Files

/// The file as text (lossy), or "" if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `lines` lines of the file, or why it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

/// The file opened for appending, created if missing.
pub fn append(path: &Path) -> Res<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))
}

/// A new images directory at `path`, mode 0700.
pub fn create_images_dir(path: &Path) -> Res<()> {
    fs::create_dir(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `PROGRAM` with stdin from /dev/null and stdout and stderr appended to `log`.
pub fn logged_command(program: &Path, log: &Path) -> Res<Command> {
    let out = append(log)?;
    let err = out.try_clone().map_err(|e| format!("dup: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    Ok(cmd)
}

/// `CRYO ARGS` in `cwd`, output to `log`, without the fault-injection variables of the
/// environment (`CRYO_FAULT_INJECT`, `CRYO_FAULT_PAUSE`) and with `env` added.
pub fn cryo_command<S: AsRef<OsStr>>(
    cryo: &Path,
    args: &[S],
    cwd: &Path,
    env: &[(&str, &str)],
    log: &Path,
) -> Res<Command> {
    let mut cmd = logged_command(cryo, log)?;
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("CRYO_FAULT_INJECT")
        .env_remove("CRYO_FAULT_PAUSE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// `REAPER RECORDS CRYO restore -D IMAGES` in `images`, output to `log`: `support/reaper.c`
/// runs cryo as a child subreaper and records its status and those of the restored processes
/// it reaps in `records` (see [`reaper_records`]). The caller adds the rest of cryo's arguments.
pub fn reaper_restore_command(
    reaper: &Path,
    records: &Path,
    cryo: &Path,
    images: &Path,
    log: &Path,
) -> Res<Command> {
    let mut cmd = logged_command(reaper, log)?;
    cmd.arg(records)
        .arg(cryo)
        .args(["restore", "-D"])
        .arg(images)
        .current_dir(images);
    Ok(cmd)
}

/// The raw wait status of the command the reaper ran (its "cmd" record), once it has ended.
pub fn reaper_cmd_status(records: &Path) -> Option<i32> {
    reaper_records(records)
        .into_iter()
        .find(|(k, _, _)| k == "cmd")
        .map(|(_, _, st)| st)
}

/// The end of a test case that ran in `dir`: on success the directory is removed; on failure
/// the case's `diagnostics` are printed and the test panics with `what: error`.
pub fn conclude(result: Res<()>, dir: &Path, diagnostics: impl FnOnce() -> String, what: &str) {
    match result {
        Ok(()) => {
            let _ = fs::remove_dir_all(dir);
        }
        Err(e) => {
            eprintln!("{}", diagnostics());
            panic!("{what}: {e}");
        }
    }
}

/// How a cryo run ended and what it wrote.
pub struct CryoOut {
    pub status: ExitStatus,
    /// Its stdout and stderr.
    pub output: String,
    /// What `output` is called in messages ("output", "stderr").
    pub stream: &'static str,
}

impl CryoOut {
    /// The status and the output, for messages.
    pub fn show(&self) -> String {
        format!(
            "{}, {}:\n{}",
            describe(self.status),
            self.stream,
            self.output
        )
    }

    /// A clean failure: exit status 1, an error message naming each of `words`, no panic.
    pub fn expect_failure(&self, what: &str, words: &[&str]) -> Res<()> {
        if self.status.code() != Some(1) || self.output.contains("panicked") {
            return Err(format!(
                "{what}: expected a clean failure, got {}",
                self.show()
            ));
        }
        self.expect_mentions(what, words)
    }

    /// A clean failure: exited (not killed), non-zero, not Rust's panic status, no panic text, an
    /// error message.
    pub fn expect_clean_failure(&self, what: &str) -> Res<()> {
        let code = self.status.code();
        if code.is_none() || code == Some(0) || code == Some(101) {
            return Err(format!(
                "{what}: expected a clean failure, got {}",
                self.show()
            ));
        }
        if self.output.contains("panicked") || self.output.contains("RUST_BACKTRACE") {
            return Err(format!("{what}: cryo panicked: {}", self.show()));
        }
        if !self.output.to_lowercase().contains("error") {
            return Err(format!("{what}: no error message: {}", self.show()));
        }
        Ok(())
    }

    /// Every one of `words` is in the output.
    pub fn expect_mentions(&self, what: &str, words: &[&str]) -> Res<()> {
        for w in words {
            if !self.output.contains(w) {
                return Err(format!(
                    "{what}: the error does not mention {w:?}: {}",
                    self.show()
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Processes, without waitpid(): /proc and the `kill` program

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

/// Wait for `child` at most `timeout`; if it is still running then, kill and reap it and
/// return `None`.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Res<Option<ExitStatus>> {
    let st = wait_child_timeout(child, timeout)?;
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(st)
}

/// Give each of `reapers` 10 s to end, then kill it; reap them all and forget them.
pub fn stop_reapers(reapers: &mut Vec<Child>) {
    for r in reapers.iter_mut() {
        if wait_child_timeout(r, Duration::from_secs(10))
            .ok()
            .flatten()
            .is_none()
        {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
    reapers.clear();
}

/// The state letter of /proc/PID/stat, or None if there is no such process.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Whether PID exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The value of field `name` of /proc/PID/status.
pub fn status_field(pid: i32, name: &str) -> Res<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
        .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
}

/// Whether /proc/PID/cmdline holds `needle` (our program still at PID, not a reused PID).
pub fn cmdline_has(pid: i32, needle: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let needle = needle.as_os_str().as_encoded_bytes();
    !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// An exit status in words.
pub fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("wait status {:#x}", st.into_raw()),
    }
}

/// The lines `support/reaper.c` wrote to `out` so far: (kind, pid, raw wait status), kind
/// "cmd" (the command it ran, cryo) or "exit" (a process it reaped).
pub fn reaper_records(out: &Path) -> Vec<(String, i32, i32)> {
    read_lossy(out)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let kind = it.next()?.to_owned();
            let pid = it.next()?.parse().ok()?;
            let status = it.next()?.parse().ok()?;
            Some((kind, pid, status))
        })
        .collect()
}
