//! The restore orchestrator: the order of phases. Each step is a call into the module that owns
//! the resource.
//!
//! 1. Read and check the images; re-create ghost files.
//! 2. Map the trampoline in cryo at an address the dumped task does not use, and create the
//!    puppet at the dumped PID with clone3(set_tid); it inherits the trampoline.
//! 3. Drive the puppet with remote syscalls: drop what it inherited from cryo (fds, rseq,
//!    memory), build the dumped address space, then signals, timers, limits, attributes,
//!    session, fds, cwd/root and credentials (last: they take away the right to do the rest).
//! 4. Its last syscall unmaps the trampoline; at that syscall's exit the dumped registers and
//!    XSAVE state are set and the task is released.
//!
//! Any failure kills the puppet and removes the ghost files; the error names the image.

use crate::error::{Error, Result, TaskCtx};
use crate::files::{self, reg::RegFiles};
use crate::remote::Injector;
use crate::{cpu, creds, memory, signals, task_attrs, timers, RestoreOptions, Restored};
use cryo_image::{pb, ImageKind};
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::puppet::{self, Trampoline};
use cryo_sys::remote::RemoteTask;
use cryo_sys::{procfs, Pid, PAGE_SIZE};
use std::collections::BTreeMap;
use std::path::Path;
use tracing::{debug, info, info_span};

/// Size of the hole reserved for the trampoline and the temporary vDSO place.
const HOLE_BYTES: u64 = 4 << 20;
/// Trampoline size (code + scratch).
const TRAMPOLINE_BYTES: u64 = 64 << 10;
/// Scratch offsets used by the orchestrator (modules use the start of the scratch area).
const PATH_OFF: u64 = 16 << 10;

/// Everything read from the images for one task.
struct TaskImages {
    pstree: pb::PstreeEntry,
    core: pb::CoreEntry,
    mm: pb::MmEntry,
    fs: pb::FsEntry,
    fdinfos: Vec<pb::FdinfoEntry>,
    pagemap: Vec<pb::PagemapEntry>,
    pages_id: u32,
    shmem: BTreeMap<u64, (u32, Vec<pb::PagemapEntry>)>,
}

fn bad(image: &str, what: impl Into<String>) -> Error {
    Error::BadImage {
        image: image.to_string(),
        what: what.into(),
    }
}

fn read_images(dir: &Path) -> Result<TaskImages> {
    let inv: pb::InventoryEntry = cryo_image::read_single(dir, ImageKind::Inventory, None)?;
    if inv.img_version != 2 {
        return Err(bad(
            "inventory.img",
            format!("image version {} (want 2)", inv.img_version),
        ));
    }
    let tree: Vec<pb::PstreeEntry> = cryo_image::read_all_entries(dir, ImageKind::Pstree, None)?;
    let pstree = match tree.as_slice() {
        [one] => one.clone(),
        [] => return Err(bad("pstree.img", "no task")),
        _ => {
            return Err(Error::Unsupported(format!(
                "restoring {} processes (process trees come later)",
                tree.len()
            )))
        }
    };
    if pstree.threads.len() > 1 {
        return Err(Error::Unsupported(format!(
            "restoring {} threads",
            pstree.threads.len()
        )));
    }
    let id = Some(u64::from(pstree.pid));
    let core: pb::CoreEntry = cryo_image::read_single(dir, ImageKind::Core, id)?;
    if core.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(bad(
            &format!("core-{}.img", pstree.pid),
            format!("machine type {} is not x86_64", core.mtype),
        ));
    }
    let ids = core.ids.or(inv.root_ids).unwrap_or_default();
    let mm: pb::MmEntry = cryo_image::read_single(dir, ImageKind::Mm, id)?;
    let fs: pb::FsEntry = cryo_image::read_single(dir, ImageKind::Fs, id)?;
    let fdinfos =
        cryo_image::read_all_entries(dir, ImageKind::Fdinfo, Some(u64::from(ids.files_id)))?;
    let (head, pagemap) =
        cryo_image::pagemap::read_pagemap(dir, ImageKind::Pagemap, u64::from(pstree.pid))?;
    let mut shmem = BTreeMap::new();
    for v in &mm.vmas {
        if v.status & memory::status::VMA_ANON_SHARED != 0 && !shmem.contains_key(&v.shmid) {
            match cryo_image::pagemap::read_pagemap(dir, ImageKind::ShmemPagemap, v.shmid) {
                Ok((h, entries)) => {
                    shmem.insert(v.shmid, (h.pages_id, entries));
                }
                Err(cryo_image::ImageError::Missing { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(TaskImages {
        pstree,
        core,
        mm,
        fs,
        fdinfos,
        pagemap,
        pages_id: head.pages_id,
        shmem,
    })
}

/// An address range of `HOLE_BYTES` free in cryo and in the dumped address space.
fn find_hole(vmas: &[pb::VmaEntry]) -> Result<u64> {
    let own = procfs::read_smaps(Pid(std::process::id() as i32))?;
    let busy = |s: u64, e: u64| {
        vmas.iter().any(|v| v.start < e && s < v.end)
            || own.iter().any(|m| m.start < e && s < m.end)
    };
    let mut at = 0x1000_0000u64;
    while at < 0x7f00_0000_0000 {
        if !busy(at, at + HOLE_BYTES) {
            return Ok(at);
        }
        at += HOLE_BYTES;
    }
    Err(Error::Unsupported(
        "an address space with no free 4 MiB hole for the trampoline".into(),
    ))
}

/// Restore the tree from `opts.images_dir`; the tasks are running when this returns.
pub fn restore(opts: &RestoreOptions) -> Result<Restored> {
    let dir = opts.images_dir.as_path();
    let img = read_images(dir)?;
    let pid = Pid(img.pstree.pid as i32);
    let _span = info_span!("restore", pid = pid.0).entered();
    let files = RegFiles::load(dir)?;
    let hole = find_hole(&img.mm.vmas)?;
    // The puppet is created on cryo's CPU and inherits the pin; it gets cryo's old CPU set back
    // before it is released.
    let pin = crate::control::CpuPin::to(cryo_sys::task::current_cpu());
    let tramp = Trampoline::map(hole, TRAMPOLINE_BYTES).map_err(|source| Error::Task {
        what: "map the trampoline".into(),
        pid,
        source,
    })?;
    let child = match puppet::spawn_puppet(Some(pid)) {
        Ok(c) => c,
        Err(e) => {
            files.remove_ghosts();
            let why = if e.raw_os_error() == Some(libc::EEXIST) {
                "create (the pid is in use)"
            } else {
                "create"
            };
            return Err(Error::Task {
                what: why.into(),
                pid,
                source: e,
            });
        }
    };
    let env = PuppetEnv {
        files: &files,
        tramp: &tramp,
        temp_vdso: hole + HOLE_BYTES / 2,
        dir,
        opts,
        cpus: pin.saved(),
    };
    let res = drive_puppet(child, &img, &env);
    files.remove_ghosts();
    match res {
        Ok(()) => {
            info!("restored pid {child}");
            Ok(Restored { root_pid: child.0 })
        }
        Err(e) => {
            let _ = cryo_sys::task::kill(child, libc::SIGKILL);
            let _ = cryo_sys::task::wait_pid(child);
            Err(e)
        }
    }
}

/// What a puppet is driven with, besides its images.
struct PuppetEnv<'a> {
    files: &'a RegFiles,
    tramp: &'a Trampoline,
    /// A free place to park the vDSO while it moves.
    temp_vdso: u64,
    dir: &'a Path,
    opts: &'a RestoreOptions,
    /// The CPUs the restored task may run on.
    cpus: &'a [usize],
}

fn drive_puppet(pid: Pid, img: &TaskImages, env: &PuppetEnv) -> Result<()> {
    let PuppetEnv {
        files,
        tramp,
        temp_vdso,
        dir,
        opts,
        cpus,
    } = *env;
    let core_img = format!("core-{pid}.img");
    match ptrace::wait(pid).task_ctx("wait for the new task", pid)? {
        WaitStatus::Stopped {
            sig: libc::SIGSTOP, ..
        } => {}
        other => {
            return Err(Error::Task {
                what: format!("start (got {other:?})"),
                pid,
                source: std::io::Error::other("unexpected state"),
            })
        }
    }
    ptrace::set_options(
        pid,
        (libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL) as u32,
    )
    .task_ctx("set ptrace options", pid)?;
    let base = ptrace::get_regs(pid).task_ctx("read registers", pid)?;
    let template_xstate = ptrace::get_xstate(pid).task_ctx("read xstate", pid)?;
    ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
    let (scratch, scratch_len) = tramp.scratch();
    let mut inj = Injector::new(
        RemoteTask::new(pid, base, tramp.syscall_ip()),
        scratch,
        scratch_len,
    );

    // What the puppet inherited from cryo.
    inj.syscall(
        "close inherited fds",
        libc::SYS_close_range,
        &[0, u64::from(u32::MAX), 0],
    )?;
    task_attrs::unregister_inherited_rseq(&inj)?;

    // Memory.
    let ctx = |what: &str, image: &str, e: Error| Error::Restore {
        what: what.to_string(),
        pid,
        image: image.to_string(),
        source: Box::new(e),
    };
    let vdso = memory::restore_vdso(&inj, &img.mm.vmas, temp_vdso)
        .map_err(|e| ctx("vdso", &format!("mm-{pid}.img"), e))?;
    let mut keep = vec![(tramp.start(), tramp.start() + tramp.len())];
    for v in
        img.mm.vmas.iter().filter(|v| {
            v.status & (memory::status::VMA_AREA_VDSO | memory::status::VMA_AREA_VVAR) != 0
        })
    {
        keep.push((v.start, v.end));
    }
    keep.sort_unstable();
    let open_image = |inj: &Injector, kind: ImageKind, id: u64| -> Result<u64> {
        let path = cryo_image::image_path(dir, kind, Some(id))?;
        let path = std::fs::canonicalize(&path).map_err(|source| Error::Path {
            what: "resolve".into(),
            path: path.display().to_string(),
            source,
        })?;
        let p = inj.write_cstr(PATH_OFF, &path.display().to_string())?;
        inj.syscall(
            &format!("open {}", path.display()),
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as u64,
                p.0,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
            ],
        )
    };
    let pages_fd = open_image(&inj, ImageKind::Pages, u64::from(img.pages_id))?;
    let mut shm_fds = BTreeMap::new();
    for (shmid, (pages_id, entries)) in &img.shmem {
        let name = ImageKind::Pages.file_name(Some(u64::from(*pages_id)))?;
        shm_fds.insert(
            *shmid,
            (
                open_image(&inj, ImageKind::Pages, u64::from(*pages_id))?,
                name,
                entries.clone(),
            ),
        );
    }
    let exe_path = files.open_path(img.mm.exe_file_id)?;
    let p = inj.write_cstr(PATH_OFF, &exe_path)?;
    let exe_fd = inj.syscall(
        &format!("open executable {exe_path}"),
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            p.0,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
        ],
    )?;
    memory::unmap_all_but(&inj, &keep)?;
    if let Some((start, end)) = vdso {
        // Any syscall instruction will do; the vDSO's stays put for good.
        debug!("vdso at {start:#x}-{end:#x}");
    }
    let pages = memory::PagesSource {
        fd: pages_fd,
        image: ImageKind::Pages.file_name(Some(u64::from(img.pages_id)))?,
        map: map_pages(dir, img.pages_id),
        uffd: puppet_uffd(&inj),
        copy_cpus: cpus.to_vec(),
    };
    memory::restore_vmas(
        &inj,
        &img.mm,
        &img.pagemap,
        &pages,
        &shm_fds,
        files,
        PATH_OFF,
    )
    .map_err(|e| ctx("memory", &format!("mm-{pid}.img and pagemap-{pid}.img"), e))?;
    memory::restore_mm_fields(&inj, &img.mm, exe_fd, PATH_OFF)
        .map_err(|e| ctx("mm fields", &format!("mm-{pid}.img"), e))?;
    inj.syscall("close pages", libc::SYS_close, &[pages_fd])?;
    for (fd, _, _) in shm_fds.values() {
        inj.syscall("close pages", libc::SYS_close, &[*fd])?;
    }
    inj.syscall("close executable", libc::SYS_close, &[exe_fd])?;

    let tc = img
        .core
        .tc
        .clone()
        .ok_or_else(|| bad(&core_img, "no task core"))?;
    let th = img
        .core
        .thread_core
        .clone()
        .ok_or_else(|| bad(&core_img, "no thread core"))?;
    let ti = img
        .core
        .thread_info
        .clone()
        .ok_or_else(|| bad(&core_img, "no x86 thread info"))?;
    signals::restore_sigactions(&inj, &tc.sigactions)
        .map_err(|e| ctx("sigactions", &core_img, e))?;
    let no_sas = pb::ThreadSasEntry {
        ss_sp: 0,
        ss_size: 0,
        ss_flags: libc::SS_DISABLE as u32,
    };
    signals::restore_sigaltstack(&inj, th.sas.as_ref().unwrap_or(&no_sas))
        .map_err(|e| ctx("sigaltstack", &core_img, e))?;
    if let Some(t) = &tc.timers {
        timers::restore_timers(&inj, t).map_err(|e| ctx("timers", &core_img, e))?;
    }
    if let Some(r) = &tc.rlimits {
        task_attrs::restore_rlimits(&inj, r).map_err(|e| ctx("rlimits", &core_img, e))?;
    }
    task_attrs::restore_process_attrs(&inj, &tc, img.fs.umask.unwrap_or(0o022))
        .map_err(|e| ctx("task attributes", &core_img, e))?;
    task_attrs::restore_thread_attrs(&inj, &th, ti.clear_tid_addr)
        .map_err(|e| ctx("thread attributes", &core_img, e))?;
    restore_session(&inj, &img.pstree, opts)?;
    files::restore_fds(&inj, &img.fdinfos, files, PATH_OFF)
        .map_err(|e| ctx("file descriptors", "fdinfo/files.img", e))?;
    task_attrs::restore_fs(&inj, &img.fs, files)
        .map_err(|e| ctx("cwd and root", &format!("fs-{pid}.img"), e))?;
    if let Some(adj) = tc.oom_score_adj {
        restore_oom_score_adj(pid, adj)?;
    }
    if let Some(c) = &th.creds {
        creds::restore_creds(&inj, c).map_err(|e| ctx("credentials", &core_img, e))?;
    }
    if let Some(q) = &tc.signals_s {
        signals::restore_pending(&inj, q, true)
            .map_err(|e| ctx("pending signals", &core_img, e))?;
    }
    if let Some(q) = &th.signals_p {
        signals::restore_pending(&inj, q, false)
            .map_err(|e| ctx("pending signals", &core_img, e))?;
    }

    // The end: the trampoline unmaps itself; at that syscall's exit the task becomes the dumped
    // one.
    let regs = cpu::entry_to_regs(&ti.gpregs);
    let xstate = cpu::entry_to_xstate(&ti.fpregs, &template_xstate);
    inj.task_mut()
        .syscall_to_exit_stop(libc::SYS_munmap, &[tramp.start(), tramp.len()])
        .task_ctx("unmap the trampoline", pid)?;
    ptrace::set_regs(pid, &regs).task_ctx("set registers", pid)?;
    ptrace::set_xstate(pid, &xstate).task_ctx("set xstate", pid)?;
    ptrace::set_sigmask(pid, th.blk_sigset.unwrap_or(tc.blk_sigset))
        .task_ctx("set signal mask", pid)?;
    if !cpus.is_empty() {
        cryo_sys::task::set_affinity(pid, cpus).task_ctx("set CPU affinity", pid)?;
    }
    ptrace::detach(pid, 0).task_ctx("release", pid)?;
    let _ = PAGE_SIZE;
    Ok(())
}

/// The pages image mapped in cryo, for UFFDIO_COPY (None: pread it is).
fn map_pages(dir: &Path, pages_id: u32) -> Option<cryo_sys::uffd::MappedFile> {
    let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(pages_id))).ok()?;
    let f = std::fs::File::open(path).ok()?;
    cryo_sys::uffd::MappedFile::map(&f).ok()
}

/// A userfaultfd on the puppet's memory: created inside it, taken over by cryo (None when the
/// kernel refuses; pread it is then).
fn puppet_uffd(inj: &Injector) -> Option<cryo_sys::uffd::Userfaultfd> {
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

fn restore_session(inj: &Injector, p: &pb::PstreeEntry, opts: &RestoreOptions) -> Result<()> {
    let pid = p.pid;
    if p.sid == pid {
        inj.syscall("create session", libc::SYS_setsid, &[])?;
        return Ok(());
    }
    let own = procfs::read_stat(Pid(std::process::id() as i32))?;
    if p.sid as i32 != own.session && !opts.shell_job {
        return Err(Error::Unsupported(format!(
            "restoring pid {pid} into session {} from outside it: use --shell-job",
            p.sid
        )));
    }
    if p.pgid == pid {
        inj.syscall("create process group", libc::SYS_setpgid, &[0, 0])?;
    }
    Ok(())
}

fn restore_oom_score_adj(pid: Pid, adj: i32) -> Result<()> {
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
