//! `cryo crit validate` and `cryo crit x`: a good set of images is written with cryo_image's
//! writer (no process is dumped), then damaged one way per test; validate must name the image,
//! entry and field of each problem.
#![allow(clippy::unwrap_used)]

use cryo_image::crit::Json;
use cryo_image::pagemap::{pagemap_entry, PE_PRESENT};
use cryo_image::pb;
use cryo_image::{ImageKind, ImageWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cryo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryo"))
        .args(args)
        .output()
        .expect("run cryo")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cryo-crit-validate-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `entries` as image `kind`/`id` in `dir` (a macro: the tests do not depend on prost).
macro_rules! img {
    ($dir:expr, $kind:expr, $id:expr, $entries:expr $(,)?) => {{
        let mut w = ImageWriter::new(Vec::new(), $kind).unwrap();
        for e in $entries {
            w.write_entry(e).unwrap();
        }
        let name = $kind.file_name($id).unwrap();
        std::fs::write($dir.join(name), w.finish().unwrap()).unwrap();
    }};
}

fn core(comm: &str, ip: u64) -> pb::CoreEntry {
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            gpregs: pb::UserX86RegsEntry {
                ip,
                sp: 0x7ffd_0000_1000,
                cs: 0x33,
                ss: 0x2b,
                fs_base: 0x7f00_0000_0000,
                mode: Some(pb::UserX86RegsMode::Native as i32),
                ..Default::default()
            },
            ..Default::default()
        }),
        tc: Some(pb::TaskCoreEntry {
            task_state: 1,
            comm: comm.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn vma(start: u64, end: u64, status: u32, shmid: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        start,
        end,
        prot: 3,
        status,
        shmid,
        ..Default::default()
    }
}

fn reg(id: u32, name: &str) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Task 100 (root) and 101 (threads 101, 102), both alive, sharing files id 7.
fn good(tag: &str) -> PathBuf {
    let d = tmpdir(tag);
    img!(
        &d,
        ImageKind::Inventory,
        None,
        &[pb::InventoryEntry {
            img_version: 2,
            ..Default::default()
        }],
    );
    img!(
        &d,
        ImageKind::Pstree,
        None,
        &[
            pb::PstreeEntry {
                pid: 100,
                ppid: 0,
                pgid: 100,
                sid: 100,
                threads: vec![100],
            },
            pb::PstreeEntry {
                pid: 101,
                ppid: 100,
                pgid: 100,
                sid: 100,
                threads: vec![101, 102],
            },
        ],
    );
    img!(&d, ImageKind::Core, Some(100), &[core("init", 0x40_1000)]);
    img!(&d, ImageKind::Core, Some(101), &[core("worker", 0x40_1000)]);
    img!(&d, ImageKind::Core, Some(102), &[core("worker", 0x40_2000)]);
    img!(
        &d,
        ImageKind::Files,
        None,
        &[reg(1, "/bin/app"), reg(2, "/"), reg(3, "/tmp/log")],
    );
    for (pid, pages_id) in [(100u64, 1u32), (101, 2)] {
        img!(
            &d,
            ImageKind::Ids,
            Some(pid),
            &[pb::TaskKobjIdsEntry {
                files_id: 7,
                ..Default::default()
            }],
        );
        img!(
            &d,
            ImageKind::Mm,
            Some(pid),
            &[pb::MmEntry {
                exe_file_id: 1,
                vmas: vec![
                    vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 1),
                    vma(0x7ffd_0000_0000, 0x7ffd_0000_2000, 1 | (1 << 1), 0),
                ],
                ..Default::default()
            }],
        );
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pagemap).unwrap();
        w.write_entry(&pb::PagemapHead { pages_id }).unwrap();
        w.write_entry(&pagemap_entry(0x40_0000, 2, PE_PRESENT))
            .unwrap();
        w.write_entry(&pagemap_entry(0x7ffd_0000_0000, 1, PE_PRESENT))
            .unwrap();
        std::fs::write(d.join(format!("pagemap-{pid}.img")), w.finish().unwrap()).unwrap();
        std::fs::write(d.join(format!("pages-{pages_id}.img")), vec![0u8; 3 * 4096]).unwrap();
        img!(
            &d,
            ImageKind::Fs,
            Some(pid),
            &[pb::FsEntry {
                cwd_id: 2,
                root_id: 2,
                ..Default::default()
            }],
        );
    }
    img!(
        &d,
        ImageKind::Fdinfo,
        Some(7),
        &[
            pb::FdinfoEntry {
                id: 3,
                r#type: pb::FdTypes::Reg as i32,
                fd: 1,
                ..Default::default()
            },
            pb::FdinfoEntry {
                id: 3,
                r#type: pb::FdTypes::Reg as i32,
                fd: 2,
                ..Default::default()
            },
        ],
    );
    d
}

/// Runs validate --json; the exit code and (image, entry, field) of every problem.
fn problems(dir: &Path) -> (i32, Vec<(String, Option<i128>, String)>) {
    let out = cryo(&["crit", "validate", dir.to_str().unwrap(), "--json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text} (stderr: {err})"));
    let Json::Array(list) = json else {
        panic!("not a list: {text}")
    };
    let list = list
        .iter()
        .map(|p| {
            let entry = match p.get("entry") {
                Some(Json::Int(i)) => Some(*i),
                _ => None,
            };
            (
                p.get("image").unwrap().as_str().unwrap().to_string(),
                entry,
                p.get("field").unwrap().as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap(), list)
}

fn expect(dir: &Path, image: &str, entry: Option<i128>, field: &str) {
    let (code, list) = problems(dir);
    assert_eq!(code, 1, "{list:?}");
    assert!(
        list.iter()
            .any(|(i, e, f)| i == image && *e == entry && f == field),
        "want ({image}, {entry:?}, {field}) in {list:?}"
    );
    let text = cryo(&["crit", "validate", dir.to_str().unwrap()]);
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stdout).contains(image));
    std::fs::remove_dir_all(dir).unwrap();
}

fn rm(dir: &Path, name: &str) {
    std::fs::remove_file(dir.join(name)).unwrap();
}

#[test]
fn good_set_is_restorable() {
    let d = good("good");
    let (code, list) = problems(&d);
    assert_eq!((code, list), (0, vec![]));
    let out = cryo(&["crit", "validate", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "restorable\n");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn missing_required_images() {
    for name in [
        "inventory.img",
        "pstree.img",
        "core-102.img",
        "mm-101.img",
        "pagemap-100.img",
        "fs-100.img",
        "fdinfo-7.img",
    ] {
        let d = good(&format!("missing-{name}"));
        rm(&d, name);
        expect(&d, name, None, "");
    }
    // ids: missing only when core.ids is missing too.
    let d = good("missing-ids");
    rm(&d, "ids-101.img");
    expect(&d, "ids-101.img", None, "");
}

#[test]
fn dead_task_needs_no_mm() {
    let d = good("dead");
    let mut c = core("worker", 0x40_1000);
    c.tc.as_mut().unwrap().task_state = 2;
    // A zombie's core carries no registers (as CRIU writes it).
    c.thread_info = None;
    img!(&d, ImageKind::Core, Some(101), &[c]);
    for f in [
        "mm-101.img",
        "pagemap-101.img",
        "pages-2.img",
        "fs-101.img",
        "ids-101.img",
    ] {
        rm(&d, f);
    }
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unknown_file() {
    let d = good("unknown");
    // An image name no kind has is reported; logs and other files are not images at all.
    std::fs::write(d.join("notes.img"), b"hi").unwrap();
    std::fs::write(d.join("dump.log"), b"hi").unwrap();
    let (_, list) = problems(&d);
    assert!(!list.iter().any(|(i, _, _)| i == "dump.log"), "{list:?}");
    expect(&d, "notes.img", None, "");
}

#[test]
fn wrong_magic() {
    let d = good("magic");
    let mut data = std::fs::read(d.join("fs-100.img")).unwrap();
    data[4] ^= 0xff;
    std::fs::write(d.join("fs-100.img"), data).unwrap();
    expect(&d, "fs-100.img", None, "magic");
    // an image validate reads only through crit
    let d = good("magic2");
    img!(&d, ImageKind::Core, Some(555), &[core("x", 0x40_1000)]);
    std::fs::rename(d.join("core-555.img"), d.join("sigacts-100.img")).unwrap();
    expect(&d, "sigacts-100.img", None, "magic");
    // an image no task uses
    let d = good("magic3");
    std::fs::copy(d.join("fs-100.img"), d.join("mm-555.img")).unwrap();
    expect(&d, "mm-555.img", None, "magic");
}

#[test]
fn truncated_entry() {
    let d = good("trunc");
    let data = std::fs::read(d.join("fdinfo-7.img")).unwrap();
    std::fs::write(d.join("fdinfo-7.img"), &data[..data.len() - 2]).unwrap();
    expect(&d, "fdinfo-7.img", Some(1), "");
    // an entry length past the end of the file
    let d = good("trunc-len");
    let mut data = std::fs::read(d.join("pstree.img")).unwrap();
    data[8..12].copy_from_slice(&1000u32.to_le_bytes());
    std::fs::write(d.join("pstree.img"), data).unwrap();
    expect(&d, "pstree.img", Some(0), "");
}

fn pagemap(dir: &Path, pid: u64, pages_id: u32, entries: &[(u64, u32)]) {
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Pagemap).unwrap();
    w.write_entry(&pb::PagemapHead { pages_id }).unwrap();
    for &(v, n) in entries {
        w.write_entry(&pagemap_entry(v, n, PE_PRESENT)).unwrap();
    }
    std::fs::write(dir.join(format!("pagemap-{pid}.img")), w.finish().unwrap()).unwrap();
}

#[test]
fn pagemap_unsorted_overlapping_outside() {
    let d = good("pm-unsorted");
    pagemap(&d, 100, 1, &[(0x7ffd_0000_0000, 1), (0x40_0000, 2)]);
    expect(&d, "pagemap-100.img", Some(2), "vaddr");
    let d = good("pm-overlap");
    pagemap(&d, 100, 1, &[(0x40_0000, 2), (0x40_1000, 1)]);
    expect(&d, "pagemap-100.img", Some(2), "vaddr");
    let d = good("pm-outside");
    pagemap(&d, 101, 2, &[(0x40_0000, 2), (0x50_0000, 1)]);
    expect(&d, "pagemap-101.img", Some(2), "vaddr");
}

#[test]
fn pages_length() {
    let d = good("pages-short");
    std::fs::write(d.join("pages-1.img"), vec![0u8; 2 * 4096]).unwrap();
    expect(&d, "pages-1.img", None, "");
    let d = good("pages-long");
    std::fs::write(d.join("pages-2.img"), vec![0u8; 4 * 4096]).unwrap();
    expect(&d, "pages-2.img", None, "");
    let d = good("pages-missing");
    rm(&d, "pages-2.img");
    expect(&d, "pages-2.img", None, "");
}

#[test]
fn fdinfo_without_file() {
    let d = good("fdinfo-file");
    img!(
        &d,
        ImageKind::Files,
        None,
        &[reg(1, "/bin/app"), reg(2, "/")],
    );
    expect(&d, "fdinfo-7.img", Some(0), "id");
}

#[test]
fn files_missing_sub_message() {
    let d = good("files-sub");
    let mut pipe = reg(3, "x");
    pipe.r#type = pb::FdTypes::Pipe as i32;
    img!(
        &d,
        ImageKind::Files,
        None,
        &[reg(1, "/bin/app"), reg(2, "/"), pipe],
    );
    expect(&d, "files.img", Some(2), "pipe");
}

#[test]
fn ids_resolve_to_nothing() {
    let d = good("ids-files");
    img!(
        &d,
        ImageKind::Ids,
        Some(101),
        &[pb::TaskKobjIdsEntry {
            files_id: 9,
            ..Default::default()
        }],
    );
    expect(&d, "fdinfo-9.img", None, "");
}

fn pstree(dir: &Path, tree: &[(u32, u32)]) {
    let entries: Vec<_> = tree
        .iter()
        .map(|&(pid, ppid)| pb::PstreeEntry {
            pid,
            ppid,
            pgid: 100,
            sid: 100,
            threads: if pid == 101 {
                vec![101, 102]
            } else {
                vec![pid]
            },
        })
        .collect();
    img!(dir, ImageKind::Pstree, None, &entries);
}

#[test]
fn pstree_shape() {
    let d = good("pstree-roots");
    pstree(&d, &[(100, 0), (101, 0)]);
    expect(&d, "pstree.img", None, "ppid");
    let d = good("pstree-parent");
    pstree(&d, &[(100, 0), (101, 55)]);
    expect(&d, "pstree.img", Some(1), "ppid");
    let d = good("pstree-dup");
    pstree(&d, &[(100, 0), (101, 100), (101, 100)]);
    expect(&d, "pstree.img", Some(2), "pid");
}

#[test]
fn impossible_registers() {
    for (field, f) in [
        (
            "cs",
            (|r: &mut pb::UserX86RegsEntry| r.cs = 0x23) as fn(&mut _),
        ),
        ("ss", |r| r.ss = 0),
        ("ip", |r| r.ip = 0xffff_8000_0000_0000),
        ("sp", |r| r.sp = 0x8000_0000_0000),
        ("fs_base", |r| r.fs_base = u64::MAX),
        ("gs_base", |r| r.gs_base = 0x9000_0000_0000),
    ] {
        let d = good(&format!("regs-{field}"));
        let mut c = core("worker", 0x40_1000);
        f(&mut c.thread_info.as_mut().unwrap().gpregs);
        img!(&d, ImageKind::Core, Some(102), &[c]);
        expect(
            &d,
            "core-102.img",
            Some(0),
            &format!("thread_info.gpregs.{field}"),
        );
    }
}

#[test]
fn explore() {
    let d = good("explore");
    let x = |what: &str| {
        let out = cryo(&["crit", "x", d.to_str().unwrap(), what]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        x("ps"),
        "    PID   PGID    SID   COMM\n    100    100    100   init\n    101    100    100       worker\n"
    );
    assert_eq!(
        x("fds"),
        "100\n\t      1: /tmp/log\n\t      2: /tmp/log\n\t    cwd: /\n\t   root: /\n\
         101\n\t      1: /tmp/log\n\t      2: /tmp/log\n\t    cwd: /\n\t   root: /\n"
    );
    let mems = format!(
        "\t{:<36}    /bin/app\n\t{:<36}rw- /bin/app\n\t{:<36}rw- [stack]\n",
        "exe", "00400000-00404000", "7ffd00000000-7ffd00002000"
    );
    assert_eq!(x("mems"), format!("100\n{mems}101\n{mems}"));
    let pad = format!("\n\t{:23}", "");
    let rss = format!(
        "{:<24} 00400000 / 4        /bin/app{pad}\n{:<24} 7ffd00000000 / 2       {pad}\n",
        "\t400000 / 2       ", "\t7ffd00000000 / 1       "
    );
    assert_eq!(x("rss"), format!("100\n{rss}101\n{rss}"));
    if let Ok(keep) = std::env::var("CRYO_TEST_KEEP_EXPLORE") {
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::rename(&d, keep).unwrap();
        return;
    }
    std::fs::remove_dir_all(&d).unwrap();
}
