//! The dump orchestrator: the order of phases. Each phase is a call into the module that owns
//! it (`seize`: taking hold of the tree and letting it go; `proc_dump`: one process; the kinds
//! of resources under it); this file only decides when.
//!
//! 1. Check the target and block SIGINT/SIGTERM/SIGHUP (polled between phases).
//! 2. Seize and stop the task; registers, xstate and mask are read (`control`).
//! 3. Collect everything only the task can tell (remote syscalls) and everything /proc tells.
//! 4. Write memory and the images.
//! 5. Undo every trace of cryo in the task, then kill it, or let it run (`-R`) or stop (`-s`).
//!
//! Any error before step 5 releases the task exactly as it was.

use crate::control::Release;
use crate::error::{Error, Result};
use crate::proc_dump::{self, TreeDump};
use crate::seize::{
    check_root, mark_roots, open_cgroup, release_after_failure, release_tree, seize_all,
    wait_killed, SeizedProc,
};
use crate::{memory, DumpOptions};
use cryo_image::{pb, ImageKind};
use cryo_sys::{procfs, Pid};
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span};

/// Image version CRIU writes (`CRTOOLS_IMAGES_V1_1`).
const IMG_VERSION: u32 = 2;

/// The phases a test build can stop at, in order.
pub const PHASES: [&str; 6] = ["seized", "injector", "remote", "files", "memory", "images"];

/// Test builds only (feature `fault-injection`): `CRYO_FAULT_INJECT=<phase>` fails the dump
/// (or restore) there; `CRYO_FAULT_PAUSE=<phase>` waits 2 s there (so a test can signal cryo
/// mid-dump).
pub(crate) fn fault_point(phase: &str) -> Result<()> {
    if !cfg!(feature = "fault-injection") {
        return Ok(());
    }
    if std::env::var("CRYO_FAULT_PAUSE").as_deref() == Ok(phase) {
        info!("pausing at {phase} (CRYO_FAULT_PAUSE)");
        std::thread::sleep(Duration::from_secs(2));
    }
    if std::env::var("CRYO_FAULT_INJECT").as_deref() == Ok(phase) {
        return Err(Error::FaultInjected(phase.to_string()));
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    match cryo_sys::signal::pending_termination() {
        Some(sig) => Err(Error::Interrupted(sig)),
        None => Ok(()),
    }
}

/// A fault point (test builds) and a check for SIGINT/SIGTERM/SIGHUP, between two phases.
pub(crate) fn between_phases(phase: &str) -> Result<()> {
    fault_point(phase)?;
    check_interrupted()
}

/// Checkpoint the tree rooted at `opts.pid`, or every process of the cgroup `opts.cgroup`, into
/// `opts.images_dir`.
pub fn dump(opts: &DumpOptions) -> Result<()> {
    let pid = Pid(opts.pid);
    let _span = info_span!("dump", pid = pid.0).entered();
    let cgroup = open_cgroup(opts)?;
    if opts.cgroup.is_none() {
        check_root(pid)?;
    }
    std::fs::create_dir_all(&opts.images_dir).map_err(|source| Error::Path {
        what: "create images dir".into(),
        path: opts.images_dir.display().to_string(),
        source,
    })?;
    cryo_sys::signal::block_termination().map_err(|source| Error::Task {
        what: "block termination signals".into(),
        pid,
        source,
    })?;

    let last_cpu = procfs::read_stat(pid)
        .ok()
        .and_then(|s| usize::try_from(s.processor).ok());
    let pin = crate::control::CpuPin::to(last_cpu);
    let t0 = Instant::now();
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
    let mut tree = Vec::new();
    // After the tree, so dropped before it: a cgroup is thawed before its tasks are released.
    let mut freezer = None;
    // From here on every seized task is released untouched if anything returns early.
    if let Err(e) = seize_all(opts, cgroup.as_ref(), timeout, &mut tree, &mut freezer) {
        release_after_failure(tree, freezer)?;
        return Err(e);
    }
    let frozen_at = Instant::now();
    info!(
        "{} tasks stopped in {:?}",
        tree.iter().map(|p| p.threads.len()).sum::<usize>(),
        frozen_at - t0
    );
    // Tasks write their own pages, one per CPU cryo may use (it is pinned to one itself).
    let page_writers = pin.saved().len().max(1);
    let (written, pages, shmem_pages) = match dump_tree(&mut tree, opts, page_writers) {
        Ok(x) => x,
        Err(e) => {
            release_after_failure(tree, freezer)?;
            return Err(e);
        }
    };
    if let Err(e) = mark_roots(opts) {
        release_after_failure(tree, freezer)?;
        return Err(e);
    }
    let how = if opts.leave_running {
        Release::Run
    } else if opts.leave_stopped {
        Release::Stop
    } else {
        Release::Kill
    };
    let frozen = frozen_at.elapsed();
    // Every thread, for `wait_killed`.
    let threads: Vec<Pid> = tree
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.pid()))
        .collect();
    release_tree(tree, how)?;
    if let Some(f) = freezer {
        f.finish(how != Release::Kill)?;
    }
    if how == Release::Kill {
        wait_killed(&threads);
    }
    write_stats(
        &opts.images_dir,
        frozen_at - t0,
        frozen,
        written,
        (pages, shmem_pages),
    )?;
    info!("dump finished: {pages} pages, frozen for {frozen:?}");
    Ok(())
}

/// Everything done while the tree is stopped. Returns (memory dump time, pages written,
/// shared memory pages written).
fn dump_tree(
    tree: &mut [SeizedProc],
    opts: &DumpOptions,
    page_writers: usize,
) -> Result<(Duration, u64, u64)> {
    let mut in_flight = VecDeque::new();
    let res = dump_processes(tree, opts, page_writers, &mut in_flight);
    // After a failure, a task still writing its pages is waited for all the same: it must be
    // back in its ptrace stop to be released as it was.
    for (i, w) in in_flight {
        if let Err(e) = complete_pages(&mut tree[i], w) {
            debug!("after a failed dump: {e}");
        }
    }
    res
}

/// Wait for the pages process `proc` is writing (see [`memory::PagesInFlight`]).
fn complete_pages(proc: &mut SeizedProc, w: memory::PagesInFlight) -> Result<()> {
    let leader = proc
        .threads
        .first_mut()
        .ok_or_else(|| Error::Unsupported(format!("pid {} lost its threads", w.pid())))?;
    w.complete(leader.injector()?)
}

/// The work of [`dump_tree`]. The last pages of each process are left to it to write while the
/// next processes are dumped (`in_flight`: index in `tree` and the write), up to `writers` (the
/// CPUs) at once: the copying of memory runs on every CPU, not only on cryo's.
fn dump_processes(
    tree: &mut [SeizedProc],
    opts: &DumpOptions,
    writers: usize,
    in_flight: &mut VecDeque<(usize, memory::PagesInFlight)>,
) -> Result<(Duration, u64, u64)> {
    let dir = opts.images_dir.as_path();
    between_phases("seized")?;
    let mut pstree = Vec::new();
    let mut mem_time = Duration::ZERO;
    let mut total_pages = 0;
    let mut t = TreeDump::new(tree, opts)?;
    for n in 0..tree.len() {
        let (done, rest) = tree.split_at_mut(n);
        let proc = &mut rest[0];
        if let Some(z) = &proc.zombie {
            pstree.push(proc_dump::dump_zombie(&mut t, proc, z)?);
            continue;
        }
        let mut d = proc_dump::dump_process(&mut t, proc)?;
        if let Some(w) = d.in_flight.take() {
            in_flight.push_back((n, w));
        }
        // While cryo works on the next process, the ones in flight keep the other CPUs busy;
        // once it starts that one's write, it waits for the oldest.
        while in_flight.len() > writers.saturating_sub(1).max(1) {
            if let Some((i, w)) = in_flight.pop_front() {
                // The oldest: an earlier process (the current one is the newest).
                let p = if i < n { &mut done[i] } else { &mut *proc };
                complete_pages(p, w)?;
            }
        }
        mem_time += d.mem_time;
        total_pages += d.pages;
        between_phases("memory")?;
        pstree.push(proc_dump::write_process(&mut t, proc, d, n == 0)?);
    }
    while let Some((i, w)) = in_flight.pop_front() {
        complete_pages(&mut tree[i], w)?;
    }
    let shmem_pages = std::mem::take(&mut t.cx.shmem).finish(dir)?;
    info!(
        "open files: {} kcmp calls to tell shared ones apart",
        t.files.kcmp_calls
    );
    t.files.write_images(&t.cx)?;
    cryo_image::write_all_entries(dir, ImageKind::Pstree, None, &pstree)?;
    cryo_image::write_single(
        dir,
        ImageKind::Inventory,
        None,
        &pb::InventoryEntry {
            img_version: IMG_VERSION,
            fdinfo_per_id: Some(true),
            root_ids: Some(t.view.root_ids()),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: Some(uptime_ticks()),
            ..Default::default()
        },
    )?;
    between_phases("images")?;
    Ok((mem_time, total_pages, shmem_pages))
}

fn uptime_ticks() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
        })
        .map(|s| (s * 1_000_000.0) as u64)
        .unwrap_or(0)
}

fn write_stats(
    dir: &Path,
    freezing: Duration,
    frozen: Duration,
    memdump: Duration,
    (pages, shmem_pages): (u64, u64),
) -> Result<()> {
    let stats = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: freezing.as_micros() as u32,
            frozen_time: frozen.as_micros() as u32,
            memdump_time: memdump.as_micros() as u32,
            memwrite_time: memdump.as_micros() as u32,
            // `pages` counts every page written; CRIU counts shared memory apart.
            pages_scanned: pages.saturating_sub(shmem_pages),
            pages_skipped_parent: 0,
            pages_written: pages.saturating_sub(shmem_pages),
            pages_lazy: 0,
            shpages_scanned: Some(shmem_pages),
            shpages_skipped_parent: Some(0),
            shpages_written: Some(shmem_pages),
            ..Default::default()
        }),
        restore: None,
    };
    cryo_image::write_single(dir, ImageKind::StatsDump, None, &stats)?;
    Ok(())
}
