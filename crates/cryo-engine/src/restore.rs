//! The restore orchestrator: the order of phases. Each step is a call into the module that owns
//! it: `task_images` (reading), `tree_build` (making the processes), `proc_restore` (each
//! process's memory and the rest of it), `puppet` (a process being restored), and the kinds of
//! resources under them.
//!
//! 1. Read and check the images; load the files (`files::FileTable`: ghost files re-created,
//!    objects cryo makes itself, such as pipes and sockets, made).
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
use crate::files::FileTable;
use crate::proc_restore::*;
use crate::puppet::*;
use crate::task_images::*;
use crate::tree_build::*;
use crate::{memory, RestoreOptions, Restored};
use cryo_image::pb;
use cryo_sys::puppet::Trampoline;
use cryo_sys::{procfs, Pid};
use std::cell::RefCell;
use std::collections::BTreeMap;
use tracing::{info, info_span};

/// Size of the hole reserved for the trampoline and the temporary vDSO place.
const HOLE_BYTES: u64 = 4 << 20;
/// Trampoline size (code + scratch).
const TRAMPOLINE_BYTES: u64 = 64 << 10;

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
