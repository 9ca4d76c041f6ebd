//! Writes a small dump's worth of images with cryo-image and has Debian's crit (CRIU's own
//! Python decoder, `/usr/bin/crit`) decode each one, then checks `crit decode | crit encode`
//! gives back cryo's bytes.
//!
//! Without `/usr/bin/crit` the test prints `SKIP crit_decode: /usr/bin/crit not installed` and
//! passes, unless `CRYO_TEST_STRICT=1`.
//!
//! Known gap of crit 3.17 (Debian 12): its `pagemap_entry` has no field 5 (`uint64 nr_pages`,
//! CRIU 4.x), so its re-encoding of a pagemap drops that field. For pagemaps the test expects
//! exactly cryo's bytes minus field 5, i.e. what an old writer of `compat_nr_pages` produces.

// Test code: helpers outside #[test] fns may panic on failure too.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cryo_image::pagemap::{create_pagemap, PE_PRESENT};
use cryo_image::{pb, write_single, ImageKind, ImageWriter};

const CRIT: &str = "/usr/bin/crit";
const PYTHON: &str = "/usr/bin/python3";

fn tmpdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cryo-image-crit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ids() -> pb::TaskKobjIdsEntry {
    pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 2,
        fs_id: 3,
        sighand_id: 4,
        pid_ns_id: Some(5),
        net_ns_id: Some(6),
        mnt_ns_id: Some(7),
        ..Default::default()
    }
}

fn core() -> pb::CoreEntry {
    let gpregs = pb::UserX86RegsEntry {
        r15: 15,
        ax: 0xffff_ffff_ffff_ffda,
        orig_ax: 230,
        ip: 0x7f12_3456_7890,
        cs: 0x33,
        flags: 0x246,
        sp: 0x7ffd_0000_1000,
        ss: 0x2b,
        fs_base: 0x7f00_0000_0740,
        ..Default::default()
    };
    let fpregs = pb::UserX86FpregsEntry {
        cwd: 0x37f,
        mxcsr: 0x1f80,
        mxcsr_mask: 0xffff,
        st_space: vec![0; 32],
        xmm_space: vec![0; 64],
        ..Default::default()
    };
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: 0x7f00_0000_0a10,
            gpregs,
            fpregs,
            tls: Vec::new(),
        }),
        tc: Some(pb::TaskCoreEntry {
            task_state: 1,
            exit_code: 0,
            personality: 0,
            flags: 0x40_0100,
            blk_sigset: 0,
            comm: "sleeper".into(),
            loginuid: Some(u32::MAX),
            oom_score_adj: Some(-17),
            child_subreaper: Some(false),
            ..Default::default()
        }),
        ids: Some(ids()),
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: 0x7f00_0000_0a20,
            futex_rla_len: 24,
            sched_nice: Some(-2),
            sched_policy: Some(0),
            blk_sigset: Some(1 << 9),
            comm: Some("sleeper".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write_images(dir: &Path) -> Vec<(String, &'static str)> {
    write_single(
        dir,
        ImageKind::Inventory,
        None,
        &pb::InventoryEntry {
            img_version: cryo_image::magic::CRTOOLS_IMAGES_V1_1,
            fdinfo_per_id: Some(true),
            root_ids: Some(ids()),
            ns_per_id: Some(true),
            root_cg_set: Some(1),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            ..Default::default()
        },
    )
    .unwrap();
    write_single(
        dir,
        ImageKind::Pstree,
        None,
        &pb::PstreeEntry {
            pid: 42,
            ppid: 0,
            pgid: 42,
            sid: 40,
            threads: vec![42, 43],
        },
    )
    .unwrap();
    write_single(dir, ImageKind::Core, Some(42), &core()).unwrap();
    write_single(dir, ImageKind::Ids, Some(42), &ids()).unwrap();
    write_single(
        dir,
        ImageKind::Mm,
        Some(1),
        &pb::MmEntry {
            mm_start_code: 0x40_0000,
            mm_end_code: 0x40_1000,
            mm_start_stack: 0x7ffd_0000_0000,
            mm_brk: 0x60_0000,
            exe_file_id: 9,
            mm_saved_auxv: vec![33, 0x7ffd_0000_2000, 0, 0],
            vmas: vec![pb::VmaEntry {
                start: 0x40_0000,
                end: 0x40_1000,
                pgoff: 0,
                shmid: 9,
                prot: 5,
                flags: 2,
                status: 0x1 | 0x40,
                fd: -1,
                madv: Some(0),
                fdflags: Some(0),
            }],
            dumpable: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut pm = create_pagemap(dir, ImageKind::Pagemap, 1, 1).unwrap();
    pm.add(0x40_0000, 1, PE_PRESENT).unwrap();
    pm.add(0x7ffd_0000_0000, 33, PE_PRESENT).unwrap();
    pm.into_inner().finish_sync().unwrap();
    write_single(
        dir,
        ImageKind::Fs,
        Some(1),
        &pb::FsEntry {
            cwd_id: 10,
            root_id: 11,
            umask: Some(0o22),
        },
    )
    .unwrap();
    let fown = pb::FownEntry {
        uid: 1000,
        euid: 1000,
        signum: 0,
        pid_type: 0,
        pid: 0,
    };
    let reg = |id: u32, name: &str| pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags: 0o100002,
            pos: 17,
            fown,
            name: name.into(),
            mnt_id: Some(21),
            size: Some(4096),
            mode: Some(0o100644),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut files = cryo_image::create_image(dir, ImageKind::Files, None).unwrap();
    files.write_entry(&reg(9, "/usr/bin/sleeper")).unwrap();
    files.write_entry(&reg(10, "/")).unwrap();
    files.finish_sync().unwrap();
    let mut fdinfo = cryo_image::create_image(dir, ImageKind::Fdinfo, Some(2)).unwrap();
    for fd in 0..3 {
        fdinfo
            .write_entry(&pb::FdinfoEntry {
                id: 12 + fd,
                flags: 0,
                r#type: pb::FdTypes::Reg as i32,
                fd,
                ..Default::default()
            })
            .unwrap();
    }
    fdinfo.finish_sync().unwrap();
    vec![
        ("inventory.img".into(), "INVENTORY"),
        ("pstree.img".into(), "PSTREE"),
        ("core-42.img".into(), "CORE"),
        ("ids-42.img".into(), "IDS"),
        ("mm-1.img".into(), "MM"),
        ("pagemap-1.img".into(), "PAGEMAP"),
        ("fs-1.img".into(), "FS"),
        ("files.img".into(), "FILES"),
        ("fdinfo-2.img".into(), "FDINFO"),
    ]
}

/// The pagemap as a writer of only `compat_nr_pages` (crit 3.17) encodes it.
fn pagemap_without_nr_pages(dir: &Path) -> Vec<u8> {
    let (head, entries) = cryo_image::pagemap::read_pagemap(dir, ImageKind::Pagemap, 1).unwrap();
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Pagemap).unwrap();
    w.write_entry(&head).unwrap();
    for mut pe in entries {
        pe.nr_pages = None;
        w.write_entry(&pe).unwrap();
    }
    w.finish().unwrap()
}

fn crit(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new(PYTHON)
        .arg(CRIT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "crit {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn crit_decodes_cryo_images() {
    if !Path::new(CRIT).exists() {
        assert!(
            std::env::var("CRYO_TEST_STRICT").as_deref() != Ok("1"),
            "crit_decode: {CRIT} not installed and CRYO_TEST_STRICT=1"
        );
        println!("SKIP crit_decode: {CRIT} not installed");
        return;
    }
    let dir = tmpdir();
    for (name, magic) in write_images(&dir) {
        let path = dir.join(&name);
        let path_str = path.to_str().unwrap();
        let json = crit(&["decode", "-i", path_str], None);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.contains(&format!("\"magic\": \"{magic}\"")),
            "{name}: {text}"
        );
        let back = crit(&["encode"], Some(&json));
        let expected = if magic == "PAGEMAP" {
            pagemap_without_nr_pages(&dir)
        } else {
            std::fs::read(&path).unwrap()
        };
        assert_eq!(
            back, expected,
            "{name}: crit decode | crit encode differs\n{text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
