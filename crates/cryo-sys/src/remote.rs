//! Remote syscalls: run a syscall inside a stopped, traced task.
//!
//! The task's registers are replaced by `rip = <a syscall instruction already in the task>`,
//! `rax = nr`, the arguments in `rdi, rsi, rdx, r10, r8, r9`, and `orig_rax = -1` (so the kernel
//! does no syscall-restart fixups on the way out of the current stop). Two `PTRACE_SYSCALL` steps
//! take the task through the syscall's entry and exit stops; `rax` at the exit stop is the result.
//! Nothing is written into the task's code: the `syscall` instruction comes from its vDSO (dump)
//! or from cryo's trampoline page (restore puppets). The caller puts the task's own registers back
//! with [`RemoteTask::restore_regs`] when it is done.

use crate::ptrace::{self, Regs, WaitStatus};
use crate::types::{Pid, RemoteAddr};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// A traced task that is stopped and can run injected syscalls.
#[derive(Debug)]
pub struct RemoteTask {
    pid: Pid,
    base: Regs,
    syscall_ip: RemoteAddr,
    /// The task the last injected fork or clone created, as cryo's pid namespace numbers it
    /// (0: none). The syscall's own result is the number in the caller's namespace.
    new_task: AtomicI32,
}

/// The status a syscall stop reports with `PTRACE_O_TRACESYSGOOD`.
const SYSCALL_STOP: i32 = libc::SIGTRAP | 0x80;

impl RemoteTask {
    /// Drive `pid`, which must be in a ptrace stop; `base` are the registers to start each
    /// injected syscall from (the task's own, normalised), `syscall_ip` the address of a
    /// `syscall` instruction in its address space.
    pub fn new(pid: Pid, base: Regs, syscall_ip: RemoteAddr) -> RemoteTask {
        RemoteTask {
            pid,
            base,
            syscall_ip,
            new_task: AtomicI32::new(0),
        }
    }

    /// The task driven.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Where the injected `syscall` instruction is.
    pub fn syscall_ip(&self) -> RemoteAddr {
        self.syscall_ip
    }

    /// Use another `syscall` instruction from now on (after the vDSO or trampoline moved).
    pub fn set_syscall_ip(&mut self, ip: RemoteAddr) {
        self.syscall_ip = ip;
    }

    /// Run syscall `nr` with up to six arguments in the task and return the raw result
    /// (a negative errno on failure). Changes whatever the syscall changes in the task; its
    /// registers are left at the syscall's exit until [`RemoteTask::restore_regs`].
    pub fn syscall_raw(&self, nr: i64, args: &[u64]) -> io::Result<i64> {
        self.syscall_start(nr, args)?;
        self.syscall_wait()
    }

    /// Start syscall `nr` in the task and let it run: the task does the work in the kernel, on
    /// a CPU of its own, while the caller goes on with other tasks, until
    /// [`RemoteTask::syscall_wait`] collects the result. Nothing else may be asked of the task
    /// in between (it is running, not in a ptrace stop).
    pub fn syscall_start(&self, nr: i64, args: &[u64]) -> io::Result<()> {
        let mut regs = self.base;
        regs.rip = self.syscall_ip.0;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        regs.rdi = a(0);
        regs.rsi = a(1);
        regs.rdx = a(2);
        regs.r10 = a(3);
        regs.r8 = a(4);
        regs.r9 = a(5);
        ptrace::set_regs(self.pid, &regs)?;
        self.new_task.store(0, Ordering::Relaxed);
        // To the syscall's entry stop, then on into it.
        self.step_to_syscall_stop()?;
        ptrace::syscall(self.pid, 0)
    }

    /// Wait for the syscall started by [`RemoteTask::syscall_start`] to end and return its raw
    /// result (a negative errno on failure).
    pub fn syscall_wait(&self) -> io::Result<i64> {
        self.wait_syscall_stop()?;
        let out = ptrace::get_regs(self.pid)?;
        Ok(out.rax as i64)
    }

    /// Like [`RemoteTask::syscall_raw`], turning a negative result into an `io::Error`.
    pub fn syscall(&self, nr: i64, args: &[u64]) -> io::Result<u64> {
        let rc = self.syscall_raw(nr, args)?;
        if (-4095..0).contains(&rc) {
            return Err(io::Error::from_raw_os_error((-rc) as i32));
        }
        Ok(rc as u64)
    }

    /// The task that the last injected fork, vfork or clone created, by its PID in cryo's pid
    /// namespace (taken from the ptrace event stop on the way; the traced task must have
    /// `PTRACE_O_TRACEFORK`/`TRACECLONE` set). `None` if it made none.
    pub fn last_new_task(&self) -> Option<Pid> {
        match self.new_task.load(Ordering::Relaxed) {
            0 => None,
            p => Some(Pid(p)),
        }
    }

    /// Put the task's base registers back (it will carry on from them when released).
    pub fn restore_regs(&self) -> io::Result<()> {
        ptrace::set_regs(self.pid, &self.base)
    }

    /// Enter the syscall `nr` and stop at its exit without reading the result: for the last
    /// syscall of a restore, after which the caller sets the final registers.
    pub fn syscall_to_exit_stop(&self, nr: i64, args: &[u64]) -> io::Result<i64> {
        self.syscall_raw(nr, args)
    }

    fn step_to_syscall_stop(&self) -> io::Result<()> {
        ptrace::syscall(self.pid, 0)?;
        self.wait_syscall_stop()
    }

    /// Wait for the task, resumed with `PTRACE_SYSCALL`, to reach its next syscall stop.
    fn wait_syscall_stop(&self) -> io::Result<()> {
        loop {
            match ptrace::wait(self.pid)? {
                WaitStatus::Stopped {
                    sig: SYSCALL_STOP, ..
                } => return Ok(()),
                // The syscall made a task: note its PID as cryo sees it.
                WaitStatus::Stopped {
                    event:
                        libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE,
                    ..
                } => {
                    let new = ptrace::get_event_msg(self.pid)?;
                    self.new_task.store(new as i32, Ordering::Relaxed);
                    ptrace::syscall(self.pid, 0)?;
                }
                // A group-stop or interrupt notification while we drive the task: keep going.
                WaitStatus::Stopped { sig, event } if event != 0 || sig == libc::SIGSTOP => {
                    ptrace::syscall(self.pid, 0)?;
                }
                WaitStatus::Stopped { sig, .. } => {
                    return Err(io::Error::other(format!(
                        "pid {} got signal {sig} during an injected syscall at {}",
                        self.pid, self.syscall_ip
                    )));
                }
                WaitStatus::Exited(code) => {
                    return Err(io::Error::other(format!(
                        "pid {} exited with {code} during an injected syscall",
                        self.pid
                    )))
                }
                WaitStatus::Signaled(sig) => {
                    return Err(io::Error::other(format!(
                        "pid {} was killed by signal {sig} during an injected syscall",
                        self.pid
                    )))
                }
                WaitStatus::Continued => {}
            }
        }
    }
}

/// Find a `syscall` instruction (0f 05) in `code`, which was read from `base`.
pub fn find_syscall_insn(code: &[u8], base: RemoteAddr) -> Option<RemoteAddr> {
    code.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| base.offset(off as u64))
}
