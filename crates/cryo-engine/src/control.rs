//! Taking control of a live task for a dump, and giving it back.
//!
//! [`Seized`] holds a task stopped under `PTRACE_SEIZE` + `PTRACE_INTERRUPT`. It saves the
//! registers, the FPU/vector state and the signal mask as found, and normalises an interrupted
//! syscall so the task restarts it correctly however it is resumed (see `normalise_restart`).
//! [`Seized::injector`] prepares remote syscalls: all signals blocked while they run, a
//! `syscall` instruction found in the task's vDSO, and one scratch page mapped in the task for
//! syscall arguments. [`Seized::release`] undoes all of that; dropping a `Seized` without
//! releasing it releases it as it was (running), so an error anywhere in a dump leaves the task
//! untouched.
//!
//! Seizing is two steps: [`Attached::attach`] (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`, which need
//! no stop, so a task of a frozen v1 cgroup can be attached) and [`Attached::wait`] (its stop).
//! A parent blocked in `vfork()` never stops before its child execs or exits; it is told
//! apart by what /proc shows of it ([`vfork_parent`]) and refused with
//! [`Error::VforkParent`], before it is attached when it is found so, or when its stop does
//! not come.

use crate::error::{Error, Result, TaskCtx};
use crate::remote::Injector;
use cryo_sys::ptrace::{self, Regs, WaitStatus};
use cryo_sys::remote::{self, RemoteTask};
use cryo_sys::{mem, procfs, Pid, RemoteAddr, PAGE_SIZE};
use std::time::{Duration, Instant};
use tracing::debug;

/// `PTRACE_EVENT_STOP`.
const PTRACE_EVENT_STOP: i32 = 128;
/// Size of the scratch area mapped in a dumped task.
const SCRATCH_LEN: u64 = 20 * PAGE_SIZE;

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// Rewrite registers stopped on the way out of an interrupted syscall so that resuming from
/// them, with no kernel restart logic, does what the kernel would have done with no handler to
/// run: re-execute the syscall (`rax = orig_rax`, `rip -= 2`), or for a restart-block syscall
/// (nanosleep, clock_nanosleep, poll) return `-EINTR` since its restart state cannot be carried
/// over. `orig_rax` becomes -1 so nothing restarts twice.
pub fn normalise_restart(regs: &mut Regs) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match regs.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip = regs.rip.wrapping_sub(2);
        }
        ERESTART_RESTARTBLOCK => regs.rax = (-(libc_eintr())) as u64,
        _ => {}
    }
    regs.orig_rax = u64::MAX;
}

fn libc_eintr() -> i64 {
    4
}

/// How to leave a task after a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Let it run on, as before the dump.
    Run,
    /// Leave it stopped (SIGSTOP).
    Stop,
    /// Kill it (a normal dump).
    Kill,
}

/// A task stopped and traced by cryo.
#[derive(Debug)]
pub struct Seized {
    pid: Pid,
    /// The registers as the task will resume from them (restart-normalised).
    pub regs: Regs,
    /// The XSAVE area.
    pub xstate: Vec<u8>,
    /// The blocked-signal mask as found.
    pub sigmask: u64,
    /// The VMAs as found, before cryo mapped its scratch area in the task.
    pub maps: Vec<procfs::MapsEntry>,
    /// The signal that had stopped the task (SIGSTOP, SIGTSTP…) if it was found in a group
    /// stop. It stays stopped when released to run: the kernel puts a detached task back into
    /// the group stop that is still in effect.
    pub stop_signo: Option<i32>,
    injector: Option<Injector>,
    /// The scratch area of another thread of the same process, used instead of a mapping of
    /// its own (cryo drives one thread at a time; the owner unmaps it).
    borrowed_scratch: Option<RemoteAddr>,
    released: bool,
}

/// How long a task may stay in `vfork()` (its child sharing its memory, neither exec'd nor
/// exited) before a dump gives up on it: a `posix_spawn` or `system()` child usually execs
/// within microseconds, while a parent that is still waiting after this is likely to wait long.
const VFORK_GRACE: Duration = Duration::from_millis(500);
/// How often a task that does not stop is looked at for signs of `vfork()`.
const VFORK_POLL: Duration = Duration::from_millis(50);

/// `vfork` (x86_64).
const SYS_VFORK: i64 = 58;
/// `clone` (x86_64).
const SYS_CLONE: i64 = 56;
/// `clone3` (x86_64).
const SYS_CLONE3: i64 = 435;

/// Whether `tid` is a parent blocked in `vfork()` (or `clone(CLONE_VFORK)`, `clone3`), waiting
/// for its child to exec or exit: `Some(child)` then, the child being the one that shares its
/// address space, if it is found. Such a task sleeps killable, not interruptible
/// (`wait_for_vfork_done`), so no ptrace stop can happen before the child lets it go.
///
/// The signs, all read from /proc (as this kernel shows them): state `D`, wchan
/// `kernel_clone` (where `wait_for_vfork_done` is inlined) or `wait_for_vfork_done`, and a
/// clone-family syscall in `/proc/TID/syscall`, with `CLONE_VFORK` in the flags of `clone`.
pub fn vfork_parent(tid: Pid) -> Option<Option<Pid>> {
    let stat = procfs::read_stat(tid).ok()?;
    if stat.state != 'D' {
        return None;
    }
    let wchan = std::fs::read_to_string(format!("/proc/{tid}/wchan")).ok()?;
    if !matches!(wchan.trim(), "kernel_clone" | "wait_for_vfork_done") {
        return None;
    }
    let syscall = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
    if !is_vfork_syscall(&syscall) {
        return None;
    }
    Some(vfork_child(tid))
}

/// Whether a `/proc/TID/syscall` line is a syscall that waits for a vfork child.
fn is_vfork_syscall(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let nr = match words.next().and_then(|w| w.parse::<i64>().ok()) {
        Some(nr) => nr,
        None => return false,
    };
    match nr {
        SYS_VFORK | SYS_CLONE3 => true,
        SYS_CLONE => words
            .next()
            .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & libc::CLONE_VFORK as u64 != 0),
        _ => false,
    }
}

/// The child of thread `tid` that shares its address space (its vfork child), if any.
fn vfork_child(tid: Pid) -> Option<Pid> {
    let tgid = procfs::read_status(tid).ok()?.tgid;
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/children")).ok()?;
    text.split_whitespace()
        .filter_map(|w| w.parse::<i32>().ok())
        .map(Pid)
        .find(|&c| {
            cryo_sys::task::kcmp(tid, c, cryo_sys::task::KcmpType::Vm)
                .is_ok_and(|o| o == std::cmp::Ordering::Equal)
        })
}

/// A task that is a vfork parent now and still one after [`VFORK_GRACE`] is refused before it
/// is seized (it could not be stopped, and a task attached by ptrace cannot be detached before
/// it stops).
fn refuse_vfork_parent(tid: Pid) -> Result<()> {
    let start = Instant::now();
    while let Some(child) = vfork_parent(tid) {
        if start.elapsed() >= VFORK_GRACE {
            return Err(Error::VforkParent { pid: tid, child });
        }
        std::thread::sleep(VFORK_POLL);
    }
    Ok(())
}

/// A task attached with `PTRACE_SEIZE` and asked to stop with `PTRACE_INTERRUPT`, whose stop
/// has not been waited for yet. Neither needs the task to run: a task of a frozen v1 cgroup is
/// attached while frozen and stops once thawed, before it runs any code of its own. Dropped
/// without [`Attached::wait`], it is released as found (its stop waited for, briefly, then a
/// detach), so it must be able to stop by then (its cgroup thawed).
#[derive(Debug)]
pub struct Attached {
    pid: Pid,
    done: bool,
}

impl Attached {
    /// [`Attached::attach`] after making sure `tid` is no vfork parent (which would never
    /// stop).
    pub fn attach_checked(tid: Pid) -> Result<Attached> {
        refuse_vfork_parent(tid)?;
        Attached::attach(tid)
    }

    /// `PTRACE_SEIZE` + `PTRACE_INTERRUPT` of `tid`, without waiting for its stop.
    pub fn attach(tid: Pid) -> Result<Attached> {
        ptrace::seize(tid, libc::PTRACE_O_TRACESYSGOOD as u32).task_ctx("seize", tid)?;
        if let Err(e) = ptrace::interrupt(tid).task_ctx("interrupt", tid) {
            // Not stopped: a detach fails (ESRCH) unless the task is gone; cryo's exit
            // detaches it at the latest.
            let _ = ptrace::detach(tid, 0);
            return Err(e);
        }
        Ok(Attached {
            pid: tid,
            done: false,
        })
    }

    /// The attached task.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait (up to `timeout`) for the stop of a process leader (its VMAs are read).
    pub fn wait(self, timeout: Duration) -> Result<Seized> {
        self.wait_with(timeout, None)
    }

    /// Wait (up to `timeout`) for the stop of a thread other than the leader, whose VMAs are
    /// `leader_maps` already (see [`Seized::seize_thread`]).
    pub fn wait_thread(
        self,
        timeout: Duration,
        leader_maps: &[procfs::MapsEntry],
    ) -> Result<Seized> {
        self.wait_with(timeout, Some(leader_maps))
    }

    fn wait_with(
        mut self,
        timeout: Duration,
        leader_maps: Option<&[procfs::MapsEntry]>,
    ) -> Result<Seized> {
        let pid = self.pid;
        // From here on the stop, or the failure, is handled here.
        self.done = true;
        let stop_signo = match wait_stopped(pid, timeout) {
            Ok(s) => s,
            Err(e) => {
                let _ = ptrace::detach(pid, 0);
                return Err(e);
            }
        };
        let regs = match ptrace::get_regs(pid).task_ctx("read registers", pid) {
            Ok(r) => r,
            Err(e) => {
                let _ = ptrace::detach(pid, 0);
                return Err(e);
            }
        };
        let mut s = Seized {
            pid,
            regs,
            xstate: Vec::new(),
            sigmask: 0,
            maps: Vec::new(),
            stop_signo,
            injector: None,
            borrowed_scratch: None,
            released: false,
        };
        normalise_restart(&mut s.regs);
        // From here on a resume goes through the normalised registers.
        ptrace::set_regs(pid, &s.regs).task_ctx("normalise registers", pid)?;
        s.xstate = ptrace::get_xstate(pid).task_ctx("read xstate", pid)?;
        s.sigmask = ptrace::get_sigmask(pid).task_ctx("read signal mask", pid)?;
        s.maps = match leader_maps {
            None => procfs::read_smaps(pid)?,
            Some(m) => m.iter().filter(|m| m.path == "[vdso]").cloned().collect(),
        };
        debug!(pid = pid.0, rip = format!("{:#x}", s.regs.rip), "seized");
        Ok(s)
    }

    /// Let the task go as it was found: wait (up to `timeout`) for its stop, then detach it
    /// untouched (a task found in a group stop goes back into it). A task gone meanwhile is
    /// no error.
    pub fn release(mut self, timeout: Duration) -> Result<()> {
        self.done = true;
        let pid = self.pid;
        match wait_stopped(pid, timeout) {
            Ok(_) => ptrace::detach(pid, 0).task_ctx("release", pid),
            Err(Error::Task { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let pid = self.pid;
        if let Err(e) = (Attached { pid, done: false }).release(Duration::from_secs(1)) {
            tracing::error!(pid = pid.0, "releasing an attached task: {e}");
        }
    }
}

/// Wait (up to `timeout`) until the attached and interrupted `pid` is in its
/// `PTRACE_EVENT_STOP`, passing on signals that are delivered first; the signal of the group
/// stop it was found in, if any. A task that does not stop because it is a vfork parent is
/// told apart (after [`VFORK_GRACE`]) and named in the error.
fn wait_stopped(pid: Pid, timeout: Duration) -> Result<Option<i32>> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut next_vfork_look = start + VFORK_GRACE;
    loop {
        let st =
            ptrace::wait_flags(pid, libc::__WALL | libc::WNOHANG).task_ctx("wait for stop", pid)?;
        match st {
            None => {
                let now = Instant::now();
                if now >= next_vfork_look || now > deadline {
                    if let Some(child) = vfork_parent(pid) {
                        return Err(Error::VforkParent { pid, child });
                    }
                    next_vfork_look = now + VFORK_POLL;
                }
                if now > deadline {
                    return Err(Error::Task {
                        what: format!("stop within {:?}", timeout),
                        pid,
                        source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    });
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            // PTRACE_INTERRUPT stops with SIGTRAP; a task in a group stop reports the
            // signal that stopped it.
            Some(WaitStatus::Stopped {
                event: PTRACE_EVENT_STOP,
                sig,
            }) => {
                let stop = matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                );
                return Ok(stop.then_some(sig));
            }
            Some(WaitStatus::Stopped { sig, event: 0 }) => {
                // A signal was being delivered: let it go through; the interrupt stays
                // pending and stops the task right after.
                ptrace::cont(pid, sig).task_ctx("pass a signal on", pid)?;
            }
            Some(WaitStatus::Stopped { .. }) | Some(WaitStatus::Continued) => {
                ptrace::cont(pid, 0).task_ctx("resume", pid)?;
            }
            Some(WaitStatus::Exited(_)) | Some(WaitStatus::Signaled(_)) => {
                return Err(Error::Task {
                    what: "seize".into(),
                    pid,
                    source: std::io::Error::from_raw_os_error(libc::ESRCH),
                })
            }
        }
    }
}

impl Seized {
    /// Seize `pid` (a process leader: its VMAs are read) and wait (up to `timeout`) until it
    /// stops. A vfork parent is refused before it is attached.
    pub fn seize(pid: Pid, timeout: Duration) -> Result<Seized> {
        refuse_vfork_parent(pid)?;
        Attached::attach(pid)?.wait(timeout)
    }

    /// Seize a thread other than the leader, whose VMAs are `leader_maps` already: only the
    /// vDSO entry is kept, for remote syscalls (reading smaps again for each of hundreds of
    /// threads would cost milliseconds each while the others wait frozen).
    pub fn seize_thread(
        tid: Pid,
        timeout: Duration,
        leader_maps: &[procfs::MapsEntry],
    ) -> Result<Seized> {
        refuse_vfork_parent(tid)?;
        Attached::attach(tid)?.wait_thread(timeout, leader_maps)
    }

    /// The seized task.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Prepare remote syscalls (once) and return the injector.
    pub fn injector(&mut self) -> Result<&Injector> {
        if self.injector.is_none() {
            let inj = self.make_injector()?;
            self.injector = Some(inj);
        }
        self.injector
            .as_ref()
            .ok_or_else(|| Error::Unsupported("remote syscalls".into()))
    }

    fn make_injector(&mut self) -> Result<Injector> {
        let pid = self.pid;
        let vdso = self
            .maps
            .iter()
            .find(|m| m.path == "[vdso]")
            .ok_or_else(|| Error::Unsupported(format!("a task without a vDSO (pid {pid})")))?;
        let mut code = vec![0u8; vdso.len() as usize];
        mem::read_exact(pid, RemoteAddr(vdso.start), &mut code).task_ctx("read the vDSO", pid)?;
        let ip = remote::find_syscall_insn(&code, RemoteAddr(vdso.start)).ok_or_else(|| {
            Error::Unsupported(format!("a vDSO without a syscall instruction (pid {pid})"))
        })?;
        // Block every signal while syscalls are injected; the original mask comes back on
        // release.
        ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
        let task = RemoteTask::new(pid, self.regs, ip);
        if let Some(addr) = self.borrowed_scratch {
            return Ok(Injector::new(task, addr, SCRATCH_LEN));
        }
        let addr = task
            .syscall(
                libc::SYS_mmap,
                &[
                    0,
                    SCRATCH_LEN,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )
            .task_ctx("map scratch memory", pid);
        let addr = match addr {
            Ok(a) => a,
            Err(e) => {
                let _ = task.restore_regs();
                return Err(e);
            }
        };
        debug!(pid = pid.0, syscall_ip = %ip, scratch = format!("{addr:#x}"), "remote syscalls ready");
        Ok(Injector::new(task, RemoteAddr(addr), SCRATCH_LEN))
    }

    /// Undo the injector (scratch page, registers, signal mask) and let the task go as `how`
    /// says.
    pub fn release(mut self, how: Release) -> Result<()> {
        self.released = true;
        let pid = self.pid;
        // A task about to be killed needs nothing undone.
        let undo = if how == Release::Kill {
            Ok(())
        } else {
            self.undo_injection()
        };
        match how {
            Release::Kill => {
                if let Err(e) = cryo_sys::task::kill(pid, libc::SIGKILL) {
                    // Another thread's kill may already have taken the whole group down.
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(Error::Task {
                            what: "kill".into(),
                            pid,
                            source: e,
                        });
                    }
                }
                // No wait for the death: tearing down a large address space takes a while and
                // happens in the dying task. The real parent can reap it once cryo lets go of
                // it as tracer, at the latest when cryo exits.
                Ok(())
            }
            Release::Run => {
                undo?;
                release_into_syscall(pid)
            }
            Release::Stop => {
                undo?;
                ptrace::detach(pid, libc::SIGSTOP).task_ctx("detach stopped", pid)
            }
        }
    }

    /// Run this thread's remote syscalls in `leader`'s scratch area (same address space),
    /// which must outlive them: threads are released before their leader.
    pub fn borrow_scratch(&mut self, scratch: RemoteAddr) {
        if self.injector.is_none() {
            self.borrowed_scratch = Some(scratch);
        }
    }

    fn undo_injection(&mut self) -> Result<()> {
        let pid = self.pid;
        let mut first_err = None;
        if let Some(inj) = self.injector.take() {
            if self.borrowed_scratch.is_some() {
                // Not ours to unmap.
            } else if let Err(e) = inj.syscall(
                "unmap scratch memory",
                libc::SYS_munmap,
                &[inj.scratch_area().0 .0, SCRATCH_LEN],
            ) {
                first_err.get_or_insert(e);
            }
            if let Err(e) = inj.task().restore_regs().task_ctx("restore registers", pid) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = ptrace::set_regs(pid, &self.regs).task_ctx("restore registers", pid) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = ptrace::set_sigmask(pid, self.sigmask).task_ctx("restore signal mask", pid)
        {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if let Err(e) = self.undo_injection() {
            tracing::error!(pid = self.pid.0, "releasing the task: {e}");
        }
        if release_into_syscall(self.pid).is_err() {
            let _ = ptrace::detach(self.pid, 0);
        }
    }
}

/// Detach a stopped thread (restored, or released after a dump). One that was interrupted
/// inside a syscall resumes at that syscall's instruction, to run it again; it is first stepped into the syscall (to its entry
/// stop) and only then detached. Released before, a signal arriving before it got there would
/// run its handler and then the syscall would start over, where the dumped task would have
/// returned EINTR from it (a pause() woken by SIGTERM would sleep on).
pub fn release_into_syscall(tid: Pid) -> Result<()> {
    let regs = ptrace::get_regs(tid).task_ctx("read registers", tid)?;
    let mut insn = [0u8; 2];
    let at_syscall = cryo_sys::mem::read(tid, cryo_sys::RemoteAddr(regs.rip), &mut insn)
        .map(|n| n == 2)
        .unwrap_or(false)
        && insn == [0x0f, 0x05];
    let mut sig = 0;
    if at_syscall {
        ptrace::syscall(tid, 0).task_ctx("step into the interrupted syscall", tid)?;
        loop {
            match ptrace::wait(tid).task_ctx("step into the interrupted syscall", tid)? {
                // At the syscall's entry.
                WaitStatus::Stopped { sig: s, .. } if s == libc::SIGTRAP | 0x80 => break,
                // A signal came first: it is delivered on release, as it would have been.
                WaitStatus::Stopped { sig: s, event: 0 } => {
                    sig = s;
                    break;
                }
                WaitStatus::Stopped { .. } => {
                    ptrace::syscall(tid, 0).task_ctx("step into the interrupted syscall", tid)?
                }
                other => {
                    return Err(Error::Task {
                        what: format!("step into the interrupted syscall (got {other:?})"),
                        pid: tid,
                        source: std::io::Error::other("unexpected state"),
                    })
                }
            }
        }
    }
    ptrace::detach(tid, sig).task_ctx("release", tid)
}

/// cryo's main thread pinned to one CPU while it drives a task: a remote syscall costs a few
/// microseconds when cryo and the task share a CPU, and hundreds when a wakeup has to cross to
/// another one. Dropping it gives cryo its old CPU set back.
#[derive(Debug)]
pub struct CpuPin {
    saved: Vec<usize>,
}

impl CpuPin {
    /// Pin the calling thread to `cpu` (best effort: a failure leaves it unpinned).
    pub fn to(cpu: Option<usize>) -> CpuPin {
        let saved = cryo_sys::task::get_affinity(Pid(0)).unwrap_or_default();
        if let Some(c) = cpu {
            if saved.contains(&c) {
                let _ = cryo_sys::task::set_affinity(Pid(0), &[c]);
            }
        }
        CpuPin { saved }
    }

    /// The CPUs cryo could use before pinning.
    pub fn saved(&self) -> &[usize] {
        &self.saved
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        if !self.saved.is_empty() {
            let _ = cryo_sys::task::set_affinity(Pid(0), &self.saved);
        }
    }
}

#[cfg(test)]
fn zero_regs() -> Regs {
    // user_regs_struct has no public constructor; build it from its Default-like zero value.
    Regs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        rbp: 0,
        rbx: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rax: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        orig_rax: 0,
        rip: 0,
        cs: 0,
        eflags: 0,
        rsp: 0,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vfork_syscalls() {
        // As this kernel shows a parent in vfork(), clone(CLONE_VM|CLONE_VFORK) and clone3.
        assert!(is_vfork_syscall(
            "58 0x5603f881f52c 0x0 0x0 0x7f1b5a554850 0x0 0x7f1b5a53e740 0x7ffd6f959c00 0x7f1b5a6153b8\n"
        ));
        assert!(is_vfork_syscall(
            "56 0x4111 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f1b\n"
        ));
        assert!(is_vfork_syscall(
            "435 0x7ffd6f959c00 0x58 0x0 0x0 0x0 0x0 0x7ffd 0x7f1b\n"
        ));
        // A plain fork-like clone, another syscall, a running task, garbage.
        assert!(!is_vfork_syscall(
            "56 0x1200011 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f1b\n"
        ));
        assert!(!is_vfork_syscall(
            "34 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f1b\n"
        ));
        assert!(!is_vfork_syscall("running\n"));
        assert!(!is_vfork_syscall(""));
    }

    #[test]
    fn restart_normalisation() {
        let mut r = zero_regs();
        r.orig_rax = 35; // nanosleep
        r.rax = ERESTART_RESTARTBLOCK as u64;
        r.rip = 0x1002;
        normalise_restart(&mut r);
        assert_eq!((r.rax as i64, r.rip, r.orig_rax), (-4, 0x1002, u64::MAX));
        let mut r = zero_regs();
        r.orig_rax = 0; // read
        r.rax = ERESTARTSYS as u64;
        r.rip = 0x1002;
        normalise_restart(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        let mut r = zero_regs();
        r.orig_rax = u64::MAX;
        r.rax = 7;
        normalise_restart(&mut r);
        assert_eq!(r.rax, 7);
    }
}
