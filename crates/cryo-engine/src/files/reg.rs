//! Files reopened by path: regular files, directories, /dev/null-like devices, and files deleted
//! while open or mapped (ghost files).
//!
//! # Dump
//! Each opened or mapped file becomes a `FileEntry { type: REG, reg: RegFileEntry }` in
//! `files.img` with its path, status flags, position and size. A file whose link count is 0 was
//! deleted: its contents go to `ghost-file-ID.img` (a `GhostFileEntry`, then the bytes to the
//! end of the image, as CRIU writes it) and `remap-fpath.img` maps the file's id to the ghost's.
//!
//! # Restore
//! A ghost file is re-created once, at its original path when that is free (so the restored
//! mappings and fds show the same name, marked deleted) or next to it otherwise, and unlinked
//! when the restore ends. The puppet opens each file with its flags and seeks to its position.

use crate::error::{Error, Result, TaskCtx};
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::Pid;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const DELETED_SUFFIX: &str = " (deleted)";

/// What fds naming one open file have in common: device, inode, position, status flags.
type OpenFileKey = (u64, u64, u64, u32);

/// A deleted file's contents, waiting to be written as a ghost image.
#[derive(Debug)]
struct Ghost {
    id: u32,
    entry: pb::GhostFileEntry,
    data: Vec<u8>,
}

/// The `files.img` entries of a dump or a restore: regular files with their ghosts, and the
/// pipes.
#[derive(Debug, Default)]
pub struct RegFiles {
    /// `files.img` entries (all kinds; only REG so far).
    pub entries: Vec<pb::FileEntry>,
    ghosts: Vec<Ghost>,
    /// Dump: the ghost of each deleted file seen, by (device, inode): a file held by several
    /// fds or processes is one ghost, so that it is one file again after restore (its
    /// private mappings can stay shared between parent and child, and the image holds its
    /// contents once).
    ghost_of: HashMap<(u64, u64), u32>,
    /// Dump: the open files seen, by a cheap key (device, inode, position, flags), each with
    /// one fd that holds it and its id: fds that name one open file (dup, or inherited at
    /// fork) share its position and flags, and get one id (see [`RegFiles::add_fd`]).
    open_files: crate::kobj_ids::KcmpSorted<OpenFileKey, (Pid, i32)>,
    /// kcmp calls made to tell open files apart.
    pub file_kcmp_calls: u64,
    /// Restore: where each open file was installed first (cryo's pid of the puppet, fd), for
    /// the other fds that share it.
    installed: RefCell<HashMap<u32, (Pid, u64)>>,
    /// Restore: cryo's own pidfd, for handing a puppet an open file of another.
    source: OnceCell<super::transfer::FdSource>,
    /// `remap-fpath.img` entries.
    pub remaps: Vec<pb::RemapFilePathEntry>,
    next_id: u32,
    /// Restore: ghost id -> the path it was re-created at.
    ghost_paths: HashMap<u32, PathBuf>,
    /// Restore: file id -> ghost id.
    remap_of: HashMap<u32, u32>,
    /// Restore: file id -> index in `entries`.
    by_id: HashMap<u32, usize>,
    /// The pipes among the entries.
    pub pipes: super::pipe::Pipes,
    /// The terminals among the entries.
    pub ttys: super::tty::Ttys,
    /// The unix sockets among the entries.
    pub unix_sockets: super::unix_socket::UnixSockets,
    /// The memfds among the entries.
    pub memfds: super::memfd::Memfds,
}

impl RegFiles {
    /// An empty table (dump side).
    pub fn new() -> RegFiles {
        RegFiles {
            next_id: 1,
            ..Default::default()
        }
    }

    /// A fresh id for any kind of file entry.
    pub fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Add the file reachable at `link_path` (/proc/PID/fd/N or /proc/PID/map_files/A-B), whose
    /// link reads `link`, opened with `flags` at `pos`. Returns its file id.
    pub fn add(
        &mut self,
        pid: Pid,
        link_path: &str,
        link: &str,
        flags: u32,
        pos: u64,
    ) -> Result<u32> {
        let meta = std::fs::metadata(link_path).map_err(|source| Error::Path {
            what: "stat".into(),
            path: link_path.to_string(),
            source,
        })?;
        self.add_stat(pid, link_path, link, flags, pos, &meta)
    }

    /// [`RegFiles::add`] for a file whose stat is `meta` already.
    fn add_stat(
        &mut self,
        pid: Pid,
        link_path: &str,
        link: &str,
        flags: u32,
        pos: u64,
        meta: &std::fs::Metadata,
    ) -> Result<u32> {
        let deleted = meta.nlink() == 0 && meta.is_file();
        let name = if deleted {
            link.strip_suffix(DELETED_SUFFIX).unwrap_or(link)
        } else {
            link
        };
        let id = self.next_id();
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: pb::FownEntry {
                    uid: 0,
                    euid: 0,
                    signum: 0,
                    pid_type: 0,
                    pid: 0,
                },
                name: name.to_string(),
                mnt_id: None,
                size: meta.is_file().then_some(meta.len()),
                mode: Some(meta.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        if let Some(&gid) = deleted
            .then(|| self.ghost_of.get(&(meta.dev(), meta.ino())))
            .flatten()
        {
            self.remaps.push(pb::RemapFilePathEntry {
                orig_id: id,
                remap_id: gid,
                remap_type: Some(pb::RemapType::Ghost as i32),
            });
        } else if deleted {
            let mut data = Vec::new();
            std::fs::File::open(link_path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(|source| Error::Path {
                    what: format!("read deleted file of pid {pid} at"),
                    path: link_path.to_string(),
                    source,
                })?;
            let gid = self.next_id();
            self.ghost_of.insert((meta.dev(), meta.ino()), gid);
            let ts = |s: i64, ns: i64| pb::Timeval {
                tv_sec: s as u64,
                tv_usec: (ns / 1000) as u64,
            };
            self.ghosts.push(Ghost {
                id: gid,
                entry: pb::GhostFileEntry {
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mode: meta.mode(),
                    dev: Some(meta.dev() as u32),
                    ino: Some(meta.ino()),
                    atim: Some(ts(meta.atime(), meta.atime_nsec())),
                    mtim: Some(ts(meta.mtime(), meta.mtime_nsec())),
                    size: Some(data.len() as u64),
                    ..Default::default()
                },
                data,
            });
            self.remaps.push(pb::RemapFilePathEntry {
                orig_id: id,
                remap_id: gid,
                remap_type: Some(pb::RemapType::Ghost as i32),
            });
        }
        Ok(id)
    }

    /// Add the open file behind fd `fd` of `pid` (see [`RegFiles::add`]), or, when another fd
    /// seen so far names the same open file (kcmp), return that one's id: one entry, one
    /// position and one set of flags for all of them, as the kernel has it. `meta` is the fd's
    /// stat.
    pub fn add_fd(
        &mut self,
        pid: Pid,
        fd: i32,
        link: &str,
        flags: u32,
        pos: u64,
        meta: &std::fs::Metadata,
    ) -> Result<u32> {
        let link_path = format!("/proc/{pid}/fd/{fd}");
        let key = (meta.dev(), meta.ino(), pos, flags);
        let mut open_files = std::mem::take(&mut self.open_files);
        let mut calls = 0;
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
            || self.add_stat(pid, &link_path, link, flags, pos, meta),
            &mut calls,
        );
        self.open_files = open_files;
        self.file_kcmp_calls += calls;
        id
    }

    /// Write `files.img`, the ghost images and `remap-fpath.img` into `dir`.
    pub fn write_images(&self, dir: &Path) -> Result<()> {
        // A socket pair half outside the tree is refused before anything is written.
        self.unix_sockets.check_peers()?;
        cryo_image::write_all_entries(dir, ImageKind::Files, None, &self.entries)?;
        self.pipes.write_images(dir)?;
        self.ttys.write_images(dir)?;
        self.unix_sockets.write_images(dir)?;
        self.memfds.write_images(dir)?;
        for g in &self.ghosts {
            let mut w = cryo_image::create_image(dir, ImageKind::GhostFile, Some(u64::from(g.id)))?;
            w.write_entry(&g.entry)?;
            w.write_raw(&g.data)?;
            w.finish()?;
        }
        if !self.remaps.is_empty() {
            cryo_image::write_all_entries(dir, ImageKind::RemapFpath, None, &self.remaps)?;
        }
        Ok(())
    }

    /// Read `files.img` and `remap-fpath.img` from `dir` and re-create the ghost files.
    pub fn load(dir: &Path) -> Result<RegFiles> {
        let mut t = RegFiles::new();
        t.entries = cryo_image::read_all_entries(dir, ImageKind::Files, None)?;
        for (i, e) in t.entries.iter().enumerate() {
            t.by_id.insert(e.id, i);
        }
        t.pipes = super::pipe::Pipes::load(dir, &t.entries)?;
        t.ttys = super::tty::Ttys::load(dir)?;
        t.unix_sockets = super::unix_socket::UnixSockets::load(dir, &t.entries)?;
        t.memfds = super::memfd::Memfds::load(dir, &t.entries)?;
        t.remaps = cryo_image::read_all_entries(dir, ImageKind::RemapFpath, None)?;
        for r in t.remaps.clone() {
            if r.remap_type != Some(pb::RemapType::Ghost as i32) {
                return Err(Error::Unsupported(format!(
                    "remap type {:?} of file {}",
                    r.remap_type, r.orig_id
                )));
            }
            let name = t
                .reg(r.orig_id)
                .map(|reg| reg.name.clone())
                .ok_or_else(|| Error::BadImage {
                    image: "remap-fpath.img".into(),
                    what: format!("no file {}", r.orig_id),
                })?;
            if let std::collections::hash_map::Entry::Vacant(v) = t.ghost_paths.entry(r.remap_id) {
                v.insert(recreate_ghost(dir, r.remap_id, Path::new(&name))?);
            }
            t.remap_of.insert(r.orig_id, r.remap_id);
        }
        Ok(t)
    }

    /// The entry of file `id`.
    pub fn entry(&self, id: u32) -> Option<&pb::FileEntry> {
        self.by_id.get(&id).and_then(|&i| self.entries.get(i))
    }

    /// The regular-file entry of file `id`.
    pub fn reg(&self, id: u32) -> Option<&pb::RegFileEntry> {
        self.by_id
            .get(&id)
            .and_then(|&i| self.entries.get(i))
            .and_then(|e| e.reg.as_ref())
    }

    /// The path to open for file `id` (the re-created ghost for a deleted file).
    pub fn open_path(&self, id: u32) -> Result<String> {
        let reg = self.reg(id).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("no regular file {id}"),
        })?;
        if let Some(g) = self.remap_of.get(&id).and_then(|g| self.ghost_paths.get(g)) {
            return Ok(g.display().to_string());
        }
        Ok(reg.name.clone())
    }

    /// Open file `id` in the puppet with its flags and position; returns the fd number.
    pub fn open_in(&self, inj: &Injector, id: u32, scratch_off: u64) -> Result<u64> {
        let reg = self.reg(id).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("no regular file {id}"),
        })?;
        let path = self.open_path(id)?;
        super::reopen_in(inj, &path, reg.flags, reg.pos, scratch_off, &path).map_err(|e| {
            Error::Restore {
                what: format!("file {id} ({path})"),
                pid: inj.pid(),
                image: "files.img".into(),
                source: Box::new(e),
            }
        })
    }

    /// Install open file `id` in the puppet behind `inj`: opened the first time, and after
    /// that the very same open file (one position, one set of flags), taken from the puppet
    /// that has it. Returns the fd number; [`RegFiles::installed_at`] says where it ended up.
    pub fn install_in(&self, inj: &Injector, id: u32, scratch_off: u64) -> Result<u64> {
        let first = self.installed.borrow().get(&id).copied();
        let Some((holder, fd)) = first else {
            return self.open_in(inj, id, scratch_off);
        };
        if holder == inj.pid() {
            return inj.syscall(
                &format!("dup file {id}"),
                libc::SYS_fcntl,
                &[fd, libc::F_DUPFD_CLOEXEC as u64, 0],
            );
        }
        let local = take_fd(holder, fd).task_ctx(&format!("take file {id} (fd {fd})"), holder)?;
        let source = match self.source.get() {
            Some(s) => s,
            None => {
                let s = super::transfer::FdSource::new()?;
                self.source.get_or_init(|| s)
            }
        };
        source.install(inj, local.as_fd(), &format!("file {id}"), scratch_off)
    }

    /// Open file `id` is now at `fd` of puppet `pid`, if it was not somewhere already.
    pub fn installed_at(&self, id: u32, pid: Pid, fd: u64) {
        self.installed.borrow_mut().entry(id).or_insert((pid, fd));
    }

    /// Unlink the re-created ghost files (at the end of a restore, or after a failure).
    pub fn remove_ghosts(&self) {
        for p in self.ghost_paths.values() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A duplicate in cryo of fd `fd` of process `pid`, taken through the leader or, once the
/// leader has exited (as dumped) while the fd table lives on with the other threads, through
/// one of them.
fn take_fd(pid: Pid, fd: u64) -> std::io::Result<std::os::fd::OwnedFd> {
    let remote = cryo_sys::RemoteFd(fd as i32);
    let err = match cryo_sys::task::pidfd_open(pid)
        .and_then(|pidfd| cryo_sys::task::pidfd_getfd(&pidfd, remote))
    {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    for tid in cryo_sys::procfs::read_threads(pid).unwrap_or_default() {
        if tid == pid {
            continue;
        }
        if let Ok(f) = cryo_sys::task::pidfd_open_thread(tid)
            .and_then(|pidfd| cryo_sys::task::pidfd_getfd(&pidfd, remote))
        {
            return Ok(f);
        }
    }
    Err(err)
}

/// Re-create ghost `gid` for the file once at `orig`: at that path if it is free, else beside
/// it. Returns where.
fn recreate_ghost(dir: &Path, gid: u32, orig: &Path) -> Result<PathBuf> {
    let mut r = cryo_image::open_image(dir, ImageKind::GhostFile, Some(u64::from(gid)))?;
    let entry: pb::GhostFileEntry = r.read_entry()?.ok_or_else(|| Error::BadImage {
        image: format!("ghost-file-{gid:x}.img"),
        what: "no entry".into(),
    })?;
    if entry.chunks == Some(true) {
        return Err(Error::Unsupported(format!("chunked ghost file {gid:x}")));
    }
    let data = r.read_raw_to_end()?;
    let candidates = [
        orig.to_path_buf(),
        PathBuf::from(format!("{}.cryo-ghost.{gid:x}", orig.display())),
    ];
    for path in candidates {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(Error::Path {
                    what: "create ghost file".into(),
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        use std::io::Write;
        let res = f
            .write_all(&data)
            .and_then(|_| std::os::unix::fs::fchown(&f, Some(entry.uid), Some(entry.gid)))
            .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777)));
        if let Err(source) = res {
            let _ = std::fs::remove_file(&path);
            return Err(Error::Path {
                what: "write ghost file".into(),
                path: path.display().to_string(),
                source,
            });
        }
        return Ok(path);
    }
    Err(Error::Path {
        what: "create ghost file".into(),
        path: orig.display().to_string(),
        source: std::io::Error::from_raw_os_error(libc::EEXIST),
    })
}
