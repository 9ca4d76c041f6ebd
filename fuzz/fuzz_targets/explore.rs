//! crit x ps/fds/mems/rss over a dump directory built from the input.
//! The harness is `cryo_image::fuzzing::explore`, shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Err is a rejected input, which is fine; a bug panics inside the harness.
    let _ = cryo_image::fuzzing::explore(data);
});
