//! Failure safety (DESIGN.md section 8), driven through the real `cryo` binary.
//!
//! - A dump that fails at any phase (test builds: `CRYO_FAULT_INJECT=<phase>`, for every phase of
//!   `cryo_engine::dump::PHASES`) leaves the task running exactly as before: not stopped, not
//!   traced, the same descriptors, mappings and signal state, and the scenario still PASSes after
//!   SIGTERM. The same holds after a successful `dump -R`.
//! - SIGINT or SIGTERM to cryo while a dump pauses at a phase (`CRYO_FAULT_PAUSE=<phase>`): cryo
//!   exits non-zero soon, saying "interrupted", and the task is released as above.
//! - Bad input (no such pid, a bad pid value, a zombie, missing option, unknown option, missing
//!   or empty images directory, damaged images) gives a clear error and a non-zero exit, never a
//!   panic; an error about a damaged image names the image (and the offset where it applies),
//!   and a failed restore leaves no task behind.
//! - Images are created 0600; a restore refuses a pid that is in use.
//!
//! The tasks are the self-verifying scenarios of `tests/scenarios/` (see `scenarios.rs` for the
//! protocol: `READY` in the status file, then `PASS`/`FAIL` after SIGTERM), built with gcc into
//! `target/tmp/failure/bin`, started through `support/spawn.c`; restores run under
//! `support/reaper.c`. Tests run one at a time. `CRYO_TEST_STRICT=1`: nothing may be skipped.
//! Case directories are under `target/tmp/failure/cases/`; failing ones are kept.
#![forbid(unsafe_code)]

mod common;
use common::{
    alive, append, bin_dir_with_support, cmdline_has, conclude, create_images_dir, cryo_bin,
    cryo_command, describe, gcc, proc_state, read_lossy, reaper_cmd_status, reaper_records,
    reaper_restore_command, send_signal, serial, skipped, sources_dir, status_field, stop_reapers,
    tail, wait_child_timeout, wait_or_kill, CryoOut, Res,
};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a scenario may take to get READY (heap_hash fills 256 MiB).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a scenario may take to give its verdict after SIGTERM.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one cryo run may take.
const CRYO_TIMEOUT: Duration = Duration::from_secs(300);
/// How long cryo may take to exit after SIGINT/SIGTERM (the fault pause is 2 s).
const INTERRUPT_EXIT: Duration = Duration::from_secs(10);

static BUILT: OnceLock<Res<PathBuf>> = OnceLock::new();

/// The scenarios these tests use.
const SOURCES: &[&str] = &[
    "signals",
    "avx_register",
    "heap_hash",
    "timers",
    "counter",
    "tree",
    "terminals",
];

fn work_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("failure")
}

// ---------------------------------------------------------------------------------------------
// Building

fn build_all() -> Res<PathBuf> {
    let bin = bin_dir_with_support(&work_root())?;
    for name in SOURCES {
        gcc(&sources_dir().join(format!("{name}.c")), &bin.join(name))?;
    }
    Ok(bin)
}

fn built() -> Res<PathBuf> {
    BUILT.get_or_init(build_all).clone()
}

// ---------------------------------------------------------------------------------------------
// Processes, through /proc and the `kill` program

/// A PID no process has.
fn unused_pid() -> i32 {
    let max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (2..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap_or(max - 1)
}

// ---------------------------------------------------------------------------------------------
// What a task looks like from outside

/// What must not change when cryo lets a task go.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// (fd, link target, `pos:` and `flags:` of fdinfo)
    fds: Vec<(String, String, String)>,
    /// /proc/PID/maps lines; the start of `[stack]` is left out (the stack may grow).
    maps: Vec<String>,
    /// SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt of /proc/PID/status.
    signals: Vec<String>,
}

fn snapshot(pid: i32) -> Res<Snapshot> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| format!("read {dir}: {e}"))? {
        let entry = entry.map_err(|e| format!("read {dir}: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("({e})"));
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{name}")).unwrap_or_default();
        let info: Vec<&str> = info
            .lines()
            .filter(|l| l.starts_with("pos:") || l.starts_with("flags:"))
            .collect();
        fds.push((name, target, info.join(" ")));
    }
    fds.sort();
    let maps_text = fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("read /proc/{pid}/maps: {e}"))?;
    let maps = maps_text
        .lines()
        .map(|l| {
            if l.ends_with("[stack]") {
                l.split_once('-').map_or(l, |(_, rest)| rest).to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let mut signals = Vec::new();
    for f in ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"] {
        signals.push(format!("{f} {}", status_field(pid, f)?));
    }
    Ok(Snapshot { fds, maps, signals })
}

fn diff_lists<T: std::fmt::Debug + PartialEq>(what: &str, before: &[T], after: &[T]) -> String {
    let mut s = String::new();
    for x in before.iter().filter(|x| !after.contains(x)) {
        let _ = writeln!(s, "  {what} gone: {x:?}");
    }
    for x in after.iter().filter(|x| !before.contains(x)) {
        let _ = writeln!(s, "  {what} new:  {x:?}");
    }
    s
}

/// The task at `pid` runs, is not stopped or traced, and looks as it did in `before`.
fn check_released(pid: i32, before: &Snapshot, after_what: &str) -> Res<()> {
    for _ in 0..6 {
        match proc_state(pid) {
            Some('T' | 't') => return Err(format!("pid {pid} is left stopped after {after_what}")),
            Some('Z' | 'X') | None => return Err(format!("pid {pid} died after {after_what}")),
            _ => {}
        }
        let tracer = status_field(pid, "TracerPid")?;
        if tracer != "0" {
            return Err(format!(
                "pid {pid} is still traced (TracerPid {tracer}) after {after_what}"
            ));
        }
        sleep(Duration::from_millis(50));
    }
    let after = snapshot(pid)?;
    if &after != before {
        let mut s = diff_lists("fd", &before.fds, &after.fds);
        s += &diff_lists("mapping", &before.maps, &after.maps);
        s += &diff_lists("signal state", &before.signals, &after.signals);
        return Err(format!("pid {pid} changed after {after_what}:\n{s}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A scenario task

enum Started {
    Ready(Scenario),
    Skipped(String),
}

struct Scenario {
    name: &'static str,
    dir: PathBuf,
    status: PathBuf,
    program: PathBuf,
    /// The original task (our child) while it runs.
    child: Option<Child>,
    pid: i32,
    /// Every PID a task of this case had (original and restored), for cleanup.
    pids: Vec<i32>,
    /// Reapers of restores, for cleanup.
    reapers: Vec<Child>,
    seen: usize,
    journal: String,
}

impl Scenario {
    /// A fresh case directory `cases/<label>`; start `name` in it and wait for READY.
    fn start(name: &'static str, label: &str) -> Res<Started> {
        let bin = built()?;
        let dir = work_root().join("cases").join(label);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
        }
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let status = dir.join("status");
        File::create(&status).map_err(|e| format!("create status file: {e}"))?;
        let program = bin.join(name);
        let out = append(&dir.join("stdout"))?;
        let err = append(&dir.join("stderr"))?;
        let child = Command::new(bin.join("spawn"))
            .arg(&program)
            .env("CRYO_SCENARIO_TMP", &tmp)
            .env("CRYO_SCENARIO_STATUS", &status)
            .current_dir(&tmp)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let pid = child.id() as i32;
        let mut s = Scenario {
            name,
            dir,
            status,
            program,
            child: Some(child),
            pid,
            pids: vec![pid],
            reapers: Vec::new(),
            seen: 0,
            journal: String::new(),
        };
        s.note(format!("started {name} as pid {pid}"));
        let line = s.next_line(READY_TIMEOUT, pid)?;
        if line == "READY" {
            Ok(Started::Ready(s))
        } else if let Some(reason) = line.strip_prefix("SKIP ") {
            Ok(Started::Skipped(reason.to_owned()))
        } else {
            Err(format!("{name}: expected READY, got {line:?}"))
        }
    }

    fn note(&mut self, msg: impl AsRef<str>) {
        let _ = writeln!(self.journal, "{}", msg.as_ref());
    }

    /// The next status line that is not INFO; fails soon if `pid` dies without one.
    fn next_line(&mut self, timeout: Duration, pid: i32) -> Res<String> {
        let start = Instant::now();
        let mut dead_since: Option<Instant> = None;
        loop {
            let text = read_lossy(&self.status);
            let lines: Vec<&str> = text.lines().collect();
            while self.seen < lines.len() {
                let line = lines[self.seen].to_owned();
                self.seen += 1;
                self.note(format!("status: {line}"));
                if !line.starts_with("INFO") {
                    return Ok(line);
                }
            }
            let gone = match (&mut self.child, pid == self.pid) {
                (Some(c), true) => !matches!(c.try_wait(), Ok(None)),
                _ => !alive(pid),
            };
            if gone {
                let since = *dead_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    return Err(format!("pid {pid} died without a status line"));
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("no status line from pid {pid} within {timeout:?}"));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM the original task; it must say PASS and exit 0.
    fn finish_original(&mut self) -> Res<()> {
        let pid = self.pid;
        send_signal(pid, "TERM")?;
        let line = self.next_line(VERDICT_TIMEOUT, pid)?;
        let child = self.child.as_mut().ok_or("the original task is gone")?;
        let st = wait_child_timeout(child, VERDICT_TIMEOUT)?
            .ok_or_else(|| format!("pid {pid} did not exit after {line:?}"))?;
        self.child = None;
        if line != "PASS" || st.code() != Some(0) {
            return Err(format!("{}: {line} ({})", self.name, describe(st)));
        }
        Ok(())
    }

    /// SIGTERM a restored task; it must say PASS and exit 0 (as the reaper of `reaper_out` saw).
    fn finish_restored(&mut self, pid: i32, reaper_out: &Path) -> Res<()> {
        send_signal(pid, "TERM")?;
        let line = self.next_line(VERDICT_TIMEOUT, pid)?;
        let start = Instant::now();
        let raw = loop {
            if let Some((_, _, st)) = reaper_records(reaper_out)
                .into_iter()
                .find(|(k, p, _)| k == "exit" && *p == pid)
            {
                break st;
            }
            if start.elapsed() > VERDICT_TIMEOUT {
                return Err(format!("restored pid {pid} did not exit after {line:?}"));
            }
            sleep(Duration::from_millis(20));
        };
        let st = ExitStatus::from_raw(raw);
        if line != "PASS" || st.code() != Some(0) {
            return Err(format!("restored {}: {line} ({})", self.name, describe(st)));
        }
        Ok(())
    }

    /// Our task still at `pid`? (not a reused PID)
    fn ours(&self, pid: i32) -> bool {
        cmdline_has(pid, &self.program)
    }

    fn diagnostics(&self) -> String {
        let mut s = format!("--- journal of {}:\n{}", self.dir.display(), self.journal);
        let mut files = vec![
            self.status.clone(),
            self.dir.join("stdout"),
            self.dir.join("stderr"),
        ];
        let mut more = Vec::new();
        collect_logs(&self.dir, &mut more);
        more.sort();
        files.extend(more);
        for f in files {
            if f.exists() {
                let _ = write!(s, "--- tail of {}:\n{}\n", f.display(), tail(&f, 30));
            }
        }
        s
    }

    fn cleanup(&mut self) {
        for pid in self.pids.clone() {
            if alive(pid) && self.ours(pid) {
                self.note(format!("cleanup: kill -9 {pid}"));
                let _ = send_signal(pid, "KILL");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        stop_reapers(&mut self.reapers);
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `*.log`, `*.out`, `*.err` and reaper files under `dir` and its image directories.
fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let n = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && n != "tmp" {
            collect_logs(&p, out);
        } else if [".log", ".out", ".err"].iter().any(|x| n.ends_with(x)) || n.starts_with("reaper")
        {
            out.push(p);
        }
    }
}

/// Run `body` with the scenario `name` started in case `label`; skips (or fails under strict)
/// when the scenario cannot run here; panics with diagnostics on failure.
fn with_scenario(name: &'static str, label: &str, body: impl FnOnce(&mut Scenario) -> Res<()>) {
    let mut s = match Scenario::start(name, label) {
        Ok(Started::Ready(s)) => s,
        Ok(Started::Skipped(reason)) => {
            skipped(&format!("{label} ({name})"), &reason);
            return;
        }
        Err(e) => panic!("{label}: {e}"),
    };
    let result = body(&mut s);
    s.cleanup();
    conclude(
        result,
        &s.dir,
        || s.diagnostics(),
        &format!("{label} ({name})"),
    );
}

// ---------------------------------------------------------------------------------------------
// Running cryo

/// Start cryo with `args` in `cwd`, stdout+stderr to `log` (cryo's own error output).
fn spawn_cryo(args: &[&OsStr], cwd: &Path, env: &[(&str, &str)], log: &Path) -> Res<Child> {
    cryo_command(&cryo_bin(), args, cwd, env, log)?
        .spawn()
        .map_err(|e| format!("start {}: {e}", cryo_bin().display()))
}

fn finish_cryo(mut child: Child, log: &Path, timeout: Duration) -> Res<CryoOut> {
    let Some(status) = wait_or_kill(&mut child, timeout)? else {
        return Err(format!(
            "cryo did not exit within {timeout:?}; output:\n{}",
            read_lossy(log)
        ));
    };
    Ok(CryoOut {
        status,
        output: read_lossy(log),
        stream: "stderr",
    })
}

fn run_cryo(args: &[&OsStr], cwd: &Path, env: &[(&str, &str)], log: &Path) -> Res<CryoOut> {
    let child = spawn_cryo(args, cwd, env, log)?;
    finish_cryo(child, log, CRYO_TIMEOUT)
}

/// A new images directory `name` (0700) in the case directory.
fn images_dir(s: &Scenario, name: &str) -> Res<PathBuf> {
    let images = s.dir.join(name);
    create_images_dir(&images)?;
    Ok(images)
}

/// The arguments of `cryo dump -t PID -D IMAGES -o dump.log -v4 [extra]`.
fn dump_args(pid: i32, images: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "dump".into(),
        "-t".into(),
        pid.to_string().into(),
        "-D".into(),
        images.into(),
        "-o".into(),
        "dump.log".into(),
        "-v4".into(),
    ];
    v.extend(extra.iter().map(Into::into));
    v
}

fn os(v: &[std::ffi::OsString]) -> Vec<&OsStr> {
    v.iter().map(|s| s.as_os_str()).collect()
}

/// `cryo dump` of the scenario into a new images directory `name`.
fn dump(
    s: &mut Scenario,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Res<(PathBuf, CryoOut)> {
    let images = images_dir(s, name)?;
    let args = dump_args(s.pid, &images, extra);
    s.note(format!("run cryo {args:?} env {env:?}"));
    let out = run_cryo(&os(&args), &images, env, &s.dir.join(format!("{name}.out")))?;
    s.note(format!("cryo dump: {}", describe(out.status)));
    Ok((images, out))
}

struct RestoreRun {
    out: CryoOut,
    /// The reaper's record file.
    records: PathBuf,
    /// The restored PID (from --pidfile), if any.
    pid: Option<i32>,
}

/// `cryo restore -d -D IMAGES --pidfile ... -o restore.log -v4` under a reaper.
fn restore(s: &mut Scenario, images: &Path, label: &str) -> Res<RestoreRun> {
    restore_with(s, images, label, &[])
}

/// [`restore`] with `env` added (after the fault variables of the test's own are removed).
fn restore_with(
    s: &mut Scenario,
    images: &Path,
    label: &str,
    env: &[(&str, &str)],
) -> Res<RestoreRun> {
    let records = s.dir.join(format!("reaper-{label}"));
    let pidfile = s.dir.join(format!("{label}.pid"));
    let log = s.dir.join(format!("{label}.out"));
    let reaper = built()?.join("reaper");
    let mut cmd = reaper_restore_command(&reaper, &records, &cryo_bin(), images, &log)?;
    cmd.args(["-d", "--pidfile"])
        .arg(&pidfile)
        .args(["-o", "restore.log", "-v4"])
        .env_remove("CRYO_FAULT_INJECT")
        .env_remove("CRYO_FAULT_PAUSE")
        .envs(env.iter().copied());
    s.note(format!("run {cmd:?}"));
    let reaper = cmd.spawn().map_err(|e| format!("start reaper: {e}"))?;
    s.reapers.push(reaper);
    let start = Instant::now();
    let raw = loop {
        if let Some(st) = reaper_cmd_status(&records) {
            break st;
        }
        let reaper = s.reapers.last_mut().ok_or("no reaper")?;
        if !matches!(reaper.try_wait(), Ok(None)) && reaper_records(&records).is_empty() {
            return Err(format!("{label}: the reaper died:\n{}", read_lossy(&log)));
        }
        if start.elapsed() > CRYO_TIMEOUT {
            return Err(format!(
                "{label}: cryo restore did not exit within {CRYO_TIMEOUT:?}"
            ));
        }
        sleep(Duration::from_millis(20));
    };
    let pid = read_lossy(&pidfile).trim().parse().ok();
    if let Some(pid) = pid {
        s.pids.push(pid);
    }
    let out = CryoOut {
        status: ExitStatus::from_raw(raw),
        output: read_lossy(&log),
        stream: "stderr",
    };
    s.note(format!("{label}: {} pid {pid:?}", describe(out.status)));
    Ok(RestoreRun { out, records, pid })
}

/// After a failed restore: the reaper has no task left (cryo killed what it created) and no
/// task of ours runs at `pid`.
fn check_nothing_left(s: &mut Scenario, run: &RestoreRun, pid: i32, what: &str) -> Res<()> {
    let reaper = s.reapers.last_mut().ok_or("no reaper")?;
    if wait_child_timeout(reaper, Duration::from_secs(5))?.is_none() {
        let left = if alive(pid) && s.ours(pid) {
            format!("pid {pid} runs our program")
        } else {
            "a task of unknown pid".to_owned()
        };
        return Err(format!(
            "{what}: a task is left behind after the failed restore ({left})"
        ));
    }
    let extra: Vec<_> = reaper_records(&run.records)
        .into_iter()
        .filter(|(k, _, _)| k != "cmd")
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "{what}: the failed restore left tasks that the reaper had to reap: {extra:?}"
        ));
    }
    if Path::new(&format!("/proc/{pid}")).exists() && s.ours(pid) {
        return Err(format!(
            "{what}: pid {pid} runs our program after the failed restore"
        ));
    }
    if let Some(p) = run.pid {
        return Err(format!(
            "{what}: the failed restore wrote pid {p} to its pid file"
        ));
    }
    Ok(())
}

/// Every file of `images` is mode 0600.
fn check_modes(images: &Path) -> Res<()> {
    let mut bad = Vec::new();
    let mut n = 0;
    for e in fs::read_dir(images).map_err(|e| format!("read {}: {e}", images.display()))? {
        let e = e.map_err(|e| format!("read {}: {e}", images.display()))?;
        let meta = fs::symlink_metadata(e.path()).map_err(|e| format!("stat: {e}"))?;
        if !meta.is_file() {
            continue;
        }
        n += 1;
        let mode = meta.permissions().mode() & 0o7777;
        if mode != 0o600 {
            bad.push(format!("{} {mode:04o}", e.file_name().to_string_lossy()));
        }
    }
    if n == 0 {
        return Err(format!("no files in {}", images.display()));
    }
    if !bad.is_empty() {
        return Err(format!("images not 0600: {}", bad.join(", ")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. A failed dump leaves the task as it was

/// Whether this build can inject faults; if not, the test is skipped (a failure under strict).
fn fault_injection_built(what: &str) -> bool {
    if cfg!(feature = "fault-injection") {
        if let Err(e) = probe_fault_injection() {
            panic!("{what}: {e}");
        }
        return true;
    }
    skipped(
        what,
        "built without the fault-injection feature (cargo test -p cryo --features fault-injection)",
    );
    false
}

/// The `cryo` binary does fail a dump on `CRYO_FAULT_INJECT` (it is shared by every build of the
/// target directory: a `cargo build` without the feature replaces it). Tried on a `sleep`
/// dumped with `-R`, so a binary without fault points leaves it running.
fn probe_fault_injection() -> Res<()> {
    let bin = built()?;
    let dir = work_root().join("cases").join("probe");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut sleeper = Command::new(bin.join("spawn"))
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start sleep: {e}"))?;
    // Wait for the exec.
    let pid = sleeper.id() as i32;
    let start = Instant::now();
    while !cmdline_has(pid, Path::new("sleep")) && start.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(10));
    }
    let args = dump_args(pid, &dir, &["-R"]);
    let out = run_cryo(
        &os(&args),
        &dir,
        &[("CRYO_FAULT_INJECT", "seized")],
        &dir.join("probe.out"),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let out = out?;
    if out.status.success() || !out.output.contains("fault injected") {
        return Err(format!(
            "{} ignores CRYO_FAULT_INJECT (built without the fault-injection feature, or \
             replaced by another cargo build of the same target directory): {}",
            cryo_bin().display(),
            out.show()
        ));
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// The scenarios a failed dump at `phase` is tried on.
fn fault_scenarios(phase: &str) -> Vec<&'static str> {
    let mut v = vec!["signals", "avx_register", "timers", "counter"];
    if matches!(phase, "memory" | "images") {
        // A big memory dump is written before these phases fail.
        v.push("heap_hash");
    }
    if phase == "images" {
        // The data queued in its ptys was read and must be back.
        v.push("terminals");
    }
    v
}

fn fault_case(phase: &'static str) {
    let _serial = serial();
    if !fault_injection_built(&format!("fault at {phase}")) {
        return;
    }
    for name in fault_scenarios(phase) {
        with_scenario(name, &format!("fault-{phase}-{name}"), |s| {
            let pid = s.pid;
            let before = snapshot(pid)?;
            let (_, out) = dump(s, "img", &[], &[("CRYO_FAULT_INJECT", phase)])?;
            out.expect_clean_failure(&format!("dump with a fault at {phase}"))?;
            out.expect_mentions("failed dump", &[&format!("at {phase}"), &pid.to_string()])?;
            check_released(pid, &before, &format!("a dump failed at {phase}"))?;
            s.finish_original()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SIGINT/SIGTERM to cryo during a dump

fn interrupt_case(phase: &'static str, sig: &'static str) {
    let _serial = serial();
    if !fault_injection_built(&format!("SIG{sig} at {phase}")) {
        return;
    }
    for name in ["signals", "avx_register"] {
        with_scenario(
            name,
            &format!("sig{}-{phase}-{name}", sig.to_lowercase()),
            |s| {
                let pid = s.pid;
                let before = snapshot(pid)?;
                let images = images_dir(s, "img")?;
                let args = dump_args(pid, &images, &[]);
                let log = s.dir.join("img.out");
                s.note(format!("run cryo {args:?} with CRYO_FAULT_PAUSE={phase}"));
                let child = spawn_cryo(&os(&args), &images, &[("CRYO_FAULT_PAUSE", phase)], &log)?;
                let cryo_pid = child.id() as i32;
                // Wait until cryo says it pauses at the phase.
                let dump_log = images.join("dump.log");
                let want = format!("pausing at {phase}");
                let start = Instant::now();
                let mut child = Some(child);
                while !read_lossy(&dump_log).contains(&want) {
                    let c = child.as_mut().ok_or("no cryo")?;
                    if !matches!(c.try_wait(), Ok(None)) {
                        let c = child.take().ok_or("no cryo")?;
                        let out = finish_cryo(c, &log, CRYO_TIMEOUT)?;
                        return Err(format!(
                            "cryo ended before pausing at {phase}: {}",
                            out.show()
                        ));
                    }
                    if start.elapsed() > CRYO_TIMEOUT {
                        let c = child.take().ok_or("no cryo")?;
                        let _ = finish_cryo(c, &log, Duration::ZERO);
                        return Err(format!("cryo never said {want:?}"));
                    }
                    sleep(Duration::from_millis(10));
                }
                s.note(format!("cryo pid {cryo_pid} paused at {phase}: SIG{sig}"));
                send_signal(cryo_pid, sig)?;
                let sent = Instant::now();
                let out = finish_cryo(child.take().ok_or("no cryo")?, &log, INTERRUPT_EXIT)?;
                let took = sent.elapsed();
                s.note(format!(
                    "cryo exited {took:?} after SIG{sig}: {}",
                    describe(out.status)
                ));
                if out.status.signal().is_some() {
                    return Err(format!(
                        "cryo died of the signal instead of releasing the task: {}",
                        out.show()
                    ));
                }
                out.expect_clean_failure(&format!("dump interrupted by SIG{sig} at {phase}"))?;
                if !out.output.to_lowercase().contains("interrupted") {
                    return Err(format!(
                        "the error does not say interrupted: {}",
                        out.show()
                    ));
                }
                check_released(pid, &before, &format!("SIG{sig} to cryo at {phase}"))?;
                s.finish_original()
            },
        );
    }
}

macro_rules! phase_tests {
    ($($phase:ident),*) => {
        /// The phases that have tests here, in order.
        const TESTED_PHASES: &[&str] = &[$(stringify!($phase)),*];

        /// `CRYO_FAULT_INJECT=<phase>`: the dump fails, the task runs on untouched.
        mod fault_at {
            $(
                #[test]
                fn $phase() {
                    super::fault_case(stringify!($phase));
                }
            )*
        }

        /// SIGINT to cryo while the dump pauses at the phase.
        mod sigint_at {
            $(
                #[test]
                fn $phase() {
                    super::interrupt_case(stringify!($phase), "INT");
                }
            )*
        }

        /// SIGTERM to cryo while the dump pauses at the phase.
        mod sigterm_at {
            $(
                #[test]
                fn $phase() {
                    super::interrupt_case(stringify!($phase), "TERM");
                }
            )*
        }
    };
}

phase_tests!(seized, injector, remote, files, memory, images);

#[test]
fn every_dump_phase_is_tested() {
    assert_eq!(
        TESTED_PHASES,
        cryo_engine::dump::PHASES.as_slice(),
        "the dump phases changed: update phase_tests! in tests/failure.rs"
    );
}

/// A successful `dump -R` leaves no trace either, and writes its images 0600.
#[test]
fn leave_running_dump_leaves_the_task_as_it_was() {
    let _serial = serial();
    for name in ["signals", "avx_register", "timers", "counter"] {
        with_scenario(name, &format!("leave-running-{name}"), |s| {
            let pid = s.pid;
            let before = snapshot(pid)?;
            let (images, out) = dump(s, "img", &["-R"], &[])?;
            if !out.status.success() {
                return Err(format!("dump -R failed: {}", out.show()));
            }
            check_modes(&images)?;
            check_released(pid, &before, "dump -R")?;
            s.finish_original()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input: a clear error, never a panic

/// A directory for cases without a scenario.
fn plain_dir(label: &str) -> PathBuf {
    let dir = work_root().join("cases").join(label);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn run_bad(label: &str, args: &[&OsStr], cwd: &Path) -> CryoOut {
    let log = cwd.join(format!("{label}.out"));
    run_cryo(args, cwd, &[], &log).unwrap_or_else(|e| panic!("{label}: {e}"))
}

#[test]
fn dump_of_a_pid_that_does_not_exist() {
    let _serial = serial();
    let dir = plain_dir("bad-dump-no-such-pid");
    let pid = unused_pid().to_string();
    let images = dir.join("img");
    fs::create_dir_all(&images).expect("create images dir");
    let out = run_bad(
        "dump",
        &[
            "dump".as_ref(),
            "-t".as_ref(),
            pid.as_ref(),
            "-D".as_ref(),
            images.as_os_str(),
        ],
        &dir,
    );
    out.expect_clean_failure("dump of a missing pid")
        .and_then(|()| out.expect_mentions("dump of a missing pid", &[&pid]))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dump_without_a_pid() {
    let _serial = serial();
    let dir = plain_dir("bad-dump-no-tree");
    let out = run_bad(
        "dump",
        &["dump".as_ref(), "-D".as_ref(), dir.as_os_str()],
        &dir,
    );
    out.expect_clean_failure("dump without -t")
        .and_then(|()| out.expect_mentions("dump without -t", &["--tree"]))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dump_with_a_bad_pid_value() {
    let _serial = serial();
    let dir = plain_dir("bad-dump-pid-value");
    for value in ["0", "-1", "abc", "99999999999"] {
        let out = run_bad(
            "dump",
            &[
                "dump".as_ref(),
                "-t".as_ref(),
                value.as_ref(),
                "-D".as_ref(),
                dir.as_os_str(),
            ],
            &dir,
        );
        out.expect_clean_failure(&format!("dump -t {value}"))
            .and_then(|()| out.expect_mentions(&format!("dump -t {value}"), &[value]))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = fs::remove_dir_all(&dir);
}

/// A zombie cannot be dumped: a clear error naming it, and its parent is left alone.
#[test]
fn dump_of_a_zombie() {
    let _serial = serial();
    let dir = plain_dir("bad-dump-zombie");
    // `sleep 30` inherits the shell's child, which exits and is never reaped.
    let mut parent = Command::new("sh")
        .args(["-c", "sleep 0.1 & exec sleep 30"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start sh");
    let ppid = parent.id() as i32;
    let start = Instant::now();
    let zombie = loop {
        let children =
            fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children")).unwrap_or_default();
        let z = children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|&p| proc_state(p) == Some('Z'));
        if let Some(z) = z {
            break z;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no zombie appeared"
        );
        sleep(Duration::from_millis(20));
    };
    let z = zombie.to_string();
    let out = run_bad(
        "dump",
        &[
            "dump".as_ref(),
            "-t".as_ref(),
            z.as_ref(),
            "-D".as_ref(),
            dir.as_os_str(),
        ],
        &dir,
    );
    let res = out
        .expect_clean_failure("dump of a zombie")
        .and_then(|()| out.expect_mentions("dump of a zombie", &[&z]));
    let parent_ok = alive(ppid) && proc_state(ppid) != Some('T');
    let _ = parent.kill();
    let _ = parent.wait();
    res.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        parent_ok,
        "the zombie's parent is not running after the dump"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn unknown_option() {
    let _serial = serial();
    let dir = plain_dir("bad-unknown-option");
    for cmd in ["dump", "restore"] {
        let out = run_bad(
            cmd,
            &[
                cmd.as_ref(),
                "--no-such-option".as_ref(),
                "-D".as_ref(),
                dir.as_os_str(),
            ],
            &dir,
        );
        out.expect_clean_failure(&format!("{cmd} --no-such-option"))
            .and_then(|()| out.expect_mentions(cmd, &["--no-such-option"]))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn restore_from_an_empty_directory() {
    let _serial = serial();
    let dir = plain_dir("bad-restore-empty-dir");
    let images = dir.join("img");
    fs::create_dir_all(&images).expect("create images dir");
    let out = run_bad(
        "restore",
        &[
            "restore".as_ref(),
            "-d".as_ref(),
            "-D".as_ref(),
            images.as_os_str(),
        ],
        &dir,
    );
    out.expect_clean_failure("restore from an empty directory")
        .and_then(|()| out.expect_mentions("restore from an empty directory", &["inventory.img"]))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn restore_from_a_missing_directory() {
    let _serial = serial();
    let dir = plain_dir("bad-restore-missing-dir");
    let images = dir.join("no-such-dir");
    let out = run_bad(
        "restore",
        &[
            "restore".as_ref(),
            "-d".as_ref(),
            "-D".as_ref(),
            images.as_os_str(),
        ],
        &dir,
    );
    let shown = images.display().to_string();
    out.expect_clean_failure("restore from a missing directory")
        .and_then(|()| out.expect_mentions("restore from a missing directory", &[&shown]))
        .unwrap_or_else(|e| panic!("{e}"));
    // The same with a log file, which would live in the missing directory.
    let out = run_bad(
        "restore-log",
        &[
            "restore".as_ref(),
            "-d".as_ref(),
            "-D".as_ref(),
            images.as_os_str(),
            "-o".as_ref(),
            "restore.log".as_ref(),
        ],
        &dir,
    );
    out.expect_clean_failure("restore -o from a missing directory")
        .and_then(|()| out.expect_mentions("restore -o from a missing directory", &[&shown]))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = fs::remove_dir_all(&dir);
}

/// Overwrite `bytes` at `offset` of `path`.
fn patch(path: &Path, offset: u64, bytes: &[u8]) -> Res<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.write_all(bytes))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn truncate(path: &Path, len: u64) -> Res<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .map_err(|e| format!("truncate {}: {e}", path.display()))
}

fn file_len(path: &Path) -> Res<u64> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("stat {}: {e}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    fs::create_dir_all(to).map_err(|e| format!("create {}: {e}", to.display()))?;
    for e in fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))? {
        let e = e.map_err(|e| format!("read {}: {e}", from.display()))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") || !e.path().is_file() {
            continue;
        }
        fs::copy(e.path(), to.join(&name))
            .map_err(|err| format!("copy {}: {err}", e.path().display()))?;
    }
    Ok(())
}

/// One way to damage a copy of good images: (label, damage, words the error must contain).
type Damage = (
    &'static str,
    fn(&Path, i32) -> Res<()>,
    fn(i32) -> Vec<String>,
);

fn damages() -> Vec<Damage> {
    vec![
        (
            "truncated-core",
            |d, pid| {
                // Keep the two magics, the length field and 10 bytes of the entry.
                truncate(&d.join(format!("core-{pid}.img")), 8 + 4 + 10)
            },
            |pid| {
                vec![
                    format!("core-{pid}.img"),
                    "offset 8".into(),
                    "truncated".into(),
                ]
            },
        ),
        (
            "empty-core",
            |d, pid| truncate(&d.join(format!("core-{pid}.img")), 0),
            |pid| vec![format!("core-{pid}.img"), "offset 0".into()],
        ),
        (
            "garbage-core",
            |d, pid| {
                let p = d.join(format!("core-{pid}.img"));
                let len = file_len(&p)?;
                // The entry's bytes (after magics and length) become 0xff: no valid protobuf.
                patch(&p, 12, &vec![0xff; (len - 12) as usize])
            },
            |pid| vec![format!("core-{pid}.img"), "offset 8".into()],
        ),
        (
            "huge-entry-length",
            |d, pid| {
                patch(
                    &d.join(format!("core-{pid}.img")),
                    8,
                    &[0xf0, 0xff, 0xff, 0x7f],
                )
            },
            |pid| vec![format!("core-{pid}.img"), "offset 8".into()],
        ),
        (
            "inventory-magic",
            |d, _| patch(&d.join("inventory.img"), 0, b"JUNK"),
            |_| vec!["inventory.img".into(), "magic".into(), "offset 0".into()],
        ),
        (
            "core-magic",
            |d, pid| patch(&d.join(format!("core-{pid}.img")), 4, b"JUNK"),
            |pid| vec![format!("core-{pid}.img"), "magic".into(), "offset 4".into()],
        ),
        (
            "truncated-pages",
            |d, _| {
                let p = d.join("pages-1.img");
                let len = file_len(&p)?;
                truncate(&p, (len / 2) & !4095)
            },
            |_| vec!["pages-1.img".into(), "offset".into()],
        ),
        (
            "missing-mm",
            |d, pid| {
                let p = d.join(format!("mm-{pid}.img"));
                fs::remove_file(&p).map_err(|e| format!("remove {}: {e}", p.display()))
            },
            |pid| vec![format!("mm-{pid}.img")],
        ),
        (
            "missing-pages",
            |d, _| {
                let p = d.join("pages-1.img");
                fs::remove_file(&p).map_err(|e| format!("remove {}: {e}", p.display()))
            },
            |_| vec!["pages-1.img".into()],
        ),
    ]
}

/// Damaged copies of good images: each restore fails cleanly, names the image and leaves no
/// task; the undamaged images still restore and PASS.
/// The pty indices of the images in `dir` (from `cryo crit decode` of tty-info.img).
fn pty_indices(dir: &Path) -> Res<Vec<u32>> {
    let out = Command::new(cryo_bin())
        .args(["crit", "decode", "-i"])
        .arg(dir.join("tty-info.img"))
        .output()
        .map_err(|e| format!("run cryo crit decode: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<u32> = text
        .split("\"index\":")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect();
    if found.is_empty() {
        return Err(format!("no pty in tty-info.img: {text}"));
    }
    Ok(found)
}

/// Open /dev/ptmx until it gives an index above `highest`: every index up to it is taken
/// then (by these or by other terminals) as long as the files are held.
fn take_pty_indices(highest: u32) -> Res<Vec<File>> {
    let mut held = Vec::new();
    loop {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .map_err(|e| format!("open /dev/ptmx: {e}"))?;
        use std::os::fd::AsRawFd;
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd()))
            .map_err(|e| format!("read fdinfo of /dev/ptmx: {e}"))?;
        let index: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("tty-index:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no tty-index in the fdinfo of /dev/ptmx: {info}"))?;
        held.push(f);
        if index > highest {
            return Ok(held);
        }
        if held.len() > 4096 {
            return Err("4096 ptys opened without passing the images' indices".into());
        }
    }
}

/// A pty whose index another terminal has by the time of the restore: the restore fails,
/// naming the pty, and kills what it made; once the index is free the same images restore.
#[test]
fn restore_of_a_pty_whose_index_is_taken() {
    let _serial = serial();
    with_scenario("terminals", "pty-index-taken", |s| {
        let pid = s.pid;
        let (images, out) = dump(s, "img", &[], &[])?;
        if !out.status.success() {
            return Err(format!("dump failed: {}", out.show()));
        }
        let child = s.child.as_mut().ok_or("no original")?;
        wait_child_timeout(child, Duration::from_secs(30))?
            .ok_or_else(|| format!("pid {pid} still runs after dump"))?;
        s.child = None;
        let indices = pty_indices(&images)?;
        let highest = indices.iter().copied().max().unwrap_or(0);
        let held = take_pty_indices(highest)?;
        s.note(format!(
            "ptys {indices:?} of the images taken by {} files",
            held.len()
        ));
        let taken = s.dir.join("taken");
        copy_dir(&images, &taken)?;
        let run = restore(s, &taken, "taken")?;
        let said = run
            .out
            .expect_clean_failure("restore with the pty indices taken")
            .and_then(|()| {
                run.out
                    .expect_mentions("restore with the pty indices taken", &["pty"])
            });
        let left = check_nothing_left(s, &run, pid, "restore with the pty indices taken");
        drop(held);
        said?;
        left?;
        let run = restore(s, &images, "free")?;
        if !run.out.status.success() {
            return Err(format!(
                "restore with the indices free again failed: {}",
                run.out.show()
            ));
        }
        s.finish_restored(pid, &run.records)
    });
}

#[test]
fn restore_from_damaged_images() {
    let _serial = serial();
    with_scenario("counter", "bad-images", |s| {
        let pid = s.pid;
        let (good, out) = dump(s, "good", &[], &[])?;
        if !out.status.success() {
            return Err(format!("dump failed: {}", out.show()));
        }
        check_modes(&good)?;
        let child = s.child.as_mut().ok_or("no original")?;
        wait_child_timeout(child, Duration::from_secs(30))?
            .ok_or_else(|| format!("pid {pid} still runs after dump"))?;
        s.child = None;
        for need in [
            format!("core-{pid}.img"),
            format!("mm-{pid}.img"),
            "pages-1.img".into(),
        ] {
            if !good.join(&need).exists() {
                return Err(format!("the dump wrote no {need}"));
            }
        }
        let mut problems = Vec::new();
        for (label, damage, words) in damages() {
            let copy = s.dir.join(label);
            copy_dir(&good, &copy)?;
            damage(&copy, pid)?;
            let run = restore(s, &copy, label)?;
            let words = words(pid);
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let said = run
                .out
                .expect_clean_failure(label)
                .and_then(|()| run.out.expect_mentions(label, &words));
            let left = check_nothing_left(s, &run, pid, label);
            for e in [said, left].into_iter().filter_map(Result::err) {
                s.note(format!("{label}: {e}"));
                problems.push(e);
                // Leave nothing running for the next damage.
                if alive(pid) && s.ours(pid) {
                    let _ = send_signal(pid, "KILL");
                    sleep(Duration::from_millis(200));
                }
            }
        }
        // The undamaged images are good: the failures above came from the damage.
        let pristine = s.dir.join("pristine");
        copy_dir(&good, &pristine)?;
        let run = restore(s, &pristine, "pristine")?;
        if !run.out.status.success() {
            problems.push(format!(
                "restore of the undamaged images failed: {}",
                run.out.show()
            ));
        } else if run.pid != Some(pid) {
            problems.push(format!("restored pid {:?}, expected {pid}", run.pid));
        } else if let Err(e) = s.finish_restored(pid, &run.records) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 5. A restore refuses a pid in use

#[test]
fn restore_refuses_a_pid_in_use() {
    let _serial = serial();
    with_scenario("signals", "pid-in-use", |s| {
        let pid = s.pid;
        let before = snapshot(pid)?;
        let (images, out) = dump(s, "img", &["-R"], &[])?;
        if !out.status.success() {
            return Err(format!("dump -R failed: {}", out.show()));
        }
        check_released(pid, &before, "dump -R")?;
        let run = restore(s, &images, "restore")?;
        run.out.expect_clean_failure("restore onto a running pid")?;
        run.out
            .expect_mentions("restore onto a running pid", &["in use", &pid.to_string()])?;
        if run.pid.is_some() {
            return Err(format!(
                "the failed restore wrote a pid file: {:?}",
                run.pid
            ));
        }
        let reaper = s.reapers.last_mut().ok_or("no reaper")?;
        if wait_child_timeout(reaper, Duration::from_secs(5))?.is_none() {
            return Err("the failed restore left a task behind".into());
        }
        check_released(pid, &before, "a refused restore")?;
        s.finish_original()
    });
}

// ---------------------------------------------------------------------------------------------
// The checks themselves

/// `check_released` does notice a stopped task (so a pass above means something).
#[test]
fn check_released_notices_a_stopped_task() {
    let _serial = serial();
    with_scenario("counter", "selftest-stopped", |s| {
        let pid = s.pid;
        let before = snapshot(pid)?;
        check_released(pid, &before, "nothing")?;
        send_signal(pid, "STOP")?;
        sleep(Duration::from_millis(100));
        let res = check_released(pid, &before, "SIGSTOP");
        send_signal(pid, "CONT")?;
        match res {
            Err(e) if e.contains("stopped") => s.finish_original(),
            other => Err(format!("a stopped task was not noticed: {other:?}")),
        }
    });
}

/// A dump with `-s` (leave stopped) is noticed too: the task is stopped and its state differs
/// from a task cryo never touched only by being stopped; after SIGCONT it passes.
#[test]
fn check_released_notices_a_dump_that_leaves_the_task_stopped() {
    let _serial = serial();
    with_scenario("signals", "selftest-leave-stopped", |s| {
        let pid = s.pid;
        let before = snapshot(pid)?;
        let (_, out) = dump(s, "img", &["-s"], &[])?;
        if !out.status.success() {
            return Err(format!("dump -s failed: {}", out.show()));
        }
        let res = check_released(pid, &before, "dump -s");
        send_signal(pid, "CONT")?;
        match res {
            Err(e) if e.contains("stopped") => {}
            other => return Err(format!("dump -s was not noticed: {other:?}")),
        }
        check_released(pid, &before, "dump -s and SIGCONT")?;
        s.finish_original()
    });
}

// ---------------------------------------------------------------------------------------------
// 6. A socket cryo cannot restore is refused at dump, naming it, and the task is left alone

/// A python3 program (the system one) that sets up a socket, prints the pid to dump, then
/// sleeps; its stdout is read for that pid.
struct SocketHolder {
    child: Child,
    target: i32,
}

impl SocketHolder {
    fn start(code: &str, arg: &Path) -> Res<SocketHolder> {
        use std::io::BufRead;
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(code)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start python3: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("read python3's pid line: {e}"))?;
        let target = line
            .trim()
            .parse()
            .map_err(|_| format!("python3 said {line:?}, not a pid"))?;
        Ok(SocketHolder { child, target })
    }
}

impl Drop for SocketHolder {
    fn drop(&mut self) {
        let _ = send_signal(self.target, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dump `holder.target`, which must fail naming the pid and each of `words`, and leave the
/// task as it was.
fn expect_refused_socket(label: &str, holder: &SocketHolder, words: &[&str]) -> Res<()> {
    let dir = plain_dir(label);
    let images = dir.join("img");
    fs::create_dir_all(&images).map_err(|e| format!("create images dir: {e}"))?;
    let pid = holder.target;
    let before = snapshot(pid)?;
    let args = dump_args(pid, &images, &[]);
    let out = run_cryo(&os(&args), &dir, &[], &dir.join("dump.out"))?;
    out.expect_clean_failure(label)?;
    let pid_s = pid.to_string();
    let mut all = vec![pid_s.as_str(), "socket:["];
    all.extend_from_slice(words);
    out.expect_mentions(label, &all)?;
    check_released(pid, &before, "a refused dump")?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn dump_refuses_a_listening_unix_socket() {
    let _serial = serial();
    let dir = plain_dir("refused-listening-socket");
    let path = dir.join("listening.sock");
    let holder = SocketHolder::start(
        "import os, socket, sys, time\n\
         os.setsid()\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind(sys.argv[1])\n\
         s.listen(4)\n\
         print(os.getpid(), flush=True)\n\
         time.sleep(120)\n",
        &path,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    expect_refused_socket(
        "refused-listening-socket-dump",
        &holder,
        &["listening", &path.display().to_string()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Still listening: a client connects.
    std::os::unix::net::UnixStream::connect(&path)
        .unwrap_or_else(|e| panic!("connect to the socket left listening: {e}"));
    drop(holder);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dump_refuses_a_socketpair_half_outside_the_tree() {
    let _serial = serial();
    let dir = plain_dir("refused-socketpair-outside");
    // The dumped child holds one end, with data queued for it; its parent (not dumped) holds
    // the other.
    let holder = SocketHolder::start(
        "import os, socket, sys, time\n\
         a, b = socket.socketpair()\n\
         b.send(b'queued for the child')\n\
         if os.fork() == 0:\n\
         \x20   os.setsid()\n\
         \x20   b.close()\n\
         \x20   print(os.getpid(), flush=True)\n\
         \x20   time.sleep(120)\n\
         \x20   os._exit(0)\n\
         a.close()\n\
         time.sleep(120)\n",
        &dir,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    expect_refused_socket(
        "refused-socketpair-outside-dump",
        &holder,
        &["outside the dumped tree"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(holder);
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 6b. A terminal or character device cryo cannot restore is refused at dump, naming it

/// Dump `holder.target`, which must fail naming the pid and each of `words`, and leave the
/// task as it was.
fn expect_refused_device(label: &str, holder: &SocketHolder, words: &[&str]) -> Res<()> {
    let dir = plain_dir(label);
    let images = dir.join("img");
    fs::create_dir_all(&images).map_err(|e| format!("create images dir: {e}"))?;
    let pid = holder.target;
    let before = snapshot(pid)?;
    let args = dump_args(pid, &images, &[]);
    let out = run_cryo(&os(&args), &dir, &[], &dir.join("dump.out"))?;
    out.expect_clean_failure(label)?;
    let pid_s = pid.to_string();
    let mut all = vec![pid_s.as_str()];
    all.extend_from_slice(words);
    out.expect_mentions(label, &all)?;
    check_released(pid, &before, "a refused dump")?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn dump_refuses_a_pty_slave_whose_master_is_outside_the_tree() {
    let _serial = serial();
    let dir = plain_dir("refused-pty-slave");
    // The dumped child holds the slave; its parent (not dumped) the master.
    let holder = SocketHolder::start(
        "import os, sys, time\n\
         m, s = os.openpty()\n\
         if os.fork() == 0:\n\
         \x20   os.setsid()\n\
         \x20   os.close(m)\n\
         \x20   print(os.getpid(), flush=True)\n\
         \x20   time.sleep(120)\n\
         \x20   os._exit(0)\n\
         os.close(s)\n\
         time.sleep(120)\n",
        &dir,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    expect_refused_device(
        "refused-pty-slave-dump",
        &holder,
        &["/dev/pts/", "master", "outside", "--shell-job"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(holder);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dump_refuses_devices_it_cannot_reopen() {
    let _serial = serial();
    for (path, words) in [
        ("/dev/ttyS0", &["/dev/ttyS0", "serial line"][..]),
        ("/dev/tty0", &["/dev/tty0", "current virtual console"][..]),
        ("/dev/kmsg", &["/dev/kmsg", "1:11"][..]),
    ] {
        // Not every machine has a serial line or virtual consoles: only the others are tried.
        if !Path::new(path).exists() {
            eprintln!("refused {path}: no such device here, not tried");
            continue;
        }
        let label = format!("refused-{}", path.trim_start_matches("/dev/"));
        let dir = plain_dir(&label);
        let holder = SocketHolder::start(
            "import os, sys, time\n\
             os.setsid()\n\
             fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)\n\
             print(os.getpid(), flush=True)\n\
             time.sleep(120)\n",
            Path::new(path),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        expect_refused_device(&format!("{label}-dump"), &holder, words)
            .unwrap_or_else(|e| panic!("{e}"));
        drop(holder);
        let _ = fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------------
// 7. A restore that fails with the whole tree made kills all of it

/// `tree` (parent, children, threads, a stopped child, a zombie) is dumped, and restored with
/// `CRYO_FAULT_INJECT=restore-tree` (test builds), which fails once every process exists and
/// has its memory: cryo must say so, exit non-zero and leave no task behind (the reaper the
/// restore runs under ends, having nothing left to wait for). Also for a tree with a pid
/// namespace of its own, whose init waits for every other task of it before it can end.
fn failed_restore_case(pidns: bool) -> Res<()> {
    let label = if pidns {
        "failed-restore-pidns"
    } else {
        "failed-restore"
    };
    let dir = plain_dir(label);
    let bin = built()?;
    let status = dir.join("status");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    // Under a reaper of its own: the orphans of the killed tree must be reaped, or their PIDs
    // stay taken (pid 1 here may not reap).
    let mut cmd = Command::new(bin.join("reaper"));
    cmd.arg(dir.join("reaper-original")).arg(bin.join("spawn"));
    if pidns {
        cmd.arg("--pidns");
    }
    let mut spawn = cmd
        .arg(bin.join("tree"))
        .env("CRYO_SCENARIO_TMP", &tmp)
        .env("CRYO_SCENARIO_STATUS", &status)
        .current_dir(&tmp)
        .stdin(Stdio::null())
        .stdout(append(&dir.join("stdout"))?)
        .stderr(append(&dir.join("stderr"))?)
        .spawn()
        .map_err(|e| format!("start tree: {e}"))?;
    let result = (|| -> Res<()> {
        let start = Instant::now();
        while !read_lossy(&status).contains("READY") {
            if start.elapsed() > READY_TIMEOUT || !matches!(spawn.try_wait(), Ok(None)) {
                return Err(format!("tree never said READY: {}", read_lossy(&status)));
            }
            sleep(Duration::from_millis(20));
        }
        let child_of = |pid: i32| {
            read_lossy(Path::new(&format!("/proc/{pid}/task/{pid}/children")))
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .ok_or(format!("pid {pid} has no child"))
        };
        // reaper -> spawn (the tree's root, or with --pidns the init's parent) -> init.
        let mut target = child_of(spawn.id() as i32)?;
        if pidns {
            target = child_of(target)?;
        }
        let images = dir.join("img");
        create_images_dir(&images)?;
        let out = run_cryo(
            &os(&dump_args(target, &images, &[])),
            &images,
            &[],
            &dir.join("dump.out"),
        )?;
        if !out.status.success() {
            return Err(format!("dump failed: {}", out.show()));
        }
        wait_child_timeout(&mut spawn, Duration::from_secs(30))?
            .ok_or("the dumped tree still runs")?;
        let records = dir.join("reaper");
        let log = dir.join("restore.out");
        let mut reaper =
            reaper_restore_command(&bin.join("reaper"), &records, &cryo_bin(), &images, &log)?;
        let mut reaper = reaper
            .args(["-d", "-o", "restore.log", "-v4"])
            .env("CRYO_FAULT_INJECT", "restore-tree")
            .spawn()
            .map_err(|e| format!("start reaper: {e}"))?;
        let ended = wait_child_timeout(&mut reaper, Duration::from_secs(60))?;
        if ended.is_none() {
            let _ = reaper.kill();
            let _ = reaper.wait();
            return Err(format!(
                "a task is left behind after the failed restore:\n{}",
                read_lossy(&log)
            ));
        }
        let st = reaper_cmd_status(&records).ok_or("the reaper did not record cryo")?;
        let out = CryoOut {
            status: ExitStatus::from_raw(st),
            output: read_lossy(&log),
            stream: "stderr",
        };
        out.expect_clean_failure("restore with a fault injected")?;
        out.expect_mentions("restore with a fault injected", &["restore-tree"])
    })();
    if matches!(spawn.try_wait(), Ok(None)) {
        let _ = spawn.kill();
        let _ = spawn.wait();
    }
    match result {
        Ok(()) => {
            let _ = fs::remove_dir_all(&dir);
            Ok(())
        }
        Err(e) => Err(format!("{label}: {e} (case directory {})", dir.display())),
    }
}

#[test]
fn failed_restore_kills_the_tree() {
    let _serial = serial();
    if !fault_injection_built("failed_restore_kills_the_tree") {
        return;
    }
    failed_restore_case(false).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn failed_restore_kills_a_pid_namespace() {
    let _serial = serial();
    if !fault_injection_built("failed_restore_kills_a_pid_namespace") {
        return;
    }
    failed_restore_case(true).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// 8. A parent blocked in vfork() cannot be stopped: a clear error, soon, and nothing touched

/// `tests/failure/vfork_parent.c`: TOP forks PARENT, which waits in vfork() for CHILD, which
/// pauses. A dump of PARENT, and of TOP (PARENT in its tree), fails soon (before the 10 s seize
/// timeout) saying that PARENT is in vfork() waiting for CHILD; TOP is released as it was,
/// PARENT still waits in vfork() and CHILD still pauses, none traced; once CHILD is killed,
/// PARENT carries on and the whole program exits 0.
#[test]
fn dump_of_a_vfork_parent() {
    use std::io::BufRead;
    let _serial = serial();
    let dir = plain_dir("refused-vfork-parent");
    let bin = dir.join("vfork_parent");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/failure/vfork_parent.c");
    gcc(&src, &bin).unwrap_or_else(|e| panic!("{e}"));
    let mut top = Command::new(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let top_pid = top.id() as i32;
    let mut lines = std::io::BufReader::new(top.stdout.take().expect("stdout")).lines();
    let mut ours: Vec<i32> = Vec::new();
    let res = (|| -> Res<()> {
        let line = lines
            .next()
            .ok_or("vfork_parent said nothing")?
            .map_err(|e| format!("read vfork_parent: {e}"))?;
        let (parent, child) = line
            .split_once(' ')
            .and_then(|(p, c)| Some((p.parse::<i32>().ok()?, c.parse::<i32>().ok()?)))
            .ok_or_else(|| format!("vfork_parent said {line:?}"))?;
        ours.extend([child, parent]);
        let start = Instant::now();
        while proc_state(parent) != Some('D') {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "pid {parent} is not in vfork: {:?}",
                    proc_state(parent)
                ));
            }
            sleep(Duration::from_millis(10));
        }
        let before = snapshot(top_pid)?;
        let (p, c) = (parent.to_string(), child.to_string());
        for (label, target) in [("parent", parent), ("top", top_pid)] {
            let images = dir.join(format!("img-{label}"));
            fs::create_dir_all(&images).map_err(|e| format!("create images dir: {e}"))?;
            let args = dump_args(target, &images, &[]);
            let t0 = Instant::now();
            let out = run_cryo(
                &os(&args),
                &dir,
                &[],
                &dir.join(format!("dump-{label}.out")),
            )?;
            let took = t0.elapsed();
            let what = format!("dump of the vfork {label}");
            out.expect_clean_failure(&what)?;
            out.expect_mentions(
                &what,
                &[&format!("pid {p} is in vfork()"), &c, "exec or exit"],
            )?;
            if took >= Duration::from_secs(9) {
                return Err(format!(
                    "{what} took {took:?}: the seize timeout, not a detection"
                ));
            }
            check_released(top_pid, &before, &what)?;
            for (pid, state) in [(parent, 'D'), (child, 'S')] {
                if proc_state(pid) != Some(state) {
                    return Err(format!(
                        "pid {pid} is in state {:?} after the {what}, {state} before",
                        proc_state(pid)
                    ));
                }
                let tracer = status_field(pid, "TracerPid")?;
                if tracer != "0" {
                    return Err(format!("pid {pid} is traced by {tracer} after the {what}"));
                }
            }
        }
        // Released: the parent returns from vfork() and everything ends well.
        send_signal(child, "KILL")?;
        let line = lines
            .next()
            .ok_or("vfork_parent ended without RELEASED")?
            .map_err(|e| format!("read vfork_parent: {e}"))?;
        if line != "RELEASED" {
            return Err(format!("vfork_parent said {line:?}, not RELEASED"));
        }
        let st = wait_child_timeout(&mut top, Duration::from_secs(10))?
            .ok_or("vfork_parent did not exit")?;
        if st.code() != Some(0) {
            return Err(format!("vfork_parent ended with {}", describe(st)));
        }
        Ok(())
    })();
    if res.is_err() {
        // The child and the parent are ours too (started by `top`): killed by the pids they
        // told.
        for pid in ours {
            let _ = send_signal(pid, "KILL");
        }
        let _ = top.kill();
    }
    let _ = top.wait();
    res.unwrap_or_else(|e| panic!("{e}"));
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 9. A page copy that fails at restore is read another way

/// `CRYO_FAULT_INJECT=restore-copy` (test builds) fails every UFFDIO_COPY of the copier
/// threads: the restore must read those VMAs with pread in the puppet instead, and the program
/// find its memory as it was (heap_hash hashes a heap of many MiB, copied in several pieces).
#[test]
fn a_failed_page_copy_is_read_with_pread() {
    let _serial = serial();
    if !fault_injection_built("a_failed_page_copy_is_read_with_pread") {
        return;
    }
    with_scenario("heap_hash", "copy-fallback", |s| {
        let pid = s.pid;
        let (images, out) = dump(s, "img", &[], &[])?;
        if !out.status.success() {
            return Err(format!("dump failed: {}", out.show()));
        }
        let child = s.child.as_mut().ok_or("no original")?;
        wait_child_timeout(child, Duration::from_secs(30))?
            .ok_or_else(|| format!("pid {pid} still runs after dump"))?;
        s.child = None;
        let run = restore_with(
            s,
            &images,
            "restore",
            &[("CRYO_FAULT_INJECT", "restore-copy")],
        )?;
        if !run.out.status.success() {
            return Err(format!(
                "restore with failing copies failed: {}",
                run.out.show()
            ));
        }
        let log = read_lossy(&images.join("restore.log"));
        if !log.contains("reading with pread") {
            return Err("the restore log never says it read a VMA with pread".into());
        }
        s.finish_restored(pid, &run.records)
    });
}
