//! Restore puppets: tasks created with clone3(2) at a chosen PID (`set_tid`), traced by cryo from
//! birth, and the trampoline page they run injected syscalls from.
//!
//! The puppet is a fork-like copy of cryo. Right after the raw clone3 it may only make raw
//! syscalls (glibc's cached thread state belongs to the parent): `PTRACE_TRACEME`, then a SIGSTOP
//! to itself. From that stop on cryo drives it entirely through remote syscalls.

use crate::types::{Pid, RemoteAddr, PAGE_SIZE};
use std::io;

/// `struct clone_args` of clone3(2) (`include/uapi/linux/sched.h`), version 2 (88 bytes).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// Create a puppet at PID `pid` (or any PID if `None`), stopped under cryo's ptrace with SIGSTOP
/// pending. Returns the PID; the caller must `wait` for the stop.
pub fn spawn_puppet(pid: Option<Pid>) -> io::Result<Pid> {
    spawn(pid, 0)
}

/// Create a puppet that is the init (PID 1) of a new pid namespace, otherwise as
/// [`spawn_puppet`]. It gets a private copy of cryo's mounts, where the restore mounts a /proc
/// of the new pid namespace once done ([`crate::pidns::mount_proc_of`]; until then the puppets
/// reach cryo's files through the /proc they share with cryo). Returns its PID in cryo's namespace. (Its SIGSTOP to itself reaches it
/// although an init ignores signals it has no handler for: a traced task ignores none.)
pub fn spawn_puppet_in_new_pidns() -> io::Result<Pid> {
    spawn(None, (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64)
}

fn spawn(pid: Option<Pid>, flags: u64) -> io::Result<Pid> {
    let tid: [i32; 1] = [pid.map(|p| p.0).unwrap_or(0)];
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if pid.is_some() {
            tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(pid.is_some()),
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed and tid outlives the call. Without
    // CLONE_VM the child gets a copy of our memory, so nothing of ours is shared; the child only
    // makes raw syscalls below and never returns from this function.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        // The child: raw syscalls only.
        if flags & libc::CLONE_NEWNS as u64 != 0 && crate::pidns::make_mounts_private_raw() != 0 {
            // SAFETY: exit_group never returns.
            unsafe { libc::syscall(libc::SYS_exit_group, 126) };
        }
        // SAFETY: plain syscalls with integer arguments; exit_group never returns.
        unsafe {
            libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
            let me = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
            libc::syscall(libc::SYS_exit_group, 127);
        }
        #[allow(clippy::empty_loop)]
        loop {}
    }
    Ok(Pid(rc as i32))
}

/// A region mapped read-write-execute at the same address in cryo and (through fork) in every
/// puppet: its first bytes are `syscall; int3`, the rest is scratch memory for syscall
/// arguments.
#[derive(Debug)]
pub struct Trampoline {
    addr: u64,
    len: u64,
}

/// Bytes of the trampoline's code: `syscall` then `int3`.
const TRAMPOLINE_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
/// Offset of the scratch area in the trampoline.
pub const SCRATCH_OFFSET: u64 = 64;

impl Trampoline {
    /// Map a trampoline of `len` bytes at exactly `addr` in cryo (MAP_FIXED_NOREPLACE: fails if
    /// anything is there).
    pub fn map(addr: u64, len: u64) -> io::Result<Trampoline> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping of ours, so no Rust
        // object's memory is affected; the new region is owned by the returned Trampoline.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p as u64 != addr {
            // Old kernels ignore MAP_FIXED_NOREPLACE and treat it as a hint.
            // SAFETY: p..p+len is the mapping just created, referenced by nothing.
            unsafe { libc::munmap(p, len as usize) };
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        // SAFETY: the region is ours, writable and at least a page long.
        unsafe {
            std::ptr::copy_nonoverlapping(
                TRAMPOLINE_CODE.as_ptr(),
                p.cast::<u8>(),
                TRAMPOLINE_CODE.len(),
            )
        };
        Ok(Trampoline { addr, len })
    }

    /// Address of the `syscall` instruction.
    pub fn syscall_ip(&self) -> RemoteAddr {
        RemoteAddr(self.addr)
    }

    /// Start of the region.
    pub fn start(&self) -> u64 {
        self.addr
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The scratch area (in every puppet): its address and size.
    pub fn scratch(&self) -> (RemoteAddr, u64) {
        (
            RemoteAddr(self.addr + SCRATCH_OFFSET),
            self.len - SCRATCH_OFFSET,
        )
    }
}

impl Drop for Trampoline {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by Trampoline::map and nothing refers into it.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
    }
}
