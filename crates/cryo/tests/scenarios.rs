//! End-to-end checkpoint/restore tests: the scenario programs of `tests/scenarios/` driven
//! through the real `cryo` binary (DESIGN.md section 7).
//!
//! # Scenario protocol
//! A scenario (a C program, or `python.py`) gets two environment variables:
//! `CRYO_SCENARIO_TMP`, a fresh directory for its files, and `CRYO_SCENARIO_STATUS`, the path of
//! its status file. It appends lines to the status file (O_APPEND): `READY` once its state is set
//! up, then after SIGTERM `PASS` (exit 0) or `FAIL <reason>` (exit 1); `SKIP <name>: <reason>`
//! (exit 0) if it cannot run here; `INFO <text>` lines are only shown. `scenarios/scenario.h`
//! holds the C side.
//!
//! # What a case does
//! Each scenario is started through `scenarios/support/spawn.c` (which closes every descriptor
//! above 2 and makes it a session and process group leader) with stdin from /dev/null and
//! stdout/stderr appended to files of the case directory, and is run in the modes that apply to
//! it:
//! - `plain`: `cryo dump` (which kills it), `cryo restore -d`, same PID, SIGTERM, verdict;
//! - `leave_running`: `cryo dump -R`, the original must still run (not stopped) and PASS after
//!   SIGTERM, then the images are restored, SIGTERM, verdict;
//! - `iterations`: three dump+restore cycles, then SIGTERM, verdict.
//! - `new_pidns`: `cryo dump`, `cryo restore -d --new-pidns`: the restored task must have its
//!   PID inside a new pid namespace whose init is cryo's; SIGTERM, verdict.
//! - `pidns_init`: the scenario runs as the init (PID 1, session leader) of a pid namespace of
//!   its own (`spawn --pidns`) and is dumped with it; `cryo restore -d` must make it PID 1 of a
//!   new namespace, with the rest of its tree inside at their PIDs; that restored namespace is
//!   dumped and restored once more; SIGTERM, verdict.
//!
//! After every dump each file of the images directory must be mode 0600 and every `*.img` but
//! `pages-*.img` must survive `crit decode | crit encode` (Debian's `/usr/bin/crit`): byte for
//! byte, or where crit 3.17 drops fields it does not know, with the same decoded JSON. `cryo restore` runs under `scenarios/support/reaper.c`, a child subreaper
//! that reaps the restored tree and records the exit statuses, so the harness needs no
//! `waitpid()` of its own. Cases run one at a time. The `tamper` tests check that scenarios do
//! fail when their state is changed behind their back.
//!
//! # Environment knobs
//! - `CRYO_SCENARIO_NO_CR=1`: no dump/restore: start, READY, 1 s, SIGTERM, verdict (only the
//!   `plain` tests run; the others return at once). For checking scenarios without cryo.
//! - `CRYO_TEST_STRICT=1`: a SKIP (scenario or missing crit) is a failure.
//! - `CRYO_BIN=PATH`: the binary to test instead of this crate's `cryo` (e.g. `criu`).
//! - `CRYO_SCENARIO_NO_CRIT=1`: crit round-trip failures are printed, not fatal (for debugging
//!   restore while an image format issue is open).
//! - `CRYO_SCENARIO_KEEP=1`: keep the case directories of passing cases too (under
//!   `target/tmp/scenarios/`); failing ones are always kept.

mod common;
use common::{
    alive, cryo_bin, describe, env_flag, gcc, proc_state, reaper_records, send_signal, sources_dir,
    strict, tail, wait_child_timeout, Res,
};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a scenario may take to set itself up (heap_hash fills 256 MiB).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a scenario may take to verify after SIGTERM.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `cryo dump` or `cryo restore` may take.
const CRYO_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a dumped task may take to disappear.
const GONE_TIMEOUT: Duration = Duration::from_secs(30);
/// Dump/restore cycles of the `iterations` mode.
const ITERATIONS: usize = 3;
const CRIT: &str = "/usr/bin/crit";
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Cases run one at a time: they reuse PIDs and want the CPUs.
static SERIAL: Mutex<()> = Mutex::new(());
/// The directory of the built scenario binaries, built once per test run.
static BUILT: OnceLock<Res<PathBuf>> = OnceLock::new();

/// One scenario: its name (the test module), its source file and its arguments.
struct Spec {
    name: &'static str,
    source: &'static str,
    args: &'static [&'static str],
}

impl Spec {
    /// Runs on a terminal of its own (stdin and controlling tty), dumped and restored as a
    /// shell job.
    fn needs_tty(&self) -> bool {
        self.args.contains(&"read_tty")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    LeaveRunning,
    Iterations,
    NewPidns,
    PidnsInit,
}

impl Mode {
    fn from_name(name: &str) -> Mode {
        match name {
            "plain" => Mode::Plain,
            "leave_running" => Mode::LeaveRunning,
            "iterations" => Mode::Iterations,
            "new_pidns" => Mode::NewPidns,
            "pidns_init" => Mode::PidnsInit,
            other => panic!("unknown mode {other}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::LeaveRunning => "leave_running",
            Mode::Iterations => "iterations",
            Mode::NewPidns => "new_pidns",
            Mode::PidnsInit => "pidns_init",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

fn no_cr() -> bool {
    env_flag("CRYO_SCENARIO_NO_CR")
}

fn work_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scenarios")
}

fn python() -> PathBuf {
    if Path::new(SYSTEM_PYTHON).exists() {
        PathBuf::from(SYSTEM_PYTHON)
    } else {
        PathBuf::from("python3")
    }
}

// ---------------------------------------------------------------------------------------------
// Building

/// Build every `tests/scenarios/*.c` and the helpers of `support/` into
/// `target/tmp/scenarios/bin`.
fn build_all() -> Res<PathBuf> {
    let bin = work_root().join("bin");
    fs::create_dir_all(&bin).map_err(|e| format!("create {}: {e}", bin.display()))?;
    let dir = sources_dir();
    let entries = fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "c") {
            let stem = path.file_stem().unwrap_or_default();
            gcc(&path, &bin.join(stem))?;
        }
    }
    gcc(&dir.join("support/reaper.c"), &bin.join("reaper"))?;
    gcc(&dir.join("support/spawn.c"), &bin.join("spawn"))?;
    Ok(bin)
}

fn built() -> Res<PathBuf> {
    BUILT.get_or_init(build_all).clone()
}

// ---------------------------------------------------------------------------------------------
// Processes, without waitpid(): /proc and the `kill` program

/// Fields of /proc/PID/stat after the comm, starting with the state (field 3).
fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Describe a raw wait status.
fn describe_status(raw: i32) -> String {
    describe(ExitStatus::from_raw(raw))
}

// ---------------------------------------------------------------------------------------------
// A case: one scenario in one mode

/// A `cryo restore` run under the reaper, and what it restored.
struct Restore {
    reaper: Child,
    out: PathBuf,
}

impl Restore {
    fn exit_of(&self, kind: &str, pid: Option<i32>) -> Option<(i32, i32)> {
        reaper_records(&self.out)
            .into_iter()
            .find(|(k, p, _)| k == kind && pid.is_none_or(|want| *p == want))
            .map(|(_, p, s)| (p, s))
    }
}

struct Case {
    spec: &'static Spec,
    mode: Mode,
    dir: PathBuf,
    tmp: PathBuf,
    status: PathBuf,
    /// The binary or script path, to recognise our tasks in /proc/PID/cmdline.
    program: PathBuf,
    original: Option<Child>,
    restores: Vec<Restore>,
    /// Every PID a task of this case had (original and restored).
    pids: Vec<i32>,
    /// Status-file lines already consumed.
    seen: usize,
    dumps: usize,
    journal: String,
}

impl Case {
    fn new(spec: &'static Spec, mode: Mode, label: &str) -> Res<Case> {
        let bin = built()?;
        let dir = work_root()
            .join("cases")
            .join(format!("{}-{label}", spec.name));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
        }
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let program = if spec.source.ends_with(".py") {
            sources_dir().join(spec.source)
        } else {
            bin.join(spec.source.trim_end_matches(".c"))
        };
        let status = dir.join("status");
        Ok(Case {
            spec,
            mode,
            status,
            tmp,
            program,
            dir,
            original: None,
            restores: Vec::new(),
            pids: Vec::new(),
            seen: 0,
            dumps: 0,
            journal: String::new(),
        })
    }

    fn note(&mut self, msg: impl AsRef<str>) {
        let _ = writeln!(self.journal, "{}", msg.as_ref());
    }

    fn append_file(&self, name: &str) -> Res<File> {
        let path = self.dir.join(name);
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))
    }

    /// Start the scenario as its own session leader; return its PID.
    fn start(&mut self) -> Res<i32> {
        File::create(&self.status).map_err(|e| format!("create status file: {e}"))?;
        let mut cmd = Command::new(built()?.join("spawn"));
        if self.spec.needs_tty() {
            cmd.arg("--pty");
        }
        if self.mode == Mode::PidnsInit {
            cmd.arg("--pidns");
        }
        if self.spec.source.ends_with(".py") {
            cmd.arg(python());
        }
        cmd.arg(&self.program)
            .args(self.spec.args)
            .env("CRYO_SCENARIO_TMP", &self.tmp)
            .env("CRYO_SCENARIO_STATUS", &self.status)
            .current_dir(&self.tmp)
            .stdin(Stdio::null())
            .stdout(self.append_file("stdout")?)
            .stderr(self.append_file("stderr")?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.program.display()))?;
        let mut pid = child.id() as i32;
        self.original = Some(child);
        self.pids.push(pid);
        if self.mode == Mode::PidnsInit {
            // The scenario is spawn's only child, the init of the new namespace.
            let wrapper = pid;
            let start = Instant::now();
            pid = loop {
                let kids = fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
                    .unwrap_or_default();
                if let Some(p) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
                    break p;
                }
                if start.elapsed() > READY_TIMEOUT {
                    return Err(format!("spawn --pidns (pid {wrapper}) started no init"));
                }
                sleep(Duration::from_millis(10));
            };
            self.pids.push(pid);
            self.check_pidns_init(pid)?;
        }
        self.note(format!(
            "started {} {:?} as pid {pid}",
            self.program.display(),
            self.spec.args
        ));
        Ok(pid)
    }

    fn status_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.status)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Wait for the next status line (after those seen) that is not INFO; `gone` says whether
    /// the task died, so a task that exits without a word is not waited for until the timeout.
    fn next_line(
        &mut self,
        timeout: Duration,
        mut gone: impl FnMut(&mut Case) -> bool,
    ) -> Res<String> {
        let start = Instant::now();
        let mut dead_since: Option<Instant> = None;
        loop {
            let lines = self.status_lines();
            while self.seen < lines.len() {
                let line = lines[self.seen].clone();
                self.seen += 1;
                self.note(format!("status: {line}"));
                if !line.starts_with("INFO") {
                    return Ok(line);
                }
            }
            if gone(self) {
                // Give the last write a moment to land.
                let since = *dead_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    return Err("the scenario died without a status line".into());
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("no status line within {timeout:?}"));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn original_gone(case: &mut Case) -> bool {
        match case.original.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Wait for READY. Ok(None) means READY; Ok(Some(reason)) a SKIP.
    fn wait_ready(&mut self) -> Res<Option<String>> {
        let line = self.next_line(READY_TIMEOUT, Case::original_gone)?;
        if line == "READY" {
            Ok(None)
        } else if let Some(reason) = line.strip_prefix("SKIP ") {
            Ok(Some(reason.to_owned()))
        } else {
            Err(format!("expected READY, got {line:?}"))
        }
    }

    fn parse_verdict(line: &str) -> Res<Verdict> {
        if line == "PASS" {
            Ok(Verdict::Pass)
        } else if let Some(r) = line.strip_prefix("FAIL") {
            Ok(Verdict::Fail(r.trim().to_owned()))
        } else if let Some(r) = line.strip_prefix("SKIP ") {
            Ok(Verdict::Skip(r.to_owned()))
        } else {
            Err(format!("expected a verdict, got {line:?}"))
        }
    }

    /// SIGTERM the original task (our child), take its verdict and exit status.
    fn finish_original(&mut self) -> Res<(Verdict, i32)> {
        let pid = self
            .original
            .as_ref()
            .map(|c| c.id() as i32)
            .ok_or("no original task")?;
        send_signal(pid, "TERM")?;
        let line = match self.next_line(VERDICT_TIMEOUT, Case::original_gone) {
            Ok(line) => line,
            Err(e) => {
                let how = match self.original.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(st))) => describe_status(st.into_raw()),
                    _ => "still running".into(),
                };
                return Err(format!("pid {pid}: {e} ({how})"));
            }
        };
        let verdict = Case::parse_verdict(&line)?;
        let child = self.original.as_mut().ok_or("no original task")?;
        let st = wait_child_timeout(child, VERDICT_TIMEOUT)?
            .ok_or_else(|| format!("pid {pid} did not exit after its verdict"))?;
        self.original = None;
        Ok((verdict, st.into_raw()))
    }

    /// SIGTERM a restored task, take its verdict and exit status (from the reaper).
    fn finish_restored(&mut self, pid: i32) -> Res<(Verdict, i32)> {
        self.finish_restored_via(pid, pid)
    }

    /// SIGTERM to restored `pid`, its verdict, and the wait status of `waited` (`pid` itself,
    /// or the init of its pid namespace, which exits with its status).
    fn finish_restored_via(&mut self, pid: i32, waited: i32) -> Res<(Verdict, i32)> {
        send_signal(pid, "TERM")?;
        let line = match self.next_line(VERDICT_TIMEOUT, |_| !alive(pid)) {
            Ok(line) => line,
            Err(e) => {
                let how = self
                    .restored_exit(pid, Duration::from_secs(1))
                    .map(describe_status)
                    .unwrap_or_else(|_| "no exit recorded".into());
                return Err(format!("restored pid {pid}: {e} ({how})"));
            }
        };
        let verdict = Case::parse_verdict(&line)?;
        let status = self.restored_exit(waited, VERDICT_TIMEOUT)?;
        Ok((verdict, status))
    }

    /// `--new-pidns`: restored `global` (its PID here) must be `original` inside a pid
    /// namespace other than ours, a child of that namespace's init; returns the init's PID.
    fn check_in_new_pidns(&mut self, original: i32, global: i32) -> Res<i32> {
        let nspid = nspid_elsewhere(global)?;
        if nspid != [global, original] {
            return Err(format!(
                "restored pid {global} has NSpid {nspid:?}, want [{global}, {original}]"
            ));
        }
        let ppid = proc_stat_fields(global)
            .and_then(|f| f.get(1).and_then(|p| p.parse::<i32>().ok()))
            .ok_or_else(|| format!("no parent of restored pid {global}"))?;
        let init_nspid = fs::read_to_string(format!("/proc/{ppid}/status")).unwrap_or_default();
        if !init_nspid
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"))
        {
            return Err(format!(
                "the parent {ppid} of restored pid {global} is not PID 1 of its namespace"
            ));
        }
        self.pids.push(ppid);
        self.note(format!(
            "restored as pid {original} in a new pid namespace (here {global}, init {ppid})"
        ));
        Ok(ppid)
    }

    /// `pid` (a PID here) must be PID 1 of a pid namespace other than ours.
    fn check_pidns_init(&mut self, pid: i32) -> Res<()> {
        let nspid = nspid_elsewhere(pid)?;
        if nspid != [pid, 1] {
            return Err(format!("pid {pid} has NSpid {nspid:?}, want [{pid}, 1]"));
        }
        self.note(format!("pid {pid} is the init of its own pid namespace"));
        Ok(())
    }

    /// The raw wait status of restored `pid`, recorded by the last reaper.
    fn restored_exit(&mut self, pid: i32, timeout: Duration) -> Res<i32> {
        let start = Instant::now();
        loop {
            let restore = self.restores.last().ok_or("nothing was restored")?;
            if let Some((_, st)) = restore.exit_of("exit", Some(pid)) {
                return Ok(st);
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "restored pid {pid} did not exit within {timeout:?}"
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn check_verdict(&mut self, who: &str, verdict: Verdict, raw: i32) -> Res<()> {
        self.note(format!("{who}: {verdict:?}, {}", describe_status(raw)));
        let st = ExitStatus::from_raw(raw);
        match verdict {
            Verdict::Pass if st.code() == Some(0) => Ok(()),
            Verdict::Pass => Err(format!(
                "{who} said PASS but ended with {}",
                describe_status(raw)
            )),
            Verdict::Fail(r) => Err(format!("{who} FAIL: {r} ({})", describe_status(raw))),
            Verdict::Skip(r) => Err(format!("{who} said SKIP after READY: {r}")),
        }
    }

    fn run_cryo(&mut self, what: &str, mut cmd: Command, cwd: &Path) -> Res<()> {
        let out = self.append_file(&format!("{what}.out"))?;
        let err = out.try_clone().map_err(|e| format!("dup: {e}"))?;
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.note(format!("run {cmd:?}"));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{what}: start {}: {e}", cryo_bin().display()))?;
        let st = match wait_child_timeout(&mut child, CRYO_TIMEOUT)? {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no exit within {CRYO_TIMEOUT:?}"));
            }
        };
        if !st.success() {
            return Err(format!("{what}: {}", describe_status(st.into_raw())));
        }
        Ok(())
    }

    /// `cryo dump` of `pid` into a new images directory; returns the directory.
    fn dump(&mut self, pid: i32, leave_running: bool) -> Res<PathBuf> {
        self.dumps += 1;
        let images = self.dir.join(format!("img-{}", self.dumps));
        fs::create_dir(&images).map_err(|e| format!("create {}: {e}", images.display()))?;
        fs::set_permissions(&images, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", images.display()))?;
        let mut cmd = Command::new(cryo_bin());
        cmd.args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(&images)
            .args(["-o", "dump.log", "-v4"]);
        if leave_running {
            cmd.arg("-R");
        }
        if self.spec.needs_tty() {
            cmd.arg("--shell-job");
        }
        let what = format!("dump-{}", self.dumps);
        self.run_cryo(&what, cmd, &images)?;
        Ok(images)
    }

    /// `cryo restore -d` of `images` under a reaper; returns the restored PID (from --pidfile).
    fn restore(&mut self, images: &Path) -> Res<i32> {
        let n = self.restores.len() + 1;
        let pidfile = self.dir.join(format!("restore-{n}.pid"));
        let out = self.dir.join(format!("reaper-{n}.txt"));
        let log = self.append_file(&format!("restore-{n}.out"))?;
        let log2 = log.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut cmd = Command::new(built()?.join("reaper"));
        cmd.arg(&out)
            .arg(cryo_bin())
            .args(["restore", "-D"])
            .arg(images)
            .args(["-d", "--pidfile"])
            .arg(&pidfile)
            .args(["-o", "restore.log", "-v4"])
            .args(if self.mode == Mode::NewPidns {
                &["--new-pidns"][..]
            } else {
                &[]
            })
            .args(if self.spec.needs_tty() {
                &["--shell-job"][..]
            } else {
                &[]
            })
            .current_dir(images)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        self.note(format!("run {cmd:?}"));
        let reaper = cmd.spawn().map_err(|e| format!("start reaper: {e}"))?;
        self.restores.push(Restore { reaper, out });
        let start = Instant::now();
        let status = loop {
            let r = self.restores.last_mut().ok_or("no restore")?;
            if let Some((_, st)) = r.exit_of("cmd", None) {
                break st;
            }
            if !matches!(r.reaper.try_wait(), Ok(None)) && r.exit_of("cmd", None).is_none() {
                return Err("restore: the reaper died".into());
            }
            if start.elapsed() > CRYO_TIMEOUT {
                return Err(format!("restore: no exit within {CRYO_TIMEOUT:?}"));
            }
            sleep(Duration::from_millis(20));
        };
        // Note every task the restore brought back (for cleanup) before judging it.
        let text = fs::read_to_string(&pidfile).unwrap_or_default();
        let pid: Option<i32> = text.trim().parse().ok();
        if let Some(pid) = pid {
            self.pids.push(pid);
        }
        if !ExitStatus::from_raw(status).success() {
            return Err(format!("restore-{n}: {}", describe_status(status)));
        }
        let pid = pid.ok_or_else(|| format!("restore-{n}: pidfile holds {text:?}"))?;
        self.note(format!("restored pid {pid}"));
        Ok(pid)
    }

    /// Wait until `pid` (dumped and killed) is gone: the original task (our child) or the last
    /// restored one (reaped by the last reaper).
    fn wait_dumped_gone(&mut self, pid: i32) -> Res<()> {
        if let Some(child) = self.original.as_mut() {
            let st = wait_child_timeout(child, GONE_TIMEOUT)?
                .ok_or_else(|| format!("pid {pid} still runs after dump"))?;
            self.note(format!(
                "original pid {pid} after dump: {}",
                describe_status(st.into_raw())
            ));
            self.original = None;
        } else {
            let st = self
                .restored_exit(pid, GONE_TIMEOUT)
                .map_err(|_| format!("restored pid {pid} still runs after dump"))?;
            self.note(format!(
                "restored pid {pid} after dump: {}",
                describe_status(st)
            ));
        }
        Ok(())
    }

    fn check_same_pid(&self, want: i32, got: i32) -> Res<()> {
        if want != got {
            return Err(format!("restored with pid {got}, expected {want}"));
        }
        if !alive(got) {
            return Err(format!("restored pid {got} is not running"));
        }
        Ok(())
    }

    /// Every file of the images directory is 0600; `cryo crit validate` finds the set
    /// restorable; every image survives the crit round trip.
    fn check_images(&mut self, images: &Path) -> Res<()> {
        let mut problems = Vec::new();
        let mut imgs = Vec::new();
        let entries =
            fs::read_dir(images).map_err(|e| format!("read {}: {e}", images.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", images.display()))?;
            let path = entry.path();
            let meta =
                fs::symlink_metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
            if !meta.is_file() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode != 0o600 {
                problems.push(format!("{} has mode {mode:04o}, not 0600", path.display()));
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".img") && !name.starts_with("pages-") {
                imgs.push(path);
            }
        }
        if imgs.is_empty() {
            problems.push(format!("no *.img in {}", images.display()));
        }
        // cryo's own validator must find the set restorable.
        let out = Command::new(cryo_bin())
            .args(["crit", "validate"])
            .arg(images)
            .output()
            .map_err(|e| format!("run cryo crit validate: {e}"))?;
        if !out.status.success() {
            problems.push(format!(
                "cryo crit validate {}: {}",
                images.display(),
                String::from_utf8_lossy(&out.stdout).trim_end()
            ));
        }
        if Path::new(CRIT).exists() {
            let work = self.dir.join("crit");
            fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
            imgs.sort();
            for img in &imgs {
                if let Err(e) = crit_round_trip(img, &work) {
                    if env_flag("CRYO_SCENARIO_NO_CRIT") {
                        eprintln!("ignored (CRYO_SCENARIO_NO_CRIT): {e}");
                        self.note(format!("ignored: {e}"));
                    } else {
                        problems.push(e);
                    }
                }
            }
            self.note(format!(
                "crit round trip of {} images in {}",
                imgs.len(),
                images.display()
            ));
        } else if strict() {
            problems.push("crit is not installed (CRYO_TEST_STRICT=1)".into());
        } else {
            eprintln!("SKIP crit: not installed");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The text shown when the case fails.
    fn diagnostics(&self) -> String {
        let mut s = format!(
            "--- harness journal of {}:\n{}",
            self.dir.display(),
            self.journal
        );
        let mut files: Vec<PathBuf> = vec![
            self.status.clone(),
            self.dir.join("stdout"),
            self.dir.join("stderr"),
        ];
        if let Ok(entries) = fs::read_dir(&self.dir) {
            let mut more: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.ends_with(".out") || n.starts_with("reaper-")
                })
                .collect();
            for i in 1..=self.dumps {
                let images = self.dir.join(format!("img-{i}"));
                more.push(images.join("dump.log"));
                more.push(images.join("restore.log"));
            }
            more.sort();
            files.extend(more);
        }
        for f in files {
            if f.exists() {
                let _ = write!(s, "--- tail of {}:\n{}\n", f.display(), tail(&f, 40));
            }
        }
        s
    }

    /// Our task still at `pid`? (the PID could have been reused after the task died)
    fn ours(&self, pid: i32) -> bool {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let needle = self.program.as_os_str().as_encoded_bytes();
        cmdline.windows(needle.len()).any(|w| w == needle)
    }

    /// Kill whatever is left of this case.
    fn cleanup(&mut self) {
        let pids = self.pids.clone();
        for pid in pids {
            if alive(pid) && self.ours(pid) {
                self.note(format!("cleanup: kill -9 {pid}"));
                let _ = send_signal(pid, "KILL");
            }
        }
        if let Some(mut child) = self.original.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for r in &mut self.restores {
            if wait_child_timeout(&mut r.reaper, Duration::from_secs(10))
                .ok()
                .flatten()
                .is_none()
            {
                let _ = r.reaper.kill();
                let _ = r.reaper.wait();
            }
        }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The PIDs of `pid` from our pid namespace down to its own (`NSpid`); it must be in a pid
/// namespace other than ours.
fn nspid_elsewhere(pid: i32) -> Res<Vec<i32>> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("pid {pid}: {e}"))?;
    let ns = |p: &str| fs::read_link(p).map_err(|e| format!("{p}: {e}"));
    if ns(&format!("/proc/{pid}/ns/pid"))? == ns("/proc/self/ns/pid")? {
        return Err(format!("pid {pid} is in our pid namespace"));
    }
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// Run Debian's crit with `verb` from `from` to `to`.
fn run_crit(verb: &str, from: &Path, to: &Path) -> Res<()> {
    let out = Command::new(SYSTEM_PYTHON)
        .arg(CRIT)
        .arg(verb)
        .arg("-i")
        .arg(from)
        .arg("-o")
        .arg(to)
        .output()
        .map_err(|e| format!("run crit {verb}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "crit {verb} {} failed: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(())
}

/// `crit decode` then `crit encode` of one image must give back its bytes, except for fields
/// Debian's crit 3.17 does not know (it drops them on encode: `creds.no_new_privs`,
/// `creds.cap_amb`, `pagemap_entry.nr_pages`, which CRIU 4.2 writes): then decoding the
/// re-encoded image must show exactly what decoding the original showed.
fn crit_round_trip(img: &Path, work: &Path) -> Res<()> {
    let name = img
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let json = work.join(format!("{name}.json"));
    let back = work.join(format!("{name}.back"));
    let json2 = work.join(format!("{name}.back.json"));
    run_crit("decode", img, &json)?;
    run_crit("encode", &json, &back)?;
    let a = fs::read(img).map_err(|e| format!("read {}: {e}", img.display()))?;
    let b = fs::read(&back).map_err(|e| format!("read {}: {e}", back.display()))?;
    if a == b {
        return Ok(());
    }
    run_crit("decode", &back, &json2)?;
    let ja = fs::read(&json).map_err(|e| format!("read {}: {e}", json.display()))?;
    let jb = fs::read(&json2).map_err(|e| format!("read {}: {e}", json2.display()))?;
    if ja != jb {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return Err(format!(
            "crit decode|encode of {name} loses data: {} bytes vs {} bytes, first difference at {at}",
            a.len(),
            b.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The modes

enum Outcome {
    Passed,
    Skipped(String),
}

fn run_case(case: &mut Case) -> Res<Outcome> {
    let pid = case.start()?;
    if let Some(reason) = case.wait_ready()? {
        return Ok(Outcome::Skipped(reason));
    }
    if let Some(f) = proc_stat_fields(pid) {
        // Field 6 (index 3 here) is the session id.
        if f.get(3).map(String::as_str) != Some(pid.to_string().as_str()) {
            case.note(format!(
                "note: pid {pid} is not a session leader (sid {:?})",
                f.get(3)
            ));
        }
    }
    if no_cr() {
        sleep(Duration::from_secs(1));
        let (v, st) = case.finish_original()?;
        case.check_verdict("scenario", v, st)?;
        return Ok(Outcome::Passed);
    }
    match case.mode {
        Mode::Plain => {
            let images = case.dump(pid, false)?;
            case.wait_dumped_gone(pid)?;
            case.check_images(&images)?;
            let restored = case.restore(&images)?;
            case.check_same_pid(pid, restored)?;
            let (v, st) = case.finish_restored(restored)?;
            case.check_verdict("restored task", v, st)?;
        }
        Mode::LeaveRunning => {
            let images = case.dump(pid, true)?;
            for _ in 0..5 {
                match proc_state(pid) {
                    Some('T' | 't') => {
                        return Err(format!("pid {pid} is left stopped after dump -R"))
                    }
                    Some('Z' | 'X') | None => return Err(format!("pid {pid} died after dump -R")),
                    _ => sleep(Duration::from_millis(100)),
                }
            }
            let (v, st) = case.finish_original()?;
            case.check_verdict("original task after dump -R", v, st)?;
            case.check_images(&images)?;
            let restored = case.restore(&images)?;
            case.check_same_pid(pid, restored)?;
            let (v, st) = case.finish_restored(restored)?;
            case.check_verdict("restored task", v, st)?;
        }
        Mode::NewPidns => {
            let images = case.dump(pid, false)?;
            case.wait_dumped_gone(pid)?;
            case.check_images(&images)?;
            let restored = case.restore(&images)?;
            let init = case.check_in_new_pidns(pid, restored)?;
            let (v, st) = case.finish_restored_via(restored, init)?;
            case.check_verdict("restored task", v, st)?;
        }
        Mode::PidnsInit => {
            // Dumped from the namespace spawn made, then from the one the restore made.
            let mut current = pid;
            for i in 1..=2 {
                let images = case.dump(current, false)?;
                case.wait_dumped_gone(current)?;
                case.check_images(&images)?;
                current = case.restore(&images)?;
                case.check_pidns_init(current)?;
                case.note(format!("pid namespace round {i} done"));
            }
            let (v, st) = case.finish_restored(current)?;
            case.check_verdict("restored task", v, st)?;
        }
        Mode::Iterations => {
            let mut current = pid;
            for i in 1..=ITERATIONS {
                let images = case.dump(current, false)?;
                case.wait_dumped_gone(current)?;
                case.check_images(&images)?;
                current = case.restore(&images)?;
                case.check_same_pid(pid, current)?;
                case.note(format!("iteration {i} done"));
            }
            let (v, st) = case.finish_restored(current)?;
            case.check_verdict("restored task", v, st)?;
        }
    }
    Ok(Outcome::Passed)
}

fn run_test(spec: &'static Spec, mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if no_cr() && mode != Mode::Plain {
        eprintln!(
            "{} {}: not run under CRYO_SCENARIO_NO_CR",
            spec.name,
            mode.name()
        );
        return;
    }
    let mut case = match Case::new(spec, mode, mode.name()) {
        Ok(c) => c,
        Err(e) => panic!("{}: {e}", spec.name),
    };
    let result = run_case(&mut case);
    case.cleanup();
    match result {
        Ok(Outcome::Passed) => {
            if !env_flag("CRYO_SCENARIO_KEEP") {
                let _ = fs::remove_dir_all(&case.dir);
            }
        }
        Ok(Outcome::Skipped(reason)) => {
            eprintln!("SKIP {reason}");
            if !env_flag("CRYO_SCENARIO_KEEP") {
                let _ = fs::remove_dir_all(&case.dir);
            }
            if strict() {
                panic!(
                    "{} {}: skipped under CRYO_TEST_STRICT=1: {reason}",
                    spec.name,
                    mode.name()
                );
            }
        }
        Err(e) => {
            eprintln!("{}", case.diagnostics());
            panic!("{} {}: {e}", spec.name, mode.name());
        }
    }
}

/// One test module per scenario, one #[test] per mode: `counter::plain`, `counter::iterations`…
macro_rules! scenario_tests {
    ($($module:ident: $source:literal $([$($arg:literal),*])? => [$($mode:ident),*];)*) => {
        $(
            mod $module {
                use super::*;
                static SPEC: Spec = Spec {
                    name: stringify!($module),
                    source: $source,
                    args: &[$($($arg),*)?],
                };
                $(
                    #[test]
                    fn $mode() {
                        run_test(&SPEC, Mode::from_name(stringify!($mode)));
                    }
                )*
            }
        )*
    };
}

scenario_tests! {
    counter: "counter.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    heap_hash: "heap_hash.c" => [plain, leave_running, iterations];
    file_mappings: "file_mappings.c" => [plain, leave_running, iterations];
    shm_anon: "shm_anon.c" => [plain, leave_running, iterations];
    avx_register: "avx_register.c" => [plain, leave_running, iterations];
    signals: "signals.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    timers: "timers.c" => [plain, leave_running, iterations];
    blocked_nanosleep: "blocked_syscalls.c" ["nanosleep"] => [plain, leave_running, iterations];
    blocked_futex: "blocked_syscalls.c" ["futex"] => [plain, leave_running, iterations];
    blocked_sigsuspend: "blocked_syscalls.c" ["sigsuspend"] => [plain, leave_running, iterations];
    blocked_poll: "blocked_syscalls.c" ["poll"] => [plain, leave_running, iterations];
    blocked_read_tty: "blocked_syscalls.c" ["read_tty"] => [plain, leave_running, iterations];
    creds: "creds.c" => [plain, leave_running, iterations];
    task_attrs: "task_attrs.c" => [plain, leave_running, iterations];
    // Not leave_running: the original keeps appending to the log after the dump, so a copy
    // restored from that dump cannot find its log as it left it.
    python: "python.py" => [plain, iterations];
    tree: "tree.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    cow: "cow.c" => [plain, leave_running, iterations, new_pidns];
    cow_file: "cow_file.c" => [plain, leave_running, iterations];
    cow_file_deleted: "cow_file_deleted.c" => [plain, leave_running, iterations];
    shared_tables: "shared_tables.c" => [plain, leave_running, iterations];
    shared_files: "shared_files.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    sessions: "sessions.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    session_history: "session_history.c" => [plain, leave_running, iterations, new_pidns];
    open_files: "open_files.c" => [plain, leave_running, iterations];
    dead_leader: "dead_leader.c" => [plain, leave_running, iterations];
    unix_sockets: "unix_sockets.c" => [plain, leave_running, iterations, new_pidns, pidns_init];
    memfd: "memfd.c" => [plain, leave_running, iterations, pidns_init];
    clone_vm: "clone_vm.c" => [plain, leave_running, iterations, pidns_init];
    terminals: "terminals.c" => [plain, leave_running, iterations];
}

// ---------------------------------------------------------------------------------------------
// The scenarios can fail: change their state behind their back, expect FAIL (no cryo involved)

/// Start `spec`, wait READY, call `tamper(pid, case)`, SIGTERM: the verdict must be FAIL.
fn expect_tamper_fails(spec: &'static Spec, tamper: impl FnOnce(i32, &Case) -> Res<()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut case = match Case::new(spec, Mode::Plain, "tamper") {
        Ok(c) => c,
        Err(e) => panic!("{}: {e}", spec.name),
    };
    let result = (|| -> Res<String> {
        let pid = case.start()?;
        if let Some(reason) = case.wait_ready()? {
            return Err(format!("skipped: {reason}"));
        }
        tamper(pid, &case)?;
        sleep(Duration::from_millis(200));
        let (v, st) = case.finish_original()?;
        match v {
            Verdict::Fail(reason) if ExitStatus::from_raw(st).code() == Some(1) => Ok(reason),
            other => Err(format!(
                "tampered scenario gave {other:?} and {}",
                describe_status(st)
            )),
        }
    })();
    case.cleanup();
    match result {
        Ok(reason) => {
            eprintln!("{} failed as it should: {reason}", spec.name);
            let _ = fs::remove_dir_all(&case.dir);
        }
        Err(e) => {
            eprintln!("{}", case.diagnostics());
            panic!("tamper {}: {e}", spec.name);
        }
    }
}

/// Mappings of /proc/PID/maps: (start, end, perms, path).
fn maps(pid: i32) -> Res<Vec<(u64, u64, String, String)>> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("read maps of {pid}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let path = it.nth(3).unwrap_or("").to_owned();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        out.push((s, e, perms.to_owned(), path));
    }
    Ok(out)
}

/// Flip the bits of 8 bytes at `addr` of `pid` through /proc/PID/mem.
fn poke(pid: i32, addr: u64) -> Res<()> {
    let path = format!("/proc/{pid}/mem");
    let mut mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    let mut buf = [0u8; 8];
    mem.seek(SeekFrom::Start(addr))
        .map_err(|e| format!("seek {path}: {e}"))?;
    mem.read_exact(&mut buf)
        .map_err(|e| format!("read {path} at {addr:#x}: {e}"))?;
    for b in &mut buf {
        *b = !*b;
    }
    mem.seek(SeekFrom::Start(addr))
        .map_err(|e| format!("seek {path}: {e}"))?;
    mem.write_all(&buf)
        .map_err(|e| format!("write {path} at {addr:#x}: {e}"))
}

mod tamper {
    use super::*;

    static HEAP: Spec = Spec {
        name: "heap_hash",
        source: "heap_hash.c",
        args: &[],
    };
    static SHM: Spec = Spec {
        name: "shm_anon",
        source: "shm_anon.c",
        args: &[],
    };
    static FILES: Spec = Spec {
        name: "file_mappings",
        source: "file_mappings.c",
        args: &[],
    };
    static SIGNALS: Spec = Spec {
        name: "signals",
        source: "signals.c",
        args: &[],
    };
    static ATTRS: Spec = Spec {
        name: "task_attrs",
        source: "task_attrs.c",
        args: &[],
    };
    static PYTHON: Spec = Spec {
        name: "python",
        source: "python.py",
        args: &[],
    };
    static TIMERS: Spec = Spec {
        name: "timers",
        source: "timers.c",
        args: &[],
    };

    #[test]
    fn heap_hash_notices_a_changed_word() {
        expect_tamper_fails(&HEAP, |pid, _| {
            let big = maps(pid)?
                .into_iter()
                .find(|(s, e, p, _)| p == "rw-p" && e - s >= 256 << 20)
                .ok_or("no 256 MiB mapping")?;
            poke(pid, big.0 + (big.1 - big.0) / 2)
        });
    }

    #[test]
    fn shm_anon_notices_a_changed_shared_page() {
        expect_tamper_fails(&SHM, |pid, _| {
            let shm = maps(pid)?
                .into_iter()
                .find(|(_, _, p, _)| p == "rw-s")
                .ok_or("no shared mapping")?;
            poke(pid, shm.0 + 4096 * 3 + 100)
        });
    }

    #[test]
    fn file_mappings_notices_a_changed_file() {
        expect_tamper_fails(&FILES, |_, case| {
            let path = case.tmp.join("shared.dat");
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            f.seek(SeekFrom::Start(5 * 4096))
                .map_err(|e| e.to_string())?;
            f.write_all(b"tampered").map_err(|e| e.to_string())
        });
    }

    #[test]
    fn signals_notices_an_extra_queued_signal() {
        // SIGRTMIN+2 is 36 with glibc: a third queued instance.
        expect_tamper_fails(&SIGNALS, |pid, _| send_signal(pid, "36"));
    }

    #[test]
    fn task_attrs_notices_a_changed_oom_score_adj() {
        expect_tamper_fails(&ATTRS, |pid, _| {
            fs::write(format!("/proc/{pid}/oom_score_adj"), "7")
                .map_err(|e| format!("write oom_score_adj: {e}"))
        });
    }

    #[test]
    fn timers_notices_a_fired_timer() {
        // SIGUSR1 is what the POSIX timer would send.
        expect_tamper_fails(&TIMERS, |pid, _| send_signal(pid, "USR1"));
    }

    static TERMINALS: Spec = Spec {
        name: "terminals",
        source: "terminals.c",
        args: &[],
    };

    #[test]
    fn terminals_notices_a_byte_more_for_the_master() {
        // Fd 11 is the slave of the pair with data queued: a new open of it writes one byte
        // more into what its master is to read.
        expect_tamper_fails(&TERMINALS, |pid, _| {
            let path = format!("/proc/{pid}/fd/11");
            // cargo's test process leads no session: the open gives it no terminal.
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("open {path}: {e}"))?;
            f.write_all(b"x").map_err(|e| format!("write {path}: {e}"))
        });
    }

    static SESSION_HISTORY: Spec = Spec {
        name: "session_history",
        source: "session_history.c",
        args: &[],
    };

    #[test]
    fn session_history_notices_a_process_that_died() {
        // The root's newest child dies: a zombie now, with its children moved to the root.
        expect_tamper_fails(&SESSION_HISTORY, |pid, _| {
            let path = format!("/proc/{pid}/task/{pid}/children");
            let kids = fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
            let last = kids
                .split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok())
                .filter(|k| {
                    fs::read_to_string(format!("/proc/{k}/stat"))
                        .is_ok_and(|st| st.rsplit(')').next().is_some_and(|r| r.starts_with(" S")))
                })
                .max()
                .ok_or("no live child")?;
            send_signal(last, "KILL")
        });
    }

    #[test]
    fn python_notices_a_foreign_log_line() {
        expect_tamper_fails(&PYTHON, |_, case| {
            let path = case.tmp.join("python.log");
            let mut f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            f.write_all(b"0\n").map_err(|e| e.to_string())
        });
    }
}

#[test]
fn reaper_records_exit_statuses() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = built().expect("build scenarios");
    let dir = work_root().join("reaper-selftest");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create dir");
    let out = dir.join("out");
    // The shell exits 3 and leaves an orphan that exits 5 later: both are recorded.
    let st = Command::new(bin.join("reaper"))
        .arg(&out)
        .args(["sh", "-c", "(sleep 0.2; exit 5) & exit 3"])
        .status()
        .expect("run reaper");
    assert!(st.success());
    let codes: Vec<(String, Option<i32>)> = reaper_records(&out)
        .into_iter()
        .map(|(kind, _, raw)| (kind, ExitStatus::from_raw(raw).code()))
        .collect();
    assert_eq!(
        codes,
        vec![("cmd".to_owned(), Some(3)), ("exit".to_owned(), Some(5))],
        "{}",
        fs::read_to_string(&out).unwrap_or_default()
    );
    let _ = fs::remove_dir_all(&dir);
}
