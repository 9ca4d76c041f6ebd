//! Giving a file that cryo holds to a puppet, for files that cannot be reopened through
//! /proc/CRYO/fd/N (sockets give ENXIO there; anonymous-inode files would be new files).
//!
//! cryo keeps a pidfd of itself. The puppet opens that pidfd through
//! /proc/CRYO/fd/PIDFD (which gives the puppet a pidfd of cryo), takes the file out of cryo's
//! table with pidfd_getfd(2) and closes the pidfd again: the puppet's fd is the very file
//! cryo holds, with its status flags and everything else shared. The puppet still has cryo's
//! credentials at this point, which pidfd_getfd's ptrace check needs. cryo's PID is the one
//! its own /proc shows (the puppets resolve /proc in cryo's mount namespace).

use crate::error::{Result, TaskCtx};
use crate::remote::Injector;
use cryo_sys::Pid;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// A pidfd of cryo itself, through which puppets take files from cryo.
#[derive(Debug)]
pub struct FdSource {
    pidfd: OwnedFd,
}

impl FdSource {
    /// A pidfd of cryo for puppets to open.
    pub fn new() -> Result<FdSource> {
        let me = Pid(std::process::id() as i32);
        let pidfd = cryo_sys::task::pidfd_open(me).task_ctx("open a pidfd of cryo itself", me)?;
        Ok(FdSource { pidfd })
    }

    /// Install cryo's `local` file in the puppet behind `inj`; returns its fd number there,
    /// close-on-exec (pidfd_getfd always sets it). `what` names the file for errors. Uses
    /// the scratch area from `scratch_off` on for a path.
    pub fn install(
        &self,
        inj: &Injector,
        local: BorrowedFd<'_>,
        what: &str,
        scratch_off: u64,
    ) -> Result<u64> {
        let path = format!("/proc/{}/fd/{}", std::process::id(), self.pidfd.as_raw_fd());
        let pidfd = super::reopen_in(
            inj,
            &path,
            libc::O_RDONLY as u32,
            0,
            scratch_off,
            &format!("a pidfd of cryo at {path} to take {what}"),
        )?;
        let got = inj.syscall(
            &format!("take {what} from cryo with pidfd_getfd"),
            libc::SYS_pidfd_getfd,
            &[pidfd, local.as_raw_fd() as u64, 0],
        );
        // The pidfd goes whether or not the file came.
        let closed = inj.syscall("close the pidfd of cryo", libc::SYS_close, &[pidfd]);
        let fd = got?;
        closed?;
        Ok(fd)
    }
}
