//! CPU facts from CPUID: where each XSAVE component lives in the standard (non-compacted) XSAVE
//! layout that `NT_X86_XSTATE` uses (Intel SDM vol. 1, ch. 13.4).

/// Offset and size in bytes of XSAVE component `i` (2..=18) in the standard layout, or `None`
/// when the CPU does not support it.
pub fn xsave_component(i: u32) -> Option<(usize, usize)> {
    if !(2..=62).contains(&i) {
        return None;
    }
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and has no side effects.
    let (sup, comp) = unsafe {
        (
            core::arch::x86_64::__cpuid_count(0xd, 0),
            core::arch::x86_64::__cpuid_count(0xd, i),
        )
    };
    let supported = (u64::from(sup.edx) << 32) | u64::from(sup.eax);
    if supported & (1u64 << i) == 0 || comp.eax == 0 {
        return None;
    }
    Some((comp.ebx as usize, comp.eax as usize))
}

/// The XSAVE features the CPU and OS support (XCR0 as reported by CPUID.(0xd,0)).
pub fn xsave_supported_mask() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and has no side effects.
    let sup = unsafe { core::arch::x86_64::__cpuid_count(0xd, 0) };
    (u64::from(sup.edx) << 32) | u64::from(sup.eax)
}

#[cfg(test)]
mod tests {
    #[test]
    fn avx_is_at_576_when_present() {
        if let Some((off, len)) = super::xsave_component(2) {
            assert_eq!((off, len), (576, 256));
        }
        assert!(super::xsave_supported_mask() & 3 == 3);
    }
}
