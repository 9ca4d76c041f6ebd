//! ImageReader over any bytes: header magics, entry framing, read_raw* with any length.
//! The harness is `cryo_image::fuzzing::frame`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Err is a rejected input, which is fine; a bug panics inside the harness.
    let _ = cryo_image::fuzzing::frame(data);
});
