//! One message family (first byte) read with its prost type and with crit.
//! The harness is `cryo_image::fuzzing::message`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Err is a rejected input, which is fine; a bug panics inside the harness.
    let _ = cryo_image::fuzzing::message(data);
});
