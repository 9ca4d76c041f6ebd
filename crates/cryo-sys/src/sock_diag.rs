//! Unix socket diagnostics through netlink `NETLINK_SOCK_DIAG` (sock_diag(7),
//! `include/uapi/linux/sock_diag.h`, `include/uapi/linux/unix_diag.h`): what the kernel knows of
//! one unix socket by its inode (type, state, bound name, peer inode, queue lengths, shutdown
//! state), which no socket option tells.
//!
//! A request is a `nlmsghdr` followed by a `unix_diag_req`; the answer is one `nlmsghdr` with a
//! `unix_diag_msg` and netlink attributes, or an `NLMSG_ERROR`:
//!
//! ```text
//! nlmsghdr      len:u32 type:u16 flags:u16 seq:u32 pid:u32
//! unix_diag_req family:u8 protocol:u8 pad:u16 states:u32 ino:u32 show:u32 cookie:[u32;2]
//! unix_diag_msg family:u8 type:u8 state:u8 pad:u8 ino:u32 cookie:[u32;2]
//! nlattr        len:u16 type:u16 payload, padded to 4 bytes
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY`: the message type of sock_diag requests and answers.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
const NLMSGHDR_LEN: usize = 16;
const UNIX_DIAG_MSG_LEN: usize = 16;

/// `udiag_show` bits.
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;

/// Attribute types of the answer.
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// What sock_diag says of one unix socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// The socket's inode.
    pub ino: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sk_type: u8,
    /// The TCP-like state (`TCP_ESTABLISHED` = 1, `TCP_CLOSE` = 7, `TCP_LISTEN` = 10).
    pub state: u8,
    /// The bound name (abstract names start with a NUL byte), if bound.
    pub name: Option<Vec<u8>>,
    /// Whether the name is a file in a file system (`UNIX_DIAG_VFS`).
    pub has_vfs: bool,
    /// The peer's inode; 0 when the peer has been closed.
    pub peer: Option<u32>,
    /// Inodes of connections waiting to be accepted (listening sockets).
    pub icons: Vec<u32>,
    /// Bytes in the receive queue and in flight from it (`unix_diag_rqlen`).
    pub rqlen: Option<(u32, u32)>,
    /// The shutdown bits: 1 = no more receiving, 2 = no more sending.
    pub shutdown: Option<u8>,
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The request bytes asking about the unix socket at inode `ino`.
pub fn unix_diag_request(ino: u32, seq: u32) -> Vec<u8> {
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    let mut b = Vec::with_capacity(NLMSGHDR_LEN + 24);
    b.extend_from_slice(&((NLMSGHDR_LEN + 24) as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(libc::AF_UNIX as u8);
    b.push(0);
    b.extend_from_slice(&0u16.to_ne_bytes());
    // States: all (ignored for a lookup by inode, but harmless).
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b.extend_from_slice(&ino.to_ne_bytes());
    b.extend_from_slice(&show.to_ne_bytes());
    // INET_DIAG_NOCOOKIE: no cookie to check.
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("sock_diag answer: {what}"),
    )
}

/// Parse the answer to [`unix_diag_request`]: `Ok(None)` when the kernel knows no such socket
/// (in this network namespace), an error for any other `NLMSG_ERROR`.
pub fn parse_unix_diag_answer(b: &[u8]) -> io::Result<Option<UnixDiag>> {
    let len = u32_at(b, 0).ok_or_else(|| bad("short header"))? as usize;
    let ty = u16_at(b, 4).ok_or_else(|| bad("short header"))?;
    if len < NLMSGHDR_LEN || len > b.len() {
        return Err(bad("bad length"));
    }
    let msg = &b[NLMSGHDR_LEN..len];
    if ty == NLMSG_ERROR {
        let err = u32_at(msg, 0).ok_or_else(|| bad("short error"))? as i32;
        return match -err {
            0 => Err(bad("an acknowledgement without an answer")),
            libc::ENOENT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    if ty != SOCK_DIAG_BY_FAMILY {
        return Err(bad(&format!("message type {ty}")));
    }
    if msg.len() < UNIX_DIAG_MSG_LEN {
        return Err(bad("short unix_diag_msg"));
    }
    let mut d = UnixDiag {
        sk_type: msg[1],
        state: msg[2],
        ino: u32_at(msg, 4).ok_or_else(|| bad("short unix_diag_msg"))?,
        ..Default::default()
    };
    let mut off = UNIX_DIAG_MSG_LEN;
    while off + 4 <= msg.len() {
        let alen = u16_at(msg, off).ok_or_else(|| bad("short attribute"))? as usize;
        // The type has flag bits on top (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
        let aty = u16_at(msg, off + 2).ok_or_else(|| bad("short attribute"))? & 0x3fff;
        if alen < 4 || off + alen > msg.len() {
            return Err(bad("bad attribute length"));
        }
        let p = &msg[off + 4..off + alen];
        match aty {
            UNIX_DIAG_NAME => d.name = Some(p.to_vec()),
            UNIX_DIAG_VFS => d.has_vfs = true,
            UNIX_DIAG_PEER => d.peer = Some(u32_at(p, 0).ok_or_else(|| bad("short peer"))?),
            UNIX_DIAG_ICONS => {
                d.icons = p
                    .chunks_exact(4)
                    .filter_map(|c| c.try_into().ok().map(u32::from_ne_bytes))
                    .collect()
            }
            UNIX_DIAG_RQLEN => {
                d.rqlen = Some((
                    u32_at(p, 0).ok_or_else(|| bad("short rqlen"))?,
                    u32_at(p, 4).ok_or_else(|| bad("short rqlen"))?,
                ))
            }
            UNIX_DIAG_SHUTDOWN => d.shutdown = p.first().copied(),
            _ => {}
        }
        off += (alen + 3) & !3;
    }
    Ok(Some(d))
}

/// Ask the kernel about the unix socket at inode `ino`; `Ok(None)` when there is none in
/// cryo's network namespace.
pub fn unix_diag(ino: u32) -> io::Result<Option<UnixDiag>> {
    // SAFETY: integer arguments only.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    } as libc::c_long)?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let req = unix_diag_request(ino, 1);
    // An unconnected netlink socket sends to the kernel (port 0).
    // SAFETY: req is valid for reads of its length.
    let rc = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    check(rc as libc::c_long)?;
    let mut buf = vec![0u8; 32 << 10];
    let n = loop {
        // SAFETY: buf is valid for writes of its length.
        let rc = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break check(rc as libc::c_long)? as usize;
    };
    parse_unix_diag_answer(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn answer(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSGHDR_LEN + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn parses_a_socketpair_end() {
        let mut body = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 1, 0];
        body.extend_from_slice(&1234u32.to_ne_bytes());
        body.extend_from_slice(&[0xff; 8]);
        body.extend(attr(UNIX_DIAG_PEER, &1235u32.to_ne_bytes()));
        let mut rq = 5u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(attr(UNIX_DIAG_RQLEN, &rq));
        body.extend(attr(UNIX_DIAG_SHUTDOWN, &[2]));
        let d = parse_unix_diag_answer(&answer(SOCK_DIAG_BY_FAMILY, &body))
            .expect("parse")
            .expect("a socket");
        assert_eq!(d.ino, 1234);
        assert_eq!(d.sk_type, libc::SOCK_STREAM as u8);
        assert_eq!(d.state, 1);
        assert_eq!(d.peer, Some(1235));
        assert_eq!(d.rqlen, Some((5, 0)));
        assert_eq!(d.shutdown, Some(2));
        assert_eq!(d.name, None);
    }

    #[test]
    fn parses_a_name_and_errors() {
        let mut body = vec![libc::AF_UNIX as u8, libc::SOCK_DGRAM as u8, 7, 0];
        body.extend_from_slice(&9u32.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend(attr(UNIX_DIAG_NAME, b"\0abstract"));
        let d = parse_unix_diag_answer(&answer(SOCK_DIAG_BY_FAMILY, &body))
            .expect("parse")
            .expect("a socket");
        assert_eq!(d.name.as_deref(), Some(&b"\0abstract"[..]));
        let enoent = answer(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_unix_diag_answer(&enoent).expect("parse"), None);
        let eperm = answer(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert!(parse_unix_diag_answer(&eperm).is_err());
        assert!(parse_unix_diag_answer(&[1, 2, 3]).is_err());
        let mut truncated = answer(SOCK_DIAG_BY_FAMILY, &body);
        truncated[0] = 200;
        assert!(parse_unix_diag_answer(&truncated).is_err());
    }

    #[test]
    fn request_layout() {
        let r = unix_diag_request(77, 3);
        assert_eq!(r.len(), 40);
        assert_eq!(u32_at(&r, 0), Some(40));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(r[16], libc::AF_UNIX as u8);
        assert_eq!(u32_at(&r, 24), Some(77));
    }
}
