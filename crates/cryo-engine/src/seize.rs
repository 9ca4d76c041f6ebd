//! Taking hold of the tree to dump and letting it go: every thread of every process seized
//! and stopped (through the cgroup freezer with `--cgroup` or `--freeze-cgroup`), the
//! processes found from the root down ([`seize_all`]), and released at the end as the dump
//! says: killed, left running or stopped ([`release_tree`]); after a failure, exactly as they
//! were ([`release_after_failure`]).

use crate::control::{Attached, Release, Seized};
use crate::error::{Error, Result};
use crate::DumpOptions;
use cryo_image::{pb, ImageKind};
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::{procfs, Pid};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// A process of the dumped tree, all its threads seized (the leader first).
pub(crate) struct SeizedProc {
    pub pid: Pid,
    /// Every live thread, the leader first; with a dead leader, only the others.
    pub threads: Vec<Seized>,
    /// A zombie: dead, waiting for its parent; nothing to seize, only its exit status to keep.
    pub zombie: Option<procfs::Stat>,
    /// The leader has exited alone (`pthread_exit` in `main`) while other threads run: its
    /// stat (state 'Z', exit code). It cannot be seized; `threads` holds the live ones.
    pub dead_leader: Option<procfs::Stat>,
}

impl SeizedProc {
    /// The task whose /proc entries describe the process's address space, fd table and fs:
    /// the leader, or, with the leader dead, the first live thread (a dead leader has dropped
    /// its mm, files and fs: its maps, smaps, mem and pagemap are empty, its fd directory is
    /// empty, its cwd and root links are gone and its status has no umask).
    pub fn via(&self) -> Pid {
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
pub(crate) fn is_zombie(pid: Pid) -> Result<bool> {
    if procfs::read_stat(pid)?.state != 'Z' {
        return Ok(false);
    }
    Ok(procfs::read_threads(pid)?.iter().all(|t| *t == pid))
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
pub(crate) fn open_cgroup(opts: &DumpOptions) -> Result<Option<crate::cgroup::Cgroup>> {
    match (&opts.cgroup, &opts.freeze_cgroup) {
        (Some(_), Some(_)) => Err(Error::Unsupported(
            "--cgroup with --freeze-cgroup (--cgroup freezes its cgroup itself)".into(),
        )),
        (Some(p), None) | (None, Some(p)) => crate::cgroup::Cgroup::open(p).map(Some),
        (None, None) => Ok(None),
    }
}

/// `pid` can be the root of a dump: it exists, is no zombie and is a process, not a thread.
pub(crate) fn check_root(pid: Pid) -> Result<()> {
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
pub(crate) fn seize_all(
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
pub(crate) fn mark_roots(opts: &DumpOptions) -> Result<()> {
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
pub(crate) fn release_after_failure(
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
pub(crate) fn wait_killed(threads: &[Pid]) {
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
pub(crate) fn release_tree(tree: Vec<SeizedProc>, how: Release) -> Result<()> {
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
