//! [`Injector`]: remote syscalls in a task with a scratch area in its memory for their
//! arguments. Dump uses it on seized tasks (scratch = a page mapped for the purpose), restore on
//! puppets (scratch = the trampoline's data part).

use crate::error::{Result, TaskCtx};
use cryo_sys::remote::RemoteTask;
use cryo_sys::{mem, Pid, RemoteAddr};

/// Remote-syscall access to a stopped task, with a scratch area in its memory.
#[derive(Debug)]
pub struct Injector {
    task: RemoteTask,
    scratch: RemoteAddr,
    scratch_len: u64,
}

impl Injector {
    /// Drive `task`, using `scratch..scratch+len` (writable in the task) for arguments.
    pub fn new(task: RemoteTask, scratch: RemoteAddr, scratch_len: u64) -> Injector {
        Injector {
            task,
            scratch,
            scratch_len,
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

    /// The scratch area's address in the task.
    pub fn scratch(&self) -> RemoteAddr {
        self.scratch
    }

    /// Length of the scratch area.
    pub fn scratch_len(&self) -> u64 {
        self.scratch_len
    }

    /// Read `len` bytes at `off` in the scratch area.
    pub fn read_scratch(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        mem::read_exact(self.pid(), self.scratch.offset(off), &mut buf)
            .task_ctx("read scratch memory", self.pid())?;
        Ok(buf)
    }

    /// Write `data` at `off` in the scratch area; returns its address in the task.
    pub fn write_scratch(&self, off: u64, data: &[u8]) -> Result<RemoteAddr> {
        mem::write_all(self.pid(), self.scratch.offset(off), data)
            .task_ctx("write scratch memory", self.pid())?;
        Ok(self.scratch.offset(off))
    }

    /// Write a NUL-terminated copy of `s` at `off` in the scratch area.
    pub fn write_cstr(&self, off: u64, s: &str) -> Result<RemoteAddr> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.write_scratch(off, &b)
    }
}
