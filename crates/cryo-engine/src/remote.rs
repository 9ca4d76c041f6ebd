//! [`Injector`]: remote syscalls in a task, with a scratch area in its memory for their
//! arguments. Dump uses it on seized tasks (scratch = a page mapped for the purpose), restore on
//! puppets (scratch = the trampoline's data part).
//!
//! The scratch area is an arena of stack frames ([`Scratch`]): a caller takes a frame, puts
//! its arguments into slots of it (each aligned, none overlapping another of any live frame),
//! and the space is free again when the frame drops. Nobody picks offsets by hand, so a module
//! that calls another while it holds slots cannot have them overwritten.

use crate::error::{Error, Result, TaskCtx};
use cryo_sys::remote::RemoteTask;
use cryo_sys::{mem, Pid, RemoteAddr, RemoteFd};
use std::cell::Cell;

/// Remote-syscall access to a stopped task, with a scratch area in its memory.
#[derive(Debug)]
pub struct Injector {
    task: RemoteTask,
    scratch: RemoteAddr,
    scratch_len: u64,
    /// Bytes of the scratch area held by live frames.
    used: Cell<u64>,
}

/// Slots are aligned to this (enough for any kernel structure).
const SLOT_ALIGN: u64 = 16;

impl Injector {
    /// Drive `task`, using `scratch..scratch+len` (writable in the task) for arguments.
    pub fn new(task: RemoteTask, scratch: RemoteAddr, scratch_len: u64) -> Injector {
        Injector {
            task,
            scratch,
            scratch_len,
            used: Cell::new(0),
        }
    }

    /// The task driven.
    pub fn pid(&self) -> Pid {
        self.task.pid()
    }

    /// The underlying remote task.
    pub fn task(&self) -> &RemoteTask {
        &self.task
    }

    /// The underlying remote task, mutably (to move its syscall instruction).
    pub fn task_mut(&mut self) -> &mut RemoteTask {
        &mut self.task
    }

    /// Run a syscall in the task; a negative result becomes an error naming `what`.
    pub fn syscall(&self, what: &str, nr: i64, args: &[u64]) -> Result<u64> {
        self.task.syscall(nr, args).task_ctx(what, self.task.pid())
    }

    /// Run a syscall that returns a new fd in the task.
    pub fn syscall_fd(&self, what: &str, nr: i64, args: &[u64]) -> Result<RemoteFd> {
        let fd = self.syscall(what, nr, args)?;
        Ok(RemoteFd(fd as i32))
    }

    /// Run a syscall in the task and return its raw result (negative errno on failure).
    pub fn syscall_raw(&self, what: &str, nr: i64, args: &[u64]) -> Result<i64> {
        self.task
            .syscall_raw(nr, args)
            .task_ctx(what, self.task.pid())
    }

    /// Start a syscall and let the task run it while cryo works on other tasks; the task may
    /// be asked nothing else until [`Injector::syscall_wait`].
    pub fn syscall_start(&self, what: &str, nr: i64, args: &[u64]) -> Result<()> {
        self.task
            .syscall_start(nr, args)
            .task_ctx(what, self.task.pid())
    }

    /// The result of the syscall started by [`Injector::syscall_start`]; a negative result
    /// becomes an error naming `what`.
    pub fn syscall_wait(&self, what: &str) -> Result<u64> {
        let rc = self.task.syscall_wait().task_ctx(what, self.task.pid())?;
        if (-4095..0).contains(&rc) {
            return Err(std::io::Error::from_raw_os_error((-rc) as i32))
                .task_ctx(what, self.task.pid());
        }
        Ok(rc as u64)
    }

    /// Open `path` in the task with open(2) `flags` (close-on-exec added); `what` names the
    /// file in errors.
    pub fn open(&self, path: &str, flags: u32, what: &str) -> Result<RemoteFd> {
        let s = self.scratch();
        let at = s.cstr(path)?;
        self.syscall_fd(
            &format!("open {what}"),
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as u64,
                at.0,
                u64::from(flags | libc::O_CLOEXEC as u32),
                0,
            ],
        )
    }

    /// Close fd `fd` in the task.
    pub fn close(&self, fd: RemoteFd, what: &str) -> Result<()> {
        self.syscall(&format!("close {what}"), libc::SYS_close, &[fd.0 as u64])
            .map(|_| ())
    }

    /// The whole scratch area: its address in the task and length (for mapping it and
    /// lending it to other threads; arguments go through [`Injector::scratch`]).
    pub fn scratch_area(&self) -> (RemoteAddr, u64) {
        (self.scratch, self.scratch_len)
    }

    /// A new frame of the scratch area, above every live one.
    pub fn scratch(&self) -> Scratch<'_> {
        Scratch {
            inj: self,
            base: self.used.get(),
        }
    }
}

/// A frame of a task's scratch area: slots for syscall arguments and results, free again when
/// the frame drops. Frames nest like a stack.
#[derive(Debug)]
pub struct Scratch<'a> {
    inj: &'a Injector,
    /// Where this frame starts (the arena's use when it was taken).
    base: u64,
}

/// Space in a task's scratch area that the kernel fills (a syscall's output).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Its address in the task.
    pub addr: RemoteAddr,
    /// Its length.
    pub len: u64,
}

impl Scratch<'_> {
    /// `len` bytes of the frame, aligned.
    fn take(&self, len: u64) -> Result<RemoteAddr> {
        let used = self.inj.used.get();
        let start = used.div_ceil(SLOT_ALIGN) * SLOT_ALIGN;
        let end = start.saturating_add(len);
        if end > self.inj.scratch_len {
            return Err(Error::Task {
                what: format!(
                    "find {len} bytes of scratch memory ({used} of {} in use)",
                    self.inj.scratch_len
                ),
                pid: self.inj.pid(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        self.inj.used.set(end);
        Ok(self.inj.scratch.offset(start))
    }

    /// A copy of `data` in the task; its address.
    pub fn bytes(&self, data: &[u8]) -> Result<RemoteAddr> {
        let at = self.take(data.len() as u64)?;
        mem::write_all(self.inj.pid(), at, data)
            .task_ctx("write scratch memory", self.inj.pid())?;
        Ok(at)
    }

    /// A NUL-terminated copy of `s` in the task; its address.
    pub fn cstr(&self, s: &str) -> Result<RemoteAddr> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.bytes(&b)
    }

    /// `len` zeroed bytes for the kernel to fill.
    pub fn zeroed(&self, len: usize) -> Result<Slot> {
        self.slot(&vec![0u8; len])
    }

    /// A copy of `data` in the task that the kernel reads and may change (an in-out argument).
    pub fn slot(&self, data: &[u8]) -> Result<Slot> {
        let addr = self.bytes(data)?;
        Ok(Slot {
            addr,
            len: data.len() as u64,
        })
    }

    /// Write `data` (at most the slot's length) at the start of `slot`.
    pub fn write(&self, slot: Slot, data: &[u8]) -> Result<()> {
        if data.len() as u64 > slot.len {
            return Err(Error::Task {
                what: format!("write {} bytes into a slot of {}", data.len(), slot.len),
                pid: self.inj.pid(),
                source: std::io::Error::from_raw_os_error(libc::EOVERFLOW),
            });
        }
        mem::write_all(self.inj.pid(), slot.addr, data)
            .task_ctx("write scratch memory", self.inj.pid())
    }

    /// What the task's memory holds in `slot` now.
    pub fn read(&self, slot: Slot) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; slot.len as usize];
        mem::read_exact(self.inj.pid(), slot.addr, &mut buf)
            .task_ctx("read scratch memory", self.inj.pid())?;
        Ok(buf)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        self.inj.used.set(self.base);
    }
}
