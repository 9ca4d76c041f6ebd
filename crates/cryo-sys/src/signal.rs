//! cryo's own handling of SIGINT/SIGTERM/SIGHUP during a dump: they are blocked, and the dump
//! polls for them between steps so that it can release the tasks before exiting.

use std::io;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    set
}

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread.
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: set is valid; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Which termination signal is pending, if any (it stays pending).
pub fn pending_termination() -> Option<i32> {
    // SAFETY: sigset_t is plain data.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid out-pointer.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return None;
    }
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        // SAFETY: set is a valid, initialised sigset_t.
        .find(|&s| unsafe { libc::sigismember(&set, s) } == 1)
}
