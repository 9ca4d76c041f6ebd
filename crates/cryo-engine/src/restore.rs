//! The restore orchestrator: the order of phases. Each step is a call into the module that owns
//! the resource.
//!
//! 1. Read and check the images; re-create ghost files.
//! 2. Map the trampoline in cryo at an address no dumped task uses, and create the root
//!    puppet at its PID with clone3(set_tid); it inherits the trampoline, drops what it
//!    inherited from cryo (fds, rseq, memory) and builds its dumped address space. Every other
//!    process is then forked, at its PID, by its parent puppet (a remote clone3) and builds its
//!    own address space from the one it inherited: private VMAs (anonymous, or of the same
//!    file) the parent has too are kept and only the pages that differ are written, so memory
//!    the dumped tasks shared copy-on-write is shared again. Sessions and groups are set as
//!    processes are created.
//! 3. Drive each puppet with remote syscalls: signals, timers, limits, attributes, its
//!    threads (remote clone3 with CLONE_THREAD at their TIDs), fds, cwd/root and credentials
//!    (last: they take away the right to do the rest).
//! 4. Each thread's last syscall stops at its exit with the dumped registers and XSAVE state
//!    set; the leader's last syscall unmaps the trampoline. Then every task is released.
//!
//! Any failure kills every puppet and removes the ghost files; the error names the image.

use crate::error::{Error, Result, TaskCtx};
use crate::files::{reg, FileTable};
use crate::remote::Injector;
use crate::tree_shape::{self, Birth, Node, Step};
use crate::{cpu, creds, memory, signals, task_attrs, timers, RestoreOptions, Restored};
use cryo_image::{pb, ImageKind};
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::puppet::{self, Trampoline};
use cryo_sys::remote::RemoteTask;
use cryo_sys::{procfs, Pid, PAGE_SIZE};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span};

/// Size of the hole reserved for the trampoline and the temporary vDSO place.
const HOLE_BYTES: u64 = 4 << 20;
/// Trampoline size (code + scratch).
const TRAMPOLINE_BYTES: u64 = 64 << 10;

/// Everything read from the images for one process.
struct TaskImages {
    pstree: pb::PstreeEntry,
    /// One core per thread, the leader's first.
    cores: Vec<(Pid, pb::CoreEntry)>,
    mm: pb::MmEntry,
    fs: pb::FsEntry,
    fdinfos: Vec<pb::FdinfoEntry>,
    pagemap: Vec<pb::PagemapEntry>,
    pages_id: u32,
    shmem: BTreeMap<u64, (u32, Vec<pb::PagemapEntry>)>,
    /// A zombie: its wait status (nothing else of it is in the images).
    zombie: Option<u32>,
    /// Which mm, fd table, fs and signal handlers it has (equal ids: shared).
    ids: pb::TaskKobjIdsEntry,
}

fn bad(image: &str, what: impl Into<String>) -> Error {
    Error::BadImage {
        image: image.to_string(),
        what: what.into(),
    }
}

/// The tasks of the images, parents first, and whether the tree has a pid namespace of its own
/// (see `pid_ns`).
fn read_images(dir: &Path) -> Result<(Vec<TaskImages>, bool)> {
    let inv: pb::InventoryEntry = cryo_image::read_single(dir, ImageKind::Inventory, None)?;
    if inv.img_version != 2 {
        return Err(bad(
            "inventory.img",
            format!("image version {} (want 2)", inv.img_version),
        ));
    }
    let tree: Vec<pb::PstreeEntry> = cryo_image::read_all_entries(dir, ImageKind::Pstree, None)?;
    if tree.is_empty() {
        return Err(bad("pstree.img", "no task"));
    }
    let mut out = Vec::new();
    for (n, pstree) in tree.into_iter().enumerate() {
        if n > 0
            && pstree.ppid != 0
            && !out.iter().any(|t: &TaskImages| t.pstree.pid == pstree.ppid)
        {
            return Err(bad(
                "pstree.img",
                format!("pid {} comes before its parent {}", pstree.pid, pstree.ppid),
            ));
        }
        let pid = pstree.pid;
        let id = Some(u64::from(pid));
        let mut tids = pstree.threads.clone();
        if tids.is_empty() {
            tids.push(pid);
        }
        if tids[0] != pid {
            return Err(bad(
                "pstree.img",
                format!("the first thread of {pid} is {}", tids[0]),
            ));
        }
        let mut cores = Vec::new();
        for tid in tids {
            let core: pb::CoreEntry =
                cryo_image::read_single(dir, ImageKind::Core, Some(u64::from(tid)))?;
            if core.mtype != pb::core_entry::March::X8664 as i32 {
                return Err(bad(
                    &format!("core-{tid}.img"),
                    format!("machine type {} is not x86_64", core.mtype),
                ));
            }
            cores.push((Pid(tid as i32), core));
        }
        // TASK_DEAD with other threads is no zombie: the leader exited alone and the process
        // lives on (see `exit_leader`).
        if let Some(tc) = cores[0]
            .1
            .tc
            .as_ref()
            .filter(|tc| tc.task_state == crate::dump::TASK_DEAD && cores.len() == 1)
        {
            out.push(TaskImages {
                zombie: Some(tc.exit_code),
                pstree,
                cores,
                mm: Default::default(),
                fs: Default::default(),
                fdinfos: Vec::new(),
                pagemap: Vec::new(),
                pages_id: 0,
                shmem: BTreeMap::new(),
                ids: Default::default(),
            });
            continue;
        }
        let ids = cores[0]
            .1
            .ids
            .or(if n == 0 { inv.root_ids } else { None })
            .unwrap_or_default();
        let mm: pb::MmEntry = cryo_image::read_single(dir, ImageKind::Mm, id)?;
        let fs: pb::FsEntry = cryo_image::read_single(dir, ImageKind::Fs, id)?;
        let fdinfos =
            cryo_image::read_all_entries(dir, ImageKind::Fdinfo, Some(u64::from(ids.files_id)))?;
        let (head, pagemap) =
            cryo_image::pagemap::read_pagemap(dir, ImageKind::Pagemap, u64::from(pid))?;
        check_pages_len(dir, head.pages_id, &pagemap)?;
        let mut shmem = BTreeMap::new();
        for v in &mm.vmas {
            if v.status & memory::status::VMA_ANON_SHARED != 0 && !shmem.contains_key(&v.shmid) {
                match cryo_image::pagemap::read_pagemap(dir, ImageKind::ShmemPagemap, v.shmid) {
                    Ok((h, entries)) => {
                        check_pages_len(dir, h.pages_id, &entries)?;
                        shmem.insert(v.shmid, (h.pages_id, entries));
                    }
                    Err(cryo_image::ImageError::Missing { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.push(TaskImages {
            pstree,
            cores,
            mm,
            fs,
            fdinfos,
            pagemap,
            pages_id: head.pages_id,
            shmem,
            zombie: None,
            ids,
        });
    }
    let own_pidns = crate::pid_ns::images_have_own_pidns(Some(&out[0].ids), inv.root_ids.as_ref());
    if own_pidns {
        if out[0].pstree.pid != 1 {
            return Err(bad(
                "pstree.img",
                format!(
                    "the root {} of a tree with its own pid namespace is not its init (pid 1)",
                    out[0].pstree.pid
                ),
            ));
        }
        // Every other root would be made the init of a namespace of its own.
        if let Some(t) = out.iter().skip(1).find(|t| t.pstree.ppid == 0) {
            return Err(bad(
                "pstree.img",
                format!(
                    "pid {} is a second root of a tree with its own pid namespace",
                    t.pstree.pid
                ),
            ));
        }
    }
    // Every process in the root's pid namespace: one nested in it would come back elsewhere.
    if let Some(t) = out
        .iter()
        .find(|t| t.zombie.is_none() && t.ids.pid_ns_id != out[0].ids.pid_ns_id)
    {
        return Err(Error::Unsupported(format!(
            "pid {} in another pid namespace than the root's (nested pid namespaces)",
            t.pstree.pid
        )));
    }
    Ok((out, own_pidns))
}

/// The pages image must hold every page its pagemap lists.
fn check_pages_len(dir: &Path, pages_id: u32, pagemap: &[pb::PagemapEntry]) -> Result<()> {
    let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(pages_id)))?;
    let want: u64 = pagemap
        .iter()
        .map(|pe| {
            pe.nr_pages
                .unwrap_or(u64::from(pe.compat_nr_pages))
                .saturating_mul(PAGE_SIZE)
        })
        .fold(0u64, |a, b| a.saturating_add(b));
    let have = std::fs::metadata(&path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Image(cryo_image::ImageError::Missing { path: path.clone() })
            }
            _ => Error::Path {
                what: "stat".into(),
                path: path.display().to_string(),
                source,
            },
        })?
        .len();
    if have < want {
        return Err(bad(
            &path.display().to_string(),
            format!("ends at offset {have}, but its pagemap lists {want} bytes of pages"),
        ));
    }
    Ok(())
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
    let (imgs, own_pidns) = read_images(dir)?;
    let root = Pid(imgs[0].pstree.pid as i32);
    let _span = info_span!("restore", pid = root.0).entered();
    let files = FileTable::load(&crate::cx::RestoreCx::new(opts))?;
    let all_vmas: Vec<pb::VmaEntry> = imgs
        .iter()
        .flat_map(|t| t.mm.vmas.iter().cloned())
        .collect();
    let hole = find_hole(&all_vmas)?;
    let tramp = Trampoline::map(hole, TRAMPOLINE_BYTES).map_err(|source| Error::Task {
        what: "map the trampoline".into(),
        pid: root,
        source,
    })?;
    // The puppets are created on cryo's CPU and inherit the pin; they get cryo's old CPU set
    // back before they are released.
    let pin = crate::control::CpuPin::to(cryo_sys::task::current_cpu());
    let env = PuppetEnv {
        files: &files,
        tramp: &tramp,
        temp_vdso: hole + HOLE_BYTES / 2,
        dir,
        opts,
        cpus: pin.saved(),
        own_pidns,
        copier: memory::Copier::start(pin.saved()),
        page_maps: RefCell::default(),
    };
    let mut puppets = Vec::new();
    let res = restore_tree(&imgs, &env, &mut puppets);
    files.cleanup();
    match res {
        Ok(()) => {
            let mut first_err = None;
            for p in &puppets {
                if let Err(e) = release_puppet(p, env.cpus) {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                kill_puppets(&puppets);
                return Err(e);
            }
            // The root as the caller can reach it (in a pid namespace of its own it is 1
            // inside).
            let root_pid = puppets.first().map_or(root.0, |p| p.pid.0);
            info!("restored {} processes, root pid {root_pid}", puppets.len());
            Ok(Restored { root_pid })
        }
        Err(e) => {
            kill_puppets(&puppets);
            Err(e)
        }
    }
}

/// A VMA of a parent with at least this many pages is kept from a child that would drop it
/// (two madvise calls cost less than copying and dropping the page table entries).
const DONTFORK_MIN_PAGES: u64 = 64;

/// A process being restored: its leader's injector and its threads, held stopped.
struct Puppet {
    /// Its PID in cryo's pid namespace (for ptrace and /proc).
    pid: Pid,
    /// Its PID in its own pid namespace: as the images and its own syscalls number it.
    vpid: Pid,
    inj: Injector,
    template_xstate: Vec<u8>,
    /// Non-leader threads created so far (cryo's numbers).
    threads: Vec<Pid>,
    /// Made a zombie again: nothing to release.
    zombie: bool,
    /// Dumped in a group stop by this signal: stopped again on release.
    stop_signo: Option<i32>,
    /// A restore helper that has ended and was reaped: its PID is not ours any more.
    gone: bool,
    /// The leader has exited, as dumped, and is no longer traced: only the threads are
    /// released.
    leader_exited: bool,
    /// Its memory, still being filled by the copier threads.
    fills: Option<memory::PendingFills>,
}

/// Wait until the copier threads have filled the memory of `p` (see
/// [`memory::PendingFills`]).
fn finish_fills(p: &mut Puppet) -> Result<()> {
    match p.fills.take() {
        Some(f) => f.complete(&p.inj),
        None => Ok(()),
    }
}

fn kill_puppets(puppets: &[Puppet]) {
    for p in puppets.iter().rev().filter(|p| !p.gone) {
        let _ = cryo_sys::task::kill(p.pid, libc::SIGKILL);
    }
    // Tasks cryo traces report their end to cryo before their parent may reap them, and a
    // process is not done until its threads are reaped, nor the init of a pid namespace until
    // every other task of it is: take every traced end first, or the wait for the root never
    // ends. (A task no longer traced, or already reaped, answers ECHILD at once.)
    for p in puppets.iter().filter(|p| !p.gone) {
        for &t in &p.threads {
            let _ = cryo_sys::task::wait_pid(t);
        }
    }
    for p in puppets
        .iter()
        .skip(1)
        .rev()
        .filter(|p| !p.gone && !p.leader_exited)
    {
        let _ = cryo_sys::task::wait_pid(p.pid);
    }
    // The root is cryo's child; the others are reaped by their parents or, once those are
    // gone, by whoever reaps orphans.
    if let Some(root) = puppets.first() {
        let _ = cryo_sys::task::wait_pid(root.pid);
    }
}

fn release_puppet(p: &Puppet, cpus: &[usize]) -> Result<()> {
    if p.zombie || p.gone {
        return Ok(());
    }
    // An exited leader is no longer ours (`exit_leader` did its part).
    let leader = (!p.leader_exited).then_some(p.pid);
    for &tid in p.threads.iter().chain(leader.iter()) {
        if !cpus.is_empty() {
            cryo_sys::task::set_affinity(tid, cpus).task_ctx("set CPU affinity", tid)?;
        }
    }
    if let Some(sig) = p.stop_signo {
        // Queued while every thread is held: the first to run takes it and the group stops
        // before any of them runs a user instruction.
        cryo_sys::task::kill(p.pid, sig).task_ctx("stop again", p.pid)?;
    }
    for &tid in p.threads.iter().chain(leader.iter()) {
        crate::control::release_into_syscall(tid)?;
    }
    Ok(())
}

/// Wait for a new puppet's first stop and take it over: ptrace options, signals blocked.
/// `pid` is its PID in cryo's pid namespace, `vpid` in its own.
fn adopt(pid: Pid, vpid: Pid, tramp: &Trampoline) -> Result<Puppet> {
    match ptrace::wait(pid).task_ctx("wait for the new task", pid)? {
        WaitStatus::Stopped { .. } => {}
        // The puppet's own exit code when it could not make its new mounts private.
        WaitStatus::Exited(126) => {
            return Err(Error::Task {
                what: "start in a mount namespace of its own".into(),
                pid,
                source: std::io::Error::other("making its mounts private failed"),
            })
        }
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
        (libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_EXITKILL
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACECLONE) as u32,
    )
    .task_ctx("set ptrace options", pid)?;
    let base = ptrace::get_regs(pid).task_ctx("read registers", pid)?;
    let template_xstate = ptrace::get_xstate(pid).task_ctx("read xstate", pid)?;
    ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
    let (scratch, scratch_len) = tramp.scratch();
    let inj = Injector::new(
        RemoteTask::new(pid, base, tramp.syscall_ip()),
        scratch,
        scratch_len,
    );
    Ok(Puppet {
        pid,
        vpid,
        inj,
        template_xstate,
        threads: Vec::new(),
        zombie: false,
        stop_signo: None,
        gone: false,
        leader_exited: false,
        fills: None,
    })
}

/// End a new puppet the way the dumped zombie ended (`status` as wait(2) gives it), so that it
/// waits for its parent as a zombie again.
fn make_zombie(p: &Puppet, status: u32) -> Result<()> {
    let pid = p.pid;
    let sig = status & 0x7f;
    if sig == 0 {
        // Its syscall never returns: the exit shows as an error of the remote syscall.
        let _ = p
            .inj
            .task()
            .syscall_raw(libc::SYS_exit_group, &[u64::from((status >> 8) & 0xff)]);
    } else {
        // Default action, unblocked, sent to itself; the stop it makes is passed on.
        // (SIGKILL and SIGSTOP have no action to reset.)
        if sig != libc::SIGKILL as u32 && sig != libc::SIGSTOP as u32 {
            let s = p.inj.scratch();
            let dfl = s.bytes(&[0u8; 32])?;
            p.inj.syscall(
                "reset the killing signal",
                libc::SYS_rt_sigaction,
                &[u64::from(sig), dfl.0, 0, 8],
            )?;
        }
        ptrace::set_sigmask(pid, !(1u64 << (sig - 1)))
            .task_ctx("unblock the killing signal", pid)?;
        // The syscall ends at its exit stop (then the resume delivers the signal), or the
        // delivery stop came first and ended the remote syscall (then it is passed on).
        let first = match p.inj.task().syscall_raw(
            libc::SYS_tgkill,
            &[p.vpid.0 as u64, p.vpid.0 as u64, u64::from(sig)],
        ) {
            Ok(_) => 0,
            Err(_) => sig as i32,
        };
        // SIGKILL needs no delivery stop: the task may be dead already.
        let dead = procfs::read_stat(pid)
            .map(|s| s.state == 'Z')
            .unwrap_or(true);
        if !dead {
            ptrace::cont(pid, first).task_ctx("let the signal kill", pid)?;
            while let WaitStatus::Stopped { sig: s, .. } =
                ptrace::wait(pid).task_ctx("wait for the zombie", pid)?
            {
                ptrace::cont(pid, s).task_ctx("let the signal kill", pid)?;
            }
        }
    }
    if procfs::read_stat(pid)
        .map(|s| s.state != 'Z')
        .unwrap_or(true)
    {
        return Err(Error::Task {
            what: "make a zombie".into(),
            pid,
            source: std::io::Error::other("it did not end"),
        });
    }
    Ok(())
}

/// Have `parent` create `tid` (as the parent's pid namespace numbers it) with clone3 (set_tid)
/// and `flags`, and `clear_tid` as its TID address (CLONE_CHILD_CLEARTID) unless 0; returns the
/// new task's TID in cryo's namespace.
fn remote_clone(
    parent: &Injector,
    tid: Pid,
    flags: u64,
    exit_signal: u64,
    clear_tid: u64,
) -> Result<Pid> {
    // struct clone_args (88 bytes), then the one set_tid entry.
    let s = parent.scratch();
    let slot = s.zeroed(96)?;
    let set_tid = slot.addr.offset(88);
    let (flags, child_tid) = if clear_tid != 0 {
        (flags | libc::CLONE_CHILD_CLEARTID as u64, clear_tid)
    } else {
        (flags, 0)
    };
    let mut args = Vec::with_capacity(96);
    for v in [
        flags,
        0,
        child_tid,
        0,
        exit_signal,
        0,
        0,
        0,
        set_tid.0,
        1,
        0,
    ] {
        args.extend_from_slice(&v.to_ne_bytes());
    }
    args.extend_from_slice(&tid.0.to_ne_bytes());
    s.write(slot, &args)?;
    let got = parent.syscall(
        &format!("create task {tid}"),
        libc::SYS_clone3,
        &[slot.addr.0, 88],
    )?;
    if got as i32 != tid.0 {
        return Err(Error::Task {
            what: format!("create at this pid (got {got})"),
            pid: tid,
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        });
    }
    // The same task in cryo's namespace, from the fork event cryo's ptrace options report.
    parent.task().last_new_task().ok_or_else(|| Error::Task {
        what: "learn the PID of the task created".into(),
        pid: tid,
        source: std::io::Error::other("no fork event reported"),
    })
}

fn restore_tree(imgs: &[TaskImages], env: &PuppetEnv, puppets: &mut Vec<Puppet>) -> Result<()> {
    // Shared anonymous memory is re-created by cryo first; every process maps its part.
    let vmas: Vec<&pb::VmaEntry> = imgs.iter().flat_map(|t| t.mm.vmas.iter()).collect();
    let mut shmem = BTreeMap::new();
    for t in imgs {
        for (k, v) in &t.shmem {
            shmem.entry(*k).or_insert_with(|| v.clone());
        }
    }
    let shm = memory::make_shared_anon(env.dir, &vmas, &shmem)?;
    // 1. Every process, parents first: the root a fresh copy of cryo, the others forked by
    //    their parent once its memory is restored, so that they inherit it copy-on-write;
    //    sessions and groups as dumped (see `TreeBuilder`). Zombies die last.
    let mut b = TreeBuilder::new(imgs, env, &shm, puppets)?;
    b.build()?;
    let slot = b.slot;
    // Every process's memory is all there before anything of it runs.
    for p in puppets.iter_mut() {
        finish_fills(p)?;
    }
    for (img, k) in imgs.iter().zip(&slot) {
        if let (Some(code), Some(k)) = (img.zombie, k) {
            let p = &mut puppets[*k];
            make_zombie(p, code)?;
            p.zombie = true;
        }
    }
    // A test build can fail here, with every process made (`restore-tree`).
    crate::dump::fault_point("restore-tree")?;
    // 2. Each process becomes the rest of its dumped self. A shared fd table is filled by the
    //    first process that has it; the trampoline of a shared address space is unmapped by
    //    the last.
    let mut last_of_vm = BTreeMap::new();
    for (n, img) in imgs.iter().enumerate().filter(|(_, t)| t.zombie.is_none()) {
        last_of_vm.insert(img.ids.vm_id, n);
    }
    for (n, (img, k)) in imgs.iter().zip(&slot).enumerate() {
        let Some(k) = *k else {
            return Err(bad(
                "pstree.img",
                format!("pid {} is not in the tree", img.pstree.pid),
            ));
        };
        if img.zombie.is_some() {
            continue;
        }
        let fill_fds = !imgs[..n]
            .iter()
            .any(|t| t.zombie.is_none() && t.ids.files_id == img.ids.files_id);
        let unmap = img.ids.vm_id == 0 || last_of_vm.get(&img.ids.vm_id) == Some(&n);
        drive_puppet(&mut puppets[k], img, env, fill_fds, unmap)?;
    }
    env.files.after_fds()?;
    // 3. A tree with its own pid namespace sees its PIDs in /proc, as a container does (the
    //    puppets needed cryo's /proc until now).
    if env.own_pidns {
        let init = puppets.first().map(|p| p.pid).unwrap_or(Pid(0));
        cryo_sys::pidns::mount_proc_of(init).task_ctx("mount /proc of the pid namespace", init)?;
    }
    Ok(())
}

/// Phase 1: creates the processes so that each ends up with its dumped parent, session and
/// process group, which the kernel only lets a process inherit at fork, set for itself with
/// setsid/setpgid, or join while the group exists. `tree_shape` plans where each process is
/// born; here the plan is carried out:
/// - a process is forked by its parent, by a helper that re-makes a session whose leader is
///   gone (at the leader's PID, with CLONE_PARENT so that the parent gets it), or by an extra
///   helper whose exit moves it up to its parent (a subreaper for that moment), once every
///   process exists;
/// - a session leader forks what is born in the session it was born in before it calls setsid;
/// - a process group is joined once it exists; a group whose leader is gone is re-made by a
///   helper at the leader's PID, forked by one of its members, that lives until every member
///   has joined.
struct TreeBuilder<'a, 'e> {
    imgs: &'a [TaskImages],
    env: &'a PuppetEnv<'e>,
    shm: &'a memory::SharedAnon,
    puppets: &'a mut Vec<Puppet>,
    shape: tree_shape::Shape,
    /// For each image, its puppet (index in `puppets`).
    slot: Vec<Option<usize>>,
    /// For each session helper of the plan, its puppet.
    helper_slot: Vec<Option<usize>>,
    /// For each puppet, the image whose memory it holds (what its children inherit).
    holds: Vec<Option<usize>>,
    /// Session and group of each puppet now.
    sid: Vec<u32>,
    pgid: Vec<u32>,
    /// The groups that exist now: pgid -> session.
    groups: BTreeMap<u32, u32>,
    /// Images whose group could not be joined when they were created.
    deferred: Vec<usize>,
    /// Processes to move up to their parent, in the order made: (image, the helper that
    /// forked it).
    lifts: Vec<(usize, usize)>,
    /// The next PID tried for a lifting helper: above every PID, session and group of the
    /// images first, so that none is taken from a process made later; past the kernel's
    /// pid_max, from the bottom, among those the images do not name.
    next_helper_pid: u32,
    /// Every PID, session and group of the images.
    taken: HashSet<u32>,
}

impl<'a, 'e> TreeBuilder<'a, 'e> {
    fn new(
        imgs: &'a [TaskImages],
        env: &'a PuppetEnv<'e>,
        shm: &'a memory::SharedAnon,
        puppets: &'a mut Vec<Puppet>,
    ) -> Result<Self> {
        let index: HashMap<u32, usize> = imgs
            .iter()
            .enumerate()
            .map(|(i, t)| (t.pstree.pid, i))
            .collect();
        let mut members = Vec::with_capacity(imgs.len());
        for (i, t) in imgs.iter().enumerate() {
            // The first image and every other with ppid 0 are roots, made by cryo.
            let parent = if i == 0 || t.pstree.ppid == 0 {
                None
            } else {
                let p = index.get(&t.pstree.ppid).copied().ok_or_else(|| {
                    bad(
                        "pstree.img",
                        format!("no parent {} for {}", t.pstree.ppid, t.pstree.pid),
                    )
                })?;
                Some(p)
            };
            members.push(tree_shape::Member {
                pid: t.pstree.pid,
                parent,
                sid: t.pstree.sid,
            });
        }
        // Where the roots start: cryo's session, or none as the init of a new pid namespace.
        let start_sid = if env.own_pidns {
            0
        } else {
            procfs::read_stat(Pid(std::process::id() as i32))?.session as u32
        };
        let shape = tree_shape::plan(&members, start_sid).map_err(Error::Unsupported)?;
        let taken: HashSet<u32> = imgs
            .iter()
            .flat_map(|t| [t.pstree.pid, t.pstree.sid, t.pstree.pgid])
            .collect();
        let next_helper_pid = taken.iter().max().map_or(300, |m| m.saturating_add(1));
        Ok(TreeBuilder {
            imgs,
            env,
            shm,
            puppets,
            helper_slot: vec![None; shape.helpers.len()],
            shape,
            slot: vec![None; imgs.len()],
            holds: Vec::new(),
            sid: Vec::new(),
            pgid: Vec::new(),
            groups: BTreeMap::new(),
            deferred: Vec::new(),
            lifts: Vec::new(),
            next_helper_pid,
            taken,
        })
    }

    /// Make the tree as planned: every process, then the moves to parents, then the groups.
    fn build(&mut self) -> Result<()> {
        for step in self.shape.steps() {
            match step {
                Step::Make(Node::Proc(i)) => self.create(i)?,
                Step::Make(Node::Helper(h)) => self.make_session_helper(h)?,
                Step::Setsid(node) => self.setsid(node)?,
                // Every child has compared its memory with this image.
                Step::Done(Node::Proc(i)) => self.env.drop_pages_map(self.imgs[i].pages_id),
                Step::Done(Node::Helper(_)) => {}
            }
        }
        self.lift_to_parents()?;
        // The session helpers have no children left: each is reaped by the process it is
        // under.
        for h in 0..self.shape.helpers.len() {
            let (Some(k), Node::Proc(under)) = (self.helper_slot[h], self.shape.helpers[h].under)
            else {
                return Err(bad("pstree.img", "a session helper was not made"));
            };
            let reaper = self.puppet_of(under)?;
            let sess = self.shape.helpers[h].sid;
            self.end_helper(k, reaper)?;
            // The helper's group lives on only if a member is in it.
            if !self.live_in_group(sess) {
                self.groups.remove(&sess);
            }
        }
        self.join_deferred_groups()
    }

    fn puppet_of(&self, i: usize) -> Result<usize> {
        self.slot[i].ok_or_else(|| bad("pstree.img", "a process was not created"))
    }

    fn puppet_of_node(&self, n: Node) -> Result<usize> {
        match n {
            Node::Proc(i) => self.puppet_of(i),
            Node::Helper(h) => self.helper_slot[h]
                .ok_or_else(|| bad("pstree.img", "a session helper was not made")),
        }
    }

    /// Create a task at `pid`: by `creator` (a puppet) with a remote clone3, or by cryo.
    /// Returns its puppet index; it starts in its creator's session and group (with
    /// CLONE_PARENT, as a child of the creator's parent).
    fn spawn(&mut self, pid: Pid, creator: Option<usize>, flags: u64) -> Result<usize> {
        let in_use = |source: std::io::Error| {
            let what = if source.raw_os_error() == Some(libc::EEXIST) {
                "create (the pid is in use)"
            } else {
                "create"
            };
            Error::Task {
                what: what.into(),
                pid,
                source,
            }
        };
        let (child, sid, pgid) = match creator {
            None if self.env.own_pidns => {
                // The init of a new pid namespace, PID 1 there (`read_images` checked the
                // images say so); its session and group are outside it, 0 inside.
                let c = puppet::spawn_puppet_in_new_pidns().map_err(in_use)?;
                (c, 0, 0)
            }
            None => {
                let own = procfs::read_stat(Pid(std::process::id() as i32))?;
                let c = puppet::spawn_puppet(Some(pid)).map_err(in_use)?;
                (c, own.session as u32, own.pgrp as u32)
            }
            Some(k) => {
                // A child inherits the memory: all of it must be there.
                finish_fills(&mut self.puppets[k])?;
                // With CLONE_PARENT the exit signal is the creator's (SIGCHLD); clone3 wants 0.
                let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
                    0
                } else {
                    libc::SIGCHLD as u64
                };
                let c = remote_clone(&self.puppets[k].inj, pid, flags, exit_signal, 0).map_err(
                    |e| match e {
                        Error::Task { source, .. } => in_use(source),
                        e => e,
                    },
                )?;
                (c, self.sid[k], self.pgid[k])
            }
        };
        // A task made but not adopted is no puppet yet: end it here, or nobody reaps it (and
        // the init of a pid namespace would wait for it for ever).
        let p = adopt(child, pid, self.env.tramp).inspect_err(|_| {
            let _ = cryo_sys::task::kill(child, libc::SIGKILL);
            let _ = cryo_sys::task::wait_pid(child);
        })?;
        self.puppets.push(p);
        self.sid.push(sid);
        self.pgid.push(pgid);
        self.holds.push(creator.and_then(|k| self.holds[k]));
        Ok(self.puppets.len() - 1)
    }

    /// `spawn` at a PID of the images. A PID, session or group still held by a zombie of the
    /// dumped tree, which its reaper has not collected yet when the restore follows the dump at
    /// once, is waited for: a second at most.
    fn spawn_at(&mut self, pid: Pid, creator: Option<usize>, flags: u64) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.spawn(pid, creator, flags) {
                Err(Error::Task { source, .. })
                    if source.raw_os_error() == Some(libc::EEXIST) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => return r,
            }
        }
    }

    /// A helper forked by `creator` at a PID no process of the images has (the first free
    /// one above them).
    fn spawn_helper(&mut self, creator: usize) -> Result<usize> {
        let mut wrapped = false;
        for _ in 0..10_000 {
            let candidate = self.next_helper_pid;
            self.next_helper_pid = candidate.saturating_add(1);
            if self.taken.contains(&candidate) || candidate > i32::MAX as u32 {
                continue;
            }
            match self.spawn(Pid(candidate as i32), Some(creator), 0) {
                Err(Error::Task { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {}
                // Above pid_max: once more from the bottom (PIDs below 300 are the kernel's
                // first, rarely free).
                Err(Error::Task { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) && !wrapped =>
                {
                    wrapped = true;
                    self.next_helper_pid = 300;
                }
                r => return r,
            }
        }
        Err(Error::Unsupported(
            "no free pid found for a helper that moves a process to its parent".into(),
        ))
    }

    fn inj(&self, k: usize) -> &Injector {
        &self.puppets[k].inj
    }

    /// Mark the VMAs of puppet `k` (restored from `parent`) that a child keeping only `kept`
    /// would drop MADV_DONTFORK, where that saves copying and then dropping many pages;
    /// returns the ranges marked, to be passed on at fork again once the child exists.
    fn dontfork(&self, k: usize, parent: &TaskImages, kept: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let not_at_fork = (1u64 << libc::MADV_DONTFORK) | (1u64 << libc::MADV_WIPEONFORK);
        let mut marked = Vec::new();
        for v in &parent.mm.vmas {
            let range = (v.start, v.end);
            let pages: u64 = parent
                .pagemap
                .iter()
                .filter(|pe| pe.vaddr >= v.start && pe.vaddr < v.end)
                .map(|pe| pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages)))
                .sum();
            // Private memory only, the kind that is copied page by page at fork (and never
            // VM_IO, which MADV_DOFORK refuses).
            let private = memory::status::VMA_ANON_PRIVATE | memory::status::VMA_FILE_PRIVATE;
            if v.status & memory::status::VMA_AREA_REGULAR == 0
                || v.status & private == 0
                || v.status & (memory::status::VMA_AREA_VDSO | memory::status::VMA_AREA_VVAR) != 0
                || v.madv.unwrap_or(0) & not_at_fork != 0
                || pages < DONTFORK_MIN_PAGES
                || kept.contains(&range)
            {
                continue;
            }
            // Best effort: a VMA the kernel will not mark is copied and dropped as before.
            if self
                .inj(k)
                .syscall(
                    "keep memory from a child at fork",
                    libc::SYS_madvise,
                    &[v.start, v.end - v.start, libc::MADV_DONTFORK as u64],
                )
                .is_ok()
            {
                marked.push(range);
            }
        }
        marked
    }

    /// Create image `i` as the plan says: by cryo, its parent, a session helper, or a lifting
    /// helper forked by its creator.
    fn create(&mut self, i: usize) -> Result<()> {
        let imgs = self.imgs;
        let img = &imgs[i];
        let pid = img.pstree.pid;
        let birth = self.shape.birth(i);
        let creator = match self.shape.creator(i) {
            None => None,
            Some(n) => Some(self.puppet_of_node(n)?),
        };
        let flags = if img.zombie.is_some() || creator.is_none() {
            0
        } else {
            let f = shared_with_parent(imgs, i)?;
            if f != 0 && birth != Birth::ByParent {
                return Err(Error::Unsupported(format!(
                    "pid {pid} sharing kernel objects (fd table, fs, address space) with its \
                     parent, while it must be born away from it to get its session"
                )));
            }
            f
        };
        let (creator, flags) = match (birth, creator) {
            (Birth::CloneParent, c) => (c, flags | libc::CLONE_PARENT as u64),
            (Birth::Lifted, Some(c)) => (Some(self.spawn_helper(c)?), flags),
            (_, c) => (c, flags),
        };
        let inherit: Option<&'a TaskImages> = creator.and_then(|c| self.holds[c]).map(|h| &imgs[h]);
        let by_parent = birth == Birth::ByParent;
        let restores_memory = img.zombie.is_none() && flags & libc::CLONE_VM as u64 == 0;
        let kept = match inherit {
            Some(p) if restores_memory => self.env.kept_from(img, p),
            _ => Vec::new(),
        };
        // The parent's VMAs this child does not keep are not copied at fork, to be dropped at
        // once: big ones are marked MADV_DONTFORK for the fork.
        let not_copied = match (creator, inherit) {
            (Some(c), Some(p)) if by_parent && restores_memory => self.dontfork(c, p, &kept),
            _ => Vec::new(),
        };
        let made = self.spawn_at(Pid(pid as i32), creator, flags);
        // Every range is tried; the first failure is the one said.
        let mut passed_on = Ok(0);
        if let Some(c) = creator {
            for &(start, end) in &not_copied {
                let r = self.inj(c).syscall(
                    "pass memory on at fork again",
                    libc::SYS_madvise,
                    &[start, end - start, libc::MADV_DOFORK as u64],
                );
                if passed_on.is_ok() {
                    passed_on = r;
                }
            }
        }
        let k = made?;
        passed_on?;
        self.slot[i] = Some(k);
        if birth == Birth::Lifted {
            if let Some(lh) = creator {
                self.lifts.push((i, lh));
            }
        }
        if creator.is_none() {
            // What the root inherited from cryo; its children inherit the clean state.
            self.inj(k).syscall(
                "close inherited fds",
                libc::SYS_close_range,
                &[0, u64::from(u32::MAX), 0],
            )?;
            task_attrs::unregister_inherited_rseq(self.inj(k))?;
        }
        // A process that shares its parent's address space has it, restored, already.
        if restores_memory {
            let parent = inherit.map(|p| (p, kept));
            let fills = restore_memory(&self.puppets[k], img, parent, self.env, self.shm)?;
            self.puppets[k].fills = Some(fills);
            self.holds[k] = Some(i);
        }
        if img.pstree.sid != pid {
            if self.sid[k] != img.pstree.sid && (creator.is_some() || !self.env.opts.shell_job) {
                return Err(Error::Unsupported(format!(
                    "restoring pid {pid} into session {} from outside it{}",
                    img.pstree.sid,
                    if creator.is_none() {
                        ": use --shell-job"
                    } else {
                        ""
                    }
                )));
            }
            // A leader joins its group once it has its session.
            self.join_group(i, k)?;
        }
        Ok(())
    }

    /// A helper at the PID of the exited leader of a session, forked by the process it is
    /// under (it calls setsid next).
    fn make_session_helper(&mut self, h: usize) -> Result<()> {
        let s = self.shape.helpers[h];
        debug!("re-making session {} whose leader is gone", s.sid);
        let creator = self.puppet_of_node(s.under)?;
        let k = self.spawn_at(Pid(s.sid as i32), Some(creator), 0)?;
        self.helper_slot[h] = Some(k);
        Ok(())
    }

    fn setsid(&mut self, node: Node) -> Result<()> {
        let k = self.puppet_of_node(node)?;
        self.inj(k)
            .syscall("create session", libc::SYS_setsid, &[])?;
        let sid = self.puppets[k].vpid.0 as u32;
        self.sid[k] = sid;
        self.pgid[k] = sid;
        self.groups.insert(sid, sid);
        if let Node::Proc(i) = node {
            self.join_group(i, k)?;
            // Before the session's members are forked: they inherit its terminal.
            self.env.files.new_session(self.inj(k), sid)?;
        }
        Ok(())
    }

    /// Move each process born away from its parent up to it, the last born first (so that a
    /// process moves before any process it was born below): its parent becomes a subreaper
    /// for the moment, and the helper that forked it exits.
    fn lift_to_parents(&mut self) -> Result<()> {
        let imgs = self.imgs;
        for (i, lh) in std::mem::take(&mut self.lifts).into_iter().rev() {
            let Some(parent) = self.shape.parent(i) else {
                return Err(bad(
                    "pstree.img",
                    format!("no parent for {}", imgs[i].pstree.pid),
                ));
            };
            let target = self.puppet_of(parent)?;
            let Some(creator) = self.shape.creator(i) else {
                return Err(bad("pstree.img", "a root to move"));
            };
            let reaper = self.puppet_of_node(creator)?;
            debug!(
                "moving pid {} up to its parent {}",
                imgs[i].pstree.pid, imgs[parent].pstree.pid
            );
            self.set_subreaper(target, true)?;
            self.end_helper(lh, reaper)?;
            let k = self.puppet_of(i)?;
            let now = procfs::read_stat(self.puppets[k].pid)?.ppid;
            if now != self.puppets[target].pid.0 {
                return Err(Error::Task {
                    what: format!("move to parent {}", imgs[parent].pstree.pid),
                    pid: self.puppets[k].vpid,
                    source: std::io::Error::other(format!("its parent is pid {now} of cryo's")),
                });
            }
            self.set_subreaper(target, false)?;
        }
        Ok(())
    }

    /// The dumped subreaper bit is set again in phase 2; this one is for the moves only.
    fn set_subreaper(&self, k: usize, on: bool) -> Result<()> {
        self.inj(k).syscall(
            if on {
                "become a subreaper"
            } else {
                "stop being a subreaper"
            },
            libc::SYS_prctl,
            &[libc::PR_SET_CHILD_SUBREAPER as u64, u64::from(on), 0, 0, 0],
        )?;
        Ok(())
    }

    fn live_in_group(&self, g: u32) -> bool {
        self.puppets
            .iter()
            .zip(&self.pgid)
            .any(|(p, &pg)| pg == g && !p.gone)
    }

    /// End helper `h` and have `reaper` (its parent) reap it.
    fn end_helper(&mut self, h: usize, reaper: usize) -> Result<()> {
        let (pid, vpid) = (self.puppets[h].pid, self.puppets[h].vpid);
        // The exit_group never returns: the error is the task ending.
        let _ = self.inj(h).task().syscall_raw(libc::SYS_exit_group, &[0]);
        if procfs::read_stat(pid)
            .map(|s| s.state != 'Z')
            .unwrap_or(false)
        {
            loop {
                match ptrace::wait(pid).task_ctx("wait for the helper to end", pid)? {
                    WaitStatus::Exited(_) | WaitStatus::Signaled(_) => break,
                    _ => ptrace::cont(pid, 0).task_ctx("let the helper end", pid)?,
                }
            }
        }
        self.inj(reaper).syscall(
            &format!("reap helper {vpid}"),
            libc::SYS_wait4,
            &[vpid.0 as u64, 0, libc::__WALL as u64, 0],
        )?;
        self.puppets[h].gone = true;
        Ok(())
    }

    /// Put puppet `k` (image `i`) in its group now, or defer it until the group exists.
    fn join_group(&mut self, i: usize, k: usize) -> Result<()> {
        let p = &self.imgs[i].pstree;
        let g = p.pgid;
        if g == self.pgid[k] {
            return Ok(());
        }
        if g == p.pid {
            self.inj(k)
                .syscall("create process group", libc::SYS_setpgid, &[0, 0])?;
            self.pgid[k] = g;
            self.groups.insert(g, self.sid[k]);
        } else if self.groups.get(&g) == Some(&self.sid[k]) {
            self.inj(k)
                .syscall("join process group", libc::SYS_setpgid, &[0, u64::from(g)])?;
            self.pgid[k] = g;
        } else if self.slot[0] == Some(k) || p.ppid == 0 {
            // The root of a shell job stays in the caller's group.
            if !self.env.opts.shell_job {
                return Err(Error::Unsupported(format!(
                    "restoring pid {} into process group {g} from outside it: use --shell-job",
                    p.pid
                )));
            }
        } else {
            self.deferred.push(i);
        }
        Ok(())
    }

    /// Once every process exists: the groups that could not be joined at creation. A group
    /// whose leader is gone is re-made by a helper forked by its first member.
    fn join_deferred_groups(&mut self) -> Result<()> {
        let mut dead: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for i in std::mem::take(&mut self.deferred) {
            let k = self.slot[i].ok_or_else(|| bad("pstree.img", "a process was not created"))?;
            let g = self.imgs[i].pstree.pgid;
            if self.groups.get(&g) == Some(&self.sid[k]) {
                self.inj(k)
                    .syscall("join process group", libc::SYS_setpgid, &[0, u64::from(g)])?;
                self.pgid[k] = g;
            } else if self.imgs.iter().any(|t| t.pstree.pid == g) {
                return Err(Error::Unsupported(format!(
                    "pid {} in process group {g} of another session",
                    self.imgs[i].pstree.pid
                )));
            } else {
                dead.entry(g).or_default().push(i);
            }
        }
        for (g, members) in dead {
            let first = self.slot[members[0]]
                .ok_or_else(|| bad("pstree.img", "a process was not created"))?;
            debug!("re-making process group {g} whose leader is gone");
            let h = self.spawn_at(Pid(g as i32), Some(first), 0)?;
            self.inj(h)
                .syscall("create process group", libc::SYS_setpgid, &[0, 0])?;
            self.groups.insert(g, self.sid[h]);
            for &i in &members {
                let k = self.slot[i].ok_or_else(|| bad("pstree.img", "not created"))?;
                if self.sid[k] != self.sid[h] {
                    return Err(Error::Unsupported(format!(
                        "pid {} in process group {g} of another session",
                        self.imgs[i].pstree.pid
                    )));
                }
                self.inj(k)
                    .syscall("join process group", libc::SYS_setpgid, &[0, u64::from(g)])?;
                self.pgid[k] = g;
            }
            self.end_helper(h, first)?;
        }
        Ok(())
    }
}

/// The clone flags that make process `n` share its parent's fd table (CLONE_FILES), fs
/// (CLONE_FS), address space (CLONE_VM without CLONE_THREAD) and signal handlers
/// (CLONE_SIGHAND) as dumped. Sharing with any other process cannot be made by a fork and is
/// refused.
fn shared_with_parent(imgs: &[TaskImages], n: usize) -> Result<u64> {
    let img = &imgs[n];
    let pid = img.pstree.pid;
    let live_before = || imgs[..n].iter().filter(|t| t.zombie.is_none());
    let parent = live_before().find(|t| t.pstree.pid == img.pstree.ppid);
    let mut flags = 0;
    type IdOf = fn(&pb::TaskKobjIdsEntry) -> u32;
    let kinds: [(&str, IdOf, u64); 4] = [
        ("fd table", |i| i.files_id, libc::CLONE_FILES as u64),
        ("fs (cwd, root, umask)", |i| i.fs_id, libc::CLONE_FS as u64),
        ("address space", |i| i.vm_id, libc::CLONE_VM as u64),
        // The kernel shares handlers only along with the address space.
        (
            "signal handlers",
            |i| i.sighand_id,
            libc::CLONE_SIGHAND as u64,
        ),
    ];
    for (what, id, flag) in kinds {
        // Old images have no ids: 0 is no object.
        if id(&img.ids) == 0 {
            continue;
        }
        if parent.is_some_and(|p| id(&p.ids) == id(&img.ids)) {
            flags |= flag;
        } else if let Some(other) = live_before().find(|t| id(&t.ids) == id(&img.ids)) {
            return Err(Error::Unsupported(format!(
                "pid {pid} sharing its {what} with pid {}",
                other.pstree.pid
            )));
        }
    }
    Ok(flags)
}

/// What a puppet is driven with, besides its images.
struct PuppetEnv<'a> {
    /// The tree has a pid namespace of its own: the root is made its init.
    own_pidns: bool,
    files: &'a FileTable,
    tramp: &'a Trampoline,
    /// A free place to park the vDSO while it moves.
    temp_vdso: u64,
    dir: &'a Path,
    opts: &'a RestoreOptions,
    /// The CPUs the restored task may run on.
    cpus: &'a [usize],
    /// The threads that copy pages into the puppets.
    copier: memory::Copier,
    /// The pages images mapped so far (see [`PuppetEnv::pages_map`]).
    page_maps: RefCell<BTreeMap<u32, Option<Arc<cryo_sys::uffd::MappedFile>>>>,
}

/// Build the puppet's dumped address space. A puppet forked from a restored parent keeps the
/// private memory (anonymous and file) it inherited where its images allow
/// ([`memory::inherited_vmas`]), so that pages the dumped tasks shared copy-on-write are shared
/// again.
fn restore_memory(
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
fn drive_puppet(
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
    let leader_exits = tc.task_state == crate::dump::TASK_DEAD;
    if tc.task_state == crate::dump::TASK_STOPPED {
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
fn restore_thread(
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
        .is_some_and(|tc| tc.task_state == crate::dump::TASK_DEAD);
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

/// End the leader of a process dumped with its leader dead (`pthread_exit` in `main`): it
/// `exit`s, this thread alone, with its dumped code, at the trampoline's `syscall` instruction
/// once cryo has detached from it (a traced zombie leader would stay cryo's, and the end of
/// the process would be reported to cryo instead of its parent, until cryo exits). Every
/// signal stays blocked so it takes none on the way. The other threads are held stopped
/// meanwhile: no code of the process runs while its leader lives. Returns once the leader is
/// a zombie thread, out of the trampoline for good.
fn exit_leader(pup: &mut Puppet, exit_code: u32, cpus: &[usize]) -> Result<()> {
    let pid = pup.pid;
    if !cpus.is_empty() {
        cryo_sys::task::set_affinity(pid, cpus).task_ctx("set CPU affinity", pid)?;
    }
    // At the exit stop of its last injected syscall.
    let mut regs = ptrace::get_regs(pid).task_ctx("read registers", pid)?;
    regs.rip = pup.inj.task().syscall_ip().0;
    regs.rax = libc::SYS_exit as u64;
    regs.rdi = u64::from((exit_code >> 8) & 0xff);
    regs.orig_rax = u64::MAX;
    ptrace::set_regs(pid, &regs).task_ctx("set registers for exit", pid)?;
    ptrace::set_sigmask(pid, u64::MAX).task_ctx("block signals", pid)?;
    ptrace::detach(pid, 0).task_ctx("release to exit", pid)?;
    pup.leader_exited = true;
    let path = format!("/proc/{pid}/task/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if procfs::parse_stat(&procfs::read_text(&path)?, &path)?.state == 'Z' {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Task {
                what: "exit the leader".into(),
                pid,
                source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            });
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// At a thread's last syscall-exit stop: its dumped registers, XSAVE state and signal mask.
fn set_final_state(
    tid: Pid,
    core: &pb::CoreEntry,
    template_xstate: &[u8],
    image: &str,
) -> Result<()> {
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| bad(image, "no x86 thread info"))?;
    let regs = cpu::entry_to_regs(&ti.gpregs);
    let xstate = cpu::entry_to_xstate(&ti.fpregs, template_xstate);
    ptrace::set_regs(tid, &regs).task_ctx("set registers", tid)?;
    ptrace::set_xstate(tid, &xstate).task_ctx("set xstate", tid)?;
    let mask = core
        .thread_core
        .as_ref()
        .and_then(|th| th.blk_sigset)
        .or(core.tc.as_ref().map(|tc| tc.blk_sigset))
        .unwrap_or(0);
    ptrace::set_sigmask(tid, mask).task_ctx("set signal mask", tid)
}

/// The pages image mapped in cryo, for UFFDIO_COPY (None: pread it is).
fn map_pages(dir: &Path, pages_id: u32) -> Option<cryo_sys::uffd::MappedFile> {
    let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(pages_id))).ok()?;
    let f = std::fs::File::open(path).ok()?;
    cryo_sys::uffd::MappedFile::map(&f).ok()
}

impl PuppetEnv<'_> {
    /// The VMAs of `img` that a puppet forked from the restored `parent` keeps
    /// ([`memory::inherited_vmas`]); the pages images tell memory still shared from memory
    /// that each mapped anew at the same place.
    fn kept_from(&self, img: &TaskImages, parent: &TaskImages) -> Vec<(u64, u64)> {
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
    fn pages_map(&self, pages_id: u32) -> Option<Arc<cryo_sys::uffd::MappedFile>> {
        self.page_maps
            .borrow_mut()
            .entry(pages_id)
            .or_insert_with(|| map_pages(self.dir, pages_id).map(Arc::new))
            .clone()
    }

    /// Pages image `pages_id` is needed no more (its process and every child of it have their
    /// memory): unmapped by a copier thread, once the copies from it are done.
    fn drop_pages_map(&self, pages_id: u32) {
        if let Some(Some(map)) = self.page_maps.borrow_mut().remove(&pages_id) {
            self.copier.unmap(map);
        }
    }
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
