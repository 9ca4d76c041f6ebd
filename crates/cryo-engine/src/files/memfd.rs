//! Memfds: `FileEntry { type: MEMFD, memfd: MemfdFileEntry }` in `files.img` for every fd of a
//! memfd and for the mappings of one (a VMA with `VMA_AREA_MEMFD` names such an entry by its
//! `shmid`), each memfd inode once in `memfd.img` (`MemfdInodeEntry`: name, owner, mode, size,
//! seals), and its contents as shared memory pages (`pagemap-shmem-SHMID.img` + `pages-N.img`,
//! SHMID being the inode number, as CRIU has it).
//!
//! # Dump
//! An fd or a mapping whose link reads `/memfd:NAME (deleted)` and whose file lives on the
//! shmem device is a memfd. cryo opens it through /proc/PID/fd/N or /proc/PID/map_files/A-B
//! (an open file description of its own, so the task's position never moves), reads its
//! seals and owner, and later its contents, skipping holes with SEEK_DATA/SEEK_HOLE
//! ([`Memfds::dump_contents`], run by the memory dump of each process, after its fds). Every
//! memfd fd gets a file entry of its own; mappings share one entry per inode and open mode.
//! Memfds on hugetlbfs are refused.
//!
//! # Restore
//! cryo makes each memfd itself when the files are loaded ([`Memfds::load`]): memfd_create with
//! the name (and `MFD_ALLOW_SEALING` unless the only seal is `F_SEAL_SEAL`), sized, filled from
//! the pages image, given its owner and mode, and sealed with every seal but
//! `F_SEAL_FUTURE_WRITE`, which would forbid the writable mappings still to be made. Every fd
//! and mapping of the tree opens /proc/CRYO/fd/N with its own flags, so all of them share the
//! one new memfd. `F_SEAL_FUTURE_WRITE` (with `F_SEAL_SEAL`, which would forbid adding it) is
//! added by [`Memfds::apply_seals`] once every mapping is made.

use super::kind::{any_kind, no_fown, FdKind, FdParams, Opened};
use super::table::FileTable;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result};
use cryo_image::{pb, ImageKind};
use cryo_sys::shmem;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// `F_SEAL_SEAL` (include/uapi/linux/fcntl.h): no more seals may be added.
pub const F_SEAL_SEAL: u32 = 0x0001;
/// `F_SEAL_FUTURE_WRITE`: no new writable mappings, no writes (Linux 5.1).
pub const F_SEAL_FUTURE_WRITE: u32 = 0x0010;

/// How the link of a memfd starts.
pub const MEMFD_PREFIX: &str = "/memfd:";
const DELETED_SUFFIX: &str = " (deleted)";

/// Dump: a memfd inode met in the tree.
#[derive(Debug)]
struct DumpInode {
    id: u32,
    shmid: u64,
    size: u64,
    /// cryo's own open file of the memfd while its contents are still to be read.
    file: Option<File>,
}

/// Restore: a memfd made by cryo.
#[derive(Debug)]
struct RestoreInode {
    file: File,
    /// Seals added once every mapping is made.
    late_seals: u32,
}

/// The memfds of a dump or a restore.
#[derive(Debug, Default)]
pub struct Memfds {
    /// Dump: inodes by (device, inode number).
    inodes: BTreeMap<(u64, u64), DumpInode>,
    /// Dump: the `memfd.img` entries, in inode id order.
    entries: Vec<pb::MemfdInodeEntry>,
    /// Dump: the file entry of the mappings of an inode with an open mode.
    map_ids: BTreeMap<(u32, u32), u32>,
    /// Restore: the memfds made, by inode id.
    objs: BTreeMap<u64, RestoreInode>,
    /// Restore: the late seals were added.
    seals_applied: AtomicBool,
}

/// The device of shmem files (memfds and shared anonymous memory), learned from a memfd of
/// cryo's own.
fn shmem_dev() -> Result<u64> {
    static DEV: OnceLock<u64> = OnceLock::new();
    if let Some(d) = DEV.get() {
        return Ok(*d);
    }
    let dev = shmem::memfd_create("cryo-probe", 0)
        .and_then(|f| f.metadata())
        .map_err(|source| Error::Path {
            what: "learn the shmem device from".into(),
            path: "memfd:cryo-probe".into(),
            source,
        })?
        .dev();
    Ok(*DEV.get_or_init(|| dev))
}

/// Whether the file whose link reads `link` and whose stat is `meta` is a memfd. `what` names
/// it ("fd 3 of pid 42") in the refusal of a memfd cryo cannot handle (on hugetlbfs).
pub fn is_memfd(link: &str, meta: Option<&std::fs::Metadata>, what: &str) -> Result<bool> {
    if !link.starts_with(MEMFD_PREFIX) {
        return Ok(false);
    }
    let Some(meta) = meta.filter(|m| m.is_file()) else {
        return Ok(false);
    };
    if meta.dev() == shmem_dev()? {
        return Ok(true);
    }
    Err(Error::Unsupported(format!(
        "{what} ({link}): a memfd outside the shmem device (hugetlb memfds)"
    )))
}

/// The name a memfd was created with, from its link `/memfd:NAME (deleted)`.
fn memfd_name(link: &str) -> &str {
    let name = link.strip_prefix(MEMFD_PREFIX).unwrap_or(link);
    name.strip_suffix(DELETED_SUFFIX).unwrap_or(name)
}

impl Memfds {
    /// Dump: the inode id of the memfd reachable at `open_path`, whose link reads `link`;
    /// recorded with its seals, owner and size the first time it is seen.
    fn inode(&mut self, open_path: &str, link: &str) -> Result<u32> {
        let path_err = |what: &str, source| Error::Path {
            what: what.into(),
            path: open_path.to_string(),
            source,
        };
        let file = File::open(open_path).map_err(|e| path_err("open memfd", e))?;
        let meta = file.metadata().map_err(|e| path_err("stat memfd", e))?;
        if let Some(i) = self.inodes.get(&(meta.dev(), meta.ino())) {
            return Ok(i.id);
        }
        let shmid = u32::try_from(meta.ino()).map_err(|_| {
            Error::Unsupported(format!(
                "{open_path} ({link}): a memfd with inode number {} above 32 bits",
                meta.ino()
            ))
        })?;
        let seals = shmem::get_seals(&file).map_err(|e| path_err("read seals of memfd", e))?;
        let id = self.entries.len() as u32 + 1;
        self.entries.push(pb::MemfdInodeEntry {
            name: memfd_name(link).to_string(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            shmid,
            seals,
            inode_id: u64::from(id),
            hugetlb_flag: None,
            mode: Some(meta.mode()),
        });
        self.inodes.insert(
            (meta.dev(), meta.ino()),
            DumpInode {
                id,
                shmid: u64::from(shmid),
                size: meta.len(),
                file: Some(file),
            },
        );
        Ok(id)
    }

    /// Restore: make every memfd of `memfd.img`, filled and sealed (but for the late seals),
    /// and check that every memfd entry of `entries` has its inode.
    fn make_memfds(&mut self, dir: &Path, entries: &[&pb::FileEntry]) -> Result<()> {
        let inodes: Vec<pb::MemfdInodeEntry> =
            cryo_image::read_all_entries(dir, ImageKind::MemfdInode, None)?;
        let mut objs = BTreeMap::new();
        for e in inodes {
            let what = format!("memfd:{} (inode {})", e.name, e.inode_id);
            if e.hugetlb_flag.is_some() {
                return Err(Error::Unsupported(format!("{what}: a hugetlb memfd")));
            }
            let path_err = |w: &str, source| Error::Path {
                what: w.into(),
                path: what.clone(),
                source,
            };
            // Without MFD_ALLOW_SEALING a memfd has F_SEAL_SEAL alone.
            let sealable = e.seals != F_SEAL_SEAL;
            let flags = if sealable { libc::MFD_ALLOW_SEALING } else { 0 };
            let file = shmem::memfd_create(&e.name, flags).map_err(|s| path_err("create", s))?;
            file.set_len(e.size).map_err(|s| path_err("size", s))?;
            crate::memory::fill_shmem_object(dir, u64::from(e.shmid), &file, e.size)?;
            std::os::unix::fs::fchown(&file, Some(e.uid), Some(e.gid))
                .map_err(|s| path_err("set the owner of", s))?;
            if let Some(mode) = e.mode {
                file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|s| path_err("set the mode of", s))?;
            }
            let late_seals = if sealable && e.seals & F_SEAL_FUTURE_WRITE != 0 {
                e.seals & (F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
            } else {
                0
            };
            let early = e.seals & !late_seals;
            if sealable && early != 0 {
                shmem::add_seals(&file, early).map_err(|s| path_err("seal", s))?;
            }
            objs.insert(e.inode_id, RestoreInode { file, late_seals });
        }
        for m in entries.iter().filter_map(|e| e.memfd.as_ref()) {
            if !objs.contains_key(&u64::from(m.inode_id)) {
                return Err(Error::BadImage {
                    image: "memfd.img".into(),
                    what: format!("no memfd inode {} for file {}", m.inode_id, m.id),
                });
            }
        }
        self.objs = objs;
        Ok(())
    }

    /// Restore: the path through which memfd inode `inode_id` is opened, from a process whose
    /// /proc calls cryo `me` ("self" in cryo).
    fn proc_path(&self, inode_id: u32, me: &str) -> Result<String> {
        let obj = self
            .objs
            .get(&u64::from(inode_id))
            .ok_or_else(|| Error::BadImage {
                image: "memfd.img".into(),
                what: format!("memfd inode {inode_id} was not made"),
            })?;
        Ok(format!("/proc/{me}/fd/{}", obj.file.as_raw_fd()))
    }

    /// Restore: add the seals that had to wait for the mappings (`F_SEAL_FUTURE_WRITE`), once;
    /// to be called when every address space of the tree is restored.
    fn apply_seals(&self) -> Result<()> {
        if self.seals_applied.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for (id, obj) in &self.objs {
            if obj.late_seals != 0 {
                shmem::add_seals(&obj.file, obj.late_seals).map_err(|source| Error::Path {
                    what: "seal".into(),
                    path: format!("memfd inode {id}"),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

impl FdKind for Memfds {
    fn name(&self) -> &'static str {
        "memfd"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Memfd
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        p.link.starts_with(MEMFD_PREFIX) && p.meta.is_file()
    }

    fn dump(&mut self, _cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        if !is_memfd(
            &p.link,
            Some(&p.meta),
            &format!("fd {} of pid {}", p.fd, p.pid),
        )? {
            return Err(p.refuse("a file named like a memfd"));
        }
        let inode_id = self.inode(&format!("/proc/{}/fd/{}", p.pid, p.fd), &p.link)?;
        let mut e = memfd_file_entry(id, p.info.flags, p.info.pos, inode_id);
        if let Some(m) = e.memfd.as_mut() {
            m.fown = p.fown;
        }
        Ok(e)
    }

    /// `memfd.img`.
    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        if let Some(i) = self.inodes.values().find(|i| i.file.is_some()) {
            // A memfd met after the last memory dump would lose its contents.
            return Err(Error::Unsupported(format!(
                "a memfd (inode {}) found after the memory dumps",
                i.shmid
            )));
        }
        if !self.entries.is_empty() {
            cryo_image::write_all_entries(cx.dir, ImageKind::MemfdInode, None, &self.entries)?;
        }
        Ok(())
    }

    fn load(&mut self, cx: &RestoreCx, entries: &[&pb::FileEntry]) -> Result<()> {
        self.make_memfds(cx.dir, entries)
    }

    /// Every address space of the tree is restored before any fd table: the seals that
    /// forbid new writable mappings can go on now.
    fn before_fds(&self) -> Result<()> {
        self.apply_seals()
    }

    /// A new open file of cryo's memfd, with the entry's flags and position.
    fn open(&self, _files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let m = entry.memfd.as_ref().ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("file {} is no memfd", entry.id),
        })?;
        let path = self.proc_path(m.inode_id, "self")?;
        let path_err = |what: &str, source| Error::Path {
            what: what.into(),
            path: format!("memfd {}", m.id),
            source,
        };
        let file = super::open_with_flags(&path, m.flags).map_err(|e| path_err("open", e))?;
        if m.pos != 0 {
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::Start(m.pos))
                .map_err(|e| path_err("seek", e))?;
        }
        Ok(Opened::Local(file.into()))
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.memfd.as_ref().map(|m| (m.flags, &m.fown))
    }

    any_kind!();
}

/// Dump: copy the contents of every memfd met since the last call into shared memory pages.
/// Returns the pages written. Must run after the fds and mappings of every process were
/// dumped, while the tree is stopped: the memory dump of each process calls it.
pub fn dump_contents(files: &mut FileTable, cx: &mut DumpCx) -> Result<u64> {
    let mut pages = 0;
    for inode in files.kind_mut::<Memfds>()?.inodes.values_mut() {
        if let Some(file) = inode.file.take() {
            pages += cx.shmem.add_from_object(
                cx.dir,
                &mut cx.pages_id,
                inode.shmid,
                &file,
                0,
                inode.size,
            )?;
        }
    }
    Ok(pages)
}

/// Dump: a mapping of a memfd, reachable at `link_path` (/proc/PID/map_files/A-B) whose link
/// reads `link`, opened with `fdflags`. Returns the id of the file entry the VMA names (one per
/// inode and open mode).
pub fn dump_vma(
    files: &mut FileTable,
    cx: &mut DumpCx,
    link_path: &str,
    link: &str,
    fdflags: u32,
) -> Result<u32> {
    let memfds = files.kind_mut::<Memfds>()?;
    let inode_id = memfds.inode(link_path, link)?;
    if let Some(&id) = memfds.map_ids.get(&(inode_id, fdflags)) {
        return Ok(id);
    }
    let id = cx.ids.next_id();
    memfds.map_ids.insert((inode_id, fdflags), id);
    files.push_entry(memfd_file_entry(id, fdflags, 0, inode_id));
    Ok(id)
}

fn memfd_file_entry(id: u32, flags: u32, pos: u64, inode_id: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Memfd as i32,
        id,
        memfd: Some(pb::MemfdFileEntry {
            id,
            flags,
            pos,
            fown: no_fown(),
            inode_id,
        }),
        ..Default::default()
    }
}

/// Restore: the path a puppet opens to map memfd file `file_id` (the `shmid` of its VMA).
pub fn map_path(files: &FileTable, file_id: u32) -> Result<String> {
    let m = files
        .entry(file_id)
        .and_then(|e| e.memfd.as_ref())
        .ok_or_else(|| Error::BadImage {
            image: "files.img".into(),
            what: format!("no memfd {file_id} for a mapping"),
        })?;
    files
        .kind::<Memfds>()?
        .proc_path(m.inode_id, &std::process::id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_links() {
        assert_eq!(memfd_name("/memfd:data (deleted)"), "data");
        assert_eq!(memfd_name("/memfd: two words (deleted)"), " two words");
        assert_eq!(memfd_name("/memfd:"), "");
    }

    #[test]
    fn entries_round_trip() {
        let e = memfd_file_entry(7, libc::O_RDWR as u32, 4096, 2);
        let inode = pb::MemfdInodeEntry {
            name: "data".into(),
            uid: 0,
            gid: 0,
            size: 12345,
            shmid: 99,
            seals: F_SEAL_SEAL | F_SEAL_FUTURE_WRITE,
            inode_id: 2,
            hugetlb_flag: None,
            mode: Some(0o100777),
        };
        let mut w = cryo_image::ImageWriter::new(Vec::new(), ImageKind::Files).unwrap();
        w.write_entry(&e).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = cryo_image::ImageReader::new(bytes.as_slice(), ImageKind::Files, "f").unwrap();
        let back: pb::FileEntry = r.read_entry().unwrap().unwrap();
        assert_eq!(back, e);
        assert_eq!(back.r#type, pb::FdTypes::Memfd as i32);
        let mut w = cryo_image::ImageWriter::new(Vec::new(), ImageKind::MemfdInode).unwrap();
        w.write_entry(&inode).unwrap();
        let bytes = w.finish().unwrap();
        let mut r =
            cryo_image::ImageReader::new(bytes.as_slice(), ImageKind::MemfdInode, "m").unwrap();
        let back: pb::MemfdInodeEntry = r.read_entry().unwrap().unwrap();
        assert_eq!(back, inode);
    }
}
