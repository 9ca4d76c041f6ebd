//! Task attributes: rlimits, personality, scheduling policy/priority/nice, comm, umask, cwd and
//! root (`fs-PID.img`), parent-death signal, child-subreaper bit, robust futex list, TID
//! address, rseq registration and oom_score_adj.
//!
//! # Dump
//! rlimits by remote `prlimit64(0, ...)` (prlimit on another process needs CAP_SYS_RESOURCE,
//! which root lacks here), the prctl-only values by remote prctl, the rest from /proc and from
//! syscalls that take a PID.
//!
//! # Restore
//! The same calls made by the puppet on itself; cwd and root by path.

use crate::cx::DumpCx;
use crate::error::{Error, Result, TaskCtx};
use crate::files::{reg, FileTable};
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::{ptrace, task, Pid};

/// Number of rlimits (RLIM_NLIMITS).
const RLIM_NLIMITS: u64 = 16;
/// PR_GET_TID_ADDRESS (needs CONFIG_CHECKPOINT_RESTORE).
const PR_GET_TID_ADDRESS: u64 = 40;
/// rseq(2) flag to unregister.
const RSEQ_FLAG_UNREGISTER: u64 = 1;

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes([
        b[i],
        b[i + 1],
        b[i + 2],
        b[i + 3],
        b[i + 4],
        b[i + 5],
        b[i + 6],
        b[i + 7],
    ])
}

/// Read all rlimits of the task.
pub fn dump_rlimits(inj: &Injector) -> Result<pb::TaskRlimitsEntry> {
    let mut rlimits = Vec::new();
    for res in 0..RLIM_NLIMITS {
        let s = inj.scratch();
        let p = s.zeroed(16)?;
        inj.syscall("read rlimit", libc::SYS_prlimit64, &[0, res, 0, p.addr.0])?;
        let b = s.read(p)?;
        rlimits.push(pb::RlimitEntry {
            cur: word(&b, 0),
            max: word(&b, 8),
        });
    }
    Ok(pb::TaskRlimitsEntry { rlimits })
}

/// Set the rlimits in the puppet.
pub fn restore_rlimits(inj: &Injector, r: &pb::TaskRlimitsEntry) -> Result<()> {
    for (res, l) in r.rlimits.iter().enumerate() {
        let mut b = l.cur.to_ne_bytes().to_vec();
        b.extend_from_slice(&l.max.to_ne_bytes());
        let s = inj.scratch();
        let p = s.bytes(&b)?;
        inj.syscall(
            &format!("set rlimit {res} to {}/{}", l.cur, l.max),
            libc::SYS_prlimit64,
            &[0, res as u64, p.0, 0],
        )?;
    }
    Ok(())
}

/// A value only a prctl in the task itself returns through a pointer.
fn prctl_get_ptr(inj: &Injector, what: &str, option: u64, len: usize) -> Result<u64> {
    let s = inj.scratch();
    let p = s.zeroed(8)?;
    inj.syscall(what, libc::SYS_prctl, &[option, p.addr.0, 0, 0, 0])?;
    let b = s.read(p)?;
    Ok(if len == 4 {
        u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    } else {
        word(&b, 0)
    })
}

/// Per-thread attributes cryo can only get from inside or through ptrace.
#[derive(Debug, Default, Clone)]
pub struct ThreadAttrs {
    /// Parent-death signal.
    pub pdeath_sig: u32,
    /// clear_child_tid address.
    pub clear_tid_addr: u64,
    /// Robust futex list head and length.
    pub robust: (u64, u64),
    /// rseq registration.
    pub rseq: ptrace::RseqConfiguration,
    /// Whether the process is a child subreaper.
    pub child_subreaper: bool,
}

/// Dump the per-thread attributes.
pub fn dump_thread_attrs(inj: &Injector) -> Result<ThreadAttrs> {
    let pid = inj.pid();
    Ok(ThreadAttrs {
        pdeath_sig: prctl_get_ptr(inj, "read pdeath signal", libc::PR_GET_PDEATHSIG as u64, 4)?
            as u32,
        clear_tid_addr: prctl_get_ptr(inj, "read tid address", PR_GET_TID_ADDRESS, 8)?,
        robust: task::get_robust_list(pid).task_ctx("read robust futex list", pid)?,
        rseq: ptrace::get_rseq_configuration(pid).task_ctx("read rseq configuration", pid)?,
        child_subreaper: prctl_get_ptr(
            inj,
            "read child subreaper",
            libc::PR_GET_CHILD_SUBREAPER as u64,
            4,
        )? != 0,
    })
}

/// Drop the rseq registration the puppet inherited from cryo (before its memory goes).
pub fn unregister_inherited_rseq(inj: &Injector) -> Result<()> {
    let pid = inj.pid();
    let conf = ptrace::get_rseq_configuration(pid).task_ctx("read rseq configuration", pid)?;
    if conf.rseq_abi_pointer != 0 {
        inj.syscall(
            "unregister inherited rseq",
            libc::SYS_rseq,
            &[
                conf.rseq_abi_pointer,
                u64::from(conf.rseq_abi_size),
                RSEQ_FLAG_UNREGISTER,
                u64::from(conf.signature),
            ],
        )?;
    }
    Ok(())
}

/// Restore the per-thread attributes of `tc` (and `clear_tid_addr`) in the puppet.
///
/// Only what differs from what the task has is set: a thread cloned for the restore has its TID
/// address from the clone (`tid_address_set`) and its scheduling and name from the leader,
/// restored before it; a syscall less is a ptrace round trip less per thread.
pub fn restore_thread_attrs(
    inj: &Injector,
    tc: &pb::ThreadCoreEntry,
    clear_tid_addr: u64,
    tid_address_set: bool,
) -> Result<()> {
    let tid = inj.pid();
    if tc.futex_rla != 0 {
        inj.syscall(
            "set robust futex list",
            libc::SYS_set_robust_list,
            &[tc.futex_rla, u64::from(tc.futex_rla_len)],
        )?;
    }
    if !tid_address_set {
        inj.syscall(
            "set tid address",
            libc::SYS_set_tid_address,
            &[clear_tid_addr],
        )?;
    }
    let (cur_policy, cur_prio) = task::get_sched(tid).task_ctx("read scheduling policy", tid)?;
    let cur_nice = task::get_nice(tid).task_ctx("read nice", tid)?;
    if let Some(policy) = tc
        .sched_policy
        .filter(|&p| (p, tc.sched_prio.unwrap_or(0)) != (cur_policy, cur_prio))
    {
        let prio = tc.sched_prio.unwrap_or(0);
        let s = inj.scratch();
        let p = s.bytes(&prio.to_ne_bytes())?;
        inj.syscall(
            "set scheduling policy",
            libc::SYS_sched_setscheduler,
            &[0, u64::from(policy), p.0],
        )?;
    }
    if let Some(nice) = tc.sched_nice.filter(|&n| n != cur_nice) {
        inj.syscall(
            "set nice",
            libc::SYS_setpriority,
            &[libc::PRIO_PROCESS as u64, 0, nice as i64 as u64],
        )?;
    }
    let cur_comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
    if let Some(comm) = tc
        .comm
        .as_ref()
        .filter(|c| c.as_str() != cur_comm.trim_end_matches('\n'))
    {
        let s = inj.scratch();
        let p = s.cstr(comm)?;
        inj.syscall(
            "set comm",
            libc::SYS_prctl,
            &[libc::PR_SET_NAME as u64, p.0, 0, 0, 0],
        )?;
    }
    if let Some(r) = &tc.rseq_entry {
        if r.rseq_abi_pointer != 0 {
            inj.syscall(
                "register rseq",
                libc::SYS_rseq,
                &[
                    r.rseq_abi_pointer,
                    u64::from(r.rseq_abi_size),
                    0,
                    u64::from(r.signature),
                ],
            )?;
        }
    }
    Ok(())
}

/// Scheduling attributes of `pid`, from outside.
pub fn dump_sched(pid: Pid) -> Result<(u32, u32, i32)> {
    let (policy, prio) = task::get_sched(pid).task_ctx("read scheduling policy", pid)?;
    let nice = task::get_nice(pid).task_ctx("read nice", pid)?;
    Ok((policy, prio, nice))
}

/// The personality of `pid`.
pub fn dump_personality(pid: Pid) -> Result<u32> {
    let path = format!("/proc/{pid}/personality");
    let s = std::fs::read_to_string(&path).map_err(|source| Error::Path {
        what: "read".into(),
        path: path.clone(),
        source,
    })?;
    u32::from_str_radix(s.trim(), 16).map_err(|_| Error::BadImage {
        image: path,
        what: format!("bad personality {s:?}"),
    })
}

/// Set personality, umask and the process-wide prctl bits in the puppet.
pub fn restore_process_attrs(inj: &Injector, tc: &pb::TaskCoreEntry, umask: u32) -> Result<()> {
    inj.syscall(
        "set personality",
        libc::SYS_personality,
        &[u64::from(tc.personality)],
    )?;
    inj.syscall("set umask", libc::SYS_umask, &[u64::from(umask)])?;
    // Always set: restore may have made the puppet a subreaper for a while (to adopt the
    // members of a session whose leader is gone).
    inj.syscall(
        "set child subreaper",
        libc::SYS_prctl,
        &[
            libc::PR_SET_CHILD_SUBREAPER as u64,
            u64::from(tc.child_subreaper == Some(true)),
            0,
            0,
            0,
        ],
    )?;
    Ok(())
}

/// Set the parent-death signal, after the credentials: a credential change clears it.
pub fn restore_pdeath_sig(inj: &Injector, tc: &pb::ThreadCoreEntry) -> Result<()> {
    if let Some(sig) = tc.pdeath_sig.filter(|&s| s != 0) {
        inj.syscall(
            "set pdeath signal",
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as u64, u64::from(sig), 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Dump cwd and root as directory entries in `files`.
pub fn dump_fs(
    pid: Pid,
    cx: &mut DumpCx,
    files: &mut FileTable,
    umask: u32,
) -> Result<pb::FsEntry> {
    let mut id_of = |which: &str| -> Result<u32> {
        let link_path = format!("/proc/{pid}/{which}");
        let target = std::fs::read_link(&link_path).map_err(|source| Error::Path {
            what: "read link".into(),
            path: link_path.clone(),
            source,
        })?;
        reg::add_path(
            files,
            cx,
            pid,
            &link_path,
            &target.to_string_lossy(),
            (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
            0,
        )
    };
    Ok(pb::FsEntry {
        cwd_id: id_of("cwd")?,
        root_id: id_of("root")?,
        umask: Some(umask),
    })
}

/// chdir/chroot the puppet.
pub fn restore_fs(inj: &Injector, fs: &pb::FsEntry, files: &FileTable) -> Result<()> {
    let root = reg::open_path(files, fs.root_id)?;
    if root != "/" {
        let s = inj.scratch();
        let p = s.cstr(&root)?;
        inj.syscall(&format!("chroot to {root}"), libc::SYS_chroot, &[p.0])?;
    }
    let cwd = reg::open_path(files, fs.cwd_id)?;
    let s = inj.scratch();
    let p = s.cstr(&cwd)?;
    inj.syscall(&format!("chdir to {cwd}"), libc::SYS_chdir, &[p.0])?;
    Ok(())
}
