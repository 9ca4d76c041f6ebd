//! `crit validate`: whether a dump directory can be restored, and every reason it cannot.
//!
//! Checks: required images (inventory, pstree, per task `core-TID` for each thread and, for
//! live tasks, `mm`, `pagemap`, `fs`, ids (`ids-PID` or `core.ids`), `fdinfo-<files_id>`);
//! files that are no image of a known kind; magics; truncated entries; pagemap entries
//! (sorted, not overlapping, inside the task's VMAs); `pages-N.img` length against the
//! pagemaps (task and shmem) naming it; files entries without their type's sub-message; the
//! pstree (one root, or several that lead their own sessions and groups, as `dump --cgroup`
//! writes; known parents, no duplicate pids); x86_64 register values.
//!
//! Ids that resolve to nothing, each named by image, entry and field:
//! ```text
//! ids / core.ids   files_id          -> fdinfo-<files_id>.img
//! fdinfo           id, type          -> a file of that type (files.img, or a legacy
//!                                       per-kind image: reg-files.img, pipes.img, ...)
//! fs               cwd_id, root_id   -> a REG file
//! mm               exe_file_id       -> a REG file
//! mm               vmas[i].shmid     -> a REG file (MEMFD with VMA_AREA_MEMFD) for a file
//!                                       mapping (not SysV IPC, not a packet socket ring)
//! files            fifo.regf_id      -> a REG file (the fifo's own id without regf_id)
//!                  tty.tty_info_id   -> a tty-info.img entry; tty.regf_id -> a REG file
//!                  memfd.inode_id    -> a memfd.img (MEMFD_INODE) entry
//! remap-fpath      orig_id           -> a REG file; remap_id -> ghost-file-<id>.img (GHOST,
//!                                       or the old REMAP_GHOST bit), a REG file (LINKED)
//! pipes-data       pipe_id           -> a PIPE with that pipe_id (fifo-data: a FIFO)
//! sk-queues        id_for            -> a socket; scm[].rights -> files
//! core             thread_core.cg_set (tc.cg_set in old images), when it differs from the
//!                  parent's (the root's: inventory root_cg_set; a thread's: its task's)
//!                                    -> a cgroup.img set
//! ```
//! CRIU names `mm-`, `fs-`, `core-` and `ids-` images by pid, not by `vm_id`/`fs_id`, and
//! namespace images only exist for namespaces the dump owns; those ids are not checked.

use super::Json;
use crate::frame::ImageReader;
use crate::kind::ImageKind;
use crate::pagemap::{entry_flags, entry_nr_pages, PAGE_SIZE, PE_PRESENT};
use crate::pb;
use pb::FdTypes as T;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

/// One reason a dump cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The image file (name in the directory) the problem is in or about.
    pub image: String,
    /// Index of the entry (0 = first entry after the header), if the problem is in one.
    pub entry: Option<usize>,
    /// The field concerned (`"pid"`, `"thread_info.gpregs.cs"`), empty when none.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    fn new(image: &str, entry: Option<usize>, field: &str, reason: impl Into<String>) -> Self {
        Problem {
            image: image.to_string(),
            entry,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// `{"image": ..., "entry": N|null, "field": ..., "reason": ...}`.
    pub fn to_json(&self) -> Json {
        Json::Object(vec![
            ("image".into(), Json::Str(self.image.clone())),
            (
                "entry".into(),
                self.entry.map_or(Json::Null, |e| Json::Int(e as i128)),
            ),
            ("field".into(), Json::Str(self.field.clone())),
            ("reason".into(), Json::Str(self.reason.clone())),
        ])
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.image)?;
        if let Some(e) = self.entry {
            write!(f, " entry {e}")?;
        }
        if !self.field.is_empty() {
            write!(f, " field {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// CRIU's `TASK_ALIVE`, `TASK_DEAD` and `TASK_STOPPED`.
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;
/// Lowest non-canonical user address on x86_64.
const USER_TOP: u64 = 0x8000_0000_0000;
/// CRIU's VMA status bits (`criu/include/image.h`).
const VMA_FILE_PRIVATE: u32 = 1 << 6;
const VMA_FILE_SHARED: u32 = 1 << 7;
const VMA_AREA_SYSVIPC: u32 = 1 << 10;
const VMA_AREA_SOCKET: u32 = 1 << 11;
const VMA_AREA_MEMFD: u32 = 1 << 14;
/// Old images mark a ghost remap in `remap_id` instead of `remap_type`.
const REMAP_GHOST: u32 = 1 << 31;
/// `SCM_RIGHTS`: an scm entry whose `rights` are file ids.
const SCM_RIGHTS: u32 = 1;

/// Any file-kind entry: every one has its file id in field 1.
#[derive(Clone, PartialEq, prost::Message)]
struct FileId {
    #[prost(uint32, tag = "1")]
    id: u32,
}

/// Old per-kind file images (before files.img) and the type of their entries.
const LEGACY_FILES: &[(ImageKind, T)] = &[
    (ImageKind::RegFiles, T::Reg),
    (ImageKind::Pipes, T::Pipe),
    (ImageKind::Fifo, T::Fifo),
    (ImageKind::Inetsk, T::Inetsk),
    (ImageKind::Unixsk, T::Unixsk),
    (ImageKind::EventfdFile, T::Eventfd),
    (ImageKind::EventpollFile, T::Eventpoll),
    (ImageKind::InotifyFile, T::Inotify),
    (ImageKind::Signalfd, T::Signalfd),
    (ImageKind::Packetsk, T::Packetsk),
    (ImageKind::TtyFiles, T::Tty),
    (ImageKind::FanotifyFile, T::Fanotify),
    (ImageKind::NetlinkSk, T::Netlinksk),
    (ImageKind::NsFiles, T::Ns),
    (ImageKind::Tunfile, T::Tunf),
    (ImageKind::ExtFiles, T::Ext),
    (ImageKind::Timerfd, T::Timerfd),
    (ImageKind::BpfmapFile, T::Bpfmap),
    (ImageKind::Pidfd, T::Pidfd),
];

/// Every file of the dump by id: its type (`files.img` first, then the legacy images).
#[derive(Default)]
struct FileTable {
    by_id: BTreeMap<u32, i32>,
}

impl FileTable {
    /// Why `id` is no file of one of the types `want` (any type when empty), `None` if it is.
    fn lookup(&self, id: u32, want: &[T]) -> Option<String> {
        let name =
            |t: i32| T::try_from(t).map_or_else(|_| t.to_string(), |t| t.as_str_name().to_string());
        match self.by_id.get(&id) {
            None => Some(format!("file id {id} has no files.img entry")),
            Some(&t) if !want.is_empty() && !want.iter().any(|w| *w as i32 == t) => {
                let want: Vec<&str> = want.iter().map(|w| w.as_str_name()).collect();
                Some(format!(
                    "file id {id} is a {}, not a {}",
                    name(t),
                    want.join(" or ")
                ))
            }
            Some(_) => None,
        }
    }
}

struct Ctx<'a> {
    dir: &'a Path,
    problems: Vec<Problem>,
    present: BTreeSet<String>,
    /// Images whose header is already reported bad.
    bad_header: BTreeSet<String>,
}

impl Ctx<'_> {
    fn push(&mut self, image: &str, entry: Option<usize>, field: &str, reason: impl Into<String>) {
        self.problems
            .push(Problem::new(image, entry, field, reason));
    }

    /// Reads every entry of `kind`/`id` as `M`; missing file: `None` (and a problem if
    /// `required`); framing errors are recorded (for the kinds of [`OWN`]; the others were
    /// checked with crit's reader already), the entries before them kept.
    fn read<M: prost::Message + Default>(
        &mut self,
        kind: ImageKind,
        id: Option<u64>,
        required: bool,
        why: &str,
    ) -> Option<(String, Vec<M>)> {
        let name = kind.file_name(id).ok()?;
        if self.bad_header.contains(&name) {
            return None;
        }
        if !self.present.contains(&name) {
            if required {
                self.push(&name, None, "", format!("missing image ({why})"));
            }
            return None;
        }
        let data = match std::fs::read(self.dir.join(&name)) {
            Ok(d) => d,
            Err(e) => {
                self.push(&name, None, "", format!("cannot read: {e}"));
                return None;
            }
        };
        let len = data.len() as u64;
        let own = OWN.contains(&kind);
        let mut r = match ImageReader::with_len(Cursor::new(data), kind, name.clone(), len) {
            Ok(r) => r,
            Err(e) => {
                if own {
                    self.push(&name, None, "magic", e.to_string());
                }
                return None;
            }
        };
        let mut out = Vec::new();
        loop {
            match r.read_entry::<M>() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    if own {
                        self.push(&name, Some(out.len()), "", e.to_string());
                    }
                    break;
                }
            }
        }
        Some((name, out))
    }
}

impl Ctx<'_> {
    /// Like [`Ctx::read`] for images whose entries carry a raw blob of `extra(entry)` bytes.
    fn read_with_extra<M: prost::Message + Default>(
        &mut self,
        kind: ImageKind,
        extra: impl Fn(&M) -> u64,
    ) -> Option<(String, Vec<M>)> {
        let name = kind.file_name(None).ok()?;
        if !self.present.contains(&name) {
            return None;
        }
        let data = match std::fs::read(self.dir.join(&name)) {
            Ok(d) => d,
            Err(e) => {
                self.push(&name, None, "", format!("cannot read: {e}"));
                return None;
            }
        };
        let len = data.len() as u64;
        // A bad header or framing is reported by the crit check of every image.
        let mut r = ImageReader::with_len(Cursor::new(data), kind, name.clone(), len).ok()?;
        let mut out = Vec::new();
        while let Ok(Some(m)) = r.read_entry::<M>() {
            if r.read_raw(extra(&m)).is_err() {
                break;
            }
            out.push(m);
        }
        Some((name, out))
    }
}

/// Images validate reads entry by entry itself (the rest are checked with crit's reader).
const OWN: &[ImageKind] = &[
    ImageKind::Inventory,
    ImageKind::Pstree,
    ImageKind::Core,
    ImageKind::Mm,
    ImageKind::Pagemap,
    ImageKind::Fs,
    ImageKind::Ids,
    ImageKind::Fdinfo,
    ImageKind::Files,
];

/// Validates the dump in `dir`; the empty list when it can be restored.
pub fn validate(dir: &Path) -> std::io::Result<Vec<Problem>> {
    let mut cx = Ctx {
        dir,
        problems: Vec::new(),
        present: BTreeSet::new(),
        bad_header: BTreeSet::new(),
    };
    let mut pages_files = BTreeMap::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().into_owned();
        // Logs and other non-image files (CRIU writes dump.log there too) are not images.
        if !name.ends_with(".img") {
            continue;
        }
        if !ent.file_type()?.is_file() {
            cx.push(&name, None, "", "not an image file");
            continue;
        }
        match ImageKind::from_file_name(&name) {
            None => cx.push(&name, None, "", "not an image of any known kind"),
            Some((kind, id)) => {
                if OWN.contains(&kind) {
                    // Headers of every image read here, used by a task or not.
                    let data = std::fs::read(ent.path())?;
                    let len = data.len() as u64;
                    if let Err(e) = ImageReader::with_len(Cursor::new(data), kind, &name, len) {
                        cx.push(&name, None, "magic", e.to_string());
                        cx.bad_header.insert(name.clone());
                    }
                }
                if kind == ImageKind::Pages {
                    pages_files.insert(id.unwrap_or(0), ent.metadata()?.len());
                } else if !kind.is_raw() && !OWN.contains(&kind) {
                    let data = std::fs::read(ent.path())?;
                    if let Err(e) = super::info(&data) {
                        let field = if matches!(e, super::CritError::UnknownMagic(_)) {
                            "magic"
                        } else {
                            ""
                        };
                        cx.push(&name, None, field, e.to_string());
                    } else if data.len() < 8
                        || kind.head_magic().is_some_and(|h| {
                            u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) != h
                                || u32::from_ne_bytes([data[4], data[5], data[6], data[7]])
                                    != kind.magic()
                        })
                    {
                        cx.push(&name, None, "magic", "magic does not match the file name");
                    }
                }
                cx.present.insert(name);
            }
        }
    }

    let root_cg_set = cx
        .read::<pb::InventoryEntry>(ImageKind::Inventory, None, true, "every dump has one")
        .and_then(|(_, v)| v.first().and_then(|i| i.root_cg_set))
        .unwrap_or(0);
    let pstree = cx
        .read::<pb::PstreeEntry>(ImageKind::Pstree, None, true, "every dump has one")
        .map(|(_, v)| v)
        .unwrap_or_default();
    check_pstree(&mut cx, &pstree);

    let files = cx
        .read::<pb::FileEntry>(ImageKind::Files, None, false, "")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut table = FileTable::default();
    for f in &files {
        table.by_id.entry(f.id).or_insert(f.r#type);
    }
    for &(kind, t) in LEGACY_FILES {
        if let Some((_, v)) = cx.read::<FileId>(kind, None, false, "") {
            for f in v {
                table.by_id.entry(f.id).or_insert(t as i32);
            }
        }
    }
    check_files(&mut cx, &files, &table);
    check_file_refs(&mut cx, &table, &files);

    let mut pages_used: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut fdinfo_done = BTreeSet::new();
    let mut cgroups = CgSets::default();
    for p in &pstree {
        let pid = u64::from(p.pid);
        let threads: Vec<u32> = if p.threads.is_empty() {
            vec![p.pid]
        } else {
            p.threads.clone()
        };
        let mut main_core = None;
        for &tid in &threads {
            let why = format!("thread {tid} of task {pid}");
            if let Some((name, cores)) =
                cx.read::<pb::CoreEntry>(ImageKind::Core, Some(u64::from(tid)), true, &why)
            {
                match cores.first() {
                    Some(core) => {
                        check_regs(&mut cx, &name, core);
                        cgroups.note(p, tid, &name, core);
                        if tid == p.pid {
                            main_core = Some(core.clone());
                        }
                    }
                    None => cx.push(&name, Some(0), "", "no core entry"),
                }
            }
        }
        let Some(core) = main_core else { continue };
        // Live processes have memory, fs and fds in the images: running or stopped ones, and
        // those whose leader has exited while other threads run (TASK_DEAD with threads).
        let alive = core.tc.as_ref().is_some_and(|tc| match tc.task_state {
            TASK_ALIVE | TASK_STOPPED => true,
            TASK_DEAD => threads.len() > 1,
            _ => false,
        });
        if !alive {
            continue;
        }
        let why = format!("live task {pid}");
        let mm = cx
            .read::<pb::MmEntry>(ImageKind::Mm, Some(pid), true, &why)
            .and_then(|(name, v)| Some((name, v.into_iter().next()?)));
        let vmas = match mm {
            Some((name, mm)) => {
                check_mm(&mut cx, &name, &mm, &table);
                mm.vmas
            }
            None => Vec::new(),
        };
        if let Some((name, pm)) =
            cx.read::<pb::PagemapEntry>(ImageKind::Pagemap, Some(pid), true, &why)
        {
            check_pagemap(&mut cx, &name, &pm, Some(&vmas), &mut pages_used);
        }
        if let Some((name, fs)) = cx.read::<pb::FsEntry>(ImageKind::Fs, Some(pid), true, &why) {
            if let Some(fs) = fs.first() {
                for (field, id) in [("cwd_id", fs.cwd_id), ("root_id", fs.root_id)] {
                    if let Some(why) = table.lookup(id, &[T::Reg]) {
                        cx.push(&name, Some(0), field, why);
                    }
                }
            }
        }
        let ids = match cx.read::<pb::TaskKobjIdsEntry>(ImageKind::Ids, Some(pid), false, "") {
            Some((_, v)) if !v.is_empty() => v.into_iter().next(),
            _ => core.ids,
        };
        let Some(ids) = ids else {
            let name = ImageKind::Ids.file_name(Some(pid)).unwrap_or_default();
            cx.push(
                &name,
                None,
                "",
                format!("missing ids image and core.ids ({why})"),
            );
            continue;
        };
        let files_id = ids.files_id;
        if !fdinfo_done.insert(files_id) {
            continue;
        }
        let why = format!("files_id of task {pid}");
        if let Some((name, fds)) =
            cx.read::<pb::FdinfoEntry>(ImageKind::Fdinfo, Some(u64::from(files_id)), true, &why)
        {
            for (i, fd) in fds.iter().enumerate() {
                match table.by_id.get(&fd.id) {
                    None => cx.push(
                        &name,
                        Some(i),
                        "id",
                        format!("file id {} has no files.img entry", fd.id),
                    ),
                    Some(&t) if t != fd.r#type => {
                        if let Some(why) = T::try_from(fd.r#type)
                            .ok()
                            .and_then(|want| table.lookup(fd.id, &[want]))
                        {
                            cx.push(&name, Some(i), "type", why);
                        } else {
                            cx.push(
                                &name,
                                Some(i),
                                "type",
                                format!("bad file type {}", fd.r#type),
                            );
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }

    cgroups.check(&mut cx, root_cg_set);

    // Shared memory pagemaps take their pages from pages-N.img too.
    let shmem: Vec<u64> = cx
        .present
        .iter()
        .filter_map(|n| match ImageKind::from_file_name(n) {
            Some((ImageKind::ShmemPagemap, Some(id))) => Some(id),
            _ => None,
        })
        .collect();
    for id in shmem {
        if let Some((name, pm)) =
            cx.read::<pb::PagemapEntry>(ImageKind::ShmemPagemap, Some(id), false, "")
        {
            check_pagemap(&mut cx, &name, &pm, None, &mut pages_used);
        }
    }

    for (id, (want, first)) in &pages_used {
        let name = ImageKind::Pages.file_name(Some(*id)).unwrap_or_default();
        match pages_files.get(id) {
            None if *want > 0 => cx.push(
                &name,
                None,
                "",
                format!("missing image (pages of {first}, {want} bytes)"),
            ),
            None => {}
            Some(&have) if have != *want => cx.push(
                &name,
                None,
                "",
                format!("{have} bytes, but its pagemaps list {want} bytes of pages"),
            ),
            Some(_) => {}
        }
    }
    Ok(cx.problems)
}

fn check_pstree(cx: &mut Ctx<'_>, pstree: &[pb::PstreeEntry]) {
    let name = "pstree.img";
    let mut pids = BTreeSet::new();
    for (i, p) in pstree.iter().enumerate() {
        if !pids.insert(p.pid) {
            cx.push(name, Some(i), "pid", format!("duplicate pid {}", p.pid));
        }
    }
    if pstree.is_empty() && cx.present.contains(name) {
        cx.push(name, None, "", "no tasks");
        return;
    }
    let mut roots = Vec::new();
    for (i, p) in pstree.iter().enumerate() {
        if p.ppid == 0 {
            roots.push(i);
        } else if !pids.contains(&p.ppid) {
            cx.push(name, Some(i), "ppid", format!("unknown parent {}", p.ppid));
            roots.push(i);
        }
    }
    // Several roots are what `cryo dump --cgroup` writes (CRIU never does): each is restored
    // as a child of cryo, so each must be a root (ppid 0), and lead its own session and process
    // group or be in ones outside the dump, as nothing can put a child of cryo into a session
    // or group another restored task leads. One root keeps CRIU's rule.
    let bound = roots.iter().map(|&i| &pstree[i]).find(|p| {
        p.ppid != 0
            || (p.sid != p.pid && pids.contains(&p.sid))
            || (p.pgid != p.pid && pids.contains(&p.pgid))
    });
    if roots.len() > 1 && !pstree.is_empty() {
        if let Some(p) = bound {
            cx.push(
                name,
                None,
                "ppid",
                format!(
                    "{} root tasks, need exactly one, or roots that each lead their own session                      and group or are in ones outside the dump (pid {}: ppid {}, session {},                      group {})",
                    roots.len(),
                    p.pid,
                    p.ppid,
                    p.sid,
                    p.pgid
                ),
            );
        }
    } else if roots.len() != 1 && !pstree.is_empty() {
        cx.push(
            name,
            None,
            "ppid",
            format!("{} root tasks, need exactly one", roots.len()),
        );
    }
}

fn check_files(cx: &mut Ctx<'_>, files: &[pb::FileEntry], table: &FileTable) {
    let name = "files.img";
    let tty_infos: BTreeSet<u32> = cx
        .read::<pb::TtyInfoEntry>(ImageKind::TtyInfo, None, false, "")
        .map(|(_, v)| v.iter().map(|i| i.id).collect())
        .unwrap_or_default();
    let memfd_inodes: BTreeSet<u64> = cx
        .read::<pb::MemfdInodeEntry>(ImageKind::MemfdInode, None, false, "")
        .map(|(_, v)| v.iter().map(|i| i.inode_id).collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, f) in files.iter().enumerate() {
        if !seen.insert(f.id) {
            cx.push(name, Some(i), "id", format!("duplicate file id {}", f.id));
        }
        let (field, has) = match T::try_from(f.r#type) {
            Ok(T::Reg) => ("reg", f.reg.is_some()),
            Ok(T::Pipe) => ("pipe", f.pipe.is_some()),
            Ok(T::Fifo) => ("fifo", f.fifo.is_some()),
            Ok(T::Inetsk) => ("isk", f.isk.is_some()),
            Ok(T::Unixsk) => ("usk", f.usk.is_some()),
            Ok(T::Eventfd) => ("efd", f.efd.is_some()),
            Ok(T::Eventpoll) => ("epfd", f.epfd.is_some()),
            Ok(T::Inotify) => ("ify", f.ify.is_some()),
            Ok(T::Signalfd) => ("sgfd", f.sgfd.is_some()),
            Ok(T::Packetsk) => ("psk", f.psk.is_some()),
            Ok(T::Tty) => ("tty", f.tty.is_some()),
            Ok(T::Fanotify) => ("ffy", f.ffy.is_some()),
            Ok(T::Netlinksk) => ("nlsk", f.nlsk.is_some()),
            Ok(T::Ns) => ("nsf", f.nsf.is_some()),
            Ok(T::Tunf) => ("tunf", f.tunf.is_some()),
            Ok(T::Ext) => ("ext", f.ext.is_some()),
            Ok(T::Timerfd) => ("tfd", f.tfd.is_some()),
            Ok(T::Memfd) => ("memfd", f.memfd.is_some()),
            Ok(T::Bpfmap) => ("bpf", f.bpf.is_some()),
            Ok(T::Pidfd) => ("pidfd", f.pidfd.is_some()),
            _ => {
                cx.push(name, Some(i), "type", format!("bad file type {}", f.r#type));
                continue;
            }
        };
        if !has {
            cx.push(
                name,
                Some(i),
                field,
                format!("file {} of this type has no {field} sub-message", f.id),
            );
        }
        let mut reg = |field: &str, id: u32| {
            if let Some(why) = table.lookup(id, &[T::Reg]) {
                cx.push(name, Some(i), field, why);
            }
        };
        if let Some(fifo) = &f.fifo {
            reg("fifo.regf_id", fifo.regf_id.unwrap_or(fifo.id));
        }
        if let Some(tty) = &f.tty {
            if let Some(id) = tty.regf_id {
                reg("tty.regf_id", id);
            }
            if !tty_infos.contains(&tty.tty_info_id) {
                cx.push(
                    name,
                    Some(i),
                    "tty.tty_info_id",
                    format!("terminal {} has no tty-info.img entry", tty.tty_info_id),
                );
            }
        }
        if let Some(m) = &f.memfd {
            if !memfd_inodes.contains(&u64::from(m.inode_id)) {
                cx.push(
                    name,
                    Some(i),
                    "memfd.inode_id",
                    format!("memfd inode {} has no memfd.img entry", m.inode_id),
                );
            }
        }
    }
}

/// The cgroup sets the cores name (`thread_core.cg_set`, or `tc.cg_set` in older images).
#[derive(Default)]
struct CgSets {
    /// pid -> (parent, cg_set of the task).
    tasks: BTreeMap<u32, (u32, u32)>,
    /// (core image, field, cg_set, pid of its task, whether it leads it) of every thread.
    threads: Vec<(String, &'static str, u32, u32, bool)>,
}

impl CgSets {
    fn note(&mut self, p: &pb::PstreeEntry, tid: u32, image: &str, core: &pb::CoreEntry) {
        let (field, cg) = match (&core.thread_core, &core.tc) {
            (Some(tc), _) if tc.cg_set.is_some() => ("thread_core.cg_set", tc.cg_set),
            (_, Some(tc)) => ("tc.cg_set", tc.cg_set),
            _ => ("", None),
        };
        let cg = cg.unwrap_or(0);
        if tid == p.pid {
            self.tasks.insert(p.pid, (p.ppid, cg));
        }
        self.threads
            .push((image.to_string(), field, cg, p.pid, tid == p.pid));
    }

    /// CRIU's `restore_task_cgroup`: a task whose set differs from its parent's (the nearest
    /// with one; for the root, the inventory's `root_cg_set`) moves into a set of
    /// `cgroup.img`; so does a thread whose set differs from its task's.
    fn check(&self, cx: &mut Ctx<'_>, root_cg_set: u32) {
        let sets: BTreeSet<u32> = cx
            .read::<pb::CgroupEntry>(ImageKind::Cgroup, None, false, "")
            .and_then(|(_, v)| v.into_iter().next())
            .map(|c| c.sets.iter().map(|s| s.id).collect())
            .unwrap_or_default();
        let task_cg = |pid: u32| self.tasks.get(&pid).map_or(0, |t| t.1);
        for (image, field, cg, pid, leader) in &self.threads {
            let (ppid, own) = self.tasks.get(pid).copied().unwrap_or((0, 0));
            let current = if !leader {
                own
            } else {
                // The nearest ancestor with a set (zombies have none), else the root's.
                let mut at = ppid;
                let mut seen = BTreeSet::new();
                while at != 0 && task_cg(at) == 0 && seen.insert(at) {
                    at = self.tasks.get(&at).map_or(0, |t| t.0);
                }
                if at == 0 {
                    root_cg_set
                } else {
                    task_cg(at)
                }
            };
            if *cg != 0 && *cg != current && !sets.contains(cg) {
                cx.push(
                    image,
                    Some(0),
                    field,
                    format!("cgroup set {cg} is in no cgroup.img entry"),
                );
            }
        }
    }
}

/// The images that name files or pipes by id: remap-fpath, pipes-data, fifo-data, sk-queues.
fn check_file_refs(cx: &mut Ctx<'_>, table: &FileTable, files: &[pb::FileEntry]) {
    if let Some((name, remaps)) =
        cx.read::<pb::RemapFilePathEntry>(ImageKind::RemapFpath, None, false, "")
    {
        for (i, r) in remaps.iter().enumerate() {
            if let Some(why) = table.lookup(r.orig_id, &[T::Reg]) {
                cx.push(&name, Some(i), "orig_id", why);
            }
            let (ty, id) = match r.remap_type {
                Some(t) => (pb::RemapType::try_from(t).ok(), r.remap_id),
                None if r.remap_id & REMAP_GHOST != 0 => {
                    (Some(pb::RemapType::Ghost), r.remap_id & !REMAP_GHOST)
                }
                None => (Some(pb::RemapType::Linked), r.remap_id),
            };
            match ty {
                Some(pb::RemapType::Ghost) => {
                    let ghost = ImageKind::GhostFile
                        .file_name(Some(u64::from(id)))
                        .unwrap_or_default();
                    if !cx.present.contains(&ghost) {
                        cx.push(
                            &name,
                            Some(i),
                            "remap_id",
                            format!("ghost file {id:#x} has no {ghost}"),
                        );
                    }
                }
                Some(pb::RemapType::Linked) => {
                    if let Some(why) = table.lookup(id, &[T::Reg]) {
                        cx.push(&name, Some(i), "remap_id", why);
                    }
                }
                Some(pb::RemapType::Procfs) => {}
                None => cx.push(
                    &name,
                    Some(i),
                    "remap_type",
                    format!("bad remap type {}", r.remap_type.unwrap_or(-1)),
                ),
            }
        }
    }
    for (kind, ty, field) in [
        (ImageKind::PipesData, T::Pipe, "pipe"),
        (ImageKind::FifoData, T::Fifo, "fifo"),
    ] {
        let Some((name, data)) =
            cx.read_with_extra::<pb::PipeDataEntry>(kind, |e| u64::from(e.bytes))
        else {
            continue;
        };
        let mut ids: BTreeSet<u32> = files
            .iter()
            .filter_map(|f| match ty {
                T::Pipe => f.pipe.as_ref().map(|p| p.pipe_id),
                _ => f.fifo.as_ref().map(|p| p.pipe_id),
            })
            .collect();
        // Old dumps keep pipes and fifos in images of their own.
        let legacy = if ty == T::Pipe {
            cx.read::<pb::PipeEntry>(ImageKind::Pipes, None, false, "")
                .map(|(_, v)| v.iter().map(|p| p.pipe_id).collect::<Vec<_>>())
        } else {
            cx.read::<pb::FifoEntry>(ImageKind::Fifo, None, false, "")
                .map(|(_, v)| v.iter().map(|p| p.pipe_id).collect::<Vec<_>>())
        };
        ids.extend(legacy.unwrap_or_default());
        for (i, d) in data.iter().enumerate() {
            if !ids.contains(&d.pipe_id) {
                cx.push(
                    &name,
                    Some(i),
                    "pipe_id",
                    format!("no {field} has pipe_id {}", d.pipe_id),
                );
            }
        }
    }
    if let Some((name, queues)) =
        cx.read_with_extra::<pb::SkPacketEntry>(ImageKind::SkQueues, |e| u64::from(e.length))
    {
        let sockets = [T::Unixsk, T::Inetsk, T::Packetsk, T::Netlinksk];
        for (i, q) in queues.iter().enumerate() {
            if let Some(why) = table.lookup(q.id_for, &sockets) {
                cx.push(&name, Some(i), "id_for", why);
            }
            for (j, scm) in q.scm.iter().enumerate() {
                if scm.r#type != SCM_RIGHTS {
                    continue;
                }
                for &id in &scm.rights {
                    if let Some(why) = table.lookup(id, &[]) {
                        cx.push(&name, Some(i), &format!("scm[{j}].rights"), why);
                    }
                }
            }
        }
    }
}

/// The files an mm entry names: the executable and the files mapped.
fn check_mm(cx: &mut Ctx<'_>, name: &str, mm: &pb::MmEntry, table: &FileTable) {
    if let Some(why) = table.lookup(mm.exe_file_id, &[T::Reg]) {
        cx.push(name, Some(0), "exe_file_id", why);
    }
    for (i, v) in mm.vmas.iter().enumerate() {
        if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) == 0
            || v.status & (VMA_AREA_SYSVIPC | VMA_AREA_SOCKET) != 0
        {
            continue;
        }
        let want = if v.status & VMA_AREA_MEMFD != 0 {
            T::Memfd
        } else {
            T::Reg
        };
        let why = match u32::try_from(v.shmid) {
            Ok(id) => table.lookup(id, &[want]),
            Err(_) => Some(format!("file id {} out of range", v.shmid)),
        };
        if let Some(why) = why {
            cx.push(name, Some(0), &format!("vmas[{i}].shmid"), why);
        }
    }
}

fn check_regs(cx: &mut Ctx<'_>, name: &str, core: &pb::CoreEntry) {
    // A zombie's core (TASK_DEAD) has no registers: only its exit status is kept.
    if core.mtype != pb::core_entry::March::X8664 as i32
        || core
            .tc
            .as_ref()
            .is_some_and(|tc| tc.task_state == TASK_DEAD)
    {
        return;
    }
    let Some(ti) = &core.thread_info else {
        cx.push(
            name,
            Some(0),
            "thread_info",
            "x86_64 core without thread_info",
        );
        return;
    };
    let g = &ti.gpregs;
    let native =
        g.mode.unwrap_or(pb::UserX86RegsMode::Native as i32) == pb::UserX86RegsMode::Native as i32;
    if !native {
        return;
    }
    let mut bad = |field: &str, why: String| {
        cx.push(name, Some(0), &format!("thread_info.gpregs.{field}"), why);
    };
    if g.cs != 0x33 {
        bad(
            "cs",
            format!("{:#x}, not the 64-bit user code segment 0x33", g.cs),
        );
    }
    if g.ss != 0x2b {
        bad("ss", format!("{:#x}, not the user data segment 0x2b", g.ss));
    }
    for (field, v) in [
        ("ip", g.ip),
        ("sp", g.sp),
        ("fs_base", g.fs_base),
        ("gs_base", g.gs_base),
    ] {
        if v >= USER_TOP {
            bad(field, format!("{v:#x} is not a user address"));
        }
    }
}

/// Checks a pagemap (a task's with its `vmas`: sorted, inside them; a shmem one: `None`) and
/// adds the bytes of its present pages to `pages_used`.
fn check_pagemap(
    cx: &mut Ctx<'_>,
    name: &str,
    pm: &[pb::PagemapEntry],
    vmas: Option<&[pb::VmaEntry]>,
    pages_used: &mut BTreeMap<u64, (u64, String)>,
) {
    // The first entry is the head (decoded as a pagemap_entry: the same tag 1).
    let Some(head) = pm.first() else {
        cx.push(name, None, "", "no pagemap head");
        return;
    };
    let pages_id = head.vaddr;
    // CRIU merges runs across adjacent VMAs: an entry must lie in their union.
    let mut ranges: Vec<(u64, u64)> = vmas
        .unwrap_or_default()
        .iter()
        .map(|v| (v.start, v.end))
        .collect();
    ranges.sort_unstable();
    let covered = |start: u64, end: u64| {
        let mut at = start;
        for &(s, e) in &ranges {
            if e <= at {
                continue;
            }
            if s > at {
                break;
            }
            at = e;
            if at >= end {
                return true;
            }
        }
        at >= end
    };
    let mut bytes = 0u64;
    let mut prev_end = 0u64;
    for (i, pe) in pm.iter().enumerate().skip(1) {
        let n = entry_nr_pages(pe);
        let Some(end) = n
            .checked_mul(PAGE_SIZE)
            .and_then(|l| pe.vaddr.checked_add(l))
        else {
            cx.push(
                name,
                Some(i),
                "nr_pages",
                "entry overflows the address space",
            );
            continue;
        };
        if vmas.is_some() {
            if pe.vaddr < prev_end {
                cx.push(
                    name,
                    Some(i),
                    "vaddr",
                    format!("{:#x} unsorted or overlapping the entry before", pe.vaddr),
                );
            }
            prev_end = prev_end.max(end);
            if n > 0 && !covered(pe.vaddr, end) {
                cx.push(
                    name,
                    Some(i),
                    "vaddr",
                    format!("{:#x}-{end:#x} is outside every VMA of the task", pe.vaddr),
                );
            }
        }
        if entry_flags(pe) & PE_PRESENT != 0 {
            bytes = bytes.saturating_add(n.saturating_mul(PAGE_SIZE));
        }
    }
    let e = pages_used
        .entry(pages_id)
        .or_insert_with(|| (0, name.to_string()));
    e.0 = e.0.saturating_add(bytes);
}
