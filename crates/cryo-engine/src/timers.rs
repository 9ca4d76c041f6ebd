//! Timers: the three interval timers and the POSIX timers of a process
//! (`TaskCoreEntry.timers`).
//!
//! # Dump
//! Remote `getitimer` and `timer_gettime`/`timer_getoverrun` (only the task can ask); which
//! POSIX timers exist, and how they notify, comes from /proc/PID/timers.
//!
//! # Restore
//! `setitimer` with the remaining time; POSIX timers are re-created with their own IDs
//! (PR_TIMER_CREATE_RESTORE_IDS) and armed with the remaining time and interval.

use crate::error::{Error, Result};
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::procfs;

/// prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.16, include/uapi/linux/prctl.h).
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// Dump the itimers and POSIX timers of the task behind `inj`.
pub fn dump_timers(inj: &Injector) -> Result<pb::TaskTimersEntry> {
    let mut it = Vec::new();
    for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
        let s = inj.scratch();
        let p = s.zeroed(32)?;
        inj.syscall(
            "read itimer",
            libc::SYS_getitimer,
            &[which as u64, p.addr.0],
        )?;
        let w = words(&s.read(p)?);
        // itimerval: interval {sec, usec}, value {sec, usec}
        it.push(pb::ItimerEntry {
            isec: w[0],
            iusec: w[1],
            vsec: w[2],
            vusec: w[3],
        });
    }
    let mut posix = Vec::new();
    for t in procfs::read_timers(inj.pid())? {
        let s = inj.scratch();
        let p = s.zeroed(32)?;
        inj.syscall(
            &format!("read posix timer {}", t.id),
            libc::SYS_timer_gettime,
            &[t.id as u64, p.addr.0],
        )?;
        let w = words(&s.read(p)?);
        let overrun = inj.syscall(
            "read timer overrun",
            libc::SYS_timer_getoverrun,
            &[t.id as u64],
        )?;
        let notify = match t.notify.as_str() {
            "signal" => libc::SIGEV_SIGNAL,
            "none" => libc::SIGEV_NONE,
            "thread" => libc::SIGEV_THREAD,
            other => {
                return Err(Error::Unsupported(format!(
                    "posix timer notification {other:?}"
                )))
            }
        } | if t.notify_thread_id {
            libc::SIGEV_THREAD_ID
        } else {
            0
        };
        posix.push(pb::PosixTimerEntry {
            it_id: t.id as u32,
            clock_id: t.clock_id as u32,
            si_signo: t.signo as u32,
            it_sigev_notify: notify as u32,
            sival_ptr: t.sigval,
            overrun: overrun as u32,
            isec: w[0],
            insec: w[1],
            vsec: w[2],
            vnsec: w[3],
            notify_thread_id: t.notify_thread_id.then_some(t.notify_tid),
        });
    }
    let mut it = it.into_iter();
    let z = || pb::ItimerEntry {
        isec: 0,
        iusec: 0,
        vsec: 0,
        vusec: 0,
    };
    Ok(pb::TaskTimersEntry {
        real: it.next().unwrap_or_else(z),
        virt: it.next().unwrap_or_else(z),
        prof: it.next().unwrap_or_else(z),
        posix,
    })
}

/// Re-arm the timers in the puppet.
pub fn restore_timers(inj: &Injector, t: &pb::TaskTimersEntry) -> Result<()> {
    for (which, e) in [
        (libc::ITIMER_REAL, &t.real),
        (libc::ITIMER_VIRTUAL, &t.virt),
        (libc::ITIMER_PROF, &t.prof),
    ] {
        if e.vsec == 0 && e.vusec == 0 {
            continue;
        }
        let b: Vec<u8> = [e.isec, e.iusec, e.vsec, e.vusec]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let s = inj.scratch();
        let p = s.bytes(&b)?;
        inj.syscall("set itimer", libc::SYS_setitimer, &[which as u64, p.0, 0])?;
    }
    if t.posix.is_empty() {
        return Ok(());
    }
    inj.syscall(
        "ask for timer IDs on create",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
    )?;
    for pt in &t.posix {
        // struct sigevent: value (8), signo (4), notify (4), tid (4), padding to 64 bytes.
        let mut ev = Vec::with_capacity(64);
        ev.extend_from_slice(&pt.sival_ptr.to_ne_bytes());
        ev.extend_from_slice(&pt.si_signo.to_ne_bytes());
        ev.extend_from_slice(&pt.it_sigev_notify.to_ne_bytes());
        ev.extend_from_slice(&(pt.notify_thread_id.unwrap_or(0) as u32).to_ne_bytes());
        ev.resize(64, 0);
        let s = inj.scratch();
        let evp = s.bytes(&ev)?;
        let idp = s.slot(&pt.it_id.to_ne_bytes())?;
        inj.syscall(
            &format!("create posix timer {}", pt.it_id),
            libc::SYS_timer_create,
            &[u64::from(pt.clock_id), evp.0, idp.addr.0],
        )?;
        let got = s.read(idp)?;
        let got = u32::from_ne_bytes([got[0], got[1], got[2], got[3]]);
        if got != pt.it_id {
            return Err(Error::Unsupported(format!(
                "posix timer {} re-created as {got}",
                pt.it_id
            )));
        }
        if pt.vsec != 0 || pt.vnsec != 0 {
            let b: Vec<u8> = [pt.isec, pt.insec, pt.vsec, pt.vnsec]
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect();
            let p = s.bytes(&b)?;
            inj.syscall(
                "arm posix timer",
                libc::SYS_timer_settime,
                &[u64::from(pt.it_id), 0, p.0, 0],
            )?;
        }
    }
    inj.syscall(
        "stop asking for timer IDs",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
    )?;
    Ok(())
}
