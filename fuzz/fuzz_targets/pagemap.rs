//! PagemapReader: head, entries, page counts and flags; rewritten entries read back the same.
//! The harness is `cryo_image::fuzzing::pagemap`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Err is a rejected input, which is fine; a bug panics inside the harness.
    let _ = cryo_image::fuzzing::pagemap(data);
});
