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
//! when the restore ends. cryo opens each file with its flags and seeks to its position; the
//! file table hands it to the processes.

use super::kind::{any_kind, FdKind, FdParams, Opened};
use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result};
use cryo_image::{pb, ImageKind};
use cryo_sys::Pid;
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const DELETED_SUFFIX: &str = " (deleted)";

/// A deleted file's contents, waiting to be written as a ghost image.
#[derive(Debug)]
struct Ghost {
    id: u32,
    entry: pb::GhostFileEntry,
    data: Vec<u8>,
}

/// The regular files of a dump or a restore, with their ghosts.
#[derive(Debug, Default)]
pub struct RegFiles {
    ghosts: Vec<Ghost>,
    /// Dump: the ghost of each deleted file seen, by (device, inode): a file held by several
    /// fds or processes is one ghost, so that it is one file again after restore (its
    /// private mappings can stay shared between parent and child, and the image holds its
    /// contents once).
    ghost_of: HashMap<(u64, u64), u32>,
    /// `remap-fpath.img` entries.
    remaps: Vec<pb::RemapFilePathEntry>,
    /// Restore: ghost id -> the path it was re-created at.
    ghost_paths: HashMap<u32, PathBuf>,
    /// Restore: file id -> ghost id.
    remap_of: HashMap<u32, u32>,
}

/// Character devices reopened by path: the memory devices /dev/null, /dev/zero, /dev/full,
/// /dev/random and /dev/urandom (major 1; the others of that major, /dev/mem and /dev/kmsg
/// say, are not mere streams).
const MEM_MAJOR: u64 = 1;
/// Their minors.
const MEM_MINORS: [u64; 5] = [3, 5, 7, 8, 9];

/// Add the file reachable at `link_path` (/proc/PID/map_files/A-B, /proc/PID/cwd, ...), whose
/// link reads `link`, opened with `flags` at `pos`, to `files`. Returns its file id.
pub fn add_path(
    files: &mut FileTable,
    cx: &mut DumpCx,
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
    let id = cx.ids.next_id();
    let e = files
        .kind_mut::<RegFiles>()?
        .add_stat(cx, pid, link_path, link, flags, pos, &meta, id)?;
    files.push_entry(e);
    Ok(id)
}

/// Restore: the path to open for regular file `id` (the re-created ghost for a deleted file).
pub fn open_path(files: &FileTable, id: u32) -> Result<String> {
    files.kind::<RegFiles>()?.open_path(files, id)
}

impl RegFiles {
    /// A file entry for the file reachable at `link_path` whose link reads `link`, opened with
    /// `flags` at `pos`, whose stat is `meta`, with id `id`; a deleted one gets a ghost.
    #[allow(clippy::too_many_arguments)]
    fn add_stat(
        &mut self,
        cx: &mut DumpCx,
        pid: Pid,
        link_path: &str,
        link: &str,
        flags: u32,
        pos: u64,
        meta: &std::fs::Metadata,
        id: u32,
    ) -> Result<pb::FileEntry> {
        self.add_with_owner(
            cx,
            pid,
            link_path,
            link,
            flags,
            pos,
            meta,
            id,
            super::kind::no_fown(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn add_with_owner(
        &mut self,
        cx: &mut DumpCx,
        pid: Pid,
        link_path: &str,
        link: &str,
        flags: u32,
        pos: u64,
        meta: &std::fs::Metadata,
        id: u32,
        fown: pb::FownEntry,
    ) -> Result<pb::FileEntry> {
        let deleted = meta.nlink() == 0 && meta.is_file();
        let name = if deleted {
            link.strip_suffix(DELETED_SUFFIX).unwrap_or(link)
        } else {
            link
        };
        let entry = pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown,
                name: name.to_string(),
                mnt_id: None,
                size: meta.is_file().then_some(meta.len()),
                mode: Some(meta.mode()),
                ..Default::default()
            }),
            ..Default::default()
        };
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
            let gid = cx.ids.next_id();
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
        Ok(entry)
    }

    /// Restore: the path to open for file `id` (the re-created ghost for a deleted file).
    fn open_path(&self, files: &FileTable, id: u32) -> Result<String> {
        let reg = reg_of(files, id)?;
        if let Some(g) = self.remap_of.get(&id).and_then(|g| self.ghost_paths.get(g)) {
            return Ok(g.display().to_string());
        }
        Ok(reg.name.clone())
    }
}

/// The regular-file entry of file `id`.
fn reg_of(files: &FileTable, id: u32) -> Result<&pb::RegFileEntry> {
    files
        .entry(id)
        .and_then(|e| e.reg.as_ref())
        .ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("no regular file {id}"),
        })
}

impl FdKind for RegFiles {
    fn name(&self) -> &'static str {
        "regular file"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Reg
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        let ft = p.meta.file_type();
        p.link.starts_with('/')
            && (ft.is_file()
                || ft.is_dir()
                || (ft.is_char_device()
                    && p.rdev_major() == MEM_MAJOR
                    && MEM_MINORS.contains(&p.rdev_minor())))
    }

    fn dump(&mut self, cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        let link_path = format!("/proc/{}/fd/{}", p.pid, p.fd);
        self.add_with_owner(
            cx,
            p.pid,
            &link_path,
            &p.link,
            p.info.flags,
            p.info.pos,
            &p.meta,
            id,
            p.fown,
        )
    }

    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        for g in &self.ghosts {
            let mut w =
                cryo_image::create_image(cx.dir, ImageKind::GhostFile, Some(u64::from(g.id)))?;
            w.write_entry(&g.entry)?;
            w.write_raw(&g.data)?;
            w.finish()?;
        }
        if !self.remaps.is_empty() {
            cryo_image::write_all_entries(cx.dir, ImageKind::RemapFpath, None, &self.remaps)?;
        }
        Ok(())
    }

    fn load(&mut self, cx: &RestoreCx, entries: &[&pb::FileEntry]) -> Result<()> {
        self.remaps = cryo_image::read_all_entries(cx.dir, ImageKind::RemapFpath, None)?;
        let names: HashMap<u32, &str> = entries
            .iter()
            .filter_map(|e| e.reg.as_ref().map(|r| (e.id, r.name.as_str())))
            .collect();
        for r in &self.remaps {
            if r.remap_type != Some(pb::RemapType::Ghost as i32) {
                return Err(Error::Unsupported(format!(
                    "remap type {:?} of file {}",
                    r.remap_type, r.orig_id
                )));
            }
            let name = names.get(&r.orig_id).ok_or_else(|| Error::BadImage {
                image: "remap-fpath.img".into(),
                what: format!("no file {}", r.orig_id),
            })?;
            if let std::collections::hash_map::Entry::Vacant(v) = self.ghost_paths.entry(r.remap_id)
            {
                v.insert(recreate_ghost(cx.dir, r.remap_id, Path::new(name))?);
            }
            self.remap_of.insert(r.orig_id, r.remap_id);
        }
        Ok(())
    }

    fn open(&self, files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let reg = reg_of(files, entry.id)?;
        let path = self.open_path(files, entry.id)?;
        let path_err = |what: &str, source| Error::Path {
            what: what.into(),
            path: path.clone(),
            source,
        };
        let file = super::open_with_flags(&path, reg.flags).map_err(|e| path_err("open", e))?;
        if reg.pos != 0 {
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::Start(reg.pos))
                .map_err(|e| path_err("seek", e))?;
        }
        Ok(Opened::Local(OwnedFd::from(file)))
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.reg.as_ref().map(|r| (r.flags, &r.fown))
    }

    fn cleanup(&self) {
        for p in self.ghost_paths.values() {
            let _ = std::fs::remove_file(p);
        }
    }

    any_kind!();
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
