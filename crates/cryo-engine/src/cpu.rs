//! CPU state: general registers (fs/gs base included) and the XSAVE area, in CRIU's
//! `thread_info_x86` (`user_x86_regs_entry`, `user_x86_fpregs_entry` with its `xsave` part).
//!
//! # Dump
//! `NT_PRSTATUS` and `NT_X86_XSTATE` from ptrace (read when the task is seized). The XSAVE area
//! is split into CRIU's fields: the legacy FXSAVE region, `xstate_bv`, and the AVX, MPX,
//! AVX-512 and PKRU components at the offsets CPUID gives (standard format: ptrace never gives
//! the compacted one, and it gives zeros for a component whose `xstate_bv` bit is clear, which
//! is in its init state).
//!
//! # Restore
//! The puppet's own XSAVE area is the template (right size, the software bytes and the rest of
//! the header); the dumped legacy region and `xstate_bv` are laid over it, the extended region
//! is cleared and the components `xstate_bv` says are in use are written at this CPU's offsets.
//! A component in use that the image has no data of the right size for (or that this CPU lacks)
//! is refused rather than left with the puppet's bytes. The result is set with `NT_X86_XSTATE`,
//! together with `NT_PRSTATUS`, at the puppet's last syscall stop; the kernel loads the init
//! state (zeros) for every component whose bit is clear.

use cryo_image::pb;
use cryo_sys::cpu::xsave_component;
use cryo_sys::ptrace::Regs;

const XSTATE_BV_OFF: usize = 512;
/// End of the XSAVE header: the extended components start here.
const XSAVE_EXT_OFF: usize = 576;
/// x87 and SSE: the legacy region, always written.
const FP_SSE: u64 = 0b11;

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
/// result for `NT_X86_XSTATE`: the extended components whose `xstate_bv` bit is set hold the
/// image's data, the others are zero. An entry without an XSAVE part restores x87 and SSE only.
/// Errors (a text for the image's error) when a component in use cannot be restored: the
/// image has no data of this CPU's size for it, or this CPU lacks it.
pub fn entry_to_xstate(e: &pb::UserX86FpregsEntry, template: &[u8]) -> Result<Vec<u8>, String> {
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
    if x.len() < XSAVE_EXT_OFF {
        // An FXSAVE-only area (no XSAVE on this CPU): the legacy region is all there is.
        return Ok(x);
    }
    let (bv, comps) = match &e.xsave {
        Some(xs) => (
            xs.xstate_bv,
            vec![
                (AVX, w32(&xs.ymmh_space)),
                (BNDREGS, w64(&xs.bndreg_state)),
                (BNDCSR, w64(&xs.bndcsr_state)),
                (OPMASK, w64(&xs.opmask_reg)),
                (ZMM_HI256, w64(&xs.zmm_upper)),
                (HI16_ZMM, w64(&xs.hi16_zmm)),
                (PKRU, w32(&xs.pkru)),
            ],
        ),
        None => (FP_SSE, Vec::new()),
    };
    let known = comps.iter().fold(FP_SSE, |m, (i, _)| m | 1 << i);
    if bv & !known != 0 {
        return Err(format!(
            "xstate_bv {bv:#x} has XSAVE components in use that the image format holds no \
             data for ({:#x})",
            bv & !known
        ));
    }
    put(&mut x, XSTATE_BV_OFF, &bv.to_ne_bytes());
    x[XSAVE_EXT_OFF..].fill(0);
    for (i, data) in comps {
        if bv & (1 << i) == 0 {
            continue;
        }
        match xsave_component(i) {
            Some((off, len)) if data.len() == len && off + len <= x.len() => {
                put(&mut x, off, &data)
            }
            Some((_, len)) => {
                return Err(format!(
                    "XSAVE component {i} is in use (xstate_bv {bv:#x}) but the image has {} \
                     bytes of it, this CPU {len}",
                    data.len()
                ))
            }
            None => {
                return Err(format!(
                    "XSAVE component {i} is in use (xstate_bv {bv:#x}) but this CPU does not \
                     have it: restore on a CPU with the dumping CPU's vector extensions"
                ))
            }
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENTS: [u32; 7] = [AVX, BNDREGS, BNDCSR, OPMASK, ZMM_HI256, HI16_ZMM, PKRU];

    /// This CPU's XSAVE size (standard format) and the components it has, as an xstate_bv.
    fn cpu_area() -> (usize, u64) {
        COMPONENTS
            .iter()
            .filter_map(|i| xsave_component(*i).map(|(o, l)| (o + l, 1u64 << i)))
            .fold((XSAVE_EXT_OFF, FP_SSE), |(s, m), (end, bit)| {
                (s.max(end), m | bit)
            })
    }

    /// An area of `size` bytes full of a pattern, with `bv` as xstate_bv and no compaction.
    fn area(size: usize, bv: u64) -> Vec<u8> {
        let mut x: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        put(&mut x, XSTATE_BV_OFF, &bv.to_ne_bytes());
        x[XSTATE_BV_OFF + 8..XSAVE_EXT_OFF].fill(0);
        x
    }

    #[test]
    fn xstate_round_trip() {
        let (size, all) = cpu_area();
        let x = area(size, all);
        let e = xstate_to_entry(&x);
        let back = entry_to_xstate(&e, &vec![0u8; size]).unwrap();
        // Byte 5 (reserved, after the abridged tag word) and the legacy region's padding
        // (software-reserved bytes) are not restored; the rest is.
        assert_eq!(&back[..5], &x[..5]);
        assert_eq!(&back[6..416], &x[6..416]);
        assert_eq!(&back[512..576], &x[512..576]);
        for i in COMPONENTS {
            if let Some((off, len)) = xsave_component(i) {
                assert_eq!(&back[off..off + len], &x[off..off + len], "component {i}");
            }
        }
    }

    /// A component whose xstate_bv bit is clear is in its init state: the restored area holds
    /// zeros for it, never the template's (the puppet's) stale bytes, and its bit stays clear.
    #[test]
    fn init_components_are_zero_not_the_templates() {
        let (size, all) = cpu_area();
        let in_use = all & !(1 << AVX | 1 << ZMM_HI256 | 1 << HI16_ZMM);
        let e = xstate_to_entry(&area(size, in_use));
        let stale = vec![0xeeu8; size];
        let back = entry_to_xstate(&e, &stale).unwrap();
        assert_eq!(get_u64(&back, XSTATE_BV_OFF), in_use);
        for i in COMPONENTS {
            let Some((off, len)) = xsave_component(i) else {
                continue;
            };
            let got = &back[off..off + len];
            if in_use & (1 << i) == 0 {
                assert!(got.iter().all(|b| *b == 0), "component {i} is not zero");
            } else {
                assert!(
                    got.iter().any(|b| *b != 0xee),
                    "component {i} is the template's"
                );
            }
        }
        // No XSAVE part at all (an FXSAVE-only image): x87 and SSE, the rest init.
        let fx = pb::UserX86FpregsEntry { xsave: None, ..e };
        let back = entry_to_xstate(&fx, &stale).unwrap();
        assert_eq!(get_u64(&back, XSTATE_BV_OFF), FP_SSE);
        assert!(back[XSAVE_EXT_OFF..].iter().all(|b| *b == 0));
    }

    /// A component in use that the image holds nothing (of the right size) for is refused.
    #[test]
    fn components_in_use_without_data_are_refused() {
        let (size, all) = cpu_area();
        let mut e = xstate_to_entry(&area(size, all));
        let template = vec![0u8; size];
        // AMX tile data (component 18): no field in CRIU's format.
        if let Some(xs) = e.xsave.as_mut() {
            xs.xstate_bv |= 1 << 18;
        }
        let err = entry_to_xstate(&e, &template).unwrap_err();
        assert!(err.contains("0x40000"), "{err}");
        if xsave_component(AVX).is_some() {
            if let Some(xs) = e.xsave.as_mut() {
                xs.xstate_bv &= !(1 << 18);
                xs.ymmh_space.clear();
            }
            let err = entry_to_xstate(&e, &template).unwrap_err();
            assert!(err.contains("component 2"), "{err}");
        }
    }
}
