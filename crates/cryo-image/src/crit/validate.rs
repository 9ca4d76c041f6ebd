//! `crit validate`: whether a dump directory can be restored, and every reason it cannot.
//!
//! Checks: required images (inventory, pstree, per task `core-TID` for each thread and, for
//! live tasks, `mm`, `pagemap`, `fs`, ids (`ids-PID` or `core.ids`), `fdinfo-<files_id>`);
//! files that are no image of a known kind; magics; truncated entries; pagemap entries
//! (sorted, not overlapping, inside a VMA); `pages-N.img` length against the pagemaps naming
//! it; fdinfo ids without a `files.img` entry; files entries without their type's sub-message;
//! the pstree (one root, known parents, no duplicate pids); x86_64 register values.

use super::Json;
use crate::frame::ImageReader;
use crate::kind::ImageKind;
use crate::pagemap::{entry_flags, entry_nr_pages, PAGE_SIZE, PE_PRESENT};
use crate::pb;
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

/// CRIU's `TASK_ALIVE`.
const TASK_ALIVE: u32 = 1;
/// Lowest non-canonical user address on x86_64.
const USER_TOP: u64 = 0x8000_0000_0000;

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
    /// `required`); framing errors are recorded, the entries before them kept.
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
        let mut r = match ImageReader::with_len(Cursor::new(data), kind, name.clone(), len) {
            Ok(r) => r,
            Err(e) => {
                self.push(&name, None, "magic", e.to_string());
                return None;
            }
        };
        let mut out = Vec::new();
        loop {
            match r.read_entry::<M>() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    self.push(&name, Some(out.len()), "", e.to_string());
                    break;
                }
            }
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

    cx.read::<pb::InventoryEntry>(ImageKind::Inventory, None, true, "every dump has one");
    let pstree = cx
        .read::<pb::PstreeEntry>(ImageKind::Pstree, None, true, "every dump has one")
        .map(|(_, v)| v)
        .unwrap_or_default();
    check_pstree(&mut cx, &pstree);

    let files = cx
        .read::<pb::FileEntry>(ImageKind::Files, None, false, "")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let file_ids: BTreeSet<u32> = files.iter().map(|f| f.id).collect();
    check_files(&mut cx, &files);

    let mut pages_used: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut fdinfo_done = BTreeSet::new();
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
                        if tid == p.pid {
                            main_core = Some(core.clone());
                        }
                    }
                    None => cx.push(&name, Some(0), "", "no core entry"),
                }
            }
        }
        let Some(core) = main_core else { continue };
        let alive = core
            .tc
            .as_ref()
            .is_some_and(|tc| tc.task_state == TASK_ALIVE);
        if !alive {
            continue;
        }
        let why = format!("live task {pid}");
        let vmas = cx
            .read::<pb::MmEntry>(ImageKind::Mm, Some(pid), true, &why)
            .and_then(|(_, v)| v.into_iter().next())
            .map(|mm| mm.vmas)
            .unwrap_or_default();
        if let Some((name, pm)) =
            cx.read::<pb::PagemapEntry>(ImageKind::Pagemap, Some(pid), true, &why)
        {
            check_pagemap(&mut cx, &name, &pm, &vmas, &mut pages_used);
        }
        cx.read::<pb::FsEntry>(ImageKind::Fs, Some(pid), true, &why);
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
                if !file_ids.contains(&fd.id) {
                    cx.push(
                        &name,
                        Some(i),
                        "id",
                        format!("file id {} has no files.img entry", fd.id),
                    );
                }
            }
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
    if roots.len() != 1 && !pstree.is_empty() {
        cx.push(
            name,
            None,
            "ppid",
            format!("{} root tasks, need exactly one", roots.len()),
        );
    }
}

fn check_files(cx: &mut Ctx<'_>, files: &[pb::FileEntry]) {
    use pb::FdTypes as T;
    let name = "files.img";
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
    }
}

fn check_regs(cx: &mut Ctx<'_>, name: &str, core: &pb::CoreEntry) {
    // A zombie's core (TASK_DEAD) has no registers: only its exit status is kept.
    if core.mtype != pb::core_entry::March::X8664 as i32
        || core.tc.as_ref().is_some_and(|tc| tc.task_state == 2)
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

fn check_pagemap(
    cx: &mut Ctx<'_>,
    name: &str,
    pm: &[pb::PagemapEntry],
    vmas: &[pb::VmaEntry],
    pages_used: &mut BTreeMap<u64, (u64, String)>,
) {
    // The first entry is the head (decoded as a pagemap_entry: the same tag 1).
    let Some(head) = pm.first() else {
        cx.push(name, None, "", "no pagemap head");
        return;
    };
    let pages_id = head.vaddr;
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
        if pe.vaddr < prev_end {
            cx.push(
                name,
                Some(i),
                "vaddr",
                format!("{:#x} unsorted or overlapping the entry before", pe.vaddr),
            );
        }
        prev_end = prev_end.max(end);
        let inside = vmas.iter().any(|v| v.start <= pe.vaddr && end <= v.end);
        if !inside && n > 0 {
            cx.push(
                name,
                Some(i),
                "vaddr",
                format!("{:#x}-{end:#x} is outside every VMA of the task", pe.vaddr),
            );
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
