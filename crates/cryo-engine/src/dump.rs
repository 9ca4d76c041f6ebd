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

use crate::control::{Release, Seized};
use crate::error::{Error, Result};
use crate::files::{self, reg::RegFiles};
use crate::{cpu, creds, memory, signals, task_attrs, timers, DumpOptions};
use cryo_image::{pb, ImageKind};
use cryo_sys::{procfs, Pid};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, info_span};

/// CRIU's task state for a live task (`TASK_ALIVE`).
pub const TASK_ALIVE: u32 = 1;
/// Image version CRIU writes (`CRTOOLS_IMAGES_V1_1`).
const IMG_VERSION: u32 = 2;

/// The phases a test build can stop at, in order.
pub const PHASES: [&str; 6] = ["seized", "injector", "remote", "files", "memory", "images"];

/// Test builds only (feature `fault-injection`): `CRYO_FAULT_INJECT=<phase>` fails the dump
/// there; `CRYO_FAULT_PAUSE=<phase>` waits 2 s there (so a test can signal cryo mid-dump).
fn fault_point(phase: &str) -> Result<()> {
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
    threads: Vec<Seized>,
    /// A zombie: dead, waiting for its parent; nothing to seize, only its exit status to keep.
    zombie: Option<procfs::Stat>,
}

/// CRIU's task state for a zombie (`TASK_DEAD`).
pub const TASK_DEAD: u32 = 2;
/// CRIU's task state for a task in a group stop (`TASK_STOPPED`); `stop_signo` says by what.
pub const TASK_STOPPED: u32 = 3;

/// Checkpoint the tree rooted at `opts.pid` into `opts.images_dir`.
pub fn dump(opts: &DumpOptions) -> Result<()> {
    let pid = Pid(opts.pid);
    let _span = info_span!("dump", pid = pid.0).entered();
    if opts.pid <= 0 || !cryo_sys::task::exists(pid) || !Path::new(&format!("/proc/{pid}")).exists()
    {
        return Err(Error::Task {
            what: "find".into(),
            pid,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
    }
    let status = procfs::read_status(pid)?;
    if procfs::read_stat(pid)?.state == 'Z' {
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
    let _pin = crate::control::CpuPin::to(last_cpu);
    let t0 = Instant::now();
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
    let mut tree = Vec::new();
    // From here on every seized task is released untouched if anything returns early.
    if let Err(e) = seize_tree(pid, timeout, &mut tree) {
        release_tree(tree, Release::Run)?;
        return Err(e);
    }
    let frozen_at = Instant::now();
    info!(
        "{} tasks stopped in {:?}",
        tree.iter().map(|p| p.threads.len()).sum::<usize>(),
        frozen_at - t0
    );
    let (written, pages) = match dump_tree(&mut tree, opts) {
        Ok(x) => x,
        Err(e) => {
            release_tree(tree, Release::Run)?;
            return Err(e);
        }
    };
    let how = if opts.leave_running {
        Release::Run
    } else if opts.leave_stopped {
        Release::Stop
    } else {
        Release::Kill
    };
    let frozen = frozen_at.elapsed();
    release_tree(tree, how)?;
    write_stats(&opts.images_dir, frozen_at - t0, frozen, written, pages)?;
    info!("dump finished: {pages} pages, frozen for {frozen:?}");
    Ok(())
}

/// Seize `root` and every thread and descendant of it, parents before children.
fn seize_tree(root: Pid, timeout: Duration, tree: &mut Vec<SeizedProc>) -> Result<()> {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let stat = procfs::read_stat(pid)?;
        if stat.state == 'Z' {
            tree.push(SeizedProc {
                pid,
                threads: Vec::new(),
                zombie: Some(stat),
            });
            continue;
        }
        let mut proc = SeizedProc {
            pid,
            threads: Vec::new(),
            zombie: None,
        };
        // Threads may be created while we seize: read the list until it stops changing.
        let result = (|| -> Result<()> {
            loop {
                let tids = procfs::read_threads(pid)?;
                let new: Vec<Pid> = tids
                    .into_iter()
                    .filter(|t| !proc.threads.iter().any(|s| s.pid() == *t))
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                // The leader first, so its VMA snapshot precedes any scratch mapping.
                let mut new = new;
                new.sort_by_key(|t| (*t != pid, t.0));
                for tid in new {
                    let t = match proc.threads.first() {
                        Some(l) if l.pid() == pid => Seized::seize_thread(tid, timeout, &l.maps)?,
                        _ => Seized::seize(tid, timeout)?,
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
                queue.push(Pid(c));
            }
        }
    }
    Ok(())
}

/// Let every task go as `how` says. A kill takes children before parents and, in a process,
/// the other threads before the leader (whose death is reported last).
fn release_tree(tree: Vec<SeizedProc>, how: Release) -> Result<()> {
    let mut first_err = None;
    for proc in tree.into_iter().rev() {
        let mut threads = proc.threads;
        let leader = if threads.first().map(|t| t.pid()) == Some(proc.pid) {
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

/// Everything done while the tree is stopped. Returns (memory dump time, pages written).
fn dump_tree(tree: &mut [SeizedProc], opts: &DumpOptions) -> Result<(Duration, u64)> {
    let dir = opts.images_dir.as_path();
    between_phases("seized")?;
    let in_tree: Vec<i32> = tree.iter().map(|p| p.pid.0).collect();
    let mut files = RegFiles::new();
    let mut pages_id = 1u32;
    let mut shmem = memory::ShmemDump::default();
    let mut pstree = Vec::new();
    let mut mem_time = Duration::ZERO;
    let mut total_pages = 0;
    let mut root_ids = None;
    let live: Vec<Pid> = tree
        .iter()
        .filter(|p| p.zombie.is_none())
        .map(|p| p.pid)
        .collect();
    let tree_ids = crate::kobj_ids::assign_ids(&live)?;
    info!(
        "shared kernel objects: {} kcmp calls for {} processes",
        tree_ids.kcmp_calls,
        live.len()
    );
    // Restore cannot share an address space between processes yet: refuse before anything
    // is written (a vfork child that has not exec'd yet, clone(CLONE_VM) without a thread).
    for (i, a) in tree_ids.ids.iter().enumerate() {
        if let Some(j) = tree_ids.ids[..i].iter().position(|b| b.vm_id == a.vm_id) {
            return Err(Error::Unsupported(format!(
                "pid {} sharing its address space with pid {} (CLONE_VM without CLONE_THREAD)",
                live[i], live[j]
            )));
        }
    }
    let mut ids_of = live
        .iter()
        .copied()
        .zip(tree_ids.ids)
        .collect::<BTreeMap<_, _>>();
    let mut fd_tables_done = BTreeSet::new();
    for (n, proc) in tree.iter_mut().enumerate() {
        let pid = proc.pid;
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
            cryo_image::write_single(dir, ImageKind::Core, Some(pid.0 as u64), &core)?;
            pstree.push(pb::PstreeEntry {
                pid: pid.0 as u32,
                ppid: z.ppid as u32,
                pgid: z.pgrp as u32,
                sid: z.session as u32,
                threads: vec![pid.0 as u32],
            });
            continue;
        }
        let stat = procfs::read_stat(pid)?;
        let status = procfs::read_status(pid)?;
        if !in_tree.contains(&stat.session) && !opts.shell_job && !session_is_ours(stat.session) {
            return Err(Error::Unsupported(format!(
                "pid {pid} is in session {} whose leader is outside the dump: use --shell-job",
                stat.session
            )));
        }
        let personality = task_attrs::dump_personality(pid)?;
        let comm = procfs::read_text(&format!("/proc/{pid}/comm"))?
            .trim_end_matches('\n')
            .to_string();
        let oom_score_adj = procfs::read_text(&format!("/proc/{pid}/oom_score_adj"))?
            .trim()
            .parse::<i32>()
            .ok();
        let shared_pending = signals::dump_pending(pid, true)?;
        let leader = proc
            .threads
            .first_mut()
            .ok_or_else(|| Error::Unsupported(format!("a process without threads (pid {pid})")))?;
        let maps = leader.maps.clone();
        let leader_sigmask = leader.sigmask;
        let stop_signo = leader.stop_signo;
        let inj = leader.injector()?;
        between_phases("injector")?;
        let sigactions = signals::dump_sigactions(inj)?;
        let timers = timers::dump_timers(inj)?;
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
        let scratch = inj.scratch();
        let mut threads = Vec::new();
        for t in proc.threads.iter_mut() {
            if t.pid() != pid {
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
            Some(files::dump_fds(pid, &mut files, opts.shell_job)?)
        } else {
            None
        };
        let fs = task_attrs::dump_fs(pid, &mut files, status.umask)?;
        between_phases("files")?;

        let mem_t0 = Instant::now();
        let inj = proc.threads.first_mut().map(|l| l.injector()).transpose()?;
        let mut memdump = memory::dump_memory(
            pid,
            &maps,
            inj,
            dir,
            &mut files,
            brk,
            &mut pages_id,
            &mut shmem,
        )?;
        memdump.mm.dumpable = Some(dumpable);
        memdump.mm.thp_disabled = Some(thp_disabled);
        mem_time += mem_t0.elapsed();
        total_pages += memdump.pages;
        between_phases("memory")?;

        let tc = pb::TaskCoreEntry {
            task_state: if stop_signo.is_some() {
                TASK_STOPPED
            } else {
                TASK_ALIVE
            },
            stop_signo: stop_signo.map(|s| s as u32),
            exit_code: 0,
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
            cryo_image::write_single(dir, ImageKind::Core, Some(tid.0 as u64), &core)?;
        }
        let id = Some(pid.0 as u64);
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
            pid: pid.0 as u32,
            // The root's parent is outside the tree.
            ppid: if n == 0 { 0 } else { stat.ppid as u32 },
            pgid: stat.pgrp as u32,
            sid: stat.session as u32,
            threads: proc.threads.iter().map(|t| t.pid().0 as u32).collect(),
        });
        if n == 0 {
            root_ids = Some(ids);
        }
    }
    shmem.finish(dir)?;
    files.write_images(dir)?;
    cryo_image::write_all_entries(dir, ImageKind::Pstree, None, &pstree)?;
    cryo_image::write_single(
        dir,
        ImageKind::Inventory,
        None,
        &pb::InventoryEntry {
            img_version: IMG_VERSION,
            fdinfo_per_id: Some(true),
            root_ids,
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: Some(uptime_ticks()),
            ..Default::default()
        },
    )?;
    between_phases("images")?;
    Ok((mem_time, total_pages))
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
    pages: u64,
) -> Result<()> {
    let stats = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: freezing.as_micros() as u32,
            frozen_time: frozen.as_micros() as u32,
            memdump_time: memdump.as_micros() as u32,
            memwrite_time: memdump.as_micros() as u32,
            pages_scanned: pages,
            pages_skipped_parent: 0,
            pages_written: pages,
            pages_lazy: 0,
            ..Default::default()
        }),
        restore: None,
    };
    cryo_image::write_single(dir, ImageKind::StatsDump, None, &stats)?;
    Ok(())
}
