//! Giving files that cryo holds to a puppet.
//!
//! - [`FdSource`]: one file at a time. cryo keeps a pidfd of itself; the puppet opens that
//!   pidfd through /proc/CRYO/fd/PIDFD (which gives the puppet a pidfd of cryo), takes the file
//!   out of cryo's table with pidfd_getfd(2) and closes the pidfd again: the puppet's fd is the
//!   very file cryo holds. The puppet still has cryo's credentials at this point, which
//!   pidfd_getfd's ptrace check needs. cryo's PID is the one its own /proc shows (the puppets
//!   resolve /proc in cryo's mount namespace).
//! - [`FdSender`]: a whole fd table. The puppet gets one end of a datagram socket pair of
//!   cryo's (through an [`FdSource`]), above every fd it is to have; cryo sends files with
//!   `SCM_RIGHTS`, up to [`cryo_sys::socket::SCM_MAX_FD`] per message, and the puppet takes
//!   each message with one remote recvmsg(2). The kernel gives received fds the lowest free
//!   numbers, in order: sent in fd order into an empty table, each lands where it belongs. A
//!   gap is filled with copies of one spare file, closed afterwards with close_range(2). The
//!   numbers the kernel gave are read back from the control message and checked.

use crate::error::{Error, Result, TaskCtx};
use crate::remote::Injector;
use cryo_sys::socket::{self, SCM_MAX_FD};
use cryo_sys::{Pid, RemoteFd};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
    /// close-on-exec (pidfd_getfd always sets it). `what` names the file for errors.
    pub fn install(&self, inj: &Injector, local: BorrowedFd<'_>, what: &str) -> Result<RemoteFd> {
        let path = format!("/proc/{}/fd/{}", std::process::id(), self.pidfd.as_raw_fd());
        let pidfd = inj.open(
            &path,
            libc::O_RDONLY as u32,
            &format!("a pidfd of cryo at {path} to take {what}"),
        )?;
        let got = inj.syscall_fd(
            &format!("take {what} from cryo with pidfd_getfd"),
            libc::SYS_pidfd_getfd,
            &[pidfd.0 as u64, local.as_raw_fd() as u64, 0],
        );
        // The pidfd goes whether or not the file came.
        let closed = inj.close(pidfd, "the pidfd of cryo");
        let fd = got?;
        closed?;
        Ok(fd)
    }
}

/// Moves whole fd tables into puppets (see the module doc).
#[derive(Debug)]
pub struct FdSender {
    source: FdSource,
    /// cryo's end.
    ours: OwnedFd,
    /// The end each puppet gets.
    theirs: OwnedFd,
    /// The spare file that fills gaps.
    filler: OwnedFd,
}

impl FdSender {
    /// A socket pair and a spare file for the fills.
    pub fn new() -> Result<FdSender> {
        let me = Pid(std::process::id() as i32);
        let (ours, theirs) = socket::socketpair(libc::SOCK_DGRAM)
            .task_ctx("make the socket pair that hands fds to the puppets", me)?;
        // Room for a whole message of fds queued (each costs the receiver some bytes).
        let _ = socket::set_int(
            theirs.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            1 << 20,
        );
        let filler = std::fs::File::open("/dev/null")
            .task_ctx("open /dev/null as a spare file", me)?
            .into();
        Ok(FdSender {
            source: FdSource::new()?,
            ours,
            theirs,
            filler,
        })
    }

    /// Start filling the fd table of the puppet behind `inj` (empty, and to hold fds below
    /// `top` only): the puppet's end of the socket goes to fd `top`.
    pub fn deliver<'a>(&'a self, inj: &'a Injector, top: RemoteFd) -> Result<Delivery<'a>> {
        let got =
            self.source
                .install(inj, self.theirs.as_fd(), "the socket that hands fds over")?;
        let sock = if got == top {
            got
        } else {
            let moved = inj.syscall(
                &format!("move the fd socket above the table (fd {top})"),
                libc::SYS_dup3,
                &[got.0 as u64, top.0 as u64, libc::O_CLOEXEC as u64],
            );
            inj.close(got, "the fd socket")?;
            moved.map_err(|e| match e {
                Error::Task { source, .. } if source.raw_os_error() == Some(libc::EBADF) => {
                    Error::Unsupported(format!(
                        "restoring fd {} of pid {}: above the process's open-files limit",
                        top.0 - 1,
                        inj.pid()
                    ))
                }
                e => e,
            })?;
            top
        };
        Ok(Delivery {
            sender: self,
            inj,
            sock,
            next_free: 0,
            batch: Vec::new(),
            fills: Vec::new(),
        })
    }
}

/// One thing sent in a message: a file for an fd, or a spare copy for a gap.
#[derive(Debug)]
enum Item {
    File(OwnedFd),
    Fill,
}

/// The filling of one puppet's fd table (see [`FdSender::deliver`]).
#[derive(Debug)]
pub struct Delivery<'a> {
    sender: &'a FdSender,
    inj: &'a Injector,
    /// The puppet's end of the socket.
    sock: RemoteFd,
    /// The lowest fd number not taken once the batch is received.
    next_free: i32,
    /// What the next message carries, the first landing at `next_free - batch.len()`.
    batch: Vec<Item>,
    /// Gaps filled with spare copies: (first, last), closed at the end.
    fills: Vec<(i32, i32)>,
}

impl Delivery<'_> {
    /// Give the puppet `file` at `fd`, above every fd given so far.
    pub fn push(&mut self, fd: RemoteFd, file: OwnedFd) -> Result<()> {
        if fd.0 < self.next_free || fd.0 >= self.sock.0 {
            return Err(Error::BadImage {
                image: "fdinfo".into(),
                what: format!("fd {fd} out of order"),
            });
        }
        if fd.0 > self.next_free {
            self.fills.push((self.next_free, fd.0 - 1));
            while self.next_free < fd.0 {
                self.add(Item::Fill)?;
            }
        }
        self.add(Item::File(file))
    }

    /// One more item for the next message, which goes when full.
    fn add(&mut self, item: Item) -> Result<()> {
        self.batch.push(item);
        self.next_free += 1;
        if self.batch.len() >= SCM_MAX_FD {
            self.flush()?;
        }
        Ok(())
    }

    /// Send the batch and have the puppet receive it, landing from `next_free - len`.
    fn flush(&mut self) -> Result<()> {
        let first = self.next_free - self.batch.len() as i32;
        self.flush_at(first)
    }

    /// Send the batch, whose first fd must land at `first`, and have the puppet receive it.
    fn flush_at(&mut self, first: i32) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let pid = self.inj.pid();
        let fds: Vec<BorrowedFd<'_>> = self
            .batch
            .iter()
            .map(|i| match i {
                Item::File(f) => f.as_fd(),
                Item::Fill => self.sender.filler.as_fd(),
            })
            .collect();
        socket::send_fds(self.sender.ours.as_fd(), &fds)
            .task_ctx(&format!("send {} fds", fds.len()), pid)?;
        let n = fds.len();
        drop(fds);
        let s = self.inj.scratch();
        let byte = s.zeroed(8)?;
        let iov = s.bytes(&[byte.addr.0.to_ne_bytes(), 1u64.to_ne_bytes()].concat())?;
        let control = s.zeroed(socket::rights_space(SCM_MAX_FD))?;
        let msg = s.slot(&socket::msghdr_bytes(iov.0, control.addr.0, control.len))?;
        self.inj.syscall(
            &format!("receive {n} fds"),
            libc::SYS_recvmsg,
            &[self.sock.0 as u64, msg.addr.0, 0],
        )?;
        let hdr = s.read(msg)?;
        let used = u64::from_ne_bytes(hdr[40..48].try_into().unwrap_or([0; 8])) as usize;
        let got = socket::parse_rights(&s.read(control)?, used);
        let want: Vec<i32> = (first..first + n as i32).collect();
        if got != want {
            return Err(Error::Task {
                what: format!("receive fds {first}..{} (got {got:?})", first + n as i32),
                pid,
                source: std::io::Error::from_raw_os_error(libc::EBADF),
            });
        }
        self.batch.clear();
        Ok(())
    }

    /// Send what is left, close the spare copies and the puppet's end of the socket.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        for &(lo, hi) in &self.fills {
            if lo <= hi {
                self.inj.syscall(
                    "close the spare fds of a gap",
                    libc::SYS_close_range,
                    &[lo as u64, hi as u64, 0],
                )?;
            }
        }
        self.fills.clear();
        self.inj.close(self.sock, "the fd socket")
    }
}
