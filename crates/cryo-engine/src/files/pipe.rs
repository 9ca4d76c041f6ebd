//! Pipes: `FileEntry { type: PIPE, pipe: PipeEntry }` per open file in `files.img`, and what each pipe
//! holds in `pipes-data.img` (a `PipeDataEntry`, then the bytes).
//!
//! # Dump
//! An fd whose link reads `pipe:[INODE]` is a pipe end; its inode is the pipe's id, its
//! status flags say which end. The data of each pipe is copied once, without taking it out:
//! cryo opens a read end through /proc/PID/fd/N and tee(2)s it into a pipe of its own.
//!
//! # Restore
//! cryo makes each pipe itself, fills it, and keeps both ends; each open file of the pipe is
//! opened anew through /proc/self/fd/END with its flags, so all of them share the one new pipe.

use super::kind::{any_kind, FdKind, FdParams, Opened};
use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result};
use cryo_image::{pb, ImageKind};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The pipes of a dump or a restore.
#[derive(Debug, Default)]
pub struct Pipes {
    /// Dump: what each pipe held, and its capacity.
    data: BTreeMap<u32, (Vec<u8>, usize)>,
    /// Restore: cryo's two ends of each pipe.
    ends: BTreeMap<u32, (OwnedFd, OwnedFd)>,
}

/// The pipe inode of a `pipe:[INODE]` link.
pub fn pipe_inode(link: &str) -> Option<u32> {
    link.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

impl FdKind for Pipes {
    fn name(&self) -> &'static str {
        "pipe"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Pipe
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        pipe_inode(&p.link).is_some()
    }

    /// The pipe's data is read the first time one of its ends is seen.
    fn dump(&mut self, _cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        let inode = pipe_inode(&p.link).ok_or_else(|| p.refuse("not a pipe"))?;
        if let std::collections::btree_map::Entry::Vacant(v) = self.data.entry(inode) {
            let path = format!("/proc/{}/fd/{}", p.pid, p.fd);
            let reader: OwnedFd = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|source| Error::Path {
                    what: "open pipe".into(),
                    path: path.clone(),
                    source,
                })?
                .into();
            let data = cryo_sys::pipe::peek(&reader).map_err(|source| Error::Path {
                what: "copy pipe data".into(),
                path: path.clone(),
                source,
            })?;
            let size = cryo_sys::pipe::pipe_size(&reader).map_err(|source| Error::Path {
                what: "pipe size".into(),
                path,
                source,
            })?;
            v.insert((data, size));
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id,
            pipe: Some(pb::PipeEntry {
                id,
                pipe_id: inode,
                flags: p.info.flags,
                fown: p.fown,
            }),
            ..Default::default()
        })
    }

    /// `pipes-data.img`, with the pipes that hold something.
    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        if self.data.values().all(|(d, _)| d.is_empty()) {
            return Ok(());
        }
        let mut w = cryo_image::create_image(cx.dir, ImageKind::PipesData, None)?;
        for (&pipe_id, (data, size)) in &self.data {
            if data.is_empty() {
                continue;
            }
            w.write_entry(&pb::PipeDataEntry {
                pipe_id,
                bytes: data.len() as u32,
                size: Some(*size as u32),
            })?;
            w.write_raw(data)?;
        }
        w.finish()?;
        Ok(())
    }

    /// A pipe of cryo's for every pipe of the entries, filled from `pipes-data.img`.
    fn load(&mut self, cx: &RestoreCx, entries: &[&pb::FileEntry]) -> Result<()> {
        let mut data: BTreeMap<u32, (Vec<u8>, Option<u32>)> = BTreeMap::new();
        match cryo_image::open_image(cx.dir, ImageKind::PipesData, None) {
            Ok(mut r) => {
                while let Some(e) = r.read_entry::<pb::PipeDataEntry>()? {
                    let bytes = r.read_raw(u64::from(e.bytes))?;
                    data.insert(e.pipe_id, (bytes, e.size));
                }
            }
            Err(cryo_image::ImageError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        for p in entries.iter().filter_map(|e| e.pipe.as_ref()) {
            if self.ends.contains_key(&p.pipe_id) {
                continue;
            }
            let (bytes, size) = data.remove(&p.pipe_id).unwrap_or_default();
            let pair = cryo_sys::pipe::filled_pipe(&bytes, size.map(|s| s as usize)).map_err(
                |source| Error::Path {
                    what: "make pipe".into(),
                    path: format!("pipe:[{}]", p.pipe_id),
                    source,
                },
            )?;
            self.ends.insert(p.pipe_id, pair);
        }
        Ok(())
    }

    /// A new open file of cryo's pipe, through /proc/self/fd/END with the entry's flags.
    fn open(&self, _files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let p = entry.pipe.as_ref().ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("file {} is no pipe", entry.id),
        })?;
        let (r, w) = self.ends.get(&p.pipe_id).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("pipe {} was not made", p.pipe_id),
        })?;
        let write_end = p.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let end = if write_end { w } else { r };
        let path = format!("/proc/self/fd/{}", end.as_raw_fd());
        let file = super::open_with_flags(&path, p.flags).map_err(|source| Error::Path {
            what: "open".into(),
            path: format!("pipe:[{}]", p.pipe_id),
            source,
        })?;
        Ok(Opened::Local(file.into()))
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.pipe.as_ref().map(|p| (p.flags, &p.fown))
    }

    any_kind!();
}
