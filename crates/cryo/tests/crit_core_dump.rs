//! `cryo crit core-dump`, with gdb as the oracle.
//!
//! `gdb_sees_the_checkpointed_process`: `tests/scenarios/coredump_target.c` (built with
//! `-g -O0`) sets up globals, a thread-local per thread, heap data, a large malloc block, a
//! private file mapping with one page written, shared anonymous memory, nested frames with
//! arguments and locals, and known vector registers, then blocks: the main thread in
//! `pause()`, a second thread in `read()` on a pipe. gdb attaches to the live process and
//! records backtraces with locals, every register of every thread (`fs_base`, `gs_base` and
//! `orig_rax` included), variables
//! reached through pointers, the thread-locals, the shared libraries and the source line of
//! each thread's pc; it detaches, `cryo dump` checkpoints the process (and kills it),
//! `cryo crit core-dump` writes `core.PID`, and gdb records the same from
//! `gdb PROGRAM core.PID`. Both views must agree, except where the dump normalised a thread
//! interrupted in a restartable syscall, which is checked rather than skipped: in the core,
//! `rip` = live `rip` - 2 (on a `syscall` instruction), `rax` = live `orig_rax`,
//! `orig_rax` = -1, and frame #0's address is 2 lower (its source line is compared with the
//! live line of `pc - 2`). The expected values are also checked on their own, so two views
//! that fail alike cannot pass. `readelf` checks the file: mode 0600, one `PT_LOAD` per VMA
//! of the live process, the notes per thread.
//!
//! With AVX-512, the target also sets zmm15, zmm16, zmm31, k1 and k7, and the test reads every
//! thread's XSAVE area itself (ptrace) before gdb: the core's k0-k7 and zmm0-31 must be the
//! kernel's (decoded at this CPU's CPUID offsets, zeros for a component whose XSTATE_BV bit is
//! clear) and hold the known values. gdb's live view of those registers joins the comparison
//! when it is the kernel's; gdb before 14 reads them at Intel's offsets, which is wrong on CPUs
//! without the MPX gap (AMD Zen 4), and that disagreement is accepted only on such a CPU.
//!
//! `gdb_sees_a_process_whose_leader_has_exited`: `tests/scenarios/coredump_dead_leader.c`,
//! whose main thread has called `pthread_exit` while two threads block in `pause()` and
//! `read()`, is dumped and converted; the core has the notes of the two live threads only (as
//! the kernel's core of such a process), and gdb shows their frames, arguments and locals and
//! the globals and heap block the leader left.
//!
//! `bad_input_*`: a missing images directory, a pid not in the dump, a truncated pages image,
//! a missing core image and a garbled mm image each give a non-zero exit and an error naming
//! the directory, pid or image, never a panic, and leave no core file. These use a small dump
//! written with `cryo_image` (no process), whose good form converts into a core whose segment
//! holds the dumped page.
//!
//! Without gdb, gcc or readelf the gdb test prints `SKIP`; with `CRYO_TEST_STRICT=1` it fails.
//! Work directories are under `target/tmp/crit-core-dump/`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod common;
use common::{send_signal, wait_child_timeout, Res};
use cryo_image::pagemap::{create_pagemap, PE_PRESENT};
use cryo_image::{pb, write_all_entries, ImageKind};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One gdb run, one cryo run, the target getting ready: each may take this long.
const TIMEOUT: Duration = Duration::from_secs(180);
/// The process tests run one at a time (PIDs, CPU).
static SERIAL: Mutex<()> = Mutex::new(());

fn strict() -> bool {
    std::env::var("CRYO_TEST_STRICT").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn cryo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cryo"))
}

fn work_dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("crit-core-dump")
        .join(tag);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Whether `prog --version` runs.
fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` with stdout and stderr in files of `dir` named after `what`, at most `TIMEOUT`;
/// returns (success, stdout, stderr).
fn run(cmd: &mut Command, what: &str, dir: &Path) -> Res<(bool, String, String)> {
    let out_path = dir.join(format!("{what}.out"));
    let err_path = dir.join(format!("{what}.err"));
    let out = fs::File::create(&out_path).map_err(|e| format!("create {what}.out: {e}"))?;
    let err = fs::File::create(&err_path).map_err(|e| format!("create {what}.err: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: start {cmd:?}: {e}"))?;
    let Some(st) = wait_child_timeout(&mut child, TIMEOUT)? else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{what}: no exit within {TIMEOUT:?}"));
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    Ok((st.success(), read(&out_path), read(&err_path)))
}

fn cryo(args: &[&str], dir: &Path, what: &str) -> (bool, String, String) {
    run(
        Command::new(cryo_bin()).args(args).current_dir(dir),
        what,
        dir,
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The target process

/// The target: killed if still running when dropped.
struct Target {
    child: Child,
    pid: i32,
}

impl Drop for Target {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = send_signal(self.pid, "KILL");
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The syscall a thread sleeps in (`/proc/PID/task/TID/syscall`), if it sleeps in one.
fn sleeping_in(pid: i32, tid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn threads_of(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// Builds `tests/scenarios/NAME.c` with `-g -O0` into `DIR/NAME`.
fn build(dir: &Path, name: &str) -> Res<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/scenarios/{name}.c"));
    let prog = dir.join(name);
    let (ok, _, err) = run(
        Command::new("gcc")
            .args(["-g", "-O0", "-Wall", "-pthread", "-o"])
            .arg(&prog)
            .arg(&src),
        "gcc",
        dir,
    )?;
    if !ok {
        return Err(format!("gcc {}: {err}", src.display()));
    }
    Ok(prog)
}

/// Starts `prog ARGS` in `dir`, its output in `target.out` and `target.err` there.
fn spawn_target(dir: &Path, prog: &Path, args: &[&Path]) -> Res<Target> {
    let child = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("target.out")).map_err(|e| e.to_string())?)
        .stderr(fs::File::create(dir.join("target.err")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("start {}: {e}", prog.display()))?;
    let pid = child.id() as i32;
    Ok(Target { child, pid })
}

/// Builds and starts the target; returns once its main thread sleeps in pause() and the
/// other in read().
fn start_target(dir: &Path) -> Res<(Target, PathBuf)> {
    let prog = build(dir, "coredump_target")?;
    // Three pages the target maps privately: page p holds bytes (16p + i) mod 256.
    let data: Vec<u8> = (0..3 * 4096usize)
        .map(|i| ((i / 4096) * 16 + i % 4096) as u8)
        .collect();
    let data_file = dir.join("data.bin");
    fs::write(&data_file, &data).map_err(|e| format!("write data file: {e}"))?;
    let ready = dir.join("ready");
    let mut target = spawn_target(dir, &prog, &[&ready, &data_file])?;
    let pid = target.pid;
    let start = Instant::now();
    loop {
        let tids = threads_of(pid);
        let settled = fs::read_to_string(&ready).is_ok_and(|t| t.trim() == pid.to_string())
            && tids.len() == 2
            && sleeping_in(pid, pid) == Some(34)
            && tids
                .iter()
                .filter(|t| **t != pid)
                .all(|t| sleeping_in(pid, *t) == Some(0));
        if settled {
            return Ok((target, prog));
        }
        if let Ok(Some(st)) = target.child.try_wait() {
            let err = fs::read_to_string(dir.join("target.err")).unwrap_or_default();
            return Err(format!("target exited early ({st}): {err}"));
        }
        if start.elapsed() > TIMEOUT {
            return Err("target not ready in time".into());
        }
        sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// gdb

/// Expressions printed in both views, with a piece of text each must show.
const VARS: &[(&str, &str)] = &[
    ("g_counter", "= 7"),
    ("g_zero", "= 0"),
    ("g_set_later", "= 24301"),
    ("g_greeting", "\"hello from the checkpoint\""),
    (
        "*g_list",
        "{id = 1, weight = 1.5, label = \"node-1\\000\\000\\000\\000\\000\\000\\000\\000\\000\"",
    ),
    ("*g_list->next->next", "{id = 3, weight = 4.5"),
    ("g_list->next->next->next", "(struct node *) 0x0"),
    ("g_heap[0]@8", "= \"\\001\\004\\a\\n\\r\\020\\023\\026\""),
    ("g_heap[63]", "= 190"),
    ("(char *)(g_big + 100000)", "\"BIGDATA\""),
    ("g_big[99999]", "= 0 '\\000'"),
    ("g_mapped[5]", "= 5 '\\005'"),
    ("(char *)(g_mapped + 4096)", "\"WRITTEN\""),
    ("g_mapped[4096 + 100]", "= 116 't'"),
    ("g_mapped[8192 + 1]", "= 33 '!'"),
    (
        "/x g_shared[0]@4",
        "{0xc0de0000, 0xc0de0001, 0xc0de0002, 0xc0de0003}",
    ),
    ("/x g_shared[1024]", "= 0x0"),
    ("/x $xmm9.v2_int64[0]", "= 0x1122334455667788"),
    ("/x $xmm10.v2_int64[0]", "= 0xbadc0ffee0ddf00"),
];

/// gdb's output cut at the `@@@NAME` markers the command list prints.
type Sections = BTreeMap<String, Vec<String>>;

/// Runs gdb in batch mode: on the live process (`core` None; `pc` adjusted by `pc_delta` in the
/// `line` section) or on a core file. With `avx512`, one section per AVX-512 register (see
/// [`AVX512_REGS`]) prints it as 64-bit lanes.
fn gdb(
    dir: &Path,
    what: &str,
    prog: &Path,
    pid: i32,
    core: Option<&Path>,
    avx512: bool,
) -> Res<Sections> {
    let pc = if core.is_some() { "$pc" } else { "$pc - 2" };
    let mut ex: Vec<String> = Vec::new();
    let mut section = |name: &str, cmds: &[String]| {
        ex.push(format!("echo @@@{name}\\n"));
        ex.extend(cmds.iter().cloned());
    };
    section("bt", &["thread apply all bt full".into()]);
    section("regs", &["thread apply all info all-registers".into()]);
    section("orig", &["thread apply all p/x $orig_rax".into()]);
    // Not in `info all-registers`; the thread pointer, which TLS goes through.
    section(
        "bases",
        &[
            "thread apply all p/x $fs_base".into(),
            "thread apply all p/x $gs_base".into(),
        ],
    );
    section(
        "line",
        &[
            format!("thread apply all info line *({pc})"),
            format!("thread apply all x/i {pc}"),
        ],
    );
    section("tls", &["thread apply all p tls_value".into()]);
    section("libs", &["info sharedlibrary".into()]);
    for (i, (expr, _)) in VARS.iter().enumerate() {
        section(&format!("var{i}"), &[format!("print {expr}")]);
    }
    if avx512 {
        for name in avx512_regs() {
            let expr = if name.starts_with('k') {
                format!("${name}")
            } else {
                format!("${name}.v8_int64")
            };
            section(
                &format!("x-{name}"),
                &[format!("thread apply all p/x {expr}")],
            );
        }
    }
    let pid = pid.to_string();
    let target: Vec<&OsStr> = match core {
        Some(c) => vec![prog.as_os_str(), c.as_os_str()],
        None => vec![prog.as_os_str(), "-p".as_ref(), pid.as_ref()],
    };
    run_gdb(dir, what, &target, ex)
}

/// Runs gdb in batch mode with `target` (the program, and a core or `-p PID`) on the commands
/// `ex`, which print `@@@NAME` markers; returns the output cut at them. gdb must have run them
/// all.
fn run_gdb(dir: &Path, what: &str, target: &[&OsStr], mut ex: Vec<String>) -> Res<Sections> {
    ex.push("echo @@@end\\n".into());
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"])
        .args(["-iex", "set debuginfod enabled off"])
        .args(["-iex", "set pagination off"])
        .args(["-iex", "set width 0"])
        .args(["-iex", "set confirm off"])
        .args(target);
    for e in &ex {
        cmd.arg("-ex").arg(e);
    }
    let (_, out, err) = run(&mut cmd, what, dir)?;
    let mut sections = Sections::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@@") {
            cur = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
        } else if let Some(c) = &cur {
            sections
                .entry(c.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    if !sections.contains_key("end") {
        return Err(format!(
            "{what}: gdb did not run every command\nstdout:\n{out}\nstderr:\n{err}"
        ));
    }
    Ok(sections)
}

/// The lines of a `thread apply all` section by LWP.
fn per_thread(lines: &[String]) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut cur = None;
    for l in lines {
        if l.starts_with("Thread ") {
            cur = l
                .split("(LWP ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|n| n.trim().parse().ok());
            if let Some(t) = cur {
                out.entry(t).or_default();
            }
            continue;
        }
        if let Some(t) = cur {
            if !l.trim().is_empty() {
                out.entry(t).or_default().push(l.clone());
            }
        }
    }
    out
}

/// One frame of `bt full`: its line and the lines of its locals.
#[derive(Debug)]
struct Frame {
    head: String,
    locals: Vec<String>,
}

fn frames(lines: &[String]) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    for l in lines {
        if l.starts_with('#') {
            out.push(Frame {
                head: l.clone(),
                locals: Vec::new(),
            });
        } else if let Some(f) = out.last_mut() {
            f.locals.push(l.trim().to_string());
        }
    }
    out
}

/// `#0  0x00007f... in func (args) at file:line` -> (address, the rest from `func`). Inline
/// frames have no address.
fn split_frame(head: &str) -> (Option<u64>, String) {
    let rest = head.split_once(' ').map_or("", |(_, r)| r).trim_start();
    if let Some(hex) = rest.strip_prefix("0x") {
        if let Some((addr, tail)) = hex.split_once(" in ") {
            return (u64::from_str_radix(addr, 16).ok(), tail.to_string());
        }
    }
    (None, rest.to_string())
}

/// Drops ` at file:line` (or ` from lib`) from a frame's text: what is left is the function
/// and its arguments.
fn without_location(text: &str) -> &str {
    let cut = [" at ", " from "]
        .iter()
        .filter_map(|m| text.rfind(m))
        .min()
        .unwrap_or(text.len());
    &text[..cut]
}

/// `info all-registers` lines -> name -> the value columns, whitespace-normalised.
fn registers(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            Some((name.to_string(), it.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn hex_of(value: &str) -> u64 {
    let h = value.split_whitespace().next().unwrap_or("");
    u64::from_str_radix(h.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not a hex register value: {value:?}"))
}

/// `$N = 0x...` -> the number.
fn printed_hex(lines: &[String]) -> u64 {
    let l = lines.first().map(String::as_str).unwrap_or("");
    hex_of(l.split_once("= ").map_or("", |(_, v)| v))
}

// ---------------------------------------------------------------------------------------------
// The AVX-512 state, from the kernel
//
// gdb before version 14 reads the XSAVE area of ptrace (and of a core) at the offsets Intel's
// CPUs use (opmask at 1088, ZMM_Hi256 at 1152, Hi16_ZMM at 1664, after the MPX components).
// CPUs without MPX may put them elsewhere: AMD's Zen 4 has them at 832, 896 and 1408 (CPUID
// leaf 0xd). There gdb 13's view of the live process shows k0-k7 and zmm0-31 from the wrong
// bytes, while its view of cryo's core is right (cryo writes Intel's offsets and says so in
// NT_X86_XSAVE_LAYOUT). So the test reads each thread's XSAVE area itself
// (`PTRACE_GETREGSET NT_X86_XSTATE`), decodes it at this CPU's CPUID offsets with the kernel's
// rule for XSTATE_BV (a component whose bit is clear is in its init state: zeros), and checks
// the core's k0-k7 and zmm0-31 against that. gdb's live view of them is compared too where it
// agrees with the kernel's; where it does not, that is accepted only on a CPU whose offsets
// differ from Intel's.

/// XSAVE components of AVX-512: opmask (k0-k7), ZMM_Hi256 (upper halves of zmm0-15), Hi16_ZMM
/// (zmm16-31), with the standard-format offset Intel's CPUs (and gdb before 14) use.
const AVX512_COMPONENTS: [(u32, usize); 3] = [(5, 1088), (6, 1152), (7, 1664)];
/// XCR0 bits for SSE, AVX and the AVX-512 components.
const AVX512_XCR0: u64 = 0xe6;

/// The registers compared: `k0`..`k7`, `zmm0`..`zmm31`.
fn avx512_regs() -> Vec<String> {
    (0..8)
        .map(|i| format!("k{i}"))
        .chain((0..32).map(|i| format!("zmm{i}")))
        .collect()
}

fn is_avx512_reg(name: &str) -> bool {
    let num = |p: &str| {
        name.strip_prefix(p)
            .is_some_and(|n| n.parse::<u8>().is_ok())
    };
    num("k") || num("zmm")
}

/// (offset, size) of XSAVE component `i` in the standard format on this CPU (CPUID leaf 0xd).
fn cpuid_component(i: u32) -> Option<(usize, usize)> {
    let r = std::arch::x86_64::__cpuid_count(0xd, i);
    (r.eax != 0).then_some((r.ebx as usize, r.eax as usize))
}

/// Whether this CPU's standard-format offsets are the ones gdb before 14 assumes.
fn intel_xsave_offsets() -> bool {
    AVX512_COMPONENTS
        .iter()
        .all(|(i, off)| cpuid_component(*i).map(|c| c.0) == Some(*off))
}

/// The AVX-512 registers, by name, as 64-bit lanes (one for a `k` register, eight for a `zmm`).
type Avx512 = BTreeMap<String, Vec<u64>>;

fn le_u64(b: &[u8], off: usize) -> Res<u64> {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("XSAVE area of {} bytes has no u64 at {off}", b.len()))
}

/// k0-k7 and zmm0-31 from a raw XSAVE area (standard format, CPUID offsets), None when XCR0 (its
/// bytes 464..472) does not enable AVX-512. Components whose XSTATE_BV bit is clear are zero.
fn avx512_of_xsave(x: &[u8]) -> Res<Option<Avx512>> {
    let xcr0 = le_u64(x, 464)?;
    if xcr0 & AVX512_XCR0 != AVX512_XCR0 {
        return Ok(None);
    }
    let bv = le_u64(x, 512)?;
    // Lane `lane` of component `i` (an offset into it in u64s), zero in its init state.
    let lane = |i: u32, at: usize| -> Res<u64> {
        if bv & (1 << i) == 0 {
            return Ok(0);
        }
        let off = match i {
            1 => 160, // xmm0-15 in the legacy region
            _ => {
                cpuid_component(i)
                    .ok_or_else(|| format!("XCR0 {xcr0:#x} has component {i}, CPUID not"))?
                    .0
            }
        };
        le_u64(x, off + 8 * at)
    };
    let mut regs = Avx512::new();
    for k in 0..8 {
        regs.insert(format!("k{k}"), vec![lane(5, k)?]);
    }
    for r in 0..32usize {
        let v = if r < 16 {
            // xmm (SSE), upper half of ymm (AVX), upper half of zmm (ZMM_Hi256).
            [(1, 2 * r), (1, 2 * r + 1), (2, 2 * r), (2, 2 * r + 1)]
                .into_iter()
                .chain((0..4).map(|l| (6, 4 * r + l)))
                .map(|(i, at)| lane(i, at))
                .collect::<Res<Vec<u64>>>()?
        } else {
            (0..8)
                .map(|l| lane(7, 8 * (r - 16) + l))
                .collect::<Res<Vec<u64>>>()?
        };
        regs.insert(format!("zmm{r}"), v);
    }
    Ok(Some(regs))
}

/// Each thread's XSAVE area as the kernel gives it to ptrace: each thread is seized,
/// interrupted, read and let go (a thread in a restartable syscall goes back into it).
fn xsave_areas(tids: &[i32]) -> Res<BTreeMap<i32, Vec<u8>>> {
    use cryo_sys::ptrace;
    let mut out = BTreeMap::new();
    for &tid in tids {
        let t = cryo_sys::Pid(tid);
        ptrace::seize(t, 0).map_err(|e| format!("seize {tid}: {e}"))?;
        let read = (|| {
            ptrace::interrupt(t)?;
            loop {
                if let ptrace::WaitStatus::Stopped { .. } = ptrace::wait(t)? {
                    break;
                }
            }
            ptrace::get_xstate(t)
        })();
        let detached = ptrace::detach(t, 0);
        let x = read.map_err(|e| format!("XSAVE area of {tid}: {e}"))?;
        detached.map_err(|e| format!("detach {tid}: {e}"))?;
        out.insert(tid, x);
    }
    Ok(out)
}

/// The `x-NAME` sections of one view, thread by thread.
fn avx512_of_gdb(view: &Sections) -> BTreeMap<i32, Avx512> {
    let mut out: BTreeMap<i32, Avx512> = BTreeMap::new();
    for name in avx512_regs() {
        let lines = view.get(&format!("x-{name}")).cloned().unwrap_or_default();
        for (tid, l) in per_thread(&lines) {
            let text = l.join(" ");
            let value = text.split_once(" = ").map_or("", |(_, v)| v);
            let lanes = value
                .trim_matches(|c| c == '{' || c == '}')
                .split(',')
                .map(|h| u64::from_str_radix(h.trim().trim_start_matches("0x"), 16))
                .collect::<Result<Vec<u64>, _>>()
                .unwrap_or_default();
            out.entry(tid).or_default().insert(name.clone(), lanes);
        }
    }
    out
}

/// The values `coredump_target.c` (`set_avx512`) puts in its main thread.
fn avx512_expected() -> Vec<(String, Vec<u64>)> {
    let mut want: Vec<(String, Vec<u64>)> = [15u64, 16, 31]
        .iter()
        .map(|r| {
            let lanes = (0..8).map(|i| 0x5a5a_0000_0000_0000 | r << 8 | i).collect();
            (format!("zmm{r}"), lanes)
        })
        .collect();
    want.push(("k1".into(), vec![0xa5c3]));
    want.push(("k7".into(), vec![0x1234]));
    want
}

/// Checks both views' AVX-512 registers against the kernel's (`truth`, by thread); returns the
/// disagreements and whether gdb's live view of them can be compared with the core's.
fn check_avx512(
    live: &Sections,
    core: &Sections,
    truth: &BTreeMap<i32, Avx512>,
    pid: i32,
) -> (Vec<String>, bool) {
    let mut bad = Vec::new();
    let (lv, cv) = (avx512_of_gdb(live), avx512_of_gdb(core));
    let mut live_agrees = true;
    for (tid, t) in truth {
        for (name, want) in t {
            let c = cv.get(tid).and_then(|m| m.get(name));
            if c != Some(want) {
                bad.push(format!(
                    "thread {tid} {name}: core {c:x?}, the kernel's XSAVE area {want:x?}"
                ));
            }
            live_agrees &= lv.get(tid).and_then(|m| m.get(name)) == Some(want);
        }
    }
    // The known values, on their own: the kernel's (so the target did set them) and the core's.
    for (name, want) in avx512_expected() {
        for (what, got) in [
            ("kernel", truth.get(&pid).and_then(|m| m.get(&name))),
            ("core", cv.get(&pid).and_then(|m| m.get(&name))),
        ] {
            if got != Some(&want) {
                bad.push(format!(
                    "main thread {name}: {what} {got:x?}, the target set {want:x?}"
                ));
            }
        }
    }
    if !live_agrees {
        if intel_xsave_offsets() {
            bad.push(format!(
                "gdb's live view of the AVX-512 registers is not the kernel's, on a CPU with \
                 the standard offsets:\n  gdb {lv:x?}\n  kernel {truth:x?}"
            ));
        } else {
            let offs: Vec<_> = AVX512_COMPONENTS
                .iter()
                .map(|(i, _)| (*i, cpuid_component(*i).map(|c| c.0)))
                .collect();
            eprintln!(
                "note: this CPU puts XSAVE components (number, offset) {offs:?} where gdb \
                 before 14 does not look ({AVX512_COMPONENTS:?}), and this gdb's live view of \
                 k0-k7 and zmm0-31 is not the kernel's: the core's are checked against the \
                 kernel's XSAVE area instead"
            );
        }
    }
    (bad, live_agrees)
}

/// Everything the two views must agree on; returns the list of disagreements. AVX-512
/// registers are compared only with `live_avx512` (see [`check_avx512`]).
fn compare(
    live: &Sections,
    core: &Sections,
    pid: i32,
    tids: &[i32],
    live_avx512: bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    let sec = |s: &Sections, n: &str| s.get(n).cloned().unwrap_or_default();

    // Backtraces, thread by thread.
    let (lbt, cbt) = (per_thread(&sec(live, "bt")), per_thread(&sec(core, "bt")));
    let want: BTreeSet<i32> = tids.iter().copied().collect();
    for (name, m) in [("live", &lbt), ("core", &cbt)] {
        let got: BTreeSet<i32> = m.keys().copied().collect();
        if got != want {
            bad.push(format!("{name} threads {got:?}, expected {want:?}"));
        }
    }
    for (tid, lines) in &lbt {
        let Some(clines) = cbt.get(tid) else { continue };
        let (lf, cf) = (frames(lines), frames(clines));
        if lf.len() != cf.len() || lf.len() < 2 {
            bad.push(format!(
                "thread {tid}: {} live frames, {} in the core:\nlive:\n{}\ncore:\n{}",
                lf.len(),
                cf.len(),
                lines.join("\n"),
                clines.join("\n")
            ));
            continue;
        }
        // The innermost group: frame #0 and the inline frames at its pc. Its pc is 2 lower
        // in the core (checked with the registers; gdb shows no address for a pc at the start
        // of a line), so its line is checked in "line" and its locals, whose locations
        // depend on the pc, are not compared; function and arguments must be the same.
        let mut i = 0;
        while i < lf.len() {
            let (la, ltext) = split_frame(&lf[i].head);
            let (_, ctext) = split_frame(&cf[i].head);
            if i > 0 && la.is_some() {
                break;
            }
            if without_location(&ltext) != without_location(&ctext) {
                bad.push(format!(
                    "thread {tid} frame #{i}:\n  live {}\n  core {}",
                    lf[i].head, cf[i].head
                ));
            }
            i += 1;
        }
        // The callers: same address, function, arguments, file and line, same locals.
        for (l, c) in lf.iter().zip(&cf).skip(i) {
            if l.head != c.head {
                bad.push(format!(
                    "thread {tid}:\n  live {}\n  core {}",
                    l.head, c.head
                ));
            }
            if l.locals != c.locals {
                bad.push(format!(
                    "thread {tid} {}: locals differ\n  live {:?}\n  core {:?}",
                    l.head, l.locals, c.locals
                ));
            }
        }
    }
    let main_bt = cbt.get(&pid).map(|l| l.join("\n")).unwrap_or_default();
    for want in [
        "level3 (depth=3, tag=",
        "local3 = 303",
        "level2 (depth=2, list=",
        "local2 = 1002",
        "level1 (depth=1, scale=1.25, ready=",
        "local1 = 2.5",
        "main (argc=3, argv=",
    ] {
        if !main_bt.contains(want) {
            bad.push(format!("core backtrace of the main thread lacks {want:?}"));
        }
    }
    let worker = tids.iter().find(|t| **t != pid).copied().unwrap_or(0);
    let worker_bt = cbt.get(&worker).map(|l| l.join("\n")).unwrap_or_default();
    for want in ["worker_wait (id=2, why=", "\"pipe\"", "worker (arg=0x2)"] {
        if !worker_bt.contains(want) {
            bad.push(format!("core backtrace of the worker lacks {want:?}"));
        }
    }

    // Registers: all equal but rip and rax (and rax's parts), which the dump normalised.
    let (lregs, cregs) = (
        per_thread(&sec(live, "regs")),
        per_thread(&sec(core, "regs")),
    );
    let (lorig, corig) = (
        per_thread(&sec(live, "orig")),
        per_thread(&sec(core, "orig")),
    );
    for tid in tids {
        let (Some(l), Some(c)) = (lregs.get(tid), cregs.get(tid)) else {
            bad.push(format!("thread {tid}: registers missing"));
            continue;
        };
        let (l, c) = (registers(l), registers(c));
        if l.len() < 40 || l.keys().ne(c.keys()) {
            bad.push(format!(
                "thread {tid}: register sets differ:\n  live {:?}\n  core {:?}",
                l.keys().collect::<Vec<_>>(),
                c.keys().collect::<Vec<_>>()
            ));
        }
        for (name, lv) in &l {
            if matches!(name.as_str(), "rip" | "rax" | "eax" | "ax" | "al" | "ah")
                || (!live_avx512 && is_avx512_reg(name))
            {
                continue;
            }
            if c.get(name) != Some(lv) {
                bad.push(format!(
                    "thread {tid} {name}: live {lv}, core {:?}",
                    c.get(name)
                ));
            }
        }
        let (Some(lrip), Some(crip), Some(lrax), Some(crax)) =
            (l.get("rip"), c.get("rip"), l.get("rax"), c.get("rax"))
        else {
            bad.push(format!("thread {tid}: no rip or rax"));
            continue;
        };
        let (lrip, crip, lrax, crax) = (hex_of(lrip), hex_of(crip), hex_of(lrax), hex_of(crax));
        let lorig = lorig.get(tid).map(|v| printed_hex(v)).unwrap_or(0);
        let corig = corig.get(tid).map(|v| printed_hex(v)).unwrap_or(0);
        // Live: inside an interrupted syscall, returning -ERESTARTSYS..-ERESTARTNOHAND.
        if !(-514..=-512).contains(&(lrax as i64)) {
            bad.push(format!(
                "thread {tid}: live rax {lrax:#x} is not an -ERESTART* code"
            ));
        }
        if crip != lrip.wrapping_sub(2) {
            bad.push(format!(
                "thread {tid}: core rip {crip:#x}, live rip {lrip:#x}: expected live - 2"
            ));
        }
        if crax != lorig {
            bad.push(format!(
                "thread {tid}: core rax {crax:#x}, live orig_rax {lorig:#x}: expected equal"
            ));
        }
        if corig != u64::MAX {
            bad.push(format!(
                "thread {tid}: core orig_rax {corig:#x}, expected -1"
            ));
        }
        let want_nr = if *tid == pid { 34 } else { 0 };
        if crax != want_nr {
            bad.push(format!(
                "thread {tid}: core rax {crax}, expected syscall {want_nr}"
            ));
        }
    }

    // Frame #0's source line (live: pc - 2), and the instruction there: the syscall.
    // x/i marks the current pc with "=> ".
    let unmark = |m: BTreeMap<i32, Vec<String>>| -> BTreeMap<i32, Vec<String>> {
        m.into_iter()
            .map(|(t, v)| {
                let v = v
                    .iter()
                    .map(|l| l.trim_start_matches("=> ").trim().to_string())
                    .collect();
                (t, v)
            })
            .collect()
    };
    let (lline, cline) = (
        unmark(per_thread(&sec(live, "line"))),
        unmark(per_thread(&sec(core, "line"))),
    );
    for tid in tids {
        let (l, c) = (lline.get(tid), cline.get(tid));
        if l.is_none() || l != c {
            bad.push(format!(
                "thread {tid}: line of frame #0 differs:\n  live {l:?}\n  core {c:?}"
            ));
        }
        if !c.is_some_and(|c| c.iter().any(|x| x.contains("syscall"))) {
            bad.push(format!("thread {tid}: core pc is not on a syscall: {c:?}"));
        }
    }

    let (lb, cb) = (
        per_thread(&sec(live, "bases")),
        per_thread(&sec(core, "bases")),
    );
    for tid in tids {
        let strip = |v: Option<&Vec<String>>| -> Vec<String> {
            v.map(|v| {
                v.iter()
                    .map(|l| l.split_once(" = ").map_or("", |(_, r)| r).to_string())
                    .collect()
            })
            .unwrap_or_default()
        };
        let (l, c) = (strip(lb.get(tid)), strip(cb.get(tid)));
        if l.len() != 2 || l != c || l[0] == "0x0" {
            bad.push(format!(
                "thread {tid}: fs_base, gs_base: live {l:?}, core {c:?}"
            ));
        }
    }

    // Thread-locals (through fs_base and libthread_db).
    let (ltls, ctls) = (per_thread(&sec(live, "tls")), per_thread(&sec(core, "tls")));
    for tid in tids {
        let want = if *tid == pid { "= 22" } else { "= 1002" };
        let (l, c) = (ltls.get(tid), ctls.get(tid));
        if l != c || !c.is_some_and(|c| c.iter().any(|x| x.ends_with(want))) {
            bad.push(format!(
                "thread {tid}: tls_value live {l:?}, core {c:?}, expected {want}"
            ));
        }
    }

    // Shared libraries, found through the dynamic linker's list in the core's memory.
    let (llibs, clibs) = (sec(live, "libs"), sec(core, "libs"));
    if llibs != clibs || !clibs.iter().any(|l| l.contains("libc.so")) {
        bad.push(format!(
            "shared libraries differ:\n  live {llibs:?}\n  core {clibs:?}"
        ));
    }

    // Variables.
    for (i, (expr, want)) in VARS.iter().enumerate() {
        let name = format!("var{i}");
        let (l, c) = (sec(live, &name), sec(core, &name));
        let strip = |v: &[String]| -> String {
            v.join("\n")
                .split_once(" = ")
                .map_or(String::new(), |(_, r)| format!("= {r}"))
        };
        if strip(&l) != strip(&c) || !strip(&c).contains(want) {
            bad.push(format!(
                "print {expr}: live {l:?}, core {c:?}, expected {want:?}"
            ));
        }
    }
    bad
}

/// A program header as `readelf -lW` shows it: (type, offset, vaddr, filesz, memsz).
type ProgramHeader = (String, u64, u64, u64, u64);

/// Every program header of `core`.
fn program_headers(dir: &Path, core: &Path) -> Res<Vec<ProgramHeader>> {
    let (ok, out, err) = run(
        Command::new("readelf").arg("-lW").arg(core),
        "readelf-l",
        dir,
    )?;
    if !ok {
        return Err(format!("readelf -l: {err}"));
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [ty @ ("LOAD" | "NOTE"), off, va, _pa, fsz, msz, ..] => {
                    Some((ty.to_string(), hex(off)?, hex(va)?, hex(fsz)?, hex(msz)?))
                }
                _ => None,
            }
        })
        .collect())
}

/// The file checks: mode, one PT_LOAD per live VMA, notes per thread.
fn check_file(dir: &Path, core: &Path, maps: &[(u64, u64)], nthreads: usize) -> Vec<String> {
    let mut bad = Vec::new();
    match fs::metadata(core) {
        Ok(m) if m.permissions().mode() & 0o777 == 0o600 => {}
        Ok(m) => bad.push(format!("core file mode {:o}", m.permissions().mode())),
        Err(e) => bad.push(format!("core file: {e}")),
    }
    match program_headers(dir, core) {
        Ok(ph) => {
            if ph.first().map(|p| p.0.as_str()) != Some("NOTE") {
                bad.push("the first program header is not PT_NOTE".into());
            }
            let loads: Vec<(u64, u64)> = ph
                .iter()
                .filter(|p| p.0 == "LOAD")
                .map(|p| (p.2, p.2 + p.4))
                .collect();
            if loads != maps {
                bad.push(format!(
                    "PT_LOADs {loads:x?} are not the live VMAs {maps:x?}"
                ));
            }
            if ph
                .iter()
                .filter(|p| p.0 == "LOAD")
                .any(|p| p.1 % 4096 != 0 || p.3 > p.4)
            {
                bad.push(format!(
                    "a PT_LOAD is misaligned or larger in the file: {ph:x?}"
                ));
            }
        }
        Err(e) => bad.push(e),
    }
    match run(
        Command::new("readelf").arg("-nW").arg(core),
        "readelf-n",
        dir,
    ) {
        Ok((true, out, _)) => {
            let count = |what: &str| out.lines().filter(|l| l.contains(what)).count();
            for (what, want) in [
                ("NT_PRSTATUS", nthreads),
                ("NT_FPREGSET", nthreads),
                ("NT_X86_XSTATE", nthreads),
                ("NT_SIGINFO", nthreads),
                ("NT_PRPSINFO", 1),
                ("NT_AUXV", 1),
                ("NT_FILE", 1),
            ] {
                if count(what) != want {
                    bad.push(format!("{} {what} notes, expected {want}", count(what)));
                }
            }
        }
        Ok((false, _, err)) => bad.push(format!("readelf -n: {err}")),
        Err(e) => bad.push(e),
    }
    bad
}

/// The VMAs of process `pid` as thread `tid` sees them (the process's own maps file is empty
/// once its leader has exited).
fn maps_of(pid: i32, tid: i32) -> Vec<(u64, u64)> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// Whether gdb, gcc and readelf are here; without them, `SKIP` (a failure under
/// `CRYO_TEST_STRICT=1`).
fn have_tools() -> bool {
    let missing: Vec<&str> = ["gdb", "gcc", "readelf"]
        .into_iter()
        .filter(|p| !have(p))
        .collect();
    if !missing.is_empty() {
        assert!(
            !strict(),
            "crit core-dump: {missing:?} not installed (CRYO_TEST_STRICT=1)"
        );
        eprintln!("SKIP crit core-dump: {missing:?} not installed");
        return false;
    }
    true
}

/// `cryo dump -t PID` into `DIR/images` (which kills the process, our child): the images
/// directory.
fn dump_target(dir: &Path, target: &mut Target) -> PathBuf {
    let images = dir.join("images");
    fs::create_dir(&images).unwrap();
    let (ok, _, err) = cryo(
        &[
            "dump",
            "-t",
            &target.pid.to_string(),
            "-D",
            images.to_str().unwrap(),
            "-o",
            "dump.log",
            "-v4",
        ],
        &images,
        "dump",
    );
    assert!(ok, "cryo dump failed: {err}");
    let st = wait_child_timeout(&mut target.child, TIMEOUT)
        .unwrap()
        .expect("the dumped target still runs");
    assert!(
        !st.success(),
        "the target should have been killed by the dump"
    );
    images
}

/// `cryo crit core-dump -i IMAGES -o DIR/cores`, which must write `core.PID` alone: its path.
fn core_dump(dir: &Path, images: &Path, pid: i32) -> PathBuf {
    let out = dir.join("cores");
    let (ok, stdout, err) = cryo(
        &[
            "crit",
            "core-dump",
            "-i",
            images.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        dir,
        "core-dump",
    );
    assert!(ok, "cryo crit core-dump failed: {err}");
    let core = out.join(format!("core.{pid}"));
    assert_eq!(stdout.trim(), core.display().to_string());
    core
}

/// Waits until the tracer (gdb or the test) has let go: the main thread in pause(), the same
/// threads as before.
fn settle(pid: i32, tids: &[i32], after: &str) {
    let start = Instant::now();
    while !(sleeping_in(pid, pid) == Some(34) && threads_of(pid) == tids) {
        assert!(
            start.elapsed() < TIMEOUT,
            "target did not settle after {after}"
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn gdb_sees_the_checkpointed_process() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !have_tools() {
        return;
    }
    let dir = work_dir("gdb");
    let (mut target, prog) = start_target(&dir).unwrap();
    let pid = target.pid;
    let tids = threads_of(pid);
    // The threads block in syscalls from here on: their registers stay as read now.
    let mut truth = BTreeMap::new();
    for (tid, x) in xsave_areas(&tids).unwrap() {
        if let Some(regs) = avx512_of_xsave(&x).unwrap() {
            truth.insert(tid, regs);
        }
    }
    let avx512 = !truth.is_empty();
    if !avx512 {
        eprintln!("note: no AVX-512 here; k0-k7 and zmm0-31 are not checked");
    }
    settle(pid, &tids, "the XSAVE areas were read");
    let live = gdb(&dir, "gdb-live", &prog, pid, None, avx512).unwrap();
    let maps = maps_of(pid, pid);
    settle(pid, &tids, "gdb");

    let images = dump_target(&dir, &mut target);
    let core = core_dump(&dir, &images, pid);
    let core_view = gdb(&dir, "gdb-core", &prog, pid, Some(&core), avx512).unwrap();

    let (mut bad, live_avx512) = check_avx512(&live, &core_view, &truth, pid);
    bad.extend(compare(&live, &core_view, pid, &tids, live_avx512));
    bad.extend(check_file(&dir, &core, &maps, tids.len()));
    assert!(
        bad.is_empty(),
        "live process and core file disagree (outputs in {}):\n{}",
        dir.display(),
        bad.join("\n")
    );
}

/// The state letter of /proc/PID/task/TID/stat.
fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Starts `tests/scenarios/coredump_dead_leader.c`; returns once its leader has exited and its
/// two threads sleep, the sleeper in pause() and the reader in read(): (target, program,
/// sleeper tid, reader tid).
fn start_dead_leader(dir: &Path) -> Res<(Target, PathBuf, i32, i32)> {
    let prog = build(dir, "coredump_dead_leader")?;
    let ready = dir.join("ready");
    let mut target = spawn_target(dir, &prog, &[&ready])?;
    let pid = target.pid;
    let start = Instant::now();
    loop {
        let ids: Vec<i32> = fs::read_to_string(&ready)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if let [p, sleeper, reader] = ids[..] {
            if p != pid {
                return Err(format!("the ready file names pid {p}, not {pid}"));
            }
            let settled = thread_state(pid, pid) == Some('Z')
                && threads_of(pid) == [pid, sleeper.min(reader), sleeper.max(reader)]
                && sleeping_in(pid, sleeper) == Some(34)
                && sleeping_in(pid, reader) == Some(0);
            if settled {
                return Ok((target, prog, sleeper, reader));
            }
        }
        if let Ok(Some(st)) = target.child.try_wait() {
            let err = fs::read_to_string(dir.join("target.err")).unwrap_or_default();
            return Err(format!("target exited early ({st}): {err}"));
        }
        if start.elapsed() > TIMEOUT {
            return Err("target not ready in time".into());
        }
        sleep(Duration::from_millis(20));
    }
}

/// A process whose leader has exited (`pthread_exit`) while two threads run on: cryo dumps it
/// (the leader's core says TASK_DEAD, pstree.img lists the three), `crit core-dump` writes a
/// core as the kernel would: the live threads with their notes, the dead leader with none, the
/// memory the leader left. gdb sees the two threads, their frames with arguments and locals,
/// and the leader's globals and heap; `readelf` finds two threads' notes and one `PT_LOAD` per
/// VMA of the live process.
#[test]
fn gdb_sees_a_process_whose_leader_has_exited() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !have_tools() {
        return;
    }
    let dir = work_dir("dead-leader");
    let (mut target, prog, sleeper, reader) = start_dead_leader(&dir).unwrap();
    let pid = target.pid;
    let maps = maps_of(pid, sleeper);
    let images = dump_target(&dir, &mut target);
    let core = core_dump(&dir, &images, pid);

    let mut ex = vec![
        "echo @@@bt\\n".to_string(),
        "thread apply all bt full".into(),
    ];
    let vars = [
        ("g_answer", "= 4242"),
        ("g_note", "\"left by the leader\""),
        ("*g_heap@4", "= {11, 22, 33, 44}"),
    ];
    for (i, (expr, _)) in vars.iter().enumerate() {
        ex.push(format!("echo @@@var{i}\\n"));
        ex.push(format!("print {expr}"));
    }
    let view = run_gdb(&dir, "gdb-core", &[prog.as_os_str(), core.as_os_str()], ex).unwrap();

    let mut bad = Vec::new();
    let bt = per_thread(view.get("bt").map_or(&[][..], |v| v));
    // The core has notes for the live threads only, as the kernel's has. gdb may still list
    // the leader (libthread_db finds it in glibc's thread list) as "Exiting", without
    // registers: it does so for the kernel's core of such a process too.
    let live: BTreeSet<i32> = bt.keys().copied().filter(|t| *t != pid).collect();
    if live != BTreeSet::from([sleeper, reader]) {
        bad.push(format!(
            "threads {live:?} in the core, expected the live {sleeper} and {reader}"
        ));
    }
    if let Some(lines) = bt.get(&pid) {
        if !lines.iter().any(|l| l.contains("<unavailable>")) {
            bad.push(format!("the dead leader {pid} has a backtrace: {lines:?}"));
        }
    }
    // Our frames (by function and arguments) and their locals, innermost first.
    let want: [(i32, &[(&str, &str)]); 2] = [
        (
            sleeper,
            &[
                ("sleeper_inner (n=3, tag=", "inner_local = 300"),
                ("sleeper_outer (n=2)", "outer_local = 20"),
                ("sleeper (arg=0x0)", ""),
            ],
        ),
        (
            reader,
            &[("reader_loop (fd=", "got = 0"), ("reader (arg=0x0)", "")],
        ),
    ];
    for (tid, frames_wanted) in want {
        let fs = frames(bt.get(&tid).map_or(&[][..], |v| v));
        let name = |text: &str| text.split(" (").next().unwrap_or("").to_string();
        let ours: Vec<&Frame> = fs
            .iter()
            .filter(|f| {
                let func = name(&split_frame(&f.head).1);
                frames_wanted.iter().any(|(w, _)| name(w) == func)
            })
            .collect();
        if ours.len() != frames_wanted.len() {
            bad.push(format!(
                "thread {tid}: frames {fs:#?}, expected {frames_wanted:?}"
            ));
            continue;
        }
        for (f, (func, local)) in ours.iter().zip(frames_wanted) {
            let (_, text) = split_frame(&f.head);
            if !text.starts_with(func)
                || !(local.is_empty() || f.locals.iter().any(|l| l.contains(local)))
            {
                bad.push(format!(
                    "thread {tid}: frame {:?} with locals {:?}, expected {func:?} with {local:?}",
                    f.head, f.locals
                ));
            }
        }
        // Below our frames: libc's thread start; above them, the blocking call.
        if fs.len() < frames_wanted.len() + 2 {
            bad.push(format!("thread {tid}: only {} frames: {fs:#?}", fs.len()));
        }
    }
    for (i, (expr, want)) in vars.iter().enumerate() {
        let lines = view.get(&format!("var{i}")).cloned().unwrap_or_default();
        if !lines.iter().any(|l| l.contains(want)) {
            bad.push(format!("print {expr}: {lines:?}, expected {want:?}"));
        }
    }
    bad.extend(check_file(&dir, &core, &maps, 2));
    assert!(
        bad.is_empty(),
        "the core of the process with a dead leader is wrong (outputs in {}):\n{}",
        dir.display(),
        bad.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input, on a dump written without a process

const PAGE_ADDR: u64 = 0x7f00_0000_0000;

/// One process (pid 100, one thread) with one anonymous VMA of 2 pages, the first dumped
/// (filled with 0x5a), the second not.
fn small_dump(tag: &str) -> PathBuf {
    let d = work_dir(tag);
    write_all_entries(
        &d,
        ImageKind::Pstree,
        None,
        &[pb::PstreeEntry {
            pid: 100,
            ppid: 0,
            pgid: 100,
            sid: 100,
            threads: vec![100],
        }],
    )
    .unwrap();
    write_all_entries(
        &d,
        ImageKind::Core,
        Some(100),
        &[pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(pb::ThreadInfoX86 {
                gpregs: pb::UserX86RegsEntry {
                    ip: PAGE_ADDR + 0x10,
                    sp: PAGE_ADDR + 0x1000,
                    cs: 0x33,
                    ss: 0x2b,
                    ..Default::default()
                },
                ..Default::default()
            }),
            tc: Some(pb::TaskCoreEntry {
                task_state: 1,
                comm: "small".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
    )
    .unwrap();
    write_all_entries(
        &d,
        ImageKind::Mm,
        Some(100),
        &[pb::MmEntry {
            mm_saved_auxv: vec![6, 4096, 0, 0],
            vmas: vec![pb::VmaEntry {
                start: PAGE_ADDR,
                end: PAGE_ADDR + 0x2000,
                prot: 3,
                flags: 0x22,
                status: 1 | 1 << 9,
                fd: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
    .unwrap();
    let mut w = create_pagemap(&d, ImageKind::Pagemap, 100, 1).unwrap();
    w.add(PAGE_ADDR, 1, PE_PRESENT).unwrap();
    w.into_inner().finish_sync().unwrap();
    fs::write(d.join("pages-1.img"), vec![0x5a; 4096]).unwrap();
    d
}

/// `cryo crit core-dump ARGS` must fail with a message containing each of `want`, leave no
/// core file in `out`, and not panic.
fn expect_error(dir: &Path, args: &[&str], want: &[&str]) {
    let out = dir.join("cores");
    let mut all = vec!["crit", "core-dump", "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let (ok, _, err) = cryo(&all, dir, "core-dump");
    assert!(!ok, "{args:?}: succeeded");
    assert!(!err.contains("panicked"), "{args:?}: panic:\n{err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: error lacks {w:?}:\n{err}");
    }
    let left: Vec<_> = fs::read_dir(&out)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{args:?}: left {left:?}");
}

#[test]
fn bad_input_small_dump_converts() {
    let d = small_dump("good");
    let core = core_dump(&d, &d, 100);
    let out = d.join("cores");
    let bytes = fs::read(&core).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(
        fs::metadata(&core).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Program header 1 is the VMA: 2 pages in memory and in the file, the first 0x5a, the
    // second zero.
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let ph = 64 + 56;
    assert_eq!(u64_at(ph + 16), PAGE_ADDR);
    assert_eq!((u64_at(ph + 32), u64_at(ph + 40)), (0x2000, 0x2000));
    let off = u64_at(ph + 8) as usize;
    assert_eq!(bytes.len(), off + 0x2000);
    assert!(bytes[off..off + 4096].iter().all(|b| *b == 0x5a));
    assert!(bytes[off + 4096..].iter().all(|b| *b == 0));
    // Again, over the first core: replaced.
    let (ok, _, err) = cryo(
        &[
            "crit",
            "core-dump",
            "-i",
            d.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-p",
            "100",
        ],
        &d,
        "core-dump-again",
    );
    assert!(ok, "{err}");
    assert_eq!(fs::read(&core).unwrap(), bytes);
}

#[test]
fn bad_input_missing_directory() {
    let d = work_dir("missing-dir");
    let gone = d.join("no-such-images");
    expect_error(
        &d,
        &["-i", gone.to_str().unwrap()],
        &[gone.to_str().unwrap()],
    );
}

#[test]
fn bad_input_pid_not_in_dump() {
    let d = small_dump("no-pid");
    expect_error(
        &d,
        &["-i", d.to_str().unwrap(), "-p", "4242"],
        &["pid 4242 is not in the dump", "pstree.img", "100"],
    );
}

#[test]
fn bad_input_truncated_pages() {
    let d = small_dump("truncated-pages");
    fs::write(d.join("pages-1.img"), vec![0x5a; 100]).unwrap();
    expect_error(
        &d,
        &["-i", d.to_str().unwrap()],
        &["pages-1.img", "truncated"],
    );
}

#[test]
fn bad_input_missing_core() {
    let d = small_dump("missing-core");
    fs::remove_file(d.join("core-100.img")).unwrap();
    expect_error(&d, &["-i", d.to_str().unwrap()], &["core-100.img"]);
}

#[test]
fn bad_input_garbled_mm() {
    let d = small_dump("garbled-mm");
    let path = d.join("mm-100.img");
    let mut bytes = fs::read(&path).unwrap();
    // Keep the header, claim a 3 GiB entry.
    bytes.truncate(8);
    bytes.extend_from_slice(&0xc000_0000u32.to_ne_bytes());
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&path, bytes).unwrap();
    expect_error(&d, &["-i", d.to_str().unwrap()], &["mm-100.img"]);
}

#[test]
fn bad_input_vma_not_aligned() {
    let d = small_dump("bad-vma");
    write_all_entries(
        &d,
        ImageKind::Mm,
        Some(100),
        &[pb::MmEntry {
            vmas: vec![pb::VmaEntry {
                start: PAGE_ADDR + 12,
                end: PAGE_ADDR,
                prot: 3,
                status: 1 | 1 << 9,
                fd: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
    .unwrap();
    expect_error(
        &d,
        &["-i", d.to_str().unwrap()],
        &["mm-100.img", "not a page-aligned range"],
    );
}
