//! Running `cryo crit` and Debian's `/usr/bin/crit` (CRIU 3.17, run with `/usr/bin/python3`)
//! on image files, for crit.rs and crit_fixtures.rs. Failures panic: these tests hold no
//! processes to clean up.
#![allow(clippy::unwrap_used)]

use cryo_image::crit::Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's crit (package criu).
pub const DEBIAN_CRIT: &str = "/usr/bin/crit";

/// `cryo ARGS`, its output collected.
pub fn cryo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryo"))
        .args(args)
        .output()
        .expect("run cryo")
}

/// `crit ARGS` with Debian's crit, its output collected; `None` without it.
pub fn debian_crit(args: &[&str]) -> Option<Output> {
    if !Path::new(DEBIAN_CRIT).exists() {
        return None;
    }
    Some(
        Command::new("/usr/bin/python3")
            .arg(DEBIAN_CRIT)
            .args(args)
            .output()
            .expect("run crit"),
    )
}

/// Whether Debian's crit is here; without it, `SKIP what` (a failure under
/// `CRYO_TEST_STRICT=1`).
pub fn have_debian_crit(what: &str) -> bool {
    if Path::new(DEBIAN_CRIT).exists() {
        return true;
    }
    let strict = std::env::var("CRYO_TEST_STRICT").is_ok_and(|v| v == "1");
    assert!(
        !strict,
        "{DEBIAN_CRIT} missing (package criu) and CRYO_TEST_STRICT=1"
    );
    println!("SKIP {what}: {DEBIAN_CRIT} missing (package criu)");
    false
}

/// A fresh, empty `$TMPDIR/PREFIX-PID-NAME`.
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The stdout of a command that must have succeeded (`what` names it in the panic).
pub fn stdout_of(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `cryo crit encode -i JSON -o OUT`, which must succeed (`name` names the image).
pub fn cryo_encode(json: &Path, out: &Path, name: &str) {
    stdout_of(
        cryo(&["crit", "encode", "-i", path_str(json), "-o", path_str(out)]),
        &format!("cryo crit encode {name}"),
    );
}

/// What `cryo crit decode` printed for an image.
pub struct Decoded {
    /// The text.
    pub text: String,
    /// The text parsed.
    pub json: Json,
    /// The file in `tmp` that holds the text.
    pub json_path: PathBuf,
}

/// `cryo crit decode -i IMG [--pretty]` of the image `name` (which holds `bytes`), kept in
/// `tmp/NAME.PRETTY.json`; `cryo crit encode` of it must give back the same bytes.
pub fn cryo_round_trip(img: &Path, bytes: &[u8], tmp: &Path, name: &str, pretty: bool) -> Decoded {
    let mut args = vec!["crit", "decode", "-i", path_str(img)];
    if pretty {
        args.push("--pretty");
    }
    let text = stdout_of(cryo(&args), &format!("cryo crit decode {name}"));
    let json = Json::parse(&text).unwrap_or_else(|e| panic!("{name}: bad JSON {e}"));
    let json_path = tmp.join(format!("{name}.{pretty}.json"));
    std::fs::write(&json_path, &text).unwrap();
    let back = tmp.join(format!("{name}.{pretty}.back"));
    cryo_encode(&json_path, &back, name);
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "{name} (pretty {pretty}): encode(decode(image)) differs"
    );
    Decoded {
        text,
        json,
        json_path,
    }
}

/// Debian's `crit decode -i IMG [--pretty]` of the image `name`: its text; `None` without
/// Debian's crit.
pub fn debian_decode(img: &Path, name: &str, pretty: bool) -> Option<String> {
    let mut args = vec!["decode", "-i", path_str(img)];
    if pretty {
        args.push("--pretty");
    }
    let out = debian_crit(&args)?;
    Some(stdout_of(out, &format!("crit decode {name}")))
}

/// Debian's `crit encode` of cryo's JSON `d` (into `tmp`) must give back the image's `bytes`.
pub fn debian_encode_gives(d: &Decoded, tmp: &Path, name: &str, pretty: bool, bytes: &[u8]) {
    let dback = tmp.join(format!("{name}.{pretty}.dback"));
    let out = debian_crit(&[
        "encode",
        "-i",
        path_str(&d.json_path),
        "-o",
        path_str(&dback),
    ])
    .unwrap();
    stdout_of(out, &format!("crit encode {name}"));
    assert!(
        std::fs::read(&dback).unwrap() == bytes,
        "{name}: Debian's encode of cryo's JSON differs"
    );
}
