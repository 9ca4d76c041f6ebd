//! Terminals of a shell job: a pseudo-terminal slave the task shares with the caller
//! (`--shell-job`), as CRIU writes it: `FileEntry { type: TTY, tty: TtyFileEntry }` per fd and
//! one `TtyInfoEntry` per terminal in `tty-info.img`.
//!
//! # Dump
//! An fd on a Unix98 pty slave (major 136) becomes a TTY entry; the terminal's info records
//! its index, device and, when it is the task's controlling terminal, its session and
//! foreground group. Only with `--shell-job`: the terminal stays with the caller.
//!
//! # Restore
//! The puppet opens /dev/pts/INDEX again. A session leader without a terminal that opens it
//! gets it back as its controlling terminal.

use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::procfs::Stat;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Major number of Unix98 pty slaves.
pub const PTS_MAJOR: u64 = 136;

/// Device major of `meta`'s rdev.
pub fn rdev_major(meta: &std::fs::Metadata) -> u64 {
    let rdev = meta.rdev();
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

fn rdev_minor(meta: &std::fs::Metadata) -> u64 {
    let rdev = meta.rdev();
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// The terminals of a dump or a restore.
#[derive(Debug, Default)]
pub struct Ttys {
    /// `tty-info.img` entries.
    pub infos: Vec<pb::TtyInfoEntry>,
}

impl Ttys {
    /// Dump: a pty-slave fd of a task whose stat is `stat`; returns its file entry.
    pub fn dump_fd(
        &mut self,
        meta: &std::fs::Metadata,
        stat: &Stat,
        id: u32,
        flags: u32,
    ) -> pb::FileEntry {
        let rdev = meta.rdev() as u32;
        let info = match self.infos.iter().find(|i| i.rdev == rdev) {
            Some(i) => i.id,
            None => {
                let ctty = stat.tty_nr as u32 == rdev;
                let i = pb::TtyInfoEntry {
                    // Terminal infos have an id space of their own.
                    id: self.infos.len() as u32 + 1,
                    r#type: pb::TtyType::Pty as i32,
                    locked: false,
                    exclusive: false,
                    packet_mode: false,
                    sid: if ctty { stat.session as u32 } else { 0 },
                    pgrp: if ctty { stat.tpgid.max(0) as u32 } else { 0 },
                    rdev,
                    pty: Some(pb::TtyPtyEntry {
                        index: rdev_minor(meta) as u32,
                    }),
                    uid: Some(meta.uid()),
                    gid: Some(meta.gid()),
                    ..Default::default()
                };
                let id = i.id;
                self.infos.push(i);
                id
            }
        };
        pb::FileEntry {
            r#type: pb::FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info,
                flags,
                fown: pb::FownEntry {
                    uid: 0,
                    euid: 0,
                    signum: 0,
                    pid_type: 0,
                    pid: 0,
                },
                regf_id: None,
            }),
            ..Default::default()
        }
    }

    /// Dump: write `tty-info.img`.
    pub fn write_images(&self, dir: &Path) -> Result<()> {
        if !self.infos.is_empty() {
            cryo_image::write_all_entries(dir, ImageKind::TtyInfo, None, &self.infos)?;
        }
        Ok(())
    }

    /// Restore: read `tty-info.img`.
    pub fn load(dir: &Path) -> Result<Ttys> {
        Ok(Ttys {
            infos: cryo_image::read_all_entries(dir, ImageKind::TtyInfo, None)?,
        })
    }

    /// Restore: open terminal file `t` in the puppet; returns the fd number.
    pub fn open_in(&self, inj: &Injector, t: &pb::TtyFileEntry, scratch_off: u64) -> Result<u64> {
        let info = self
            .infos
            .iter()
            .find(|i| i.id == t.tty_info_id)
            .ok_or_else(|| Error::BadImage {
                image: "tty-info.img".into(),
                what: format!("no terminal {}", t.tty_info_id),
            })?;
        let index = match (info.r#type, &info.pty) {
            (ty, Some(p)) if ty == pb::TtyType::Pty as i32 => p.index,
            _ => {
                return Err(Error::Unsupported(format!(
                    "terminal {} of type {}",
                    info.id, info.r#type
                )))
            }
        };
        let path = format!("/dev/pts/{index}");
        let at = inj.write_cstr(scratch_off, &path)?;
        let flags = (t.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32)
            | libc::O_CLOEXEC as u32;
        inj.syscall(
            &format!("open terminal {path}"),
            libc::SYS_openat,
            &[libc::AT_FDCWD as u64, at.0, u64::from(flags), 0],
        )
    }
}
