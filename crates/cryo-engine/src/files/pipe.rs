//! Pipes: `FileEntry { type: PIPE, pipe: PipeEntry }` per fd in `files.img`, and what each pipe
//! holds in `pipes-data.img` (a `PipeDataEntry`, then the bytes).
//!
//! # Dump
//! An fd whose link reads `pipe:[INODE]` is a pipe end; its inode is the pipe's id, its
//! status flags say which end. The data of each pipe is copied once, without taking it out:
//! cryo opens a read end through /proc/PID/fd/N and tee(2)s it into a pipe of its own.
//!
//! # Restore
//! cryo makes each pipe itself, fills it, and keeps both ends; every puppet fd of that pipe
//! opens /proc/CRYO/fd/END with its flags, so all of them share the one new pipe.

use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::Pid;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

impl Pipes {
    /// Dump: a pipe fd; returns its entry. The pipe's data is read the first time it is seen.
    pub fn dump_fd(
        &mut self,
        pid: Pid,
        fd: i32,
        inode: u32,
        id: u32,
        flags: u32,
    ) -> Result<pb::FileEntry> {
        if let std::collections::btree_map::Entry::Vacant(v) = self.data.entry(inode) {
            let path = format!("/proc/{pid}/fd/{fd}");
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
                flags,
                fown: pb::FownEntry {
                    uid: 0,
                    euid: 0,
                    signum: 0,
                    pid_type: 0,
                    pid: 0,
                },
            }),
            ..Default::default()
        })
    }

    /// Dump: write `pipes-data.img` (only pipes that hold something).
    pub fn write_images(&self, dir: &Path) -> Result<()> {
        if self.data.values().all(|(d, _)| d.is_empty()) {
            return Ok(());
        }
        let mut w = cryo_image::create_image(dir, ImageKind::PipesData, None)?;
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

    /// Restore: make a pipe of cryo's for every pipe in `entries`, filled from
    /// `pipes-data.img`.
    pub fn load(dir: &Path, entries: &[pb::FileEntry]) -> Result<Pipes> {
        let mut data: BTreeMap<u32, (Vec<u8>, Option<u32>)> = BTreeMap::new();
        match cryo_image::open_image(dir, ImageKind::PipesData, None) {
            Ok(mut r) => {
                while let Some(e) = r.read_entry::<pb::PipeDataEntry>()? {
                    let bytes = r.read_raw(u64::from(e.bytes))?;
                    data.insert(e.pipe_id, (bytes, e.size));
                }
            }
            Err(cryo_image::ImageError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut ends = BTreeMap::new();
        for p in entries.iter().filter_map(|e| e.pipe.as_ref()) {
            if ends.contains_key(&p.pipe_id) {
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
            ends.insert(p.pipe_id, pair);
        }
        Ok(Pipes {
            data: BTreeMap::new(),
            ends,
        })
    }

    /// Restore: open pipe entry `p` in the puppet; returns the fd number.
    pub fn open_in(&self, inj: &Injector, p: &pb::PipeEntry, scratch_off: u64) -> Result<u64> {
        let (r, w) = self.ends.get(&p.pipe_id).ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("pipe {} was not made", p.pipe_id),
        })?;
        let write_end = p.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let end = if write_end { w } else { r };
        let path = format!("/proc/{}/fd/{}", std::process::id(), end.as_raw_fd());
        let what = format!("pipe:[{}]", p.pipe_id);
        super::reopen_in(inj, &path, p.flags, 0, scratch_off, &what)
    }
}
