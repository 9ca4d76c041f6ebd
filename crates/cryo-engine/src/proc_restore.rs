//! The restore of one process, once it exists: its address space ([`restore_memory`]), then
//! the rest of its dumped self ([`drive_puppet`]): signals, timers, attributes, threads, fds,
//! cwd and root, limits, credentials, queued signals, and the last syscall of every thread.

use crate::error::{Error, Result, TaskCtx};
use crate::files::{reg, FileTable};
use crate::puppet::*;
use crate::remote::Injector;
use crate::task_images::*;
use crate::{creds, memory, signals, task_attrs, timers, RestoreOptions};
use cryo_image::{pb, ImageKind};
use cryo_sys::puppet::Trampoline;
use cryo_sys::{procfs, Pid};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tracing::debug;

/// What a puppet is driven with, besides its images.
pub(crate) struct PuppetEnv<'a> {
    /// The tree has a pid namespace of its own: the root is made its init.
    pub(crate) own_pidns: bool,
    pub(crate) files: &'a FileTable,
    pub(crate) tramp: &'a Trampoline,
    /// A free place to park the vDSO while it moves.
    pub(crate) temp_vdso: u64,
    pub(crate) dir: &'a Path,
    pub(crate) opts: &'a RestoreOptions,
    /// The CPUs the restored task may run on.
    pub(crate) cpus: &'a [usize],
    /// The threads that copy pages into the puppets.
    pub(crate) copier: memory::Copier,
    /// The pages images mapped so far (see [`PuppetEnv::pages_map`]).
    pub(crate) page_maps: RefCell<BTreeMap<u32, Option<Arc<cryo_sys::uffd::MappedFile>>>>,
}

/// Build the puppet's dumped address space. A puppet forked from a restored parent keeps the
/// private memory (anonymous and file) it inherited where its images allow
/// ([`memory::inherited_vmas`]), so that pages the dumped tasks shared copy-on-write are shared
/// again.
pub(crate) fn restore_memory(
    pup: &Puppet,
    img: &TaskImages,
    parent: Option<(&TaskImages, Vec<(u64, u64)>)>,
    env: &PuppetEnv,
    shm: &memory::SharedAnon,
) -> Result<memory::PendingFills> {
    let (pid, vpid) = (pup.pid, pup.vpid);
    let PuppetEnv {
        files,
        tramp,
        temp_vdso,
        dir,
        ..
    } = *env;
    let inj = &pup.inj;
    let ctx = |what: &str, image: &str, e: Error| Error::Restore {
        what: what.to_string(),
        pid: vpid,
        image: image.to_string(),
        source: Box::new(e),
    };
    let vdso = memory::restore_vdso(inj, &img.mm.vmas, temp_vdso)
        .map_err(|e| ctx("vdso", &format!("mm-{vpid}.img"), e))?;
    // Whether the THP setting the puppet has may be "disabled": a forked puppet has its
    // parent's, the root cryo's own (not known here).
    let inherited_thp_disabled = match &parent {
        Some((p, _)) => p.mm.thp_disabled == Some(true),
        None => true,
    };
    let inherited = match parent {
        Some((p, ranges)) => memory::Inherited {
            ranges,
            pagemap: &p.pagemap,
            pages: env.pages_map(p.pages_id),
        },
        None => memory::Inherited::none(),
    };
    let mut keep = vec![(tramp.start(), tramp.start() + tramp.len())];
    for v in
        img.mm.vmas.iter().filter(|v| {
            v.status & (memory::status::VMA_AREA_VDSO | memory::status::VMA_AREA_VVAR) != 0
        })
    {
        keep.push((v.start, v.end));
    }
    keep.extend_from_slice(&inherited.ranges);
    keep.sort_unstable();
    let pages_path = {
        let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(img.pages_id)))?;
        std::fs::canonicalize(&path)
            .map_err(|source| Error::Path {
                what: "resolve".into(),
                path: path.display().to_string(),
                source,
            })?
            .display()
            .to_string()
    };
    let pages_fd = inj.open(&pages_path, libc::O_RDONLY as u32, &pages_path)?.0 as u64;
    let exe_path = reg::open_path(files, img.mm.exe_file_id)?;
    // A forked puppet has its parent's executable already; it may well be the right one.
    let same_exe = {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::metadata(format!("/proc/{pid}/exe")),
            std::fs::metadata(&exe_path),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    let exe_fd = if same_exe {
        None
    } else {
        Some(
            inj.open(
                &exe_path,
                libc::O_RDONLY as u32,
                &format!("executable {exe_path}"),
            )?
            .0 as u64,
        )
    };
    memory::unmap_all_but(inj, &keep)?;
    // Before the memory is filled: it decides how the pages are faulted in. Set when it may
    // differ from what the puppet has.
    if let Some(disabled) = img.mm.thp_disabled {
        if disabled || inherited_thp_disabled {
            inj.syscall(
                "set THP disable",
                libc::SYS_prctl,
                &[
                    libc::PR_SET_THP_DISABLE as u64,
                    u64::from(disabled),
                    0,
                    0,
                    0,
                ],
            )?;
        }
    }
    if let Some((start, end)) = vdso {
        // Any syscall instruction will do; the vDSO's stays put for good.
        debug!("vdso at {start:#x}-{end:#x}");
    }
    let image = ImageKind::Pages.file_name(Some(u64::from(img.pages_id)))?;
    let mut fills = memory::PendingFills::new(pages_path, image.clone());
    let pages = memory::PagesSource {
        copier: &env.copier,
        fd: pages_fd,
        image,
        map: env.pages_map(img.pages_id),
        uffd: puppet_uffd(inj).map(Arc::new),
    };
    memory::restore_vmas(
        inj,
        &img.mm,
        &img.pagemap,
        &pages,
        shm,
        files,
        &inherited,
        &mut fills,
    )
    .map_err(|e| {
        ctx(
            "memory",
            &format!("mm-{vpid}.img and pagemap-{vpid}.img"),
            e,
        )
    })?;
    memory::restore_mm_fields(inj, &img.mm, exe_fd)
        .map_err(|e| ctx("mm fields", &format!("mm-{vpid}.img"), e))?;
    // Not kept open while the copier fills the memory: a process sharing this fd table could
    // fork it into a child.
    inj.syscall("close pages", libc::SYS_close, &[pages_fd])?;
    if let Some(fd) = exe_fd {
        inj.syscall("close executable", libc::SYS_close, &[fd])?;
    }
    Ok(fills)
}

/// Everything but the memory; the fds only when `fill_fds` (the first process of its fd
/// table).
/// `unmap_trampoline`: the last process of its address space unmaps cryo's trampoline; the
/// others end, as their other threads do, at a harmless syscall.
pub(crate) fn drive_puppet(
    pup: &mut Puppet,
    img: &TaskImages,
    env: &PuppetEnv,
    fill_fds: bool,
    unmap_trampoline: bool,
) -> Result<()> {
    let (pid, vpid) = (pup.pid, pup.vpid);
    let PuppetEnv { files, tramp, .. } = *env;
    let core_img = format!("core-{vpid}.img");
    let inj = &pup.inj;
    let ctx = |what: &str, image: &str, e: Error| Error::Restore {
        what: what.to_string(),
        pid: vpid,
        image: image.to_string(),
        source: Box::new(e),
    };
    let leader_core = &img.cores[0].1;
    let tc = leader_core
        .tc
        .clone()
        .ok_or_else(|| bad(&core_img, "no task core"))?;
    // Only called for live processes: TASK_DEAD says the leader had exited (other threads
    // in the image), and a group stop is then in stop_signo alone.
    let leader_exits = tc.task_state == crate::proc_dump::TASK_DEAD;
    if tc.task_state == crate::proc_dump::TASK_STOPPED {
        pup.stop_signo = Some(tc.stop_signo.map_or(libc::SIGSTOP, |s| s as i32));
    } else if leader_exits {
        pup.stop_signo = tc.stop_signo.map(|s| s as i32);
    }
    // Zombie children made SIGCHLDs pending here; SIG_IGN discards them (the dumped queue,
    // with its own SIGCHLD, is put back later).
    {
        let s = inj.scratch();
        let ign = s.bytes(&{
            let mut act = [0u8; 32];
            act[..8].copy_from_slice(&1u64.to_ne_bytes());
            act
        })?;
        inj.syscall(
            "discard SIGCHLDs",
            libc::SYS_rt_sigaction,
            &[libc::SIGCHLD as u64, ign.0, 0, 8],
        )?;
    }
    signals::restore_sigactions(inj, &tc.sigactions)
        .map_err(|e| ctx("sigactions", &core_img, e))?;
    if let Some(t) = &tc.timers {
        timers::restore_timers(inj, t).map_err(|e| ctx("timers", &core_img, e))?;
    }
    task_attrs::restore_process_attrs(inj, &tc, img.fs.umask.unwrap_or(0o022))
        .map_err(|e| ctx("task attributes", &core_img, e))?;
    // The leader's own thread state first: the threads then inherit its scheduling and name,
    // which most of them share.
    restore_thread(inj, leader_core, &core_img, false)?;
    // The other threads, created while the leader still has every privilege (they inherit
    // its credentials, then set their own).
    const THREAD_FLAGS: u64 = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let mut thread_injs = Vec::new();
    for (tid, core) in img.cores.iter().skip(1) {
        let clear_tid = core.thread_info.as_ref().map_or(0, |ti| ti.clear_tid_addr);
        let t = remote_clone(inj, *tid, THREAD_FLAGS, 0, clear_tid)?;
        pup.threads.push(t);
        thread_injs.push(adopt(t, *tid, tramp)?);
    }
    let inj = &pup.inj;
    for (t, (tid, core)) in thread_injs.iter().zip(img.cores.iter().skip(1)) {
        let core_img = format!("core-{tid}.img");
        restore_thread(&t.inj, core, &core_img, true)?;
    }
    if fill_fds {
        files
            .restore_fds(inj, &img.fdinfos)
            .map_err(|e| ctx("file descriptors", "fdinfo/files.img", e))?;
    }
    // A session leader sets what its session's terminal needs of the whole tree.
    if img.pstree.sid == img.pstree.pid {
        files.session_ready(inj, img.pstree.sid)?;
    }
    // After the fds: the limit on open files may be below the fds the process holds.
    if let Some(r) = &tc.rlimits {
        task_attrs::restore_rlimits(inj, r).map_err(|e| ctx("rlimits", &core_img, e))?;
    }
    task_attrs::restore_fs(inj, &img.fs, files)
        .map_err(|e| ctx("cwd and root", &format!("fs-{vpid}.img"), e))?;
    if let Some(adj) = tc.oom_score_adj {
        restore_oom_score_adj(pid, adj)?;
    }
    for (t, (tid, core)) in thread_injs.iter().zip(img.cores.iter().skip(1)) {
        if let Some(c) = core.thread_core.as_ref().and_then(|th| th.creds.as_ref()) {
            if creds::has_creds(t.pid, c)? {
                continue;
            }
            creds::restore_creds(&t.inj, c)
                .map_err(|e| ctx("credentials", &format!("core-{tid}.img"), e))?;
        }
    }
    if let Some(c) = leader_core
        .thread_core
        .as_ref()
        .and_then(|th| th.creds.as_ref())
        .filter(|c| !creds::has_creds(pid, c).unwrap_or(false))
    {
        creds::restore_creds(inj, c).map_err(|e| ctx("credentials", &core_img, e))?;
    }
    for (t, (_, core)) in thread_injs.iter().zip(img.cores.iter().skip(1)) {
        if let Some(th) = &core.thread_core {
            task_attrs::restore_pdeath_sig(&t.inj, th)?;
        }
    }
    if let Some(th) = &leader_core.thread_core {
        task_attrs::restore_pdeath_sig(inj, th)?;
    }
    // Queued signals, all sent by the leader (a sender other than the target process's
    // leader may not forge si_code >= 0).
    if let Some(q) = &tc.signals_s {
        signals::restore_pending(inj, vpid, vpid, q, true)
            .map_err(|e| ctx("pending signals", &core_img, e))?;
    }
    for (tid, core) in &img.cores {
        if let Some(q) = core
            .thread_core
            .as_ref()
            .and_then(|th| th.signals_p.as_ref())
        {
            signals::restore_pending(inj, vpid, *tid, q, false)
                .map_err(|e| ctx("pending signals", &format!("core-{tid}.img"), e))?;
        }
    }
    // Every other thread stops at the exit of a last harmless syscall, as its dumped self.
    // With the leader dead the first of them is left for the end.
    let mut last = thread_injs.iter().zip(img.cores.iter().skip(1));
    let first = if leader_exits { last.next() } else { None };
    for (t, (tid, core)) in last {
        t.inj
            .task()
            .syscall_to_exit_stop(libc::SYS_getpid, &[])
            .task_ctx("last syscall", t.pid)?;
        set_final_state(t.pid, core, &t.template_xstate, &format!("core-{tid}.img"))?;
    }
    let (last_nr, last_args, last_what) = if unmap_trampoline {
        (
            libc::SYS_munmap,
            [tramp.start(), tramp.len()],
            "unmap the trampoline",
        )
    } else {
        (libc::SYS_getpid, [0, 0], "last syscall")
    };
    if leader_exits {
        // The leader exits through the trampoline; then a thread that lives on unmaps it.
        let (t, (tid, core)) = first.ok_or_else(|| bad(&core_img, "a dead leader alone"))?;
        exit_leader(pup, tc.exit_code, env.cpus)?;
        t.inj
            .task()
            .syscall_to_exit_stop(last_nr, &last_args)
            .task_ctx(last_what, t.pid)?;
        return set_final_state(t.pid, core, &t.template_xstate, &format!("core-{tid}.img"));
    }

    // The end: the trampoline unmaps itself; at that syscall's exit the task becomes the dumped
    // one.
    pup.inj
        .task_mut()
        .syscall_to_exit_stop(last_nr, &last_args)
        .task_ctx(last_what, pid)?;
    set_final_state(pid, leader_core, &pup.template_xstate, &core_img)?;
    Ok(())
}

/// Per-thread state of a puppet thread: altstack, robust list, TID address, scheduling, name,
/// rseq. `fresh_thread`: a thread cloned for the restore (CLONE_VM), which has no altstack and
/// its TID address already (see `remote_clone`).
pub(crate) fn restore_thread(
    inj: &Injector,
    core: &pb::CoreEntry,
    image: &str,
    fresh_thread: bool,
) -> Result<()> {
    let pid = inj.pid();
    let ctx = |what: &str, e: Error| Error::Restore {
        what: what.to_string(),
        pid,
        image: image.to_string(),
        source: Box::new(e),
    };
    let th = core
        .thread_core
        .clone()
        .ok_or_else(|| bad(image, "no thread core"))?;
    // A leader that had exited has no registers (see `exit_leader`), nor a TID address.
    let exited = core
        .tc
        .as_ref()
        .is_some_and(|tc| tc.task_state == crate::proc_dump::TASK_DEAD);
    let clear_tid_addr = match &core.thread_info {
        Some(ti) => ti.clear_tid_addr,
        None if exited => 0,
        None => return Err(bad(image, "no x86 thread info")),
    };
    let no_sas = pb::ThreadSasEntry {
        ss_sp: 0,
        ss_size: 0,
        ss_flags: libc::SS_DISABLE as u32,
    };
    let sas = th.sas.as_ref().unwrap_or(&no_sas);
    if !(fresh_thread && sas.ss_flags & libc::SS_DISABLE as u32 != 0) {
        signals::restore_sigaltstack(inj, sas).map_err(|e| ctx("sigaltstack", e))?;
    }
    task_attrs::restore_thread_attrs(inj, &th, clear_tid_addr, fresh_thread)
        .map_err(|e| ctx("thread attributes", e))
}

/// The pages image mapped in cryo, for UFFDIO_COPY (None: pread it is).
pub(crate) fn map_pages(dir: &Path, pages_id: u32) -> Option<cryo_sys::uffd::MappedFile> {
    let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(pages_id))).ok()?;
    let f = std::fs::File::open(path).ok()?;
    cryo_sys::uffd::MappedFile::map(&f).ok()
}

impl PuppetEnv<'_> {
    /// The VMAs of `img` that a puppet forked from the restored `parent` keeps
    /// ([`memory::inherited_vmas`]); the pages images tell memory still shared from memory
    /// that each mapped anew at the same place.
    pub(crate) fn kept_from(&self, img: &TaskImages, parent: &TaskImages) -> Vec<(u64, u64)> {
        let mine = self.pages_map(img.pages_id);
        let theirs = self.pages_map(parent.pages_id);
        memory::inherited_vmas(&img.mm, Some(&parent.mm), self.files, |v| {
            match (&mine, &theirs) {
                (Some(m), Some(t)) => {
                    memory::shares_a_page((m, &img.pagemap), (t, &parent.pagemap), v.start, v.end)
                }
                _ => true,
            }
        })
    }

    /// Pages image `pages_id` mapped in cryo, once for the whole restore: a process's image is
    /// read again by each of its children, to compare what they inherit.
    pub(crate) fn pages_map(&self, pages_id: u32) -> Option<Arc<cryo_sys::uffd::MappedFile>> {
        self.page_maps
            .borrow_mut()
            .entry(pages_id)
            .or_insert_with(|| map_pages(self.dir, pages_id).map(Arc::new))
            .clone()
    }

    /// Pages image `pages_id` is needed no more (its process and every child of it have their
    /// memory): unmapped by a copier thread, once the copies from it are done.
    pub(crate) fn drop_pages_map(&self, pages_id: u32) {
        if let Some(Some(map)) = self.page_maps.borrow_mut().remove(&pages_id) {
            self.copier.unmap(map);
        }
    }
}

/// A userfaultfd on the puppet's memory: created inside it, taken over by cryo (None when the
/// kernel refuses; pread it is then).
pub(crate) fn puppet_uffd(inj: &Injector) -> Option<cryo_sys::uffd::Userfaultfd> {
    let pid = inj.pid();
    let rfd = inj
        .syscall(
            "create userfaultfd",
            libc::SYS_userfaultfd,
            &[(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64],
        )
        .ok()?;
    let local = cryo_sys::task::pidfd_open(pid)
        .and_then(|pidfd| cryo_sys::task::pidfd_getfd(&pidfd, cryo_sys::RemoteFd(rfd as i32)));
    let _ = inj.syscall("close userfaultfd", libc::SYS_close, &[rfd]);
    match local.and_then(cryo_sys::uffd::Userfaultfd::from_fd) {
        Ok(u) => Some(u),
        Err(e) => {
            debug!("no userfaultfd for pid {pid}, pages are read with pread: {e}");
            None
        }
    }
}

pub(crate) fn restore_oom_score_adj(pid: Pid, adj: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    let cur = procfs::read_text(&path)?.trim().parse::<i32>().unwrap_or(0);
    if cur != adj {
        std::fs::write(&path, adj.to_string()).map_err(|source| Error::Path {
            what: format!("set oom_score_adj to {adj} in"),
            path,
            source,
        })?;
    }
    Ok(())
}
