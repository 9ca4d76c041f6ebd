//! CPU state: general registers (fs/gs base included) and the XSAVE area, in CRIU's
//! `thread_info_x86` (`user_x86_regs_entry`, `user_x86_fpregs_entry` with its `xsave` part).
//!
//! # Dump
//! `NT_PRSTATUS` and `NT_X86_XSTATE` from ptrace (read when the task is seized). The XSAVE area
//! is split into CRIU's fields: the legacy FXSAVE region, `xstate_bv`, and the AVX, MPX,
//! AVX-512 and PKRU components at the offsets CPUID gives.
//!
//! # Restore
//! The puppet's own XSAVE area is the template (right size, valid header); the dumped fields are
//! laid over it and the result set with `NT_X86_XSTATE`, together with `NT_PRSTATUS`, at the
//! puppet's last syscall stop.

use cryo_image::pb;
use cryo_sys::cpu::xsave_component;
use cryo_sys::ptrace::Regs;

const XSTATE_BV_OFF: usize = 512;

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}
fn get_u16(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 2)
        .map(|s| u32::from(u16::from_ne_bytes([s[0], s[1]])))
        .unwrap_or(0)
}
fn get_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
        .unwrap_or(0)
}
fn put(b: &mut [u8], off: usize, data: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + data.len()) {
        dst.copy_from_slice(data);
    }
}

/// ptrace registers to CRIU's entry.
pub fn regs_to_entry(r: &Regs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

/// CRIU's entry to ptrace registers.
pub fn entry_to_regs(e: &pb::UserX86RegsEntry) -> Regs {
    Regs {
        r15: e.r15,
        r14: e.r14,
        r13: e.r13,
        r12: e.r12,
        rbp: e.bp,
        rbx: e.bx,
        r11: e.r11,
        r10: e.r10,
        r9: e.r9,
        r8: e.r8,
        rax: e.ax,
        rcx: e.cx,
        rdx: e.dx,
        rsi: e.si,
        rdi: e.di,
        orig_rax: e.orig_ax,
        rip: e.ip,
        cs: e.cs,
        eflags: e.flags,
        rsp: e.sp,
        ss: e.ss,
        fs_base: e.fs_base,
        gs_base: e.gs_base,
        ds: e.ds,
        es: e.es,
        fs: e.fs,
        gs: e.gs,
    }
}

/// XSAVE components CRIU names: (component number, the field it goes to).
const AVX: u32 = 2;
const BNDREGS: u32 = 3;
const BNDCSR: u32 = 4;
const OPMASK: u32 = 5;
const ZMM_HI256: u32 = 6;
const HI16_ZMM: u32 = 7;
const PKRU: u32 = 9;

fn component(x: &[u8], i: u32) -> Option<&[u8]> {
    xsave_component(i).and_then(|(off, len)| x.get(off..off + len))
}

/// A raw XSAVE area to CRIU's fpregs entry.
pub fn xstate_to_entry(x: &[u8]) -> pb::UserX86FpregsEntry {
    let xsave = (x.len() > XSTATE_BV_OFF + 64).then(|| pb::UserX86XsaveEntry {
        xstate_bv: get_u64(x, XSTATE_BV_OFF),
        ymmh_space: component(x, AVX).map(u32s).unwrap_or_default(),
        bndreg_state: component(x, BNDREGS).map(u64s).unwrap_or_default(),
        bndcsr_state: component(x, BNDCSR).map(u64s).unwrap_or_default(),
        opmask_reg: component(x, OPMASK).map(u64s).unwrap_or_default(),
        zmm_upper: component(x, ZMM_HI256).map(u64s).unwrap_or_default(),
        hi16_zmm: component(x, HI16_ZMM).map(u64s).unwrap_or_default(),
        pkru: component(x, PKRU).map(u32s).unwrap_or_default(),
        cet: None,
    });
    pb::UserX86FpregsEntry {
        cwd: get_u16(x, 0),
        swd: get_u16(x, 2),
        twd: get_u16(x, 4) & 0xff,
        fop: get_u16(x, 6),
        rip: get_u64(x, 8),
        rdp: get_u64(x, 16),
        mxcsr: get_u32(x, 24),
        mxcsr_mask: get_u32(x, 28),
        st_space: x.get(32..160).map(u32s).unwrap_or_default(),
        xmm_space: x.get(160..416).map(u32s).unwrap_or_default(),
        padding: x.get(416..512).map(u32s).unwrap_or_default(),
        xsave,
    }
}

/// Lay CRIU's fpregs entry over `template` (the puppet's own XSAVE area) and return the
/// result for `NT_X86_XSTATE`.
pub fn entry_to_xstate(e: &pb::UserX86FpregsEntry, template: &[u8]) -> Vec<u8> {
    let mut x = template.to_vec();
    put(&mut x, 0, &(e.cwd as u16).to_ne_bytes());
    put(&mut x, 2, &(e.swd as u16).to_ne_bytes());
    put(&mut x, 4, &[e.twd as u8]);
    put(&mut x, 6, &(e.fop as u16).to_ne_bytes());
    put(&mut x, 8, &e.rip.to_ne_bytes());
    put(&mut x, 16, &e.rdp.to_ne_bytes());
    put(&mut x, 24, &e.mxcsr.to_ne_bytes());
    put(&mut x, 28, &e.mxcsr_mask.to_ne_bytes());
    let w32 = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|w| w.to_ne_bytes()).collect() };
    let w64 = |v: &[u64]| -> Vec<u8> { v.iter().flat_map(|w| w.to_ne_bytes()).collect() };
    put(&mut x, 32, &w32(&e.st_space));
    put(&mut x, 160, &w32(&e.xmm_space));
    if let Some(xs) = &e.xsave {
        put(&mut x, XSTATE_BV_OFF, &xs.xstate_bv.to_ne_bytes());
        for (i, data) in [
            (AVX, w32(&xs.ymmh_space)),
            (BNDREGS, w64(&xs.bndreg_state)),
            (BNDCSR, w64(&xs.bndcsr_state)),
            (OPMASK, w64(&xs.opmask_reg)),
            (ZMM_HI256, w64(&xs.zmm_upper)),
            (HI16_ZMM, w64(&xs.hi16_zmm)),
            (PKRU, w32(&xs.pkru)),
        ] {
            if let Some((off, len)) = xsave_component(i) {
                if data.len() == len {
                    put(&mut x, off, &data);
                }
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xstate_round_trip() {
        let size = xsave_component(PKRU)
            .or(xsave_component(HI16_ZMM))
            .or(xsave_component(AVX))
            .map(|(o, l)| o + l)
            .unwrap_or(576);
        let x: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let e = xstate_to_entry(&x);
        let back = entry_to_xstate(&e, &vec![0u8; size]);
        // Byte 5 (reserved, after the abridged tag word) and the legacy region's padding
        // (software-reserved bytes) are not restored; the rest is.
        assert_eq!(&back[..5], &x[..5]);
        assert_eq!(&back[6..416], &x[6..416]);
        assert_eq!(&back[512..520], &x[512..520]);
        if let Some((off, len)) = xsave_component(AVX) {
            assert_eq!(&back[off..off + len], &x[off..off + len]);
        }
    }
}
