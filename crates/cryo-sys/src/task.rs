//! Queries and signals on other tasks that need no ptrace stop: kill(2), getpriority(2),
//! sched_getscheduler(2), sched_getparam(2), get_robust_list(2), pidfd_open(2),
//! pidfd_getfd(2) and kcmp(2).

use crate::types::{Pid, RemoteFd};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// kill(2).
pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::kill(pid.0, sig) } as libc::c_long)?;
    Ok(())
}

/// The kernel objects kcmp(2) compares (`include/uapi/linux/kcmp.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KcmpType {
    /// The address space (mm).
    Vm = 1,
    /// The fd table.
    Files = 2,
    /// cwd, root and umask.
    Fs = 3,
    /// The signal handlers.
    Sighand = 4,
    /// The I/O context.
    Io = 5,
    /// The System V semaphore undo list.
    Sysvsem = 6,
}

/// kcmp's answer as an order.
fn kcmp_order(rc: libc::c_long) -> io::Result<std::cmp::Ordering> {
    Ok(match rc {
        0 => std::cmp::Ordering::Equal,
        1 => std::cmp::Ordering::Less,
        2 => std::cmp::Ordering::Greater,
        _ => return Err(io::Error::other(format!("kcmp returned {rc}"))),
    })
}

/// kcmp(2) of one kernel object of two tasks: `Equal` when they share it. The order of
/// different objects is arbitrary but consistent while both exist, so it can sort them.
pub fn kcmp(a: Pid, b: Pid, what: KcmpType) -> io::Result<std::cmp::Ordering> {
    // SAFETY: the types compared here take two pids and no pointers.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, a.0, b.0, what as libc::c_long, 0, 0) })?;
    kcmp_order(rc)
}

/// kcmp(2) of the open files (file descriptions) behind fd `fd_a` of `a` and fd `fd_b` of `b`
/// (`KCMP_FILE`): `Equal` when both fds name one open file (dup, or inherited at fork).
pub fn kcmp_files(a: Pid, fd_a: i32, b: Pid, fd_b: i32) -> io::Result<std::cmp::Ordering> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: KCMP_FILE takes two pids and two fd numbers, no pointers.
    let rc = check(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.0,
            b.0,
            KCMP_FILE,
            libc::c_long::from(fd_a),
            libc::c_long::from(fd_b),
        )
    })?;
    kcmp_order(rc)
}

/// Whether `pid` exists (kill with signal 0; EPERM counts as existing).
pub fn exists(pid: Pid) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// cryo's own securebits (`prctl(PR_GET_SECUREBITS)`).
pub fn own_securebits() -> io::Result<u32> {
    // SAFETY: integer arguments only.
    let rc = check(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) } as libc::c_long)?;
    Ok(rc as u32)
}

/// The nice value of `pid` (getpriority(PRIO_PROCESS)).
pub fn get_nice(pid: Pid) -> io::Result<i32> {
    // getpriority returns 20 - nice for the raw syscall.
    // SAFETY: integer arguments only.
    let rc = check(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, pid.0) })?;
    Ok(20 - rc as i32)
}

/// The scheduling policy and static priority of `pid`.
pub fn get_sched(pid: Pid) -> io::Result<(u32, u32)> {
    // SAFETY: integer arguments only.
    let policy = check(unsafe { libc::syscall(libc::SYS_sched_getscheduler, pid.0) })?;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid out-pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_getparam,
            pid.0,
            &mut param as *mut libc::sched_param,
        )
    })?;
    Ok((policy as u32, param.sched_priority as u32))
}

/// The robust futex list head and its length of `pid` (get_robust_list(2)).
pub fn get_robust_list(pid: Pid) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: both out-pointers are valid for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            pid.0,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    })?;
    Ok((head, len as u64))
}

/// A pidfd for `pid` (pidfd_open(2)).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.0, 0) })?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd of thread `tid`, leader or not (`PIDFD_THREAD`, Linux 6.9): the handle to a
/// process whose leader has exited while its other threads run.
pub fn pidfd_open_thread(tid: Pid) -> io::Result<OwnedFd> {
    /// `PIDFD_THREAD` (include/uapi/linux/pidfd.h), which is `O_EXCL`.
    const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
    // SAFETY: integer arguments only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, tid.0, PIDFD_THREAD) })?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A duplicate, in cryo, of the task's fd `fd` (pidfd_getfd(2)).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: RemoteFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments only.
    let out = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd.0, 0) })?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(out as i32) })
}

/// The raw wait status of a child or of a task reparented to us as subreaper (waitpid(2) with
/// `__WALL`, retried on EINTR).
pub fn wait_pid(pid: Pid) -> io::Result<i32> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid.0, &mut status, libc::__WALL) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(status);
    }
}

/// The CPUs `pid` may run on (sched_getaffinity(2); 0 = the calling thread).
pub fn get_affinity(pid: Pid) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid out-pointer of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(pid.0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: set is initialised; CPU_ISSET only reads it.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Let `pid` (0 = the calling thread) run only on `cpus` (sched_setaffinity(2)).
pub fn set_affinity(pid: Pid, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: c is in range; set is a valid cpu_set_t.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_setaffinity(pid.0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: no arguments.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as usize)
}
