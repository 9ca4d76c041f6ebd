//! The `cryo` binary's command line, run as a user would: version, check, failures and usage
//! errors give the right exit status and readable messages.

use std::process::{Command, Output};

fn cryo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryo"))
        .args(args)
        .output()
        .expect("run the cryo binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_panic(o: &Output) {
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "cryo panicked:\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "cryo panicked:\n{err}");
}

#[test]
fn version_is_criu_style() {
    for flag in ["--version", "-V"] {
        let o = cryo(&[flag]);
        assert!(o.status.success(), "{flag}: {o:?}");
        let out = text(&o.stdout);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("Version: 4.2"), "{out}");
        assert_eq!(
            lines.next(),
            Some(concat!("cryo ", env!("CARGO_PKG_VERSION"))),
            "{out}"
        );
    }
}

#[test]
fn help_reads_like_a_tool() {
    let o = cryo(&["--help"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    for word in ["dump", "restore", "check"] {
        assert!(out.contains(word), "{out}");
    }
    let o = cryo(&["check", "--help"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("mem_dirty_track"));
}

#[test]
fn check_looks_good_here() {
    let o = cryo(&["check"]);
    assert_no_panic(&o);
    assert!(
        o.status.success(),
        "cryo check failed:\n{}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "Looks good.\n");
}

#[test]
fn check_features_as_zdtm_asks() {
    let o = cryo(&[
        "check",
        "--no-default-config",
        "-verbosity=0",
        "--feature",
        "clone3_set_tid",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "clone3_set_tid is supported\n");
    // A feature cryo does not check is reported unsupported, quietly at verbosity 0.
    let o = cryo(&[
        "check",
        "--no-default-config",
        "-verbosity=0",
        "--feature",
        "aio_remap",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout), "");
    let o = cryo(&["check", "--feature", "no_such_feature"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("unknown feature no_such_feature"));
}

#[test]
fn dump_of_missing_pid_fails_cleanly() {
    let dir = std::env::temp_dir().join(format!("cryo-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.to_str().expect("utf-8 temp dir");
    // PIDs never go this high (pid_max is at most 2^22).
    let o = cryo(&["dump", "-t", "2147483647", "-D", d, "-o", "dump.log", "-v4"]);
    assert_no_panic(&o);
    // ESRCH, as CRIU's cr_errno.
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let err = text(&o.stderr);
    assert!(err.starts_with("Error: "), "{err}");
    assert!(err.contains("2147483647"), "{err}");
    let log = std::fs::read_to_string(dir.join("dump.log")).expect("dump.log in the images dir");
    assert!(log.contains("Error ("), "{log}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn usage_errors_exit_1() {
    for args in [
        &["dump", "-t", "1", "--no-such-option"][..],
        &["dump", "-t", "1", "-q"],
        &["dump"],
        &["dump", "-t", "1", "-v", "4"],
        &["frobnicate"],
        &[],
    ] {
        let o = cryo(args);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        assert!(!o.stderr.is_empty(), "{args:?}: no message");
    }
    let o = cryo(&["dump", "-t", "1", "--no-such-option"]);
    assert!(text(&o.stderr).contains("unexpected argument '--no-such-option'"));
}
