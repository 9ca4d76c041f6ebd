//! [`FileTable`]: everything about file descriptors that is the same for every kind of file,
//! written once: the fd tables of the tasks (`fdinfo-N.img`), the open files behind them
//! (`files.img`, one entry per open file, whatever the number of fds and processes holding
//! it), close-on-exec, O_ASYNC and the owner of a file's signals, and the handing of a file to
//! every process that holds it. What a file *is* belongs to its kind ([`super::kind`]).
//!
//! # Dump
//! For each fd of a task: its link in /proc/PID/fd, cryo's own copy of its open file
//! (pidfd_getfd), the copy's fstat, /proc/PID/fdinfo/N and the signal owner. The first kind of
//! [`KINDS`] that claims the fd decides what it is. fds that name one open file (dup, or
//! inherited at fork) get one file entry: candidates are found by a cheap key (device, inode,
//! position, flags and whatever the kind adds) and told apart with kcmp(KCMP_FILE).
//!
//! # Restore
//! Each open file is opened once, by its kind, in cryo; the first process that holds it gets
//! that very file, every later holder a copy taken from the one before (pidfd_getfd). The
//! files go into a process over a unix socket, up to 253 per `SCM_RIGHTS` message and one
//! remote recvmsg(2): received fds take the lowest free numbers, so the table is filled from
//! the bottom in fd order, and a short gap between two fds is filled with copies of one spare
//! file that are closed afterwards (a long one costs a dup3). Close-on-exec is set per run of
//! fds with one close_range(2). Only what a process alone can do is done per fd, by remote
//! syscalls: O_ASYNC and the signal owner, and a kind's own [`FdKind::post_open`].

use super::kind::{FdKind, FdParams, Opened, KINDS};
use super::transfer::FdSender;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result, TaskCtx};
use crate::kobj_ids::KcmpSorted;
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::{procfs, Pid, RemoteFd};
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use tracing::debug;

/// fdinfo flag: close-on-exec (`FD_CLOEXEC`).
const FD_CLOEXEC: u32 = 1;
/// The bit of the open flags in /proc fdinfo that says the fd is close-on-exec.
const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
/// `CLOSE_RANGE_CLOEXEC` (include/uapi/linux/close_range.h): set close-on-exec, do not close.
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

/// What fds naming one open file have in common: kind, device, inode, position, status flags
/// and the kind's own key (see [`FdKind::dedup_key`]).
type OpenFileKey = (usize, u64, u64, u64, u32, u64);

/// The files of a dump or a restore, and the kinds that own them.
pub struct FileTable {
    kinds: Vec<Box<dyn FdKind>>,
    /// `files.img` entries: as dumped, or as read.
    entries: Vec<pb::FileEntry>,
    /// Restore: file id -> index in `entries`.
    by_id: HashMap<u32, usize>,
    /// Dump: the open files seen, by cheap key, each with one fd that holds it.
    open_files: KcmpSorted<OpenFileKey, (Pid, i32)>,
    /// Dump: kcmp calls made to tell open files apart.
    pub kcmp_calls: u64,
    /// Dump: a pidfd of each task whose fds were taken.
    pidfds: BTreeMap<Pid, OwnedFd>,
    /// Restore: where each open file was installed first (cryo's pid of the process, fd), for
    /// the later holders.
    installed: RefCell<HashMap<u32, (Pid, RemoteFd)>>,
    /// Restore: how files reach the processes.
    sender: OnceCell<FdSender>,
    /// Restore: the kinds were told that fd tables are about to be filled.
    before_fds_done: std::cell::Cell<bool>,
}

impl std::fmt::Debug for FileTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTable")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Default for FileTable {
    fn default() -> FileTable {
        FileTable::new()
    }
}

impl FileTable {
    /// An empty table with every kind of [`KINDS`].
    pub fn new() -> FileTable {
        FileTable {
            kinds: KINDS.iter().map(|make| make()).collect(),
            entries: Vec::new(),
            by_id: HashMap::new(),
            open_files: KcmpSorted::default(),
            kcmp_calls: 0,
            pidfds: BTreeMap::new(),
            installed: RefCell::default(),
            sender: OnceCell::new(),
            before_fds_done: std::cell::Cell::new(false),
        }
    }

    /// The kind `K`, for what only it knows (the path of a regular file, a memfd's mapping).
    pub fn kind<K: FdKind>(&self) -> Result<&K> {
        self.kinds
            .iter()
            .find_map(|k| k.as_any().downcast_ref::<K>())
            .ok_or_else(|| Error::Unsupported("a kind of file missing from KINDS".into()))
    }

    /// The kind `K`, mutably.
    pub fn kind_mut<K: FdKind>(&mut self) -> Result<&mut K> {
        self.kinds
            .iter_mut()
            .find_map(|k| k.as_any_mut().downcast_mut::<K>())
            .ok_or_else(|| Error::Unsupported("a kind of file missing from KINDS".into()))
    }

    /// Add an entry made outside an fd table (a mapped file, cwd, root, exe).
    pub fn push_entry(&mut self, e: pb::FileEntry) {
        self.entries.push(e);
    }

    /// The entries of `files.img`.
    pub fn entries(&self) -> &[pb::FileEntry] {
        &self.entries
    }

    /// The entry of file `id`.
    pub fn entry(&self, id: u32) -> Option<&pb::FileEntry> {
        match self.by_id.get(&id) {
            Some(&i) => self.entries.get(i),
            None => self.entries.iter().find(|e| e.id == id),
        }
    }

    fn kind_index(&self, e: &pb::FileEntry) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.fd_type() as i32 == e.r#type)
    }

    fn kind_of(&self, e: &pb::FileEntry) -> Result<&dyn FdKind> {
        self.kind_index(e)
            .and_then(|i| self.kinds.get(i))
            .map(|k| k.as_ref())
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "file {} of type {} ({})",
                    e.id,
                    e.r#type,
                    pb::FdTypes::try_from(e.r#type)
                        .map(|t| t.as_str_name())
                        .unwrap_or("unknown")
                ))
            })
    }

    // -----------------------------------------------------------------------------------------
    // Dump

    /// Dump the fd table of `pid`: its fdinfo entries, the files behind them added to the table.
    pub fn dump_fds(&mut self, cx: &mut DumpCx, pid: Pid) -> Result<Vec<pb::FdinfoEntry>> {
        let dir = format!("/proc/{pid}/fd");
        let list_err = |source| Error::Path {
            what: "list fds in".into(),
            path: dir.clone(),
            source,
        };
        let mut fds: Vec<i32> = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(list_err)? {
            let e = e.map_err(list_err)?;
            if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                fds.push(n);
            }
        }
        fds.sort_unstable();
        let mut out = Vec::with_capacity(fds.len());
        for fd in fds {
            let p = self.read_fd(pid, fd)?;
            let cloexec = p.cloexec;
            let (k, id) = self.file_id(cx, &p)?;
            out.push(pb::FdinfoEntry {
                id,
                flags: if cloexec { FD_CLOEXEC } else { 0 },
                r#type: self.kinds[k].fd_type() as i32,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
        }
        Ok(out)
    }

    /// What the table knows of fd `fd` of `pid` before a kind looks at it.
    fn read_fd(&mut self, pid: Pid, fd: i32) -> Result<FdParams> {
        let link_path = format!("/proc/{pid}/fd/{fd}");
        let link = std::fs::read_link(&link_path)
            .map_err(|source| Error::Path {
                what: "read link".into(),
                path: link_path.clone(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        let pidfd = match self.pidfds.entry(pid) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(pidfd_of(pid)?),
        };
        let file = File::from(
            cryo_sys::task::pidfd_getfd(pidfd, RemoteFd(fd))
                .task_ctx(&format!("take a copy of fd {fd} ({link})"), pid)?,
        );
        let meta = file
            .metadata()
            .task_ctx(&format!("stat fd {fd} ({link})"), pid)?;
        let fdinfo = procfs::read_text(&format!("/proc/{pid}/fdinfo/{fd}"))?;
        let mut info = procfs::parse_fdinfo(&fdinfo, &format!("/proc/{pid}/fdinfo/{fd}"))?;
        let fown = dump_fown(pid, fd, &file)?;
        let cloexec = info.flags & O_CLOEXEC != 0;
        let p = FdParams {
            cloexec,
            pid,
            fd,
            link,
            file,
            meta,
            info: {
                info.flags &= !O_CLOEXEC;
                info
            },
            fdinfo,
            fown,
        };
        Ok(p)
    }

    /// The kind of `p` and its file id: the id of the open file if another fd seen so far
    /// names it, else a new entry made by the kind.
    fn file_id(&mut self, cx: &mut DumpCx, p: &FdParams) -> Result<(usize, u32)> {
        let k = match self.kinds.iter().position(|k| k.claims(cx, p)) {
            Some(k) => k,
            None => return Err(p.refuse(describe(p))),
        };
        let key = (
            k,
            p.meta.dev(),
            p.meta.ino(),
            p.info.pos,
            p.info.flags,
            self.kinds[k].dedup_key(p),
        );
        let (pid, fd) = (p.pid, p.fd);
        let mut open_files = std::mem::take(&mut self.open_files);
        let mut calls = 0;
        let kinds = &mut self.kinds;
        let entries = &mut self.entries;
        let id = open_files.id_of(
            key,
            (pid, fd),
            |(other, other_fd)| {
                cryo_sys::task::kcmp_files(pid, fd, other, other_fd).map_err(|source| Error::Task {
                    what: format!("compare fd {fd} with fd {other_fd} of pid {other} (kcmp)"),
                    pid,
                    source,
                })
            },
            || {
                let id = cx.ids.next_id();
                let kind = &mut kinds[k];
                let e = kind.dump(cx, p, id).map_err(|e| Error::Fd {
                    kind: kind.name(),
                    pid,
                    fd,
                    source: Box::new(e),
                })?;
                entries.push(e);
                Ok(id)
            },
            &mut calls,
        );
        self.open_files = open_files;
        self.kcmp_calls += calls;
        Ok((k, id?))
    }

    /// Dump, once every process was dumped: every kind writes its images, then `files.img`.
    pub fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        for k in self.kinds.iter_mut() {
            k.write_images(cx)?;
        }
        for k in self.kinds.iter_mut() {
            let more = k.more_entries();
            self.entries.extend(more);
        }
        cryo_image::write_all_entries(cx.dir, ImageKind::Files, None, &self.entries)?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Restore

    /// Read `files.img` and let every kind load its images.
    pub fn load(cx: &RestoreCx) -> Result<FileTable> {
        let mut t = FileTable::new();
        t.entries = cryo_image::read_all_entries(cx.dir, ImageKind::Files, None)?;
        for (i, e) in t.entries.iter().enumerate() {
            if t.by_id.insert(e.id, i).is_some() {
                return Err(Error::BadImage {
                    image: "files.img".into(),
                    what: format!("file id {} given twice", e.id),
                });
            }
        }
        let mut by_kind: Vec<Vec<&pb::FileEntry>> = vec![Vec::new(); t.kinds.len()];
        for e in &t.entries {
            let k = t.kind_index(e).ok_or_else(|| {
                Error::Unsupported(format!(
                    "file {} of type {} ({}) in files.img",
                    e.id,
                    e.r#type,
                    pb::FdTypes::try_from(e.r#type)
                        .map(|t| t.as_str_name())
                        .unwrap_or("unknown")
                ))
            })?;
            by_kind[k].push(e);
        }
        for (kind, entries) in t.kinds.iter_mut().zip(&by_kind) {
            kind.load(cx, entries).map_err(|e| Error::Restore {
                what: format!("the {}s", kind.name()),
                pid: Pid(0),
                image: "files.img".into(),
                source: Box::new(e),
            })?;
        }
        Ok(t)
    }

    /// The open file `id` in cryo, for a kind that needs another kind's file (a file in
    /// flight in a socket's queue, an epoll target): the one installed already, or a new one.
    pub fn open_local(&self, id: u32) -> Result<OwnedFd> {
        if let Some((holder, fd)) = self.installed.borrow().get(&id).copied() {
            return take_fd(holder, fd).task_ctx(&format!("take file {id} (fd {fd})"), holder);
        }
        let e = self.entry(id).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("no file {id}"),
        })?;
        match self.kind_of(e)?.open(self, e)? {
            Opened::Local(f) => Ok(f),
            Opened::InPuppet => Err(Error::Unsupported(format!(
                "file {id} ({}) outside a process",
                self.kind_of(e)?.name()
            ))),
        }
    }

    /// Install the fds of `fdinfos` in the process behind `inj`, whose fd table is empty.
    pub fn restore_fds(&self, inj: &Injector, fdinfos: &[pb::FdinfoEntry]) -> Result<()> {
        if !self.before_fds_done.replace(true) {
            for k in &self.kinds {
                k.before_fds()?;
            }
        }
        let mut order: Vec<&pb::FdinfoEntry> = fdinfos.iter().collect();
        order.sort_by_key(|f| f.fd);
        if let Some(w) = order.windows(2).find(|w| w[0].fd == w[1].fd) {
            return Err(Error::BadImage {
                image: "fdinfo".into(),
                what: format!("fd {} given twice", w[0].fd),
            });
        }
        let Some(last) = order.last() else {
            return Ok(());
        };
        let top = i32::try_from(last.fd)
            .ok()
            .and_then(|f| f.checked_add(1))
            .ok_or_else(|| Error::BadImage {
                image: "fdinfo".into(),
                what: format!("fd {} out of range", last.fd),
            })?;
        let pid = inj.pid();
        // How often each file comes again in this table (dup): cryo keeps its copy till then.
        let mut uses: HashMap<u32, usize> = HashMap::new();
        for f in &order {
            *uses.entry(f.id).or_default() += 1;
        }
        let mut kept: HashMap<u32, OwnedFd> = HashMap::new();
        let mut in_puppet = Vec::new();
        let sender = match self.sender.get() {
            Some(s) => s,
            None => {
                let s = FdSender::new()?;
                self.sender.get_or_init(|| s)
            }
        };
        let mut delivery = sender.deliver(inj, RemoteFd(top))?;
        for f in &order {
            let e = self.entry(f.id).ok_or_else(|| Error::BadImage {
                image: "files.img".into(),
                what: format!("no file {} for fd {}", f.id, f.fd),
            })?;
            let kind = self.kind_of(e)?;
            let fd = RemoteFd(f.fd as i32);
            let fd_err = |e: Error| Error::Fd {
                kind: kind.name(),
                pid,
                fd: fd.0,
                source: Box::new(e),
            };
            let left = uses.get_mut(&f.id).map_or(0, |n| {
                *n -= 1;
                *n
            });
            let file = if let Some(k) = kept.get(&f.id) {
                k.try_clone().task_ctx("copy a file for another fd", pid)?
            } else {
                let first = self.installed.borrow().get(&f.id).copied();
                match first {
                    Some((holder, hfd)) => take_fd(holder, hfd)
                        .task_ctx(&format!("take file {} (fd {hfd})", f.id), holder)
                        .map_err(fd_err)?,
                    None => match kind.open(self, e).map_err(fd_err)? {
                        Opened::Local(file) => file,
                        Opened::InPuppet => {
                            in_puppet.push((*f, e, kind));
                            continue;
                        }
                    },
                }
            };
            if left > 0 && !kept.contains_key(&f.id) {
                kept.insert(f.id, file.try_clone().task_ctx("keep a file", pid)?);
            }
            if left == 0 {
                kept.remove(&f.id);
            }
            delivery.push(fd, file)?;
            self.installed.borrow_mut().entry(f.id).or_insert((pid, fd));
        }
        delivery.finish()?;
        for (f, e, kind) in in_puppet {
            let target = RemoteFd(f.fd as i32);
            let got = kind.open_in(self, inj, e).map_err(|err| Error::Fd {
                kind: kind.name(),
                pid,
                fd: target.0,
                source: Box::new(err),
            })?;
            if got != target {
                inj.syscall(
                    "move fd into place",
                    libc::SYS_dup3,
                    &[got.0 as u64, target.0 as u64, 0],
                )?;
                inj.close(got, "fd moved into place")?;
            }
            self.installed
                .borrow_mut()
                .entry(f.id)
                .or_insert((pid, target));
        }
        set_cloexec_runs(inj, &order)?;
        for f in &order {
            let Some(e) = self.entry(f.id) else { continue };
            let kind = self.kind_of(e)?;
            let fd = RemoteFd(f.fd as i32);
            let res = restore_fown(inj, kind, e, fd).and_then(|_| kind.post_open(self, inj, e, fd));
            res.map_err(|err| Error::Fd {
                kind: kind.name(),
                pid,
                fd: fd.0,
                source: Box::new(err),
            })?;
        }
        debug!(pid = pid.0, fds = order.len(), "fd table restored");
        Ok(())
    }

    /// The process behind `inj` has just made session `sid` (as the images number it) and
    /// forked none of its members yet: every kind gives the session what its members inherit
    /// (see [`FdKind::new_session`]).
    pub fn new_session(&self, inj: &Injector, sid: u32) -> Result<()> {
        for k in &self.kinds {
            k.new_session(self, inj, sid).map_err(|e| Error::Restore {
                what: format!("the {}s of session {sid}", k.name()),
                pid: inj.pid(),
                image: "tty-info.img".into(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// The leader of session `sid` (behind `inj`) has its fds and the whole tree exists (see
    /// [`FdKind::session_ready`]).
    pub fn session_ready(&self, inj: &Injector, sid: u32) -> Result<()> {
        for k in &self.kinds {
            k.session_ready(self, inj, sid)
                .map_err(|e| Error::Restore {
                    what: format!("the {}s of session {sid}", k.name()),
                    pid: inj.pid(),
                    image: "tty-info.img".into(),
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }

    /// Every process has its fds (see [`FdKind::after_fds`]).
    pub fn after_fds(&self) -> Result<()> {
        for k in &self.kinds {
            k.after_fds()?;
        }
        Ok(())
    }

    /// At the end of a restore, or after a failure: let every kind remove what it made
    /// outside the processes (re-created ghost files).
    pub fn cleanup(&self) {
        for k in &self.kinds {
            k.cleanup();
        }
    }
}

/// A pidfd of `pid` for pidfd_getfd: of the process, or for a thread standing in for a dead
/// leader, of that thread.
fn pidfd_of(pid: Pid) -> Result<OwnedFd> {
    cryo_sys::task::pidfd_open(pid)
        .or_else(|_| cryo_sys::task::pidfd_open_thread(pid))
        .task_ctx("open a pidfd", pid)
}

/// A duplicate in cryo of fd `fd` of process `pid`, taken through the leader or, once the
/// leader has exited (as dumped) while the fd table lives on with the other threads, through
/// one of them.
pub(crate) fn take_fd(pid: Pid, fd: RemoteFd) -> std::io::Result<OwnedFd> {
    let err = match cryo_sys::task::pidfd_open(pid)
        .and_then(|pidfd| cryo_sys::task::pidfd_getfd(&pidfd, fd))
    {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    for tid in procfs::read_threads(pid).unwrap_or_default() {
        if tid == pid {
            continue;
        }
        if let Ok(f) = cryo_sys::task::pidfd_open_thread(tid)
            .and_then(|pidfd| cryo_sys::task::pidfd_getfd(&pidfd, fd))
        {
            return Ok(f);
        }
    }
    Err(err)
}

/// The signal owner of fd `fd` of `pid` (its copy `file`), the owner's pid as the task sees it.
fn dump_fown(pid: Pid, fd: i32, file: &File) -> Result<pb::FownEntry> {
    let ctx = |what: &str| format!("{what} of fd {fd}");
    let (pid_type, owner) =
        cryo_sys::socket::owner(file.as_fd()).task_ctx(&ctx("read the signal owner"), pid)?;
    let signum = cryo_sys::socket::owner_signal(file.as_fd())
        .task_ctx(&ctx("read the owner signal"), pid)?;
    // cryo reads the owner in its own pid namespace; the image has it as the task sees it.
    let owner = crate::pid_ns::as_seen_by(pid, owner as i32)? as u32;
    Ok(pb::FownEntry {
        uid: 0,
        euid: 0,
        signum,
        pid_type: if owner == 0 { 0 } else { pid_type },
        pid: owner,
    })
}

/// O_ASYNC, the owner of the file's signals and the signal, set in the process (where the
/// owner's pid means what it meant in the dumped tree, and the fd number goes into SIGIO's
/// siginfo).
fn restore_fown(inj: &Injector, kind: &dyn FdKind, e: &pb::FileEntry, fd: RemoteFd) -> Result<()> {
    let Some((flags, fown)) = kind.flags_and_owner(e) else {
        return Ok(());
    };
    if fown.signum != 0 {
        inj.syscall(
            &format!("set the owner signal of fd {fd}"),
            libc::SYS_fcntl,
            &[
                fd.0 as u64,
                cryo_sys::socket::F_SETSIG as u64,
                u64::from(fown.signum),
            ],
        )?;
    }
    if fown.pid != 0 {
        let mut owner = [0u8; 8];
        owner[..4].copy_from_slice(&fown.pid_type.to_ne_bytes());
        owner[4..].copy_from_slice(&fown.pid.to_ne_bytes());
        let s = inj.scratch();
        let at = s.bytes(&owner)?;
        inj.syscall(
            &format!("set the owner of fd {fd} to pid {}", fown.pid),
            libc::SYS_fcntl,
            &[fd.0 as u64, cryo_sys::socket::F_SETOWN_EX as u64, at.0],
        )?;
    }
    if flags & libc::O_ASYNC as u32 != 0 {
        // Set here, not in cryo: the fd number goes into the SIGIO siginfo.
        let fl = inj.syscall(
            "read the status flags",
            libc::SYS_fcntl,
            &[fd.0 as u64, libc::F_GETFL as u64],
        )?;
        inj.syscall(
            &format!("set O_ASYNC on fd {fd}"),
            libc::SYS_fcntl,
            &[fd.0 as u64, libc::F_SETFL as u64, fl | libc::O_ASYNC as u64],
        )?;
    }
    Ok(())
}

/// Close-on-exec as dumped: one close_range(2) per run of consecutive fds that have it (the
/// received fds have it off).
fn set_cloexec_runs(inj: &Injector, order: &[&pb::FdinfoEntry]) -> Result<()> {
    let mut i = 0;
    while i < order.len() {
        if order[i].flags & FD_CLOEXEC == 0 {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].flags & FD_CLOEXEC != 0 {
            j += 1;
        }
        inj.syscall(
            "set close-on-exec",
            libc::SYS_close_range,
            &[
                u64::from(order[i].fd),
                u64::from(order[j].fd),
                CLOSE_RANGE_CLOEXEC,
            ],
        )?;
        i = j + 1;
    }
    Ok(())
}

/// What an fd no kind claims is, for its refusal, with what to try.
fn describe(p: &FdParams) -> String {
    use std::os::unix::fs::FileTypeExt;
    let ft = p.meta.file_type();
    if p.link.starts_with("socket:") {
        let family = match p.socket_family() {
            Some(libc::AF_INET) => "inet (IPv4)".to_string(),
            Some(libc::AF_INET6) => "inet6 (IPv6)".to_string(),
            Some(libc::AF_NETLINK) => "netlink".to_string(),
            Some(libc::AF_PACKET) => "packet".to_string(),
            Some(f) => format!("family {f}"),
            None => "unknown family".to_string(),
        };
        format!("a socket of {family}, which cryo cannot dump yet")
    } else if let Some(what) = p.link.strip_prefix("anon_inode:") {
        format!("an anonymous-inode file {what}, which cryo cannot dump yet")
    } else if ft.is_fifo() {
        "a FIFO, which cryo cannot dump yet".into()
    } else if ft.is_char_device() {
        format!(
            "a character device {}:{} ({}), which cryo cannot restore (it reopens the memory \
             devices such as /dev/null and /dev/urandom, and terminals)",
            p.rdev_major(),
            p.rdev_minor(),
            p.link
        )
    } else if ft.is_block_device() {
        "a block device, which cryo cannot dump".into()
    } else {
        "a file cryo cannot dump yet".into()
    }
}
