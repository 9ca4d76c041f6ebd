//! Reading and writing another task's memory: process_vm_readv(2)/process_vm_writev(2) for
//! accessible pages and /proc/PID/mem (which can also reach PROT_NONE and read-only pages) for
//! the rest.

use crate::types::{Pid, RemoteAddr};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Read `buf.len()` bytes at `addr` with process_vm_readv; returns the bytes read (short at an
/// inaccessible page).
pub fn read(pid: Pid, addr: RemoteAddr, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr.0 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes buf, writable for its length; remote is only an address in the
    // other process, never dereferenced here.
    let n = unsafe { libc::process_vm_readv(pid.0, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Write `buf` at `addr` with process_vm_writev (the pages must be writable in the task);
/// returns the bytes written. Changes the task's memory.
pub fn write(pid: Pid, addr: RemoteAddr, buf: &[u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr.0 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes buf, readable for its length (the kernel does not write to it);
    // remote is an address in the other process.
    let n = unsafe { libc::process_vm_writev(pid.0, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Write all of `buf` at `addr`, failing on a short write.
pub fn write_all(pid: Pid, addr: RemoteAddr, buf: &[u8]) -> io::Result<()> {
    let n = write(pid, addr, buf)?;
    if n != buf.len() {
        return Err(io::Error::other(format!(
            "short write to pid {pid} at {addr}: {n} of {}",
            buf.len()
        )));
    }
    Ok(())
}

/// Read all of `buf` at `addr`, failing on a short read.
pub fn read_exact(pid: Pid, addr: RemoteAddr, buf: &mut [u8]) -> io::Result<()> {
    let n = read(pid, addr, buf)?;
    if n != buf.len() {
        return Err(io::Error::other(format!(
            "short read from pid {pid} at {addr}: {n} of {}",
            buf.len()
        )));
    }
    Ok(())
}

/// /proc/PID/mem, which reads and writes through page protections (FOLL_FORCE).
#[derive(Debug)]
pub struct ProcMem {
    file: File,
}

impl ProcMem {
    /// Open /proc/PID/mem for reading and writing.
    pub fn open(pid: Pid) -> io::Result<ProcMem> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))?;
        Ok(ProcMem { file })
    }

    /// Read exactly `buf.len()` bytes at `addr`.
    pub fn read_exact(&self, addr: RemoteAddr, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr.0)
    }

    /// Write all of `buf` at `addr`. Changes the task's memory.
    pub fn write_all(&self, addr: RemoteAddr, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, addr.0)
    }
}
