//! `crit core-dump`: an ELF core file per dumped process, laid out as the Linux kernel writes
//! one (`fs/binfmt_elf.c`), so that `gdb PROGRAM core.PID` shows the process as it was when
//! it was checkpointed. Owns the conversion; the bytes are drawn in `elf` and the
//! memory sources in `memory`.
//!
//! # What goes in
//! - From `pstree.img`: the processes and their threads; `core-TID.img`: registers (general,
//!   FXSAVE and XSAVE state), blocked and pending signals, name, state, credentials;
//!   `mm-PID.img`: VMAs, saved auxv and the bounds of the command line; `pagemap-PID.img` +
//!   `pages-N.img` (and `pagemap-shmem-ID.img`, parents in `DIR/parent`): memory;
//!   `files.img` / `reg-files.img` / `remap-fpath.img`: the files VMAs map.
//! - Notes, in the kernel's order: for the first thread (the process leader) `NT_PRSTATUS`,
//!   then `NT_PRPSINFO`, `NT_SIGINFO`, `NT_AUXV`, `NT_FILE`, then `NT_FPREGSET` and
//!   `NT_X86_XSTATE`; for every other thread `NT_PRSTATUS`, `NT_SIGINFO`, `NT_FPREGSET`,
//!   `NT_X86_XSTATE`; last `NT_X86_XSAVE_LAYOUT`. The kernel writes one `NT_SIGINFO` (the
//!   signal that killed the process); a dump has no such signal, so every thread gets one,
//!   zero, and `pr_cursig` is 0 (gdb then says nothing about a signal).
//! - A process whose leader has exited while other threads run on (`pthread_exit`; its core
//!   says `TASK_DEAD` as a zombie's, but `pstree.img` lists live threads for it) is converted
//!   as the kernel dumps one: the dead leader has no thread notes (the first live thread takes
//!   the leader's place in the order above), `NT_PRPSINFO` still describes the leader (pid,
//!   name, credentials) with state 8 (`.`, the kernel's number for `TASK_DEAD`). A zombie
//!   (`TASK_DEAD`, no other thread) and a helper task have no core.
//! - Registers are the dumped ones. A thread caught in a restartable syscall was normalised
//!   at dump time (`rip` back on the `syscall` instruction, `rax` = the syscall number,
//!   `orig_rax` = -1): that is what the core shows, so frame #0 is 2 bytes before where gdb
//!   saw it on the live process; the other frames are the same.
//! - `NT_X86_XSTATE` uses the standard (non-compacted) XSAVE format at Intel's offsets, sized
//!   up to the last component XCR0 enables (XCR0 as dumped, cut to x87/SSE/AVX/MPX/AVX-512/
//!   PKRU, the state the images hold).
//! - `NT_PRPSINFO`: state `R` (or `T` for a stopped task), nice, flags, uid/gid, `comm`, and
//!   the first 79 bytes of the command line read from the dumped stack.
//!
//! # Memory: one `PT_LOAD` per VMA
//! `p_memsz` is the VMA's size; what `p_filesz` covers follows the kernel's default
//! `coredump_filter` (0x33), see `Memory::plan`. Private and shared anonymous memory is
//! there whole, pages the dump does not have being zero (the file is sparse: zero runs are
//! holes). File-backed memory the process did not write is not in the dump, and the kernel
//! does not put it in a core either: gdb reads it from the mapped files (the executable, and
//! the libraries `NT_FILE` names). Two cases need the file itself:
//! - a private mapping the process wrote to (`.data`, `.got`, relro) is in the core whole, as
//!   the kernel does: its written pages from the dump, the others read from the mapped file;
//! - the first page of a mapping at offset 0 of an ELF file (the ELF header: gdb finds the
//!   load address and build id there) is read from the mapped file, as the kernel's
//!   `MMF_DUMP_ELF_HEADERS` does.
//!
//! The file is used only if it is a regular file of the size recorded at dump time (and was not
//! deleted then); otherwise the header page is left out and unmodified pages are zero, with a
//! warning. The vDSO is never copied by cryo's dump (a restore maps the new kernel's), so it is
//! left out (`p_filesz` 0) unless the pages are there (CRIU images): gdb then says it failed
//! to read an object file image from memory and cannot name a frame inside the vDSO. vvar and
//! vsyscall are zero, as the kernel cannot read them either. Shared file mappings, SysV shared
//! memory and `MADV_DONTDUMP` areas are left out, as by the kernel's default filter.
//!
//! # Input
//! Every image is read through the checked readers of this crate; a pagemap is checked against
//! its pages image's size before any page is read, and page contents are copied through a
//! fixed 1 MiB buffer, so no length in an image decides an allocation. Only x86_64 images of
//! 64-bit tasks are converted.

mod elf;
mod memory;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::pb;
use crate::{image_path, read_all_entries, read_single};
use elf::{Ids, Note, Phdr, PsInfo};
use memory::{Data, MappedFile, Memory, Segment, CHUNK_BYTES};

/// CRIU's task states (`task_core_entry.task_state`).
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;
const TASK_HELPER: u32 = 4;

/// Mode of the core files.
pub const CORE_FILE_MODE: u32 = 0o600;
/// Largest `NT_FILE` note (the kernel's default `core_file_note_size_limit`).
const MAX_FILE_NOTE_BYTES: usize = 4 << 20;

/// Everything that can go wrong while writing a core file.
#[derive(Debug, thiserror::Error)]
pub enum CoreDumpError {
    /// An image could not be read (missing, truncated, bad magic, undecodable).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An image reads but says something impossible.
    #[error("bad image {}: {what}", image.display())]
    BadImage {
        /// The image.
        image: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The image is fine but describes something cryo cannot make a core file of.
    #[error("{}: {what}", image.display())]
    Unsupported {
        /// The image.
        image: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// The process asked for is not in the dump.
    #[error("pid {pid} is not in the dump: {} lists {listed}", image.display())]
    NoSuchPid {
        /// The pid asked for.
        pid: u32,
        /// `pstree.img`.
        image: PathBuf,
        /// The pids it has.
        listed: String,
    },
    /// The process asked for has no memory or registers in the dump.
    #[error("pid {pid} is a {what} in the dump: it has no memory or registers to put in a core")]
    NoMemory {
        /// The pid.
        pid: u32,
        /// `"zombie"` or `"helper task"`.
        what: &'static str,
    },
    /// I/O on something that is not an image: the images directory, the output, a mapped file.
    #[error("{what} {}", path.display())]
    Io {
        /// What failed, e.g. `"write core file"`.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bug: a segment refers to a file that was never opened.
    #[error("internal error: a memory piece refers to no opened file")]
    Internal,
}

/// What was written for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStats {
    /// The process.
    pub pid: u32,
    /// Threads (one `NT_PRSTATUS` each).
    pub threads: usize,
    /// Program headers (the `PT_NOTE` and one `PT_LOAD` per VMA).
    pub segments: usize,
    /// Size of the core file (holes included).
    pub len_bytes: u64,
    /// What the core lacks (a mapped file that is gone, lazy pages), one sentence each.
    pub warnings: Vec<String>,
}

/// One core file written by [`write_core_dumps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreFile {
    /// Its path: `OUTDIR/core.PID`.
    pub path: PathBuf,
    /// What is in it.
    pub stats: CoreStats,
}

/// What [`write_core_dumps`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreDumps {
    /// The core files written, in `pstree.img` order.
    pub written: Vec<CoreFile>,
    /// Processes without a core (zombies, helper tasks), with the reason.
    pub skipped: Vec<(u32, String)>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CoreDumpError {
    let path = path.to_path_buf();
    move |source| CoreDumpError::Io { what, path, source }
}

/// Writes `OUTDIR/core.PID` (mode 0600, replacing a file of that name) for every process of
/// the dump in `images_dir`, or for `pid` alone. `out_dir` is created if missing.
///
/// Without `pid`, zombies and helper tasks are skipped (listed in [`CoreDumps::skipped`]);
/// `pid` naming one, or a process not in the dump, is an error. A failure leaves no partial
/// core file behind (cores finished before it stay).
pub fn write_core_dumps(
    images_dir: &Path,
    pid: Option<u32>,
    out_dir: &Path,
) -> Result<CoreDumps, CoreDumpError> {
    let meta =
        std::fs::metadata(images_dir).map_err(io_err("open images directory", images_dir))?;
    if !meta.is_dir() {
        return Err(io_err("open images directory", images_dir)(
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }
    let tree: Vec<pb::PstreeEntry> = read_all_entries(images_dir, ImageKind::Pstree, None)?;
    let pstree = image_path(images_dir, ImageKind::Pstree, None)?;
    if tree.is_empty() {
        return Err(CoreDumpError::BadImage {
            image: pstree,
            what: "no process".into(),
        });
    }
    let chosen: Vec<&pb::PstreeEntry> = match pid {
        Some(p) => match tree.iter().find(|e| e.pid == p) {
            Some(e) => vec![e],
            None => {
                let listed: Vec<String> = tree.iter().map(|e| e.pid.to_string()).collect();
                return Err(CoreDumpError::NoSuchPid {
                    pid: p,
                    image: pstree,
                    listed: listed.join(", "),
                });
            }
        },
        None => tree.iter().collect(),
    };
    std::fs::create_dir_all(out_dir).map_err(io_err("create output directory", out_dir))?;
    let mut files = FileTable::default();
    let mut done = CoreDumps::default();
    for entry in chosen {
        let proc = match Process::load(images_dir, entry) {
            Ok(p) => p,
            // Asked for by pid, a zombie is an error; in a whole tree it is just not dumped.
            Err(CoreDumpError::NoMemory { pid: p, what }) if pid.is_none() => {
                done.skipped
                    .push((p, format!("a {what}: no memory or registers")));
                continue;
            }
            Err(e) => return Err(e),
        };
        let path = out_dir.join(format!("core.{}", entry.pid));
        let stats = write_core_file(images_dir, &proc, &mut files, &path)?;
        done.written.push(CoreFile { path, stats });
    }
    Ok(done)
}

/// Writes the core file of `proc` at `path`; removes it again on failure.
fn write_core_file(
    dir: &Path,
    proc: &Process,
    files: &mut FileTable,
    path: &Path,
) -> Result<CoreStats, CoreDumpError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io_err("write core file", path)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a directory is in the way",
            )))
        }
        // Replaced by a new inode: a symlink or hard link at the name is not written through.
        Ok(_) => std::fs::remove_file(path).map_err(io_err("replace core file", path))?,
        Err(_) => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CORE_FILE_MODE)
        .open(path)
        .map_err(io_err("create core file", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(CORE_FILE_MODE))
        .map_err(io_err("set mode of core file", path))?;
    let mut out = BufWriter::with_capacity(CHUNK_BYTES, file);
    let result = write_process(dir, proc, files, &mut out, path).and_then(|stats| {
        out.flush().map_err(io_err("write core file", path))?;
        Ok(stats)
    });
    if result.is_err() {
        drop(out);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Writes the core file of process `pid` of the dump in `images_dir` to `out`, from its
/// current position on (`name` is used in errors). The pid must be in `pstree.img`; a zombie
/// is [`CoreDumpError::NoMemory`].
pub fn write_core<W: Write + Seek>(
    images_dir: &Path,
    pid: u32,
    out: &mut W,
    name: &Path,
) -> Result<CoreStats, CoreDumpError> {
    let tree: Vec<pb::PstreeEntry> = read_all_entries(images_dir, ImageKind::Pstree, None)?;
    let Some(entry) = tree.iter().find(|e| e.pid == pid) else {
        let listed: Vec<String> = tree.iter().map(|e| e.pid.to_string()).collect();
        return Err(CoreDumpError::NoSuchPid {
            pid,
            image: image_path(images_dir, ImageKind::Pstree, None)?,
            listed: listed.join(", "),
        });
    };
    let proc = Process::load(images_dir, entry)?;
    write_process(images_dir, &proc, &mut FileTable::default(), out, name)
}

/// One thread's registers and signal masks.
#[derive(Debug)]
struct Thread {
    tid: u32,
    regs: pb::UserX86RegsEntry,
    fpregs: pb::UserX86FpregsEntry,
    sigpend: u64,
    sighold: u64,
}

/// A process as its images describe it.
#[derive(Debug)]
struct Process {
    entry: pb::PstreeEntry,
    tc: pb::TaskCoreEntry,
    leader_core: Option<pb::ThreadCoreEntry>,
    /// The leader has exited while other threads run on (`pthread_exit`): it has no thread
    /// in the core, as in the kernel's.
    leader_dead: bool,
    /// The live threads, the leader (when alive) first.
    threads: Vec<Thread>,
    mm: pb::MmEntry,
}

/// Pending signals of a queue as a mask (`pr_sigpend` holds signals 1..64).
fn pending_mask(q: Option<&pb::SignalQueueEntry>) -> u64 {
    let mut mask = 0u64;
    for s in q.map(|q| q.signals.as_slice()).unwrap_or_default() {
        if let Some(b) = s.siginfo.get(..4) {
            let signo = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if (1..=64).contains(&signo) {
                mask |= 1 << (signo - 1);
            }
        }
    }
    mask
}

impl Process {
    fn load(dir: &Path, entry: &pb::PstreeEntry) -> Result<Process, CoreDumpError> {
        let pid = entry.pid;
        let core_path = image_path(dir, ImageKind::Core, Some(u64::from(pid)))?;
        let leader: pb::CoreEntry = read_single(dir, ImageKind::Core, Some(u64::from(pid)))?;
        let tc = leader.tc.clone().ok_or_else(|| CoreDumpError::BadImage {
            image: core_path.clone(),
            what: "no task_core_entry (tc)".into(),
        })?;
        // A dead leader's core says TASK_DEAD, as a zombie's; the other threads pstree.img
        // lists for it tell it from one.
        let leader_dead = tc.task_state == TASK_DEAD && entry.threads.iter().any(|t| *t != pid);
        match tc.task_state {
            TASK_DEAD if !leader_dead => {
                return Err(CoreDumpError::NoMemory {
                    pid,
                    what: "zombie",
                })
            }
            TASK_HELPER => {
                return Err(CoreDumpError::NoMemory {
                    pid,
                    what: "helper task",
                })
            }
            _ => {}
        }
        let mm: pb::MmEntry = read_single(dir, ImageKind::Mm, Some(u64::from(pid)))?;
        let mm_path = image_path(dir, ImageKind::Mm, Some(u64::from(pid)))?;
        for v in &mm.vmas {
            let ok = v.start < v.end
                && v.start % elf::PAGE_SIZE == 0
                && v.end % elf::PAGE_SIZE == 0
                && v.pgoff.checked_add(v.end - v.start).is_some();
            if !ok {
                return Err(CoreDumpError::BadImage {
                    image: mm_path,
                    what: format!(
                        "vma {:#x}-{:#x} (pgoff {:#x}) is not a page-aligned range",
                        v.start, v.end, v.pgoff
                    ),
                });
            }
        }
        // The leader first (unless it is dead: it has no registers), each thread once.
        let mut tids = if leader_dead { vec![] } else { vec![pid] };
        for t in &entry.threads {
            if *t != pid && !tids.contains(t) {
                tids.push(*t);
            }
        }
        let mut threads = Vec::with_capacity(tids.len().min(1024));
        // A dead leader's credentials and nice value are still in its core, for NT_PRPSINFO.
        let mut leader_core = if leader_dead {
            leader.thread_core.clone()
        } else {
            None
        };
        for tid in tids {
            let core = if tid == pid {
                leader.clone()
            } else {
                read_single(dir, ImageKind::Core, Some(u64::from(tid)))?
            };
            let path = image_path(dir, ImageKind::Core, Some(u64::from(tid)))?;
            if core.mtype != pb::core_entry::March::X8664 as i32 {
                let arch = pb::core_entry::March::try_from(core.mtype)
                    .map(|m| m.as_str_name().to_string())
                    .unwrap_or_else(|_| core.mtype.to_string());
                return Err(CoreDumpError::Unsupported {
                    image: path,
                    what: format!("architecture {arch}: only x86_64 core files are written"),
                });
            }
            let Some(ti) = core.thread_info else {
                return Err(CoreDumpError::BadImage {
                    image: path,
                    what: "no registers (thread_info)".into(),
                });
            };
            if ti.gpregs.mode == Some(pb::UserX86RegsMode::Compat as i32) {
                return Err(CoreDumpError::Unsupported {
                    image: path,
                    what: "a 32-bit (compat) task: only 64-bit core files are written".into(),
                });
            }
            let tcore = core.thread_core;
            let sighold = tcore
                .as_ref()
                .and_then(|c| c.blk_sigset)
                .unwrap_or(if tid == pid { tc.blk_sigset } else { 0 });
            let sigpend = pending_mask(tcore.as_ref().and_then(|c| c.signals_p.as_ref()));
            if tid == pid {
                leader_core = tcore;
            }
            threads.push(Thread {
                tid,
                regs: ti.gpregs,
                fpregs: ti.fpregs,
                sigpend,
                sighold,
            });
        }
        Ok(Process {
            entry: entry.clone(),
            tc,
            leader_core,
            leader_dead,
            threads,
            mm,
        })
    }
}

/// The files VMAs map, by id, read when the first file-backed VMA needs them.
#[derive(Debug, Default)]
struct FileTable {
    files: Option<HashMap<u32, MappedFile>>,
}

impl FileTable {
    fn load(dir: &Path) -> Result<HashMap<u32, MappedFile>, CoreDumpError> {
        let mut out = HashMap::new();
        let mut add = |r: &pb::RegFileEntry| {
            out.entry(r.id).or_insert_with(|| MappedFile {
                name: r.name.clone(),
                size: r.size,
                deleted: false,
            });
        };
        let files: Vec<pb::FileEntry> = read_all_entries(dir, ImageKind::Files, None)?;
        for f in &files {
            if let Some(r) = &f.reg {
                add(r);
            }
        }
        let regs: Vec<pb::RegFileEntry> = read_all_entries(dir, ImageKind::RegFiles, None)?;
        for r in &regs {
            add(r);
        }
        let remaps: Vec<pb::RemapFilePathEntry> =
            read_all_entries(dir, ImageKind::RemapFpath, None)?;
        for r in remaps {
            // Linked and ghost remaps stand for a file unlinked at dump time.
            if r.remap_type != Some(pb::RemapType::Procfs as i32) {
                if let Some(f) = out.get_mut(&r.orig_id) {
                    f.deleted = true;
                }
            }
        }
        Ok(out)
    }

    fn get(
        &mut self,
        dir: &Path,
        id: u32,
        mm_path: &Path,
        vma: &pb::VmaEntry,
    ) -> Result<&MappedFile, CoreDumpError> {
        if self.files.is_none() {
            self.files = Some(Self::load(dir)?);
        }
        self.files
            .as_ref()
            .and_then(|f| f.get(&id))
            .ok_or_else(|| CoreDumpError::BadImage {
                image: mm_path.to_path_buf(),
                what: format!(
                    "vma {:#x}-{:#x} maps file id {id}, which is in neither files.img nor \
                     reg-files.img",
                    vma.start, vma.end
                ),
            })
    }
}

/// A `Write + Seek` that turns zero runs into holes: it only seeks over them, and writes one
/// last byte if the file ends in a hole.
/// Positions are relative to where the writer was when it was handed over.
struct Sparse<'a, W: Write + Seek> {
    w: &'a mut W,
    name: &'a Path,
    /// Where the core file starts in `w`.
    base: u64,
    /// Logical position.
    pos: u64,
    /// Position of the underlying writer.
    at: u64,
}

impl<'a, W: Write + Seek> Sparse<'a, W> {
    fn new(w: &'a mut W, name: &'a Path) -> Result<Self, CoreDumpError> {
        let base = w
            .stream_position()
            .map_err(io_err("write core file", name))?;
        Ok(Sparse {
            w,
            name,
            base,
            pos: 0,
            at: 0,
        })
    }

    fn seek_to(&mut self, pos: u64) -> Result<(), CoreDumpError> {
        let abs = self.base.checked_add(pos).ok_or_else(|| {
            io_err("write core file", self.name)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "offset overflows",
            ))
        })?;
        self.w
            .seek(SeekFrom::Start(abs))
            .map_err(io_err("write core file", self.name))?;
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), CoreDumpError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.at != self.pos {
            self.seek_to(self.pos)?;
        }
        self.w
            .write_all(data)
            .map_err(io_err("write core file", self.name))?;
        self.pos += data.len() as u64;
        self.at = self.pos;
        Ok(())
    }

    fn skip(&mut self, n: u64) {
        self.pos += n;
    }

    /// Writes `data`, leaving holes for its all-zero pages.
    fn write_sparse(&mut self, data: &[u8]) -> Result<(), CoreDumpError> {
        let page = elf::PAGE_SIZE as usize;
        let mut i = 0;
        while i < data.len() {
            let end = (i + page).min(data.len());
            let zero = data[i..end].iter().all(|b| *b == 0);
            let mut j = end;
            while j < data.len() {
                let next = (j + page).min(data.len());
                if data[j..next].iter().all(|b| *b == 0) != zero {
                    break;
                }
                j = next;
            }
            if zero {
                self.skip((j - i) as u64);
            } else {
                self.write(&data[i..j])?;
            }
            i = j;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, CoreDumpError> {
        if self.pos > self.at {
            self.seek_to(self.pos - 1)?;
            self.w
                .write_all(&[0])
                .map_err(io_err("write core file", self.name))?;
            self.at = self.pos;
        }
        Ok(self.pos)
    }
}

/// The `NT_PRPSINFO` fields of `proc`.
fn psinfo(proc: &Process, mem: &Memory, segs: &[Segment]) -> Result<PsInfo, CoreDumpError> {
    let e = &proc.entry;
    let mm = &proc.mm;
    let args_len = mm.mm_arg_end.saturating_sub(mm.mm_arg_start);
    let want = usize::try_from(args_len)
        .unwrap_or(usize::MAX)
        .min(elf::PRARGSZ - 1);
    let mut psargs = mem.read_memory(segs, mm.mm_arg_start, want)?;
    for b in &mut psargs {
        if *b == 0 {
            *b = b' ';
        }
    }
    let creds = proc.leader_core.as_ref().and_then(|c| c.creds.as_ref());
    Ok(PsInfo {
        state: match proc.tc.task_state {
            // The kernel's `ffz(~TASK_DEAD) + 1` for a leader that has exited: '.'.
            _ if proc.leader_dead => 8,
            TASK_STOPPED => 3,
            // Running, as the task writing its own core is.
            TASK_ALIVE => 0,
            // Zombies and helpers have no core; anything else reads as alive.
            _ => 0,
        },
        nice: proc
            .leader_core
            .as_ref()
            .and_then(|c| c.sched_nice)
            .map_or(0, |n| n.clamp(-128, 127) as i8),
        flags: u64::from(proc.tc.flags),
        uid: creds.map_or(0, |c| c.uid),
        gid: creds.map_or(0, |c| c.gid),
        ids: Ids {
            pid: e.pid,
            ppid: e.ppid,
            pgrp: e.pgid,
            sid: e.sid,
        },
        fname: proc.tc.comm.as_bytes().to_vec(),
        psargs,
    })
}

/// Converts one loaded process and writes its core file to `out`.
fn write_process<W: Write + Seek>(
    dir: &Path,
    proc: &Process,
    files: &mut FileTable,
    out: &mut W,
    name: &Path,
) -> Result<CoreStats, CoreDumpError> {
    let pid = proc.entry.pid;
    let mm_path = image_path(dir, ImageKind::Mm, Some(u64::from(pid)))?;
    let mut mem = Memory::load(dir, pid)?;
    let mut segs = Vec::with_capacity(proc.mm.vmas.len());
    let mut mapped = Vec::new();
    use memory::status::{VMA_ANON_SHARED, VMA_AREA_SYSVIPC, VMA_FILE_PRIVATE, VMA_FILE_SHARED};
    for vma in &proc.mm.vmas {
        let file = if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            let id = u32::try_from(vma.shmid).map_err(|_| CoreDumpError::BadImage {
                image: mm_path.clone(),
                what: format!("vma {:#x}: file id {} out of range", vma.start, vma.shmid),
            })?;
            let f = files.get(dir, id, &mm_path, vma)?.clone();
            let mut shown = f.name.clone();
            if f.deleted {
                shown.push_str(" (deleted)");
            }
            mapped.push(elf::FileMapping {
                start: vma.start,
                end: vma.end,
                pgoff_pages: vma.pgoff / elf::PAGE_SIZE,
                name: shown.into_bytes(),
            });
            Some(f)
        } else {
            if vma.status & VMA_ANON_SHARED != 0 && vma.status & VMA_AREA_SYSVIPC == 0 {
                // Shared anonymous memory is a file of the kernel's shmem, named so.
                mapped.push(elf::FileMapping {
                    start: vma.start,
                    end: vma.end,
                    pgoff_pages: vma.pgoff / elf::PAGE_SIZE,
                    name: b"/dev/zero (deleted)".to_vec(),
                });
            }
            None
        };
        segs.push(mem.plan(vma, file.as_ref())?);
    }
    mem.finish_warnings();

    let ps = psinfo(proc, &mem, &segs)?;
    let e = &proc.entry;
    let mut notes = Vec::new();
    let mut layout_xcr0 = None;
    for (i, t) in proc.threads.iter().enumerate() {
        let ids = Ids {
            pid: t.tid,
            ppid: e.ppid,
            pgrp: e.pgid,
            sid: e.sid,
        };
        notes.push(Note::core(
            elf::NT_PRSTATUS,
            elf::prstatus(ids, t.sigpend, t.sighold, &elf::user_regs(&t.regs)),
        ));
        if i == 0 {
            notes.push(Note::core(elf::NT_PRPSINFO, elf::prpsinfo(&ps)));
        }
        notes.push(Note::core(elf::NT_SIGINFO, vec![0; elf::SIGINFO_LEN]));
        if i == 0 {
            notes.push(Note::core(elf::NT_AUXV, elf::auxv(&proc.mm.mm_saved_auxv)));
            let files = elf::file_note(&mapped);
            // The kernel leaves out an NT_FILE above its limit (core_file_note_size_limit,
            // 4 MiB by default) rather than cut it.
            if files.len() <= MAX_FILE_NOTE_BYTES {
                notes.push(Note::core(elf::NT_FILE, files));
            } else {
                mem.warnings.push(format!(
                    "{} mapped files: the list (NT_FILE) is over {MAX_FILE_NOTE_BYTES} bytes \
                     and left out",
                    mapped.len()
                ));
            }
        }
        notes.push(Note::core(elf::NT_FPREGSET, elf::fxsave(&t.fpregs)));
        let (xsave, xcr0) = elf::xstate(&t.fpregs);
        notes.push(Note::linux(elf::NT_X86_XSTATE, xsave));
        layout_xcr0.get_or_insert(xcr0);
    }
    if let Some(xcr0) = layout_xcr0 {
        notes.push(Note::linux(
            elf::NT_X86_XSAVE_LAYOUT,
            elf::xsave_layout(xcr0),
        ));
    }
    let note_bytes = elf::encode_notes(&notes);

    // Layout: headers, notes, then the segments' data from the next page boundary on.
    let too_big = || CoreDumpError::BadImage {
        image: mm_path.clone(),
        what: "the VMAs add up to a core file larger than 2^64 bytes".into(),
    };
    let nsegs = 1 + segs.len() as u64;
    let notes_off = elf::EHDR_LEN + nsegs * elf::PHDR_LEN;
    let data_off = (notes_off + note_bytes.len() as u64).div_ceil(elf::PAGE_SIZE) * elf::PAGE_SIZE;
    let mut phdrs = Vec::with_capacity(segs.len() + 1);
    phdrs.push(Phdr {
        p_type: elf::PT_NOTE,
        p_flags: 0,
        p_offset: notes_off,
        p_vaddr: 0,
        p_filesz: note_bytes.len() as u64,
        p_memsz: 0,
        p_align: 4,
    });
    let mut off = data_off;
    for s in &segs {
        let filesz = s.filesz();
        phdrs.push(Phdr {
            p_type: elf::PT_LOAD,
            p_flags: s.flags,
            p_offset: off,
            p_vaddr: s.vaddr,
            p_filesz: filesz,
            p_memsz: s.memsz,
            p_align: elf::PAGE_SIZE,
        });
        off = off.checked_add(filesz).ok_or_else(too_big)?;
    }
    let data_end = off;
    if data_end > i64::MAX as u64 {
        return Err(too_big());
    }

    let mut w = Sparse::new(out, name)?;
    w.write(&elf::ehdr(nsegs, data_end))?;
    for p in &phdrs {
        w.write(&p.to_bytes())?;
    }
    w.write(&note_bytes)?;
    w.skip(data_off - (notes_off + note_bytes.len() as u64));
    let mut buf = vec![0u8; CHUNK_BYTES];
    for s in &segs {
        for p in &s.pieces {
            if p.data == Data::Zero {
                w.skip(p.len);
                continue;
            }
            let mut done = 0u64;
            while done < p.len {
                let n = (p.len - done).min(CHUNK_BYTES as u64) as usize;
                mem.read(p.data, done, &mut buf[..n])?;
                w.write_sparse(&buf[..n])?;
                done += n as u64;
            }
        }
    }
    if nsegs >= elf::PN_XNUM {
        w.write(&elf::extnum_shdr(nsegs))?;
    }
    let len_bytes = w.finish()?;
    Ok(CoreStats {
        pid,
        threads: proc.threads.len(),
        segments: phdrs.len(),
        len_bytes,
        warnings: std::mem::take(&mut mem.warnings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagemap::{create_pagemap, PE_PARENT, PE_PRESENT};
    use crate::write_all_entries;
    use std::io::Cursor;

    const PAGE: usize = 4096;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "cryo-image-coredump-{}-{tag}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// (type, flags, offset, vaddr, filesz, memsz) of each program header.
    fn phdrs(core: &[u8]) -> Vec<(u32, u32, u64, u64, u64, u64)> {
        let n = usize::from(u16_at(core, 56));
        (0..n)
            .map(|i| {
                let o = 64 + 56 * i;
                (
                    u32_at(core, o),
                    u32_at(core, o + 4),
                    u64_at(core, o + 8),
                    u64_at(core, o + 16),
                    u64_at(core, o + 32),
                    u64_at(core, o + 40),
                )
            })
            .collect()
    }

    /// (name, type, descriptor) of each note.
    fn notes(core: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let (_, _, off, _, len, _) = phdrs(core)[0];
        let (mut at, end) = (off as usize, (off + len) as usize);
        let mut out = Vec::new();
        while at < end {
            let (nsz, dsz, ty) = (
                u32_at(core, at) as usize,
                u32_at(core, at + 4) as usize,
                u32_at(core, at + 8),
            );
            let name = String::from_utf8(core[at + 12..at + 12 + nsz - 1].to_vec()).unwrap();
            let d = at + 12 + nsz.div_ceil(4) * 4;
            out.push((name, ty, core[d..d + dsz].to_vec()));
            at = d + dsz.div_ceil(4) * 4;
        }
        out
    }

    fn vma(start: u64, end: u64, prot: u32, status: u32, shmid: u64, pgoff: u64) -> pb::VmaEntry {
        pb::VmaEntry {
            start,
            end,
            pgoff,
            shmid,
            prot,
            flags: 2,
            status: status | 1,
            fd: -1,
            madv: None,
            fdflags: None,
        }
    }

    fn thread_core(ip: u64, fs_base: u64) -> pb::CoreEntry {
        pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(pb::ThreadInfoX86 {
                gpregs: pb::UserX86RegsEntry {
                    ip,
                    ax: 34,
                    orig_ax: u64::MAX,
                    fs_base,
                    cs: 0x33,
                    ss: 0x2b,
                    ..Default::default()
                },
                fpregs: pb::UserX86FpregsEntry {
                    mxcsr: 0x1f80,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const F_PRIV: u32 = 1 << 6;
    const F_SHARED: u32 = 1 << 7;
    const A_SHARED: u32 = 1 << 8;
    const A_PRIV: u32 = 1 << 9;

    /// Process 200 (threads 200, 201) with one VMA of each kind `Memory::plan` tells apart.
    fn dump(dir: &Path, lib: &Path) {
        let mut siginfo = vec![0u8; 128];
        siginfo[0] = 10; // SIGUSR1 pending on the leader
        let mut leader = thread_core(0x1_0010, 0x7000_0000);
        leader.tc = Some(pb::TaskCoreEntry {
            task_state: TASK_ALIVE,
            comm: "proc".into(),
            flags: 0x40_0100,
            ..Default::default()
        });
        leader.thread_core = Some(pb::ThreadCoreEntry {
            blk_sigset: Some(2),
            sched_nice: Some(-3),
            signals_p: Some(pb::SignalQueueEntry {
                signals: vec![pb::SiginfoEntry { siginfo }],
            }),
            creds: Some(pb::CredsEntry {
                uid: 1000,
                gid: 1001,
                ..Default::default()
            }),
            ..Default::default()
        });
        let pstree = pb::PstreeEntry {
            pid: 200,
            ppid: 1,
            pgid: 200,
            sid: 190,
            threads: vec![200, 201],
        };
        write_all_entries(dir, ImageKind::Pstree, None, &[pstree]).unwrap();
        write_all_entries(dir, ImageKind::Core, Some(200), &[leader]).unwrap();
        let other = thread_core(0x1_0020, 0x7000_1000);
        write_all_entries(dir, ImageKind::Core, Some(201), &[other]).unwrap();
        let vmas = vec![
            vma(0x1_0000, 0x1_3000, 5, F_PRIV, 5, 0), // written: whole
            vma(0x2_0000, 0x2_2000, 1, F_PRIV, 5, 0), // ELF header page
            vma(0x3_0000, 0x3_1000, 1, F_PRIV, 5, 0x1000), // not at offset 0: nothing
            vma(0x4_0000, 0x4_2000, 3, A_PRIV, 0, 0), // stack: page 0 dumped
            vma(0x5_0000, 0x6_0000, 0, A_PRIV, 0, 0), // PROT_NONE reservation: nothing
            vma(0x7_0000, 0x7_2000, 3, A_SHARED, 77, 0x1000), // shmem, object offset 0x1000
            vma(0x8_0000, 0x8_1000, 1, (1 << 12) | A_PRIV, 0, 0), // vvar: zero
            vma(0x8_1000, 0x8_3000, 5, (1 << 3) | A_PRIV, 0, 0), // vdso, not dumped: nothing
            vma(0x9_0000, 0x9_1000, 3, F_SHARED, 5, 0), // shared file: nothing
        ];
        let mm = pb::MmEntry {
            mm_arg_start: 0x4_0100,
            mm_arg_end: 0x4_010a,
            mm_saved_auxv: vec![6, 4096, 9, 0x1_0000, 0, 0],
            vmas,
            ..Default::default()
        };
        write_all_entries(dir, ImageKind::Mm, Some(200), &[mm]).unwrap();
        let file = pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: 5,
            reg: Some(pb::RegFileEntry {
                id: 5,
                name: lib.display().to_string(),
                size: Some(3 * PAGE as u64),
                ..Default::default()
            }),
            ..Default::default()
        };
        write_all_entries(dir, ImageKind::Files, None, &[file]).unwrap();
        let mut pm = create_pagemap(dir, ImageKind::Pagemap, 200, 1).unwrap();
        pm.add(0x1_1000, 1, PE_PRESENT).unwrap();
        pm.add(0x4_0000, 1, PE_PRESENT).unwrap();
        pm.into_inner().finish_sync().unwrap();
        let mut stack = vec![0u8; PAGE];
        stack[0x100..0x10a].copy_from_slice(b"prog\0arg1\0");
        let pages = [vec![0xaa; PAGE], stack].concat();
        std::fs::write(dir.join("pages-1.img"), pages).unwrap();
        let mut pm = create_pagemap(dir, ImageKind::ShmemPagemap, 77, 2).unwrap();
        pm.add(0x2000, 1, PE_PRESENT).unwrap();
        pm.into_inner().finish_sync().unwrap();
        std::fs::write(dir.join("pages-2.img"), vec![0xcc; PAGE]).unwrap();
    }

    /// A 3-page "library": an ELF magic, then page p filled with 0x10 + p.
    fn library(dir: &Path) -> PathBuf {
        let mut lib: Vec<u8> = (0..3).flat_map(|p| vec![0x10 + p as u8; PAGE]).collect();
        lib[..4].copy_from_slice(b"\x7fELF");
        let path = dir.join("lib.so");
        std::fs::write(&path, lib).unwrap();
        path
    }

    /// The notes of the first thread, in the kernel's order (the process-wide ones with it).
    const FIRST_THREAD_NOTES: [u32; 7] = [
        elf::NT_PRSTATUS,
        elf::NT_PRPSINFO,
        elf::NT_SIGINFO,
        elf::NT_AUXV,
        elf::NT_FILE,
        elf::NT_FPREGSET,
        elf::NT_X86_XSTATE,
    ];

    fn convert(dir: &Path, pid: u32) -> (Vec<u8>, CoreStats) {
        let mut out = Cursor::new(Vec::new());
        let stats = write_core(dir, pid, &mut out, Path::new("core")).unwrap();
        (out.into_inner(), stats)
    }

    #[test]
    fn every_kind_of_vma() {
        let dir = tmpdir("kinds");
        let lib = library(&dir);
        dump(&dir, &lib);
        let (core, stats) = convert(&dir, 200);
        assert_eq!(stats.threads, 2);
        assert_eq!(stats.segments, 10);
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
        assert_eq!(stats.len_bytes, core.len() as u64);
        let ph = phdrs(&core);
        assert_eq!(ph.len(), 10);
        assert_eq!(ph[0].0, elf::PT_NOTE);
        let loads = &ph[1..];
        let filesz: Vec<u64> = loads.iter().map(|p| p.4).collect();
        let page = PAGE as u64;
        assert_eq!(
            filesz,
            vec![3 * page, page, 0, 2 * page, 0, 2 * page, page, 0, 0]
        );
        assert_eq!(loads[0].1, elf::PF_R | elf::PF_X);
        assert_eq!(loads[3].1, elf::PF_R | elf::PF_W);
        assert_eq!(loads[4].5, 0x1_0000);
        assert_eq!(loads[0].2 % page, 0);
        let data = |i: usize| {
            let (_, _, off, _, len, _) = loads[i];
            &core[off as usize..(off + len) as usize]
        };
        // Written file mapping: pages 0 and 2 from the file, page 1 from the dump.
        assert_eq!(&data(0)[..4], b"\x7fELF");
        assert!(data(0)[4..PAGE].iter().all(|b| *b == 0x10));
        assert!(data(0)[PAGE..2 * PAGE].iter().all(|b| *b == 0xaa));
        assert!(data(0)[2 * PAGE..].iter().all(|b| *b == 0x12));
        // ELF header page from the file.
        assert_eq!(&data(1)[..4], b"\x7fELF");
        // Stack: the dumped page, then zero.
        assert_eq!(&data(3)[0x100..0x10a], b"prog\0arg1\0");
        assert!(data(3)[PAGE..].iter().all(|b| *b == 0));
        // Shared memory at object offset 0x1000: a hole, then the page at 0x2000.
        assert!(data(5)[..PAGE].iter().all(|b| *b == 0));
        assert!(data(5)[PAGE..].iter().all(|b| *b == 0xcc));
        // vvar: zero.
        assert!(data(6).iter().all(|b| *b == 0));

        let n = notes(&core);
        let types: Vec<u32> = n.iter().map(|x| x.1).collect();
        use elf::*;
        let mut want = FIRST_THREAD_NOTES.to_vec();
        want.extend([NT_PRSTATUS, NT_SIGINFO, NT_FPREGSET, NT_X86_XSTATE]);
        want.push(NT_X86_XSAVE_LAYOUT);
        assert_eq!(types, want);
        assert!(n.iter().all(|x| x.0
            == if x.1 >= 0x200 && x.1 < 0x300 {
                "LINUX"
            } else {
                "CORE"
            }));
        let st = &n[0].2;
        assert_eq!((u64_at(st, 16), u64_at(st, 24)), (1 << 9, 2));
        assert_eq!(
            (
                u32_at(st, 32),
                u32_at(st, 36),
                u32_at(st, 40),
                u32_at(st, 44)
            ),
            (200, 1, 200, 190)
        );
        assert_eq!(u64_at(st, 112 + 16 * 8), 0x1_0010);
        assert_eq!(u64_at(st, 112 + 21 * 8), 0x7000_0000);
        let st2 = &n[7].2;
        assert_eq!(u32_at(st2, 32), 201);
        assert_eq!(u64_at(st2, 112 + 16 * 8), 0x1_0020);
        assert_eq!((u64_at(st2, 16), u64_at(st2, 24)), (0, 0));
        let ps = &n[1].2;
        assert_eq!(&ps[..4], &[0, b'R', 0, (-3i8) as u8]);
        assert_eq!(u64_at(ps, 8), 0x40_0100);
        assert_eq!((u32_at(ps, 16), u32_at(ps, 20)), (1000, 1001));
        assert_eq!(&ps[40..45], b"proc\0");
        assert_eq!(&ps[56..67], b"prog arg1 \0");
        assert_eq!(n[3].2.len(), 3 * 16);
        let files = &n[4].2;
        assert_eq!(u64_at(files, 0), 5);
        let names = &files[16 + 5 * 24..];
        let lib_name = lib.display().to_string();
        let want = format!("{lib_name}\0{lib_name}\0{lib_name}\0/dev/zero (deleted)\0{lib_name}\0");
        assert_eq!(names, want.as_bytes());
        assert_eq!(u64_at(files, 16 + 3 * 24 + 16), 1); // shmem page offset
        assert_eq!(n[6].2.len(), 576); // x87 + SSE only
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_library_is_not_read() {
        let dir = tmpdir("changed");
        let lib = library(&dir);
        dump(&dir, &lib);
        std::fs::write(&lib, b"\x7fELF shorter").unwrap();
        let (core, stats) = convert(&dir, 200);
        assert_eq!(stats.warnings.len(), 2, "{:?}", stats.warnings);
        assert!(stats.warnings[0].contains("changed since the dump"));
        let ph = phdrs(&core);
        // Whole, with the unmodified pages zero; no header page.
        assert_eq!((ph[1].4, ph[2].4), (3 * PAGE as u64, 0));
        let off = ph[1].2 as usize;
        assert!(core[off..off + PAGE].iter().all(|b| *b == 0));
        assert!(core[off + PAGE..off + 2 * PAGE].iter().all(|b| *b == 0xaa));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pages_in_a_parent_dump() {
        let dir = tmpdir("parent");
        let lib = library(&dir);
        dump(&dir, &lib);
        // The stack page now lives in the parent dump.
        let mut pm = create_pagemap(&dir, ImageKind::Pagemap, 200, 1).unwrap();
        pm.add(0x1_1000, 1, PE_PRESENT).unwrap();
        pm.add(0x4_0000, 1, PE_PARENT).unwrap();
        pm.into_inner().finish_sync().unwrap();
        std::fs::write(dir.join("pages-1.img"), vec![0xaa; PAGE]).unwrap();
        let mut out = Cursor::new(Vec::new());
        let err = write_core(&dir, 200, &mut out, Path::new("core")).unwrap_err();
        assert!(
            err.to_string().contains("pagemap-200.img") && err.to_string().contains("parent"),
            "{err}"
        );

        let parent = dir.join("parent");
        std::fs::create_dir(&parent).unwrap();
        let mut pm = create_pagemap(&parent, ImageKind::Pagemap, 200, 7).unwrap();
        pm.add(0x4_0000, 1, PE_PRESENT).unwrap();
        pm.into_inner().finish_sync().unwrap();
        let mut stack = vec![0x77u8; PAGE];
        stack[0x100..0x105].copy_from_slice(b"old\0x");
        std::fs::write(parent.join("pages-7.img"), stack).unwrap();
        let (core, _) = convert(&dir, 200);
        let ph = phdrs(&core);
        let off = ph[4].2 as usize;
        assert_eq!(&core[off + 0x100..off + 0x105], b"old\0x");
        assert_eq!(core[off], 0x77);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_leader_has_no_thread() {
        let dir = tmpdir("dead-leader");
        let lib = library(&dir);
        dump(&dir, &lib);
        // The leader has exited (pthread_exit), thread 201 runs on: the leader's core has no
        // registers and says TASK_DEAD, pstree.img still lists both.
        let leader = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            tc: Some(pb::TaskCoreEntry {
                task_state: TASK_DEAD,
                comm: "proc".into(),
                ..Default::default()
            }),
            thread_core: Some(pb::ThreadCoreEntry {
                sched_nice: Some(-3),
                creds: Some(pb::CredsEntry {
                    uid: 1000,
                    gid: 1001,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        write_all_entries(&dir, ImageKind::Core, Some(200), &[leader]).unwrap();
        let (core, stats) = convert(&dir, 200);
        assert_eq!(stats.threads, 1);
        let n = notes(&core);
        let types: Vec<u32> = n.iter().map(|x| x.1).collect();
        let mut want = FIRST_THREAD_NOTES.to_vec();
        want.push(elf::NT_X86_XSAVE_LAYOUT);
        assert_eq!(types, want);
        // The live thread, with the process's ids.
        let st = &n[0].2;
        assert_eq!(
            (u32_at(st, 32), u32_at(st, 36), u32_at(st, 40)),
            (201, 1, 200)
        );
        assert_eq!(u64_at(st, 112 + 16 * 8), 0x1_0020, "rip of thread 201");
        // The leader as the kernel describes it: state 8 ('.'), its pid, name and creds.
        let ps = &n[1].2;
        assert_eq!((ps[0], ps[1], ps[2], ps[3] as i8), (8, b'.', 0, -3));
        assert_eq!((u32_at(ps, 16), u32_at(ps, 20)), (1000, 1001));
        assert_eq!(u32_at(ps, 24), 200);
        assert_eq!(&ps[40..45], b"proc\0");
        // Memory as for any process.
        assert_eq!(phdrs(&core).len(), 10);
        let out_dir = dir.join("cores");
        let done = write_core_dumps(&dir, None, &out_dir).unwrap();
        assert_eq!(done.written.len(), 1);
        assert!(done.skipped.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_images_are_errors() {
        let dir = tmpdir("bad");
        let lib = library(&dir);
        dump(&dir, &lib);
        let mut out = Cursor::new(Vec::new());
        let err = write_core(&dir, 999, &mut out, Path::new("core")).unwrap_err();
        assert!(matches!(err, CoreDumpError::NoSuchPid { pid: 999, .. }));
        assert!(err.to_string().contains("lists 200"), "{err}");

        // A file id not in files.img.
        write_all_entries(&dir, ImageKind::Files, None, &Vec::<pb::FileEntry>::new()).unwrap();
        let err = write_core(&dir, 200, &mut out, Path::new("core")).unwrap_err();
        assert!(
            err.to_string().contains("mm-200.img") && err.to_string().contains("file id 5"),
            "{err}"
        );

        // Overlapping pagemap entries.
        let mut pm = create_pagemap(&dir, ImageKind::Pagemap, 200, 1).unwrap();
        pm.add(0x4_0000, 2, PE_PRESENT).unwrap();
        pm.add(0x4_1000, 1, PE_PRESENT).unwrap();
        pm.into_inner().finish_sync().unwrap();
        let err = write_core(&dir, 200, &mut out, Path::new("core")).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");

        // A zombie: dead, and no other thread.
        let pstree = pb::PstreeEntry {
            pid: 200,
            ppid: 1,
            pgid: 200,
            sid: 190,
            threads: vec![200],
        };
        write_all_entries(&dir, ImageKind::Pstree, None, &[pstree]).unwrap();
        let zombie = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            tc: Some(pb::TaskCoreEntry {
                task_state: TASK_DEAD,
                ..Default::default()
            }),
            ..Default::default()
        };
        write_all_entries(&dir, ImageKind::Core, Some(200), &[zombie]).unwrap();
        let err = write_core(&dir, 200, &mut out, Path::new("core")).unwrap_err();
        assert!(matches!(err, CoreDumpError::NoMemory { pid: 200, .. }));
        let out_dir = dir.join("cores");
        let done = write_core_dumps(&dir, None, &out_dir).unwrap();
        assert!(done.written.is_empty());
        assert_eq!(done.skipped.len(), 1);
        assert!(write_core_dumps(&dir, Some(200), &out_dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
