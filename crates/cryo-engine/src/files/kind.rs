//! The contract between the file table and the kinds of files: [`FdKind`], what a kind is told
//! about an fd ([`FdParams`]), and the one registry of kinds ([`KINDS`]).
//!
//! A kind owns one family of `files.img` entries (`FileEntry.type`) and every image of its own,
//! dump side and restore side together. The table ([`super::table::FileTable`]) does what is
//! the same for every kind: listing a task's fds, telling which fds share one open file, file
//! ids, the fdinfo entries with close-on-exec, the owner of signals (`F_SETOWN`), O_ASYNC, and
//! handing a file to every process that holds it. A kind that needs another kind's object asks
//! the table for it by file id; kinds never import each other.

use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::{procfs, Pid, RemoteFd};
use std::any::Any;
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// What the table found out about one fd before any kind looked at it.
#[derive(Debug)]
pub struct FdParams {
    /// The process whose fd table holds it (cryo's number; with a dead leader, a live thread).
    pub pid: Pid,
    /// Its number there.
    pub fd: i32,
    /// What /proc/PID/fd/N links to (`pipe:[12]`, `/tmp/x (deleted)`, `anon_inode:[eventfd]`).
    pub link: String,
    /// cryo's own copy of the open file (pidfd_getfd): the very file the task has, sharing its
    /// position, flags and everything else. Never read from or written to: that would change
    /// the task's file.
    pub file: File,
    /// Its fstat.
    pub meta: Metadata,
    /// Position, status flags (without O_CLOEXEC, which belongs to the fd), mount id, inode.
    pub info: procfs::FdInfo,
    /// The fd is close-on-exec.
    pub cloexec: bool,
    /// The whole of /proc/PID/fdinfo/N, for the lines of a kind (eventfd-count, tfd, ...).
    pub fdinfo: String,
    /// Who gets the file's SIGIO/SIGURG (`F_GETOWN_EX`, `F_GETSIG`), the owner's pid as the task
    /// sees it.
    pub fown: pb::FownEntry,
}

impl FdParams {
    /// The file's device major number (of its rdev: for character and block devices).
    pub fn rdev_major(&self) -> u64 {
        let rdev = self.meta.rdev();
        ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
    }

    /// The file's device minor number (of its rdev).
    pub fn rdev_minor(&self) -> u64 {
        let rdev = self.meta.rdev();
        (rdev & 0xff) | ((rdev >> 12) & !0xff)
    }

    /// Whether it is a character device.
    pub fn is_char_device(&self) -> bool {
        self.meta.file_type().is_char_device()
    }

    /// The socket family (`SO_DOMAIN`) of a socket, or `None` for any other file.
    pub fn socket_family(&self) -> Option<i32> {
        if !self.link.starts_with("socket:[") {
            return None;
        }
        cryo_sys::socket::get_int(self.file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).ok()
    }

    /// The value of the first fdinfo line `key:` (trimmed), if there is one.
    pub fn fdinfo_field(&self, key: &str) -> Option<&str> {
        self.fdinfo.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// A refusal of this fd: `what` says what it is and what to try.
    pub fn refuse(&self, what: impl std::fmt::Display) -> Error {
        Error::Unsupported(format!(
            "fd {} of pid {} ({}): {what}",
            self.fd, self.pid, self.link
        ))
    }
}

/// How a kind gives a restored process its file.
#[derive(Debug)]
pub enum Opened {
    /// cryo has the file; the table moves it into each process that holds it.
    Local(OwnedFd),
    /// Only the process itself can open it (a path that means something else to cryo, such as
    /// /dev/tty): the table asks the kind to, through [`FdKind::open_in`].
    InPuppet,
}

/// One kind of file: its dump and restore sides (see the module doc).
pub trait FdKind: Any {
    /// The kind's name, as messages say it ("pipe", "unix socket").
    fn name(&self) -> &'static str;

    /// The `files.img` type of its entries.
    fn fd_type(&self) -> pb::FdTypes;

    /// Dump: whether the fd is of this kind. Kinds are asked in registry order; the first
    /// that claims an fd dumps it. An fd of this kind that cannot be dumped is claimed all the
    /// same and refused by [`FdKind::dump`], by name.
    fn claims(&self, cx: &DumpCx, p: &FdParams) -> bool;

    /// Dump: the `files.img` entry of the open file behind `p`, seen for the first time (other
    /// fds on the same open file get the same id without asking), with file id `id`.
    fn dump(&mut self, cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry>;

    /// Dump: what tells two open files of this kind apart cheaply, beyond device, inode,
    /// position and flags (an eventfd's id, say); 0 if nothing does. fds whose keys are equal
    /// are told apart with kcmp.
    fn dedup_key(&self, _p: &FdParams) -> u64 {
        0
    }

    /// Dump, once every process was dumped: check what needs the whole tree and write the
    /// kind's own images.
    fn write_images(&mut self, _cx: &DumpCx) -> Result<()> {
        Ok(())
    }

    /// Dump, after [`FdKind::write_images`]: entries the kind adds to `files.img` besides
    /// those of open files (the path of a terminal as a REG entry, as CRIU has it).
    fn more_entries(&mut self) -> Vec<pb::FileEntry> {
        Vec::new()
    }

    /// Restore: read the kind's images and make, in cryo, what must exist before any process
    /// opens a file of the kind. `entries` are the kind's own `files.img` entries.
    fn load(&mut self, _cx: &RestoreCx, _entries: &[&pb::FileEntry]) -> Result<()> {
        Ok(())
    }

    /// Restore, before the first fd table is filled (every address space of the tree is
    /// restored by then).
    fn before_fds(&self) -> Result<()> {
        Ok(())
    }

    /// Restore: the open file of `entry`, once; every holder gets this one.
    fn open(&self, files: &FileTable, entry: &pb::FileEntry) -> Result<Opened>;

    /// Restore, for [`Opened::InPuppet`]: open the file in the process behind `inj`.
    fn open_in(
        &self,
        _files: &FileTable,
        inj: &Injector,
        entry: &pb::FileEntry,
    ) -> Result<RemoteFd> {
        Err(Error::Unsupported(format!(
            "opening a {} (file {}) in pid {}",
            self.name(),
            entry.id,
            inj.pid()
        )))
    }

    /// Restore: what only the process can do with its file, once every fd of its table is in
    /// place (at `fd`). Runs for every fd on the file.
    fn post_open(
        &self,
        _files: &FileTable,
        _inj: &Injector,
        _entry: &pb::FileEntry,
        _fd: RemoteFd,
    ) -> Result<()> {
        Ok(())
    }

    /// Restore, while the processes are made: the process behind `inj` has just made session
    /// `sid` (as the images number it) with setsid(2) and forked none of its members yet:
    /// what the session must have before they are born (its controlling terminal, which they
    /// inherit at fork).
    fn new_session(&self, _files: &FileTable, _inj: &Injector, _sid: u32) -> Result<()> {
        Ok(())
    }

    /// Restore: the leader of session `sid` (behind `inj`) has its fds, and every process and
    /// process group of the tree exists (a terminal's foreground group).
    fn session_ready(&self, _files: &FileTable, _inj: &Injector, _sid: u32) -> Result<()> {
        Ok(())
    }

    /// Restore, once every process has its fds (a terminal's lock, which keeps anything from
    /// opening it).
    fn after_fds(&self) -> Result<()> {
        Ok(())
    }

    /// Restore, at the end or after a failure: remove what the kind made outside the
    /// processes (re-created ghost files).
    fn cleanup(&self) {}

    /// The status flags and signal owner of `entry` (every kind's entry has them).
    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)>;

    /// The kind as `Any`, for the table's typed access ([`FileTable::kind`]).
    fn as_any(&self) -> &dyn Any;

    /// The kind as `Any`, mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Implements the `as_any` pair of [`FdKind`].
macro_rules! any_kind {
    () => {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    };
}
pub(crate) use any_kind;

/// Every kind of file cryo handles, in the order they are asked to claim an fd: the narrow
/// ones first (a memfd is a regular file too), regular files last.
pub const KINDS: &[fn() -> Box<dyn FdKind>] = &[
    || Box::<super::memfd::Memfds>::default(),
    || Box::<super::unix_socket::UnixSockets>::default(),
    || Box::<super::pipe::Pipes>::default(),
    || Box::<super::tty::Ttys>::default(),
    || Box::<super::reg::RegFiles>::default(),
];

/// An fd's signal owner not set.
pub fn no_fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}
