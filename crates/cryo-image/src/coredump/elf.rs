//! The bytes of an x86_64 ELF core file: the file header, program headers, and the notes the
//! kernel writes (`fs/binfmt_elf.c`, `include/uapi/linux/elf.h`, `include/linux/elfcore.h`,
//! `arch/x86/include/asm/user_64.h`). Everything is little-endian (`ELFDATA2LSB`).
//!
//! ```text
//! offset 0       64              64 + 56*n        (notes)            rounded up to 4096
//! +--------------+---------------+----------------+------------------+-----------------+-----
//! | Elf64_Ehdr   | Elf64_Phdr[n] | PT_NOTE data   | zero padding     | PT_LOAD 1 data  | ...
//! | ET_CORE      | NOTE, LOAD... | Nhdr+name+desc |                  | filesz bytes    |
//! +--------------+---------------+----------------+------------------+-----------------+-----
//!
//! one note:  n_namesz u32 | n_descsz u32 | n_type u32 | name, NUL, padded to 4 | desc, padded to 4
//!
//! elf_prstatus (336 bytes)                    elf_prpsinfo (136 bytes)
//!   0 si_signo, si_code, si_errno (i32 x3)      0 pr_state, pr_sname, pr_zomb, pr_nice (u8 x4)
//!  12 pr_cursig (i16), 2 bytes pad              8 pr_flag (u64)
//!  16 pr_sigpend (u64)  24 pr_sighold (u64)    16 pr_uid, pr_gid (u32)
//!  32 pr_pid, pr_ppid, pr_pgrp, pr_sid (i32)   24 pr_pid, pr_ppid, pr_pgrp, pr_sid (i32)
//!  48 utime, stime, cutime, cstime (16 each)   40 pr_fname[16]
//! 112 pr_reg: user_regs_struct, 27 x u64       56 pr_psargs[80]
//! 328 pr_fpvalid (i32), 4 bytes pad
//!
//! user_i387_struct / NT_FPREGSET (512)        NT_X86_XSTATE: the same 512 bytes, then
//!   0 cwd swd twd fop (u16)  8 rip  16 rdp       464 XCR0 (u64: the ptrace/core software bytes)
//!  24 mxcsr  28 mxcsr_mask                       512 XSAVE header: xstate_bv, xcomp_bv = 0
//!  32 st_space[32] (u32)  160 xmm_space[64]      576.. components, standard (non-compacted)
//! 416 padding[24]                                     format at Intel's offsets (see XSAVE_COMPONENTS)
//!
//! NT_FILE: count (u64), page size (u64), count x {start, end, file offset in pages} (u64),
//!          then count NUL-terminated names
//! NT_X86_XSAVE_LAYOUT: one {type, size, offset, flags} (u32 x4) per enabled component >= 2
//! ```

/// Page size of x86_64 and of every offset in a core file (`ELF_EXEC_PAGESIZE`).
pub const PAGE_SIZE: u64 = 4096;
/// Size of the ELF file header.
pub const EHDR_LEN: u64 = 64;
/// Size of one program header.
pub const PHDR_LEN: u64 = 56;
/// Size of the one section header written when there are too many segments for `e_phnum`.
pub const SHDR_LEN: u64 = 64;
/// `e_phnum` value meaning "the real count is in section header 0's `sh_info`".
pub const PN_XNUM: u64 = 0xffff;

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// Segment flags.
pub const PF_X: u32 = 1;
/// Writable segment.
pub const PF_W: u32 = 2;
/// Readable segment.
pub const PF_R: u32 = 4;

/// Note types (`include/uapi/linux/elf.h`).
pub const NT_PRSTATUS: u32 = 1;
/// `NT_PRFPREG`, called `NT_FPREGSET` by binutils.
pub const NT_FPREGSET: u32 = 2;
/// Process info.
pub const NT_PRPSINFO: u32 = 3;
/// The auxiliary vector.
pub const NT_AUXV: u32 = 6;
/// The signal that caused the dump.
pub const NT_SIGINFO: u32 = 0x5349_4749;
/// Mapped files.
pub const NT_FILE: u32 = 0x4649_4c45;
/// The XSAVE area.
pub const NT_X86_XSTATE: u32 = 0x202;
/// Where each XSAVE component is in `NT_X86_XSTATE`.
pub const NT_X86_XSAVE_LAYOUT: u32 = 0x205;

/// Size of `struct elf_prstatus` on x86_64.
pub const PRSTATUS_LEN: usize = 336;
/// Size of `struct elf_prpsinfo` on x86_64.
pub const PRPSINFO_LEN: usize = 136;
/// Size of `siginfo_t`.
pub const SIGINFO_LEN: usize = 128;
/// Size of the FXSAVE area (`user_i387_struct`).
pub const FXSAVE_LEN: usize = 512;
/// Offset of the XCR0 copy in the software-reserved bytes of the FXSAVE area; gdb reads the
/// register set of the core (AVX, AVX-512, PKRU) from there.
pub const XCR0_OFF: usize = 464;
/// Offset of the XSAVE header (`xstate_bv`, then `xcomp_bv`).
pub const XSAVE_HDR_OFF: usize = 512;
/// End of the XSAVE header: the smallest XSAVE area.
pub const XSAVE_MIN_LEN: usize = 576;
/// `ELF_PRARGSZ`: bytes of the command line in `pr_psargs`, NUL included.
pub const PRARGSZ: usize = 80;

/// XSAVE components cryo and CRIU record, with their standard-format offset and size (the
/// offsets Intel CPUs report in CPUID leaf 0xd, which are also the ones gdb assumes when the
/// note has one of the sizes it knows). (component number, offset, size).
pub const XSAVE_COMPONENTS: [(u32, usize, usize); 7] = [
    (2, 576, 256),   // AVX: upper halves of ymm0-15
    (3, 960, 64),    // MPX BNDREGS
    (4, 1024, 64),   // MPX BNDCSR
    (5, 1088, 64),   // AVX-512 opmask k0-7
    (6, 1152, 512),  // AVX-512 upper halves of zmm0-15
    (7, 1664, 1024), // AVX-512 zmm16-31
    (9, 2688, 8),    // PKRU
];

/// x87 and SSE state, always present.
pub const XFEATURE_FP_SSE: u64 = 0b11;

fn put(b: &mut [u8], off: usize, data: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + data.len()) {
        dst.copy_from_slice(data);
    }
}
fn put_u16(b: &mut [u8], off: usize, v: u16) {
    put(b, off, &v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}

/// The ELF file header of a core file with `segs` program headers; `shoff` is where the
/// extended-numbering section header goes when `segs >= PN_XNUM` (ignored otherwise).
pub fn ehdr(segs: u64, shoff: u64) -> [u8; EHDR_LEN as usize] {
    let mut h = [0u8; EHDR_LEN as usize];
    put(&mut h, 0, b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // ELFDATA2LSB
    h[6] = 1; // EV_CURRENT
              // EI_OSABI 0 (ELFOSABI_NONE), padding zero.
    put_u16(&mut h, 16, 4); // ET_CORE
    put_u16(&mut h, 18, 62); // EM_X86_64
    put_u32(&mut h, 20, 1); // EV_CURRENT
    put_u64(&mut h, 32, EHDR_LEN); // e_phoff
    put_u16(&mut h, 52, EHDR_LEN as u16); // e_ehsize
    put_u16(&mut h, 54, PHDR_LEN as u16); // e_phentsize
    if segs >= PN_XNUM {
        put_u64(&mut h, 40, shoff); // e_shoff
        put_u16(&mut h, 56, PN_XNUM as u16);
        put_u16(&mut h, 58, SHDR_LEN as u16); // e_shentsize
        put_u16(&mut h, 60, 1); // e_shnum
    } else {
        put_u16(&mut h, 56, segs as u16);
    }
    h
}

/// The section header that carries the real segment count (`sh_info`) when `e_phnum` is
/// `PN_XNUM`: type `SHT_NULL`, `sh_size` = `e_shnum` (1), everything else zero.
pub fn extnum_shdr(segs: u64) -> [u8; SHDR_LEN as usize] {
    let mut s = [0u8; SHDR_LEN as usize];
    put_u64(&mut s, 32, 1); // sh_size
    put_u32(&mut s, 44, segs as u32); // sh_info
    s
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phdr {
    /// `PT_NOTE` or `PT_LOAD`.
    pub p_type: u32,
    /// `PF_R | PF_W | PF_X`.
    pub p_flags: u32,
    /// Where the data is in the file.
    pub p_offset: u64,
    /// Address in the process.
    pub p_vaddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory.
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}

impl Phdr {
    /// The 56 bytes of `Elf64_Phdr` (`p_paddr` is 0 in core files).
    pub fn to_bytes(self) -> [u8; PHDR_LEN as usize] {
        let mut p = [0u8; PHDR_LEN as usize];
        put_u32(&mut p, 0, self.p_type);
        put_u32(&mut p, 4, self.p_flags);
        put_u64(&mut p, 8, self.p_offset);
        put_u64(&mut p, 16, self.p_vaddr);
        put_u64(&mut p, 32, self.p_filesz);
        put_u64(&mut p, 40, self.p_memsz);
        put_u64(&mut p, 48, self.p_align);
        p
    }
}

/// One ELF note: owner name (`CORE` or `LINUX`), type, descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `"CORE"` or `"LINUX"`.
    pub name: &'static str,
    /// `NT_*`.
    pub n_type: u32,
    /// The descriptor bytes.
    pub desc: Vec<u8>,
}

impl Note {
    /// A note owned by `CORE`.
    pub fn core(n_type: u32, desc: Vec<u8>) -> Note {
        Note {
            name: "CORE",
            n_type,
            desc,
        }
    }

    /// A note owned by `LINUX` (the kernel's name for register sets beyond the classic ones).
    pub fn linux(n_type: u32, desc: Vec<u8>) -> Note {
        Note {
            name: "LINUX",
            n_type,
            desc,
        }
    }
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The PT_NOTE data: each note's header, NUL-terminated name and descriptor, padded to 4.
pub fn encode_notes(notes: &[Note]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in notes {
        let namesz = n.name.len() + 1;
        out.extend_from_slice(&(namesz as u32).to_le_bytes());
        out.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&n.n_type.to_le_bytes());
        out.extend_from_slice(n.name.as_bytes());
        out.resize(out.len() + pad4(namesz) - n.name.len(), 0);
        out.extend_from_slice(&n.desc);
        out.resize(out.len() + pad4(n.desc.len()) - n.desc.len(), 0);
    }
    out
}

/// The general registers in `user_regs_struct` order, as CRIU's `user_x86_regs_entry` names
/// them.
pub fn user_regs(r: &crate::pb::UserX86RegsEntry) -> [u64; 27] {
    [
        r.r15, r.r14, r.r13, r.r12, r.bp, r.bx, r.r11, r.r10, r.r9, r.r8, r.ax, r.cx, r.dx, r.si,
        r.di, r.orig_ax, r.ip, r.cs, r.flags, r.sp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs,
        r.gs,
    ]
}

/// Process ids of a prstatus or prpsinfo note.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ids {
    /// The thread (prstatus) or process (prpsinfo).
    pub pid: u32,
    /// The parent process.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// Session.
    pub sid: u32,
}

/// `struct elf_prstatus` of one thread: no signal, pending and blocked signals, ids, the
/// general registers and `pr_fpvalid = 1` (an FPU note follows).
pub fn prstatus(ids: Ids, sigpend: u64, sighold: u64, regs: &[u64; 27]) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_LEN];
    put_u64(&mut b, 16, sigpend);
    put_u64(&mut b, 24, sighold);
    put_u32(&mut b, 32, ids.pid);
    put_u32(&mut b, 36, ids.ppid);
    put_u32(&mut b, 40, ids.pgrp);
    put_u32(&mut b, 44, ids.sid);
    for (i, r) in regs.iter().enumerate() {
        put_u64(&mut b, 112 + 8 * i, *r);
    }
    put_u32(&mut b, 328, 1);
    b
}

/// What `struct elf_prpsinfo` says about the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PsInfo {
    /// `pr_state`: 0 running, 3 stopped (the kernel's `ffz(~state) + 1`).
    pub state: u8,
    /// `pr_nice`.
    pub nice: i8,
    /// `pr_flag`: the task's `PF_*` flags.
    pub flags: u64,
    /// Real uid and gid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Ids.
    pub ids: Ids,
    /// The task name (`comm`), cut to 15 bytes.
    pub fname: Vec<u8>,
    /// The start of the command line, at most `PRARGSZ - 1` bytes, NULs already spaces.
    pub psargs: Vec<u8>,
}

/// `struct elf_prpsinfo`.
pub fn prpsinfo(p: &PsInfo) -> Vec<u8> {
    let mut b = vec![0u8; PRPSINFO_LEN];
    b[0] = p.state;
    b[1] = if p.state > 5 {
        b'.'
    } else {
        b"RSDTZW"[usize::from(p.state)]
    };
    b[2] = u8::from(p.state == 4);
    b[3] = p.nice as u8;
    put_u64(&mut b, 8, p.flags);
    put_u32(&mut b, 16, p.uid);
    put_u32(&mut b, 20, p.gid);
    put_u32(&mut b, 24, p.ids.pid);
    put_u32(&mut b, 28, p.ids.ppid);
    put_u32(&mut b, 32, p.ids.pgrp);
    put_u32(&mut b, 36, p.ids.sid);
    let fname = &p.fname[..p.fname.len().min(15)];
    put(&mut b, 40, fname);
    let args = &p.psargs[..p.psargs.len().min(PRARGSZ - 1)];
    put(&mut b, 56, args);
    b
}

/// The FXSAVE area (`NT_FPREGSET`, and the first 512 bytes of `NT_X86_XSTATE`) from CRIU's
/// fpregs entry. Arrays shorter than their field leave the rest zero; longer ones are cut. The
/// software-reserved bytes (464..512) are zero, as in the kernel's `NT_FPREGSET`.
pub fn fxsave(fp: &crate::pb::UserX86FpregsEntry) -> Vec<u8> {
    let mut b = vec![0u8; FXSAVE_LEN];
    put_u16(&mut b, 0, fp.cwd as u16);
    put_u16(&mut b, 2, fp.swd as u16);
    put_u16(&mut b, 4, fp.twd as u16);
    put_u16(&mut b, 6, fp.fop as u16);
    put_u64(&mut b, 8, fp.rip);
    put_u64(&mut b, 16, fp.rdp);
    put_u32(&mut b, 24, fp.mxcsr);
    put_u32(&mut b, 28, fp.mxcsr_mask);
    for (field, off, words) in [
        (&fp.st_space, 32usize, 32usize),
        (&fp.xmm_space, 160, 64),
        (&fp.padding, 416, 12),
    ] {
        for (i, w) in field.iter().take(words).enumerate() {
            put_u32(&mut b, off + 4 * i, *w);
        }
    }
    b
}

fn u32s_le(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}
fn u64s_le(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The XSAVE area of `NT_X86_XSTATE` and the XCR0 it declares.
///
/// The legacy region is [`fxsave`] with the software bytes (464..512) holding only XCR0, as the
/// kernel's regset does. XCR0 is the one recorded there at dump time, else the components the
/// entry has data for; either way cut to x87, SSE and [`XSAVE_COMPONENTS`] (AMX tiles and
/// other state the images do not hold stay out). The area ends with the last enabled
/// component, at the standard offsets, so its size is one gdb recognises (832 for AVX, 2696
/// with AVX-512 and PKRU, ...). Components not in use (`xstate_bv` bit clear) are zero.
pub fn xstate(fp: &crate::pb::UserX86FpregsEntry) -> (Vec<u8>, u64) {
    let known = XSAVE_COMPONENTS
        .iter()
        .fold(XFEATURE_FP_SSE, |m, (bit, _, _)| m | 1 << bit);
    let recorded = match (fp.padding.get(12), fp.padding.get(13)) {
        (Some(lo), Some(hi)) => u64::from(*lo) | u64::from(*hi) << 32,
        _ => 0,
    };
    let data: Vec<(u32, Vec<u8>)> = match &fp.xsave {
        Some(x) => vec![
            (2, u32s_le(&x.ymmh_space)),
            (3, u64s_le(&x.bndreg_state)),
            (4, u64s_le(&x.bndcsr_state)),
            (5, u64s_le(&x.opmask_reg)),
            (6, u64s_le(&x.zmm_upper)),
            (7, u64s_le(&x.hi16_zmm)),
            (9, u32s_le(&x.pkru)),
        ],
        None => Vec::new(),
    };
    let xcr0 = if recorded & XFEATURE_FP_SSE == XFEATURE_FP_SSE {
        recorded & known
    } else {
        data.iter()
            .filter(|(_, d)| !d.is_empty())
            .fold(XFEATURE_FP_SSE, |m, (bit, _)| m | 1 << bit)
    };
    let len = XSAVE_COMPONENTS
        .iter()
        .filter(|(bit, _, _)| xcr0 & (1 << bit) != 0)
        .map(|(_, off, size)| off + size)
        .fold(XSAVE_MIN_LEN, usize::max);
    let mut b = fxsave(fp);
    b.resize(len, 0);
    put_u64(&mut b, XCR0_OFF, xcr0);
    let xstate_bv = fp.xsave.as_ref().map_or(0, |x| x.xstate_bv) & xcr0;
    put_u64(&mut b, XSAVE_HDR_OFF, xstate_bv);
    // A component whose xstate_bv bit is clear is in its init state, all zeros (as the kernel's
    // regset and core show it, whatever bytes the entry holds).
    for (bit, bytes) in &data {
        if xstate_bv & (1 << bit) == 0 {
            continue;
        }
        if let Some((_, off, size)) = XSAVE_COMPONENTS.iter().find(|(b, _, _)| b == bit) {
            put(&mut b, *off, &bytes[..bytes.len().min(*size)]);
        }
    }
    (b, xcr0)
}

/// `NT_X86_XSAVE_LAYOUT` for the area [`xstate`] wrote: one `{type, size, offset, flags}` per
/// enabled component from 2 on.
pub fn xsave_layout(xcr0: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for (bit, off, size) in XSAVE_COMPONENTS {
        if xcr0 & (1 << bit) != 0 {
            for w in [bit, size as u32, off as u32, 0] {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
    b
}

/// `NT_AUXV`: the saved auxiliary vector as (type, value) pairs up to and including the first
/// `AT_NULL` pair, which is added if the vector has none.
pub fn auxv(words: &[u64]) -> Vec<u8> {
    let mut b = Vec::new();
    for pair in words.chunks_exact(2) {
        b.extend_from_slice(&pair[0].to_le_bytes());
        b.extend_from_slice(&pair[1].to_le_bytes());
        if pair[0] == 0 {
            return b;
        }
    }
    b.extend_from_slice(&[0u8; 16]);
    b
}

/// One mapping of `NT_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// Offset in the file, in pages.
    pub pgoff_pages: u64,
    /// Path as the kernel prints it (`/path (deleted)` for an unlinked file).
    pub name: Vec<u8>,
}

/// `NT_FILE`: count, page size, the (start, end, page offset) triples, then the names.
pub fn file_note(maps: &[FileMapping]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(maps.len() as u64).to_le_bytes());
    b.extend_from_slice(&PAGE_SIZE.to_le_bytes());
    for m in maps {
        for w in [m.start, m.end, m.pgoff_pages] {
            b.extend_from_slice(&w.to_le_bytes());
        }
    }
    for m in maps {
        b.extend_from_slice(&m.name);
        b.push(0);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn file_header() {
        let h = ehdr(27, 0);
        assert_eq!(&h[..8], b"\x7fELF\x02\x01\x01\x00");
        assert_eq!(u16_at(&h, 16), 4);
        assert_eq!(u16_at(&h, 18), 62);
        assert_eq!(u64_at(&h, 32), 64);
        assert_eq!(u64_at(&h, 40), 0);
        assert_eq!(
            (u16_at(&h, 52), u16_at(&h, 54), u16_at(&h, 56)),
            (64, 56, 27)
        );
        assert_eq!((u16_at(&h, 58), u16_at(&h, 60)), (0, 0));

        let h = ehdr(70_000, 0x1234_5000);
        assert_eq!(u16_at(&h, 56), 0xffff);
        assert_eq!(u64_at(&h, 40), 0x1234_5000);
        assert_eq!((u16_at(&h, 58), u16_at(&h, 60)), (64, 1));
        let s = extnum_shdr(70_000);
        assert_eq!(u32_at(&s, 4), 0); // SHT_NULL
        assert_eq!(u64_at(&s, 32), 1);
        assert_eq!(u32_at(&s, 44), 70_000);
    }

    #[test]
    fn program_header() {
        let p = Phdr {
            p_type: PT_LOAD,
            p_flags: PF_R | PF_X,
            p_offset: 0x7000,
            p_vaddr: 0x5597_397a_f000,
            p_filesz: 0x1000,
            p_memsz: 0x3000,
            p_align: PAGE_SIZE,
        }
        .to_bytes();
        assert_eq!(u32_at(&p, 0), 1);
        assert_eq!(u32_at(&p, 4), 5);
        assert_eq!(u64_at(&p, 8), 0x7000);
        assert_eq!(u64_at(&p, 16), 0x5597_397a_f000);
        assert_eq!(u64_at(&p, 24), 0); // p_paddr
        assert_eq!(
            (u64_at(&p, 32), u64_at(&p, 40), u64_at(&p, 48)),
            (0x1000, 0x3000, 4096)
        );
    }

    #[test]
    fn notes_are_padded_to_four() {
        let b = encode_notes(&[
            Note::core(NT_AUXV, vec![1, 2, 3, 4, 5]),
            Note::linux(NT_X86_XSTATE, vec![9; 8]),
        ]);
        // CORE: 12 header + "CORE\0" padded to 8 + 5 desc padded to 8.
        assert_eq!(&b[..12], &[5, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(&b[12..20], b"CORE\0\0\0\0");
        assert_eq!(&b[20..28], &[1, 2, 3, 4, 5, 0, 0, 0]);
        // LINUX: namesz 6, padded to 8.
        assert_eq!(u32_at(&b, 28), 6);
        assert_eq!(u32_at(&b, 32), 8);
        assert_eq!(u32_at(&b, 36), 0x202);
        assert_eq!(&b[40..48], b"LINUX\0\0\0");
        assert_eq!(&b[48..56], &[9; 8]);
        assert_eq!(b.len(), 56);
    }

    #[test]
    fn prstatus_layout() {
        let regs = pb::UserX86RegsEntry {
            r15: 15,
            ax: 0x22,
            orig_ax: u64::MAX,
            ip: 0x7fc9_a8bc_8df0,
            sp: 0x7fff_7662_4300,
            fs_base: 0x7fc9_a8af_2740,
            gs: 0x2b2b,
            ..Default::default()
        };
        let ids = Ids {
            pid: 101,
            ppid: 100,
            pgrp: 99,
            sid: 98,
        };
        let b = prstatus(ids, 1 << 9, 1 << 1, &user_regs(&regs));
        assert_eq!(b.len(), PRSTATUS_LEN);
        assert_eq!(&b[..16], &[0u8; 16]); // no signal
        assert_eq!((u64_at(&b, 16), u64_at(&b, 24)), (1 << 9, 2));
        assert_eq!(
            (
                u32_at(&b, 32),
                u32_at(&b, 36),
                u32_at(&b, 40),
                u32_at(&b, 44)
            ),
            (101, 100, 99, 98)
        );
        let reg = |i: usize| u64_at(&b, 112 + 8 * i);
        assert_eq!(reg(0), 15);
        assert_eq!(reg(10), 0x22); // rax
        assert_eq!(reg(15), u64::MAX); // orig_rax
        assert_eq!(reg(16), 0x7fc9_a8bc_8df0); // rip
        assert_eq!(reg(19), 0x7fff_7662_4300); // rsp
        assert_eq!(reg(21), 0x7fc9_a8af_2740); // fs_base
        assert_eq!(reg(26), 0x2b2b); // gs
        assert_eq!(u32_at(&b, 328), 1);
    }

    #[test]
    fn prpsinfo_layout() {
        let b = prpsinfo(&PsInfo {
            state: 3,
            nice: -5,
            flags: 0x40_0600,
            uid: 1000,
            gid: 1001,
            ids: Ids {
                pid: 7,
                ppid: 6,
                pgrp: 5,
                sid: 4,
            },
            fname: b"a-very-long-command-name".to_vec(),
            psargs: vec![b'x'; 200],
        });
        assert_eq!(b.len(), PRPSINFO_LEN);
        assert_eq!(&b[..4], &[3, b'T', 0, 0xfb]);
        assert_eq!(u64_at(&b, 8), 0x40_0600);
        assert_eq!((u32_at(&b, 16), u32_at(&b, 20)), (1000, 1001));
        assert_eq!((u32_at(&b, 24), u32_at(&b, 36)), (7, 4));
        assert_eq!(&b[40..56], b"a-very-long-com\0");
        assert_eq!(&b[56..56 + 79], &[b'x'; 79][..]);
        assert_eq!(b[135], 0);
        assert_eq!(prpsinfo(&PsInfo::default())[1], b'R');
    }

    fn fpregs() -> pb::UserX86FpregsEntry {
        let mut padding = vec![0u32; 24];
        padding[12] = 0x602e7; // XCR0 as the kernel left it: AVX-512, PKRU, AMX
        padding[14] = 0xdead; // other software bytes: not kept in XSTATE
        pb::UserX86FpregsEntry {
            cwd: 0x37f,
            swd: 0x20,
            twd: 0x80,
            fop: 0x5,
            rip: 0x11,
            rdp: 0x22,
            mxcsr: 0x1f80,
            mxcsr_mask: 0xffff,
            st_space: (0..32).collect(),
            xmm_space: (100..164).collect(),
            padding,
            xsave: Some(pb::UserX86XsaveEntry {
                xstate_bv: 0x2e7 | 1 << 17,
                ymmh_space: (1000..1064).collect(),
                bndreg_state: vec![],
                bndcsr_state: vec![],
                opmask_reg: (0..8).map(|i| 0x100 + i).collect(),
                zmm_upper: (0..64).map(|i| 0x2000 + i).collect(),
                hi16_zmm: (0..128).map(|i| 0x3000 + i).collect(),
                pkru: vec![0x5555_5554, 0],
                cet: None,
            }),
        }
    }

    #[test]
    fn fxsave_layout() {
        let b = fxsave(&fpregs());
        assert_eq!(b.len(), 512);
        assert_eq!(
            (u16_at(&b, 0), u16_at(&b, 2), u16_at(&b, 4), u16_at(&b, 6)),
            (0x37f, 0x20, 0x80, 5)
        );
        assert_eq!((u64_at(&b, 8), u64_at(&b, 16)), (0x11, 0x22));
        assert_eq!((u32_at(&b, 24), u32_at(&b, 28)), (0x1f80, 0xffff));
        assert_eq!(u32_at(&b, 32 + 4 * 31), 31);
        assert_eq!(u32_at(&b, 160), 100);
        assert_eq!(u32_at(&b, 160 + 4 * 63), 163);
        assert_eq!(&b[464..], &[0u8; 48][..]);
    }

    #[test]
    fn xstate_layout() {
        let (b, xcr0) = xstate(&fpregs());
        // AMX (bit 17) is cut: the images hold no tile data.
        assert_eq!(xcr0, 0x2e7);
        assert_eq!(b.len(), 2696);
        assert_eq!(u64_at(&b, XCR0_OFF), 0x2e7);
        assert_eq!(u64_at(&b, 472), 0); // the other software bytes
        assert_eq!(u64_at(&b, 512), 0x2e7); // xstate_bv
        assert_eq!(u64_at(&b, 520), 0); // xcomp_bv: standard format
        assert_eq!(u32_at(&b, 160), 100);
        assert_eq!(u32_at(&b, 576), 1000);
        assert_eq!(u32_at(&b, 576 + 4 * 63), 1063);
        assert_eq!(u64_at(&b, 960), 0); // no MPX
        assert_eq!(u64_at(&b, 1088), 0x100);
        assert_eq!(u64_at(&b, 1152), 0x2000);
        assert_eq!(u64_at(&b, 1664 + 8 * 127), 0x3000 + 127);
        assert_eq!(u32_at(&b, 2688), 0x5555_5554);

        let l = xsave_layout(xcr0);
        assert_eq!(l.len(), 5 * 16);
        assert_eq!((u32_at(&l, 0), u32_at(&l, 4), u32_at(&l, 8)), (2, 256, 576));
        assert_eq!(
            (u32_at(&l, 64), u32_at(&l, 68), u32_at(&l, 72)),
            (9, 8, 2688)
        );

        // Components in their init state (xstate_bv bit clear: AVX, ZMM_Hi256, Hi16_ZMM) are
        // zero whatever the entry holds; those in use keep their data; XCR0 and the size stay.
        let mut fp = fpregs();
        if let Some(x) = fp.xsave.as_mut() {
            x.xstate_bv = 0x223;
        }
        let (b, xcr0) = xstate(&fp);
        assert_eq!((xcr0, b.len(), u64_at(&b, 512)), (0x2e7, 2696, 0x223));
        assert!(b[576..832].iter().all(|x| *x == 0));
        assert!(b[1152..2688].iter().all(|x| *x == 0));
        assert_eq!(u64_at(&b, 1088), 0x100);
        assert_eq!(u32_at(&b, 2688), 0x5555_5554);

        // No XCR0 recorded (an image from elsewhere): derived from the data present.
        let mut fp = fpregs();
        fp.padding.clear();
        if let Some(x) = fp.xsave.as_mut() {
            x.opmask_reg.clear();
            x.zmm_upper.clear();
            x.hi16_zmm.clear();
            x.pkru.clear();
        }
        let (b, xcr0) = xstate(&fp);
        assert_eq!(xcr0, 0b111);
        assert_eq!(b.len(), 832);
        assert_eq!(u64_at(&b, 512), 0b111 & 0x2e7);
        // No xsave part at all: x87 and SSE only.
        fp.xsave = None;
        let (b, xcr0) = xstate(&fp);
        assert_eq!((xcr0, b.len()), (0b11, 576));
    }

    #[test]
    fn auxv_ends_with_at_null() {
        let b = auxv(&[33, 0x7000, 6, 4096, 0, 0, 99, 99]);
        assert_eq!(b.len(), 48);
        assert_eq!(u64_at(&b, 0), 33);
        assert_eq!(u64_at(&b, 24), 4096);
        assert_eq!(&b[32..], &[0u8; 16]);
        // No AT_NULL, odd count: pairs, then AT_NULL.
        let b = auxv(&[6, 4096, 7]);
        assert_eq!(b.len(), 32);
        assert_eq!(&b[16..], &[0u8; 16]);
    }

    #[test]
    fn file_note_layout() {
        let b = file_note(&[
            FileMapping {
                start: 0x1000,
                end: 0x3000,
                pgoff_pages: 0,
                name: b"/bin/a".to_vec(),
            },
            FileMapping {
                start: 0x5000,
                end: 0x6000,
                pgoff_pages: 4,
                name: b"/dev/zero (deleted)".to_vec(),
            },
        ]);
        assert_eq!((u64_at(&b, 0), u64_at(&b, 8)), (2, 4096));
        assert_eq!(
            (u64_at(&b, 16), u64_at(&b, 24), u64_at(&b, 32)),
            (0x1000, 0x3000, 0)
        );
        assert_eq!(u64_at(&b, 56), 4);
        assert_eq!(&b[64..], b"/bin/a\0/dev/zero (deleted)\0");
    }
}
