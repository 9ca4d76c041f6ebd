//! Shared anonymous memory objects made by cryo for restored tasks: the same kind of object a
//! `MAP_SHARED | MAP_ANONYMOUS` mapping creates (it shows as "/dev/zero (deleted)" in maps),
//! kept open as a file so that every restored process can map it at its offsets
//! (mmap(2), proc(5) /proc/PID/map_files); and memfds with their seals (memfd_create(2),
//! fcntl(2) F_GET_SEALS/F_ADD_SEALS).

use std::fs::File;
use std::io;

/// A new shared anonymous object of `size` bytes, as an open file.
pub fn anon_shared_object(size: u64) -> io::Result<File> {
    // SAFETY: a fresh mapping chosen by the kernel, aliasing no Rust object; it is unmapped
    // below before this function returns and never dereferenced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = p as u64;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + size);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    // SAFETY: p..p+size is the mapping made above, referenced by nothing.
    unsafe { libc::munmap(p, size as usize) };
    file
}

fn seek(file: &File, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek takes an fd and integers only.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// The first offset at or after `off` that holds data (lseek(2) SEEK_DATA), `None` past the
/// last data.
pub fn seek_data(file: &File, off: u64) -> io::Result<Option<u64>> {
    seek(file, off, libc::SEEK_DATA)
}

/// The first hole at or after `off` (lseek(2) SEEK_HOLE; the end of the file counts as one).
pub fn seek_hole(file: &File, off: u64) -> io::Result<u64> {
    Ok(seek(file, off, libc::SEEK_HOLE)?.unwrap_or(off))
}

/// A new memfd named `name` (without the kernel's "memfd:" prefix) with `MFD_*` `flags`
/// (close-on-exec is always added), as an open file.
pub fn memfd_create(name: &str, flags: u32) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: name is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The seals of the memfd behind `file` (`F_SEAL_*` bits; `F_SEAL_SEAL` alone for a memfd made
/// without `MFD_ALLOW_SEALING`).
pub fn get_seals(file: &File) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GET_SEALS takes no argument.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as u32)
}

/// Add `seals` (`F_SEAL_*` bits) to the memfd behind `file`.
pub fn add_seals(file: &File, seals: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_ADD_SEALS takes an integer.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
