//! `cryo crit` on images cryo did not write (`tests/fixtures/`, see the README of each folder):
//!
//! - `criu-v4.2/`: a real dump by CRIU v4.2 of a small program of ours (`tiny.c`);
//! - `handmade/`: images of (nearly) every kind crit knows that neither that dump nor cryo writes (and
//!   richer ones of some they do), made by Debian's crit 3.17 (`crit encode`) from the
//!   hand-written JSON next to each (two byte by byte, see the README there).
//!
//! For every image: `cryo crit decode` (plain and `--pretty`) succeeds, `cryo crit encode` of
//! that JSON gives back the same bytes, and what cryo prints agrees with Debian's
//! `/usr/bin/crit decode` on every field Debian prints. For the CRIU dump directory,
//! `cryo crit x DIR ps|fds|mems` prints what Debian's crit prints and `cryo crit validate`
//! finds it restorable. For the hand-made images, `cryo crit encode` of the hand-written JSON
//! gives Debian's bytes.
//!
//! Debian's crit is CRIU 3.17. What it lacks is tolerated, nothing else:
//! - keys only cryo prints (fields CRIU added since; listed on stderr);
//! - pagemap entries: field 2 is `nr_pages` in 3.17 and `compat_nr_pages` since CRIU 4.0,
//!   which writes 0 there and the count in the new field 5 `nr_pages`; Debian's `nr_pages` is
//!   compared with cryo's `compat_nr_pages`;
//! - `--pretty` flag names newer than 3.17's tables (`VMA_AREA_MEMFD`, ...): 3.17 prints those
//!   bits as a trailing hex number; both must give the same bits.
//!
//! When nothing is tolerated, the texts must be equal byte for byte and Debian's `crit encode`
//! of cryo's JSON must give back the image too. Without `/usr/bin/crit` the comparisons print
//! `SKIP` (and fail with `CRYO_TEST_STRICT=1`); the cryo round trips and validate run anyway.
#![allow(clippy::unwrap_used)]

mod common;
use common::crit::{
    cryo, cryo_encode, cryo_round_trip, debian_crit, debian_decode, debian_encode_gives,
    have_debian_crit, stdout_of,
};
use cryo_image::crit::Json;
use cryo_image::ImageKind;
use std::path::{Path, PathBuf};

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn tmpdir(name: &str) -> PathBuf {
    common::crit::tmpdir("cryo-crit-fixtures", name)
}

/// CRIU's service files, named without `.img` (`criu/image-desc.c`).
const SERVICE_FILES: &[&str] = &["stats-dump", "stats-restore", "irmap-cache"];

/// The images of a fixture folder (not raw pages, not the JSON, sources and READMEs), sorted.
fn images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            match ImageKind::from_file_name(name) {
                Some((kind, _)) => !kind.is_raw(),
                None => SERVICE_FILES.contains(&name),
            }
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no images in {}", dir.display());
    v
}

/// Images whose extra Debian's crit 3.17 cannot encode under Python 3 (`base64.decodebytes`
/// of a `str` in `bpfmap_data_extra_handler` and `ipc_shm_handler`); it decodes them.
const DEBIAN_CANNOT_ENCODE: &[&str] = &["BPFMAP_DATA", "IPCNS_SHM"];

/// Flag names of CRIU 4.2's crit that 3.17's tables lack, with their bits.
const NEWER_FLAGS: &[(&str, i128)] = &[
    ("MAP_DROPPABLE", 0x08),
    ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_AREA_SHSTK", 1 << 15),
    ("VMA_AREA_UPROBES", 1 << 17),
];

/// A `--pretty` flags string as (names 3.17 knows, every other bit).
fn fold_flags(s: &str) -> Option<(Vec<&str>, i128)> {
    let mut names = Vec::new();
    let mut rest = 0;
    for t in s.split(" | ") {
        if let Some(hex) = t.strip_prefix("0x") {
            rest |= i128::from_str_radix(hex, 16).ok()?;
        } else if let Some((_, bit)) = NEWER_FLAGS.iter().find(|(n, _)| *n == t) {
            rest |= bit;
        } else {
            names.push(t);
        }
    }
    names.sort_unstable();
    Some((names, rest))
}

#[derive(Default)]
struct Diff {
    /// Keys cryo prints and Debian's crit does not.
    only_ours: Vec<String>,
    /// Differences explained by Debian's older protos or tables (see the module doc).
    tolerated: Vec<String>,
}

/// Compares cryo's JSON with Debian's at `path`; panics on any difference not tolerated.
/// `pagemap_entry`: the object is a pagemap entry (not the head).
fn compare(ours: &Json, theirs: &Json, path: &str, pagemap_entry: bool, d: &mut Diff) {
    match (ours, theirs) {
        (Json::Object(a), Json::Object(b)) => {
            let mut used = Vec::new();
            for (k, bv) in b {
                let key = if pagemap_entry && k == "nr_pages" {
                    d.tolerated
                        .push(format!("{path}.nr_pages: field 2 renamed"));
                    "compat_nr_pages"
                } else {
                    k.as_str()
                };
                used.push(key);
                let av = ours
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{k}: printed by Debian's crit, not by cryo"));
                compare(av, bv, &format!("{path}.{k}"), false, d);
            }
            for (k, _) in a {
                if !used.contains(&k.as_str()) {
                    d.only_ours.push(format!("{path}.{k}"));
                }
            }
        }
        (Json::Array(a), Json::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: list lengths differ");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{path}[{i}]"), false, d);
            }
        }
        (Json::Str(a), Json::Str(b)) if a != b => {
            let (fa, fb) = (fold_flags(a), fold_flags(b));
            assert!(
                fa.is_some() && fa == fb,
                "{path}: values differ: cryo {a:?}, Debian {b:?}"
            );
            d.tolerated
                .push(format!("{path}: {a:?} is {b:?} in crit 3.17"));
        }
        _ => assert_eq!(ours, theirs, "{path}: values differ"),
    }
}

/// Compares a whole image's JSON (entries of a pagemap are compared as such).
fn compare_image(ours: &Json, theirs: &Json, name: &str) -> Diff {
    let mut d = Diff::default();
    let is_pagemap = theirs.get("magic").and_then(Json::as_str) == Some("PAGEMAP");
    assert_eq!(
        ours.get("magic"),
        theirs.get("magic"),
        "{name}: magics differ"
    );
    match (ours.get("entries"), theirs.get("entries")) {
        (Some(Json::Array(a)), Some(Json::Array(b))) => {
            assert_eq!(a.len(), b.len(), "{name}: entry counts differ");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{name}[{i}]"), is_pagemap && i > 0, &mut d);
            }
        }
        _ => panic!("{name}: no entries list"),
    }
    d
}

/// The round trip and the comparison with Debian's crit for every image of `dir`, a few
/// images at a time (most of the time goes to starting Python).
fn check_images(dir: &Path, tag: &str, debian: bool) {
    let tmp = tmpdir(tag);
    let imgs = images(dir);
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for chunk in imgs.chunks(imgs.len().div_ceil(n)) {
            let tmp = &tmp;
            s.spawn(move || {
                for img in chunk {
                    check_image(img, tmp, debian);
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
}

/// [`check_images`] for one image; `tmp` holds its JSON.
fn check_image(img: &Path, tmp: &Path, debian: bool) {
    let name = img.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(img).unwrap();
    for pretty in [false, true] {
        // cryo encode of cryo decode gives the same bytes.
        let ours = cryo_round_trip(img, &bytes, tmp, &name, pretty);

        if !debian {
            continue;
        }
        let dtext = debian_decode(img, &name, pretty).unwrap();
        let theirs = Json::parse(&dtext).unwrap();
        let d = compare_image(&ours.json, &theirs, &name);
        if d.only_ours.is_empty() && d.tolerated.is_empty() {
            assert_eq!(ours.text, dtext, "{name} (pretty {pretty}): texts differ");
            let magic = ours.json.get("magic").and_then(Json::as_str).unwrap_or("");
            if DEBIAN_CANNOT_ENCODE.contains(&magic) {
                continue;
            }
            debian_encode_gives(&ours, tmp, &name, pretty, &bytes);
        } else {
            eprintln!(
                "{name} (pretty {pretty}): only cryo prints {:?}; tolerated {:?}",
                d.only_ours, d.tolerated
            );
        }
    }
}

#[test]
fn criu_dump_images() {
    let debian = have_debian_crit("comparison of the CRIU v4.2 images with Debian's crit");
    check_images(&fixtures("criu-v4.2"), "criu", debian);
}

#[test]
fn handmade_images() {
    let debian = have_debian_crit("comparison of the hand-made images with Debian's crit");
    let dir = fixtures("handmade");
    check_images(&dir, "handmade", debian);
    // Every image has its hand-written JSON, and cryo encodes that JSON into the same bytes
    // as Debian's crit did.
    let tmp = tmpdir("handmade-json");
    for img in images(&dir) {
        let json = img.with_extension("json");
        assert!(json.exists(), "{} has no JSON", img.display());
        let out = tmp.join("out.img");
        cryo_encode(&json, &out, &json.display().to_string());
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&img).unwrap(),
            "{}: cryo's encode of the hand-written JSON differs from the image",
            json.display()
        );
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            assert!(
                p.with_extension("img").exists() || p.with_extension("").exists(),
                "{} has no image",
                p.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn criu_dump_explore() {
    if !have_debian_crit("crit x of the CRIU v4.2 dump") {
        return;
    }
    let dir = fixtures("criu-v4.2");
    let dir_s = dir.to_str().unwrap();
    // `rss` is left out: crit 3.17 reads the page counts of CRIU 4.2's pagemaps as 0 (field 2).
    // `fds` includes fd 8, a unix socket bound to "sock" with the kernel's trailing NUL: crit
    // prints the name as its JSON does (quoted-printable, `sock=00`).
    for what in ["ps", "fds", "mems"] {
        let ours = stdout_of(
            cryo(&["crit", "x", dir_s, what]),
            &format!("cryo crit x {what}"),
        );
        let theirs = stdout_of(
            debian_crit(&["x", dir_s, what]).unwrap(),
            &format!("crit x {what}"),
        );
        assert_eq!(ours, theirs, "crit x {what}");
    }
}

#[test]
fn criu_dump_validates() {
    let dir = fixtures("criu-v4.2");
    let out = cryo(&["crit", "validate", dir.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "restorable\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn raw_pages_have_no_json() {
    // Both crits refuse raw images the same way.
    let img = fixtures("criu-v4.2").join("pages-1.img");
    let o = cryo(&["crit", "decode", "-i", img.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown magic"));
    if let Some(o) = debian_crit(&["decode", "-i", img.to_str().unwrap()]) {
        assert!(!o.status.success());
    }
}
