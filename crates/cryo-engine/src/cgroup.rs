//! The cgroup freezer, for `dump --cgroup PATH` (every task of a cgroup) and CRIU's
//! `dump --freeze-cgroup PATH` (W9): which freezer a cgroup directory has, freezing and thawing
//! it, the processes in it, and the roots among them.
//!
//! - **v1** (a hierarchy with the `freezer` controller): `freezer.state` reads `THAWED`,
//!   `FREEZING` or `FROZEN` and takes `FROZEN` or `THAWED`; the threads are in `tasks`. A task
//!   frozen by it cannot enter a ptrace stop until it is thawed, but can be attached: every
//!   thread is seized and interrupted frozen ([`Cgroup::attach_frozen`]) and stops on its way
//!   out of the freezer, before it runs again.
//! - **v2** (the unified hierarchy): `cgroup.freeze` takes `1` or `0`; the freeze is complete
//!   when `cgroup.events` says `frozen 1`; the threads are in `cgroup.threads`. A frozen task
//!   still enters a ptrace stop (`PTRACE_INTERRUPT` wins over the freezer trap), and stays in
//!   it when the cgroup is thawed.
//!
//! The version is told by the file system the directory is on (statfs magic), as a hybrid
//! machine has both. Sub-cgroups are frozen with their parent, so their tasks count as the
//! cgroup's, as CRIU's `seize_cgroup_tree` counts them.
//!
//! [`Frozen`] is the freeze as a guard: dropped before it is thawed, it thaws the cgroup (unless
//! the cgroup was frozen before cryo came), so every early return thaws.

use crate::error::{Error, Result};
use cryo_sys::cgroupfs::{self, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
use cryo_sys::{procfs, Pid};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often the freezer's progress is polled.
const POLL: Duration = Duration::from_millis(5);
/// v1: how often `FROZEN` is written again while the cgroup stays `FREEZING` (older kernel
/// documentation asks userspace to retry, and CRIU does).
const V1_REFREEZE: Duration = Duration::from_secs(1);
/// v1: how often a cgroup stuck in `FREEZING` is thawed for a moment and frozen again.
const V1_THAW_CYCLE: Duration = Duration::from_secs(3);
/// Deepest ancestor chain [`find_roots`] follows.
const MAX_ANCESTORS: usize = 4096;

/// Which cgroup freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The v1 `freezer` controller.
    V1,
    /// The v2 core freezer.
    V2,
}

/// What the freezer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running.
    Thawed,
    /// Asked to freeze, not every task is frozen yet.
    Freezing,
    /// Every task is frozen.
    Frozen,
}

/// A cgroup directory with a freezer.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: PathBuf,
    version: Version,
}

fn path_err(what: impl Into<String>, path: &Path, source: io::Error) -> Error {
    Error::Path {
        what: what.into(),
        path: path.display().to_string(),
        source,
    }
}

/// `freezer.state` of v1.
pub fn parse_v1_state(text: &str) -> Option<State> {
    match text.trim() {
        "THAWED" => Some(State::Thawed),
        "FREEZING" => Some(State::Freezing),
        "FROZEN" => Some(State::Frozen),
        _ => None,
    }
}

/// The `frozen` line of v2's `cgroup.events`: whether the freeze is complete.
pub fn parse_v2_events_frozen(text: &str) -> Option<bool> {
    text.lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .and_then(|v| match v.trim() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        })
}

/// The PIDs of a cgroup's threads file, one per line.
pub fn parse_tids(text: &str) -> Vec<Pid> {
    text.split_whitespace()
        .filter_map(|w| w.parse::<i32>().ok())
        .filter(|&p| p > 0)
        .map(Pid)
        .collect()
}

/// The processes of `procs` none of whose ancestors is in `procs` (`ppid_of` gives a
/// process's parent, `None` when it is gone; an ancestor chain ends at pid 0). A process whose
/// parent is outside the set but whose grandparent is inside is no root: it is in that
/// ancestor's subtree, which is dumped whole. Sorted by pid.
pub fn find_roots(procs: &[Pid], ppid_of: impl Fn(Pid) -> Option<Pid>) -> Vec<Pid> {
    let set: BTreeSet<Pid> = procs.iter().copied().collect();
    set.iter()
        .copied()
        .filter(|&p| {
            let mut at = p;
            for _ in 0..MAX_ANCESTORS {
                match ppid_of(at) {
                    // Back at itself: a loop (a table read while it changed) ends the chain.
                    Some(pp) if pp.0 > 0 && pp != p => {
                        if set.contains(&pp) {
                            return false;
                        }
                        at = pp;
                    }
                    _ => return true,
                }
            }
            true
        })
        .collect()
}

/// Whether thread `tid` sleeps in a group stop (SIGSTOP and the like), as its wchan says; a
/// frozen task shows state `D` whatever it was doing, its wchan tells.
fn in_group_stop(tid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/wchan"))
        .is_ok_and(|w| w.trim() == "do_signal_stop")
}

/// The parent of a live process, from /proc.
pub fn ppid_of(pid: Pid) -> Option<Pid> {
    procfs::read_stat(pid).ok().map(|s| Pid(s.ppid))
}

impl Cgroup {
    /// The cgroup at `path`: its version from the file system it is on, and its freezer file.
    pub fn open(path: &Path) -> Result<Cgroup> {
        let magic = cgroupfs::fs_type(path).map_err(|e| path_err("open cgroup", path, e))?;
        let version = match magic {
            CGROUP2_SUPER_MAGIC => Version::V2,
            CGROUP_SUPER_MAGIC => Version::V1,
            other => {
                return Err(path_err(
                    format!("use as a cgroup (file system magic {other:#x}, not cgroup v1 or v2)"),
                    path,
                    io::Error::from_raw_os_error(libc::EINVAL),
                ))
            }
        };
        if !path.is_dir() {
            return Err(path_err(
                "use as a cgroup",
                path,
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let cg = Cgroup {
            path: path.to_path_buf(),
            version,
        };
        let control = cg.control_file();
        if !control.exists() {
            let why = match version {
                Version::V1 => {
                    "find freezer.state (not a cgroup of a v1 freezer hierarchy, or its root) in"
                }
                Version::V2 => "find cgroup.freeze (the root cgroup cannot be frozen) in",
            };
            return Err(path_err(
                why,
                path,
                io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        debug!(path = %path.display(), ?version, "cgroup freezer");
        Ok(cg)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether a task of the frozen cgroup can be stopped by ptrace before it is thawed (v2).
    pub fn ptrace_stops_frozen(&self) -> bool {
        self.version == Version::V2
    }

    fn control_file(&self) -> PathBuf {
        self.path.join(match self.version {
            Version::V1 => "freezer.state",
            Version::V2 => "cgroup.freeze",
        })
    }

    fn threads_file(dir: &Path, version: Version) -> PathBuf {
        dir.join(match version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.threads",
        })
    }

    fn read(&self, path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| path_err("read", path, e))
    }

    /// What the freezer says now.
    pub fn state(&self) -> Result<State> {
        let control = self.control_file();
        let text = self.read(&control)?;
        match self.version {
            Version::V1 => parse_v1_state(&text).ok_or_else(|| {
                path_err(
                    format!("understand the freezer state {:?} of", text.trim()),
                    &control,
                    io::Error::from(io::ErrorKind::InvalidData),
                )
            }),
            Version::V2 => {
                if text.trim() == "0" {
                    return Ok(State::Thawed);
                }
                let events = self.path.join("cgroup.events");
                match parse_v2_events_frozen(&self.read(&events)?) {
                    Some(true) => Ok(State::Frozen),
                    Some(false) => Ok(State::Freezing),
                    None => Err(path_err(
                        "find the frozen line in",
                        &events,
                        io::Error::from(io::ErrorKind::InvalidData),
                    )),
                }
            }
        }
    }

    fn write_state(&self, frozen: bool) -> Result<()> {
        let value = match (self.version, frozen) {
            (Version::V1, true) => "FROZEN",
            (Version::V1, false) => "THAWED",
            (Version::V2, true) => "1",
            (Version::V2, false) => "0",
        };
        let control = self.control_file();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&control)
            .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
            .map_err(|e| {
                let what = if frozen { "freeze" } else { "thaw" };
                path_err(format!("{what} (write {value} to)"), &control, e)
            })
    }

    /// Every thread of the cgroup and of its sub-cgroups.
    pub fn threads(&self) -> Result<Vec<Pid>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.path.clone()];
        while let Some(dir) = dirs.pop() {
            let file = Self::threads_file(&dir, self.version);
            out.extend(parse_tids(&self.read(&file)?));
            let entries = std::fs::read_dir(&dir).map_err(|e| path_err("list", &dir, e))?;
            for e in entries {
                let e = e.map_err(|e| path_err("list", &dir, e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(e.path());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Every process with a thread in the cgroup or its sub-cgroups (the whole process is
    /// dumped even when v1 has only some of its threads in the cgroup). Sorted by pid; threads
    /// gone while they are listed are left out.
    pub fn processes(&self) -> Result<Vec<Pid>> {
        let mut procs = BTreeSet::new();
        for tid in self.threads()? {
            if let Ok(st) = procfs::read_status(tid) {
                procs.insert(Pid(st.tgid));
            }
        }
        Ok(procs.into_iter().collect())
    }

    /// v1, with the cgroup frozen: attach every thread of it (and of its sub-cgroups) with
    /// `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, into `into`, without waiting for any stop (none can
    /// happen before the thaw). Once thawed, each of them enters its ptrace stop on its way
    /// out of the freezer, before it runs any code of its own: no fork, exit or new thread in
    /// between, so the tree collected then is the tree as frozen (CRIU's
    /// `seize_cgroup_tree`).
    ///
    /// - A thread found in a group stop (wchan `do_signal_stop`) is left alone: attaching a
    ///   stopped task waits until it moves into its trace stop, which a frozen task cannot do,
    ///   so `PTRACE_SEIZE` would block until the thaw. It is seized after the thaw like any
    ///   task outside the cgroup; stopped, it cannot fork or exit meanwhile either.
    /// - A thread that cannot be attached because it is exiting (ESRCH; the freezer lets an
    ///   exiting task finish) is looked for again after a pause, as CRIU does, until it is gone
    ///   from the cgroup (at most `timeout`).
    /// - The threads file is read again until a pass finds nothing new (tasks moved into the
    ///   cgroup meanwhile are frozen too).
    ///
    /// On an error, what is attached stays in `into`, for the caller to release after the
    /// thaw.
    pub fn attach_frozen(
        &self,
        into: &mut std::collections::BTreeMap<Pid, crate::control::Attached>,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let mut stopped = BTreeSet::new();
        loop {
            let mut exiting = Vec::new();
            let mut new = 0usize;
            for tid in self.threads()? {
                if into.contains_key(&tid) || stopped.contains(&tid) {
                    continue;
                }
                if in_group_stop(tid) {
                    debug!("thread {tid} of the cgroup is in a group stop: seized after the thaw");
                    stopped.insert(tid);
                    continue;
                }
                match crate::control::Attached::attach(tid) {
                    Ok(a) => {
                        into.insert(tid, a);
                        new += 1;
                    }
                    Err(Error::Task { source, .. })
                        if source.raw_os_error() == Some(libc::ESRCH) =>
                    {
                        exiting.push(tid);
                    }
                    Err(Error::Task { source, .. })
                        if source.raw_os_error() == Some(libc::EPERM)
                            && !Path::new(&format!("/proc/{tid}/exe")).exists()
                            && procfs::read_stat(tid).is_ok() =>
                    {
                        // A kernel thread (no exe): not dumped, as in CRIU.
                        debug!("thread {tid} of the cgroup is a kernel thread: left out");
                        stopped.insert(tid);
                    }
                    Err(e) => return Err(e),
                }
            }
            if exiting.is_empty() && new == 0 {
                debug!(
                    "{} threads of the frozen cgroup attached in {:?}",
                    into.len(),
                    start.elapsed()
                );
                return Ok(());
            }
            if !exiting.is_empty() {
                if start.elapsed() > timeout {
                    return Err(Error::Path {
                        what: format!(
                            "attach threads {exiting:?} (exiting, not gone within {timeout:?}) \
                             of frozen cgroup"
                        ),
                        path: self.path.display().to_string(),
                        source: io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    });
                }
                debug!("threads {exiting:?} of the cgroup are exiting: looking again");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Freeze the cgroup and wait until every task in it is frozen (at most `timeout`). Refused
    /// when cryo itself is in it: it would freeze the process that is to thaw it.
    pub fn freeze(&self, timeout: Duration) -> Result<Frozen> {
        let ours = procfs::read_threads(Pid(std::process::id() as i32))?;
        let theirs = self.threads()?;
        if let Some(t) = ours.iter().find(|t| theirs.contains(t)) {
            return Err(Error::Unsupported(format!(
                "freezing cgroup {} with cryo itself in it (thread {t})",
                self.path.display()
            )));
        }
        let found = self.state()?;
        info!(path = %self.path.display(), version = ?self.version, ?found, "freezing cgroup");
        let mut guard = Frozen {
            cg: self.clone(),
            // A cgroup found freezing was being frozen by someone else: it counts as frozen, as
            // in CRIU.
            was_frozen: found != State::Thawed,
            thawed: false,
        };
        if found == State::Frozen {
            return Ok(guard);
        }
        self.write_state(true)?;
        let start = Instant::now();
        let mut last_refreeze = start;
        let mut last_cycle = start;
        loop {
            let st = self.state()?;
            if st == State::Frozen {
                debug!("cgroup frozen in {:?}", start.elapsed());
                return Ok(guard);
            }
            if let Some(sig) = cryo_sys::signal::pending_termination() {
                return Err(Error::Interrupted(sig));
            }
            if start.elapsed() > timeout {
                // Thawed, unless it was frozen (freezing) before.
                let path = self.path.display().to_string();
                if !guard.was_frozen {
                    guard.thaw()?;
                }
                return Err(Error::Path {
                    what: format!("freeze within {timeout:?} ({st:?} still)"),
                    path,
                    source: io::Error::from_raw_os_error(libc::ETIMEDOUT),
                });
            }
            if self.version == Version::V1 && !guard.was_frozen {
                if last_cycle.elapsed() > V1_THAW_CYCLE {
                    warn!("cgroup still freezing: thaw and freeze again");
                    self.write_state(false)?;
                    std::thread::sleep(Duration::from_millis(100));
                    self.write_state(true)?;
                    last_cycle = Instant::now();
                    last_refreeze = last_cycle;
                } else if last_refreeze.elapsed() > V1_REFREEZE {
                    self.write_state(true)?;
                    last_refreeze = Instant::now();
                }
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A cgroup frozen by [`Cgroup::freeze`]. Dropped before [`Frozen::thaw`], it thaws the cgroup
/// (a cgroup that was frozen before stays frozen).
#[derive(Debug)]
pub struct Frozen {
    cg: Cgroup,
    was_frozen: bool,
    thawed: bool,
}

impl Frozen {
    /// The cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cg
    }

    /// Whether the cgroup was frozen (or freezing) before cryo froze it.
    pub fn was_frozen(&self) -> bool {
        self.was_frozen
    }

    /// Thaw the cgroup (also one that was frozen before: seized tasks must be able to run
    /// their remote syscalls and be released).
    pub fn thaw(&mut self) -> Result<()> {
        if self.thawed {
            return Ok(());
        }
        self.cg.write_state(false)?;
        self.thawed = true;
        debug!(path = %self.cg.path.display(), "cgroup thawed");
        Ok(())
    }

    /// The end of a dump, once every task is released: a cgroup that was frozen before cryo
    /// came is frozen again when `refreeze` (its tasks were left running or stopped, not
    /// killed); otherwise it stays thawed.
    pub fn finish(mut self, refreeze: bool) -> Result<()> {
        self.thaw()?;
        if refreeze && self.was_frozen {
            info!(path = %self.cg.path.display(), "freezing the cgroup again, as it was found");
            self.cg.write_state(true)?;
        }
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.thawed || self.was_frozen {
            return;
        }
        self.thawed = true;
        if let Err(e) = self.cg.write_state(false) {
            tracing::error!("thawing cgroup {}: {e}", self.cg.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn freezer_files() {
        assert_eq!(parse_v1_state("FROZEN\n"), Some(State::Frozen));
        assert_eq!(parse_v1_state("FREEZING\n"), Some(State::Freezing));
        assert_eq!(parse_v1_state("THAWED\n"), Some(State::Thawed));
        assert_eq!(parse_v1_state("frozen"), None);
        assert_eq!(
            parse_v2_events_frozen("populated 1\nfrozen 1\n"),
            Some(true)
        );
        assert_eq!(
            parse_v2_events_frozen("populated 0\nfrozen 0\n"),
            Some(false)
        );
        assert_eq!(parse_v2_events_frozen("populated 1\n"), None);
        assert_eq!(parse_tids("12\n7\n\nx\n-3\n"), vec![Pid(12), Pid(7)]);
    }

    fn roots(procs: &[i32], parents: &[(i32, i32)]) -> Vec<i32> {
        let map: BTreeMap<Pid, Pid> = parents.iter().map(|&(c, p)| (Pid(c), Pid(p))).collect();
        let procs: Vec<Pid> = procs.iter().map(|&p| Pid(p)).collect();
        find_roots(&procs, |p| map.get(&p).copied())
            .into_iter()
            .map(|p| p.0)
            .collect()
    }

    #[test]
    fn roots_of_a_cgroup() {
        // 1 -> 10 -> 11 -> 12: one root.
        let tree = [(10, 1), (11, 10), (12, 11), (20, 1), (21, 20), (1, 0)];
        assert_eq!(roots(&[10, 11, 12], &tree), [10]);
        // Two independent roots with children.
        assert_eq!(roots(&[10, 11, 20, 21], &tree), [10, 20]);
        // 12's parent 11 is outside the cgroup but 10 is in it: 12 is in 10's subtree.
        assert_eq!(roots(&[10, 12], &tree), [10]);
        // An ancestor that has gone ends the chain.
        assert_eq!(roots(&[12], &[(12, 11)]), [12]);
        // A loop in a broken table ends too.
        assert_eq!(roots(&[5], &[(5, 6), (6, 5)]), [5]);
        assert_eq!(roots(&[], &tree), Vec::<i32>::new());
    }
}
