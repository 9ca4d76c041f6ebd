//! Connected unnamed unix sockets (socketpair(2) ends, of type stream, datagram or seqpacket),
//! as CRIU writes them: one `FileEntry { type: UNIXSK, usk: UnixSkEntry }` per socket in
//! `files.img` (every fd on the socket, in any process, names that one entry), and what each
//! socket's receive queue holds in `sk-queues.img` (a `SkPacketEntry { id_for, length }`, then
//! the bytes; one entry per packet for datagram and seqpacket sockets).
//!
//! # Dump
//! A socket of family AF_UNIX. cryo asks its copy of it (see the file table): the options
//! (buffers, timeouts, SO_PASSCRED, ...) and the owner of its signals. sock_diag tells the
//! rest: type, state, bound name, peer inode and shutdown state. The receive queue is copied
//! without being taken out (`MSG_PEEK` over the peek offset, which is put back). Refused, with
//! the pid, fd and what the socket is: other families, bound (named or abstract) and
//! listening sockets, sockets in another network namespace, queues with fds in flight
//! (`SCM_RIGHTS`), and, once the whole tree is seen, a socket whose peer is not in it.
//!
//! # Restore
//! cryo makes every socket itself: a socketpair for two peers; a socketpair whose other end
//! is closed after filling for a socket whose peer had been closed; a plain socket for one
//! never connected. It refills each receive queue by sending from the peer's end (with the
//! sender's buffer enlarged for the time), then sets the options, the shutdown state and the
//! status flags, and keeps every socket until the restore ends; the file table hands them to
//! the processes.

use super::kind::{any_kind, FdKind, FdParams, Opened};
use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result, TaskCtx};
use cryo_image::{pb, ImageKind};
use cryo_sys::{sock_diag, socket, Pid};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use tracing::debug;

/// `TCP_ESTABLISHED`: a connected stream or seqpacket socket.
const TCP_ESTABLISHED: u32 = 1;
/// `TCP_LISTEN`.
const TCP_LISTEN: u32 = 10;
/// Shutdown bits of sock_diag (and `SkShutdown`): no more receiving, no more sending.
const RCV_SHUTDOWN: u32 = 1;
const SEND_SHUTDOWN: u32 = 2;

/// The socket inode of a `socket:[INODE]` link.
pub fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A dumped socket: where it was first seen, for the checks that need the whole tree.
#[derive(Debug)]
struct Seen {
    pid: Pid,
    fd: i32,
    peer: u32,
}

/// The unix sockets of a dump or a restore.
#[derive(Debug, Default)]
pub struct UnixSockets {
    /// Dump: socket inode -> where it was seen and its peer.
    seen: BTreeMap<u32, Seen>,
    /// Dump: the receive queues, (file id of the receiving socket, one packet or chunk).
    queues: Vec<(u32, Vec<u8>)>,
    /// Restore: socket inode -> cryo's socket.
    made: BTreeMap<u32, OwnedFd>,
}

fn type_name(ty: u32) -> &'static str {
    match ty as i32 {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "unknown-type",
    }
}

/// A unix socket name as ss(8) shows it: abstract names with '@'.
fn show_name(name: &[u8]) -> String {
    match name.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

/// The options of a socket (sk-opts.proto) that a socketpair end can have changed.
fn dump_opts(sk: BorrowedFd<'_>) -> std::io::Result<pb::SkOptsEntry> {
    let int = |opt| socket::get_int(sk, libc::SOL_SOCKET, opt);
    let (snd_sec, snd_usec) = socket::get_timeval(sk, libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = socket::get_timeval(sk, libc::SO_RCVTIMEO)?;
    Ok(pb::SkOptsEntry {
        so_sndbuf: int(libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        so_priority: Some(int(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(libc::SO_RCVLOWAT)? as u32),
        so_mark: Some(int(libc::SO_MARK)? as u32),
        so_passcred: Some(int(libc::SO_PASSCRED)? != 0),
        so_passsec: Some(int(libc::SO_PASSSEC)? != 0),
        ..Default::default()
    })
}

/// Set the options of `o` on cryo's socket (the buffers as the kernel stores them: it doubles
/// what it is given, and sock(7)'s FORCE variants pass the limits as root may).
fn restore_opts(sk: BorrowedFd<'_>, o: &pb::SkOptsEntry) -> std::io::Result<()> {
    let set = |opt, v: i32| socket::set_int(sk, libc::SOL_SOCKET, opt, v);
    if o.so_sndbuf != 0 {
        set(libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)?;
    }
    if o.so_rcvbuf != 0 {
        set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    }
    socket::set_timeval(sk, libc::SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec)?;
    socket::set_timeval(sk, libc::SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)?;
    if let Some(p) = o.so_priority.filter(|&p| p != 0) {
        set(libc::SO_PRIORITY, p as i32)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        set(libc::SO_RCVLOWAT, l as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        set(libc::SO_MARK, m as i32)?;
    }
    if o.so_passcred == Some(true) {
        set(libc::SO_PASSCRED, 1)?;
    }
    if o.so_passsec == Some(true) {
        set(libc::SO_PASSSEC, 1)?;
    }
    Ok(())
}

impl UnixSockets {
    /// Dump: the socket at `ino`, first seen as fd `fd` of `pid` (`sk`: cryo's copy) with
    /// status `flags` and signal owner `fown`, gets file id `id`; returns its entry. Refuses
    /// what cannot be restored.
    #[allow(clippy::too_many_arguments)]
    fn dump_socket(
        &mut self,
        pid: Pid,
        fd: i32,
        sk: BorrowedFd<'_>,
        ino: u32,
        id: u32,
        flags: u32,
        fown: pb::FownEntry,
    ) -> Result<pb::FileEntry> {
        let refuse = |what: String| {
            Error::Unsupported(format!("fd {fd} of pid {pid} (socket:[{ino}]): {what}"))
        };
        let ctx = |what: &str| format!("{what} of socket fd {fd}");
        let d = sock_diag::unix_diag(ino)
            .task_ctx(&ctx("ask sock_diag"), pid)?
            .ok_or_else(|| refuse("a unix socket in another network namespace".into()))?;
        let ty = u32::from(d.sk_type);
        let state = u32::from(d.state);
        if state == TCP_LISTEN {
            return Err(refuse(format!(
                "a listening unix {} socket{}",
                type_name(ty),
                d.name
                    .as_deref()
                    .map(|n| format!(" bound to {}", show_name(n)))
                    .unwrap_or_default()
            )));
        }
        if let Some(name) = &d.name {
            return Err(refuse(format!(
                "a unix {} socket bound to {}{}",
                type_name(ty),
                show_name(name),
                if d.has_vfs { "" } else { " (abstract)" }
            )));
        }
        if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&(ty as i32)) {
            return Err(refuse(format!("a unix socket of type {ty}")));
        }
        let shutdown = d.shutdown.map_or(0, u32::from);
        let peer = d.peer.unwrap_or(0);
        let opts = dump_opts(sk).task_ctx(&ctx("read the options"), pid)?;
        let packets = ty != libc::SOCK_STREAM as u32;
        // A seqpacket socket shut for reading reads 0 at its end, as a stream does.
        let eof_zero = !packets || (shutdown & RCV_SHUTDOWN != 0);
        let queue = socket::peek_queue(sk, packets, eof_zero)
            .task_ctx(&ctx("copy the receive queue"), pid)?;
        if queue.has_rights {
            return Err(refuse(format!(
                "a unix {} socket with file descriptors in flight (SCM_RIGHTS) in its queue",
                type_name(ty)
            )));
        }
        debug!(
            pid = pid.0,
            fd,
            ino,
            peer,
            "unix {} socket, {} queued packets of {} bytes",
            type_name(ty),
            queue.packets.len(),
            queue.packets.iter().map(Vec::len).sum::<usize>()
        );
        self.queues
            .extend(queue.packets.into_iter().map(|p| (id, p)));
        self.seen.insert(ino, Seen { pid, fd, peer });
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Unixsk as i32,
            id,
            usk: Some(pb::UnixSkEntry {
                id,
                ino,
                r#type: ty,
                state,
                flags,
                uflags: 0,
                backlog: d.rqlen.map_or(0, |(_, w)| w),
                peer,
                fown,
                opts,
                name: Vec::new(),
                shutdown: (shutdown != 0).then_some(shutdown as i32),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Dump, once the tree is seen: every connected socket's peer was dumped too, and is
    /// connected back to it.
    fn check_peers(&self) -> Result<()> {
        for (ino, s) in &self.seen {
            if s.peer == 0 {
                continue;
            }
            match self.seen.get(&s.peer) {
                Some(p) if p.peer == *ino => {}
                Some(p) => {
                    return Err(Error::Unsupported(format!(
                        "fd {} of pid {} (socket:[{ino}]): a unix socket connected to \
                         socket:[{}] (fd {} of pid {}), which is connected elsewhere",
                        s.fd, s.pid, s.peer, p.fd, p.pid
                    )))
                }
                None => {
                    return Err(Error::Unsupported(format!(
                        "fd {} of pid {} (socket:[{ino}]): a unix socket whose peer \
                         socket:[{}] is outside the dumped tree",
                        s.fd, s.pid, s.peer
                    )))
                }
            }
        }
        Ok(())
    }

    /// Dump: check the peers, then write `sk-queues.img` (only when some queue holds
    /// something).
    fn write_queues(&self, dir: &Path) -> Result<()> {
        self.check_peers()?;
        if self.queues.is_empty() {
            return Ok(());
        }
        let mut w = cryo_image::create_image(dir, ImageKind::SkQueues, None)?;
        for (id_for, data) in &self.queues {
            w.write_entry(&pb::SkPacketEntry {
                id_for: *id_for,
                length: data.len() as u32,
                scm: Vec::new(),
            })?;
            w.write_raw(data)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Restore: make every unix socket of `entries` in cryo, with its queue from
    /// `sk-queues.img`, its options, shutdown state and status flags.
    fn make_sockets(&mut self, dir: &Path, entries: &[&pb::FileEntry]) -> Result<()> {
        let usks: BTreeMap<u32, &pb::UnixSkEntry> = entries
            .iter()
            .filter_map(|e| e.usk.as_ref())
            .map(|u| (u.ino, u))
            .collect();
        if usks.is_empty() {
            return Ok(());
        }
        let bad = |what: String| Error::BadImage {
            image: "files.img".into(),
            what,
        };
        let ino_of: BTreeMap<u32, u32> = usks.values().map(|u| (u.id, u.ino)).collect();
        let mut queues: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        match cryo_image::open_image(dir, ImageKind::SkQueues, None) {
            Ok(mut r) => {
                while let Some(e) = r.read_entry::<pb::SkPacketEntry>()? {
                    let bytes = r.read_raw(u64::from(e.length))?;
                    if !e.scm.is_empty() {
                        return Err(Error::Unsupported(format!(
                            "a queued packet of socket {} with control messages (sk-queues.img)",
                            e.id_for
                        )));
                    }
                    let ino = ino_of.get(&e.id_for).ok_or_else(|| Error::BadImage {
                        image: "sk-queues.img".into(),
                        what: format!("a packet for {}, which is no unix socket", e.id_for),
                    })?;
                    queues.entry(*ino).or_default().push(bytes);
                }
            }
            Err(cryo_image::ImageError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let make = |what: &str, u: &pb::UnixSkEntry, e: std::io::Error| Error::Path {
            what: what.into(),
            path: format!("socket:[{}]", u.ino),
            source: e,
        };
        let mut made: BTreeMap<u32, OwnedFd> = BTreeMap::new();
        // Ends made only to fill a queue, whose socket had lost its peer: closed after.
        let mut spare: BTreeMap<u32, OwnedFd> = BTreeMap::new();
        for u in usks.values() {
            if made.contains_key(&u.ino) {
                continue;
            }
            let ty = u.r#type as i32;
            if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&ty)
                || !u.name.is_empty()
                || u.uflags != 0
            {
                return Err(Error::Unsupported(format!(
                    "unix socket {} (socket:[{}]) of type {} with name {:?} and uflags {:#x}",
                    u.id,
                    u.ino,
                    u.r#type,
                    show_name(&u.name),
                    u.uflags
                )));
            }
            if u.peer != 0 {
                let p = usks.get(&u.peer).ok_or_else(|| {
                    bad(format!(
                        "unix socket {} has no peer socket:[{}]",
                        u.id, u.peer
                    ))
                })?;
                if p.peer != u.ino || p.r#type != u.r#type {
                    return Err(bad(format!(
                        "unix sockets {} and {} are not a pair",
                        u.id, p.id
                    )));
                }
                let (a, b) = socket::socketpair(ty).map_err(|e| make("make socketpair", u, e))?;
                made.insert(u.ino, a);
                made.insert(p.ino, b);
            } else if u.state == TCP_ESTABLISHED || queues.contains_key(&u.ino) {
                let (a, b) = socket::socketpair(ty).map_err(|e| make("make socketpair", u, e))?;
                made.insert(u.ino, a);
                spare.insert(u.ino, b);
            } else {
                let s = socket::unix_socket(ty).map_err(|e| make("make socket", u, e))?;
                made.insert(u.ino, s);
            }
        }
        // Fill each queue from the other end, which may hold all of it for the time (the
        // data stays charged to the sender, as it was to the dumped peer).
        for (ino, packets) in &queues {
            let Some(u) = usks.get(ino) else { continue };
            let sender = spare
                .get(ino)
                .or_else(|| made.get(&u.peer))
                .ok_or_else(|| bad(format!("unix socket {} has a queue but no peer", u.id)))?;
            let total: usize = packets.iter().map(|p| p.len() + 1024).sum();
            socket::set_int(
                sender.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                i32::try_from(total + (256 << 10)).unwrap_or(i32::MAX / 2),
            )
            .map_err(|e| make("enlarge the send buffer to refill", u, e))?;
            let as_packets = u.r#type != libc::SOCK_STREAM as u32;
            for p in packets {
                socket::send_all(sender.as_fd(), p, as_packets)
                    .map_err(|e| make("refill the receive queue of", u, e))?;
            }
        }
        drop(spare);
        for u in usks.values() {
            let sk = made
                .get(&u.ino)
                .ok_or_else(|| bad(format!("unix socket {} was not made", u.id)))?
                .as_fd();
            restore_opts(sk, &u.opts).map_err(|e| make("set the options of", u, e))?;
            let how = match u.shutdown.map_or(0, |s| s as u32) & (RCV_SHUTDOWN | SEND_SHUTDOWN) {
                0 => None,
                RCV_SHUTDOWN => Some(libc::SHUT_RD),
                SEND_SHUTDOWN => Some(libc::SHUT_WR),
                _ => Some(libc::SHUT_RDWR),
            };
            if let Some(how) = how {
                socket::shutdown(sk, how).map_err(|e| make("shut down", u, e))?;
            }
            socket::set_status_flags(sk, u.flags as i32)
                .map_err(|e| make("set the status flags of", u, e))?;
        }
        self.made = made;
        Ok(())
    }
}

impl FdKind for UnixSockets {
    fn name(&self) -> &'static str {
        "unix socket"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Unixsk
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        p.socket_family() == Some(libc::AF_UNIX)
    }

    fn dump(&mut self, _cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        let ino = socket_inode(&p.link).ok_or_else(|| p.refuse("a socket without an inode"))?;
        self.dump_socket(p.pid, p.fd, p.file.as_fd(), ino, id, p.info.flags, p.fown)
    }

    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        self.write_queues(cx.dir)
    }

    fn load(&mut self, cx: &RestoreCx, entries: &[&pb::FileEntry]) -> Result<()> {
        self.make_sockets(cx.dir, entries)
    }

    /// cryo's socket itself: a socket has one open file.
    fn open(&self, _files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let u = entry.usk.as_ref().ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("file {} is no unix socket", entry.id),
        })?;
        let sk = self.made.get(&u.ino).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("unix socket {} was not made", u.id),
        })?;
        let me = Pid(std::process::id() as i32);
        Ok(Opened::Local(
            sk.try_clone()
                .task_ctx(&format!("copy socket:[{}]", u.ino), me)?,
        ))
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.usk.as_ref().map(|u| (u.flags, &u.fown))
    }

    any_kind!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[1234]"), Some(1234));
        assert_eq!(socket_inode("pipe:[1234]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        assert_eq!(show_name(b"\0abc"), "@abc");
        assert_eq!(show_name(b"/tmp/s"), "/tmp/s");
    }

    /// Sockets made in this process, dumped and restored through the image conversion alone
    /// (no tasks): the queue comes back with its packet boundaries, and the options.
    #[test]
    fn queue_and_options_round_trip() {
        let dir = std::env::temp_dir().join(format!("cryo-usk-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (a, b) = socket::socketpair(libc::SOCK_SEQPACKET).expect("socketpair");
        socket::send_all(a.as_fd(), b"first", true).expect("send");
        socket::send_all(b.as_fd(), b"to a", true).expect("send");
        socket::send_all(a.as_fd(), b"second!", true).expect("send");
        socket::set_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 100_000).expect("sndbuf");
        socket::set_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).expect("passcred");
        socket::shutdown(a.as_fd(), libc::SHUT_WR).expect("shutdown");
        let me = Pid(std::process::id() as i32);
        let mut s = UnixSockets::default();
        let mut entries = Vec::new();
        for (n, fd) in [&a, &b].into_iter().enumerate() {
            let link =
                std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("link");
            let ino = socket_inode(&link.to_string_lossy()).expect("a socket");
            let e = s
                .dump_socket(
                    me,
                    fd.as_raw_fd(),
                    fd.as_fd(),
                    ino,
                    n as u32 + 1,
                    libc::O_RDWR as u32,
                    crate::files::kind::no_fown(),
                )
                .expect("dump");
            entries.push(e);
        }
        s.write_queues(&dir).expect("write");
        let mut r = UnixSockets::default();
        r.make_sockets(&dir, &entries.iter().collect::<Vec<_>>())
            .expect("load");
        let ua = entries[0].usk.as_ref().expect("usk");
        let ub = entries[1].usk.as_ref().expect("usk");
        assert_eq!(ua.shutdown, Some(SEND_SHUTDOWN as i32));
        assert_eq!(ub.shutdown, Some(RCV_SHUTDOWN as i32));
        let na = r.made.get(&ua.ino).expect("a").as_fd();
        let nb = r.made.get(&ub.ino).expect("b").as_fd();
        let qa = socket::peek_queue(na, true, false).expect("peek");
        let qb = socket::peek_queue(nb, true, true).expect("peek");
        assert_eq!(qa.packets, vec![b"to a".to_vec()]);
        assert_eq!(qb.packets, vec![b"first".to_vec(), b"second!".to_vec()]);
        let o = dump_opts(na).expect("opts");
        assert_eq!(o.so_sndbuf, ua.opts.so_sndbuf);
        assert_eq!(dump_opts(nb).expect("opts").so_passcred, Some(true));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
