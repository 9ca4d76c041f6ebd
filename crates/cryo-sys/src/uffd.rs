//! userfaultfd(2) driven from cryo: `UFFDIO_COPY` fills a puppet's anonymous memory with pages
//! straight from an image mapped in cryo, one copy and no zeroing of fresh pages
//! (include/uapi/linux/userfaultfd.h, Documentation/admin-guide/mm/userfaultfd.rst).
//!
//! The userfaultfd is created inside the puppet (a remote syscall), so its context is the
//! puppet's mm, and handed to cryo with pidfd_getfd(2); the ioctls below then act on the
//! puppet's memory.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// `UFFD_API`.
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `_IOR(0xAA, 0x01, struct uffdio_range)`.
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_aa01;
/// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
/// `UFFDIO_REGISTER_MODE_MISSING`.
const MODE_MISSING: u64 = 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// A userfaultfd whose context is another process's memory.
#[derive(Debug)]
pub struct Userfaultfd {
    fd: OwnedFd,
}

fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: every request used here takes a pointer to the repr(C) struct T it is paired
    // with; the kernel reads and writes only that struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Userfaultfd {
    /// Take `fd` (a userfaultfd) and do the API handshake.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Userfaultfd> {
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Userfaultfd { fd })
    }

    /// Register `start..start+len` of the other process for missing-page handling.
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = UffdioRegister {
            range: UffdioRange { start, len },
            mode: MODE_MISSING,
            ioctls: 0,
        };
        ioctl(&self.fd, UFFDIO_REGISTER, &mut r)
    }

    /// Unregister the range again (the VMA flags go back to what they were).
    pub fn unregister(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = UffdioRange { start, len };
        ioctl(&self.fd, UFFDIO_UNREGISTER, &mut r)
    }

    /// Copy `src` (a whole number of pages) to `dst` in the other process, allocating its
    /// pages. Fills the other process's memory; cannot touch cryo's.
    pub fn copy(&self, dst: u64, src: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < src.len() {
            let mut c = UffdioCopy {
                dst: dst + done as u64,
                src: src[done..].as_ptr() as u64,
                len: (src.len() - done) as u64,
                mode: 0,
                copy: 0,
            };
            let res = ioctl(&self.fd, UFFDIO_COPY, &mut c);
            if c.copy > 0 {
                done += c.copy as usize;
                continue;
            }
            res?;
            if c.copy < 0 {
                return Err(io::Error::from_raw_os_error(-c.copy as i32));
            }
            if c.copy == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        Ok(())
    }
}

/// `madvise` advice that faults pages in (Linux 5.14; newer than the installed headers'
/// libc crate may know).
const MADV_POPULATE_READ: libc::c_int = 22;

/// A file mapped read-only into cryo (shared), for copying from. Its pages are faulted in by
/// whoever reads them, or ahead with [`MappedFile::populate`].
#[derive(Debug)]
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Map all of `file`. The caller must not let the file shrink while it is mapped (cryo's
    /// own image files, checked against their length first).
    pub fn map(file: &File) -> io::Result<MappedFile> {
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only shared mapping chosen by the kernel; it aliases no Rust
        // object and is owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }

    /// Fault in `off..off+len` of the mapping ahead of a copy (one call instead of a fault
    /// every few pages). Best effort: what fails is faulted in when read.
    pub fn populate(&self, off: usize, len: usize) {
        let page = crate::PAGE_SIZE as usize;
        let start = off / page * page;
        let end = off.saturating_add(len).min(self.len);
        if start >= end {
            return;
        }
        // SAFETY: the range lies inside the mapping owned by self; MADV_POPULATE_READ only
        // faults pages in and changes no contents.
        unsafe {
            libc::madvise(
                self.ptr.cast::<u8>().add(start).cast(),
                end - start,
                MADV_POPULATE_READ,
            )
        };
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is mapped readable for the lifetime of self; the file is not
        // shrunk while mapped (see `map`), so no access faults.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the mapping was made by `map` and no slice of it outlives self.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

// SAFETY: the mapping is read-only and owned; sharing &[u8] views across threads is sound.
unsafe impl Sync for MappedFile {}
// SAFETY: as above; the mapping does not depend on the creating thread.
unsafe impl Send for MappedFile {}
