//! A process being restored, a *puppet* ([`Puppet`]): traced by cryo, driven by remote
//! syscalls from the trampoline it inherited. Its life: adopted or created at its PID
//! ([`adopt`], [`remote_clone`]), made a zombie again ([`make_zombie`]), its leader exited
//! as dumped ([`exit_leader`]), its final registers set ([`set_final_state`]), then released
//! ([`release_puppet`]) or, after a failure, killed ([`kill_puppets`]).

use crate::error::{Error, Result, TaskCtx};
use crate::remote::Injector;
use crate::task_images::*;
use crate::{cpu, memory};
use cryo_image::pb;
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::puppet::Trampoline;
use cryo_sys::remote::RemoteTask;
use cryo_sys::{procfs, Pid};

/// A process being restored: its leader's injector and its threads, held stopped.
pub(crate) struct Puppet {
    /// Its PID in cryo's pid namespace (for ptrace and /proc).
    pub(crate) pid: Pid,
    /// Its PID in its own pid namespace: as the images and its own syscalls number it.
    pub(crate) vpid: Pid,
    pub(crate) inj: Injector,
    pub(crate) template_xstate: Vec<u8>,
    /// Non-leader threads created so far (cryo's numbers).
    pub(crate) threads: Vec<Pid>,
    /// Made a zombie again: nothing to release.
    pub(crate) zombie: bool,
    /// Dumped in a group stop by this signal: stopped again on release.
    pub(crate) stop_signo: Option<i32>,
    /// A restore helper that has ended and was reaped: its PID is not ours any more.
    pub(crate) gone: bool,
    /// The leader has exited, as dumped, and is no longer traced: only the threads are
    /// released.
    pub(crate) leader_exited: bool,
    /// Its memory, still being filled by the copier threads.
    pub(crate) fills: Option<memory::PendingFills>,
}

/// Wait until the copier threads have filled the memory of `p` (see
/// [`memory::PendingFills`]).
pub(crate) fn finish_fills(p: &mut Puppet) -> Result<()> {
    match p.fills.take() {
        Some(f) => f.complete(&p.inj),
        None => Ok(()),
    }
}

pub(crate) fn kill_puppets(puppets: &[Puppet]) {
    for p in puppets.iter().rev().filter(|p| !p.gone) {
        let _ = cryo_sys::task::kill(p.pid, libc::SIGKILL);
    }
    // Tasks cryo traces report their end to cryo before their parent may reap them, and a
    // process is not done until its threads are reaped, nor the init of a pid namespace until
    // every other task of it is: take every traced end first, or the wait for the root never
    // ends. (A task no longer traced, or already reaped, answers ECHILD at once.)
    for p in puppets.iter().filter(|p| !p.gone) {
        for &t in &p.threads {
            let _ = cryo_sys::task::wait_pid(t);
        }
    }
    for p in puppets
        .iter()
        .skip(1)
        .rev()
        .filter(|p| !p.gone && !p.leader_exited)
    {
        let _ = cryo_sys::task::wait_pid(p.pid);
    }
    // The root is cryo's child; the others are reaped by their parents or, once those are
    // gone, by whoever reaps orphans.
    if let Some(root) = puppets.first() {
        let _ = cryo_sys::task::wait_pid(root.pid);
    }
}

pub(crate) fn release_puppet(p: &Puppet, cpus: &[usize]) -> Result<()> {
    if p.zombie || p.gone {
        return Ok(());
    }
    // An exited leader is no longer ours (`exit_leader` did its part).
    let leader = (!p.leader_exited).then_some(p.pid);
    for &tid in p.threads.iter().chain(leader.iter()) {
        if !cpus.is_empty() {
            cryo_sys::task::set_affinity(tid, cpus).task_ctx("set CPU affinity", tid)?;
        }
    }
    if let Some(sig) = p.stop_signo {
        // Queued while every thread is held: the first to run takes it and the group stops
        // before any of them runs a user instruction.
        cryo_sys::task::kill(p.pid, sig).task_ctx("stop again", p.pid)?;
    }
    for &tid in p.threads.iter().chain(leader.iter()) {
        crate::control::release_into_syscall(tid)?;
    }
    Ok(())
}

/// Wait for a new puppet's first stop and take it over: ptrace options, signals blocked.
/// `pid` is its PID in cryo's pid namespace, `vpid` in its own.
pub(crate) fn adopt(pid: Pid, vpid: Pid, tramp: &Trampoline) -> Result<Puppet> {
    match ptrace::wait(pid).task_ctx("wait for the new task", pid)? {
        WaitStatus::Stopped { .. } => {}
        // The puppet's own exit code when it could not make its new mounts private.
        WaitStatus::Exited(126) => {
            return Err(Error::Task {
                what: "start in a mount namespace of its own".into(),
                pid,
                source: std::io::Error::other("making its mounts private failed"),
            })
        }
        other => {
            return Err(Error::Task {
                what: format!("start (got {other:?})"),
                pid,
                source: std::io::Error::other("unexpected state"),
            })
        }
    }
    ptrace::set_options(
        pid,
        (libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_EXITKILL
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACECLONE) as u32,
    )
    .task_ctx("set ptrace options", pid)?;
    let base = ptrace::get_regs(pid).task_ctx("read registers", pid)?;
    let template_xstate = ptrace::get_xstate(pid).task_ctx("read xstate", pid)?;
    ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
    let (scratch, scratch_len) = tramp.scratch();
    let inj = Injector::new(
        RemoteTask::new(pid, base, tramp.syscall_ip()),
        scratch,
        scratch_len,
    );
    Ok(Puppet {
        pid,
        vpid,
        inj,
        template_xstate,
        threads: Vec::new(),
        zombie: false,
        stop_signo: None,
        gone: false,
        leader_exited: false,
        fills: None,
    })
}

/// End a new puppet the way the dumped zombie ended (`status` as wait(2) gives it), so that it
/// waits for its parent as a zombie again.
pub(crate) fn make_zombie(p: &Puppet, status: u32) -> Result<()> {
    let pid = p.pid;
    let sig = status & 0x7f;
    if sig == 0 {
        // Its syscall never returns: the exit shows as an error of the remote syscall.
        let _ = p
            .inj
            .task()
            .syscall_raw(libc::SYS_exit_group, &[u64::from((status >> 8) & 0xff)]);
    } else {
        // Default action, unblocked, sent to itself; the stop it makes is passed on.
        // (SIGKILL and SIGSTOP have no action to reset.)
        if sig != libc::SIGKILL as u32 && sig != libc::SIGSTOP as u32 {
            let s = p.inj.scratch();
            let dfl = s.bytes(&[0u8; 32])?;
            p.inj.syscall(
                "reset the killing signal",
                libc::SYS_rt_sigaction,
                &[u64::from(sig), dfl.0, 0, 8],
            )?;
        }
        ptrace::set_sigmask(pid, !(1u64 << (sig - 1)))
            .task_ctx("unblock the killing signal", pid)?;
        // The syscall ends at its exit stop (then the resume delivers the signal), or the
        // delivery stop came first and ended the remote syscall (then it is passed on).
        let first = match p.inj.task().syscall_raw(
            libc::SYS_tgkill,
            &[p.vpid.0 as u64, p.vpid.0 as u64, u64::from(sig)],
        ) {
            Ok(_) => 0,
            Err(_) => sig as i32,
        };
        // SIGKILL needs no delivery stop: the task may be dead already.
        let dead = procfs::read_stat(pid)
            .map(|s| s.state == 'Z')
            .unwrap_or(true);
        if !dead {
            ptrace::cont(pid, first).task_ctx("let the signal kill", pid)?;
            while let WaitStatus::Stopped { sig: s, .. } =
                ptrace::wait(pid).task_ctx("wait for the zombie", pid)?
            {
                ptrace::cont(pid, s).task_ctx("let the signal kill", pid)?;
            }
        }
    }
    if procfs::read_stat(pid)
        .map(|s| s.state != 'Z')
        .unwrap_or(true)
    {
        return Err(Error::Task {
            what: "make a zombie".into(),
            pid,
            source: std::io::Error::other("it did not end"),
        });
    }
    Ok(())
}

/// Have `parent` create `tid` (as the parent's pid namespace numbers it) with clone3 (set_tid)
/// and `flags`, and `clear_tid` as its TID address (CLONE_CHILD_CLEARTID) unless 0; returns the
/// new task's TID in cryo's namespace.
pub(crate) fn remote_clone(
    parent: &Injector,
    tid: Pid,
    flags: u64,
    exit_signal: u64,
    clear_tid: u64,
) -> Result<Pid> {
    // struct clone_args (88 bytes), then the one set_tid entry.
    let s = parent.scratch();
    let slot = s.zeroed(96)?;
    let set_tid = slot.addr.offset(88);
    let (flags, child_tid) = if clear_tid != 0 {
        (flags | libc::CLONE_CHILD_CLEARTID as u64, clear_tid)
    } else {
        (flags, 0)
    };
    let mut args = Vec::with_capacity(96);
    for v in [
        flags,
        0,
        child_tid,
        0,
        exit_signal,
        0,
        0,
        0,
        set_tid.0,
        1,
        0,
    ] {
        args.extend_from_slice(&v.to_ne_bytes());
    }
    args.extend_from_slice(&tid.0.to_ne_bytes());
    s.write(slot, &args)?;
    let got = parent.syscall(
        &format!("create task {tid}"),
        libc::SYS_clone3,
        &[slot.addr.0, 88],
    )?;
    if got as i32 != tid.0 {
        return Err(Error::Task {
            what: format!("create at this pid (got {got})"),
            pid: tid,
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        });
    }
    // The same task in cryo's namespace, from the fork event cryo's ptrace options report.
    parent.task().last_new_task().ok_or_else(|| Error::Task {
        what: "learn the PID of the task created".into(),
        pid: tid,
        source: std::io::Error::other("no fork event reported"),
    })
}

/// End the leader of a process dumped with its leader dead (`pthread_exit` in `main`): it
/// `exit`s, this thread alone, with its dumped code, at the trampoline's `syscall` instruction
/// once cryo has detached from it (a traced zombie leader would stay cryo's, and the end of
/// the process would be reported to cryo instead of its parent, until cryo exits). Every
/// signal stays blocked so it takes none on the way. The other threads are held stopped
/// meanwhile: no code of the process runs while its leader lives. Returns once the leader is
/// a zombie thread, out of the trampoline for good.
pub(crate) fn exit_leader(pup: &mut Puppet, exit_code: u32, cpus: &[usize]) -> Result<()> {
    let pid = pup.pid;
    if !cpus.is_empty() {
        cryo_sys::task::set_affinity(pid, cpus).task_ctx("set CPU affinity", pid)?;
    }
    // At the exit stop of its last injected syscall.
    let mut regs = ptrace::get_regs(pid).task_ctx("read registers", pid)?;
    regs.rip = pup.inj.task().syscall_ip().0;
    regs.rax = libc::SYS_exit as u64;
    regs.rdi = u64::from((exit_code >> 8) & 0xff);
    regs.orig_rax = u64::MAX;
    ptrace::set_regs(pid, &regs).task_ctx("set registers for exit", pid)?;
    ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
    ptrace::detach(pid, 0).task_ctx("release to exit", pid)?;
    pup.leader_exited = true;
    let path = format!("/proc/{pid}/task/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if procfs::parse_stat(&procfs::read_text(&path)?, &path)?.state == 'Z' {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Task {
                what: "exit the leader".into(),
                pid,
                source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            });
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// At a thread's last syscall-exit stop: its dumped registers, XSAVE state and signal mask.
pub(crate) fn set_final_state(
    tid: Pid,
    core: &pb::CoreEntry,
    template_xstate: &[u8],
    image: &str,
) -> Result<()> {
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| bad(image, "no x86 thread info"))?;
    let regs = cpu::entry_to_regs(&ti.gpregs);
    let xstate = cpu::entry_to_xstate(&ti.fpregs, template_xstate).map_err(|e| bad(image, e))?;
    ptrace::set_regs(tid, &regs).task_ctx("set registers", tid)?;
    ptrace::set_xstate(tid, &xstate).task_ctx("set xstate", tid)?;
    let mask = core
        .thread_core
        .as_ref()
        .and_then(|th| th.blk_sigset)
        .or(core.tc.as_ref().map(|tc| tc.blk_sigset))
        .unwrap_or(0);
    ptrace::set_sigmask(tid, mask).task_ctx("set signal mask", tid)
}
