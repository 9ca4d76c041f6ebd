//! Sockets on cryo's side (socket(7), unix(7), socketpair(2), getsockopt(2), recvmsg(2),
//! shutdown(2), fcntl(2) `F_GETFL`/`F_SETFL`/`F_GETOWN_EX`/`F_SETSIG`): reading the options and
//! the receive queue of a task's socket through cryo's own copy of it (from pidfd_getfd), and
//! making and filling socket pairs for restored tasks.
//!
//! Reading a queue never takes data out: `MSG_PEEK` with the socket's peek offset
//! (`SO_PEEK_OFF`) moving over what was read, and the old offset put back afterwards.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// getsockopt(2) of an int option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid out-pointers of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    } as libc::c_long)?;
    Ok(v)
}

/// setsockopt(2) of an int option.
pub fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: v is valid for reads of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(())
}

/// getsockopt(2) of a timeval option (`SO_SNDTIMEO`, `SO_RCVTIMEO`): (seconds, microseconds).
pub fn get_timeval(fd: BorrowedFd<'_>, opt: i32) -> io::Result<(u64, u64)> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv and len are valid out-pointers of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    } as libc::c_long)?;
    Ok((tv.tv_sec as u64, tv.tv_usec as u64))
}

/// setsockopt(2) of a timeval option.
pub fn set_timeval(fd: BorrowedFd<'_>, opt: i32, sec: u64, usec: u64) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: sec as libc::time_t,
        tv_usec: usec as libc::suseconds_t,
    };
    // SAFETY: tv is valid for reads of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(())
}

/// A new pair of connected unix sockets of type `ty`, close-on-exec.
pub fn socketpair(ty: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for the kernel to fill.
    let rc =
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    check(rc as libc::c_long)?;
    // SAFETY: both fds were just returned by the kernel and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A new unconnected unix socket of type `ty`, close-on-exec.
pub fn unix_socket(ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd =
        check(unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) } as libc::c_long)?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// shutdown(2) with `how` = `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`.
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) } as libc::c_long)?;
    Ok(())
}

/// The file status flags (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument.
    Ok(check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } as libc::c_long)? as i32)
}

/// Set the file status flags (`F_SETFL`; only O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME and
/// O_NONBLOCK change).
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an integer.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } as libc::c_long)?;
    Ok(())
}

/// `F_SETSIG` (fcntl(2); not in the libc crate).
pub const F_SETSIG: i32 = 10;
/// `F_GETSIG`.
pub const F_GETSIG: i32 = 11;
/// `F_SETOWN_EX`; its argument is a `struct f_owner_ex { int type; pid_t pid; }`.
pub const F_SETOWN_EX: i32 = 15;
/// `F_GETOWN_EX`.
pub const F_GETOWN_EX: i32 = 16;

/// The owner that gets SIGIO/SIGURG of the file (`F_GETOWN_EX`): (`F_OWNER_*` type, pid);
/// pid 0 when there is none.
pub fn owner(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    // struct f_owner_ex: type, then pid.
    let mut o = [0 as libc::c_int; 2];
    // SAFETY: o is a valid out-pointer of the size of the struct F_GETOWN_EX fills.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, o.as_mut_ptr()) } as libc::c_long)?;
    Ok((o[0] as u32, o[1] as u32))
}

/// The signal sent to the owner instead of SIGIO (`F_GETSIG`; 0 = SIGIO).
pub fn owner_signal(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: F_GETSIG takes no argument.
    Ok(check(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) } as libc::c_long)? as u32)
}

/// What a socket's receive queue holds, read by [`peek_queue`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The data: one element per packet (datagram and seqpacket sockets) or per chunk read
    /// (stream sockets, whose chunks only add up).
    pub packets: Vec<Vec<u8>>,
    /// Whether some packet carries file descriptors (`SCM_RIGHTS`) in flight.
    pub has_rights: bool,
}

/// Restores the peek offset of a socket when dropped.
struct PeekOffGuard<'a> {
    fd: BorrowedFd<'a>,
    old: i32,
}

impl Drop for PeekOffGuard<'_> {
    fn drop(&mut self) {
        let _ = set_int(self.fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, self.old);
    }
}

/// Close the fds of every `SCM_RIGHTS` message of `msg` (copies a peek installed in cryo);
/// returns whether there was one.
fn close_rights(msg: &libc::msghdr) -> bool {
    let mut found = false;
    // SAFETY: msg's control buffer was filled by the kernel and msg_controllen says how much;
    // the CMSG_* macros stay inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                found = true;
                let data = libc::CMSG_DATA(c) as *const libc::c_int;
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..n {
                    libc::close(std::ptr::read_unaligned(data.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    found
}

/// One `recvmsg(MSG_PEEK | MSG_DONTWAIT)` into `buf`: `Ok(None)` when the queue has nothing
/// more, else (bytes of the packet, whether it was longer than `buf`, rights seen).
fn peek_once(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    packets: bool,
) -> io::Result<Option<(usize, bool, bool)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for the credentials of SO_PASSCRED and a few fds.
    let mut control = [0u64; 64];
    // SAFETY: msghdr is plain data; the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let mut flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    if packets {
        // A datagram socket then says the packet's full length, however long.
        flags |= libc::MSG_TRUNC;
    }
    let n = loop {
        // SAFETY: msg points at iov and control, both valid for writes of the lengths given.
        let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if rc >= 0 {
            break rc as usize;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
    };
    let rights = close_rights(&msg);
    Ok(Some((n, n > buf.len(), rights)))
}

/// Copy what the socket's receive queue holds, leaving it there and the socket as it was.
/// `packets`: datagram or seqpacket (each read is one packet); `eof_zero`: a read of 0 bytes
/// means the end (stream sockets, and seqpacket sockets shut for reading), not an empty packet.
pub fn peek_queue(fd: BorrowedFd<'_>, packets: bool, eof_zero: bool) -> io::Result<Queue> {
    let old = get_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let _guard = PeekOffGuard { fd, old };
    let mut q = Queue::default();
    let mut off: usize = 0;
    let mut buf = vec![0u8; 256 << 10];
    while let Some((n, truncated, rights)) = peek_once(fd, &mut buf, packets)? {
        q.has_rights |= rights;
        if truncated && packets {
            // The peek offset moved over the part read: move it back and read the packet whole.
            let at =
                i32::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
            set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, at)?;
            buf.resize(n, 0);
            continue;
        }
        let n = n.min(buf.len());
        if n == 0 && eof_zero {
            break;
        }
        q.packets.push(buf[..n].to_vec());
        off += n;
    }
    Ok(q)
}

/// Send `data` as one packet (`packet`), or all of it as a stream, without blocking and without
/// SIGPIPE. A queue that cannot take it gives EAGAIN.
pub fn send_all(fd: BorrowedFd<'_>, data: &[u8], packet: bool) -> io::Result<()> {
    let mut done = 0;
    loop {
        let rest = &data[done..];
        // SAFETY: rest is valid for reads of its length.
        let rc = unsafe {
            libc::send(
                fd.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        done += rc as usize;
        if packet || done >= data.len() {
            return Ok(());
        }
    }
}

/// Most fds one `SCM_RIGHTS` message carries (`SCM_MAX_FD`, include/net/scm.h).
pub const SCM_MAX_FD: usize = 253;

/// Send one byte with `fds` attached (`SCM_RIGHTS`, at most [`SCM_MAX_FD`]; an fd may be given
/// more than once), without blocking and without SIGPIPE.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > SCM_MAX_FD {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let data_len = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer is `space` bytes, room for one header and `data_len` bytes
    // of data: CMSG_FIRSTHDR is not null and CMSG_DATA stays inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
        std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), data_len);
    }
    loop {
        // SAFETY: msg points at iov and control, valid for the lengths given.
        let rc = unsafe {
            libc::sendmsg(
                sock.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc >= 0 {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(io::Error::last_os_error());
        }
    }
}

/// The bytes of a `struct msghdr` (x86_64 layout, 56 bytes) for a recvmsg(2) run in another
/// task: one iovec at `iov`, a control buffer of `control_len` bytes at `control`.
pub fn msghdr_bytes(iov: u64, control: u64, control_len: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(56);
    for v in [0u64, 0, iov, 1, control, control_len, 0] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

/// Room for a control message carrying `n` fds (`CMSG_SPACE(n * 4)`).
pub fn rights_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<libc::c_int>()) as u32) as usize }
}

/// The fds of the `SCM_RIGHTS` messages in `control`, a control buffer a recvmsg(2) filled
/// (read back from another task), `used` bytes of it valid (`msg_controllen` after the call).
pub fn parse_rights(control: &[u8], used: usize) -> Vec<i32> {
    let mut out = Vec::new();
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let used = used.min(control.len());
    let mut at = 0usize;
    while at + hdr <= used {
        let word = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&control[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        let int = |o: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&control[o..o + 4]);
            i32::from_ne_bytes(w)
        };
        let len = word(at) as usize;
        if len < hdr || at + len > used {
            break;
        }
        if int(at + 8) == libc::SOL_SOCKET && int(at + 12) == libc::SCM_RIGHTS {
            let mut o = at + hdr;
            while o + 4 <= at + len {
                out.push(int(o));
                o += 4;
            }
        }
        at += len.div_ceil(8) * 8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A control buffer made by the kernel parses back to the fds it carries.
    #[test]
    fn rights_are_sent_and_parsed() {
        let (a, b) = socketpair(libc::SOCK_DGRAM).expect("socketpair");
        let (x, y) = socketpair(libc::SOCK_STREAM).expect("socketpair");
        send_fds(a.as_fd(), &[x.as_fd(), y.as_fd(), x.as_fd()]).expect("send");
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = vec![0u8; rights_space(SCM_MAX_FD)];
        // SAFETY: msghdr is plain data; the fields used are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: msg points at valid buffers of the lengths given.
        let rc = unsafe { libc::recvmsg(b.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        assert_eq!(rc, 1);
        let fds = parse_rights(&control, msg.msg_controllen);
        assert_eq!(fds.len(), 3);
        for fd in fds {
            // SAFETY: the kernel just installed these fds in this process.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        assert_eq!(
            msghdr_bytes(1, 2, 3).len(),
            std::mem::size_of::<libc::msghdr>()
        );
    }

    #[test]
    fn peek_leaves_the_queue_and_the_offset() {
        for (ty, packets) in [
            (libc::SOCK_STREAM, false),
            (libc::SOCK_DGRAM, true),
            (libc::SOCK_SEQPACKET, true),
        ] {
            let (a, b) = socketpair(ty).expect("socketpair");
            let big = vec![7u8; 300 << 10];
            set_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20).expect("sndbuf");
            for p in [&b"one"[..], b"three!", &big] {
                send_all(a.as_fd(), p, packets).expect("send");
            }
            let q = peek_queue(b.as_fd(), packets, !packets).expect("peek");
            let q2 = peek_queue(b.as_fd(), packets, !packets).expect("peek again");
            assert_eq!(q, q2, "type {ty}");
            assert!(!q.has_rights);
            let all: Vec<u8> = q.packets.concat();
            assert_eq!(all.len(), 3 + 6 + big.len(), "type {ty}");
            if packets {
                assert_eq!(q.packets.len(), 3, "type {ty}");
                assert_eq!(q.packets[0], b"one");
                assert_eq!(q.packets[1], b"three!");
                assert_eq!(q.packets[2].len(), big.len());
            }
            assert_eq!(
                get_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF).expect("peek off"),
                -1
            );
        }
    }

    /// An empty datagram is a packet of its own (read once: the kernel marks it peeked).
    #[test]
    fn peek_sees_an_empty_datagram() {
        let (a, b) = socketpair(libc::SOCK_DGRAM).expect("socketpair");
        for p in [&b"x"[..], b"", b"yz"] {
            send_all(a.as_fd(), p, true).expect("send");
        }
        let q = peek_queue(b.as_fd(), true, false).expect("peek");
        assert_eq!(q.packets, vec![b"x".to_vec(), Vec::new(), b"yz".to_vec()]);
    }
}
