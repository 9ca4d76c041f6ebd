//! Memory: the VMAs of a task (`mm-PID.img`), the pages that matter (`pagemap-PID.img` +
//! `pages-N.img`, shared anonymous memory in `pagemap-shmem-ID.img`), and the mm fields.
//! Mappings of memfds are VMAs with `VMA_AREA_MEMFD` naming the memfd's file entry; the memfd
//! itself (contents, seals) belongs to `files::memfd`, which this module calls.
//!
//! # Dump
//! VMAs come from /proc/PID/smaps (VmFlags give MAP_GROWSDOWN and madvise bits). Which pages
//! matter comes from /proc/PID/pagemap: present or swapped pages of anonymous memory, and for
//! private file mappings only the private copies (present and not file-backed). Untouched
//! memory is never read. Pages are read with process_vm_readv, or through /proc/PID/mem where
//! the VMA is not readable (PROT_NONE with content). The vvar/vdso block and vsyscall are
//! recorded but never copied.
//!
//! # Restore
//! In the puppet: the vvar/vdso block is moved onto the dumped addresses, everything else but
//! the trampoline is unmapped, then each VMA is mapped at its address (writable while it is
//! filled), filled from the pages image (UFFDIO_COPY from the image mapped in cryo, or `pread64`
//! run inside the puppet), and given its final protection and madvise flags. Shared anonymous
//! memory and memfds are objects cryo made and filled before: every process that had one
//! mapped maps the same object (through /proc/CRYO/fd/N), so they share it again. The mm fields,
//! auxv and exe link are set in one `PR_SET_MM_MAP`.
//!
//! Copy-on-write: a puppet forked from its restored parent inherits the parent's memory. Its
//! private VMAs that the parent has too ([`inherited_vmas`]: anonymous ones, and mappings of
//! the same file) are kept; of their pages only those that differ from the image are written,
//! and the parent's private copies this process does not have are dropped (back to zeros, or
//! to the file's pages), so pages the dumped processes shared are shared again (the image
//! stays CRIU's: every process's pages are in it).

use crate::cx::DumpCx;
use crate::error::{Error, Result, TaskCtx};
use crate::files::memfd;
use crate::files::{reg, FileTable};
use crate::remote::Injector;
use cryo_image::pagemap::PE_PRESENT;
use cryo_image::{pb, ImageKind};
use cryo_sys::procfs::{self, MapsEntry};
use cryo_sys::uffd::{MappedFile, Userfaultfd};
use cryo_sys::{mem, Pid, RemoteAddr, PAGE_SIZE};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use tracing::debug;

/// CRIU's VMA status bits (`criu/include/image.h`).
pub mod status {
    /// A dumpable area.
    pub const VMA_AREA_REGULAR: u32 = 1 << 0;
    /// The main stack.
    pub const VMA_AREA_STACK: u32 = 1 << 1;
    /// [vsyscall].
    pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
    /// [vdso].
    pub const VMA_AREA_VDSO: u32 = 1 << 3;
    /// [heap].
    pub const VMA_AREA_HEAP: u32 = 1 << 5;
    /// Private file mapping.
    pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
    /// Shared file mapping.
    pub const VMA_FILE_SHARED: u32 = 1 << 7;
    /// Shared anonymous memory.
    pub const VMA_ANON_SHARED: u32 = 1 << 8;
    /// Private anonymous memory.
    pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
    /// [vvar] and [vvar_vclock].
    pub const VMA_AREA_VVAR: u32 = 1 << 12;
    /// A mapping of a memfd (with VMA_FILE_SHARED or VMA_FILE_PRIVATE): `shmid` is the id of
    /// its MEMFD file entry.
    pub const VMA_AREA_MEMFD: u32 = 1 << 14;
}
use status::*;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// MAP_DROPPABLE (Linux 6.11, include/uapi/linux/mman.h).
const MAP_DROPPABLE: i32 = 0x08;
/// Largest single read of task memory.
const CHUNK_BYTES: usize = 8 << 20;

/// madvise bits CRIU keeps in `VmaEntry.madv`, by smaps VmFlags name.
const MADV_FLAGS: [(&str, u32); 8] = [
    ("sr", libc::MADV_SEQUENTIAL as u32),
    ("rr", libc::MADV_RANDOM as u32),
    ("dc", libc::MADV_DONTFORK as u32),
    ("dd", libc::MADV_DONTDUMP as u32),
    ("mg", libc::MADV_MERGEABLE as u32),
    ("hg", libc::MADV_HUGEPAGE as u32),
    ("nh", libc::MADV_NOHUGEPAGE as u32),
    ("wf", libc::MADV_WIPEONFORK as u32),
];

/// Appends pages to one `pages-N.img` and records them in its pagemap.
///
/// Where it can, the task writes its own pages into the image: the image is opened inside it
/// and runs of pages go out in `pwritev` calls made by the task (one copy, straight from its
/// memory into the file), batched up to `IOV_BATCH` runs a call. Pages cryo cannot have the
/// task write (unreadable VMAs) are read through /proc/PID/mem and written by cryo at their
/// offset. Without an injector everything goes through cryo (process_vm_readv + write).
struct PageSink<'a> {
    file: File,
    path: String,
    pages_id: u32,
    entries: Vec<pb::PagemapEntry>,
    buf: Vec<u8>,
    /// File offset of the next page.
    off: u64,
    remote: Option<RemoteWriter<'a>>,
}

/// The image file open in the task, and runs waiting to be written by it.
struct RemoteWriter<'a> {
    inj: &'a Injector,
    fd: u64,
    batch: Vec<(u64, u64)>,
    batch_off: u64,
}

/// What the task's page writes are called in errors.
const WRITE_PAGES: &str = "write pages (pwritev in the task)";

/// Runs per remote pwritev (16 bytes of iovec each in the scratch area).
const IOV_BATCH: usize = 1024;

impl<'a> RemoteWriter<'a> {
    fn open(inj: &'a Injector, path: &Path) -> Option<RemoteWriter<'a>> {
        let s = inj.scratch();
        let p = s.cstr(&path.display().to_string()).ok()?;
        let fd = inj
            .syscall(
                "open pages image in the task",
                libc::SYS_openat,
                &[
                    libc::AT_FDCWD as u64,
                    p.0,
                    (libc::O_WRONLY | libc::O_CLOEXEC) as u64,
                    0,
                ],
            )
            .ok()?;
        Some(RemoteWriter {
            inj,
            fd,
            batch: Vec::new(),
            batch_off: 0,
        })
    }

    /// The iovecs of the waiting runs (at most `IOV_BATCH` per call).
    fn iov(&self) -> Vec<u8> {
        self.batch
            .iter()
            .flat_map(|&(a, l)| a.to_ne_bytes().into_iter().chain(l.to_ne_bytes()))
            .collect()
    }

    /// `n` bytes were written: drop them from the waiting runs, keep the rest (a short write
    /// can stop mid-run).
    fn consume(&mut self, mut n: u64) -> Result<()> {
        if n == 0 && !self.batch.is_empty() {
            return Err(Error::Task {
                what: "write pages".into(),
                pid: self.inj.pid(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        self.batch_off += n;
        while n > 0 && !self.batch.is_empty() {
            let (a, l) = self.batch[0];
            if n >= l {
                self.batch.remove(0);
                n -= l;
            } else {
                self.batch[0] = (a + n, l - n);
                n = 0;
            }
        }
        Ok(())
    }

    /// Start the task writing the waiting runs (one `pwritev`, at most `IOV_BATCH` runs).
    fn start_write(&self) -> Result<()> {
        // The frame ends before the write does: nothing else runs in the task until it has.
        let s = self.inj.scratch();
        let iov_addr = s.bytes(&self.iov())?;
        self.inj.syscall_start(
            WRITE_PAGES,
            libc::SYS_pwritev,
            &[
                self.fd,
                iov_addr.0,
                self.batch.len() as u64,
                self.batch_off,
                0,
            ],
        )
    }

    fn flush(&mut self) -> Result<()> {
        while !self.batch.is_empty() {
            self.start_write()?;
            let n = self.inj.syscall_wait(WRITE_PAGES)?;
            self.consume(n)?;
        }
        Ok(())
    }

    /// Start writing the waiting runs (one batch) and leave the task to it: the task copies
    /// its pages into the image on a CPU of its own while cryo goes on with other tasks.
    fn start(mut self) -> Result<Option<PagesInFlight>> {
        if self.batch.is_empty() {
            self.close()?;
            return Ok(None);
        }
        self.start_write()?;
        let fd = std::mem::replace(&mut self.fd, u64::MAX);
        Ok(Some(PagesInFlight {
            pid: self.inj.pid(),
            fd,
            batch: std::mem::take(&mut self.batch),
            batch_off: self.batch_off,
        }))
    }

    fn close(mut self) -> Result<()> {
        let res = self.flush();
        let fd = std::mem::replace(&mut self.fd, u64::MAX);
        let closed = self
            .inj
            .syscall("close pages image in the task", libc::SYS_close, &[fd]);
        res.and(closed.map(|_| ()))
    }
}

impl Drop for RemoteWriter<'_> {
    /// On an error path the image fd must not stay in the task.
    fn drop(&mut self) {
        if self.fd != u64::MAX {
            let _ = self
                .inj
                .syscall("close pages image in the task", libc::SYS_close, &[self.fd]);
        }
    }
}

/// The last pages of a process, being written into its image by the task itself (a
/// `pwritev` started with [`Injector::syscall_start`]) while cryo dumps the next processes, so
/// that the copying of several processes runs on several CPUs. The task is running, not in a
/// ptrace stop: nothing else may be asked of it, nor may it be released, before
/// [`PagesInFlight::complete`].
#[derive(Debug)]
#[must_use = "the task runs a syscall until it is completed"]
pub struct PagesInFlight {
    pid: Pid,
    fd: u64,
    /// The runs of this write, and the image offset of the first.
    batch: Vec<(u64, u64)>,
    batch_off: u64,
}

impl PagesInFlight {
    /// The task writing.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait for the write (`inj` drives the same task), write what a short write left and
    /// close the image in the task. On an error the task is back in its stop all the same.
    pub fn complete(self, inj: &Injector) -> Result<()> {
        let written = inj.syscall_wait(WRITE_PAGES);
        let mut w = RemoteWriter {
            inj,
            fd: self.fd,
            batch: self.batch,
            batch_off: self.batch_off,
        };
        // An error drops `w`, which closes the image in the task.
        w.consume(written?)?;
        w.close()
    }
}

impl<'a> PageSink<'a> {
    fn create(dir: &Path, pages_id: u32, inj: Option<&'a Injector>) -> Result<PageSink<'a>> {
        let w = cryo_image::create_image(dir, ImageKind::Pages, Some(u64::from(pages_id)))?;
        let path = w.path().to_path_buf();
        let file = w.finish()?.into_inner().map_err(|e| Error::Path {
            what: "flush".into(),
            path: format!("pages-{pages_id}.img"),
            source: e.into_error(),
        })?;
        let remote = inj.and_then(|inj| RemoteWriter::open(inj, &path));
        Ok(PageSink {
            file,
            path: path.display().to_string(),
            pages_id,
            entries: Vec::new(),
            buf: Vec::new(),
            off: 0,
            remote,
        })
    }

    /// Copy `nr` pages at `addr` of `pid` into the image, recorded at `img_vaddr`.
    fn add(
        &mut self,
        pid: Pid,
        procmem: Option<&mem::ProcMem>,
        addr: u64,
        nr: u64,
        img_vaddr: u64,
    ) -> Result<()> {
        let len = nr * PAGE_SIZE;
        match (&mut self.remote, procmem) {
            (Some(r), None) => {
                if r.batch.is_empty() {
                    r.batch_off = self.off;
                }
                r.batch.push((addr, len));
                if r.batch.len() >= IOV_BATCH {
                    r.flush()?;
                }
            }
            _ => {
                // A batch covers one contiguous stretch of the file: close it first.
                if let Some(r) = &mut self.remote {
                    r.flush()?;
                }
                self.copy_locally(pid, procmem, addr, len)?
            }
        }
        self.off += len;
        // One entry per run: runs are maximal within a VMA, and an entry never spans two VMAs
        // (as in CRIU's images), so nothing is merged.
        self.entries.push(cryo_image::pagemap::pagemap_entry(
            img_vaddr, nr as u32, PE_PRESENT,
        ));
        Ok(())
    }

    /// Copy the page at `off` of `file` into the image, recorded at `off`.
    fn add_from_file(&mut self, file: &File, off: u64, what: &str) -> Result<()> {
        if let Some(r) = &mut self.remote {
            r.flush()?;
        }
        let mut page = [0u8; PAGE_SIZE as usize];
        // A short read at the end of the object leaves zeros, as the object reads there.
        let mut got = 0;
        while got < page.len() {
            let n = file
                .read_at(&mut page[got..], off + got as u64)
                .map_err(|source| Error::Path {
                    what: "read".into(),
                    path: what.to_string(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.file
            .write_all_at(&page, self.off)
            .map_err(|source| Error::Path {
                what: "write".into(),
                path: self.path.clone(),
                source,
            })?;
        self.off += PAGE_SIZE;
        match self.entries.last_mut() {
            Some(last) if last.vaddr + last.nr_pages.unwrap_or(0) * PAGE_SIZE == off => {
                let n = last.nr_pages.unwrap_or(0) + 1;
                last.nr_pages = Some(n);
                last.compat_nr_pages = n as u32;
            }
            _ => self
                .entries
                .push(cryo_image::pagemap::pagemap_entry(off, 1, PE_PRESENT)),
        }
        Ok(())
    }

    fn copy_locally(
        &mut self,
        pid: Pid,
        procmem: Option<&mem::ProcMem>,
        addr: u64,
        len: u64,
    ) -> Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; CHUNK_BYTES];
        }
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(self.buf.len());
            let chunk = &mut self.buf[..n];
            let at = RemoteAddr(addr + done);
            match procmem {
                Some(pm) => pm
                    .read_exact(at, chunk)
                    .task_ctx("read memory through /proc/PID/mem", pid)?,
                None => mem::read_exact(pid, at, chunk).task_ctx("read memory", pid)?,
            }
            self.file
                .write_all_at(chunk, self.off + done)
                .map_err(|source| Error::Path {
                    what: "write".into(),
                    path: self.path.clone(),
                    source,
                })?;
            done += n as u64;
        }
        Ok(())
    }

    /// Write the pagemap image. What the task still has to write of its pages is left to it:
    /// the returned writer, to be started last (see [`PagesInFlight`]).
    /// Returns the number of pages recorded.
    fn finish(
        self,
        dir: &Path,
        kind: ImageKind,
        id: u64,
    ) -> Result<(u64, Option<RemoteWriter<'a>>)> {
        let mut w = cryo_image::create_image(dir, kind, Some(id))?;
        w.write_entry(&pb::PagemapHead {
            pages_id: self.pages_id,
        })?;
        let mut n = 0;
        for e in &self.entries {
            w.write_entry(e)?;
            n += e.nr_pages.unwrap_or(0);
        }
        w.finish()?;
        Ok((n, self.remote))
    }
}

/// Read the pagemap words for `start..end` of `pid`.
fn read_pagemap(pm: &File, pid: Pid, start: u64, end: u64) -> Result<Vec<u64>> {
    let n = ((end - start) / PAGE_SIZE) as usize;
    let mut raw = vec![0u8; n * 8];
    pm.read_exact_at(&mut raw, start / PAGE_SIZE * 8)
        .task_ctx("read pagemap", pid)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Turn one smaps entry into CRIU's VmaEntry (without the file id).
pub fn vma_entry(m: &MapsEntry) -> pb::VmaEntry {
    let mut prot = 0;
    if m.read {
        prot |= libc::PROT_READ;
    }
    if m.write {
        prot |= libc::PROT_WRITE;
    }
    if m.exec {
        prot |= libc::PROT_EXEC;
    }
    let mut flags = if m.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    for (f, bit) in [
        ("gd", libc::MAP_GROWSDOWN),
        ("lo", libc::MAP_LOCKED),
        ("nr", libc::MAP_NORESERVE),
        ("ht", libc::MAP_HUGETLB),
    ] {
        if m.has_flag(f) {
            flags |= bit;
        }
    }
    // MAP_DROPPABLE is a mapping type of its own, not a private mapping.
    if m.has_flag("dp") {
        flags = (flags & !libc::MAP_PRIVATE) | MAP_DROPPABLE;
    }
    let mut madv = 0u64;
    for (f, bit) in MADV_FLAGS {
        if m.has_flag(f) {
            madv |= 1 << bit;
        }
    }
    let mut st = VMA_AREA_REGULAR;
    let mut shmid = 0;
    match m.path.as_str() {
        "[vsyscall]" => st = VMA_AREA_VSYSCALL,
        "[vdso]" => {
            st |= VMA_AREA_VDSO | VMA_ANON_PRIVATE;
            flags |= libc::MAP_ANONYMOUS;
        }
        "[vvar]" | "[vvar_vclock]" => {
            st |= VMA_AREA_VVAR | VMA_ANON_PRIVATE;
            flags |= libc::MAP_ANONYMOUS;
        }
        _ if is_anon_shared(m) => {
            st |= VMA_ANON_SHARED;
            flags |= libc::MAP_ANONYMOUS;
            shmid = m.inode;
        }
        _ if m.inode == 0 => {
            st |= VMA_ANON_PRIVATE;
            flags |= libc::MAP_ANONYMOUS;
            if m.path == "[heap]" {
                st |= VMA_AREA_HEAP;
            }
            if m.path == "[stack]" {
                st |= VMA_AREA_STACK;
            }
        }
        _ => {
            st |= if m.shared {
                VMA_FILE_SHARED
            } else {
                VMA_FILE_PRIVATE
            }
        }
    }
    pb::VmaEntry {
        start: m.start,
        end: m.end,
        pgoff: if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED | VMA_ANON_SHARED) != 0 {
            m.offset
        } else {
            0
        },
        shmid,
        prot: prot as u32,
        flags: flags as u32,
        status: st,
        fd: -1,
        madv: (madv != 0).then_some(madv),
        fdflags: None,
    }
}

/// The open mode of a mapped file, as the mode bits of its /proc/PID/map_files link show it
/// (the kernel gives the link the mode the file was opened with).
fn map_file_flags(link_path: &str, m: &MapsEntry) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(link_path).map(|md| md.permissions().mode() & 0o600) {
        Ok(0o600) => libc::O_RDWR as u32,
        Ok(0o200) => libc::O_WRONLY as u32,
        Ok(_) => libc::O_RDONLY as u32,
        Err(_) if m.shared && m.write => libc::O_RDWR as u32,
        Err(_) => libc::O_RDONLY as u32,
    }
}

fn is_anon_shared(m: &MapsEntry) -> bool {
    m.shared && m.inode != 0 && m.path.starts_with("/dev/zero") && m.dev_major == 0
}

/// Shared anonymous memory of a whole tree: one pages image per object, each page written
/// once whichever process had it mapped.
#[derive(Default)]
pub struct ShmemDump {
    sinks: BTreeMap<u64, (PageSink<'static>, std::collections::BTreeSet<u64>)>,
}

impl ShmemDump {
    /// Record the data of `obj` (a shared memory object) between offsets `from` and `to`, as
    /// SEEK_DATA/SEEK_HOLE find it; returns the pages added.
    pub(crate) fn add_from_object(
        &mut self,
        dir: &Path,
        pages_id: &mut u32,
        shmid: u64,
        obj: &File,
        from: u64,
        to: u64,
    ) -> Result<u64> {
        let mut added = 0;
        let mut at = from;
        while at < to {
            let Some(data) = cryo_sys::shmem::seek_data(obj, at).map_err(|source| Error::Path {
                what: "find data in".into(),
                path: format!("shmem {shmid}"),
                source,
            })?
            else {
                break;
            };
            if data >= to {
                break;
            }
            let hole = cryo_sys::shmem::seek_hole(obj, data)
                .map_err(|source| Error::Path {
                    what: "find holes in".into(),
                    path: format!("shmem {shmid}"),
                    source,
                })?
                .min(to);
            let (s, e) = (
                data / PAGE_SIZE * PAGE_SIZE,
                hole.div_ceil(PAGE_SIZE) * PAGE_SIZE,
            );
            let (sink, seen) = match self.sinks.entry(shmid) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let s = PageSink::create(dir, *pages_id, None)?;
                    *pages_id += 1;
                    v.insert((s, Default::default()))
                }
            };
            let mut off = s;
            while off < e {
                if seen.insert(off) {
                    sink.add_from_file(obj, off, &format!("shmem {shmid}"))?;
                    added += 1;
                }
                off += PAGE_SIZE;
            }
            at = e.max(at + PAGE_SIZE);
        }
        Ok(added)
    }

    /// Write the shmem pagemaps; returns the number of pages written.
    pub fn finish(self, dir: &Path) -> Result<u64> {
        // Entries stay in file order: with several processes they need not be sorted by offset.
        let mut pages = 0;
        for (shmid, (s, _)) in self.sinks {
            let (n, writer) = s.finish(dir, ImageKind::ShmemPagemap, shmid)?;
            // cryo writes shared memory itself: no task holds an image open.
            if let Some(w) = writer {
                w.close()?;
            }
            pages += n;
        }
        Ok(pages)
    }
}

/// What a memory dump produced.
#[derive(Debug)]
pub struct MemoryDump {
    /// The mm entry, VMAs included.
    pub mm: pb::MmEntry,
    /// Pages written.
    pub pages: u64,
    /// The last pages, still being written by the task.
    pub in_flight: Option<PagesInFlight>,
}

/// Dump the memory of `pid`, whose VMAs were `maps` when it was seized (before cryo mapped
/// anything of its own in it): VMAs into the returned mm entry (file mappings added to `files`),
/// pages into `pagemap-IMAGE_ID.img` + `pages-N.img` (`image_id` is the process's PID as the
/// images name it: in its own pid namespace, or the leader's when `pid` is another thread).
/// `brk` is the task's current break; pages images take their ids from `cx`.
#[allow(clippy::too_many_arguments)]
pub fn dump_memory(
    pid: Pid,
    image_id: u64,
    maps: &[MapsEntry],
    inj: Option<&Injector>,
    cx: &mut DumpCx,
    files: &mut FileTable,
    brk: u64,
) -> Result<MemoryDump> {
    let dir = cx.dir;
    let stat = procfs::read_stat(pid)?;
    let pm = File::open(format!("/proc/{pid}/pagemap")).task_ctx("open pagemap", pid)?;
    let procmem = mem::ProcMem::open(pid).task_ctx("open /proc/PID/mem", pid)?;
    let mut sink = PageSink::create(dir, cx.pages_id, inj)?;
    cx.pages_id += 1;
    let mut vmas = Vec::new();
    let mut total = 0u64;
    for m in maps {
        let mut vma = vma_entry(m);
        let st = vma.status;
        if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            let link_path = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let fdflags = map_file_flags(&link_path, m);
            // Only a mapping named like a memfd is stat'ed again to tell.
            let meta = m
                .path
                .starts_with(memfd::MEMFD_PREFIX)
                .then(|| std::fs::metadata(&link_path).ok())
                .flatten();
            let what = format!("mapping {:x}-{:x} of pid {pid}", m.start, m.end);
            vma.shmid = if memfd::is_memfd(&m.path, meta.as_ref(), &what)? {
                // Its contents go with the memfd's inode; private copies as for any file.
                vma.status |= VMA_AREA_MEMFD;
                u64::from(memfd::dump_vma(files, cx, &link_path, &m.path, fdflags)?)
            } else {
                u64::from(reg::add_path(
                    files, cx, pid, &link_path, &m.path, fdflags, 0,
                )?)
            };
            vma.fdflags = Some(fdflags);
        }
        // Droppable memory may be dropped by the kernel at any time: nothing to keep.
        let copy = st & VMA_AREA_REGULAR != 0
            && st & (VMA_AREA_VDSO | VMA_AREA_VVAR) == 0
            && st & VMA_FILE_SHARED == 0
            && vma.flags & MAP_DROPPABLE as u32 == 0;
        if copy && st & VMA_ANON_SHARED != 0 {
            // Shared memory: what the object holds, whether this process has it mapped in its
            // page tables or not (pagemap would miss pages only the page cache has).
            let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let obj = File::open(&link).map_err(|source| Error::Path {
                what: "open shared memory".into(),
                path: link.clone(),
                source,
            })?;
            total += cx.shmem.add_from_object(
                dir,
                &mut cx.pages_id,
                vma.shmid,
                &obj,
                m.offset,
                m.offset + m.len(),
            )?;
        } else if copy {
            let words = read_pagemap(&pm, pid, m.start, m.end)?;
            let private_file = st & VMA_FILE_PRIVATE != 0;
            let pm_opt = (!m.read).then_some(&procmem);
            let mut i = 0usize;
            while i < words.len() {
                let wanted = |w: u64| {
                    if private_file {
                        w & PM_PRESENT != 0 && w & PM_FILE == 0 || w & PM_SWAP != 0
                    } else {
                        w & (PM_PRESENT | PM_SWAP) != 0
                    }
                };
                if !wanted(words[i]) {
                    i += 1;
                    continue;
                }
                let mut j = i + 1;
                while j < words.len() && wanted(words[j]) {
                    j += 1;
                }
                let addr = m.start + i as u64 * PAGE_SIZE;
                let nr = (j - i) as u64;
                sink.add(pid, pm_opt, addr, nr, addr)?;
                total += nr;
                i = j;
            }
        }
        vmas.push(vma);
    }
    let (_, writer) = sink.finish(dir, ImageKind::Pagemap, image_id)?;
    // The memfds this process holds, by fd (dumped before its memory) or mapped.
    total += memfd::dump_contents(files, cx)?;
    let exe_link = std::fs::read_link(format!("/proc/{pid}/exe")).task_ctx("read exe link", pid)?;
    let exe_file_id = reg::add_path(
        files,
        cx,
        pid,
        &format!("/proc/{pid}/exe"),
        &exe_link.to_string_lossy(),
        libc::O_RDONLY as u32,
        0,
    )?;
    let auxv = procfs::read_auxv(pid)?;
    debug!(
        pid = pid.0,
        vmas = vmas.len(),
        pages = total,
        "memory dumped"
    );
    // Last, so that nothing can fail with the task busy writing.
    let in_flight = match writer {
        Some(w) => w.start()?,
        None => None,
    };
    Ok(MemoryDump {
        mm: pb::MmEntry {
            mm_start_code: stat.start_code,
            mm_end_code: stat.end_code,
            mm_start_data: stat.start_data,
            mm_end_data: stat.end_data,
            mm_start_stack: stat.start_stack,
            mm_start_brk: stat.start_brk,
            mm_brk: brk,
            mm_arg_start: stat.arg_start,
            mm_arg_end: stat.arg_end,
            mm_env_start: stat.env_start,
            mm_env_end: stat.env_end,
            exe_file_id,
            mm_saved_auxv: auxv,
            vmas,
            dumpable: None,
            aios: Vec::new(),
            thp_disabled: None,
        },
        pages: total,
        in_flight,
    })
}

fn is_vdso_block(v: &pb::VmaEntry) -> bool {
    v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR) != 0
}

/// `struct prctl_mm_map` (include/uapi/linux/prctl.h), 104 bytes.
fn prctl_mm_map_bytes(mm: &pb::MmEntry, auxv_addr: u64, auxv_len: u32, exe_fd: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    for v in [
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv_addr,
    ] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&auxv_len.to_ne_bytes());
    b.extend_from_slice(&exe_fd.to_ne_bytes());
    b
}

/// The puppet's vvar/vdso block: (name, start, end) in address order.
fn own_vdso_block(maps: &[MapsEntry]) -> Vec<(String, u64, u64)> {
    maps.iter()
        .filter(|m| matches!(m.path.as_str(), "[vdso]" | "[vvar]" | "[vvar_vclock]"))
        .map(|m| (m.path.clone(), m.start, m.end))
        .collect()
}

/// Move the puppet's vvar/vdso block onto the dumped one's addresses. Both blocks must have the
/// same layout (the same kernel); `temp` is an address range free in the puppet and in the
/// target, used to avoid overlapping moves. Returns the new vDSO range.
pub fn restore_vdso(
    inj: &Injector,
    target: &[pb::VmaEntry],
    temp: u64,
) -> Result<Option<(u64, u64)>> {
    let pid = inj.pid();
    let own = own_vdso_block(&procfs::read_smaps(pid)?);
    let tgt: Vec<&pb::VmaEntry> = target.iter().filter(|v| is_vdso_block(v)).collect();
    if tgt.is_empty() {
        return Ok(None);
    }
    let layout_own: Vec<u64> = own.iter().map(|(_, s, e)| e - s).collect();
    let layout_tgt: Vec<u64> = tgt.iter().map(|v| v.end - v.start).collect();
    let own_start = own.first().map(|o| o.1).unwrap_or(0);
    let tgt_start = tgt[0].start;
    let gaps_own: Vec<u64> = own.iter().map(|(_, s, _)| s - own_start).collect();
    let gaps_tgt: Vec<u64> = tgt.iter().map(|v| v.start - tgt_start).collect();
    if layout_own != layout_tgt || gaps_own != gaps_tgt {
        return Err(Error::Unsupported(format!(
            "a vDSO layout different from this kernel's (dumped {layout_tgt:?}, here {layout_own:?})"
        )));
    }
    if own_start == tgt_start {
        return Ok(own.iter().find(|o| o.0 == "[vdso]").map(|o| (o.1, o.2)));
    }
    // Two moves: to the temporary place, then to the final one, so no move overlaps itself.
    for (step_from, step_to) in [(own_start, temp), (temp, tgt_start)] {
        for (_, s, e) in &own {
            let from = s - own_start + step_from;
            let to = s - own_start + step_to;
            inj.syscall(
                "move the vDSO",
                libc::SYS_mremap,
                &[
                    from,
                    e - s,
                    e - s,
                    (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                    to,
                ],
            )?;
        }
    }
    Ok(tgt
        .iter()
        .find(|v| v.status & VMA_AREA_VDSO != 0)
        .map(|v| (v.start, v.end)))
}

/// Unmap everything in the puppet but the ranges in `keep` (sorted, non-overlapping).
pub fn unmap_all_but(inj: &Injector, keep: &[(u64, u64)]) -> Result<()> {
    const TASK_SIZE: u64 = 0x7fff_ffff_f000;
    let mut at = PAGE_SIZE;
    for &(s, e) in keep {
        if s > at {
            inj.syscall("unmap cryo's memory", libc::SYS_munmap, &[at, s - at])?;
        }
        at = at.max(e);
    }
    if at < TASK_SIZE {
        inj.syscall(
            "unmap cryo's memory",
            libc::SYS_munmap,
            &[at, TASK_SIZE - at],
        )?;
    }
    Ok(())
}

/// The private VMAs of `mm` that a puppet forked from its restored parent keeps from it
/// (copy-on-write): anonymous ones the parent's image has with the same range and flags, and
/// file ones that are the same mapping in both images (same range, protection, flags, offset,
/// open mode, and the same file as restore opens it; `files` resolves the file ids, which
/// differ between processes). Their pages stay shared with the parent wherever the contents
/// are equal. A VMA the parent does not pass on at fork (MADV_DONTFORK) or passes on empty
/// (MADV_WIPEONFORK) is never inherited, and neither is a locked one (MADV_DONTNEED, which
/// the refill needs, refuses locked memory) nor a hugetlb one (pages are compared and dropped
/// 4 KiB at a time). An anonymous VMA is kept only if `shares_pages` says it can share
/// something (see [`shares_a_page`]).
pub fn inherited_vmas(
    mm: &pb::MmEntry,
    parent: Option<&pb::MmEntry>,
    files: &FileTable,
    shares_pages: impl Fn(&pb::VmaEntry) -> bool,
) -> Vec<(u64, u64)> {
    let Some(parent) = parent else {
        return Vec::new();
    };
    let not_at_fork = (1u64 << libc::MADV_DONTFORK) | (1u64 << libc::MADV_WIPEONFORK);
    let inheritable = |v: &pb::VmaEntry| {
        v.status & VMA_AREA_REGULAR != 0
            && v.status & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE) != 0
            && !is_vdso_block(v)
            && v.flags & (libc::MAP_LOCKED | libc::MAP_HUGETLB) as u32 == 0
            && v.madv.unwrap_or(0) & not_at_fork == 0
    };
    // The path restore maps a private file VMA from (None: not a file mapping cryo knows).
    let mapped_file = |v: &pb::VmaEntry| -> Option<String> {
        let id = u32::try_from(v.shmid).ok()?;
        if v.status & VMA_AREA_MEMFD != 0 {
            memfd::map_path(files, id).ok()
        } else {
            reg::open_path(files, id).ok()
        }
    };
    let same_mapping = |v: &pb::VmaEntry, p: &pb::VmaEntry| {
        if p.start != v.start || p.end != v.end || p.flags != v.flags || p.status != v.status {
            return false;
        }
        if v.status & VMA_FILE_PRIVATE == 0 {
            return true;
        }
        p.prot == v.prot
            && p.pgoff == v.pgoff
            && p.fdflags == v.fdflags
            && mapped_file(v).is_some_and(|f| mapped_file(p).as_ref() == Some(&f))
    };
    mm.vmas
        .iter()
        .filter(|v| {
            inheritable(v)
                && parent
                    .vmas
                    .iter()
                    .any(|p| inheritable(p) && same_mapping(v, p))
                && (v.status & VMA_ANON_PRIVATE == 0 || shares_pages(v))
        })
        .map(|v| (v.start, v.end))
        .collect()
}

/// Whether keeping the creator's copy of anonymous VMA `start..end` can share a page: the
/// creator has none there (nothing to drop), or a page of this process's image is the same as
/// the creator's at that address. Memory that each process mapped after the fork lands at the
/// same address in both and looks inherited; with other contents throughout it is better
/// mapped fresh than inherited and dropped page by page. `mine` and `theirs` are the two pages
/// images, with their pagemaps.
pub fn shares_a_page(
    mine: (&MappedFile, &[pb::PagemapEntry]),
    theirs: (&MappedFile, &[pb::PagemapEntry]),
    start: u64,
    end: u64,
) -> bool {
    let their_runs = runs_in(theirs.1, start, end);
    if their_runs.is_empty() {
        return true;
    }
    let (my_bytes, their_bytes) = (mine.0.bytes(), theirs.0.bytes());
    let page = PAGE_SIZE as usize;
    fn at(bytes: &[u8], off: u64, page: usize) -> Option<&[u8]> {
        bytes.get(off as usize..(off as usize).saturating_add(page))
    }
    let mut t = 0usize;
    for (a, l, off) in runs_in(mine.1, start, end) {
        let mut p = 0;
        while p < l {
            let addr = a + p;
            while t < their_runs.len() && their_runs[t].0 + their_runs[t].1 <= addr {
                t += 1;
            }
            let Some(&(ta, tl, toff)) = their_runs.get(t) else {
                return false;
            };
            if ta <= addr && addr < ta + tl {
                match (
                    at(my_bytes, off + p, page),
                    at(their_bytes, toff + addr - ta, page),
                ) {
                    (Some(x), Some(y)) if x == y => return true,
                    // A short image: the refill reports it.
                    (None, _) | (_, None) => return true,
                    _ => {}
                }
            }
            p += PAGE_SIZE;
        }
    }
    false
}

/// What a forked puppet inherited from its creator: the VMA ranges it keeps
/// ([`inherited_vmas`]) and what they hold, which is the creator's restored memory, i.e. its
/// pagemap and pages image.
pub struct Inherited<'a> {
    /// VMA ranges kept.
    pub ranges: Vec<(u64, u64)>,
    /// The creator's pagemap.
    pub pagemap: &'a [pb::PagemapEntry],
    /// The creator's pages image mapped in cryo (None: compare with the live memory instead).
    pub pages: Option<Arc<MappedFile>>,
}

impl Inherited<'_> {
    /// Nothing inherited (the root, or a process whose parent shares none of its VMAs).
    pub fn none() -> Inherited<'static> {
        Inherited {
            ranges: Vec::new(),
            pagemap: &[],
            pages: None,
        }
    }
}

/// Runs `(addr, len, file offset)` of `pagemap` clipped to `[start, end)`, in address order.
fn runs_in(pagemap: &[pb::PagemapEntry], start: u64, end: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0u64;
    for pe in pagemap {
        let len = pe_len(pe);
        let (s, e) = (pe.vaddr.max(start), (pe.vaddr + len).min(end));
        if s < e {
            out.push((s, e - s, off + (s - pe.vaddr)));
        }
        off += len;
    }
    out.sort_unstable();
    out
}

/// Add `[a, a + len)` to `ranges`, merging with the last one when adjacent.
fn push_range(ranges: &mut Vec<(u64, u64)>, a: u64, len: u64) {
    match ranges.last_mut() {
        Some((s, l)) if *s + *l == a => *l += len,
        _ => ranges.push((a, len)),
    }
}

/// How the pages an inherited VMA must change get their contents.
enum Refill<'a> {
    /// UFFDIO_COPY after MADV_DONTNEED (anonymous memory only: userfaultfd does not take
    /// private mappings of ordinary files).
    Uffd(&'a Userfaultfd),
    /// Written through /proc/PID/mem: a forced write breaks the sharing of that page only, and
    /// works whatever the VMA's protection (the kernel copies the page for a private mapping).
    Mem(&'a File),
}

/// The fast way to bring an inherited VMA to its dumped contents: the creator's pages (from
/// its image, which is what the VMA holds) are compared with this process's in cryo's memory,
/// without touching the task. Equal pages stay shared with the creator. Pages that differ are
/// refilled ([`Refill`]). The creator's pages this process does not have are dropped with
/// MADV_DONTNEED, which gives back zeros in anonymous memory and the file's page in a private
/// file mapping (`file`), either way what this process had there. In a file mapping, a page
/// only this process has is always written (the file's page is not zeros).
#[allow(clippy::too_many_arguments)]
fn fill_inherited_from_images(
    inj: &Injector,
    refill: Refill,
    map: &MappedFile,
    image: &str,
    parent_map: &MappedFile,
    parent_runs: &[(u64, u64, u64)],
    vma: &pb::VmaEntry,
    runs: &[(u64, u64, u64)],
    file: bool,
) -> Result<()> {
    let pid = inj.pid();
    let (mine, theirs) = (map.bytes(), parent_map.bytes());
    let page = PAGE_SIZE;
    for &(_, l, off) in runs {
        if off.saturating_add(l) > mine.len() as u64 {
            return Err(Error::BadImage {
                image: image.to_string(),
                what: format!(
                    "ends at offset {}, before the pages its pagemap lists",
                    mine.len()
                ),
            });
        }
    }
    if parent_runs
        .iter()
        .any(|&(_, l, off)| off.saturating_add(l) > theirs.len() as u64)
    {
        return Err(Error::Unsupported(
            "a short pages image of the parent".into(),
        ));
    }
    // The creator's page at `addr`, if it has one (the runs are sorted; `at` only advances).
    let mut at = 0usize;
    let mut parent_page = |addr: u64| -> Option<&[u8]> {
        while at < parent_runs.len() && parent_runs[at].0 + parent_runs[at].1 <= addr {
            at += 1;
        }
        let &(a, l, off) = parent_runs.get(at)?;
        (a <= addr && addr < a + l).then(|| {
            let o = (off + addr - a) as usize;
            &theirs[o..o + page as usize]
        })
    };
    // UFFDIO_COPY only fills missing pages: a page it rewrites is dropped first.
    let zap_differing = matches!(refill, Refill::Uffd(_));
    let mut zap = Vec::new();
    let mut copy: Vec<(u64, u64, u64)> = Vec::new();
    for &(a, l, off) in runs {
        let mut p = 0;
        while p < l {
            let want = &mine[(off + p) as usize..(off + p + page) as usize];
            let same = match parent_page(a + p) {
                Some(have) => have == want,
                // Not there in the creator: the file's page, or zeros in anonymous memory.
                None => !file && want.iter().all(|&b| b == 0),
            };
            if !same {
                if zap_differing {
                    push_range(&mut zap, a + p, page);
                }
                match copy.last_mut() {
                    Some((s, cl, co)) if *s + *cl == a + p && *co + *cl == off + p => *cl += page,
                    _ => copy.push((a + p, page, off + p)),
                }
            }
            p += page;
        }
    }
    // The creator's pages this process does not have at all.
    let mut ci = 0usize;
    for &(a, l, _) in parent_runs {
        let mut p = a;
        while p < a + l {
            while ci < runs.len() && runs[ci].0 + runs[ci].1 <= p {
                ci += 1;
            }
            let covered = runs.get(ci).is_some_and(|r| r.0 <= p && p < r.0 + r.1);
            if !covered {
                push_range(&mut zap, p, page);
            }
            p += page;
        }
    }
    zap.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(zap.len());
    for (a, l) in zap {
        push_range(&mut merged, a, l);
    }
    for &(a, l) in &merged {
        inj.syscall(
            "drop inherited pages",
            libc::SYS_madvise,
            &[a, l, libc::MADV_DONTNEED as u64],
        )?;
    }
    if copy.is_empty() {
        return Ok(());
    }
    match refill {
        Refill::Uffd(uffd) => {
            let len = vma.end - vma.start;
            uffd.register(vma.start, len)
                .task_ctx("register memory with userfaultfd", pid)?;
            let res = copy
                .iter()
                .try_for_each(|&(a, l, off)| uffd.copy(a, &mine[off as usize..(off + l) as usize]));
            let unreg = uffd
                .unregister(vma.start, len)
                .task_ctx("unregister memory from userfaultfd", pid);
            res.task_ctx("copy pages (UFFDIO_COPY)", pid)?;
            unreg
        }
        Refill::Mem(mem) => copy.iter().try_for_each(|&(a, l, off)| {
            mem.write_all_at(&mine[off as usize..(off + l) as usize], a)
                .task_ctx("write memory", pid)
        }),
    }
}

/// Bring an inherited private VMA to its dumped contents while keeping every page that is
/// already right shared with the parent: pages of `runs` that differ are written through
/// /proc/PID/mem (which breaks the sharing of that page only), and what the image does not
/// list is zapped with MADV_DONTNEED, back to zero pages in anonymous memory and to the file's
/// pages in a file mapping. The slow way, for when the parent's pages image cannot be mapped.
fn fill_inherited(
    inj: &Injector,
    mem: &File,
    map: &MappedFile,
    image: &str,
    vma: &pb::VmaEntry,
    runs: &[(u64, u64, u64)],
) -> Result<()> {
    let pid = inj.pid();
    let bytes = map.bytes();
    let page = PAGE_SIZE as usize;
    let longest = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let mut buf = vec![0u8; (longest as usize).min(CHUNK_BYTES)];
    let mut at = vma.start;
    let zap = |from: u64, to: u64| -> Result<()> {
        if from < to {
            inj.syscall(
                "zap pages the image does not list",
                libc::SYS_madvise,
                &[from, to - from, libc::MADV_DONTNEED as u64],
            )?;
        }
        Ok(())
    };
    for &(addr, len, off) in runs {
        if off.saturating_add(len) > bytes.len() as u64 {
            return Err(Error::BadImage {
                image: image.to_string(),
                what: format!(
                    "ends at offset {}, before the pages its pagemap lists",
                    bytes.len()
                ),
            });
        }
        zap(at, addr)?;
        at = addr + len;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK_BYTES as u64) as usize;
            let cur = &mut buf[..n];
            mem.read_exact_at(cur, addr + done)
                .task_ctx("read inherited memory", pid)?;
            let want = &bytes[(off + done) as usize..(off + done) as usize + n];
            // Write runs of differing pages, each in one call.
            let mut p = 0usize;
            while p < n {
                if cur[p..p + page] == want[p..p + page] {
                    p += page;
                    continue;
                }
                let first = p;
                while p < n && cur[p..p + page] != want[p..p + page] {
                    p += page;
                }
                mem.write_all_at(&want[first..p], addr + done + first as u64)
                    .task_ctx("write memory", pid)?;
            }
            done += n as u64;
        }
    }
    zap(at, vma.end)
}

/// Map and fill every VMA of `mm` in the puppet: pages come from `pages`; shared anonymous
/// memory is mapped from the objects cryo made (`shared`), filled already. The ranges of
/// `inherited` are mapped already, with the creator's contents.
#[allow(clippy::too_many_arguments)]
pub fn restore_vmas(
    inj: &Injector,
    mm: &pb::MmEntry,
    pagemap: &[pb::PagemapEntry],
    pages: &PagesSource,
    shared: &SharedAnon,
    files: &FileTable,
    inherited: &Inherited,
    fills: &mut PendingFills,
) -> Result<()> {
    // Inherited memory that userfaultfd cannot fill (file mappings, or no userfaultfd) is
    // written through /proc/PID/mem by cryo; without the parent's image it is compared there.
    let mem = match (inherited.ranges.is_empty(), &pages.map) {
        (false, Some(_)) => Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/{}/mem", inj.pid()))
                .task_ctx("open the memory", inj.pid())?,
        ),
        _ => None,
    };
    for vma in &mm.vmas {
        let st = vma.status;
        if st & VMA_AREA_REGULAR == 0 || is_vdso_block(vma) {
            continue;
        }
        let len = vma.end - vma.start;
        let runs = if st & VMA_ANON_SHARED != 0 {
            Vec::new()
        } else {
            runs_in(pagemap, vma.start, vma.end)
        };
        if inherited.ranges.contains(&(vma.start, vma.end)) {
            if let (Some(mem), Some(map)) = (&mem, &pages.map) {
                let file = st & VMA_FILE_PRIVATE != 0;
                let fast = match &inherited.pages {
                    Some(pmap) => {
                        let refill = match &pages.uffd {
                            Some(uffd) if !file => {
                                // Writable while pages are copied in; the final protection
                                // follows.
                                inj.syscall(
                                    "protect a VMA",
                                    libc::SYS_mprotect,
                                    &[vma.start, len, u64::from(fill_prot_of(vma))],
                                )?;
                                Refill::Uffd(uffd)
                            }
                            _ => Refill::Mem(mem),
                        };
                        let parent_runs = runs_in(inherited.pagemap, vma.start, vma.end);
                        match fill_inherited_from_images(
                            inj,
                            refill,
                            map,
                            &pages.image,
                            pmap,
                            &parent_runs,
                            vma,
                            &runs,
                            file,
                        ) {
                            Ok(()) => true,
                            Err(e @ Error::BadImage { .. }) => return Err(e),
                            Err(e) => {
                                debug!(
                                    "inherited VMA {:#x}: {e}; comparing live memory",
                                    vma.start
                                );
                                false
                            }
                        }
                    }
                    None => false,
                };
                if !fast {
                    fill_inherited(inj, mem, map, &pages.image, vma, &runs)?;
                }
                inj.syscall(
                    "protect a VMA",
                    libc::SYS_mprotect,
                    &[vma.start, len, u64::from(vma.prot)],
                )?;
                apply_madvise(inj, vma)?;
                continue;
            }
        }
        // Writable while it is filled.
        let fill_prot = if runs.is_empty() {
            vma.prot
        } else {
            vma.prot | (libc::PROT_READ | libc::PROT_WRITE) as u32
        };
        let mut flags = vma.flags | libc::MAP_FIXED as u32;
        let (path, oflags) = if st & VMA_ANON_SHARED != 0 {
            // The object cryo made and filled: map its part, through cryo's fd.
            let obj = shared.get(&vma.shmid).ok_or_else(|| Error::BadImage {
                image: "mm".into(),
                what: format!("no shared memory object {}", vma.shmid),
            })?;
            (
                Some(format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    obj.as_raw_fd()
                )),
                libc::O_RDWR as u32,
            )
        } else if st & VMA_AREA_MEMFD != 0 {
            // The memfd cryo made and filled: every process maps the same one.
            let id = u32::try_from(vma.shmid).map_err(|_| Error::BadImage {
                image: "mm".into(),
                what: format!("memfd file id {} out of range", vma.shmid),
            })?;
            let rw =
                vma.flags & libc::MAP_SHARED as u32 != 0 && vma.prot & libc::PROT_WRITE as u32 != 0;
            (
                Some(memfd::map_path(files, id)?),
                vma.fdflags.unwrap_or(if rw {
                    libc::O_RDWR as u32
                } else {
                    libc::O_RDONLY as u32
                }),
            )
        } else if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            (
                Some(reg::open_path(files, vma.shmid as u32)?),
                vma.fdflags.unwrap_or(libc::O_RDONLY as u32),
            )
        } else {
            (None, 0)
        };
        let fd = match &path {
            Some(path) => {
                let s = inj.scratch();
                let p = s.cstr(path)?;
                flags &= !(libc::MAP_ANONYMOUS as u32);
                inj.syscall(
                    &format!("open mapped file {path}"),
                    libc::SYS_openat,
                    &[
                        libc::AT_FDCWD as u64,
                        p.0,
                        u64::from(oflags | libc::O_CLOEXEC as u32),
                        0,
                    ],
                )
                .map_err(|e| Error::Restore {
                    what: format!("mapping of {path} at {:#x}", vma.start),
                    pid: inj.pid(),
                    image: "mm".into(),
                    source: Box::new(e),
                })?
            }
            None => u64::MAX,
        };
        let addr = inj.syscall(
            "map a VMA",
            libc::SYS_mmap,
            &[
                vma.start,
                len,
                u64::from(fill_prot),
                u64::from(flags),
                fd,
                if fd == u64::MAX { 0 } else { vma.pgoff },
            ],
        );
        if fd != u64::MAX {
            inj.syscall("close mapped file", libc::SYS_close, &[fd])?;
        }
        let addr = addr.map_err(|e| Error::Restore {
            what: format!("VMA {:#x}-{:#x}", vma.start, vma.end),
            pid: inj.pid(),
            image: "mm".into(),
            source: Box::new(e),
        })?;
        if addr != vma.start {
            return Err(Error::Unsupported(format!(
                "VMA {:#x} landed at {addr:#x}",
                vma.start
            )));
        }
        if !runs.is_empty() {
            // UFFDIO_COPY only fills pages that are not there yet: a locked VMA is populated
            // by mmap already. It is left to the copier threads (see [`PendingFills`]);
            // what fails there is read with pread, which overwrites.
            let by_uffd = match (&pages.uffd, &pages.map) {
                (Some(uffd), Some(map))
                    if st & VMA_ANON_PRIVATE != 0 && vma.flags & libc::MAP_LOCKED as u32 == 0 =>
                {
                    check_runs(map, &pages.image, &runs)?;
                    match uffd.register(vma.start, len) {
                        Ok(()) => {
                            fills.add(pages.copier, uffd, map, vma, fill_prot, runs.clone());
                            true
                        }
                        Err(e) => {
                            debug!(
                                "userfaultfd for VMA {:#x}: {e}; reading with pread",
                                vma.start
                            );
                            false
                        }
                    }
                }
                _ => false,
            };
            if !by_uffd {
                for &(s, l, off) in &runs {
                    pread_all(inj, pages.fd, &pages.image, s, l, off)?;
                }
            }
            if fill_prot != vma.prot {
                inj.syscall(
                    "protect a VMA",
                    libc::SYS_mprotect,
                    &[vma.start, len, u64::from(vma.prot)],
                )?;
            }
        }
        apply_madvise(inj, vma)?;
    }
    Ok(())
}

/// The protection a VMA is filled with: its own, plus read and write.
fn fill_prot_of(vma: &pb::VmaEntry) -> u32 {
    vma.prot | (libc::PROT_READ | libc::PROT_WRITE) as u32
}

/// The madvise flags the VMA had.
fn apply_madvise(inj: &Injector, vma: &pb::VmaEntry) -> Result<()> {
    if let Some(madv) = vma.madv {
        for bit in 0..64u64 {
            if madv & (1 << bit) != 0 {
                inj.syscall(
                    "madvise a VMA",
                    libc::SYS_madvise,
                    &[vma.start, vma.end - vma.start, bit],
                )?;
            }
        }
    }
    Ok(())
}

fn pe_len(pe: &pb::PagemapEntry) -> u64 {
    pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages)) * PAGE_SIZE
}

/// Shared anonymous objects re-created by cryo, by shmid, kept open as files: every restored
/// process maps its part of the same object.
pub type SharedAnon = BTreeMap<u64, File>;

/// Re-create every shared anonymous object the VMAs of the tree use, sized to cover all of
/// them, and fill it from its shmem pagemap (`shmem`: shmid -> (pages id, entries)).
pub fn make_shared_anon(
    dir: &Path,
    vmas: &[&pb::VmaEntry],
    shmem: &BTreeMap<u64, (u32, Vec<pb::PagemapEntry>)>,
) -> Result<SharedAnon> {
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for v in vmas.iter().filter(|v| v.status & VMA_ANON_SHARED != 0) {
        let end = v.pgoff.saturating_add(v.end.saturating_sub(v.start));
        let e = sizes.entry(v.shmid).or_insert(0);
        *e = (*e).max(end);
    }
    let mut out = SharedAnon::new();
    for (shmid, size) in sizes {
        let obj = cryo_sys::shmem::anon_shared_object(size).map_err(|source| Error::Path {
            what: "create shared memory".into(),
            path: format!("shmem {shmid}"),
            source,
        })?;
        if let Some((pages_id, entries)) = shmem.get(&shmid) {
            fill_object(dir, shmid, &obj, size, *pages_id, entries)?;
        }
        out.insert(shmid, obj);
    }
    Ok(out)
}

/// Fill `obj` (a memfd of `size` bytes) from `pagemap-shmem-SHMID.img` and its pages image,
/// if there is one (a memfd that held nothing has none).
pub(crate) fn fill_shmem_object(dir: &Path, shmid: u64, obj: &File, size: u64) -> Result<()> {
    match cryo_image::pagemap::read_pagemap(dir, ImageKind::ShmemPagemap, shmid) {
        Ok((head, entries)) => fill_object(dir, shmid, obj, size, head.pages_id, &entries),
        Err(cryo_image::ImageError::Missing { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Write the pages `entries` list (offsets in the object) from `pages-PAGES_ID.img` into
/// `obj`, whose size is `size`: the last page is cut at the size, so the object never grows.
fn fill_object(
    dir: &Path,
    shmid: u64,
    obj: &File,
    size: u64,
    pages_id: u32,
    entries: &[pb::PagemapEntry],
) -> Result<()> {
    let image = ImageKind::Pages.file_name(Some(u64::from(pages_id)))?;
    let path = dir.join(&image);
    let pages = File::open(&path).map_err(|source| Error::Path {
        what: "open".into(),
        path: path.display().to_string(),
        source,
    })?;
    let mut buf = Vec::new();
    let mut off = 0u64;
    for pe in entries {
        let len = pe_len(pe);
        if pe.vaddr.saturating_add(len) > size.div_ceil(PAGE_SIZE) * PAGE_SIZE {
            return Err(Error::BadImage {
                image: format!("pagemap-shmem-{shmid}.img"),
                what: format!("pages at offset {:#x} beyond the object", pe.vaddr),
            });
        }
        buf.resize(len as usize, 0);
        pages
            .read_exact_at(&mut buf, off)
            .map_err(|source| Error::Path {
                what: format!("read at offset {off} of"),
                path: image.clone(),
                source,
            })?;
        let keep = len.min(size.saturating_sub(pe.vaddr)) as usize;
        obj.write_all_at(&buf[..keep], pe.vaddr)
            .map_err(|source| Error::Path {
                what: "fill shared memory".into(),
                path: format!("shmem {shmid}"),
                source,
            })?;
        off += len;
    }
    Ok(())
}

/// Where a task's pages come from at restore: the pages image open in the puppet (for pread),
/// and, when userfaultfd works, the same image mapped in cryo and a userfaultfd on the
/// puppet's memory (for UFFDIO_COPY).
pub struct PagesSource<'a> {
    /// The threads that copy pages in.
    pub copier: &'a Copier,
    /// The image's fd in the puppet.
    pub fd: u64,
    /// The image's name, for errors.
    pub image: String,
    /// The image mapped in cryo.
    pub map: Option<Arc<MappedFile>>,
    /// A userfaultfd on the puppet's memory.
    pub uffd: Option<Arc<Userfaultfd>>,
}

/// The runs of one copy job at most: a big VMA is shared out between the copier threads.
const COPY_JOB_BYTES: u64 = 4 << 20;

/// Every run `(addr, len, file offset)` must lie inside the mapped pages image.
fn check_runs(map: &MappedFile, image: &str, runs: &[(u64, u64, u64)]) -> Result<()> {
    let size = map.bytes().len() as u64;
    for &(_, l, off) in runs {
        if off.saturating_add(l) > size {
            return Err(Error::BadImage {
                image: image.to_string(),
                what: format!("ends at offset {size}, before the pages its pagemap lists"),
            });
        }
    }
    Ok(())
}

/// Copy runs `(addr, len, file offset)` from `map` into the registered memory of `uffd`: the
/// pages are allocated with their contents, never zeroed first.
fn copy_runs(
    uffd: &Userfaultfd,
    map: &MappedFile,
    runs: &[(u64, u64, u64)],
) -> std::io::Result<()> {
    // A test build can fail every copy here, to take the pread way (`restore-copy`).
    crate::dump::fault_point("restore-copy").map_err(std::io::Error::other)?;
    let bytes = map.bytes();
    for &(addr, l, off) in runs {
        map.populate(off as usize, l as usize);
        let src = bytes
            .get(off as usize..(off + l) as usize)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        uffd.copy(addr, src)?;
    }
    Ok(())
}

/// Work for a copier thread.
enum CopyJob {
    /// One piece of a VMA.
    Fill {
        uffd: Arc<Userfaultfd>,
        map: Arc<MappedFile>,
        runs: Vec<(u64, u64, u64)>,
        /// The VMA it belongs to, and where to say how it went.
        vma_start: u64,
        done: mpsc::Sender<(u64, std::io::Result<()>)>,
    },
    /// A pages image no longer needed, unmapped off the main thread (taking down the page
    /// table of a big mapping is work too).
    Unmap(Arc<MappedFile>),
}

impl CopyJob {
    fn run(self) {
        match self {
            CopyJob::Fill {
                uffd,
                map,
                runs,
                vma_start,
                done,
            } => {
                let res = copy_runs(&uffd, &map, &runs);
                let _ = done.send((vma_start, res));
            }
            CopyJob::Unmap(map) => drop(map),
        }
    }
}

/// Threads of cryo that fill puppets' anonymous memory with UFFDIO_COPY, one per CPU, while
/// the main thread goes on driving puppets (mapping the next VMAs, creating the next
/// processes): the copying of several processes runs on every CPU, overlapped with the rest.
/// A userfaultfd may be used from any thread; ptrace may not, so the puppets stay with the main
/// thread.
pub struct Copier {
    jobs: Option<mpsc::Sender<CopyJob>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Copier {
    /// Start the threads, one per CPU of `cpus`, where they may run (cryo's main thread is
    /// pinned to one of them). Without threads (none could be made) the jobs are done as they
    /// come.
    pub fn start(cpus: &[usize]) -> Copier {
        let n = cpus.len().max(1);
        let (tx, rx) = mpsc::channel::<CopyJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let cpus = cpus.to_vec();
            let spawned = std::thread::Builder::new()
                .name(format!("cryo-copy-{i}"))
                .spawn(move || {
                    let _ = cryo_sys::task::set_affinity(Pid(0), &cpus);
                    loop {
                        // The lock is held only to take a job, not while copying.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        job.run();
                    }
                });
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => debug!("no copier thread: {e}; pages copied by the main thread"),
            }
        }
        Copier {
            jobs: (!workers.is_empty()).then_some(tx),
            workers,
        }
    }

    fn send(&self, job: CopyJob) {
        match &self.jobs {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    job.run();
                }
            }
            None => job.run(),
        }
    }

    /// Let go of a mapped pages image on a copier thread.
    pub fn unmap(&self, map: Arc<MappedFile>) {
        self.send(CopyJob::Unmap(map));
    }
}

impl Drop for Copier {
    /// The threads end once the queue is closed and empty.
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A VMA registered with the puppet's userfaultfd and given to the copier.
struct FillVma {
    start: u64,
    len: u64,
    prot: u32,
    fill_prot: u32,
    runs: Vec<(u64, u64, u64)>,
    jobs: usize,
}

/// The memory of one puppet being filled by the copier threads. Until
/// [`PendingFills::complete`], a page of these VMAs that the copier has not reached yet blocks
/// whoever touches it: the puppet must not fork (its child would not inherit the pages) nor
/// run its own code before.
pub struct PendingFills {
    vmas: Vec<FillVma>,
    /// Where the copier threads answer: one answer per job.
    done_tx: mpsc::Sender<(u64, std::io::Result<()>)>,
    done_rx: mpsc::Receiver<(u64, std::io::Result<()>)>,
    uffd: Option<Arc<Userfaultfd>>,
    /// The pages image (its path as the puppet opens it, for pread where a copy fails; it is
    /// not kept open in the puppet meanwhile, where a process sharing its fd table could fork
    /// it away), and its name.
    pages_path: String,
    image: String,
}

impl PendingFills {
    /// Nothing yet. `pages_path` is the pages image, `image` its name for errors.
    pub fn new(pages_path: String, image: String) -> PendingFills {
        let (done_tx, done_rx) = mpsc::channel();
        PendingFills {
            vmas: Vec::new(),
            done_tx,
            done_rx,
            uffd: None,
            pages_path,
            image,
        }
    }

    /// Have `copier` fill `runs` of `vma`, which is registered with `uffd` already.
    fn add(
        &mut self,
        copier: &Copier,
        uffd: &Arc<Userfaultfd>,
        map: &Arc<MappedFile>,
        vma: &pb::VmaEntry,
        fill_prot: u32,
        runs: Vec<(u64, u64, u64)>,
    ) {
        let mut jobs = 0;
        let mut part = Vec::new();
        let mut bytes = 0u64;
        let mut send = |part: &mut Vec<(u64, u64, u64)>| {
            copier.send(CopyJob::Fill {
                uffd: Arc::clone(uffd),
                map: Arc::clone(map),
                runs: std::mem::take(part),
                vma_start: vma.start,
                done: self.done_tx.clone(),
            });
            jobs += 1;
        };
        for &(mut a, mut l, mut o) in &runs {
            while l > 0 {
                let take = l.min(COPY_JOB_BYTES - bytes);
                part.push((a, take, o));
                bytes += take;
                (a, l, o) = (a + take, l - take, o + take);
                if bytes == COPY_JOB_BYTES {
                    send(&mut part);
                    bytes = 0;
                }
            }
        }
        if !part.is_empty() {
            send(&mut part);
        }
        self.uffd.get_or_insert_with(|| Arc::clone(uffd));
        self.vmas.push(FillVma {
            start: vma.start,
            len: vma.end - vma.start,
            prot: vma.prot,
            fill_prot,
            runs,
            jobs,
        });
    }

    /// Wait for the copier, take the VMAs off the userfaultfd, and read with pread, in the
    /// puppet (`inj`), what it could not copy.
    pub fn complete(self, inj: &Injector) -> Result<()> {
        let pid = inj.pid();
        let PendingFills {
            vmas,
            done_tx,
            done_rx,
            uffd,
            pages_path,
            image,
        } = self;
        // Only the jobs hold senders now: an answer lost with a copier thread ends the wait.
        drop(done_tx);
        let total: usize = vmas.iter().map(|v| v.jobs).sum();
        let mut failed = BTreeMap::new();
        for _ in 0..total {
            let (start, res) = done_rx
                .recv()
                .map_err(|_| std::io::Error::other("a copier thread ended without an answer"))
                .task_ctx("copy pages (UFFDIO_COPY)", pid)?;
            if let Err(e) = res {
                failed.entry(start).or_insert(e);
            }
        }
        if let Some(uffd) = &uffd {
            for v in &vmas {
                uffd.unregister(v.start, v.len)
                    .task_ctx("unregister memory from userfaultfd", pid)?;
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        let fd = inj.open(&pages_path, libc::O_RDONLY as u32, &pages_path)?.0 as u64;
        let res = (|| {
            for v in vmas.iter().filter(|v| failed.contains_key(&v.start)) {
                debug!(
                    "UFFDIO_COPY of VMA {:#x}: {}; reading with pread",
                    v.start, failed[&v.start]
                );
                let protect = |prot: u32| {
                    inj.syscall(
                        "protect a VMA",
                        libc::SYS_mprotect,
                        &[v.start, v.len, u64::from(prot)],
                    )
                };
                if v.fill_prot != v.prot {
                    protect(v.fill_prot)?;
                }
                for &(s, l, off) in &v.runs {
                    pread_all(inj, fd, &image, s, l, off)?;
                }
                if v.fill_prot != v.prot {
                    protect(v.prot)?;
                }
            }
            Ok(())
        })();
        let closed = inj.syscall("close pages", libc::SYS_close, &[fd]);
        res.and(closed.map(|_| ()))
    }
}

/// pread64 in the puppet until `len` bytes are at `addr`.
fn pread_all(inj: &Injector, fd: u64, image: &str, addr: u64, len: u64, off: u64) -> Result<()> {
    let mut done = 0;
    while done < len {
        let n = inj.syscall(
            "read pages",
            libc::SYS_pread64,
            &[fd, addr + done, len - done, off + done],
        )?;
        if n == 0 {
            return Err(Error::BadImage {
                image: image.to_string(),
                what: format!(
                    "ends at offset {}, before the pages its pagemap lists",
                    off + done
                ),
            });
        }
        done += n;
    }
    Ok(())
}

/// Set the mm fields, auxv and exe link with one PR_SET_MM_MAP. `exe_fd` is an fd of the
/// executable open in the puppet.
pub fn restore_mm_fields(inj: &Injector, mm: &pb::MmEntry, exe_fd: Option<u64>) -> Result<()> {
    let auxv: Vec<u8> = mm
        .mm_saved_auxv
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let s = inj.scratch();
    let auxv_addr = s.bytes(&auxv)?;
    // -1: keep the exe link (the kernel refuses to replace one that is still mapped).
    let exe_fd = exe_fd.map_or(u32::MAX, |fd| fd as u32);
    let map = prctl_mm_map_bytes(mm, auxv_addr.0, auxv.len() as u32, exe_fd);
    let map_addr = s.bytes(&map)?;
    inj.syscall(
        "set mm fields (PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[
            libc::PR_SET_MM as u64,
            libc::PR_SET_MM_MAP as u64,
            map_addr.0,
            map.len() as u64,
            0,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pages image of `pages` (one byte value per page), mapped.
    fn image_of(name: &str, pages: &[u8]) -> MappedFile {
        let path = std::env::temp_dir().join(format!("cryo-{name}-{}", std::process::id()));
        let bytes: Vec<u8> = pages
            .iter()
            .flat_map(|&b| std::iter::repeat_n(b, PAGE_SIZE as usize))
            .collect();
        std::fs::write(&path, bytes).expect("write image");
        let f = File::open(&path).expect("open image");
        let _ = std::fs::remove_file(&path);
        MappedFile::map(&f).expect("map image")
    }

    #[test]
    fn a_vma_shares_pages_only_where_the_images_agree() {
        let pm = |vaddr: u64, n: u32| cryo_image::pagemap::pagemap_entry(vaddr, n, PE_PRESENT);
        let (a, p) = (0x10000u64, PAGE_SIZE);
        // The parent has pages 1, 2, 3 at a..a+3p.
        let parent = image_of("parent", &[1, 2, 3]);
        let parent_pm = [pm(a, 3)];
        // Another page 2 at a+p, a page at a+3p the parent lacks: nothing shared.
        let other = image_of("other", &[9, 4]);
        let other_pm = [pm(a + p, 1), pm(a + 3 * p, 1)];
        assert!(!shares_a_page(
            (&other, &other_pm),
            (&parent, &parent_pm),
            a,
            a + 4 * p
        ));
        // Page 3 still the parent's: shared.
        let same = image_of("same", &[7, 3]);
        let same_pm = [pm(a, 1), pm(a + 2 * p, 1)];
        assert!(shares_a_page(
            (&same, &same_pm),
            (&parent, &parent_pm),
            a,
            a + 4 * p
        ));
        // Outside the VMA the agreement does not count.
        assert!(!shares_a_page(
            (&same, &same_pm),
            (&parent, &parent_pm),
            a,
            a + 2 * p
        ));
        // Nothing of the parent's there: nothing to drop, inheriting costs nothing.
        assert!(shares_a_page(
            (&other, &other_pm),
            (&parent, &parent_pm),
            a + 3 * p,
            a + 4 * p
        ));
    }

    #[test]
    fn vma_kinds() {
        let text = "7ffe000-7fff000 rw-p 00000000 00:00 0 [stack]\nVmFlags: rd wr mr mw me gd ac\n\
7f0000-7f1000 rw-s 00000000 00:01 77 /dev/zero (deleted)\n\
400000-401000 r-xp 00001000 fe:01 12 /usr/bin/x\n\
500000-501000 ---p 00000000 00:00 0\nVmFlags: mr mw me dc\n";
        let m = procfs::parse_maps(text, "t").unwrap();
        let v: Vec<pb::VmaEntry> = m.iter().map(vma_entry).collect();
        assert_eq!(
            v[0].status,
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_STACK
        );
        assert!(v[0].flags & libc::MAP_GROWSDOWN as u32 != 0);
        assert_eq!(v[1].status, VMA_AREA_REGULAR | VMA_ANON_SHARED);
        assert_eq!(v[1].shmid, 77);
        assert_eq!(v[2].status, VMA_AREA_REGULAR | VMA_FILE_PRIVATE);
        assert_eq!(v[2].pgoff, 0x1000);
        assert_eq!(v[2].prot, (libc::PROT_READ | libc::PROT_EXEC) as u32);
        assert_eq!(v[3].prot, 0);
        assert_eq!(v[3].madv, Some(1 << libc::MADV_DONTFORK));
    }

    /// Which VMAs a child keeps from its parent: file mappings only of the same file (file ids
    /// differ between processes), offset and protection; nothing the parent does not pass on.
    #[test]
    fn inherited_file_and_anon_vmas() {
        let dir = std::env::temp_dir().join(format!("cryo-inherit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut entries = Vec::new();
        for (id, name) in [(1, "/data/a"), (2, "/data/a"), (3, "/data/b")] {
            entries.push(pb::FileEntry {
                r#type: pb::FdTypes::Reg as i32,
                id,
                reg: Some(pb::RegFileEntry {
                    id,
                    name: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        cryo_image::write_all_entries(&dir, ImageKind::Files, None, &entries).expect("write");
        let opts = crate::RestoreOptions {
            images_dir: dir.clone(),
            ..Default::default()
        };
        let files = FileTable::load(&crate::cx::RestoreCx::new(&opts)).expect("load");
        let _ = std::fs::remove_dir_all(&dir);
        let vma = |start: u64, st: u32, shmid: u64, pgoff: u64, prot: i32, madv: u64| {
            let anon = if st & VMA_ANON_PRIVATE != 0 {
                libc::MAP_ANONYMOUS
            } else {
                0
            };
            pb::VmaEntry {
                start,
                end: start + 0x4000,
                pgoff,
                shmid,
                prot: prot as u32,
                flags: (libc::MAP_PRIVATE | anon) as u32,
                status: VMA_AREA_REGULAR | st,
                fd: -1,
                madv: (madv != 0).then_some(madv),
                fdflags: Some(libc::O_RDONLY as u32),
            }
        };
        let (r, rw) = (libc::PROT_READ, libc::PROT_READ | libc::PROT_WRITE);
        let dontfork = 1 << libc::MADV_DONTFORK;
        let mm = |vmas| pb::MmEntry {
            vmas,
            ..Default::default()
        };
        let child = mm(vec![
            vma(0x10000, VMA_FILE_PRIVATE, 1, 0, rw, 0), // same file, other id: kept
            vma(0x20000, VMA_FILE_PRIVATE, 1, 0, rw, 0), // another file in the parent
            vma(0x30000, VMA_FILE_PRIVATE, 1, 0x1000, rw, 0), // another offset
            vma(0x40000, VMA_FILE_PRIVATE, 1, 0, r, 0),  // another protection
            vma(0x50000, VMA_ANON_PRIVATE, 0, 0, rw, 0), // anonymous: kept
            vma(0x60000, VMA_ANON_PRIVATE, 0, 0, rw, 0), // not passed on at fork
            vma(0x70000, VMA_FILE_PRIVATE, 9, 0, r, 0),  // no such file
        ]);
        let parent = mm(vec![
            vma(0x10000, VMA_FILE_PRIVATE, 2, 0, rw, 0),
            vma(0x20000, VMA_FILE_PRIVATE, 3, 0, rw, 0),
            vma(0x30000, VMA_FILE_PRIVATE, 2, 0, rw, 0),
            vma(0x40000, VMA_FILE_PRIVATE, 2, 0, rw, 0),
            vma(0x50000, VMA_ANON_PRIVATE, 0, 0, r, 0),
            vma(0x60000, VMA_ANON_PRIVATE, 0, 0, rw, dontfork),
            vma(0x70000, VMA_FILE_PRIVATE, 9, 0, r, 0),
        ]);
        assert_eq!(
            inherited_vmas(&child, Some(&parent), &files, |_| true),
            vec![(0x10000, 0x14000), (0x50000, 0x54000)]
        );
        assert!(inherited_vmas(&child, None, &files, |_| true).is_empty());
    }

    #[test]
    fn mm_map_is_104_bytes() {
        assert_eq!(
            prctl_mm_map_bytes(&pb::MmEntry::default(), 0, 0, 0).len(),
            104
        );
    }
}
