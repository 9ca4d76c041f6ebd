//! Pipes on cryo's side: reading what a pipe holds without taking it out (tee(2) into a pipe of
//! cryo's own), and making pipes for restored tasks to open through /proc/CRYO/fd
//! (pipe(7), fcntl(2) F_GETPIPE_SZ/F_SETPIPE_SZ).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new pipe (read end, write end), close-on-exec.
pub fn pipe(flags: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for the kernel to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) })?;
    // SAFETY: both fds were just returned by the kernel and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The capacity of the pipe behind `fd`.
pub fn pipe_size(fd: &OwnedFd) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no pointer.
    Ok(check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })? as usize)
}

/// Set the capacity of the pipe behind `fd`.
pub fn set_pipe_size(fd: &OwnedFd, size: usize) -> io::Result<()> {
    // SAFETY: F_SETPIPE_SZ takes an integer.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) })?;
    Ok(())
}

/// Copy what the pipe read through `reader` holds, leaving it there.
pub fn peek(reader: &OwnedFd) -> io::Result<Vec<u8>> {
    let size = pipe_size(reader)?;
    let (r, w) = pipe(libc::O_NONBLOCK)?;
    if pipe_size(&w)? < size {
        set_pipe_size(&w, size)?;
    }
    // One tee copies everything the pipe holds (the target is at least as large); it never
    // takes data out, so a second call would copy the same bytes again.
    // SAFETY: tee takes two fds and integers; it touches no memory of ours.
    let n = unsafe {
        libc::tee(
            reader.as_raw_fd(),
            w.as_raw_fd(),
            size,
            libc::SPLICE_F_NONBLOCK as libc::c_uint,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    drop(w);
    let mut data = Vec::new();
    File::from(r).read_to_end(&mut data)?;
    Ok(data)
}

/// A pipe of cryo's, filled with `data`, for restored tasks to open through /proc.
pub fn filled_pipe(data: &[u8], size: Option<usize>) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe(0)?;
    let want = size.unwrap_or(0).max(data.len());
    if want > pipe_size(&w)? {
        set_pipe_size(&w, want)?;
    }
    let mut wf = File::from(w);
    wf.write_all(data)?;
    Ok((r, OwnedFd::from(wf)))
}
