//! The dump orchestrator: the order of phases. Each phase is a call into the module that owns
//! the resource; this file only decides when.
//!
//! 1. Check the target and block SIGINT/SIGTERM/SIGHUP (polled between phases).
//! 2. Seize and stop the task; registers, xstate and mask are read (`control`).
//! 3. Collect everything only the task can tell (remote syscalls) and everything /proc tells.
//! 4. Write memory and the images.
//! 5. Undo every trace of cryo in the task, then kill it, or let it run (`-R`) or stop (`-s`).
//!
//! Any error before step 5 releases the task exactly as it was.

use crate::control::{Attached, Release, Seized};
use crate::cx::DumpCx;
use crate::error::{Error, Result};
use crate::files::FileTable;
use crate::{cpu, creds, memory, signals, task_attrs, timers, DumpOptions};
use cryo_image::{pb, ImageKind};
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::{procfs, Pid};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span};

/// CRIU's task state for a live task (`TASK_ALIVE`).
pub const TASK_ALIVE: u32 = 1;
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

fn between_phases(phase: &str) -> Result<()> {
    fault_point(phase)?;
    check_interrupted()
}

/// A process of the dumped tree, all its threads seized (the leader first).
struct SeizedProc {
    pid: Pid,
    /// Every live thread, the leader first; with a dead leader, only the others.
    threads: Vec<Seized>,
    /// A zombie: dead, waiting for its parent; nothing to seize, only its exit status to keep.
    zombie: Option<procfs::Stat>,
    /// The leader has exited alone (`pthread_exit` in `main`) while other threads run: its
    /// stat (state 'Z', exit code). It cannot be seized; `threads` holds the live ones.
    dead_leader: Option<procfs::Stat>,
}

impl SeizedProc {
    /// The task whose /proc entries describe the process's address space, fd table and fs:
    /// the leader, or, with the leader dead, the first live thread (a dead leader has dropped
    /// its mm, files and fs: its maps, smaps, mem and pagemap are empty, its fd directory is
    /// empty, its cwd and root links are gone and its status has no umask).
    fn via(&self) -> Pid {
        match (&self.dead_leader, self.threads.first()) {
            (Some(_), Some(t)) => t.pid(),
            _ => self.pid,
        }
    }
}

/// Whether `pid` is a zombie process: its leader in state 'Z' and no other thread left. A
/// thread other than the leader is reaped as soon as it exits, while a leader that exits first
/// stays, a zombie thread, until the last one has gone: another entry in /proc/PID/task is a
/// live thread, and the process lives on with its leader dead.
fn is_zombie(pid: Pid) -> Result<bool> {
    if procfs::read_stat(pid)?.state != 'Z' {
        return Ok(false);
    }
    Ok(procfs::read_threads(pid)?.iter().all(|t| *t == pid))
}

/// CRIU's task state for a zombie (`TASK_DEAD`).
pub const TASK_DEAD: u32 = 2;
/// CRIU's task state for a task in a group stop (`TASK_STOPPED`); `stop_signo` says by what.
pub const TASK_STOPPED: u32 = 3;

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

/// Seize `root` and every thread and descendant of it, parents before children. A thread in
/// `pre` (attached while its v1 cgroup was frozen) has its stop waited for instead.
fn seize_tree(
    root: Pid,
    timeout: Duration,
    tree: &mut Vec<SeizedProc>,
    pre: &mut BTreeMap<Pid, Attached>,
) -> Result<()> {
    let mut queue = vec![root];
    // Several roots (`--cgroup`) share the tree: nothing may be in it twice.
    let mut seen: BTreeSet<Pid> = tree.iter().map(|p| p.pid).collect();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            return Err(Error::Unsupported(format!(
                "a tree that changes while it is collected (pid {pid} found twice)"
            )));
        }
        let stat = procfs::read_stat(pid)?;
        let mut dead_leader = None;
        if stat.state == 'Z' {
            if is_zombie(pid)? {
                tree.push(SeizedProc {
                    pid,
                    threads: Vec::new(),
                    zombie: Some(stat),
                    dead_leader: None,
                });
                continue;
            }
            info!("pid {pid}: the leader has exited, other threads run");
            dead_leader = Some(stat);
        }
        let leader_dead = dead_leader.is_some();
        let mut proc = SeizedProc {
            pid,
            threads: Vec::new(),
            zombie: None,
            dead_leader,
        };
        // Threads may be created while we seize: read the list until it stops changing.
        let result = (|| -> Result<()> {
            loop {
                let tids = procfs::read_threads(pid)?;
                let new: Vec<Pid> = tids
                    .into_iter()
                    .filter(|t| !(leader_dead && *t == pid))
                    .filter(|t| !proc.threads.iter().any(|s| s.pid() == *t))
                    .collect();
                if new.is_empty() {
                    if proc.threads.is_empty() {
                        // Every other thread went while we looked: a zombie now, which would
                        // have to be dumped with its parent, as one.
                        return Err(Error::Unsupported(format!(
                            "a process whose last threads exit while it is seized (pid {pid})"
                        )));
                    }
                    return Ok(());
                }
                // The leader first (or with the leader dead, the first live thread), so its
                // VMA snapshot precedes any scratch mapping; it is read once, for all.
                let mut new = new;
                new.sort_by_key(|t| (*t != pid, t.0));
                // Every new thread but a live leader not yet held is interrupted before cryo
                // waits for any: they stop together instead of one after another.
                let leader_alone = proc.threads.is_empty() && new.first() == Some(&pid);
                for &tid in new.iter().skip(usize::from(leader_alone)) {
                    interrupt_early(tid, pre)?;
                }
                for tid in new {
                    let t = match proc.threads.first() {
                        Some(l) => match seize_thread(tid, timeout, &l.maps, pre) {
                            Ok(t) => t,
                            // A thread that ended while it was being seized is no part of
                            // the process any more (threads come and go until all are held).
                            Err(Error::Task { source, .. })
                                if source.raw_os_error() == Some(libc::ESRCH) =>
                            {
                                debug!("thread {tid} of {pid} ended while being seized");
                                continue;
                            }
                            Err(e) => return Err(e),
                        },
                        None => match pre.remove(&tid) {
                            Some(a) => a.wait(timeout)?,
                            None => Seized::seize(tid, timeout)?,
                        },
                    };
                    proc.threads.push(t);
                }
            }
        })();
        let children = proc
            .threads
            .iter()
            .map(|t| procfs::read_text(&format!("/proc/{pid}/task/{}/children", t.pid())))
            .collect::<std::result::Result<Vec<_>, _>>();
        tree.push(proc);
        result?;
        for text in children? {
            for c in text.split_whitespace() {
                let c: i32 = c.parse().map_err(|_| Error::BadImage {
                    image: format!("/proc/{pid}/task/*/children"),
                    what: format!("bad pid {c:?}"),
                })?;
                let c = Pid(c);
                // Interrupted now, waited for when its turn comes: the children of a process
                // stop together instead of one after another. (A zombie cannot be seized.)
                let zombie = procfs::read_stat(c).map_or(true, |s| s.state == 'Z');
                if !zombie {
                    interrupt_early(c, pre)?;
                }
                queue.push(c);
            }
        }
    }
    Ok(())
}

/// Attach `tid` and interrupt it now, to be waited for later (into `pre`), unless it is there
/// already. A task that ended meanwhile is no error here: seizing it says so again.
fn interrupt_early(tid: Pid, pre: &mut BTreeMap<Pid, Attached>) -> Result<()> {
    if pre.contains_key(&tid) {
        return Ok(());
    }
    match Attached::attach_checked(tid) {
        Ok(a) => {
            pre.insert(tid, a);
            Ok(())
        }
        Err(Error::Task { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Seize a thread other than the leader (or wait for its stop, if it is in `pre`).
fn seize_thread(
    tid: Pid,
    timeout: Duration,
    leader_maps: &[procfs::MapsEntry],
    pre: &mut BTreeMap<Pid, Attached>,
) -> Result<Seized> {
    match pre.remove(&tid) {
        Some(a) => a.wait_thread(timeout, leader_maps),
        None => Seized::seize_thread(tid, timeout, leader_maps),
    }
}

/// The cgroup of `--cgroup` or `--freeze-cgroup`, if any.
fn open_cgroup(opts: &DumpOptions) -> Result<Option<crate::cgroup::Cgroup>> {
    match (&opts.cgroup, &opts.freeze_cgroup) {
        (Some(_), Some(_)) => Err(Error::Unsupported(
            "--cgroup with --freeze-cgroup (--cgroup freezes its cgroup itself)".into(),
        )),
        (Some(p), None) | (None, Some(p)) => crate::cgroup::Cgroup::open(p).map(Some),
        (None, None) => Ok(None),
    }
}

/// `pid` can be the root of a dump: it exists, is no zombie and is a process, not a thread.
fn check_root(pid: Pid) -> Result<()> {
    if pid.0 <= 0 || !cryo_sys::task::exists(pid) || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::Task {
            what: "find".into(),
            pid,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
    }
    let status = procfs::read_status(pid)?;
    if is_zombie(pid)? {
        return Err(Error::Unsupported(format!(
            "dumping a zombie (pid {pid} has exited and waits for its parent)"
        )));
    }
    if status.tgid != pid.0 {
        return Err(Error::Unsupported(format!(
            "dumping thread {pid} alone (its process is {})",
            status.tgid
        )));
    }
    Ok(())
}

/// How many times `--cgroup` looks again for processes of the cgroup missing from the tree.
const CGROUP_ROUNDS: usize = 5;

/// Seize what the options name: the tree of `opts.pid`, or (`--cgroup`) the tree of every root
/// of the cgroup, the processes none of whose ancestors is in it, whole subtrees, descendants
/// outside the cgroup included (as CRIU dumps the tree of `-t`).
///
/// With a cgroup (`--cgroup`, `--freeze-cgroup`) it is frozen first, so that no task of it forks
/// or exits while the tree is collected, and thawed once it is: the seized tasks stay in their
/// ptrace stops. v2 lets a frozen task enter its ptrace stop, so everything is seized frozen. A
/// v1-frozen task enters no ptrace stop before it is thawed, so on v1, as in CRIU's
/// `freeze_processes`, every thread of the cgroup is attached while it is frozen
/// (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`, which need no stop; see
/// [`Cgroup::attach_frozen`](crate::cgroup::Cgroup::attach_frozen)), then the cgroup is thawed
/// and each task stops at once, before it runs a single instruction of its own; the tree is
/// then collected, waiting for the stops of the attached tasks and seizing the others
/// (descendants outside the cgroup, tasks found in a group stop). Tasks of the cgroup that are
/// not in the tree (`--freeze-cgroup` of one tree of it) are released as they were, once the
/// tree is collected. With `--cgroup`, processes that came into the cgroup meanwhile (moved in
/// from outside) are found by a look at the cgroup once everything is stopped, and seized as
/// further roots.
///
/// The frozen cgroup is left in `freezer` (thawed before this returns, even on failure, unless
/// thawing itself fails) for [`Frozen::finish`](crate::cgroup::Frozen::finish).
fn seize_all(
    opts: &DumpOptions,
    cgroup: Option<&crate::cgroup::Cgroup>,
    timeout: Duration,
    tree: &mut Vec<SeizedProc>,
    freezer: &mut Option<crate::cgroup::Frozen>,
) -> Result<()> {
    let mut pre = BTreeMap::new();
    let Some(cg) = cgroup else {
        return seize_tree(Pid(opts.pid), timeout, tree, &mut pre);
    };
    let frozen = freezer.insert(cg.freeze(timeout)?);
    let result = seize_frozen(opts, cg, frozen, timeout, tree, &mut pre);
    let thawed = frozen.thaw();
    // Attached tasks left over (not in the tree, or after a failure) can stop once thawed, and
    // are let go as they were found.
    let released = if thawed.is_ok() {
        release_attached(pre, timeout)
    } else {
        Ok(())
    };
    result?;
    thawed?;
    released?;
    if opts.cgroup.is_some() {
        check_roots(tree)?;
    }
    Ok(())
}

/// Release attached tasks that were not seized, within `timeout` for all of them.
fn release_attached(pre: BTreeMap<Pid, Attached>, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut first_err = None;
    for (pid, a) in pre {
        debug!("pid {pid} of the cgroup is not dumped: released");
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = a.release(left.max(Duration::from_millis(100))) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The part of [`seize_all`] done with the cgroup frozen (on v1, thawed once every task of it
/// is attached).
fn seize_frozen(
    opts: &DumpOptions,
    cg: &crate::cgroup::Cgroup,
    frozen: &mut crate::cgroup::Frozen,
    timeout: Duration,
    tree: &mut Vec<SeizedProc>,
    pre: &mut BTreeMap<Pid, Attached>,
) -> Result<()> {
    let whole = opts.cgroup.is_some();
    let mut roots = if whole {
        let roots = cgroup_roots(cg, &[])?;
        if roots.is_empty() {
            return Err(Error::Path {
                what: "find a process to dump in cgroup".into(),
                path: cg.path().display().to_string(),
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            });
        }
        roots
    } else {
        vec![Pid(opts.pid)]
    };
    info!(
        "cgroup {} frozen; roots {:?}",
        cg.path().display(),
        roots.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    if !cg.ptrace_stops_frozen() {
        cg.attach_frozen(pre, timeout)?;
        frozen.thaw()?;
    }
    for round in 0.. {
        for root in roots {
            seize_tree(root, timeout, tree, pre)?;
        }
        if !whole {
            return Ok(());
        }
        // Everything seized is stopped: a process of the cgroup not in the tree came into it
        // after the list was taken (moved in from outside).
        let seized: Vec<Pid> = tree.iter().map(|p| p.pid).collect();
        roots = cgroup_roots(cg, &seized)?;
        if roots.is_empty() {
            return Ok(());
        }
        if round + 1 >= CGROUP_ROUNDS {
            return Err(Error::Unsupported(format!(
                "dumping cgroup {} while processes keep coming into it ({:?} not seized)",
                cg.path().display(),
                roots.iter().map(|p| p.0).collect::<Vec<_>>()
            )));
        }
        info!("new processes in the cgroup: {roots:?}");
    }
    Ok(())
}

/// The roots among the processes of `cg` not in `seized` (a process whose ancestor is seized or
/// is another such process is none). Zombies are left out: they are dumped with their parent,
/// and one whose parent is outside the dump cannot be.
fn cgroup_roots(cg: &crate::cgroup::Cgroup, seized: &[Pid]) -> Result<Vec<Pid>> {
    let mut procs = cg.processes()?;
    procs.retain(|p| {
        let zombie = is_zombie(*p).unwrap_or(true);
        if zombie && !seized.contains(p) {
            tracing::warn!("pid {p} of the cgroup is a zombie or gone: left out");
        }
        !zombie
    });
    let mut all = procs.clone();
    all.extend_from_slice(seized);
    Ok(crate::cgroup::find_roots(&all, crate::cgroup::ppid_of)
        .into_iter()
        .filter(|p| !seized.contains(p))
        .collect())
}

/// A tree of several roots is restored with each root a child of cryo, which cannot put it
/// into a session or process group that another process of the dump leads: refused here
/// rather than restored wrong.
fn check_roots(tree: &[SeizedProc]) -> Result<()> {
    let pids: BTreeSet<i32> = tree.iter().map(|p| p.pid.0).collect();
    let mut roots = Vec::new();
    for p in tree.iter().filter(|p| p.zombie.is_none()) {
        let st = procfs::read_stat(p.pid)?;
        if !pids.contains(&st.ppid) {
            roots.push(st);
        }
    }
    if roots.len() < 2 {
        return Ok(());
    }
    for st in &roots {
        for (what, id) in [("session", st.session), ("process group", st.pgrp)] {
            if id != st.pid && pids.contains(&id) {
                return Err(Error::Unsupported(format!(
                    "dumping root pid {} of the cgroup in the {what} {id} of another process \
                     of the dump (with several roots, each is restored as a child of cryo and \
                     must lead its own {what} or be in one outside the dump)",
                    st.pid
                )));
            }
        }
    }
    Ok(())
}

/// `--cgroup`: every process of the tree whose parent is not in it is a root, ppid 0 in
/// `pstree.img`, the way CRIU marks its one root (the first entry has it already; there may be
/// more, each restored as a child of cryo).
fn mark_roots(opts: &DumpOptions) -> Result<()> {
    if opts.cgroup.is_none() {
        return Ok(());
    }
    let dir = opts.images_dir.as_path();
    let mut pstree: Vec<pb::PstreeEntry> =
        cryo_image::read_all_entries(dir, ImageKind::Pstree, None)?;
    // The images' own numbers (the tree's pid namespace's).
    let pids: BTreeSet<u32> = pstree.iter().map(|e| e.pid).collect();
    let mut changed = false;
    for e in pstree.iter_mut() {
        if e.ppid != 0 && !pids.contains(&e.ppid) {
            e.ppid = 0;
            changed = true;
        }
    }
    if changed {
        let roots: Vec<u32> = pstree
            .iter()
            .filter(|e| e.ppid == 0)
            .map(|e| e.pid)
            .collect();
        info!("several roots: {roots:?}");
        cryo_image::write_all_entries(dir, ImageKind::Pstree, None, &pstree)?;
    }
    Ok(())
}

/// After a failure: the cgroup thawed first (a task of a frozen v2 cgroup released to run would
/// hang in the freezer before cryo saw it back in its syscall), every task released as it was,
/// then a cgroup that was frozen before cryo came frozen again.
fn release_after_failure(
    tree: Vec<SeizedProc>,
    freezer: Option<crate::cgroup::Frozen>,
) -> Result<()> {
    let mut freezer = freezer;
    if let Some(f) = freezer.as_mut() {
        f.thaw()?;
    }
    release_tree(tree, Release::Run)?;
    if let Some(f) = freezer {
        f.finish(true)?;
    }
    Ok(())
}

/// After the tree is killed: collect the exits of its threads, as CRIU does. Until cryo, their
/// tracer, has, their real parents cannot reap them, and their PIDs, sessions and groups stay
/// taken: a restore that follows at once would find them in use. Reaping them is their
/// parents' business (a caller that is their subreaper may well wait for the dump to end
/// first). Two seconds at most: a task stuck in the kernel must not hold the dump.
fn wait_killed(threads: &[Pid]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tracees: Vec<Pid> = threads.to_vec();
    while !tracees.is_empty() && Instant::now() < deadline {
        // Ours until its exit is collected (an error: not ours any more).
        tracees.retain(
            |&t| match ptrace::wait_flags(t, libc::WNOHANG | libc::__WALL) {
                Ok(Some(WaitStatus::Exited(_) | WaitStatus::Signaled(_))) | Err(_) => false,
                Ok(_) => true,
            },
        );
        if !tracees.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if !tracees.is_empty() {
        debug!("{} killed threads have not exited yet", tracees.len());
    }
}

/// Let every task go as `how` says. A kill takes children before parents and, in a process,
/// the other threads before the leader (whose death is reported last).
fn release_tree(tree: Vec<SeizedProc>, how: Release) -> Result<()> {
    let mut first_err = None;
    for proc in tree.into_iter().rev() {
        let mut threads = proc.threads;
        // With the leader dead, the first live thread stands in for it: it owns the scratch
        // area the others borrowed (so it is released last), and it takes the SIGSTOP.
        let leader = if threads.first().map(|t| t.pid()) == Some(proc.pid)
            || (proc.dead_leader.is_some() && !threads.is_empty())
        {
            Some(threads.remove(0))
        } else {
            None
        };
        if how == Release::Stop {
            // The leader's SIGSTOP starts a group stop the other threads join once released.
            if let Some(l) = leader {
                if let Err(e) = l.release(Release::Stop) {
                    first_err.get_or_insert(e);
                }
            }
            for t in threads {
                if let Err(e) = t.release(Release::Run) {
                    first_err.get_or_insert(e);
                }
            }
            continue;
        }
        if how == Release::Kill {
            let _ = cryo_sys::task::kill(proc.pid, libc::SIGKILL);
        }
        for t in threads.into_iter().rev() {
            if let Err(e) = t.release(how) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(l) = leader {
            if let Err(e) = l.release(how) {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What one thread contributes to its core image.
struct ThreadDump {
    info: pb::ThreadInfoX86,
    core: pb::ThreadCoreEntry,
}

/// The per-thread state: registers, mask, queued signals, altstack, credentials, scheduling,
/// rseq, robust list, TID address, name.
fn dump_thread(pid: Pid, t: &mut Seized) -> Result<ThreadDump> {
    let tid = t.pid();
    let status = procfs::parse_status(
        &procfs::read_text(&format!("/proc/{pid}/task/{tid}/status"))?,
        "status",
    )?;
    let comm = procfs::read_text(&format!("/proc/{pid}/task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_string();
    let (policy, prio, nice) = task_attrs::dump_sched(tid)?;
    let pending = signals::dump_pending(tid, false)?;
    let (regs, xstate, sigmask) = (t.regs, t.xstate.clone(), t.sigmask);
    let inj = t.injector()?;
    let sas = signals::dump_sigaltstack(inj)?;
    let secbits = creds::dump_securebits(inj)?;
    let attrs = task_attrs::dump_thread_attrs(inj)?;
    Ok(ThreadDump {
        info: pb::ThreadInfoX86 {
            clear_tid_addr: attrs.clear_tid_addr,
            gpregs: cpu::regs_to_entry(&regs),
            fpregs: cpu::xstate_to_entry(&xstate),
            tls: Vec::new(),
        },
        core: pb::ThreadCoreEntry {
            futex_rla: attrs.robust.0,
            futex_rla_len: attrs.robust.1 as u32,
            sched_nice: Some(nice),
            sched_policy: Some(policy),
            sched_prio: Some(prio),
            blk_sigset: Some(sigmask),
            sas: Some(sas),
            pdeath_sig: Some(attrs.pdeath_sig),
            signals_p: Some(pending),
            creds: Some(creds::dump_creds(&status, secbits)),
            comm: Some(comm),
            rseq_entry: (attrs.rseq.rseq_abi_pointer != 0).then_some(pb::RseqEntry {
                rseq_abi_pointer: attrs.rseq.rseq_abi_pointer,
                rseq_abi_size: attrs.rseq.rseq_abi_size,
                signature: attrs.rseq.signature,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        },
    })
}

/// What is left of a leader that has exited while other threads run.
struct DeadLeader {
    /// Its wait status (`exit_code` of /proc/PID/stat: the code of its `exit`, shifted).
    exit_code: u32,
    /// Its blocked signals (/proc/PID/status SigBlk).
    sigmask: u64,
    /// What /proc still shows of it: credentials, name, scheduling.
    core: pb::ThreadCoreEntry,
}

/// The dead leader `pid` of a live process, from /proc alone (it cannot be seized, so no
/// ptrace and no remote syscalls): credentials, name, scheduling and mask as it died with
/// them. Its altstack, robust list, TID address and rseq area are gone with it; securebits
/// need a remote prctl and are left to the caller.
fn dump_dead_leader(pid: Pid, stat: &procfs::Stat) -> Result<DeadLeader> {
    let path = format!("/proc/{pid}/task/{pid}/status");
    let text = procfs::read_text(&path)?;
    let status = procfs::parse_status(&text, &path)?;
    let sigmask = text
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|v| u64::from_str_radix(v.trim(), 16))
        .transpose()
        .map_err(|_| Error::BadImage {
            image: path.clone(),
            what: "bad SigBlk line".into(),
        })?
        .unwrap_or(0);
    let comm = procfs::read_text(&format!("/proc/{pid}/task/{pid}/comm"))?
        .trim_end_matches('\n')
        .to_string();
    // The scheduler still answers for a zombie thread; if not, the restored one keeps the
    // default, which no one can see on a dead thread but in /proc.
    let sched = task_attrs::dump_sched(pid).ok();
    Ok(DeadLeader {
        exit_code: stat.exit_code as u32,
        sigmask,
        core: pb::ThreadCoreEntry {
            sched_nice: sched.map(|s| s.2),
            sched_policy: sched.map(|s| s.0),
            sched_prio: sched.map(|s| s.1),
            blk_sigset: Some(sigmask),
            creds: Some(creds::dump_creds(&status, 0)),
            comm: Some(comm),
            ..Default::default()
        },
    })
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
    let in_tree: Vec<i32> = tree.iter().map(|p| p.pid.0).collect();
    let mut files = FileTable::new();
    let mut cx = DumpCx::new(opts);
    let mut pstree = Vec::new();
    let mut mem_time = Duration::ZERO;
    let mut total_pages = 0;
    // The numbers the images give the tasks (see `pid_ns`): every task of the tree is
    // looked at while it is frozen.
    let mut view = crate::pid_ns::PidView::of_root(tree[0].pid)?;
    for proc in tree.iter() {
        view.add(proc.pid)?;
        // Threads share their process's pid namespace: their numbers only matter in another.
        if view.own_ns() {
            for t in proc.threads.iter().filter(|t| t.pid() != proc.pid) {
                view.add(t.pid())?;
            }
        }
    }
    if view.own_ns() {
        // Each root is restored as a child of cryo: only the init can be one here.
        if let Some(p) = tree
            .iter()
            .skip(1)
            .find(|p| procfs::read_stat(p.pid).is_ok_and(|s| !in_tree.contains(&s.ppid)))
        {
            return Err(Error::Unsupported(format!(
                "pid {} of the pid namespace of {} has its parent outside the dump (only the \
                 namespace's init can be the root of a dump that takes the namespace)",
                p.pid, tree[0].pid
            )));
        }
    }
    if view.own_ns() {
        info!(
            "pid {} is the init of a pid namespace: dumped with it",
            tree[0].pid
        );
    }
    let live: Vec<Pid> = tree
        .iter()
        .filter(|p| p.zombie.is_none())
        .map(|p| p.pid)
        .collect();
    // A dead leader holds none of the objects compared: ask a live thread.
    let live_via: Vec<Pid> = tree
        .iter()
        .filter(|p| p.zombie.is_none())
        .map(SeizedProc::via)
        .collect();
    let tree_ids = crate::kobj_ids::assign_ids(&live_via)?;
    info!(
        "shared kernel objects: {} kcmp calls for {} processes",
        tree_ids.kcmp_calls,
        live.len()
    );
    let mut ids_of = live
        .iter()
        .copied()
        .zip(tree_ids.ids.into_iter().map(|ids| pb::TaskKobjIdsEntry {
            pid_ns_id: Some(view.pid_ns_id()),
            ..ids
        }))
        .collect::<BTreeMap<_, _>>();
    let mut fd_tables_done = BTreeSet::new();
    for n in 0..tree.len() {
        let (done, rest) = tree.split_at_mut(n);
        let proc = &mut rest[0];
        let pid = proc.pid;
        let vpid = view.vpid(pid)?;
        if let Some(z) = &proc.zombie {
            // Only the exit status survives a zombie: CRIU's core has the state and the code.
            let core = pb::CoreEntry {
                mtype: pb::core_entry::March::X8664 as i32,
                tc: Some(pb::TaskCoreEntry {
                    task_state: TASK_DEAD,
                    exit_code: z.exit_code as u32,
                    comm: z.comm.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            cryo_image::write_single(dir, ImageKind::Core, Some(vpid.0 as u64), &core)?;
            let (pgid, sid) = view.group_and_session(pid, z)?;
            pstree.push(pb::PstreeEntry {
                pid: vpid.0 as u32,
                ppid: view.vpid(Pid(z.ppid))?.0 as u32,
                pgid,
                sid,
                threads: vec![vpid.0 as u32],
            });
            continue;
        }
        // The leader's /proc for its own (comm, process group, session, parent), `via` for
        // what a dead leader has dropped (see `SeizedProc::via`).
        let via = proc.via();
        let stat = procfs::read_stat(pid)?;
        let status = procfs::read_status(via)?;
        let (vpgid, vsid) = view.group_and_session(pid, &stat)?;
        // A session whose leader is gone is re-made at restore (W33); one led by a process
        // outside the tree can only be the caller's (a shell job), or, for a tree with its own
        // pid namespace, the one the init was started in (it reads 0 inside).
        let outside_own_ns = view.own_ns() && vsid == 0;
        if !outside_own_ns
            && !in_tree.contains(&stat.session)
            && !opts.shell_job
            && !session_is_ours(stat.session)
            && session_leader_alive(stat.session)
        {
            return Err(Error::Unsupported(format!(
                "pid {pid} is in session {} whose leader is outside the dump: use --shell-job",
                stat.session
            )));
        }
        let personality = task_attrs::dump_personality(via)?;
        let comm = procfs::read_text(&format!("/proc/{pid}/comm"))?
            .trim_end_matches('\n')
            .to_string();
        let oom_score_adj = procfs::read_text(&format!("/proc/{via}/oom_score_adj"))?
            .trim()
            .parse::<i32>()
            .ok();
        // Through ptrace: a traced thread's view of the shared queue.
        let shared_pending = signals::dump_pending(via, true)?;
        let dead_leader = match &proc.dead_leader {
            Some(st) => Some(dump_dead_leader(pid, st)?),
            None => None,
        };
        // The leader, or with the leader dead the first live thread: it runs the remote
        // syscalls for the process and holds the scratch area the other threads borrow.
        let leader = proc
            .threads
            .first_mut()
            .ok_or_else(|| Error::Unsupported(format!("a process without threads (pid {pid})")))?;
        let maps = leader.maps.clone();
        let leader_sigmask = match &dead_leader {
            Some(d) => d.sigmask,
            None => leader.sigmask,
        };
        let stop_signo = leader.stop_signo;
        let inj = leader.injector()?;
        between_phases("injector")?;
        let sigactions = signals::dump_sigactions(inj)?;
        let mut timers = timers::dump_timers(inj)?;
        // /proc names a timer's thread as cryo's namespace numbers it.
        for t in timers.posix.iter_mut() {
            if let Some(tid) = t.notify_thread_id.as_mut() {
                *tid = view.vpid(Pid(*tid))?.0;
            }
        }
        let rlimits = task_attrs::dump_rlimits(inj)?;
        let child_subreaper = task_attrs::dump_thread_attrs(inj)?.child_subreaper;
        let brk = inj.syscall("read brk", libc::SYS_brk, &[0])?;
        let dumpable = inj.syscall(
            "read dumpable",
            libc::SYS_prctl,
            &[libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0],
        )? as i32;
        let thp_disabled = inj.syscall(
            "read THP setting",
            libc::SYS_prctl,
            &[libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0],
        )? != 0;
        let (scratch, _) = inj.scratch_area();
        let mut threads = Vec::new();
        for (i, t) in proc.threads.iter_mut().enumerate() {
            if i > 0 {
                t.borrow_scratch(scratch);
            }
            threads.push((t.pid(), dump_thread(pid, t)?));
        }
        between_phases("remote")?;

        let ids = ids_of.remove(&pid).ok_or_else(|| {
            Error::Unsupported(format!(
                "pid {pid} appeared in the tree after it was frozen"
            ))
        })?;
        // A shared fd table is dumped once, with the first process that has it.
        let fdinfos = if fd_tables_done.insert(ids.files_id) {
            Some(files.dump_fds(&mut cx, via)?)
        } else {
            None
        };
        let fs = task_attrs::dump_fs(via, &mut cx, &mut files, status.umask)?;
        between_phases("files")?;

        let mem_t0 = Instant::now();
        let inj = proc.threads.first_mut().map(|l| l.injector()).transpose()?;
        let mut memdump =
            memory::dump_memory(via, vpid.0 as u64, &maps, inj, &mut cx, &mut files, brk)?;
        memdump.mm.dumpable = Some(dumpable);
        memdump.mm.thp_disabled = Some(thp_disabled);
        if let Some(w) = memdump.in_flight.take() {
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
        mem_time += mem_t0.elapsed();
        total_pages += memdump.pages;
        between_phases("memory")?;

        // A dead leader's core says TASK_DEAD, as a zombie's, with everything of the live
        // process besides; the other threads in pstree.img tell it from a zombie. A group
        // stop is kept in stop_signo alone.
        let tc = pb::TaskCoreEntry {
            task_state: match (&dead_leader, stop_signo) {
                (Some(_), _) => TASK_DEAD,
                (None, Some(_)) => TASK_STOPPED,
                (None, None) => TASK_ALIVE,
            },
            stop_signo: stop_signo.map(|s| s as u32),
            exit_code: dead_leader.as_ref().map_or(0, |d| d.exit_code),
            personality,
            flags: 0,
            blk_sigset: leader_sigmask,
            comm,
            timers: Some(timers),
            rlimits: Some(rlimits),
            signals_s: Some(shared_pending),
            oom_score_adj,
            sigactions,
            child_subreaper: Some(child_subreaper),
            ..Default::default()
        };
        let mut tc = Some(tc);
        if let Some(mut d) = dead_leader {
            // Securebits only a remote prctl reads: the live threads' (one credential
            // change made them all, as a rule).
            let secbits = threads
                .first()
                .and_then(|(_, t)| t.core.creds.as_ref())
                .map_or(0, |c| c.secbits);
            if let Some(c) = d.core.creds.as_mut() {
                c.secbits = secbits;
            }
            // No registers: the leader has none to resume from, it only exits at restore.
            let core = pb::CoreEntry {
                mtype: pb::core_entry::March::X8664 as i32,
                thread_info: None,
                tc: tc.take(),
                ids: Some(ids),
                thread_core: Some(d.core),
                ..Default::default()
            };
            cryo_image::write_single(dir, ImageKind::Core, Some(vpid.0 as u64), &core)?;
        }
        for (tid, t) in threads {
            let is_leader = tid == pid;
            let core = pb::CoreEntry {
                mtype: pb::core_entry::March::X8664 as i32,
                thread_info: Some(t.info),
                tc: if is_leader { tc.take() } else { None },
                ids: is_leader.then_some(ids),
                thread_core: Some(t.core),
                ..Default::default()
            };
            cryo_image::write_single(dir, ImageKind::Core, Some(view.vpid(tid)?.0 as u64), &core)?;
        }
        let id = Some(vpid.0 as u64);
        cryo_image::write_single(dir, ImageKind::Ids, id, &ids)?;
        cryo_image::write_single(dir, ImageKind::Mm, id, &memdump.mm)?;
        cryo_image::write_single(dir, ImageKind::Fs, id, &fs)?;
        if let Some(fdinfos) = &fdinfos {
            cryo_image::write_all_entries(
                dir,
                ImageKind::Fdinfo,
                Some(u64::from(ids.files_id)),
                fdinfos,
            )?;
        }
        pstree.push(pb::PstreeEntry {
            pid: vpid.0 as u32,
            // The root's parent is outside the tree.
            ppid: if n == 0 {
                0
            } else {
                view.vpid(Pid(stat.ppid))?.0 as u32
            },
            pgid: vpgid,
            sid: vsid,
            // The leader first, dead or not.
            threads: proc
                .dead_leader
                .iter()
                .map(|_| pid)
                .chain(proc.threads.iter().map(|t| t.pid()))
                .map(|t| view.vpid(t).map(|v| v.0 as u32))
                .collect::<Result<_>>()?,
        });
    }
    while let Some((i, w)) = in_flight.pop_front() {
        complete_pages(&mut tree[i], w)?;
    }
    let shmem_pages = std::mem::take(&mut cx.shmem).finish(dir)?;
    info!(
        "open files: {} kcmp calls to tell shared ones apart",
        files.kcmp_calls
    );
    files.write_images(&cx)?;
    cryo_image::write_all_entries(dir, ImageKind::Pstree, None, &pstree)?;
    cryo_image::write_single(
        dir,
        ImageKind::Inventory,
        None,
        &pb::InventoryEntry {
            img_version: IMG_VERSION,
            fdinfo_per_id: Some(true),
            root_ids: Some(view.root_ids()),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: Some(uptime_ticks()),
            ..Default::default()
        },
    )?;
    between_phases("images")?;
    Ok((mem_time, total_pages, shmem_pages))
}

/// Whether process `sid` exists and still leads its session (the PID may have been reused).
fn session_leader_alive(sid: i32) -> bool {
    procfs::read_stat(Pid(sid))
        .map(|s| s.session == sid)
        .unwrap_or(false)
}

fn session_is_ours(sid: i32) -> bool {
    // The caller's own session counts as a shell job.
    procfs::read_stat(Pid(std::process::id() as i32))
        .map(|s| s.session == sid)
        .unwrap_or(false)
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
