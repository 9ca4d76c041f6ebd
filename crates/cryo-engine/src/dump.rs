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
    if status.threads != 1 {
        return Err(Error::Unsupported(format!(
            "a process with {} threads (pid {pid})",
            status.threads
        )));
    }
    if has_children(pid)? {
        return Err(Error::Unsupported(format!(
            "a process with children (pid {pid}): process trees come later"
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
    let mut seized = Seized::seize(pid, opts.timeout.unwrap_or(Duration::from_secs(10)))?;
    let frozen_at = Instant::now();
    info!("task stopped in {:?}", frozen_at - t0);
    // From here on, `seized` releases the task untouched if anything returns early.
    let result = dump_seized(&mut seized, opts);
    let (written, pages) = match result {
        Ok(x) => x,
        Err(e) => {
            seized.release(Release::Run)?;
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
    seized.release(how)?;
    write_stats(&opts.images_dir, frozen_at - t0, frozen, written, pages)?;
    info!("dump finished: {pages} pages, frozen for {frozen:?}");
    Ok(())
}

fn has_children(pid: Pid) -> Result<bool> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = procfs::read_text(&path)?;
    Ok(!text.trim().is_empty())
}

/// Everything done while the task is stopped. Returns (memory dump time, pages written).
fn dump_seized(seized: &mut Seized, opts: &DumpOptions) -> Result<(Duration, u64)> {
    let pid = seized.pid();
    let dir = opts.images_dir.as_path();
    between_phases("seized")?;
    let stat = procfs::read_stat(pid)?;
    let status = procfs::read_status(pid)?;
    if stat.session != pid.0 && !opts.shell_job && !session_is_ours(stat.session) {
        return Err(Error::Unsupported(format!(
            "pid {pid} is in session {} whose leader is outside the dump: use --shell-job",
            stat.session
        )));
    }
    let (policy, prio, nice) = task_attrs::dump_sched(pid)?;
    let personality = task_attrs::dump_personality(pid)?;
    let comm = procfs::read_text(&format!("/proc/{pid}/comm"))?
        .trim_end_matches('\n')
        .to_string();
    let oom_score_adj = procfs::read_text(&format!("/proc/{pid}/oom_score_adj"))?
        .trim()
        .parse::<i32>()
        .ok();
    let thread_pending = signals::dump_pending(pid, false)?;
    let shared_pending = signals::dump_pending(pid, true)?;

    let inj = seized.injector()?;
    between_phases("injector")?;
    let sigactions = signals::dump_sigactions(inj)?;
    let sas = signals::dump_sigaltstack(inj)?;
    let timers = timers::dump_timers(inj)?;
    let rlimits = task_attrs::dump_rlimits(inj)?;
    let secbits = creds::dump_securebits(inj)?;
    let attrs = task_attrs::dump_thread_attrs(inj)?;
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
    between_phases("remote")?;

    let mut files = RegFiles::new();
    let fdinfos = files::dump_fds(pid, &mut files, opts.shell_job)?;
    let fs = task_attrs::dump_fs(pid, &mut files, status.umask)?;
    between_phases("files")?;

    let mem_t0 = Instant::now();
    let mut pages_id = 1u32;
    let maps = seized.maps.clone();
    let inj = seized.injector()?;
    let mut memdump =
        memory::dump_memory(pid, &maps, Some(inj), dir, &mut files, brk, &mut pages_id)?;
    memdump.mm.dumpable = Some(dumpable);
    memdump.mm.thp_disabled = Some(thp_disabled);
    let mem_time = mem_t0.elapsed();
    between_phases("memory")?;

    // ids: one of each kind per task for now (no sharing between tasks yet).
    let ids = pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 1,
        fs_id: 1,
        sighand_id: 1,
        ..Default::default()
    };
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: attrs.clear_tid_addr,
            gpregs: cpu::regs_to_entry(&seized.regs),
            fpregs: cpu::xstate_to_entry(&seized.xstate),
            tls: Vec::new(),
        }),
        tc: Some(pb::TaskCoreEntry {
            task_state: TASK_ALIVE,
            exit_code: 0,
            personality,
            flags: 0,
            blk_sigset: seized.sigmask,
            comm: comm.clone(),
            timers: Some(timers),
            rlimits: Some(rlimits),
            signals_s: Some(shared_pending),
            oom_score_adj,
            sigactions,
            child_subreaper: Some(attrs.child_subreaper),
            ..Default::default()
        }),
        ids: Some(ids),
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: attrs.robust.0,
            futex_rla_len: attrs.robust.1 as u32,
            sched_nice: Some(nice),
            sched_policy: Some(policy),
            sched_prio: Some(prio),
            blk_sigset: Some(seized.sigmask),
            sas: Some(sas),
            pdeath_sig: Some(attrs.pdeath_sig),
            signals_p: Some(thread_pending),
            creds: Some(creds::dump_creds(&status, secbits)),
            comm: Some(comm),
            rseq_entry: (attrs.rseq.rseq_abi_pointer != 0).then_some(pb::RseqEntry {
                rseq_abi_pointer: attrs.rseq.rseq_abi_pointer,
                rseq_abi_size: attrs.rseq.rseq_abi_size,
                signature: attrs.rseq.signature,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = Some(pid.0 as u64);
    cryo_image::write_single(dir, ImageKind::Core, id, &core)?;
    cryo_image::write_single(dir, ImageKind::Ids, id, &ids)?;
    cryo_image::write_single(dir, ImageKind::Mm, id, &memdump.mm)?;
    cryo_image::write_single(dir, ImageKind::Fs, id, &fs)?;
    cryo_image::write_all_entries(
        dir,
        ImageKind::Fdinfo,
        Some(u64::from(ids.files_id)),
        &fdinfos,
    )?;
    files.write_images(dir)?;
    cryo_image::write_single(
        dir,
        ImageKind::Pstree,
        None,
        &pb::PstreeEntry {
            pid: pid.0 as u32,
            ppid: stat.ppid as u32,
            pgid: stat.pgrp as u32,
            sid: stat.session as u32,
            threads: vec![pid.0 as u32],
        },
    )?;
    cryo_image::write_single(
        dir,
        ImageKind::Inventory,
        None,
        &pb::InventoryEntry {
            img_version: IMG_VERSION,
            fdinfo_per_id: Some(true),
            root_ids: Some(ids),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: Some(uptime_ticks()),
            ..Default::default()
        },
    )?;
    between_phases("images")?;
    Ok((mem_time, memdump.pages))
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
