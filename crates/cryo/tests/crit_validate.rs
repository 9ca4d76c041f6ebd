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

/// The good tree with task 101 (`threads`) whose leader's core is TASK_DEAD.
fn with_dead_101(name: &str, threads: Vec<u32>) -> PathBuf {
    let d = good(name);
    let entry = |pid, ppid, threads| pb::PstreeEntry {
        pid,
        ppid,
        pgid: 100,
        sid: 100,
        threads,
    };
    img!(
        &d,
        ImageKind::Pstree,
        None,
        &[entry(100, 0, vec![100]), entry(101, 100, threads)]
    );
    let mut c = core("worker", 0x40_1000);
    c.tc.as_mut().unwrap().task_state = 2;
    // A dead task's core carries no registers (as CRIU writes a zombie's).
    c.thread_info = None;
    img!(&d, ImageKind::Core, Some(101), &[c]);
    d
}

#[test]
fn dead_task_needs_no_mm() {
    let d = with_dead_101("dead", vec![101]);
    for f in [
        "core-102.img",
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
fn dead_leader_with_live_threads_needs_its_mm() {
    // TASK_DEAD with other threads: the leader exited, the process lives on.
    let d = with_dead_101("dead-leader", vec![101, 102]);
    assert_eq!(problems(&d), (0, vec![]));
    rm(&d, "mm-101.img");
    expect(&d, "mm-101.img", None, "");
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

/// `cryo dump --cgroup` writes several roots (ppid 0), each leading its own session and group:
/// restorable, each as a child of cryo. A root in another root's session or group is not.
#[test]
fn pstree_several_roots() {
    let entry = |pid, sid, pgid, threads: Vec<u32>| pb::PstreeEntry {
        pid,
        ppid: 0,
        pgid,
        sid,
        threads,
    };
    let d = good("pstree-cgroup-roots");
    img!(
        &d,
        ImageKind::Pstree,
        None,
        &[
            entry(100, 100, 100, vec![100]),
            entry(101, 101, 101, vec![101, 102])
        ],
    );
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
    // Roots in a session outside the dump (a shell job's) are fine too.
    let d = good("pstree-cgroup-roots-outside");
    img!(
        &d,
        ImageKind::Pstree,
        None,
        &[
            entry(100, 7, 7, vec![100]),
            entry(101, 7, 101, vec![101, 102])
        ],
    );
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
    let d = good("pstree-cgroup-roots-group");
    img!(
        &d,
        ImageKind::Pstree,
        None,
        &[
            entry(100, 7, 100, vec![100]),
            entry(101, 7, 100, vec![101, 102])
        ],
    );
    expect(&d, "pstree.img", None, "ppid");
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

/// Rewrites files.img as the good set's three REG files followed by `extra`.
fn files_with(dir: &Path, extra: Vec<pb::FileEntry>) {
    let mut all = vec![reg(1, "/bin/app"), reg(2, "/"), reg(3, "/tmp/log")];
    all.extend(extra);
    img!(dir, ImageKind::Files, None, &all);
}

fn file(t: pb::FdTypes, id: u32, f: impl FnOnce(&mut pb::FileEntry)) -> pb::FileEntry {
    let mut e = pb::FileEntry {
        r#type: t as i32,
        id,
        ..Default::default()
    };
    f(&mut e);
    e
}

fn pipe(id: u32, pipe_id: u32) -> pb::FileEntry {
    file(pb::FdTypes::Pipe, id, |e| {
        e.pipe = Some(pb::PipeEntry {
            id,
            pipe_id,
            ..Default::default()
        })
    })
}

#[test]
fn fdinfo_type_differs_from_file() {
    let d = good("fdinfo-type");
    files_with(&d, vec![pipe(4, 555)]);
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
                id: 4,
                r#type: pb::FdTypes::Reg as i32,
                fd: 2,
                ..Default::default()
            },
        ],
    );
    expect(&d, "fdinfo-7.img", Some(1), "type");
}

#[test]
fn fs_and_mm_ids_resolve_to_nothing() {
    for (field, cwd, root) in [("cwd_id", 9, 2), ("root_id", 2, 4)] {
        let d = good(&format!("fs-{field}"));
        // file 4 is a pipe: not a directory to chdir or chroot to
        files_with(&d, vec![pipe(4, 555)]);
        img!(
            &d,
            ImageKind::Fs,
            Some(101),
            &[pb::FsEntry {
                cwd_id: cwd,
                root_id: root,
                ..Default::default()
            }],
        );
        expect(&d, "fs-101.img", Some(0), field);
    }
    let mm = |exe: u32, vmas: Vec<pb::VmaEntry>| pb::MmEntry {
        exe_file_id: exe,
        vmas,
        ..Default::default()
    };
    let stack = vma(0x7ffd_0000_0000, 0x7ffd_0000_2000, 1 | (1 << 1), 0);
    let d = good("mm-exe");
    img!(
        &d,
        ImageKind::Mm,
        Some(100),
        &[mm(
            42,
            vec![vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 1), stack]
        )],
    );
    expect(&d, "mm-100.img", Some(0), "exe_file_id");
    // A private file mapping of a file that is not there.
    let d = good("mm-shmid");
    img!(
        &d,
        ImageKind::Mm,
        Some(101),
        &[mm(
            1,
            vec![vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 77), stack]
        )],
    );
    expect(&d, "mm-101.img", Some(0), "vmas[0].shmid");
    // A shared mapping of a memfd (VMA_AREA_MEMFD) needs a MEMFD file, not a REG one.
    let d = good("mm-memfd");
    img!(
        &d,
        ImageKind::Mm,
        Some(101),
        &[mm(
            1,
            vec![
                vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 1),
                vma(0x50_0000, 0x50_1000, 1 | (1 << 7) | (1 << 14), 3),
                stack,
            ]
        )],
    );
    expect(&d, "mm-101.img", Some(0), "vmas[1].shmid");
    // Anonymous shared memory and SysV IPC mappings name no file.
    let d = good("mm-anon-shared");
    img!(
        &d,
        ImageKind::Mm,
        Some(101),
        &[mm(
            1,
            vec![
                vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 1),
                vma(0x50_0000, 0x50_1000, 1 | (1 << 8), 9999),
                vma(0x60_0000, 0x60_1000, 1 | (1 << 8) | (1 << 10), 8888),
                stack,
            ]
        )],
    );
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_sub_messages_resolve() {
    let fown = pb::FownEntry::default();
    // A fifo's reopened path is a REG file: regf_id, or its own id without one.
    let d = good("fifo-regf");
    files_with(
        &d,
        vec![file(pb::FdTypes::Fifo, 4, |e| {
            e.fifo = Some(pb::FifoEntry {
                id: 4,
                pipe_id: 555,
                regf_id: Some(40),
            })
        })],
    );
    expect(&d, "files.img", Some(3), "fifo.regf_id");
    let d = good("fifo-own-id");
    files_with(
        &d,
        vec![file(pb::FdTypes::Fifo, 4, |e| {
            e.fifo = Some(pb::FifoEntry {
                id: 4,
                pipe_id: 555,
                regf_id: None,
            })
        })],
    );
    expect(&d, "files.img", Some(3), "fifo.regf_id");
    // A terminal needs its tty-info entry.
    let tty = |info: u32| {
        file(pb::FdTypes::Tty, 4, |e| {
            e.tty = Some(pb::TtyFileEntry {
                id: 4,
                tty_info_id: info,
                flags: 2,
                fown,
                regf_id: None,
            })
        })
    };
    let infos = [pb::TtyInfoEntry {
        id: 1,
        r#type: pb::TtyType::Pty as i32,
        rdev: 0x8800,
        pty: Some(pb::TtyPtyEntry { index: 0 }),
        ..Default::default()
    }];
    let d = good("tty-info");
    files_with(&d, vec![tty(1)]);
    img!(&d, ImageKind::TtyInfo, None, &infos);
    assert_eq!(problems(&d), (0, vec![]));
    files_with(&d, vec![tty(2)]);
    expect(&d, "files.img", Some(3), "tty.tty_info_id");
    // A memfd needs its inode in memfd.img.
    let d = good("memfd-inode");
    files_with(
        &d,
        vec![file(pb::FdTypes::Memfd, 4, |e| {
            e.memfd = Some(pb::MemfdFileEntry {
                id: 4,
                flags: 2,
                pos: 0,
                fown,
                inode_id: 5,
            })
        })],
    );
    img!(
        &d,
        ImageKind::MemfdInode,
        None,
        &[pb::MemfdInodeEntry {
            name: "x".into(),
            inode_id: 6,
            ..Default::default()
        }],
    );
    expect(&d, "files.img", Some(3), "memfd.inode_id");
}

#[test]
fn remaps_resolve() {
    let remap = |orig_id, remap_id, remap_type: Option<pb::RemapType>| pb::RemapFilePathEntry {
        orig_id,
        remap_id,
        remap_type: remap_type.map(|t| t as i32),
    };
    let ghost = |d: &Path, id: u64| {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::GhostFile).unwrap();
        w.write_entry(&pb::GhostFileEntry {
            mode: 0o100_600,
            size: Some(2),
            ..Default::default()
        })
        .unwrap();
        w.write_raw(b"hi").unwrap();
        let name = ImageKind::GhostFile.file_name(Some(id)).unwrap();
        std::fs::write(d.join(name), w.finish().unwrap()).unwrap();
    };
    let d = good("remap-ok");
    ghost(&d, 0x1a);
    img!(
        &d,
        ImageKind::RemapFpath,
        None,
        &[
            remap(3, 0x1a, Some(pb::RemapType::Ghost)),
            // the old form: REMAP_GHOST in remap_id, no remap_type
            remap(3, 0x8000_001a, None),
            remap(3, 2, Some(pb::RemapType::Linked)),
            remap(3, 4242, Some(pb::RemapType::Procfs)),
        ],
    );
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
    for (n, entry, field) in [
        (0, remap(9, 0x1a, Some(pb::RemapType::Ghost)), "orig_id"),
        (1, remap(3, 0x1b, Some(pb::RemapType::Ghost)), "remap_id"),
        (2, remap(3, 0x8000_001b, None), "remap_id"),
        (3, remap(3, 0x1a, None), "remap_id"),
    ] {
        let d = good(&format!("remap-{n}"));
        ghost(&d, 0x1a);
        img!(
            &d,
            ImageKind::RemapFpath,
            None,
            &[remap(3, 0x1a, Some(pb::RemapType::Ghost)), entry],
        );
        expect(&d, "remap-fpath.img", Some(1), field);
    }
}

#[test]
fn pipe_data_and_queues_resolve() {
    let data = |d: &Path, kind: ImageKind, pipe_ids: &[u32]| {
        let mut w = ImageWriter::new(Vec::new(), kind).unwrap();
        for &pipe_id in pipe_ids {
            w.write_entry(&pb::PipeDataEntry {
                pipe_id,
                bytes: 3,
                size: Some(4096),
            })
            .unwrap();
            w.write_raw(b"abc").unwrap();
        }
        std::fs::write(d.join(kind.file_name(None).unwrap()), w.finish().unwrap()).unwrap();
    };
    let d = good("pipes-data");
    files_with(&d, vec![pipe(4, 555), pipe(5, 555)]);
    data(&d, ImageKind::PipesData, &[555]);
    assert_eq!(problems(&d), (0, vec![]));
    data(&d, ImageKind::PipesData, &[555, 556]);
    expect(&d, "pipes-data.img", Some(1), "pipe_id");
    // fifo data names fifos, not pipes
    let d = good("fifo-data");
    files_with(&d, vec![pipe(4, 555)]);
    data(&d, ImageKind::FifoData, &[555]);
    expect(&d, "fifo-data.img", Some(0), "pipe_id");

    let queues = |d: &Path, entries: &[pb::SkPacketEntry]| {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::SkQueues).unwrap();
        for e in entries {
            w.write_entry(e).unwrap();
            w.write_raw(&vec![b'q'; e.length as usize]).unwrap();
        }
        std::fs::write(d.join("sk-queues.img"), w.finish().unwrap()).unwrap();
    };
    let sock = file(pb::FdTypes::Unixsk, 4, |e| {
        e.usk = Some(pb::UnixSkEntry {
            id: 4,
            ino: 4000,
            r#type: 1,
            ..Default::default()
        })
    });
    let q = |id_for: u32, rights: Vec<u32>| pb::SkPacketEntry {
        id_for,
        length: 2,
        scm: vec![pb::ScmEntry { r#type: 1, rights }],
    };
    let d = good("sk-queues");
    files_with(&d, vec![sock.clone()]);
    queues(&d, &[q(4, vec![1, 3])]);
    assert_eq!(problems(&d), (0, vec![]));
    // a queue of a regular file
    queues(&d, &[q(4, vec![1]), q(3, vec![])]);
    expect(&d, "sk-queues.img", Some(1), "id_for");
    // an fd passed in the queue that is no file
    let d = good("sk-queues-scm");
    files_with(&d, vec![sock]);
    queues(&d, &[q(4, vec![1, 99])]);
    expect(&d, "sk-queues.img", Some(0), "scm[0].rights");
}

#[test]
fn legacy_file_images_resolve() {
    // Before files.img, CRIU kept each kind of file in an image of its own.
    let d = good("legacy");
    rm(&d, "files.img");
    img!(
        &d,
        ImageKind::RegFiles,
        None,
        &[1u32, 2, 3].map(|id| pb::RegFileEntry {
            id,
            name: "/x".into(),
            ..Default::default()
        }),
    );
    assert_eq!(problems(&d), (0, vec![]));
    rm(&d, "reg-files.img");
    expect(&d, "fdinfo-7.img", Some(0), "id");
}

#[test]
fn shmem_pages_counted() {
    let d = good("shmem");
    let mut w = ImageWriter::new(Vec::new(), ImageKind::ShmemPagemap).unwrap();
    w.write_entry(&pb::PagemapHead { pages_id: 9 }).unwrap();
    // shmem entries are offsets in the object, in any order
    w.write_entry(&pagemap_entry(0x2000, 1, PE_PRESENT))
        .unwrap();
    w.write_entry(&pagemap_entry(0, 1, PE_PRESENT)).unwrap();
    std::fs::write(d.join("pagemap-shmem-4242.img"), w.finish().unwrap()).unwrap();
    std::fs::write(d.join("pages-9.img"), vec![0u8; 2 * 4096]).unwrap();
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::write(d.join("pages-9.img"), vec![0u8; 4096]).unwrap();
    expect(&d, "pages-9.img", None, "");
}

#[test]
fn pagemap_entry_across_adjacent_vmas() {
    // CRIU merges a run of pages across two adjacent VMAs into one entry; across a gap it is
    // outside the task's memory.
    for (tag, second_start, ok) in [("adjacent", 0x40_4000u64, true), ("gap", 0x40_5000, false)] {
        let d = good(&format!("pm-{tag}"));
        img!(
            &d,
            ImageKind::Mm,
            Some(100),
            &[pb::MmEntry {
                exe_file_id: 1,
                vmas: vec![
                    vma(0x40_0000, 0x40_4000, 1 | (1 << 6), 1),
                    vma(second_start, second_start + 0x2000, 1 | (1 << 9), 0),
                    vma(0x7ffd_0000_0000, 0x7ffd_0000_2000, 1 | (1 << 1), 0),
                ],
                ..Default::default()
            }],
        );
        pagemap(&d, 100, 1, &[(0x40_3000, 2), (0x7ffd_0000_0000, 1)]);
        if ok {
            assert_eq!(problems(&d), (0, vec![]));
            std::fs::remove_dir_all(&d).unwrap();
        } else {
            expect(&d, "pagemap-100.img", Some(1), "vaddr");
        }
    }
}

#[test]
fn cgroup_sets_resolve() {
    let with_cg = |comm: &str, ip: u64, cg: u32| {
        let mut c = core(comm, ip);
        c.thread_core = Some(pb::ThreadCoreEntry {
            cg_set: Some(cg),
            ..Default::default()
        });
        c
    };
    let inventory = |d: &Path| {
        img!(
            d,
            ImageKind::Inventory,
            None,
            &[pb::InventoryEntry {
                img_version: 2,
                root_cg_set: Some(1),
                ..Default::default()
            }],
        );
    };
    let cgroup = |d: &Path, ids: &[u32]| {
        img!(
            d,
            ImageKind::Cgroup,
            None,
            &[pb::CgroupEntry {
                sets: ids
                    .iter()
                    .map(|&id| pb::CgSetEntry {
                        id,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        );
    };
    // All in the caller's set (as CRIU writes it without cgroup.img), or the child in a set of
    // cgroup.img and its threads with it.
    let d = good("cg-ok");
    inventory(&d);
    img!(
        &d,
        ImageKind::Core,
        Some(100),
        &[with_cg("init", 0x40_1000, 1)]
    );
    img!(
        &d,
        ImageKind::Core,
        Some(101),
        &[with_cg("worker", 0x40_1000, 1)]
    );
    assert_eq!(problems(&d), (0, vec![]));
    cgroup(&d, &[1, 5]);
    img!(
        &d,
        ImageKind::Core,
        Some(101),
        &[with_cg("worker", 0x40_1000, 5)]
    );
    img!(
        &d,
        ImageKind::Core,
        Some(102),
        &[with_cg("worker", 0x40_2000, 5)]
    );
    assert_eq!(problems(&d), (0, vec![]));
    std::fs::remove_dir_all(&d).unwrap();
    // A task in a set of its own that cgroup.img does not have.
    let d = good("cg-task");
    inventory(&d);
    cgroup(&d, &[1]);
    img!(
        &d,
        ImageKind::Core,
        Some(101),
        &[with_cg("worker", 0x40_1000, 5)]
    );
    expect(&d, "core-101.img", Some(0), "thread_core.cg_set");
    // A thread in another set than its task.
    let d = good("cg-thread");
    inventory(&d);
    img!(
        &d,
        ImageKind::Core,
        Some(102),
        &[with_cg("worker", 0x40_2000, 7)]
    );
    expect(&d, "core-102.img", Some(0), "thread_core.cg_set");
    // Old images keep the set in tc.
    let d = good("cg-tc");
    inventory(&d);
    let mut c = core("init", 0x40_1000);
    c.tc.as_mut().unwrap().cg_set = Some(3);
    img!(&d, ImageKind::Core, Some(100), &[c]);
    expect(&d, "core-100.img", Some(0), "tc.cg_set");
}
