//! Making every process of the tree at its PID with its dumped parent, session and group
//! ([`TreeBuilder`]), as `tree_shape` plans it.

use crate::error::{Error, Result, TaskCtx};
use crate::proc_restore::*;
use crate::puppet::*;
use crate::remote::Injector;
use crate::task_images::*;
use crate::tree_shape::{self, Birth, Node, Step};
use crate::{memory, task_attrs};
use cryo_image::pb;
use cryo_sys::ptrace::{self, WaitStatus};
use cryo_sys::puppet::{self};
use cryo_sys::{procfs, Pid};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tracing::debug;

/// A VMA of a parent with at least this many pages is kept from a child that would drop it
/// (two madvise calls cost less than copying and dropping the page table entries).
pub(crate) const DONTFORK_MIN_PAGES: u64 = 64;

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
pub(crate) struct TreeBuilder<'a, 'e> {
    pub(crate) imgs: &'a [TaskImages],
    pub(crate) env: &'a PuppetEnv<'e>,
    pub(crate) shm: &'a memory::SharedAnon,
    pub(crate) puppets: &'a mut Vec<Puppet>,
    pub(crate) shape: tree_shape::Shape,
    /// For each image, its puppet (index in `puppets`).
    pub(crate) slot: Vec<Option<usize>>,
    /// For each session helper of the plan, its puppet.
    pub(crate) helper_slot: Vec<Option<usize>>,
    /// For each puppet, the image whose memory it holds (what its children inherit).
    pub(crate) holds: Vec<Option<usize>>,
    /// Session and group of each puppet now.
    pub(crate) sid: Vec<u32>,
    pub(crate) pgid: Vec<u32>,
    /// The groups that exist now: pgid -> session.
    pub(crate) groups: BTreeMap<u32, u32>,
    /// Images whose group could not be joined when they were created.
    pub(crate) deferred: Vec<usize>,
    /// Processes to move up to their parent, in the order made: (image, the helper that
    /// forked it).
    pub(crate) lifts: Vec<(usize, usize)>,
    /// The next PID tried for a lifting helper: above every PID, session and group of the
    /// images first, so that none is taken from a process made later; past the kernel's
    /// pid_max, from the bottom, among those the images do not name.
    pub(crate) next_helper_pid: u32,
    /// Every PID, session and group of the images.
    pub(crate) taken: HashSet<u32>,
}

impl<'a, 'e> TreeBuilder<'a, 'e> {
    pub(crate) fn new(
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
    pub(crate) fn build(&mut self) -> Result<()> {
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
pub(crate) fn shared_with_parent(imgs: &[TaskImages], n: usize) -> Result<u64> {
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
