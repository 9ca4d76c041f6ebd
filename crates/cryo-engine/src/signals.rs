//! Signals: the 64 sigactions (`TaskCoreEntry.sigactions`), the blocked mask, the queued
//! signals of the thread and of the process with their siginfo (`signals_p`/`signals_s`), and
//! the alternate signal stack (`ThreadCoreEntry.sas`).
//!
//! # Dump
//! sigactions and sigaltstack by remote `rt_sigaction`/`sigaltstack` (only the task can ask);
//! the mask and the queues by ptrace (`PTRACE_GETSIGMASK`, `PTRACE_PEEKSIGINFO`), which leaves
//! the queues as they were.
//!
//! # Restore
//! Every handler is installed (default for those the task did not set, since the puppet
//! inherited cryo's), the alternate stack set, and queued signals re-queued to the puppet itself
//! with `rt_tgsigqueueinfo`/`rt_sigqueueinfo` while everything is blocked; the mask is set last
//! with ptrace.

use crate::error::{Result, TaskCtx};
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::{ptrace, Pid};

/// Dump the sigactions of signals 1..=64 (SIGKILL and SIGSTOP get default entries).
pub fn dump_sigactions(inj: &Injector) -> Result<Vec<pb::SaEntry>> {
    let mut out = Vec::with_capacity(64);
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            out.push(pb::SaEntry {
                sigaction: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
                compat_sigaction: None,
                mask_extended: None,
            });
            continue;
        }
        let s = inj.scratch();
        let old = s.zeroed(32)?;
        inj.syscall(
            "read sigaction",
            libc::SYS_rt_sigaction,
            &[sig, 0, old.addr.0, 8],
        )?;
        let b = s.read(old)?;
        let w = |i: usize| {
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
        };
        out.push(pb::SaEntry {
            sigaction: w(0),
            flags: w(8),
            restorer: w(16),
            mask: w(24),
            compat_sigaction: None,
            mask_extended: None,
        });
    }
    Ok(out)
}

/// Install `sas` (index = signal - 1) in the puppet.
pub fn restore_sigactions(inj: &Injector, sas: &[pb::SaEntry]) -> Result<()> {
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        let (h, f, r, m) = match sas.get(sig as usize - 1) {
            Some(sa) => (sa.sigaction, sa.flags, sa.restorer, sa.mask),
            None => (0, 0, 0, 0),
        };
        let mut b = Vec::with_capacity(32);
        for v in [h, f, r, m] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let s = inj.scratch();
        let act = s.bytes(&b)?;
        inj.syscall(
            &format!("set sigaction of signal {sig}"),
            libc::SYS_rt_sigaction,
            &[sig, act.0, 0, 8],
        )?;
    }
    Ok(())
}

/// The alternate signal stack of the task.
pub fn dump_sigaltstack(inj: &Injector) -> Result<pb::ThreadSasEntry> {
    let s = inj.scratch();
    let old = s.zeroed(24)?;
    inj.syscall("read sigaltstack", libc::SYS_sigaltstack, &[0, old.addr.0])?;
    let b = s.read(old)?;
    let sp = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let flags = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
    let size = u64::from_ne_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
    Ok(pb::ThreadSasEntry {
        ss_sp: sp,
        ss_size: size,
        ss_flags: flags,
    })
}

/// Set the alternate signal stack (SS_ONSTACK is a state, not a flag one can set). A disabled
/// one is disabled explicitly: the puppet inherited cryo's, which points into memory that is
/// gone.
pub fn restore_sigaltstack(inj: &Injector, sas: &pb::ThreadSasEntry) -> Result<()> {
    let flags = sas.ss_flags & !(libc::SS_ONSTACK as u32);
    let disabled = flags & libc::SS_DISABLE as u32 != 0;
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&(if disabled { 0 } else { sas.ss_sp }).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&(if disabled { 0 } else { sas.ss_size }).to_ne_bytes());
    let s = inj.scratch();
    let p = s.bytes(&b)?;
    inj.syscall("set sigaltstack", libc::SYS_sigaltstack, &[p.0, 0])?;
    Ok(())
}

/// The queued signals of the thread (`shared = false`) or process.
pub fn dump_pending(pid: Pid, shared: bool) -> Result<pb::SignalQueueEntry> {
    let flags = if shared {
        ptrace::PTRACE_PEEKSIGINFO_SHARED
    } else {
        0
    };
    let q = ptrace::peek_siginfo(pid, flags).task_ctx("peek queued signals", pid)?;
    Ok(pb::SignalQueueEntry {
        signals: q
            .iter()
            .map(|si| pb::SiginfoEntry {
                siginfo: si.to_vec(),
            })
            .collect(),
    })
}

/// Queue `q` again for thread `tid` (or, `shared`, for the process) of the puppet whose leader
/// is behind `inj` (all signals must be blocked in it). `pid` and `tid` are the numbers the
/// puppet sees (its own pid namespace's).
pub fn restore_pending(
    inj: &Injector,
    pid: Pid,
    tid: Pid,
    q: &pb::SignalQueueEntry,
    shared: bool,
) -> Result<()> {
    for si in &q.signals {
        let mut info = si.siginfo.clone();
        info.resize(128, 0);
        let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as u64;
        let s = inj.scratch();
        let p = s.bytes(&info)?;
        if shared {
            inj.syscall(
                &format!("queue signal {signo}"),
                libc::SYS_rt_sigqueueinfo,
                &[pid.0 as u64, signo, p.0],
            )?;
        } else {
            inj.syscall(
                &format!("queue signal {signo}"),
                libc::SYS_rt_tgsigqueueinfo,
                &[pid.0 as u64, tid.0 as u64, signo, p.0],
            )?;
        }
    }
    Ok(())
}
