//! Kernel feature probes for `cryo check`.
//!
//! Each probe asks the kernel directly whether one facility cryo relies on works here, the way
//! CRIU's `kerndat.c` and `cr-check.c` do, but for cryo's own needs: cryo tracks dirty memory with
//! userfaultfd write-protection and `PAGEMAP_SCAN` instead of soft-dirty bits, creates tasks with
//! `clone3(set_tid)` and duplicates file descriptors with `pidfd_getfd`.
//!
//! A probe returns `Ok(detail)` when the feature works and `Err(reason)` when it does not; the
//! reason is the errno of the failing call or an [`io::ErrorKind::Unsupported`] error saying what
//! is missing. [`probe_all`] runs every probe and says which ones cryo cannot work without.
//!
//! Probes that need a traced task fork a child that only sleeps in `pause(2)` (async-signal-safe,
//! so forking from a multi-threaded cryo is fine); the child is killed and reaped when the probe
//! ends, whatever the outcome.

use std::ffi::CStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// What a probe found: `Ok(detail)` when the feature works, `Err(reason)` when it does not.
pub type ProbeResult = io::Result<String>;

/// The outcome of one probe, as `cryo check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureReport {
    /// cryo's name for the feature (see [`PROBES`]).
    pub name: &'static str,
    /// cryo cannot dump or restore an ordinary process without it.
    pub required: bool,
    /// The feature works on this kernel.
    pub ok: bool,
    /// What was found, or why the feature is missing.
    pub detail: String,
}

/// One probe: its name, whether cryo needs it, what it checks and the function that checks it.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// cryo's name for the feature.
    pub name: &'static str,
    /// cryo cannot dump or restore an ordinary process without it.
    pub required: bool,
    /// One line saying what the probe checks.
    pub what: &'static str,
    /// The probe.
    pub run: fn() -> ProbeResult,
}

impl Probe {
    /// Run the probe and turn its outcome into a report.
    pub fn report(&self) -> FeatureReport {
        let (ok, detail) = match (self.run)() {
            Ok(detail) => (true, detail),
            Err(e) => (false, e.to_string()),
        };
        FeatureReport {
            name: self.name,
            required: self.required,
            ok,
            detail,
        }
    }
}

/// Every probe, required ones first.
pub const PROBES: &[Probe] = &[
    Probe {
        name: "map_files",
        required: true,
        what: "/proc/PID/map_files is readable",
        run: probe_map_files,
    },
    Probe {
        name: "ptrace_seize",
        required: true,
        what: "PTRACE_SEIZE with options, PTRACE_INTERRUPT stops the task",
        run: probe_ptrace_seize,
    },
    Probe {
        name: "ptrace_peeksiginfo",
        required: true,
        what: "PTRACE_PEEKSIGINFO reads pending signals",
        run: probe_ptrace_peeksiginfo,
    },
    Probe {
        name: "ptrace_getsigmask",
        required: true,
        what: "PTRACE_GETSIGMASK reads the blocked mask",
        run: probe_ptrace_getsigmask,
    },
    Probe {
        name: "ptrace_get_rseq_conf",
        required: true,
        what: "PTRACE_GET_RSEQ_CONFIGURATION reads the rseq registration",
        run: probe_ptrace_get_rseq_conf,
    },
    Probe {
        name: "process_vm_readv",
        required: true,
        what: "process_vm_readv reads a traced task's memory",
        run: probe_process_vm_readv,
    },
    Probe {
        name: "pidfd_open",
        required: true,
        what: "pidfd_open(2)",
        run: probe_pidfd_open,
    },
    Probe {
        name: "pidfd_getfd",
        required: true,
        what: "pidfd_getfd(2) duplicates another task's fd",
        run: probe_pidfd_getfd,
    },
    Probe {
        name: "clone3_set_tid",
        required: true,
        what: "clone3(2) accepts set_tid",
        run: probe_clone3_set_tid,
    },
    Probe {
        name: "kcmp",
        required: true,
        what: "kcmp(2)",
        run: probe_kcmp,
    },
    Probe {
        name: "prctl_mm_map",
        required: true,
        what: "prctl(PR_SET_MM, PR_SET_MM_MAP) and PR_GET_TID_ADDRESS",
        run: probe_prctl_mm_map,
    },
    Probe {
        name: "memfd_create",
        required: true,
        what: "memfd_create(2)",
        run: probe_memfd_create,
    },
    Probe {
        name: "ns_last_pid",
        required: false,
        what: "/proc/sys/kernel/ns_last_pid is writable (clone3 set_tid makes it unnecessary)",
        run: probe_ns_last_pid,
    },
    Probe {
        name: "ptrace_suspend_seccomp",
        required: false,
        what: "PTRACE_O_SUSPEND_SECCOMP (tasks with seccomp filters)",
        run: probe_ptrace_suspend_seccomp,
    },
    Probe {
        name: "uffd",
        required: false,
        what: "userfaultfd(2) with UFFDIO_API (lazy pages)",
        run: probe_uffd,
    },
    Probe {
        name: "uffd_noncoop",
        required: false,
        what: "userfaultfd fork/remap/remove/unmap events (lazy pages)",
        run: probe_uffd_noncoop,
    },
    Probe {
        name: "pagemap_scan",
        required: false,
        what: "the PAGEMAP_SCAN ioctl on /proc/PID/pagemap",
        run: probe_pagemap_scan,
    },
    Probe {
        name: "pagemap_scan_guard_pages",
        required: false,
        what: "PAGEMAP_SCAN reports guard pages (PAGE_IS_GUARD)",
        run: probe_pagemap_scan_guard_pages,
    },
    Probe {
        name: "uffd_wp_async",
        required: false,
        what: "dirty tracking: userfaultfd async write-protect with PAGEMAP_SCAN (pre-dump)",
        run: probe_uffd_wp_async,
    },
    Probe {
        name: "soft_dirty",
        required: false,
        what: "soft-dirty bits in /proc/PID/pagemap (not used by cryo)",
        run: probe_soft_dirty,
    },
    Probe {
        name: "kcmp_epoll",
        required: false,
        what: "kcmp(KCMP_EPOLL_TFD) (epoll targets)",
        run: probe_kcmp_epoll,
    },
    Probe {
        name: "memfd_hugetlb",
        required: false,
        what: "memfd_create(MFD_HUGETLB)",
        run: probe_memfd_hugetlb,
    },
    Probe {
        name: "openat2",
        required: false,
        what: "openat2(2)",
        run: probe_openat2,
    },
    Probe {
        name: "fdinfo_mnt_id",
        required: false,
        what: "mnt_id in /proc/PID/fdinfo",
        run: probe_fdinfo_mnt_id,
    },
    Probe {
        name: "posix_timers",
        required: false,
        what: "/proc/PID/timers",
        run: probe_posix_timers,
    },
    Probe {
        name: "ns_pid",
        required: false,
        what: "NSpid in /proc/PID/status",
        run: probe_ns_pid,
    },
    Probe {
        name: "user_ns",
        required: false,
        what: "user namespaces",
        run: probe_user_ns,
    },
    Probe {
        name: "cgroup_ns",
        required: false,
        what: "cgroup namespaces",
        run: probe_cgroup_ns,
    },
    Probe {
        name: "time_ns",
        required: false,
        what: "time namespaces",
        run: probe_time_ns,
    },
    Probe {
        name: "loginuid",
        required: false,
        what: "/proc/PID/loginuid",
        run: probe_loginuid,
    },
];

/// Run every probe in [`PROBES`].
pub fn probe_all() -> Vec<FeatureReport> {
    PROBES.iter().map(Probe::report).collect()
}

/// Run the probe called `name`; `None` when there is no such probe.
pub fn probe_named(name: &str) -> Option<FeatureReport> {
    PROBES.iter().find(|p| p.name == name).map(Probe::report)
}

fn unsupported(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, msg.into())
}

fn errno_is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// A raw syscall's return value: the errno as an error when it is -1.
fn check_rc(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Wrap a new fd returned by a syscall.
fn owned_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check_rc(rc)?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("fd number out of range"))?;
    // SAFETY: the kernel just returned fd as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ptrace_check(rc: libc::c_long) -> io::Result<libc::c_long> {
    check_rc(rc)
}

// ---------------------------------------------------------------------------------------------
// A sleeping child to trace.

/// A value the probe child holds at the same address as cryo (fork copies the address space).
static CHILD_MAGIC: u64 = 0x6372_796f_7072_6f62; // "cryoprob"

/// A forked child sleeping in `pause(2)`, killed and reaped on drop.
struct ProbeChild {
    pid: libc::pid_t,
    /// The read end of a pipe the child also holds, at the same fd number (for pidfd_getfd).
    pipe_read: OwnedFd,
    _pipe_write: OwnedFd,
}

impl ProbeChild {
    /// `fork(2)` a child that sleeps forever.
    fn spawn() -> io::Result<ProbeChild> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
        let (pipe_read, pipe_write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only calls pause() and _exit(), which are async-signal-safe, so forking
        // a multi-threaded process is sound; it never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            loop {
                // SAFETY: pause() has no arguments and touches no memory.
                unsafe { libc::pause() };
            }
        }
        Ok(ProbeChild {
            pid,
            pipe_read,
            _pipe_write: pipe_write,
        })
    }

    /// Seize the child with `options` and stop it with PTRACE_INTERRUPT; waits for the stop.
    fn seize_and_stop(&self, options: libc::c_int) -> io::Result<()> {
        // SAFETY: PTRACE_SEIZE passes the option mask as data and reads no memory of ours.
        ptrace_check(unsafe {
            libc::ptrace(
                libc::PTRACE_SEIZE,
                self.pid,
                0 as libc::c_ulong,
                options as libc::c_ulong,
            )
        })?;
        // SAFETY: PTRACE_INTERRUPT passes no memory.
        ptrace_check(unsafe {
            libc::ptrace(
                libc::PTRACE_INTERRUPT,
                self.pid,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        })?;
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: status is a valid out-pointer for the duration of the call.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if rc >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if !errno_is(&e, libc::EINTR) {
                return Err(e);
            }
        }
        if !libc::WIFSTOPPED(status) {
            return Err(io::Error::other(format!(
                "probe child did not stop (status {status:#x})"
            )));
        }
        let event = (status >> 16) & 0xff;
        if event != libc::PTRACE_EVENT_STOP {
            return Err(io::Error::other(format!(
                "probe child stopped with signal {} event {event}, not a PTRACE_EVENT_STOP",
                libc::WSTOPSIG(status)
            )));
        }
        Ok(())
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        // SAFETY: kill() and waitpid() on our own child; status pointer may be null.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

/// The options cryo seizes tasks with (`include/uapi/linux/ptrace.h`).
const SEIZE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL;

// ---------------------------------------------------------------------------------------------
// ptrace(2)

/// `PTRACE_SEIZE` (Linux 3.4) with cryo's options, then `PTRACE_INTERRUPT` and a wait for the
/// `PTRACE_EVENT_STOP` (ptrace(2), "Group-stop").
pub fn probe_ptrace_seize() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    Ok(format!(
        "seized with options {SEIZE_OPTIONS:#x}, interrupted into PTRACE_EVENT_STOP"
    ))
}

/// `PTRACE_PEEKSIGINFO` (Linux 3.10; ptrace(2), `struct ptrace_peeksiginfo_args`).
pub fn probe_ptrace_peeksiginfo() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    let mut args = libc::ptrace_peeksiginfo_args {
        off: 0,
        flags: 0,
        nr: 1,
    };
    // SAFETY: siginfo_t is plain data.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: args is a valid ptrace_peeksiginfo_args and info has room for args.nr = 1 entry.
    let n = ptrace_check(unsafe {
        libc::ptrace(
            libc::PTRACE_PEEKSIGINFO,
            child.pid,
            &mut args as *mut libc::ptrace_peeksiginfo_args,
            &mut info as *mut libc::siginfo_t,
        )
    })?;
    Ok(format!("{n} pending signals read"))
}

/// `PTRACE_GETSIGMASK` (Linux 3.11; ptrace(2)).
pub fn probe_ptrace_getsigmask() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes addr (= 8) bytes of sigset to mask, which is 8 bytes.
    ptrace_check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            child.pid,
            std::mem::size_of::<u64>() as libc::c_ulong,
            &mut mask as *mut u64,
        )
    })?;
    Ok(format!("blocked mask {mask:#x}"))
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (0x420f, Linux 5.13; `struct ptrace_rseq_configuration` in
/// `include/uapi/linux/ptrace.h`).
pub fn probe_ptrace_get_rseq_conf() -> ProbeResult {
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    let mut conf = libc::ptrace_rseq_configuration {
        rseq_abi_pointer: 0,
        rseq_abi_size: 0,
        signature: 0,
        flags: 0,
        pad: 0,
    };
    let size = std::mem::size_of::<libc::ptrace_rseq_configuration>();
    // SAFETY: the kernel writes at most addr (= size) bytes into conf, which is that large.
    let n = ptrace_check(unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            child.pid,
            size as libc::c_ulong,
            &mut conf as *mut libc::ptrace_rseq_configuration,
        )
    })
    .map_err(|e| {
        if errno_is(&e, libc::EIO) {
            unsupported("PTRACE_GET_RSEQ_CONFIGURATION is unknown to this kernel (needs 5.13)")
        } else {
            e
        }
    })?;
    if conf.rseq_abi_pointer == 0 {
        Ok(format!(
            "{n} bytes read; the probe task has no rseq area registered"
        ))
    } else {
        Ok(format!(
            "{n} bytes read; rseq area at {:#x}, {} bytes, signature {:#x}",
            conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature
        ))
    }
}

/// `PTRACE_O_SUSPEND_SECCOMP` (Linux 4.3, needs CAP_SYS_ADMIN; ptrace(2)).
pub fn probe_ptrace_suspend_seccomp() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    let opts = SEIZE_OPTIONS | libc::PTRACE_O_SUSPEND_SECCOMP;
    // SAFETY: PTRACE_SETOPTIONS passes the option mask as data and reads no memory of ours.
    ptrace_check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            child.pid,
            0 as libc::c_ulong,
            opts as libc::c_ulong,
        )
    })?;
    Ok("PTRACE_O_SUSPEND_SECCOMP accepted".into())
}

/// `process_vm_readv(2)` (Linux 3.2) from a seized task.
pub fn probe_process_vm_readv() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    child.seize_and_stop(SEIZE_OPTIONS)?;
    let mut value: u64 = 0;
    let local = libc::iovec {
        iov_base: (&mut value as *mut u64).cast(),
        iov_len: std::mem::size_of::<u64>(),
    };
    let remote = libc::iovec {
        iov_base: (&CHILD_MAGIC as *const u64).cast_mut().cast(),
        iov_len: std::mem::size_of::<u64>(),
    };
    // SAFETY: local describes the 8 bytes of `value`, which we own; the remote iovec is only read
    // by the kernel in the child's address space.
    let n = unsafe { libc::process_vm_readv(child.pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if value != CHILD_MAGIC {
        return Err(io::Error::other(format!(
            "read {value:#x}, expected {CHILD_MAGIC:#x}"
        )));
    }
    Ok(format!("{n} bytes read"))
}

// ---------------------------------------------------------------------------------------------
// pidfd

/// `pidfd_open(2)` (Linux 5.3) on cryo itself.
pub fn probe_pidfd_open() -> ProbeResult {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) })?;
    Ok(format!("pidfd {}", fd.as_raw_fd()))
}

/// `pidfd_getfd(2)` (Linux 5.6): duplicate a pipe end out of a child and check it is ours.
pub fn probe_pidfd_getfd() -> ProbeResult {
    let child = ProbeChild::spawn()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let pidfd = owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid, 0) })?;
    let target = child.pipe_read.as_raw_fd();
    // SAFETY: pidfd_getfd takes a pidfd, a remote fd number and flags, and returns a new fd.
    let got =
        owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })?;
    let a = fstat(got.as_raw_fd())?;
    let b = fstat(target)?;
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(io::Error::other("pidfd_getfd returned a different file"));
    }
    Ok(format!("duplicated fd {target} of the probe task"))
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: struct stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

// ---------------------------------------------------------------------------------------------
// clone3, kcmp, prctl, memfd

/// `clone3(2)` with `set_tid` (Linux 5.5), probed as CRIU does: a non-null `set_tid` with
/// `set_tid_size` 0 gives EINVAL when set_tid is known, E2BIG when the struct is too new and
/// ENOSYS without clone3. Nothing is ever created.
pub fn probe_clone3_set_tid() -> ProbeResult {
    // SAFETY: clone_args is plain data; all-zero is a valid value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.set_tid = u64::MAX;
    args.set_tid_size = 0;
    // SAFETY: args is a valid clone_args of the size passed. The kernel rejects it before creating
    // anything (set_tid without set_tid_size); should it ever create a child, the child exits
    // at once without running Rust code.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if rc == 0 {
        // SAFETY: we are an unexpected child; leave at once.
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        // SAFETY: reap the unexpected child; no memory is passed.
        unsafe { libc::waitpid(rc as libc::pid_t, std::ptr::null_mut(), libc::__WALL) };
        return Err(io::Error::other(
            "clone3 with an invalid set_tid unexpectedly succeeded",
        ));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) => Ok("clone3 knows set_tid".into()),
        Some(libc::ENOSYS) => Err(unsupported("no clone3 syscall (needs Linux 5.3)")),
        Some(libc::E2BIG) => Err(unsupported("clone3 without set_tid (needs Linux 5.5)")),
        _ => Err(e),
    }
}

/// `/proc/sys/kernel/ns_last_pid` is writable (how CRIU picks PIDs without clone3 set_tid).
pub fn probe_ns_last_pid() -> ProbeResult {
    access("/proc/sys/kernel/ns_last_pid", libc::W_OK)?;
    Ok("writable".into())
}

/// `kcmp(2)` (Linux 3.5, CONFIG_KCMP): compare cryo's VM with itself.
pub fn probe_kcmp() -> ProbeResult {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: getpid has no arguments.
    let pid = libc::c_long::from(unsafe { libc::getpid() });
    // SAFETY: KCMP_VM takes two pids and no pointers.
    let rc = check_rc(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_VM, 0, 0) })?;
    if rc != 0 {
        return Err(io::Error::other(format!(
            "kcmp says cryo's VM differs from itself ({rc})"
        )));
    }
    Ok("KCMP_VM works".into())
}

/// `kcmp(KCMP_EPOLL_TFD)` (Linux 4.13; `struct kcmp_epoll_slot` in `include/uapi/linux/kcmp.h`).
pub fn probe_kcmp_epoll() -> ProbeResult {
    const KCMP_EPOLL_TFD: libc::c_long = 7;
    #[repr(C)]
    struct KcmpEpollSlot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    // SAFETY: epoll_create1 and eventfd take flags and return new fds.
    let epfd = owned_fd(libc::c_long::from(unsafe {
        libc::epoll_create1(libc::EPOLL_CLOEXEC)
    }))?;
    // SAFETY: as above.
    let evfd = owned_fd(libc::c_long::from(unsafe {
        libc::eventfd(0, libc::EFD_CLOEXEC)
    }))?;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: ev is a valid epoll_event; both fds are open.
    if unsafe {
        libc::epoll_ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            evfd.as_raw_fd(),
            &mut ev,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let slot = KcmpEpollSlot {
        efd: epfd.as_raw_fd() as u32,
        tfd: evfd.as_raw_fd() as u32,
        toff: 0,
    };
    // SAFETY: getpid has no arguments.
    let pid = libc::c_long::from(unsafe { libc::getpid() });
    // SAFETY: the kernel reads a kcmp_epoll_slot from &slot, which lives across the call.
    let rc = check_rc(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            libc::c_long::from(evfd.as_raw_fd()),
            &slot as *const KcmpEpollSlot,
        )
    })?;
    if rc != 0 {
        return Err(io::Error::other(format!(
            "epoll target compares unequal to itself ({rc})"
        )));
    }
    Ok("KCMP_EPOLL_TFD works".into())
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)` (Linux 3.18, CONFIG_CHECKPOINT_RESTORE) and
/// `PR_GET_TID_ADDRESS` (prctl(2)).
pub fn probe_prctl_mm_map() -> ProbeResult {
    let mut tid_addr: *mut libc::c_int = std::ptr::null_mut();
    // SAFETY: the kernel writes one pointer to tid_addr.
    if unsafe {
        libc::prctl(
            libc::PR_GET_TID_ADDRESS,
            &mut tid_addr as *mut *mut libc::c_int,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to size and changes nothing.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE as libc::c_ulong,
            &mut size as *mut libc::c_uint,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if errno_is(&e, libc::EINVAL) {
            return Err(unsupported(
                "PR_SET_MM_MAP is unknown (kernel without CHECKPOINT_RESTORE)",
            ));
        }
        return Err(e);
    }
    Ok(format!("struct prctl_mm_map is {size} bytes"))
}

/// `memfd_create(2)` (Linux 3.17).
pub fn probe_memfd_create() -> ProbeResult {
    memfd(libc::MFD_CLOEXEC)?;
    Ok("works".into())
}

/// `memfd_create(2)` with `MFD_HUGETLB` (Linux 4.14).
pub fn probe_memfd_hugetlb() -> ProbeResult {
    memfd(libc::MFD_CLOEXEC | libc::MFD_HUGETLB)?;
    Ok("works".into())
}

fn memfd(flags: libc::c_uint) -> io::Result<OwnedFd> {
    const NAME: &CStr = c"cryo-probe";
    // SAFETY: NAME is a valid NUL-terminated string.
    owned_fd(libc::c_long::from(unsafe {
        libc::memfd_create(NAME.as_ptr(), flags)
    }))
}

/// `openat2(2)` (Linux 5.6): a call with a zero-sized `struct open_how` fails with EINVAL when the
/// syscall exists.
pub fn probe_openat2() -> ProbeResult {
    // SAFETY: a null path and a zero size: the kernel rejects the call before reading memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            std::ptr::null::<u8>(),
            0usize,
            0usize,
        )
    };
    if rc >= 0 {
        // SAFETY: an fd we did not expect but now own.
        drop(unsafe { OwnedFd::from_raw_fd(rc as RawFd) });
        return Ok("works".into());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::EFAULT) | Some(libc::E2BIG) => Ok("present".into()),
        Some(libc::ENOSYS) => Err(unsupported("no openat2 syscall (needs Linux 5.6)")),
        _ => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// userfaultfd(2) and PAGEMAP_SCAN (include/uapi/linux/userfaultfd.h, include/uapi/linux/fs.h)

/// `UFFD_API`.
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`: 24-byte argument.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`: 32-byte argument.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;

const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// What CRIU's lazy pages need (`NEED_UFFD_API_FEATURES` in criu/uffd.c).
const UFFD_NONCOOP_FEATURES: u64 = UFFD_FEATURE_EVENT_FORK
    | UFFD_FEATURE_EVENT_REMAP
    | UFFD_FEATURE_EVENT_UNMAP
    | UFFD_FEATURE_EVENT_REMOVE;

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_register` (with its `struct uffdio_range`).
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`: 96-byte argument.
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
const PAGE_IS_GUARD: u64 = 1 << 8;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Open a userfaultfd (`userfaultfd(2)`, Linux 4.3) and handshake with `UFFDIO_API` asking for
/// `features`; returns the fd and the features the kernel offers.
fn uffd_open(features: u64) -> io::Result<(OwnedFd, u64)> {
    // SAFETY: userfaultfd takes flags and returns a new fd.
    let fd = owned_fd(unsafe {
        libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK)
    })
    .map_err(|e| {
        if errno_is(&e, libc::ENOSYS) {
            unsupported("no userfaultfd syscall (kernel without CONFIG_USERFAULTFD)")
        } else {
            e
        }
    })?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one struct uffdio_api, which api is.
    if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, api.features))
}

/// The userfaultfd features this kernel offers (`UFFDIO_API` with no features asked).
pub fn uffd_features() -> io::Result<u64> {
    uffd_open(0).map(|(_, f)| f)
}

/// `userfaultfd(2)` works (lazy pages).
pub fn probe_uffd() -> ProbeResult {
    let f = uffd_features()?;
    Ok(format!("features {f:#x}"))
}

/// userfaultfd with the non-cooperative events lazy pages need (fork, remap, unmap, remove).
pub fn probe_uffd_noncoop() -> ProbeResult {
    let f = uffd_features()?;
    let missing = UFFD_NONCOOP_FEATURES & !f;
    if missing != 0 {
        return Err(unsupported(format!(
            "missing userfaultfd features {missing:#x}"
        )));
    }
    Ok(format!("features {f:#x}"))
}

fn open_pagemap() -> io::Result<fs::File> {
    fs::File::open("/proc/self/pagemap")
}

fn pagemap_scan(pagemap: &fs::File, arg: &mut PmScanArg) -> io::Result<libc::c_int> {
    arg.size = std::mem::size_of::<PmScanArg>() as u64;
    // SAFETY: arg is a valid pm_scan_arg of the size it declares; when arg.vec is set, the caller
    // points it at arg.vec_len PageRegion entries that live across the call.
    let rc = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, arg as *mut PmScanArg) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if errno_is(&e, libc::ENOTTY) {
            return Err(unsupported(
                "PAGEMAP_SCAN is unknown to this kernel (needs 6.7)",
            ));
        }
        return Err(e);
    }
    Ok(rc)
}

/// The `PAGEMAP_SCAN` ioctl (Linux 6.7; ioctl_pagemap_scan(2)), asked as CRIU's kerndat does.
pub fn probe_pagemap_scan() -> ProbeResult {
    let pm = open_pagemap()?;
    let mut arg = PmScanArg {
        category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_mask: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        ..Default::default()
    };
    pagemap_scan(&pm, &mut arg)?;
    Ok("works".into())
}

/// `PAGEMAP_SCAN` knows `PAGE_IS_GUARD` (Linux 6.14, guard regions of `MADV_GUARD_INSTALL`).
pub fn probe_pagemap_scan_guard_pages() -> ProbeResult {
    let pm = open_pagemap()?;
    let mut arg = PmScanArg {
        category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_GUARD,
        ..Default::default()
    };
    pagemap_scan(&pm, &mut arg).map_err(|e| {
        if errno_is(&e, libc::EINVAL) {
            unsupported("PAGEMAP_SCAN does not know PAGE_IS_GUARD")
        } else {
            e
        }
    })?;
    Ok("works".into())
}

/// An anonymous private mapping, unmapped on drop.
struct AnonMap {
    addr: *mut libc::c_void,
    len: usize,
}

impl AnonMap {
    fn new(len: usize) -> io::Result<AnonMap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice overlaps nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonMap { addr, len })
    }

    fn start(&self) -> u64 {
        self.addr as u64
    }

    /// Write one byte at `off` through a volatile store, so the page really is written.
    fn touch(&self, off: usize) {
        assert!(off < self.len);
        // SAFETY: off is inside the mapping, which is readable and writable and ours alone.
        unsafe { std::ptr::write_volatile(self.addr.cast::<u8>().add(off), 0x5a) };
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: addr/len is the mapping created in new(), used by nothing after this.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// Dirty tracking as cryo does it: register memory with userfaultfd in async write-protect mode
/// (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7), write-protect it with `PAGEMAP_SCAN`
/// (`PM_SCAN_WP_MATCHING`), write one page, and find exactly that page `PAGE_IS_WRITTEN`
/// (Documentation/admin-guide/mm/pagemap.rst).
pub fn probe_uffd_wp_async() -> ProbeResult {
    let offered = uffd_features()?;
    if offered & UFFD_FEATURE_WP_ASYNC == 0 {
        return Err(unsupported(
            "userfaultfd has no UFFD_FEATURE_WP_ASYNC (needs 6.7)",
        ));
    }
    let wanted = UFFD_FEATURE_WP_ASYNC
        | (offered & (UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM));
    let (uffd, _) = uffd_open(wanted)?;
    let psz = page_size();
    let map = AnonMap::new(4 * psz)?;
    map.touch(0);
    let mut reg = UffdioRegister {
        start: map.start(),
        len: map.len as u64,
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes one struct uffdio_register, which reg is; the range
    // is our own mapping.
    if unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_REGISTER,
            &mut reg as *mut UffdioRegister,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let pm = open_pagemap()?;
    let end = map.start() + map.len as u64;
    let mut wp = PmScanArg {
        flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        start: map.start(),
        end,
        category_mask: PAGE_IS_WRITTEN,
        return_mask: PAGE_IS_WRITTEN,
        ..Default::default()
    };
    pagemap_scan(&pm, &mut wp)?;
    map.touch(psz + 1);
    let mut regions = [PageRegion::default(); 4];
    let mut get = PmScanArg {
        start: map.start(),
        end,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        category_mask: PAGE_IS_WRITTEN,
        return_mask: PAGE_IS_WRITTEN,
        ..Default::default()
    };
    let n = pagemap_scan(&pm, &mut get)?;
    let want = (map.start() + psz as u64, map.start() + 2 * psz as u64);
    let found: Vec<(u64, u64)> = regions
        .iter()
        .take(n.max(0) as usize)
        .map(|r| (r.start, r.end))
        .collect();
    if found != [want] {
        return Err(io::Error::other(format!(
            "expected only page {:#x} written, PAGEMAP_SCAN found {found:x?}",
            want.0
        )));
    }
    drop(uffd);
    Ok(format!(
        "userfaultfd features {wanted:#x}; one written page found"
    ))
}

/// Soft-dirty bits (CONFIG_MEM_SOFT_DIRTY; Documentation/admin-guide/mm/soft-dirty.rst): clear
/// them through `/proc/self/clear_refs`, write a page, and read bit 55 of its pagemap entry.
/// cryo does not need them (see [`probe_uffd_wp_async`]).
pub fn probe_soft_dirty() -> ProbeResult {
    const PM_SOFT_DIRTY: u64 = 1 << 55;
    let map = AnonMap::new(page_size())?;
    map.touch(0);
    fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")?
        .write_all(b"4")?;
    map.touch(0);
    let mut pm = open_pagemap()?;
    let index = map.start() / page_size() as u64;
    pm.seek(SeekFrom::Start(index * 8))?;
    let mut entry = [0u8; 8];
    pm.read_exact(&mut entry)?;
    if u64::from_ne_bytes(entry) & PM_SOFT_DIRTY == 0 {
        return Err(unsupported(
            "a written page has no soft-dirty bit (kernel without CONFIG_MEM_SOFT_DIRTY)",
        ));
    }
    Ok("works".into())
}

// ---------------------------------------------------------------------------------------------
// /proc

fn access(path: &str, mode: libc::c_int) -> io::Result<()> {
    let c = std::ffi::CString::new(path).map_err(io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), mode) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{path}: {e}")));
    }
    Ok(())
}

fn exists(path: &str) -> ProbeResult {
    if Path::new(path).exists() {
        Ok(format!("{path} exists"))
    } else {
        Err(unsupported(format!("{path} does not exist")))
    }
}

/// `/proc/PID/map_files` (Linux 3.3, proc(5)) is readable.
pub fn probe_map_files() -> ProbeResult {
    access("/proc/self/map_files", libc::R_OK)?;
    let n = fs::read_dir("/proc/self/map_files")?.count();
    if n == 0 {
        return Err(io::Error::other("/proc/self/map_files is empty"));
    }
    Ok(format!("{n} entries for cryo"))
}

/// `mnt_id` in `/proc/PID/fdinfo/FD` (Linux 3.15, proc(5)).
pub fn probe_fdinfo_mnt_id() -> ProbeResult {
    let f = fs::File::open("/proc/self/status")?;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd()))?;
    if info.lines().any(|l| l.starts_with("mnt_id:")) {
        Ok("present".into())
    } else {
        Err(unsupported("no mnt_id in fdinfo"))
    }
}

/// `/proc/PID/timers` (Linux 3.10, CONFIG_CHECKPOINT_RESTORE).
pub fn probe_posix_timers() -> ProbeResult {
    access("/proc/self/timers", libc::R_OK)?;
    Ok("readable".into())
}

/// `NSpid` in `/proc/PID/status` (Linux 4.1).
pub fn probe_ns_pid() -> ProbeResult {
    let status = fs::read_to_string("/proc/self/status")?;
    match status.lines().find(|l| l.starts_with("NSpid:")) {
        Some(l) => Ok(l.split_whitespace().collect::<Vec<_>>().join(" ")),
        None => Err(unsupported("no NSpid line in /proc/self/status")),
    }
}

/// User namespaces (`/proc/self/ns/user`).
pub fn probe_user_ns() -> ProbeResult {
    exists("/proc/self/ns/user")
}

/// Cgroup namespaces (`/proc/self/ns/cgroup`, Linux 4.6).
pub fn probe_cgroup_ns() -> ProbeResult {
    exists("/proc/self/ns/cgroup")
}

/// Time namespaces (`/proc/self/ns/time`, Linux 5.6).
pub fn probe_time_ns() -> ProbeResult {
    exists("/proc/self/ns/time")
}

/// `/proc/PID/loginuid` (CONFIG_AUDIT).
pub fn probe_loginuid() -> ProbeResult {
    exists("/proc/self/loginuid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_struct_sizes() {
        assert_eq!(std::mem::size_of::<PmScanArg>(), 96);
        assert_eq!(std::mem::size_of::<PageRegion>(), 24);
        assert_eq!(std::mem::size_of::<UffdioApi>(), 24);
        assert_eq!(std::mem::size_of::<UffdioRegister>(), 32);
        // _IOWR(type, nr, size) = 3 << 30 | size << 16 | type << 8 | nr
        let iowr =
            |ty: u64, nr: u64, size: usize| (3u64 << 30) | ((size as u64) << 16) | (ty << 8) | nr;
        assert_eq!(iowr(b'f'.into(), 16, 96), PAGEMAP_SCAN);
        assert_eq!(iowr(0xaa, 0x3f, 24), UFFDIO_API);
        assert_eq!(iowr(0xaa, 0x00, 32), UFFDIO_REGISTER);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
    }

    #[test]
    fn probes_do_not_panic() {
        for r in probe_all() {
            assert!(!r.detail.is_empty(), "{} has no detail", r.name);
        }
        assert!(probe_named("no_such_probe").is_none());
    }
}
