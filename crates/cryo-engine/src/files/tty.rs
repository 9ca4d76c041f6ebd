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
//! cryo opens /dev/pts/INDEX again. A session leader without a terminal that had it as its
//! controlling terminal gets it back as such (TIOCSCTTY).

use super::kind::{any_kind, FdKind, FdParams, Opened};
use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::{procfs, RemoteFd};
use std::os::unix::fs::MetadataExt;

/// Major number of Unix98 pty slaves.
pub const PTS_MAJOR: u64 = 136;

/// The terminals of a dump or a restore.
#[derive(Debug, Default)]
pub struct Ttys {
    /// `tty-info.img` entries.
    infos: Vec<pb::TtyInfoEntry>,
}

impl Ttys {
    fn info(&self, t: &pb::TtyFileEntry) -> Result<&pb::TtyInfoEntry> {
        self.infos
            .iter()
            .find(|i| i.id == t.tty_info_id)
            .ok_or_else(|| Error::BadImage {
                image: "tty-info.img".into(),
                what: format!("no terminal {}", t.tty_info_id),
            })
    }
}

fn tty_of(entry: &pb::FileEntry) -> Result<&pb::TtyFileEntry> {
    entry.tty.as_ref().ok_or_else(|| Error::BadImage {
        image: "files.img".into(),
        what: format!("file {} is no terminal", entry.id),
    })
}

impl FdKind for Ttys {
    fn name(&self) -> &'static str {
        "terminal"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Tty
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        p.is_char_device() && p.rdev_major() == PTS_MAJOR
    }

    /// A pty-slave fd; the terminal's info the first time it is seen.
    fn dump(&mut self, cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        if !cx.opts.shell_job {
            return Err(p.refuse("a terminal, which needs --shell-job"));
        }
        let stat = procfs::read_stat(p.pid)?;
        let rdev = p.meta.rdev() as u32;
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
                        index: p.rdev_minor() as u32,
                    }),
                    uid: Some(p.meta.uid()),
                    gid: Some(p.meta.gid()),
                    ..Default::default()
                };
                let id = i.id;
                self.infos.push(i);
                id
            }
        };
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info,
                flags: p.info.flags,
                fown: p.fown,
                regf_id: None,
            }),
            ..Default::default()
        })
    }

    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        if !self.infos.is_empty() {
            cryo_image::write_all_entries(cx.dir, ImageKind::TtyInfo, None, &self.infos)?;
        }
        Ok(())
    }

    fn load(&mut self, cx: &RestoreCx, _entries: &[&pb::FileEntry]) -> Result<()> {
        self.infos = cryo_image::read_all_entries(cx.dir, ImageKind::TtyInfo, None)?;
        Ok(())
    }

    /// /dev/pts/INDEX again, never as cryo's own controlling terminal.
    fn open(&self, _files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let t = tty_of(entry)?;
        let info = self.info(t)?;
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
        let file = super::open_with_flags(&path, t.flags).map_err(|source| Error::Path {
            what: "open terminal".into(),
            path,
            source,
        })?;
        Ok(Opened::Local(file.into()))
    }

    /// A session leader without a terminal gets this one back as its controlling terminal
    /// when it was one (as opening it without O_NOCTTY would do).
    fn post_open(
        &self,
        _files: &FileTable,
        inj: &Injector,
        entry: &pb::FileEntry,
        fd: RemoteFd,
    ) -> Result<()> {
        let info = self.info(tty_of(entry)?)?;
        if info.sid == 0 {
            return Ok(());
        }
        let st = procfs::read_stat(inj.pid())?;
        // The process's own number, as the images have it.
        let vpid = procfs::read_status(inj.pid())?
            .ns_pid
            .last()
            .copied()
            .unwrap_or(st.pid);
        if st.session != st.pid || st.tty_nr != 0 || info.sid != vpid as u32 {
            return Ok(());
        }
        inj.syscall(
            "make the terminal the controlling one (TIOCSCTTY)",
            libc::SYS_ioctl,
            &[fd.0 as u64, libc::TIOCSCTTY, 0],
        )?;
        Ok(())
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.tty.as_ref().map(|t| (t.flags, &t.fown))
    }

    any_kind!();
}
