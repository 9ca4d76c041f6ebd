//! A fresh pid namespace to restore into (CRIU's wish list, W4), and the small init that runs as
//! its PID 1 afterwards.
//!
//! [`fork_into_new_pidns`] is clone3(2) with `CLONE_NEWPID | CLONE_NEWNS`: the child is PID 1 of
//! a new pid namespace, in a private copy of the caller's mounts, where [`mount_own_proc`] puts
//! a /proc of the new namespace over /proc, so that PIDs, ptrace and /proc agree inside it.
//! [`run_init`] is what PID 1 does once the tree runs: reap every orphan, pass SIGTERM, SIGINT
//! and SIGHUP on to the root task, and exit with the root's status (pid_namespaces(7)).

use crate::puppet::CloneArgs;
use crate::types::Pid;
use std::io;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Which side of [`fork_into_new_pidns`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The child: PID 1 of the new namespace.
    Child,
    /// The caller; `pid` is the child's PID in the caller's namespace.
    Parent {
        /// The child.
        pid: Pid,
    },
}

/// Whether the calling process has a single thread (a fork of a multi-threaded process may
/// only make async-signal-safe calls, and the child of [`fork_into_new_pidns`] runs on).
pub fn single_threaded() -> io::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|v| v.trim() == "1")
        .unwrap_or(false))
}

/// Fork into a new pid and mount namespace. The caller must be single-threaded
/// ([`single_threaded`]): the child goes on running the caller's code.
pub fn fork_into_new_pidns() -> io::Result<Forked> {
    if !single_threaded()? {
        return Err(io::Error::other(
            "a new pid namespace is forked only from a single-threaded process",
        ));
    }
    let args = CloneArgs {
        flags: (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed. Without CLONE_VM the child gets a
    // copy of our memory; the process has one thread (checked above), so no lock is held by a
    // thread that does not exist in the child.
    let rc = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    Ok(if rc == 0 {
        Forked::Child
    } else {
        Forked::Parent {
            pid: Pid(rc as i32),
        }
    })
}

/// Mount a /proc of `init`'s pid namespace over /proc in `init`'s mount namespace (a restored
/// tree with a pid namespace of its own, once nothing of the restore needs the caller's /proc
/// there any more). A child of the caller joins both namespaces and forks; that grandchild,
/// inside the pid namespace for the moment it lives, mounts. Children make raw syscalls only:
/// the caller may have threads.
pub fn mount_proc_of(init: Pid) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let pidfd = crate::task::pidfd_open(init)?;
    let fd = pidfd.as_raw_fd();
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let size = std::mem::size_of::<CloneArgs>();
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM the child has a
    // copy of our memory and makes raw syscalls only, then exit_group: it never returns.
    let child = check(unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size) })?;
    if child == 0 {
        // SAFETY: raw syscalls on integers, on `args` (still valid in our copy of the memory)
        // and on NUL-terminated strings that live as long as the process; every path ends in
        // exit_group.
        unsafe {
            if libc::syscall(libc::SYS_setns, fd, libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
                libc::syscall(libc::SYS_exit_group, 10);
            }
            let gc = libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size);
            if gc == 0 {
                let rc = mount_proc_raw();
                libc::syscall(libc::SYS_exit_group, if rc == 0 { 0 } else { 12 });
            }
            if gc < 0 {
                libc::syscall(libc::SYS_exit_group, 11);
            }
            let mut status: libc::c_int = 0;
            while libc::syscall(
                libc::SYS_wait4,
                gc,
                &mut status as *mut libc::c_int,
                0,
                std::ptr::null::<libc::c_void>(),
            ) < 0
            {}
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                13
            };
            libc::syscall(libc::SYS_exit_group, code);
        }
    }
    let status = crate::task::wait_pid(Pid(child as i32))?;
    match exit_code(status) {
        0 => Ok(()),
        10 => Err(io::Error::other(
            "join the pid and mount namespaces of the init",
        )),
        11 => Err(io::Error::other("fork into the pid namespace")),
        12 => Err(io::Error::other("mount proc on /proc")),
        c => Err(io::Error::other(format!(
            "the mounting child ended with {c}"
        ))),
    }
}

/// In the child: make every mount private (nothing propagates back to the caller's
/// namespace) and mount a /proc of the new pid namespace on /proc.
pub fn mount_own_proc() -> io::Result<()> {
    check(make_mounts_private_raw())?;
    check(mount_proc_raw())?;
    Ok(())
}

/// `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)`: nothing mounted in this mount namespace from
/// now on shows in the one it was copied from. A plain syscall, fit for a child made by a raw
/// clone; returns its result (-1 with errno set on failure).
pub(crate) fn make_mounts_private_raw() -> libc::c_long {
    let root = c"/";
    // SAFETY: a plain mount(2) syscall with a NUL-terminated string that outlives it and null
    // source, type and data.
    unsafe {
        libc::syscall(
            libc::SYS_mount,
            std::ptr::null::<libc::c_char>(),
            root.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null::<libc::c_void>(),
        )
    }
}

/// `mount("proc", "/proc", "proc", MS_NOSUID|MS_NODEV|MS_NOEXEC)`: a /proc of the caller's pid
/// namespace. A raw syscall, as [`make_mounts_private_raw`].
fn mount_proc_raw() -> libc::c_long {
    let proc_ = c"/proc";
    let kind = c"proc";
    // SAFETY: a plain mount(2) syscall with NUL-terminated strings that outlive it and null
    // data.
    unsafe {
        libc::syscall(
            libc::SYS_mount,
            kind.as_ptr(),
            proc_.as_ptr(),
            kind.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null::<libc::c_void>(),
        )
    }
}

fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// The exit code of a wait status, as a shell gives it (128 + signal when killed).
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Be PID 1 of the namespace until `root` (a child of the caller) ends; then exit with its
/// status. Every other child that ends is reaped. SIGTERM, SIGINT and SIGHUP are passed on
/// to `root`. Closes every fd above 2 first.
pub fn run_init(root: Pid) -> ! {
    let wanted = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];
    let set: u64 = wanted.iter().map(|&s| sig_bit(s)).fold(0, |a, b| a | b);
    // SAFETY: raw syscalls with integer arguments or pointers to locals that outlive them;
    // exit_group never returns.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        // Blocked first, so no SIGCHLD is missed between the reaping and the wait.
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &set as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        loop {
            loop {
                let mut status: i32 = 0;
                let r = libc::syscall(
                    libc::SYS_wait4,
                    -1,
                    &mut status as *mut i32,
                    libc::WNOHANG | libc::__WALL,
                    std::ptr::null_mut::<libc::rusage>(),
                );
                if r <= 0 {
                    break;
                }
                if r as i32 == root.0 {
                    libc::syscall(libc::SYS_exit_group, exit_code(status));
                }
            }
            let sig = libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &set as *const u64,
                std::ptr::null_mut::<libc::siginfo_t>(),
                std::ptr::null::<libc::timespec>(),
                8usize,
            );
            if sig as i32 != libc::SIGCHLD && sig > 0 {
                libc::syscall(libc::SYS_kill, root.0, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGTERM), 128 + libc::SIGTERM);
    }
}
