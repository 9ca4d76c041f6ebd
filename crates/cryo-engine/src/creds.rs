//! Credentials: uids, gids, supplementary groups, capabilities (effective, permitted,
//! inheritable, bounding, ambient), securebits and no_new_privs (`ThreadCoreEntry.creds`).
//!
//! # Dump
//! /proc/PID/status, plus a remote `prctl(PR_GET_SECUREBITS)`.
//!
//! # Restore
//! The puppet starts as cryo (root, all capabilities). The order matters because each step
//! needs privileges a later one gives up: drop the bounding set, set groups and gids, set
//! securebits with NO_SETUID_FIXUP|KEEP_CAPS so the uid change leaves capabilities alone, set
//! the uids, set the target's securebits, then the capability sets, the ambient set, and
//! no_new_privs last.

use crate::error::Result;
use crate::remote::Injector;
use cryo_image::pb;
use cryo_sys::procfs::Status;

const SECBIT_NOROOT: u32 = 1 << 0;
const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
const SECBIT_KEEP_CAPS: u32 = 1 << 4;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_V3: u32 = 0x2008_0522;
const CAP_LAST: u64 = 63;

fn split(v: u64) -> Vec<u32> {
    vec![v as u32, (v >> 32) as u32]
}
fn join(v: &[u32]) -> u64 {
    u64::from(v.first().copied().unwrap_or(0)) | (u64::from(v.get(1).copied().unwrap_or(0)) << 32)
}

/// Build the creds entry from /proc status and the securebits.
pub fn dump_creds(st: &Status, secbits: u32) -> pb::CredsEntry {
    pb::CredsEntry {
        uid: st.uids[0],
        euid: st.uids[1],
        suid: st.uids[2],
        fsuid: st.uids[3],
        gid: st.gids[0],
        egid: st.gids[1],
        sgid: st.gids[2],
        fsgid: st.gids[3],
        cap_inh: split(st.cap_inh),
        cap_prm: split(st.cap_prm),
        cap_eff: split(st.cap_eff),
        cap_bnd: split(st.cap_bnd),
        cap_amb: split(st.cap_amb),
        secbits,
        groups: st.groups.clone(),
        no_new_privs: Some(st.no_new_privs),
        ..Default::default()
    }
}

/// The securebits of the task (remote prctl).
pub fn dump_securebits(inj: &Injector) -> Result<u32> {
    Ok(inj.syscall(
        "read securebits",
        libc::SYS_prctl,
        &[libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0],
    )? as u32)
}

/// Whether task `tid` (a puppet, which started with cryo's credentials) has the credentials of
/// `c` already, as /proc shows them (a root task restored by root, as a rule): then there is
/// nothing to restore.
pub fn has_creds(tid: cryo_sys::Pid, c: &pb::CredsEntry) -> Result<bool> {
    use crate::error::TaskCtx;
    let st = cryo_sys::procfs::read_status(tid)?;
    let secbits = cryo_sys::task::own_securebits().task_ctx("read securebits", tid)?;
    Ok(dump_creds(&st, secbits) == *c)
}

/// Give the puppet the credentials of `c`.
pub fn restore_creds(inj: &Injector, c: &pb::CredsEntry) -> Result<()> {
    let bnd = join(&c.cap_bnd);
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(40)
        .min(CAP_LAST);
    for cap in 0..=last_cap {
        if bnd & (1 << cap) == 0 {
            inj.syscall(
                "drop from the bounding set",
                libc::SYS_prctl,
                &[libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0],
            )?;
        }
    }
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
    let s = inj.scratch();
    let gp = s.bytes(&groups)?;
    inj.syscall(
        "set groups",
        libc::SYS_setgroups,
        &[c.groups.len() as u64, gp.0],
    )?;
    inj.syscall(
        "set gids",
        libc::SYS_setresgid,
        &[u64::from(c.gid), u64::from(c.egid), u64::from(c.sgid)],
    )?;
    inj.syscall("set fsgid", libc::SYS_setfsgid, &[u64::from(c.fsgid)])?;
    let transition = c.secbits | SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS | SECBIT_NOROOT;
    inj.syscall(
        "set securebits",
        libc::SYS_prctl,
        &[
            libc::PR_SET_SECUREBITS as u64,
            u64::from(transition),
            0,
            0,
            0,
        ],
    )?;
    inj.syscall(
        "set uids",
        libc::SYS_setresuid,
        &[u64::from(c.uid), u64::from(c.euid), u64::from(c.suid)],
    )?;
    inj.syscall("set fsuid", libc::SYS_setfsuid, &[u64::from(c.fsuid)])?;
    if c.secbits != transition {
        inj.syscall(
            "set securebits",
            libc::SYS_prctl,
            &[
                libc::PR_SET_SECUREBITS as u64,
                u64::from(c.secbits),
                0,
                0,
                0,
            ],
        )?;
    }
    // capset: header {version, pid}, then two {effective, permitted, inheritable} words.
    let (eff, prm, inh) = (join(&c.cap_eff), join(&c.cap_prm), join(&c.cap_inh));
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&CAP_V3.to_ne_bytes());
    b.extend_from_slice(&0i32.to_ne_bytes());
    for shift in [0, 32] {
        for v in [eff, prm, inh] {
            b.extend_from_slice(&((v >> shift) as u32).to_ne_bytes());
        }
    }
    let s = inj.scratch();
    let hdr = s.bytes(&b)?;
    inj.syscall("set capabilities", libc::SYS_capset, &[hdr.0, hdr.0 + 8])?;
    let amb = join(&c.cap_amb);
    for cap in 0..=last_cap {
        if amb & (1 << cap) != 0 {
            inj.syscall(
                "raise an ambient capability",
                libc::SYS_prctl,
                &[
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                    0,
                    0,
                ],
            )?;
        }
    }
    if c.no_new_privs == Some(1) {
        inj.syscall(
            "set no_new_privs",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0],
        )?;
    }
    Ok(())
}
