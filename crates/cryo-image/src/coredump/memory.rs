//! The memory of one dumped process as core-file segments: for each VMA, how many bytes its
//! `PT_LOAD` holds and where each byte comes from (a pages image, the mapped file, or zero).
//!
//! Pages are found through `pagemap-PID.img` (private memory, addresses) and
//! `pagemap-shmem-SHMID.img` (shared anonymous memory, offsets in the object); runs marked
//! `PE_PARENT` are looked up in `DIR/parent`, its `parent`, and so on (pre-dumps). Every
//! pagemap is checked against its pages image before anything is read: a run outside the
//! image, misaligned or overlapping another is an error naming the pagemap.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::elf::{PAGE_SIZE, PF_R, PF_W, PF_X};
use super::CoreDumpError;
use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::pagemap::{entry_flags, entry_len_bytes, read_pagemap, PE_PARENT, PE_PRESENT};
use crate::pb;
use crate::{image_path, open_image};

/// CRIU's VMA status bits (`criu/include/image.h`).
pub(super) mod status {
    /// `[vsyscall]`.
    pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
    /// `[vdso]`.
    pub const VMA_AREA_VDSO: u32 = 1 << 3;
    /// Private file mapping.
    pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
    /// Shared file mapping.
    pub const VMA_FILE_SHARED: u32 = 1 << 7;
    /// Shared anonymous memory.
    pub const VMA_ANON_SHARED: u32 = 1 << 8;
    /// SysV shared memory.
    pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
    /// `[vvar]`, `[vvar_vclock]`.
    pub const VMA_AREA_VVAR: u32 = 1 << 12;
}
use status::*;

/// `MADV_DONTDUMP`, as a bit of `vma_entry.madv`.
const MADV_DONTDUMP_BIT: u64 = 1 << 16;
/// Pre-dump parents followed at most (a `parent` symlink loop ends here).
const MAX_PARENTS: usize = 64;
/// Largest read from an image or a mapped file at once.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

/// One run of a pagemap, in the address space of its object (the process, or a shared
/// memory object's offsets).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    len: u64,
    flags: u32,
    /// Offset in the pages image, for `PE_PRESENT` runs.
    off: u64,
}

/// One pagemap image, its runs sorted by address, and its opened pages image.
#[derive(Debug)]
struct Level {
    image: PathBuf,
    pages: Option<usize>,
    runs: Vec<Run>,
}

/// A pagemap and, for the runs it leaves to a parent, the parents' pagemaps.
#[derive(Debug, Default)]
struct Chain {
    levels: Vec<Level>,
}

/// Where the bytes of part of a segment come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Data {
    /// Opened file `file` at byte `off`: a pages image.
    Image {
        /// Index of the opened file.
        file: usize,
        /// Byte offset.
        off: u64,
    },
    /// Opened file `file` at byte `off`: the mapped file; bytes past its end are zero.
    File {
        /// Index of the opened file.
        file: usize,
        /// Byte offset.
        off: u64,
    },
    /// Zero bytes (a hole in the core file).
    Zero,
}

/// `len` bytes of a segment, from `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    /// Bytes.
    pub len: u64,
    /// Where they come from.
    pub data: Data,
}

/// One `PT_LOAD`: the VMA's address, size and protection, and the pieces of its `p_filesz`
/// bytes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_flags`.
    pub flags: u32,
    /// The bytes in the file; their total is `p_filesz`.
    pub pieces: Vec<Piece>,
}

impl Segment {
    /// `p_filesz`.
    pub fn filesz(&self) -> u64 {
        self.pieces.iter().map(|p| p.len).sum()
    }
}

/// What is known of a file a VMA maps.
#[derive(Debug, Clone, Default)]
pub(super) struct MappedFile {
    /// Its path when dumped.
    pub name: String,
    /// Its size when dumped, if recorded.
    pub size: Option<u64>,
    /// It was unlinked when dumped (a ghost or linked remap): the path is not the file.
    pub deleted: bool,
}

/// Where a part of a pagemap range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Image {
        file: usize,
        off: u64,
    },
    /// Not in any pagemap: never written (anonymous) or unmodified (file).
    Gap,
    /// `PE_LAZY` without `PE_PRESENT`: left on a page server, not in the images.
    Lazy,
}

#[derive(Debug)]
struct Opened {
    path: PathBuf,
    file: File,
}

/// The memory sources of one process.
#[derive(Debug)]
pub(super) struct Memory {
    dir: PathBuf,
    opened: Vec<Opened>,
    private: Chain,
    shmem: HashMap<u64, Chain>,
    mapped: HashMap<u32, Option<usize>>,
    lazy_bytes: u64,
    /// What the core lacks, for the user.
    pub warnings: Vec<String>,
    warned: HashSet<String>,
}

fn bad(image: &Path, what: String) -> CoreDumpError {
    CoreDumpError::BadImage {
        image: image.to_path_buf(),
        what,
    }
}

impl Memory {
    /// Reads `pagemap-PID.img` (and its parents) of `pid` in `dir`.
    pub fn load(dir: &Path, pid: u32) -> Result<Memory, CoreDumpError> {
        let mut m = Memory {
            dir: dir.to_path_buf(),
            opened: Vec::new(),
            private: Chain::default(),
            shmem: HashMap::new(),
            mapped: HashMap::new(),
            lazy_bytes: 0,
            warnings: Vec::new(),
            warned: HashSet::new(),
        };
        m.private = m.load_chain(ImageKind::Pagemap, u64::from(pid), true)?;
        Ok(m)
    }

    fn warn(&mut self, key: String, text: String) {
        if self.warned.insert(key) {
            self.warnings.push(text);
        }
    }

    /// Warnings gathered over the whole process (lazy pages are counted, then told once).
    pub fn finish_warnings(&mut self) {
        if self.lazy_bytes > 0 {
            let n = self.lazy_bytes / PAGE_SIZE;
            self.warnings.push(format!(
                "{n} lazy page(s) are not in the images (left on a page server): zero in the core"
            ));
            self.lazy_bytes = 0;
        }
    }

    fn load_level(
        &mut self,
        dir: &Path,
        kind: ImageKind,
        id: u64,
    ) -> Result<Option<Level>, CoreDumpError> {
        let image = image_path(dir, kind, Some(id))?;
        let (head, entries) = match read_pagemap(dir, kind, id) {
            Ok(x) => x,
            Err(ImageError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut runs = Vec::with_capacity(entries.len());
        let mut present_bytes = 0u64;
        for pe in &entries {
            let flags = entry_flags(pe);
            let len = entry_len_bytes(pe).ok_or_else(|| {
                bad(
                    &image,
                    format!("entry at {:#x}: page count overflows", pe.vaddr),
                )
            })?;
            if pe.vaddr % PAGE_SIZE != 0 || pe.vaddr.checked_add(len).is_none() {
                return Err(bad(
                    &image,
                    format!(
                        "entry at {:#x} ({len} bytes) is not a page-aligned range",
                        pe.vaddr
                    ),
                ));
            }
            let off = present_bytes;
            if flags & PE_PRESENT != 0 {
                present_bytes = present_bytes.checked_add(len).ok_or_else(|| {
                    bad(&image, "pages add up to more than 2^64 bytes".to_string())
                })?;
            }
            if len > 0 {
                runs.push(Run {
                    start: pe.vaddr,
                    len,
                    flags,
                    off,
                });
            }
        }
        runs.sort_by_key(|r| r.start);
        for w in runs.windows(2) {
            if w[0].start + w[0].len > w[1].start {
                return Err(bad(&image, format!("entries overlap at {:#x}", w[1].start)));
            }
        }
        let pages = if present_bytes > 0 {
            let id = u64::from(head.pages_id);
            let path = image_path(dir, ImageKind::Pages, Some(id))?;
            let file = open_image(dir, ImageKind::Pages, Some(id))?
                .into_inner()
                .into_inner();
            let len = file
                .metadata()
                .map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            if len < present_bytes {
                return Err(ImageError::Truncated {
                    path,
                    what: "raw data",
                    offset: 0,
                    wanted: present_bytes,
                    got: len,
                }
                .into());
            }
            self.opened.push(Opened { path, file });
            Some(self.opened.len() - 1)
        } else {
            None
        };
        Ok(Some(Level { image, pages, runs }))
    }

    /// The pagemap of `kind`/`id` and its parents. A missing pagemap is an error if
    /// `required`, else an empty chain (a shared object with no data).
    fn load_chain(
        &mut self,
        kind: ImageKind,
        id: u64,
        required: bool,
    ) -> Result<Chain, CoreDumpError> {
        let mut dir = self.dir.clone();
        let mut chain = Chain::default();
        loop {
            let Some(level) = self.load_level(&dir, kind, id)? else {
                if chain.levels.is_empty() && !required {
                    return Ok(chain);
                }
                return Err(ImageError::Missing {
                    path: image_path(&dir, kind, Some(id))?,
                }
                .into());
            };
            let parent_run = level
                .runs
                .iter()
                .find(|r| r.flags & PE_PARENT != 0)
                .copied();
            let image = level.image.clone();
            chain.levels.push(level);
            let Some(run) = parent_run else {
                return Ok(chain);
            };
            dir = dir.join("parent");
            if chain.levels.len() > MAX_PARENTS || !dir.is_dir() {
                return Err(bad(
                    &image,
                    format!(
                        "pages at {:#x} are in a parent dump, but {} is not a directory of \
                         images (or the chain of parents is longer than {MAX_PARENTS})",
                        run.start,
                        dir.display()
                    ),
                ));
            }
        }
    }

    /// Where the bytes `a..b` of the chain's object are, level `k` down.
    fn resolve(
        chain: &Chain,
        k: usize,
        a: u64,
        b: u64,
        out: &mut Vec<(u64, Found)>,
    ) -> Result<(), CoreDumpError> {
        let Some(level) = chain.levels.get(k) else {
            // load_chain loads a parent for every level that refers to one.
            out.push((b - a, Found::Gap));
            return Ok(());
        };
        let runs = &level.runs;
        let mut i = runs.partition_point(|r| r.start + r.len <= a);
        let mut at = a;
        while at < b {
            match runs.get(i) {
                Some(r) if r.start <= at => {
                    let end = b.min(r.start + r.len);
                    if r.flags & PE_PRESENT != 0 {
                        let file = level.pages.ok_or_else(|| {
                            bad(&level.image, "present pages without a pages image".into())
                        })?;
                        push(
                            out,
                            end - at,
                            Found::Image {
                                file,
                                off: r.off + (at - r.start),
                            },
                        );
                    } else if r.flags & PE_PARENT != 0 {
                        Self::resolve(chain, k + 1, at, end, out)?;
                    } else {
                        push(out, end - at, Found::Lazy);
                    }
                    at = end;
                    i += 1;
                }
                Some(r) => {
                    let end = b.min(r.start);
                    push(out, end - at, Found::Gap);
                    at = end;
                }
                None => {
                    push(out, b - at, Found::Gap);
                    at = b;
                }
            }
        }
        Ok(())
    }

    /// Opens the file a VMA maps, if it is there and looks like the one dumped (same size).
    fn mapped_file(&mut self, id: u32, f: &MappedFile) -> Option<usize> {
        if let Some(i) = self.mapped.get(&id) {
            return *i;
        }
        let opened = self.open_mapped(f);
        let i = match opened {
            Ok(file) => {
                self.opened.push(Opened {
                    path: PathBuf::from(&f.name),
                    file,
                });
                Some(self.opened.len() - 1)
            }
            Err(why) => {
                self.warn(
                    format!("file {id}"),
                    format!(
                        "{}: {why}: its unmodified pages are not in the core",
                        f.name
                    ),
                );
                None
            }
        };
        self.mapped.insert(id, i);
        i
    }

    fn open_mapped(&self, f: &MappedFile) -> Result<File, String> {
        if f.deleted {
            return Err("deleted when dumped".into());
        }
        // Checked before opening, so a FIFO or device at the path is never opened.
        let meta = std::fs::metadata(&f.name).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if let Some(size) = f.size.filter(|s| *s != meta.len()) {
            return Err(format!(
                "changed since the dump (size {}, was {size})",
                meta.len()
            ));
        }
        File::open(&f.name).map_err(|e| e.to_string())
    }

    /// The segment of `vma` (checked by the caller: page-aligned, `start < end`, `pgoff +
    /// size` without overflow); `file` describes the file it maps, if any.
    ///
    /// Which bytes are in the file follows the kernel's default `coredump_filter` (0x33):
    /// - vDSO, vvar, vsyscall: whole (vvar and vsyscall as zero, the vDSO from the pages if the
    ///   dump has them, else nothing: cryo never copies it);
    /// - `MADV_DONTDUMP`: nothing;
    /// - private anonymous memory: whole, pages not in the dump being zero; nothing if it is
    ///   `PROT_NONE` and has no page in the dump (a guard or reservation);
    /// - shared anonymous memory: whole, from its shmem pagemap, zero elsewhere;
    /// - private file mapping with pages in the dump (written to): whole, the unmodified pages
    ///   read from the file if it is still there with the dumped size, else zero with a
    ///   warning; without pages: the first page if it is the start of an ELF file (`pgoff` 0),
    ///   read from the file, else nothing;
    /// - shared file mapping, SysV shared memory: nothing.
    pub fn plan(
        &mut self,
        vma: &pb::VmaEntry,
        file: Option<&MappedFile>,
    ) -> Result<Segment, CoreDumpError> {
        let (start, end) = (vma.start, vma.end);
        let memsz = end - start;
        let mut flags = 0;
        for (prot, pf) in [(1, PF_R), (2, PF_W), (4, PF_X)] {
            if vma.prot & prot != 0 {
                flags |= pf;
            }
        }
        let seg = |pieces: Vec<Piece>| Segment {
            vaddr: start,
            memsz,
            flags,
            pieces,
        };
        let zero = |len: u64| Piece {
            len,
            data: Data::Zero,
        };
        let st = vma.status;
        if st & (VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0 {
            return Ok(seg(vec![zero(memsz)]));
        }
        if st & VMA_AREA_VDSO == 0 && vma.madv.unwrap_or(0) & MADV_DONTDUMP_BIT != 0 {
            return Ok(seg(Vec::new()));
        }
        if st & VMA_AREA_SYSVIPC != 0 {
            self.warn(
                format!("sysv {start}"),
                format!(
                    "SysV shared memory at {start:#x}-{end:#x}: its contents are not in the core"
                ),
            );
            return Ok(seg(Vec::new()));
        }
        if st & VMA_FILE_SHARED != 0 {
            return Ok(seg(Vec::new()));
        }
        let mut found = Vec::new();
        if st & VMA_ANON_SHARED != 0 {
            if !self.shmem.contains_key(&vma.shmid) {
                let chain = self.load_chain(ImageKind::ShmemPagemap, vma.shmid, false)?;
                self.shmem.insert(vma.shmid, chain);
            }
            // The caller checked that pgoff + memsz does not overflow.
            let obj_end = vma.pgoff.saturating_add(memsz);
            if let Some(chain) = self.shmem.get(&vma.shmid) {
                Self::resolve(chain, 0, vma.pgoff, obj_end, &mut found)?;
            }
        } else {
            Self::resolve(&self.private, 0, start, end, &mut found)?;
        }
        let dumped = found.iter().any(|(_, f)| *f != Found::Gap);
        if st & VMA_AREA_VDSO != 0 && !dumped {
            return Ok(seg(Vec::new()));
        }
        let file_private = st & VMA_FILE_PRIVATE != 0;
        if file_private && !dumped {
            return Ok(seg(self.elf_header_page(vma, file)));
        }
        if !file_private && !dumped && vma.prot == 0 {
            return Ok(seg(Vec::new()));
        }
        let source = match file {
            Some(f) if file_private => self.mapped_file(vma.shmid as u32, f),
            _ => None,
        };
        if file_private && source.is_none() {
            let name = file.map_or("?", |f| f.name.as_str());
            self.warn(
                format!("vma {start}"),
                format!("{start:#x}-{end:#x} ({name}): unmodified pages are zero in the core"),
            );
        }
        let mut pieces = Vec::with_capacity(found.len());
        let mut at = start;
        for (len, f) in found {
            let data = match f {
                Found::Image { file, off } => Data::Image { file, off },
                Found::Gap => match source {
                    Some(file) => Data::File {
                        file,
                        off: vma.pgoff.saturating_add(at - start),
                    },
                    None => Data::Zero,
                },
                Found::Lazy => {
                    self.lazy_bytes += len;
                    Data::Zero
                }
            };
            pieces.push(Piece { len, data });
            at += len;
        }
        Ok(seg(pieces))
    }

    /// The first page of a private file mapping at offset 0 of an ELF file, read from the
    /// file (as the kernel's `MMF_DUMP_ELF_HEADERS`): gdb finds build ids and load addresses
    /// there. Nothing if the file is not there or not ELF.
    fn elf_header_page(&mut self, vma: &pb::VmaEntry, file: Option<&MappedFile>) -> Vec<Piece> {
        let Some(f) = file else {
            return Vec::new();
        };
        if vma.pgoff != 0 || vma.prot & 1 == 0 {
            return Vec::new();
        }
        let Some(i) = self.mapped_file(vma.shmid as u32, f) else {
            return Vec::new();
        };
        let mut magic = [0u8; 4];
        match self
            .opened
            .get(i)
            .map(|o| o.file.read_exact_at(&mut magic, 0))
        {
            Some(Ok(())) if &magic == b"\x7fELF" => vec![Piece {
                len: PAGE_SIZE.min(vma.end - vma.start),
                data: Data::File { file: i, off: 0 },
            }],
            _ => Vec::new(),
        }
    }

    /// Reads `buf.len()` bytes of `data` starting `at` bytes into it. Image data must be
    /// there (the pagemap was checked against the image's size); file data past the end of
    /// the file is zero.
    pub fn read(&self, data: Data, at: u64, buf: &mut [u8]) -> Result<(), CoreDumpError> {
        match data {
            Data::Zero => buf.fill(0),
            Data::Image { file, off } => {
                let o = self.opened.get(file).ok_or(CoreDumpError::Internal)?;
                o.file
                    .read_exact_at(buf, off + at)
                    .map_err(|source| ImageError::Io {
                        path: o.path.clone(),
                        source,
                    })?;
            }
            Data::File { file, off } => {
                let o = self.opened.get(file).ok_or(CoreDumpError::Internal)?;
                let mut done = 0;
                while done < buf.len() {
                    match o.file.read_at(&mut buf[done..], off + at + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(CoreDumpError::Io {
                                what: "read mapped file",
                                path: o.path.clone(),
                                source,
                            })
                        }
                    }
                }
                buf[done..].fill(0);
            }
        }
        Ok(())
    }

    /// Up to `len` bytes of memory at `addr` as the segments hold them (for the command line
    /// in `NT_PRPSINFO`); shorter if the segment ends or does not hold them.
    pub fn read_memory(
        &self,
        segs: &[Segment],
        addr: u64,
        len: usize,
    ) -> Result<Vec<u8>, CoreDumpError> {
        let Some(seg) = segs
            .iter()
            .find(|s| s.vaddr <= addr && addr - s.vaddr < s.memsz)
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut want_at = addr - seg.vaddr;
        let mut piece_start = 0u64;
        for p in &seg.pieces {
            let piece_end = piece_start + p.len;
            if want_at >= piece_start && want_at < piece_end && out.len() < len {
                let n = ((piece_end - want_at) as usize).min(len - out.len());
                let mut buf = vec![0u8; n];
                self.read(p.data, want_at - piece_start, &mut buf)?;
                out.extend_from_slice(&buf);
                want_at += n as u64;
            }
            piece_start = piece_end;
        }
        Ok(out)
    }
}

/// Appends a part, merging it with the previous one when they continue each other.
fn push(out: &mut Vec<(u64, Found)>, len: u64, f: Found) {
    if len == 0 {
        return;
    }
    if let Some((plen, prev)) = out.last_mut() {
        let merged = match (*prev, f) {
            (Found::Gap, Found::Gap) | (Found::Lazy, Found::Lazy) => true,
            (Found::Image { file: a, off: o }, Found::Image { file: b, off: p }) => {
                a == b && o + *plen == p
            }
            _ => false,
        };
        if merged {
            *plen += len;
            return;
        }
    }
    out.push((len, f));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(runs: &[(u64, u64, u32, u64)]) -> Level {
        Level {
            image: PathBuf::from("pagemap-1.img"),
            pages: Some(0),
            runs: runs
                .iter()
                .map(|&(start, len, flags, off)| Run {
                    start,
                    len,
                    flags,
                    off,
                })
                .collect(),
        }
    }

    #[test]
    fn resolve_gaps_runs_and_parents() {
        let mut top = level(&[
            (0x1000, 0x2000, PE_PRESENT, 0),
            (0x3000, 0x1000, PE_PARENT, 0),
            (0x6000, 0x1000, PE_PRESENT, 0x2000),
        ]);
        top.pages = Some(0);
        let mut parent = level(&[(0x3000, 0x1000, PE_PRESENT, 0x5000)]);
        parent.pages = Some(1);
        let chain = Chain {
            levels: vec![top, parent],
        };
        let mut out = Vec::new();
        Memory::resolve(&chain, 0, 0x0, 0x8000, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                (0x1000, Found::Gap),
                (0x2000, Found::Image { file: 0, off: 0 }),
                (
                    0x1000,
                    Found::Image {
                        file: 1,
                        off: 0x5000
                    }
                ),
                (0x2000, Found::Gap),
                (
                    0x1000,
                    Found::Image {
                        file: 0,
                        off: 0x2000
                    }
                ),
                (0x1000, Found::Gap),
            ]
        );
        // A window starting inside a run.
        let mut out = Vec::new();
        Memory::resolve(&chain, 0, 0x2000, 0x3000, &mut out).unwrap();
        assert_eq!(
            out,
            vec![(
                0x1000,
                Found::Image {
                    file: 0,
                    off: 0x1000
                }
            )]
        );
    }

    #[test]
    fn adjacent_image_parts_merge() {
        let mut out = Vec::new();
        push(&mut out, 0x1000, Found::Image { file: 0, off: 0 });
        push(
            &mut out,
            0x1000,
            Found::Image {
                file: 0,
                off: 0x1000,
            },
        );
        push(
            &mut out,
            0x1000,
            Found::Image {
                file: 0,
                off: 0x5000,
            },
        );
        push(&mut out, 0, Found::Gap);
        assert_eq!(
            out,
            vec![
                (0x2000, Found::Image { file: 0, off: 0 }),
                (
                    0x1000,
                    Found::Image {
                        file: 0,
                        off: 0x5000
                    }
                )
            ]
        );
    }
}
