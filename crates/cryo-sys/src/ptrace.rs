//! ptrace(2): seizing, stopping and resuming tasks, and their register sets.
//!
//! Every call here only affects the traced task (or fails), so the wrappers are safe functions.
//! Register sets follow `include/uapi/linux/elf.h` (NT_PRSTATUS, NT_X86_XSTATE) and
//! `include/uapi/linux/ptrace.h` (PTRACE_GETSIGMASK, PTRACE_PEEKSIGINFO,
//! PTRACE_GET_RSEQ_CONFIGURATION).

use crate::types::Pid;
use std::io;

/// The general-purpose registers of an x86_64 task (`struct user_regs_struct`).
pub type Regs = libc::user_regs_struct;

/// `PTRACE_GET_RSEQ_CONFIGURATION` (not yet in the libc crate).
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
/// `PTRACE_PEEKSIGINFO_SHARED`: peek the process-wide queue instead of the thread's.
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `NT_X86_XSTATE`.
const NT_X86_XSTATE: libc::c_int = 0x202;
/// The largest XSAVE area the kernel will hand out (AMX needs about 11 KiB).
const XSTATE_MAX: usize = 16384;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `PTRACE_SEIZE` with `options`; the task keeps running.
pub fn seize(pid: Pid, options: u32) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE reads no memory of ours; the data argument is the option mask.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid.0, 0, options as libc::c_ulong) })?;
    Ok(())
}

/// `PTRACE_INTERRUPT`: ask a seized task to stop.
pub fn interrupt(pid: Pid) -> io::Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid.0, 0, 0) })?;
    Ok(())
}

/// `PTRACE_SETOPTIONS`.
pub fn set_options(pid: Pid, options: u32) -> io::Result<()> {
    // SAFETY: the data argument is an integer option mask.
    check(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid.0, 0, options as libc::c_ulong) })?;
    Ok(())
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
pub fn detach(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: the data argument is a signal number.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid.0, 0, sig as libc::c_ulong) })?;
    Ok(())
}

/// `PTRACE_CONT`, delivering `sig` (0 for none).
pub fn cont(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: the data argument is a signal number.
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, pid.0, 0, sig as libc::c_ulong) })?;
    Ok(())
}

/// `PTRACE_GETEVENTMSG`: at a fork, vfork or clone event stop, the new task's PID as cryo's
/// pid namespace numbers it.
pub fn get_event_msg(pid: Pid) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: the data argument points at a c_ulong the kernel writes the message to.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid.0,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    })?;
    Ok(msg)
}

/// `PTRACE_SYSCALL`: resume until the next syscall entry or exit.
pub fn syscall(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: the data argument is a signal number.
    check(unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid.0, 0, sig as libc::c_ulong) })?;
    Ok(())
}

/// How a task stopped or ended, from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// A ptrace stop: the signal and the ptrace event (status >> 16).
    Stopped {
        /// WSTOPSIG.
        sig: i32,
        /// The PTRACE_EVENT_* number, 0 for none.
        event: i32,
    },
    /// Continued (only with WCONTINUED).
    Continued,
}

impl WaitStatus {
    /// Decode a raw wait status.
    pub fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else if libc::WIFSTOPPED(status) {
            WaitStatus::Stopped {
                sig: libc::WSTOPSIG(status),
                event: (status >> 16) & 0xff,
            }
        } else {
            WaitStatus::Continued
        }
    }
}

/// `waitpid(pid, __WALL)`, retried on EINTR.
pub fn wait(pid: Pid) -> io::Result<WaitStatus> {
    wait_flags(pid, libc::__WALL).map(|w| w.unwrap_or(WaitStatus::Continued))
}

/// `waitpid(pid, flags)`, retried on EINTR; `None` when WNOHANG found nothing.
pub fn wait_flags(pid: Pid, flags: i32) -> io::Result<Option<WaitStatus>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let rc = unsafe { libc::waitpid(pid.0, &mut status, flags) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(None);
        }
        return Ok(Some(WaitStatus::from_raw(status)));
    }
}

/// Read the general registers (`PTRACE_GETREGSET`, `NT_PRSTATUS`).
pub fn get_regs(pid: Pid) -> io::Result<Regs> {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: (&mut regs as *mut Regs).cast(),
        iov_len: std::mem::size_of::<Regs>(),
    };
    // SAFETY: iov points at a live Regs of exactly iov_len bytes.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGSET, pid.0, libc::NT_PRSTATUS, &mut iov) })?;
    Ok(regs)
}

/// Write the general registers (`PTRACE_SETREGSET`, `NT_PRSTATUS`). Changes the task's state.
pub fn set_regs(pid: Pid, regs: &Regs) -> io::Result<()> {
    let mut copy = *regs;
    let mut iov = libc::iovec {
        iov_base: (&mut copy as *mut Regs).cast(),
        iov_len: std::mem::size_of::<Regs>(),
    };
    // SAFETY: iov points at a live Regs of exactly iov_len bytes; the kernel only reads it.
    check(unsafe { libc::ptrace(libc::PTRACE_SETREGSET, pid.0, libc::NT_PRSTATUS, &mut iov) })?;
    Ok(())
}

/// Read the whole XSAVE area (`NT_X86_XSTATE`, standard format), sized by the kernel.
pub fn get_xstate(pid: Pid) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes buf, which outlives the call; the kernel shrinks iov_len.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGSET, pid.0, NT_X86_XSTATE, &mut iov) })?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Write the XSAVE area (`NT_X86_XSTATE`). Changes the task's FPU/vector state.
pub fn set_xstate(pid: Pid, xstate: &[u8]) -> io::Result<()> {
    let mut buf = xstate.to_vec();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes buf, which outlives the call.
    check(unsafe { libc::ptrace(libc::PTRACE_SETREGSET, pid.0, NT_X86_XSTATE, &mut iov) })?;
    Ok(())
}

/// The blocked signal mask (`PTRACE_GETSIGMASK`), bit N-1 for signal N.
pub fn get_sigmask(pid: Pid) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: addr is the size of the mask, data a valid out-pointer to 8 bytes.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            pid.0,
            8usize,
            &mut mask as *mut u64,
        )
    })?;
    Ok(mask)
}

/// Set the blocked signal mask (`PTRACE_SETSIGMASK`). SIGKILL and SIGSTOP stay unblockable.
pub fn set_sigmask(pid: Pid, mask: u64) -> io::Result<()> {
    let m = mask;
    // SAFETY: addr is the size of the mask, data points at 8 readable bytes.
    check(unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, pid.0, 8usize, &m as *const u64) })?;
    Ok(())
}

/// One queued signal's `siginfo_t`, as raw bytes (128 of them).
pub type RawSiginfo = [u8; 128];

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// Read the queued signals of a thread (`flags = 0`) or of the process
/// (`PTRACE_PEEKSIGINFO_SHARED`) without dequeuing them.
pub fn peek_siginfo(pid: Pid, flags: u32) -> io::Result<Vec<RawSiginfo>> {
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; 128]; 32];
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags,
            nr: buf.len() as i32,
        };
        // SAFETY: args is a valid peeksiginfo_args; buf holds nr siginfo_t slots of 128 bytes.
        let n = check(unsafe {
            libc::ptrace(
                libc::PTRACE_PEEKSIGINFO,
                pid.0,
                &args as *const PeekSiginfoArgs,
                buf.as_mut_ptr(),
            )
        })? as usize;
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// A task's rseq registration (`struct ptrace_rseq_configuration`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    /// Address of the registered `struct rseq`, 0 if none.
    pub rseq_abi_pointer: u64,
    /// Its registered length.
    pub rseq_abi_size: u32,
    /// The abort signature.
    pub signature: u32,
    /// Registration flags.
    pub flags: u32,
    /// Padding.
    pub pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`.
pub fn get_rseq_configuration(pid: Pid) -> io::Result<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    // SAFETY: addr is the struct size, data a valid out-pointer to it.
    check(unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            pid.0,
            std::mem::size_of::<RseqConfiguration>(),
            &mut conf as *mut RseqConfiguration,
        )
    })?;
    Ok(conf)
}

/// `PTRACE_TRACEME`, for a freshly created puppet (raw syscall, safe after a raw clone).
pub fn traceme_raw() -> i64 {
    // SAFETY: PTRACE_TRACEME takes no pointers.
    unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) as i64 }
}
