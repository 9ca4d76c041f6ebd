//! The dump of one process of the seized tree, in two steps: what the process tells and holds
//! ([`dump_process`]: remote syscalls, /proc, its threads, fds, fs and memory, whose last
//! pages it is left writing), then its images ([`write_process`]: core, ids, mm, fs, fdinfo)
//! and its pstree entry. A zombie has its exit status only ([`dump_zombie`]).

use crate::control::Seized;
use crate::cx::DumpCx;
use crate::error::{Error, Result};
use crate::files::FileTable;
use crate::seize::SeizedProc;
use crate::{cpu, creds, memory, signals, task_attrs, timers};
use cryo_image::{pb, ImageKind};
use cryo_sys::{procfs, Pid};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::info;

/// CRIU's task state for a live task (`TASK_ALIVE`).
pub const TASK_ALIVE: u32 = 1;
/// CRIU's task state for a zombie (`TASK_DEAD`).
pub const TASK_DEAD: u32 = 2;
/// CRIU's task state for a task in a group stop (`TASK_STOPPED`); `stop_signo` says by what.
pub const TASK_STOPPED: u32 = 3;

/// What the dumps of the processes of one tree share.
pub(crate) struct TreeDump<'o> {
    /// The context of the kinds and of the memory dump.
    pub cx: DumpCx<'o>,
    /// The open files of the whole tree.
    pub files: FileTable,
    /// The numbers the images give the tasks.
    pub view: crate::pid_ns::PidView,
    /// The kernel-object ids of each live process, taken as its turn comes.
    pub ids_of: BTreeMap<Pid, pb::TaskKobjIdsEntry>,
    /// The fd tables dumped so far (a shared one is dumped with its first process).
    pub fd_tables_done: BTreeSet<u32>,
    /// Every process of the tree.
    pub in_tree: Vec<i32>,
}

impl<'o> TreeDump<'o> {
    /// For the seized `tree`: the numbers the images give its tasks (see `pid_ns`: every task
    /// is looked at while it is frozen) and which processes share kernel objects (kcmp).
    pub fn new(tree: &[SeizedProc], opts: &'o crate::DumpOptions) -> Result<TreeDump<'o>> {
        let in_tree: Vec<i32> = tree.iter().map(|p| p.pid.0).collect();
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
        let ids_of = live
            .iter()
            .copied()
            .zip(tree_ids.ids.into_iter().map(|ids| pb::TaskKobjIdsEntry {
                pid_ns_id: Some(view.pid_ns_id()),
                ..ids
            }))
            .collect::<BTreeMap<_, _>>();
        Ok(TreeDump {
            cx: DumpCx::new(opts),
            files: FileTable::new(),
            view,
            ids_of,
            fd_tables_done: BTreeSet::new(),
            in_tree,
        })
    }
}

/// What [`dump_process`] found, for [`write_process`].
pub(crate) struct ProcDump {
    pid: Pid,
    vpid: Pid,
    ppid: i32,
    vpgid: u32,
    vsid: u32,
    tc: pb::TaskCoreEntry,
    dead_leader: Option<DeadLeader>,
    threads: Vec<(Pid, ThreadDump)>,
    ids: pb::TaskKobjIdsEntry,
    mm: pb::MmEntry,
    fs: pb::FsEntry,
    fdinfos: Option<Vec<pb::FdinfoEntry>>,
    /// The process's last pages, which it is writing itself: nothing else may be asked of it
    /// until they are complete.
    pub in_flight: Option<memory::PagesInFlight>,
    /// Pages written.
    pub pages: u64,
    /// Time spent on its memory.
    pub mem_time: Duration,
}

/// A zombie: only its exit status survives (CRIU's core has the state and the code).
pub(crate) fn dump_zombie(
    tree: &mut TreeDump,
    proc: &SeizedProc,
    z: &procfs::Stat,
) -> Result<pb::PstreeEntry> {
    let pid = proc.pid;
    let vpid = tree.view.vpid(pid)?;
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
    cryo_image::write_single(tree.cx.dir, ImageKind::Core, Some(vpid.0 as u64), &core)?;
    let (pgid, sid) = tree.view.group_and_session(pid, z)?;
    Ok(pb::PstreeEntry {
        pid: vpid.0 as u32,
        ppid: tree.view.vpid(Pid(z.ppid))?.0 as u32,
        pgid,
        sid,
        threads: vec![vpid.0 as u32],
    })
}

/// Everything process `proc` tells and holds but its images, which [`write_process`] writes.
pub(crate) fn dump_process(tree: &mut TreeDump, proc: &mut SeizedProc) -> Result<ProcDump> {
    let pid = proc.pid;
    let vpid = tree.view.vpid(pid)?;
    // The leader's /proc for its own (comm, process group, session, parent), `via` for
    // what a dead leader has dropped (see `SeizedProc::via`).
    let via = proc.via();
    let stat = procfs::read_stat(pid)?;
    let status = procfs::read_status(via)?;
    let (vpgid, vsid) = tree.view.group_and_session(pid, &stat)?;
    // A session whose leader is gone is re-made at restore (W33); one led by a process
    // outside the tree can only be the caller's (a shell job), or, for a tree with its own
    // pid namespace, the one the init was started in (it reads 0 inside).
    let outside_own_ns = tree.view.own_ns() && vsid == 0;
    if !outside_own_ns
        && !tree.in_tree.contains(&stat.session)
        && !tree.cx.opts.shell_job
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
    crate::dump::between_phases("injector")?;
    let sigactions = signals::dump_sigactions(inj)?;
    let mut timers = timers::dump_timers(inj)?;
    // /proc names a timer's thread as cryo's namespace numbers it.
    for t in timers.posix.iter_mut() {
        if let Some(tid) = t.notify_thread_id.as_mut() {
            *tid = tree.view.vpid(Pid(*tid))?.0;
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
    crate::dump::between_phases("remote")?;

    let ids = tree.ids_of.remove(&pid).ok_or_else(|| {
        Error::Unsupported(format!(
            "pid {pid} appeared in the tree after it was frozen"
        ))
    })?;
    // A shared fd table is dumped once, with the first process that has it.
    let fdinfos = if tree.fd_tables_done.insert(ids.files_id) {
        Some(tree.files.dump_fds(&mut tree.cx, via)?)
    } else {
        None
    };
    let fs = task_attrs::dump_fs(via, &mut tree.cx, &mut tree.files, status.umask)?;
    crate::dump::between_phases("files")?;

    let mem_t0 = Instant::now();
    let inj = proc.threads.first_mut().map(|l| l.injector()).transpose()?;
    let mut memdump = memory::dump_memory(
        via,
        vpid.0 as u64,
        &maps,
        inj,
        &mut tree.cx,
        &mut tree.files,
        brk,
    )?;
    memdump.mm.dumpable = Some(dumpable);
    memdump.mm.thp_disabled = Some(thp_disabled);
    let pages = memdump.pages;
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
    Ok(ProcDump {
        pid,
        vpid,
        ppid: stat.ppid,
        vpgid,
        vsid,
        tc,
        dead_leader,
        threads,
        ids,
        mm: memdump.mm,
        fs,
        fdinfos,
        in_flight: memdump.in_flight.take(),
        pages,
        mem_time: mem_t0.elapsed(),
    })
}

/// The images of process `proc` (`root`: the root of the tree, whose parent is outside it)
/// from what [`dump_process`] found; its pstree entry.
pub(crate) fn write_process(
    tree: &mut TreeDump,
    proc: &SeizedProc,
    d: ProcDump,
    root: bool,
) -> Result<pb::PstreeEntry> {
    let ProcDump {
        pid,
        vpid,
        ppid,
        vpgid,
        vsid,
        tc,
        dead_leader,
        threads,
        ids,
        mm,
        fs,
        fdinfos,
        ..
    } = d;
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
        cryo_image::write_single(tree.cx.dir, ImageKind::Core, Some(vpid.0 as u64), &core)?;
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
        cryo_image::write_single(
            tree.cx.dir,
            ImageKind::Core,
            Some(tree.view.vpid(tid)?.0 as u64),
            &core,
        )?;
    }
    let id = Some(vpid.0 as u64);
    cryo_image::write_single(tree.cx.dir, ImageKind::Ids, id, &ids)?;
    cryo_image::write_single(tree.cx.dir, ImageKind::Mm, id, &mm)?;
    cryo_image::write_single(tree.cx.dir, ImageKind::Fs, id, &fs)?;
    if let Some(fdinfos) = &fdinfos {
        cryo_image::write_all_entries(
            tree.cx.dir,
            ImageKind::Fdinfo,
            Some(u64::from(ids.files_id)),
            fdinfos,
        )?;
    }
    Ok(pb::PstreeEntry {
        pid: vpid.0 as u32,
        // The root's parent is outside the tree.
        ppid: if root {
            0
        } else {
            tree.view.vpid(Pid(ppid))?.0 as u32
        },
        pgid: vpgid,
        sid: vsid,
        // The leader first, dead or not.
        threads: proc
            .dead_leader
            .iter()
            .map(|_| pid)
            .chain(proc.threads.iter().map(|t| t.pid()))
            .map(|t| tree.view.vpid(t).map(|v| v.0 as u32))
            .collect::<Result<_>>()?,
    })
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
