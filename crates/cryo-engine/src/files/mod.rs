//! File descriptors: the fd table of a task (`fdinfo-N.img`) and the files behind it
//! (`files.img`). Each kind of file has its own module: files reopened by path (`reg`:
//! regular files, directories, /dev/null-like devices), pipes (`pipe`), memfds (`memfd`) and
//! the terminal of a shell job (`tty`). Every other kind is refused with an error naming the
//! fd and its kind. Connected unnamed unix sockets (`unix_socket`) are made by cryo at restore
//! and handed to the puppets through `transfer`.
//!
//! # Dump
//! Every fd of /proc/PID/fd is classified by the target of its link and its fstat; its position
//! and status flags come from /proc/PID/fdinfo/N. Each fd gets a file entry of its own, but
//! for regular files: fds that name one open file (dup, or inherited at fork; kcmp tells) share
//! one entry, as they share one position and one set of flags.
//!
//! # Restore
//! The puppet opens each file by path (or the re-created ghost file), seeks to the position and
//! moves the fd to its number with dup3, close-on-exec as it was. A regular file shared by
//! several fds is opened once; the others get the same open file (a dup in the same process,
//! pidfd_getfd from the process that has it in another).

pub mod memfd;
pub mod pipe;
pub mod reg;
pub mod transfer;
pub mod tty;
pub mod unix_socket;

use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::{procfs, Pid};
use reg::RegFiles;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// fdinfo flag: close-on-exec (`FD_CLOEXEC`).
const FD_CLOEXEC: u32 = 1;
/// open flag in /proc fdinfo meaning the fd is close-on-exec.
const O_CLOEXEC: u32 = 0o2000000;

/// Open flags that act only when a file is created or first opened: never replayed.
const O_REOPEN_MASK: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// Open `path` in the puppet behind `inj` with the dumped open `flags` (less those that act only
/// at creation, and close-on-exec until `restore_fds` sets the dumped fd flag), at position
/// `pos`; returns the fd number. `what` names the file in errors.
pub(crate) fn reopen_in(
    inj: &Injector,
    path: &str,
    flags: u32,
    pos: u64,
    scratch_off: u64,
    what: &str,
) -> Result<u64> {
    let at = inj.write_cstr(scratch_off, path)?;
    let flags = (flags & !O_REOPEN_MASK) | libc::O_CLOEXEC as u32;
    let fd = inj.syscall(
        &format!("open {what}"),
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, at.0, u64::from(flags), 0],
    )?;
    if pos != 0 {
        inj.syscall(
            &format!("seek {what}"),
            libc::SYS_lseek,
            &[fd, pos, libc::SEEK_SET as u64],
        )?;
    }
    Ok(fd)
}

/// The fd kind as CRIU names it, from the link target and file type, for refusals.
fn describe(link: &str, meta: Option<&std::fs::Metadata>) -> &'static str {
    if link.starts_with("pipe:") {
        "pipe"
    } else if link.starts_with("socket:") {
        "socket"
    } else if link.starts_with("anon_inode:") {
        "anon inode (eventfd, epoll, signalfd, timerfd, inotify, ...)"
    } else if meta.map(|m| m.file_type().is_fifo()).unwrap_or(false) {
        "fifo"
    } else if link.starts_with("/memfd:") {
        "memfd"
    } else {
        "unknown"
    }
}

/// Character devices reopened by path: mem devices (/dev/null, /dev/zero, /dev/full,
/// /dev/random, /dev/urandom) have major 1.
fn is_plain_chardev(meta: &std::fs::Metadata) -> bool {
    let rdev = meta.rdev();
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    major == 1
}

/// Dump the fd table of `pid`: the fdinfo entries, with the files added to `files`.
pub fn dump_fds(pid: Pid, files: &mut RegFiles, shell_job: bool) -> Result<Vec<pb::FdinfoEntry>> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|source| Error::Path {
        what: "list fds in".into(),
        path: dir.clone(),
        source,
    })?;
    let mut fds: Vec<i32> = Vec::new();
    for e in rd {
        let e = e.map_err(|source| Error::Path {
            what: "list fds in".into(),
            path: dir.clone(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.push(n);
        }
    }
    fds.sort_unstable();
    let mut out = Vec::new();
    for fd in fds {
        let link_path = format!("/proc/{pid}/fd/{fd}");
        let link = std::fs::read_link(&link_path)
            .map_err(|source| Error::Path {
                what: "read link".into(),
                path: link_path.clone(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::metadata(&link_path).ok();
        let info = procfs::read_fdinfo(pid, fd)?;
        let cloexec = if info.flags & O_CLOEXEC != 0 {
            FD_CLOEXEC
        } else {
            0
        };
        if memfd::is_memfd(&link, meta.as_ref(), &format!("fd {fd} of pid {pid}"))? {
            let id = memfd::dump_fd(files, pid, fd, &link, info.flags & !O_CLOEXEC, info.pos)?;
            out.push(pb::FdinfoEntry {
                id,
                flags: cloexec,
                r#type: pb::FdTypes::Memfd as i32,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
            continue;
        }
        if let Some(ino) = unix_socket::socket_inode(&link) {
            let id = match files.unix_sockets.id_of(ino) {
                Some(id) => id,
                None => {
                    let id = files.next_id();
                    let entry =
                        files
                            .unix_sockets
                            .dump_fd(pid, fd, ino, id, info.flags & !O_CLOEXEC)?;
                    files.entries.push(entry);
                    id
                }
            };
            out.push(pb::FdinfoEntry {
                id,
                flags: cloexec,
                r#type: pb::FdTypes::Unixsk as i32,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
            continue;
        }
        if let Some(inode) = pipe::pipe_inode(&link) {
            let id = files.next_id();
            let entry = files
                .pipes
                .dump_fd(pid, fd, inode, id, info.flags & !O_CLOEXEC)?;
            files.entries.push(entry);
            out.push(pb::FdinfoEntry {
                id,
                flags: cloexec,
                r#type: pb::FdTypes::Pipe as i32,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
            continue;
        }
        if let Some(m) = meta
            .as_ref()
            .filter(|m| m.file_type().is_char_device() && tty::rdev_major(m) == tty::PTS_MAJOR)
        {
            if !shell_job {
                return Err(Error::Unsupported(format!(
                    "fd {fd} of pid {pid} ({link}): a terminal, which needs --shell-job"
                )));
            }
            let stat = procfs::read_stat(pid)?;
            let id = files.next_id();
            let entry = files.ttys.dump_fd(m, &stat, id, info.flags & !O_CLOEXEC);
            files.entries.push(entry);
            out.push(pb::FdinfoEntry {
                id,
                flags: cloexec,
                r#type: pb::FdTypes::Tty as i32,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
            continue;
        }
        let reopenable = match &meta {
            Some(m) => {
                let ft = m.file_type();
                ft.is_file()
                    || ft.is_dir()
                    || (ft.is_char_device() && (is_plain_chardev(m) || shell_job))
            }
            None => false,
        };
        let Some(stat) = meta
            .as_ref()
            .filter(|_| reopenable && link.starts_with('/'))
        else {
            return Err(Error::Unsupported(format!(
                "fd {fd} of pid {pid} ({link}): a {}",
                if meta
                    .as_ref()
                    .map(|m| m.file_type().is_char_device())
                    .unwrap_or(false)
                {
                    "character device other than /dev/null and friends (a terminal needs --shell-job)"
                } else {
                    describe(&link, meta.as_ref())
                }
            )));
        };
        let status_flags = info.flags & !O_CLOEXEC;
        let id = files.add_fd(pid, fd, &link, status_flags, info.pos, stat)?;
        out.push(pb::FdinfoEntry {
            id,
            flags: if info.flags & O_CLOEXEC != 0 {
                FD_CLOEXEC
            } else {
                0
            },
            r#type: pb::FdTypes::Reg as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        });
    }
    Ok(out)
}

/// Install the fds of `fdinfos` in the puppet behind `inj`. Every fd cryo left in it was closed
/// before. Uses scratch offsets from `scratch_off` on.
pub fn restore_fds(
    inj: &Injector,
    fdinfos: &[pb::FdinfoEntry],
    files: &RegFiles,
    scratch_off: u64,
) -> Result<()> {
    // Every address space of the tree is restored before any fd table: the seals that forbid
    // new writable mappings of a memfd can go on now.
    files.memfds.apply_seals()?;
    for fi in fdinfos {
        let tmp = if fi.r#type == pb::FdTypes::Reg as i32 {
            files.install_in(inj, fi.id, scratch_off)?
        } else if fi.r#type == pb::FdTypes::Pipe as i32 {
            let p = files
                .entry(fi.id)
                .and_then(|e| e.pipe.as_ref())
                .ok_or_else(|| Error::BadImage {
                    image: "files.img".into(),
                    what: format!("no pipe {} for fd {}", fi.id, fi.fd),
                })?;
            files.pipes.open_in(inj, p, scratch_off)?
        } else if fi.r#type == pb::FdTypes::Tty as i32 {
            let t = files
                .entry(fi.id)
                .and_then(|e| e.tty.as_ref())
                .ok_or_else(|| Error::BadImage {
                    image: "files.img".into(),
                    what: format!("no terminal {} for fd {}", fi.id, fi.fd),
                })?;
            files.ttys.open_in(inj, t, scratch_off)?
        } else if fi.r#type == pb::FdTypes::Memfd as i32 {
            let m = files
                .entry(fi.id)
                .and_then(|e| e.memfd.as_ref())
                .ok_or_else(|| Error::BadImage {
                    image: "files.img".into(),
                    what: format!("no memfd {} for fd {}", fi.id, fi.fd),
                })?;
            files.memfds.open_in(inj, m, scratch_off)?
        } else if fi.r#type == pb::FdTypes::Unixsk as i32 {
            let u = files
                .entry(fi.id)
                .and_then(|e| e.usk.as_ref())
                .ok_or_else(|| Error::BadImage {
                    image: "files.img".into(),
                    what: format!("no unix socket {} for fd {}", fi.id, fi.fd),
                })?;
            files.unix_sockets.open_in(inj, u, scratch_off)?
        } else {
            return Err(Error::Unsupported(format!(
                "fd {} of type {}",
                fi.fd, fi.r#type
            )));
        };
        let cloexec = if fi.flags & FD_CLOEXEC != 0 {
            libc::O_CLOEXEC as u64
        } else {
            0
        };
        if tmp != u64::from(fi.fd) {
            // open(2) returns the lowest free number, never one installed already.
            inj.syscall(
                "move fd into place",
                libc::SYS_dup3,
                &[tmp, u64::from(fi.fd), cloexec],
            )?;
            inj.syscall("close fd", libc::SYS_close, &[tmp])?;
        } else {
            // Opened (or taken with pidfd_getfd) close-on-exec: set the dumped flag either way.
            inj.syscall(
                "set close-on-exec",
                libc::SYS_fcntl,
                &[tmp, libc::F_SETFD as u64, u64::from(cloexec != 0)],
            )?;
        }
        if fi.r#type == pb::FdTypes::Reg as i32 {
            files.installed_at(fi.id, inj.pid(), u64::from(fi.fd));
        }
    }
    Ok(())
}
