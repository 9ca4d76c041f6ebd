//! Terminals on cryo's side: the state of a task's terminal read through cryo's own copy of it
//! (from pidfd_getfd), and the making of pseudo-terminal pairs for restored tasks
//! (ioctl_tty(2), pty(7), pts(4), termios(3), poll(2)).
//!
//! The ioctls of a pty master act on its slave where the terminal's settings are concerned
//! (termios, window size, session, foreground group: drivers/tty/tty_io.c `tty_pair_get_tty`),
//! so a master alone tells everything about its pair. The structures are the kernel's own
//! (`struct termios` of include/uapi/asm-generic/termbits.h, 19 control characters, no speeds),
//! not glibc's larger one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Number of control characters in the kernel's `struct termios` (`NCCS`).
pub const NCCS: usize = 19;

/// Major number of the Unix98 pty masters (/dev/ptmx is 5:2; 128..135 are the legacy
/// numbers of the masters themselves).
pub const PTY_MASTER_MAJOR: u64 = 128;
/// Major number of the first Unix98 pty slaves (/dev/pts/N); 8 majors of 256 minors follow.
pub const PTY_SLAVE_MAJOR: u64 = 136;
/// How many majors each kind of Unix98 pty has (`UNIX98_PTY_MAJOR_COUNT`).
pub const PTY_MAJOR_COUNT: u64 = 8;
/// Major number of /dev/tty (minor 0), /dev/console (1) and /dev/ptmx (2).
pub const TTYAUX_MAJOR: u64 = 5;
/// Major number of the virtual consoles (minors 1..=63) and the first serial lines (64..).
pub const TTY_MAJOR: u64 = 4;

/// The first byte of a packet-mode read that carries data (`TIOCPKT_DATA`,
/// include/uapi/asm-generic/ioctls.h); any other is a status byte alone.
pub const TIOCPKT_DATA: u8 = 0;

/// The kernel's `struct termios` (TCGETS/TCSETS, TIOCGLCKTRMIOS/TIOCSLCKTRMIOS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub c_iflag: u32,
    /// Output modes.
    pub c_oflag: u32,
    /// Control modes (with the speed).
    pub c_cflag: u32,
    /// Local modes.
    pub c_lflag: u32,
    /// Line discipline.
    pub c_line: u8,
    /// Control characters (VINTR, VQUIT, ...).
    pub c_cc: [u8; NCCS],
}

/// A terminal's window size (`struct winsize`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Winsize {
    /// Rows.
    pub ws_row: u16,
    /// Columns.
    pub ws_col: u16,
    /// Width in pixels.
    pub ws_xpixel: u16,
    /// Height in pixels.
    pub ws_ypixel: u16,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An ioctl whose argument is a pointer to a `T` the kernel reads or fills.
fn ioctl_ptr<T>(fd: BorrowedFd<'_>, req: libc::Ioctl, arg: *mut T) -> io::Result<libc::c_int> {
    // SAFETY: every caller passes a request whose argument is a pointer to a T (checked
    // against include/uapi/asm-generic/ioctls.h), and `arg` points to a live T.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) })
}

/// An ioctl whose argument is an integer value (not a pointer).
fn ioctl_val(fd: BorrowedFd<'_>, req: libc::Ioctl, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every caller passes a request whose argument is a plain integer, which the
    // kernel does not dereference.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) })
}

fn get_int(fd: BorrowedFd<'_>, req: libc::Ioctl) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    ioctl_ptr(fd, req, &mut v)?;
    Ok(v)
}

fn set_int(fd: BorrowedFd<'_>, req: libc::Ioctl, v: i32) -> io::Result<()> {
    let mut v: libc::c_int = v;
    ioctl_ptr(fd, req, &mut v)?;
    Ok(())
}

/// The line discipline of the terminal (`N_TTY` is 0): TIOCGETD.
pub fn line_discipline(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_int(fd, libc::TIOCGETD)
}

/// The index N of the pty pair of a master (its slave is /dev/pts/N): TIOCGPTN.
pub fn pty_index(master: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(get_int(master, libc::TIOCGPTN)? as u32)
}

/// Whether the slave of a master is locked (cannot be opened): TIOCGPTLCK.
pub fn pty_locked(master: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_int(master, libc::TIOCGPTLCK)? != 0)
}

/// Lock or unlock the slave of a master: TIOCSPTLCK.
pub fn set_pty_lock(master: BorrowedFd<'_>, locked: bool) -> io::Result<()> {
    set_int(master, libc::TIOCSPTLCK, i32::from(locked))
}

/// Whether a master is in packet mode: TIOCGPKT.
pub fn packet_mode(master: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_int(master, libc::TIOCGPKT)? != 0)
}

/// Set or clear packet mode on a master: TIOCPKT.
pub fn set_packet_mode(master: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int(master, libc::TIOCPKT, i32::from(on))
}

/// Whether the terminal of `fd` (this side of a pty) is in exclusive mode: TIOCGEXCL.
pub fn exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_int(fd, libc::TIOCGEXCL)? != 0)
}

/// Put the terminal of `fd` into exclusive mode or take it out: TIOCEXCL / TIOCNXCL.
pub fn set_exclusive(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let req = if on { libc::TIOCEXCL } else { libc::TIOCNXCL };
    ioctl_val(fd, req, 0)?;
    Ok(())
}

/// The terminal's settings: TCGETS.
pub fn termios(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    let mut t = Termios::default();
    ioctl_ptr(fd, libc::TCGETS, &mut t)?;
    Ok(t)
}

/// Change the terminal's settings at once: TCSETS.
pub fn set_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TCSETS, &mut t)?;
    Ok(())
}

/// Which settings of the terminal are locked (a bit or character set here cannot change):
/// TIOCGLCKTRMIOS.
pub fn locked_termios(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    let mut t = Termios::default();
    ioctl_ptr(fd, libc::TIOCGLCKTRMIOS, &mut t)?;
    Ok(t)
}

/// Lock settings of the terminal (needs CAP_SYS_ADMIN): TIOCSLCKTRMIOS.
pub fn set_locked_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TIOCSLCKTRMIOS, &mut t)?;
    Ok(())
}

/// The window size: TIOCGWINSZ.
pub fn winsize(fd: BorrowedFd<'_>) -> io::Result<Winsize> {
    let mut w = Winsize::default();
    ioctl_ptr(fd, libc::TIOCGWINSZ, &mut w)?;
    Ok(w)
}

/// Set the window size: TIOCSWINSZ.
pub fn set_winsize(fd: BorrowedFd<'_>, w: &Winsize) -> io::Result<()> {
    let mut w = *w;
    ioctl_ptr(fd, libc::TIOCSWINSZ, &mut w)?;
    Ok(())
}

/// The session whose controlling terminal this is (ENOTTY for none; from a slave, only for
/// the caller's own terminal): TIOCGSID.
pub fn session(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_int(fd, libc::TIOCGSID)
}

/// The foreground process group (0 for none; from a slave, only for the caller's own
/// terminal): TIOCGPGRP.
pub fn foreground_group(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_int(fd, libc::TIOCGPGRP)
}

/// Open the slave of a master, as open(2) of /dev/pts/N through the master's devpts would:
/// TIOCGPTPEER. `flags` are open flags; O_CLOEXEC is added.
pub fn open_peer(master: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let fd = ioctl_val(
        master,
        libc::TIOCGPTPEER,
        (flags | libc::O_CLOEXEC) as libc::c_ulong,
    )?;
    // SAFETY: TIOCGPTPEER returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bytes a read of the terminal would get now (FIONREAD; in canonical mode, those of complete
/// lines only).
pub fn input_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(get_int(fd, libc::FIONREAD)?.max(0) as usize)
}

/// What poll(2) says of `fd` after waiting up to `timeout_ms`: (readable, hung up).
pub fn poll_in(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<(bool, bool)> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    check(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok((
        p.revents & libc::POLLIN != 0,
        p.revents & libc::POLLHUP != 0,
    ))
}

/// A process's controlling terminal as /proc/PID/stat gives it (`tty_nr`): (major, minor).
pub fn tty_nr_device(tty_nr: i32) -> (u64, u64) {
    let d = u64::from(tty_nr as u32);
    ((d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_termios_is_36_bytes() {
        assert_eq!(std::mem::size_of::<Termios>(), 36);
        assert_eq!(std::mem::size_of::<Winsize>(), 8);
    }

    #[test]
    fn tty_nr_splits_like_the_kernel() {
        // /dev/pts/3 is 136:3; /dev/pts/300 is 137:44 (new_encode_dev).
        assert_eq!(tty_nr_device((136 << 8) | 3), (136, 3));
        let pts300 = (137 << 8) | 44;
        assert_eq!(tty_nr_device(pts300), (137, 44));
        assert_eq!(
            tty_nr_device((4 << 8) | 300 & 0xff | ((300 & !0xff) << 12)),
            (4, 300)
        );
    }
}
