//! Every input that ever crashed a fuzz target (`fuzz/`), and a few hand-made nasty ones, fed
//! to the same harness as the target (`cryo_image::fuzzing`): none may panic.
//!
//! Inputs are files `tests/fuzz-regressions/<target>/<name>`. A name starting with `ok-` must
//! be read (`Ok`), one starting with `err-` must be rejected with an error; the harness checks
//! the rest (errors name the file and offset, decoded images round-trip). The seed inputs of
//! each target (`fuzzing::seeds`) must all read.
//!
//! `CRYO_FUZZ_CORPUS=fuzz/corpus cargo test -p cryo-image --test fuzz_regressions --
//! --ignored write_seeds` writes the seeds into `$CRYO_FUZZ_CORPUS/<target>/` to start a
//! fuzzing corpus (see `fuzz/README.md`).

#![allow(clippy::unwrap_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cryo_image::fuzzing::{seeds, Harness, TARGETS};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// Runs `harness` on `data`; the outcome, or the panic message.
fn run(harness: Harness, data: &[u8]) -> Result<Result<(), String>, String> {
    catch_unwind(AssertUnwindSafe(|| harness(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

fn check_target(target: &str, harness: Harness) {
    let dir = regressions_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).unwrap();
        match (run(harness, &data), &name) {
            (Err(panic), _) => failures.push(format!("{name}: panicked: {panic}")),
            (Ok(Err(e)), n) if n.starts_with("ok-") => {
                failures.push(format!("{name}: expected Ok, got Err({e})"))
            }
            (Ok(Ok(())), n) if n.starts_with("err-") => {
                failures.push(format!("{name}: expected Err, got Ok"))
            }
            (Ok(_), n) if n.starts_with("ok-") || n.starts_with("err-") => {}
            (Ok(_), _) => failures.push(format!("{name}: name must start with ok- or err-")),
        }
    }
    for (name, data) in seeds(target) {
        if let Err(e) = run(harness, &data).and_then(|r| r) {
            failures.push(format!("seed {name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n"));
}

fn harness(target: &str) -> Harness {
    TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, h)| *h)
        .unwrap()
}

#[test]
fn frame() {
    check_target("frame", harness("frame"));
}

#[test]
fn pagemap() {
    check_target("pagemap", harness("pagemap"));
}

#[test]
fn crit_decode() {
    check_target("crit_decode", harness("crit_decode"));
}

#[test]
fn crit_json() {
    check_target("crit_json", harness("crit_json"));
}

#[test]
fn message() {
    check_target("message", harness("message"));
}

#[test]
fn explore() {
    check_target("explore", harness("explore"));
}

/// Every target has its test above and its folder.
#[test]
fn every_target_is_tested() {
    for (target, _) in TARGETS {
        assert!(
            regressions_dir().join(target).is_dir(),
            "tests/fuzz-regressions/{target} missing"
        );
    }
    assert_eq!(TARGETS.len(), 6, "a new target needs its #[test] here");
}

/// Writes every target's seeds into `$CRYO_FUZZ_CORPUS/<target>/seed-<name>`.
#[test]
#[ignore = "writes a fuzzing corpus; run by hand (fuzz/README.md)"]
fn write_seeds() {
    // Relative to the repository root (tests run in the crate's directory).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root =
        repo.join(std::env::var_os("CRYO_FUZZ_CORPUS").unwrap_or_else(|| "fuzz/corpus".into()));
    for target in TARGETS
        .iter()
        .map(|(t, _)| *t)
        .chain(std::iter::once("validate"))
    {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds(target) {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}
